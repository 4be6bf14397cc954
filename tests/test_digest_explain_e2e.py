"""`/settings explain on` end to end: a scheduler round fetches each paper's LaTeX source
once (from the fake arXiv e-print server), and the digest that reaches the chat carries a
math line per paper on Telegram (fake Bot API), Discord (fake REST) and the terminal."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.console import CONSOLE_CHAT, ConsoleChat, render_message, render_reply
from adapters.discord import DiscordAdapter
from adapters.telegram import TelegramAdapter
from bot.commands import apply_setting
from bot.config import Settings
from bot.delivery import Dispatcher, scheduler_tick
from bot.digest import Round
from bot.explain import Explainer
from bot.explain.digest_line import MathLines
from bot.models import ChatRef, ChatSettings, Paper, Subscription
from bot.serialize import message_from_json
from bot.service import Paperboy, feed_day
from bot.sources.arxiv import ArxivSource
from bot.sources.hf import HuggingFaceSource
from bot.store.sql import SQLStore
from tests.fakes.discord import FakeDiscord
from tests.fakes.eprint import MINIMAL_MAIN, FakeEprint, gzip_single
from tests.fakes.llm import FakeLLM
from tests.fakes.telegram import FakeTelegram

FEED = "arxiv:cs.LG"
# Two papers, each with its objective, as authors write them.
SOURCES = {
    "2506.00001": r"""
\section{Method}
We minimize the reconstruction loss
\begin{equation}
  \mathcal{L}(\theta) = \frac{1}{N} \sum_{i=1}^{N} \lVert x_i - D_\theta(E_\theta(x_i)) \rVert^2
  \label{eq:loss}
\end{equation}
where $N$ is the number of images. Eq.~\eqref{eq:loss} is trained with Adam.
""",
    "2506.00002": r"""
\section{Model}
The attention weights are given by
\begin{equation}
  A = \mathrm{softmax}\left( \frac{Q K^\top}{\sqrt{d}} \right) V \label{eq:attn}
