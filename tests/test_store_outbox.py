"""The Store's outbox and schedule methods, on every backend (SQLite and PostgreSQL).

The `make_store` fixture comes from tests/test_store.py: each test gets a fresh database.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.models import ChatRef, ChatSettings, Subscription, filter_key
from bot.store.base import Enqueue, Store
from bot.store.schedule import _stored_hash, body_hash
from bot.store.text import clean_text
from tests.test_store import StoreFactory, make_store  # noqa: F401 - the fixture

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
A = ChatRef("telegram", "101")
B = ChatRef("telegram", "-1002", "7")
D = ChatRef("discord", "303")


async def _opened(make_store: StoreFactory) -> Store:  # noqa: F811
    store = make_store()
    await store.open()
    return store


async def _subscribe(store: Store, *chats: ChatRef) -> None:
    for chat in chats:
        await store.save_chat(ChatSettings(chat, delivery_time=time(9)))
        await store.add_subscription(Subscription(chat, "arxiv:cs.LG"))


def _digest(chat: ChatRef, n: int, *, due: datetime = T0, papers: int = 2) -> Enqueue:
    run = due.strftime("%Y%m%dT%H%M%SZ")
    return Enqueue(
        chat,
        due,
        due + timedelta(days=1),
        [(f"{chat.key}:{run}:{i}", f'{{"n": {i}}}') for i in range(n)],
        [f"2603.{i:05d}" for i in range(papers)],
    )


async def _schedule(store: Store, *chats: ChatRef, at: datetime = T0) -> None:
    unscheduled = await store.unscheduled_chats(100)
    assert {s.chat for s, _ in unscheduled} >= set(chats)
    await store.set_next_runs([(chat, at) for chat in chats])


async def test_schedule_due_and_enqueue_in_one_step(make_store: StoreFactory) -> None:  # noqa: F811
    store = await _opened(make_store)
    await _subscribe(store, A, B, D)
    await _schedule(store, A, B, D)
    assert await store.unscheduled_chats(100) == []
    assert await store.due_chats(T0 - timedelta(seconds=1), 10) == []
    due = await store.due_chats(T0, 10)
    assert {d.settings.chat for d in due} == {A, B, D}
    assert all(d.due_at == T0 and len(d.subscriptions) == 1 for d in due)

    inserted = await store.enqueue_digests([_digest(A, 2), _digest(B, 1), _digest(D, 0)], T0)
    assert inserted == 3
    # The same run again (a second scheduler, a restart): nothing new, nothing moved.
    assert await store.enqueue_digests([_digest(A, 2)], T0) == 0
    assert await store.due_chats(T0 + timedelta(hours=1), 10) == []
    assert [d.settings.chat for d in await store.due_chats(T0 + timedelta(days=1), 10)]
    assert await store.delivered_ids(A, ["2603.00000", "2603.00001", "x"]) == {
        "2603.00000",
        "2603.00001",
    }
    pks = {d.settings.chat: d.pk for d in due if d.pk is not None}
    assert len(set(pks.values())) == 3
    among = await store.delivered_among(list(pks.values()), ["2603.00000", "2603.00009"])
    assert among == {pks[A]: {"2603.00000"}, pks[B]: {"2603.00000"}, pks[D]: {"2603.00000"}}
    assert await store.outbox_counts() == {"pending": 3, "sending": 0, "sent": 0, "dead": 0}


async def test_a_round_carries_row_ids_and_shared_filters(make_store: StoreFactory) -> None:  # noqa: F811
    """due_chats hands the round each chat's row id and one filter key per distinct mix;
    enqueueing by row id skips a chat that moved away meanwhile, and keeps the others."""
    store = await _opened(make_store)
    await _subscribe(store, A, B, D)
    await store.add_subscription(Subscription(D, "hf:daily", keywords=["graph"]))
    await _schedule(store, A, B, D)
    due = {d.settings.chat: d for d in await store.due_chats(T0, 10)}
    assert due[A].mix is due[B].mix  # the same mix, one object
    assert due[A].mix.filters == tuple(map(filter_key, due[A].subscriptions))
    assert due[D].mix.filters == tuple(map(filter_key, due[D].subscriptions))
    assert [s.feed for s in due[D].subscriptions] == ["arxiv:cs.LG", "hf:daily"]
    assert due[D].subscriptions[1].keywords == ["graph"]
    assert {s.chat for s in due[D].subscriptions} == {D}
    assert due[D].mix.feeds == ("arxiv:cs.LG", "hf:daily")
    # Between reading and enqueueing, B merges into a chat that already existed (its row is
    # deleted: its digest is dropped) and D moves to a new id (its row, re-keyed, keeps it).
    merged_into, moved = ChatRef("telegram", "-100998"), ChatRef("telegram", "-100999")
    await store.save_chat(ChatSettings(merged_into))
    await store.migrate_chat(B, merged_into)
    await store.migrate_chat(D, moved)
    digests = [_digest(chat, 1) for chat in (A, B, D)]
    for digest in digests:
        digest.pk = due[digest.chat].pk
    assert await store.enqueue_digests(digests, T0) == 2
    assert await store.delivered_ids(A, ["2603.00000"]) == {"2603.00000"}
    assert await store.delivered_ids(moved, ["2603.00000"]) == {"2603.00000"}
    assert await store.delivered_ids(merged_into, ["2603.00000"]) == set()
    assert (await store.outbox_counts())["pending"] == 2


async def test_settings_change_and_first_subscription_reschedule(
    make_store: StoreFactory,  # noqa: F811
) -> None:
    store = await _opened(make_store)
    await _subscribe(store, A)
    await _schedule(store, A)
    assert await store.unscheduled_chats(10) == []
    await store.save_chat(ChatSettings(A, delivery_time=time(18)))
    assert [s.chat for s, _ in await store.unscheduled_chats(10)] == [A]
    await store.set_next_runs([(A, T0)])
    # A stale next run does not move a chat whose schedule changed meanwhile.
    await store.save_chat(ChatSettings(A, delivery_time=time(7)))
    await store.enqueue_digests([_digest(A, 1)], T0)
    assert [s.chat for s, _ in await store.unscheduled_chats(10)] == [A]
    # Settings that do not touch the schedule leave it alone.
    await store.set_next_runs([(A, T0)])
    await store.save_chat(ChatSettings(A, delivery_time=time(7), count=3))
    assert await store.unscheduled_chats(10) == []
    await store.set_chat_active(A, False)
    await store.set_chat_active(A, True)
    assert [s.chat for s, _ in await store.unscheduled_chats(10)] == [A]


async def test_claim_send_retry_and_die(make_store: StoreFactory) -> None:  # noqa: F811
    store = await _opened(make_store)
    await _subscribe(store, A, D)
    await _schedule(store, A, D)
    await store.enqueue_digests([_digest(A, 3), _digest(D, 1)], T0)
    keys = [f"{A.key}:20260302T090000Z:{n}" for n in range(3)]

    assert await store.claim_outbox(T0, 10, 60, "w1", []) == []
    # One row per chat: its first; the next only once that one is settled.
    [first] = await store.claim_outbox(T0, 10, 60, "w1", ["telegram"])
    assert (first.chat, first.key, first.attempts, first.body) == (A, keys[0], 1, '{"n": 0}')
    assert await store.claim_outbox(T0, 10, 60, "w1", ["telegram"]) == []  # leased
    await store.mark_sent([(first.id, ["m1", "m2"])], T0)
    [second] = await store.claim_outbox(T0, 10, 60, "w1", ["telegram"])
    assert second.key == keys[1]
    await store.mark_failed(second.id, T0 + timedelta(minutes=5), "HTTP 502")
    # Row 2 is due, but row 1 waits for its retry: row 2 waits behind it.
    assert await store.claim_outbox(T0 + timedelta(minutes=1), 10, 60, "w1", ["telegram"]) == []
    assert await store.next_outbox_time(["telegram"]) == T0 + timedelta(minutes=5)
    assert await store.next_outbox_time(["discord"]) == T0
    assert await store.next_outbox_time([]) is None

    again = await store.claim_outbox(T0 + timedelta(minutes=5), 10, 60, "w2", ["telegram"])
    assert [(i.id, i.attempts) for i in again] == [(second.id, 2)]
    await store.mark_failed(again[0].id, T0, "429", refund=True)
    [refunded] = await store.claim_outbox(T0 + timedelta(minutes=5), 10, 60, "w2", ["telegram"])
    assert refunded.attempts == 2  # the 429 did not count
    await store.mark_dead(refunded.id, "bad request")  # a dead row holds nothing back
    [third] = await store.claim_outbox(T0 + timedelta(minutes=5), 10, 60, "w2", ["telegram"])
    assert third.key == keys[2]
    await store.mark_sent([(third.id, ["m3"])], T0)
    counts = await store.outbox_counts()
    assert counts == {"pending": 1, "sending": 0, "sent": 2, "dead": 1}


async def test_an_expired_lease_is_claimed_again(make_store: StoreFactory) -> None:  # noqa: F811
    store = await _opened(make_store)
    await _subscribe(store, A)
    await _schedule(store, A)
    await store.enqueue_digests([_digest(A, 2)], T0)
    first = await store.claim_outbox(T0, 10, 30, "dead-worker", ["telegram"])
    assert len(first) == 1
    # Row 2 is due, but behind row 1: the lease decides when anything can go.
    assert await store.next_outbox_time(["telegram"]) == T0 + timedelta(seconds=30)
    assert await store.claim_outbox(T0 + timedelta(seconds=29), 10, 30, "w2", ["telegram"]) == []
    later = T0 + timedelta(seconds=31)
    second = await store.claim_outbox(later, 10, 30, "w2", ["telegram"])
    assert [(i.id, i.attempts) for i in second] == [(i.id, 2) for i in first]


async def test_the_leases_of_ended_workers_end_now(make_store: StoreFactory) -> None:  # noqa: F811
    store = await _opened(make_store)
    await _subscribe(store, A, B, D)
    await _schedule(store, A, B, D)
    await store.enqueue_digests([_digest(A, 2), _digest(B, 1), _digest(D, 1)], T0)
    await store.claim_outbox(T0, 10, 300, "dead", ["telegram"])
    await store.claim_outbox(T0, 10, 300, "alive", ["discord"])
    assert await store.outbox_lease_holders() == ["alive", "dead"]
    assert await store.expire_outbox_leases([], T0) == 0
    later = T0 + timedelta(seconds=5)
    assert await store.expire_outbox_leases(["dead", "nobody"], later) == 2
    # Claimed again at once, in order (A's first row, not its second), the attempt counted;
    # the living worker's row stays with it.
    back = await store.claim_outbox(later, 10, 300, "new", ["telegram", "discord"])
    assert sorted((i.chat.key, i.key, i.attempts) for i in back) == [
        (B.key, f"{B.key}:20260302T090000Z:0", 2),
        (A.key, f"{A.key}:20260302T090000Z:0", 2),
    ]
    assert await store.outbox_lease_holders() == ["alive", "new"]
    # A lease already over is left as it is.
    assert await store.expire_outbox_leases(["alive"], T0 + timedelta(seconds=301)) == 0


async def test_a_renewed_lease_holds_and_only_its_worker_renews(
    make_store: StoreFactory,  # noqa: F811
) -> None:
    store = await _opened(make_store)
    await _subscribe(store, A, B)
    await _schedule(store, A, B)
    await store.enqueue_digests([_digest(A, 1), _digest(B, 1)], T0)
    items = await store.claim_outbox(T0, 10, 10, "w1", ["telegram"])
    assert len(items) == 2
    ids = [i.id for i in items]
    assert await store.renew_outbox_leases(ids, "w2", T0 + timedelta(seconds=60)) == 0
    assert await store.renew_outbox_leases(ids, "w1", T0 + timedelta(seconds=20)) == 2
    assert await store.renew_outbox_leases([], "w1", T0) == 0
    # Past the first lease, but inside the renewed one: nobody else gets them.
    assert await store.claim_outbox(T0 + timedelta(seconds=15), 10, 10, "w2", ["telegram"]) == []
    back = await store.claim_outbox(T0 + timedelta(seconds=21), 10, 10, "w2", ["telegram"])
    assert sorted(i.id for i in back) == sorted(ids)
    await store.mark_sent([(ids[0], ["1"])], T0)
    assert await store.renew_outbox_leases(ids, "w2", T0 + timedelta(seconds=60)) == 1


async def test_a_chat_resumes_at_its_first_unsent_row(make_store: StoreFactory) -> None:  # noqa: F811
    """Two runs' rows for one chat, a crash in the middle: the rows go out in order."""
    store = await _opened(make_store)
    await _subscribe(store, A, D)
    await _schedule(store, A, D)
    await store.enqueue_digests([_digest(A, 2), _digest(D, 2)], T0)
    later = T0 + timedelta(days=1)
    await store.enqueue_digests([_digest(A, 2, due=later)], T0)
    sent: list[str] = []
    now = T0
    crashed = False
    for _ in range(20):
        items = await store.claim_outbox(now, 10, 30, "w", ["telegram", "discord"])
        assert len({i.chat for i in items}) == len(items)  # one row per chat
        if not items:
            now += timedelta(seconds=31)  # the crashed lease runs out
            continue
        if len(sent) == 2 and not crashed:
            crashed = True  # these rows were leased by a process that died
            continue
        await store.mark_sent([(i.id, ["x"]) for i in items], now)
        sent += [i.key for i in items]
    run0, run1 = "20260302T090000Z", "20260303T090000Z"
    assert [k for k in sent if k.startswith(A.key)] == [
        f"{A.key}:{run0}:0",
        f"{A.key}:{run0}:1",
        f"{A.key}:{run1}:0",
        f"{A.key}:{run1}:1",
    ]
    assert [k for k in sent if k.startswith(D.key)] == [f"{D.key}:{run0}:{n}" for n in (0, 1)]
    assert crashed


