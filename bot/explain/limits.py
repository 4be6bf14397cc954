"""Per-user and per-chat rate limits, and a daily LLM token budget."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True, slots=True)
class LimitSettings:
    user_requests: int = 6  # explanations/follow-ups per user per window
    chat_requests: int = 20  # per chat per window
    window_seconds: float = 60.0
    daily_tokens: int = 500_000  # LLM tokens (in + out) per UTC day; 0 = unlimited


class SlidingWindow:
    """At most `limit` events per `window` seconds for each key."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._events: dict[str, deque[float]] = {}

    def retry_after(self, key: str) -> float:
        """0 if an event is allowed now, else seconds until it would be."""
        now = self._clock()
        q = self._events.get(key)
        if q is None:
            return 0.0
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self._events[key]
            return 0.0
        if len(q) < self.limit:
            return 0.0
        return q[0] + self.window - now

    def record(self, key: str) -> None:
        self._events.setdefault(key, deque()).append(self._clock())


class RateLimiter:
    def __init__(
        self, settings: LimitSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.user = SlidingWindow(settings.user_requests, settings.window_seconds, clock)
        self.chat = SlidingWindow(settings.chat_requests, settings.window_seconds, clock)

    def check(self, user: str, chat: str) -> float:
        """Take one request slot; returns 0 if allowed, else seconds to wait (nothing taken)."""
        wait = max(self.user.retry_after(user), self.chat.retry_after(chat))
        if wait > 0:
            return wait
        self.user.record(user)
        self.chat.record(chat)
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
