"""Message memory: what adapters must remember about what they sent, shared by every
worker and kept across restarts (pruned with `prune_message_memory`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import sqlalchemy as sa

from bot.models import ChatRef
from bot.store import records
from bot.store.sqlbase import SQLBase, now, rowcount
from bot.store.tables import callbacks, message_papers
from bot.store.text import clean_text


class MemoryMixin(SQLBase):
    async def remember_message_papers(
        self, chat: ChatRef, message_ids: Sequence[str], paper_id: str
    ) -> None:
        """These sent messages are about `paper_id`: a reply to one asks about that paper.
        Keyed by platform, chat id and message id (a thread does not matter)."""
        ids = sorted({clean_text(mid) for mid in message_ids})  # sorted: no deadlocks
        if not ids:
            return
        platform, chat_id, _ = records.key(chat)
        stamp, paper = now(), clean_text(paper_id)
        statement = self.insert(message_papers)
        statement = statement.on_conflict_do_update(
            index_elements=["platform", "chat_id", "message_id"],
            set_={
                "paper_id": statement.excluded.paper_id,
                "created_at": statement.excluded.created_at,
            },
        )
        rows = [
            {
                "platform": platform,
                "chat_id": chat_id,
                "message_id": mid,
                "paper_id": paper,
                "created_at": stamp,
            }
            for mid in ids
        ]
        async with self.transaction() as conn:
            await conn.execute(statement, rows)

    async def message_paper(self, chat: ChatRef, message_id: str) -> str | None:
        """The paper a sent message is about, if it was remembered (and not pruned)."""
        platform, chat_id, _ = records.key(chat)
        query = sa.select(message_papers.c.paper_id).where(
            message_papers.c.platform == platform,
            message_papers.c.chat_id == chat_id,
            message_papers.c.message_id == clean_text(message_id),
        )
        async with self.reading() as conn:
            value = await conn.scalar(query)
        return None if value is None else str(value)

    async def save_callbacks(self, items: Mapping[str, str]) -> None:
        """Button data too long for the platform, by a key the caller derives from the data
        (so every worker agrees). Saving a key again refreshes its age."""
        rows = sorted((clean_text(k), clean_text(v)) for k, v in items.items())
        if not rows:
            return
        stamp = now()
        statement = self.insert(callbacks)
        statement = statement.on_conflict_do_update(
            index_elements=["key"],
            set_={"data": statement.excluded.data, "created_at": statement.excluded.created_at},
        )
        async with self.transaction() as conn:
            await conn.execute(
                statement, [{"key": k, "data": v, "created_at": stamp} for k, v in rows]
            )

    async def load_callback(self, key: str) -> str | None:
        async with self.reading() as conn:
            value = await conn.scalar(
                sa.select(callbacks.c.data).where(callbacks.c.key == clean_text(key))
            )
        return None if value is None else str(value)

    async def prune_message_memory(self, before: datetime) -> int:
        """Forget message papers and callbacks last saved before `before`; rows deleted."""
        count = 0
        async with self.transaction() as conn:
            for table in (message_papers, callbacks):
                result = await conn.execute(table.delete().where(table.c.created_at < before))
                count += rowcount(result)
        return count
