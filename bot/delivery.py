"""Daily digests through an outbox: schedule, enqueue, send with flood control, retry.

The scheduler (`scheduler_tick`) finds chats whose next run has come, builds their
digests and, in one store transaction per batch, writes the messages to the outbox,
marks the papers delivered and advances each chat's next run. Nothing is sent there.

The dispatcher leases outbox rows (`claim_outbox`: each chat's first unsent row only, so
a chat's messages go out in order), sends them through the chat's platform, whose
adapter paces every request (bot/pacing.py), and marks them sent. Leases are short and
renewed while this process lives; after a crash they expire within seconds and each
chat resumes at its first unsent row, so no digest is lost and at most the one message
per chat in flight at the crash goes out twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import socket
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bot import cards, learning
from bot.config import Settings
from bot.digest import Round
from bot.doc import Message
from bot.models import ChatRef
from bot.schedule import next_run
from bot.sending import (
    ChatGone,
    ChatMoved,
    PermanentError,
    RetryAfter,
    Sender,
    SendError,
    TransientError,
)
from bot.serialize import message_from_json
from bot.service import Paperboy
from bot.store.base import DueChat, Enqueue, OutboxItem, Store

log = logging.getLogger(__name__)

SCHEDULE_BATCH = 5000
# When every feed of a chat failed, try again soon, but not forever: after a while the
# run is given up and the chat waits for its next day.
FEED_RETRY = timedelta(minutes=15)
FEED_GIVE_UP = timedelta(hours=6)
PRUNE_AFTER = timedelta(days=14)
# Which sent message was about which paper, and long button data: a reply or a press on
# a message older than this is answered as stale.
MESSAGE_MEMORY_AFTER = timedelta(days=30)
SENT_FLUSH_SECONDS = 0.02
LEASE_RENEWALS = 3  # renewals per lease: one missed beat does not lose the lease
SENT_FLUSH_RETRY_SECONDS = 1.0  # after the store failed to record sent rows
IDLE_POLL_SECONDS = 1.0
OUTBOX_RETRY_SECONDS = 5.0  # after the outbox could not be read (the database is down)


def utcnow() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------------- scheduler


@dataclass(slots=True)
class TickStats:
    chats: int = 0  # due chats handled
    digests: int = 0  # chats that got a digest
    messages: int = 0  # outbox rows written
    empty: int = 0  # due, but nothing new to send
    postponed: int = 0  # every feed failed: tried again soon
    feeds: list[str] = field(default_factory=list)  # feeds asked for this round


async def schedule_new(store: Store, now: datetime) -> int:
    """Give a next run to chats that have none (new, or their time just changed)."""
    done = 0
    while True:
        rows = await store.unscheduled_chats(1000)
        if not rows:
            return done
        await store.set_next_runs([(s.chat, next_run(s, since)) for s, since in rows])
        done += len(rows)
        if len(rows) < 1000:
            return done


async def scheduler_tick(
    app: Paperboy, now: datetime | None = None, *, batch: int = SCHEDULE_BATCH
) -> TickStats:
    """Enqueue the digests of every chat due at `now`; returns what it did."""
    now = now or utcnow()
    store = app.store
    stats = TickStats()
    await schedule_new(store, now)
    rnd = Round(app, now)
    seen: set[ChatRef] = set()
    while True:
        due = await store.due_chats(now, batch)
        fresh_due = [d for d in due if d.settings.chat not in seen]
        if not fresh_due:
            break  # nothing left (or only chats whose schedule changed under us)
        seen.update(d.settings.chat for d in fresh_due)
        await _enqueue_as_ready(store, rnd, fresh_due, stats)
        rnd.trim()
    stats.feeds = list(rnd.feeds)
    return stats


async def _enqueue_as_ready(
    store: Store, rnd: Round, due: Sequence[DueChat], stats: TickStats
) -> None:
    """Fetch every feed these chats follow at once, and enqueue each chat's digest as soon
    as its own feeds are in: a slow feed delays only the chats that follow it."""
    feeds = dict.fromkeys(sub.feed for d in due for sub in d.subscriptions)
    fetching = {feed: asyncio.ensure_future(rnd.feed(feed)) for feed in feeds}
    waiting = list(due)
    try:
        while waiting:
            ready = [d for d in waiting if all(fetching[s.feed].done() for s in d.subscriptions)]
            if not ready:
                busy = [t for t in fetching.values() if not t.done()]
                await asyncio.wait(busy, return_when=asyncio.FIRST_COMPLETED)
                continue
            for task in fetching.values():
                if task.done():
                    task.result()  # a bug or a store failure ends the tick, as it always did
            taken = {id(d) for d in ready}
            waiting = [d for d in waiting if id(d) not in taken]
            await store.enqueue_digests(await _digests(store, rnd, ready, stats), rnd.now)
    finally:
        for task in fetching.values():
            task.cancel()


async def _digests(
    store: Store, rnd: Round, due: Sequence[DueChat], stats: TickStats
) -> list[Enqueue]:
    now = rnd.now
    ranked = {d.settings.chat: rnd.ranked(d.subscriptions) for d in due}
    # Each distinct ranking once: chats following the same feeds share one list.
    lists = {id(r): r for r in ranked.values() if r}
    wanted = {key for r in lists.values() for key, _ in r}
    chats = [chat for chat, r in ranked.items() if r]
    delivered = await store.delivered_among(chats, sorted(wanted)) if wanted else {}
    # Chats that learned from votes or chose topics, a quality floor or weekly digests.
    try:
        taught = await learning.lessons(rnd.app, chats)
    except Exception:  # learning must never cost a chat its digest: the shared one goes
        log.exception("per-chat ranking unavailable this round")
        taught = {}
    # Math lines (`/settings explain on`): the top papers of those chats' rankings, once.
    explaining = {id(r): r for d in due if d.settings.explain and (r := ranked[d.settings.chat])}
    if explaining:
        most = max(d.settings.count for d in due if d.settings.explain)
        await rnd.load_lines(p for r in explaining.values() for _, p in r[:most])
    out: list[Enqueue] = []
    runs: dict[datetime, str] = {}
    for d in due:
        chat = d.settings.chat
        stats.chats += 1
        upcoming = rnd.next_run(d.settings)
        best = ranked[chat]
        if best is None:  # every feed failed this round
            stats.postponed += 1
            if now - d.due_at < FEED_GIVE_UP:
                upcoming = min(upcoming, now + FEED_RETRY)
            out.append(Enqueue(chat, d.due_at, upcoming))
            continue
        lesson = taught.get(chat)
        built: tuple[list[str], list[str]] | None = None
        if lesson is not None:
            try:
                built = await lesson.digest(
                    rnd, d.settings, d.subscriptions, best, delivered.get(chat, set())
                )
            except Exception:  # a learning bug must not cost the chat its digest
                log.exception("per-chat ranking of %s failed: the shared digest goes", chat.key)
        if built is None:
            built = rnd.digest(d.settings, best, delivered.get(chat, set()))
        bodies, paper_ids = built
        if not bodies:
            stats.empty += 1
            out.append(Enqueue(chat, d.due_at, upcoming))
            continue
        # The key names the scheduled run, so the same run can never be enqueued twice.
        run = runs.get(d.due_at)
        if run is None:
            run = runs[d.due_at] = d.due_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        messages = [(f"{chat.key}:{run}:{seq}", body) for seq, body in enumerate(bodies)]
        out.append(Enqueue(chat, d.due_at, upcoming, messages, paper_ids))
        stats.digests += 1
        stats.messages += len(messages)
    return out


# ---------------------------------------------------------------------- dispatcher


@dataclass(slots=True)
class SendStats:
    sent: int = 0
    retried: int = 0
    rate_limited: int = 0  # the platform said 429 anyway
    dead: int = 0
    gone: int = 0
    moved: int = 0


class Dispatcher:
    """Leases outbox rows and sends them; each chat in order, many chats at once.

    A chat's row n+1 is never sent while row n is unsent (pending, leased or waiting for
    a retry): the store hands out each chat's first unsent row only, and an error that
    delays a row delays every later row of its chat with it."""

    def __init__(
        self,
        store: Store,
        senders: Mapping[str, Sender],
        settings: Settings,
        *,
        worker: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.clock = clock
        self.senders = dict(senders)
        self.settings = settings
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stats = SendStats()
        self._in_flight: set[int] = set()  # leased here and not yet settled in the store
        self._queues: dict[str, deque[OutboxItem]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._sent: list[tuple[int, list[str]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        # Enough requests on the wire to cover the round trip at the paced rate; more only
        # makes the HTTP client juggle connections. Chats waiting for their own limits
        # hold no slot.
        self._slots = asyncio.Semaphore(max(1, settings.delivery_concurrency))

    @property
    def platforms(self) -> list[str]:
        return sorted(self.senders)

    @property
    def busy(self) -> bool:
        return bool(self._in_flight or self._tasks)

    def notify(self) -> None:
        """New rows may be waiting (the scheduler just enqueued)."""
        self._wake.set()

    async def pump(self) -> int:
        """Lease as many rows as there is room for and start their chats; returns leased."""
        room = self.settings.delivery_in_flight - len(self._in_flight)
        if room <= 0:
            return 0
        items = await self.store.claim_outbox(
            self.clock(), room, self.settings.delivery_lease_seconds, self.worker, self.platforms
        )
        for item in items:
            if item.id in self._in_flight:
                continue  # our own lease ran out while the row waited here: still ours
            self._in_flight.add(item.id)
            key = item.chat.key
            self._queues.setdefault(key, deque()).append(item)
            if key not in self._tasks:
                self._tasks[key] = asyncio.create_task(self._chat_loop(key), name=f"send {key}")
        return len(items)

    async def run(self, *, until_idle: bool = False, deadline: float | None = None) -> None:
        """Send until cancelled, or (until_idle) until nothing is left to send by `deadline`
        (loop time); rows waiting for a retry past the deadline stay for the next run."""
        loop = asyncio.get_running_loop()
        if self._heartbeat is None:
            self._heartbeat = asyncio.create_task(self._renew_leases(), name="outbox leases")
        try:
            while True:
                self._wake.clear()
                timeout = IDLE_POLL_SECONDS
                try:
                    await self.pump()
                    if until_idle and not self.busy:
                        upcoming = await self.store.next_outbox_time(self.platforms)
                        if upcoming is None:
                            return
                        wait = (upcoming - self.clock()).total_seconds()
                        if deadline is not None and loop.time() + wait > deadline:
                            log.warning("delivery: rows left for later, next one due %s", upcoming)
                            return
                        timeout = max(0.0, min(timeout, wait))
                except Exception:
                    # The database is away for a moment: senders must outlive it, or no
                    # digest would go out again until a restart.
                    if deadline is not None and loop.time() + OUTBOX_RETRY_SECONDS > deadline:
                        raise
                    log.exception("delivery: the outbox cannot be read; trying again")
                    await asyncio.sleep(OUTBOX_RETRY_SECONDS)
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
        finally:
            await self.close()

    async def _renew_leases(self) -> None:
        """Keep the leases of the rows held here alive while this process lives, so they
        can be short: after a crash, nobody renews them and they expire in seconds."""
        lease = self.settings.delivery_lease_seconds
        while True:
            await asyncio.sleep(lease / LEASE_RENEWALS)
            if not self._in_flight:
                continue
            until = self.clock() + timedelta(seconds=lease)
            try:
                await self.store.renew_outbox_leases(sorted(self._in_flight), self.worker, until)
            except Exception:  # the next beat tries again; the lease has two more beats
                log.warning("delivery: renewing outbox leases failed", exc_info=True)

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        # Rows sent but not yet recorded: record them, or a restart sends them again.
        await asyncio.shield(self._flush())

    async def _chat_loop(self, key: str) -> None:
        queue = self._queues[key]
        try:
            while queue:
                item = queue.popleft()
                try:
                    await self._deliver(item, queue)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # The store failed while settling a row. Left in `_in_flight`, the
                    # chat's rows would never be claimed again (and `run(until_idle)` never
                    # end): let go of them, and their leases bring them back.
                    log.exception("delivery to %s failed: its rows wait for their lease", key)
                    self._release([item, *queue])
                    queue.clear()
        finally:
            self._queues.pop(key, None)
            self._tasks.pop(key, None)
            self._wake.set()

    def _release(self, items: Iterable[OutboxItem]) -> None:
        for item in items:
            self._in_flight.discard(item.id)
        self._wake.set()

    async def _deliver(self, item: OutboxItem, queue: deque[OutboxItem]) -> None:
        sender = self.senders.get(item.chat.platform)
        try:
            message = _decode(item.body)
        except (ValueError, KeyError, TypeError, IndexError) as e:
            await self._dead(item, f"unreadable outbox row: {e}")
            return
        if sender is None:  # pragma: no cover - claims ask for our platforms only
            await self._dead(item, f"no sender for {item.chat.platform}")
            return
        # The chat's own limits first (its adapter paces each request; waiting for the
        # chat's turn here keeps a send slot free for chats that can go now).
        ready = getattr(sender, "ready", None)
        if ready is not None:
            await ready(item.chat)
        try:
            async with self._slots:
                ids = await sender.send(item.chat, message)
        except RetryAfter as e:
            # Only this chat waits; its other rows go back to the store until then.
            self.stats.rate_limited += 1
            until = self.clock() + timedelta(seconds=max(e.seconds, 0.1))
            await self.store.mark_failed(item.id, until, str(e), refund=True)
            await self.store.defer_chat_outbox(item.chat, until)
            self._release([item, *queue])
            queue.clear()
        except ChatMoved as e:
            self.stats.moved += 1
            log.info("chat %s moved to %s", item.chat.key, e.new_chat.key)
            await self.store.migrate_chat(item.chat, e.new_chat)  # unsent rows move with it
            # Its rows now belong to the new chat: release them to be claimed under it.
            await self.store.defer_chat_outbox(e.new_chat, self.clock())
            self._release([item, *queue])
            queue.clear()
        except ChatGone as e:
            self.stats.gone += 1
            log.info("chat %s is gone (%s): pausing it", item.chat.key, e)
            await self.store.set_chat_active(item.chat, False)
            self.stats.dead += await self.store.drop_chat_outbox(item.chat, str(e))
            self._release([item, *queue])
            queue.clear()
        except PermanentError as e:
            log.warning("message %s refused for good: %s", item.key, e)
            await self._dead(item, str(e))
        except (TransientError, SendError, OSError, TimeoutError) as e:
            await self._retry(item, str(e) or type(e).__name__, queue)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a renderer bug must not kill the loop: retry, then give up
            log.exception("sending %s failed", item.key)
            await self._retry(item, f"{type(e).__name__}: {e}", queue)
        else:
            self.stats.sent += 1
            self._sent.append((item.id, ids))
            await self._remember_paper(item, message, ids)
            if self._flusher is None:
                self._flusher = asyncio.create_task(self._flush_soon())

    async def _remember_paper(self, item: OutboxItem, message: Message, ids: list[str]) -> None:
        """A one-paper message: a 👍/👎 reaction to it is a vote on that paper (issue 14)."""
        paper = cards.voted_paper(message)
        if paper is None or not ids:
            return
        try:
            await self.store.remember_message_papers(item.chat, ids, paper)
        except Exception:  # the message went out; only reactions to it will not count
            log.exception("cannot remember the paper of %s", item.key)

    async def _retry(self, item: OutboxItem, error: str, queue: deque[OutboxItem]) -> None:
        """Try the row again later; the chat's later rows wait behind it."""
        s = self.settings
        if item.attempts >= s.delivery_max_attempts:
            log.warning("giving up on %s after %d attempts: %s", item.key, item.attempts, error)
            await self._dead(item, error)
            return
        # Exponential backoff with jitter, persisted in the row so it survives a restart
        # (which is why this is not an in-memory retry loop).
        delay = min(
            s.delivery_backoff_max_seconds,
            s.delivery_backoff_seconds * 2 ** max(0, item.attempts - 1),
        )
        delay *= random.uniform(0.5, 1.0)
        self.stats.retried += 1
        until = self.clock() + timedelta(seconds=delay)
        await self.store.mark_failed(item.id, until, error)
        # The head row waiting already holds the chat back; moving the rest along keeps
        # claims from stepping over them meanwhile.
        await self.store.defer_chat_outbox(item.chat, until)
        self._release([item, *queue])
        queue.clear()

    async def _dead(self, item: OutboxItem, error: str) -> None:
        self.stats.dead += 1
        await self.store.mark_dead(item.id, error)
        self._release([item])

    async def _flush_soon(self, delay: float = SENT_FLUSH_SECONDS) -> None:
        # Sent rows are recorded in small batches: one transaction per message would
        # cap throughput at the database's commit rate. They stay "in flight" until then.
        try:
            await asyncio.sleep(delay)
        finally:
            self._flusher = None
        try:
            await self._flush()
        except Exception:
            # Unrecorded, the rows would be claimed and sent again once their lease ends.
            log.exception("recording sent messages failed; trying again")
            if self._flusher is None:
                self._flusher = asyncio.create_task(self._flush_soon(SENT_FLUSH_RETRY_SECONDS))

    async def _flush(self) -> None:
        while self._sent:
            batch, self._sent = self._sent, []
            try:
                await self.store.mark_sent(batch, self.clock())
            except BaseException:
                self._sent[:0] = batch  # kept, in order, for the next try
                raise
            for item_id, _ in batch:
                self._in_flight.discard(item_id)
            self._wake.set()


