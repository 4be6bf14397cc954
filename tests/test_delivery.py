"""bot.delivery: the scheduler, the outbox and the dispatcher, on an in-memory store."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.config import Settings
from bot.delivery import Dispatcher, deliver_once, scheduler_tick
from bot.doc import Message
from bot.models import ChatRef, ChatSettings, DigestFormat, Subscription
from bot.sending import ChatGone, ChatMoved, PermanentError, RetryAfter, TransientError
from bot.service import Paperboy
from bot.sources.base import FeedFetch
from bot.store.sql import SQLStore
from tests.test_digest import StubSource, paper

FAST = Settings(
    telegram_rate_per_second=0,
    delivery_chat_rate_per_second=0,
    delivery_group_rate_per_minute=0,
    delivery_backoff_seconds=0.01,
    delivery_backoff_max_seconds=0.05,
    delivery_drain_seconds=10,
)
NY = ZoneInfo("America/New_York")


class RecordingSender:
    """A Sender that records what it sent; `script[chat_id]` lists errors to raise first."""

    platform = "telegram"

    def __init__(self) -> None:
        self.sent: list[tuple[ChatRef, Message]] = []
        self.script: dict[str, list[Exception]] = {}

    async def send(self, chat: ChatRef, message: Message) -> list[str]:
        errors = self.script.get(chat.chat_id)
        if errors:
            raise errors.pop(0)
        self.sent.append((chat, message))
        await asyncio.sleep(0)
        return [str(len(self.sent))]

    def to(self, chat_id: str) -> list[Message]:
        return [m for c, m in self.sent if c.chat_id == chat_id]


@pytest.fixture
async def app() -> AsyncIterator[Paperboy]:
    store = SQLStore(sqlite_path=":memory:")
    await store.open()
    yield Paperboy(store, StubSource("arxiv"), StubSource("hf"))
    await store.close()


def arxiv(app: Paperboy) -> StubSource:
    return app.arxiv  # type: ignore[return-value]


async def add_chat(
    app: Paperboy,
    chat_id: str,
    *,
    tz: str = "UTC",
    at: str = "09:00",
    feed: str = "arxiv:cs.LG",
    format: DigestFormat = "compact",
) -> ChatRef:
    chat = ChatRef("telegram", chat_id)
    await app.store.save_chat(
        ChatSettings(chat, timezone=tz, delivery_time=time.fromisoformat(at), format=format)
    )
    await app.store.add_subscription(Subscription(chat, feed))
    return chat


def announce(app: Paperboy, day: date, n: int = 3, category: str = "cs.LG") -> list[str]:
    ids = [f"{day:%y%m}.{day.day:02d}{i:03d}" for i in range(n)]
    arxiv(app).feeds[category] = FeedFetch([paper(i, announce_type="new") for i in ids], day)
    return ids


async def next_run_at(app: Paperboy, chat: ChatRef) -> datetime | None:
    store: SQLStore = app.store  # type: ignore[assignment]
    async with store.db.execute(
        "SELECT next_run_at FROM chats WHERE chat_id = ?", (chat.chat_id,)
    ) as cur:
        row = await cur.fetchone()
    return datetime.fromisoformat(row[0]) if row and row[0] else None


async def drain(
    app: Paperboy, sender: RecordingSender, clock: Callable[[], datetime] | None = None
) -> Dispatcher:
    dispatcher = Dispatcher(
        app.store, {"telegram": sender}, FAST, clock=clock or (lambda: datetime.now(UTC))
    )
    await dispatcher.run(until_idle=True, deadline=asyncio.get_running_loop().time() + 10)
    return dispatcher


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> Callable[[], datetime]:
    moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    return lambda: moment


async def test_tick_enqueues_advances_and_marks_delivered_together(app: Paperboy) -> None:
    chat = await add_chat(app, "1")
    ids = announce(app, date(2025, 6, 3))
    # The first tick schedules the new chat: 09:00 tomorrow, since it subscribed "now".
    stats = await scheduler_tick(app, datetime(2025, 6, 4, 8, 0, tzinfo=UTC))
    assert stats.chats == 0
    # The chat subscribed at real time (today), so push its run into the simulated past.
    store: SQLStore = app.store  # type: ignore[assignment]
    await store.db.execute("UPDATE chats SET next_run_at = '2025-06-04T09:00:00.000000+00:00'")
    stats = await scheduler_tick(app, datetime(2025, 6, 4, 9, 0, tzinfo=UTC))
    assert (stats.chats, stats.digests, stats.messages) == (1, 1, 1)
    assert await next_run_at(app, chat) == datetime(2025, 6, 5, 9, 0, tzinfo=UTC)
    assert await app.store.delivered_ids(chat, ids) == set(ids)
    assert (await app.store.outbox_counts())["pending"] == 1
    # The same instant again enqueues nothing: the run moved on in the same transaction.
    assert (await scheduler_tick(app, datetime(2025, 6, 4, 9, 0, tzinfo=UTC))).chats == 0
    sender = RecordingSender()
    await drain(app, sender, at(2025, 6, 4, 9, 0, 1))
    assert len(sender.to("1")) == 1
    assert all(i in plain_text(sender.to("1")[0]) for i in ids)
    assert (await app.store.outbox_counts())["sent"] == 1


def plain_text(message: Message) -> str:
    from bot.doc import block_text

    return "\n".join(block_text(b) for b in message.blocks)


async def test_missed_runs_after_downtime_deliver_once(app: Paperboy) -> None:
    chat = await add_chat(app, "1")
    announce(app, date(2025, 6, 3))
    store: SQLStore = app.store  # type: ignore[assignment]
    await store.db.execute("UPDATE chats SET next_run_at = '2025-06-01T09:00:00.000000+00:00'")
    # Down for three days: one digest, and the next run is the next future one.
    stats = await scheduler_tick(app, datetime(2025, 6, 4, 12, 0, tzinfo=UTC))
    assert stats.digests == 1
    assert await next_run_at(app, chat) == datetime(2025, 6, 5, 9, 0, tzinfo=UTC)


async def test_changing_the_time_takes_effect_at_once(app: Paperboy) -> None:
    chat = await add_chat(app, "1", at="09:00")
    await scheduler_tick(app)
    first = await next_run_at(app, chat)
    assert first is not None and first.time() == time(9, 0)
    settings = await app.store.get_chat(chat)
    assert settings is not None
    settings.delivery_time = time(17, 30)
    settings.timezone = "Asia/Kolkata"
    await app.store.save_chat(settings)
    assert await next_run_at(app, chat) is None  # cleared by the change itself
    await scheduler_tick(app)
    moved = await next_run_at(app, chat)
    assert moved is not None and moved.astimezone(ZoneInfo("Asia/Kolkata")).time() == time(17, 30)
    settings.count = 3  # other settings leave the schedule alone
    await app.store.save_chat(settings)
    assert await next_run_at(app, chat) == moved


async def test_two_zones_across_dst_and_days_without_announcements(app: Paperboy) -> None:
    """A week around the US DST change (9 March 2025): a New York chat and a Berlin chat
    each get their digest at 08:00 local on announcement days, nothing on others."""
    berlin = await add_chat(app, "1", tz="Europe/Berlin", at="08:00")
    new_york = await add_chat(app, "2", tz="America/New_York", at="08:00")
    store: SQLStore = app.store  # type: ignore[assignment]
    await store.db.execute(
        "UPDATE chats SET next_run_at = NULL, updated_at = ?", ("2025-03-05T00:00:00+00:00",)
    )
    await store.db.execute(
        "UPDATE subscriptions SET created_at = ?", ("2025-03-05T00:00:00+00:00",)
    )
    sender = RecordingSender()
    delivered: dict[str, list[datetime]] = {"1": [], "2": []}
    now = datetime(2025, 3, 5, 0, 0, tzinfo=UTC)
    while now < datetime(2025, 3, 12, 0, 0, tzinfo=UTC):
        # arXiv announces at 20:00 New York time, Sunday to Thursday.
        local = now.astimezone(NY)
        last = local if local.time() >= time(20) else local - timedelta(days=1)
        while last.weekday() in (4, 5):  # Friday and Saturday: no announcement
            last -= timedelta(days=1)
        announce(app, last.date())
        before = {k: len(sender.to(k)) for k in delivered}
        await scheduler_tick(app, now)
        await drain(app, sender, lambda: now)  # noqa: B023 - called within this iteration
        for key in delivered:
            if len(sender.to(key)) > before[key]:
                delivered[key].append(now)
        now += timedelta(minutes=15)
    berlin_local = [d.astimezone(ZoneInfo("Europe/Berlin")) for d in delivered["1"]]
    ny_local = [d.astimezone(NY) for d in delivered["2"]]
    assert all(d.time() == time(8) for d in berlin_local + ny_local)
    # Announcements Tue 4, Wed 5, Thu 6, Sun 9, Mon 10 (evenings, New York) are read the
    # next morning; nothing new on Saturday 8 or Sunday 9 (no Friday/Saturday announcement).
    assert [d.day for d in berlin_local] == [5, 6, 7, 10, 11]
    assert [d.day for d in ny_local] == [5, 6, 7, 10, 11]
    # The New York run straddles the change: 13:00 UTC before, 12:00 UTC after.
    assert [d.hour for d in delivered["2"]] == [13, 13, 13, 12, 12]
    assert berlin and new_york


async def test_retry_after_waits_for_that_chat_only(app: Paperboy) -> None:
    slow, fast = await add_chat(app, "1"), await add_chat(app, "2")
    announce(app, date(2025, 6, 3))
    store: SQLStore = app.store  # type: ignore[assignment]
    await store.db.execute("UPDATE chats SET next_run_at = '2025-06-04T09:00:00.000000+00:00'")
    await scheduler_tick(app, datetime.now(UTC))
    sender = RecordingSender()
    sender.script["1"] = [RetryAfter(0.3)]
    dispatcher = Dispatcher(app.store, {"telegram": sender}, FAST)
    run = asyncio.create_task(
        dispatcher.run(until_idle=True, deadline=asyncio.get_running_loop().time() + 5)
    )
    for _ in range(100):
        if sender.to("2"):
            break
        await asyncio.sleep(0.01)
    assert sender.to("2") and not sender.to("1")  # the other chat did not wait
    await run
    assert len(sender.to("1")) == 1 and dispatcher.stats.rate_limited == 1
    assert slow != fast


async def test_errors_stop_only_their_chat(app: Paperboy) -> None:
    for chat_id in ("1", "2", "3", "4", "5"):
        await add_chat(app, chat_id, format="full")
    announce(app, date(2025, 6, 3), n=2)
    store: SQLStore = app.store  # type: ignore[assignment]
    await store.db.execute("UPDATE chats SET next_run_at = '2025-06-04T09:00:00.000000+00:00'")
    await scheduler_tick(app, datetime.now(UTC))
    sender = RecordingSender()
    sender.script["1"] = [ChatGone("blocked")]
    sender.script["2"] = [TransientError("502"), TransientError("timeout")]
    sender.script["3"] = [PermanentError("bad request")]
    sender.script["4"] = [ChatMoved(ChatRef("telegram", "-1004"))]
    dispatcher = await drain(app, sender)
    assert sender.to("1") == []
    gone = await app.store.get_chat(ChatRef("telegram", "1"))
    assert gone is not None and not gone.active
    assert len(sender.to("2")) == 2  # retried with backoff
    assert len(sender.to("3")) == 1  # the refused message is dropped, the next one sent
    assert len(sender.to("-1004")) == 2 and sender.to("4") == []  # followed the move
    assert await app.store.list_subscriptions(ChatRef("telegram", "-1004"))
    assert len(sender.to("5")) == 2
    counts = await app.store.outbox_counts()
    assert counts["pending"] == counts["sending"] == 0
    assert counts["dead"] == 3  # chat 1's two messages and chat 3's refused one
    assert dispatcher.stats.gone == dispatcher.stats.moved == 1


async def test_a_transient_error_holds_the_chats_later_cards_back(app: Paperboy) -> None:
    """Full format, card 1 fails with a 5xx: cards 2 and 3 wait for it; the order holds."""
    await add_chat(app, "1", format="full")
    await add_chat(app, "2", format="full")
    announce(app, date(2025, 6, 3), n=3)
    store: SQLStore = app.store  # type: ignore[assignment]
    await store.db.execute("UPDATE chats SET next_run_at = '2025-06-04T09:00:00.000000+00:00'")
    await scheduler_tick(app, datetime.now(UTC))
    sender = RecordingSender()
    sender.script["1"] = [TransientError("502"), TransientError("timeout")]
    await drain(app, sender)

    def numbers(chat_id: str) -> list[str]:
        return [str(m.blocks[0])[:80] for m in sender.to(chat_id)]

    assert len(set(numbers("1"))) == 3
    assert numbers("1") == numbers("2")  # the same cards, in the same order


async def test_leases_are_renewed_while_a_row_waits_to_be_sent(app: Paperboy) -> None:
    await add_chat(app, "1")
    announce(app, date(2025, 6, 3))
    store: SQLStore = app.store  # type: ignore[assignment]
    await store.db.execute("UPDATE chats SET next_run_at = '2025-06-04T09:00:00.000000+00:00'")
    await scheduler_tick(app, datetime.now(UTC))
    release = asyncio.Event()

    class Slow(RecordingSender):
        async def send(self, chat: ChatRef, message: Message) -> list[str]:
            await release.wait()
            return await super().send(chat, message)

    sender = Slow()
    settings = dataclasses.replace(FAST, delivery_lease_seconds=0.3)
    dispatcher = Dispatcher(app.store, {"telegram": sender}, settings)
    run = asyncio.create_task(dispatcher.run(until_idle=True))
    await asyncio.sleep(1.0)  # three leases long: renewed, so nobody else may take it
    other = await app.store.claim_outbox(datetime.now(UTC), 10, 10, "other", ["telegram"])
    assert other == []
    release.set()
    await asyncio.wait_for(run, 5)
    assert len(sender.to("1")) == 1


async def test_transient_errors_give_up_after_max_attempts(app: Paperboy) -> None:
    await add_chat(app, "1")
    announce(app, date(2025, 6, 3))
    store: SQLStore = app.store  # type: ignore[assignment]
    await store.db.execute("UPDATE chats SET next_run_at = '2025-06-04T09:00:00.000000+00:00'")
    await scheduler_tick(app, datetime.now(UTC))
    sender = RecordingSender()
    sender.script["1"] = [TransientError("503")] * 20
    await drain(app, sender)
    assert sender.to("1") == []
    assert (await app.store.outbox_counts())["dead"] == 1
    assert len(sender.script["1"]) == 20 - FAST.delivery_max_attempts


async def test_a_crashed_senders_rows_are_sent_after_their_lease(app: Paperboy) -> None:
    await add_chat(app, "1")
    announce(app, date(2025, 6, 3))
    store: SQLStore = app.store  # type: ignore[assignment]
    await store.db.execute("UPDATE chats SET next_run_at = '2025-06-04T09:00:00.000000+00:00'")
    now = datetime.now(UTC)
    await scheduler_tick(app, now)
    # A sender claims the row and dies before sending.
    claimed = await app.store.claim_outbox(now, 10, 60, "crashed", ["telegram"])
    assert len(claimed) == 1
    sender = RecordingSender()
    await drain(app, sender, lambda: now + timedelta(seconds=30))
    assert sender.to("1") == []  # still leased
    await drain(app, sender, lambda: now + timedelta(seconds=61))
    assert len(sender.to("1")) == 1


async def test_deliver_once_runs_a_round_and_drains(app: Paperboy) -> None:
    await add_chat(app, "1")
    announce(app, date(2025, 6, 3))
    store: SQLStore = app.store  # type: ignore[assignment]
    await store.db.execute("UPDATE chats SET next_run_at = '2025-06-04T09:00:00.000000+00:00'")
    sender = RecordingSender()
    tick, sent = await deliver_once(app, FAST, [sender])
    assert (tick.digests, sent.sent) == (1, 1)
    assert len(sender.to("1")) == 1


async def test_a_store_error_while_settling_a_row_does_not_strand_the_chat(
    app: Paperboy, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_chat(app, "1", format="full")
    announce(app, date(2025, 6, 3), n=2)
    store: SQLStore = app.store  # type: ignore[assignment]
    await store.db.execute("UPDATE chats SET next_run_at = '2025-06-04T09:00:00.000000+00:00'")
    await scheduler_tick(app, datetime.now(UTC))
    sender = RecordingSender()
    sender.script["1"] = [TransientError("502")]
    real_mark_failed = store.mark_failed
    failures = [RuntimeError("database is locked")]

    async def flaky_mark_failed(*args: object, **kwargs: object) -> None:
        if failures:
            raise failures.pop()
        await real_mark_failed(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "mark_failed", flaky_mark_failed)
    # The failed settle leaves the chat's rows leased; once the lease is over, they go.
    settings = dataclasses.replace(FAST, delivery_lease_seconds=0.2)
    dispatcher = Dispatcher(app.store, {"telegram": sender}, settings)
    deadline = asyncio.get_running_loop().time() + 5
    await asyncio.wait_for(dispatcher.run(until_idle=True, deadline=deadline), 5)
    assert len(sender.to("1")) == 2
    counts = await app.store.outbox_counts()
    assert counts["pending"] == counts["sending"] == 0 and counts["sent"] == 2


async def test_a_store_error_while_recording_sent_rows_is_retried(
    app: Paperboy, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_chat(app, "1")
    announce(app, date(2025, 6, 3))
    store: SQLStore = app.store  # type: ignore[assignment]
    await store.db.execute("UPDATE chats SET next_run_at = '2025-06-04T09:00:00.000000+00:00'")
    await scheduler_tick(app, datetime.now(UTC))
    real_mark_sent = store.mark_sent
    failures = [RuntimeError("database is locked")]

    async def flaky_mark_sent(*args: object, **kwargs: object) -> None:
        if failures:
            raise failures.pop()
        await real_mark_sent(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "mark_sent", flaky_mark_sent)
    sender = RecordingSender()
    dispatcher = Dispatcher(app.store, {"telegram": sender}, FAST)
    deadline = asyncio.get_running_loop().time() + 5
    await asyncio.wait_for(dispatcher.run(until_idle=True, deadline=deadline), 5)
    assert len(sender.to("1")) == 1
    # Recorded as sent, so no later claim (a restart, another worker) sends it again.
    counts = await app.store.outbox_counts()
    assert counts["sending"] == 0 and counts["sent"] == 1


async def test_senders_survive_the_outbox_being_unreadable_for_a_while(
    app: Paperboy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database hiccup (a PostgreSQL restart) must not stop delivery for good."""
    import bot.delivery.dispatch

    monkeypatch.setattr(bot.delivery.dispatch, "OUTBOX_RETRY_SECONDS", 0.05)
    await add_chat(app, "1")
    announce(app, date(2025, 6, 3))
    store: SQLStore = app.store  # type: ignore[assignment]
    await store.db.execute("UPDATE chats SET next_run_at = '2025-06-04T09:00:00.000000+00:00'")
    await scheduler_tick(app, datetime.now(UTC))
    real_claim = store.claim_outbox
    failures = [ConnectionError("server closed the connection")] * 2

    async def flaky_claim(*args: object, **kwargs: object) -> object:
        if failures:
            raise failures.pop()
        return await real_claim(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "claim_outbox", flaky_claim)
    sender = RecordingSender()
    await drain(app, sender)
    assert len(sender.to("1")) == 1
