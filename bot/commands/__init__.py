"""The command table: every command declared once, for every platform.

An adapter turns `COMMANDS` into its platform's commands (Telegram `/name` +
setMyCommands, Discord slash commands with typed options), builds a `Context`, and
calls `run_text` (raw text after the command, as Telegram and the terminal give it)
or `run_args` (already-typed options, as Discord gives them) with its Paperboy service.
Both return a `Reply`; bad arguments give a usage line, never a traceback.

The handlers live by theme: `papers.py`, `chats.py` (subscriptions and settings),
`learn.py` (votes, library, /train, /digest); `base.py` declares `Command`, `Arg` and
`Context`; `parse.py` reads arguments from text.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from bot.commands.base import (
    COMMAND_NAME,
    Arg,
    Args,
    ArgValue,
    ChatKind,
    Command,
    Context,
    UsageError,
    require_admin,
)
from bot.commands.chats import CHAT_COMMANDS
from bot.commands.learn import LEARN_COMMANDS
from bot.commands.papers import PAPER_COMMANDS
from bot.commands.parse import (
    all_feeds,
    apply_setting,
    parse_feed,
    parse_filters,
    parse_text,
    parse_weekdays,
    suggest_feeds,
    validate,
)
from bot.doc import Block, Message, Reply, b, bullets, code, i, joined, p, section
from bot.service import Paperboy
from bot.sources.base import SourceError

__all__ = [
    "COMMANDS",
    "COMMAND_NAME",
    "Arg",
    "ArgValue",
    "ChatKind",
    "Command",
    "Context",
    "Invocation",
    "UsageError",
    "all_feeds",
    "apply_setting",
    "parse_feed",
    "parse_filters",
    "parse_text",
    "parse_weekdays",
    "run_args",
    "run_text",
    "split_command_line",
    "suggest_feeds",
    "usage_reply",
    "validate",
]

log = logging.getLogger(__name__)


async def _start(service: Paperboy, ctx: Context, args: Args) -> Reply:
    return Reply.of(
        p(b("Paperboy delivers research papers.")),
        p(
            "Every day at your hour, the papers that matter: Hugging Face trending and daily "
            "papers, and what arXiv announced in the categories you follow. Ask me about any "
            "paper, too."
        ),
        p(
            "Try ",
            code("/trending"),
            ", ",
            code("/subscribe arxiv:cs.LG diffusion"),
            " or ",
            code("/explain 1706.03762"),
            ". ",
            code("/help"),
            " lists everything.",
        ),
    )


async def _help(service: Paperboy, ctx: Context, args: Args) -> Reply:
    feeds = joined(map(code, ("hf:trending", "hf:daily", "arxiv:<category>")), ", ")
    return Reply.of(
        section("Commands"),
        bullets(
            *(
                (
                    code(cmd.usage),
                    f" — {cmd.description}" + (" (chat admins)" if cmd.admin_only else ""),
                )
                for cmd in COMMANDS.values()
            )
        ),
        p(
            "Feeds: ",
            *feeds,
            ". Filters after a feed: words to match, ",
            code("-word"),
            " to exclude, ",
            code("author:Name"),
            ".",
        ),
    )


COMMANDS: dict[str, Command] = {
    cmd.name: cmd
    for cmd in (
        Command("start", "What Paperboy does", _start),
        Command("help", "All commands and feeds", _help),
        *PAPER_COMMANDS,
        *CHAT_COMMANDS,
        *LEARN_COMMANDS,
    )
}

assert all(COMMAND_NAME.match(name) for name in COMMANDS)


@dataclass(slots=True)
class Invocation:
    """A parsed command line: '/subscribe@Bot arxiv:cs.LG' -> ('subscribe', 'arxiv:cs.LG')."""

    name: str
    text: str = ""
    bot_mention: str | None = None


def split_command_line(line: str) -> Invocation | None:
    match = re.match(r"^/([A-Za-z0-9_]{1,32})(?:@(\w+))?(?:\s+(.*))?$", line.strip(), re.DOTALL)
    if not match:
        return None
    return Invocation(match[1].lower(), (match[3] or "").strip(), match[2])


async def run_text(service: Paperboy, ctx: Context, name: str, text: str) -> Reply:
    """Run a command from raw text (Telegram, terminal)."""
    unknown = f"I don't know /{name}. /help lists what I can do."
    return await _run(service, ctx, name, unknown, lambda command: parse_text(command, text))


async def run_args(service: Paperboy, ctx: Context, name: str, raw: Mapping[str, object]) -> Reply:
    """Run a command from typed options (Discord)."""
    unknown = f"I don't know /{name}."
    return await _run(service, ctx, name, unknown, lambda command: validate(command, raw))


async def _run(
    service: Paperboy,
    ctx: Context,
    name: str,
    unknown: str,
    parse: Callable[[Command], Args],
) -> Reply:
    command = COMMANDS.get(name)
    if command is None:
        return Reply.text(unknown, ephemeral=True)
    try:  # apart from the handler's try: a parser bug raises rather than reads as our outage
        args = parse(command)
    except UsageError as e:
        return usage_reply(command, str(e))
    try:
        if command.admin_only and command.name != "settings":
            require_admin(ctx)
        reply = await command.handler(service, ctx, args)
        if command.admin_only and (ctx.chat_kind == "private" or ctx.is_admin):
            await _reactivate(service, ctx, reply)
        return reply
    except UsageError as e:
        return usage_reply(command, str(e))
    except SourceError as e:
        return Reply.text(str(e), ephemeral=True)
    except Exception:
        log.exception("command /%s failed", command.name)
        return Reply.text(
            "Something went wrong on my side. Please try again in a minute.", ephemeral=True
        )


async def _reactivate(service: Paperboy, ctx: Context, reply: Reply) -> None:
    """An admin at work in a paused chat (delivery failed there) switches it back on, unless
    the adapter can tell that the bot still cannot post there."""
    if ctx.missing_permissions or not await service.reactivate(ctx.chat):
        return
    log.info("chat %s switched back on by an admin command", ctx.chat.key)
    if reply.messages:
        note = "Digests to this chat were paused after a delivery failed; they are back on."
        reply.messages[-1].blocks.append(p(i(note)))


def usage_reply(command: Command, problem: str) -> Reply:
    blocks: list[Block] = [p(problem), p("Usage: ", code(command.usage))]
    if command.examples:
        blocks.append(p("Example: ", code(command.examples[0])))
    return Reply([Message(blocks)], ephemeral=True)
