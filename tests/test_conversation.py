"""bot/conversation.py: the one reply policy, against a scripted Outbound and a small store."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot import conversation
from bot.conversation import Conversation, fit_button, paper_of
from bot.doc import Message, Paragraph, Reply, Text
from bot.models import ChatRef
from bot.sending import (
    ChatGone,
    ChatMoved,
    PermanentError,
    RetryAfter,
    SendError,
    Sent,
    TransientError,
)

OLD = ChatRef("telegram", "-1")
NEW = ChatRef("telegram", "-1001")


class Store:
    """The store calls Conversation makes, kept in memory."""

    def __init__(self) -> None:
        self.migrated: list[tuple[ChatRef, ChatRef]] = []
        self.active: dict[ChatRef, bool] = {}
        self.papers: dict[tuple[str, str], str] = {}
        self.callbacks: dict[str, str] = {}

    async def migrate_chat(self, old: ChatRef, new: ChatRef) -> None:
        self.migrated.append((old, new))

    async def set_chat_active(self, chat: ChatRef, active: bool) -> None:
        self.active[chat] = active

    async def remember_message_papers(self, chat: ChatRef, ids: list[str], paper: str) -> None:
        for message_id in ids:
            self.papers[(chat.chat_id, message_id)] = paper

    async def message_paper(self, chat: ChatRef, message_id: str) -> str | None:
        return self.papers.get((chat.chat_id, message_id))

    async def save_callbacks(self, callbacks: dict[str, str]) -> None:
        self.callbacks.update(callbacks)

    async def load_callback(self, key: str) -> str | None:
        return self.callbacks.get(key)


class Out:
    """An Outbound whose posts fail as scripted, then succeed."""

    def __init__(self, *errors: SendError) -> None:
        self.errors = list(errors)
        self.posts: list[tuple[ChatRef, str, str | None]] = []
        self.edits: list[tuple[list[str], str]] = []
        self.deleted: list[list[str]] = []
        self.next_id = 100

    async def post(self, chat: ChatRef, message: Message, *, reply_to: str | None) -> Sent:
        if self.errors:
            raise self.errors.pop(0)
        self.posts.append((chat, _text(message), reply_to))
        self.next_id += 1
        return Sent([str(self.next_id)], _text(message))

    async def edit(self, chat: ChatRef, sent: Sent, message: Message) -> Sent:
        self.edits.append((sent.ids, _text(message)))
        return Sent(sent.ids, _text(message))

    async def delete(self, chat: ChatRef, sent: Sent) -> None:
        self.deleted.append(sent.ids)

    async def attach(self, chat: ChatRef, document: Any) -> list[str]:
        return []


def _text(message: Message) -> str:
    return " ".join(str(getattr(b, "children", "")) for b in message.blocks)


def _conversation(store: Store) -> Conversation:
    return Conversation(store, max_wait=5.0)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conversation, "TRANSIENT_WAIT_SECONDS", 0.0)


async def test_a_moved_chat_is_migrated_and_the_reply_goes_on_there() -> None:
    store, out = Store(), Out(ChatMoved(NEW))
    ids = await _conversation(store).reply(out, OLD, Reply.text("hi"), reply_to="7")
    assert ids == ["101"]
    assert store.migrated == [(OLD, NEW)]
    assert out.posts[0][0] == NEW and out.posts[0][2] is None  # the replied-to message stayed


async def test_a_gone_chat_is_switched_off_and_nothing_more_is_sent() -> None:
    store, out = Store(), Out(ChatGone("blocked"))
    reply = Reply([Message([Paragraph((Text("a"),))]), Message([Paragraph((Text("b"),))])])
    assert await _conversation(store).reply(out, OLD, reply) == []
    assert store.active == {OLD: False}
    assert out.posts == []


async def test_transient_errors_and_short_flood_waits_are_retried() -> None:
    store, out = Store(), Out(TransientError("502"), RetryAfter(0.01))
    assert await _conversation(store).reply(out, OLD, Reply.text("hi")) == ["101"]


async def test_long_flood_waits_and_permanent_errors_give_up() -> None:
    for error in (RetryAfter(60.0), PermanentError("bad request")):
        store, out = Store(), Out(error)
        assert await _conversation(store).reply(out, OLD, Reply.text("hi")) == []
        assert store.active == {}


async def test_retries_are_bounded() -> None:
    store, out = Store(), Out(*[TransientError("502")] * 10)
    assert await _conversation(store).reply(out, OLD, Reply.text("hi")) == []
    assert len(out.errors) == 10 - conversation.ATTEMPTS


async def test_a_reply_about_a_paper_is_remembered_and_its_update_edits_it() -> None:
    store, out = Store(), Out()
    talk = _conversation(store)

    async def better() -> Reply:
        return Reply([Message([Paragraph((Text("LLM"),))]), Message([Paragraph((Text("+"),))])])

    reply = Reply.text("offline")
    reply.update = better
    [sent] = await talk.reply(out, OLD, reply, paper="1706.03762")
    assert await talk.paper_replied_to(OLD, sent) == "1706.03762"
    for _ in range(100):
        if len(out.posts) == 2:
            break
        await asyncio.sleep(0.01)
    assert out.edits and out.edits[0][0] == [sent]
    assert store.papers[(OLD.chat_id, "102")] == "1706.03762"  # the new part, too
    await talk.close()


async def test_long_button_data_goes_through_a_key() -> None:
    store = Store()
    talk = _conversation(store)
    long: dict[str, str] = {}
    data = fit_button("help", "ö" * 70, 64, long)
    assert len(data.encode()) <= 64 and long
    await talk.save_buttons(long)
    assert await Conversation(store).button(data) == ("help", "ö" * 70)  # type: ignore[arg-type]
    assert await talk.button(fit_button("paper", "1706.03762", 64, {})) == ("paper", "1706.03762")


def test_paper_of_knows_which_commands_are_about_a_paper() -> None:
    assert paper_of("explain", "1706.03762v2") == "1706.03762"
    assert paper_of("ask", {"id": "arXiv:1706.03762", "question": "why?"}) == "1706.03762"
    assert paper_of("paper", "1706.03762") is None
    assert paper_of("explain", "not-an-id") is None
