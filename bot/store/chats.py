"""Chats, their subscriptions, and which papers each has been sent."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import sqlalchemy as sa

from bot.models import ChatRef, ChatSettings, Subscription
from bot.store import records
from bot.store.sqlbase import SQLBase, chat_is, chat_pk_of, chunks, now, rowcount
from bot.store.tables import chats, delivered, outbox, subscriptions
from bot.store.text import clean_text

_SETTINGS = [chats.c[name] for name in records.SETTINGS_COLUMNS]
_SUBSCRIPTION = [
    subscriptions.c[name] for name in ("id", "feed", "keywords", "exclude", "authors", "created_at")
]


class ChatsMixin(SQLBase):
    async def get_chat(self, chat: ChatRef) -> ChatSettings | None:
        async with self.reading() as conn:
            row = (await conn.execute(sa.select(*_SETTINGS).where(chat_is(chat)))).first()
        return None if row is None else records.settings_from(chat, row._mapping)

    async def save_chat(self, settings: ChatSettings) -> None:
        """Insert or update a chat's settings. An existing chat's `active` flag is left as
        stored: only `set_chat_active` changes it, so saving settings read before a
        delivery paused the chat cannot switch it back on (nor a stale copy off)."""
        values = records.settings_row(settings)  # validates before anything is written
        platform, chat_id, thread_id = records.key(settings.chat)
        stamp = now()
        statement = self.insert(chats).values(
            platform=platform,
            chat_id=chat_id,
            thread_id=thread_id,
            created_at=stamp,
            updated_at=stamp,
            **values,
        )
        changed = {name: statement.excluded[name] for name in values if name != "active"}
        changed["updated_at"] = statement.excluded.updated_at
        async with self.transaction() as conn:
            await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["platform", "chat_id", "thread_id"], set_=changed
                )
            )

    async def set_chat_active(self, chat: ChatRef, active: bool) -> None:
        """Flip the flag of a known chat; an unknown chat stays unknown (nothing to pause)."""
        async with self.transaction() as conn:
            await conn.execute(
                chats.update().where(chat_is(chat)).values(active=active, updated_at=now())
            )

    async def reactivate_chats(self, platform: str, chat_ids: Sequence[str]) -> list[ChatRef]:
        """Switch back on the paused chats among `chat_ids`; returns the ones it switched."""
        out: list[ChatRef] = []
        ids = list(dict.fromkeys(chat_ids))
        async with self.transaction() as conn:
            for chunk in chunks(ids):
                result = await conn.execute(
                    chats.update()
                    .where(chats.c.platform == platform, sa.not_(chats.c.active))
                    .where(chats.c.chat_id.in_(chunk))
                    .values(active=True, updated_at=now())
                    .returning(chats.c.chat_id, chats.c.thread_id)
                )
                out += [ChatRef(platform, row[0], row[1] or None) for row in result]
        return out

    async def migrate_chat(self, old: ChatRef, new: ChatRef) -> None:
        """Move everything from `old` to `new`.

        If `new` already has a row (a command arrived under the new id first), the two merge:
        the old chat's settings win (they are the ones people configured), subscriptions are
        united with the new chat's filters winning on a shared feed, and delivered history is
        united so nothing is sent twice. The old row is then deleted.
        """
        if records.key(old) == records.key(new):  # None and '' are the same thread
            return
        lock = not self.is_sqlite  # SQLite's write lock already holds the whole file
        async with self.transaction() as conn:
            # Lock both rows so concurrent writers wait for the move instead of racing it.
            find = sa.select(chats.c.id)
            old_pk = await conn.scalar(
                find.where(chat_is(old)).with_for_update() if lock else find.where(chat_is(old))
            )
            if old_pk is None:
                return
            new_pk = await conn.scalar(
                find.where(chat_is(new)).with_for_update() if lock else find.where(chat_is(new))
            )
            platform, chat_id, thread_id = records.key(new)
            if new_pk is None:
                # The common case: re-key the row, and everything pointing at it follows.
                await conn.execute(
                    chats.update()
                    .where(chats.c.id == old_pk)
                    .values(
                        platform=platform, chat_id=chat_id, thread_id=thread_id, updated_at=now()
                    )
                )
                return
            source = chats.alias("source")
            await conn.execute(
                chats.update()
                .where(chats.c.id == new_pk)
                .values(
                    {
                        **{
                            name: sa.select(source.c[name])
                            .where(source.c.id == old_pk)
                            .scalar_subquery()
                            for name in records.SETTINGS_COLUMNS
                        },
                        "created_at": sa.case(
                            (
                                sa.select(source.c.created_at)
                                .where(source.c.id == old_pk)
                                .scalar_subquery()
                                < chats.c.created_at,
                                sa.select(source.c.created_at)
                                .where(source.c.id == old_pk)
                                .scalar_subquery(),
                            ),
                            else_=chats.c.created_at,
                        ),
                        "updated_at": now(),
                    }
                )
            )
            await conn.execute(
                self.insert(subscriptions)
                .from_select(
                    ["chat", "feed", "keywords", "exclude", "authors", "created_at"],
                    sa.select(
                        sa.literal(new_pk, subscriptions.c.chat.type),
                        subscriptions.c.feed,
                        subscriptions.c.keywords,
                        subscriptions.c.exclude,
                        subscriptions.c.authors,
                        subscriptions.c.created_at,
                    )
                    .where(subscriptions.c.chat == old_pk)
                    .order_by(subscriptions.c.id),
                )
                .on_conflict_do_nothing(index_elements=["chat", "feed"])
            )
            moved = self.insert(delivered).from_select(
                ["chat", "paper_id", "delivered_at"],
                sa.select(
                    sa.literal(new_pk, delivered.c.chat.type),
                    delivered.c.paper_id,
                    delivered.c.delivered_at,
                )
                .where(delivered.c.chat == old_pk)
                # SQLite needs a WHERE here to read ON CONFLICT as the upsert's.
                .where(sa.true()),
            )
            earlier = moved.excluded.delivered_at
            await conn.execute(
                moved.on_conflict_do_update(
                    index_elements=["chat", "paper_id"],
                    set_={
                        "delivered_at": sa.case(
                            (earlier < delivered.c.delivered_at, earlier),
                            else_=delivered.c.delivered_at,
                        )
                    },
                )
            )
            # Unsent digests follow the chat; deleting the old row would cascade them away.
            await conn.execute(
                outbox.update()
                .where(outbox.c.chat == old_pk, outbox.c.status.in_(("pending", "sending")))
                .values(chat=new_pk)
            )
            await conn.execute(chats.delete().where(chats.c.id == old_pk))

    # subscriptions

    async def add_subscription(self, sub: Subscription) -> Subscription:
        """Add, or replace the filters of, the chat's subscription to `sub.feed`."""
        feed = clean_text(sub.feed)
        async with self.transaction() as conn:
            chat_pk = await self._ensure_chat(conn, sub.chat)
            statement = self.insert(subscriptions).values(
                chat=chat_pk,
                feed=feed,
                keywords=sub.keywords,
                exclude=sub.exclude,
                authors=sub.authors,
                created_at=now(),
            )
            result = await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["chat", "feed"],
                    set_={
                        name: statement.excluded[name]
                        for name in ("keywords", "exclude", "authors")
                    },
                ).returning(*_SUBSCRIPTION)
            )
            row = result.one()
        return records.subscription_from(sub.chat, row._mapping)

    async def remove_subscription(self, chat: ChatRef, feed: str) -> bool:
        async with self.transaction() as conn:
            result = await conn.execute(
                subscriptions.delete().where(
                    subscriptions.c.feed == clean_text(feed),
                    subscriptions.c.chat == chat_pk_of(chat),
                )
            )
        return rowcount(result) > 0

    async def list_subscriptions(self, chat: ChatRef) -> list[Subscription]:
        query = (
            sa.select(*_SUBSCRIPTION)
            .join(chats, chats.c.id == subscriptions.c.chat)
            .where(chat_is(chat))
            .order_by(subscriptions.c.id)
        )
        async with self.reading() as conn:
            result = await conn.execute(query)
            return [records.subscription_from(chat, row) for row in result.mappings()]

    # delivered: a paper reaches a chat once, whatever the feed

    async def delivered_ids(self, chat: ChatRef, paper_ids: Iterable[str]) -> set[str]:
        wanted = list(dict.fromkeys(clean_text(pid) for pid in paper_ids))
        found: set[str] = set()
        if not wanted:
            return found
        query = sa.select(delivered.c.paper_id).where(
            delivered.c.chat == sa.bindparam("chat"),
            delivered.c.paper_id.in_(sa.bindparam("ids", expanding=True)),
        )
        async with self.reading() as conn:
            chat_pk = await self._chat_pk(conn, chat)
            if chat_pk is None:
                return found
            for chunk in chunks(wanted):
                found.update(await conn.scalars(query, {"chat": chat_pk, "ids": list(chunk)}))
        return found
