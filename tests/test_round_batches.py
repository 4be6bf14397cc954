"""A scheduler round in many batches, on every backend: on PostgreSQL batches are written
while the next is read and built, on SQLite one after another; either way a failure or a
cancellation anywhere leaves every chat either fully enqueued or still due, never both,
never half."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from typing import Any

import pytest

from bot.delivery import scheduler_tick
from bot.models import ChatRef, ChatSettings, Subscription
from bot.service import Paperboy
from bot.sources.base import FeedFetch
from bot.store.base import Enqueue, Store
from tests.test_digest import StubSource, paper
from tests.test_store import StoreFactory, fetch_rows, make_store  # noqa: F401 - the fixture

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday: Sunday's announcement is out
CHATS = 23
BATCH = 4


async def _app(make_store: StoreFactory) -> Paperboy:  # noqa: F811
    store = make_store()
    await store.open()
    arxiv = StubSource("arxiv")
    ids = [f"2603.01{i:03d}" for i in range(3)]
    arxiv.feeds["cs.LG"] = FeedFetch([paper(i, announce_type="new") for i in ids], date(2026, 3, 1))
    app = Paperboy(store, arxiv, StubSource("hf"))
    chats = [ChatRef("telegram", str(1000 + n)) for n in range(CHATS)]
    for chat in chats:
        await store.save_chat(ChatSettings(chat, delivery_time=time(9)))
        await store.add_subscription(Subscription(chat, "arxiv:cs.LG"))
    assert len(await store.unscheduled_chats(100)) == CHATS
    await store.set_next_runs([(chat, T0) for chat in chats])
    return app


async def _enqueued(store: Store) -> list[str]:
    """The chats with outbox rows, one entry per row."""
    rows = await fetch_rows(
        store, "SELECT c.chat_id FROM outbox o JOIN chats c ON c.id = o.chat ORDER BY c.chat_id"
    )
    return [r[0] for r in rows]


async def _still_due(store: Store) -> set[str]:
    return {d.settings.chat.chat_id for d in await store.due_chats(T0, 100)}


def _writes_of(store: Store) -> list[list[Enqueue]]:
    """Records each batch the round hands to enqueue_digests (the store's own method runs)."""
    batches: list[list[Enqueue]] = []
    original = store.enqueue_digests

    async def recording(digests: Sequence[Enqueue], now: datetime) -> int:
        batches.append(list(digests))
        return await original(digests, now)

    store.enqueue_digests = recording  # type: ignore[method-assign]
    return batches


def _fail_call(store: Store, method: str, call: int, error: Exception) -> None:
    """The store's `method` raises `error` on its `call`-th call; the others run it."""
    original = getattr(store, method)
    calls = 0

    async def failing(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == call:
            raise error
        return await original(*args)

    setattr(store, method, failing)


async def test_a_round_in_many_batches_enqueues_every_chat_once(
    make_store: StoreFactory,  # noqa: F811
) -> None:
    app = await _app(make_store)
    store = app.store
    writing = 0  # writes under way
    enqueue_digests = store.enqueue_digests

    async def counted(digests: Sequence[Enqueue], now: datetime) -> int:
        nonlocal writing
        writing += 1
        try:
            return await enqueue_digests(digests, now)
        finally:
            writing -= 1

    store.enqueue_digests = counted  # type: ignore[method-assign]
    batches = _writes_of(store)
    reads: list[tuple[tuple[datetime, int] | None, int]] = []  # (after, writes under way)
    due_chats = store.due_chats

    async def reading(now: datetime, limit: int, after: tuple[datetime, int] | None = None) -> Any:
        reads.append((after, writing))
        return await due_chats(now, limit, after)

    store.due_chats = reading  # type: ignore[method-assign]
    stats = await scheduler_tick(app, T0, batch=BATCH)
    assert (stats.chats, stats.digests, stats.messages) == (CHATS, CHATS, CHATS)
    assert len(batches) == -(-CHATS // BATCH)
    if store.overlaps_writes:
        # Each batch but the first was read, while the one before was being built, from
        # just after that one's newest chat; some reads while writes were under way.
        assert reads[0][0] is None
        for n, batch in enumerate(batches[:-1]):
            after = reads[n + 1][0]
            assert after is not None and after[1] == max(d.pk or 0 for d in batch)
        assert any(under_way for _, under_way in reads)
    else:  # SQLite: each batch written before the next is read
        assert reads == [(None, 0)] * (len(batches) + 1)
    chats_written = [d.chat.chat_id for batch in batches for d in batch]
    assert sorted(chats_written) == sorted({*chats_written})  # no chat twice
    assert await _enqueued(app.store) == sorted(str(1000 + n) for n in range(CHATS))
    assert await _still_due(app.store) == set()
    again = await scheduler_tick(app, T0, batch=BATCH)
    assert (again.chats, len(await _enqueued(app.store))) == (0, CHATS)


async def test_a_failed_write_ends_the_round_and_the_batches_before_it_stand(
    make_store: StoreFactory,  # noqa: F811
) -> None:
    app = await _app(make_store)
    store = app.store
    original = store.enqueue_digests
    _fail_call(store, "enqueue_digests", 3, RuntimeError("the database went away"))
    batches = _writes_of(store)
    with pytest.raises(RuntimeError, match="went away"):
        await scheduler_tick(app, T0, batch=BATCH)
    written = await _enqueued(store)
    failed = {d.chat.chat_id for d in batches[2]}
    # Whole batches went in (those before, and any still in flight at the failure), the
    # failed batch's chats not: every chat is enqueued or still due, never both.
    assert len(written) == len(set(written)) >= 2 * BATCH
    for batch in batches:
        chats = {d.chat.chat_id for d in batch}
        assert chats <= set(written) or chats.isdisjoint(written)
    assert failed.isdisjoint(written)
    assert await _still_due(store) == {str(1000 + n) for n in range(CHATS)} - set(written)
    # The next round picks up exactly where this one stopped.
    store.enqueue_digests = original  # type: ignore[method-assign]
    stats = await scheduler_tick(app, T0, batch=BATCH)
    assert stats.digests == CHATS - len(written)
    assert await _enqueued(store) == sorted(str(1000 + n) for n in range(CHATS))


async def test_a_batch_that_fails_to_build_lets_the_write_in_flight_finish(
    make_store: StoreFactory,  # noqa: F811
) -> None:
    app = await _app(make_store)
    store = app.store
    batches = _writes_of(store)
    # The second call builds the second batch, while the first is being written.
    _fail_call(store, "delivered_among", 2, RuntimeError("a bug in ranking"))
    with pytest.raises(RuntimeError, match="ranking"):
        await scheduler_tick(app, T0, batch=BATCH)
    assert len(batches) == 1
    assert await _enqueued(store) == sorted(d.chat.chat_id for d in batches[0])
    assert len(await _still_due(store)) == CHATS - BATCH


async def test_cancelling_a_round_cancels_the_writes_in_flight(
    make_store: StoreFactory,  # noqa: F811
) -> None:
    app = await _app(make_store)
    store = app.store
    original = store.enqueue_digests
    started, cancelled = asyncio.Event(), asyncio.Event()
    calls = 0

    async def second_hangs(digests: Sequence[Enqueue], now: datetime) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            return await original(digests, now)
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("never woken")

    store.enqueue_digests = second_hangs  # type: ignore[method-assign]
    tick = asyncio.create_task(scheduler_tick(app, T0, batch=BATCH))
    await asyncio.wait_for(started.wait(), 10)
    tick.cancel()
    with pytest.raises(asyncio.CancelledError):
        await tick
    assert cancelled.is_set()
    # The first batch is written or rolled back whole (on PostgreSQL it may still have been
    # in flight when the round was cancelled); every other chat is still due.
    written = await _enqueued(store)
    assert len(written) in (0, BATCH)
    assert await _still_due(store) == {str(1000 + n) for n in range(CHATS)} - set(written)


async def test_due_chats_reads_on_from_just_after_a_chat(
    make_store: StoreFactory,  # noqa: F811
) -> None:
    app = await _app(make_store)
    due = await app.store.due_chats(T0, 100)
    assert len(due) == CHATS and all(d.pk is not None for d in due)
    fifth = due[4]
    assert fifth.pk is not None
    rest = await app.store.due_chats(T0, 100, after=(fifth.due_at, fifth.pk))
    assert [d.pk for d in rest] == [d.pk for d in due[5:]]
    assert [d.pk for d in await app.store.due_chats(T0, 3, after=(fifth.due_at, fifth.pk))] == [
        d.pk for d in due[5:8]
    ]
