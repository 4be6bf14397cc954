"""Schedule and enqueue: the scheduler tick of daily digests.

`scheduler_tick` finds chats whose next run has come, builds their digests and, in one
store transaction per batch, writes the messages to the outbox, marks the papers
delivered and advances each chat's next run. Nothing is sent here (see dispatch.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bot import learning
from bot.digest import Round
from bot.models import ChatRef
from bot.schedule import next_run
from bot.service import Paperboy
from bot.store.base import DueChat, Enqueue, Store

log = logging.getLogger(__name__)

# Chats per batch: a batch's distinct digests are alive together (a compact one is a few
# kB of ASCII JSON), so this bounds memory.
SCHEDULE_BATCH = 2000
# When every feed of a chat failed, try again soon, but not forever: after a while the
# run is given up and the chat waits for its next day.
FEED_RETRY = timedelta(minutes=15)
FEED_GIVE_UP = timedelta(hours=6)
ROUND_GC_THRESHOLD = 50_000  # container allocations between two young collections
# Digests built between two turns of the event loop while a batch is being written (a
# millisecond or two of work): the write's statements go out one turn after another.
YIELD_EVERY = 16
# Batch writes in flight at once where the store overlaps them (see _Writes): a batch's
# digests stay alive until its write ends (a realistic 100k-chat round on PostgreSQL:
# 2 -> 3 took it from 12.9 to 8.9-11.3 s and 172 to 178 MiB).
WRITES_IN_FLIGHT = 3


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
    now = now or datetime.now(UTC)
    store = app.store
    stats = TickStats()
    await schedule_new(store, now)
    rnd = Round(app, now)
    # Row ids (or keys where a store has none): atoms, which the garbage collector never walks.
    seen: set[int | str] = set()
    with _fewer_collections():
        async with _writing(store, now) as writes:
            due = await store.due_chats(now, batch)
            while True:
                fresh_due = [d for d in due if _identity(d) not in seen]
                if not fresh_due:
                    break  # nothing left (or only chats whose schedule changed under us)
                seen.update(map(_identity, fresh_due))
                reading = None
                last = due[-1]  # the batch's newest key: chats being built or written are older
                if store.overlaps_writes and last.pk is not None:
                    # The next batch is read while this one is built.
                    onward = (last.due_at, last.pk)
                    reading = asyncio.ensure_future(store.due_chats(now, batch, after=onward))
                try:
                    await _enqueue_as_ready(writes, rnd, fresh_due, stats)
                except BaseException:
                    if reading is not None:
                        reading.cancel()
                        with contextlib.suppress(BaseException):
                            await reading  # ended (its error taken) before the round ends
                    raise
                due = await reading if reading is not None else await store.due_chats(now, batch)
                rnd.trim()
    stats.feeds = list(rnd.feeds)
    return stats


class _Writes:
    """A round's batch writes, up to WRITES_IN_FLIGHT of them while the next batch is read
    and built, where the store overlaps writes (PostgreSQL): the server writes while this
    process ranks and renders, and several writes keep it busy while this process waits
    for none (each is one transaction on its own connection, over chats no other batch
    has). Elsewhere each write ends before the round goes on."""

    def __init__(self, store: Store, now: datetime) -> None:
        self.store, self._now = store, now
        self._flight: deque[asyncio.Task[int]] = deque()
        # On SQLite each write ends before the round goes on: overlapping them measured a
        # fifth slower on one core (its thread and the round's take turns, caches cold).
        self._depth = WRITES_IN_FLIGHT if store.overlaps_writes else 0

    @property
    def busy(self) -> bool:
        return any(not task.done() for task in self._flight)

    async def put(self, digests: list[Enqueue]) -> None:
        """Start writing `digests`, once the oldest write has ended if too many are in
        flight (its error ends the round)."""
        while self._flight and len(self._flight) >= self._depth:
            await self._flight.popleft()  # cancelling the round cancels the write: rolled back
        if digests:
            self._flight.append(
                asyncio.ensure_future(self.store.enqueue_digests(digests, self._now))
            )
            if not self._depth:
                await self.drain()

    async def drain(self) -> None:
        """Wait for every write in flight; the first failure is raised once all ended."""
        failure: Exception | None = None
        while self._flight:
            task = self._flight.popleft()
            try:
                await task
            except Exception as exc:
                failure = failure or exc
        if failure is not None:
            raise failure

    async def abandon(self) -> None:
        """The round is cancelled: so are the writes in flight (they roll back)."""
        tasks = list(self._flight)
        self._flight.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


@contextlib.asynccontextmanager
async def _writing(store: Store, now: datetime) -> AsyncIterator[_Writes]:
    """The round's writes; a round that fails still finishes the writes in flight, each
    of which stands on its own (a cancelled round cancels them)."""
    writes = _Writes(store, now)
    try:
        yield writes
    except asyncio.CancelledError:
        await writes.abandon()
        raise
    except BaseException:
        try:
            await writes.drain()
        except Exception:
            log.exception("a batch's write failed while the round was failing")
        raise
    await writes.drain()


def _identity(due: DueChat) -> int | str:
    return due.pk if due.pk is not None else due.settings.chat.key


@contextlib.contextmanager
def _fewer_collections() -> Iterator[None]:
    """A round allocates millions of short-lived containers while a batch of chats and the
    round's shared rankings stay alive: at the default gen-0 threshold (700) the cyclic
    collector walks that whole heap some 30 times a round, a fifth of its CPU (realistic
    mix, 100k chats); at 10,000 it still took 1.1 s of a 15 s round, at 50,000 0.2 s, for
    the same peak memory. Nothing here needs it sooner; reference counting frees the rest."""
    before = gc.get_threshold()
    if 0 < before[0] < ROUND_GC_THRESHOLD:  # 0: automatic collection is off, leave it
        gc.set_threshold(ROUND_GC_THRESHOLD, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


async def _enqueue_as_ready(
    writes: _Writes, rnd: Round, due: Sequence[DueChat], stats: TickStats
) -> None:
    """Fetch every feed these chats follow at once, and enqueue each chat's digest as soon
    as its own feeds are in: a slow feed delays only the chats that follow it."""
    mixes = {id(d.mix): d.mix for d in due}  # few: chats that follow the same share one
    feeds = dict.fromkeys(feed for mix in mixes.values() for feed in mix.feeds)
    fetching = {feed: asyncio.ensure_future(rnd.feed(feed)) for feed in feeds}
    waiting = list(due)
    try:
        while waiting:
            done = {k: all(fetching[f].done() for f in m.feeds) for k, m in mixes.items()}
            ready = [d for d in waiting if done[id(d.mix)]]
            if not ready:
                busy = [t for t in fetching.values() if not t.done()]
                await asyncio.wait(busy, return_when=asyncio.FIRST_COMPLETED)
                continue
            for task in fetching.values():
                if task.done():
                    task.result()  # a bug or a store failure ends the tick, as it always did
            taken = {id(d) for d in ready}
            waiting = [d for d in waiting if id(d) not in taken]
            await writes.put(await _digests(writes, rnd, ready, stats))
    finally:
        for task in fetching.values():
            task.cancel()


async def _digests(
    writes: _Writes, rnd: Round, due: Sequence[DueChat], stats: TickStats
) -> list[Enqueue]:
    store, now = writes.store, rnd.now
    # Most chats get the first papers of a ranking shared with every chat that follows the
    # same feeds with the same filters, worked out once; the whole ranking is built only
    # for chats that need more (they received some of today's papers, or learned).
    tops = {id(d): rnd.top(d.mix.subscriptions, d.settings.count, d.mix) for d in due}
    getting = [d for d in due if tops[id(d)]]
    followed = dict.fromkeys(
        feed for mix in {id(d.mix): d.mix for d in due}.values() for feed in mix.feeds
    )
    wanted = rnd.candidate_ids(followed)
    pks = [d.pk for d in getting if d.pk is not None]
    delivered = await store.delivered_among(pks, wanted) if wanted and pks else {}
    # Chats that learned from votes or chose topics, a quality floor or weekly digests.
    taught: dict[ChatRef, learning.Lesson] = {}
    try:
        if rnd.anyone_learning is None:
            rnd.anyone_learning = await store.anyone_learning()
        if rnd.anyone_learning:
            taught = await learning.lessons(rnd.app, [d.settings.chat for d in getting])
    except Exception:  # learning must never cost a chat its digest: the shared one goes
        log.exception("per-chat ranking unavailable this round")
    # Math lines (`/settings explain on`): the top papers of those chats' rankings, once.
    explaining = [d for d in getting if d.settings.explain]
    if explaining:
        most = max(d.settings.count for d in explaining)
        firsts = {id(t): t for d in explaining if (t := rnd.top(d.mix.subscriptions, most, d.mix))}
        await rnd.load_lines(p for t in firsts.values() for _, p in t)
    out: list[Enqueue] = []
    runs: dict[datetime, str] = {}
    for n, d in enumerate(due):
        if n % YIELD_EVERY == 0 and writes.busy:
            await asyncio.sleep(0)  # the write in flight sends its next statement
        chat = d.settings.chat
        stats.chats += 1
        upcoming = rnd.next_run(d.settings)
        top = tops[id(d)]
        if top is None:  # every feed failed this round
            stats.postponed += 1
            if now - d.due_at < FEED_GIVE_UP:
                upcoming = min(upcoming, now + FEED_RETRY)
            out.append(Enqueue(chat, d.due_at, upcoming, pk=d.pk))
            continue
        lesson = taught.get(chat) if taught else None
        seen = delivered.get(d.pk) if d.pk is not None else None
        built: tuple[list[str], list[str]] | None = None
        if lesson is not None:
            try:
                best = rnd.ranked(d.mix.subscriptions) or []
                built = await lesson.digest(rnd, d.settings, d.subscriptions, best, seen or set())
            except Exception:  # a learning bug must not cost the chat its digest
                log.exception("per-chat ranking of %s failed: the shared digest goes", chat.key)
        if built is None:
            if seen:
                built = rnd.digest(d.settings, rnd.ranked(d.mix.subscriptions) or [], seen)
            else:
                built = rnd.fresh(d.settings, top)
        bodies, paper_ids = built
        if not bodies:
            stats.empty += 1
            out.append(Enqueue(chat, d.due_at, upcoming, pk=d.pk))
            continue
        # The key names the scheduled run, so the same run can never be enqueued twice.
        run = runs.get(d.due_at)
        if run is None:
            run = runs[d.due_at] = d.due_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        messages = [(f"{chat.key}:{run}:{seq}", body) for seq, body in enumerate(bodies)]
        out.append(Enqueue(chat, d.due_at, upcoming, messages, paper_ids, d.pk))
        stats.digests += 1
        stats.messages += len(messages)
    return out
