"""A fake Telegram Bot API server: the real python-telegram-bot client talks to it.

It listens on 127.0.0.1 (ephemeral port) at `/bot<token>/<method>`, takes JSON, form or
multipart bodies as clients send them, and answers in Telegram's wire format, errors
included. It is strict where Telegram is strict (HTML parse mode, message and caption
length in UTF-16 units after entity parsing, 64-byte callback data, command names, rate
limits with 429 + retry_after) and a little stricter where Telegram silently drops
formatting (tags nested inside code/pre, a link inside a link, bare `&` or `>`), so a
renderer that passes here sends exactly what it means to.

Tests drive it as users would: `send_text` (a user types), `post_to_channel`,
`press_button`, `bot_added`/`bot_removed` (my_chat_member); and read back `sent`,
`sent_to(chat_id)`, `commands`, `callback_answers`. Scripted failures per chat
(`fail_chat`) or per method (`fail_next`) give blocked users, vanished chats, group
migrations, 429s and 5xx. Everything is O(1) per request and nothing sleeps, so the
delivery benchmarks can push thousands of chats through it.

    async with FakeTelegram() as tg:
        settings = Settings(telegram_bot_token=tg.token, telegram_api_base_url=tg.base_url,
                            telegram_file_base_url=tg.file_base_url)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import re
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientSession, web

from tests.fakes.base import RollingWindow

DEFAULT_TOKEN = "7012345678:AAHfAkE-tOkEn_For_Tests-0123456789abcd"
MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_CALLBACK_DATA = 64
MAX_ANSWER_TEXT = 200
GROUP_ANONYMOUS_BOT_ID = 1087968824

# Methods that post into a chat and count against Telegram's flood limits.
LIMITED_METHODS = frozenset(
    {
        "sendmessage",
        "sendphoto",
        "senddocument",
        "sendmediagroup",
        "editmessagetext",
        "editmessagecaption",
        "editmessagereplymarkup",
        "copymessage",
        "forwardmessage",
    }
)
UPDATE_TYPES = (
    "message",
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "callback_query",
    "my_chat_member",
    "chat_member",
    "inline_query",
    "message_reaction",
    "message_reaction_count",
)
# As Telegram: without allowed_updates, no chat_member and no reaction updates.
DEFAULT_UPDATE_TYPES = frozenset(UPDATE_TYPES) - {
    "chat_member",
    "message_reaction",
    "message_reaction_count",
}

# ---------------------------------------------------------------- HTML parse mode


class EntityParseError(Exception):
    """Telegram's "can't parse entities" errors, with its wording."""


_ENTITY = re.compile(r"&(#[0-9]{1,8}|#[xX][0-9a-fA-F]{1,8}|[A-Za-z][A-Za-z0-9]{0,31});")
_START_TAG = re.compile(r"<([A-Za-z][A-Za-z0-9-]*)")
_ATTRIBUTE = re.compile(
    r"""\s+([A-Za-z][A-Za-z0-9_-]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+)))?"""
)
_TAG_END = re.compile(r"\s*(/?)>")
_END_TAG = re.compile(r"</([A-Za-z][A-Za-z0-9-]*)\s*>")
_MARKUP = re.compile(r"[&<>]")
_SPACE = re.compile(r"\s")
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_TAG_TYPES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "span": "spoiler",
    "tg-spoiler": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_LINK_SCHEMES = ("http://", "https://", "tg://", "mailto:", "ton://")


def utf16_len(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (counted in C: benchmarks send
    thousands of messages a second through here)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8", "surrogatepass"))


@dataclass(slots=True)
class _Open:
    tag: str
    start: int  # UTF-16 offset in the parsed text
    attrs: dict[str, str]


def parse_html(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Telegram's HTML parse mode: (plain text, entities) or EntityParseError."""
    out: list[str] = []
    pos16 = 0
    stack: list[_Open] = []
    entities: list[dict[str, Any]] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "&":
            match = _ENTITY.match(text, i)
            if match is None:
                raise EntityParseError(
                    f"Character '&' at byte offset {_byte_offset(text, i)} must be escaped as &amp;"
                )
            decoded = _decode_entity(match[1], text, i)
            out.append(decoded)
            pos16 += utf16_len(decoded)
            i = match.end()
        elif ch == ">":
            # Telegram tolerates a bare '>', but a renderer that leaves one unescaped
            # escapes nothing: be strict.
            raise EntityParseError(
                f"Character '>' at byte offset {_byte_offset(text, i)} must be escaped as &gt;"
            )
        elif ch == "<" and text.startswith("</", i):
            match = _END_TAG.match(text, i)
            if match is None:
                raise EntityParseError(f"Unclosed end tag at byte offset {_byte_offset(text, i)}")
            name = match[1].lower()
            if not stack:
                raise EntityParseError(f"Unexpected end tag at byte offset {_byte_offset(text, i)}")
            top = stack.pop()
            if top.tag != name:
                raise EntityParseError(
                    f"Unmatched end tag at byte offset {_byte_offset(text, i)}, "
                    f'expected "</{top.tag}>", found "</{name}>"'
                )
            _close(top, pos16, entities, stack)
            i = match.end()
        elif ch == "<":
            i = _open_tag(text, i, pos16, stack)
        else:
            # Plain text up to the next markup character, in one step.
            markup = _MARKUP.search(text, i)
            end = markup.start() if markup else n
            chunk = text[i:end]
            out.append(chunk)
            pos16 += utf16_len(chunk)
            i = end
    if stack:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1].tag}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def _decode_entity(body: str, text: str, index: int) -> str:
    if body.startswith("#"):
        code = int(body[2:], 16) if body[1:2] in ("x", "X") else int(body[1:])
        if code <= 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            raise EntityParseError(
                f"Invalid numeric entity at byte offset {_byte_offset(text, index)}"
            )
        return chr(code)
    if body not in _NAMED_ENTITIES:
        raise EntityParseError(
            f'Unsupported HTML entity "&{body};" at byte offset {_byte_offset(text, index)}'
        )
    return _NAMED_ENTITIES[body]


