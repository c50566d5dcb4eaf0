"""Run the bundled Alembic migrations programmatically (no alembic.ini on disk)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, text

from storage.engine import make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Arbitrary constant shared by every relay process: serialises concurrent upgrades on PostgreSQL.
_PG_LOCK_KEY = 0x636F6E73656E74  # "consent"


def _config(connection: Connection) -> Config:
    cfg = Config()  # no file: nothing on disk to find, and no logging fileConfig
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["connection"] = connection
    return cfg


def _run_upgrade(conn: Connection, revision: str) -> None:
    """Upgrade to `revision` in one transaction that excludes other migrating processes."""
    if conn.dialect.name == "sqlite":
        # Batch mode recreates tables; with foreign keys on, dropping the old copy
        # would cascade deletes. The pragma is ignored inside a transaction, so set
        # it first, and check integrity ourselves before committing.
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        conn.commit()
        try:
            # IMMEDIATE takes the write lock now, so two starting relays queue up
            # (busy_timeout) instead of both creating tables; DDL joins the transaction.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            command.upgrade(_config(conn), revision)
            bad = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
            if bad:
                raise RuntimeError(f"migration left foreign key violations: {bad[:5]}")
            conn.commit()
        finally:
            conn.rollback()
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            conn.commit()
    else:
        with conn.begin():
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
            command.upgrade(_config(conn), revision)


def upgrade(url_or_engine: str | Engine, revision: str = "head") -> None:
    """Bring the database to the newest revision; a no-op when it is already there.

    An older `revision` is for tests: they fill a database as an older release left it, then
    check what the later migrations make of it.
    """
    engine = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        if revision == "head" and current_revision(engine) == head_revision():
            # a plain read: on SQLite the upgrade's BEGIN IMMEDIATE would wait for (and, after the
            # busy timeout, fail on) any writer, so read-only admin commands failed while a relay
            # or an import held the write lock
            return
        with engine.connect() as conn:
            _run_upgrade(conn, revision)
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@lru_cache(maxsize=1)
def head_revision() -> str:
    """The newest migration shipped with this version."""
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head
