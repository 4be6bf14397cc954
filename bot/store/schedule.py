"""The schedule side of delivery (bot/delivery): which chats are due, and enqueueing their
digests into the outbox in one transaction.

A scheduler round touches every due chat, so its bulk statements are written per database
where that is much faster: arrays (unnest) on PostgreSQL, VALUES lists and json_each on
SQLite, sent as the driver's SQL.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.models import ChatRef, ChatSettings, Subscription
from bot.store import records
from bot.store.base import MIX_CHAT, DueChat, Enqueue, Mix
from bot.store.sqlbase import SQLBase
from bot.store.tables import chats, subscriptions
from bot.store.text import clean_text, to_utc
from bot.store.types import raw_decoders, stamp

# How long a due chat waits for its own worker before any worker schedules it. Several
# scheduler ticks (30 s each by default), so a live worker always gets there first.
PARTITION_GRACE = timedelta(minutes=2)
_DEADLOCK_RETRIES = 5

_SETTINGS = [chats.c[name] for name in records.SETTINGS_COLUMNS]
_HAS_SUBSCRIPTION = sa.exists().where(subscriptions.c.chat == chats.c.id)

# due_chats' driver SQL; the dialect's parts are filled in there. Each chat comes with its
# subscriptions' feeds and filters as one JSON text (its "mix", in subscription order):
# most chats share theirs with many others, so a round decodes each distinct one once.
_DUE_CHATS = (
    "SELECT c.id, c.platform, c.chat_id, c.thread_id, "
    + ", ".join(f"c.{name}" for name in records.SETTINGS_COLUMNS)
    + ", c.next_run_at, {mix} FROM chats c WHERE {active} AND c.next_run_at <= {now}{mine}{after}"
    " AND EXISTS (SELECT 1 FROM subscriptions s WHERE s.chat = c.id)"
    " ORDER BY c.next_run_at, c.id LIMIT {limit}"
)
# SQLite aggregates in the order its subquery gives (3.40 has no ORDER BY in aggregates).
# Plain concatenation: the lists are stored as JSON already and feeds are canonical names
# (parse_feed), which json_array would only re-check at three times the cost.
_SQLITE_MIX = (
    "(SELECT '[' || group_concat('[\"' || s.feed || '\",' || s.keywords || ','"
    " || s.exclude || ',' || s.authors || ']', ',') || ']'"
    " FROM (SELECT * FROM subscriptions WHERE chat = c.id ORDER BY id) s)"
)
_PG_MIX = (
    "(SELECT json_agg(json_build_array(s.feed, s.keywords, s.exclude, s.authors)"
    " ORDER BY s.id)::text FROM subscriptions s WHERE s.chat = c.id)"
)


@functools.lru_cache(maxsize=4096)  # a kilobyte or so each
def _mix(text: str) -> Mix:
    """A chat's mix from due_chats' JSON: [[feed, keywords, exclude, authors], ...], decoded
    once per distinct text and shared by every chat that has it."""
    return Mix(
        [
            Subscription(MIX_CHAT, feed, list(keywords), list(exclude), list(authors))
            for feed, keywords, exclude, authors in orjson.loads(text)
        ]
    )


def _json(values: list[Any]) -> str:
    """A round's bulk array as JSON text for SQLite's json_each (orjson: a round encodes
    some twenty megabytes of it, five times faster than the json module)."""
    return orjson.dumps(values).decode()


def body_hash(body: str) -> str:
    """A body's key in outbox_bodies (revision 0002 moves old bodies by the same key)."""
    return _hash_utf8(body.encode())


