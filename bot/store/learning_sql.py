"""`LearningStore` (bot/store/learning.py) on the SQL store: votes, the chat's library,
plain-words topics, learning preferences and the fitted model. Every row hangs off the
chat's row, so one chat never reads another's votes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from bot.models import ChatRef
from bot.store import records
from bot.store.learning import LearnState, Vote
from bot.store.sqlbase import SQLBase, chat_pk_of, now, rowcount
from bot.store.tables import chat_learning, delivered, saved_papers, topics, votes
from bot.store.text import clean_text

_STATE = [
    chat_learning.c[name]
    for name in (
        "quality",
        "cadence",
        "weekly_day",
        "topic_threshold",
        "model",
        "model_votes",
        "last_weekly",
    )
]


def _state_of(values: Sequence[Any], day_in: Callable[[str], date] | None) -> LearnState:
    """`_state` of raw driver values in _STATE order; `day_in` reads SQLite's ISO days."""
    quality, cadence, weekly_day, threshold, model, model_votes, last_weekly = values
    if day_in is not None and last_weekly is not None:
        last_weekly = day_in(last_weekly)
    return LearnState(
        quality=quality,
        cadence=cadence,
        weekly_day=int(weekly_day),
        topic_threshold=None if threshold is None else float(threshold),
        model=None if model is None else bytes(model),
        model_votes=int(model_votes),
        last_weekly=last_weekly,
    )


def _state(row: Any) -> LearnState:
    return LearnState(
        quality=row["quality"],
        cadence=row["cadence"],
        weekly_day=int(row["weekly_day"]),
        topic_threshold=None if row["topic_threshold"] is None else float(row["topic_threshold"]),
        model=None if row["model"] is None else bytes(row["model"]),
        model_votes=int(row["model_votes"]),
        last_weekly=row["last_weekly"],
    )


