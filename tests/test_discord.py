"""Discord end to end: the real discord.py client against the fake Discord in tests/fakes.

Slash commands, deferrals, buttons, autocomplete, REST delivery with its error mapping,
and the renderer's limits (a hypothesis property over random documents).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, ClassVar, cast

import discord
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.discord import (
    CONTENT_MAX,
    EMBED_DESCRIPTION_MAX,
    EMBED_TITLE_MAX,
    EMBED_TOTAL_MAX,
    EMBEDS_MAX,
    DiscordAdapter,
    RenderedMessage,
    code_span,
    dlen,
    escape,
    map_error,
    render_discord,
)
from bot.commands import COMMANDS
from bot.config import Settings
from bot.doc import (
    Block,
    Bold,
    Button,
    Code,
    CodeBlock,
    Heading,
    Italic,
    Link,
    ListBlock,
    Math,
    MathBlock,
    Message,
    Paragraph,
    Reply,
    Text,
    block_text,
)
from bot.models import ChatRef, ChatSettings, Paper
from bot.sending import ChatGone, PermanentError, RetryAfter, TransientError
from bot.service import Paperboy
from bot.sources.arxiv import ArxivSource
from bot.sources.hf import HuggingFaceSource
from bot.store.sql import SQLStore
from tests.fakes.arxiv import FakeArxiv
from tests.fakes.discord import DEFERRED_CHANNEL_MESSAGE, EPHEMERAL, FakeDiscord
from tests.fakes.hf import FakeHF

PAPER_ID = "1605.08386"
PAPER_TITLE = "Heat-bath random walks with Markov bases"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


class StubExplainer:
    """Stands in for bot.explain: slow enough that a deferral is observable."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[str] = []

    async def explain(
        self, paper: Paper, *, user: str, chat: str, language: str = "en", render_images: bool
    ) -> Reply:
        await asyncio.sleep(self.delay)
        self.calls.append(paper.id)
        blocks: list[Block] = [
            Heading((Text(f"Explaining {paper.title}"),)),
            Paragraph((Text("The key quantity is "), Math("x_1^*", "x₁*"), Text("."))),
            MathBlock(r"\pi_t = \pi_0 P^t", "πₜ = π₀ Pᵗ", "1", PNG if render_images else None),
        ]
        return Reply.of(*blocks)

    async def follow_up(
        self, paper: Paper, question: str, *, user: str, chat: str, language: str = "en"
    ) -> Reply:
        return Reply.text(f"About {paper.id}: {question}")

    async def aclose(self) -> None:
        return None


@pytest.fixture
async def core(arxiv_server: FakeArxiv, hf_server: FakeHF) -> AsyncIterator[Paperboy]:
    settings = arxiv_server.settings(hf_api_url=hf_server.api_url)
    store = SQLStore(sqlite_path=":memory:")
    await store.open()
    explainer: Any = StubExplainer(delay=0.3)
    app = Paperboy(store, ArxivSource(settings), HuggingFaceSource(settings), explainer)
    yield app
    await app.aclose()
    await store.close()


def adapter_for(
    core: Paperboy,
    fake: FakeDiscord,
    state_dir: Any,
    workers: tuple[int, int] = (0, 1),
    **options: Any,
) -> DiscordAdapter:
    settings = Settings(
        discord_bot_token=fake.token, discord_api_base_url=fake.api_url,
        worker_index=workers[0], worker_count=workers[1],
    )  # fmt: skip
    options = {"channel_interval": 0.0, "guild_ready_timeout": 0.01, **options}
    return DiscordAdapter(core, settings, state_dir=state_dir, **options)


@pytest.fixture
async def bot(
    core: Paperboy, discord_server: FakeDiscord, tmp_path: Any
) -> AsyncIterator[DiscordAdapter]:
    adapter = adapter_for(core, discord_server, tmp_path)
    await adapter.start()
    yield adapter
    await adapter.stop()


def stub(app: Paperboy) -> StubExplainer:
    explainer = app.explainer
    assert isinstance(explainer, StubExplainer)
    return explainer


# ------------------------------------------------------------------ connecting


