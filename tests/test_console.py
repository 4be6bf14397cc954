"""The terminal chat, end to end: real httpx clients against the fake arXiv and HF servers."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest

from adapters.console import ConsoleChat, render_reply
from bot.config import Settings
from bot.service import Paperboy
from tests.fakes.arxiv import FIXTURES, FakeArxiv
from tests.fakes.hf import FakeHF


async def _say(chat: ConsoleChat, line: str) -> str:
    reply = await chat.handle(line)
    assert reply is not None
    return render_reply(reply)


@pytest.fixture
def chat(paperboy_app: Paperboy) -> ConsoleChat:
    return ConsoleChat(paperboy_app, out=io.StringIO())


async def test_help_lists_every_command(chat: ConsoleChat) -> None:
    from bot.commands import COMMANDS

    text = await _say(chat, "/help")
    for name in COMMANDS:
        assert f"/{name}" in text


async def test_paper_by_any_pasted_form(chat: ConsoleChat, arxiv_server: FakeArxiv) -> None:
    text = await _say(chat, "/paper https://arxiv.org/abs/1605.08386v1")
    assert "Heat-bath random walks with Markov bases" in text
    assert "https://arxiv.org/pdf/1605.08386v1" in text
    # A pasted link without a command shows the paper too, from the cache this time.
    before = len(arxiv_server.api_requests())
    text = await _say(chat, "look at <https://arxiv.org/pdf/1605.08386>.")
    assert "Heat-bath" in text
    assert len(arxiv_server.api_requests()) == before


async def test_bare_command_with_an_id_runs_that_command(chat: ConsoleChat) -> None:
    # "explain <id>" without the slash explains; it used to show the paper card instead.
    text = await _say(chat, "explain 1605.08386")
    assert "Offline explanation" in text
    text = await _say(chat, "ask 1605.08386 what is the mixing time?")
    assert "need an LLM" in text
    # A line that only starts with a command word still shows the paper it mentions.
    text = await _say(chat, "today I read 1605.08386")
    assert "Heat-bath" in text and "Offline explanation" not in text


async def test_hostile_paper_renders_math_and_keeps_text(chat: ConsoleChat) -> None:
    text = await _say(chat, "/paper 2605.01234")
    assert "xᵢ < yⱼ" in text
    assert "<b>bold</b>" in text and "__init__" in text


async def test_bad_id_gets_a_friendly_message(chat: ConsoleChat, arxiv_server: FakeArxiv) -> None:
    text = await _say(chat, "/paper 2413.99999")
    assert "Usage: /paper <id>" in text
    assert "Traceback" not in text
    assert arxiv_server.api_requests() == []  # validated before asking


async def test_unknown_paper(chat: ConsoleChat) -> None:
    text = await _say(chat, "/paper 0000.0000")
    assert "arXiv" in text and "Traceback" not in text


async def test_trending_from_hugging_face(chat: ConsoleChat, hf_server: FakeHF) -> None:
    text = await _say(chat, "/trending 3")
    assert text.count("💡") == 3
    assert "1." in text and "3." in text


async def test_empty_trending_list_is_not_kept_for_the_day(
    chat: ConsoleChat, hf_server: FakeHF
) -> None:
    hf_server.trending = []  # a glitch upstream, or a list not out yet
    assert "no trending papers right now. Try again later." in await _say(chat, "/trending")
    hf_server.trending = None  # the list is back: "try again later" must work
    text = await _say(chat, "/trending 3")
    assert text.count("💡") == 3


async def test_today_in_a_category_and_weekend(chat: ConsoleChat, arxiv_server: FakeArxiv) -> None:
    text = await _say(chat, "/today cs.ai")
    assert "New in cs.AI" in text
    arxiv_server.set_listing("cs.CL", FIXTURES / "arxiv_rss" / "atom_empty_weekend_2025-08-23.xml")
    text = await _say(chat, "/today cs.CL")
    assert "announced nothing" in text


async def test_search(chat: ConsoleChat) -> None:
    text = await _say(chat, "/search heat-bath author:Windisch")
    assert "Heat-bath" in text


async def test_subscribe_settings_round_trip(chat: ConsoleChat, paperboy_app: Paperboy) -> None:
    text = await _say(chat, '/subscribe arxiv:cs.LG diffusion "graph neural" -survey author:Hinton')
    assert "Subscribed" in text
    assert await _say(chat, "/settings time 25:99") != ""
    text = await _say(chat, "/settings timezone Asia/Tokyo")
    assert "Asia/Tokyo" in text
    text = await _say(chat, "/subscriptions")
    assert "arxiv:cs.LG diffusion" in text and "-survey" in text and "Asia/Tokyo" in text
    text = await _say(chat, "/unsubscribe cs.LG")
    assert "Unsubscribed" in text
    assert "No subscriptions" in await _say(chat, "/subscriptions")


async def test_subscribing_twice_says_the_filters_were_replaced(chat: ConsoleChat) -> None:
    assert "Subscribed: arxiv:cs.LG diffusion." in await _say(
        chat, "/subscribe arxiv:cs.LG diffusion"
    )
    # One subscription per feed: the second replaces the first's filters, and says so.
    text = await _say(chat, "/subscribe cs.LG author:Hinton")
    assert "Updated: arxiv:cs.LG author:Hinton (it was arxiv:cs.LG diffusion)." in text
    assert "Already subscribed: arxiv:cs.LG author:Hinton." in await _say(
        chat, "/subscribe arxiv:cs.lg author:Hinton"
    )
    text = await _say(chat, "/subscriptions")
    assert "arxiv:cs.LG author:Hinton" in text and "diffusion" not in text
    text = await _say(chat, "/unsubscribe hf:daily")
    assert "not subscribed to hf:daily" in text


async def test_interactive_session_reads_lines_until_quit(paperboy_app: Paperboy) -> None:
    lines = iter(["/start", "", "hello", "/quit"])

    async def read_line() -> str | None:
        return next(lines, None)

    out = io.StringIO()
    await ConsoleChat(paperboy_app, out=out, read_line=read_line).run()
    text = out.getvalue()
    assert "Paperboy delivers research papers" in text
    assert "Type a command" in text
    assert text.rstrip().endswith("Bye.")


@pytest.fixture
async def cli_env(
    arxiv_server: FakeArxiv, hf_server: FakeHF, tmp_path: object
) -> AsyncIterator[dict[str, str]]:
    env = dict(os.environ)
    env.update(
        ARXIV_API_URL=arxiv_server.api_url,
        ARXIV_LISTING_URL=arxiv_server.listing_url,
        ARXIV_DELAY_SECONDS="0",
        HF_API_URL=hf_server.api_url,
        PAPERBOY_DATABASE_URL=f"sqlite:///{tmp_path}/cli.db",
    )
    for key in ("TELEGRAM_BOT_TOKEN", "DISCORD_BOT_TOKEN", "LLM_PROVIDER", "LLM_API_KEY"):
        env.pop(key, None)
    yield env


async def _cli(
    env: dict[str, str], *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    import asyncio

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
    return subprocess.CompletedProcess(args, proc.returncode or 0, out.decode(), err.decode())


async def test_cli_digest_paper_and_chat(cli_env: dict[str, str]) -> None:
    digest = await _cli(cli_env, "digest", "--feed", "hf:trending", "--count", "2")
    assert digest.returncode == 0, digest.stderr
    assert (
        "hf:trending digest" in digest.stdout
        and "2." in digest.stdout
        and "3." not in digest.stdout
    )
    paper = await _cli(cli_env, "paper", "arXiv:1605.08386")
    assert paper.returncode == 0 and "Heat-bath" in paper.stdout
    chat = await _cli(cli_env, "chat", stdin="/today cs.AI\n/settings count 3\n")
    assert chat.returncode == 0, chat.stderr
    assert "New in cs.AI" in chat.stdout and "up to 3 papers" in chat.stdout
    bad = await _cli(cli_env, "digest", "--feed", "nonsense")
    assert bad.returncode == 2 and "not a feed" in bad.stderr and "Traceback" not in bad.stderr


async def test_terminal_chat_gets_its_daily_digest(
    paperboy_app: Paperboy, fake_settings: Settings
) -> None:
    from datetime import UTC, datetime, timedelta

    from adapters.console import CONSOLE_CHAT
    from bot.cli import console_chat

    out = io.StringIO()
    console = ConsoleChat(paperboy_app, out=out)
    await console.handle("/subscribe hf:trending")
    await console.handle("/settings count 3")
    # Make the terminal's digest due now rather than at 09:00.
    await paperboy_app.store.set_next_runs(
        [(CONSOLE_CHAT, datetime.now(UTC) - timedelta(minutes=1))]
    )

    async def read_line() -> str | None:
        for _ in range(200):  # the user idles at the prompt while the digest arrives
            if "💡 3" in out.getvalue():
                break
            await asyncio.sleep(0.05)
        return None

    console._read_line = read_line
    await console_chat(paperboy_app, fake_settings, console)
    text = out.getvalue()
    assert "💡 3" in text and "💡 4" not in text
    assert "Your papers for" in text


async def test_cli_digest_upstream_failure_is_a_message(
    fake_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.cli import _digest

    # The fake arXiv has no math.AP listing: a SourceError used to escape as a traceback.
    assert await _digest(fake_settings, "arxiv:math.AP", 5) == 1
    err = capsys.readouterr().err
    assert "arXiv has no listing for math.AP" in err and "Traceback" not in err


async def test_a_version_arxiv_does_not_have_is_pointed_out(chat: ConsoleChat) -> None:
    text = await _say(chat, "/paper 1605.08386v9")
    assert "arXiv has no v9 of 1605.08386; this is the latest, v1." in text
    assert "Heat-bath" in text
    assert "arXiv has no" not in await _say(chat, "/paper 1605.08386v1")


async def test_subscriptions_show_plain_words_topics(chat: ConsoleChat) -> None:
    text = await _say(chat, '/subscribe hf:trending topic:"graph neural networks"')
    assert "graph neural networks" in text
    text = await _say(chat, "/subscriptions")
    assert 'hf:trending topic:"graph neural networks"' in text
