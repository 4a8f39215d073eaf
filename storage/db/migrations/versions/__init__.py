"""Alembic revisions, one file each, numbered in chain order (0001 is the first, the highest is the head).

A revision's id (its `revision` string, stored in deployed databases' `alembic_version`) keeps the
name it was released with, so some ids carry an older number than their file: `0008_partitions.py`
is revision `0007_partitions`. New revisions take the file's number as their id. A migration is
frozen code: it imports only Alembic, SQLAlchemy and the column types of `storage.db.types`.
"""
