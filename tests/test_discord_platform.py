"""Discord end to end, the platform's own behaviour: channels that come back after a
delivery failed, the bot's permissions, the configured gateway after INVALID_SESSION,
autocomplete. The real discord.py client against the fake Discord in tests/fakes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.discord import DiscordAdapter
from bot.config import Settings
from bot.delivery import deliver_once
from bot.models import ChatRef
from bot.service import Paperboy
from tests.fakes.discord import (
    ATTACH_FILES,
    EMBED_LINKS,
    EPHEMERAL,
    SEND_MESSAGES,
    FakeDiscord,
)
from tests.test_discord import adapter_for, core  # noqa: F401 - `core` is a fixture

SEND_FAST = Settings(delivery_chat_rate_per_second=100.0)


@pytest.fixture
async def other_channel(discord_server: FakeDiscord) -> str:
    """A second channel in the guild, known to the bot from GUILD_CREATE."""
    return discord_server.add_channel()


@pytest.fixture
async def bot(
    core: Paperboy,  # noqa: F811
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
    other_channel: str,  # noqa: F811
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
    core: Paperboy,  # noqa: F811
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
    core: Paperboy,  # noqa: F811
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


async def test_permission_changes_and_guild_create_bring_a_channel_back(
    core: Paperboy,  # noqa: F811
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
