"""The outbox: leasing, sending and retrying the messages the scheduler enqueued."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa

from bot.models import ChatRef
from bot.store import records
from bot.store.base import OutboxItem
from bot.store.sqlbase import SQLBase, chat_pk_of, rowcount
from bot.store.tables import chats, outbox, outbox_bodies
from bot.store.text import clean_text, to_utc

UNSENT = ("pending", "sending")

_earlier = outbox.alias("earlier")
# A chat's head: no earlier row of the chat is still to send (dead rows hold nothing back).
_HEAD = ~sa.exists().where(
    _earlier.c.chat == outbox.c.chat,
    _earlier.c.status.in_(UNSENT),
    _earlier.c.id < outbox.c.id,
)


def _error(text: str) -> str:
    return clean_text(text)[:500]


class OutboxMixin(SQLBase):
    async def claim_outbox(
        self,
        now: datetime,
        limit: int,
        lease_seconds: float,
        worker: str,
        platforms: Sequence[str],
    ) -> list[OutboxItem]:
        """Lease each chat's first unsent row, when it is sendable; never a later one.

        Several workers claim concurrently. A row is taken only when no earlier row of its
        chat is pending, leased or waiting for a retry, and on PostgreSQL it is locked FOR
        UPDATE SKIP LOCKED (SQLite's write lock holds the whole file): a head another worker
        is claiming is skipped, and the row after it is not a head while that one is unsent.
        So a chat's messages go out in order, one at a time, by one worker; the row of a
        worker that died comes back when its lease (renewed while it lives) expires.
        """
        if limit <= 0 or not platforms:
            return []
        stamp = to_utc(now)
        lease = stamp + timedelta(seconds=lease_seconds)
        probes = (
            # Expired leases first: those rows were in flight when their sender died.
            (outbox.c.status == "sending", outbox.c.lease_until),
            (outbox.c.status == "pending", outbox.c.next_attempt_at),
        )
        async with self.transaction() as conn:
            ids: list[int] = []
            for platform in sorted(set(platforms)):
                # Equality on platform keeps each probe an ordered scan of its index.
                for status, moment in probes:
                    if len(ids) >= limit:
                        break
                    query = (
                        sa.select(outbox.c.id)
                        .where(status, outbox.c.platform == platform, moment <= stamp, _HEAD)
                        .order_by(moment, outbox.c.id)
                        .limit(limit - len(ids))
                        .with_for_update(of=outbox, skip_locked=True)
                    )
                    ids += list(await conn.scalars(query))
            if not ids:
                return []
            await conn.execute(
                outbox.update()
                .where(self.among(outbox.c.id, "ids"))
                .values(
                    status="sending",
                    lease_until=lease,
                    worker=worker,
                    attempts=outbox.c.attempts + 1,
                ),
                {"ids": ids},
            )
            rows = await conn.execute(
                sa.select(
                    outbox.c.id,
                    outbox.c.idem_key,
                    sa.func.coalesce(outbox_bodies.c.body, outbox.c.body).label("body"),
                    outbox.c.attempts,
                    chats.c.platform,
                    chats.c.chat_id,
                    chats.c.thread_id,
                )
                .join(chats, chats.c.id == outbox.c.chat)
                .outerjoin(outbox_bodies, outbox_bodies.c.hash == outbox.c.body_hash)
                .where(self.among(outbox.c.id, "ids"))
                .order_by(outbox.c.id),
                {"ids": ids},
            )
            return [
                OutboxItem(r["id"], records.chat_ref(r), r["idem_key"], r["body"], r["attempts"])
                for r in rows.mappings().all()
            ]

    async def renew_outbox_leases(
        self, item_ids: Sequence[int], worker: str, lease_until: datetime
    ) -> int:
        if not item_ids:
            return 0
        async with self.transaction() as conn:
            result = await conn.execute(
                outbox.update()
                .where(
                    self.among(outbox.c.id, "ids"),
                    outbox.c.status == "sending",
                    outbox.c.worker == worker,
                )
                .values(lease_until=lease_until),
                {"ids": list(item_ids)},
            )
        return rowcount(result)

    async def outbox_lease_holders(self) -> list[str]:
        async with self.transaction() as conn:
            found = await conn.scalars(
                sa.select(outbox.c.worker)
                .where(outbox.c.status == "sending", outbox.c.worker.is_not(None))
                .distinct()
            )
            return sorted(found)

    async def expire_outbox_leases(self, workers: Sequence[str], now: datetime) -> int:
        if not workers:
            return 0
        async with self.transaction() as conn:
            result = await conn.execute(
                outbox.update()
                .where(
                    outbox.c.status == "sending",
                    outbox.c.worker.in_(list(workers)),
                    outbox.c.lease_until > to_utc(now),
                )
                .values(lease_until=to_utc(now))
            )
        return rowcount(result)

    async def mark_sent(self, sent: Sequence[tuple[int, list[str]]], now: datetime) -> None:
        if not sent:
            return
        statement = (
            outbox.update()
            .where(outbox.c.id == sa.bindparam("row_id"))
            .values(
                status="sent",
                sent_at=now,
                message_ids=sa.bindparam("message_ids"),
                lease_until=None,
                error=None,
            )
        )
        async with self.transaction() as conn:
            await conn.execute(
                statement,
                [{"row_id": item_id, "message_ids": json.dumps(ids)} for item_id, ids in sent],
            )

    async def mark_failed(
        self, item_id: int, next_attempt_at: datetime, error: str, *, refund: bool = False
    ) -> None:
        """Back to pending until `next_attempt_at`; `refund` un-counts the attempt."""
        attempts = outbox.c.attempts - int(refund)
        async with self.transaction() as conn:
            await conn.execute(
                outbox.update()
                .where(outbox.c.id == item_id, outbox.c.status == "sending")
                .values(
                    status="pending",
                    next_attempt_at=next_attempt_at,
                    lease_until=None,
                    error=_error(error),
                    attempts=sa.case((attempts < 0, 0), else_=attempts),
                )
            )

    async def mark_dead(self, item_id: int, error: str) -> None:
        async with self.transaction() as conn:
            await conn.execute(
                outbox.update()
                .where(outbox.c.id == item_id)
                .values(status="dead", lease_until=None, error=_error(error))
            )

    async def defer_chat_outbox(self, chat: ChatRef, until: datetime) -> int:
        """Every unsent row of the chat waits until `until` (the platform said retry_after)."""
        later = sa.bindparam("until", until, type_=outbox.c.next_attempt_at.type)
        async with self.transaction() as conn:
            result = await conn.execute(
                outbox.update()
                .where(outbox.c.chat == chat_pk_of(chat), outbox.c.status.in_(UNSENT))
                .values(
                    status="pending",
                    lease_until=None,
                    next_attempt_at=sa.case(
                        (outbox.c.next_attempt_at < later, later),
                        else_=outbox.c.next_attempt_at,
                    ),
                )
            )
        return rowcount(result)

    async def drop_chat_outbox(self, chat: ChatRef, error: str) -> int:
        """Every unsent row of the chat is dead (the chat is gone)."""
        async with self.transaction() as conn:
            result = await conn.execute(
                outbox.update()
                .where(outbox.c.chat == chat_pk_of(chat), outbox.c.status.in_(UNSENT))
                .values(status="dead", lease_until=None, error=_error(error))
            )
        return rowcount(result)

    async def outbox_counts(self) -> dict[str, int]:
        """Rows per status: pending, sending, sent, dead."""
        query = sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status)
        async with self.reading() as conn:
            rows = (await conn.execute(query)).all()
        counts = dict.fromkeys(("pending", "sending", "sent", "dead"), 0)
        counts.update({row[0]: int(row[1]) for row in rows})
        return counts

    async def next_outbox_time(self, platforms: Sequence[str]) -> datetime | None:
        """When the next unsent row becomes claimable, as far as this store can tell: the
        earliest retry of a chat's first unsent row, or lease expiry (None: nothing left)."""
        if not platforms:
            return None
        on = outbox.c.platform.in_(list(platforms))
        # Heads only: a row behind another of its chat is not claimable at its time.
        retry = sa.select(sa.func.min(outbox.c.next_attempt_at)).where(
            outbox.c.status == "pending", on, _HEAD
        )
        expiry = sa.select(sa.func.min(outbox.c.lease_until)).where(
            outbox.c.status == "sending", on
        )
        async with self.reading() as conn:
            found = [await conn.scalar(retry), await conn.scalar(expiry)]
        moments = [m for m in found if m is not None]
        return min(moments) if moments else None

    async def prune_outbox(self, before: datetime) -> int:
        """Delete sent and dead rows created before `before`, and bodies no row uses."""
        async with self.transaction() as conn:
            if not self.is_sqlite:
                # Holds off enqueues until the orphaned bodies are gone: one that found a
                # body already there must not see it deleted under its new row.
                await conn.exec_driver_sql("LOCK TABLE outbox_bodies IN SHARE ROW EXCLUSIVE MODE")
            result = await conn.execute(
                outbox.delete().where(
                    outbox.c.status.in_(("sent", "dead")), outbox.c.created_at < before
                )
            )
            await conn.execute(
                outbox_bodies.delete().where(
                    outbox_bodies.c.hash.not_in(
                        sa.select(outbox.c.body_hash).where(outbox.c.body_hash.is_not(None))
                    )
                )
            )
        return rowcount(result)
