"""Telegram: python-telegram-bot in the app's event loop, Bot API errors mapped onto
bot.sending.

The adapter runs PTB's Application inside the app's event loop (initialize/start and the
updater, never run_polling), so it sits beside the other adapters and the delivery loop.
Long polling by default; a webhook when TELEGRAM_WEBHOOK_URL is set. Updates go to
inbound.py; replies go out by the core's policy (bot/conversation.py) through this
adapter's Outbound methods; digests through `send` (fastpath.py for text parts).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from telegram import (
    BotCommand,
    BotCommandScopeAllChatAdministrators,
    BotCommandScopeAllGroupChats,
    BotCommandScopeAllPrivateChats,
    BotCommandScopeDefault,
    InputFile,
    LinkPreviewOptions,
    ReplyParameters,
)
from telegram import Message as TgMessage
from telegram import error as tg_error
from telegram.constants import ParseMode
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    ChatMemberHandler,
    MessageHandler,
    MessageReactionHandler,
    filters,
)

from adapters.telegram.chats import (
    PLATFORM,
    is_group,
    send_limits,
    telegram_chat_id,
    thread_id,
)
from adapters.telegram.errors import map_error, retry_after_seconds
from adapters.telegram.fastpath import FastPath
from adapters.telegram.inbound import Inbound
from adapters.telegram.render import Plan, plan
from bot import sending
from bot.commands import COMMANDS
from bot.conversation import Conversation
from bot.doc import Document, Message, Reply
from bot.logs import install_redaction, quiet_http_loggers
from bot.models import ChatRef
from bot.pacing import Pacer
from bot.sending import Sent
from bot.startup import PlatformError, describe, retrying

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.service import Paperboy

log = logging.getLogger(__name__)

# chat_member: someone's rights changed in a chat where we are admin (drops the admin cache).
# message_reaction: 👍/👎 on a one-paper message is a vote (issue 14; in groups Telegram
# sends them only to bots that are admins).
ALLOWED_UPDATES = [
    "message",
    "channel_post",
    "callback_query",
    "my_chat_member",
    "chat_member",
    "message_reaction",
]


class TelegramAdapter:
    """Paperboy on Telegram: bot.sending.Adapter for digests, bot.sending.Outbound for
    replies, inbound.Inbound for people."""

    platform = PLATFORM

    def __init__(
        self,
        app: Paperboy,
        settings: Settings,
        *,
        poll_timeout: float = 30.0,
        webhook_listen: str | None = None,
        admin_cache_seconds: float = 5.0,
        max_wait_seconds: float = 60.0,
        start_backoff: float = 1.0,
    ) -> None:
        if not settings.telegram_bot_token:
            raise ValueError("TELEGRAM_BOT_TOKEN is not set")
        self.app = app
        self.settings = settings
        self.poll_timeout = poll_timeout
        # TELEGRAM_WEBHOOK_LISTEN: loopback unless set (the container image sets 0.0.0.0).
        self.webhook_listen = webhook_listen or settings.telegram_webhook_listen
        # Seconds at most: a demoted admin must lose admin commands promptly.
        self.admin_cache_seconds = admin_cache_seconds
        self.max_wait_seconds = max_wait_seconds  # longest RetryAfter we sit out ourselves
        self.start_backoff = start_backoff  # first wait when Telegram is unreachable at start
        # Set (with a PlatformError) when polling cannot go on: the app stops on it.
        self.failed: asyncio.Future[None] | None = None
        self._conflict_since: float | None = None
        self._conflict_last = 0.0
        self.username: str | None = None
        self._application: Application[Any, Any, Any, Any, Any, Any] | None = None
        # Replies, message -> paper memory and long button data: the core's (with the store
        # behind it, which holds the truth for every worker).
        self.conversation = Conversation(app.store, max_wait=max_wait_seconds)
        self.inbound = Inbound(self, admin_cache_seconds=admin_cache_seconds)
        # Digests' text parts go out through httpx directly; PTB does the rest.
        self.fastpath = FastPath(settings)
        # Every message we post, digest or reply, waits for its slot here (bot/pacing.py).
        self.limits = send_limits(settings)
        self.pacer = Pacer(self.limits)
        install_redaction([settings.telegram_bot_token])

    # -------------------------------------------------------------- lifecycle

    @property
    def application(self) -> Application[Any, Any, Any, Any, Any, Any]:
        if self._application is None:
            raise RuntimeError("the Telegram adapter is not started")
        return self._application

    async def start(self, *, receive: bool = True) -> None:
        """Connect; `receive=False` only sends (`deliver --now`): no polling or webhook,
        which would take the updates away from a bot running with the same token."""
        quiet_http_loggers()
        settings = self.settings
        application = (
            Application.builder()
            .token(settings.telegram_bot_token)
            .base_url(settings.telegram_api_base_url)
            .base_file_url(settings.telegram_file_base_url)
            # Slow commands (explain) must not hold up everyone else's.
            .concurrent_updates(True)
            .build()
        )
        text = filters.TEXT & (filters.UpdateType.MESSAGE | filters.UpdateType.CHANNEL_POST)
        inbound = self.inbound
        application.add_handler(MessageHandler(text, inbound.on_message))
        application.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, inbound.on_migrate))
        application.add_handler(CallbackQueryHandler(inbound.on_callback))
        application.add_handler(MessageReactionHandler(inbound.on_reaction))
        application.add_handler(
            ChatMemberHandler(inbound.on_my_chat_member, ChatMemberHandler.MY_CHAT_MEMBER)
        )
        application.add_handler(
            ChatMemberHandler(inbound.on_chat_member, ChatMemberHandler.CHAT_MEMBER)
        )
        application.add_error_handler(inbound.on_error)
        self.failed = asyncio.get_running_loop().create_future()
        try:
            # First contact (getMe): retried while Telegram (or the network) is unreachable.
            async for attempt in retrying(
                "Telegram",
                (tg_error.NetworkError,),
                permanent=(tg_error.BadRequest,),
                first=self.start_backoff,
                most=60.0,
                give_up_after=settings.platform_start_retry_seconds,
            ):
                with attempt:
                    await application.initialize()
        except tg_error.TelegramError as e:
            await application.bot.shutdown()
            if isinstance(e, tg_error.InvalidToken):
                # PTB's own message quotes the token: never let it out.
                raise PlatformError(
                    "Telegram refused the bot token: check TELEGRAM_BOT_TOKEN"
                ) from None
            if isinstance(e, tg_error.NetworkError) and not isinstance(e, tg_error.BadRequest):
                raise PlatformError(f"cannot reach Telegram: {describe(e)}") from None
            raise PlatformError(f"Telegram refused to start: {describe(e)}") from None
        self._application = application
        self.username = application.bot.username
        self.fastpath.open()
        if not receive:
            log.info("telegram: @%s connected for sending only", self.username)
            return
        try:
            await self.set_commands()
        except tg_error.TelegramError as e:  # the menus are a convenience: carry on
            log.warning("telegram: cannot set the command menus: %s", describe(e))
        await application.start()
        updater = application.updater
        assert updater is not None
        if settings.telegram_webhook_url:
            path = urlsplit(settings.telegram_webhook_url).path.strip("/")
            await updater.start_webhook(
                listen=self.webhook_listen,
                port=settings.telegram_webhook_port,
                url_path=path,
                webhook_url=settings.telegram_webhook_url,
                secret_token=self.webhook_secret,
                allowed_updates=ALLOWED_UPDATES,
            )
            log.info("telegram: @%s receiving updates by webhook", self.username)
        else:
            await updater.start_polling(
                timeout=int(self.poll_timeout),
                allowed_updates=ALLOWED_UPDATES,
                error_callback=self._on_polling_error,
            )
            log.info("telegram: @%s polling for updates", self.username)

    @property
    def webhook_secret(self) -> str:
        """Stable across restarts, derived one-way from the token; Telegram echoes it to us."""
        digest = hashlib.sha256(b"paperboy-webhook:" + self.settings.telegram_bot_token.encode())
        return digest.hexdigest()

    async def set_commands(self) -> None:
        """Command menus per scope: group members see the commands anyone may use, chat
        admins and private chats (whose user is their admin) see every command."""
        every = [BotCommand(cmd.name, cmd.description[:256]) for cmd in COMMANDS.values()]
        public = [
            BotCommand(cmd.name, cmd.description[:256])
            for cmd in COMMANDS.values()
            if not cmd.admin_only
        ]
        bot = self.application.bot
        await bot.set_my_commands(public, scope=BotCommandScopeDefault())
        await bot.set_my_commands(public, scope=BotCommandScopeAllGroupChats())
        await bot.set_my_commands(every, scope=BotCommandScopeAllPrivateChats())
        await bot.set_my_commands(every, scope=BotCommandScopeAllChatAdministrators())

    def _on_polling_error(self, error: tg_error.TelegramError) -> None:
        """getUpdates failed. A 409 Conflict means another process polls with this token:
        after a short grace (a restart's old process may still be finishing its poll) the
        bot stops with a clear message instead of logging tracebacks forever."""
        now = time.monotonic()
        if not isinstance(error, tg_error.Conflict):
            log.warning("telegram: fetching updates failed: %s", describe(error))
            return
        if self._conflict_since is None or now - self._conflict_last > 60.0:
            self._conflict_since = now
            log.warning("telegram: another process is polling with this bot token (409)")
        self._conflict_last = now
        grace = self.settings.telegram_conflict_grace_seconds
        if now - self._conflict_since >= grace and self.failed and not self.failed.done():
            self.failed.set_exception(
                PlatformError(
                    "another process is polling Telegram with this bot token (409 Conflict) "
                    f"for {grace:.0f}s: stop it, or run several workers in webhook mode "
                    "(TELEGRAM_WEBHOOK_URL)"
                )
            )

    async def stop(self) -> None:
        if self.failed is not None:
            if self.failed.done() and not self.failed.cancelled():
                self.failed.exception()  # retrieved: serve() has acted on it
            else:
                self.failed.cancel()
        await self.fastpath.aclose()
        application = self._application
        if application is None:
            return
        if application.updater is not None and application.updater.running:
            await application.updater.stop()
        if application.running:
            await application.stop()
        await self.conversation.close()
        await application.shutdown()
        self._application = None

    # ---------------------------------------------------------------- sending

    async def ready(self, chat: ChatRef) -> None:
        """Wait until the chat's own limits let one more message go (the dispatcher asks
        before it takes a send slot)."""
        await self.pacer.ready(chat.chat_id, group=is_group(chat))

    async def send(self, chat: ChatRef, message: Message) -> list[str]:
        """For the delivery outbox: errors come out as bot.sending errors to act on.

        The hot path of a delivery round: each distinct message is prepared once and its
        text parts posted by the fast path (fastpath.py, which states the contract)."""
        prepared = self.fastpath.prepare(message)
        return await self._send_plan(
            chat,
            prepared.plan,
            payloads=prepared.payloads,
            paid=self.settings.telegram_paid_broadcast,
        )

    async def _send_plan(
        self,
        chat: ChatRef,
        ready: Plan,
        *,
        payloads: list[bytes] | None = None,
        reply_to: int | None = None,
        paid: bool = False,
        started: bool = False,
    ) -> list[str]:
        """Send every part. A RetryAfter before anything went out is the caller's to act on
        (bot/conversation.py for replies, the outbox for digests); one after the first part
        is sat out here, so a retry never repeats parts. `started`: something of this
        message went out already (an edit's extra parts)."""
        bot = self.application.bot
        parts, markup = ready.parts, ready.markup
        if ready.long_buttons:
            await self.conversation.save_buttons(ready.long_buttons)
        chat_id = telegram_chat_id(chat)
        thread = thread_id(chat)
        group = is_group(chat)
        ids: list[str] = []
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            reply = (
                ReplyParameters(reply_to, allow_sending_without_reply=True)
                if reply_to is not None and index == 0
                else None
            )
            while True:
                await self.pacer.acquire(chat.chat_id, group=group)
                try:
                    sent: TgMessage | int
                    if payloads is not None and reply is None:
                        sent = await self.fastpath.post(chat, payloads[index])
                    elif part.photo is not None:
                        sent = await bot.send_photo(
                            chat_id,
                            part.photo,
                            caption=part.html or None,
                            parse_mode=ParseMode.HTML,
                            reply_markup=markup if last else None,
                            message_thread_id=thread,
                            reply_parameters=reply,
                            allow_paid_broadcast=paid or None,
                        )
                    else:
                        sent = await bot.send_message(
                            chat_id,
                            part.html,
                            parse_mode=ParseMode.HTML,
                            link_preview_options=LinkPreviewOptions(is_disabled=True),
                            reply_markup=markup if last else None,
                            message_thread_id=thread,
                            reply_parameters=reply,
                        )
                    break
                except tg_error.RetryAfter as e:
                    wait = retry_after_seconds(e)
                    if (ids or started) and wait <= self.max_wait_seconds:
                        log.info("telegram: flood wait %.0fs in %s", wait, chat.key)
                        await asyncio.sleep(wait)
                        continue
                    raise sending.RetryAfter(wait) from None
                except tg_error.TelegramError as e:
                    raise map_error(e, chat) from None
            ids.append(str(sent if isinstance(sent, int) else sent.message_id))
        return ids

    # ------------------------------------------- replies (bot.sending.Outbound)

    async def reply(
        self,
        chat: ChatRef,
        reply: Reply,
        *,
        reply_to: int | None = None,
        paper: str | None = None,
    ) -> list[str]:
        """Send a command's reply by the core's policy (bot/conversation.py)."""
        return await self.conversation.reply(
            self,
            chat,
            reply,
            reply_to=str(reply_to) if reply_to is not None else None,
            paper=paper,
        )

    async def post(self, chat: ChatRef, message: Message, *, reply_to: str | None) -> Sent:
        ready = plan(message)
        ids = await self._send_plan(chat, ready, reply_to=int(reply_to) if reply_to else None)
        return Sent(ids, ready)

    async def edit(self, chat: ChatRef, sent: Sent, message: Message) -> Sent:
        new_plan = plan(message)
        if new_plan.long_buttons:
            await self.conversation.save_buttons(new_plan.long_buttons)
        old_plan: Plan = sent.state
        old_ids = sent.ids
        last_old, last_new = len(old_ids) - 1, len(new_plan.parts) - 1
        kept = 0
        for index, (was, part) in enumerate(zip(old_plan.parts, new_plan.parts, strict=False)):
            markup = new_plan.markup if index == last_new else None
            old_markup = old_plan.markup if index == last_old else None
            if part.html == was.html and markup == old_markup and part.photo == was.photo:
                kept += 1
                continue
            if part.photo is not None or was.photo is not None:
                break  # an image and its caption are not edited: re-sent below
            await self._tg_call(
                chat,
                "editMessageText",
                message_id=int(old_ids[index]),
                text=part.html,
                parse_mode=ParseMode.HTML,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
                reply_markup=markup,
            )
            kept += 1
        for message_id in old_ids[kept:]:
            await self._tg_call(chat, "deleteMessage", message_id=int(message_id))
        ids = old_ids[:kept]
        if kept < len(new_plan.parts):
            rest = Plan(new_plan.parts[kept:], new_plan.markup)
            # Edits (or deletes) went out already: a flood wait is sat out, not raised.
            ids = ids + await self._send_plan(chat, rest, started=True)
        return Sent(ids, new_plan)

    async def delete(self, chat: ChatRef, sent: Sent) -> None:
        for message_id in sent.ids:
            await self._tg_call(chat, "deleteMessage", message_id=int(message_id))

    async def attach(self, chat: ChatRef, document: Document) -> list[str]:
        """A file (a .bib export) as a Telegram document, uploaded as multipart."""
        try:
            sent = await self.application.bot.send_document(
                telegram_chat_id(chat),
                InputFile(document.data, filename=document.filename),
                message_thread_id=thread_id(chat),
            )
        except tg_error.TelegramError as e:
            raise map_error(e, chat) from None
        return [str(sent.message_id)]

    async def _tg_call(self, chat: ChatRef, method: str, **kwargs: Any) -> None:
        """editMessageText / deleteMessage, sitting out short flood waits; "not modified"
        and an already deleted message are fine."""
        bot = self.application.bot
        call = {"editMessageText": bot.edit_message_text, "deleteMessage": bot.delete_message}
        while True:
            try:
                await call[method](chat_id=telegram_chat_id(chat), **kwargs)
                return
            except tg_error.RetryAfter as e:
                wait = retry_after_seconds(e)
                if wait > self.max_wait_seconds:
                    raise sending.RetryAfter(wait) from None
                await asyncio.sleep(wait)
            except tg_error.TelegramError as e:
                text = str(e).lower()
                if isinstance(e, tg_error.BadRequest) and (
                    "not modified" in text or "message to delete not found" in text
                ):
                    return
                raise map_error(e, chat) from None
