"""Usage of /explain: per-user and per-chat rate limits, a daily LLM token budget,
failure backoff, and counters of the upstream work done."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.explain.cache import ExpiringCache
from bot.pacing import KeyedWindows


@dataclass(frozen=True, slots=True)
class LimitSettings:
    user_requests: int = 6  # explanations/follow-ups per user per window
    chat_requests: int = 20  # per chat per window
    window_seconds: float = 60.0
    daily_tokens: int = 500_000  # LLM tokens (in + out) per UTC day; 0 = unlimited


@dataclass(slots=True)
class Stats:
    """Upstream work and cache use since start (read by tests and benchmarks)."""

    eprint_fetches: int = 0
    html_fetches: int = 0
    llm_calls: int = 0
    llm_tokens: int = 0
    cache_hits: int = 0


class RateLimiter:
    def __init__(
        self, settings: LimitSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self.user = KeyedWindows(settings.user_requests, settings.window_seconds, even=False)
        self.chat = KeyedWindows(settings.chat_requests, settings.window_seconds, even=False)

    def check(self, user: str, chat: str) -> float:
        """Take one request slot; returns 0 if allowed, else seconds to wait (nothing taken)."""
        now = self._clock()
        wait = max(self.user.wait(user, now), self.chat.wait(chat, now))
        if wait > 0:
            return wait
        self.user.window(user, now).add(now)
        self.chat.window(chat, now).add(now)
        return 0.0


class TokenBudget:
    """Tokens spent on the LLM today (UTC). Reserve an estimate first, settle with usage."""

    def __init__(self, daily: int, today: Callable[[], str] | None = None) -> None:
        self.daily = daily
        self._today = today or (lambda: datetime.now(UTC).date().isoformat())
        self._day = self._today()
        self.used = 0
        self.reserved = 0

    def _roll(self) -> None:
        day = self._today()
        if day != self._day:
            self._day, self.used = day, 0

    def reserve(self, tokens: int) -> bool:
        self._roll()
        if self.daily and self.used + self.reserved + tokens > self.daily:
            return False
        self.reserved += tokens
        return True

    def settle(self, reserved: int, used: int) -> None:
        self._roll()
        self.reserved = max(0, self.reserved - reserved)
        self.used += used

    @property
    def remaining(self) -> int:
        self._roll()
        return max(0, self.daily - self.used - self.reserved) if self.daily else 1 << 62


@dataclass(frozen=True, slots=True)
class Failure:
    count: int  # failures in a row
    until: float  # clock time the key is backed off until
    reason: str  # user-safe, for the label of what is served meanwhile


class Backoff:
    """Keys (an LLM provider, a paper at a provider) that failed are left alone for
    `first` seconds, doubling with each further failure in a row up to `cap`; a success
    forgets them. So a broken or hung provider costs one user a wait, not every user."""

    def __init__(
        self,
        first: float = 30.0,
        cap: float = 1800.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self.first = first
        self.cap = cap
        self._clock = clock
        # A run of failures is forgotten after a quiet `cap` beyond its last backoff.
        self._failures = ExpiringCache(max_entries=max_keys, clock=clock)

    def blocked(self, key: Hashable) -> Failure | None:
        """The failure that backs `key` off now, if any."""
        failure = self._failures.get(key)
        if isinstance(failure, Failure) and failure.until > self._clock():
            return failure
        return None

    def failed(self, key: Hashable, reason: str) -> float:
        """Record a failure; returns how long `key` is now backed off."""
        last = self._failures.get(key)
        count = last.count + 1 if isinstance(last, Failure) else 1
        delay = min(self.cap, self.first * 2 ** min(count - 1, 32))
        self._failures.set(key, Failure(count, self._clock() + delay, reason), delay + self.cap)
        return delay

    def succeeded(self, key: Hashable) -> None:
        self._failures.discard(key)
