"""Bot API errors as the core reads them (bot.sending): which chat moved, which is gone,
what is worth a retry. Descriptions are redacted: no token ever leaks into a message."""

from __future__ import annotations

import datetime as dt
import json
import warnings
from http import HTTPStatus

from telegram import error as tg_error

from adapters.telegram.chats import PLATFORM
from bot import sending
from bot.logs import redact
from bot.models import ChatRef

# What "chat not found"-like 400s say: the chat is gone for us, stop sending there.
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
