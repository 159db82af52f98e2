"""Everything that talks to the decisions database (SQLAlchemy 2 Core)."""
