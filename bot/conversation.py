"""Talking with a chat: the one policy for sending a reply, and what the bot remembers of
what it sent.

Every adapter sends its replies through `Conversation.reply`, handing it an Outbound
(bot/sending.py: post, edit, delete, attach) that only maps platform errors onto the
SendError family. What an error means is decided here, once:

- ChatMoved: the chat has a new id (a Telegram group became a supergroup). The chat is
  migrated in the store and the reply goes on under the new id.
- ChatGone: blocked, kicked, deleted. The chat is switched off (no more digests).
- TransientError: retried a few times, a moment apart (tenacity).
- RetryAfter: someone waits for this answer, so a short flood wait is sat out; a long one
  gives up, like any other SendError (logged).

The outbox dispatcher (bot/delivery) reads moved and gone chats the same way through
`settle_chat`, and keeps its own bookkeeping (leases, retries persisted in rows).

The store-backed pieces adapters need come from here too: which sent message is about
which paper (a reply to it asks that paper more; a reaction to it votes on it), button
data too long for a platform (kept under a short key every worker derives alike), a chat
that moved or that the bot left. Adapters never call the store themselves.

And the two things about commands an adapter must not know by name: which paper a
command is about (`paper_of`), and what a reply to a message about a paper runs
(`follow_up`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

from cachetools import LRUCache
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from bot import cards
from bot.commands import COMMANDS, Command, Context, run_args
from bot.doc import Document, Message, Reply
from bot.ids import InvalidArxivId, parse_arxiv_id
from bot.logs import redact
from bot.models import ChatRef
from bot.sending import (
    ChatGone,
    ChatMoved,
    Outbound,
    RetryAfter,
    SendError,
    Sent,
    TransientError,
)

if TYPE_CHECKING:
    from bot.service import Paperboy
    from bot.store.base import Store

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# Tries per message: a transient error or a short flood wait costs one each.
ATTEMPTS = 4
TRANSIENT_WAIT_SECONDS = 1.0
# A chat may move once (group -> supergroup); a second move in one reply is a loop.
MOVES = 2
# Long button data is saved to the store again after this long, which keeps the rows of
# buttons still being sent from being pruned (bot/delivery prunes after 30 days).
BUTTON_RESAVE_SECONDS = 86_400.0
LONG_BUTTON = "~"  # data of a button saved under a key: "~:<key>"


# ------------------------------------------------------------ what a chat's errors mean


async def settle_chat(store: Store, chat: ChatRef, error: ChatMoved | ChatGone) -> ChatRef | None:
    """What a moved or gone chat means for the chat, for replies and digests alike. A moved
    chat is migrated (settings, subscriptions, unsent outbox rows) and its new ref
    returned; a gone chat is switched off and None returned."""
    if isinstance(error, ChatMoved):
        log.info("chat %s moved to %s", chat.key, error.new_chat.key)
        await store.migrate_chat(chat, error.new_chat)
        return error.new_chat
    log.info("chat %s is gone (%s): pausing it", chat.key, error)
    await store.set_chat_active(chat, False)
    return None


# ----------------------------------------------------------- commands, without names

# Commands whose reply talks about one paper: a reply to that answer asks the paper more.
_ABOUT_A_PAPER = ("explain", "ask")
FOLLOW_UP: Command = COMMANDS["ask"]  # what a reply to a message about a paper runs


def paper_of(command: str, args: str | Mapping[str, object]) -> str | None:
    """The paper an explain/ask invocation is about (raw text, or typed options), so that
    replies to its answer can ask follow-ups; None for any other command."""
    if command not in _ABOUT_A_PAPER:
        return None
    if isinstance(args, str):
        words = args.split()
        first: object = words[0] if words else None
    else:
        first = args.get(FOLLOW_UP.args[0].name)
    if not isinstance(first, str) or not first.strip():
        return None
    try:
        return parse_arxiv_id(first).id
    except InvalidArxivId:
        return None


async def follow_up(service: Paperboy, ctx: Context, paper: str, text: str) -> Reply:
    """Someone replied `text` to a message about `paper`: a question about that paper."""
    paper_arg, question_arg = FOLLOW_UP.args
    values = {paper_arg.name: paper, question_arg.name: text}
    return await run_args(service, ctx, FOLLOW_UP.name, values)


SHOW_PAPER: Command = COMMANDS["paper"]  # what an arXiv link or id pasted alone runs


async def show_paper(service: Paperboy, ctx: Context, paper: str) -> Reply:
    """Someone pasted an arXiv link or id on its own: show that paper."""
    return await run_args(service, ctx, SHOW_PAPER.name, {SHOW_PAPER.args[0].name: paper})


# ------------------------------------------------------------------ button keys


def button_data(command: str, arg: str) -> str:
    return f"{command}:{arg}"


def parse_button_data(data: str) -> tuple[str, str] | None:
    command, sep, arg = data.partition(":")
    return (command, arg) if sep and command else None


def button_key(data: str) -> str:
    """The short key that stands for button data longer than a platform allows. Derived
    from the data alone, so every worker (and every restart) computes the same key."""
    return hashlib.sha256(data.encode()).hexdigest()[:24]


def fit_button(command: str, arg: str, limit: int, long: dict[str, str]) -> str:
    """A command button's data within `limit` bytes: longer data becomes `~:<key>` with
    the data put in `long` under that key (`Conversation.save_buttons` stores it before
    the message goes out)."""
    data = button_data(command, arg)
    if len(data.encode("utf-8")) <= limit:
        return data
    key = button_key(data)
    long[key] = data
    return button_data(LONG_BUTTON, key)


# ------------------------------------------------------------------ the conversation


class Conversation:
    """One per adapter: sends replies by the policy above, and fronts the store for what
    the adapter must remember across messages and workers (the store holds the truth;
    small caches here spare it the common lookups)."""

    def __init__(self, store: Store, *, max_wait: float = 60.0) -> None:
        self.store = store
        self.max_wait = max_wait  # the longest flood wait a reply sits out
        # (chat id, message id) -> paper, for follow-up replies on this worker.
        self._papers: LRUCache[tuple[str, str], str] = LRUCache(20_000)
        # key -> (long button data, when to save it again).
        self._buttons: LRUCache[str, tuple[str, float]] = LRUCache(10_000)
        self._edits: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        """Stop edits still waiting for their update (the adapter is stopping)."""
        for task in list(self._edits):
            task.cancel()
        await asyncio.gather(*self._edits, return_exceptions=True)

    # ------------------------------------------------------------ replies

    async def reply(
        self,
        via: Outbound,
        chat: ChatRef,
        reply: Reply,
        *,
        reply_to: str | None = None,
        paper: str | None = None,
    ) -> list[str]:
        """Send a command's reply; returns the ids of what went out. `paper`: what the
        reply is about (see `paper_of`), so that replies to it ask about that paper. A
        reply with an update (the LLM's explanation to come) is edited when it arrives."""
        ids: list[str] = []
        shown: list[Sent] = []
        for message in reply.messages:
            sent = await self._post(via, chat, message, reply_to)
            if sent is None:
                return ids  # the chat is gone, or the platform refused: said in the log
            chat, sent_message = sent
            ids.extend(sent_message.ids)
            shown.append(sent_message)
            # A one-paper card with vote buttons: reactions to it vote on that paper.
            about = paper or (None if reply.ephemeral else cards.voted_paper(message))
            if about:
                await self.remember(chat, sent_message.ids, about)
            if message.document is not None:
                attached = await self._attach(via, chat, message.document)
                if attached is not None:
                    chat, document_ids = attached
                    ids.extend(document_ids)
            reply_to = None
        if reply.update is not None and shown:
            # In the background: the handler returns, the edit comes when the update does.
            task = asyncio.create_task(self._edit_later(via, chat, shown, reply.update, paper))
            self._edits.add(task)
            task.add_done_callback(self._edits.discard)
        return ids

    async def _post(
        self, via: Outbound, chat: ChatRef, message: Message, reply_to: str | None
    ) -> tuple[ChatRef, Sent] | None:
        def post(to: ChatRef) -> Awaitable[Sent]:
            # After a move, the message replied to stayed in the old chat.
            return via.post(to, message, reply_to=reply_to if to == chat else None)

        return await self._send(chat, post)

    async def _attach(
        self, via: Outbound, chat: ChatRef, document: Document
    ) -> tuple[ChatRef, list[str]] | None:
        def attach(to: ChatRef) -> Awaitable[list[str]]:
            return via.attach(to, document)

        return await self._send(chat, attach)

    async def _send(
        self, chat: ChatRef, send: Callable[[ChatRef], Awaitable[_T]]
    ) -> tuple[ChatRef, _T] | None:
        """`send(chat)` by the policy; returns the chat it went to and what it returned,
        or None when it could not go."""
        for _move in range(MOVES + 1):
            try:
                async for attempt in self._retrying(chat):
                    with attempt:
                        result = await send(chat)
                return chat, result
            except (ChatMoved, ChatGone) as e:
                moved_to = await settle_chat(self.store, chat, e)
                if moved_to is None:
                    return None
                chat = moved_to
            except SendError as e:
                log.error("could not send to %s: %s", chat.key, redact(str(e)))
                return None
        log.error("could not send to %s: it keeps moving", chat.key)
        return None

    def _retrying(self, chat: ChatRef) -> AsyncRetrying:
        def worth_waiting(error: BaseException) -> bool:
            if isinstance(error, RetryAfter):
                return error.seconds <= self.max_wait
            return isinstance(error, TransientError)

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome is not None else None
            return error.seconds if isinstance(error, RetryAfter) else TRANSIENT_WAIT_SECONDS

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            log.info("sending to %s: %s; trying again", chat.key, redact(str(error)))

        return AsyncRetrying(
            retry=retry_if_exception(worth_waiting),
            wait=wait,
            stop=stop_after_attempt(ATTEMPTS),
            before_sleep=before_sleep,
            reraise=True,
        )

    async def _edit_later(
        self,
        via: Outbound,
        chat: ChatRef,
        shown: list[Sent],
        update: Callable[[], Awaitable[Reply]],
        paper: str | None,
    ) -> None:
        """Edit a sent reply into its update, message by message: what lines up is edited
        in place, old messages left over are deleted, new ones left over sent below."""
        try:
            better = await update()
            new_ids: list[str] = []
            for index, message in enumerate(better.messages):
                if index < len(shown):
                    old = shown[index]
                    now = await via.edit(chat, old, message)
                    new_ids += [i for i in now.ids if i not in old.ids]
                else:
                    sent = await self._post(via, chat, message, None)
                    if sent is None:
                        return
                    chat, more = sent
                    new_ids += more.ids
            for old in shown[len(better.messages) :]:
                await via.delete(chat, old)
            if paper and new_ids:
                await self.remember(chat, new_ids, paper)
        except asyncio.CancelledError:
            raise
        except SendError as e:
            log.info("could not edit a reply in %s: %s", chat.key, redact(str(e)))
        except Exception:
            log.exception("editing a reply in %s failed", chat.key)

    # ------------------------------------------------------- message -> paper

    async def remember(self, chat: ChatRef, message_ids: list[str], paper: str) -> None:
        """These sent messages are about `paper`: a reply to one, on any worker, asks about
        it; a reaction to one votes on it."""
        for message_id in message_ids:
            self._papers[(chat.chat_id, message_id)] = paper
        await remember_papers(self.store, chat, message_ids, paper)

    async def paper_replied_to(self, chat: ChatRef, message_id: str) -> str | None:
        """The paper of one of our messages that someone replied to, if it is about one."""
        key = (chat.chat_id, message_id)
        paper = self._papers.get(key)
        if paper is None:
            paper = await self.store.message_paper(chat, message_id)
            if paper is not None:
                self._papers[key] = paper
        return paper

    # ------------------------------------------------------------ long buttons

    async def save_buttons(self, long: Mapping[str, str]) -> None:
        """Store button data that went under a key (`fit_button`) before the message
        carrying it goes out, skipping what was saved lately. Raises TransientError when
        the store fails: without its data the button would not work, so the message is
        better sent later."""
        now = time.monotonic()
        fresh = {}
        for key, data in long.items():
            cached = self._buttons.get(key)
            if cached is None or cached[1] <= now:
                fresh[key] = data
        if not fresh:
            return
        try:
            await self.store.save_callbacks(fresh)
        except Exception as e:
            raise TransientError(f"cannot save button data ({type(e).__name__})") from e
        for key, data in fresh.items():
            self._buttons[key] = (data, now + BUTTON_RESAVE_SECONDS)

    async def button(self, data: str) -> tuple[str, str] | None:
        """(command, arg) of a pressed button's data, looking up a long one by its key;
        None when it cannot be read (or was pruned)."""
        parsed = parse_button_data(data)
        if parsed is None or parsed[0] != LONG_BUTTON:
            return parsed
        key = parsed[1]
        cached = self._buttons.get(key)
        if cached is not None:
            return parse_button_data(cached[0])
        stored = await self.store.load_callback(key)
        if stored is None:
            return None
        # Saved by another worker (or before a restart): recent, no need to save it again.
        self._buttons[key] = (stored, time.monotonic() + BUTTON_RESAVE_SECONDS)
        return parse_button_data(stored)

    # ------------------------------------------------------------- chat state

    async def moved(self, old: ChatRef, new: ChatRef) -> None:
        """The platform says a chat has a new id (a group became a supergroup)."""
        await settle_chat(self.store, old, ChatMoved(new))

    async def present(self, chat: ChatRef, present: bool) -> None:
        """The bot joined (digests on) or left (off) a chat."""
        await self.store.set_chat_active(chat, present)

    async def reactivate(self, platform: str, chat_ids: list[str]) -> list[ChatRef]:
        """The bot can post in these chats again: switch the paused ones back on; returns
        those it switched."""
        return await self.store.reactivate_chats(platform, chat_ids)


async def remember_papers(store: Store, chat: ChatRef, message_ids: list[str], paper: str) -> None:
    """Store which paper these sent messages are about (a reply, digest or card). The
    message went out whatever happens here: a failure only costs follow-ups and votes."""
    if not message_ids:
        return
    try:
        await store.remember_message_papers(chat, message_ids, paper)
    except Exception:
        log.exception("cannot remember the paper of messages in %s", chat.key)
