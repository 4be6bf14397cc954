"""Paperboy on Telegram, end to end: the real python-telegram-bot client in TelegramAdapter
talks to the fake Bot API server; users type commands and press buttons."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import pytest

from adapters.telegram import TelegramAdapter, utf16_len
from bot import cards, sending
from bot.commands import COMMANDS
from bot.config import Settings
from bot.doc import Button, Heading, MathBlock, Message, Paragraph, Reply, Text
from bot.models import ChatRef, ChatSettings, Paper, Subscription
from bot.pacing import Pacer, SendLimits
from bot.service import Paperboy
from bot.sources.arxiv import ArxivSource
from bot.sources.hf import HuggingFaceSource
from bot.store import open_store
from bot.store.base import Store
from tests.fakes.arxiv import FakeArxiv, FakePaper
from tests.fakes.hf import FakeHF
from tests.fakes.telegram import FakeTelegram, SentMessage, parse_html

HOSTILE_ID = "2401.00001"
HOSTILE_TITLE = 'Attention </b><i>is & "all" <script>alert(1)</script> you need &amp; more'
HOSTILE_ABSTRACT = "We show 1 < 2 && 3 > 2, <pre>unclosed and a stray &lt; " * 3
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64

USER = 1001  # a private-chat user
MEMBER = 2002  # a plain member of the group
ADMIN = 3003  # an admin of the group
GROUP = -1001234567890
CHANNEL = -1009876543210


class StubExplainer:
    """Stands in for bot.explain: a fixed explanation with an equation image."""

    def __init__(self) -> None:
        self.questions: list[tuple[str, str]] = []

    async def explain(
        self,
        paper: Paper,
        *,
        user: str,
        chat: str,
        language: str = "en",
        render_images: bool = True,
    ) -> Reply:
        image = PNG if render_images else None
        return Reply.of(
            Heading((Text(f"Explaining {paper.title}"),)),
            Paragraph((Text("The idea, in short: attention < recurrence."),)),
            MathBlock("a^2+b^2=c^2", "a² + b² = c²", label="1", image=image),
            Paragraph((Text("Reply to this message to ask a question."),)),
        )

    async def follow_up(
        self, paper: Paper, question: str, *, user: str, chat: str, language: str = "en"
    ) -> Reply:
        self.questions.append((paper.id, question))
        return Reply.text(f"About {paper.id}: you asked “{question}”.")

    async def aclose(self) -> None:
        pass


@dataclass
class Bot:
    tg: FakeTelegram
    adapter: TelegramAdapter
    app: Paperboy
    store: Store
    explainer: StubExplainer
    settings: Settings


def make_settings(tg: FakeTelegram, arxiv: FakeArxiv, hf: FakeHF, **extra: Any) -> Settings:
    return Settings(
        database_url="sqlite:///:memory:",
        telegram_bot_token=tg.token,
        telegram_api_base_url=tg.base_url,
        telegram_file_base_url=tg.file_base_url,
        arxiv_api_url=arxiv.api_url,
        arxiv_listing_url=arxiv.listing_url,
        arxiv_delay_seconds=0.0,
        hf_api_url=hf.api_url,
        http_timeout_seconds=5.0,
        **extra,
    )


@pytest.fixture
async def paperboy(
    arxiv_server: FakeArxiv, hf_server: FakeHF, telegram_server: FakeTelegram
) -> AsyncIterator[tuple[Paperboy, Settings]]:
    arxiv_server.add_paper(
        FakePaper(
            HOSTILE_ID,
            2,
            HOSTILE_TITLE,
            HOSTILE_ABSTRACT,
            ["Ada <Lovelace>", "B & C"],
            ["cs.LG"],
            "2024-01-01T00:00:00Z",
            "2024-01-02T00:00:00Z",
        )
    )
    settings = make_settings(telegram_server, arxiv_server, hf_server)
    store = open_store(settings.database_url)
    await store.open()
    app = Paperboy(store, ArxivSource(settings), HuggingFaceSource(settings), StubExplainer())  # type: ignore[arg-type]
    yield app, settings
    await app.aclose()
    await store.close()


@pytest.fixture
async def bot(
    paperboy: tuple[Paperboy, Settings], telegram_server: FakeTelegram
) -> AsyncIterator[Bot]:
    app, settings = paperboy
    tg = telegram_server
    tg.private_chat(USER, "Ada")
    tg.group(GROUP, "Reading group")
    tg.set_member(GROUP, MEMBER, "member")
    tg.set_member(GROUP, ADMIN, "administrator")
    tg.channel(CHANNEL)
    adapter = TelegramAdapter(app, settings, poll_timeout=1)
    await adapter.start()
    explainer = app.explainer
    assert isinstance(explainer, StubExplainer)
    try:
        yield Bot(tg, adapter, app, app.store, explainer, settings)
    finally:
        await adapter.stop()


async def say(
    bot: Bot, chat: int, user: int, text: str, count: int = 1, **kwargs: Any
) -> list[SentMessage]:
    """A user types `text`; returns the `count` new messages the bot sent to the chat."""
    before = len(bot.tg.sent_to(chat))
    bot.tg.send_text(chat, user, text, **kwargs)
    sent = await bot.tg.wait_sent(chat, before + count)
    return sent[before:]


async def active_becomes(bot: Bot, chat: ChatRef, value: bool) -> None:
    for _ in range(200):
        settings = await bot.store.get_chat(chat)
        if settings is not None and settings.active is value:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the chat's active flag never became {value}")


def button_labels(message: SentMessage) -> list[str]:
    return [b["text"] for b in message.buttons]


# ------------------------------------------------------------------------- commands


async def test_start_help_and_the_command_menu(bot: Bot) -> None:
    public = [name for name, cmd in COMMANDS.items() if not cmd.admin_only]
    assert [c["command"] for c in bot.tg.commands["default"]] == public
    [start] = await say(bot, USER, USER, "/start")
    assert "Paperboy delivers research papers." in start.text
    assert start.parse_mode == "HTML"
    [help_] = await say(bot, USER, USER, "/help")
    for name in COMMANDS:
        assert f"/{name}" in help_.text
    [unknown] = await say(bot, USER, USER, "/frobnicate")
    assert "I don't know /frobnicate" in unknown.text


async def test_paper_with_a_hostile_title_renders_exactly(bot: Bot) -> None:
    [card] = await say(bot, USER, USER, f"/paper {HOSTILE_ID}")
    assert HOSTILE_TITLE in card.text  # shown as typed: escaped once, never interpreted
    assert "We show 1 < 2 && 3 > 2, <pre>unclosed" in card.text
    assert "Ada <Lovelace>, B & C" in card.text
    assert button_labels(card) == ["Explain", "PDF", "HF page"]
    for button in card.buttons:
        if "callback_data" in button:
            assert len(button["callback_data"].encode()) <= 64


async def test_a_hostile_paper_never_breaks_a_digest(bot: Bot) -> None:
    good = Paper("1706.03762", "Attention Is All You Need", ["A. Vaswani"], "Transformers.")
    hostile = Paper(HOSTILE_ID, HOSTILE_TITLE, ["<b>"], HOSTILE_ABSTRACT * 20, ["cs.LG"])
    reply = cards.paper_list("Digest", [good, hostile, good], feed="hf:trending")
    ids = await bot.adapter.send(ChatRef("telegram", str(USER)), reply.messages[0])
    sent = bot.tg.sent_to(USER)
    assert len(ids) == len(sent) >= 1
    text = "".join(m.text for m in sent)
    assert "Attention Is All You Need" in text and HOSTILE_TITLE in text
    assert all(m.reply_markup is None for m in sent[:-1])
    assert "Unsubscribe hf:trending" in button_labels(sent[-1])


async def test_long_messages_are_split_under_the_limit(bot: Bot) -> None:
    bot.tg.rate_limits.enabled = False
    blocks = [Paragraph((Text(f"Paragraph {i}: " + "lorem ipsum 😀 " * 60),)) for i in range(40)]
    message = Message(list(blocks), cards.paper_buttons(Paper("1706.03762", "T")))
    ids = await bot.adapter.send(ChatRef("telegram", str(USER)), message)
    sent = bot.tg.sent_to(USER)
    assert len(ids) == len(sent) > 5
    for part in sent:
        assert utf16_len(part.text) <= 4096
        parse_html(part.raw)
    assert [bool(m.reply_markup) for m in sent] == [False] * (len(sent) - 1) + [True]
    for i in range(40):
        assert sum(f"Paragraph {i}:" in m.text for m in sent) == 1  # blocks stay whole


# -------------------------------------------------------------------- groups & admins


async def test_only_group_admins_subscribe(bot: Bot) -> None:
    chat = ChatRef("telegram", str(GROUP))
    [refused] = await say(bot, GROUP, MEMBER, "/subscribe hf:trending")
    assert "Only chat admins" in refused.text
    assert await bot.store.list_subscriptions(chat) == []
    [ok] = await say(bot, GROUP, ADMIN, "/subscribe@PaperboyTestBot hf:trending")
    assert "Subscribed" in ok.text
    assert ok.reply_to_message_id is not None  # in groups, answers quote the command
    assert [s.feed for s in await bot.store.list_subscriptions(chat)] == ["hf:trending"]
    # Commands for another bot, and unknown commands in groups, are not ours to answer.
    before = len(bot.tg.sent_to(GROUP))
    bot.tg.send_text(GROUP, ADMIN, "/subscribe@SomeOtherBot arxiv:cs.AI")
    bot.tg.send_text(GROUP, ADMIN, "/roll d20")
    await say(bot, GROUP, ADMIN, "/subscriptions")
    assert len(bot.tg.sent_to(GROUP)) == before + 1
    assert [s.feed for s in await bot.store.list_subscriptions(chat)] == ["hf:trending"]


async def test_channel_posts_come_from_admins(bot: Bot) -> None:
    before = len(bot.tg.sent_to(CHANNEL))
    bot.tg.post_to_channel(CHANNEL, "/subscribe arxiv:cs.AI")
    [ok] = (await bot.tg.wait_sent(CHANNEL, before + 1))[before:]
    assert "Subscribed" in ok.text
    subs = await bot.store.list_subscriptions(ChatRef("telegram", str(CHANNEL)))
    assert [s.feed for s in subs] == ["arxiv:cs.AI"]


# ------------------------------------------------------------------------- buttons


async def test_explain_button_then_a_reply_asks_a_follow_up(bot: Bot) -> None:
    [card] = await say(bot, USER, USER, f"/paper {HOSTILE_ID}")
    before = len(bot.tg.sent_to(USER))
    query = bot.tg.press_button(USER, card.message_id, USER, "Explain")
    sent = (await bot.tg.wait_sent(USER, before + 3))[before:]
    await bot.tg.wait_for(lambda: query in bot.tg.callback_answers)
    assert [m.method for m in sent] == ["sendMessage", "sendPhoto", "sendMessage"]
    assert f"Explaining {HOSTILE_TITLE}" in sent[0].text
    assert sent[1].photo == PNG and "a² + b² = c²" in sent[1].text
    # Replying to any part of the explanation asks about that paper.
    [answer] = await say(bot, USER, USER, "what is a² < b?", reply_to_message_id=sent[2].message_id)
    assert answer.text == f"About {HOSTILE_ID}: you asked “what is a² < b?”."
    assert bot.explainer.questions == [(HOSTILE_ID, "what is a² < b?")]
    # Plain chatter that replies to nothing of ours is ignored.
    bot.tg.send_text(USER, USER, "thanks!")
    await say(bot, USER, USER, "/start")
    assert len(bot.explainer.questions) == 1


async def test_unsubscribe_button_needs_a_group_admin(bot: Bot) -> None:
    chat = ChatRef("telegram", str(GROUP))
    await bot.store.add_subscription(Subscription(chat, "hf:trending"))
    digest = cards.paper_list("Digest", [Paper("1706.03762", "Attention")], feed="hf:trending")
    [message_id] = await bot.adapter.send(chat, digest.messages[0])
    before = len(bot.tg.sent_to(GROUP))

    refused = bot.tg.press_button(GROUP, int(message_id), MEMBER, "Unsubscribe hf:trending")
    await bot.tg.wait_for(lambda: refused in bot.tg.callback_answers)
    answer = bot.tg.callback_answers[refused]
    assert answer["show_alert"] and "Only chat admins" in answer["text"]
    assert len(bot.tg.sent_to(GROUP)) == before  # the refusal went to the presser only
    assert len(await bot.store.list_subscriptions(chat)) == 1

    done = bot.tg.press_button(GROUP, int(message_id), ADMIN, "Unsubscribe hf:trending")
    [ok] = (await bot.tg.wait_sent(GROUP, before + 1))[before:]
    assert ok.text == "Unsubscribed from hf:trending."
    assert done in bot.tg.callback_answers
    assert await bot.store.list_subscriptions(chat) == []


async def test_stale_button_is_answered(bot: Bot) -> None:
    chat = ChatRef("telegram", str(USER))
    message = Message([Paragraph((Text("old"),))], [])
    [message_id] = await bot.adapter.send(chat, message)
    stored = bot.tg.message(USER, int(message_id))
    assert stored is not None
    stored["reply_markup"] = {"inline_keyboard": [[{"text": "Old", "callback_data": "gone:x"}]]}
    query = bot.tg.press_button(USER, int(message_id), USER, "Old")
    await bot.tg.wait_for(lambda: query in bot.tg.callback_answers)
    assert "no longer works" in bot.tg.callback_answers[query]["text"]


# -------------------------------------------------------------------- error mapping


async def test_send_maps_telegram_errors(bot: Bot) -> None:
    tg = bot.tg
    message = Message([Paragraph((Text("hello"),))])
    cases: list[tuple[int, str, type[sending.SendError]]] = [
        (501, "blocked", sending.ChatGone),
        (502, "kicked", sending.ChatGone),
        (503, "not_found", sending.ChatGone),
    ]
    for chat_id, kind, error in cases:
        tg.fail_chat(chat_id, kind)
        with pytest.raises(error) as info:
            await bot.adapter.send(ChatRef("telegram", str(chat_id)), message)
        assert tg.token not in str(info.value)

    tg.fail_chat(-504, "migrated", migrate_to=-100504)
    with pytest.raises(sending.ChatMoved) as moved:
        await bot.adapter.send(ChatRef("telegram", "-504"), message)
    assert moved.value.new_chat == ChatRef("telegram", "-100504")

    tg.fail_next("sendMessage", 429, "Too Many Requests: retry after 7", {"retry_after": 7})
    with pytest.raises(sending.RetryAfter) as retry:
        await bot.adapter.send(ChatRef("telegram", str(USER)), message)
    assert retry.value.seconds == 7

    tg.fail_next("sendMessage", 502, "Bad Gateway")
    with pytest.raises(sending.TransientError):
        await bot.adapter.send(ChatRef("telegram", str(USER)), message)

    tg.fail_next("sendMessage", 400, "Bad Request: can't parse entities: nope")
    with pytest.raises(sending.PermanentError):
        await bot.adapter.send(ChatRef("telegram", str(USER)), message)

    assert await bot.adapter.send(ChatRef("telegram", str(USER)), message)


async def test_real_flood_limits_answer_429_and_interactive_replies_wait(bot: Bot) -> None:
    tg = bot.tg
    tg.rate_limits.per_chat_burst = 1
    bot.adapter.pacer = Pacer(SendLimits(overall=0))  # our own pace off: the fake's shows
    chat = ChatRef("telegram", str(USER))
    message = Message([Paragraph((Text("one"),))])
    await bot.adapter.send(chat, message)
    with pytest.raises(sending.RetryAfter) as retry:
        await bot.adapter.send(chat, message)
    assert retry.value.seconds >= 1
    assert tg.rate_limited == 1
    # A person waiting for an answer gets it once the flood wait is over.
    [reply] = await say(bot, USER, USER, "/start")
    assert "Paperboy" in reply.text
    assert tg.rate_limited >= 2


async def test_forbidden_deactivates_the_chat(bot: Bot) -> None:
    chat = ChatRef("telegram", str(USER))
    await bot.store.save_chat(ChatSettings(chat))
    bot.tg.fail_chat(USER, "blocked")
    bot.tg.send_text(USER, USER, "/start")
    await bot.tg.wait_for(lambda: bot.tg.method_counts.get("sendmessage", 0) >= 1)
    await active_becomes(bot, chat, False)


async def test_chat_migration_moves_subscriptions_and_resends(bot: Bot) -> None:
    old, new = -4001, -1004001
    bot.tg.group(old, "Old group", supergroup=False)
    bot.tg.set_member(old, ADMIN, "administrator")
    await bot.store.add_subscription(Subscription(ChatRef("telegram", str(old)), "hf:daily"))
    bot.tg.fail_chat(old, "migrated", migrate_to=new)
    bot.tg.send_text(old, ADMIN, "/subscriptions")
    [reply] = await bot.tg.wait_sent(new, 1)
    assert "hf:daily" in reply.text
    assert await bot.store.list_subscriptions(ChatRef("telegram", str(old))) == []
    moved = await bot.store.list_subscriptions(ChatRef("telegram", str(new)))
    assert [s.feed for s in moved] == ["hf:daily"]


async def test_my_chat_member_keeps_the_active_flag(bot: Bot) -> None:
    chat = ChatRef("telegram", str(GROUP))
    await bot.store.save_chat(ChatSettings(chat))
    bot.tg.bot_removed(GROUP, ADMIN, "kicked")
    await active_becomes(bot, chat, False)
    bot.tg.bot_added(GROUP, ADMIN, "member")
    await active_becomes(bot, chat, True)
    bot.tg.bot_removed(GROUP, USER, "left")
    await active_becomes(bot, chat, False)
    bot.tg.bot_added(GROUP, ADMIN, "administrator")  # added back as an admin: active again
    await active_becomes(bot, chat, True)


# ---------------------------------------------------------------- modes and secrets


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_webhook_mode(
    paperboy: tuple[Paperboy, Settings], telegram_server: FakeTelegram
) -> None:
    app, settings = paperboy
    port = _free_port()
    settings.telegram_webhook_url = f"http://127.0.0.1:{port}/telegram/hook"
    settings.telegram_webhook_port = port
    adapter = TelegramAdapter(app, settings, webhook_listen="127.0.0.1")
    await adapter.start()
    try:
        webhook = telegram_server.webhook
        assert webhook is not None and webhook["url"] == settings.telegram_webhook_url
        assert telegram_server.token not in webhook["secret_token"]
        telegram_server.send_text(USER, USER, "/start")
        [reply] = await telegram_server.wait_sent(USER, 1)
        assert "Paperboy" in reply.text
    finally:
        await adapter.stop()


async def test_the_token_never_reaches_a_log_line(
    paperboy: tuple[Paperboy, Settings],
    telegram_server: FakeTelegram,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, settings = paperboy
    tg = telegram_server
    token = tg.token
    caplog.set_level(logging.DEBUG)
    for name in ("telegram", "httpx", "httpcore", "adapters", "bot", "aiohttp"):
        caplog.set_level(logging.DEBUG, logger=name)  # even if someone turns them all up
    adapter = TelegramAdapter(app, settings, poll_timeout=1)
    await adapter.start()
    try:
        tg.send_text(USER, USER, "/start")
        await tg.wait_sent(USER, 1)
        tg.fail_next("getUpdates", 502, "Bad Gateway")  # logged by PTB with the URL around it
        tg.fail_chat(-77, "blocked")
        with pytest.raises(sending.ChatGone):
            await adapter.send(ChatRef("telegram", "-77"), Message([Paragraph((Text("x"),))]))
        tg.send_text(USER, USER, "/help")
        await tg.wait_sent(USER, 2)
    finally:
        await adapter.stop()

    # A token the server refuses: PTB's own error quotes it; ours must not.
    bad = TelegramAdapter(app, replace(settings, telegram_bot_token="1234:wrong-token-value"))
    with pytest.raises(RuntimeError) as info:
        await bad.start()
    assert "1234:wrong-token-value" not in str(info.value)

    assert len(caplog.records) > 20  # DEBUG really was captured
    assert any("httpx" in r.name or "telegram" in r.name for r in caplog.records)
    assert "[REDACTED]" in caplog.text  # PTB did log it (its URLs), and it was caught
    assert token not in caplog.text
    assert token.split(":", 1)[1] not in caplog.text
    assert "1234:wrong-token-value" not in caplog.text
    for record in caplog.records:
        assert token not in record.getMessage()
        assert token not in (record.exc_text or "")


async def test_callback_data_longer_than_64_bytes_goes_through_a_key(bot: Bot) -> None:
    chat = ChatRef("telegram", str(USER))
    long_arg = "ö" * 70  # 140 bytes
    message = Message(
        [Paragraph((Text("pick"),))], [[Button("Long", command="help", arg=long_arg)]]
    )
    [message_id] = await bot.adapter.send(chat, message)
    [button] = bot.tg.sent_to(USER)[-1].buttons
    assert len(button["callback_data"].encode()) <= 64
    query = bot.tg.press_button(USER, int(message_id), USER, "Long")
    await bot.tg.wait_for(lambda: query in bot.tg.callback_answers)
    assert "Too many arguments" in bot.tg.callback_answers[query]["text"]  # /help got the arg


async def test_replies_and_long_buttons_still_work_after_a_restart(bot: Bot) -> None:
    chat = ChatRef("telegram", str(USER))
    [explanation] = await bot.adapter.reply(chat, Reply.text("An explanation."), paper=HOSTILE_ID)
    button = Button("Long", command="help", arg="ö" * 70)  # 140 bytes: goes through a key
    [buttons] = await bot.adapter.send(chat, Message([Paragraph((Text("pick"),))], [[button]]))
    await bot.adapter.stop()

    # A new process: nothing in memory, everything in the store.
    restarted = TelegramAdapter(bot.app, bot.settings, poll_timeout=1)
    await restarted.start()
    try:
        [answer] = await say(bot, USER, USER, "why?", reply_to_message_id=int(explanation))
        assert answer.text == f"About {HOSTILE_ID}: you asked “why?”."
        query = bot.tg.press_button(USER, int(buttons), USER, "Long")
        await bot.tg.wait_for(lambda: query in bot.tg.callback_answers)
        assert "Too many arguments" in bot.tg.callback_answers[query]["text"]
    finally:
        await restarted.stop()
