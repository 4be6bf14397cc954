"""The command table: parsing, validation, settings — platform-free unit tests."""

from __future__ import annotations

import json
from datetime import time

import pytest

from bot.commands import (
    COMMAND_NAME,
    COMMANDS,
    Context,
    UsageError,
    apply_setting,
    parse_feed,
    parse_filters,
    parse_text,
    parse_weekdays,
    run_text,
    split_command_line,
)
from bot.doc import Reply, block_text
from bot.models import ChatRef, ChatSettings, Paper, Subscription
from bot.runtime import open_service
from tests.fakes.arxiv import FakeArxiv, FakePaper
from tests.fakes.eprint import FakeEprint, fixture_paper
from tests.fakes.hf import FakeHF
from tests.fakes.llm import FakeLLM


def test_every_command_name_is_valid_on_every_platform() -> None:
    for name, command in COMMANDS.items():
        assert COMMAND_NAME.match(name)
        assert 1 <= len(command.description) <= 100  # Discord's limit is the tighter one
        rests = [a for a in command.args if a.rest]
        assert not rests or command.args[-1].rest


@pytest.mark.parametrize(
    ("line", "name", "text", "mention"),
    [
        ("/paper 1706.03762", "paper", "1706.03762", None),
        ("/Trending@PaperboyBot 5", "trending", "5", "PaperboyBot"),
        ("/help", "help", "", None),
        ("/search  graph  neural ", "search", "graph  neural", None),
    ],
)
def test_split_command_line(line: str, name: str, text: str, mention: str | None) -> None:
    invocation = split_command_line(line)
    assert invocation is not None
    assert (invocation.name, invocation.text, invocation.bot_mention) == (name, text, mention)


def test_split_command_line_rejects_plain_text() -> None:
    assert split_command_line("hello there") is None


def test_parse_text_types_and_rest() -> None:
    assert parse_text(COMMANDS["trending"], "5") == {"n": 5}
    assert parse_text(COMMANDS["trending"], "") == {}
    args = parse_text(COMMANDS["subscribe"], 'arxiv:cs.lg "graph neural" -survey author:Hinton')
    assert args == {"feed": "arxiv:cs.LG", "filters": '"graph neural" -survey author:Hinton'}
    assert parse_text(COMMANDS["ask"], "1706.03762 what's the loss?") == {
        "id": "1706.03762",
        "question": "what's the loss?",
    }
    assert parse_text(COMMANDS["paper"], "https://arxiv.org/abs/1706.03762v5") == {
        "id": "1706.03762v5"
    }


@pytest.mark.parametrize(
    ("command", "text", "problem"),
    [
        ("trending", "many", "whole number"),
        ("trending", "500", "between"),
        ("trending", "5 6", "Too many"),
        ("today", "", "Missing category"),
        ("today", "cs.XYZ", "not an arXiv category"),
        ("subscribe", "bogus", "not a feed"),
        ("paper", "not-an-id", "arXiv"),
        ("settings", "colour blue", "one of"),
    ],
)
def test_bad_arguments_raise_usage_errors(command: str, text: str, problem: str) -> None:
    with pytest.raises(UsageError, match=problem):
        parse_text(COMMANDS[command], text)


def test_parse_feed_forms() -> None:
    assert parse_feed("trending") == "hf:trending"
    assert parse_feed("HF:Daily") == "hf:daily"
    assert parse_feed("cs.ai") == "arxiv:cs.AI"
    assert parse_feed("arxiv:hep-th") == "arxiv:hep-th"


def test_parse_filters() -> None:
    keywords, exclude, authors = parse_filters(
        'diffusion "graph neural" -survey author:Hinton au:"Yann LeCun"'
    )
    assert keywords == ["diffusion", "graph neural"]
    assert exclude == ["survey"]
    assert authors == ["Hinton", "Yann LeCun"]


def test_settings_are_validated_and_untouched_on_error() -> None:
    settings = ChatSettings(ChatRef("console", "1"))
    apply_setting(settings, "time", "7:05")
    apply_setting(settings, "timezone", "europe/berlin")
    apply_setting(settings, "count", "5")
    apply_setting(settings, "format", "FULL")
    apply_setting(settings, "days", "mon-fri")
    assert settings.delivery_time == time(7, 5)
    assert settings.timezone == "Europe/Berlin"
    assert (settings.count, settings.format) == (5, "full")
    assert settings.weekdays == frozenset(range(5))
    for key, value in [
        ("time", "25:00"),
        ("timezone", "Mars/Olympus"),
        ("count", "0"),
        ("format", "huge"),
        ("days", "funday"),
    ]:
        with pytest.raises(UsageError):
            apply_setting(settings, key, value)
    assert settings.delivery_time == time(7, 5) and settings.timezone == "Europe/Berlin"