async def test_ready_and_commands_synced_once(
    core: Paperboy, discord_server: FakeDiscord, tmp_path: Any
) -> None:
    first = adapter_for(core, discord_server, tmp_path)
    await first.start()
    try:
        assert first.synced
        assert first.client is not None and first.client.is_ready()
        assert [g.id for g in first.client.guilds] == [int(discord_server.guild_id)]
    finally:
        await first.stop()
    assert len(discord_server.command_puts) == 1
    identify = discord_server.identifies[0]
    # Reactions are votes (issue 14); no privileged intent is asked for.
    wanted = discord.Intents(guilds=True, guild_reactions=True, dm_reactions=True)
    assert identify["intents"] == wanted.value
    privileged = discord.Intents(members=True, presences=True, message_content=True)
    assert identify["intents"] & privileged.value == 0
    assert identify["shard"] == [0, 1]

    synced = {c["name"]: c for c in discord_server.command_puts[0]}
    assert set(synced) == set(COMMANDS)
    n = synced["trending"]["options"][0]
    assert (n["type"], n["min_value"], n["max_value"], n["required"]) == (4, 1, 25, False)
    feed = synced["subscribe"]["options"][0]
    assert feed["autocomplete"] is True and feed["required"] is True
    assert int(synced["subscribe"]["default_member_permissions"]) == 1 << 4  # Manage Channels
    assert synced["help"].get("default_member_permissions") is None
    key = synced["settings"]["options"][0]
    assert [c["value"] for c in key["choices"]] == list(COMMANDS["settings"].args[0].choices)
    assert synced["today"]["options"][0]["autocomplete"] is True

    # Same table, same state dir: no second sync.
    second = adapter_for(core, discord_server, tmp_path)
    await second.start()
    await second.stop()
    assert not second.synced
    assert len(discord_server.command_puts) == 1
    assert len(discord_server.identifies) == 2


async def test_wrong_token_is_refused_cleanly(
    core: Paperboy, discord_server: FakeDiscord, tmp_path: Any
) -> None:
    settings = Settings(
        discord_bot_token="not-the-token", discord_api_base_url=discord_server.api_url
    )
    adapter = DiscordAdapter(core, settings, state_dir=tmp_path)
    with pytest.raises(RuntimeError, match="refused the bot token") as info:
        await adapter.start()
    assert "not-the-token" not in str(info.value)
    assert adapter.client is None and not discord_server.identifies


@pytest.mark.slow  # discord.py waits 5 s between shard IDENTIFYs, as Discord requires
async def test_auto_sharded(core: Paperboy, tmp_path: Any) -> None:
    async with FakeDiscord(shards=2, guilds=4) as fake:
        adapter = adapter_for(core, fake, tmp_path)
        await adapter.start()
        try:
            assert sorted(i["shard"][0] for i in fake.identifies) == [0, 1]
            assert adapter.client is not None and len(adapter.client.guilds) == 4
            it = await fake.slash("help")
            await it.wait_done()
        finally:
            await adapter.stop()


async def test_shards_split_across_workers(core: Paperboy, tmp_path: Any) -> None:
    """Two workers, three shards: worker 0 runs shards 0 and 2, worker 1 runs shard 1, and
    every guild is served exactly once."""
    async with FakeDiscord(shards=3, guilds=6) as fake:
        first = adapter_for(core, fake, tmp_path, workers=(0, 2))
        second = adapter_for(core, fake, tmp_path, workers=(1, 2))
        await first.start()
        await second.start()
        try:
            assert first.client is not None and second.client is not None
            assert sorted(first.client.shard_ids or []) == [0, 2]
            assert list(second.client.shard_ids or []) == [1]
            identified = sorted(tuple(i["shard"]) for i in fake.identifies)
            assert identified == [(0, 3), (1, 3), (2, 3)]
            guilds = [g.id for a in (first, second) for g in a.client.guilds]  # type: ignore[union-attr]
            assert len(guilds) == len(set(guilds)) == 6
        finally:
            await first.stop()
            await second.stop()


async def test_worker_without_a_shard_only_sends(core: Paperboy, tmp_path: Any) -> None:
    async with FakeDiscord(shards=1, guilds=1) as fake:
        adapter = adapter_for(core, fake, tmp_path, workers=(1, 2))
        await adapter.start()
        try:
            assert not fake.identifies and not adapter.receiving
        finally:
            await adapter.stop()


