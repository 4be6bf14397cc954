"""Telegram: commands in, Telegram HTML out, Bot API errors mapped onto bot.sending.

The adapter runs python-telegram-bot's Application inside the app's event loop
(initialize/start and the updater, never run_polling), so it sits beside the other
adapters and the delivery loop. Long polling by default; a webhook when
TELEGRAM_WEBHOOK_URL is set.

`render_html` is the one place where text becomes Telegram HTML: every piece of data is
escaped exactly once there, and long messages are split at block boundaries (inside a
block at line or word boundaries, tags closed and reopened) so that no part is longer
than Telegram allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import html
import json
import logging
import time
import warnings
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from telegram import (
    BotCommand,
    BotCommandScopeAllChatAdministrators,
    BotCommandScopeAllGroupChats,
    BotCommandScopeAllPrivateChats,
    BotCommandScopeDefault,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    LinkPreviewOptions,
    ReactionTypeEmoji,
    ReplyParameters,
    Update,
    User,
)
from telegram import Message as TgMessage
from telegram import error as tg_error
from telegram.constants import ChatAction, ChatMemberStatus, ChatType, ParseMode
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    ChatMemberHandler,
    ContextTypes,
    MessageHandler,
    MessageReactionHandler,
    filters,
)

from bot import cards, learning, sending
from bot.commands import COMMANDS, ChatKind, Context, run_text, split_command_line
from bot.config import USER_AGENT
from bot.doc import (
    Block,
    Bold,
    Button,
    Code,
    CodeBlock,
    Document,
    Heading,
    Inline,
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
from bot.ids import InvalidArxivId, parse_arxiv_id
from bot.logs import install_redaction, quiet_http_loggers, redact
from bot.models import ChatRef
from bot.pacing import Pacer, SendLimits
from bot.startup import PlatformError, describe, retrying

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.service import Paperboy

log = logging.getLogger(__name__)

PLATFORM = "telegram"
MAX_TEXT = 4096  # UTF-16 code units, after entity parsing
MAX_CAPTION = 1024
MAX_CALLBACK_DATA = 64  # bytes
MAX_ALERT = 200  # answerCallbackQuery text
# Long callback data is saved to the store again after this long, which keeps the rows of
# buttons still being sent from being pruned (bot/delivery.py prunes after 30 days).
CALLBACK_RESAVE_SECONDS = 86_400.0
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
# Telegram posts as this user when a group admin writes anonymously.
GROUP_ANONYMOUS_BOT = 1087968824
_LINK_SCHEMES = ("http://", "https://", "tg://", "mailto:")
_BUTTON_SCHEMES = ("http://", "https://", "tg://")
_ADMIN_STATUSES = (ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR)
_PRESENT_STATUSES = (*_ADMIN_STATUSES, ChatMemberStatus.MEMBER, ChatMemberStatus.RESTRICTED)
# What "chat not found"-like 400s say: the chat is gone for us, stop sending there.
_JSON_HEADERS = {"User-Agent": USER_AGENT, "Content-Type": "application/json"}
_GONE_HINTS = (
    "chat not found",
    "chat_write_forbidden",
    "not enough rights to send",
    "need administrator rights in the channel",
    "group chat was deactivated",
    "bot is not a member",
    "user not found",
    "peer_id_invalid",
)


# ================================================================== the renderer

_Tag = tuple[str, str]  # (opening, closing) HTML
_B: _Tag = ("<b>", "</b>")
_I: _Tag = ("<i>", "</i>")
_CODE: _Tag = ("<code>", "</code>")
_PRE: _Tag = ("<pre>", "</pre>")


@dataclass(frozen=True, slots=True)
class _Run:
    """Raw (unescaped) text under a stack of tags: the unit the splitter moves around."""

    tags: tuple[_Tag, ...]
    text: str


def utf16_len(text: str) -> int:
    """Length as Telegram counts it: characters outside the BMP take two UTF-16 units."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def _safe_url(url: str) -> bool:
    return url.lower().startswith(_LINK_SCHEMES) and not any(c.isspace() for c in url)


def _inline_runs(nodes: Iterable[Inline], tags: tuple[_Tag, ...], out: list[_Run]) -> None:
    for node in nodes:
        match node:
            case Text(text):
                if text:
                    out.append(_Run(tags, text))
            case Bold(children):
                _inline_runs(children, (*tags, _B), out)
            case Italic(children):
                _inline_runs(children, (*tags, _I), out)
            case Code(text):
                if text:
                    out.append(_Run((*tags, _CODE), text))
            case Link(text, url):
                label = text or url
                in_link = any(t[1] == "</a>" for t in tags)
                if _safe_url(url) and not in_link:
                    # The one place a URL enters the HTML: escaped for an attribute.
                    anchor = (f'<a href="{html.escape(url, quote=True)}">', "</a>")
                    out.append(_Run((*tags, anchor), label))
                elif label:
                    out.append(_Run(tags, label))
            case Math(_, unicode):
                if unicode:
                    out.append(_Run(tags, unicode))