@functools.lru_cache(maxsize=512)
def _decode(body: str) -> Message:
    # Many chats get the very same digest: decode each distinct body once. Renderers only
    # read messages, and the nodes are frozen.
    return message_from_json(body)


# -------------------------------------------------------------------- entry points


def senders_for(adapters: Sequence[Sender]) -> dict[str, Sender]:
    return {adapter.platform: adapter for adapter in adapters}


async def deliver_once(
    app: Paperboy,
    settings: Settings,
    adapters: Sequence[Sender],
    clock: Callable[[], datetime] = utcnow,
) -> tuple[TickStats, SendStats]:
    """One scheduler round, then send until the outbox is drained (`paperboy deliver --now`).

    Rows left from earlier runs (a crash, a retry) are sent too.
    """
    stats = await scheduler_tick(app, clock())
    dispatcher = Dispatcher(app.store, senders_for(adapters), settings, clock=clock)
    deadline = asyncio.get_running_loop().time() + settings.delivery_drain_seconds
    await dispatcher.run(until_idle=True, deadline=deadline)
    return stats, dispatcher.stats


async def run_delivery(app: Paperboy, settings: Settings, adapters: Sequence[Sender]) -> None:
    """The background loop of `paperboy run`: a scheduler tick every so often, senders always."""
    dispatcher = Dispatcher(app.store, senders_for(adapters), settings)
    sending = asyncio.create_task(dispatcher.run(), name="delivery senders")
    pruned = utcnow() - timedelta(days=1)
    try:
        while True:
            try:
                stats = await scheduler_tick(app)
                if stats.messages:
                    log.info("enqueued %d messages for %d chats", stats.messages, stats.digests)
                    dispatcher.notify()
                if utcnow() - pruned > timedelta(hours=12):
                    pruned = utcnow()
                    await app.store.prune_outbox(pruned - PRUNE_AFTER)
                    await app.store.prune_message_memory(pruned - MESSAGE_MEMORY_AFTER)
            except asyncio.CancelledError:
                raise
            except Exception:  # the next tick tries again; the outbox keeps what was enqueued
                log.exception("delivery scheduler tick failed")
            if sending.done():
                sending.result()  # the senders died: surface it
            await asyncio.sleep(settings.delivery_tick_seconds)
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sending
