"""Alembic migrations: the only place tables are created or changed."""
