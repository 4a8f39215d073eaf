"""Ingest: the money rules of a reading, their set-based statements, and the group-commit writer."""
