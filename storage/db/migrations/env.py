"""Alembic environment. Run through `storage.db.migrate.upgrade`, which hands over a connection."""

from alembic import context
from sqlmodel import SQLModel

# Registers both modules' tables on the metadata.
import storage.db.event_models
import storage.db.models  # noqa: F401
from storage.ops.partitions import include_name

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `gateway db upgrade` (storage.db.migrate.upgrade)")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    include_name=include_name,
)
with context.begin_transaction():
    context.run_migrations()