class LearningMixin(SQLBase):
    async def set_vote(self, chat: ChatRef, user_id: str, paper_id: str, value: int) -> None:
        """The member's vote on the paper: +1, -1, or 0 to take it back. Voting again
        replaces the member's earlier vote."""
        paper, user = clean_text(paper_id), clean_text(user_id)
        async with self.transaction() as conn:
            pk = await self._ensure_chat(conn, chat)
            if value == 0:
                await conn.execute(
                    votes.delete().where(
                        votes.c.chat == pk, votes.c.paper_id == paper, votes.c.user_id == user
                    )
                )
                return
            statement = self.insert(votes).values(
                chat=pk,
                paper_id=paper,
                user_id=user,
                value=1 if value > 0 else -1,
                voted_at=now(),
            )
            await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["chat", "paper_id", "user_id"],
                    set_={
                        "value": statement.excluded.value,
                        "voted_at": statement.excluded.voted_at,
                    },
                )
            )

    async def chat_votes(self, chat: ChatRef) -> list[Vote]:
        """The chat's votes by paper (members summed), newest first; zero sums left out."""
        net = sa.func.sum(votes.c.value)
        latest = sa.func.max(votes.c.voted_at)
        query = (
            sa.select(votes.c.paper_id, net, latest)
            .where(votes.c.chat == chat_pk_of(chat))
            .group_by(votes.c.paper_id)
            .having(net != 0)
            .order_by(latest.desc())
        )
        async with self.reading() as conn:
            rows = (await conn.execute(query)).all()
        return [Vote(r[0], int(r[1]), r[2]) for r in rows]

    async def save_paper(self, chat: ChatRef, paper_id: str) -> bool:
        """Add to the chat's library; False if it was there already."""
        async with self.transaction() as conn:
            pk = await self._ensure_chat(conn, chat)
            result = await conn.execute(
                self.insert(saved_papers)
                .values(chat=pk, paper_id=clean_text(paper_id), saved_at=now())
                .on_conflict_do_nothing(index_elements=["chat", "paper_id"])
            )
            return rowcount(result) > 0

    async def unsave_paper(self, chat: ChatRef, paper_id: str) -> bool:
        async with self.transaction() as conn:
            result = await conn.execute(
                saved_papers.delete().where(
                    saved_papers.c.chat == chat_pk_of(chat),
                    saved_papers.c.paper_id == clean_text(paper_id),
                )
            )
            return rowcount(result) > 0

    async def saved_papers(self, chat: ChatRef) -> list[tuple[str, datetime]]:
        """(paper id, saved at), newest first."""
        query = (
            sa.select(saved_papers.c.paper_id, saved_papers.c.saved_at)
            .where(saved_papers.c.chat == chat_pk_of(chat))
            .order_by(saved_papers.c.saved_at.desc())
        )
        async with self.reading() as conn:
            return [(r[0], r[1]) for r in await conn.execute(query)]

    async def set_topics(self, chat: ChatRef, feed: str, items: Sequence[str]) -> None:
        """Replace the plain-words topics of the chat's subscription to `feed`."""
        feed = clean_text(feed)
        rows = [{"feed": feed, "topic": t} for t in dict.fromkeys(clean_text(t) for t in items)]
        async with self.transaction() as conn:
            pk = await self._ensure_chat(conn, chat)
            await conn.execute(topics.delete().where(topics.c.chat == pk, topics.c.feed == feed))
            if rows:
                await conn.execute(topics.insert(), [{"chat": pk, **row} for row in rows])

    async def chat_topics(self, chat: ChatRef) -> dict[str, list[str]]:
        """Topics by feed."""
        query = (
            sa.select(topics.c.feed, topics.c.topic)
            .where(topics.c.chat == chat_pk_of(chat))
            .order_by(topics.c.feed, topics.c.topic)
        )
        out: dict[str, list[str]] = {}
        async with self.reading() as conn:
            for feed, topic in await conn.execute(query):
                out.setdefault(feed, []).append(topic)
        return out

    async def get_learning(self, chat: ChatRef) -> LearnState:
        query = sa.select(*_STATE).where(chat_learning.c.chat == chat_pk_of(chat))
        async with self.reading() as conn:
            row = (await conn.execute(query)).mappings().first()
        return LearnState() if row is None else _state(row)

    async def save_learning(self, chat: ChatRef, state: LearnState) -> None:
        values = {
            "quality": state.quality,
            "cadence": state.cadence,
            "weekly_day": state.weekly_day,
            "topic_threshold": state.topic_threshold,
            "model": state.model,
            "model_votes": state.model_votes,
            "last_weekly": state.last_weekly,
            "updated_at": now(),
        }
        async with self.transaction() as conn:
            pk = await self._ensure_chat(conn, chat)
            statement = self.insert(chat_learning).values(chat=pk, **values)
            await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["chat"],
                    set_={name: statement.excluded[name] for name in values},
                )
            )

    async def anyone_learning(self) -> bool:
        query = sa.select(
            sa.or_(sa.exists().select_from(chat_learning), sa.exists().select_from(topics))
        )
        async with self.reading() as conn:
            return bool((await conn.execute(query)).scalar())

    async def learning_among(
        self, chats_: Sequence[ChatRef]
    ) -> dict[ChatRef, tuple[LearnState, dict[str, list[str]]]]:
        """State and topics of many chats at once (a delivery round); chats with neither
        are left out."""
        by_key = {records.key(c): c for c in chats_}
        found: dict[ChatRef, tuple[LearnState, dict[str, list[str]]]] = {}
        if not by_key:
            return found
        # A delivery round asks this of every due chat: two driver statements joined to the
        # chats by key (keys_join), no separate look-up of their row ids.
        join, then, params = self.keys_join(list(by_key))
        columns = ", ".join(f"l.{c.key}" for c in _STATE)
        day_in = date.fromisoformat if self.is_sqlite else None
        async with self.reading() as conn:
            states = await conn.exec_driver_sql(
                f"SELECT c.platform, c.chat_id, c.thread_id, {columns} FROM {join}"
                f" {then} chat_learning l ON l.chat = c.id",
                params,
            )
            rows: list[Any] = list(states.all())
            for row in rows:
                found[by_key[(row[0], row[1], row[2])]] = (_state_of(row[3:], day_in), {})
            words = await conn.exec_driver_sql(
                f"SELECT c.platform, c.chat_id, c.thread_id, t.feed, t.topic FROM {join}"
                f" {then} topics t ON t.chat = c.id ORDER BY t.feed, t.topic",
                params,
            )
            rows = list(words.all())
            for row in rows:
                entry = found.setdefault(by_key[(row[0], row[1], row[2])], (LearnState(), {}))
                entry[1].setdefault(row[3], []).append(row[4])
        return found

    async def recent_delivered(self, chat: ChatRef, limit: int) -> list[tuple[str, datetime]]:
        """(paper id, delivered at) of the chat's latest deliveries, newest first."""
        query = (
            sa.select(delivered.c.paper_id, delivered.c.delivered_at)
            .where(delivered.c.chat == chat_pk_of(chat))
            .order_by(delivered.c.delivered_at.desc())
            .limit(limit)
        )
        async with self.reading() as conn:
            return [(r[0], r[1]) for r in await conn.execute(query)]

    async def forget_learning(self, chat: ChatRef) -> int:
        """Delete the chat's votes and model (preferences, topics and library stay);
        returns the votes deleted."""
        async with self.transaction() as conn:
            pk = await self._chat_pk(conn, chat)
            if pk is None:
                return 0
            result = await conn.execute(votes.delete().where(votes.c.chat == pk))
            await conn.execute(
                chat_learning.update()
                .where(chat_learning.c.chat == pk)
                .values(model=None, model_votes=0, updated_at=now())
            )
            return rowcount(result)
