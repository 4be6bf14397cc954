"""Telegram updates in: commands, buttons, follow-up replies, reactions, membership.

Everything a person does reaches the core here as a Context and a command (bot/commands.py);
what a reply to one of our messages means, which paper an answer is about and what a
long button's data was come from bot/conversation.py, so nothing here names a command or
touches the store.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from cachetools import TTLCache
from telegram import Bot, ReactionTypeEmoji, Update, User
from telegram import Message as TgMessage
from telegram import error as tg_error
from telegram.constants import ChatAction, ChatMemberStatus, ChatType
from telegram.ext import ContextTypes

from adapters.telegram.chats import PLATFORM, chat_kind, telegram_chat_id, thread_id
from bot import learning
from bot.commands import COMMANDS, Command, Context, run_text, split_command_line
from bot.conversation import FOLLOW_UP, follow_up, paper_of
from bot.doc import Reply, block_text
from bot.logs import redact
from bot.models import ChatRef

if TYPE_CHECKING:
    from adapters.telegram.adapter import TelegramAdapter

log = logging.getLogger(__name__)

MAX_ALERT = 200  # answerCallbackQuery text
# Telegram posts as this user when a group admin writes anonymously.
GROUP_ANONYMOUS_BOT = 1087968824
_ADMIN_STATUSES = (ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR)
_PRESENT_STATUSES = (*_ADMIN_STATUSES, ChatMemberStatus.MEMBER, ChatMemberStatus.RESTRICTED)


class Inbound:
    """The adapter's update handlers (registered by TelegramAdapter.start)."""

    def __init__(self, adapter: TelegramAdapter, *, admin_cache_seconds: float) -> None:
        self.adapter = adapter
        self.app = adapter.app
        self.conversation = adapter.conversation
        # (chat id, user id) -> is admin. Seconds at most: a demoted admin must lose admin
        # commands promptly; a chat_member update about them drops their entry at once.
        self._admins: TTLCache[tuple[int, int], bool] = TTLCache(10_000, admin_cache_seconds)

    @property
    def bot(self) -> Bot:
        return self.adapter.application.bot

    async def on_reaction(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """👍/👎 (❤, 🔥, 💩) on a one-paper message votes on it; ✍ saves it."""
        change = update.message_reaction
        if change is None:
            return
        actor = change.user or change.actor_chat
        if actor is None:
            return

        def emoji(reactions: Any) -> set[str]:
            return {r.emoji for r in reactions if isinstance(r, ReactionTypeEmoji)}

        old, new = emoji(change.old_reaction), emoji(change.new_reaction)
        chat = ChatRef(PLATFORM, str(change.chat.id))
        try:
            await learning.react(
                self.app, chat, str(actor.id), str(change.message_id), new - old, old - new
            )
        except LookupError:
            return  # a paper arXiv no longer knows: nothing to learn
        except Exception:
            log.exception("telegram: a reaction in %s could not be counted", chat.key)

    async def _replied_paper(self, chat: ChatRef, replied: TgMessage) -> str | None:
        """The paper of the message replied to, if it is one of ours about a paper."""
        author = replied.from_user
        if author is not None and author.id != self.bot.id:
            return None  # someone else's message: no need to ask the store
        return await self.conversation.paper_replied_to(chat, str(replied.message_id))

    def _chat_ref(self, message: TgMessage) -> ChatRef:
        thread = message.message_thread_id if message.is_topic_message else None
        return ChatRef(PLATFORM, str(message.chat.id), str(thread) if thread else None)

    async def _is_admin(self, chat_id: int, user_id: int) -> bool:
        key = (chat_id, user_id)
        cached = self._admins.get(key)
        if cached is not None:
            return cached
        try:
            member = await self.bot.get_chat_member(chat_id, user_id)
            is_admin = member.status in _ADMIN_STATUSES
        except tg_error.TelegramError as e:
            log.info("telegram: cannot check admin rights in %s: %s", chat_id, redact(str(e)))
            return False  # not cached: the next try may work
        self._admins[key] = is_admin
        return is_admin

    async def _context(
        self,
        message: TgMessage,
        chat: ChatRef,
        command: Command | None,
        presser: User | None = None,
    ) -> Context:
        """Who runs `command` where. `presser`: whoever pressed a button under `message`."""
        tg_chat = message.chat
        kind = chat_kind(tg_chat.type)
        user = presser or message.from_user
        sender_chat = None if presser else message.sender_chat
        needs_admin = command is not None and command.admin_only
        if kind == "private":
            is_admin = True  # a private chat is its user's
        elif presser is not None:
            # Anyone who sees a group's or channel's buttons may press them.
            is_admin = needs_admin and await self._is_admin(tg_chat.id, presser.id)
        elif kind == "channel":
            is_admin = True  # channel posts come from its admins
        elif sender_chat is not None and sender_chat.id == tg_chat.id:
            is_admin = True  # an anonymous group admin
        elif user is not None and user.id != GROUP_ANONYMOUS_BOT and needs_admin:
            is_admin = await self._is_admin(tg_chat.id, user.id)
        else:
            is_admin = False  # only admin-only commands ask; the rest do not care
        return Context(
            chat=chat,
            user_id=str(user.id if user else (sender_chat or tg_chat).id),
            chat_kind=kind,
            is_admin=is_admin,
            images=True,
        )

    async def on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or not message.text:
            return
        chat = self._chat_ref(message)
        invocation = split_command_line(message.text)
        if invocation is None:
            await self._on_plain_text(message, chat)
            return
        mention = invocation.bot_mention
        if mention and self.adapter.username and mention.lower() != self.adapter.username.lower():
            return  # a command for another bot in the same group
        private = message.chat.type == ChatType.PRIVATE
        if invocation.name not in COMMANDS and not (private or mention):
            return  # in groups, unknown commands are likely another bot's
        command = COMMANDS.get(invocation.name)
        ctx = await self._context(message, chat, command)
        if command is not None and command.slow:
            await self._typing(chat)
        reply = await run_text(self.app, ctx, invocation.name, invocation.text)
        paper = paper_of(invocation.name, invocation.text)
        reply_to = None if private else message.message_id
        await self.adapter.reply(chat, reply, reply_to=reply_to, paper=paper)

    async def _on_plain_text(self, message: TgMessage, chat: ChatRef) -> None:
        """A reply to one of our explanations is a follow-up question about that paper."""
        replied = message.reply_to_message
        if replied is None:
            return
        paper = await self._replied_paper(chat, replied)
        if paper is None:
            return
        ctx = await self._context(message, chat, FOLLOW_UP)
        await self._typing(chat)
        reply = await follow_up(self.app, ctx, paper, message.text or "")
        reply_to = None if message.chat.type == ChatType.PRIVATE else message.message_id
        await self.adapter.reply(chat, reply, reply_to=reply_to, paper=paper)

    async def _typing(self, chat: ChatRef) -> None:
        # Cosmetic: the reply itself reports any real problem.
        with contextlib.suppress(tg_error.TelegramError):
            await self.bot.send_chat_action(
                telegram_chat_id(chat), ChatAction.TYPING, message_thread_id=thread_id(chat)
            )

    async def on_callback(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None:
            return
        answered = False
        try:
            parsed = await self.conversation.button(query.data or "")
            message = query.message
            if parsed is None or parsed[0] not in COMMANDS or not isinstance(message, TgMessage):
                await query.answer("This button no longer works. Try the command instead.")
                answered = True
                return
            name, arg = parsed
            chat = self._chat_ref(message)
            # The presser, not the message's author (our bot), runs the command.
            ctx = await self._context(message, chat, COMMANDS[name], presser=query.from_user)
            if COMMANDS[name].slow:
                await query.answer("Working on it…")
                answered = True
            reply = await run_text(self.app, ctx, name, arg)
            alert = _short_alert(reply)
            if alert is not None and not answered:
                # Refusals and usage errors go only to the presser, not to the whole chat.
                await query.answer(alert, show_alert=True)
                answered = True
                return
            if not answered:
                await query.answer()
                answered = True
            paper = paper_of(name, arg)
            await self.adapter.reply(chat, reply, paper=paper)
        finally:
            if not answered:
                with contextlib.suppress(tg_error.TelegramError):
                    await query.answer()

    async def on_chat_member(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Someone's status changed in a chat: forget what we knew about their admin rights."""
        change = update.chat_member
        if change is not None:
            self._admins.pop((change.chat.id, change.new_chat_member.user.id), None)

    async def on_my_chat_member(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        change = update.my_chat_member
        if change is None:
            return
        chat = ChatRef(PLATFORM, str(change.chat.id))
        present = change.new_chat_member.status in _PRESENT_STATUSES
        if change.new_chat_member.status == ChatMemberStatus.RESTRICTED:
            present = bool(getattr(change.new_chat_member, "is_member", True))
        log.info("telegram: bot %s in %s", "present" if present else "gone", chat.key)
        await self.conversation.present(chat, present)

    async def on_migrate(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or not message.migrate_to_chat_id:
            return
        old = ChatRef(PLATFORM, str(message.chat.id))
        new = ChatRef(PLATFORM, str(message.migrate_to_chat_id))
        log.info("telegram: %s became %s", old.key, new.key)
        await self.conversation.moved(old, new)

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        error = context.error
        if isinstance(error, tg_error.NetworkError | tg_error.TimedOut):
            log.warning("telegram: network trouble: %s", redact(str(error)))
            return
        log.error("telegram: handling an update failed", exc_info=error)


def _short_alert(reply: Reply) -> str | None:
    """An ephemeral one-paragraph reply short enough for a callback alert, as plain text."""
    if not reply.ephemeral or len(reply.messages) != 1 or reply.messages[0].buttons:
        return None
    text = "\n".join(block_text(block) for block in reply.messages[0].blocks)
    return text if 0 < len(text) <= MAX_ALERT else None