async def test_chat_rows_defer_drop_move_and_prune(make_store: StoreFactory) -> None:  # noqa: F811
    store = await _opened(make_store)
    await _subscribe(store, A, B)
    await _schedule(store, A, B)
    await store.enqueue_digests([_digest(A, 2), _digest(B, 2)], T0)
    leased = await store.claim_outbox(T0, 1, 60, "w1", ["telegram"])
    assert len(leased) == 1
    until = T0 + timedelta(seconds=40)
    assert await store.defer_chat_outbox(leased[0].chat, until) == 2
    assert await store.defer_chat_outbox(ChatRef("telegram", "nobody"), until) == 0
    other = B if leased[0].chat == A else A
    assert await store.drop_chat_outbox(other, "blocked") == 2
    assert await store.outbox_counts() == {"pending": 2, "sending": 0, "sent": 0, "dead": 2}
    assert await store.claim_outbox(T0, 10, 60, "w1", ["telegram"]) == []

    new = ChatRef("telegram", "-100999")
    await store.save_chat(ChatSettings(new))
    await store.migrate_chat(leased[0].chat, new)  # unsent rows follow the chat
    for _ in range(2):
        moved = await store.claim_outbox(until, 10, 60, "w1", ["telegram"])
        assert {i.chat for i in moved} == {new}
        await store.mark_sent([(i.id, ["1"]) for i in moved], until)
    assert await store.prune_outbox(T0) == 0  # created at T0: not before it
    assert await store.prune_outbox(T0 + timedelta(seconds=1)) == 4
    assert await store.outbox_counts() == {"pending": 0, "sending": 0, "sent": 0, "dead": 0}