def _block_runs(block: Block) -> list[_Run]:
    runs: list[_Run] = []
    match block:
        case Paragraph(children):
            _inline_runs(children, (), runs)
        case Heading(children):
            _inline_runs(children, (_B,), runs)
        case ListBlock(items, ordered, start):
            for number, item in enumerate(items, start):
                if runs:
                    runs.append(_Run((), "\n"))
                runs.append(_Run((), f"{number}. " if ordered else "• "))
                _inline_runs(item, (), runs)
        case CodeBlock(text):
            if text:
                runs.append(_Run((_PRE,), text))
        case MathBlock(_, unicode, label, _):
            text = f"{unicode}    ({label})" if label else unicode
            if text:
                runs.append(_Run((_PRE,), text))
    return runs


def _runs_len(runs: Sequence[_Run]) -> int:
    return sum(utf16_len(run.text) for run in runs)


def _to_html(runs: Sequence[_Run]) -> str:
    """Runs -> HTML, opening and closing only the tags that change between runs."""
    out: list[str] = []
    stack: tuple[_Tag, ...] = ()
    for run in runs:
        common = 0
        while common < min(len(stack), len(run.tags)) and stack[common] == run.tags[common]:
            common += 1
        out.extend(tag[1] for tag in reversed(stack[common:]))
        out.extend(tag[0] for tag in run.tags[common:])
        # The one place text enters the HTML: escaped once, here.
        out.append(html.escape(run.text, quote=False))
        stack = run.tags
    out.extend(tag[1] for tag in reversed(stack))
    return "".join(out)


def _fit(text: str, room: int) -> int:
    """How many characters of `text` fit in `room` UTF-16 units."""
    used = 0
    for index, ch in enumerate(text):
        used += 2 if ord(ch) > 0xFFFF else 1
        if used > room:
            return index
    return len(text)


def _cut(text: str, room: int) -> int:
    """Where to cut `text` to fit `room`: after a line break or a space when there is one."""
    fit = _fit(text, room)
    head = text[:fit]
    newline = head.rfind("\n")
    space = max(head.rfind(" "), head.rfind("\t"))
    if newline >= 0 and newline >= fit // 2:
        return newline + 1
    if space >= 0:
        return space + 1
    if newline >= 0:
        return newline + 1
    return fit


def _split_runs(runs: Sequence[_Run], limit: int) -> list[list[_Run]]:
    """Split one over-long block into pieces of at most `limit` units, at word boundaries."""
    pieces: list[list[_Run]] = []
    current: list[_Run] = []
    used = 0
    for run in runs:
        text = run.text
        while text:
            size = utf16_len(text)
            if used + size <= limit:
                current.append(_Run(run.tags, text))
                used += size
                break
            cut = _cut(text, limit - used)
            whitespace_cut = cut > 0 and text[cut - 1].isspace()
            if current and not whitespace_cut:
                # No word boundary in this run: break between runs rather than mid-word.
                pieces.append(current)
                current, used = [], 0
                continue
            if cut == 0:  # cannot happen with limit >= 2; guards an endless loop
                cut = 1
            current.append(_Run(run.tags, text[:cut]))
            pieces.append(current)
            current, used = [], 0
            text = text[cut:]
    if current:
        pieces.append(current)
    return pieces


def _pack(blocks: Sequence[list[_Run]], limit: int) -> list[list[_Run]]:
    """Greedily pack blocks, a blank line apart, into parts of at most `limit` units."""
    parts: list[list[_Run]] = []
    current: list[_Run] = []
    used = 0
    for runs in blocks:
        size = _runs_len(runs)
        if not size:
            continue
        gap = 2 if current else 0
        if used + gap + size <= limit:
            if gap:
                current.append(_Run((), "\n\n"))
            current.extend(runs)
            used += gap + size
            continue
        if current:
            parts.append(current)
            current, used = [], 0
        if size <= limit:
            current, used = list(runs), size
            continue
        pieces = _split_runs(runs, limit)
        parts.extend(pieces[:-1])
        current, used = pieces[-1], _runs_len(pieces[-1])
    if current:
        parts.append(current)
    # Telegram trims messages and refuses empty ones: whitespace-only parts go.
    return [part for part in parts if any(run.text.strip() for run in part)]


def render_html(message: Message, limit: int = MAX_TEXT) -> list[str]:
    """A message as Telegram HTML parts, each at most `limit` UTF-16 units of visible text.

    Display equations render as <pre> text here; the adapter sends their images as photos.
    """
    if limit < 2:
        raise ValueError("limit must be at least 2 UTF-16 units")
    blocks = [_block_runs(block) for block in message.blocks]
    return [_to_html(part) for part in _pack(blocks, limit)]