# ---------------------------------------------------------------- slash commands


async def test_help(bot: DiscordAdapter, discord_server: FakeDiscord) -> None:
    it = await (await discord_server.slash("help")).wait_done()
    assert it.callbacks[0]["type"] == 4
    body = it.callbacks[0]["data"]
    assert "/subscribe" in it.text
    assert body["allowed_mentions"] == {"parse": []}


async def test_paper_is_deferred_then_followed_up(
    bot: DiscordAdapter, discord_server: FakeDiscord
) -> None:
    it = await (await discord_server.slash("paper", {"id": PAPER_ID})).wait_done()
    assert it.callbacks[0]["type"] == DEFERRED_CHANNEL_MESSAGE
    assert PAPER_TITLE in it.text
    followup = it.followups[0]
    assert followup["allowed_mentions"] == {"parse": []}
    custom_ids = [b.get("custom_id") for row in followup["components"] for b in row["components"]]
    assert f"pb:explain:{PAPER_ID}" in custom_ids
    urls = [b.get("url") for row in followup["components"] for b in row["components"]]
    assert any(u and "/pdf/" in u for u in urls)


async def test_bad_argument_gets_private_usage(
    bot: DiscordAdapter, discord_server: FakeDiscord
) -> None:
    it = await (await discord_server.slash("paper", {"id": "not an id"})).wait_done()
    # Deferred publicly, so the "thinking" message is removed and the usage sent privately.
    assert it.deleted_original
    assert int(it.followups[0]["flags"]) & EPHEMERAL
    assert "Usage" in it.text


async def test_subscribe_needs_manage_channels(
    bot: DiscordAdapter, discord_server: FakeDiscord, core: Paperboy
) -> None:
    chat = ChatRef("discord", discord_server.channel_id)
    it = await (await discord_server.slash("subscribe", {"feed": "arxiv:cs.LG"})).wait_done()
    assert int(it.callbacks[0]["data"]["flags"]) & EPHEMERAL
    assert "admin" in it.text.lower()
    assert await core.store.list_subscriptions(chat) == []

    it = await (
        await discord_server.slash(
            "subscribe", {"feed": "cs.lg", "filters": "diffusion -survey"}, admin=True
        )
    ).wait_done()
    assert "Subscribed" in it.text
    [sub] = await core.store.list_subscriptions(chat)
    assert (sub.feed, sub.keywords, sub.exclude) == ("arxiv:cs.LG", ["diffusion"], ["survey"])


async def test_direct_messages_work(
    bot: DiscordAdapter, discord_server: FakeDiscord, core: Paperboy
) -> None:
    it = await (
        await discord_server.slash("subscribe", {"feed": "hf:trending"}, guild=False)
    ).wait_done()
    assert "Subscribed" in it.text
    dm = ChatRef("discord", discord_server._dm_channel_id())
    assert [s.feed for s in await core.store.list_subscriptions(dm)] == ["hf:trending"]


async def test_slow_command_defers_within_the_window(
    bot: DiscordAdapter, discord_server: FakeDiscord, core: Paperboy
) -> None:
    it = await discord_server.slash("explain", {"id": PAPER_ID})
    await it.wait_response()
    assert it.callbacks[0]["type"] == DEFERRED_CHANNEL_MESSAGE
    assert it.callback_at is not None and it.callback_at - it.created_at < 0.3
    assert not it.followups  # the explanation is still being written
    await it.wait_done()
    assert stub(core).calls == [PAPER_ID]
    assert f"Explaining {PAPER_TITLE}" in it.text
    assert "`x₁*`" in it.text  # math in a code span: `*` stays literal, unescaped
    followup = it.followups[0]
    [(name, data)] = discord_server.attachments[followup["id"]]
    assert data == PNG
    assert any(
        (e.get("image") or {}).get("url") == f"attachment://{name}" for e in followup["embeds"]
    )


async def test_button_press_runs_explain_without_memory_of_the_message(
    bot: DiscordAdapter, discord_server: FakeDiscord, core: Paperboy
) -> None:
    # The message is made up: as after a restart, only the custom id identifies the button.
    it = await (await discord_server.press(f"pb:explain:{PAPER_ID}")).wait_done()
    assert it.callbacks[0]["type"] == DEFERRED_CHANNEL_MESSAGE
    assert stub(core).calls == [PAPER_ID]
    assert f"Explaining {PAPER_TITLE}" in it.text


