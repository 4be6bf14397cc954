"""The `driver` fixture: the conversation's chat on each platform in turn."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from tests.contract.core import warm_ranking
from tests.contract.drivers.base import Driver
from tests.contract.drivers.discord_driver import DiscordDriver, discord_driver
from tests.contract.drivers.telegram_driver import TelegramDriver, telegram_driver
from tests.contract.drivers.terminal_driver import TerminalDriver, terminal_driver
from tests.fakes.arxiv import FakeArxiv
from tests.fakes.hf import FakeHF

DRIVERS: tuple[type[Driver], ...] = (TelegramDriver, DiscordDriver, TerminalDriver)


@pytest.fixture(params=[d.name for d in DRIVERS])
async def driver(
    request: pytest.FixtureRequest, arxiv_server: FakeArxiv, hf_server: FakeHF, tmp_path: Path
) -> AsyncIterator[Driver]:
    opened: AbstractAsyncContextManager[Driver] = {
        "telegram": lambda: telegram_driver(arxiv_server, hf_server),
        "discord": lambda: discord_driver(arxiv_server, hf_server, tmp_path),
        "terminal": lambda: terminal_driver(arxiv_server, hf_server, tmp_path),
    }[request.param]()
    await warm_ranking()
    async with opened as each:
        yield each