\end{equation}
where $d$ is the key dimension, as in \eqref{eq:attn}.
""",
}


@pytest.fixture
async def eprints() -> AsyncIterator[FakeEprint]:
    async with FakeEprint() as server:
        for pid, body in SOURCES.items():
            server.eprints[f"{pid}v1"] = gzip_single(MINIMAL_MAIN % body)
        yield server


def _settings(eprints: FakeEprint, **extra: Any) -> Settings:
    dead = "http://127.0.0.1:9"  # the feed is stored already: no listing is asked
    extra.setdefault("llm_provider", "")
    return Settings(
        database_url="sqlite:///:memory:",
        arxiv_api_url=dead,
        arxiv_listing_url=dead,
        hf_api_url=dead,
        arxiv_eprint_url=eprints.eprint_url,
        arxiv_html_url=eprints.html_url,
        arxiv_delay_seconds=0.0,
        delivery_chat_rate_per_second=100.0,
        **extra,
    )


async def _app(settings: Settings) -> Paperboy:
    store = SQLStore(sqlite_path=":memory:")
    await store.open()
    now = datetime.now(UTC)
    papers = [
        Paper(pid, f"Paper {pid}", ["A. Author"], "We propose a method.", ["cs.LG"], version=1)
        for pid in SOURCES
    ]
    for p in papers:
        p.announce_type = "new"
    await store.upsert_papers(papers)
    await store.save_feed(FEED, feed_day(FEED, now), date.today(), [p.id for p in papers])
    arxiv = ArxivSource(settings)
    explainer = Explainer(settings, arxiv_gate=arxiv.gate)
    app = Paperboy(store, arxiv, HuggingFaceSource(settings), explainer)
    app.math_lines = MathLines(
        explainer,
        per_round=settings.digest_explain_per_round,
        wait=settings.digest_explain_wait_seconds,
    )
    return app


async def _due(app: Paperboy, chat: ChatRef, explain: bool) -> None:
    settings = ChatSettings(chat, count=5)
    apply_setting(settings, "explain", "on" if explain else "off")
    await app.store.save_chat(settings)
    await app.store.add_subscription(Subscription(chat, FEED))
    await app.store.set_next_runs([(chat, datetime.now(UTC) - timedelta(minutes=1))])


async def _deliver(app: Paperboy, adapters: dict[str, Any], settings: Settings) -> None:
    await scheduler_tick(app)
    dispatcher = Dispatcher(app.store, adapters, settings)
    await dispatcher.run(until_idle=True, deadline=asyncio.get_running_loop().time() + 15)


def _has_math_lines(text: str) -> bool:
    return (
        text.count("🧮") == 2
        and "ℒ(θ) = 1/N ∑" in text
        and "A = softmax" in text
        and "We minimize the reconstruction loss" in text
    )


async def test_telegram_digest_carries_a_math_line_per_paper(
    eprints: FakeEprint, telegram_server: FakeTelegram
) -> None:
    settings = _settings(
        eprints,
        telegram_bot_token=telegram_server.token,
        telegram_api_base_url=telegram_server.base_url,
        telegram_file_base_url=telegram_server.file_base_url,
    )
    app = await _app(settings)
    telegram_server.private_chat(501, "Ada")
    telegram_server.private_chat(502, "Bob")
    await _due(app, ChatRef("telegram", "501"), explain=True)
    await _due(app, ChatRef("telegram", "502"), explain=False)
    adapter = TelegramAdapter(app, settings, poll_timeout=1)
    await adapter.start(receive=False)
    try:
        await _deliver(app, {"telegram": adapter}, settings)
    finally:
        await adapter.stop()
        await app.aclose()
        await app.store.close()
    on = "\n".join(m.text for m in telegram_server.sent if str(m.chat_id) == "501")
    off = "\n".join(m.text for m in telegram_server.sent if str(m.chat_id) == "502")
    assert _has_math_lines(on), on
    assert "Paper 2506.00001" in off and "🧮" not in off
    # One source fetch per paper for the whole round, whatever the number of chats.
    assert eprints.count("e-print") == 2


async def test_discord_digest_carries_a_math_line_per_paper(
    eprints: FakeEprint, discord_server: FakeDiscord, tmp_path: Path
) -> None:
    settings = _settings(
        eprints,
        discord_bot_token=discord_server.token,
        discord_api_base_url=discord_server.api_url,
    )
    app = await _app(settings)
    channel = discord_server.channel_id
    await _due(app, ChatRef("discord", channel), explain=True)
    adapter = DiscordAdapter(
        app, settings, state_dir=tmp_path, channel_interval=0.0, guild_ready_timeout=0.01
    )
    await adapter.start()
    try:
        await _deliver(app, {"discord": adapter}, settings)
    finally:
        await adapter.stop()
        await app.aclose()
        await app.store.close()
    posted = discord_server.channel_messages[channel]
    text = "\n".join(
        m.get("content", "") + "".join(e.get("description", "") for e in m.get("embeds", []))
        for m in posted
    )
    assert _has_math_lines(text), text


async def test_terminal_digest_carries_a_math_line_per_paper(eprints: FakeEprint) -> None:
    settings = _settings(eprints)
    app = await _app(settings)
    await _due(app, CONSOLE_CHAT, explain=True)
    out = io.StringIO()
    console = ConsoleChat(app, out=out)
    try:
        await _deliver(app, {"console": console}, settings)
    finally:
        await app.aclose()
        await app.store.close()
    assert _has_math_lines(out.getvalue()), out.getvalue()


async def test_settings_explain_is_saved_and_described(eprints: FakeEprint) -> None:
    app = await _app(_settings(eprints))
    console = ConsoleChat(app, out=io.StringIO())

    async def say(line: str) -> str:
        reply = await console.handle(line)
        assert reply is not None
        return render_reply(reply)

    try:
        assert "each with its key equation" in await say("/settings explain on")
        saved = await app.store.get_chat(CONSOLE_CHAT)
        assert saved is not None and saved.explain
        refused = await say("/settings explain maybe")
        assert "Explain is on (a key equation and one sentence under each digest paper)" in refused
        await say("/settings explain off")
        saved = await app.store.get_chat(CONSOLE_CHAT)
        assert saved is not None and not saved.explain
    finally:
        await app.aclose()
        await app.store.close()


async def _console_digest(app: Paperboy, settings: Settings) -> str:
    out = io.StringIO()
    await _deliver(app, {"console": ConsoleChat(app, out=out)}, settings)
    return out.getvalue()


async def test_a_round_fetches_a_bounded_number_and_the_rest_next_time(
    eprints: FakeEprint,
) -> None:
    settings = _settings(eprints, digest_explain_per_round=1)
    app = await _app(settings)
    try:
        await _due(app, CONSOLE_CHAT, explain=True)
        first = await _console_digest(app, settings)
        assert first.count("🧮") == 1 and eprints.count("e-print") == 1
        # The next digest (another chat, or tomorrow's run) finds both lines; the first
        # source is not fetched again.
        other = ChatSettings(ChatRef("telegram", "77"), count=5, explain=True)
        subs = [Subscription(other.chat, FEED)]
        rnd = Round(app, datetime.now(UTC))  # as a delivery round builds a digest
        await rnd.prefetch([FEED])
        best = rnd.ranked(subs) or []
        await rnd.load_lines(p for _, p in best[: other.count])
        bodies, _ = rnd.digest(other, best, set())
        messages = [message_from_json(b) for b in bodies]
        assert "".join(render_message(m) for m in messages).count("🧮") == 2
        assert eprints.count("e-print") == 2
    finally:
        await app.aclose()
        await app.store.close()


async def test_a_slow_source_never_holds_the_digest(eprints: FakeEprint) -> None:
    eprints.delay = 5.0
    settings = _settings(eprints, digest_explain_wait_seconds=0.3)
    app = await _app(settings)
    try:
        await _due(app, CONSOLE_CHAT, explain=True)
        started = asyncio.get_running_loop().time()
        text = await _console_digest(app, settings)
        assert asyncio.get_running_loop().time() - started < 4
        assert "Paper 2506.00001" in text and "🧮" not in text
    finally:
        await app.aclose()
        await app.store.close()


async def test_with_an_llm_the_sentence_is_the_models(eprints: FakeEprint, llm: FakeLLM) -> None:
    llm.answer = {"sentence": "The loss averages the squared reconstruction error over images."}
    settings = _settings(
        eprints,
        llm_provider="openai",
        llm_base_url=f"{llm.url}/v1",
        llm_api_key=llm.api_key,
        llm_model="digest-model",
    )
    app = await _app(settings)
    try:
        await _due(app, CONSOLE_CHAT, explain=True)
        text = await _console_digest(app, settings)
    finally:
        await app.aclose()
        await app.store.close()
    assert text.count("The loss averages the squared reconstruction error") == 2
    assert "ℒ(θ) = 1/N ∑" in text
    # Title, abstract and key equation went to the model, fenced as data.
    prompt = llm.calls[0].body["messages"][-1]["content"]
    assert "Paper 2506.0000" in prompt and "We propose a method." in prompt and r"\frac" in prompt
