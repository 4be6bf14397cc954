"""Column types with one meaning on both databases, kept as each has always kept them.

PostgreSQL has the native types (timestamptz, date, text[]). SQLite keeps an instant as
fixed-width UTC ISO text ('2025-06-04T09:00:00.000000+00:00', so comparing the text
compares the instants), a day as ISO text and a list of strings as JSON text.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from bot.store.text import clean_text, to_utc


def stamp(moment: datetime) -> str:
    """An instant as SQLite keeps it."""
    return to_utc(moment).astimezone(UTC).isoformat(timespec="microseconds")


@functools.lru_cache(maxsize=4096)
def instant(text: str) -> datetime:
    # Cached: a scheduler round reads the same few due instants for thousands of chats.
    return to_utc(datetime.fromisoformat(text))


class _SQLiteInstant(TypeDecorator[datetime]):
    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> str | None:
        return None if value is None else stamp(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else instant(value)


class _SQLiteDay(TypeDecorator[date]):
    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: date | None, dialect: Dialect) -> str | None:
        return None if value is None else value.isoformat()

    def process_result_value(self, value: Any, dialect: Dialect) -> date | None:
        return None if value is None else date.fromisoformat(value)


def json_list(values: list[str]) -> str:
    return json.dumps([clean_text(v) for v in values], ensure_ascii=False)


class _SQLiteList(TypeDecorator[list[str]]):
    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: list[str] | None, dialect: Dialect) -> str | None:
        return None if value is None else json_list(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> list[str] | None:
        # Most subscriptions have no filters: skip the JSON parser for those.
        if value is None:
            return None
        return [] if value == "[]" else list(json.loads(value))


class _PGList(TypeDecorator[list[str]]):
    impl = postgresql.ARRAY(sa.Text)
    cache_ok = True

    def process_bind_param(self, value: list[str] | None, dialect: Dialect) -> list[str] | None:
        return None if value is None else [clean_text(v) for v in value]


Instant = sa.DateTime(timezone=True).with_variant(_SQLiteInstant(), "sqlite")
Day = sa.Date().with_variant(_SQLiteDay(), "sqlite")
TextList = _PGList().with_variant(_SQLiteList(), "sqlite")
# Row ids: bigint identity on PostgreSQL, SQLite's INTEGER PRIMARY KEY (the rowid).
RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _sqlite_list(value: str) -> list[str]:
    return [] if value == "[]" else list(json.loads(value))


def raw_decoders(is_sqlite: bool) -> tuple[Callable[[Any], datetime], Callable[[Any], list[str]]]:
    """(instant, list) readers of raw driver values, for hot reads that skip SQLAlchemy's
    per-value result processing (see `raw`)."""
    if is_sqlite:
        return instant, _sqlite_list
    return to_utc, list


def raw(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """The column as the driver returns it: no result processor runs on it."""
    return sa.type_coerce(column, sa.types.NullType()).label(column.key)
