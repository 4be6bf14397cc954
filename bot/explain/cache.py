"""Explanation cache and single-flight.

The cache is keyed (paper, version, mode, model, language). `ExplanationCache` is the
interface: the in-memory LRU below implements it, and a store-backed cache can later
(values are plain dataclasses; see `Explanation.to_dict`). `SingleFlight` makes
concurrent requests for one key share one computation: 100 people explaining the same
paper at once cause one fetch and one LLM call.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

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


class ExplanationCache(Protocol):
    async def get(self, key: CacheKey) -> Any | None: ...

    async def set(self, key: CacheKey, value: Any, ttl: float) -> None: ...


class MemoryCache:
    """A bounded LRU with per-entry time-to-live."""

    def __init__(self, max_entries: int = 512, clock: Callable[[], float] = time.monotonic) -> None:
        self._data: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._max = max_entries
        self._clock = clock

    def get_now(self, key: Hashable) -> Any | None:
        item = self._data.get(key)
        if item is None:
            return None
        expires, value = item
        if expires < self._clock():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    def set_now(self, key: Hashable, value: Any, ttl: float) -> None:
        self._data[key] = (self._clock() + ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self._max:
            self._data.popitem(last=False)

    def discard(self, key: Hashable) -> None:
        self._data.pop(key, None)

    async def get(self, key: CacheKey) -> Any | None:
        return self.get_now(key)

    async def set(self, key: CacheKey, value: Any, ttl: float) -> None:
        self.set_now(key, value, ttl)

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
