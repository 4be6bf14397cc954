"""The `paperboy` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bot.config import Settings
from bot.startup import PlatformError

if TYPE_CHECKING:
    from adapters.console import ConsoleChat
    from bot.service import Paperboy


def _setup_logging(settings: Settings, default_level: str) -> None:
    level = os.environ.get("PAPERBOY_LOG_LEVEL", default_level)
    try:
        from bot.logs import setup_logging
    except ImportError:  # pragma: no cover
        logging.basicConfig(level=level.upper())
        return
    # Text by default; PAPERBOY_LOG_FORMAT=json for log shippers. Secrets redacted either way.
    sql = os.environ.get("PAPERBOY_SQL_LOG", "").strip().lower() in ("1", "true", "yes")
    setup_logging(level, os.environ.get("PAPERBOY_LOG_FORMAT"), settings.secrets(), sql=sql)


async def _run(settings: Settings) -> int:
    from bot.explain.sandbox import warm_up
    from bot.runtime import open_service, platform_adapters, serve

    async with open_service(settings) as service:
        # The LaTeX worker's forkserver, started while nobody waits for it.
        warming = asyncio.create_task(asyncio.to_thread(warm_up))
        try:
            adapters = platform_adapters(service, settings)
            if adapters:
                await serve(service, settings, adapters)
            else:
                await console_chat(service, settings)
        finally:
            warming.cancel()
    return 0


async def _chat(settings: Settings) -> int:
    from bot.runtime import open_service

    async with open_service(settings) as service:
        await console_chat(service, settings)
    return 0


async def console_chat(
    service: Paperboy, settings: Settings, console: ConsoleChat | None = None
) -> None:
    """The terminal chat, with the terminal's own daily digest delivered while it runs."""
    from adapters.console import ConsoleChat
    from bot.delivery import run_delivery

    console = console or ConsoleChat(service)
    delivery = asyncio.create_task(run_delivery(service, settings, [console]), name="delivery")
    try:
        await console.run()
    finally:
        delivery.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await delivery


async def _command(settings: Settings, name: str, text: str) -> int:
    """Run one chat command and print its reply (`paperboy paper <id>`)."""
    from adapters.console import ConsoleChat, render_reply
    from bot.commands import run_text
    from bot.ids import InvalidArxivId
    from bot.runtime import open_service
    from bot.sources.base import SourceError

    async with open_service(settings) as service:
        # The lookup first, so a failure is an exit status scripts can see, not just text.
        try:
            paper = await service.paper(text)
        except InvalidArxivId as e:
            print(e, file=sys.stderr)
            return 2
        except SourceError as e:
            print(e, file=sys.stderr)
            return 1
        if paper is None:
            print(f"I couldn't find arXiv paper {text}. Is the id right?", file=sys.stderr)
            return 1
        console = ConsoleChat(service)
        reply = await run_text(service, console.context(), name, text)
        # An explanation prints the offline one at once and the LLM's below when it comes.
        print(render_reply(reply, console.style), flush=True)
        if reply.update is not None:
            print("\n" + render_reply(await reply.update(), console.style))
    return 0


async def _digest(settings: Settings, feed: str, count: int) -> int:
    from adapters.console import render_reply
    from bot import cards
    from bot.commands import UsageError, parse_feed
    from bot.runtime import open_service
    from bot.sources.base import SourceError

    try:
        feed = parse_feed(feed)
    except UsageError as e:
        print(e, file=sys.stderr)
        return 2
    async with open_service(settings) as service:
        try:
            fetch = await service.feed(feed)
        except SourceError as e:  # upstream down: its user-safe message, not a traceback
            print(e, file=sys.stderr)
            return 1
        if fetch.announced is None and not fetch.papers:
            print(f"No announcement for {feed} today.")
            return 0
        if fetch.stale:  # an earlier day's list: say so, on stderr so pipes stay clean
            print(f"{fetch.stale} Showing the list of {fetch.announced}.", file=sys.stderr)
        print(render_reply(cards.paper_list(f"{feed} digest", fetch.papers, limit=count)))
    return 0


async def _deliver(settings: Settings) -> int:
    """One delivery round, then drain the outbox (for cron)."""
    from adapters.console import ConsoleChat
    from bot.delivery import deliver_once
    from bot.runtime import open_service, platform_adapters
    from bot.sending import Sender

    async with open_service(settings) as service:
        adapters = platform_adapters(service, settings)
        senders: list[Sender] = list(adapters) or [ConsoleChat(service)]
        # Send-only: no polling or gateway, which would take updates away from a bot
        # running with the same token. Started and stopped around the round only.
        started = []
        try:
            for adapter in adapters:
                await adapter.start(receive=False)
                started.append(adapter)
            # One of several workers sends only its share of each platform's global rate.
            tick, sent = await deliver_once(service, settings.worker_share(), senders)
        finally:
            for adapter in reversed(started):
                await adapter.stop()
    print(
        f"{tick.digests} digests ({tick.messages} messages) enqueued for {tick.chats} due chats;"
        f" sent {sent.sent}, retried {sent.retried}, dead {sent.dead}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paperboy", description="Research papers, delivered.")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser(
        "run", help="run the bot (Telegram/Discord when tokens are set, else terminal chat)"
    )
    sub.add_parser("chat", help="chat with Paperboy in the terminal")
    digest = sub.add_parser("digest", help="print a feed's digest")
    digest.add_argument(
        "--feed", default="hf:trending", help="hf:trending, hf:daily or arxiv:<category>"
    )
    digest.add_argument("--count", type=int, default=10)
    paper = sub.add_parser("paper", help="print one paper")
    paper.add_argument("id", help="an arXiv id or link")
    explain = sub.add_parser("explain", help="explain one paper")
    explain.add_argument("id", help="an arXiv id or link")
    deliver = sub.add_parser("deliver", help="deliver the digests that are due")
    deliver.add_argument(
        "--now",
        action="store_true",
        required=True,
        help="run one round, send everything, and exit (for cron)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from bot.config import ConfigError

    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as e:  # one line naming the setting, no traceback
        print(f"paperboy: {e}", file=sys.stderr)
        return 2
    command = args.command or "run"
    _setup_logging(settings, "INFO" if command == "run" and _has_platform(settings) else "WARNING")
    try:
        return _dispatch(command, args, settings)
    except ConfigError as e:
        print(f"paperboy: {e}", file=sys.stderr)
        return 2


def _dispatch(command: str, args: argparse.Namespace, settings: Settings) -> int:
    try:
        if command == "run":
            return asyncio.run(_run(settings))
        if command == "chat":
            return asyncio.run(_chat(settings))
        if command == "digest":
            return asyncio.run(_digest(settings, args.feed, max(1, min(args.count, 100))))
        if command == "deliver":
            return asyncio.run(_deliver(settings))
        if command in ("paper", "explain"):
            return asyncio.run(_command(settings, command, args.id))
    except KeyboardInterrupt:
        return 130
    except PlatformError as e:
        # A refused token, another instance polling…: one line for the operator.
        print(f"paperboy: {e}", file=sys.stderr)
        return 1
    build_parser().print_help()
    return 2


def _has_platform(settings: Settings) -> bool:
    return bool(settings.telegram_bot_token or settings.discord_bot_token)


if __name__ == "__main__":
    sys.exit(main())
