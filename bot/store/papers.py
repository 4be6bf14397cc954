"""Papers (a cache of what the sources returned) and daily feed fetches."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

import sqlalchemy as sa

from bot.models import Paper
from bot.store import records
from bot.store.sqlbase import SQLBase, chunks, now
from bot.store.tables import feed_fetches, feed_items, papers
from bot.store.text import clean_text


def _merge(column: str, kind: str, new: Any, old: Any) -> Any:
    """What a re-fetch does to a stored column: fields the new fetch lacks keep their value."""
    if kind == "max":
        return sa.case((old.is_(None), new), (new.is_(None), old), (new > old, new), else_=old)
    if kind == "text":
        return sa.case((new == "", old), else_=new)
    if kind == "list":
        # The empty list as each database keeps it ('[]' or '{}'), bound through the type.
        return sa.case((new == sa.bindparam(f"empty_{column}", [], type_=new.type), old), else_=new)
    return sa.func.coalesce(new, old)


class PapersMixin(SQLBase):
    def _upsert_papers(self) -> Any:
        statement = self.insert(papers)
        merged = {
            column: _merge(column, kind, statement.excluded[column], papers.c[column])
            for column, kind in records.PAPER_COLUMNS
            if kind != "key"
        }
        merged["fetched_at"] = statement.excluded.fetched_at
        return statement.on_conflict_do_update(index_elements=["id"], set_=merged)

    async def upsert_papers(self, items: Iterable[Paper]) -> None:
        fetched_at = now()
        rows = [records.paper_row(p, fetched_at) for p in items]
        if not rows:
            return
        async with self.transaction() as conn:
            await conn.execute(self._upsert_papers(), rows)

    async def get_paper(self, paper_id: str) -> Paper | None:
        return (await self.get_papers([paper_id])).get(paper_id)

    async def get_papers(self, paper_ids: Sequence[str]) -> dict[str, Paper]:
        wanted = list(dict.fromkeys(clean_text(pid) for pid in paper_ids))
        found: dict[str, Paper] = {}
        query = sa.select(papers).where(papers.c.id.in_(sa.bindparam("ids", expanding=True)))
        async with self.reading() as conn:
            for chunk in chunks(wanted):
                result = await conn.execute(query, {"ids": list(chunk)})
                for row in result.mappings().all():
                    found[row["id"]] = records.paper_from(row)
        return found

    async def save_feed(
        self, feed: str, day: date, announced: date | None, paper_ids: Sequence[str]
    ) -> None:
        feed = clean_text(feed)
        items = [
            {"feed": feed, "day": day, "position": position, "paper_id": pid}
            for position, pid in enumerate(clean_text(p) if p is not None else p for p in paper_ids)
        ]
        fetch = self.insert(feed_fetches).values(
            feed=feed, day=day, announced=announced, fetched_at=now()
        )
        fetch = fetch.on_conflict_do_update(
            index_elements=["feed", "day"],
            set_={"announced": fetch.excluded.announced, "fetched_at": fetch.excluded.fetched_at},
        )
        async with self.transaction() as conn:
            await conn.execute(fetch)
            await conn.execute(
                feed_items.delete().where(feed_items.c.feed == feed, feed_items.c.day == day)
            )
            if items:
                await conn.execute(feed_items.insert(), items)

    async def load_feed(self, feed: str, day: date) -> tuple[date | None, list[str]] | None:
        feed = clean_text(feed)
        async with self.reading() as conn:
            fetch = (
                await conn.execute(
                    sa.select(feed_fetches.c.announced).where(
                        feed_fetches.c.feed == feed, feed_fetches.c.day == day
                    )
                )
            ).first()
            if fetch is None:
                return None
            ids = await conn.scalars(
                sa.select(feed_items.c.paper_id)
                .where(feed_items.c.feed == feed, feed_items.c.day == day)
                .order_by(feed_items.c.position)
            )
            return fetch[0], list(ids)