def _hash_utf8(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


# A round's batches carry many of the same bodies (a realistic 100k-chat round: 5.5k
# distinct ones, 33k counted per batch); the recent ones are hashed once. A body is a few
# kB of ASCII JSON: 700 of them take about 3 MB.
@functools.lru_cache(maxsize=700)
def _stored_hash(body: str) -> str:
    """body_hash(clean_text(body)), encoding the body once where it needs no cleaning."""
    try:
        data = body.encode()
    except UnicodeEncodeError:  # a lone surrogate
        return body_hash(clean_text(body))
    if b"\x00" in data:
        return body_hash(clean_text(body))
    return _hash_utf8(data)


def _outbox_rows(known: list[tuple[int, Enqueue]], hashes: dict[str, str]) -> str | None:
    """A batch's outbox rows as one JSON array of [key, chat, platform, seq, body hash], in
    order (ids follow each chat's seq); None if there are none. One parameter the database
    unpacks, a third cheaper on SQLite than seven bound per row, and on PostgreSQL far
    cheaper to encode than asyncpg's arrays (which ask isinstance of every element)."""
    rows = [
        (clean_text(key), pk, d.chat.platform, seq, hashes[body])
        for pk, d in known
        for seq, (key, body) in enumerate(d.messages)
    ]
    return _json(rows) if rows else None


def _marks(known: list[tuple[int, Enqueue]]) -> str | None:
    """Each chat with the paper ids it is marked as having received, as one JSON array of
    [chat, [paper ids]]; None if there are none. Chats with the same digest share its list,
    whose text is encoded once."""
    lists: dict[int, str] = {}
    for _, d in known:
        if id(d.paper_ids) not in lists:
            lists[id(d.paper_ids)] = _json(list(dict.fromkeys(map(clean_text, d.paper_ids))))
    marks = [f"[{pk},{lists[id(d.paper_ids)]}]" for pk, d in known if d.paper_ids]
    return f"[{','.join(marks)}]" if marks else None


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

    async def due_chats(
        self, now: datetime, limit: int, after: tuple[datetime, int] | None = None
    ) -> list[DueChat]:
        """Active chats with subscriptions whose next run is at or before `now`, oldest
        first, from just after `after` (a chat's due_at and row id) if given. A round reads
        every due chat: driver SQL and raw rows (driver_rows), decoded here, as the two
        stores before SQLAlchemy did."""
        index, count = self._worker
        if self.is_sqlite:
            chat_params: tuple[Any, ...] = (stamp(now),)
            onward = ""
            if after is not None:
                onward = " AND (c.next_run_at, c.id) > (?, ?)"
                chat_params += (stamp(after[0]), after[1])
            chat_sql = _DUE_CHATS.format(
                mix=_SQLITE_MIX, active="c.active = 1", now="?", mine="", after=onward, limit="?"
            )
            chat_params += (limit,)
        else:
            mine = onward = ""
            chat_params = (to_utc(now), limit)
            if count > 1:
                # Hashed: identity values skip (upserts consume them), so plain ids can all
                # share one remainder.
                mine = " AND (abs(hashint8(c.id)::bigint) % $3 = $4 OR c.next_run_at <= $5)"
                chat_params += (count, index, to_utc(now) - PARTITION_GRACE)
            if after is not None:
                n = len(chat_params)
                onward = f" AND (c.next_run_at, c.id) > (${n + 1}::timestamptz, ${n + 2}::bigint)"
                chat_params += (to_utc(after[0]), after[1])
            chat_sql = _DUE_CHATS.format(
                mix=_PG_MIX, active="c.active", now="$1", mine=mine, after=onward, limit="$2"
            )
        instant_in, _ = raw_decoders(self.is_sqlite)
        async with self.reading() as conn:
            rows = await self.driver_rows(conn, chat_sql, chat_params)
        out: list[DueChat] = []
        for row in rows:
            mix = _mix(row[14])
            chat = ChatRef(row[1], row[2], row[3] or None)
            settings = records.settings_from_values(chat, row[4:13])
            out.append(DueChat(settings, mix, instant_in(row[13]), pk=int(row[0])))
        return out

    async def delivered_among(
        self, pks: Sequence[int], paper_ids: Sequence[str]
    ) -> dict[int, set[str]]:
        """Which of `paper_ids` each chat (by row id, DueChat.pk) has received; chats with
        none are left out. One statement however many chats."""
        ids = list(dict.fromkeys(clean_text(pid) for pid in paper_ids))
        found: dict[int, set[str]] = {}
        if not ids or not pks:
            return found
        if self.is_sqlite:
            sql = (
                "SELECT d.chat, d.paper_id FROM json_each(?) AS k CROSS JOIN delivered d"
                " ON d.chat = k.value WHERE d.paper_id IN (SELECT value FROM json_each(?))"
            )
            params: tuple[Any, ...] = (_json(list(pks)), _json(ids))
        else:
            # One probe of delivered's key per chat, whatever the statistics say: a LIMIT
            # keeps the lateral subquery from being flattened into a join, which a round's
            # first batches (delivered grows by 750k rows in a 100k round, its statistics
            # lag) planned as a scan of the whole table, 32 s of the round. The LIMIT is
            # never reached: a chat has each paper at most once.
            sql = (
                "SELECT k.chat, d.paper_id FROM unnest($1::bigint[]) AS k(chat)"
                " CROSS JOIN LATERAL (SELECT paper_id FROM delivered d WHERE d.chat = k.chat"
                " AND d.paper_id = ANY($2::text[]) LIMIT cardinality($2::text[])) d"
            )
            params = (list(pks), ids)
        if self.is_sqlite:
            async with self.reading() as conn:
                rows = await self.driver_rows(conn, sql, params)
        else:
            async with self.transaction() as conn:
                # Planned for these very arrays, each time: after five runs PostgreSQL may
                # plan a prepared statement once for any values, and its generic plan of
                # this one was a hundred times slower (32 s of a 100k-chat round). Only
                # here: forced on every statement, it re-planned the foreign-key check of
                # each inserted row (12 s of the same round).
                await conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")
                rows = await self.driver_rows(conn, sql, params)
        for row in rows:
            found.setdefault(int(row[0]), set()).add(row[1])
        return found

    async def enqueue_digests(self, digests: Sequence[Enqueue], now: datetime) -> int:
        """In ONE transaction: insert each digest's outbox rows (an existing idempotency key is
        skipped), mark its papers delivered and move its chat's next run from `due_at` to
        `next_run_at` (unless the schedule changed meanwhile). Returns rows inserted."""
        if not digests:
            return 0
        hashes: dict[str, str] = {}  # identical bodies are usually one shared str
        for d in digests:
            for _, body in d.messages:
                if body not in hashes:
                    hashes[body] = _stored_hash(body)
        if not self.is_sqlite and self._joined() is None:
            # Workers enqueue the same digest bodies. Inserting a body that another
            # worker's open transaction inserted waits for that whole transaction (a unique
            # index's rule), which made the workers take turns; committed here first, the
            # batch below finds them and goes on. It looks again, under a lock
            # prune_outbox waits for, so a prune in between loses nothing.
            async with self.transaction() as conn:
                await self._insert_bodies(conn, hashes)
        # PostgreSQL: skip outbox rows and delivered marks that exist already (a failed
        # statement inside a caller's transaction would end it: there the first try is
        # careful too).
        careful = self._joined() is not None
        for attempt in range(_DEADLOCK_RETRIES):
            try:
                # SQLite: every row names a chat _known just found under the write lock.
                async with self.transaction(parents_checked=True) as conn:
                    return await self._enqueue(conn, digests, hashes, to_utc(now), careful)
            except DBAPIError as exc:
                # Two schedulers enqueueing the same chats: one loses, or finds a row the
                # other wrote first; the retry skips the other's rows by their keys.
                code = getattr(exc.orig, "pgcode", None) or getattr(exc.orig, "sqlstate", None)
                careful = careful or code == "23505"
                retry = code in ("40P01", "40001", "23505") and self._joined() is None
                if not retry or attempt == _DEADLOCK_RETRIES - 1:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _insert_bodies(
        self, conn: AsyncConnection, hashes: dict[str, str], *, hold: bool = False
    ) -> None:
        """Keep each body once in outbox_bodies, by hash (`hashes`: body -> hash). Only the
        bodies not stored yet are sent: most of a batch's are (an earlier batch's), and
        sending kilobytes each just for ON CONFLICT to drop them cost more than asking.
        `hold`: the rows about to name them are in this transaction, so none of them may
        go before it ends (SQLite's write lock sees to it; on PostgreSQL a lock that
        prune_outbox waits for)."""
        if not hashes:
            return
        wanted = list(hashes.values())
        if self.is_sqlite:
            # CROSS JOIN: a probe per hash, never a scan of the (large) bodies.
            sql = (
                "SELECT b.hash FROM json_each(?) AS k CROSS JOIN outbox_bodies b"
                " ON b.hash = k.value"
            )
            params: tuple[Any, ...] = (_json(wanted),)
        else:
            if hold:
                await conn.exec_driver_sql("LOCK TABLE outbox_bodies IN ROW EXCLUSIVE MODE")
            sql = "SELECT hash FROM outbox_bodies WHERE hash = ANY($1::text[])"
            params = (wanted,)
        there = {row[0] for row in await self.driver_rows(conn, sql, params)}
        bodies = sorted((h, clean_text(b)) for b, h in hashes.items() if h not in there)
        if not bodies:
            return
        if self.is_sqlite:
            await conn.exec_driver_sql(
                "INSERT INTO outbox_bodies (hash, body) VALUES (?, ?)"
                " ON CONFLICT (hash) DO NOTHING",
                bodies,
            )
            return
        await conn.exec_driver_sql(
            "INSERT INTO outbox_bodies (hash, body) SELECT * FROM unnest($1::text[],"
            " $2::text[]) ON CONFLICT (hash) DO NOTHING",
            ([h for h, _ in bodies], [b for _, b in bodies]),
        )

    async def _enqueue(
        self,
        conn: AsyncConnection,
        digests: Sequence[Enqueue],
        hashes: dict[str, str],
        now: datetime,
        careful: bool,
    ) -> int:
        known = await self._known(conn, digests)
        # Rows go in chat order in every process, so two schedulers writing the same chats
        # wait for each other instead of deadlocking.
        known.sort(key=lambda item: item[0])
        await self._insert_bodies(conn, hashes, hold=True)
        if self.is_sqlite:
            return await self._enqueue_sqlite(conn, known, hashes, now)
        return await self._enqueue_postgres(conn, known, hashes, now, careful)

    async def _known(
        self, conn: AsyncConnection, digests: Sequence[Enqueue]
    ) -> list[tuple[int, Enqueue]]:
        """(row id, digest) of the digests whose chat still exists (one may have moved or
        gone since the round read it): by the row ids the round carries, else by key."""
        if all(d.pk is not None for d in digests):
            wanted = [d.pk for d in digests]
            if self.is_sqlite:
                sql = "SELECT id FROM chats WHERE id IN (SELECT value FROM json_each(?))"
                param: Any = _json(wanted)
            else:
                # Locked as the insert's own check will (migration 0004): a chat found here
                # cannot be deleted before the batch commits.
                sql = "SELECT id FROM chats WHERE id = ANY($1::bigint[]) ORDER BY id FOR KEY SHARE"
                param = wanted
            there = {int(row[0]) for row in await self.driver_rows(conn, sql, (param,))}
            return [(d.pk, d) for d in digests if d.pk in there]
        keys = [records.key(d.chat) for d in digests]
        pks = await self._chat_pks(conn, keys)
        return [(pks[k], d) for k, d in zip(keys, digests, strict=True) if k in pks]

    async def _enqueue_sqlite(
        self,
        conn: AsyncConnection,
        known: list[tuple[int, Enqueue]],
        hashes: dict[str, str],
        now: datetime,
    ) -> int:
        at = stamp(now)
        inserted = 0
        rows = _outbox_rows(known, hashes)
        if rows:
            result = await conn.exec_driver_sql(
                "INSERT INTO outbox (idem_key, chat, platform, seq, body, body_hash,"
                " next_attempt_at, created_at) SELECT json_extract(value, '$[0]'),"
                " json_extract(value, '$[1]'), json_extract(value, '$[2]'),"
                " json_extract(value, '$[3]'), '', json_extract(value, '$[4]'), ?, ?"
                " FROM json_each(?) WHERE true ON CONFLICT (idem_key) DO NOTHING",
                (at, at, rows),
            )
            inserted = result.rowcount
        marks = _marks(known)
        if marks:
            await conn.exec_driver_sql(
                "INSERT INTO delivered (chat, paper_id, delivered_at)"
                " SELECT json_extract(c.value, '$[0]'), p.value, ? FROM json_each(?) AS c,"
                " json_each(c.value, '$[1]') AS p WHERE true"
                " ON CONFLICT (chat, paper_id) DO NOTHING",
                (at, marks),
            )
        stamps: dict[datetime, str] = {}  # few distinct instants among many chats

        def ts(moment: datetime) -> str:
            text = stamps.get(moment)
            if text is None:
                text = stamps[moment] = stamp(moment)
            return text

        if known:
            moves = [(pk, ts(d.next_run_at), ts(d.due_at)) for pk, d in known]
            await conn.exec_driver_sql(
                "UPDATE chats SET next_run_at = v.next FROM (SELECT json_extract(value, '$[0]')"
                " AS id, json_extract(value, '$[1]') AS next, json_extract(value, '$[2]') AS due"
                " FROM json_each(?)) AS v WHERE chats.id = v.id AND chats.next_run_at = v.due",
                (_json(moves),),
            )
        return max(inserted, 0)

    async def _enqueue_postgres(
        self,
        conn: AsyncConnection,
        known: list[tuple[int, Enqueue]],
        hashes: dict[str, str],
        now: datetime,
        careful: bool,
    ) -> int:
        # Plain INSERTs, a third cheaper than ON CONFLICT's speculative ones: a round's
        # keys name runs not enqueued yet (a chat's next run moves with its rows) and it
        # marks only papers its chats had not received when it read them. Should another
        # scheduler have written one since, the unique violation has the batch tried
        # again, `careful`ly.
        skip_existing = " ON CONFLICT DO NOTHING" if careful else ""
        inserted = 0
        rows = _outbox_rows(known, hashes)
        if rows:
            result = await conn.exec_driver_sql(
                "INSERT INTO outbox (idem_key, chat, platform, seq, body, body_hash,"
                " next_attempt_at, created_at) SELECT m.r->>0, (m.r->>1)::bigint, m.r->>2,"
                " (m.r->>3)::integer, '', m.r->>4, $2, $2"
                " FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS m(r, ord)"
                " ORDER BY m.ord" + skip_existing,
                (rows, now),
            )
            inserted = result.rowcount
        marks = _marks(known)
        if marks:
            await conn.exec_driver_sql(
                "INSERT INTO delivered (chat, paper_id, delivered_at)"
                " SELECT (c.value->>0)::bigint, p.value, $2 FROM jsonb_array_elements($1::jsonb)"
                " AS c CROSS JOIN LATERAL jsonb_array_elements_text(c.value->1) AS p"
                + skip_existing,
                (marks, now),
            )
        if known:
            # `c.id = ANY($1)` finds the batch's chats by their key: joined on the unnest
            # alone, PostgreSQL hashed every chat of the table for each batch (half the
            # statement's time in a 100k-chat round).
            await conn.exec_driver_sql(
                "UPDATE chats c SET next_run_at = v.next FROM unnest($1::bigint[],"
                " $2::timestamptz[], $3::timestamptz[]) AS v(id, next, due)"
                " WHERE c.id = ANY($1::bigint[]) AND c.id = v.id AND c.next_run_at = v.due",
                (
                    [pk for pk, _ in known],
                    [to_utc(d.next_run_at) for _, d in known],
                    [to_utc(d.due_at) for _, d in known],
                ),
            )
        return max(inserted, 0)
