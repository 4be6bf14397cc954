"""Pacing sends under a platform's limits, measured when each request actually goes out.

Each adapter declares its platform's limits (`SendLimits`, with our headroom already
taken off) and calls `Pacer.acquire` right before every request that posts into a chat:
digests and command replies alike. Every limit is a rolling window, the way the
platforms measure: at most N requests in any W seconds. A slot in every window the
request counts against (overall, the chat's, the group's) is taken at the same instant,
when the request is let go, so waiting for one never leaves another taken early.
State lives as long as the adapter, across a chat's batches and after a 429.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

# Windows of idle keys are dropped once there are this many (keeps memory flat).
_PRUNE_AT = 10_000


@dataclass(frozen=True, slots=True)
class SendLimits:
    """What we allow ourselves on one platform (0 turns a limit off)."""

    overall: float  # requests per `overall_window`, every chat together
    overall_window: float = 1.0
    chat_interval: float = 0.0  # seconds between two messages to one chat
    group: float = 0.0  # messages per `group_window` to one group
    group_window: float = 60.0

    def share(self, workers: int) -> SendLimits:
        """One of `workers` senders' part of the overall limit."""
        if workers <= 1:
            return self
        return SendLimits(
            self.overall / workers,
            self.overall_window,
            self.chat_interval,
            self.group,
            self.group_window,
        )


class Window:
    """At most `limit` events in any `period` seconds; `even`: spread evenly too
    (`period / limit` apart). In a short window a burst let go at once reaches the
    platform spread by network and scheduling delays, and part of it could land in the
    next window's count; a long one (a group's minute) keeps bursts, for quick replies."""

    __slots__ = ("_due", "_times", "limit", "period", "slack", "spacing")

    def __init__(self, limit: float, period: float, *, even: bool = True) -> None:
        # A fractional share (a worker's part of 45/s) rounds down, never up.
        self.limit = max(1, int(limit))
        self.period = period if limit >= 1 else period / max(limit, 1e-9)
        self.spacing = self.period / self.limit if even else 0.0
        self._times: deque[float] = deque()
        # When the next event is due on the even schedule. Kept on the schedule, not on
        # when the last event actually went: a late wake-up (a busy event loop) is made
        # up for by one event, not more: a longer catch-up burst reaches the platform
        # bunched with what follows, and overflows its window.
        self._due = 0.0
        self.slack = self.spacing

    def wait(self, now: float) -> float:
        """Seconds until one more event fits (0: now)."""
        times = self._times
        while times and times[0] <= now - self.period:
            times.popleft()
        spaced = self._due - self.slack - now
        if len(times) < self.limit:
            return max(0.0, spaced)
        return max(spaced, times[-self.limit] + self.period - now)

    def add(self, now: float) -> None:
        self._times.append(now)
        self._due = max(self._due, now) + self.spacing

    def idle(self, now: float) -> bool:
        return not self._times or self._times[-1] <= now - self.period


class KeyedWindows:
    """A rolling window per key (a chat, a user), made on first use; once there are many,
    idle ones are dropped when a new one is made, so the table stays bounded."""

    def __init__(self, limit: float, period: float, *, even: bool = True) -> None:
        self.limit = limit
        self.period = period
        self.even = even
        self._windows: dict[str, Window] = {}

    def window(self, key: str, now: float) -> Window:
        window = self._windows.get(key)
        if window is None:
            if len(self._windows) >= _PRUNE_AT:
                self._windows = {k: w for k, w in self._windows.items() if not w.idle(now)}
            window = self._windows[key] = Window(self.limit, self.period, even=self.even)
        return window

    def wait(self, key: str, now: float) -> float:
        """Seconds until `key` has room (0 for a key never seen)."""
        window = self._windows.get(key)
        return window.wait(now) if window is not None else 0.0


class Pacer:
    """One platform's limits, shared by its delivery sends and its command replies."""

    def __init__(self, limits: SendLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self._overall = Window(limits.overall, limits.overall_window) if limits.overall else None
        self._chats = KeyedWindows(1, limits.chat_interval)
        self._groups = KeyedWindows(limits.group, limits.group_window, even=False)
        self._paused_until = 0.0
        # Waiters for the shared window queue here, first come first served, rather than
        # all waking together and racing for each free slot.
        self._turn = asyncio.Lock()

    def pause(self, seconds: float) -> None:
        """The platform said a global 429: nobody sends for `seconds`."""
        self._paused_until = max(self._paused_until, self.clock() + seconds)

    def _own(self, chat: str, group: bool) -> list[Window]:
        own = []
        now = self.clock()
        if self.limits.chat_interval > 0:
            own.append(self._chats.window(chat, now))
        if group and self.limits.group > 0:
            own.append(self._groups.window(chat, now))
        return own

    def ready_in(self, chat: str, *, group: bool = False) -> float:
        """Seconds until the chat's own windows have room (the overall one not counted)."""
        now = self.clock()
        return max((w.wait(now) for w in self._own(chat, group)), default=0.0)

    async def ready(self, chat: str, *, group: bool = False) -> None:
        """Wait until the chat's own windows have room, taking nothing yet."""
        while True:  # a window frees up at a known instant: sleeping until then is exact
            wait = self.ready_in(chat, group=group)
            if wait <= 0:
                return
            await asyncio.sleep(wait)

    async def acquire(self, chat: str | None, *, group: bool = False) -> None:
        """Wait until a request to `chat` (None: no chat, e.g. a login) fits every window,
        and count it there now."""
        own = self._own(chat, group) if chat is not None else []
        if not own and self._overall is None and self._paused_until <= self.clock():
            return  # every limit off
        while True:
            if chat is not None:
                await self.ready(chat, group=group)
            async with self._turn:
                while True:
                    now = self.clock()
                    shared = max(
                        self._paused_until - now,
                        self._overall.wait(now) if self._overall else 0.0,
                    )
                    if shared <= 0:
                        break
                    await asyncio.sleep(shared)
                # A reply to the same chat may have taken its slot meanwhile: queue again.
                if any(w.wait(now) > 0 for w in own):
                    continue
                for window in own:
                    window.add(now)
                if self._overall is not None:
                    self._overall.add(now)
                return
