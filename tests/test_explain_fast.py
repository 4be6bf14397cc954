"""Fast answers, end to end: the offline explanation at once and the LLM's by edit when it
comes (Telegram editMessageText, Discord PATCH of the answer's messages, the terminal
printing below), a failing LLM backed off so the next user does not wait, and one arXiv
lookup, one e-print download and one LLM call for 100 people asking at once.

Everything runs through the real clients (python-telegram-bot, discord.py, httpx)
against the fakes; the LLM fake can hang (`FakeLLM.stall`)."""

from __future__ import annotations

import asyncio
import io
import os
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.console import ConsoleChat
from adapters.discord import DiscordAdapter
from adapters.telegram import TelegramAdapter
from bot.commands import Context, run_text
from bot.config import Settings
from bot.doc import Reply, block_text
from bot.explain import Explainer, ExplainOptions
from bot.models import ChatRef, Paper
from bot.runtime import open_service
from tests.fakes.arxiv import FakeArxiv, FakePaper
from tests.fakes.discord import FakeDiscord
from tests.fakes.eprint import FakeEprint, fixture_paper
from tests.fakes.hf import FakeHF
from tests.fakes.llm import FakeLLM
from tests.fakes.telegram import FakeTelegram

PID = "2501.01234"
USER = 4242
ON_ITS_WAY = "Offline explanation — a fuller one by test-model is on its way"
LLM_TEXT = "DFM learns a straight-line velocity field"  # from the fake LLM's answer


@pytest.fixture
async def eprint() -> AsyncIterator[FakeEprint]:
    async with FakeEprint() as server:
        server.eprints[PID] = fixture_paper()
        yield server


@pytest.fixture
def hung(llm: FakeLLM) -> FakeLLM:
    llm.stall = asyncio.Event()
    return llm


def _settings(
    arxiv: FakeArxiv, hf: FakeHF, eprint: FakeEprint, llm: FakeLLM, **extra: Any
) -> Settings:
    arxiv.add_paper(
        FakePaper(PID, 1, "Denoising Flow Matching for Fast Image Synthesis",
                  "We introduce Denoising Flow Matching.", ["Ada Lovelace"], ["cs.LG"],
                  "2025-01-02T00:00:00Z", "2025-01-02T00:00:00Z")
    )  # fmt: skip
    values: dict[str, Any] = {
        "hf_api_url": hf.api_url,
        "database_url": "sqlite:///:memory:",
        "arxiv_eprint_url": eprint.eprint_url,
        "arxiv_html_url": eprint.html_url,
        "llm_provider": "openai",
        "llm_base_url": f"{llm.url}/v1",
        "llm_api_key": llm.api_key,
        "llm_model": "test-model",
        **extra,
    }
    return arxiv.settings(**values)


# ------------------------------------------------------------------- Telegram


def _shown_text(tg: FakeTelegram) -> str:
    return "\n".join(m.get("text") or m.get("caption") or "" for m in tg.shown(USER))