def _tag_error(text: str, index: int, message: str) -> EntityParseError:
    # The byte offset costs a pass over the text: computed only for an error.
    return EntityParseError(f"{message} at byte offset {_byte_offset(text, index)}")


def _open_tag(text: str, i: int, pos16: int, stack: list[_Open]) -> int:
    match = _START_TAG.match(text, i)
    if match is None:
        raise _tag_error(text, i, 'Unsupported start tag ""')
    name = match[1].lower()
    if name not in _TAG_TYPES:
        raise _tag_error(text, i, f'Unsupported start tag "{name}"')
    j = match.end()
    attrs: dict[str, str] = {}
    while True:
        end = _TAG_END.match(text, j)
        if end is not None:
            if end[1]:
                raise _tag_error(text, i, "Unclosed start tag")
            j = end.end()
            break
        attr = _ATTRIBUTE.match(text, j)
        if attr is None:
            raise _tag_error(text, i, "Unclosed start tag")
        raw = next((v for v in attr.groups()[1:] if v is not None), "")
        attrs[attr[1].lower()] = _unescape_attribute(raw, text, j)
        j = attr.end()
    if name == "span" and attrs.get("class") != "tg-spoiler":
        raise _tag_error(text, i, 'Tag "span" must have class "tg-spoiler"')
    if name == "a":
        href = attrs.get("href", "")
        if not href.lower().startswith(_LINK_SCHEMES) or _SPACE.search(href) is not None:
            raise _tag_error(text, i, f'Invalid URL "{href}" in tag "a"')
    if name == "tg-emoji" and "emoji-id" not in attrs:
        raise _tag_error(text, i, 'Tag "tg-emoji" must have attribute "emoji-id"')
    if name == "code" and "class" in attrs:
        parent = stack[-1].tag if stack else None
        if parent != "pre" or not attrs["class"].startswith("language-"):
            raise _tag_error(
                text, i, "Programming language can be specified only for a code tag inside pre,"
            )
    for open_ in stack:
        if open_.tag in ("code", "pre") and not (open_.tag == "pre" and name == "code"):
            raise _tag_error(text, i, f'Tag "{name}" can\'t be nested in "{open_.tag}"')
        if open_.tag == name and name in ("a", "blockquote", "code", "pre"):
            raise _tag_error(text, i, f'Tag "{name}" can\'t be nested in itself')
    stack.append(_Open(name, pos16, attrs))
    return j


def _unescape_attribute(raw: str, text: str, index: int) -> str:
    def one(match: re.Match[str]) -> str:
        return _decode_entity(match[1], text, index)

    if "&" in raw and _ENTITY.sub("", raw).count("&"):
        raise EntityParseError(
            f"Character '&' at byte offset {_byte_offset(text, index)} must be escaped as &amp;"
        )
    return _ENTITY.sub(one, raw)


def _close(top: _Open, end16: int, entities: list[dict[str, Any]], stack: list[_Open]) -> None:
    length = end16 - top.start
    if length <= 0:
        return  # Telegram drops empty entities
    kind = _TAG_TYPES[top.tag]
    entity: dict[str, Any] = {"type": kind, "offset": top.start, "length": length}
    if kind == "text_link":
        entity["url"] = top.attrs["href"]
    elif kind == "blockquote" and "expandable" in top.attrs:
        entity["type"] = "expandable_blockquote"
    elif kind == "custom_emoji":
        entity["custom_emoji_id"] = top.attrs["emoji-id"]
    elif kind == "code" and stack and stack[-1].tag == "pre" and "class" in top.attrs:
        # <pre><code class="language-x"> is one pre entity with a language
        stack[-1].attrs["language"] = top.attrs["class"].removeprefix("language-")
        return
    elif kind == "pre" and "language" in top.attrs:
        entity["language"] = top.attrs["language"]
    entities.append(entity)


def visible_text(text: str, parse_mode: str | None = "HTML") -> str:
    """The text a user sees (entities parsed); raises EntityParseError like Telegram."""
    if parse_mode and parse_mode.upper() == "HTML":
        return parse_html(text)[0]
    return text


# ----------------------------------------------------------------- rate limiting


@dataclass(slots=True)
class RateLimits:
    """Telegram's published flood limits, each a rolling window. `enabled=False` lets
    everything through. `scale` stretches every window (0.5: the same counts in half
    the time), for tests that want the real ratios faster."""

    enabled: bool = True
    global_per_second: float = 30.0  # every chat together
    paid_per_second: float = 1000.0  # requests with allow_paid_broadcast
    per_chat_per_second: float = 1.0
    per_chat_burst: float = 3.0  # short bursts in one chat are tolerated: 3 in any 3 s
    per_group_per_minute: float = 20.0
    scale: float = 1.0


class _Limiter:
    def __init__(self, limits: RateLimits, clock: Callable[[], float]) -> None:
        self.limits = limits
        self.clock = clock
        self._global: RollingWindow | None = None
        self._paid: RollingWindow | None = None
        self._chats: dict[int | str, RollingWindow] = {}
        self._groups: dict[int | str, RollingWindow] = {}
        self.refused: list[tuple[float, int | str, str]] = []  # (when, chat, which limit)

    def check(self, chat_id: int | str, *, paid: bool = False) -> int:
        """0 if the request may go (and it is counted), else Telegram's retry_after
        (whole seconds, >= 1). A refused request counts nowhere."""
        limits = self.limits
        if not limits.enabled:
            return 0
        now = self.clock()
        scale = limits.scale
        if paid:
            if self._paid is None:
                self._paid = RollingWindow(limits.paid_per_second, scale)
            shared = self._paid
        else:
            if self._global is None:
                self._global = RollingWindow(limits.global_per_second, scale)
            shared = self._global
        windows = [shared]
        names = ["paid" if paid else "global", "chat", "group"]
        chat = self._chats.get(chat_id)
        if chat is None:
            burst = limits.per_chat_burst
            period = scale * burst / limits.per_chat_per_second
            chat = self._chats[chat_id] = RollingWindow(burst, period)
        windows.append(chat)
        if _is_group(chat_id):
            group = self._groups.get(chat_id)
            if group is None:
                per_minute = limits.per_group_per_minute
                group = self._groups[chat_id] = RollingWindow(per_minute, 60 * scale)
            windows.append(group)
        waits = [w.wait(now) for w in windows]
        wait = max(waits)
        if wait > 0:
            self.refused.append((now, chat_id, names[waits.index(wait)]))
            return max(1, math.ceil(wait))
        for window in windows:
            window.times.append(now)
        return 0


