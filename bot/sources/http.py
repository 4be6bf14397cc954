"""Shared HTTP plumbing: one client factory, one Retry-After parser, one polite gate, and
one bounded body reader.

Every source request goes through `Upstream.get`, which retries what is worth retrying
(429, 5xx, timeouts, dropped connections) with exponential backoff, honours `Retry-After`
up to a cap (a longer one is a `SourceError` saying when to come back), bounds each
attempt by a total deadline (body included, so a trickling server cannot hold us), reads
the body streaming under a byte cap that also bounds decompression (a gzip bomb stops at
the cap), and then raises `SourceError` with a message that is safe to show a user.

For arXiv the upstream also goes through a `PoliteGate`, which spaces request *starts* at
least `min_interval` apart, as arXiv's terms ask. It is never held during a download, so
one slow body delays nobody else. The terms count everything we send arXiv, so one gate is
shared by every arXiv client (the source's listing and export API, and the explainer's
e-print and HTML fetches).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

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
DEFAULT_MAX_BYTES = 20_000_000  # a big arXiv listing is a few MB


def make_client(settings: Settings, *, accept: str = "*/*") -> httpx.AsyncClient:
    """An AsyncClient with our User-Agent and per-phase timeouts (the caller closes it).

    Only encodings `read_capped` can bound are asked for."""
    phase = settings.http_timeout_seconds
    return httpx.AsyncClient(
        headers={"User-Agent": USER_AGENT, "Accept": accept, "Accept-Encoding": "gzip, deflate"},
        timeout=httpx.Timeout(phase, connect=min(10.0, phase)),
        follow_redirects=True,
    )


class RetryableStatus(Exception):
    """An HTTP answer that means "try again later"; carries the server's Retry-After."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


class DeadlineExceeded(Exception):
    """One attempt (connect, headers and body) took longer than its total deadline."""


class BodyTooLarge(Exception):
    """A body (as sent, or decompressed) is over its byte cap."""


class BadBody(Exception):
    """A body that cannot be decoded (unknown Content-Encoding, corrupt compression)."""


class ComeBackLater(SourceError):
    """The upstream asked us to wait longer than we will; `at` says when it will answer."""

    def __init__(self, name: str, seconds: float) -> None:
        self.at = datetime.now(UTC) + timedelta(seconds=seconds)
        minutes = max(1, round(seconds / 60))
        super().__init__(
            f"{name} is overloaded and asked us to come back in about {minutes} min "
            f"(after {self.at:%H:%M} UTC). Please try again then."
        )


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
    if seconds != seconds:  # NaN
        return None
    seconds = max(0.0, seconds)
    return seconds if cap is None else min(seconds, cap)


class PoliteGate:
    """Request starts to one upstream at least `min_interval` seconds apart.

    `start()` reserves the next free start slot and sleeps until it; nothing is held while
    the request runs, so a slow download never delays anyone else's request. `back_off`
    pushes every later start out when the server asked us to wait. Slots are 10% wider
    than asked: the server measures arrivals, and a new connection's handshake can make
    one request arrive later than the next one on a warm connection.
    """

    MARGIN = 1.1

    def __init__(self, min_interval: float = 0.0) -> None:
        self.min_interval = max(0.0, min_interval)
        self._next_start = float("-inf")

    async def start(self) -> None:
        now = time.monotonic()
        slot = max(now, self._next_start)
        self._next_start = slot + self.min_interval * self.MARGIN  # reserved first: FIFO
        if slot > now:
            await asyncio.sleep(slot - now)

    def back_off(self, seconds: float) -> None:
        self._next_start = max(self._next_start, time.monotonic() + seconds)


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


def _decompressor(encoding: str) -> Any:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj(zlib.MAX_WBITS)
    raise BadBody(f"unsupported Content-Encoding {encoding[:40]!r}")


