"""The PostgreSQL store, on an asyncpg connection pool. Same semantics as `SQLiteStore`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import date, datetime, timedelta
from typing import Any, ClassVar

import asyncpg

from bot.models import ChatRef, ChatSettings, Paper, Subscription
from bot.store import (
    clean_text,
    load_migrations,
    records,
    to_utc,
)
from bot.store.base import DueChat, Enqueue, OutboxItem
from bot.store.learning_postgres import PostgresLearning

# Serialises migrations across processes (and across schemas of one database, harmlessly).
_MIGRATION_LOCK = 0x7061_7065_7262_6F79  # "paperboy"

# (store, connection, task) of the transaction the current task is running, if any.
_current: ContextVar[tuple[PostgresStore, asyncpg.Connection, asyncio.Task[Any] | None] | None] = (
    ContextVar("paperboy_pg_transaction", default=None)
)

_PAPER_COLUMNS = records.PAPER_COLUMNS


def _merge_expr(column: str, kind: str) -> str:
    """What a re-fetch does to a stored column: fields the new fetch lacks keep their value."""
    new, old = f"excluded.{column}", f"papers.{column}"
    if kind == "max":
        return f"GREATEST({new}, {old})"  # GREATEST skips NULLs
    if kind == "text":
        return f"CASE WHEN {new} = '' THEN {old} ELSE {new} END"
    if kind == "list":
        return f"CASE WHEN cardinality({new}) = 0 THEN {old} ELSE {new} END"
    return f"COALESCE({new}, {old})"


_UPSERT_PAPER = (
    f"INSERT INTO papers ({', '.join(c for c, _ in _PAPER_COLUMNS)}, fetched_at) "
    f"VALUES ({', '.join(f'${n}' for n in range(1, len(_PAPER_COLUMNS) + 1))}, now()) "
    "ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = {_merge_expr(c, k)}" for c, k in _PAPER_COLUMNS if k != "key")
    + ", fetched_at = excluded.fetched_at"
)
_SELECT_PAPERS = (
    f"SELECT {', '.join(c for c, _ in _PAPER_COLUMNS)} FROM papers WHERE id = ANY($1::text[])"
)

_CHAT_SETTINGS = (
    "timezone, delivery_time, count, format, language, weekdays, active, title, explain_digest"
)
_CHAT_WHERE = "platform = $1 AND chat_id = $2 AND thread_id = $3"
_SUB_COLUMNS = "id, feed, keywords, exclude, authors, created_at"
# No earlier row of the same chat is still to send (dead rows do not hold a chat back).
_HEAD = (
    "NOT EXISTS (SELECT 1 FROM outbox p WHERE p.chat = o.chat"
    " AND p.status IN ('pending', 'sending') AND p.id < o.id)"
)


# Lists are text[], instants timestamptz (see bot/store/records.py).
CODEC = records.Codec(list_out=list, list_in=list, dt_out=to_utc, dt_in=lambda moment: moment)


class PostgresStore(PostgresLearning):
    """`Store` on PostgreSQL. `dsn` is a libpq-style URL; extra query parameters (such as
    `search_path`) become server settings."""

    dialect: ClassVar[str] = "postgres"

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self._dsn = dsn  # may hold a password: never logged, never put in a message
        self._min_size = min_size
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._worker = (0, 1)  # (index, count): which due chats this process schedules

    def set_worker(self, index: int, count: int) -> None:
        """Schedule only this worker's share of the due chats (hash of the chat id mod `count`).

        A chat overdue by more than PARTITION_GRACE is anyone's: a dead worker's share is
        taken over, and enqueueing is idempotent, so the overlap costs work, never a repeat.
        """
        if count < 1 or not 0 <= index < count:
            raise ValueError("worker index must be in 0 .. count-1")
        self._worker = (index, count)

    def __repr__(self) -> str:
        return "PostgresStore(<dsn hidden>)"

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("PostgresStore is not open: await store.open() first")
        return self._pool

    # lifecycle

    async def open(self) -> None:
        if self._pool is not None:
            return
        pool = await asyncpg.create_pool(
            self._dsn, min_size=self._min_size, max_size=self._max_size
        )
        try:
            await self._migrate(pool)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        await pool.close()

    async def __aenter__(self) -> PostgresStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _migrate(self, pool: asyncpg.Pool) -> None:
        migrations = await asyncio.to_thread(load_migrations, "postgres")
        async with pool.acquire() as conn:
            async with conn.transaction():
                # Two processes creating the table at once would collide in the catalog.
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY,"
                    " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
                )
            for migration in migrations:
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                    done = await conn.fetchval(
                        "SELECT 1 FROM schema_version WHERE version = $1", migration.version
                    )
                    if done:
                        continue
                    # No arguments: asyncpg sends the file as one multi-statement script.
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_version (version, name) VALUES ($1, $2)",
                        migration.version,
                        migration.name,
                    )

    async def schema_version(self) -> int:
        async with self._conn() as conn:
            value = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        return int(value)

    # transactions

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """One transaction on one pooled connection.

        Store methods called inside it (in this task) join it; a nested `transaction()` is a
        savepoint.
        """
        task = asyncio.current_task()
        current = _current.get()
        if current is not None and current[0] is self and current[2] is task:
            conn = current[1]
            async with conn.transaction():
                yield conn
            return
        async with self.pool.acquire() as conn, conn.transaction():
            token = _current.set((self, conn, task))
            try:
                yield conn
            finally:
                _current.reset(token)

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        """The running transaction's connection, or a pooled one for a single statement."""
        current = _current.get()
        if current is not None and current[0] is self and current[2] is asyncio.current_task():
            yield current[1]
            return
        async with self.pool.acquire() as conn:
            yield conn

    # papers

    async def upsert_papers(self, papers: Iterable[Paper]) -> None:
        rows = [records.paper_row(p, CODEC) for p in papers]
        if not rows:
            return
        async with self.transaction() as conn:
            await conn.executemany(_UPSERT_PAPER, rows)

    async def get_paper(self, paper_id: str) -> Paper | None:
        return (await self.get_papers([paper_id])).get(paper_id)

    async def get_papers(self, paper_ids: Sequence[str]) -> dict[str, Paper]:
        wanted = list(dict.fromkeys(clean_text(pid) for pid in paper_ids))
        if not wanted:
            return {}
        async with self._conn() as conn:
            rows = await conn.fetch(_SELECT_PAPERS, wanted)
        return {row["id"]: records.paper_from(row, CODEC) for row in rows}

    # feeds

    async def save_feed(
        self, feed: str, day: date, announced: date | None, paper_ids: Sequence[str]
    ) -> None:
        ids = [None if pid is None else clean_text(pid) for pid in paper_ids]
        async with self.transaction() as conn:
            await conn.execute(
                "INSERT INTO feed_fetches (feed, day, announced) VALUES ($1, $2, $3)"
                " ON CONFLICT (feed, day) DO UPDATE SET"
                " announced = excluded.announced, fetched_at = now()",
                clean_text(feed),
                day,
                announced,
            )
            await conn.execute(
                "DELETE FROM feed_items WHERE feed = $1 AND day = $2", clean_text(feed), day
            )
            await conn.execute(
                "INSERT INTO feed_items (feed, day, position, paper_id)"
                " SELECT $1, $2, t.ord - 1, t.pid FROM unnest($3::text[]) WITH ORDINALITY"
                " AS t(pid, ord)",
                clean_text(feed),
                day,
                ids,
            )

    async def load_feed(self, feed: str, day: date) -> tuple[date | None, list[str]] | None:
        async with self._conn() as conn:
            fetch = await conn.fetchrow(
                "SELECT announced FROM feed_fetches WHERE feed = $1 AND day = $2",
                clean_text(feed),
                day,
            )
            if fetch is None:
                return None
            rows = await conn.fetch(
                "SELECT paper_id FROM feed_items WHERE feed = $1 AND day = $2 ORDER BY position",
                clean_text(feed),
                day,
            )
        return fetch["announced"], [row["paper_id"] for row in rows]

    # chats

    async def _ensure_chat(self, conn: asyncpg.Connection, chat: ChatRef) -> int:
        """The chat's row id, creating the row with default settings."""
        pk = await conn.fetchval(
            "INSERT INTO chats (platform, chat_id, thread_id) VALUES ($1, $2, $3)"
            " ON CONFLICT (platform, chat_id, thread_id) DO NOTHING RETURNING id",
            *records.key(chat),
        )
        if pk is None:
            # Already there (perhaps committed a moment ago by a concurrent transaction,
            # which READ COMMITTED lets this fresh statement see).
            pk = await conn.fetchval(
                f"SELECT id FROM chats WHERE {_CHAT_WHERE}", *records.key(chat)
            )
        return int(pk)

    async def get_chat(self, chat: ChatRef) -> ChatSettings | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(
                f"SELECT {_CHAT_SETTINGS} FROM chats WHERE {_CHAT_WHERE}", *records.key(chat)
            )
        return None if row is None else records.settings_from(chat, row)

    async def save_chat(self, settings: ChatSettings) -> None:
        """See `SQLiteStore.save_chat`: an existing chat's `active` flag is left as stored."""
        values = records.settings_row(settings)  # validates before anything is written
        async with self.transaction() as conn:
            await conn.execute(
                f"INSERT INTO chats (platform, chat_id, thread_id, {_CHAT_SETTINGS})"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
                " ON CONFLICT (platform, chat_id, thread_id) DO UPDATE SET"
                " timezone = excluded.timezone, delivery_time = excluded.delivery_time,"
                " count = excluded.count, format = excluded.format,"
                " language = excluded.language, weekdays = excluded.weekdays,"
                " title = excluded.title, explain_digest = excluded.explain_digest,"
                " updated_at = now()",
                *records.key(settings.chat),
                *values,
            )

    async def set_chat_active(self, chat: ChatRef, active: bool) -> None:
        """Flip the flag of a known chat; an unknown chat stays unknown (nothing to pause)."""
        async with self.transaction() as conn:
            await conn.execute(
                f"UPDATE chats SET active = $4, updated_at = now() WHERE {_CHAT_WHERE}",
                *records.key(chat),
                active,
            )

    async def reactivate_chats(self, platform: str, chat_ids: Sequence[str]) -> list[ChatRef]:
        """Switch back on the paused chats among `chat_ids`; returns the ones it switched."""
        async with self.transaction() as conn:
            rows = await conn.fetch(
                "UPDATE chats SET active = true, updated_at = now() WHERE platform = $1"
                " AND NOT active AND chat_id = ANY($2::text[]) RETURNING chat_id, thread_id",
                platform,
                list(dict.fromkeys(chat_ids)),
            )
        return [ChatRef(platform, row["chat_id"], row["thread_id"] or None) for row in rows]

    async def migrate_chat(self, old: ChatRef, new: ChatRef) -> None:
        """Move everything from `old` to `new`; see `SQLiteStore.migrate_chat` for the merge."""
        if records.key(old) == records.key(new):
            return
        async with self.transaction() as conn:
            # Lock both rows so concurrent writers wait for the move instead of racing it.
            old_pk = await conn.fetchval(
                f"SELECT id FROM chats WHERE {_CHAT_WHERE} FOR UPDATE", *records.key(old)
            )
            if old_pk is None:
                return
            new_pk = await conn.fetchval(
                f"SELECT id FROM chats WHERE {_CHAT_WHERE} FOR UPDATE", *records.key(new)
            )
            if new_pk is None:
                await conn.execute(
                    "UPDATE chats SET platform = $1, chat_id = $2, thread_id = $3,"
                    " updated_at = now() WHERE id = $4",
                    *records.key(new),
                    old_pk,
                )
                return
            await conn.execute(
                f"UPDATE chats n SET ({_CHAT_SETTINGS}) ="
                f" (SELECT {_CHAT_SETTINGS} FROM chats o WHERE o.id = $1),"
                " created_at = LEAST(n.created_at, (SELECT created_at FROM chats WHERE id = $1)),"
                " updated_at = now() WHERE n.id = $2",
                old_pk,
                new_pk,
            )
            await conn.execute(
                "INSERT INTO subscriptions (chat, feed, keywords, exclude, authors, created_at)"
                " SELECT $2, feed, keywords, exclude, authors, created_at FROM subscriptions"
                " WHERE chat = $1 ORDER BY id ON CONFLICT (chat, feed) DO NOTHING",
                old_pk,
                new_pk,
            )
            await conn.execute(
                "INSERT INTO delivered (chat, paper_id, delivered_at)"
                " SELECT $2, paper_id, delivered_at FROM delivered WHERE chat = $1"
                " ON CONFLICT (chat, paper_id) DO UPDATE SET"
                " delivered_at = LEAST(delivered.delivered_at, excluded.delivered_at)",
                old_pk,
                new_pk,
            )
            # Unsent digests follow the chat; deleting the old row would cascade them away.
            await conn.execute(
                "UPDATE outbox SET chat = $2 WHERE chat = $1 AND status IN ('pending', 'sending')",
                old_pk,
                new_pk,
            )
            await conn.execute("DELETE FROM chats WHERE id = $1", old_pk)

    # subscriptions

    async def add_subscription(self, sub: Subscription) -> Subscription:
        keywords, exclude, authors = (
            records.texts(CODEC, sub.keywords),
            records.texts(CODEC, sub.exclude),
            records.texts(CODEC, sub.authors),
        )
        async with self.transaction() as conn:
            chat_pk = await self._ensure_chat(conn, sub.chat)
            row = await conn.fetchrow(
                "INSERT INTO subscriptions (chat, feed, keywords, exclude, authors)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (chat, feed) DO UPDATE SET"
                " keywords = excluded.keywords, exclude = excluded.exclude,"
                f" authors = excluded.authors RETURNING {_SUB_COLUMNS}",
                chat_pk,
                clean_text(sub.feed),
                keywords,
                exclude,
                authors,
            )
        return records.subscription_from(sub.chat, row, CODEC)

    async def remove_subscription(self, chat: ChatRef, feed: str) -> bool:
        async with self.transaction() as conn:
            status = await conn.execute(
                "DELETE FROM subscriptions WHERE feed = $4 AND chat ="
                f" (SELECT id FROM chats WHERE {_CHAT_WHERE})",
                *records.key(chat),
                clean_text(feed),
            )
        return status != "DELETE 0"

    async def list_subscriptions(self, chat: ChatRef) -> list[Subscription]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"SELECT {', '.join(f's.{c}' for c in _SUB_COLUMNS.split(', '))}"
                " FROM subscriptions s JOIN chats c ON c.id = s.chat"
                " WHERE c.platform = $1 AND c.chat_id = $2 AND c.thread_id = $3 ORDER BY s.id",
                *records.key(chat),
            )
        return [records.subscription_from(chat, row, CODEC) for row in rows]

    # delivered

    async def mark_delivered(self, chat: ChatRef, paper_ids: Iterable[str]) -> None:
        ids = list(dict.fromkeys(clean_text(pid) for pid in paper_ids))
        if not ids:
            return
        async with self.transaction() as conn:
            chat_pk = await self._ensure_chat(conn, chat)
            await conn.execute(
                "INSERT INTO delivered (chat, paper_id) SELECT $1, unnest($2::text[])"
                " ON CONFLICT (chat, paper_id) DO NOTHING",
                chat_pk,
                ids,
            )

    async def delivered_ids(self, chat: ChatRef, paper_ids: Iterable[str]) -> set[str]:
        wanted = list(dict.fromkeys(clean_text(pid) for pid in paper_ids))
        if not wanted:
            return set()
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT d.paper_id FROM delivered d JOIN chats c ON c.id = d.chat"
                " WHERE c.platform = $1 AND c.chat_id = $2 AND c.thread_id = $3"
                " AND d.paper_id = ANY($4::text[])",
                *records.key(chat),
                wanted,
            )
        return {row["paper_id"] for row in rows}

    # outbox and schedule (bot/delivery.py)

    async def unscheduled_chats(self, limit: int) -> list[tuple[ChatSettings, datetime]]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"SELECT c.platform, c.chat_id, c.thread_id, {_CHAT_SETTINGS_C}, c.updated_at,"
                " (SELECT MAX(s.created_at) FROM subscriptions s WHERE s.chat = c.id) AS subbed"
                " FROM chats c WHERE c.next_run_at IS NULL AND c.active"
                " AND EXISTS (SELECT 1 FROM subscriptions s WHERE s.chat = c.id) LIMIT $1",
                limit,
            )
        out: list[tuple[ChatSettings, datetime]] = []
        for row in rows:
            since = max(row["updated_at"], row["subbed"] or row["updated_at"])
            out.append((records.settings_from(records.chat_ref(row), row), since))
        return out

    async def set_next_runs(self, runs: Sequence[tuple[ChatRef, datetime]]) -> None:
        if not runs:
            return
        keys = [records.key(chat) for chat, _ in runs]
        async with self.transaction() as conn:
            # One statement for the whole batch: a round trip per chat would dominate.
            await conn.execute(
                "UPDATE chats c SET next_run_at = v.at FROM unnest($1::text[], $2::text[],"
                " $3::text[], $4::timestamptz[]) AS v(platform, chat_id, thread_id, at)"
                " WHERE c.platform = v.platform AND c.chat_id = v.chat_id"
                " AND c.thread_id = v.thread_id AND c.next_run_at IS NULL",
                [k[0] for k in keys],
                [k[1] for k in keys],
                [k[2] for k in keys],
                [to_utc(at) for _, at in runs],
            )

    async def due_chats(self, now: datetime, limit: int) -> list[DueChat]:
        async with self._conn() as conn:
            index, count = self._worker
            rows = await conn.fetch(
                f"SELECT c.id, c.platform, c.chat_id, c.thread_id, {_CHAT_SETTINGS_C},"
                " c.next_run_at FROM chats c WHERE c.active AND c.next_run_at <= $1"
                # Hashed: identity values skip (upserts consume them), so plain ids can
                # all share one remainder.
                " AND (abs(hashint8(c.id)::bigint) % $3 = $4 OR c.next_run_at <= $5)"
                " AND EXISTS (SELECT 1 FROM subscriptions s WHERE s.chat = c.id)"
                " ORDER BY c.next_run_at, c.id LIMIT $2",
                to_utc(now),
                limit,
                count,
                index,
                to_utc(now) - PARTITION_GRACE,
            )
            due: dict[int, DueChat] = {
                row["id"]: DueChat(
                    records.settings_from(records.chat_ref(row), row), [], row["next_run_at"]
                )
                for row in rows
            }
            if due:
                subs = await conn.fetch(
                    f"SELECT chat, {_SUB_COLUMNS} FROM subscriptions"
                    " WHERE chat = ANY($1::bigint[]) ORDER BY id",
                    list(due),
                )
                for row in subs:
                    item = due[row["chat"]]
                    item.subscriptions.append(
                        records.subscription_from(item.settings.chat, row, CODEC)
                    )
        return list(due.values())

    async def delivered_among(
        self, chats: Sequence[ChatRef], paper_ids: Sequence[str]
    ) -> dict[ChatRef, set[str]]:
        ids = list(dict.fromkeys(clean_text(pid) for pid in paper_ids))
        found: dict[ChatRef, set[str]] = {}
        if not ids or not chats:
            return found
        by_key = {records.key(c): c for c in chats}
        keys = list(by_key)
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT c.platform, c.chat_id, c.thread_id, d.paper_id"
                " FROM unnest($1::text[], $2::text[], $3::text[]) AS k(platform, chat_id,"
                " thread_id) JOIN chats c ON c.platform = k.platform AND c.chat_id = k.chat_id"
                " AND c.thread_id = k.thread_id JOIN delivered d ON d.chat = c.id"
                " WHERE d.paper_id = ANY($4::text[])",
                [k[0] for k in keys],
                [k[1] for k in keys],
                [k[2] for k in keys],
                ids,
            )
        for row in rows:
            chat = by_key[(row["platform"], row["chat_id"], row["thread_id"])]
            found.setdefault(chat, set()).add(row["paper_id"])
        return found

    async def _chat_pks(
        self, conn: asyncpg.Connection, chats: Iterable[ChatRef]
    ) -> dict[tuple[str, str, str], int]:
        keys = list(dict.fromkeys(records.key(c) for c in chats))
        rows = await conn.fetch(
            "SELECT c.id, c.platform, c.chat_id, c.thread_id FROM unnest($1::text[], $2::text[],"
            " $3::text[]) AS k(platform, chat_id, thread_id) JOIN chats c"
            " ON c.platform = k.platform AND c.chat_id = k.chat_id AND c.thread_id = k.thread_id",
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
        )
        return {(r["platform"], r["chat_id"], r["thread_id"]): int(r["id"]) for r in rows}

    async def enqueue_digests(self, digests: Sequence[Enqueue], now: datetime) -> int:
        if not digests:
            return 0
        stamp = to_utc(now)
        for attempt in range(_DEADLOCK_RETRIES):
            try:
                return await self._enqueue(digests, stamp)
            except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
                # Two schedulers enqueueing the same chats: one loses; the retry finds the
                # other's rows and skips them by idempotency key.
                if attempt == _DEADLOCK_RETRIES - 1 or _current.get() is not None:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _enqueue(self, digests: Sequence[Enqueue], stamp: datetime) -> int:
        async with self.transaction() as conn:
            pks = await self._chat_pks(conn, (d.chat for d in digests))
            known = [(pks[records.key(d.chat)], d) for d in digests if records.key(d.chat) in pks]
            # Rows go in (chat, seq) order in every process, so two schedulers writing the
            # same chats wait for each other instead of deadlocking.
            known.sort(key=lambda item: item[0])
            messages = [
                (key, pk, d.chat.platform, seq, body)
                for pk, d in known
                for seq, (key, body) in enumerate(d.messages)
            ]
            inserted = 0
            if messages:
                # Chats with the same digest share its body strings: clean each once.
                bodies = {id(m[4]): m[4] for m in messages}
                clean = {key: clean_text(body) for key, body in bodies.items()}
                status = await conn.execute(
                    "INSERT INTO outbox (idem_key, chat, platform, seq, body, next_attempt_at,"
                    " created_at) SELECT m.key, m.chat, m.platform, m.seq, m.body, $6, $6"
                    " FROM unnest($1::text[], $2::bigint[], $3::text[], $4::integer[],"
                    " $5::text[]) WITH ORDINALITY AS m(key, chat, platform, seq, body, ord)"
                    " ORDER BY m.ord ON CONFLICT (idem_key) DO NOTHING",
                    [clean_text(m[0]) for m in messages],
                    [m[1] for m in messages],
                    [m[2] for m in messages],
                    [m[3] for m in messages],
                    [clean[id(m[4])] for m in messages],
                    stamp,
                )
                inserted = int(status.rsplit(" ", 1)[-1])
            delivered = sorted({(pk, clean_text(pid)) for pk, d in known for pid in d.paper_ids})
            if delivered:
                await conn.execute(
                    "INSERT INTO delivered (chat, paper_id, delivered_at)"
                    " SELECT d.chat, d.paper_id, $3 FROM unnest($1::bigint[], $2::text[])"
                    " AS d(chat, paper_id) ON CONFLICT (chat, paper_id) DO NOTHING",
                    [d[0] for d in delivered],
                    [d[1] for d in delivered],
                    stamp,
                )
            await conn.execute(
                "UPDATE chats c SET next_run_at = v.next FROM unnest($1::bigint[],"
                " $2::timestamptz[], $3::timestamptz[]) AS v(id, next, due)"
                " WHERE c.id = v.id AND c.next_run_at = v.due",
                [pk for pk, _ in known],
                [to_utc(d.next_run_at) for _, d in known],
                [to_utc(d.due_at) for _, d in known],
            )
        return inserted

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
        chat is pending, leased or waiting for a retry, and it is locked FOR UPDATE SKIP
        LOCKED: a head another worker is claiming is skipped, and the row after it is not a
        head while that one is unsent. So a chat's messages go out in order, one at a
        time, by one worker; the row of a worker that died comes back when its lease
        (renewed while the worker lives) expires.
        """
        if limit <= 0 or not platforms:
            return []
        stamp = to_utc(now)
        lease = stamp + timedelta(seconds=lease_seconds)
        async with self.transaction() as conn:
            ids: list[int] = []
            for platform in sorted(set(platforms)):
                # Equality on platform keeps each probe an ordered scan of its index.
                # Expired leases first: those rows were in flight when their sender died.
                for sql in (
                    "SELECT id FROM outbox o WHERE status = 'sending' AND platform = $1"
                    f" AND lease_until <= $2 AND {_HEAD}"
                    " ORDER BY lease_until, id LIMIT $3 FOR UPDATE OF o SKIP LOCKED",
                    "SELECT id FROM outbox o WHERE status = 'pending' AND platform = $1"
                    f" AND next_attempt_at <= $2 AND {_HEAD}"
                    " ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE OF o SKIP LOCKED",
                ):
                    if len(ids) < limit:
                        rows = await conn.fetch(sql, platform, stamp, limit - len(ids))
                        ids += [row["id"] for row in rows]
            if not ids:
                return []
            rows = await conn.fetch(
                "UPDATE outbox o SET status = 'sending', lease_until = $2, worker = $3,"
                " attempts = o.attempts + 1 FROM chats c"
                " WHERE o.id = ANY($1::bigint[]) AND c.id = o.chat"
                " RETURNING o.id, o.idem_key, o.body, o.attempts, c.platform, c.chat_id,"
                " c.thread_id",
                ids,
                lease,
                worker,
            )
        rows = sorted(rows, key=lambda row: row["id"])
        return [
            OutboxItem(
                row["id"], records.chat_ref(row), row["idem_key"], row["body"], row["attempts"]
            )
            for row in rows
        ]

    async def renew_outbox_leases(
        self, item_ids: Sequence[int], worker: str, lease_until: datetime
    ) -> int:
        if not item_ids:
            return 0
        async with self.transaction() as conn:
            status = await conn.execute(
                "UPDATE outbox SET lease_until = $1 WHERE id = ANY($2::bigint[])"
                " AND status = 'sending' AND worker = $3",
                to_utc(lease_until),
                list(item_ids),
                worker,
            )
        return int(status.rsplit(" ", 1)[-1])

    async def mark_sent(self, sent: Sequence[tuple[int, list[str]]], now: datetime) -> None:
        if not sent:
            return
        async with self.transaction() as conn:
            await conn.execute(
                "UPDATE outbox o SET status = 'sent', sent_at = $3, message_ids = v.ids,"
                " lease_until = NULL, error = NULL"
                " FROM unnest($1::bigint[], $2::text[]) AS v(id, ids) WHERE o.id = v.id",
                [item_id for item_id, _ in sent],
                [json.dumps(ids) for _, ids in sent],
                to_utc(now),
            )

    async def mark_failed(
        self, item_id: int, next_attempt_at: datetime, error: str, *, refund: bool = False
    ) -> None:
        async with self.transaction() as conn:
            await conn.execute(
                "UPDATE outbox SET status = 'pending', next_attempt_at = $1, lease_until = NULL,"
                " error = $2, attempts = GREATEST(0, attempts - $3)"
                " WHERE id = $4 AND status = 'sending'",
                to_utc(next_attempt_at),
                clean_text(error)[:500],
                int(refund),
                item_id,
            )

    async def mark_dead(self, item_id: int, error: str) -> None:
        async with self.transaction() as conn:
            await conn.execute(
                "UPDATE outbox SET status = 'dead', lease_until = NULL, error = $1 WHERE id = $2",
                clean_text(error)[:500],
                item_id,
            )

    async def _chat_rows(self, chat: ChatRef, sql: str, *params: Any) -> int:
        """Run `sql` (with `chat = $n+1`, the chat's row id) and return the rows it touched."""
        async with self.transaction() as conn:
            pk = await conn.fetchval(
                f"SELECT id FROM chats WHERE {_CHAT_WHERE}", *records.key(chat)
            )
            if pk is None:
                return 0
            status = await conn.execute(sql, *params, pk)
        return int(status.rsplit(" ", 1)[-1])

    async def defer_chat_outbox(self, chat: ChatRef, until: datetime) -> int:
        return await self._chat_rows(
            chat,
            "UPDATE outbox SET status = 'pending', lease_until = NULL,"
            " next_attempt_at = GREATEST(next_attempt_at, $1)"
            " WHERE status IN ('pending', 'sending') AND chat = $2",
            to_utc(until),
        )

    async def drop_chat_outbox(self, chat: ChatRef, error: str) -> int:
        return await self._chat_rows(
            chat,
            "UPDATE outbox SET status = 'dead', lease_until = NULL, error = $1"
            " WHERE status IN ('pending', 'sending') AND chat = $2",
            clean_text(error)[:500],
        )

    async def outbox_counts(self) -> dict[str, int]:
        async with self._conn() as conn:
            rows = await conn.fetch("SELECT status, COUNT(*) AS n FROM outbox GROUP BY status")
        counts = dict.fromkeys(("pending", "sending", "sent", "dead"), 0)
        counts.update({row["status"]: int(row["n"]) for row in rows})
        return counts

    async def next_outbox_time(self, platforms: Sequence[str]) -> datetime | None:
        if not platforms:
            return None
        async with self._conn() as conn:
            value = await conn.fetchval(
                # Heads only: a row behind another of its chat is not claimable at its time.
                "SELECT LEAST("
                " (SELECT MIN(next_attempt_at) FROM outbox o WHERE status = 'pending'"
                f" AND platform = ANY($1::text[]) AND {_HEAD}),"
                " (SELECT MIN(lease_until) FROM outbox WHERE status = 'sending'"
                " AND platform = ANY($1::text[])))",
                list(platforms),
            )
        return value

    async def prune_outbox(self, before: datetime) -> int:
        async with self.transaction() as conn:
            status = await conn.execute(
                "DELETE FROM outbox WHERE status IN ('sent', 'dead') AND created_at < $1",
                to_utc(before),
            )
        return int(status.rsplit(" ", 1)[-1])

    # message memory

    async def remember_message_papers(
        self, chat: ChatRef, message_ids: Sequence[str], paper_id: str
    ) -> None:
        ids = sorted({clean_text(mid) for mid in message_ids})  # sorted: no deadlocks
        if not ids:
            return
        platform, chat_id, _ = records.key(chat)
        async with self._conn() as conn:
            await conn.execute(
                "INSERT INTO message_papers (platform, chat_id, message_id, paper_id)"
                " SELECT $1, $2, unnest($3::text[]), $4"
                " ON CONFLICT (platform, chat_id, message_id) DO UPDATE"
                " SET paper_id = excluded.paper_id, created_at = excluded.created_at",
                platform,
                chat_id,
                ids,
                clean_text(paper_id),
            )

    async def message_paper(self, chat: ChatRef, message_id: str) -> str | None:
        platform, chat_id, _ = records.key(chat)
        async with self._conn() as conn:
            value = await conn.fetchval(
                "SELECT paper_id FROM message_papers"
                " WHERE platform = $1 AND chat_id = $2 AND message_id = $3",
                platform,
                chat_id,
                clean_text(message_id),
            )
        return None if value is None else str(value)

    async def save_callbacks(self, callbacks: Mapping[str, str]) -> None:
        items = sorted((clean_text(k), clean_text(v)) for k, v in callbacks.items())
        if not items:
            return
        async with self._conn() as conn:
            await conn.execute(
                "INSERT INTO callbacks (key, data) SELECT * FROM unnest($1::text[], $2::text[])"
                " ON CONFLICT (key) DO UPDATE SET"
                " data = excluded.data, created_at = excluded.created_at",
                [k for k, _ in items],
                [v for _, v in items],
            )

    async def load_callback(self, key: str) -> str | None:
        async with self._conn() as conn:
            value = await conn.fetchval(
                "SELECT data FROM callbacks WHERE key = $1", clean_text(key)
            )
        return None if value is None else str(value)

    async def prune_message_memory(self, before: datetime) -> int:
        count = 0
        async with self.transaction() as conn:
            for table in ("message_papers", "callbacks"):
                status = await conn.execute(
                    f"DELETE FROM {table} WHERE created_at < $1", to_utc(before)
                )
                count += int(status.rsplit(" ", 1)[-1])
        return count


_CHAT_SETTINGS_C = ", ".join(f"c.{col.strip()}" for col in _CHAT_SETTINGS.split(","))
_DEADLOCK_RETRIES = 5
# How long a due chat waits for its own worker before any worker schedules it. Several
# scheduler ticks (30 s each by default), so a live worker always gets there first.
PARTITION_GRACE = timedelta(minutes=2)
