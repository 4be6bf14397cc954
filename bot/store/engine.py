"""Connections and transactions of the SQL store, on SQLAlchemy's async engine.

SQLite (aiosqlite): one connection per store, as before; an asyncio lock serialises its
users, since statements of interleaved coroutines on one connection would land in each
other's transactions. Writes take the file's write lock up front (BEGIN IMMEDIATE).
PostgreSQL (asyncpg): a pool; reads run in autocommit, writes in one transaction.

Cancellation (shutdown cancels the delivery loop at any point): SQLAlchemy takes a
CancelledError inside a statement for a lost connection and invalidates it. On SQLite
that would close the one connection (and lose a :memory: database), although aiosqlite
simply finishes the statement in its thread and runs the rollback queued after it; so a
`handle_error` hook tells SQLAlchemy it is no disconnect. A PostgreSQL connection cut off
mid-statement is in an unknown state: it is invalidated, and the pool opens a new one.
Should a connection be found invalidated anyway, it is rolled back and reconnected.

A store call made inside `transaction()` (in the same task) joins it; a nested
`transaction()` is a savepoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import URL, event
from sqlalchemy.engine import Dialect, ExceptionContext
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from bot.store import migrate

BUSY_TIMEOUT_MS = 10_000
# Every statement here is short: lagging statistics had the JIT compile the round's
# delivered look-up (46 of its 51 ms). (That look-up also needs custom plans: it asks for
# them itself, see ScheduleMixin.delivered_among.)
_PG_SETTINGS = {"jit": "off"}

log = logging.getLogger(__name__)

# (database, connection, task) of the transaction the current task runs, if any.
_current: ContextVar[tuple[Database, AsyncConnection, asyncio.Task[Any] | None] | None] = (
    ContextVar("paperboy_store_transaction", default=None)
)


class Database:
    """The engine and the transaction rules; `SQLStore` adds the queries."""

    def __init__(self, *, sqlite_path: str | None = None, dsn: str | None = None, pool: int = 10):
        if (sqlite_path is None) == (dsn is None):
            raise ValueError("give a SQLite path or a PostgreSQL DSN")
        self.path = sqlite_path
        self._dsn = dsn  # may hold a password: never logged, never put in a message
        self._pool_size = pool
        self._engine: AsyncEngine | None = None
        self._single: AsyncConnection | None = None  # SQLite's one connection
        self._lock = asyncio.Lock()
        self._parents_unchecked = False  # SQLite's foreign keys off (transaction(parents_checked))
        self.is_sqlite = sqlite_path is not None
        self.overlaps_writes = not self.is_sqlite  # see Store.overlaps_writes

    def __repr__(self) -> str:
        where = self.path if self.is_sqlite else "<dsn hidden>"
        return f"{type(self).__name__}({where})"

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("the store is not open: await store.open() first")
        return self._engine

    @property
    def dialect(self) -> Dialect:
        return self.engine.dialect

    async def _connect(self) -> None:
        """Create the engine (and SQLite's connection); no schema work yet."""
        if self.path is not None:
            if self.path != ":memory:":
                await asyncio.to_thread(_make_parent_dir, self.path)
            engine = create_async_engine(
                URL.create("sqlite+aiosqlite", database=self.path),
                poolclass=NullPool,
                # isolation_level=None: sqlite3 begins no transaction behind our back; writes
                # BEGIN IMMEDIATE themselves, reads run in autocommit.
                connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "isolation_level": None},
            )
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(engine.sync_engine, "handle_error", _cancel_is_no_disconnect)
            conn: AsyncConnection | None = None
            try:
                conn = await engine.connect()
                if self.path != ":memory:":
                    await _set_wal(conn)  # once: the file keeps it
            except BaseException:
                if conn is not None:
                    await conn.close()
                await engine.dispose()
                raise
            self._engine, self._single = engine, conn
            return
        import asyncpg

        dsn = self._dsn
        assert dsn is not None
        # The DSN goes to asyncpg as it is (its query parameters, e.g. search_path, become
        # server settings), so it is read exactly as the bot has always read it.
        self._engine = create_async_engine(
            "postgresql+asyncpg://",
            async_creator=lambda: asyncpg.connect(dsn, server_settings=_PG_SETTINGS),
            pool_size=self._pool_size,
            max_overflow=0,
        )

    async def _disconnect(self) -> None:
        engine, single = self._engine, self._single
        if engine is None:
            return
        async with self._lock:
            self._engine = self._single = None
            if single is not None:
                await single.close()
            await engine.dispose()

    async def driver_connection(self, conn: AsyncConnection) -> Any:
        """The aiosqlite or asyncpg connection under `conn` (tests and benchmarks)."""
        raw = await conn.get_raw_connection()
        return raw.driver_connection

    @property
    def db(self) -> Any:
        """SQLite's aiosqlite connection, for tests and benchmarks that look underneath."""
        if self._single is None:
            raise RuntimeError("no SQLite connection: the store is closed or on PostgreSQL")
        fairy = self._single.sync_connection
        assert fairy is not None
        return fairy.connection.driver_connection

    # transactions

    async def _sqlite_connection(self) -> AsyncConnection:
        """SQLite's connection, usable. Invalidated by an error SQLAlchemy took for a lost
        connection, it is rolled back and its next statement reconnects (the "connect"
        listener sets the pragmas again); left on an inactive transaction (a COMMIT cut off
        by a cancellation, which aiosqlite still ran), it is rolled back. Under the lock."""
        conn = self._single
        assert conn is not None
        transaction = conn.get_transaction()
        lost = conn.invalidated
        if lost or (transaction is not None and not transaction.is_active):
            await conn.rollback()
        if self._parents_unchecked:  # a transaction(parents_checked) was cut off
            await self._check_parents(conn)
        if lost and self.path == ":memory:":
            # A new connection is a new, empty database: lay the schema out again so the
            # bot goes on (what the old one held is gone).
            log.error("the in-memory database was lost; starting an empty one")
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
            await migrate.upgrade(conn)
            await conn.commit()
        return conn

    async def _check_parents(self, conn: AsyncConnection) -> None:
        """Foreign keys checked again (a new connection has them on from the start)."""
        await conn.exec_driver_sql("PRAGMA foreign_keys = ON")
        self._parents_unchecked = False

    def _joined(self) -> AsyncConnection | None:
        current = _current.get()
        if current is not None and current[0] is self and current[2] is asyncio.current_task():
            return current[1]
        return None

    @asynccontextmanager
    async def transaction(self, *, parents_checked: bool = False) -> AsyncIterator[AsyncConnection]:
        """One write transaction; nested, a savepoint. Do not await other tasks that use
        this store from inside: on SQLite they would wait for it forever.

        `parents_checked`: the caller itself makes sure, inside this transaction, that every
        row it inserts names a parent that exists (the write lock keeps it so until the
        commit), so SQLite may skip its own look-up per inserted row: a scheduler round
        inserts nearly a million rows, and those look-ups were a tenth of its time.
        PostgreSQL, and a nested transaction, check as always."""
        conn = self._joined()
        if conn is not None:
            async with conn.begin_nested():
                yield conn
            return
        task = asyncio.current_task()
        if self._single is not None:
            async with self._lock:
                conn = await self._sqlite_connection()
                token = _current.set((self, conn, task))
                try:
                    try:
                        if parents_checked:
                            # Only outside a transaction does the pragma take effect; set
                            # back below, or by the next holder of the lock if cut off.
                            self._parents_unchecked = True
                            await conn.exec_driver_sql("PRAGMA foreign_keys = OFF")
                        # IMMEDIATE takes the write lock up front, so a reader never has to
                        # upgrade and hit SQLITE_BUSY halfway through. Inside the try: a
                        # BEGIN cut off by a cancellation still runs, so it is rolled back.
                        await conn.exec_driver_sql("BEGIN IMMEDIATE")
                        yield conn
                    except BaseException:
                        await conn.rollback()
                        raise
                    await conn.commit()
                finally:
                    _current.reset(token)
                    if self._parents_unchecked:
                        # Failing here (a rollback cut off too) must not hide why the
                        # transaction ended: the next holder of the lock sets it back.
                        with contextlib.suppress(Exception):
                            await self._check_parents(conn)
            return
        async with self.engine.connect() as conn, conn.begin():
            token = _current.set((self, conn, task))
            try:
                yield conn
            finally:
                _current.reset(token)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads: the running transaction's, or one in autocommit."""
        conn = self._joined()
        if conn is not None:
            yield conn
            return
        if self._single is not None:
            # Waits for a running transaction, so reads never see its uncommitted rows.
            async with self._lock:
                yield await self._sqlite_connection()
            return
        async with self.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn


def _make_parent_dir(path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys = ON")
    # NORMAL is durable across application crashes in WAL mode, and faster.
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


def _cancel_is_no_disconnect(context: ExceptionContext) -> None:
    """SQLite: a statement cut off by a cancellation leaves the connection sound (aiosqlite
    runs it to its end in its thread, before anything queued after it)."""
    if isinstance(context.original_exception, asyncio.CancelledError):
        context.is_disconnect = False


async def _set_wal(conn: AsyncConnection) -> None:
    """Switch to WAL. When several processes open a fresh file together, the switch can fail
    with "database is locked" at once, ignoring busy_timeout, so it is retried here."""
    loop = asyncio.get_running_loop()
    delay, deadline = 0.01, loop.time() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            await conn.exec_driver_sql("PRAGMA journal_mode = WAL")
            return
        except Exception as exc:
            original = getattr(exc, "orig", exc)
            text = str(original)
            locked = "locked" in text or "busy" in text
            if not isinstance(original, sqlite3.OperationalError) and not locked:
                raise
            if not locked or loop.time() > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.25)
