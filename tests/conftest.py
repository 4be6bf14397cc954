"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.config import Settings
from bot.runtime import open_service
from bot.service import Paperboy
from tests.fakes.arxiv import FakeArxiv
from tests.fakes.discord import FakeDiscord
from tests.fakes.hf import FakeHF
from tests.fakes.llm import FakeLLM
from tests.fakes.telegram import FakeTelegram


@pytest.fixture
async def arxiv_server() -> AsyncIterator[FakeArxiv]:
    """A fake arXiv (export API + listing feeds) on 127.0.0.1; `.settings()` points at it."""
    async with FakeArxiv() as server:
        yield server


@pytest.fixture
async def hf_server() -> AsyncIterator[FakeHF]:
    """A fake Hugging Face papers API on 127.0.0.1; `.settings()` points at it."""
    async with FakeHF() as server:
        yield server


@pytest.fixture
async def llm() -> AsyncIterator[FakeLLM]:
    """Fake OpenAI-compatible and Anthropic APIs on 127.0.0.1; `.url` is the base URL."""
    async with FakeLLM() as server:
        yield server


@pytest.fixture
async def discord_server() -> AsyncIterator[FakeDiscord]:
    """A fake Discord (REST + gateway) on 127.0.0.1; `.api_url` is DISCORD_API_BASE_URL."""
    async with FakeDiscord() as server:
        yield server


@pytest.fixture
async def telegram_server() -> AsyncIterator[FakeTelegram]:
    """A fake Telegram Bot API on 127.0.0.1: `.token`, `.base_url`, `.file_base_url`."""
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
def fake_settings(arxiv_server: FakeArxiv, hf_server: FakeHF) -> Settings:
    """Settings pointing every upstream at the fakes, on an in-memory database."""
    return arxiv_server.settings(hf_api_url=hf_server.api_url, database_url="sqlite:///:memory:")


@pytest.fixture
async def paperboy_app(fake_settings: Settings) -> AsyncIterator[Paperboy]:
    """A whole opened Paperboy core (store, sources, explainer) against the fakes."""
    async with open_service(fake_settings) as app:
        yield app
