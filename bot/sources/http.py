"""Shared HTTP plumbing: one client factory, one Retry-After parser, one polite gate.

Every source request goes through `Upstream.get`, which retries what is worth retrying
(429, 5xx, timeouts, dropped connections) with exponential backoff, honours `Retry-After`,
gives up after a bounded number of attempts, and then raises `SourceError` with a message
that is safe to show a user. For arXiv the upstream also goes through a `PoliteGate`: one
request at a time, at least `min_interval` seconds apart, as arXiv's API terms ask. The
terms count everything we send arXiv, so one gate is shared by every arXiv client (the
source's listing and export API, and the explainer's e-print and HTML fetches).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)
from tenacity.wait import WaitBaseT

from bot import metrics
from bot.config import USER_AGENT, Settings
from bot.sources.base import SourceError

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def make_client(settings: Settings, *, accept: str = "*/*") -> httpx.AsyncClient:
    """An AsyncClient with our User-Agent and timeouts (the caller closes it)."""
    total = settings.http_timeout_seconds
    return httpx.AsyncClient(
        headers={"User-Agent": USER_AGENT, "Accept": accept},
        timeout=httpx.Timeout(total, connect=min(10.0, total)),
        follow_redirects=True,
    )


class RetryableStatus(Exception):
    """An HTTP answer that means "try again later"; carries the server's Retry-After."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


def parse_retry_after(value: str | None, cap: float | None = None) -> float | None:
    """Retry-After is either delta-seconds or an HTTP date; None when absent or unreadable.

    `cap` bounds the answer, so a server cannot park us for hours."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    seconds = max(0.0, seconds)
    return seconds if cap is None else min(seconds, cap)


class PoliteGate:
    """One request at a time to an upstream, at least `min_interval` seconds apart.

    `turn()` holds the upstream for one logical request and all its retries, so a server
    that asked us to back off is not hit by another caller meanwhile; `attempt()` wraps each
    request on the wire. Spacing runs from the end of one attempt to the start of the next,
    so start-to-start is never shorter than `min_interval` either.
    """

    def __init__(self, min_interval: float = 0.0) -> None:
        self.min_interval = max(0.0, min_interval)
        self._lock = asyncio.Lock()
        self._last_done = float("-inf")

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        async with self._lock:
            yield

    @contextlib.asynccontextmanager
    async def attempt(self) -> AsyncIterator[None]:
        wait = self._last_done + self.min_interval - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        try:
            yield
        finally:
            self._last_done = time.monotonic()


class RetryAfterOrBackoff:
    """Tenacity wait: the server's Retry-After when the failure carries one (a
    `retry_after` attribute), else the given backoff (exponential by default)."""

    def __init__(self, backoff: float, max_wait: float, fallback: WaitBaseT | None = None) -> None:
        self._fallback = fallback or wait_exponential(multiplier=backoff, max=max_wait)
        self._max_wait = max_wait

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, int | float):
            return min(float(retry_after), self._max_wait)
        return float(self._fallback(state))


class Upstream:
    """A named upstream behind one client: retries, backoff, and (optionally) a polite gate,
    which may be shared with other clients of the same upstream."""

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        *,
        gate: PoliteGate | None = None,
        attempts: int = 4,
        backoff: float = 1.0,
        max_wait: float = 120.0,
    ) -> None:
        self.name = name
        self.client = client
        self.gate = gate
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.max_wait = max_wait

    async def get(self, url: str, params: Mapping[str, str | int] | None = None) -> httpx.Response:
        """GET with retries. Returns any non-retryable response (the caller judges 4xx);
        raises SourceError when the upstream stays unavailable."""
        if self.gate is None:
            return await self._get_with_retries(url, params)
        async with self.gate.turn():
            return await self._get_with_retries(url, params)

    async def _get_with_retries(
        self, url: str, params: Mapping[str, str | int] | None
    ) -> httpx.Response:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=RetryAfterOrBackoff(self.backoff, self.max_wait),
            retry=retry_if_exception_type((RetryableStatus, httpx.TransportError)),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._once(url, params)
        except RetryableStatus as exc:
            log.warning(
                "%s still answering HTTP %s after %d attempts", self.name, exc.status, self.attempts
            )
            raise SourceError(f"{self.name} is busy or down right now; try again later.") from exc
        except httpx.TransportError as exc:
            log.warning("%s unreachable after %d attempts: %r", self.name, self.attempts, exc)
            raise SourceError(f"{self.name} is not reachable right now; try again later.") from exc
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def _once(self, url: str, params: Mapping[str, str | int] | None) -> httpx.Response:
        async with self.gate.attempt() if self.gate else contextlib.nullcontext():
            with metrics.upstream_timer(self.name):
                response = await self.client.get(url, params=params)
        if response.status_code in RETRY_STATUSES:
            raise RetryableStatus(
                response.status_code, parse_retry_after(response.headers.get("Retry-After"))
            )
        return response

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        sleep = state.next_action.sleep if state.next_action else 0.0
        log.info("%s: %s; retry %d in %.2fs", self.name, exc, state.attempt_number, sleep)
