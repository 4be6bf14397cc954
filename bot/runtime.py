"""Wiring and lifecycle: build the core from settings, start adapters, stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3
from collections.abc import AsyncIterator

from bot.config import ConfigError, Settings
from bot.delivery import run_delivery
from bot.explain import Explainer, ExplainOptions, LimitSettings
from bot.explain.digest_line import MathLines
from bot.rank import features
from bot.sending import Adapter
from bot.service import Paperboy
from bot.sources.arxiv import ArxivSource
from bot.sources.hf import HuggingFaceSource
from bot.startup import PlatformError
from bot.store import Store, open_store

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def open_service(settings: Settings) -> AsyncIterator[Paperboy]:
    """The opened Paperboy service (store, sources, explainer), closed on exit."""
    store = await _open_store(settings)
    arxiv = ArxivSource(settings)
    hf = HuggingFaceSource(settings)
    limits = LimitSettings(
        user_requests=settings.explain_user_per_minute,
        chat_requests=settings.explain_chat_per_minute,
        window_seconds=60.0,
        daily_tokens=settings.llm_daily_tokens,
    )
    # arXiv's one-request-at-a-time rule covers all our traffic: share the source's gate.
    explainer = Explainer(settings, options=ExplainOptions(limits=limits), arxiv_gate=arxiv.gate)
    service = Paperboy(
        store, arxiv, hf, explainer, interactive_deadline=settings.interactive_deadline_seconds
    )
    service.math_lines = MathLines(
        explainer,
        per_round=settings.digest_explain_per_round,
        wait=settings.digest_explain_wait_seconds,
    )
    try:
        yield service
    finally:
        await service.aclose()
        await store.close()


async def _open_store(settings: Settings) -> Store:
    """The opened store; a URL that leads nowhere usable is a ConfigError naming the
    setting (never the URL itself: it may hold a password)."""
    try:
        store = open_store(settings.database_url)
        set_worker = getattr(store, "set_worker", None)
        if set_worker is not None and settings.worker_count > 1:
            # Several workers: each schedules its share of the due chats (PostgreSQL).
            set_worker(settings.worker_index, settings.worker_count)
        await store.open()
    except sqlite3.DatabaseError as e:
        raise ConfigError(
            f"PAPERBOY_DATABASE_URL: the file is not a usable SQLite database ({e})"
        ) from e
    except ValueError as e:
        raise ConfigError(f"PAPERBOY_DATABASE_URL is not usable: {e}") from e
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise ConfigError(f"PAPERBOY_DATABASE_URL: cannot reach the database ({reason})") from e
    except Exception as e:
        if not type(e).__module__.startswith("asyncpg"):
            raise
        # Wrong password, no such database, no permission: PostgreSQL said no.
        raise ConfigError(
            f"PAPERBOY_DATABASE_URL: the database refused us ({type(e).__name__})"
        ) from e
    return store


def platform_adapters(service: Paperboy, settings: Settings) -> list[Adapter]:
    """The chat platforms whose tokens are set."""
    adapters: list[Adapter] = []
    if settings.telegram_bot_token:
        from adapters.telegram import TelegramAdapter

        adapters.append(TelegramAdapter(service, settings))
    if settings.discord_bot_token:
        from adapters.discord import DiscordAdapter

        adapters.append(DiscordAdapter(service, settings))
    return adapters


async def serve(service: Paperboy, settings: Settings, adapters: list[Adapter]) -> None:
    """Run the adapters (and the delivery scheduler) until SIGINT/SIGTERM."""
    from bot.health import Health, MetricsServer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    health = Health()
    for adapter in adapters:
        health.set_adapter(adapter.platform, "starting")
    metrics: MetricsServer | None = None
    if settings.metrics_port > 0:
        # Up before the adapters, so a slow platform login reads as "starting", not "down".
        metrics = MetricsServer(
            service.store, health, host=settings.metrics_host, port=settings.metrics_port
        )
        await metrics.start()
    started: list[Adapter] = []
    try:
        for adapter in adapters:
            try:
                await adapter.start()
            except Exception:
                health.set_adapter(adapter.platform, "failed")
                raise
            started.append(adapter)
            health.set_adapter(adapter.platform, "running")
            log.info("%s adapter started", adapter.platform)
        background = await start_background(service, settings, adapters) + _watch(adapters)
        stopping = asyncio.ensure_future(stop.wait())
        try:
            # A background loop that ends by itself has failed: without it no digest goes
            # out, so stop (and let the service manager restart us) rather than carry on.
            await asyncio.wait({stopping, *background}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        ended = [task for task in background if task.done()] if not stop.is_set() else []
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        for task in ended:
            error = None if task.cancelled() else task.exception()
            if isinstance(error, PlatformError):
                raise error  # the operator must act; `paperboy` says what, in one line
            log.error("%s stopped; shutting down", task.get_name(), exc_info=error)
            if error is not None:
                raise error
            raise RuntimeError(f"{task.get_name()} stopped")
    finally:
        for adapter in reversed(started):
            try:
                await adapter.stop()
                health.set_adapter(adapter.platform, "stopped")
            except Exception:
                log.exception("stopping %s failed", adapter.platform)
        if metrics is not None:
            await metrics.stop()


def _watch(adapters: list[Adapter]) -> list[asyncio.Task[None]]:
    """Tasks that end when an adapter cannot go on (its `failed` future: Telegram's 409)."""
    tasks = []
    for adapter in adapters:
        failed = getattr(adapter, "failed", None)
        if isinstance(failed, asyncio.Future):
            tasks.append(asyncio.create_task(_await(failed), name=f"{adapter.platform} adapter"))
    return tasks


async def _await(future: asyncio.Future[None]) -> None:
    await future


_warming: set[asyncio.Task[object]] = set()  # a reference, so the task is not collected


async def start_background(
    service: Paperboy, settings: Settings, adapters: list[Adapter]
) -> list[asyncio.Task[None]]:
    """Background loops (the delivery scheduler and senders) for these adapters."""
    from bot.metrics import counting

    # One of several workers sends only its share of each platform's global rate.
    settings = settings.worker_share()
    # The ranking's feature space takes seconds to build: now, not on the first vote.
    _warming.add(asyncio.create_task(features.space(), name="rank-features"))
    return [
        asyncio.create_task(run_delivery(service, settings, counting(adapters)), name="delivery")
    ]
