"""The script in the terminal: `ConsoleChat`, the terminal chat of `paperboy chat`, with its
output captured. Buttons are shown as the commands they run (`[Explain: /explain 1605.08386]`):
pressing one is typing its command. Files (/export) are written to a folder and named."""

from __future__ import annotations

import io
import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import ClassVar

from adapters.console import ConsoleChat
from bot.config import Settings
from bot.service import Paperboy
from tests.contract.core import core_settings, open_core
from tests.contract.drivers.base import Driver
from tests.fakes.arxiv import FakeArxiv
from tests.fakes.hf import FakeHF


def start_chat(app: Paperboy, out: io.StringIO, files_dir: Path) -> ConsoleChat:
    """The one place that knows how the terminal chat is built."""
    return ConsoleChat(app, out=out, files_dir=files_dir)


class TerminalDriver(Driver):
    name = "terminal"
    not_applicable: ClassVar[Mapping[str, str]] = {
        "reply": "a terminal has no replies to a message; /ask <id> <question> asks instead",
        "chat_moves": "the terminal is one local chat: it has no id to change",
        "chat_gone": "nobody can block the bot or delete the terminal: output cannot be refused",
        "rate_limited": "no platform stands between the terminal and its user: nothing "
        "rate-limits it",
    }

    def __init__(self, app: Paperboy, settings: Settings, files_dir: Path) -> None:
        super().__init__()
        self.app, self.settings = app, settings
        self.out = io.StringIO()
        self.chat = self.sender = start_chat(app, self.out, files_dir)
        self._mark = 0

    def begin(self) -> None:
        self._mark = len(self.out.getvalue())

    def visible(self) -> str:
        return self.out.getvalue()[self._mark :]

    def files(self) -> list[str]:
        return [Path(p).name for p in re.findall(r"File: (\S+)", self.visible())]

    async def say(self, text: str) -> None:
        reply = await self.chat.handle(text)
        self.answered_at = time.monotonic()
        assert reply is not None, f"no answer to {text!r}"
        self.chat.show(reply)
        await self.chat.settle()

    async def press(self, label: str) -> None:
        buttons = re.findall(rf"\[{re.escape(label)}: (/[^\]]+)\]", self.out.getvalue())
        assert buttons, f"no button {label!r} shown"
        await self.say(buttons[-1])


@asynccontextmanager
async def terminal_driver(
    arxiv: FakeArxiv, hf: FakeHF, files_dir: Path
) -> AsyncIterator[TerminalDriver]:
    settings = core_settings(arxiv, hf)
    async with open_core(settings) as app:
        yield TerminalDriver(app, settings, files_dir)
