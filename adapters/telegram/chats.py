"""Telegram chats as the adapter addresses them, and the pace Telegram allows in them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from telegram.constants import ChatType

from bot.commands import ChatKind
from bot.models import ChatRef
from bot.pacing import SendLimits

if TYPE_CHECKING:
    from bot.config import Settings

PLATFORM = "telegram"
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


def telegram_chat_id(chat: ChatRef) -> int | str:
    try:
        return int(chat.chat_id)
    except ValueError:
        return chat.chat_id  # "@channelusername"


def thread_id(chat: ChatRef) -> int | None:
    return int(chat.thread_id) if chat.thread_id else None


def chat_kind(chat_type: str) -> ChatKind:
    if chat_type == ChatType.PRIVATE:
        return "private"
    if chat_type == ChatType.CHANNEL:
        return "channel"
    return "group"
