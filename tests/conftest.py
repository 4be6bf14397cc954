"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.arxiv import FakeArxiv
from tests.fakes.discord import FakeDiscord
from tests.fakes.hf import FakeHF


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
async def discord_server() -> AsyncIterator[FakeDiscord]:
    """A fake Discord (REST + gateway) on 127.0.0.1; `.api_url` is DISCORD_API_BASE_URL."""
    async with FakeDiscord() as server:
        yield server
