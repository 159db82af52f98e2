"""payscore and MariaDB over TLS: ssl_* options in ``database_url``, and a user who needs TLS.

The session's MariaDB runs with ``--ssl-ca/--ssl-cert/--ssl-key`` (certificates made by the
test bed; they name localhost and 127.0.0.1); ``mariadb_tls`` is a user created
``REQUIRE SSL``. The password travels in PAYSCORE_DATABASE_PASSWORD only.
"""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from sqlalchemy import select, text

from payscore.config import Settings
from payscore.store.engine import make_engine
from payscore.store.schema import consumer_offsets
from payscore.store.statements import offsets_upsert
from payscore.store.writer import utcnow
from tests.bed.tls import TestCA
from tests.integration.test_transport import _error_lines, _payscore

pytestmark = pytest.mark.integration


def _initdb(payscore_env, db, url):
    done = _payscore(payscore_env(database_url=url, database_password=db.password), "initdb")
    assert db.password not in done.stdout + done.stderr
    return done


def test_initdb_and_a_write_through_tls(mariadb_tls, payscore_env):
    db = mariadb_tls
    url = db.url(
        ssl_ca=db.ca_file, ssl_cert=db.cert_file, ssl_key=db.key_file, ssl_mode="VERIFY_IDENTITY"
    )
    done = _initdb(payscore_env, db, url)
    assert done.returncode == 0, done.stdout + done.stderr

    engine = make_engine(Settings(database_url=url, database_password=SecretStr(db.password)))
    try:
        with engine.begin() as conn:
            row = {"group_id": "tls", "topic": "t", "kafka_partition": 0, "next_offset": 7}
            conn.execute(offsets_upsert("mysql"), [{**row, "updated_at": utcnow()}])
            ssl_version = conn.execute(text("SHOW SESSION STATUS LIKE 'Ssl_version'")).one()[1]
        with engine.connect() as conn:
            stored = conn.execute(select(consumer_offsets.c.next_offset)).scalar_one()
    finally:
        engine.dispose()
    assert ssl_version.startswith("TLSv1.")
    assert stored == 7


def test_the_tls_only_user_is_refused_without_tls(mariadb_tls, payscore_env):
    done = _initdb(payscore_env, mariadb_tls, mariadb_tls.url())
    assert done.returncode == 1, done.stdout + done.stderr
    errors = _error_lines(done)
    assert len(errors) == 1, done.stderr
    assert "Access denied for user 'payscore_tls'" in errors[0]


def test_server_certificate_is_checked_against_ssl_ca(mariadb_tls, payscore_env, tmp_path):
    stranger = TestCA(tmp_path / "other-ca")  # a CA that did not sign the server's certificate
    done = _initdb(payscore_env, mariadb_tls, mariadb_tls.url(ssl_ca=str(stranger.cert)))
    assert done.returncode == 1, done.stdout + done.stderr
    errors = _error_lines(done)
    assert len(errors) == 1 and "TLS/SSL error" in errors[0], done.stderr


def test_server_name_is_checked_only_with_verify_identity(mariadb_tls, payscore_env):
    """127.1 reaches the server, but its certificate names only localhost and 127.0.0.1."""
    db = mariadb_tls
    checked = _initdb(
        payscore_env, db, db.url(host="127.1", ssl_ca=db.ca_file, ssl_mode="VERIFY_IDENTITY")
    )
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "Validation of SSL server certificate failed" in _error_lines(checked)[0]
    # ssl_ca alone checks the chain but not the name (docs/security.md says so).
    unchecked = _initdb(payscore_env, db, db.url(host="127.1", ssl_ca=db.ca_file))
    assert unchecked.returncode == 0, unchecked.stdout + unchecked.stderr
