"""/explain as a user meets it: typed in Telegram and Discord, answered by the real
Explainer from the paper's LaTeX source (fake arXiv e-print) and a fake LLM, through the
real python-telegram-bot and discord.py clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.discord import DiscordAdapter
from adapters.telegram import TelegramAdapter
from bot.config import Settings
from bot.runtime import open_service
from bot.service import Paperboy
from tests.fakes.arxiv import FakeArxiv, FakePaper
from tests.fakes.discord import FakeDiscord
from tests.fakes.eprint import FakeEprint, fixture_paper
from tests.fakes.hf import FakeHF
from tests.fakes.llm import FakeLLM
from tests.fakes.telegram import FakeTelegram

PID = "2501.01234"
USER = 4242


@pytest.fixture
async def eprint() -> AsyncIterator[FakeEprint]:
    async with FakeEprint() as server:
        server.eprints[PID] = fixture_paper()
        yield server


def _settings(arxiv: FakeArxiv, hf: FakeHF, eprint: FakeEprint, **extra: Any) -> Settings:
    arxiv.add_paper(
        FakePaper(PID, 1, "Denoising Flow Matching for Fast Image Synthesis",
                  "We introduce Denoising Flow Matching.", ["Ada Lovelace"], ["cs.LG"],
                  "2025-01-02T00:00:00Z", "2025-01-02T00:00:00Z")
    )  # fmt: skip
    return arxiv.settings(
        hf_api_url=hf.api_url,
        database_url="sqlite:///:memory:",
        arxiv_eprint_url=eprint.eprint_url,
        arxiv_html_url=eprint.html_url,
        **extra,
    )


def _telegram_settings(
    arxiv: FakeArxiv, hf: FakeHF, eprint: FakeEprint, tg: FakeTelegram, **extra: Any
) -> Settings:
    return _settings(
        arxiv, hf, eprint,
        telegram_bot_token=tg.token, telegram_api_base_url=tg.base_url,
        telegram_file_base_url=tg.file_base_url, **extra,
    )  # fmt: skip


def _shown_text(tg: FakeTelegram) -> str:
    return "\n".join(m.get("text") or m.get("caption") or "" for m in tg.shown(USER))


async def _telegram(app: Paperboy, settings: Settings) -> TelegramAdapter:
    adapter = TelegramAdapter(app, settings, poll_timeout=1)
    await adapter.start()
    return adapter


async def test_offline_explain_on_telegram(
    arxiv_server: FakeArxiv, hf_server: FakeHF, eprint: FakeEprint, telegram_server: FakeTelegram
) -> None:
    tg = telegram_server
    settings = _telegram_settings(arxiv_server, hf_server, eprint, tg)
    tg.private_chat(USER, "Ada")
    async with open_service(settings) as app:
        adapter = await _telegram(app, settings)
        try:
            tg.send_text(USER, USER, f"/explain https://arxiv.org/abs/{PID}")
            await tg.wait_for(lambda: any(m.method == "sendPhoto" for m in tg.sent_to(USER)), 20)
            await tg.wait_for(lambda: "arxiv.org/pdf" in str(tg.sent_to(USER)[-1].raw), 20)
            sent = tg.sent_to(USER)
            text = "\n".join(m.text for m in sent)
            assert "Offline explanation — no LLM configured" in text
            assert "LaTeX source" in text
            photos = [m for m in sent if m.method == "sendPhoto"]
            assert 2 <= len(photos) <= 4  # the key equations, as images
            assert all(m.photo and m.photo.startswith(b"\x89PNG") for m in photos)
            assert eprint.count("e-print") == 1
            # Asked again: served from the cache, no second download.
            before = len(tg.sent_to(USER))
            tg.send_text(USER, USER, f"/explain {PID}")
            await tg.wait_sent(USER, before + len(sent), within=20)
            assert eprint.count("e-print") == 1
        finally:
            await adapter.stop()


async def test_llm_explain_and_follow_up_on_telegram(
    arxiv_server: FakeArxiv,
    hf_server: FakeHF,
    eprint: FakeEprint,
    llm: FakeLLM,
    telegram_server: FakeTelegram,
) -> None:
    tg = telegram_server
    settings = _telegram_settings(
        arxiv_server, hf_server, eprint, tg,
        llm_provider="openai", llm_base_url=f"{llm.url}/v1", llm_api_key=llm.api_key,
        llm_model="test-model",
    )  # fmt: skip
    tg.private_chat(USER, "Ada")
    async with open_service(settings) as app:
        adapter = await _telegram(app, settings)
        try:
            tg.send_text(USER, USER, f"/explain {PID}")
            # The offline explanation first, edited into the LLM's when that comes.
            await tg.wait_for(lambda: "simply reply to this message" in _shown_text(tg), 20)
            shown = tg.shown(USER)
            assert "Explained by test-model" in shown[0]["text"]
            assert llm.count() == 1
            last = shown[-1]
            before = len(tg.sent_to(USER))
            tg.send_text(
                USER, USER, "What does the loss regress?", reply_to_message_id=last["message_id"]
            )
            [answer] = (await tg.wait_sent(USER, before + 1, within=20))[before:]
            assert "velocity" in answer.text
            assert llm.count() == 2
            assert llm.api_key not in "\n".join(m.raw for m in tg.sent_to(USER))
        finally:
            await adapter.stop()


async def test_explain_slash_command_on_discord(
    arxiv_server: FakeArxiv,
    hf_server: FakeHF,
    eprint: FakeEprint,
    discord_server: FakeDiscord,
    tmp_path: Any,
) -> None:
    settings = _settings(
        arxiv_server, hf_server, eprint,
        discord_bot_token=discord_server.token, discord_api_base_url=discord_server.api_url,
    )  # fmt: skip
    async with open_service(settings) as app:
        adapter = DiscordAdapter(app, settings, state_dir=tmp_path, channel_interval=0.0,
                                 guild_ready_timeout=0.01)  # fmt: skip
        await adapter.start()
        try:
            interaction = await discord_server.slash("explain", {"id": PID}, guild=True)
            await interaction.wait_done()
            assert interaction.deferred
            assert "Offline explanation" in interaction.text
            assert "LaTeX source" in interaction.text
        finally:
            await adapter.stop()
