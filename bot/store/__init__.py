"""Storage: one `Store` protocol, SQLite and PostgreSQL behind it, numbered SQL migrations.

`open_store(url)` picks the backend from the database URL; call `await store.open()` next.
Helpers shared by both backends (migration loading, text cleaning) live here too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Literal
from urllib.parse import unquote

from bot.store.base import Store

__all__ = [
    "Migration",
    "Store",
    "clean_text",
    "load_migrations",
    "open_store",
    "to_utc",
    "weekdays_from_text",
    "weekdays_to_text",
]

Dialect = Literal["sqlite", "postgres"]

_MIGRATION_NAME = re.compile(r"^(\d+)_([A-Za-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(dialect: Dialect) -> list[Migration]:
    """Every `NNNN_name.sql` in the dialect's package-data folder, in version order.

    Blocking (reads package files): call it through `asyncio.to_thread`.
    """
    folder = resources.files("bot.store").joinpath("migrations", dialect)
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match is None:
            continue  # READMEs, editor droppings
        version = int(match.group(1))
        if version in found:
            # Two files claiming one number would apply in an arbitrary order.
            raise RuntimeError(
                f"duplicate migration number {version}: {found[version].name} and {entry.name}"
            )
        found[version] = Migration(version, entry.name, entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def clean_text(value: str) -> str:
    """Make a string storable everywhere: PostgreSQL rejects NUL, UTF-8 rejects lone surrogates.

    Both only come from broken upstream data and carry no meaning, so they are dropped or
    replaced rather than failing a whole batch.
    """
    if "\x00" in value:
        value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def to_utc(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC, so both backends return the same aware values."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def weekdays_to_text(days: frozenset[int] | None) -> str | None:
    """{4, 0, 2} -> '0,2,4'; None (every day) stays None. Rejects impossible days."""
    if days is None:
        return None
    if any(isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= 6 for d in days):
        raise ValueError(f"weekdays must be 0 (Monday) .. 6 (Sunday), got {sorted(days)}")
    return ",".join(str(d) for d in sorted(days))


def weekdays_from_text(text: str | None) -> frozenset[int] | None:
    if text is None:
        return None
    return frozenset(int(d) for d in text.split(",") if d)


def open_store(database_url: str) -> Store:
    """A store for `database_url`, not yet opened.

    `sqlite:///relative.db`, `sqlite:////abs/path.db`, `sqlite:///:memory:` (or
    `sqlite://:memory:`), `postgresql://…` / `postgres://…`.
    """
    scheme, sep, rest = database_url.strip().partition("://")
    scheme = scheme.lower()
    # Error messages name the scheme only: the rest of the URL may hold a password.
    if not sep:
        raise ValueError("database URL must look like sqlite:///path.db or postgresql://…")
    if scheme == "sqlite":
        return _open_sqlite(rest)
    if scheme in ("postgresql", "postgres"):
        try:
            from bot.store.postgres import PostgresStore
        except ModuleNotFoundError as exc:
            if exc.name != "bot.store.postgres":
                raise
            raise RuntimeError("PostgreSQL support is not available in this build") from exc
        return PostgresStore(database_url.strip())
    raise ValueError(
        f"unsupported database URL scheme {scheme!r}: use sqlite:///path.db or postgresql://…"
    )


def _open_sqlite(rest: str) -> Store:
    from bot.store.sqlite import SQLiteStore

    if "?" in rest or "#" in rest:
        raise ValueError("sqlite URLs take no query parameters: use sqlite:///path.db")
    if rest == ":memory:":
        return SQLiteStore(":memory:")
    host, slash, path = rest.partition("/")
    if host or not slash:
        raise ValueError(
            "sqlite URL must be sqlite:///relative.db or sqlite:////absolute/path.db (no host)"
        )
    path = unquote(path)
    if not path:
        raise ValueError("sqlite URL has no database path: use sqlite:///paperboy.db")
    return SQLiteStore(path)
