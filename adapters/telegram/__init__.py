"""Telegram: commands in, Telegram HTML out, Bot API errors mapped onto bot.sending.

adapter.py   the adapter: PTB lifecycle, digests out (Sender), replies out (Outbound)
inbound.py   updates in: commands, buttons, follow-up replies, reactions, membership
render.py    Message -> Telegram HTML parts and inline keyboard
errors.py    Bot API errors -> bot.sending errors
fastpath.py  digests' text parts as prepared JSON straight through httpx (its contract)
chats.py     chat ids, threads, kinds, and the pace Telegram allows
"""

from adapters.split import utf16_len
from adapters.telegram.adapter import ALLOWED_UPDATES, TelegramAdapter
from adapters.telegram.chats import is_group, send_limits
from adapters.telegram.render import (
    MAX_CALLBACK_DATA,
    callback_data,
    parse_callback_data,
    render_html,
)

__all__ = [
    "ALLOWED_UPDATES",
    "MAX_CALLBACK_DATA",
    "TelegramAdapter",
    "callback_data",
    "is_group",
    "parse_callback_data",
    "render_html",
    "send_limits",
    "utf16_len",
]