# ============================================================== buttons and keys


def callback_data(command: str, arg: str) -> str:
    return f"{command}:{arg}"


def parse_callback_data(data: str) -> tuple[str, str] | None:
    command, sep, arg = data.partition(":")
    return (command, arg) if sep and command else None


def callback_key(data: str) -> str:
    """The short key that stands for callback data longer than Telegram allows. Derived from
    the data alone, so every worker (and every restart) computes the same key."""
    return hashlib.sha256(data.encode()).hexdigest()[:24]


def _callback(button: Button, long: dict[str, str]) -> str:
    """A button's callback data; data longer than Telegram allows becomes `~:<key>`, with
    the data in `long` under that key (the adapter saves it to the store before sending)."""
    assert button.command is not None
    data = callback_data(button.command, button.arg)
    if len(data.encode("utf-8")) <= MAX_CALLBACK_DATA:
        return data
    key = callback_key(data)
    long[key] = data
    return f"~:{key}"


@dataclass(slots=True)
class _Outgoing:
    html: str
    photo: bytes | None = None


@dataclass(slots=True)
class _Plan:
    """A message ready to go: its parts and keyboard, and for text-only messages the
    sendMessage JSON of each part without its chat (see TelegramAdapter.send)."""

    parts: list[_Outgoing]
    markup: InlineKeyboardMarkup | None
    payloads: list[bytes] | None = None
    # key -> callback data of buttons too long for Telegram: saved to the store before
    # the message goes out, so a press reaching any worker finds them.
    callbacks: dict[str, str] = field(default_factory=dict)


def _seconds(value: object) -> float:
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return float(value)  # type: ignore[arg-type]


def retry_after_seconds(exc: tg_error.RetryAfter) -> float:
    # PTB 22 warns on int access while it migrates to timedelta; either form is fine here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _seconds(exc.retry_after)


def map_error(exc: tg_error.TelegramError, chat: ChatRef) -> sending.SendError:
    """A Bot API error as bot.sending sees it. Messages are redacted: no token ever leaks."""
    description = redact(str(exc.message if hasattr(exc, "message") else exc))
    if isinstance(exc, tg_error.RetryAfter):
        return sending.RetryAfter(retry_after_seconds(exc))
    if isinstance(exc, tg_error.ChatMigrated):
        return sending.ChatMoved(ChatRef(PLATFORM, str(exc.new_chat_id)))
    if isinstance(exc, tg_error.Forbidden):
        return sending.ChatGone(f"{chat.key}: {description}")
    if isinstance(exc, tg_error.BadRequest):
        lowered = description.lower()
        if any(hint in lowered for hint in _GONE_HINTS):
            return sending.ChatGone(f"{chat.key}: {description}")
        return sending.PermanentError(f"{chat.key}: {description}")
    if isinstance(exc, tg_error.InvalidToken):
        return sending.PermanentError("Telegram rejected the bot token (check TELEGRAM_BOT_TOKEN)")
    if isinstance(exc, tg_error.NetworkError):  # includes TimedOut; BadRequest handled above
        return sending.TransientError(f"{chat.key}: {description}")
    if isinstance(exc, tg_error.Conflict):
        return sending.TransientError(f"{chat.key}: {description}")
    return sending.PermanentError(f"{chat.key}: {description}")


def api_error(status: int, payload: bytes) -> tg_error.TelegramError:
    """The error python-telegram-bot raises for a failed Bot API answer (the rules of its
    BaseRequest), so that requests sent without PTB still go through `map_error`."""
    try:
        data = json.loads(payload)
        if not isinstance(data, dict):
            raise ValueError("not an object")
    except ValueError:
        data = {}
    try:
        message = str(data.get("description") or f"{HTTPStatus(status).phrase} ({status})")
    except ValueError:
        message = f"Unknown HTTPError ({status})"
    parameters = data.get("parameters")
    if isinstance(parameters, dict):
        if parameters.get("migrate_to_chat_id"):
            return tg_error.ChatMigrated(parameters["migrate_to_chat_id"])
        if parameters.get("retry_after"):
            return tg_error.RetryAfter(parameters["retry_after"])
    if status == HTTPStatus.FORBIDDEN:
        return tg_error.Forbidden(message)
    if status in (HTTPStatus.NOT_FOUND, HTTPStatus.UNAUTHORIZED):
        return tg_error.InvalidToken(message)
    if status == HTTPStatus.BAD_REQUEST:
        return tg_error.BadRequest(message)
    if status == HTTPStatus.CONFLICT:
        return tg_error.Conflict(message)
    return tg_error.NetworkError(message)


def _chat_kind(chat_type: str) -> ChatKind:
    if chat_type == ChatType.PRIVATE:
        return "private"
    if chat_type == ChatType.CHANNEL:
        return "channel"
    return "group"


