"""Prometheus metrics and the health/metrics HTTP endpoint.

Other modules import the metric objects and update them; nothing here depends on them:

    from bot import metrics
    metrics.MESSAGES_SENT.labels(platform="telegram").inc()
    with metrics.upstream_timer("arxiv"):
        ...
    metrics.record_tokens("openai", prompt=812, completion=230)

`MetricsServer` serves `GET /metrics` (Prometheus text format) and `GET /healthz`
(JSON: 200 when the store answers, 503 when it does not) on `Settings.metrics_port`.
The metrics live in their own registry, so tests and a second app in one process
never collide with the library's global default registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from bot.doc import Message
from bot.models import ChatRef
from bot.sending import ChatGone, ChatMoved, PermanentError, RetryAfter, Sender, TransientError
from bot.store.base import Store

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
# Process memory, CPU and open files: the first things to look at when a worker misbehaves.
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

MESSAGES_SENT = Counter(
    "messages_sent",  # exposed as messages_sent_total
    "Messages delivered to a chat platform.",
    ["platform"],
    registry=REGISTRY,
)
SEND_FAILURES = Counter(
    "send_failures",  # exposed as send_failures_total
    "Failed sends, by platform and kind (rate_limited, transient, chat_gone, chat_moved,"
    " permanent, other).",
    ["platform", "kind"],
    registry=REGISTRY,
)
OUTBOX_QUEUE_DEPTH = Gauge(
    "outbox_queue_depth",
    "Outbox rows not yet sent (pending or being sent), refreshed at every scrape.",
    registry=REGISTRY,
)
UPSTREAM_REQUEST_SECONDS = Histogram(
    "upstream_request_seconds",
    "Time spent on requests to upstreams (arxiv, hf, llm, …).",
    ["upstream"],
    # arXiv is slow on purpose (3 s spacing) and LLM calls take tens of seconds.
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)
LLM_TOKENS = Counter(
    "llm_tokens",  # exposed as llm_tokens_total
    "Tokens used by the LLM provider, by kind (prompt, completion).",
    ["provider", "kind"],
    registry=REGISTRY,
)


@contextlib.contextmanager
def upstream_timer(upstream: str) -> Iterator[None]:
    """Observe the wall time of the block in `upstream_request_seconds`, failures included."""
    started = time.perf_counter()
    try:
        yield
    finally:
        UPSTREAM_REQUEST_SECONDS.labels(upstream=upstream).observe(time.perf_counter() - started)


def record_tokens(provider: str, *, prompt: int = 0, completion: int = 0) -> None:
    """Count an LLM call's tokens (negative or missing counts are ignored)."""
    if prompt > 0:
        LLM_TOKENS.labels(provider=provider, kind="prompt").inc(prompt)
    if completion > 0:
        LLM_TOKENS.labels(provider=provider, kind="completion").inc(completion)


def failure_kind(error: BaseException) -> str:
    """The `kind` label for a failed send (bot/sending.py's error classes)."""
    if isinstance(error, RetryAfter):
        return "rate_limited"
    if isinstance(error, ChatMoved):
        return "chat_moved"
    if isinstance(error, ChatGone):
        return "chat_gone"
    if isinstance(error, PermanentError):
        return "permanent"
    if isinstance(error, TransientError | OSError | TimeoutError):
        return "transient"
    return "other"


class CountingSender:
    """A Sender that counts what the wrapped one sends and how it fails.

    Wrapping at the seam keeps the counting out of every adapter and out of the dispatcher.
    """

    def __init__(self, inner: Sender) -> None:
        self.inner = inner
        self.platform = inner.platform

    async def ready(self, chat: ChatRef) -> None:
        """The wrapped sender's wait for the chat's own pace, when it paces (bot/pacing.py)."""
        ready = getattr(self.inner, "ready", None)
        if ready is not None:
            await ready(chat)

    async def send(self, chat: ChatRef, message: Message) -> list[str]:
        try:
            ids = await self.inner.send(chat, message)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            SEND_FAILURES.labels(platform=self.platform, kind=failure_kind(e)).inc()
            raise
        MESSAGES_SENT.labels(platform=self.platform).inc()
        return ids


def counting(senders: Iterable[Sender]) -> list[Sender]:
    return [s if isinstance(s, CountingSender) else CountingSender(s) for s in senders]


class Health:
    """What `/healthz` reports besides the store: each adapter's state, set by the app."""

    def __init__(self) -> None:
        self.adapters: dict[str, str] = {}
        self.started = time.time()

    def set_adapter(self, platform: str, state: str) -> None:
        self.adapters[platform] = state  # "starting", "running", "stopped", "failed"


async def _store_ok(store: Store, seconds: float) -> tuple[bool, str | None]:
    try:
        await asyncio.wait_for(store.schema_version(), seconds)
    except asyncio.CancelledError:
        raise
    except Exception as e:
        # The class name only: driver messages may echo the DSN, password included.
        return False, type(e).__name__
    return True, None


class MetricsServer:
    """`/healthz` and `/metrics` on host:port (port 0 picks a free one; see `.port`)."""

    def __init__(
        self,
        store: Store,
        health: Health | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        check_timeout: float = 2.0,
        extra: Callable[[], Awaitable[Mapping[str, Any]]] | None = None,
    ) -> None:
        self.store = store
        self.health = health or Health()
        self.host = host
        self.port = port
        self.check_timeout = check_timeout
        self._extra = extra
        self._runner: web.AppRunner | None = None

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def start(self) -> int:
        runner = web.AppRunner(self.make_app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        if runner.addresses:
            self.port = int(runner.addresses[0][1])
        log.info("metrics and health on http://%s:%d", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> MetricsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _healthz(self, request: web.Request) -> web.Response:
        ok, error = await _store_ok(self.store, self.check_timeout)
        store: dict[str, Any] = {"reachable": ok}
        if error:
            store["error"] = error
        body: dict[str, Any] = {
            "status": "ok" if ok else "unavailable",
            "store": store,
            "adapters": dict(self.health.adapters),
            "uptime_seconds": round(time.time() - self.health.started, 1),
        }
        if self._extra is not None:
            with contextlib.suppress(Exception):
                body.update(await self._extra())
        return web.json_response(body, status=200 if ok else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        # The queue depth is read at scrape time: exact, and no loop has to keep it fresh.
        try:
            counts = await asyncio.wait_for(self.store.outbox_counts(), self.check_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.debug("outbox depth unavailable: %s", type(e).__name__)
        else:
            OUTBOX_QUEUE_DEPTH.set(counts.get("pending", 0) + counts.get("sending", 0))
        payload = await asyncio.to_thread(generate_latest, REGISTRY)
        return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})
