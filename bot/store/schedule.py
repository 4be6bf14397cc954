"""The schedule side of delivery (bot/delivery): which chats are due, and enqueueing their
digests into the outbox in one transaction.

A scheduler round touches every due chat, so its bulk statements are written per database
where that is much faster: arrays (unnest) on PostgreSQL, VALUES lists and json_each on
SQLite, sent as the driver's SQL.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.models import ChatRef, ChatSettings, Subscription
from bot.store import records
from bot.store.base import DueChat, Enqueue
from bot.store.sqlbase import SQLITE_KEYS_JOIN, SQLBase
from bot.store.tables import chats, subscriptions
from bot.store.text import clean_text, to_utc
from bot.store.types import raw, raw_decoders, stamp

# How long a due chat waits for its own worker before any worker schedules it. Several
# scheduler ticks (30 s each by default), so a live worker always gets there first.
PARTITION_GRACE = timedelta(minutes=2)
_DEADLOCK_RETRIES = 5

_SETTINGS = [chats.c[name] for name in records.SETTINGS_COLUMNS]
_SUBSCRIPTION = [
    subscriptions.c[name]
    for name in ("chat", "id", "feed", "keywords", "exclude", "authors", "created_at")
]
_HAS_SUBSCRIPTION = sa.exists().where(subscriptions.c.chat == chats.c.id)


def body_hash(body: str) -> str:
    """A body's key in outbox_bodies (revision 0002 moves old bodies by the same key)."""
    return hashlib.blake2b(body.encode(), digest_size=16).hexdigest()


