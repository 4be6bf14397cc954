"""Paperboy on Discord.

adapter.py   DiscordAdapter: lifecycle, slash commands and buttons in, replies out through
             bot/conversation.py, digests out over REST, paused channels
client.py    the discord.py client: gateway, pacing of every request, error mapping
render.py    the document model -> markdown content or embeds, buttons and menus -> views
slash.py     the command table -> slash commands, autocomplete, dynamic buttons and menus
"""

from adapters.discord.adapter import DiscordAdapter
from adapters.discord.client import map_error, missing_permissions, send_limits
from adapters.discord.render import (
    CONTENT_MAX,
    EMBED_DESCRIPTION_MAX,
    EMBED_TITLE_MAX,
    EMBED_TOTAL_MAX,
    EMBEDS_MAX,
    RenderedMessage,
    code_span,
    dlen,
    escape,
    render_discord,
)

__all__ = [
    "CONTENT_MAX",
    "EMBEDS_MAX",
    "EMBED_DESCRIPTION_MAX",
    "EMBED_TITLE_MAX",
    "EMBED_TOTAL_MAX",
    "DiscordAdapter",
    "RenderedMessage",
    "code_span",
    "dlen",
    "escape",
    "map_error",
    "missing_permissions",
    "render_discord",
    "send_limits",
]
