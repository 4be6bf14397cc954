"""Wiring and lifecycle: build the core from settings, start adapters, stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator

from bot.config import Settings
from bot.sending import Adapter
from bot.service import Paperboy
from bot.sources.arxiv import ArxivSource
from bot.sources.hf import HuggingFaceSource
from bot.store import open_store

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def paperboy(settings: Settings) -> AsyncIterator[Paperboy]:
    """An opened Paperboy core (store, sources, explainer), closed on exit."""
    store = open_store(settings.database_url)
    await store.open()
    arxiv = ArxivSource(settings)
    hf = HuggingFaceSource(settings)
    explainer = None
    try:
        from bot.explain import Explainer

        explainer = Explainer(settings)
    except ImportError:  # pragma: no cover - explain is optional while it is being built
        log.warning("explanations unavailable: bot.explain could not be imported")
    app = Paperboy(store, arxiv, hf, explainer)
    try:
        yield app
    finally:
        await app.aclose()
        await store.close()


def platform_adapters(app: Paperboy, settings: Settings) -> list[Adapter]:
    """The chat platforms whose tokens are set."""
    adapters: list[Adapter] = []
    if settings.telegram_bot_token:
        from adapters.telegram import TelegramAdapter

        adapters.append(TelegramAdapter(app, settings))
    if settings.discord_bot_token:
        from adapters.discord import DiscordAdapter

        adapters.append(DiscordAdapter(app, settings))
    return adapters


async def serve(app: Paperboy, settings: Settings, adapters: list[Adapter]) -> None:
    """Run the adapters (and the delivery scheduler) until SIGINT/SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    started: list[Adapter] = []
    try:
        for adapter in adapters:
            await adapter.start()
            started.append(adapter)
            log.info("%s adapter started", adapter.platform)
        background = await start_background(app, settings, adapters)
        await stop.wait()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
    finally:
        for adapter in reversed(started):
            try:
                await adapter.stop()
            except Exception:
                log.exception("stopping %s failed", adapter.platform)


async def start_background(
    app: Paperboy, settings: Settings, adapters: list[Adapter]
) -> list[asyncio.Task[None]]:
    """Background loops (the delivery scheduler and senders) for these adapters."""
    try:
        from bot.delivery import run_delivery
    except ImportError:  # delivery is wired once bot/delivery.py exists
        return []
    return [asyncio.create_task(run_delivery(app, settings, adapters), name="delivery")]
