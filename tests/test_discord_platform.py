"""Discord end to end, the platform's own behaviour: channels that come back after a
delivery failed, the bot's permissions, the configured gateway after INVALID_SESSION,
autocomplete. The real discord.py client against the fake Discord in tests/fakes."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import string
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import discord
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from adapters.discord import DiscordAdapter, escape, render_discord
from bot.cards import digest_buttons
from bot.config import Settings
from bot.delivery import deliver_once
from bot.digest import render_digest
from bot.doc import Block, Bold, Button, Heading, ListBlock, Message, Paragraph, Text
from bot.models import ChatRef, ChatSettings, Paper, Subscription
from bot.service import Paperboy
from tests.fakes.discord import (
    ATTACH_FILES,
    EMBED_LINKS,
    EPHEMERAL,
    MEMBER_PERMISSIONS,
    SEND_MESSAGES,
    FakeDiscord,
)
from tests.test_discord import adapter_for
from tests.test_discord import core as core  # a fixture, shared

SEND_FAST = Settings(delivery_chat_rate_per_second=100.0)


@pytest.fixture
async def other_channel(discord_server: FakeDiscord) -> str:
    """A second channel in the guild, known to the bot from GUILD_CREATE."""
    return discord_server.add_channel()


@pytest.fixture
async def bot(
    core: Paperboy,
    discord_server: FakeDiscord,
    other_channel: str,
    tmp_path: Any,
) -> AsyncIterator[DiscordAdapter]:
    adapter = adapter_for(core, discord_server, tmp_path)
    await adapter.start()
    yield adapter
    await adapter.stop()


def days_later(days: int) -> Callable[[], datetime]:
    moment = datetime.now(UTC) + timedelta(days=days)
    return lambda: moment


async def is_active(app: Paperboy, chat: ChatRef) -> bool:
    settings = await app.store.get_chat(chat)
    assert settings is not None
    return settings.active


async def wait_until(check: Callable[[], Any], seconds: float = 5.0) -> None:
    """Poll the store: the bot changes it in its own time, with nothing to wait on."""
    for _ in range(int(seconds / 0.02)):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


async def test_resubscribing_a_paused_channel_brings_its_digests_back(
    bot: DiscordAdapter,
    discord_server: FakeDiscord,
    core: Paperboy,
    other_channel: str,
) -> None:
    channel = discord_server.channel_id
    chat = ChatRef("discord", channel)
    it = await (
        await discord_server.slash("subscribe", {"feed": "hf:trending"}, admin=True)
    ).wait_done()
    assert "Subscribed" in it.text

    # The bot loses access to the channel: the next digest fails with 403 Missing Access.
    discord_server.fail_channel(channel, 403, 50001)
    _, sent = await deliver_once(core, SEND_FAST, [bot], clock=days_later(2))
    assert (sent.sent, sent.gone) == (0, 1)
    assert not await is_active(core, chat)
    # The guild is told where it can be read: in a channel the bot can still write to.
    await discord_server.wait_for(lambda: bool(discord_server.channel_messages[other_channel]))
    [notice] = discord_server.channel_messages[other_channel]
    assert f"<#{channel}>" in notice["content"] and "paused" in notice["content"]
    assert "Embed Links" in notice["content"] and notice["allowed_mentions"] == {"parse": []}

    # An admin fixes the permissions and subscribes again: digests are back on.
    discord_server.heal_channel(channel)
    it = await (
        await discord_server.slash("subscribe", {"feed": "hf:trending"}, admin=True)
    ).wait_done()
    assert "Already subscribed" in it.text and "back on" in it.text
    assert await is_active(core, chat)

    # The test's clock runs days ahead of the store's: move the delivery hour, so the next
    # run is not the 09:00 run that already failed (its key is taken, as it should be).
    await (
        await discord_server.slash("settings", {"key": "time", "value": "10:00"}, admin=True)
    ).wait_done()
    stats, sent = await deliver_once(core, SEND_FAST, [bot], clock=days_later(4))
    assert stats.digests == 1 and sent.sent >= 1
    posted = discord_server.channel_messages[channel]
    assert posted and "Your papers" in (posted[0]["content"] or posted[0]["embeds"][0]["title"])


async def test_settings_in_a_paused_channel_switch_it_back_on(
    bot: DiscordAdapter,
    discord_server: FakeDiscord,
    core: Paperboy,
) -> None:
    chat = ChatRef("discord", discord_server.channel_id)
    await (await discord_server.slash("subscribe", {"feed": "hf:daily"}, admin=True)).wait_done()
    await core.store.set_chat_active(chat, False)  # what delivery does after a 403
    it = await (await discord_server.slash("settings", {})).wait_done()
    assert not await is_active(core, chat), "a member reading the settings changes nothing"
    it = await (
        await discord_server.slash("settings", {"key": "count", "value": "5"}, admin=True)
    ).wait_done()
    assert "Saved" in it.text
    settings = await core.store.get_chat(chat)
    assert settings is not None and settings.active and settings.count == 5


async def test_subscribe_says_which_permissions_the_bot_lacks(
    bot: DiscordAdapter,
    discord_server: FakeDiscord,
    core: Paperboy,
) -> None:
    channel = discord_server.channel_id
    await discord_server.set_bot_permissions(channel, deny=EMBED_LINKS | ATTACH_FILES)
    it = await (
        await discord_server.slash("subscribe", {"feed": "hf:trending"}, admin=True)
    ).wait_done()
    answer = it.callbacks[0]["data"]
    assert answer["flags"] & EPHEMERAL
    assert "Embed Links" in it.text and "Attach Files" in it.text
    assert "Send Messages" not in it.text and "View Channel" not in it.text
    assert await core.store.list_subscriptions(ChatRef("discord", channel)) == []

    await discord_server.set_bot_permissions(channel, deny=0)
    it = await (
        await discord_server.slash("subscribe", {"feed": "hf:trending"}, admin=True)
    ).wait_done()
    assert "Subscribed" in it.text


async def test_channel_and_role_changes_and_guild_create_bring_a_channel_back(
    core: Paperboy,
    discord_server: FakeDiscord,
    tmp_path: Any,
) -> None:
    channel = discord_server.channel_id
    chat = ChatRef("discord", channel)
    adapter = adapter_for(core, discord_server, tmp_path)
    await adapter.start()
    try:
        await (
            await discord_server.slash("subscribe", {"feed": "hf:trending"}, admin=True)
        ).wait_done()
        await discord_server.set_bot_permissions(channel, deny=SEND_MESSAGES)
        _, sent = await deliver_once(core, SEND_FAST, [adapter], clock=days_later(2))
        assert sent.gone == 1 and not await is_active(core, chat)
        # An unrelated change while the bot still cannot post leaves the channel paused.
        await discord_server.set_bot_permissions(channel, deny=EMBED_LINKS | SEND_MESSAGES)
        await asyncio.sleep(0.2)
        assert not await is_active(core, chat)
        # The overwrite that blocked it is removed: CHANNEL_UPDATE switches it back on.
        await discord_server.set_bot_permissions(channel, deny=0)
        await wait_until(lambda: is_active(core, chat))
        # A role's permissions: @everyone loses Send Messages, then gets it back.
        await discord_server.set_everyone_permissions(MEMBER_PERMISSIONS & ~SEND_MESSAGES)
        await core.store.set_chat_active(chat, False)  # what the next delivery would do
        await discord_server.set_everyone_permissions(MEMBER_PERMISSIONS & ~EMBED_LINKS)
        await asyncio.sleep(0.2)
        assert not await is_active(core, chat)  # still cannot post embeds there
        await discord_server.set_everyone_permissions(MEMBER_PERMISSIONS)
        await wait_until(lambda: is_active(core, chat))
        # Paused again, fixed while the bot was offline: GUILD_CREATE at start-up sees it.
        await core.store.set_chat_active(chat, False)
    finally:
        await adapter.stop()
    adapter = adapter_for(core, discord_server, tmp_path)
    await adapter.start()
    try:
        await wait_until(lambda: is_active(core, chat))
    finally:
        await adapter.stop()


async def test_non_resumable_invalid_session_reidentifies_on_the_configured_gateway(
    bot: DiscordAdapter, discord_server: FakeDiscord
) -> None:
    asked = discord_server.requests.count(("GET", "/api/v10/gateway/bot"))
    assert len(discord_server.identifies) == 1
    await discord_server.invalidate_session(resumable=False)
    await discord_server.wait_for(lambda: len(discord_server.identifies) == 2, seconds=10)
    # The new session's URL came from the configured API's /gateway/bot.
    assert discord_server.requests.count(("GET", "/api/v10/gateway/bot")) > asked
    await discord_server.wait_for(lambda: any(s.ready for s in discord_server._sockets))
    it = await (await discord_server.slash("help")).wait_done()
    assert "/subscribe" in it.text


async def test_feed_autocomplete_by_any_part(
    bot: DiscordAdapter, discord_server: FakeDiscord
) -> None:
    async def values(option_of: str, current: str) -> list[str]:
        choices = await discord_server.autocomplete(option_of, "feed", current)
        assert len(choices) <= 25 and all(len(c["name"]) <= 100 for c in choices)
        return [c["value"] for c in choices]

    arx = await values("subscribe", "arx")
    assert len(arx) == 25 and all(v.startswith("arxiv:") for v in arx)
    assert "arxiv:cs.LG" in await values("subscribe", "cs.L")
    assert (await values("subscribe", "trend"))[0] == "hf:trending"
    assert "arxiv:cs.LG" in await values("subscribe", "LG")
    assert "arxiv:hep-th" in await values("subscribe", "th")


async def test_unsubscribe_suggests_the_channels_own_feeds_only(
    bot: DiscordAdapter, discord_server: FakeDiscord, other_channel: str
) -> None:
    for feed in ("arxiv:cs.LG", "hf:daily"):
        await (await discord_server.slash("subscribe", {"feed": feed}, admin=True)).wait_done()
    await (
        await discord_server.slash(
            "subscribe", {"feed": "arxiv:cs.CL"}, admin=True, channel_id=other_channel
        )
    ).wait_done()
    choices = await discord_server.autocomplete("unsubscribe", "feed", "")
    assert sorted(c["value"] for c in choices) == ["arxiv:cs.LG", "hf:daily"]
    choices = await discord_server.autocomplete("unsubscribe", "feed", "cs")
    assert [c["value"] for c in choices] == ["arxiv:cs.LG"]


# --------------------------------------------------------------------- buttons


def papers(n: int, abstract_words: int = 60) -> list[Paper]:
    return [
        Paper(
            "1605.08386" if i == 1 else f"2506.{i:05d}",  # the first is on the fake arXiv
            f"Paper title number {i}",
            ["A. Author", "B. Author"],
            " ".join(["word"] * abstract_words),
            ["cs.LG"],
        )
        for i in range(1, n + 1)
    ]


def shown_text(message: dict[str, Any]) -> str:
    parts = [message.get("content") or ""]
    for embed in message.get("embeds") or []:
        parts += [embed.get("title") or "", embed.get("description") or ""]
    return "\n".join(parts)


def components(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for row in message.get("components") or [] for c in row["components"]]


async def test_big_digest_keeps_each_button_under_its_own_part(
    bot: DiscordAdapter, discord_server: FakeDiscord, core: Paperboy
) -> None:
    channel = discord_server.channel_id
    chat = ChatRef("discord", channel)
    [digest] = render_digest(ChatSettings(chat, count=30), papers(30), "Digest")
    await bot.send(chat, digest)
    posted = discord_server.channel_messages[channel]
    assert len(posted) > 1  # 30 cards do not fit one Discord message
    seen: list[int] = []
    for message in posted:
        buttons = components(message)
        assert len(message["components"]) <= 5 and len(buttons) <= 25
        for button in buttons:
            if button.get("custom_id", "").startswith("pb:explain:"):
                n = int(button["label"].removeprefix("💡 "))
                # Under the part that shows paper n's title.
                assert f"Paper title number {n}**" in shown_text(message)
                seen.append(n)
            # With 👍/👎 too (issue 14), a part's item buttons may pass 5 rows: a menu.
            for option in button.get("options") or []:
                if option["value"].startswith("explain:"):
                    n = int(option["label"].split(".", 1)[0])
                    assert f"Paper title number {n}**" in shown_text(message)
                    seen.append(n)
    assert sorted(seen) == list(range(1, 31))
    # The row every digest ends with, under the last part.
    assert [b.get("label") for b in components(posted[-1])][-2:] == ["Unsubscribe", "Settings"]

    # A button in the first part works.
    first = next(
        o["value"]
        for c in components(posted[0])
        for o in c.get("options") or []
        if o["value"].startswith("explain:")
    )
    it = await (await discord_server.choose(posted[0], first)).wait_done()
    assert "Explaining" in it.text
    # So do the last row's: Settings for anyone, Unsubscribe lists the channel's feeds.
    await core.store.add_subscription(Subscription(chat, "hf:daily"))
    last = {b.get("label"): b["custom_id"] for b in components(posted[-1])}
    it = await (await discord_server.press(last["Settings"], message=posted[-1])).wait_done()
    assert "Digest at 09:00 UTC" in it.text
    it = await (await discord_server.press(last["Unsubscribe"], message=posted[-1])).wait_done()
    assert "Only chat admins" in it.text
    it = await (
        await discord_server.press(last["Unsubscribe"], message=posted[-1], admin=True)
    ).wait_done()
    assert "Which feed" in it.text
    [[choice]] = [components(m) for m in it.messages if m.get("components")]
    assert choice["label"] == "Unsubscribe hf:daily"


def test_a_part_with_more_than_25_papers_gets_select_menus() -> None:
    # Short items: 40 of them fit one message's embeds, so buttons would need 8 rows.
    items = tuple((Bold((Text(f"Short {n}"),)),) for n in range(1, 41))
    rows = [
        [Button(f"💡 {n}", command="explain", arg=f"2506.{n:05d}", item=n)] for n in range(1, 41)
    ]
    [part] = render_discord(Message([ListBlock(items, ordered=True)], [*rows, digest_buttons()]))
    assert [len(menu) for menu in part.menus] == [25, 15]
    assert part.menus[0][0].label == "1. Short 1" and part.menus[1][-1].label == "40. Short 40"
    assert [b.label for row in part.buttons for b in row] == ["Unsubscribe", "Settings"]


async def test_choosing_a_paper_in_the_menu_explains_it(
    bot: DiscordAdapter, discord_server: FakeDiscord
) -> None:
    channel = discord_server.channel_id
    items = tuple((Bold((Text(f"Short {n}"),)),) for n in range(1, 42))
    # 40 distinct papers; the 41st repeats the first (a menu's values must be unique).
    ids = ["1605.08386", *(f"2506.{n:05d}" for n in range(2, 41)), "1605.08386"]
    rows = [[Button(f"💡 {n}", command="explain", arg=i, item=n)] for n, i in enumerate(ids, 1)]
    await bot.send(ChatRef("discord", channel), Message([ListBlock(items, ordered=True)], rows))
    [message] = discord_server.channel_messages[channel]
    menus = components(message)
    assert [c["type"] for c in menus] == [3, 3]
    assert [len(c["options"]) for c in menus] == [25, 15]
    it = await (await discord_server.choose(message, "explain:1605.08386")).wait_done()
    assert "Explaining Heat" in it.text


# -------------------------------------------------------------------- escaping


class LiveMarkup(AssertionError):
    """The markdown would not show as plain text: some syntax in it is live."""


_PUNCTUATION = frozenset(string.punctuation)
# Syntaxes Discord parses where they stand, checked where the reference reaches an
# unescaped character (escaped characters are skipped over, as Discord's parser does).
_LIVE_AT = re.compile(
    r"<(?:@[!&]?\d+|#\d+|t:-?\d+(?::[tTdDfFR])?|/[^<>]+?:\d+|a?:\w+:\d+|https?://)"
    r"|\[[^\]]*\]\([^)]*\)"
    r"|@(?:everyone|here)"
)
_LIVE_LINE_START = re.compile(r"[ \t]*(?:#{1,3}\s|-#\s|>|[-*+]\s|\d+\.\s)")
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def discord_shows(markdown: str) -> str:
    """The text Discord's client displays for `markdown`, for text meant to be inert.

    A reference stricter than Discord: a backslash before ASCII punctuation shows that
    character; any unescaped emphasis, strike, spoiler or code marker, `<…>` syntax,
    masked link, @everyone/@here, line-start heading, quote or list marker, or bidi
    control is live markup, and raises LiveMarkup.
    """
    out: list[str] = []
    i = 0
    line_start = True
    while i < len(markdown):
        ch = markdown[i]
        if line_start and _LIVE_LINE_START.match(markdown, i):
            raise LiveMarkup(f"line-start marker at {i}: {markdown[i : i + 5]!r}")
        line_start = ch == "\n"
        if ch == "\\" and i + 1 < len(markdown) and markdown[i + 1] in _PUNCTUATION:
            out.append(markdown[i + 1])
            i += 2
            continue
        if ch in "*_~`|" or ch in _BIDI_CONTROLS:
            raise LiveMarkup(f"{ch!r} at {i}")
        if _LIVE_AT.match(markdown, i):
            raise LiveMarkup(f"syntax at {i}: {markdown[i : i + 12]!r}")
        out.append(ch)
        i += 1
    return "".join(out)


def test_the_reference_sees_live_markup() -> None:
    # The reference must be able to fail: what Discord's own escape_markdown lets through.
    for raw in (
        "**bold**",
        "a [b](http://x) c",
        "<t:0:R>",
        "</help:1>",
        "<@&123>",
        "<#1>",
        "# Heading",
        "1. item",
        "> quote",
        "\u202eevil",
        "@everyone",
    ):
        with pytest.raises(LiveMarkup):
            discord_shows(raw)
    # escape_markdown takes `[` … `)` for one link and leaves the bold inside it live.
    greedy = "a [b **c** d](http://e) f"
    with pytest.raises(LiveMarkup):
        discord_shows(discord.utils.escape_markdown(greedy))
    assert discord_shows(r"\*\*b\*\* 1\. \<t:0:R\>") == "**b** 1. <t:0:R>"


_TOKENS = st.sampled_from(
    [
        "*", "**", "_", "__", "~~", "||", "`", "```", ">", ">>> ", "#", "## ", "-# ", "- ",
        "* ", "+ ", "1. ", "1986. ", "\n", "\\", "[", "]", "(", ")", "[a](http://x.org)",
        "<", ">", "<@123>", "<@!123>", "<@&456>", "<#789>", "<t:0:R>", "</help:1>",
        "<:e:1>", "<https://x.org>", "@everyone", "@here", "@", ":", "\u202e", "\u2066",
        "\u200f", " ", "word", "ü", "😀",
    ]
)  # fmt: skip
_raw = st.lists(st.one_of(_TOKENS, st.text(max_size=5)), max_size=30).map("".join)


def _bidi_free(text: str) -> str:
    return "".join(ch for ch in text if ch not in _BIDI_CONTROLS)


@settings(max_examples=400, deadline=None)
@given(_raw)
def test_escaped_text_shows_exactly_the_input(raw: str) -> None:
    assert discord_shows(escape(raw)) == _bidi_free(raw)


def _solid(text: str) -> str:
    return "".join(text.split())  # the renderer may move whitespace, nothing else


@settings(max_examples=200, deadline=None)
@given(st.lists(_raw, min_size=1, max_size=4), st.booleans())
@example(["1", ". x"], False)  # markers made of two leaves
@example(["a\n1", ". x"], False)
@example(["+", " x"], True)
@example(["<", "@&1>", "@", "here"], False)
def test_rendered_messages_show_exactly_their_text(texts: list[str], long: bool) -> None:
    """Leaves meet in one paragraph (short: message content), or under an embed title
    (long: embeds split in parts); the parts show exactly the input, nothing live."""
    blocks: list[Block] = [Paragraph(tuple(Text(t) for t in texts))]
    if long:
        blocks = [Heading((Text(texts[0]),)), *blocks, Paragraph((Text("filler " * 700),))]
    shown: list[str] = []
    for part in render_discord(Message(blocks)):
        shown.append(discord_shows(part.content))
        for embed in part.embeds:
            shown += [discord_shows(embed.title or ""), discord_shows(embed.description or "")]
    expected = "".join(_bidi_free(t) for t in texts)
    if long:
        expected = _bidi_free(texts[0]) + expected + "filler" * 700
    assert _solid("".join(shown)) == _solid(expected)


# --------------------------------------------------------------------- start-up


async def test_start_retries_while_discord_is_unreachable(
    core: Paperboy, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    fake = FakeDiscord()
    settings = Settings(
        discord_bot_token=fake.token, discord_api_base_url=f"http://127.0.0.1:{port}/api/v10"
    )
    adapter = DiscordAdapter(
        core, settings, state_dir=tmp_path, guild_ready_timeout=0.01, start_backoff=0.05
    )
    caplog.set_level(logging.WARNING, "bot.startup")
    starting = asyncio.create_task(adapter.start())
    try:
        await asyncio.sleep(0.5)  # connection refused, again and again
        assert not starting.done()
        await fake.start(port)
        await asyncio.wait_for(starting, 15)
        it = await (await fake.slash("help")).wait_done()
        assert "/subscribe" in it.text
    finally:
        starting.cancel()
        await adapter.stop()
        await fake.close()
    retries = [r for r in caplog.records if "Discord is unreachable" in r.getMessage()]
    assert len(retries) >= 2 and all(r.exc_info is None for r in retries)


async def test_bad_discord_token_is_one_line_and_a_failure_exit(
    discord_server: FakeDiscord, tmp_path: Any
) -> None:
    from tests.test_telegram_platform import run_paperboy

    env = {
        "DISCORD_BOT_TOKEN": "not-the-token",
        "DISCORD_API_BASE_URL": discord_server.api_url,
        "PAPERBOY_DATABASE_URL": "sqlite:///pb.db",
    }
    code, out, err = await asyncio.to_thread(run_paperboy, tmp_path, env, "run")
    assert code != 0 and "Traceback" not in err + out and "not-the-token" not in err + out
    assert err.strip().splitlines()[-1] == (
        "paperboy: Discord refused the bot token: check DISCORD_BOT_TOKEN"
    )
