"""`LearningStore` on PostgreSQL: a mixin of `PostgresStore` (it uses its pool)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.models import ChatRef
from bot.store import clean_text, records, to_utc
from bot.store.learning import LearnState, Vote

if TYPE_CHECKING:
    import asyncpg

_STATE = "quality, cadence, weekly_day, topic_threshold, model, model_votes, last_weekly"
_PK = "(SELECT id FROM chats WHERE platform = $1 AND chat_id = $2 AND thread_id = $3)"


def _state(row: Any, offset: int = 0) -> LearnState:
    values = list(row.values())[offset:]
    return LearnState(
        quality=values[0],
        cadence=values[1],
        weekly_day=int(values[2]),
        topic_threshold=None if values[3] is None else float(values[3]),
        model=None if values[4] is None else bytes(values[4]),
        model_votes=int(values[5]),
        last_weekly=values[6],
    )


class PostgresLearning:
    """Needs the host store's `transaction`, `_conn` and `_ensure_chat`."""

    if TYPE_CHECKING:

        def transaction(self) -> AbstractAsyncContextManager[asyncpg.Connection]: ...
        def _conn(self) -> AbstractAsyncContextManager[asyncpg.Connection]: ...
        async def _ensure_chat(self, conn: asyncpg.Connection, chat: ChatRef) -> int: ...

    async def set_vote(self, chat: ChatRef, user_id: str, paper_id: str, value: int) -> None:
        async with self.transaction() as conn:
            pk = await self._ensure_chat(conn, chat)
            if value == 0:
                await conn.execute(
                    "DELETE FROM votes WHERE chat = $1 AND paper_id = $2 AND user_id = $3",
                    pk,
                    clean_text(paper_id),
                    clean_text(user_id),
                )
                return
            await conn.execute(
                "INSERT INTO votes (chat, paper_id, user_id, value) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (chat, paper_id, user_id) DO UPDATE SET"
                " value = excluded.value, voted_at = now()",
                pk,
                clean_text(paper_id),
                clean_text(user_id),
                1 if value > 0 else -1,
            )

    async def chat_votes(self, chat: ChatRef) -> list[Vote]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT paper_id, SUM(value) AS net, MAX(voted_at) AS at FROM votes"
                f" WHERE chat = {_PK} GROUP BY paper_id HAVING SUM(value) != 0"
                " ORDER BY MAX(voted_at) DESC",
                *records.key(chat),
            )
        return [Vote(r["paper_id"], int(r["net"]), to_utc(r["at"])) for r in rows]

    async def save_paper(self, chat: ChatRef, paper_id: str) -> bool:
        async with self.transaction() as conn:
            pk = await self._ensure_chat(conn, chat)
            done = await conn.fetchval(
                "INSERT INTO saved_papers (chat, paper_id) VALUES ($1, $2)"
                " ON CONFLICT (chat, paper_id) DO NOTHING RETURNING 1",
                pk,
                clean_text(paper_id),
            )
            return done is not None

    async def unsave_paper(self, chat: ChatRef, paper_id: str) -> bool:
        async with self._conn() as conn:
            done = await conn.fetchval(
                f"DELETE FROM saved_papers WHERE chat = {_PK} AND paper_id = $4 RETURNING 1",
                *records.key(chat),
                clean_text(paper_id),
            )
        return done is not None

    async def saved_papers(self, chat: ChatRef) -> list[tuple[str, datetime]]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"SELECT paper_id, saved_at FROM saved_papers WHERE chat = {_PK}"
                " ORDER BY saved_at DESC",
                *records.key(chat),
            )
        return [(r["paper_id"], to_utc(r["saved_at"])) for r in rows]

    async def set_topics(self, chat: ChatRef, feed: str, topics: Sequence[str]) -> None:
        async with self.transaction() as conn:
            pk = await self._ensure_chat(conn, chat)
            await conn.execute("DELETE FROM topics WHERE chat = $1 AND feed = $2", pk, feed)
            await conn.executemany(
                "INSERT INTO topics (chat, feed, topic) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                [(pk, clean_text(feed), clean_text(t)) for t in topics],
            )

    async def chat_topics(self, chat: ChatRef) -> dict[str, list[str]]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"SELECT feed, topic FROM topics WHERE chat = {_PK} ORDER BY feed, topic",
                *records.key(chat),
            )
        out: dict[str, list[str]] = {}
        for row in rows:
            out.setdefault(row["feed"], []).append(row["topic"])
        return out

    async def get_learning(self, chat: ChatRef) -> LearnState:
        async with self._conn() as conn:
            row = await conn.fetchrow(
                f"SELECT {_STATE} FROM chat_learning WHERE chat = {_PK}", *records.key(chat)
            )
        return LearnState() if row is None else _state(row)

    async def save_learning(self, chat: ChatRef, state: LearnState) -> None:
        async with self.transaction() as conn:
            pk = await self._ensure_chat(conn, chat)
            await conn.execute(
                f"INSERT INTO chat_learning (chat, {_STATE})"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (chat) DO UPDATE SET"
                " quality = excluded.quality, cadence = excluded.cadence,"
                " weekly_day = excluded.weekly_day, topic_threshold = excluded.topic_threshold,"
                " model = excluded.model, model_votes = excluded.model_votes,"
                " last_weekly = excluded.last_weekly, updated_at = now()",
                pk,
                state.quality,
                state.cadence,
                state.weekly_day,
                state.topic_threshold,
                state.model,
                state.model_votes,
                state.last_weekly,
            )

    async def learning_among(
        self, chats: Sequence[ChatRef]
    ) -> dict[ChatRef, tuple[LearnState, dict[str, list[str]]]]:
        by_key = {records.key(c): c for c in chats}
        if not by_key:
            return {}
        columns = [list(col) for col in zip(*by_key, strict=True)]
        keys = (
            "FROM unnest($1::text[], $2::text[], $3::text[]) AS k(p, c, t)"
            " JOIN chats ch ON ch.platform = k.p AND ch.chat_id = k.c AND ch.thread_id = k.t"
        )
        cols = ", ".join(f"l.{c.strip()}" for c in _STATE.split(","))
        async with self._conn() as conn:
            states = await conn.fetch(
                f"SELECT ch.platform, ch.chat_id, ch.thread_id, {cols} {keys}"
                " JOIN chat_learning l ON l.chat = ch.id",
                *columns,
            )
            topics = await conn.fetch(
                f"SELECT ch.platform, ch.chat_id, ch.thread_id, t.feed, t.topic {keys}"
                " JOIN topics t ON t.chat = ch.id ORDER BY t.feed, t.topic",
                *columns,
            )
        found: dict[ChatRef, tuple[LearnState, dict[str, list[str]]]] = {}
        for row in states:
            found[by_key[(row[0], row[1], row[2])]] = (_state(row, 3), {})
        for row in topics:
            entry = found.setdefault(by_key[(row[0], row[1], row[2])], (LearnState(), {}))
            entry[1].setdefault(row[3], []).append(row[4])
        return found

    async def recent_delivered(self, chat: ChatRef, limit: int) -> list[tuple[str, datetime]]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"SELECT paper_id, delivered_at FROM delivered WHERE chat = {_PK}"
                " ORDER BY delivered_at DESC LIMIT $4",
                *records.key(chat),
                limit,
            )
        return [(r["paper_id"], to_utc(r["delivered_at"])) for r in rows]

    async def forget_learning(self, chat: ChatRef) -> int:
        async with self.transaction() as conn:
            deleted = await conn.fetch(
                f"DELETE FROM votes WHERE chat = {_PK} RETURNING 1", *records.key(chat)
            )
            await conn.execute(
                "UPDATE chat_learning SET model = NULL, model_votes = 0, updated_at = now()"
                f" WHERE chat = {_PK}",
                *records.key(chat),
            )
            return len(deleted)