async def test_button_survives_restart(
    core: Paperboy, discord_server: FakeDiscord, tmp_path: Any
) -> None:
    first = adapter_for(core, discord_server, tmp_path)
    await first.start()
    it = await (await discord_server.slash("paper", {"id": PAPER_ID})).wait_done()
    message = it.followups[0]
    await first.stop()
    second = adapter_for(core, discord_server, tmp_path)
    await second.start()
    try:
        pressed = await (
            await discord_server.press(f"pb:explain:{PAPER_ID}", message=message)
        ).wait_done()
        assert f"Explaining {PAPER_TITLE}" in pressed.text
    finally:
        await second.stop()


async def test_unsubscribe_button_checks_permissions(
    bot: DiscordAdapter, discord_server: FakeDiscord
) -> None:
    it = await (await discord_server.press("pb:unsubscribe:arxiv:cs.LG")).wait_done()
    assert "admin" in it.text.lower()
    it = await (await discord_server.press("pb:unsubscribe:arxiv:cs.LG", admin=True)).wait_done()
    assert "admin" not in it.text.lower()


async def test_autocomplete(bot: DiscordAdapter, discord_server: FakeDiscord) -> None:
    choices = await discord_server.autocomplete("subscribe", "feed", "cs.L")
    assert "arxiv:cs.LG" in [c["value"] for c in choices]
    assert all(len(c["name"]) <= 100 for c in choices) and len(choices) <= 25
    choices = await discord_server.autocomplete("subscribe", "feed", "hf")
    assert [c["value"] for c in choices][:2] == ["hf:trending", "hf:daily"]
    choices = await discord_server.autocomplete("today", "category", "math.a")
    assert "math.AP" in [c["value"] for c in choices]


# ------------------------------------------------------------------- delivery


def digest_message(title: str = "Today's papers") -> Message:
    return Message(
        [Heading((Text(title),)), Paragraph((Text("Graph neural nets"),))],
        [
            [
                Button("Explain", command="explain", arg=PAPER_ID),
                Button("PDF", url=f"https://arxiv.org/pdf/{PAPER_ID}"),
            ]
        ],
    )


async def test_send_posts_with_mentions_disabled(
    bot: DiscordAdapter, discord_server: FakeDiscord
) -> None:
    channel = discord_server.channel_id
    ids = await bot.send(ChatRef("discord", channel), digest_message("@everyone <@&123> look"))
    [posted] = discord_server.channel_messages[channel]
    assert ids == [posted["id"]]
    assert posted["allowed_mentions"] == {"parse": []}
    assert "@everyone" in posted["content"]
    assert posted["components"][0]["components"][0]["custom_id"] == f"pb:explain:{PAPER_ID}"


