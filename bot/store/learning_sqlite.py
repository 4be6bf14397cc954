"""`LearningStore` on SQLite: a mixin of `SQLiteStore` (it uses its connection and lock)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from bot.models import ChatRef
from bot.store import clean_text, records, to_utc
from bot.store.learning import LearnState, Vote

if TYPE_CHECKING:
    import aiosqlite

_STATE = "quality, cadence, weekly_day, topic_threshold, model, model_votes, last_weekly"


def _stamp() -> str:
    """Now, as the SQLite store writes instants (fixed-width UTC ISO text)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _instant(text: str) -> datetime:
    return to_utc(datetime.fromisoformat(text))


def _state(row: Sequence[Any]) -> LearnState:
    return LearnState(
        quality=row[0],
        cadence=row[1],
        weekly_day=int(row[2]),
        topic_threshold=None if row[3] is None else float(row[3]),
        model=None if row[4] is None else bytes(row[4]),
        model_votes=int(row[5]),
        last_weekly=None if row[6] is None else date.fromisoformat(row[6]),
    )


class SQLiteLearning:
    """Needs the host store's `transaction`, `_reading`, `_chat_pk` and `_ensure_chat`."""

    if TYPE_CHECKING:

        def transaction(self) -> AbstractAsyncContextManager[aiosqlite.Connection]: ...
        def _reading(self) -> AbstractAsyncContextManager[aiosqlite.Connection]: ...
        async def _chat_pk(self, chat: ChatRef) -> int | None: ...
        async def _ensure_chat(self, chat: ChatRef) -> int: ...

    async def _rows(self, chat: ChatRef, sql: str) -> AsyncIterator[Any]:
        async with self._reading() as db:
            pk = await self._chat_pk(chat)
            if pk is None:
                return
            async with db.execute(sql, (pk,)) as cur:
                for row in await cur.fetchall():
                    yield row

    async def set_vote(self, chat: ChatRef, user_id: str, paper_id: str, value: int) -> None:
        async with self.transaction() as db:
            pk = await self._ensure_chat(chat)
            if value == 0:
                await db.execute(
                    "DELETE FROM votes WHERE chat = ? AND paper_id = ? AND user_id = ?",
                    (pk, clean_text(paper_id), clean_text(user_id)),
                )
                return
            await db.execute(
                "INSERT INTO votes (chat, paper_id, user_id, value, voted_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (chat, paper_id, user_id) DO UPDATE SET"
                " value = excluded.value, voted_at = excluded.voted_at",
                (pk, clean_text(paper_id), clean_text(user_id), 1 if value > 0 else -1, _stamp()),
            )

    async def chat_votes(self, chat: ChatRef) -> list[Vote]:
        sql = (
            "SELECT paper_id, SUM(value), MAX(voted_at) FROM votes WHERE chat = ?"
            " GROUP BY paper_id HAVING SUM(value) != 0 ORDER BY MAX(voted_at) DESC"
        )
        return [Vote(r[0], int(r[1]), _instant(r[2])) async for r in self._rows(chat, sql)]

    async def save_paper(self, chat: ChatRef, paper_id: str) -> bool:
        async with self.transaction() as db:
            pk = await self._ensure_chat(chat)
            cur = await db.execute(
                "INSERT INTO saved_papers (chat, paper_id, saved_at) VALUES (?, ?, ?)"
                " ON CONFLICT (chat, paper_id) DO NOTHING",
                (pk, clean_text(paper_id), _stamp()),
            )
            return cur.rowcount > 0

    async def unsave_paper(self, chat: ChatRef, paper_id: str) -> bool:
        async with self.transaction() as db:
            pk = await self._chat_pk(chat)
            if pk is None:
                return False
            cur = await db.execute(
                "DELETE FROM saved_papers WHERE chat = ? AND paper_id = ?",
                (pk, clean_text(paper_id)),
            )
            return cur.rowcount > 0

    async def saved_papers(self, chat: ChatRef) -> list[tuple[str, datetime]]:
        sql = "SELECT paper_id, saved_at FROM saved_papers WHERE chat = ? ORDER BY saved_at DESC"
        return [(r[0], _instant(r[1])) async for r in self._rows(chat, sql)]

    async def set_topics(self, chat: ChatRef, feed: str, topics: Sequence[str]) -> None:
        async with self.transaction() as db:
            pk = await self._ensure_chat(chat)
            await db.execute("DELETE FROM topics WHERE chat = ? AND feed = ?", (pk, feed))
            await db.executemany(
                "INSERT INTO topics (chat, feed, topic) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                [(pk, clean_text(feed), clean_text(t)) for t in topics],
            )

    async def chat_topics(self, chat: ChatRef) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        sql = "SELECT feed, topic FROM topics WHERE chat = ? ORDER BY feed, topic"
        async for row in self._rows(chat, sql):
            out.setdefault(row[0], []).append(row[1])
        return out

    async def get_learning(self, chat: ChatRef) -> LearnState:
        sql = f"SELECT {_STATE} FROM chat_learning WHERE chat = ?"
        async for row in self._rows(chat, sql):
            return _state(row)
        return LearnState()

    async def save_learning(self, chat: ChatRef, state: LearnState) -> None:
        async with self.transaction() as db:
            pk = await self._ensure_chat(chat)
            await db.execute(
                f"INSERT INTO chat_learning (chat, {_STATE}, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (chat) DO UPDATE SET"
                " quality = excluded.quality, cadence = excluded.cadence,"
                " weekly_day = excluded.weekly_day, topic_threshold = excluded.topic_threshold,"
                " model = excluded.model, model_votes = excluded.model_votes,"
                " last_weekly = excluded.last_weekly, updated_at = excluded.updated_at",
                (
                    pk,
                    state.quality,
                    state.cadence,
                    state.weekly_day,
                    state.topic_threshold,
                    state.model,
                    state.model_votes,
                    state.last_weekly.isoformat() if state.last_weekly else None,
                    _stamp(),
                ),
            )

    async def learning_among(
        self, chats: Sequence[ChatRef]
    ) -> dict[ChatRef, tuple[LearnState, dict[str, list[str]]]]:
        by_key = {records.key(c): c for c in chats}
        keys = list(by_key)
        found: dict[ChatRef, tuple[LearnState, dict[str, list[str]]]] = {}
        step = 300  # 3 parameters per chat stays under SQLite's 999
        async with self._reading() as db:
            for start in range(0, len(keys), step):
                chunk = keys[start : start + step]
                rows_sql = ", ".join("(?, ?, ?)" for _ in chunk)
                flat = [v for k in chunk for v in k]
                join = (
                    f"FROM (VALUES {rows_sql}) AS k CROSS JOIN chats c ON c.platform = k.column1"
                    " AND c.chat_id = k.column2 AND c.thread_id = k.column3"
                )
                cols = ", ".join(f"l.{c.strip()}" for c in _STATE.split(","))
                async with db.execute(
                    f"SELECT c.platform, c.chat_id, c.thread_id, {cols} {join}"
                    " CROSS JOIN chat_learning l ON l.chat = c.id",
                    flat,
                ) as cur:
                    for row in await cur.fetchall():
                        found[by_key[(row[0], row[1], row[2])]] = (_state(row[3:]), {})
                async with db.execute(
                    f"SELECT c.platform, c.chat_id, c.thread_id, t.feed, t.topic {join}"
                    " CROSS JOIN topics t ON t.chat = c.id ORDER BY t.feed, t.topic",
                    flat,
                ) as cur:
                    for row in await cur.fetchall():
                        chat = by_key[(row[0], row[1], row[2])]
                        entry = found.setdefault(chat, (LearnState(), {}))
                        entry[1].setdefault(row[3], []).append(row[4])
        return found

    async def recent_delivered(self, chat: ChatRef, limit: int) -> list[tuple[str, datetime]]:
        sql = (
            "SELECT paper_id, delivered_at FROM delivered WHERE chat = ?"
            f" ORDER BY delivered_at DESC LIMIT {int(limit)}"
        )
        return [(r[0], _instant(r[1])) async for r in self._rows(chat, sql)]

    async def forget_learning(self, chat: ChatRef) -> int:
        async with self.transaction() as db:
            pk = await self._chat_pk(chat)
            if pk is None:
                return 0
            cur = await db.execute("DELETE FROM votes WHERE chat = ?", (pk,))
            await db.execute(
                "UPDATE chat_learning SET model = NULL, model_votes = 0, updated_at = ?"
                " WHERE chat = ?",
                (_stamp(), pk),
            )
            return max(cur.rowcount, 0)
