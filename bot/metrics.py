"""Prometheus metrics: the counters, gauges and histograms, and a Sender that counts.

Other modules import the metric objects and update them; nothing here depends on them:

    from bot import metrics
    metrics.MESSAGES_SENT.labels(platform="telegram").inc()
    with metrics.upstream_timer("arxiv"):
        ...
    metrics.record_tokens("openai", prompt=812, completion=230)

The metrics live in their own registry, so tests and a second app in one process
never collide with the library's global default registry; bot/health.py serves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from bot.doc import Message
from bot.models import ChatRef
from bot.sending import ChatGone, ChatMoved, PermanentError, RetryAfter, Sender, TransientError

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
