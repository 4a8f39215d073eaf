"""The database: the engine, the tables and their column types, and the Alembic migrations."""
