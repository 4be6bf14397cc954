"""Storage: one `Store` protocol, one SQL implementation (SQLAlchemy Core) for SQLite and
PostgreSQL, its schema migrations written once (Alembic, bot/store/migrations).

`open_store(url)` makes a store from the database URL; call `await store.open()` next.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import unquote

from bot.store.base import Store
from bot.store.text import clean_text, to_utc, weekdays_from_text, weekdays_to_text

if TYPE_CHECKING:
    from bot.store.sql import SQLStore

__all__ = [
    "Store",
    "clean_text",
    "open_store",
    "to_utc",
    "weekdays_from_text",
    "weekdays_to_text",
]


def open_store(database_url: str, *, pool: int = 10) -> SQLStore:
    """A store for `database_url`, not yet opened.

    `sqlite:///relative.db`, `sqlite:////abs/path.db`, `sqlite:///:memory:` (or
    `sqlite://:memory:`), `postgresql://…` / `postgres://…` (`pool`: its connections).
    """
    from bot.store.sql import SQLStore

    scheme, sep, rest = database_url.strip().partition("://")
    scheme = scheme.lower()
    # Error messages name the scheme only: the rest of the URL may hold a password.
    if not sep:
        raise ValueError("database URL must look like sqlite:///path.db or postgresql://…")
    if scheme == "sqlite":
        return SQLStore(sqlite_path=_sqlite_path(rest))
    if scheme in ("postgresql", "postgres"):
        return SQLStore(dsn=database_url.strip(), pool=pool)
    raise ValueError(
        f"unsupported database URL scheme {scheme!r}: use sqlite:///path.db or postgresql://…"
    )


def _sqlite_path(rest: str) -> str:
    if "?" in rest or "#" in rest:
        raise ValueError("sqlite URLs take no query parameters: use sqlite:///path.db")
    if rest == ":memory:":
        return ":memory:"
    host, slash, path = rest.partition("/")
    if host or not slash:
        raise ValueError(
            "sqlite URL must be sqlite:///relative.db or sqlite:////absolute/path.db (no host)"
        )
    path = unquote(path)
    if not path:
        raise ValueError("sqlite URL has no database path: use sqlite:///paperboy.db")
    return path