async def test_hung_llm_offline_at_once_then_edited_on_telegram(
    arxiv_server: FakeArxiv,
    hf_server: FakeHF,
    eprint: FakeEprint,
    hung: FakeLLM,
    telegram_server: FakeTelegram,
) -> None:
    tg = telegram_server
    settings = _settings(
        arxiv_server, hf_server, eprint, hung,
        telegram_bot_token=tg.token, telegram_api_base_url=tg.base_url,
        telegram_file_base_url=tg.file_base_url,
    )  # fmt: skip
    tg.private_chat(USER, "Ada")
    async with open_service(settings) as app:
        adapter = TelegramAdapter(app, settings, poll_timeout=1)
        await adapter.start()
        try:
            asked = time.monotonic()
            tg.send_text(USER, USER, f"/explain {PID}")
            await tg.wait_for(lambda: bool(tg.shown(USER)), 10)
            waited = time.monotonic() - asked
            assert waited < 2.0, f"the offline explanation took {waited:.1f} s to start"
            assert tg.shown(USER)[0]["text"].startswith(ON_ITS_WAY)
            # Its other parts follow at the pace Telegram allows in one chat (a burst of 5,
            # then 1 a second); the last one carries the buttons. The LLM still hangs.
            await tg.wait_for(lambda: "arxiv.org/pdf" in str(tg.shown(USER)[-1:]), 20)
            offline = tg.shown(USER)
            assert offline[0]["text"].startswith(ON_ITS_WAY)
            photos = [m["message_id"] for m in offline if "photo" in m]
            assert photos  # the key equations, drawn
            await hung.wait_calls(1)  # asked, and hanging
            assert not any(m.method == "editMessageText" for m in tg.sent_to(USER))

            assert hung.stall is not None
            hung.stall.set()
            await tg.wait_for(lambda: "simply reply to this message" in _shown_text(tg), 20)
            final = tg.shown(USER)
            text = _shown_text(tg)
            assert final[0]["text"].startswith("Explained by test-model")
            assert LLM_TEXT in text and "on its way" not in text
            # Edited in place: the first message keeps its id, the equation images stay
            # (not sent again), and the buttons are under the last message.
            edits = [m for m in tg.sent_to(USER) if m.method == "editMessageText"]
            assert edits and edits[0].message_id == offline[0]["message_id"]
            assert [m["message_id"] for m in final if "photo" in m] == photos
            assert "reply_markup" in final[-1]
            assert sum(1 for m in tg.sent_to(USER) if m.method == "sendPhoto") == len(photos)
            assert hung.count() == 1
            # A reply to the edited explanation is a follow-up question about the paper.
            before = len(tg.sent_to(USER))
            tg.send_text(USER, USER, "What does the loss regress?",
                         reply_to_message_id=final[0]["message_id"])  # fmt: skip
            [answer] = (await tg.wait_sent(USER, before + 1, within=20))[before:]
            assert "velocity" in answer.text
        finally:
            if hung.stall is not None:
                hung.stall.set()
            await adapter.stop()


def _long_answer() -> dict[str, Any]:
    """An LLM answer longer than the offline explanation: it needs more messages."""

    def items(what: str) -> list[str]:
        return [f"{what} {i}: " + "the velocity field is regressed along the path. " * 7
                for i in range(6)]  # fmt: skip

    return {
        "tldr": "DFM learns a straight-line velocity field so images can be sampled in 4 steps.",
        "idea": "Learn the velocity of a straight path from noise to data.",
        "equations": [],
        "how_it_works": items("Step"),
        "results": items("Result"),
        "caveats": items("Caveat"),
    }


async def test_a_longer_llm_answer_edits_what_fits_and_sends_the_rest_on_telegram(
    arxiv_server: FakeArxiv,
    hf_server: FakeHF,
    eprint: FakeEprint,
    llm: FakeLLM,
    telegram_server: FakeTelegram,
) -> None:
    tg = telegram_server
    llm.answer = _long_answer()
    settings = _settings(
        arxiv_server, hf_server, eprint, llm,
        telegram_bot_token=tg.token, telegram_api_base_url=tg.base_url,
        telegram_file_base_url=tg.file_base_url,
    )  # fmt: skip
    tg.private_chat(USER, "Ada")
    async with open_service(settings) as app:
        adapter = TelegramAdapter(app, settings, poll_timeout=1)
        await adapter.start()
        try:
            tg.send_text(USER, USER, f"/explain {PID}")
            await tg.wait_for(lambda: "Caveat 5" in _shown_text(tg), 30)
            await tg.wait_for(lambda: "reply_markup" in tg.shown(USER)[-1], 10)
            sent = tg.sent_to(USER)
            first_edit = next(i for i, m in enumerate(sent) if m.method == "editMessageText")
            offline = [m.message_id for m in sent[:first_edit] if m.method != "editMessageText"]
            final = tg.shown(USER)
            # Every offline message was edited in place, and the rest came below them.
            assert [m["message_id"] for m in final[: len(offline)]] == offline
            assert len(final) > len(offline)
            assert final[0]["text"].startswith("Explained by test-model")
            text = _shown_text(tg)
            assert text.index("Step 0") < text.index("Result 0") < text.index("Caveat 5")
            assert "on its way" not in text
            assert all("reply_markup" not in m for m in final[:-1])  # buttons once, at the end
            assert not tg.deleted
        finally:
            await adapter.stop()


