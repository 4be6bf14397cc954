"""The discord.py client as Paperboy runs it: the gateway on the configured API, every
request paced (bot/pacing.py), Discord's errors mapped onto bot.sending's, and the
permissions a channel needs for digests."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket

from adapters.discord.render import NO_MENTIONS
from adapters.discord.slash import CommandButton, PickMenu
from bot.config import Settings
from bot.pacing import Pacer, SendLimits
from bot.sending import ChatGone, PermanentError, RetryAfter, SendError, TransientError

if TYPE_CHECKING:
    from adapters.discord.adapter import DiscordAdapter

log = logging.getLogger(__name__)

# What the bot needs in a channel to post digests (embeds, equation images), as Discord's
# client names them.
POST_PERMISSIONS = (
    ("view_channel", "View Channel"),
    ("send_messages", "Send Messages"),
    ("embed_links", "Embed Links"),
    ("attach_files", "Attach Files"),
)
# Errors that mean Discord (or the network) is not there yet: start-up tries again.
UNREACHABLE = (
    aiohttp.ClientError,
    OSError,
    TimeoutError,
    discord.DiscordServerError,
    discord.GatewayNotFound,
)
TELL_ADMINS_EVERY = 3600.0  # seconds: at most one "digests paused" notice per channel


def missing_permissions(
    permissions: discord.Permissions, *, thread: bool = False
) -> tuple[str, ...]:
    """The posting permissions `permissions` lacks, by their names in Discord's client
    (in a thread, Send Messages in Threads stands for Send Messages)."""
    needed: dict[str, str] = dict(POST_PERMISSIONS)
    if thread:
        del needed["send_messages"]
        needed["send_messages_in_threads"] = "Send Messages in Threads"
    return tuple(label for attr, label in needed.items() if not getattr(permissions, attr))


def map_error(exc: BaseException) -> SendError:
    """A discord.py / network error -> what delivery should do about it."""
    if isinstance(exc, SendError):
        return exc
    if isinstance(exc, discord.RateLimited):
        return RetryAfter(exc.retry_after)
    if isinstance(exc, discord.HTTPException):
        what = f"Discord {exc.status} (code {exc.code})"
        if isinstance(exc, discord.Forbidden | discord.NotFound):
            # 50001 Missing Access, 50013 Missing Permissions, 10003 Unknown Channel…
            return ChatGone(what)
        if exc.status == 429:
            return RetryAfter(_retry_after(exc))
        if exc.status >= 500:
            return TransientError(what)
        return PermanentError(what)
    if isinstance(exc, aiohttp.ClientError | TimeoutError | OSError):
        return TransientError(f"network error talking to Discord: {type(exc).__name__}")
    return PermanentError(f"unexpected error sending to Discord: {type(exc).__name__}")


def _retry_after(exc: discord.HTTPException) -> float:
    try:
        return max(0.0, float(exc.response.headers.get("Retry-After", "5")))
    except (AttributeError, ValueError):
        return 5.0


# Discord allows 50 requests a second per bot, every request counted; we keep 45.
_MESSAGES_ROUTE = re.compile(r"/channels/(\d+)/messages$")


def send_limits(settings: Settings, channel_interval: float | None = None) -> SendLimits:
    """Our pace on Discord: the global limit with headroom, and a little under a message a
    second per channel (Discord allows 5 per 5 s; discord.py honours each route's bucket
    too)."""
    if channel_interval is None:
        rate = settings.delivery_chat_rate_per_second
        channel_interval = 1.0 / rate if rate > 0 else 0.0
    return SendLimits(
        overall=settings.worker_share().discord_rate_per_second, chat_interval=channel_interval
    )


def pacing_trace(pacer: Pacer) -> aiohttp.TraceConfig:
    """An aiohttp hook that paces every request discord.py makes, when it makes it: its
    own retries, interaction answers and logins count against the global limit too, and
    a global 429 holds every request back for its retry_after."""

    async def on_start(
        session: aiohttp.ClientSession, context: Any, params: aiohttp.TraceRequestStartParams
    ) -> None:
        channel = None
        if params.method == "POST":
            match = _MESSAGES_ROUTE.search(params.url.path)
            channel = match.group(1) if match else None
        await pacer.acquire(channel)

    async def on_end(
        session: aiohttp.ClientSession, context: Any, params: aiohttp.TraceRequestEndParams
    ) -> None:
        headers = params.response.headers
        if params.response.status == 429 and headers.get("X-RateLimit-Global") == "true":
            try:
                pacer.pause(float(headers.get("Retry-After", "1")))
            except ValueError:
                pacer.pause(1.0)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    trace.on_request_end.append(on_end)
    return trace


def use_api_base(url: str) -> None:
    """Point discord.py at `url`: every REST URL it builds (bot calls, interaction
    callbacks, webhooks/follow-ups) starts with Route.BASE; the gateway URL comes from
    GET /gateway/bot. Process-wide, as discord.py allows nothing finer."""
    discord.http.Route.BASE = url.rstrip("/")


class Client(discord.AutoShardedClient):
    """discord.py's sharded client, with the adapter it calls back (`adapter`) and the
    command tree built from the table."""

    def __init__(self, adapter: DiscordAdapter, **options: Any) -> None:
        # Paperboy never joins voice: skip discord.py's startup warnings about voice libraries.
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        super().__init__(
            # Interactions need no privileged intent; reactions (votes, issue 14) are not
            # privileged either.
            intents=discord.Intents(guilds=True, guild_reactions=True, dm_reactions=True),
            allowed_mentions=NO_MENTIONS,
            max_ratelimit_timeout=30.0,  # longer waits come back as RetryAfter to the outbox
            **options,
        )
        self.adapter = adapter
        self.tree: app_commands.CommandTree[Client] = app_commands.CommandTree(self)
        self.tree.on_error = adapter.on_tree_error  # type: ignore[method-assign]
        # discord.py falls back to its built-in gateway URL whenever it starts a session
        # afresh (a pinned shard count, a reconnect, a non-resumable INVALID_SESSION):
        # ask the configured API's /gateway/bot instead, every time.
        connect = self.http.ws_connect

        async def ws_connect(url: str, *, compress: int = 0) -> Any:
            return await connect(await self.gateway_for(url), compress=compress)

        self.http.ws_connect = ws_connect  # type: ignore[method-assign]

    async def gateway_for(self, url: str) -> str:
        """`url` on the gateway /gateway/bot names, when discord.py chose its default.
        A resume keeps the session's own `resume_gateway_url`."""
        wanted = yarl.URL(url)
        if wanted.host != DiscordWebSocket.DEFAULT_GATEWAY.host:
            return url
        _, gateway, _ = await self.http.get_bot_gateway()
        configured = yarl.URL(gateway)
        log.debug("discord: connecting to the gateway %s", configured.host)
        return str(configured.with_query(wanted.query))

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        await self.adapter.on_reaction(payload, added=True)

    async def on_raw_reaction_remove(self, payload: discord.RawReactionActionEvent) -> None:
        await self.adapter.on_reaction(payload, added=False)

    async def setup_hook(self) -> None:
        self.add_dynamic_items(CommandButton, PickMenu)
        if self.adapter.receiving:
            await self.adapter.sync_commands()

    # A paused channel comes back as soon as the bot can post there again: on GUILD_CREATE
    # (start-up, or invited back) and when a channel's or a role's permissions change.
    async def on_guild_available(self, guild: discord.Guild) -> None:
        await self.adapter.resume_channels(guild, guild.text_channels)

    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self.adapter.resume_channels(guild, guild.text_channels)

    async def on_guild_role_update(self, before: discord.Role, after: discord.Role) -> None:
        await self.adapter.resume_channels(after.guild, after.guild.text_channels)

    async def on_guild_channel_update(
        self, before: discord.abc.GuildChannel, after: discord.abc.GuildChannel
    ) -> None:
        await self.adapter.resume_channels(after.guild, [after])
