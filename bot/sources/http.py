"""Shared HTTP plumbing for the sources: one client factory and a polite, retrying gate.

Every upstream request goes through `Upstream.get`, which retries what is worth retrying
(429, 5xx, timeouts, dropped connections) with exponential backoff, honours `Retry-After`,
gives up after a bounded number of attempts, and then raises `SourceError` with a message
that is safe to show a user. For arXiv the gate is also serial and spaced: one request at a
time, at least `min_interval` seconds apart, as arXiv's API terms ask.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
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


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is either delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class _RetryAfterOrExponential:
    """Tenacity wait: the server's Retry-After when it gave one, else exponential backoff."""

    def __init__(self, backoff: float, max_wait: float) -> None:
        self._exp = wait_exponential(multiplier=backoff, max=max_wait)
        self._max_wait = max_wait

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableStatus) and exc.retry_after is not None:
            return min(exc.retry_after, self._max_wait)
        return float(self._exp(state))


class Upstream:
    """A named upstream behind one client: retries, backoff, and (optionally) polite spacing.

    `serial=True` lets one request (with all its retries) run at a time; `min_interval` is the
    least time between the end of one request and the start of the next.
    """

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        *,
        min_interval: float = 0.0,
        serial: bool = False,
        attempts: int = 4,
        backoff: float = 1.0,
        max_wait: float = 120.0,
    ) -> None:
        self.name = name
        self.client = client
        self.min_interval = max(0.0, min_interval)
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.max_wait = max_wait
        self._lock: asyncio.Lock | None = asyncio.Lock() if serial else None
        self._last_done = float("-inf")

    async def get(self, url: str, params: Mapping[str, str | int] | None = None) -> httpx.Response:
        """GET with retries. Returns any non-retryable response (the caller judges 4xx);
        raises SourceError when the upstream stays unavailable."""
        if self._lock is None:
            return await self._get_with_retries(url, params)
        async with self._lock:
            return await self._get_with_retries(url, params)

    async def _get_with_retries(
        self, url: str, params: Mapping[str, str | int] | None
    ) -> httpx.Response:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=_RetryAfterOrExponential(self.backoff, self.max_wait),
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
        # Spacing is measured from the end of the previous request, so start-to-start is
        # never shorter than min_interval either.
        wait = self._last_done + self.min_interval - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        try:
            response = await self.client.get(url, params=params)
        finally:
            self._last_done = time.monotonic()
        if response.status_code in RETRY_STATUSES:
            raise RetryableStatus(
                response.status_code, parse_retry_after(response.headers.get("Retry-After"))
            )
        return response

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        sleep = state.next_action.sleep if state.next_action else 0.0
        log.info("%s: %s; retry %d in %.2fs", self.name, exc, state.attempt_number, sleep)