async def test_bodies_are_kept_once_across_batches_and_prunes(make_store: StoreFactory) -> None:  # noqa: F811
    """A later batch finds a body an earlier one stored; a body pruned in between (its rows
    sent and gone) is stored again; every row reads its own body back."""
    store = await _opened(make_store)
    C = ChatRef("telegram", "104")
    await _subscribe(store, A, B, C)
    await _schedule(store, A, B, C)
    await store.enqueue_digests([_digest(A, 2)], T0)  # bodies n=0, n=1
    for _ in range(2):  # a chat's rows go one at a time
        first = await store.claim_outbox(T0, 10, 60, "w", ["telegram"])
        await store.mark_sent([(i.id, ["1"]) for i in first], T0)
    await store.enqueue_digests([_digest(B, 1)], T0)  # n=0: stored already
    await store.prune_outbox(T0 + timedelta(seconds=1))  # A's rows go, and with them n=1
    await store.enqueue_digests([_digest(C, 2)], T0)  # n=0 found, n=1 stored again
    bodies: dict[ChatRef, list[str]] = {}
    for _ in range(3):  # one row per chat at a time: a chat's next waits for its first
        claimed = await store.claim_outbox(T0, 10, 60, "w", ["telegram"])
        for item in claimed:
            bodies.setdefault(item.chat, []).append(item.body)
        await store.mark_sent([(i.id, ["1"]) for i in claimed], T0)
    assert bodies == {B: ['{"n": 0}'], C: ['{"n": 0}', '{"n": 1}']}


