"""The embedded default store: SQLite through aiosqlite (queries run on aiosqlite's thread).

One connection per store. An asyncio lock serialises its users, because statements from
interleaved coroutines on one connection would otherwise land in each other's transactions.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
import sqlite3
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar

import aiosqlite

from bot.models import ChatRef, ChatSettings, Paper, Subscription
from bot.store import (
    clean_text,
    load_migrations,
    records,
    to_utc,
)
from bot.store.base import DueChat, Enqueue, OutboxItem
from bot.store.learning_sqlite import SQLiteLearning

BUSY_TIMEOUT_MS = 10_000
# Well under SQLite's bound-parameter limit, which is 999 on older builds.
_CHUNK = 500

# (column, kind): "keep" fields hold their stored value when a later fetch lacks them.
_PAPER_COLUMNS = (*records.PAPER_COLUMNS, ("fetched_at", "new"))


def _merge_expr(column: str, kind: str) -> str:
    new, old = f"excluded.{column}", f"papers.{column}"
    if kind == "max":
        # Two-argument MAX is NULL if either side is; fall back to whichever exists.
        return f"COALESCE(MAX({new}, {old}), {new}, {old})"
    if kind == "text":
        return f"CASE WHEN {new} = '' THEN {old} ELSE {new} END"
    if kind == "list":
        return f"CASE WHEN {new} = '[]' THEN {old} ELSE {new} END"
    if kind == "keep":
        return f"COALESCE({new}, {old})"
    return new


_UPSERT_PAPER = (
    f"INSERT INTO papers ({', '.join(c for c, _ in _PAPER_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _PAPER_COLUMNS)}) "
    "ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = {_merge_expr(c, k)}" for c, k in _PAPER_COLUMNS if k != "key")
)
_SELECT_PAPER = f"SELECT {', '.join(c for c, _ in _PAPER_COLUMNS)} FROM papers"

_CHAT_SETTINGS = (
    "timezone, delivery_time, count, format, language, weekdays, active, title, explain_digest"
)


def _now() -> str:
    return datetime.now(UTC).isoformat()


# Lists are JSON text, instants ISO text (see bot/store/records.py).
CODEC = records.Codec(
    list_out=lambda values: json.dumps(values, ensure_ascii=False),
    list_in=lambda text: _list(text),
    dt_out=lambda moment: to_utc(moment).isoformat(),
    dt_in=lambda text: datetime.fromisoformat(text),
)


def _make_parent_dir(path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


async def _set_wal(db: aiosqlite.Connection) -> None:
    """Switch to WAL. When several processes open a fresh file together, the switch can fail
    with "database is locked" at once, ignoring busy_timeout, so it is retried here."""
    delay = 0.01
    deadline = asyncio.get_running_loop().time() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            await db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            locked = "locked" in str(exc) or "busy" in str(exc)
            if not locked or asyncio.get_running_loop().time() > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.25)


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _statements(script: str) -> list[str]:
    """Split a migration into statements; sqlite3 decides where one ends (strings, comments
    and trigger bodies may hold ';'), so no hand-written SQL parser is needed."""
    statements: list[str] = []
    buffer = ""
    parts = script.split(";")
    for part in parts[:-1]:
        buffer += part + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \t\r\n;"):
                statements.append(buffer.strip())
            buffer = ""
    rest = buffer + parts[-1]
    if any(ln.strip() and not ln.strip().startswith("--") for ln in rest.splitlines()):
        raise ValueError("migration ends with an incomplete statement (missing ';'?)")
    return statements


class SQLiteStore(SQLiteLearning):
    """`Store` on SQLite. `path` is a file path or ":memory:"."""

    dialect: ClassVar[str] = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None
        self._depth = 0

    @property
    def db(self) -> aiosqlite.Connection:
        """The connection, for multi-statement work inside `transaction()`."""
        if self._db is None:
            raise RuntimeError("SQLiteStore is not open: await store.open() first")
        return self._db

    # lifecycle

    async def open(self) -> None:
        if self._db is not None:
            return
        if self.path != ":memory:":
            await asyncio.to_thread(_make_parent_dir, self.path)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, sqlite3 adds none behind our back.
        db = await aiosqlite.connect(
            self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
        )
        try:
            db.row_factory = sqlite3.Row
            await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await db.execute("PRAGMA foreign_keys = ON")
            if self.path != ":memory:":
                await _set_wal(db)
                # NORMAL is durable across application crashes in WAL mode, and much faster.
                await db.execute("PRAGMA synchronous = NORMAL")
            self._db = db
            await self._migrate()
        except BaseException:
            self._db = None
            await db.close()
            raise

    async def close(self) -> None:
        if self._db is None:
            return
        async with self._lock:
            db, self._db = self._db, None
            await db.close()

    async def __aenter__(self) -> SQLiteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _migrate(self) -> None:
        migrations = await asyncio.to_thread(load_migrations, "sqlite")
        db = self.db
        # In a write transaction: as a bare statement it would have to upgrade a read lock,
        # which SQLite refuses at once (no busy wait) when another opener holds one.
        async with self.transaction():
            await db.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
        for migration in migrations:
            async with self.transaction():
                # Re-checked inside the write lock: another process may have just applied it.
                async with db.execute(
                    "SELECT 1 FROM schema_version WHERE version = ?", (migration.version,)
                ) as cur:
                    if await cur.fetchone() is not None:
                        continue
                for statement in _statements(migration.sql):
                    await db.execute(statement)
                await db.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, _now()),
                )

    async def schema_version(self) -> int:
        async with (
            self._reading() as db,
            db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version") as cur,
        ):
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    # transactions

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction (BEGIN IMMEDIATE) holding the store to this task.

        Store methods called inside it join it; a nested `transaction()` is a savepoint.
        Do not await other tasks that use this store from inside: they would wait forever.
        """
        db = self.db
        task = asyncio.current_task()
        if self._owner is not None and self._owner is task:
            name = f"sp{self._depth}"
            self._depth += 1
            try:
                await db.execute(f"SAVEPOINT {name}")
                try:
                    yield db
                except BaseException:
                    await db.execute(f"ROLLBACK TO {name}")
                    await db.execute(f"RELEASE {name}")
                    raise
                await db.execute(f"RELEASE {name}")
            finally:
                self._depth -= 1
            return
        async with self._lock:
            self._owner = task
            try:
                # IMMEDIATE takes the write lock up front, so a reader never has to upgrade
                # and hit SQLITE_BUSY halfway through.
                await db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                    await db.commit()
                except BaseException:
                    if db.in_transaction:
                        await db.rollback()
                    raise
            finally:
                self._owner = None

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[aiosqlite.Connection]:
        # Reads wait for a running transaction so they never see its uncommitted rows.
        db = self.db
        if self._owner is not None and self._owner is asyncio.current_task():
            yield db
            return
        async with self._lock:
            yield db

    # papers

    async def upsert_papers(self, papers: Iterable[Paper]) -> None:
        fetched_at = _now()
        rows = [(*records.paper_row(p, CODEC), fetched_at) for p in papers]
        if not rows:
            return
        async with self.transaction() as db:
            await db.executemany(_UPSERT_PAPER, rows)

    async def get_paper(self, paper_id: str) -> Paper | None:
        found = await self.get_papers([paper_id])
        return found.get(paper_id)

    async def get_papers(self, paper_ids: Sequence[str]) -> dict[str, Paper]:
        wanted = list(dict.fromkeys(paper_ids))
        result: dict[str, Paper] = {}
        async with self._reading() as db:
            for chunk in _chunks(wanted):
                marks = ", ".join("?" for _ in chunk)
                async with db.execute(f"{_SELECT_PAPER} WHERE id IN ({marks})", chunk) as cur:
                    for row in await cur.fetchall():
                        result[row["id"]] = records.paper_from(row, CODEC)
        return result

    # feeds

    async def save_feed(
        self, feed: str, day: date, announced: date | None, paper_ids: Sequence[str]
    ) -> None:
        items = [
            (feed, day.isoformat(), position, clean_text(pid))
            for position, pid in enumerate(paper_ids)
        ]
        async with self.transaction() as db:
            await db.execute(
                "INSERT INTO feed_fetches (feed, day, announced, fetched_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (feed, day) DO UPDATE SET"
                " announced = excluded.announced, fetched_at = excluded.fetched_at",
                (feed, day.isoformat(), announced.isoformat() if announced else None, _now()),
            )
            await db.execute(
                "DELETE FROM feed_items WHERE feed = ? AND day = ?", (feed, day.isoformat())
            )
            await db.executemany(
                "INSERT INTO feed_items (feed, day, position, paper_id) VALUES (?, ?, ?, ?)",
                items,
            )

    async def load_feed(self, feed: str, day: date) -> tuple[date | None, list[str]] | None:
        async with self._reading() as db:
            async with db.execute(
                "SELECT announced FROM feed_fetches WHERE feed = ? AND day = ?",
                (feed, day.isoformat()),
            ) as cur:
                fetch = await cur.fetchone()
            if fetch is None:
                return None
            async with db.execute(
                "SELECT paper_id FROM feed_items WHERE feed = ? AND day = ? ORDER BY position",
                (feed, day.isoformat()),
            ) as cur:
                ids = [row[0] for row in await cur.fetchall()]
        announced = date.fromisoformat(fetch[0]) if fetch[0] else None
        return announced, ids

    # chats

    async def _chat_pk(self, chat: ChatRef) -> int | None:
        async with self.db.execute(
            "SELECT id FROM chats WHERE platform = ? AND chat_id = ? AND thread_id = ?",
            records.key(chat),
        ) as cur:
            row = await cur.fetchone()
        return None if row is None else int(row[0])

    async def _ensure_chat(self, chat: ChatRef) -> int:
        """The chat's row id, creating the row with default settings. Call inside a transaction."""
        now = _now()
        await self.db.execute(
            "INSERT INTO chats (platform, chat_id, thread_id, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (platform, chat_id, thread_id) DO NOTHING",
            (
                *records.key(chat),
                now,
                now,
            ),
        )
        pk = await self._chat_pk(chat)
        assert pk is not None  # just inserted, under our write lock
        return pk

    async def get_chat(self, chat: ChatRef) -> ChatSettings | None:
        async with (
            self._reading() as db,
            db.execute(
                f"SELECT {_CHAT_SETTINGS} FROM chats"
                " WHERE platform = ? AND chat_id = ? AND thread_id = ?",
                records.key(chat),
            ) as cur,
        ):
            row = await cur.fetchone()
        return None if row is None else records.settings_from(chat, row)

    async def save_chat(self, settings: ChatSettings) -> None:
        """Insert or update a chat's settings. An existing chat's `active` flag is left as
        stored: only `set_chat_active` changes it, so saving settings read before a
        delivery paused the chat cannot switch it back on (nor a stale copy off)."""
        values = records.settings_row(settings)  # validates before anything is written
        chat = settings.chat
        now = _now()
        async with self.transaction() as db:
            await db.execute(
                f"INSERT INTO chats (platform, chat_id, thread_id, {_CHAT_SETTINGS},"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (platform, chat_id, thread_id) DO UPDATE SET"
                " timezone = excluded.timezone, delivery_time = excluded.delivery_time,"
                " count = excluded.count, format = excluded.format,"
                " language = excluded.language, weekdays = excluded.weekdays,"
                " title = excluded.title, explain_digest = excluded.explain_digest,"
                " updated_at = excluded.updated_at",
                (
                    *records.key(chat),
                    *values,
                    now,
                    now,
                ),
            )

    async def set_chat_active(self, chat: ChatRef, active: bool) -> None:
        """Flip the flag of a known chat; an unknown chat stays unknown (nothing to pause)."""
        async with self.transaction() as db:
            await db.execute(
                "UPDATE chats SET active = ?, updated_at = ?"
                " WHERE platform = ? AND chat_id = ? AND thread_id = ?",
                (int(active), _now(), *records.key(chat)),
            )

    async def reactivate_chats(self, platform: str, chat_ids: Sequence[str]) -> list[ChatRef]:
        """Switch back on the paused chats among `chat_ids`; returns the ones it switched."""
        out: list[ChatRef] = []
        ids = list(dict.fromkeys(chat_ids))
        async with self.transaction() as db:
            for start in range(0, len(ids), 500):  # SQLite caps host parameters
                batch = ids[start : start + 500]
                marks = ", ".join("?" * len(batch))
                async with db.execute(
                    f"UPDATE chats SET active = 1, updated_at = ? WHERE platform = ?"
                    f" AND active = 0 AND chat_id IN ({marks}) RETURNING chat_id, thread_id",
                    (_now(), platform, *batch),
                ) as cur:
                    rows = await cur.fetchall()
                out += [ChatRef(platform, row[0], row[1] or None) for row in rows]
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
        async with self.transaction() as db:
            old_pk = await self._chat_pk(old)
            if old_pk is None:
                return
            new_pk = await self._chat_pk(new)
            if new_pk is None:
                # The common case: re-key the row, and everything pointing at it follows.
                await db.execute(
                    "UPDATE chats SET platform = ?, chat_id = ?, thread_id = ?, updated_at = ?"
                    " WHERE id = ?",
                    (
                        *records.key(new),
                        _now(),
                        old_pk,
                    ),
                )
                return
            await db.execute(
                f"UPDATE chats SET ({_CHAT_SETTINGS}, updated_at) ="
                f" (SELECT {_CHAT_SETTINGS}, ? FROM chats WHERE id = ?),"
                " created_at = MIN(created_at, (SELECT created_at FROM chats WHERE id = ?))"
                " WHERE id = ?",
                (_now(), old_pk, old_pk, new_pk),
            )
            await db.execute(
                "INSERT INTO subscriptions (chat, feed, keywords, exclude, authors, created_at)"
                " SELECT ?, feed, keywords, exclude, authors, created_at FROM subscriptions"
                " WHERE chat = ? ON CONFLICT (chat, feed) DO NOTHING",
                (new_pk, old_pk),
            )
            await db.execute(
                "INSERT INTO delivered (chat, paper_id, delivered_at)"
                " SELECT ?, paper_id, delivered_at FROM delivered WHERE chat = ?"
                " ON CONFLICT (chat, paper_id) DO UPDATE SET"
                " delivered_at = MIN(delivered_at, excluded.delivered_at)",
                (new_pk, old_pk),
            )
            # Unsent digests follow the chat; deleting the old row would cascade them away.
            await db.execute(
                "UPDATE outbox SET chat = ? WHERE chat = ? AND status IN ('pending', 'sending')",
                (new_pk, old_pk),
            )
            await db.execute("DELETE FROM chats WHERE id = ?", (old_pk,))

    # subscriptions

    async def add_subscription(self, sub: Subscription) -> Subscription:
        keywords, exclude, authors = (
            records.texts(CODEC, sub.keywords),
            records.texts(CODEC, sub.exclude),
            records.texts(CODEC, sub.authors),
        )
        feed = clean_text(sub.feed)
        async with self.transaction() as db:
            chat_pk = await self._ensure_chat(sub.chat)
            await db.execute(
                "INSERT INTO subscriptions (chat, feed, keywords, exclude, authors, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (chat, feed) DO UPDATE SET"
                " keywords = excluded.keywords, exclude = excluded.exclude,"
                " authors = excluded.authors",
                (chat_pk, feed, keywords, exclude, authors, _now()),
            )
            async with db.execute(
                "SELECT id, feed, keywords, exclude, authors, created_at FROM subscriptions"
                " WHERE chat = ? AND feed = ?",
                (chat_pk, feed),
            ) as cur:
                row = await cur.fetchone()
        assert row is not None
        return records.subscription_from(sub.chat, row, CODEC)

    async def remove_subscription(self, chat: ChatRef, feed: str) -> bool:
        async with self.transaction() as db:
            cur = await db.execute(
                "DELETE FROM subscriptions WHERE feed = ? AND chat = (SELECT id FROM chats"
                " WHERE platform = ? AND chat_id = ? AND thread_id = ?)",
                (clean_text(feed), *records.key(chat)),
            )
            removed = cur.rowcount > 0
            await cur.close()
        return removed

    async def list_subscriptions(self, chat: ChatRef) -> list[Subscription]:
        async with (
            self._reading() as db,
            db.execute(
                "SELECT s.id, s.feed, s.keywords, s.exclude, s.authors, s.created_at"
                " FROM subscriptions s JOIN chats c ON c.id = s.chat"
                " WHERE c.platform = ? AND c.chat_id = ? AND c.thread_id = ? ORDER BY s.id",
                records.key(chat),
            ) as cur,
        ):
            rows = await cur.fetchall()
        return [records.subscription_from(chat, row, CODEC) for row in rows]

    # delivered

    async def mark_delivered(self, chat: ChatRef, paper_ids: Iterable[str]) -> None:
        now = _now()
        ids = list(dict.fromkeys(clean_text(pid) for pid in paper_ids))
        if not ids:
            return
        async with self.transaction() as db:
            chat_pk = await self._ensure_chat(chat)
            await db.executemany(
                "INSERT INTO delivered (chat, paper_id, delivered_at) VALUES (?, ?, ?)"
                " ON CONFLICT (chat, paper_id) DO NOTHING",
                [(chat_pk, pid, now) for pid in ids],
            )

    async def delivered_ids(self, chat: ChatRef, paper_ids: Iterable[str]) -> set[str]:
        wanted = list(dict.fromkeys(paper_ids))
        found: set[str] = set()
        async with self._reading() as db:
            chat_pk = await self._chat_pk(chat)
            if chat_pk is None:
                return found
            for chunk in _chunks(wanted):
                marks = ", ".join("?" for _ in chunk)
                async with db.execute(
                    f"SELECT paper_id FROM delivered WHERE chat = ? AND paper_id IN ({marks})",
                    (chat_pk, *chunk),
                ) as cur:
                    found.update(row[0] for row in await cur.fetchall())
        return found

    # outbox and schedule (bot/delivery.py)

    async def unscheduled_chats(self, limit: int) -> list[tuple[ChatSettings, datetime]]:
        async with (
            self._reading() as db,
            db.execute(
                f"SELECT c.platform, c.chat_id, c.thread_id, {_CHAT_SETTINGS_C}, c.updated_at,"
                " (SELECT MAX(s.created_at) FROM subscriptions s WHERE s.chat = c.id) AS subbed"
                " FROM chats c WHERE c.next_run_at IS NULL AND c.active = 1"
                " AND EXISTS (SELECT 1 FROM subscriptions s WHERE s.chat = c.id) LIMIT ?",
                (limit,),
            ) as cur,
        ):
            rows = await cur.fetchall()
        out: list[tuple[ChatSettings, datetime]] = []
        for row in rows:
            since = max(_ts_in(row["updated_at"]), _ts_in(row["subbed"] or row["updated_at"]))
            out.append((records.settings_from(records.chat_ref(row), row), since))
        return out

    async def set_next_runs(self, runs: Sequence[tuple[ChatRef, datetime]]) -> None:
        if not runs:
            return
        async with self.transaction() as db:
            await db.executemany(
                "UPDATE chats SET next_run_at = ? WHERE platform = ? AND chat_id = ?"
                " AND thread_id = ? AND next_run_at IS NULL",
                [(_ts(at), *records.key(chat)) for chat, at in runs],
            )

    async def due_chats(self, now: datetime, limit: int) -> list[DueChat]:
        async with self._reading() as db:
            async with db.execute(
                f"SELECT c.id, c.platform, c.chat_id, c.thread_id, {_CHAT_SETTINGS_C},"
                " c.next_run_at FROM chats c WHERE c.active = 1 AND c.next_run_at <= ?"
                " AND EXISTS (SELECT 1 FROM subscriptions s WHERE s.chat = c.id)"
                " ORDER BY c.next_run_at, c.id LIMIT ?",
                (_ts(now), limit),
            ) as cur:
                rows = await cur.fetchall()
            due: dict[int, DueChat] = {}
            for row in rows:
                due[row["id"]] = DueChat(
                    records.settings_from(records.chat_ref(row), row),
                    [],
                    _ts_in(row["next_run_at"]),
                )
            pks = list(due)
            for start in range(0, len(pks), _CHUNK):
                chunk = pks[start : start + _CHUNK]
                marks = ", ".join("?" for _ in chunk)
                async with db.execute(
                    "SELECT chat, id, feed, keywords, exclude, authors, created_at"
                    f" FROM subscriptions WHERE chat IN ({marks}) ORDER BY id",
                    chunk,
                ) as cur:
                    for row in await cur.fetchall():
                        item = due[row["chat"]]
                        item.subscriptions.append(
                            records.subscription_from(item.settings.chat, row, CODEC)
                        )
        return list(due.values())

    async def delivered_among(
        self, chats: Sequence[ChatRef], paper_ids: Sequence[str]
    ) -> dict[ChatRef, set[str]]:
        ids = list(dict.fromkeys(paper_ids))
        found: dict[ChatRef, set[str]] = {}
        if not ids or not chats:
            return found
        by_key = {records.key(c): c for c in chats}
        keys = list(by_key)
        step = 150  # 3 parameters per chat, plus a chunk of paper ids, stays under 999
        async with self._reading() as db:
            for start in range(0, len(keys), step):
                chunk = keys[start : start + step]
                rows_sql = ", ".join("(?, ?, ?)" for _ in chunk)
                flat = [v for k in chunk for v in k]
                for id_start in range(0, len(ids), 500):
                    id_chunk = ids[id_start : id_start + 500]
                    marks = ", ".join("?" for _ in id_chunk)
                    # CROSS JOIN fixes the join order: each chat by its key, then its
                    # delivered rows by primary key (otherwise SQLite scans `delivered`).
                    async with db.execute(
                        "SELECT c.platform, c.chat_id, c.thread_id, d.paper_id"
                        f" FROM (VALUES {rows_sql}) AS k CROSS JOIN chats c"
                        " ON c.platform = k.column1 AND c.chat_id = k.column2"
                        " AND c.thread_id = k.column3 CROSS JOIN delivered d ON d.chat = c.id"
                        f" WHERE d.paper_id IN ({marks})",
                        (*flat, *id_chunk),
                    ) as cur:
                        for row in await cur.fetchall():
                            chat = by_key[(row[0], row[1], row[2])]
                            found.setdefault(chat, set()).add(row[3])
        return found

    async def _pks(self, keys: Sequence[tuple[str, str, str]]) -> dict[tuple[str, str, str], int]:
        """Row ids of many chats by key, in one statement per chunk."""
        pks: dict[tuple[str, str, str], int] = {}
        for start in range(0, len(keys), 300):
            chunk = keys[start : start + 300]
            values = ", ".join("(?, ?, ?)" for _ in chunk)
            async with self.db.execute(
                f"SELECT c.id, c.platform, c.chat_id, c.thread_id FROM (VALUES {values}) AS k"
                " CROSS JOIN chats c ON c.platform = k.column1 AND c.chat_id = k.column2"
                " AND c.thread_id = k.column3",
                [v for key in chunk for v in key],
            ) as cur:
                for row in await cur.fetchall():
                    pks[(row[1], row[2], row[3])] = int(row[0])
        return pks

    async def enqueue_digests(self, digests: Sequence[Enqueue], now: datetime) -> int:
        if not digests:
            return 0
        stamp = _ts(now)
        keys = [records.key(d.chat) for d in digests]
        async with self.transaction() as db:
            pks = await self._pks(keys)
            known = [(pks[key], d) for key, d in zip(keys, digests, strict=True) if key in pks]
            hashes: dict[str, str] = {}  # identical bodies are usually one shared str
            rows = []
            for pk, d in known:
                for seq, (key, body) in enumerate(d.messages):
                    digest = hashes.get(body)
                    if digest is None:
                        digest = hashes[body] = hashlib.blake2b(
                            body.encode(), digest_size=16
                        ).hexdigest()
                    rows.append((key, pk, d.chat.platform, seq, digest, stamp, stamp))
            await db.executemany(
                "INSERT INTO outbox_bodies (hash, body) VALUES (?, ?)"
                " ON CONFLICT (hash) DO NOTHING",
                [(digest, body) for body, digest in hashes.items()],
            )
            before = db.total_changes
            await db.executemany(
                "INSERT INTO outbox (idem_key, chat, platform, seq, body, body_hash,"
                " next_attempt_at, created_at) VALUES (?, ?, ?, ?, '', ?, ?, ?)"
                " ON CONFLICT (idem_key) DO NOTHING",
                rows,
            )
            inserted = db.total_changes - before
            # One statement row per chat, its ids as a JSON list that SQLite unpacks: ten
            # times fewer rows to build in Python. Chats with the same digest share the
            # list, so each is encoded once. Ids come from our own feeds, already clean.
            lists: dict[int, str] = {}
            for _, d in known:
                if id(d.paper_ids) not in lists:
                    lists[id(d.paper_ids)] = json.dumps(d.paper_ids)
            await db.executemany(
                "INSERT INTO delivered (chat, paper_id, delivered_at)"
                " SELECT ?, value, ? FROM json_each(?) WHERE true"
                " ON CONFLICT (chat, paper_id) DO NOTHING",
                [(pk, stamp, lists[id(d.paper_ids)]) for pk, d in known if d.paper_ids],
            )
            stamps: dict[datetime, str] = {}  # few distinct instants among many chats

            def ts(moment: datetime) -> str:
                text = stamps.get(moment)
                if text is None:
                    text = stamps[moment] = _ts(moment)
                return text

            await db.executemany(
                "UPDATE chats SET next_run_at = ? WHERE id = ? AND next_run_at = ?",
                [(ts(d.next_run_at), pk, ts(d.due_at)) for pk, d in known],
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
        if limit <= 0 or not platforms:
            return []
        stamp = _ts(now)
        lease = _ts(now + timedelta(seconds=lease_seconds))
        marks = ", ".join("?" for _ in platforms)
        async with self.transaction() as db:
            ids: list[int] = []
            # Two index-ordered probes instead of one OR, which SQLite would scan. A row is
            # a chat's head when no earlier row of the chat is unsent (outbox_unsent index).
            # Expired leases first: those rows were in flight when their sender died.
            for sql in (
                f"SELECT id FROM outbox o WHERE status = 'sending' AND platform IN ({marks})"
                f" AND lease_until <= ? AND {_HEAD} ORDER BY lease_until, id LIMIT ?",
                f"SELECT id FROM outbox o WHERE status = 'pending' AND platform IN ({marks})"
                f" AND next_attempt_at <= ? AND {_HEAD} ORDER BY next_attempt_at, id LIMIT ?",
            ):
                async with db.execute(sql, (*platforms, stamp, limit - len(ids))) as cur:
                    ids += [row[0] for row in await cur.fetchall()]
                if len(ids) >= limit:
                    break
            if not ids:
                return []
            id_marks = ", ".join("?" for _ in ids)
            await db.execute(
                "UPDATE outbox SET status = 'sending', lease_until = ?, worker = ?,"
                f" attempts = attempts + 1 WHERE id IN ({id_marks})",
                (lease, worker, *ids),
            )
            async with db.execute(
                "SELECT o.id, o.idem_key, COALESCE(b.body, o.body) AS body, o.attempts,"
                " c.platform, c.chat_id, c.thread_id FROM outbox o JOIN chats c ON c.id = o.chat"
                " LEFT JOIN outbox_bodies b ON b.hash = o.body_hash"
                f" WHERE o.id IN ({id_marks}) ORDER BY o.id",
                ids,
            ) as cur:
                rows = await cur.fetchall()
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
        marks = ", ".join("?" for _ in item_ids)
        async with self.transaction() as db:
            cur = await db.execute(
                "UPDATE outbox SET lease_until = ? WHERE status = 'sending' AND worker = ?"
                f" AND id IN ({marks})",
                (_ts(lease_until), worker, *item_ids),
            )
            count = cur.rowcount
            await cur.close()
        return int(count)

    async def mark_sent(self, sent: Sequence[tuple[int, list[str]]], now: datetime) -> None:
        if not sent:
            return
        stamp = _ts(now)
        async with self.transaction() as db:
            await db.executemany(
                "UPDATE outbox SET status = 'sent', sent_at = ?, message_ids = ?,"
                " lease_until = NULL, error = NULL WHERE id = ?",
                [(stamp, json.dumps(ids), item_id) for item_id, ids in sent],
            )

    async def mark_failed(
        self, item_id: int, next_attempt_at: datetime, error: str, *, refund: bool = False
    ) -> None:
        async with self.transaction() as db:
            await db.execute(
                "UPDATE outbox SET status = 'pending', next_attempt_at = ?, lease_until = NULL,"
                " error = ?, attempts = MAX(0, attempts - ?) WHERE id = ? AND status = 'sending'",
                (_ts(next_attempt_at), clean_text(error)[:500], int(refund), item_id),
            )

    async def mark_dead(self, item_id: int, error: str) -> None:
        async with self.transaction() as db:
            await db.execute(
                "UPDATE outbox SET status = 'dead', lease_until = NULL, error = ? WHERE id = ?",
                (clean_text(error)[:500], item_id),
            )

    async def _chat_rows(self, chat: ChatRef, sql: str, params: tuple[Any, ...]) -> int:
        async with self.transaction() as db:
            pk = await self._chat_pk(chat)
            if pk is None:
                return 0
            cur = await db.execute(sql, (*params, pk))
            count = cur.rowcount
            await cur.close()
        return int(count)

    async def defer_chat_outbox(self, chat: ChatRef, until: datetime) -> int:
        return await self._chat_rows(
            chat,
            "UPDATE outbox SET status = 'pending', lease_until = NULL,"
            " next_attempt_at = MAX(next_attempt_at, ?)"
            " WHERE status IN ('pending', 'sending') AND chat = ?",
            (_ts(until),),
        )

    async def drop_chat_outbox(self, chat: ChatRef, error: str) -> int:
        return await self._chat_rows(
            chat,
            "UPDATE outbox SET status = 'dead', lease_until = NULL, error = ?"
            " WHERE status IN ('pending', 'sending') AND chat = ?",
            (clean_text(error)[:500],),
        )

    async def outbox_counts(self) -> dict[str, int]:
        async with (
            self._reading() as db,
            db.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status") as cur,
        ):
            rows = await cur.fetchall()
        counts = dict.fromkeys(("pending", "sending", "sent", "dead"), 0)
        counts.update({row[0]: int(row[1]) for row in rows})
        return counts

    async def next_outbox_time(self, platforms: Sequence[str]) -> datetime | None:
        if not platforms:
            return None
        marks = ", ".join("?" for _ in platforms)
        async with (
            self._reading() as db,
            db.execute(
                # Heads only: a row behind another of its chat is not claimable at its time.
                "SELECT MIN(t) FROM ("
                f" SELECT MIN(next_attempt_at) AS t FROM outbox o WHERE status = 'pending'"
                f" AND platform IN ({marks}) AND {_HEAD} UNION ALL"
                f" SELECT MIN(lease_until) FROM outbox WHERE status = 'sending'"
                f" AND platform IN ({marks}))",
                (*platforms, *platforms),
            ) as cur,
        ):
            row = await cur.fetchone()
        return _ts_in(row[0]) if row and row[0] else None

    async def prune_outbox(self, before: datetime) -> int:
        async with self.transaction() as db:
            cur = await db.execute(
                "DELETE FROM outbox WHERE status IN ('sent', 'dead') AND created_at < ?",
                (_ts(before),),
            )
            count = cur.rowcount
            await cur.close()
            await db.execute(
                "DELETE FROM outbox_bodies WHERE hash NOT IN"
                " (SELECT body_hash FROM outbox WHERE body_hash IS NOT NULL)"
            )
        return int(count)

    # message memory

    async def remember_message_papers(
        self, chat: ChatRef, message_ids: Sequence[str], paper_id: str
    ) -> None:
        if not message_ids:
            return
        platform, chat_id, _ = records.key(chat)
        paper, stamp = clean_text(paper_id), _ts(datetime.now(UTC))
        async with self.transaction() as db:
            await db.executemany(
                "INSERT INTO message_papers (platform, chat_id, message_id, paper_id, created_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (platform, chat_id, message_id) DO UPDATE"
                " SET paper_id = excluded.paper_id, created_at = excluded.created_at",
                [(platform, chat_id, clean_text(mid), paper, stamp) for mid in message_ids],
            )

    async def message_paper(self, chat: ChatRef, message_id: str) -> str | None:
        platform, chat_id, _ = records.key(chat)
        async with (
            self._reading() as db,
            db.execute(
                "SELECT paper_id FROM message_papers"
                " WHERE platform = ? AND chat_id = ? AND message_id = ?",
                (platform, chat_id, clean_text(message_id)),
            ) as cur,
        ):
            row = await cur.fetchone()
        return None if row is None else str(row[0])

    async def save_callbacks(self, callbacks: Mapping[str, str]) -> None:
        if not callbacks:
            return
        stamp = _ts(datetime.now(UTC))
        async with self.transaction() as db:
            await db.executemany(
                "INSERT INTO callbacks (key, data, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET"
                " data = excluded.data, created_at = excluded.created_at",
                [(clean_text(k), clean_text(v), stamp) for k, v in callbacks.items()],
            )

    async def load_callback(self, key: str) -> str | None:
        async with (
            self._reading() as db,
            db.execute("SELECT data FROM callbacks WHERE key = ?", (clean_text(key),)) as cur,
        ):
            row = await cur.fetchone()
        return None if row is None else str(row[0])

    async def prune_message_memory(self, before: datetime) -> int:
        stamp = _ts(before)
        count = 0
        async with self.transaction() as db:
            for table in ("message_papers", "callbacks"):
                cur = await db.execute(f"DELETE FROM {table} WHERE created_at < ?", (stamp,))
                count += cur.rowcount
                await cur.close()
        return count


def _list(text: str) -> list[str]:
    # Most subscriptions have no filters: skip the JSON parser for those.
    return [] if text == "[]" else list(json.loads(text))


# ------------------------------------------------------------- outbox and schedule
# Helpers of SQLiteStore's outbox section: instants are fixed-width UTC text (see 0002).

# No earlier row of the same chat is still to send (dead rows do not hold a chat back).
_HEAD = (
    "NOT EXISTS (SELECT 1 FROM outbox p WHERE p.chat = o.chat"
    " AND p.status IN ('pending', 'sending') AND p.id < o.id)"
)


def _ts(moment: datetime) -> str:
    return to_utc(moment).astimezone(UTC).isoformat(timespec="microseconds")


@functools.lru_cache(maxsize=4096)
def _ts_in(text: str) -> datetime:
    # Cached: a scheduler round reads the same few due instants for thousands of chats.
    return to_utc(datetime.fromisoformat(text))


_CHAT_SETTINGS_C = ", ".join(f"c.{col.strip()}" for col in _CHAT_SETTINGS.split(","))
