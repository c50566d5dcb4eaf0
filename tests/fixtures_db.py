"""Database fixtures: SQLite files by default, isolated PostgreSQL schemas via RELAY_TEST_DATABASE_URL."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.pool import NullPool

from storage import Store, upgrade

__all__ = ["database_url", "fresh_database_url", "store"]

ENV_VAR = "RELAY_TEST_DATABASE_URL"


class _Databases:
    """Hands out empty databases: a new SQLite file, or a new PostgreSQL schema."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_path_factory
        self._base = os.environ.get(ENV_VAR)
        self._schemas: list[str] = []

    def _admin(self, *statements: str) -> None:
        assert self._base is not None
        engine = create_engine(self._base, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                for sql in statements:
                    conn.execute(text(sql))
        finally:
            engine.dispose()

    def new(self) -> str:
        if self._base is None:
            return f"sqlite:///{self._tmp.mktemp('db') / 'relay.db'}"
        schema = f"t_{os.getpid()}_{secrets.token_hex(4)}"
        self._admin(f'CREATE SCHEMA "{schema}"')
        self._schemas.append(schema)
        # libpq "options" sets search_path on every connection, so the URL alone
        # isolates everything, including relays started in subprocesses.
        url = make_url(self._base).update_query_dict({"options": f"-csearch_path={schema}"})
        return url.render_as_string(hide_password=False)

    def drop_all(self) -> None:
        while self._schemas:
            schema = self._schemas.pop()
            # lock_timeout: a leaked idle-in-transaction connection should fail the
            # teardown loudly, not hang the suite.
            self._admin("SET lock_timeout = '10s'", f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One database shared by the whole session (not migrated; `store` migrates it)."""
    dbs = _Databases(tmp_path_factory)
    try:
        yield dbs.new()
    finally:
        dbs.drop_all()


@pytest.fixture
def fresh_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], str]]:
    """Factory: each call returns the URL of a brand-new, empty database."""
    dbs = _Databases(tmp_path_factory)
    try:
        yield dbs.new
    finally:
        dbs.drop_all()


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A Store on the session database, migrated to head. Rows from other tests are visible."""
    upgrade(database_url)
    s = Store(database_url)
    try:
        yield s
    finally:
        s.close()
