"""What every part of the SQL store shares: the chat row lookups and the dialect's upsert."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import TypeDecorator

from bot.models import ChatRef
from bot.store import records
from bot.store.engine import Database
from bot.store.tables import chats

ChatKey = tuple[str, str, str]

# Well under SQLite's bound-parameter limit, which is 999 on older builds.
CHUNK = 500


class _JSONList(TypeDecorator[list[Any]]):
    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: list[Any] | None, dialect: Dialect) -> str | None:
        return None if value is None else json.dumps(value)


# Chats by (platform, chat_id, thread_id) keys bound as one JSON list of 3-lists (SQLite).
SQLITE_KEYS_JOIN = (
    "json_each(?) AS k CROSS JOIN chats c ON c.platform = json_extract(k.value, '$[0]')"
    " AND c.chat_id = json_extract(k.value, '$[1]')"
    " AND c.thread_id = json_extract(k.value, '$[2]')"
)


def now() -> datetime:
    return datetime.now(UTC)


def chat_is(chat: ChatRef, table: sa.Table = chats) -> sa.ColumnElement[bool]:
    platform, chat_id, thread_id = records.key(chat)
    return sa.and_(
        table.c.platform == platform, table.c.chat_id == chat_id, table.c.thread_id == thread_id
    )


def chat_pk_of(chat: ChatRef) -> sa.ScalarSelect[Any]:
    """The chat's row id, as a subquery."""
    return sa.select(chats.c.id).where(chat_is(chat)).scalar_subquery()


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def rowcount(result: Any) -> int:
    return max(int(result.rowcount), 0)


class SQLBase(Database):
    def among(self, column: sa.ColumnElement[Any], name: str) -> sa.ColumnElement[bool]:
        """`column IN (the list bound as name)`, the list as ONE parameter (one cached
        statement whatever its length, no parameter limit): an array on PostgreSQL, JSON
        unpacked by json_each on SQLite."""
        if self.is_sqlite:
            values = sa.func.json_each(sa.bindparam(name, type_=_JSONList())).table_valued("value")
            return column.in_(sa.select(values.c.value))
        return column == sa.any_(sa.bindparam(name, type_=postgresql.ARRAY(column.type)))

    def insert(self, table: sa.Table) -> Any:
        """INSERT with the dialect's ON CONFLICT (`on_conflict_do_nothing/_update`)."""
        if self.is_sqlite:
            return sqlite.insert(table)
        return postgresql.insert(table)

    async def _chat_pk(self, conn: AsyncConnection, chat: ChatRef) -> int | None:
        pk = await conn.scalar(sa.select(chats.c.id).where(chat_is(chat)))
        return None if pk is None else int(pk)

    async def _ensure_chat(self, conn: AsyncConnection, chat: ChatRef) -> int:
        """The chat's row id, creating the row with the schema's default settings."""
        platform, chat_id, thread_id = records.key(chat)
        stamp = now()
        await conn.execute(
            self.insert(chats)
            .values(
                platform=platform,
                chat_id=chat_id,
                thread_id=thread_id,
                created_at=stamp,
                updated_at=stamp,
            )
            .on_conflict_do_nothing(index_elements=["platform", "chat_id", "thread_id"])
        )
        # Committed a moment ago by a concurrent transaction, perhaps: READ COMMITTED lets
        # this fresh statement see it.
        pk = await self._chat_pk(conn, chat)
        assert pk is not None
        return pk

    async def _chat_pks(self, conn: AsyncConnection, keys: Sequence[ChatKey]) -> dict[ChatKey, int]:
        """Row ids of many chats by key, a statement per chunk (or one, on PostgreSQL)."""
        keys = list(dict.fromkeys(keys))
        pks: dict[ChatKey, int] = {}
        if not keys:
            return pks
        if not self.is_sqlite:
            # Hot path (a scheduler round): one statement over arrays, however many chats.
            result = await conn.exec_driver_sql(
                "SELECT c.id, c.platform, c.chat_id, c.thread_id FROM unnest($1::text[],"
                " $2::text[], $3::text[]) AS k(platform, chat_id, thread_id) JOIN chats c"
                " ON c.platform = k.platform AND c.chat_id = k.chat_id"
                " AND c.thread_id = k.thread_id",
                ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]),
            )
            found: list[Any] = list(result.all())
            return {(r[1], r[2], r[3]): int(r[0]) for r in found}
        # The keys as one JSON parameter; CROSS JOIN fixes the join order: each key looked
        # up by the unique index.
        result = await conn.exec_driver_sql(
            f"SELECT c.id, c.platform, c.chat_id, c.thread_id FROM {SQLITE_KEYS_JOIN}",
            (json.dumps(keys),),
        )
        rows: list[Any] = list(result.all())
        for r in rows:
            pks[(r[1], r[2], r[3])] = int(r[0])
        return pks
