"""Expiring caches and single-flight.

Explanations are cached by (paper, version, mode, model, language) in an `ExpiringCache`
(cachetools' TLRUCache: least recently used out first, each entry with its own
time-to-live, so a fallback forced by a failing arXiv is kept briefly and a good
explanation for days). `SingleFlight` makes concurrent requests for one key share one
computation: 100 people explaining the same paper at once cause one fetch and one LLM call.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from cachetools import TLRUCache

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CacheKey:
    paper: str
    version: int
    mode: str  # "offline" or "llm"
    model: str
    language: str

    def __str__(self) -> str:
        return f"{self.paper}v{self.version}:{self.mode}:{self.model}:{self.language}"


def _expiry(_key: Hashable, item: tuple[Any, float], now: float) -> float:
    return now + item[1]


class ExpiringCache:
    """A bounded LRU whose entries expire after the time-to-live each was stored with."""

    def __init__(self, max_entries: int = 512, clock: Callable[[], float] = time.monotonic) -> None:
        self._data: TLRUCache[Hashable, tuple[Any, float]] = TLRUCache(
            maxsize=max_entries, ttu=_expiry, timer=clock
        )

    def get(self, key: Hashable) -> Any | None:
        item = self._data.get(key)
        return None if item is None else item[0]

    def set(self, key: Hashable, value: Any, ttl: float) -> None:
        self._data[key] = (value, ttl)

    def discard(self, key: Hashable) -> None:
        self._data.pop(key, None)

    def __len__(self) -> int:
        return len(self._data)


class SingleFlight(Generic[T]):
    """At most one running computation per key; late callers await the same result."""

    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Future[T]] = {}

    async def do(self, key: Hashable, fn: Callable[[], Awaitable[T]]) -> T:
        return await asyncio.shield(self.start(key, fn))

    def start(self, key: Hashable, fn: Callable[[], Awaitable[T]]) -> asyncio.Future[T]:
        """The running computation for `key`, started now if there is none; await it
        through `asyncio.shield`."""
        fut = self._running.get(key)
        if fut is None:
            # A task, not the caller's coroutine: one impatient caller cancelling must not
            # cancel the work everybody else is waiting for.
            fut = asyncio.ensure_future(fn())
            self._running[key] = fut
            fut.add_done_callback(functools.partial(self._forget, key))
        return fut

    async def cancel(self) -> None:
        """Stop every running computation (on shutdown)."""
        running = list(self._running.values())
        for fut in running:
            fut.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    def _forget(self, key: Hashable, _fut: object) -> None:
        self._running.pop(key, None)

    def __len__(self) -> int:
        return len(self._running)
