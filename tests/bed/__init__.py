"""The real services (Kafka, MariaDB) the integration tests run against; see conftest.py."""
