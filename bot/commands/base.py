"""What every command module shares: the `Command` and `Arg` declarations, the
`Context` an adapter fills in, and `UsageError`.

A handler is `async (service, ctx, args) -> Reply`: it gets the Paperboy service as an
argument (adapters pass theirs to `run_text`/`run_args`), so `Context` says only who runs
the command and where, and no command module is imported by the service.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from bot.doc import Reply
from bot.models import ChatRef
from bot.service import Paperboy

# "subscription": a feed, offered from the chat's own subscriptions (autocomplete).
ArgKind = Literal["text", "int", "choice", "feed", "subscription", "category", "paper"]
ArgValue = str | int
Args = dict[str, ArgValue]
ChatKind = Literal["private", "group", "channel"]
COMMAND_NAME = re.compile(r"^[a-z0-9_]{1,32}$")


class UsageError(Exception):
    """Bad arguments; the message is shown to the user above the usage line."""


@dataclass(frozen=True, slots=True)
class Arg:
    name: str
    help: str
    kind: ArgKind = "text"
    required: bool = True
    choices: tuple[str, ...] = ()
    rest: bool = False  # takes the rest of the line (only the last argument)
    min_value: int | None = None
    max_value: int | None = None


PAPER_ID = Arg("id", "an arXiv id or link, e.g. 1706.03762", kind="paper")


@dataclass(slots=True)
class Context:
    """Who runs a command, where. Adapters fill it in; handlers never see a platform."""

    chat: ChatRef
    user_id: str
    chat_kind: ChatKind = "private"
    is_admin: bool = True  # adapters say whether the user administers the chat
    images: bool = False  # the platform shows PNG equations
    # What the bot lacks to post digests here, as people read it ("Embed Links"); adapters
    # that can tell (Discord's app_permissions) fill it in.
    missing_permissions: tuple[str, ...] = ()


Handler = Callable[[Paperboy, Context, Args], Awaitable[Reply]]


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    description: str  # one line, shown in command menus (Telegram caps it at 256)
    handler: Handler
    args: tuple[Arg, ...] = ()
    admin_only: bool = False  # changes chat state: only chat admins in groups and channels
    slow: bool = False  # may take seconds (Discord defers first)
    examples: tuple[str, ...] = ()

    @property
    def usage(self) -> str:
        parts = [f"/{self.name}"]
        for arg in self.args:
            label = arg.name + ("…" if arg.rest else "")
            parts.append(f"<{label}>" if arg.required else f"[{label}]")
        return " ".join(parts)


def require_admin(ctx: Context) -> None:
    if ctx.chat_kind != "private" and not ctx.is_admin:
        raise UsageError("Only chat admins can change this chat's subscriptions and settings.")