# Telegram allows 1000 messages a second to paid broadcasts; we keep 5% under it.
PAID_BROADCAST_RATE = 950.0


def send_limits(settings: Settings) -> SendLimits:
    """Our pace on Telegram, under its published limits (30 messages a second overall,
    1000 with paid broadcasts; 20 a minute per group; about one a second per chat)."""
    share = settings.worker_share()
    overall = share.telegram_rate_per_second
    if settings.telegram_paid_broadcast:
        overall = PAID_BROADCAST_RATE / settings.worker_count
    chat_rate = settings.delivery_chat_rate_per_second
    return SendLimits(
        overall=overall,
        chat_interval=1.0 / chat_rate if chat_rate > 0 else 0.0,
        group=settings.delivery_group_rate_per_minute,
        group_window=60.0,
    )


def is_group(chat: ChatRef) -> bool:
    """Groups, supergroups and channels have negative ids (or an @username)."""
    return chat.chat_id.startswith(("-", "@"))


def _telegram_chat_id(chat: ChatRef) -> int | str:
    try:
        return int(chat.chat_id)
    except ValueError:
        return chat.chat_id  # "@channelusername"


class _Bounded(OrderedDict[Any, Any]):
    """An LRU-ish dict that forgets its oldest entries beyond `size`."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: Any, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


# ==================================================================== the adapter


class TelegramAdapter:
    """Paperboy on Telegram: bot.sending.Adapter for digests, command handling for people."""

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
        # Seconds at most: a demoted admin must lose admin commands promptly; a
        # chat_member update about them drops their entry at once.
        self.admin_cache_seconds = admin_cache_seconds
        self.max_wait_seconds = max_wait_seconds  # longest RetryAfter we sit out ourselves
        self.start_backoff = start_backoff  # first wait when Telegram is unreachable at start
        # Set (with a PlatformError) when polling cannot go on: the app stops on it.
        self.failed: asyncio.Future[None] | None = None
        self._conflict_since: float | None = None
        self._conflict_last = 0.0
        self.username: str | None = None
        self._application: Application[Any, Any, Any, Any, Any, Any] | None = None
        # Two caches in front of the store, which holds the truth for every worker:
        # (chat id, message id) of explanations we sent -> paper id, for follow-up replies,
        self._explained = _Bounded(20_000)
        # and the short key of long callback data -> (data, when to save it again).
        self._long_callbacks = _Bounded(10_000)
        self._admins = _Bounded(10_000)  # (chat id, user id) -> (is admin, expires at)
        self._tasks: set[asyncio.Task[None]] = set()
        # Digests go out through httpx directly (see `send`); PTB does the rest.
        self._http: httpx.AsyncHTTPTransport | None = None
        base = f"{settings.telegram_api_base_url}{settings.telegram_bot_token}"
        self._send_url = httpx.URL(f"{base}/sendMessage")  # parsed once, not per request
        total = settings.http_timeout_seconds
        self._timeout = httpx.Timeout(total, connect=min(10.0, total)).as_dict()
        # id(message) -> (message, plan): a digest is shared by many chats, and the outbox
        # hands out one Message object per distinct body. Holding the message keeps its
        # id from being reused while the entry lives.
        self._plans = _Bounded(512)
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
        application.add_handler(MessageHandler(text, self._on_message))
        application.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, self._on_migrate))
        application.add_handler(CallbackQueryHandler(self._on_callback))
        application.add_handler(MessageReactionHandler(self._on_reaction))
        application.add_handler(
            ChatMemberHandler(self._on_my_chat_member, ChatMemberHandler.MY_CHAT_MEMBER)
        )
        application.add_handler(
            ChatMemberHandler(self._on_chat_member, ChatMemberHandler.CHAT_MEMBER)
        )
        application.add_error_handler(self._on_error)
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
        # httpx's transport without AsyncClient's layers (cookies, auth, redirects, hooks):
        # the Bot API needs none of them, and they cost a third of each send's CPU. The
        # dispatcher keeps delivery_concurrency requests on the wire; a bigger pool only
        # costs more, as httpcore checks every pooled connection on each request.
        pool = max(4, settings.delivery_concurrency)
        self._http = httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
        )
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
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        application = self._application
        if application is None:
            return
        if application.updater is not None and application.updater.running:
            await application.updater.stop()
        if application.running:
            await application.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await application.shutdown()
        self._application = None

    # ---------------------------------------------------------------- sending

    async def ready(self, chat: ChatRef) -> None:
        """Wait until the chat's own limits let one more message go (the dispatcher asks
        before it takes a send slot)."""
        await self.pacer.ready(chat.chat_id, group=is_group(chat))

    async def send(self, chat: ChatRef, message: Message) -> list[str]:
        """For the delivery outbox: errors come out as bot.sending errors to act on.

        The hot path of a delivery round: each distinct message is rendered once, and its
        text parts are posted as JSON through httpx directly, reading back only the message
        id (PTB would build a full Message object, entities and all, for every send)."""
        cached = self._plans.get(id(message))
        if cached is not None and cached[0] is message:
            plan: _Plan = cached[1]
        else:
            plan = self._prepare(message, lean=True)
            self._plans.put(id(message), (message, plan))
        return await self._send_plan(chat, plan, patient=False)

    def _prepare(self, message: Message, *, lean: bool = False) -> _Plan:
        callbacks: dict[str, str] = {}
        plan = _Plan(
            self._parts(message), self._keyboard(message.buttons, callbacks), callbacks=callbacks
        )
        if lean and all(part.photo is None for part in plan.parts):
            markup = plan.markup.to_dict() if plan.markup is not None else None
            plan.payloads = []
            for index, part in enumerate(plan.parts):
                fields: dict[str, Any] = {
                    "text": part.html,
                    "parse_mode": ParseMode.HTML.value,
                    "link_preview_options": {"is_disabled": True},
                }
                if self.settings.telegram_paid_broadcast:
                    fields["allow_paid_broadcast"] = True
                if markup is not None and index == len(plan.parts) - 1:
                    fields["reply_markup"] = markup
                body = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
                plan.payloads.append(body[1:].encode())  # "{" comes with the chat id
        return plan

    async def _post(self, chat_id: int | str, thread: int | None, payload: bytes) -> int:
        """sendMessage with a prepared payload; failures raise what PTB would raise."""
        transport = self._http
        if transport is None:
            raise RuntimeError("the Telegram adapter is not started")
        head = f'{{"chat_id":{json.dumps(chat_id)},'
        if thread is not None:
            head += f'"message_thread_id":{thread},'
        request = httpx.Request(
            "POST",
            self._send_url,
            content=head.encode() + payload,
            headers=_JSON_HEADERS,
            extensions={"timeout": self._timeout},
        )
        try:
            response = await transport.handle_async_request(request)
            try:
                await response.aread()
            finally:
                await response.aclose()
        except httpx.TimeoutException as e:
            raise tg_error.TimedOut(f"{type(e).__name__}: {e}") from e
        except httpx.HTTPError as e:
            raise tg_error.NetworkError(f"httpx.{type(e).__name__}: {e}") from e
        if not 200 <= response.status_code <= 299:
            raise api_error(response.status_code, response.content)
        try:
            return int(json.loads(response.content)["result"]["message_id"])
        except (ValueError, KeyError, TypeError):
            raise tg_error.TelegramError("Invalid server response") from None

    def _parts(self, message: Message) -> list[_Outgoing]:
        """Text parts, with display equations that have an image sent as photos between."""
        out: list[_Outgoing] = []
        pending: list[Block] = []

        def flush() -> None:
            if pending:
                out.extend(_Outgoing(part) for part in render_html(Message(list(pending))))
                pending.clear()

        for block in message.blocks:
            if isinstance(block, MathBlock) and block.image:
                flush()
                captions = render_html(Message([block]), MAX_CAPTION)
                if len(captions) == 1:
                    out.append(_Outgoing(captions[0], block.image))
                else:
                    out.append(_Outgoing("", block.image))
                    out.extend(_Outgoing(part) for part in render_html(Message([block])))
            else:
                pending.append(block)
        flush()
        if not out and message.buttons:
            out.append(_Outgoing("⬇"))  # buttons need a message to hang under
        return out

    def _keyboard(
        self, rows: list[list[Button]], callbacks: dict[str, str]
    ) -> InlineKeyboardMarkup | None:
        """The inline keyboard; data too long for Telegram goes into `callbacks` by key."""
        keyboard: list[list[InlineKeyboardButton]] = []
        for row in rows:
            buttons: list[InlineKeyboardButton] = []
            for button in row:
                label = button.label.strip() or "…"
                if button.url:
                    if button.url.lower().startswith(_BUTTON_SCHEMES):
                        buttons.append(InlineKeyboardButton(label, url=button.url))
                elif button.command:
                    buttons.append(
                        InlineKeyboardButton(label, callback_data=_callback(button, callbacks))
                    )
            if buttons:
                keyboard.append(buttons)
        return InlineKeyboardMarkup(keyboard) if keyboard else None

    async def _save_callbacks(self, callbacks: dict[str, str]) -> None:
        """Put long callback data in the store (the cache skips what was saved lately)."""
        now = time.monotonic()
        fresh = {}
        for key, data in callbacks.items():
            cached = self._long_callbacks.get(key)
            if cached is None or cached[1] <= now:
                fresh[key] = data
        if not fresh:
            return
        try:
            await self.app.store.save_callbacks(fresh)
        except Exception as e:
            # Without its data a button would not work: send the message later instead.
            raise sending.TransientError(f"cannot save button data ({type(e).__name__})") from e
        for key, data in fresh.items():
            self._long_callbacks.put(key, (data, now + CALLBACK_RESAVE_SECONDS))

    async def _load_callback(self, key: str) -> tuple[str, str] | None:
        cached = self._long_callbacks.get(key)
        if cached is not None:
            return parse_callback_data(cached[0])
        data = await self.app.store.load_callback(key)
        if data is None:
            return None
        # Saved by another worker (or before a restart): recent, no need to save it again.
        self._long_callbacks.put(key, (data, time.monotonic() + CALLBACK_RESAVE_SECONDS))
        return parse_callback_data(data)

    async def _send_plan(
        self,
        chat: ChatRef,
        plan: _Plan,
        *,
        patient: bool,
        reply_to: int | None = None,
    ) -> list[str]:
        """Send every part. `patient` (interactive replies) sits out flood waits itself;
        otherwise a RetryAfter before anything went out is the caller's to schedule, and
        one after the first part is waited out here so a retry never repeats parts."""
        bot = self.application.bot
        parts, markup = plan.parts, plan.markup
        if plan.callbacks:
            await self._save_callbacks(plan.callbacks)
        chat_id = _telegram_chat_id(chat)
        thread = int(chat.thread_id) if chat.thread_id else None
        group = is_group(chat)
        paid = self.settings.telegram_paid_broadcast and not patient  # digests only
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
                    if plan.payloads is not None and reply is None:
                        sent = await self._post(chat_id, thread, plan.payloads[index])
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
                    if (patient or ids) and wait <= self.max_wait_seconds:
                        log.info("telegram: flood wait %.0fs in %s", wait, chat.key)
                        await asyncio.sleep(wait)
                        continue
                    raise sending.RetryAfter(wait) from None
                except tg_error.TelegramError as e:
                    raise map_error(e, chat) from None
            ids.append(str(sent if isinstance(sent, int) else sent.message_id))
        return ids

    async def reply(
        self,
        chat: ChatRef,
        reply: Reply,
        *,
        reply_to: int | None = None,
        paper: str | None = None,
    ) -> list[str]:
        """Send a command's reply, dealing with what the chat's state tells us on the way;
        a reply with an update (the LLM's explanation to come) is edited when it arrives."""
        ids: list[str] = []
        shown: list[tuple[_Plan, list[str]]] = []
        for message in reply.messages:
            for _attempt in range(3):
                plan = self._prepare(message)
                try:
                    sent = await self._send_plan(chat, plan, patient=True, reply_to=reply_to)
                except sending.ChatMoved as e:
                    log.info("telegram: %s moved to %s", chat.key, e.new_chat.key)
                    await self.app.store.migrate_chat(chat, e.new_chat)
                    chat, reply_to = e.new_chat, None
                    continue
                except sending.ChatGone as e:
                    log.info("telegram: deactivating %s: %s", chat.key, e)
                    await self.app.store.set_chat_active(chat, False)
                    return ids
                except sending.TransientError as e:
                    log.warning("telegram: sending to %s failed, retrying: %s", chat.key, e)
                    await asyncio.sleep(1.0)
                    continue
                except sending.SendError as e:
                    log.error("telegram: could not send to %s: %s", chat.key, e)
                    return ids
                ids.extend(sent)
                shown.append((plan, sent))
                # A one-paper card with vote buttons: reactions to it vote on that paper.
                about = paper or cards.voted_paper(message)
                if about:
                    await self._remember_paper(chat, sent, about)
                if message.document is not None:
                    ids.extend(await self._send_document(chat, message.document))
                break
            reply_to = None
        if reply.update is not None and shown:
            # In the background: the handler returns, the edit comes when the update does.
            task = asyncio.create_task(self._edit_later(chat, shown, reply.update, paper))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return ids

    async def _edit_later(
        self,
        chat: ChatRef,
        shown: list[tuple[_Plan, list[str]]],
        update: Callable[[], Awaitable[Reply]],
        paper: str | None,
    ) -> None:
        """Edit a sent reply into its update: what lines up is edited in place, old parts
        left over are deleted, new parts left over are sent below."""
        try:
            better = await update()
            new_ids: list[str] = []
            for index, message in enumerate(better.messages):
                old = shown[index] if index < len(shown) else None
                new_ids += await self._edit_message(chat, old, message)
            for _plan, ids in shown[len(better.messages) :]:
                for message_id in ids:
                    await self._tg_call(chat, "deleteMessage", message_id=int(message_id))
            if paper and new_ids:
                await self._remember_paper(chat, new_ids, paper)
        except asyncio.CancelledError:
            raise
        except (tg_error.TelegramError, sending.SendError) as e:
            log.info("telegram: could not edit a reply in %s: %s", chat.key, redact(str(e)))
        except Exception:
            log.exception("telegram: editing a reply in %s failed", chat.key)

    async def _edit_message(
        self, chat: ChatRef, old: tuple[_Plan, list[str]] | None, message: Message
    ) -> list[str]:
        """Edit one sent message (its parts) into `message`; returns the ids of parts sent
        anew."""
        plan = self._prepare(message)
        if plan.callbacks:
            await self._save_callbacks(plan.callbacks)
        old_plan, old_ids = old if old is not None else (_Plan([], None), [])
        last_old, last_new = len(old_ids) - 1, len(plan.parts) - 1
        kept = 0
        for index, (was, part) in enumerate(zip(old_plan.parts, plan.parts, strict=False)):
            markup = plan.markup if index == last_new else None
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
        if kept >= len(plan.parts):
            return []
        rest = _Plan(plan.parts[kept:], plan.markup)
        return await self._send_plan(chat, rest, patient=True)

    async def _tg_call(self, chat: ChatRef, method: str, **kwargs: Any) -> None:
        """editMessageText / deleteMessage, sitting out short flood waits; "not modified"
        and an already deleted message are fine."""
        bot = self.application.bot
        call = {"editMessageText": bot.edit_message_text, "deleteMessage": bot.delete_message}
        while True:
            try:
                await call[method](chat_id=_telegram_chat_id(chat), **kwargs)
                return
            except tg_error.RetryAfter as e:
                wait = retry_after_seconds(e)
                if wait > self.max_wait_seconds:
                    raise
                await asyncio.sleep(wait)
            except tg_error.BadRequest as e:
                text = str(e).lower()
                if "not modified" in text or "message to delete not found" in text:
                    return
                raise

    async def _send_document(self, chat: ChatRef, document: Document) -> list[str]:
        """A file (a .bib export) as a Telegram document, uploaded as multipart."""
        for _attempt in range(3):
            try:
                sent = await self.application.bot.send_document(
                    _telegram_chat_id(chat),
                    InputFile(document.data, filename=document.filename),
                    message_thread_id=int(chat.thread_id) if chat.thread_id else None,
                )
            except tg_error.RetryAfter as e:  # right after the note: the chat's flood limit
                await asyncio.sleep(min(retry_after_seconds(e), 30.0))
                continue
            except tg_error.TelegramError as e:
                log.error("telegram: could not send %s to %s: %s", document.filename, chat.key, e)
                return []
            return [str(sent.message_id)]
        return []

    async def _on_reaction(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
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

    async def _remember_paper(self, chat: ChatRef, message_ids: list[str], paper: str) -> None:
        """A reply to any of these messages, on any worker, asks about `paper`."""
        for message_id in message_ids:
            self._explained.put((chat.chat_id, message_id), paper)
        try:
            await self.app.store.remember_message_papers(chat, message_ids, paper)
        except Exception:
            # The reply went out; only follow-ups reaching another worker will miss it.
            log.exception("telegram: cannot remember the paper of messages in %s", chat.key)

    async def _replied_paper(self, chat: ChatRef, replied: TgMessage) -> str | None:
        """The paper of the message replied to, if it is one of our explanations."""
        author = replied.from_user
        if author is not None and author.id != self.application.bot.id:
            return None  # someone else's message: no need to ask the store
        message_id = str(replied.message_id)
        paper: str | None = self._explained.get((chat.chat_id, message_id))
        if paper is None:
            paper = await self.app.store.message_paper(chat, message_id)
            if paper is not None:
                self._explained.put((chat.chat_id, message_id), paper)
        return paper

    # ---------------------------------------------------------------- inbound

    def _chat_ref(self, message: TgMessage) -> ChatRef:
        thread = message.message_thread_id if message.is_topic_message else None
        return ChatRef(PLATFORM, str(message.chat.id), str(thread) if thread else None)

    async def _is_admin(self, chat_id: int, user_id: int) -> bool:
        key = (chat_id, user_id)
        cached = self._admins.get(key)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return bool(cached[0])
        try:
            member = await self.application.bot.get_chat_member(chat_id, user_id)
            is_admin = member.status in _ADMIN_STATUSES
        except tg_error.TelegramError as e:
            log.info("telegram: cannot check admin rights in %s: %s", chat_id, redact(str(e)))
            return False  # not cached: the next try may work
        self._admins.put(key, (is_admin, now + self.admin_cache_seconds))
        return is_admin

    async def _context(
        self, message: TgMessage, chat: ChatRef, command: str | None, presser: User | None = None
    ) -> Context:
        """Who runs `command` where. `presser`: whoever pressed a button under `message`."""
        tg_chat = message.chat
        kind = _chat_kind(tg_chat.type)
        user = presser or message.from_user
        sender_chat = None if presser else message.sender_chat
        needs_admin = command in COMMANDS and COMMANDS[command].admin_only
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

    async def _on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or not message.text:
            return
        chat = self._chat_ref(message)
        invocation = split_command_line(message.text)
        if invocation is None:
            await self._on_plain_text(message, chat)
            return
        mention = invocation.bot_mention
        if mention and self.username and mention.lower() != self.username.lower():
            return  # a command for another bot in the same group
        private = message.chat.type == ChatType.PRIVATE
        if invocation.name not in COMMANDS and not (private or mention):
            return  # in groups, unknown commands are likely another bot's
        ctx = await self._context(message, chat, invocation.name)
        command = COMMANDS.get(invocation.name)
        if command is not None and command.slow:
            await self._typing(chat)
        reply = await run_text(self.app, ctx, invocation.name, invocation.text)
        paper = _paper_of(invocation.name, invocation.text)
        reply_to = None if private else message.message_id
        await self.reply(chat, reply, reply_to=reply_to, paper=paper)

    async def _on_plain_text(self, message: TgMessage, chat: ChatRef) -> None:
        """A reply to one of our explanations is a follow-up question about that paper."""
        replied = message.reply_to_message
        if replied is None:
            return
        paper = await self._replied_paper(chat, replied)
        if paper is None:
            return
        ctx = await self._context(message, chat, "ask")
        await self._typing(chat)
        reply = await run_text(self.app, ctx, "ask", f"{paper} {message.text}")
        reply_to = None if message.chat.type == ChatType.PRIVATE else message.message_id
        await self.reply(chat, reply, reply_to=reply_to, paper=paper)

    async def _typing(self, chat: ChatRef) -> None:
        # Cosmetic: the reply itself reports any real problem.
        with contextlib.suppress(tg_error.TelegramError):
            await self.application.bot.send_chat_action(
                _telegram_chat_id(chat),
                ChatAction.TYPING,
                message_thread_id=int(chat.thread_id) if chat.thread_id else None,
            )

    async def _on_callback(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None:
            return
        answered = False
        try:
            parsed = parse_callback_data(query.data or "")
            if parsed and parsed[0] == "~":
                parsed = await self._load_callback(parsed[1])
            message = query.message
            if parsed is None or parsed[0] not in COMMANDS or not isinstance(message, TgMessage):
                await query.answer("This button no longer works. Try the command instead.")
                answered = True
                return
            name, arg = parsed
            chat = self._chat_ref(message)
            # The presser, not the message's author (our bot), runs the command.
            ctx = await self._context(message, chat, name, presser=query.from_user)
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
            paper = _paper_of(name, arg)
            await self.reply(chat, reply, paper=paper)
        finally:
            if not answered:
                with contextlib.suppress(tg_error.TelegramError):
                    await query.answer()

    async def _on_chat_member(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Someone's status changed in a chat: forget what we knew about their admin rights."""
        change = update.chat_member
        if change is not None:
            self._admins.pop((change.chat.id, change.new_chat_member.user.id), None)

    async def _on_my_chat_member(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        change = update.my_chat_member
        if change is None:
            return
        chat = ChatRef(PLATFORM, str(change.chat.id))
        present = change.new_chat_member.status in _PRESENT_STATUSES
        if change.new_chat_member.status == ChatMemberStatus.RESTRICTED:
            present = bool(getattr(change.new_chat_member, "is_member", True))
        log.info("telegram: bot %s in %s", "present" if present else "gone", chat.key)
        await self.app.store.set_chat_active(chat, present)

    async def _on_migrate(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or not message.migrate_to_chat_id:
            return
        old = ChatRef(PLATFORM, str(message.chat.id))
        new = ChatRef(PLATFORM, str(message.migrate_to_chat_id))
        log.info("telegram: %s became %s", old.key, new.key)
        await self.app.store.migrate_chat(old, new)

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        error = context.error
        if isinstance(error, tg_error.NetworkError | tg_error.TimedOut):
            log.warning("telegram: network trouble: %s", redact(str(error)))
            return
        log.error("telegram: handling an update failed", exc_info=error)


def _paper_of(command: str, text: str) -> str | None:
    """The paper an explain/ask reply is about, so replies to it can ask follow-ups."""
    if command not in ("explain", "ask") or not text.strip():
        return None
    try:
        return parse_arxiv_id(text.split()[0]).id
    except InvalidArxivId:
        return None


def _short_alert(reply: Reply) -> str | None:
    """An ephemeral one-paragraph reply short enough for a callback alert, as plain text."""
    if not reply.ephemeral or len(reply.messages) != 1 or reply.messages[0].buttons:
        return None
    text = "\n".join(block_text(block) for block in reply.messages[0].blocks)
    return text if 0 < len(text) <= MAX_ALERT else None
