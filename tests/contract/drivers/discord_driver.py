"""The script on Discord: the real DiscordAdapter and discord.py against the fake Discord,
in a guild channel where the user has Manage Channels. A typed line becomes the slash
command with the options Discord registered for it; what the user sees is the visible
text of the interactions' answers and of the channel's messages (markdown rendered)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar

from adapters.discord import DiscordAdapter
from bot.config import Settings
from bot.service import Paperboy
from tests.contract.core import core_settings, open_core
from tests.contract.drivers.base import ANSWER_WITHIN, Driver, quiet
from tests.fakes.arxiv import FakeArxiv
from tests.fakes.discord import FakeDiscord, FakeInteraction, visible_text
from tests.fakes.hf import FakeHF

OPTION_INTEGER = 4


async def start_adapter(app: Paperboy, settings: Settings, state_dir: Path) -> DiscordAdapter:
    """The one place that knows how the Discord adapter is built and started."""
    adapter = DiscordAdapter(
        app, settings, state_dir=state_dir, channel_interval=0.0, guild_ready_timeout=0.01
    )
    await adapter.start()
    return adapter


class DiscordDriver(Driver):
    name = "discord"
    not_applicable: ClassVar[Mapping[str, str]] = {
        "reply": "the bot reads no message content on Discord (no privileged intent), so a "
        "reply to an explanation is not seen; /ask <id> <question> asks instead",
        "chat_moves": "a Discord channel keeps its id for life: nothing like Telegram's "
        "group-to-supergroup migration exists",
    }

    def __init__(self, fake: FakeDiscord, app: Paperboy, settings: Settings) -> None:
        super().__init__()
        self.fake, self.app, self.settings = fake, app, settings
        self.channel = fake.channel_id
        self._interactions = 0
        self._posts = 0
        self._requests = 0  # requests when a fault was scripted

    # -- the window

    def _window(self) -> list[dict[str, Any]]:
        answers = list(self.fake.interactions.values())[self._interactions :]
        shown = [m for it in answers for m in it.shown.values()]
        return shown + self.fake.channel_messages[self.channel][self._posts :]

    def begin(self) -> None:
        self._interactions = len(self.fake.interactions)
        self._posts = len(self.fake.channel_messages[self.channel])

    def visible(self) -> str:
        return "\n".join(visible_text(m) for m in self._window())

    def files(self) -> list[str]:
        return [a["filename"] for m in self._window() for a in m.get("attachments") or []]

    # -- actions

    def _options(self, name: str, text: str) -> dict[str, Any]:
        """The words after the command, onto the options Discord registered for it in
        order; the last option takes the rest of the line."""
        [command] = [c for c in self.fake.commands if c["name"] == name]
        options: dict[str, Any] = {}
        specs = command.get("options") or []
        for n, spec in enumerate(specs):
            word, _, rest = text.strip().partition(" ")
            value = text.strip() if n == len(specs) - 1 else word
            text = rest
            if value:
                options[spec["name"]] = int(value) if spec["type"] == OPTION_INTEGER else value
        return options

    async def say(self, text: str) -> None:
        name, _, rest = text.removeprefix("/").partition(" ")
        it = await self.fake.slash(
            name, self._options(name, rest), admin=True, channel_id=self.channel
        )
        await self._answered(it)

    async def press(self, label: str) -> None:
        def has_button(message: dict[str, Any]) -> bool:
            buttons = [c for row in message.get("components") or [] for c in row["components"]]
            return any(b.get("label") == label and b.get("custom_id") for b in buttons)

        shown = [m for it in self.fake.interactions.values() for m in it.shown.values()]
        message = next(m for m in reversed(shown) if has_button(m))
        [button] = [
            c for row in message["components"] for c in row["components"] if c.get("label") == label
        ]
        it = await self.fake.press(
            button["custom_id"], message=message, admin=True, channel_id=self.channel
        )
        await self._answered(it)

    async def _answered(self, it: FakeInteraction) -> None:
        await it.wait_done(seconds=ANSWER_WITHIN)
        self.answered_at = time.monotonic()
        await quiet(lambda: len(self.visible()))

    def _posts_tried(self) -> int:
        path = f"/channels/{self.channel}/messages"
        return sum(method == "POST" and p.endswith(path) for method, p in self.fake.requests)

    async def chat_gone(self) -> None:
        self.fake.fail_channel(self.channel, 403, 50001)  # Missing Access: the bot was removed
        self._requests = self._posts_tried()

    async def chat_back(self) -> None:
        assert self._posts_tried() > self._requests, "the bot never tried the gone channel"
        self.fake.heal_channel(self.channel)

    def _interaction_calls(self) -> int:
        return sum("/interactions/" in path for _, path in self.fake.requests)

    async def rate_limited(self, seconds: float) -> None:
        self.fake.rate_limit("/interactions/", retry_after=seconds)
        self._requests = self._interaction_calls()

    def rate_limit_served(self) -> bool:
        return self._interaction_calls() - self._requests >= 2  # the 429, then the answer

    adapter: DiscordAdapter


@asynccontextmanager
async def discord_driver(
    arxiv: FakeArxiv, hf: FakeHF, state_dir: Path
) -> AsyncIterator[DiscordDriver]:
    async with FakeDiscord() as fake:
        fake.rate_limits.enabled = False
        settings = core_settings(
            arxiv, hf, discord_bot_token=fake.token, discord_api_base_url=fake.api_url
        )
        async with open_core(settings) as app:
            driver = DiscordDriver(fake, app, settings)
            driver.adapter = driver.sender = await start_adapter(app, settings, state_dir)
            try:
                yield driver
            finally:
                await driver.adapter.stop()