def test_weekdays_wrap_around_and_everyday() -> None:
    assert parse_weekdays("fri-mon") == frozenset({4, 5, 6, 0})
    assert parse_weekdays("mon,wed,fri") == frozenset({0, 2, 4})
    assert parse_weekdays("daily") is None
    assert parse_weekdays("mon-sun") is None


def test_subscription_filters() -> None:
    paper = Paper(
        "2401.00001",
        "Diffusion models for graphs",
        authors=["Geoffrey Hinton"],
        abstract="We study graph neural networks.",
    )
    chat = ChatRef("console", "1")
    assert Subscription(chat, "hf:daily").matches(paper)
    assert Subscription(chat, "hf:daily", keywords=["graph neural"]).matches(paper)
    assert not Subscription(chat, "hf:daily", keywords=["transformer"]).matches(paper)
    assert not Subscription(chat, "hf:daily", exclude=["diffusion"]).matches(paper)
    assert Subscription(chat, "hf:daily", authors=["hinton"]).matches(paper)
    assert not Subscription(chat, "hf:daily", authors=["LeCun"]).matches(paper)
    # Whole words only: "graph" does not match "graphs"... but "graphs" itself does.
    assert not Subscription(chat, "hf:daily", keywords=["diffusions"]).matches(paper)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("timezone", "a" * 300),  # too long for a file name: was an OSError, "went wrong"
        ("timezone", "localtime"),  # the server's zone, not the user's
        ("timezone", "posixrules"),
        ("timezone", "Factory"),
        ("count", "²"),  # a digit int() refuses: was a ValueError, "went wrong"
    ],
)
def test_odd_setting_values_are_usage_errors(key: str, value: str) -> None:
    settings = ChatSettings(ChatRef("console", "1"))
    with pytest.raises(UsageError):
        apply_setting(settings, key, value)
    assert settings == ChatSettings(ChatRef("console", "1"))


def test_timezones_are_canonical_iana_names() -> None:
    settings = ChatSettings(ChatRef("console", "1"))
    for value, canonical in [
        ("america/new_york", "America/New_York"),
        ("Asia/Tokyo", "Asia/Tokyo"),
        ("utc", "UTC"),
        ("gmt", "UTC"),
        ("EST", "EST"),
    ]:
        apply_setting(settings, "timezone", value)
        assert settings.timezone == canonical


async def test_a_chats_language_reaches_the_llm_prompt(
    arxiv_server: FakeArxiv, hf_server: FakeHF, llm: FakeLLM
) -> None:
    """`/settings language de` is stored, and /explain and /ask then ask the LLM for German."""
    pid = "2501.01234"
    arxiv_server.add_paper(
        FakePaper(pid, 1, "Denoising Flow Matching", "We introduce Denoising Flow Matching.",
                  ["Ada Lovelace"], ["cs.LG"], "2025-01-02T00:00:00Z", "2025-01-02T00:00:00Z")
    )  # fmt: skip
    async with FakeEprint() as eprint:
        eprint.eprints[pid] = fixture_paper()
        settings = arxiv_server.settings(
            hf_api_url=hf_server.api_url,
            database_url="sqlite:///:memory:",
            arxiv_eprint_url=eprint.eprint_url,
            arxiv_html_url=eprint.html_url,
            llm_provider="openai",
            llm_base_url=f"{llm.url}/v1",
            llm_api_key=llm.api_key,
            llm_model="test-model",
        )
        async with open_service(settings) as service:
            chat = ChatRef("console", "lang")
            ctx = Context(chat, user_id="u")
            saved = await run_text(service, ctx, "settings", "language DE")
            assert "explanations in German" in plain_reply(saved)
            assert (await service.chat_settings(chat)).language == "de"
            bad = await run_text(service, ctx, "settings", "language klingon")
            assert "Language is one of" in plain_reply(bad)

            reply = await run_text(service, ctx, "explain", pid)
            if reply.update is not None:
                await reply.update()
            assert llm.count() == 1
            assert "German" in json.dumps(llm.calls[-1].body["messages"])
            await run_text(service, ctx, "ask", f"{pid} what does the loss regress?")
            assert llm.count() == 2
            assert "German" in json.dumps(llm.calls[-1].body["messages"])

            # Another chat keeps the default, English.
            other = Context(ChatRef("console", "other"), user_id="v")
            await run_text(service, other, "ask", f"{pid} and the sampler?")
            assert "English" in json.dumps(llm.calls[-1].body["messages"])


def plain_reply(reply: Reply) -> str:
    return "\n".join(block_text(b) for m in reply.messages for b in m.blocks)
