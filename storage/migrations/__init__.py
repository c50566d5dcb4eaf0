"""Alembic migration environment for the storage package."""
