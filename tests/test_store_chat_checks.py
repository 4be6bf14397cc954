"""Every delivered and outbox row names a chat that exists, on every backend.

SQLite enforces it with foreign keys; PostgreSQL, since revision 0004, with triggers that
check once per statement and lock the chats as a foreign key would. These tests hold both
to the same rules, and PostgreSQL's against a concurrent delete, where a check without the
lock would leave rows behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest
from sqlalchemy.exc import IntegrityError

from bot.models import ChatRef, ChatSettings
from bot.store.base import Store
from bot.store.sql import SQLStore
from tests.test_store import StoreFactory, fetch_rows, make_store  # noqa: F401 - the fixture

A = ChatRef("telegram", "101")
B = ChatRef("telegram", "102")
STAMP = "2026-03-02T09:00:00.000000+00:00"


async def _opened(make_store: StoreFactory, *chats: ChatRef) -> SQLStore:  # noqa: F811
    store = cast(SQLStore, make_store())
    await store.open()
    for chat in chats:
        await store.save_chat(ChatSettings(chat))
    return store


async def _pk(store: SQLStore, chat: ChatRef) -> int:
    rows = await fetch_rows(store, f"SELECT id FROM chats WHERE chat_id = '{chat.chat_id}'")
    return int(rows[0][0])


def _at(store: SQLStore) -> str:
    return f"'{STAMP}'" if store.is_sqlite else f"'{STAMP}'::timestamptz"


async def _execute(store: SQLStore, *statements: str) -> None:
    async with store.transaction() as conn:
        for sql in statements:
            await conn.exec_driver_sql(sql)


def _delivered(store: SQLStore, chat: int, paper: str) -> str:
    return (
        "INSERT INTO delivered (chat, paper_id, delivered_at)"
        f" VALUES ({chat}, '{paper}', {_at(store)})"
    )


def _outbox(store: SQLStore, chat: int, key: str) -> str:
    return (
        "INSERT INTO outbox (idem_key, chat, platform, seq, body, status, attempts,"
        f" next_attempt_at, created_at) VALUES ('{key}', {chat}, 'telegram', 0, '{{}}',"
        f" 'pending', 0, {_at(store)}, {_at(store)})"
    )


async def _count(store: Store, table: str) -> int:
    return int((await fetch_rows(store, f"SELECT count(*) FROM {table}"))[0][0])


async def test_rows_for_a_chat_that_does_not_exist_are_refused(
    make_store: StoreFactory,  # noqa: F811
) -> None:
    store = await _opened(make_store, A)
    pk = await _pk(store, A)
    missing = pk + 1000
    for statement in (_delivered(store, missing, "2603.00001"), _outbox(store, missing, "k1")):
        with pytest.raises(IntegrityError):
            await _execute(store, statement)
    # One missing chat among many refuses the whole statement, and nothing of it stays.
    with pytest.raises(IntegrityError):
        await _execute(
            store,
            "INSERT INTO delivered (chat, paper_id, delivered_at) VALUES"
            f" ({pk}, 'a', {_at(store)}), ({missing}, 'b', {_at(store)})",
        )
    assert await _count(store, "delivered") == 0
    await _execute(store, _delivered(store, pk, "2603.00001"), _outbox(store, pk, "k2"))
    assert (await _count(store, "delivered"), await _count(store, "outbox")) == (1, 1)
    # Moving a row to a chat that does not exist is refused too.
    with pytest.raises(IntegrityError):
        await _execute(store, f"UPDATE outbox SET chat = {missing}")
    with pytest.raises(IntegrityError):
        await _execute(store, f"UPDATE delivered SET chat = {missing}")
    # Other updates of the rows are no concern of the check.
    await _execute(store, "UPDATE outbox SET attempts = 1")


async def test_deleting_a_chat_takes_its_rows_and_no_others(
    make_store: StoreFactory,  # noqa: F811
) -> None:
    store = await _opened(make_store, A, B)
    a, b = await _pk(store, A), await _pk(store, B)
    await _execute(
        store,
        _delivered(store, a, "p1"),
        _delivered(store, a, "p2"),
        _delivered(store, b, "p1"),
        _outbox(store, a, "ka"),
        _outbox(store, b, "kb"),
    )
    await _execute(store, f"DELETE FROM chats WHERE id = {a}")
    assert await fetch_rows(store, "SELECT chat, paper_id FROM delivered") == [(b, "p1")]
    assert await fetch_rows(store, "SELECT chat, idem_key FROM outbox") == [(b, "kb")]


async def test_a_chat_migration_carries_its_rows_across(make_store: StoreFactory) -> None:  # noqa: F811
    store = await _opened(make_store, A)
    a = await _pk(store, A)
    await _execute(store, _delivered(store, a, "p1"), _outbox(store, a, "ka"))
    await store.migrate_chat(A, B)
    b = await _pk(store, B)
    assert await fetch_rows(store, "SELECT chat, paper_id FROM delivered") == [(b, "p1")]
    assert await fetch_rows(store, "SELECT chat, idem_key FROM outbox") == [(b, "ka")]


@pytest.mark.postgres
async def test_postgres_truncating_chats_empties_their_rows(
    make_store: StoreFactory,  # noqa: F811
) -> None:
    store = await _opened(make_store, A)
    if store.is_sqlite:
        pytest.skip("SQLite has no TRUNCATE")
    a = await _pk(store, A)
    await _execute(store, _delivered(store, a, "p1"), _outbox(store, a, "ka"))
    await _execute(store, "TRUNCATE chats CASCADE")
    assert (await _count(store, "delivered"), await _count(store, "outbox")) == (0, 0)


@asynccontextmanager
async def _two_transactions(
    make_store: StoreFactory,  # noqa: F811
) -> AsyncIterator[tuple[SQLStore, int, Any, Any]]:
    """(store, chat A's row id, first, second): two asyncpg connections, each in BEGIN."""
    store = await _opened(make_store, A)
    if store.is_sqlite:
        pytest.skip("SQLite writes one at a time")
    a = await _pk(store, A)
    async with store.engine.connect() as one, store.engine.connect() as two:
        first, second = await store.driver_connection(one), await store.driver_connection(two)
        await first.execute("BEGIN")
        await second.execute("BEGIN")
        yield store, a, first, second


async def _blocked(statement: Any) -> asyncio.Future[Any]:
    """`statement` started, and seen to wait (for the other transaction's lock)."""
    running = asyncio.ensure_future(statement)
    await asyncio.sleep(0.3)
    assert not running.done()
    return running


@pytest.mark.postgres
async def test_postgres_a_delete_waits_for_the_rows_being_inserted_and_takes_them(
    make_store: StoreFactory,  # noqa: F811
) -> None:
    """Insert first: the check's lock makes the delete wait, which then removes the rows."""
    async with _two_transactions(make_store) as (store, a, inserting, deleting):
        await inserting.execute(_delivered(store, a, "p1"))
        await inserting.execute(_outbox(store, a, "ka"))
        delete = await _blocked(deleting.execute(f"DELETE FROM chats WHERE id = {a}"))
        await inserting.execute("COMMIT")
        await asyncio.wait_for(delete, 10)
        await deleting.execute("COMMIT")
    assert (await _count(store, "delivered"), await _count(store, "outbox")) == (0, 0)


@pytest.mark.postgres
async def test_postgres_rows_for_a_chat_being_deleted_wait_and_are_refused(
    make_store: StoreFactory,  # noqa: F811
) -> None:
    """Delete first: the insert waits for the delete, then finds no chat and fails."""
    import asyncpg

    async with _two_transactions(make_store) as (store, a, deleting, inserting):
        await deleting.execute(f"DELETE FROM chats WHERE id = {a}")
        insert = await _blocked(inserting.execute(_delivered(store, a, "p1")))
        await deleting.execute("COMMIT")
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await asyncio.wait_for(insert, 10)
        await inserting.execute("ROLLBACK")
    assert (await _count(store, "delivered"), await _count(store, "chats")) == (0, 0)
