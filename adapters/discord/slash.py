"""Discord's side of the command table: one slash command per command, with typed options
and autocomplete (feeds, categories, a channel's subscriptions), the hash that tells when
the set must be synced again, and the dynamic items that answer every command button and
paper menu, including ones sent before a restart."""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Optional, Protocol

import discord
from discord import app_commands

from adapters.discord.render import CUSTOM_ID_PREFIX, PICK_ID
from bot.commands import Command, all_feeds, suggest_feeds
from bot.models import ChatRef
from bot.sources.categories import category_name, suggest_categories

CHOICES_MAX = 25


class Handler(Protocol):
    """What the items here call back into: the adapter (as `client.adapter`)."""

    async def on_button(self, interaction: discord.Interaction[Any], name: str, arg: str) -> None:
        """A command button was pressed, or a paper chosen in a menu."""
        ...

    async def subscribed_feeds(self, chat: ChatRef) -> list[str]:
        """The feeds a channel follows."""
        ...


def _handler(interaction: discord.Interaction[Any]) -> Handler | None:
    handler: Handler | None = getattr(interaction.client, "adapter", None)
    return handler


ChoiceList = list[app_commands.Choice[str]]


def _feed_choices(current: str, feeds: Sequence[str] | None = None) -> ChoiceList:
    """Feeds that `current` starts any part of; from `feeds` (a chat's own) when given."""
    found = suggest_feeds(current, all_feeds() if feeds is None else feeds, CHOICES_MAX)
    return [
        app_commands.Choice(name=_choice_name(f, f.removeprefix("arxiv:")), value=f) for f in found
    ]


def _category_choices(current: str) -> ChoiceList:
    cids = suggest_categories(current.strip().removeprefix("arxiv:"), CHOICES_MAX)
    return [app_commands.Choice(name=_choice_name(c, c), value=c) for c in cids]


def _choice_name(shown: str, cid: str) -> str:
    name = category_name(cid)
    label = f"{shown} — {name}" if name else shown
    return label if len(label) <= 100 else label[:99] + "…"


Completer = Callable[[discord.Interaction[Any], str], Coroutine[Any, Any, ChoiceList]]
OnCommand = Callable[[discord.Interaction[Any], Command, dict[str, Any]], Awaitable[None]]


def build_app_command(
    command: Command, on_command: OnCommand
) -> app_commands.Command[Any, Any, None]:
    """One table entry -> a slash command whose options mirror its arguments."""
    params = [
        inspect.Parameter(
            "interaction", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=discord.Interaction
        )
    ]
    descriptions: dict[str, str] = {}
    choices: dict[str, list[app_commands.Choice[str]]] = {}
    completers: dict[str, Completer] = {}
    for arg in command.args:
        annotation: Any = str
        if arg.kind == "int":
            has_range = arg.min_value is not None or arg.max_value is not None
            annotation = app_commands.Range[int, arg.min_value, arg.max_value] if has_range else int
        elif arg.kind == "choice" and arg.choices:
            choices[arg.name] = [app_commands.Choice(name=c, value=c) for c in arg.choices]
        elif arg.kind == "feed":
            completers[arg.name] = _complete_feed
        elif arg.kind == "subscription":
            completers[arg.name] = _complete_subscription
        elif arg.kind == "category":
            completers[arg.name] = _complete_category
        default: Any = inspect.Parameter.empty
        if not arg.required:
            annotation, default = Optional[annotation], None  # noqa: UP045 - discord.py reads it
        params.append(
            inspect.Parameter(
                arg.name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default
            )
        )
        descriptions[arg.name] = _clip(arg.help, 100)

    async def callback(interaction: discord.Interaction[Any], **values: Any) -> None:
        await on_command(interaction, command, values)

    # discord.py reads options from the callback's signature; this one is built from the table.
    callback.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    callback.__name__ = callback.__qualname__ = command.name
    func: Any = callback
    if descriptions:
        func = app_commands.describe(**descriptions)(func)
    if choices:
        func = app_commands.choices(**choices)(func)
    if completers:
        func = app_commands.autocomplete(**completers)(func)
    slash: app_commands.Command[Any, Any, None] = app_commands.Command(
        name=command.name, description=_clip(command.description, 100), callback=func
    )
    if command.admin_only:
        # Hidden from members without Manage Channels; the server-side check is is_admin.
        slash.default_permissions = discord.Permissions(manage_channels=True)
    return slash


async def _complete_feed(interaction: discord.Interaction[Any], current: str) -> ChoiceList:
    return _feed_choices(current)


async def _complete_subscription(interaction: discord.Interaction[Any], current: str) -> ChoiceList:
    handler = _handler(interaction)
    if handler is None:
        return []
    chat = ChatRef("discord", str(interaction.channel_id))
    return _feed_choices(current, await handler.subscribed_feeds(chat))


async def _complete_category(interaction: discord.Interaction[Any], current: str) -> ChoiceList:
    return _category_choices(current)


def _clip(text: str, limit: int) -> str:
    text = text.strip() or "…"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def commands_hash(tree: app_commands.CommandTree[Any]) -> str:
    payload = [cmd.to_dict(tree) for cmd in tree.get_commands()]
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class CommandButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"pb:(?P<command>[a-z0-9_]{1,32}):(?P<arg>[^\n]*)",
):
    """Answers every `pb:<command>:<arg>` button, including ones sent before a restart."""

    def __init__(self, command: str, arg: str) -> None:
        super().__init__(discord.ui.Button(custom_id=f"{CUSTOM_ID_PREFIX}:{command}:{arg}"))
        self.command = command
        self.arg = arg

    @classmethod
    async def from_custom_id(  # type: ignore[override]
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Button[Any],
        match: re.Match[str],
    ) -> CommandButton:
        return cls(match["command"], match["arg"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        handler = _handler(interaction)
        if handler is not None:
            await handler.on_button(interaction, self.command, self.arg)


class PickMenu(discord.ui.DynamicItem[discord.ui.Select[Any]], template=r"pb-pick-(?P<n>\d)"):
    """Answers every paper menu: the chosen option's value is `<command>:<arg>`."""

    def __init__(self, n: int = 0) -> None:
        super().__init__(discord.ui.Select(custom_id=PICK_ID.format(n)))

    @classmethod
    async def from_custom_id(  # type: ignore[override]
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Select[Any],
        match: re.Match[str],
    ) -> PickMenu:
        return cls(int(match["n"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        data: Any = interaction.data or {}
        values = data.get("values") or [""]
        command, _, arg = str(values[0]).partition(":")
        handler = _handler(interaction)
        if handler is not None:
            await handler.on_button(interaction, command, arg)