class ScheduleMixin(SQLBase):
    _worker: tuple[int, int] = (0, 1)  # (index, count): which due chats this process schedules

    def set_worker(self, index: int, count: int) -> None:
        """Schedule only this worker's share of the due chats (hash of the chat id mod
        `count`; PostgreSQL, where workers share one database).

        A chat overdue by more than PARTITION_GRACE is anyone's: a dead worker's share is
        taken over, and enqueueing is idempotent, so the overlap costs work, never a repeat.
        """
        if count < 1 or not 0 <= index < count:
            raise ValueError("worker index must be in 0 .. count-1")
        self._worker = (index, count)

    async def unscheduled_chats(self, limit: int) -> list[tuple[ChatSettings, datetime]]:
        subscribed = (
            sa.select(sa.func.max(subscriptions.c.created_at))
            .where(subscriptions.c.chat == chats.c.id)
            .scalar_subquery()
        )
        query = (
            sa.select(
                chats.c.platform,
                chats.c.chat_id,
                chats.c.thread_id,
                *_SETTINGS,
                chats.c.updated_at,
                sa.type_coerce(subscribed, chats.c.updated_at.type).label("subbed"),
            )
            .where(chats.c.next_run_at.is_(None), chats.c.active, _HAS_SUBSCRIPTION)
            .limit(limit)
        )
        async with self.reading() as conn:
            rows = (await conn.execute(query)).mappings().all()
        out: list[tuple[ChatSettings, datetime]] = []
        for row in rows:
            since = max(row["updated_at"], row["subbed"] or row["updated_at"])
            out.append((records.settings_from(records.chat_ref(row), row), since))
        return out

    async def set_next_runs(self, runs: Sequence[tuple[ChatRef, datetime]]) -> None:
        """Set next runs; only chats still unscheduled are touched (a change in between wins)."""
        if not runs:
            return
        statement = (
            chats.update()
            .where(
                chats.c.platform == sa.bindparam("p"),
                chats.c.chat_id == sa.bindparam("c"),
                chats.c.thread_id == sa.bindparam("t"),
                chats.c.next_run_at.is_(None),
            )
            .values(next_run_at=sa.bindparam("at", type_=chats.c.next_run_at.type))
        )
        params = []
        for chat, at in runs:
            platform, chat_id, thread_id = records.key(chat)
            params.append({"p": platform, "c": chat_id, "t": thread_id, "at": at})
        async with self.transaction() as conn:
            await conn.execute(statement, params)

    async def due_chats(self, now: datetime, limit: int) -> list[DueChat]:
        """Active chats with subscriptions whose next run is at or before `now`, oldest
        first. A round reads every due chat: rows come raw (types.raw) and are decoded
        here, which halves the CPU of SQLAlchemy's per-value processing."""
        query = (
            sa.select(
                chats.c.id,
                chats.c.platform,
                chats.c.chat_id,
                chats.c.thread_id,
                *(raw(c) for c in _SETTINGS),
                raw(chats.c.next_run_at),
            )
            .where(chats.c.active, chats.c.next_run_at <= now, _HAS_SUBSCRIPTION)
            .order_by(chats.c.next_run_at, chats.c.id)
            .limit(limit)
        )
        index, count = self._worker
        if count > 1 and not self.is_sqlite:
            # Hashed: identity values skip (upserts consume them), so plain ids can all
            # share one remainder.
            share = sa.func.abs(sa.cast(sa.func.hashint8(chats.c.id), sa.BigInteger)) % count
            query = query.where(
                sa.or_(share == index, chats.c.next_run_at <= to_utc(now) - PARTITION_GRACE)
            )
        subs = (
            sa.select(*(raw(c) for c in _SUBSCRIPTION))
            .where(self.among(subscriptions.c.chat, "chats"))
            .order_by(subscriptions.c.id)
        )
        instant_in, list_in = raw_decoders(self.is_sqlite)
        async with self.reading() as conn:
            due: dict[int, DueChat] = {}
            for row in (await conn.execute(query)).all():
                chat = ChatRef(row[1], row[2], row[3] or None)
                settings = records.settings_from_values(chat, row[4:13])
                due[row[0]] = DueChat(settings, [], instant_in(row[13]))
            if due:
                result = await conn.execute(subs, {"chats": list(due)})
                for pk, sub_id, feed, keywords, exclude, authors, created in result.all():
                    item = due[pk]
                    item.subscriptions.append(
                        Subscription(
                            chat=item.settings.chat,
                            feed=feed,
                            keywords=list_in(keywords),
                            exclude=list_in(exclude),
                            authors=list_in(authors),
                            id=int(sub_id),
                            created_at=instant_in(created),
                        )
                    )
        return list(due.values())

    async def delivered_among(
        self, chats_: Sequence[ChatRef], paper_ids: Sequence[str]
    ) -> dict[ChatRef, set[str]]:
        """`delivered_ids` for many chats at once (chats with none are left out)."""
        ids = list(dict.fromkeys(clean_text(pid) for pid in paper_ids))
        found: dict[ChatRef, set[str]] = {}
        if not ids or not chats_:
            return found
        by_key = {records.key(c): c for c in chats_}
        keys = list(by_key)
        async with self.reading() as conn:
            for row in await self._delivered_among(conn, keys, ids):
                found.setdefault(by_key[(row[0], row[1], row[2])], set()).add(row[3])
        return found

    async def _delivered_among(
        self, conn: AsyncConnection, keys: list[tuple[str, str, str]], ids: list[str]
    ) -> list[Any]:
        if not self.is_sqlite:
            result = await conn.exec_driver_sql(
                "SELECT c.platform, c.chat_id, c.thread_id, d.paper_id"
                " FROM unnest($1::text[], $2::text[], $3::text[]) AS k(platform, chat_id,"
                " thread_id) JOIN chats c ON c.platform = k.platform AND c.chat_id = k.chat_id"
                " AND c.thread_id = k.thread_id JOIN delivered d ON d.chat = c.id"
                " WHERE d.paper_id = ANY($4::text[])",
                ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys], ids),
            )
            return list(result.all())
        # Keys and ids as one JSON parameter each: one statement, however many chats.
        result = await conn.exec_driver_sql(
            f"SELECT c.platform, c.chat_id, c.thread_id, d.paper_id FROM {SQLITE_KEYS_JOIN}"
            " CROSS JOIN delivered d ON d.chat = c.id"
            " WHERE d.paper_id IN (SELECT value FROM json_each(?))",
            (json.dumps(keys), json.dumps(ids)),
        )
        rows: list[Any] = list(result.all())
        return rows

    async def enqueue_digests(self, digests: Sequence[Enqueue], now: datetime) -> int:
        """In ONE transaction: insert each digest's outbox rows (an existing idempotency key is
        skipped), mark its papers delivered and move its chat's next run from `due_at` to
        `next_run_at` (unless the schedule changed meanwhile). Returns rows inserted."""
        if not digests:
            return 0
        for attempt in range(_DEADLOCK_RETRIES):
            try:
                async with self.transaction() as conn:
                    return await self._enqueue(conn, digests, to_utc(now))
            except DBAPIError as exc:
                # Two schedulers enqueueing the same chats: one loses; the retry finds the
                # other's rows and skips them by idempotency key.
                code = getattr(exc.orig, "pgcode", None) or getattr(exc.orig, "sqlstate", None)
                retry = code in ("40P01", "40001") and self._joined() is None
                if not retry or attempt == _DEADLOCK_RETRIES - 1:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _enqueue(
        self, conn: AsyncConnection, digests: Sequence[Enqueue], now: datetime
    ) -> int:
        keys = [records.key(d.chat) for d in digests]
        pks = await self._chat_pks(conn, keys)
        known = [(pks[k], d) for k, d in zip(keys, digests, strict=True) if k in pks]
        # Rows go in chat order in every process, so two schedulers writing the same chats
        # wait for each other instead of deadlocking.
        known.sort(key=lambda item: item[0])
        hashes: dict[str, str] = {}  # identical bodies are usually one shared str
        for _, d in known:
            for _, body in d.messages:
                if body not in hashes:
                    hashes[body] = body_hash(clean_text(body))
        if hashes:
            bodies = sorted((h, clean_text(b)) for b, h in hashes.items())
            if self.is_sqlite:
                await conn.exec_driver_sql(
                    "INSERT INTO outbox_bodies (hash, body) VALUES (?, ?)"
                    " ON CONFLICT (hash) DO NOTHING",
                    bodies,
                )
            else:
                await conn.exec_driver_sql(
                    "INSERT INTO outbox_bodies (hash, body) SELECT * FROM unnest($1::text[],"
                    " $2::text[]) ON CONFLICT (hash) DO NOTHING",
                    ([h for h, _ in bodies], [b for _, b in bodies]),
                )
        if self.is_sqlite:
            return await self._enqueue_sqlite(conn, known, hashes, now)
        return await self._enqueue_postgres(conn, known, hashes, now)

    async def _enqueue_sqlite(
        self,
        conn: AsyncConnection,
        known: list[tuple[int, Enqueue]],
        hashes: dict[str, str],
        now: datetime,
    ) -> int:
        at = stamp(now)
        rows = [
            (clean_text(key), pk, d.chat.platform, seq, hashes[body], at, at)
            for pk, d in known
            for seq, (key, body) in enumerate(d.messages)
        ]
        inserted = 0
        if rows:
            result = await conn.exec_driver_sql(
                "INSERT INTO outbox (idem_key, chat, platform, seq, body, body_hash,"
                " next_attempt_at, created_at) VALUES (?, ?, ?, ?, '', ?, ?, ?)"
                " ON CONFLICT (idem_key) DO NOTHING",
                rows,
            )
            inserted = result.rowcount
        # One statement row per chat, its ids as a JSON list that SQLite unpacks: ten times
        # fewer rows to build in Python. Chats with the same digest share the list, so each
        # is encoded once.
        lists: dict[int, str] = {}
        for _, d in known:
            if id(d.paper_ids) not in lists:
                lists[id(d.paper_ids)] = json.dumps([clean_text(p) for p in d.paper_ids])
        marks = [(pk, at, lists[id(d.paper_ids)]) for pk, d in known if d.paper_ids]
        if marks:
            await conn.exec_driver_sql(
                "INSERT INTO delivered (chat, paper_id, delivered_at)"
                " SELECT ?, value, ? FROM json_each(?) WHERE true"
                " ON CONFLICT (chat, paper_id) DO NOTHING",
                marks,
            )
        stamps: dict[datetime, str] = {}  # few distinct instants among many chats

        def ts(moment: datetime) -> str:
            text = stamps.get(moment)
            if text is None:
                text = stamps[moment] = stamp(moment)
            return text

        if known:
            await conn.exec_driver_sql(
                "UPDATE chats SET next_run_at = ? WHERE id = ? AND next_run_at = ?",
                [(ts(d.next_run_at), pk, ts(d.due_at)) for pk, d in known],
            )
        return max(inserted, 0)

    async def _enqueue_postgres(
        self,
        conn: AsyncConnection,
        known: list[tuple[int, Enqueue]],
        hashes: dict[str, str],
        now: datetime,
    ) -> int:
        messages = [
            (key, pk, d.chat.platform, seq, hashes[body])
            for pk, d in known
            for seq, (key, body) in enumerate(d.messages)
        ]
        inserted = 0
        if messages:
            result = await conn.exec_driver_sql(
                "INSERT INTO outbox (idem_key, chat, platform, seq, body, body_hash,"
                " next_attempt_at, created_at) SELECT m.key, m.chat, m.platform, m.seq, '',"
                " m.hash, $6, $6 FROM unnest($1::text[], $2::bigint[], $3::text[],"
                " $4::integer[], $5::text[]) WITH ORDINALITY AS m(key, chat, platform, seq,"
                " hash, ord) ORDER BY m.ord ON CONFLICT (idem_key) DO NOTHING",
                (
                    [clean_text(m[0]) for m in messages],
                    [m[1] for m in messages],
                    [m[2] for m in messages],
                    [m[3] for m in messages],
                    [m[4] for m in messages],
                    now,
                ),
            )
            inserted = result.rowcount
        delivered = sorted({(pk, clean_text(pid)) for pk, d in known for pid in d.paper_ids})
        if delivered:
            await conn.exec_driver_sql(
                "INSERT INTO delivered (chat, paper_id, delivered_at)"
                " SELECT d.chat, d.paper_id, $3 FROM unnest($1::bigint[], $2::text[])"
                " AS d(chat, paper_id) ON CONFLICT (chat, paper_id) DO NOTHING",
                ([d[0] for d in delivered], [d[1] for d in delivered], now),
            )
        if known:
            await conn.exec_driver_sql(
                "UPDATE chats c SET next_run_at = v.next FROM unnest($1::bigint[],"
                " $2::timestamptz[], $3::timestamptz[]) AS v(id, next, due)"
                " WHERE c.id = v.id AND c.next_run_at = v.due",
                (
                    [pk for pk, _ in known],
                    [to_utc(d.next_run_at) for _, d in known],
                    [to_utc(d.due_at) for _, d in known],
                ),
            )
        return max(inserted, 0)