async def test_a_vanished_interaction_never_pauses_its_channel(
    core: Paperboy, discord_server: FakeDiscord, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # 404 on an interaction's follow-up (its token expired, its webhook is gone) says
    # nothing about the channel: the answer is given up, the channel keeps its digests.
    chat = ChatRef("discord", "4343")
    await core.store.save_chat(ChatSettings(chat))
    gone = discord.NotFound(
        cast(Any, SimpleNamespace(status=404, reason="Not Found")),
        {"code": 10015, "message": "Unknown Webhook"},
    )

    async def follow_up(**kwargs: Any) -> None:
        raise gone

    interaction = SimpleNamespace(
        channel_id=4343,
        response=SimpleNamespace(is_done=lambda: True),
        followup=SimpleNamespace(send=follow_up),
    )
    adapter = adapter_for(core, discord_server, tmp_path)
    await adapter.answer(cast(Any, interaction), Reply.text("hello"), deferred=True)
    saved = await core.store.get_chat(chat)
    assert saved is not None and saved.active
    assert "could not send to discord:4343" in caplog.text


async def test_unknown_channel_deactivates_that_channel_only(
    bot: DiscordAdapter, discord_server: FakeDiscord, core: Paperboy
) -> None:
    gone, alive = ChatRef("discord", "4242"), ChatRef("discord", discord_server.channel_id)
    discord_server.fail_channel("4242", 404, 10003)
    for chat in (gone, alive):
        await core.store.save_chat(ChatSettings(chat))
    with pytest.raises(ChatGone):
        await bot.send(gone, digest_message())
    await core.store.set_chat_active(gone, False)  # what delivery does with ChatGone
    assert await bot.send(alive, digest_message())
    gone_settings = await core.store.get_chat(gone)
    alive_settings = await core.store.get_chat(alive)
    assert gone_settings is not None and not gone_settings.active
    assert alive_settings is not None and alive_settings.active


async def test_digests_through_the_outbox(
    bot: DiscordAdapter, discord_server: FakeDiscord, core: Paperboy
) -> None:
    from bot.delivery import Dispatcher
    from bot.serialize import message_to_json
    from bot.store.base import Enqueue

    gone, alive = ChatRef("discord", "4243"), ChatRef("discord", discord_server.channel_id)
    discord_server.fail_channel("4243", 403, 50001)  # Missing Access: the bot was removed
    now = datetime.now(UTC)
    digests = []
    for chat in (gone, alive):
        await core.store.save_chat(ChatSettings(chat))
        body = message_to_json(digest_message(f"Digest for {chat.chat_id}"))
        digests.append(Enqueue(chat, now, now + timedelta(days=1), [(f"{chat.key}:1", body)]))
    await core.store.enqueue_digests(digests, now)
    settings = Settings(delivery_chat_rate_per_second=100.0)
    dispatcher = Dispatcher(core.store, {"discord": bot}, settings)
    await dispatcher.run(until_idle=True, deadline=asyncio.get_running_loop().time() + 10)
    assert (dispatcher.stats.sent, dispatcher.stats.gone) == (1, 1)
    [posted] = discord_server.channel_messages[alive.chat_id]
    assert f"Digest for {alive.chat_id}" in posted["content"]
    gone_settings = await core.store.get_chat(gone)
    alive_settings = await core.store.get_chat(alive)
    assert gone_settings is not None and not gone_settings.active
    assert alive_settings is not None and alive_settings.active


@pytest.mark.parametrize(("status", "code"), [(403, 50001), (403, 50013), (404, 10003)])
async def test_access_errors_mean_chat_gone(
    bot: DiscordAdapter, discord_server: FakeDiscord, status: int, code: int
) -> None:
    discord_server.fail_channel("777", status, code)
    with pytest.raises(ChatGone) as info:
        await bot.send(ChatRef("discord", "777"), digest_message())
    assert str(code) in str(info.value)


async def test_short_429_is_retried_by_discord_py(
    bot: DiscordAdapter, discord_server: FakeDiscord
) -> None:
    channel = discord_server.channel_id
    discord_server.rate_limit(f"/channels/{channel}/messages", retry_after=0.05)
    assert await bot.send(ChatRef("discord", channel), digest_message())
    post = ("POST", f"/api/v10/channels/{channel}/messages")
    posts = [r for r in discord_server.requests if r == post]
    assert len(posts) == 2  # the 429, then the retry
    assert len(discord_server.channel_messages[channel]) == 1


async def test_long_429_comes_back_as_retry_after(
    bot: DiscordAdapter, discord_server: FakeDiscord
) -> None:
    channel = discord_server.channel_id
    discord_server.rate_limit(f"/channels/{channel}/messages", retry_after=120.0)
    with pytest.raises(RetryAfter) as info:
        await bot.send(ChatRef("discord", channel), digest_message())
    assert info.value.seconds == pytest.approx(120.0)


async def test_server_error_is_transient(bot: DiscordAdapter, discord_server: FakeDiscord) -> None:
    discord_server.server_error("/channels/", status=503)
    with pytest.raises(TransientError):
        await bot.send(ChatRef("discord", discord_server.channel_id), digest_message())


def test_other_client_errors_are_permanent() -> None:
    class Response:
        status = 400
        reason = "Bad Request"
        headers: ClassVar[dict[str, str]] = {}

    error = discord.HTTPException(Response(), {"code": 50035, "message": "Invalid Form Body"})  # type: ignore[arg-type]
    assert isinstance(map_error(error), PermanentError)
    assert isinstance(map_error(discord.RateLimited(3.5)), RetryAfter)


async def test_per_channel_pacing(
    core: Paperboy, discord_server: FakeDiscord, tmp_path: Any
) -> None:
    adapter = adapter_for(core, discord_server, tmp_path, channel_interval=0.15)
    # When the pacer lets each message request go. The server's arrival times would add
    # the machine's own delays (a first request opens its connection), which the bot
    # neither controls nor needs to: Discord allows 5 per 5 s in a channel.
    released: dict[str | None, list[float]] = {}
    acquire = adapter.pacer.acquire

    async def recording(chat: str | None, *, group: bool = False) -> None:
        await acquire(chat, group=group)
        released.setdefault(chat, []).append(time.monotonic())

    adapter.pacer.acquire = recording  # type: ignore[method-assign]
    await adapter.start()
    try:
        a, b = discord_server.channel_id, "5151"
        await asyncio.gather(
            *(adapter.send(ChatRef("discord", c), digest_message()) for c in (a, a, a, b))
        )
        assert len(discord_server.channel_messages[a]) == 3
        times = released[a]
        assert len(times) == 3
        gaps = [t2 - t1 for t1, t2 in itertools.pairwise(times)]
        assert min(gaps) >= 0.149
        # Another channel is not held up by the first one's pacing: it goes before the
        # first channel's second message (an order, not a wall-clock bound).
        assert released[b][0] < times[1]
    finally:
        await adapter.stop()


async def test_token_never_logged(
    core: Paperboy, discord_server: FakeDiscord, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    adapter = adapter_for(core, discord_server, tmp_path)
    await adapter.start()
    try:
        await (await discord_server.slash("paper", {"id": PAPER_ID})).wait_done()
        await adapter.send(ChatRef("discord", discord_server.channel_id), digest_message())
        discord_server.fail_channel("31337", 403, 50001)
        with pytest.raises(ChatGone):
            await adapter.send(ChatRef("discord", "31337"), digest_message())
    finally:
        await adapter.stop()
    assert any(r.name.startswith("discord") for r in caplog.records)  # DEBUG was on
    assert discord_server.token not in caplog.text
    for record in caplog.records:
        assert discord_server.token not in record.getMessage()


async def test_interaction_tokens_never_logged(
    bot: DiscordAdapter, discord_server: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    """An interaction token lets anyone answer as the bot for 15 minutes: at DEBUG,
    discord.py logs the gateway event that carries it and the callback and follow-up
    URLs built from it; they must come out redacted."""
    caplog.set_level(logging.DEBUG)
    it = await (await discord_server.slash("paper", {"id": PAPER_ID})).wait_done()
    assert it.followups  # a callback and a follow-up went out over the token's URLs
    assert any("/interactions/" in r.getMessage() for r in caplog.records)  # DEBUG was on
    assert it.token not in caplog.text
    for record in caplog.records:
        assert it.token not in record.getMessage()


# ------------------------------------------------------------------- renderer


def test_escape_once_and_math_literal() -> None:
    [part] = render_discord(
        Message(
            [
                Paragraph(
                    (
                        Text("a_b *c* [x](http://e.vil) 1986. "),
                        Math("x_1^*", "x_1*"),
                        Code("a`b"),
                    )
                )
            ]
        )
    )
    assert part.content.startswith(r"a\_b \*c\* \[x\]")
    assert "\\\\" not in part.content  # nothing escaped twice
    assert "`x_1*`" in part.content and "`aˋb`" in part.content
    assert escape("1986. A year") == "1986\\. A year"
    assert code_span("`") == "`ˋ`"


def test_long_message_goes_to_embeds_split_at_blocks() -> None:
    blocks: list[Block] = [Heading((Text("Digest"),))]
    blocks += [Paragraph((Text(f"Paper {n}: " + "word " * 150),)) for n in range(20)]
    parts = render_discord(Message(blocks, [[Button("PDF", url="https://arxiv.org/pdf/1")]]))
    assert len(parts) > 1
    assert parts[0].embeds[0].title == "Digest"
    for part in parts:
        check_limits(part)
        for embed in part.embeds:
            assert (embed.description or "").startswith("Paper")  # cut between blocks
    assert parts[-1].buttons and not parts[0].buttons


def check_limits(part: RenderedMessage) -> None:
    assert dlen(part.content) <= CONTENT_MAX
    assert part.content or part.embeds
    assert len(part.embeds) <= EMBEDS_MAX
    assert len(part.files) <= 10
    total = 0
    for embed in part.embeds:
        title, description = embed.title or "", embed.description or ""
        assert dlen(title) <= EMBED_TITLE_MAX
        assert dlen(description) <= EMBED_DESCRIPTION_MAX
        assert description or title or embed.image.url
        total += dlen(title) + dlen(description)
    assert total <= EMBED_TOTAL_MAX
    assert len(part.buttons) + len(part.menus) <= 5 and all(len(row) <= 5 for row in part.buttons)


def _alnum(text: str) -> str:
    return re.sub(r"[\W_]", "", text)


def _is_subsequence(needle: str, haystack: str) -> bool:
    it = iter(haystack)
    return all(ch in it for ch in needle)


_chars = st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"))
_words = st.text(
    alphabet=st.sampled_from("abcXYZ019 *_`~|>[]()#-@:\\\n.😀ü"), min_size=0, max_size=40
)
_text = st.one_of(
    _words,
    st.text(_chars, max_size=30),
    st.builds(lambda w, n: (w + " ") * n, _words, st.integers(0, 400)),
    st.builds(lambda n: "y" * n, st.integers(0, 5000)),
)
_url = st.sampled_from(["https://arxiv.org/abs/1706.03762", "https://x.org/a_(b)", "javascript:x"])
_inline = st.recursive(
    st.one_of(
        st.builds(Text, _text),
        st.builds(Code, _words),
        st.builds(Math, _words, _words),
        st.builds(Link, _words, _url),
    ),
    lambda inner: st.one_of(
        st.builds(lambda c: Bold(tuple(c)), st.lists(inner, max_size=4)),
        st.builds(lambda c: Italic(tuple(c)), st.lists(inner, max_size=4)),
    ),
    max_leaves=12,
)
_inlines = st.lists(_inline, max_size=6).map(tuple)
_block = st.one_of(
    st.builds(Paragraph, _inlines),
    st.builds(Heading, _inlines),
    st.builds(ListBlock, st.lists(_inlines, max_size=5).map(tuple), st.booleans()),
    st.builds(CodeBlock, _text),
    st.builds(
        MathBlock, _words, _text, st.one_of(st.none(), _words), st.one_of(st.none(), st.just(PNG))
    ),
)
_buttons = st.lists(
    st.lists(
        st.one_of(
            st.builds(Button, _words, st.just("https://arxiv.org/pdf/1706.03762")),
            st.builds(lambda label, arg: Button(label, command="explain", arg=arg), _words, _words),
        ),
        max_size=7,
    ),
    max_size=7,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_block, max_size=12), _buttons)
def test_renderer_within_limits_and_keeps_text(
    blocks: list[Block], buttons: list[list[Button]]
) -> None:
    parts = render_discord(Message(blocks, buttons))
    assert parts
    shown: list[str] = []
    for part in parts:
        if part.content or part.embeds:
            check_limits(part)
        shown.append(part.content)
        for embed in part.embeds:
            shown += [embed.title or "", embed.description or ""]
    for part in parts[:-1]:
        assert not part.buttons
    source = _alnum("".join(block_text(b) for b in blocks))
    assert _is_subsequence(source, _alnum("".join(shown)))
    images = [b.image for b in blocks if isinstance(b, MathBlock) and b.image]
    assert sum(len(p.files) for p in parts) == len(images)


async def test_send_only_start_opens_no_gateway_and_syncs_nothing(
    core: Paperboy, discord_server: FakeDiscord, tmp_path: Any
) -> None:
    # `deliver --now` beside a running bot: REST sends only, no second gateway session.
    adapter = adapter_for(core, discord_server, tmp_path)
    await adapter.start(receive=False)
    try:
        channel = discord_server.channel_id
        assert await adapter.send(ChatRef("discord", channel), digest_message("Send only"))
    finally:
        await adapter.stop()
    assert discord_server.identifies == []
    assert discord_server.command_puts == []
    assert "Send only" in discord_server.channel_messages[channel][-1]["content"]
