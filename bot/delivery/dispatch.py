"""Dispatch: send outbox rows with flood control, retry, record.

The dispatcher leases outbox rows (`claim_outbox`: each chat's first unsent row only, so
a chat's messages go out in order), sends them through the chat's platform, whose
adapter paces every request under the limits it declares (bot/pacing.py), and marks them
sent. Leases are short and renewed while this process lives; after a crash they expire
within seconds and each chat resumes at its first unsent row, so no digest is lost and
at most the one message per chat in flight at the crash goes out twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot import cards
from bot.config import Settings
from bot.conversation import remember_papers, settle_chat
from bot.delivery.workers import gone, worker_name
from bot.doc import Message
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
from bot.store.base import OutboxItem, Store

log = logging.getLogger(__name__)

SENT_FLUSH_SECONDS = 0.02
LEASE_RENEWALS = 3  # renewals per lease: one missed beat does not lose the lease
SENT_FLUSH_RETRY_SECONDS = 1.0  # after the store failed to record sent rows
IDLE_POLL_SECONDS = 1.0
OUTBOX_RETRY_SECONDS = 5.0  # after the outbox could not be read (the database is down)


def utcnow() -> datetime:
    return datetime.now(UTC)


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
        self.worker = worker or worker_name()
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
            await self._take_back_dead_leases()
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

    async def _take_back_dead_leases(self) -> None:
        """The rows an earlier process on this host held when it died (this is its
        restart, most often) are claimed again now, not when their leases run out."""
        try:
            dead = [w for w in await self.store.outbox_lease_holders() if gone(w, self.worker)]
            if dead:
                freed = await self.store.expire_outbox_leases(dead, self.clock())
                log.info(
                    "delivery: %d rows held by %d ended processes are sent again", freed, len(dead)
                )
        except Exception:  # their leases still run out: nothing is lost by waiting
            log.warning("delivery: could not look for rows of ended processes", exc_info=True)

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
        except (ChatMoved, ChatGone) as e:
            # What it means for the chat is decided as for replies (bot/conversation.py);
            # a moved chat's unsent rows move with it.
            moved_to = await settle_chat(self.store, item.chat, e)
            if moved_to is not None:
                self.stats.moved += 1
                # Its rows now belong to the new chat: release them to be claimed under it.
                await self.store.defer_chat_outbox(moved_to, self.clock())
            else:
                self.stats.gone += 1
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
            # A one-paper message: a 👍/👎 reaction to it is a vote on that paper (issue 14).
            if paper := cards.voted_paper(message):
                await remember_papers(self.store, item.chat, ids, paper)
            if self._flusher is None:
                self._flusher = asyncio.create_task(self._flush_soon())

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