@pytest.mark.postgres
async def test_concurrent_claims_split_chats_between_workers(
    make_store: StoreFactory,  # noqa: F811
) -> None:
    """Many workers claiming at once: each row goes to one worker, each chat to one worker."""
    first = await _opened(make_store)
    if getattr(first, "dialect", "") != "postgres":
        pytest.skip("several processes share an outbox on PostgreSQL only")
    chats = [ChatRef("telegram", str(1000 + n)) for n in range(60)]
    await _subscribe(first, *chats)
    await _schedule(first, *chats)
    await first.enqueue_digests([_digest(c, 3) for c in chats], T0)
    workers = [first, *[await _opened(make_store) for _ in range(3)]]

    claimed: dict[int, str] = {}
    holder: dict[ChatRef, str] = {}  # chats whose rows a worker holds right now
    last: dict[ChatRef, int] = {}

    async def work(store: Store, name: str) -> None:
        while True:
            items = await store.claim_outbox(T0, 7, 60, name, ["telegram"])
            if not items:
                if len(claimed) == len(chats) * 3:
                    return
                await asyncio.sleep(0.01)
                continue
            for item in items:
                assert item.id not in claimed
                claimed[item.id] = name
                assert holder.setdefault(item.chat, name) == name, "two workers on one chat"
                assert item.id > last.get(item.chat, 0), "a chat's rows out of order"
                last[item.chat] = item.id
            await asyncio.sleep(0.001)
            for item in items:
                holder.pop(item.chat, None)
            await store.mark_sent([(i.id, []) for i in items], T0)

    await asyncio.wait_for(asyncio.gather(*(work(s, f"w{n}") for n, s in enumerate(workers))), 60)
    assert len(claimed) == len(chats) * 3
    assert len(set(claimed.values())) > 1  # the work was actually shared
    assert (await first.outbox_counts())["sent"] == len(chats) * 3