# -------------------------------------------------------------------- Discord


async def test_hung_llm_offline_at_once_then_edited_on_discord(
    arxiv_server: FakeArxiv,
    hf_server: FakeHF,
    eprint: FakeEprint,
    hung: FakeLLM,
    discord_server: FakeDiscord,
    tmp_path: Any,
) -> None:
    settings = _settings(
        arxiv_server, hf_server, eprint, hung,
        discord_bot_token=discord_server.token, discord_api_base_url=discord_server.api_url,
    )  # fmt: skip
    async with open_service(settings) as app:
        adapter = DiscordAdapter(app, settings, state_dir=tmp_path, channel_interval=0.0,
                                 guild_ready_timeout=0.01)  # fmt: skip
        await adapter.start()
        try:
            asked = time.monotonic()
            it = await discord_server.slash("explain", {"id": PID}, guild=True)
            await it.wait_done()
            waited = time.monotonic() - asked
            assert waited < 2.0, f"the offline explanation took {waited:.1f} s"
            assert it.deferred and not it.loading
            assert ON_ITS_WAY in it.text
            sent = list(it.shown)
            await hung.wait_calls(1)
            assert not it.patches

            assert hung.stall is not None
            hung.stall.set()
            await it.wait(lambda i: any("Explained by test-model" in str(b) for _, b in i.patches))
            await it.wait(lambda i: LLM_TEXT in str(list(i.shown.values())), 10)
            # The follow-up that filled in "thinking…" is edited by its id, in place.
            path, body = it.patches[0]
            assert path == sent[0] and "Explained by test-model" in str(body)
            shown = str(list(it.shown.values()))
            assert "on its way" not in shown
            assert hung.count() == 1
        finally:
            if hung.stall is not None:
                hung.stall.set()
            await adapter.stop()


async def test_a_longer_llm_answer_is_edited_and_followed_up_on_discord(
    arxiv_server: FakeArxiv,
    hf_server: FakeHF,
    eprint: FakeEprint,
    hung: FakeLLM,
    discord_server: FakeDiscord,
    tmp_path: Any,
) -> None:
    hung.answer = _long_answer()
    settings = _settings(
        arxiv_server, hf_server, eprint, hung,
        discord_bot_token=discord_server.token, discord_api_base_url=discord_server.api_url,
    )  # fmt: skip
    async with open_service(settings) as app:
        adapter = DiscordAdapter(app, settings, state_dir=tmp_path, channel_interval=0.0,
                                 guild_ready_timeout=0.01)  # fmt: skip
        await adapter.start()
        try:
            it = await discord_server.slash("explain", {"id": PID}, guild=True)
            await it.wait_done()
            await hung.wait_calls(1)
            offline = list(it.shown)
            assert hung.stall is not None
            hung.stall.set()
            await it.wait(lambda i: "Caveat 5" in str(list(i.shown.values())), 20)
            shown = list(it.shown.values())
            text = str(shown)
            assert "Explained by test-model" in text and "on its way" not in text
            assert text.index("Step 0") < text.index("Caveat 5")
            # The offline answer's messages were edited by id; more were sent after them.
            assert [path for path, _ in it.patches] == offline
            assert list(it.shown)[: len(offline)] == offline and len(shown) > len(offline)
            assert not it.deleted
        finally:
            if hung.stall is not None:
                hung.stall.set()
            await adapter.stop()


