"""A task cancelled while it uses the store (shutdown cancels the delivery loop at any point)
leaves the store working: what was committed before stays, the cancelled transaction
leaves nothing half-done, and the next store calls run. On SQLite file, SQLite :memory:
and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa

from bot.models import ChatRef, ChatSettings
from bot.store.sql import SQLStore
from tests.test_store import PG_DSN, _pg_admin

KEPT = ChatRef("telegram", "1")
LATER = ChatRef("telegram", "3")

# Slow statements, so a cancellation arrives while one is in flight.
SLOW = {
    "sqlite": "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 5000000)"
    " SELECT count(*) FROM n",
    "postgres": "SELECT pg_sleep(2)",
}


@pytest.fixture(
    params=["sqlite-file", "sqlite-memory", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def store(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[SQLStore]:
    """An open store holding chat KEPT and an empty table `probe(k)`."""
    schema = None
    admin = None
    if request.param == "sqlite-file":
        made = SQLStore(sqlite_path=str(tmp_path / "paperboy.db"))
    elif request.param == "sqlite-memory":
        made = SQLStore(sqlite_path=":memory:")
    else:
        admin = await _pg_admin()
        schema = f"paperboy_test_{uuid.uuid4().hex[:16]}"
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        made = SQLStore(dsn=f"{PG_DSN}?search_path={schema}", pool=2)
    try:
        await made.open()
        await made.save_chat(ChatSettings(KEPT))
        async with made.transaction() as conn:
            await conn.exec_driver_sql("CREATE TABLE probe (k TEXT PRIMARY KEY)")
        yield made
    finally:
        await made.close()
        if admin is not None:
            await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await admin.close()


def _slow(store: SQLStore) -> str:
    return SLOW["sqlite" if store.is_sqlite else "postgres"]


async def _probe(store: SQLStore) -> set[str]:
    async with store.reading() as conn:
        return {row[0] for row in await conn.exec_driver_sql("SELECT k FROM probe")}


async def _still_works(store: SQLStore) -> None:
    """Committed data intact; reads, writes and transactions run again."""
    assert await store.get_chat(KEPT) is not None
    await store.save_chat(ChatSettings(LATER))
    assert await store.get_chat(LATER) is not None
    async with store.transaction() as conn:
        await conn.exec_driver_sql("INSERT INTO probe (k) VALUES ('after')")
    assert "after" in await _probe(store)
    # Many times over, in case a broken connection only shows on some of the pool's.
    for _ in range(5):
        assert await store.get_chat(KEPT) is not None


async def _cancel_when(task: asyncio.Task[Any], started: asyncio.Event, wait: float) -> None:
    await started.wait()
    await asyncio.sleep(wait)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_cancelled_in_a_slow_statement_of_a_write(store: SQLStore) -> None:
    started = asyncio.Event()

    async def write() -> None:
        async with store.transaction() as conn:
            await conn.exec_driver_sql("INSERT INTO probe (k) VALUES ('cancelled')")
            started.set()
            await conn.exec_driver_sql(_slow(store))

    await _cancel_when(asyncio.create_task(write()), started, 0.1)
    assert await _probe(store) == set()
    await _still_works(store)


async def test_cancelled_in_a_slow_read(store: SQLStore) -> None:
    started = asyncio.Event()

    async def read() -> None:
        async with store.reading() as conn:
            started.set()
            await conn.exec_driver_sql(_slow(store))

    await _cancel_when(asyncio.create_task(read()), started, 0.1)
    await _still_works(store)


async def test_cancelled_between_statements_of_a_write(store: SQLStore) -> None:
    started = asyncio.Event()

    async def write() -> None:
        async with store.transaction() as conn:
            await conn.exec_driver_sql("INSERT INTO probe (k) VALUES ('cancelled')")
            started.set()
            await asyncio.sleep(10)  # the body waits on something else

    await _cancel_when(asyncio.create_task(write()), started, 0.01)
    assert await _probe(store) == set()
    await _still_works(store)


async def test_cancelled_anywhere_in_a_write_leaves_it_whole_or_absent(store: SQLStore) -> None:
    """Cancel after 0, 1, 2... turns of the loop: in BEGIN, in an INSERT, in COMMIT (which
    aiosqlite still runs: then the write is whole, and the next one must not fail)."""
    for turns in range(80):
        keys = {f"a{turns}", f"b{turns}"}

        async def write(keys: set[str] = keys) -> None:
            async with store.transaction() as conn:
                for key in sorted(keys):
                    await conn.exec_driver_sql(f"INSERT INTO probe (k) VALUES ('{key}')")

        task = asyncio.create_task(write())
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        found = await _probe(store) & keys
        assert found in (set(), keys), f"after {turns} turns: {found}"
    await _still_works(store)


async def test_cancelled_store_calls_from_many_tasks(store: SQLStore) -> None:
    """Several tasks queue on the store; shutdown cancels them all at once."""

    async def busy(n: int) -> None:
        while True:
            await store.save_chat(ChatSettings(ChatRef("discord", str(n))))
            await store.get_chat(KEPT)

    tasks = [asyncio.create_task(busy(n)) for n in range(4)]
    await asyncio.sleep(0.2)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await _still_works(store)


async def test_an_invalidated_connection_is_rolled_back_and_replaced(
    store: SQLStore, request: pytest.FixtureRequest
) -> None:
    """What SQLAlchemy does to a connection after an error it takes for a lost connection
    (before the fix, any cancellation on SQLite): the store rolls it back and goes on."""
    async with store.reading() as conn:
        await conn.exec_driver_sql("SELECT 1")
        await conn.invalidate()
    if "memory" in request.node.callspec.id:
        # A new in-memory connection is a new database: its schema is laid out again.
        assert await store.get_chat(KEPT) is None
        await store.save_chat(ChatSettings(KEPT))
        async with store.transaction() as conn:
            await conn.exec_driver_sql("CREATE TABLE probe (k TEXT PRIMARY KEY)")
    await _still_works(store)
    if store.path not in (None, ":memory:"):
        # The new connection has the pragmas of the first.
        async with store.reading() as conn:
            for pragma, value in [
                ("journal_mode", "wal"),
                ("synchronous", 1),
                ("foreign_keys", 1),
                ("busy_timeout", 10_000),
            ]:
                got = (await conn.exec_driver_sql(f"PRAGMA {pragma}")).scalar()
                assert got == value, pragma


async def test_a_connection_invalidated_in_a_transaction_is_rolled_back(store: SQLStore) -> None:
    """Left in "invalid transaction" state, it would refuse every statement until rolled
    back (PendingRollbackError)."""
    with pytest.raises(RuntimeError):
        async with store.transaction() as conn:
            await conn.exec_driver_sql("INSERT INTO probe (k) VALUES ('lost')")
            await conn.invalidate()
            raise RuntimeError("the body fails after the connection went")
    if store.path != ":memory:":
        assert await _probe(store) == set()
        await _still_works(store)


async def _foreign_keys_enforced(store: SQLStore) -> None:
    """A row naming a chat that does not exist is refused."""
    with pytest.raises(sa.exc.IntegrityError):
        async with store.transaction() as conn:
            await conn.exec_driver_sql(
                "INSERT INTO delivered (chat, paper_id, delivered_at)"
                " VALUES (987654321, '2601.00001', '2026-01-01T00:00:00.000000Z')"
            )


async def test_a_write_that_checks_its_own_parents_leaves_foreign_keys_on(store: SQLStore) -> None:
    """transaction(parents_checked=True) turns SQLite's foreign-key look-ups off for its own
    rows only: cut off anywhere (in the pragma, BEGIN, an INSERT, COMMIT) or run to its
    end, the next transaction checks them again."""
    for turns in [*range(40), None]:  # None: not cut off
        key = f"p{turns}"

        async def write(key: str = key) -> None:
            async with store.transaction(parents_checked=True) as conn:
                await conn.exec_driver_sql(f"INSERT INTO probe (k) VALUES ('{key}')")

        task = asyncio.create_task(write())
        if turns is not None:
            for _ in range(turns):
                await asyncio.sleep(0)
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await _foreign_keys_enforced(store)
    assert "pNone" in await _probe(store)
    await _still_works(store)
