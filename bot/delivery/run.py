"""The two ways delivery runs: `paperboy run`'s background loop and `deliver --now`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from bot.config import Settings
from bot.delivery.dispatch import Dispatcher, SendStats, utcnow
from bot.delivery.enqueue import TickStats, scheduler_tick
from bot.sending import Sender
from bot.service import Paperboy

log = logging.getLogger(__name__)

PRUNE_AFTER = timedelta(days=14)
# Which sent message was about which paper, and long button data: a reply or a press on
# a message older than this is answered as stale.
MESSAGE_MEMORY_AFTER = timedelta(days=30)


def senders_for(adapters: Sequence[Sender]) -> dict[str, Sender]:
    return {adapter.platform: adapter for adapter in adapters}


async def deliver_once(
    app: Paperboy,
    settings: Settings,
    adapters: Sequence[Sender],
    clock: Callable[[], datetime] = utcnow,
) -> tuple[TickStats, SendStats]:
    """One scheduler round, then send until the outbox is drained (`paperboy deliver --now`).

    Rows left from earlier runs (a crash, a retry) are sent too.
    """
    stats = await scheduler_tick(app, clock())
    dispatcher = Dispatcher(app.store, senders_for(adapters), settings, clock=clock)
    deadline = asyncio.get_running_loop().time() + settings.delivery_drain_seconds
    await dispatcher.run(until_idle=True, deadline=deadline)
    return stats, dispatcher.stats


async def run_delivery(app: Paperboy, settings: Settings, adapters: Sequence[Sender]) -> None:
    """The background loop of `paperboy run`: a scheduler tick every so often, senders always."""
    dispatcher = Dispatcher(app.store, senders_for(adapters), settings)
    sending = asyncio.create_task(dispatcher.run(), name="delivery senders")
    pruned = utcnow() - timedelta(days=1)
    try:
        while True:
            try:
                stats = await scheduler_tick(app)
                if stats.messages:
                    log.info("enqueued %d messages for %d chats", stats.messages, stats.digests)
                    dispatcher.notify()
                if utcnow() - pruned > timedelta(hours=12):
                    pruned = utcnow()
                    await app.store.prune_outbox(pruned - PRUNE_AFTER)
                    await app.store.prune_message_memory(pruned - MESSAGE_MEMORY_AFTER)
            except asyncio.CancelledError:
                raise
            except Exception:  # the next tick tries again; the outbox keeps what was enqueued
                log.exception("delivery scheduler tick failed")
            if sending.done():
                sending.result()  # the senders died: surface it
            await asyncio.sleep(settings.delivery_tick_seconds)
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sending
