"""The state store: SQLAlchemy models, Alembic migrations, and the one place with a Session."""