@pytest.mark.postgres
async def test_workers_schedule_their_share_and_take_over_when_late(
    make_store: StoreFactory,  # noqa: F811
) -> None:
    from bot.store.schedule import PARTITION_GRACE
    from bot.store.sql import SQLStore

    first = await _opened(make_store)
    if not isinstance(first, SQLStore) or first.is_sqlite:
        pytest.skip("worker shares are a PostgreSQL feature")
    chats = [ChatRef("telegram", str(2000 + n)) for n in range(20)]
    await _subscribe(first, *chats)
    await _schedule(first, *chats)
    second = make_store()
    assert isinstance(second, SQLStore)
    first.set_worker(0, 2)
    second.set_worker(1, 2)
    await second.open()
    mine = {d.settings.chat for d in await first.due_chats(T0, 100)}
    theirs = {d.settings.chat for d in await second.due_chats(T0, 100)}
    assert mine and theirs and not mine & theirs and mine | theirs == set(chats)
    # The other worker is late (dead?): past the grace, every due chat is anyone's.
    late = T0 + PARTITION_GRACE
    assert {d.settings.chat for d in await first.due_chats(late, 100)} == set(chats)
    with pytest.raises(ValueError):
        first.set_worker(2, 2)


@given(
    st.text(
        alphabet=st.sampled_from(["a", "é", "📰", "\x00", "\ud800", "\udc00"]) | st.characters()
    )
)
def test_a_body_is_keyed_by_the_hash_of_what_is_stored(body: str) -> None:
    """The round's shortcut hashes exactly what the outbox stores (the cleaned body)."""
    assert _stored_hash(body) == body_hash(clean_text(body))


async def test_a_mark_another_scheduler_wrote_first_is_skipped_and_the_batch_goes_in(
    make_store: StoreFactory,  # noqa: F811
) -> None:
    """A round marks papers its chats had not received when it read them; should another
    scheduler mark one meanwhile, the batch still goes in whole (on PostgreSQL by a second,
    careful try), and the mark is kept once."""
    store = await _opened(make_store)
    await _subscribe(store, A, B)
    await _schedule(store, A, B)
    first = _digest(A, 1, papers=2)
    assert await store.enqueue_digests([first], T0) == 1
    later = T0 + timedelta(days=1)
    overlapping = [_digest(B, 1, due=later, papers=1), _digest(A, 2, due=later, papers=3)]
    assert await store.enqueue_digests(overlapping, T0) == 3
    papers = [f"2603.{i:05d}" for i in range(3)]
    assert await store.delivered_ids(A, papers) == set(papers)
    assert await store.delivered_ids(B, papers) == {papers[0]}
    assert (await store.outbox_counts())["pending"] == 4