# ------------------------------------------------------------------- terminal


async def test_hung_llm_terminal_prints_offline_then_llm_below(
    arxiv_server: FakeArxiv, hf_server: FakeHF, eprint: FakeEprint, hung: FakeLLM
) -> None:
    settings = _settings(arxiv_server, hf_server, eprint, hung)
    async with open_service(settings) as app:
        out = io.StringIO()
        chat = ConsoleChat(app, out=out)
        try:
            reply = await asyncio.wait_for(chat.handle(f"/explain {PID}"), 2.0)
            assert reply is not None
            chat.show(reply)
            assert ON_ITS_WAY in out.getvalue() and LLM_TEXT not in out.getvalue()
            assert hung.stall is not None
            hung.stall.set()
            await asyncio.wait_for(chat.settle(), 20)
            printed = out.getvalue()
            assert printed.index(ON_ITS_WAY) < printed.index("Explained by test-model")
            assert LLM_TEXT in printed
        finally:
            if hung.stall is not None:
                hung.stall.set()


async def test_paperboy_explain_prints_offline_first_then_llm(
    arxiv_server: FakeArxiv, hf_server: FakeHF, eprint: FakeEprint, llm: FakeLLM, tmp_path: Any
) -> None:
    _settings(arxiv_server, hf_server, eprint, llm)  # adds the paper to the fake arXiv
    llm.delay = 3.0  # slow: the offline explanation must be out before it answers
    env = dict(os.environ)
    env.update(
        ARXIV_API_URL=arxiv_server.api_url,
        ARXIV_DELAY_SECONDS="0",
        ARXIV_EPRINT_URL=eprint.eprint_url,
        ARXIV_HTML_URL=eprint.html_url,
        HF_API_URL=hf_server.api_url,
        PAPERBOY_DATABASE_URL=f"sqlite:///{tmp_path}/cli.db",
        LLM_PROVIDER="openai",
        LLM_BASE_URL=f"{llm.url}/v1",
        LLM_API_KEY=llm.api_key,
        LLM_MODEL="test-model",
    )
    for key in ("TELEGRAM_BOT_TOKEN", "DISCORD_BOT_TOKEN"):
        env.pop(key, None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "explain", PID,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        first = b""
        async with asyncio.timeout(60):
            while ON_ITS_WAY.encode() not in first:
                line = await proc.stdout.readline()
                assert line, "paperboy explain ended without the offline explanation"
                first += line
        assert llm.count() <= 1 and LLM_TEXT.encode() not in first  # the LLM still writing
        rest, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert b"Explained by test-model" in rest and LLM_TEXT.encode() in rest
    assert llm.api_key.encode() not in first + rest + err


# -------------------------------------------------------------------- backoff


def _paper() -> Paper:
    return Paper(id=PID, title="Denoising Flow Matching", abstract="We introduce DFM.", version=1)


def _header(reply: Reply) -> str:
    return block_text(reply.messages[0].blocks[0])


def _text(reply: Reply) -> str:
    return "\n".join(block_text(b) for m in reply.messages for b in m.blocks)


async def test_a_failing_provider_is_backed_off_so_the_next_user_does_not_wait(
    eprint: FakeEprint, hung: FakeLLM
) -> None:
    now = [1000.0]
    settings = Settings(
        arxiv_eprint_url=eprint.eprint_url, arxiv_html_url=eprint.html_url,
        arxiv_delay_seconds=0.0, llm_provider="openai", llm_base_url=f"{hung.url}/v1",
        llm_api_key=hung.api_key, llm_model="test-model", llm_budget_seconds=1.0,
    )  # fmt: skip
    ex = Explainer(settings, options=ExplainOptions(clock=lambda: now[0]))
    try:
        # The first user gets the offline explanation at once, then (the budget spent on a
        # hung provider) the note that the LLM was unavailable, without secrets or traces.
        first = await asyncio.wait_for(ex.explain(_paper(), user="a", chat="a"), 2.0)
        assert _header(first).startswith(ON_ITS_WAY) and first.update is not None
        started = time.monotonic()
        failed = await first.update()
        assert time.monotonic() - started < 1.9  # the 1 s budget, not a minute per try
        assert _header(failed).startswith("Offline explanation — the LLM was unavailable")
        assert "did not answer within 1 s" in _text(failed)
        assert hung.api_key not in _text(failed) and "Traceback" not in _text(failed)
        assert hung.count() == 1

        # The next users do not wait: offline at once, labelled, and no call is made.
        second = await asyncio.wait_for(ex.explain(_paper(), user="b", chat="b"), 1.0)
        assert second.update is None
        assert _header(second).startswith("Offline explanation — the LLM is unavailable right")
        assert "asked again in 30 s" in _text(second)
        other_language = await ex.explain(_paper(), user="c", chat="c", language="fr")
        assert other_language.update is None and hung.count() == 1
        follow = await ex.follow_up(_paper(), "Why?", user="d", chat="d")
        assert "unavailable right now" in _text(follow) and hung.count() == 1

        # After the backoff the LLM is asked again; a second failure doubles it.
        now[0] += 31
        again = await ex.explain(_paper(), user="e", chat="e")
        assert again.update is not None
        await again.update()
        assert hung.count() == 2
        later = await ex.explain(_paper(), user="f", chat="f")
        assert "asked again in 60 s" in _text(later)

        # Once it answers, it is used again and the backoff is forgotten.
        assert hung.stall is not None
        hung.stall.set()
        now[0] += 61
        fine = await ex.explain(_paper(), user="g", chat="g")
        assert fine.update is not None
        assert _header(await fine.update()).startswith("Explained by test-model")
        cached = await ex.explain(_paper(), user="h", chat="h")
        assert _header(cached).startswith("Explained by test-model") and cached.update is None
    finally:
        if hung.stall is not None:
            hung.stall.set()
        await ex.aclose()


# ------------------------------------------------------- 100 people at once


async def test_100_people_asking_at_once_cost_one_lookup_one_download_one_llm_call(
    arxiv_server: FakeArxiv, hf_server: FakeHF, eprint: FakeEprint, llm: FakeLLM
) -> None:
    # arXiv's real 3-second gate: 100 metadata lookups through it took five minutes.
    settings = _settings(arxiv_server, hf_server, eprint, llm, arxiv_delay_seconds=3.0)
    llm.delay = 0.5
    async with open_service(settings) as app:
        answered: list[float] = []
        started = time.monotonic()

        async def one(i: int) -> Reply:
            ctx = Context(ChatRef("console", f"c{i}"), user_id=f"u{i}")
            reply = await run_text(app, ctx, "explain", PID)
            assert reply.update is not None, _text(reply)
            final = await reply.update()
            answered.append(time.monotonic() - started)
            return final

        finals = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(100))), 60)
    assert len(arxiv_server.api_requests()) == 1
    assert eprint.count("e-print") == 1
    assert llm.count() == 1
    assert all(_header(f).startswith("Explained by test-model") for f in finals)
    # Everyone is answered together, seconds after asking (one gate wait, not 100).
    assert max(answered) - min(answered) < 2.0
    assert max(answered) < 15.0


# ------------------------------------------------------------------- setting


def test_llm_budget_comes_from_the_environment_and_stays_below_a_minute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bot.explain.llm import config_from_settings

    assert Settings().llm_budget_seconds == 45.0
    monkeypatch.setenv("LLM_BUDGET_SECONDS", "20")
    assert Settings.from_env(read_dotenv=False).llm_budget_seconds == 20.0
    for asked, used in ((20.0, 20.0), (90.0, 59.0), (0.0, 1.0)):
        config, _ = config_from_settings("openai", "", "sk-x", "gpt-x", asked)
        assert config is not None and config.budget == used