def _is_group(chat_id: int | str) -> bool:
    return isinstance(chat_id, int) and chat_id < 0


# -------------------------------------------------------------------- records


@dataclass(slots=True)
class SentMessage:
    """One message the bot sent or edited, as Telegram received it."""

    method: str
    chat_id: int | str
    message_id: int
    text: str  # what the user sees (entities parsed)
    raw: str  # what the bot sent
    parse_mode: str | None
    reply_markup: dict[str, Any] | None = None
    photo: bytes | None = None
    reply_to_message_id: int | None = None
    entities: list[dict[str, Any]] = field(default_factory=list)
    document: tuple[str, bytes] | None = None  # (file name, content) of a sendDocument

    @property
    def buttons(self) -> list[dict[str, Any]]:
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [button for row in rows for button in row]


@dataclass(slots=True)
class Failure:
    code: int
    description: str
    parameters: dict[str, Any] | None = None


class ApiError(Exception):
    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None):
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters


def _bad(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


# ---------------------------------------------------------------------- server


class FakeTelegram:
    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        username: str = "PaperboyTestBot",
        rate_limits: RateLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.username = username
        self.bot_user = {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "Paperboy",
            "username": username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self.rate_limits = rate_limits or RateLimits()
        self._limiter = _Limiter(self.rate_limits, clock)
        self.port = 0
        self._runner: web.AppRunner | None = None
        # What happened.
        self.sent: list[SentMessage] = []
        self.calls: deque[tuple[str, dict[str, Any]]] = deque(maxlen=10_000)
        self.method_counts: dict[str, int] = {}
        self.commands: dict[str, list[dict[str, str]]] = {}  # scope type -> commands
        self.callback_answers: dict[str, dict[str, Any]] = {}
        self.rate_limited = 0  # 429s our limits gave (not the scripted ones)
        self.webhook: dict[str, Any] | None = None
        # Another process polls with the same token: every getUpdates gets 409 Conflict.
        self.competing_poller = False
        # World state.
        self.chats: dict[int, dict[str, Any]] = {}
        self.users: dict[int, dict[str, Any]] = {}
        self.members: dict[tuple[int, int], str] = {}  # (chat, user) -> status
        self._messages: dict[tuple[int | str, int], dict[str, Any]] = {}
        self.deleted: list[tuple[int | str, int]] = []  # (chat id, message id)
        self._sent_by_chat: dict[int | str, list[SentMessage]] = {}
        self._next_message_id: dict[int | str, int] = {}
        self._chat_failures: dict[int | str, Failure] = {}
        self._method_failures: dict[str, deque[Failure]] = {}
        self._callbacks: dict[str, dict[str, Any]] = {}
        # Updates.
        self._updates: deque[dict[str, Any]] = deque()
        self._update_ids = itertools.count(1)
        self._allowed_updates: frozenset[str] = DEFAULT_UPDATE_TYPES
        self._update_event = asyncio.Event()
        self._changed = asyncio.Event()
        self._webhook_queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._webhook_task: asyncio.Task[None] | None = None
        self._session: ClientSession | None = None
        self._clock = itertools.count(1_700_000_000)

    # ------------------------------------------------------------ lifecycle

    async def start(self, port: int = 0) -> FakeTelegram:
        """Listen on 127.0.0.1 (`port`, or an ephemeral one)."""
        app = web.Application(client_max_size=60 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_route("*", "/file/bot{token}/{path:.*}", self._file)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        self._update_event.set()  # release long polls
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._webhook_task
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeTelegram:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """For TELEGRAM_API_BASE_URL: clients append the token."""
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def file_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    # ------------------------------------------------------------ the world

    def user(
        self, user_id: int, first_name: str = "Ada", username: str | None = None
    ) -> dict[str, Any]:
        user = self.users.get(user_id)
        if user is None:
            user = {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "en"}
            if username:
                user["username"] = username
            self.users[user_id] = user
        return user

    def private_chat(self, user_id: int, first_name: str = "Ada") -> dict[str, Any]:
        user = self.user(user_id, first_name)
        chat = {"id": user_id, "type": "private", "first_name": user["first_name"]}
        self.chats[user_id] = chat
        return chat

    def group(
        self, chat_id: int, title: str = "Reading group", *, supergroup: bool = True
    ) -> dict[str, Any]:
        chat = {"id": chat_id, "type": "supergroup" if supergroup else "group", "title": title}
        self.chats[chat_id] = chat
        return chat

    def channel(self, chat_id: int, title: str = "Papers channel") -> dict[str, Any]:
        chat = {"id": chat_id, "type": "channel", "title": title}
        self.chats[chat_id] = chat
        self.members.setdefault((chat_id, self.bot_id), "administrator")
        return chat

    def set_member(self, chat_id: int, user_id: int, status: str) -> None:
        """status: creator, administrator, member, restricted, left, kicked."""
        self.user(user_id)
        self.members[(chat_id, user_id)] = status

    def _chat(self, chat_id: int) -> dict[str, Any]:
        chat = self.chats.get(chat_id)
        if chat is None:
            chat = self.private_chat(chat_id) if chat_id > 0 else self.group(chat_id)
        return chat

    # ----------------------------------------------------- what users do

    def push_update(self, kind: str, payload: dict[str, Any]) -> int:
        update_id = next(self._update_ids)
        update = {"update_id": update_id, kind: payload}
        if self.webhook is not None:
            self._webhook_queue.put_nowait(update)
        else:
            self._updates.append(update)
            self._update_event.set()
        return update_id

    def send_text(
        self, chat_id: int, user_id: int, text: str, *, reply_to_message_id: int | None = None
    ) -> dict[str, Any]:
        """A user types `text` in a chat (private chats: chat_id == user_id)."""
        chat = self._chat(chat_id)
        message: dict[str, Any] = {
            "message_id": self._new_message_id(chat_id),
            "date": next(self._clock),
            "chat": chat,
            "from": self.user(user_id),
            "text": text,
        }
        if text.startswith("/"):
            command = text.split()[0]
            message["entities"] = [
                {"type": "bot_command", "offset": 0, "length": utf16_len(command)}
            ]
        if reply_to_message_id is not None:
            replied = self._messages.get((chat_id, reply_to_message_id))
            if replied is None:
                raise KeyError(f"no message {reply_to_message_id} in chat {chat_id}")
            message["reply_to_message"] = replied
        self._messages[(chat_id, message["message_id"])] = message
        self.push_update("message", message)
        return message

    def post_to_channel(self, chat_id: int, text: str) -> dict[str, Any]:
        """An admin posts in a channel the bot administers (no `from`, a sender_chat)."""
        chat = self.chats.get(chat_id) or self.channel(chat_id)
        message: dict[str, Any] = {
            "message_id": self._new_message_id(chat_id),
            "date": next(self._clock),
            "chat": chat,
            "sender_chat": chat,
            "text": text,
        }
        if text.startswith("/"):
            command = text.split()[0]
            message["entities"] = [
                {"type": "bot_command", "offset": 0, "length": utf16_len(command)}
            ]
        self._messages[(chat_id, message["message_id"])] = message
        self.push_update("channel_post", message)
        return message

    def press_button(self, chat_id: int, message_id: int, user_id: int, label: str) -> str:
        """A user presses the inline button labelled `label` under a bot message."""
        message = self._messages.get((chat_id, message_id))
        if message is None:
            raise KeyError(f"no message {message_id} in chat {chat_id}")
        rows = message.get("reply_markup", {}).get("inline_keyboard", [])
        for row in rows:
            for button in row:
                if button["text"] == label and "callback_data" in button:
                    query_id = str(next(self._update_ids) * 7919)
                    query = {
                        "id": query_id,
                        "from": self.user(user_id),
                        "message": message,
                        "chat_instance": f"ci{chat_id}",
                        "data": button["callback_data"],
                    }
                    self._callbacks[query_id] = query
                    self.push_update("callback_query", query)
                    return query_id
        raise KeyError(f"no callback button {label!r} under message {message_id}")

    def _member(self, chat_id: int, user_id: int, status: str) -> dict[str, Any]:
        user = self.bot_user if user_id == self.bot_id else self.user(user_id)
        member: dict[str, Any] = {"status": status, "user": user}
        if status == "creator":
            member["is_anonymous"] = False
        elif status == "administrator":
            member.update(
                can_be_edited=False,
                is_anonymous=False,
                can_manage_chat=True,
                can_delete_messages=True,
                can_manage_video_chats=True,
                can_restrict_members=True,
                can_promote_members=False,
                can_change_info=True,
                can_invite_users=True,
                can_post_stories=False,
                can_edit_stories=False,
                can_delete_stories=False,
                can_post_messages=True,
                can_edit_messages=True,
            )
        elif status == "restricted":
            member.update(
                is_member=True,
                can_send_messages=True,
                can_send_audios=True,
                can_send_documents=True,
                can_send_photos=True,
                can_send_videos=True,
                can_send_video_notes=True,
                can_send_voice_notes=True,
                can_send_polls=True,
                can_send_other_messages=True,
                can_add_web_page_previews=True,
                can_change_info=False,
                can_invite_users=False,
                can_pin_messages=False,
                can_manage_topics=False,
                until_date=0,
            )
        elif status == "kicked":
            member["until_date"] = 0
        return member

    def bot_added(self, chat_id: int, by_user: int, status: str = "member") -> int:
        """Someone adds the bot to a chat (or unblocks it): a my_chat_member update."""
        return self._my_chat_member(chat_id, by_user, "left", status)

    def bot_removed(self, chat_id: int, by_user: int, status: str = "kicked") -> int:
        """The bot is kicked from a group or blocked by a user: a my_chat_member update."""
        return self._my_chat_member(
            chat_id, by_user, self.members.get((chat_id, self.bot_id), "member"), status
        )

    def member_changed(self, chat_id: int, user_id: int, new: str, by_user: int) -> int:
        """A member's status changes (promoted, demoted, left): a chat_member update, which
        Telegram sends only to bots that asked for it in allowed_updates."""
        old = self.members.get((chat_id, user_id), "member")
        self.members[(chat_id, user_id)] = new
        payload = {
            "chat": self._chat(chat_id),
            "from": self.user(by_user),
            "date": next(self._clock),
            "old_chat_member": self._member(chat_id, user_id, old),
            "new_chat_member": self._member(chat_id, user_id, new),
        }
        return self.push_update("chat_member", payload)

    def _my_chat_member(self, chat_id: int, by_user: int, old: str, new: str) -> int:
        self.members[(chat_id, self.bot_id)] = new
        payload = {
            "chat": self._chat(chat_id),
            "from": self.user(by_user),
            "date": next(self._clock),
            "old_chat_member": self._member(chat_id, self.bot_id, old),
            "new_chat_member": self._member(chat_id, self.bot_id, new),
        }
        return self.push_update("my_chat_member", payload)

    # ------------------------------------------------------ scripted failures

    def fail_chat(self, chat_id: int | str, kind: str, *, migrate_to: int | None = None) -> None:
        """Every send to `chat_id` fails from now on, as Telegram does for that reason.

        kind: blocked, kicked, not_found, deactivated, migrated (with migrate_to).
        """
        failures = {
            "blocked": Failure(403, "Forbidden: bot was blocked by the user"),
            "kicked": Failure(403, "Forbidden: bot was kicked from the supergroup chat"),
            "deactivated": Failure(403, "Forbidden: user is deactivated"),
            "not_found": Failure(400, "Bad Request: chat not found"),
        }
        if kind == "migrated":
            if migrate_to is None:
                raise ValueError("migrated needs migrate_to")
            old = self.chats.get(int(chat_id))
            self.group(migrate_to, old.get("title", "Group") if old else "Group", supergroup=True)
            failure = Failure(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": migrate_to},
            )
        else:
            failure = failures[kind]
        self._chat_failures[chat_id] = failure

    def clear_failures(self, chat_id: int | str | None = None) -> None:
        if chat_id is None:
            self._chat_failures.clear()
            self._method_failures.clear()
        else:
            self._chat_failures.pop(chat_id, None)

    def fail_next(
        self,
        method: str,
        code: int,
        description: str,
        parameters: dict[str, Any] | None = None,
        times: int = 1,
    ) -> None:
        """The next `times` calls of `method` fail (429s, 5xx, odd 400s)."""
        queue = self._method_failures.setdefault(method.lower(), deque())
        queue.extend(Failure(code, description, parameters) for _ in range(times))

    # --------------------------------------------------------------- reading

    def sent_to(self, chat_id: int | str) -> list[SentMessage]:
        return list(self._sent_by_chat.get(chat_id, ()))

    def message(self, chat_id: int | str, message_id: int) -> dict[str, Any] | None:
        return self._messages.get((chat_id, message_id))

    def shown(self, chat_id: int | str) -> list[dict[str, Any]]:
        """The bot's messages in a chat as a user sees them now: edits applied, deleted
        ones gone, in order."""
        mine = [
            m
            for (chat, _), m in self._messages.items()
            if chat == chat_id and m.get("from", {}).get("id") == self.bot_id
        ]
        return sorted(mine, key=lambda m: int(m["message_id"]))

    async def wait_for(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        """Until `predicate()` holds (checked after every request), or TimeoutError."""
        deadline = asyncio.get_running_loop().time() + within
        while not predicate():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError("the fake Telegram server never saw what the test waited for")
            event = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    async def wait_sent(
        self, chat_id: int | str, count: int = 1, within: float = 5.0
    ) -> list[SentMessage]:
        """At least `count` messages sent to `chat_id`; returns them all."""
        await self.wait_for(lambda: len(self._sent_by_chat.get(chat_id, ())) >= count, within)
        return self.sent_to(chat_id)

    def _notify(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    # ------------------------------------------------------------ HTTP layer

    async def _file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return _error_response(ApiError(401, "Unauthorized"))
        return web.Response(status=404, text="Not Found")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return _error_response(ApiError(401, "Unauthorized"))
        method = request.match_info["method"].lower()
        try:
            params = await _read_params(request)
        except ValueError as e:
            return _error_response(_bad(str(e)))
        self.calls.append((method, params))
        self.method_counts[method] = self.method_counts.get(method, 0) + 1
        try:
            result = await self._dispatch(method, params)
        except ApiError as e:
            response = _error_response(e)
        else:
            response = web.json_response({"ok": True, "result": result}, dumps=_dumps)
        self._notify()
        return response

    async def _dispatch(self, method: str, params: dict[str, Any]) -> Any:
        scripted = self._method_failures.get(method)
        if scripted:
            failure = scripted.popleft()
            raise ApiError(failure.code, failure.description, failure.parameters)
        handler = _METHODS.get(method)
        if handler is None:
            raise ApiError(404, "Not Found: method not found")
        if method in LIMITED_METHODS:
            chat_id = _chat_id(params)
            chat_failure = self._chat_failures.get(chat_id)
            if chat_failure is not None:
                raise ApiError(chat_failure.code, chat_failure.description, chat_failure.parameters)
            retry_after = self._limiter.check(chat_id, paid=_flag(params, "allow_paid_broadcast"))
            if retry_after:
                # The bot's own pace broke a limit (scripted 429s are not counted here).
                self.rate_limited += 1
                raise ApiError(
                    429,
                    f"Too Many Requests: retry after {retry_after}",
                    {"retry_after": retry_after},
                )
        return await handler(self, params)

    # --------------------------------------------------------------- methods

    async def _get_me(self, params: dict[str, Any]) -> Any:
        return self.bot_user

    async def _log_out(self, params: dict[str, Any]) -> Any:
        return True

    async def _get_updates(self, params: dict[str, Any]) -> Any:
        if self.competing_poller:
            raise ApiError(
                409,
                "Conflict: terminated by other getUpdates request; make sure that only one "
                "bot instance is running",
            )
        if self.webhook is not None:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = _int(params.get("offset"), 0)
        limit = max(1, min(100, _int(params.get("limit"), 100)))
        timeout = max(0, min(50, _int(params.get("timeout"), 0)))
        allowed = _json(params.get("allowed_updates"))
        if allowed:
            self._allowed_updates = frozenset(allowed)
        elif allowed == []:
            self._allowed_updates = DEFAULT_UPDATE_TYPES
        while self._updates and self._updates[0]["update_id"] < offset:
            self._updates.popleft()  # confirmed
        if not self._updates and timeout:
            self._update_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._update_event.wait(), timeout)
        result: list[dict[str, Any]] = []
        for update in list(self._updates):
            if len(result) >= limit:
                break
            kind = next(k for k in update if k != "update_id")
            if kind in self._allowed_updates:
                result.append(update)
            else:
                self._updates.remove(update)  # Telegram drops what the bot did not ask for
        return result

    async def _set_webhook(self, params: dict[str, Any]) -> Any:
        url = str(params.get("url", ""))
        if not url:
            self.webhook = None
            return True
        if not url.startswith(("http://", "https://")):
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise _bad("bad webhook: secret token contains unallowed characters")
        allowed = _json(params.get("allowed_updates"))
        if allowed:
            self._allowed_updates = frozenset(allowed)
        self.webhook = {"url": url, "secret_token": secret}
        if _bool(params.get("drop_pending_updates")):
            self._updates.clear()
        # Updates queued for getUpdates go to the webhook now.
        while self._updates:
            self._webhook_queue.put_nowait(self._updates.popleft())
        if self._webhook_task is None:
            self._webhook_task = asyncio.create_task(self._pump_webhook())
        return True

    async def _delete_webhook(self, params: dict[str, Any]) -> Any:
        self.webhook = None
        if _bool(params.get("drop_pending_updates")):
            self._updates.clear()
        return True

    async def _get_webhook_info(self, params: dict[str, Any]) -> Any:
        return {
            "url": self.webhook["url"] if self.webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates) + self._webhook_queue.qsize(),
        }

    async def _pump_webhook(self) -> None:
        self._session = self._session or ClientSession()
        while True:
            update = await self._webhook_queue.get()
            webhook = self.webhook
            if webhook is None:
                self._updates.append(update)
                self._update_event.set()
                continue
            headers = {}
            if webhook["secret_token"]:
                headers["X-Telegram-Bot-Api-Secret-Token"] = webhook["secret_token"]
            for _attempt in range(50):  # the bot's webhook server may still be starting
                try:
                    async with self._session.post(
                        webhook["url"],
                        data=_dumps(update),
                        headers={**headers, "Content-Type": "application/json"},
                    ) as response:
                        if response.status < 500:
                            break
                except OSError:
                    pass
                await asyncio.sleep(0.05)
            self._notify()

    async def _set_my_commands(self, params: dict[str, Any]) -> Any:
        commands = _json(params.get("commands"))
        if not isinstance(commands, list) or len(commands) > 100:
            raise _bad(
                "BOT_COMMANDS_TOO_MUCH" if isinstance(commands, list) else "commands are empty"
            )
        clean = []
        for command in commands:
            name = str(command.get("command", ""))
            description = str(command.get("description", ""))
            if not re.fullmatch(r"[a-z0-9_]{1,32}", name):
                raise _bad("BOT_COMMAND_INVALID")
            if not 1 <= len(description.strip()) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
            clean.append({"command": name, "description": description})
        scope = _json(params.get("scope")) or {"type": "default"}
        self.commands[_scope_key(scope)] = clean
        return True

    async def _get_my_commands(self, params: dict[str, Any]) -> Any:
        scope = _json(params.get("scope")) or {"type": "default"}
        return self.commands.get(_scope_key(scope), [])

    async def _delete_my_commands(self, params: dict[str, Any]) -> Any:
        scope = _json(params.get("scope")) or {"type": "default"}
        self.commands.pop(_scope_key(scope), None)
        return True

    async def _send_message(self, params: dict[str, Any]) -> Any:
        chat_id = _chat_id(params)
        raw = str(params.get("text", ""))
        parse_mode = params.get("parse_mode")
        text, entities = _parse(raw, parse_mode)
        if not text.strip():
            raise _bad("message text is empty")
        if utf16_len(text.strip()) > MAX_TEXT:
            raise _bad("message is too long")
        return self._record("sendMessage", chat_id, params, raw, text, entities, parse_mode)

    async def _send_photo(self, params: dict[str, Any]) -> Any:
        chat_id = _chat_id(params)
        photo = params.get("photo")
        if isinstance(photo, str) and photo.startswith("attach://"):
            photo = params.get(photo.removeprefix("attach://"))
        if not isinstance(photo, bytes) or not photo:
            raise _bad("there is no photo in the request")
        if not photo.startswith(b"\x89PNG") and not photo.startswith(b"\xff\xd8"):
            raise _bad("IMAGE_PROCESS_FAILED")
        raw = str(params.get("caption", "") or "")
        parse_mode = params.get("parse_mode")
        text, entities = _parse(raw, parse_mode)
        if utf16_len(text.strip()) > MAX_CAPTION:
            raise _bad("message caption is too long")
        return self._record(
            "sendPhoto", chat_id, params, raw, text, entities, parse_mode, photo=photo
        )

    async def _send_document(self, params: dict[str, Any]) -> Any:
        chat_id = _chat_id(params)
        document = params.get("document")
        if isinstance(document, str) and document.startswith("attach://"):
            document = params.get(document.removeprefix("attach://"))
        if not isinstance(document, bytes):
            raise _bad("there is no document in the request")  # only uploads are faked
        if not document:
            raise _bad("file must be non-empty")
        if len(document) > 50 * 1024 * 1024:
            raise ApiError(413, "Request Entity Too Large")
        name = (params.get("_filenames") or {}).get("document") or "document"
        raw = str(params.get("caption", "") or "")
        parse_mode = params.get("parse_mode")
        text, entities = _parse(raw, parse_mode)
        if utf16_len(text.strip()) > MAX_CAPTION:
            raise _bad("message caption is too long")
        return self._record(
            "sendDocument",
            chat_id,
            params,
            raw,
            text,
            entities,
            parse_mode,
            document=(name, document),
        )

    def react(
        self,
        chat_id: int,
        message_id: int,
        user_id: int,
        new: Sequence[str],
        old: Sequence[str] = (),
    ) -> int:
        """A user changes their emoji reactions on a message (a message_reaction update,
        delivered only to bots that asked for it in allowed_updates)."""
        if (chat_id, message_id) not in self._messages:
            raise KeyError(f"no message {message_id} in chat {chat_id}")
        return self.push_update(
            "message_reaction",
            {
                "chat": self._chat(chat_id),
                "message_id": message_id,
                "user": self.user(user_id),
                "date": next(self._clock),
                "old_reaction": [{"type": "emoji", "emoji": e} for e in old],
                "new_reaction": [{"type": "emoji", "emoji": e} for e in new],
            },
        )

    async def _edit_message_text(self, params: dict[str, Any]) -> Any:
        chat_id = _chat_id(params)
        message_id = _int(params.get("message_id"), 0)
        old = self._messages.get((chat_id, message_id))
        if old is None:
            raise _bad("message to edit not found")
        if "text" not in old:
            raise _bad("there is no text in the message to edit")
        raw = str(params.get("text", ""))
        parse_mode = params.get("parse_mode")
        text, entities = _parse(raw, parse_mode)
        if not text.strip():
            raise _bad("message text is empty")
        if utf16_len(text.strip()) > MAX_TEXT:
            raise _bad("MESSAGE_TOO_LONG")
        markup = self._markup(params)
        if old.get("text") == text and old.get("reply_markup") == markup:
            raise _bad(
                "message is not modified: specified new message content and reply markup "
                "are exactly the same as a current content and reply markup of the message"
            )
        return self._record(
            "editMessageText",
            chat_id,
            params,
            raw,
            text,
            entities,
            parse_mode,
            message_id=message_id,
        )

    async def _delete_message(self, params: dict[str, Any]) -> Any:
        chat_id = _chat_id(params)
        message_id = _int(params.get("message_id"), 0)
        if self._messages.pop((chat_id, message_id), None) is None:
            raise _bad("message to delete not found")
        self.deleted.append((chat_id, message_id))
        return True

    async def _edit_message_reply_markup(self, params: dict[str, Any]) -> Any:
        chat_id = _chat_id(params)
        message_id = _int(params.get("message_id"), 0)
        message = self._messages.get((chat_id, message_id))
        if message is None:
            raise _bad("message to edit not found")
        markup = self._markup(params)
        if markup:
            message["reply_markup"] = markup
        else:
            message.pop("reply_markup", None)
        return message

    async def _answer_callback_query(self, params: dict[str, Any]) -> Any:
        query_id = str(params.get("callback_query_id", ""))
        if query_id not in self._callbacks:
            raise _bad("query is too old and response timeout expired or query ID is invalid")
        if query_id in self.callback_answers:
            raise _bad("query is too old and response timeout expired or query ID is invalid")
        text = str(params.get("text", "") or "")
        if len(text) > MAX_ANSWER_TEXT:
            raise _bad("MESSAGE_TOO_LONG")
        self.callback_answers[query_id] = {
            "text": text,
            "show_alert": _bool(params.get("show_alert")),
            "url": params.get("url"),
        }
        return True

    async def _get_chat_member(self, params: dict[str, Any]) -> Any:
        chat_id = _chat_id(params)
        user_id = _int(params.get("user_id"), 0)
        if not isinstance(chat_id, int) or chat_id not in self.chats:
            raise _bad("chat not found")
        chat = self.chats[chat_id]
        if chat["type"] == "private":
            status = "member"
        else:
            status = self.members.get((chat_id, user_id), "left")
        return self._member(chat_id, user_id, status)

    async def _get_chat_administrators(self, params: dict[str, Any]) -> Any:
        chat_id = _chat_id(params)
        if not isinstance(chat_id, int) or chat_id not in self.chats:
            raise _bad("chat not found")
        return [
            self._member(chat_id, user_id, status)
            for (chat, user_id), status in self.members.items()
            if chat == chat_id and status in ("creator", "administrator")
        ]

    async def _get_chat(self, params: dict[str, Any]) -> Any:
        chat_id = _chat_id(params)
        if chat_id not in self.chats:
            raise _bad("chat not found")
        chat = dict(self.chats[chat_id])
        chat.setdefault("accent_color_id", 0)
        chat.setdefault("max_reaction_count", 11)
        return chat

    async def _send_chat_action(self, params: dict[str, Any]) -> Any:
        chat_id = _chat_id(params)
        failure = self._chat_failures.get(chat_id)
        if failure is not None:
            raise ApiError(failure.code, failure.description, failure.parameters)
        return True

    # ------------------------------------------------------------ recording

    def _markup(self, params: Mapping[str, Any]) -> dict[str, Any] | None:
        markup = _json(params.get("reply_markup"))
        if not markup:
            return None
        if not isinstance(markup, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        rows = markup.get("inline_keyboard")
        if rows is None:
            return markup
        for row in rows:
            for button in row:
                text = str(button.get("text", ""))
                if not text.strip():
                    raise _bad("BUTTON_TEXT_EMPTY")
                kinds = [
                    k
                    for k in (
                        "url",
                        "callback_data",
                        "switch_inline_query",
                        "pay",
                        "login_url",
                        "web_app",
                        "copy_text",
                    )
                    if k in button
                ]
                if len(kinds) != 1:
                    raise _bad(
                        "can't parse inline keyboard button: Text buttons are unallowed in "
                        "the inline keyboard"
                    )
                if "callback_data" in button:
                    data = str(button["callback_data"])
                    if not 1 <= len(data.encode("utf-8")) <= MAX_CALLBACK_DATA:
                        raise _bad("BUTTON_DATA_INVALID")
                if "url" in button:
                    url = str(button["url"])
                    if not re.match(r"^(https?|tg)://[^\s]+$", url):
                        raise _bad(f"inline keyboard button URL '{url}' is invalid: Wrong HTTP URL")
        return markup

    def _new_message_id(self, chat_id: int | str) -> int:
        message_id = self._next_message_id.get(chat_id, 0) + 1
        self._next_message_id[chat_id] = message_id
        return message_id

    def _record(
        self,
        method: str,
        chat_id: int | str,
        params: Mapping[str, Any],
        raw: str,
        text: str,
        entities: list[dict[str, Any]],
        parse_mode: Any,
        *,
        photo: bytes | None = None,
        message_id: int | None = None,
        document: tuple[str, bytes] | None = None,
    ) -> dict[str, Any]:
        markup = self._markup(params)
        reply_to = _json(params.get("reply_parameters"))
        reply_to_id = reply_to.get("message_id") if isinstance(reply_to, dict) else None
        reply_to_id = reply_to_id or _int(params.get("reply_to_message_id"), 0) or None
        chat = self.chats.get(chat_id) if isinstance(chat_id, int) else None
        if chat is None:
            chat = {
                "id": chat_id,
                "type": "private" if isinstance(chat_id, int) and chat_id > 0 else "supergroup",
                "first_name": "Someone",
                "title": "Somewhere",
            }
        if message_id is None:
            message_id = self._new_message_id(chat_id)
        message: dict[str, Any] = {
            "message_id": message_id,
            "date": next(self._clock),
            "chat": chat,
            "from": self.bot_user,
        }
        if photo is not None:
            message["photo"] = [
                {
                    "file_id": f"photo{chat_id}_{message_id}",
                    "file_unique_id": f"u{chat_id}_{message_id}",
                    "width": 800,
                    "height": 200,
                    "file_size": len(photo),
                }
            ]
            if text:
                message["caption"] = text
                if entities:
                    message["caption_entities"] = entities
        elif document is not None:
            message["document"] = {
                "file_id": f"doc{chat_id}_{message_id}",
                "file_unique_id": f"d{chat_id}_{message_id}",
                "file_name": document[0],
                "file_size": len(document[1]),
            }
            if text:
                message["caption"] = text
        else:
            message["text"] = text
            if entities:
                message["entities"] = entities
        if markup:
            message["reply_markup"] = markup
        if method == "editMessageText":
            message["edit_date"] = message["date"]
        self._messages[(chat_id, message_id)] = message
        record = SentMessage(
            method,
            chat_id,
            message_id,
            text,
            raw,
            str(parse_mode) if parse_mode else None,
            markup,
            photo,
            reply_to_id,
            entities,
            document,
        )
        self.sent.append(record)
        self._sent_by_chat.setdefault(chat_id, []).append(record)
        return message


_METHODS: dict[str, Callable[[FakeTelegram, dict[str, Any]], Any]] = {
    "getme": FakeTelegram._get_me,
    "logout": FakeTelegram._log_out,
    "close": FakeTelegram._log_out,
    "getupdates": FakeTelegram._get_updates,
    "setwebhook": FakeTelegram._set_webhook,
    "deletewebhook": FakeTelegram._delete_webhook,
    "getwebhookinfo": FakeTelegram._get_webhook_info,
    "setmycommands": FakeTelegram._set_my_commands,
    "getmycommands": FakeTelegram._get_my_commands,
    "deletemycommands": FakeTelegram._delete_my_commands,
    "sendmessage": FakeTelegram._send_message,
    "sendphoto": FakeTelegram._send_photo,
    "senddocument": FakeTelegram._send_document,
    "editmessagetext": FakeTelegram._edit_message_text,
    "editmessagereplymarkup": FakeTelegram._edit_message_reply_markup,
    "deletemessage": FakeTelegram._delete_message,
    "answercallbackquery": FakeTelegram._answer_callback_query,
    "getchatmember": FakeTelegram._get_chat_member,
    "getchatadministrators": FakeTelegram._get_chat_administrators,
    "getchat": FakeTelegram._get_chat,
    "sendchataction": FakeTelegram._send_chat_action,
}


# ----------------------------------------------------------------- helpers


def _flag(params: Mapping[str, Any], name: str) -> bool:
    value = params.get(name)
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _error_response(error: ApiError) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": error.code, "description": error.description}
    if error.parameters:
        body["parameters"] = error.parameters
    return web.json_response(body, status=error.code, dumps=_dumps)


async def _read_params(request: web.Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query)
    if request.method != "POST" or not request.can_read_body:
        return params
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except json.JSONDecodeError as e:
            raise ValueError("can't parse JSON body") from e
        if not isinstance(body, dict):
            raise ValueError("JSON body must be an object")
        params.update(body)
        return params
    form = await request.post()
    for key, value in form.items():
        if isinstance(value, web.FileField):
            params[key] = value.file.read()
            params.setdefault("_filenames", {})[key] = value.filename
        else:
            params[key] = value
    return params


def _parse(raw: str, parse_mode: Any) -> tuple[str, list[dict[str, Any]]]:
    if parse_mode and str(parse_mode).upper() == "HTML":
        try:
            return parse_html(raw)
        except EntityParseError as e:
            raise _bad(f"can't parse entities: {e}") from None
    if parse_mode:
        raise _bad(f"unsupported parse_mode {parse_mode!r} in this fake")
    return raw, []


def _chat_id(params: Mapping[str, Any]) -> int | str:
    value = params.get("chat_id")
    if value is None or value == "":
        raise _bad("chat_id is empty")
    if isinstance(value, int):
        return value
    text = str(value)
    if text.startswith("@"):
        return text
    try:
        return int(text)
    except ValueError:
        raise _bad("chat not found") from None


def _int(value: Any, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _bad(f"expected an Integer, got {value!r}") from None


def _bool(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1")


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise _bad("can't parse JSON") from None
    return value


def _scope_key(scope: Any) -> str:
    if not isinstance(scope, dict):
        return "default"
    parts = [str(scope.get("type", "default"))]
    if "chat_id" in scope:
        parts.append(str(scope["chat_id"]))
    if "user_id" in scope:
        parts.append(str(scope["user_id"]))
    return ":".join(parts)


def iter_buttons(markup: Mapping[str, Any] | None) -> Iterator[dict[str, Any]]:
    for row in (markup or {}).get("inline_keyboard", []):
        yield from row
