"""The database for a CLI command: migrated, opened and closed, every storage failure as one line."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from storage import Store

__all__ = ["migrate", "open_store", "storage_error"]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def storage_error(exc: BaseException, opening: bool = False) -> click.ClickException:
    """One line for a failed database call: the key to look at and what the database said (never the URL,
    which may hold a password)."""
    text = _first_line(exc)
    if "database is locked" in text:
        # SQLite's busy timeout ran out: another process (a relay, an import) held the write lock
        return click.ClickException("storage.url: the database is busy: another process has held its write "
                                    "lock for over 5 s; try again")
    if "Can't locate revision" in text:
        from storage.migrate import head_revision

        return click.ClickException(f"storage.url: the database schema is newer than this relay ({text.split(' by ')[-1]}, "
                                    f"this version knows up to {head_revision()!r}): run the newer consent-relay")
    where = "cannot open the database" if opening else "storage"
    return click.ClickException(f"storage.url: {where}: {type(exc).__name__}: {text}")


def migrate(config: Any) -> None:
    """Bring the schema up to date (a read when it already is), or fail in one line."""
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        # importing alembic and a no-op upgrade log a dozen INFO lines; an admin command prints its answer
        logging.getLogger("alembic").setLevel(logging.WARNING)
    from storage.migrate import upgrade

    try:
        upgrade(config.storage_url)
    except Exception as exc:  # unreachable, refusing, locked or newer database: one line naming the key
        raise storage_error(exc, opening=True) from None


@contextmanager
def open_store(config: Any, workers: int = 1) -> Iterator[Store]:
    """Migrate, open and always close the Store; storage failures inside the block become one line."""
    from sqlalchemy.exc import SQLAlchemyError

    from storage import Store

    migrate(config)
    store = Store(config.storage_url, workers=workers)
    try:
        yield store
    except SQLAlchemyError as exc:
        raise storage_error(exc) from None
    finally:
        store.close()