async def read_capped(resp: httpx.Response, max_bytes: int) -> bytes:
    """The body of a streamed response, at most `max_bytes` as sent and as decompressed.

    Reads the raw stream and inflates it ourselves with `max_length`, so a compression
    bomb never grows past the cap in memory."""
    declared = resp.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise BodyTooLarge(f"declared {declared} bytes")
    decoder = _decompressor(resp.headers.get("content-encoding", ""))
    out = bytearray()
    sent = 0
    try:
        async for chunk in resp.aiter_raw():
            sent += len(chunk)
            if sent > max_bytes:
                raise BodyTooLarge(f"over {max_bytes} bytes as sent")
            if decoder is None:
                out += chunk
            else:
                data = chunk
                while data:
                    out += decoder.decompress(data, max_bytes - len(out) + 1)
                    if len(out) > max_bytes:
                        raise BodyTooLarge(f"over {max_bytes} bytes decompressed")
                    data = decoder.unconsumed_tail
        if decoder is not None:
            out += decoder.flush()
            if len(out) > max_bytes:
                raise BodyTooLarge(f"over {max_bytes} bytes decompressed")
    except zlib.error as exc:
        raise BadBody(f"corrupt {resp.headers.get('content-encoding')} body") from exc
    return bytes(out)


@dataclass(slots=True)
class Fetched:
    """A complete, bounded answer: what `Upstream.get` returns."""

    status_code: int
    headers: httpx.Headers
    content: bytes
    url: httpx.URL

    def json(self) -> Any:
        return json.loads(self.content)


class Upstream:
    """A named upstream behind one client: retries, backoff, deadlines, a body cap, and
    (optionally) a polite gate, which may be shared with other clients of the same upstream."""

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        *,
        gate: PoliteGate | None = None,
        attempts: int = 4,
        backoff: float = 1.0,
        max_wait: float = 120.0,
        deadline: float = 30.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        retry_after_cap: float = 60.0,
    ) -> None:
        self.name = name
        self.client = client
        self.gate = gate
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.max_wait = min(max_wait, retry_after_cap)
        self.deadline = deadline
        self.max_bytes = max_bytes
        self.retry_after_cap = retry_after_cap

    async def get(self, url: str, params: Mapping[str, str | int] | None = None) -> Fetched:
        """GET with retries. Returns any non-retryable response (the caller judges 4xx);
        raises SourceError when the upstream stays unavailable or its answer is unusable."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=RetryAfterOrBackoff(self.backoff, self.max_wait),
            retry=retry_if_exception_type(
                (RetryableStatus, httpx.TransportError, DeadlineExceeded)
            ),
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
        except DeadlineExceeded as exc:
            log.warning("%s too slow (over %.0fs per answer)", self.name, self.deadline)
            raise SourceError(f"{self.name} is answering too slowly; try again later.") from exc
        except httpx.TransportError as exc:
            log.warning("%s unreachable after %d attempts: %r", self.name, self.attempts, exc)
            raise SourceError(f"{self.name} is not reachable right now; try again later.") from exc
        except BodyTooLarge as exc:
            log.warning("%s sent an oversized answer: %s", self.name, exc)
            raise SourceError(f"{self.name} sent an oversized answer; try again later.") from exc
        except BadBody as exc:
            log.warning("%s sent an undecodable answer: %s", self.name, exc)
            raise SourceError(f"{self.name} sent an unreadable answer; try again later.") from exc
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def _once(self, url: str, params: Mapping[str, str | int] | None) -> Fetched:
        if self.gate is not None:
            await self.gate.start()
        try:
            async with asyncio.timeout(self.deadline):
                with metrics.upstream_timer(self.name):
                    async with self.client.stream("GET", url, params=params) as resp:
                        if resp.status_code in RETRY_STATUSES:
                            self._retry_later(resp)
                        body = await read_capped(resp, self.max_bytes)
                        return Fetched(resp.status_code, resp.headers, body, resp.url)
        except TimeoutError as exc:
            raise DeadlineExceeded(f"no complete answer in {self.deadline:g}s") from exc

    def _retry_later(self, resp: httpx.Response) -> None:
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        if retry_after is not None and retry_after > self.retry_after_cap:
            log.warning(
                "%s: HTTP %s with Retry-After %.0fs (over our %.0fs cap)",
                self.name,
                resp.status_code,
                retry_after,
                self.retry_after_cap,
            )
            if self.gate is not None:
                self.gate.back_off(self.retry_after_cap)
            raise ComeBackLater(self.name, retry_after)
        if retry_after is not None and self.gate is not None:
            self.gate.back_off(retry_after)  # nobody else asks meanwhile
        raise RetryableStatus(resp.status_code, retry_after)

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        sleep = state.next_action.sleep if state.next_action else 0.0
        log.info("%s: %s; retry %d in %.2fs", self.name, exc, state.attempt_number, sleep)
