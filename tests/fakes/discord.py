"""A fake Discord on 127.0.0.1: the REST API (`/api/v10`) and a gateway websocket.

The real discord.py client connects to it through `DISCORD_API_BASE_URL`:

    async with FakeDiscord() as fake:
        settings = Settings(discord_bot_token=fake.token, discord_api_base_url=fake.api_url)
        ...                                      # start the adapter, wait for READY
        it = await fake.slash("paper", {"id": "1706.03762"}, guild=True)
        await it.wait_done()                     # callback (+ follow-ups for deferred ones)
        it.callbacks, it.followups               # what the bot answered
        fake.channel_messages[channel_id]        # what it posted over REST
        fake.fail_channel(channel_id, 404, 10003)   # Unknown Channel from now on
        fake.rate_limit("/channels/", count=1, retry_after=0.05)

It speaks the real wire formats (snowflakes, message/guild/interaction objects, multipart
uploads with `payload_json`) and enforces the real message limits: a payload Discord
would refuse gets the same 400 (code 50035) here. Gateway frames are plain JSON text:
discord.py asks for zlib-stream but reads uncompressed text frames too.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.base import RollingWindow

DISCORD_EPOCH_MS = 1420070400000
API_PREFIX = "/api/v10"

# Permission bits (https://discord.com/developers/docs/topics/permissions).
MANAGE_CHANNELS = 1 << 4
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
USE_APPLICATION_COMMANDS = 1 << 31
MEMBER_PERMISSIONS = VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | ATTACH_FILES
MEMBER_PERMISSIONS |= USE_APPLICATION_COMMANDS
ADMIN_PERMISSIONS = MEMBER_PERMISSIONS | MANAGE_CHANNELS

# Message limits Discord enforces.
CONTENT_MAX = 2000
EMBEDS_MAX = 10
EMBED_TOTAL_MAX = 6000
EMBED_TITLE_MAX = 256
EMBED_DESCRIPTION_MAX = 4096
EMBED_FIELDS_MAX = 25
EMBED_FIELD_NAME_MAX = 256
EMBED_FIELD_VALUE_MAX = 1024
EMBED_FOOTER_MAX = 2048
EMBED_AUTHOR_MAX = 256
ROWS_MAX = 5
BUTTONS_PER_ROW_MAX = 5
CUSTOM_ID_MAX = 100
LABEL_MAX = 80
STRING_SELECT = 3  # component type
SELECT_OPTIONS_MAX = 25
SELECT_OPTION_MAX = 100  # label and value
SELECT_PLACEHOLDER_MAX = 150

# Interaction and option types.
APPLICATION_COMMAND = 2
MESSAGE_COMPONENT = 3
AUTOCOMPLETE = 4
OPTION_STRING = 3
OPTION_INTEGER = 4
# Callback types.
CHANNEL_MESSAGE = 4
DEFERRED_CHANNEL_MESSAGE = 5
DEFERRED_UPDATE = 6
AUTOCOMPLETE_RESULT = 8
EPHEMERAL = 1 << 6


# ------------------------------------------------------------ what users see

# Discord's markdown, as its client shows it: `\X` shows X; a fence or a code span shows
# its inside as typed; emphasis, strike and spoiler markers vanish; `[label](<url>)`
# shows its label. Enough to read a bot's answer as a person does.
_SHOWN = re.compile(
    r"```(?:[a-z]*\n)?(?P<fence>.*?)\n?```"
    r"|`(?P<code>[^`]*)`"
    r"|\\(?P<escaped>[!-/:-@\[-`{-~])"
    r"|\[(?P<label>(?:\\.|[^\]\\])*)\]\(<?[^)>]*>?\)"
    r"|(?P<marker>\*\*|\*|__|_|~~|\|\|)",
    re.DOTALL,
)


def visible_markdown(text: str) -> str:
    """The text a Discord user sees for `text` (message content or an embed's text)."""

    def shown(match: re.Match[str]) -> str:
        if match["label"] is not None:
            return visible_markdown(match["label"])
        if match["marker"] is not None:
            return ""
        return match["fence"] or match["code"] or match["escaped"] or ""

    return _SHOWN.sub(shown, text)


def visible_text(message: dict[str, Any]) -> str:
    """What a user reads in one message: its content, then each embed's title and text,
    then the names of its attachments."""
    parts = [visible_markdown(message.get("content") or "")]
    for embed in message.get("embeds") or []:
        parts += [visible_markdown(embed.get(k) or "") for k in ("title", "description")]
    parts += [a.get("filename") or "" for a in message.get("attachments") or []]
    return "\n".join(p for p in parts if p)


@dataclass(slots=True)
class RateLimits:
    """Discord's published limits, each a rolling window: 50 requests a second per bot
    (every request counts), and each channel's message route 5 per 5 s, announced in
    X-RateLimit headers. `scale` speeds the clock up: a channel's window shortens, and
    the global limit grows to 50/scale in a one-second window, so network and scheduling
    jitter weigh as they would at real speed, not 1/scale times more.
    `enabled=False` lets all through."""

    enabled: bool = True
    global_per_second: float = 50.0
    channel_messages: int = 5
    channel_window: float = 5.0
    scale: float = 1.0


_CHANNEL_MESSAGES = re.compile(re.escape(API_PREFIX) + r"/channels/(\d+)/messages$")


class _Snowflakes:
    def __init__(self) -> None:
        self._counter = 0

    def next(self) -> str:
        self._counter += 1
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return str((ms << 22) | (1 << 17) | (self._counter & 0xFFF))


@dataclass
class Guild:
    id: str
    name: str
    channels: list[str]  # text channel ids


@dataclass
class FakeInteraction:
    """One interaction pushed to the bot, and everything it answered."""

    id: str
    token: str
    payload: dict[str, Any]
    callbacks: list[dict[str, Any]] = field(default_factory=list)  # {"type", "data"}
    followups: list[dict[str, Any]] = field(default_factory=list)  # message objects
    edits: list[dict[str, Any]] = field(default_factory=list)  # PATCH bodies, in order
    patches: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (path id, body)
    deleted_original: bool = False
    deleted: list[str] = field(default_factory=list)  # ids of messages deleted by the bot
    # The answer's messages as users see them now (edits applied, deleted ones gone), by
    # id. A deferred response is a loading message that the first follow-up fills in.
    shown: dict[str, dict[str, Any]] = field(default_factory=dict)
    original_id: str | None = None
    loading: bool = False
    callback_at: float | None = None
    created_at: float = field(default_factory=time.monotonic)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def deferred(self) -> bool:
        return any(c["type"] == DEFERRED_CHANNEL_MESSAGE for c in self.callbacks)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Every message body the bot answered with: callback data, edits, follow-ups."""
        out = [c["data"] for c in self.callbacks if c["type"] == CHANNEL_MESSAGE]
        return out + self.edits + self.followups

    @property
    def text(self) -> str:
        """All content and embed text of the answer, for assertions."""
        parts: list[str] = []
        for body in self.messages:
            parts.append(body.get("content") or "")
            for embed in body.get("embeds") or []:
                parts += [embed.get("title") or "", embed.get("description") or ""]
        return "\n".join(p for p in parts if p)

    @property
    def visible(self) -> str:
        """The answer as the user sees it now (edits applied, deleted messages gone),
        markdown rendered: see `visible_text`."""
        return "\n".join(visible_text(m) for m in self.shown.values())

    async def wait(self, predicate: Callable[[FakeInteraction], bool], seconds: float = 5) -> None:
        async with asyncio.timeout(seconds):
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()

    async def wait_response(self, seconds: float = 5) -> dict[str, Any]:
        await self.wait(lambda it: bool(it.callbacks), seconds)
        return self.callbacks[0]

    async def wait_done(self, followups: int = 1, seconds: float = 10) -> FakeInteraction:
        """Until answered: a message callback, or a deferral plus `followups` follow-ups."""

        def done(it: FakeInteraction) -> bool:
            if not it.callbacks:
                return False
            if it.deferred:
                return len(it.followups) + len(it.edits) >= followups
            return True

        await self.wait(done, seconds)
        return self

    def _touch(self) -> None:
        self._changed.set()


class FakeDiscord:
    def __init__(
        self,
        *,
        token: str = "FAKE.discord-bot-token.s3cr3t-XYZ",
        shards: int = 1,
        guilds: int = 1,
        heartbeat_interval_ms: int = 41250,
        rate_limits: RateLimits | None = None,
    ) -> None:
        self.token = token
        self.rate_limits = rate_limits or RateLimits()
        limits = self.rate_limits
        self._global_window = RollingWindow(limits.global_per_second / limits.scale, 1.0)
        self._channel_windows: dict[str, RollingWindow] = {}
        self.rate_limited = 0  # 429s our limits gave (not the scripted ones)
        self.refused: list[tuple[float, str, str]] = []  # (when, path, which limit)
        self.shards = shards
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self._ids = _Snowflakes()
        self.application_id = self._ids.next()
        self.bot_user = self._user("Paperboy", bot=True, user_id=self.application_id)
        self.owner = self._user("owner")
        self.guilds: dict[str, Guild] = {}
        for n in range(guilds):
            guild_id = self._ids.next()
            self.guilds[guild_id] = Guild(guild_id, f"Guild {n}", [self._ids.next()])
        # Recorded traffic.
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.command_puts: list[list[dict[str, Any]]] = []
        self.commands: list[dict[str, Any]] = []
        self.channel_messages: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.attachments: dict[str, list[tuple[str, bytes]]] = {}  # message id -> files
        self.interactions: dict[str, FakeInteraction] = {}
        self.identifies: list[dict[str, Any]] = []
        self.rejected: list[dict[str, Any]] = []  # 400 bodies we answered, for debugging
        self.send_times: dict[str, list[float]] = defaultdict(list)  # channel -> monotonic
        # Scripted failures.
        self._channel_errors: dict[str, tuple[int, int, str]] = {}
        self.bot_denied: dict[str, int] = {}  # channel -> permission bits denied to the bot
        self.everyone: dict[str, int] = {}  # guild -> @everyone's permissions, if changed
        self._rate_limits: list[dict[str, Any]] = []
        self._server_errors: list[tuple[str, int]] = []
        self._sockets: list[_GatewaySession] = []
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._changed = asyncio.Event()

    # ------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """What DISCORD_API_BASE_URL should be."""
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    @property
    def guild_id(self) -> str:
        return next(iter(self.guilds))

    @property
    def channel_id(self) -> str:
        return self.guilds[self.guild_id].channels[0]

    async def start(self, port: int = 0) -> FakeDiscord:
        """Listen on 127.0.0.1 (`port`, or an ephemeral one)."""
        app = web.Application(middlewares=[self._middleware], client_max_size=26 * 1024 * 1024)
        p = API_PREFIX
        app.router.add_get(p + "/users/@me", self._users_me)
        app.router.add_get(p + "/oauth2/applications/@me", self._application)
        app.router.add_get(p + "/applications/@me", self._application)
        app.router.add_get(p + "/gateway/bot", self._gateway_bot)
        app.router.add_get(p + "/gateway", self._gateway_plain)
        app.router.add_put(p + "/applications/{app}/commands", self._put_commands)
        app.router.add_get(p + "/applications/{app}/commands", self._get_commands)
        app.router.add_post(p + "/interactions/{id}/{token}/callback", self._callback)
        app.router.add_post(p + "/webhooks/{app}/{token}", self._followup)
        message = p + "/webhooks/{app}/{token}/messages/{mid}"
        app.router.add_get(message, self._get_webhook_msg)
        app.router.add_patch(message, self._edit_webhook_msg)
        app.router.add_delete(message, self._delete_webhook_msg)
        app.router.add_post(p + "/channels/{channel}/messages", self._channel_message)
        app.router.add_get("/gateway", self._gateway)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        for session in list(self._sockets):
            await session.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------- scripting

    def fail_channel(self, channel_id: str, status: int = 404, code: int = 10003) -> None:
        """Every send to this channel fails: 404/10003 Unknown Channel, 403/50001 Missing
        Access, 403/50013 Missing Permissions."""
        messages = {10003: "Unknown Channel", 50001: "Missing Access", 50013: "Missing Permissions"}
        self._channel_errors[str(channel_id)] = (status, code, messages.get(code, "Error"))

    def heal_channel(self, channel_id: str) -> None:
        """Sends to this channel work again (undoes `fail_channel`)."""
        self._channel_errors.pop(str(channel_id), None)

    async def set_bot_permissions(
        self, channel_id: str, *, deny: int = 0, announce: bool = True
    ) -> None:
        """A channel permission overwrite for the bot's member: `deny` these bits (0: none).
        Sends then fail as Discord's do (403 50001 without View Channel, 50013 without Send
        Messages, or Attach Files for a message with files); `announce` pushes the
        CHANNEL_UPDATE a connected bot would get."""
        channel_id = str(channel_id)
        if deny:
            self.bot_denied[channel_id] = deny
        else:
            self.bot_denied.pop(channel_id, None)
        if announce:
            guild_id = self._guild_of(channel_id)
            await self.dispatch("CHANNEL_UPDATE", self._channel_object(guild_id, channel_id))

    async def set_everyone_permissions(self, permissions: int, guild_id: str | None = None) -> None:
        """Change the @everyone role (the bot has no other): a GUILD_ROLE_UPDATE follows."""
        guild = self.guilds[guild_id or self.guild_id]
        self.everyone[guild.id] = permissions
        await self.dispatch(
            "GUILD_ROLE_UPDATE", {"guild_id": guild.id, "role": self._everyone(guild)}
        )

    def bot_permissions(self, channel_id: str) -> int:
        """The bot's permissions in a channel: @everyone's, minus its overwrite."""
        everyone = self.everyone.get(self._guild_of(str(channel_id)), MEMBER_PERMISSIONS)
        return everyone & ~self.bot_denied.get(str(channel_id), 0)

    def add_channel(self, guild_id: str | None = None) -> str:
        """One more text channel in a guild (before the bot connects, or it will not know)."""
        channel_id = self._ids.next()
        self.guilds[guild_id or self.guild_id].channels.append(channel_id)
        return channel_id

    async def invalidate_session(self, *, resumable: bool = False) -> None:
        """Op 9 INVALID_SESSION on every session: with `resumable` False the client must
        identify afresh (on the URL /gateway/bot gives)."""
        for session in [s for s in self._sockets if s.ready]:
            session.ready = False
            await session.send(_GatewaySession.INVALID_SESSION, resumable)

    def rate_limit(
        self,
        path_contains: str,
        *,
        count: int = 1,
        retry_after: float = 0.05,
        is_global: bool = False,
    ) -> None:
        """The next `count` requests whose path contains `path_contains` get a 429."""
        self._rate_limits.append(
            {"match": path_contains, "left": count, "retry_after": retry_after, "global": is_global}
        )

    def server_error(self, path_contains: str, status: int = 502) -> None:
        """The next request whose path contains `path_contains` gets a 5xx."""
        self._server_errors.append((path_contains, status))

    async def wait_for(self, predicate: Callable[[], bool], seconds: float = 5) -> None:
        async with asyncio.timeout(seconds):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def wait_identified(self, seconds: float = 5) -> None:
        await self.wait_for(lambda: bool(self.identifies), seconds)

    # ----------------------------------------------------- driving the bot

    def user(self, name: str = "alice") -> dict[str, Any]:
        return self._user(name)

    async def slash(
        self,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        guild: bool = True,
        admin: bool = False,
        user: dict[str, Any] | None = None,
        channel_id: str | None = None,
    ) -> FakeInteraction:
        """A member (or a DM user when `guild` is False) runs `/name options…`."""
        command = self._command(name)
        types = {o["name"]: o["type"] for o in command.get("options", [])}
        opts = [
            {"name": k, "type": types.get(k, _option_type(v)), "value": v}
            for k, v in (options or {}).items()
        ]
        data = {"id": command["id"], "name": name, "type": 1, "options": opts}
        return await self.interact(
            APPLICATION_COMMAND, data, guild=guild, admin=admin, user=user, channel_id=channel_id
        )

    async def autocomplete(
        self, name: str, option: str, current: str, *, guild: bool = True
    ) -> list[dict[str, Any]]:
        """The choices the bot offers while a user types `current` into `option`."""
        command = self._command(name)
        types = {o["name"]: o["type"] for o in command.get("options", [])}
        opts = [
            {
                "name": option,
                "type": types.get(option, OPTION_STRING),
                "value": current,
                "focused": True,
            }
        ]
        data = {"id": command["id"], "name": name, "type": 1, "options": opts}
        it = await self.interact(AUTOCOMPLETE, data, guild=guild)
        response = await it.wait_response()
        assert response["type"] == AUTOCOMPLETE_RESULT, response
        return list(response["data"]["choices"])

    async def press(
        self,
        custom_id: str,
        *,
        message: dict[str, Any] | None = None,
        guild: bool = True,
        admin: bool = False,
        channel_id: str | None = None,
    ) -> FakeInteraction:
        """A user presses the button `custom_id` (under `message`, or a bot message made up
        for it, as after a restart when the bot has no memory of the message)."""
        channel_id = channel_id or (self.channel_id if guild else self._dm_channel_id())
        if message is None:
            row = {
                "type": 1,
                "components": [{"type": 2, "style": 1, "label": "Button", "custom_id": custom_id}],
            }
            message = self._message_object(
                channel_id, {"content": "…", "components": [row]}, author=self.bot_user
            )
        data = {"custom_id": custom_id, "component_type": 2}
        return await self.interact(
            MESSAGE_COMPONENT,
            data,
            guild=guild,
            admin=admin,
            channel_id=channel_id,
            message=message,
        )

    async def choose(
        self,
        message: dict[str, Any],
        value: str,
        *,
        admin: bool = False,
    ) -> FakeInteraction:
        """A user picks the option `value` in the select menu under `message`."""
        [select] = [
            c
            for row in message.get("components") or []
            for c in row.get("components") or []
            if c.get("type") == STRING_SELECT
            and value in [o["value"] for o in c.get("options") or []]
        ]
        data = {
            "custom_id": select["custom_id"],
            "component_type": STRING_SELECT,
            "values": [value],
        }
        return await self.interact(
            MESSAGE_COMPONENT,
            data,
            admin=admin,
            channel_id=message["channel_id"],
            message=message,
        )

    async def react(
        self,
        message: dict[str, Any],
        emoji: str,
        *,
        user: dict[str, Any] | None = None,
        remove: bool = False,
    ) -> bool:
        """A user adds (or removes) an emoji reaction on a message. Like Discord, the event
        reaches only bots that identified with the reactions intent of that kind of channel
        (GUILD_MESSAGE_REACTIONS, 1 << 10; DIRECT_MESSAGE_REACTIONS, 1 << 13); returns
        whether it was dispatched."""
        channel_id = str(message["channel_id"])
        in_guild = channel_id != self._dm_channel_id()
        needed = 1 << 10 if in_guild else 1 << 13
        if not any(int(i.get("intents", 0)) & needed for i in self.identifies):
            return False
        who = user or self.user()
        data: dict[str, Any] = {
            "user_id": who["id"],
            "channel_id": channel_id,
            "message_id": str(message["id"]),
            "emoji": {"id": None, "name": emoji},
            "burst": False,
            "type": 0,
        }
        if in_guild:
            data["guild_id"] = self._guild_of(channel_id)
        await self.dispatch("MESSAGE_REACTION_REMOVE" if remove else "MESSAGE_REACTION_ADD", data)
        return True

    async def interact(
        self,
        kind: int,
        data: dict[str, Any],
        *,
        guild: bool = True,
        admin: bool = False,
        user: dict[str, Any] | None = None,
        channel_id: str | None = None,
        message: dict[str, Any] | None = None,
    ) -> FakeInteraction:
        user = user or self._user("alice", user_id="80351110224678912")
        interaction_id = self._ids.next()
        token = f"aW50ZXJhY3Rpb246{interaction_id}:tok"
        payload: dict[str, Any] = {
            "id": interaction_id,
            "application_id": self.application_id,
            "type": kind,
            "data": data,
            "token": token,
            "version": 1,
            "locale": "en-US",
            "app_permissions": str(self.bot_permissions(channel_id or self.channel_id)),
            "entitlements": [],
            "authorizing_integration_owners": {},
            "attachment_size_limit": 10 * 1024 * 1024,
        }
        if guild:
            channel_id = channel_id or self.channel_id
            guild_id = self._guild_of(channel_id)
            permissions = ADMIN_PERMISSIONS if admin else MEMBER_PERMISSIONS
            payload.update(
                guild_id=guild_id,
                guild_locale="en-US",
                context=0,
                channel_id=channel_id,
                channel=self._channel_object(guild_id, channel_id),
                member={
                    "user": user,
                    "roles": [],
                    "nick": None,
                    "avatar": None,
                    "joined_at": "2024-01-01T00:00:00.000000+00:00",
                    "deaf": False,
                    "mute": False,
                    "flags": 0,
                    "pending": False,
                    "permissions": str(permissions),
                },
                guild={"id": guild_id, "locale": "en-US", "features": []},
            )
        else:
            channel_id = channel_id or self._dm_channel_id()
            payload.update(
                context=1,
                channel_id=channel_id,
                channel={
                    "id": channel_id,
                    "type": 1,
                    "recipients": [user],
                    "last_message_id": None,
                    "flags": 0,
                },
                user=user,
            )
        if message is not None:
            payload["message"] = message
        it = FakeInteraction(interaction_id, token, payload)
        self.interactions[interaction_id] = it
        await self.dispatch("INTERACTION_CREATE", payload)
        return it

    async def dispatch(self, event: str, data: dict[str, Any], shard: int | None = None) -> None:
        """Push a gateway event to every connected (or the given) shard."""
        sessions = [s for s in self._sockets if s.ready and (shard is None or s.shard == shard)]
        if not sessions:
            raise RuntimeError("no gateway session is connected")
        if shard is None and "guild_id" in data and self.shards > 1:
            wanted = (int(data["guild_id"]) >> 22) % self.shards
            sessions = [s for s in sessions if s.shard == wanted] or sessions
        await sessions[0].dispatch(event, data)

    # --------------------------------------------------------------- objects

    def _user(self, name: str, *, bot: bool = False, user_id: str | None = None) -> dict[str, Any]:
        return {
            "id": user_id or self._ids.next(),
            "username": name.lower(),
            "global_name": name,
            "discriminator": "0",
            "avatar": None,
            "bot": bot,
            "public_flags": 0,
            "flags": 0,
        }

    def _command(self, name: str) -> dict[str, Any]:
        for command in self.commands:
            if command["name"] == name:
                return command
        raise KeyError(f"/{name} was never synced")

    def _guild_of(self, channel_id: str) -> str:
        for guild in self.guilds.values():
            if channel_id in guild.channels:
                return guild.id
        return self.guild_id

    def _dm_channel_id(self) -> str:
        return "1100000000000000001"

    def _channel_object(self, guild_id: str, channel_id: str) -> dict[str, Any]:
        return {
            "id": channel_id,
            "type": 0,
            "guild_id": guild_id,
            "name": f"papers-{channel_id[-4:]}",
            "position": 0,
            "permission_overwrites": [
                {"id": self.bot_user["id"], "type": 1, "allow": "0", "deny": str(denied)}
                for denied in [self.bot_denied.get(channel_id, 0)]
                if denied
            ],
            "nsfw": False,
            "parent_id": None,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }

    def _everyone(self, guild: Guild) -> dict[str, Any]:
        return {
            "id": guild.id,
            "name": "@everyone",
            "permissions": str(self.everyone.get(guild.id, MEMBER_PERMISSIONS)),
            "position": 0,
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }

    def _guild_object(self, guild: Guild) -> dict[str, Any]:
        everyone = self._everyone(guild)
        return {
            "id": guild.id,
            "name": guild.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "owner_id": self.owner["id"],
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": [everyone],
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "vanity_url_code": None,
            "description": None,
            "banner": None,
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "public_updates_channel_id": None,
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
            "joined_at": "2024-01-01T00:00:00.000000+00:00",
            "large": False,
            "unavailable": False,
            "member_count": 2,
            "voice_states": [],
            "members": [
                {
                    "user": self.bot_user,
                    "roles": [],
                    "nick": None,
                    "avatar": None,
                    "joined_at": "2024-01-01T00:00:00.000000+00:00",
                    "deaf": False,
                    "mute": False,
                    "flags": 0,
                    "pending": False,
                }
            ],
            "channels": [self._channel_object(guild.id, c) for c in guild.channels],
            "threads": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    def _message_object(
        self,
        channel_id: str,
        body: dict[str, Any],
        *,
        author: dict[str, Any],
        webhook_id: str | None = None,
        flags: int = 0,
        attachments: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00", time.gmtime())
        message: dict[str, Any] = {
            "id": self._ids.next(),
            "channel_id": channel_id,
            "author": author,
            "content": body.get("content") or "",
            "timestamp": now,
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "mention_channels": [],
            "attachments": attachments or [],
            "embeds": body.get("embeds") or [],
            "components": body.get("components") or [],
            "pinned": False,
            "type": 0,
            "flags": flags,
            "allowed_mentions": body.get("allowed_mentions"),  # kept for assertions
        }
        if webhook_id:
            message["webhook_id"] = webhook_id
            message["application_id"] = self.application_id
        if channel_id in {c for g in self.guilds.values() for c in g.channels}:
            message["guild_id"] = self._guild_of(channel_id)
        return message

    # ------------------------------------------------------------- HTTP side

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        path = request.path
        self.requests.append((request.method, path))
        for rule in self._rate_limits:
            if rule["left"] > 0 and rule["match"] in path:
                rule["left"] -= 1
                return _rate_limited(rule["retry_after"], rule["global"])
        bucket: RollingWindow | None = None
        if path.startswith(API_PREFIX) and self.rate_limits.enabled:
            limited, bucket = self._enforce(request.method, path)
            if limited is not None:
                self.rate_limited += 1
                return limited
        for i, (match, status) in enumerate(self._server_errors):
            if match in path:
                del self._server_errors[i]
                return _json({"message": "Bad Gateway", "code": 0}, status=status)
        needs_auth = path.startswith(API_PREFIX) and not path.startswith(
            (API_PREFIX + "/webhooks/", API_PREFIX + "/interactions/")
        )
        if needs_auth and request.headers.get("Authorization") != f"Bot {self.token}":
            return _json({"message": "401: Unauthorized", "code": 0}, status=401)
        response: web.StreamResponse = await handler(request)
        if bucket is not None:
            now = time.monotonic()
            response.headers.update(
                _bucket_headers(
                    remaining=bucket.limit - len(bucket.times),
                    reset_after=max(0.0, bucket.times[0] + bucket.period - now),
                    limit=bucket.limit,
                )
            )
        elif path.startswith(API_PREFIX):
            response.headers.update(_bucket_headers(remaining=4))
        self._changed.set()
        return response

    def _enforce(self, method: str, path: str) -> tuple[web.Response | None, RollingWindow | None]:
        """Count a request in its windows, or the 429 Discord would answer instead."""
        now = time.monotonic()
        limits = self.rate_limits
        bucket = None
        match = _CHANNEL_MESSAGES.match(path) if method == "POST" else None
        if match is not None:
            bucket = self._channel_windows.get(match.group(1))
            if bucket is None:
                bucket = self._channel_windows[match.group(1)] = RollingWindow(
                    limits.channel_messages, limits.channel_window * limits.scale
                )
        wait = self._global_window.wait(now)
        if wait > 0:
            self.refused.append((now, path, "global"))
            return _rate_limited(wait, True), None
        if bucket is not None and (wait := bucket.wait(now)) > 0:
            self.refused.append((now, path, "channel"))
            return _rate_limited(wait, False, limit=bucket.limit), None
        self._global_window.times.append(now)
        if bucket is not None:
            bucket.times.append(now)
        return None, bucket

    async def _users_me(self, request: web.Request) -> web.Response:
        return _json(
            {
                **self.bot_user,
                "verified": True,
                "mfa_enabled": False,
                "email": None,
                "locale": "en-US",
            }
        )

    async def _application(self, request: web.Request) -> web.Response:
        return _json(
            {
                "id": self.application_id,
                "name": "Paperboy",
                "icon": None,
                "description": "Research papers, daily.",
                "rpc_origins": [],
                "bot_public": True,
                "bot_require_code_grant": False,
                "bot": self.bot_user,
                "owner": self.owner,
                "team": None,
                "verify_key": "0" * 64,
                "flags": 0,
                "interactions_endpoint_url": None,
                "tags": [],
                "install_params": None,
                "approximate_guild_count": len(self.guilds),
            }
        )

    async def _gateway_bot(self, request: web.Request) -> web.Response:
        return _json(
            {
                "url": self.gateway_url,
                "shards": self.shards,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 14400000,
                    "max_concurrency": 1,
                },
            }
        )

    async def _gateway_plain(self, request: web.Request) -> web.Response:
        return _json({"url": self.gateway_url})

    async def _put_commands(self, request: web.Request) -> web.Response:
        if request.match_info["app"] != self.application_id:
            return _error(404, 10002, "Unknown Application")
        body = await request.json()
        problems = [_command_problems(c) for c in body]
        if any(problems):
            return self._reject(body, {"commands": problems})
        self.command_puts.append(body)
        self.commands = [
            {
                "id": self._ids.next(),
                "application_id": self.application_id,
                "version": self._ids.next(),
                "type": 1,
                "options": [],
                "default_member_permissions": None,
                "nsfw": False,
                "contexts": None,
                "integration_types": [0],
                "dm_permission": True,
                **c,
            }
            for c in body
        ]
        return _json(self.commands)

    async def _get_commands(self, request: web.Request) -> web.Response:
        return _json(self.commands)

    async def _callback(self, request: web.Request) -> web.Response:
        it = self.interactions.get(request.match_info["id"])
        if it is None or it.token != request.match_info["token"]:
            return _error(404, 10062, "Unknown interaction")
        if it.callbacks:
            return _error(400, 40060, "Interaction has already been acknowledged.")
        body, files = await _read_body(request)
        if body.get("type") in (CHANNEL_MESSAGE,):
            problems = _message_problems(body.get("data") or {}, files)
            if problems:
                return self._reject(body, problems)
        it.callbacks.append({"type": body.get("type"), "data": body.get("data") or {}})
        it.callback_at = time.monotonic()
        it._touch()
        data = body.get("data") or {}
        flags = int(data.get("flags") or 0)
        message_id = None
        resource: dict[str, Any] = {"type": body.get("type")}
        if body.get("type") in (CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE):
            channel_id = it.payload["channel_id"]
            message = self._message_object(
                channel_id,
                data,
                author=self.bot_user,
                webhook_id=self.application_id,
                flags=flags | (128 if body["type"] == DEFERRED_CHANNEL_MESSAGE else 0),
                attachments=_attachment_objects(files),
            )
            message_id = message["id"]
            resource["message"] = message
            it.original_id = message_id
            it.loading = body["type"] == DEFERRED_CHANNEL_MESSAGE
            it.shown[message_id] = message
            if files:  # uploaded with the response itself (multipart, as discord.py sends)
                self.attachments[message_id] = files
        return _json(
            {
                "interaction": {
                    "id": it.id,
                    "type": it.payload["type"],
                    "response_message_id": message_id,
                    "response_message_loading": body.get("type") == DEFERRED_CHANNEL_MESSAGE,
                    "response_message_ephemeral": bool(flags & EPHEMERAL),
                },
                "resource": resource,
            }
        )

    def _interaction_by_token(self, token: str) -> FakeInteraction | None:
        for it in self.interactions.values():
            if it.token == token:
                return it
        return None

    async def _followup(self, request: web.Request) -> web.Response:
        it = self._interaction_by_token(request.match_info["token"])
        if it is None or request.match_info["app"] != self.application_id:
            return _error(404, 10015, "Unknown Webhook")
        if not it.callbacks:
            return _error(400, 40060, "Interaction has not been acknowledged.")
        body, files = await _read_body(request)
        problems = _message_problems(body, files)
        if problems:
            return self._reject(body, problems)
        message = self._message_object(
            it.payload["channel_id"],
            body,
            author=self.bot_user,
            webhook_id=self.application_id,
            flags=int(body.get("flags") or 0),
            attachments=_attachment_objects(files),
        )
        if it.loading and it.original_id is not None:
            message["id"], it.loading = it.original_id, False  # fills in "thinking…"
        self.attachments[message["id"]] = files
        it.followups.append(message)
        it.shown[message["id"]] = message
        it._touch()
        return _json(message)

    async def _get_webhook_msg(self, request: web.Request) -> web.Response:
        it = self._interaction_by_token(request.match_info["token"])
        if it is None:
            return _error(404, 10015, "Unknown Webhook")
        body = it.edits[-1] if it.edits else (it.callbacks[0]["data"] if it.callbacks else {})
        return _json(
            self._message_object(
                it.payload["channel_id"], body, author=self.bot_user, webhook_id=self.application_id
            )
        )

    async def _edit_webhook_msg(self, request: web.Request) -> web.Response:
        it = self._interaction_by_token(request.match_info["token"])
        if it is None:
            return _error(404, 10015, "Unknown Webhook")
        path_id = request.match_info["mid"]
        mid = it.original_id if path_id == "@original" else path_id
        current = it.shown.get(mid or "")
        if current is None:
            return _error(404, 10008, "Unknown Message")
        body, files = await _read_body(request)
        problems = _message_problems(body, files, edit=True)
        if problems:
            return self._reject(body, problems)
        it.edits.append(body)
        it.patches.append((path_id, body))
        # Fields present replace the message's (null or [] clears them); absent ones stay.
        for key in ("content", "embeds", "components"):
            if key in body:
                current[key] = body[key] or ([] if key != "content" else "")
        if "attachments" in body or files:
            kept = {str(a.get("id")) for a in body.get("attachments") or []}
            old = [a for a in current.get("attachments", []) if str(a.get("id")) in kept]
            current["attachments"] = old + _attachment_objects(files)
            self.attachments[current["id"]] = files
        current["edited_timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00", time.gmtime())
        if it.loading and mid == it.original_id:
            it.loading = False
        it._touch()
        return _json(current)

    async def _delete_webhook_msg(self, request: web.Request) -> web.Response:
        it = self._interaction_by_token(request.match_info["token"])
        if it is None:
            return _error(404, 10015, "Unknown Webhook")
        path_id = request.match_info["mid"]
        mid = it.original_id if path_id == "@original" else path_id
        if it.shown.pop(mid or "", None) is None:
            return _error(404, 10008, "Unknown Message")
        if mid == it.original_id:
            it.deleted_original = True
        it.deleted.append(mid or "")
        it._touch()
        return web.Response(status=204)

    async def _channel_message(self, request: web.Request) -> web.Response:
        channel_id = request.match_info["channel"]
        if channel_id in self._channel_errors:
            status, code, text = self._channel_errors[channel_id]
            return _error(status, code, text)
        body, files = await _read_body(request)
        allowed = self.bot_permissions(channel_id)
        if not allowed & VIEW_CHANNEL:
            return _error(403, 50001, "Missing Access")
        if not allowed & SEND_MESSAGES or (files and not allowed & ATTACH_FILES):
            return _error(403, 50013, "Missing Permissions")
        problems = _message_problems(body, files)
        if problems:
            return self._reject(body, problems)
        message = self._message_object(
            channel_id, body, author=self.bot_user, attachments=_attachment_objects(files)
        )
        self.attachments[message["id"]] = files
        self.channel_messages[channel_id].append(message)
        self.send_times[channel_id].append(time.monotonic())
        return _json(message)

    def _reject(self, body: dict[str, Any], problems: Any) -> web.Response:
        self.rejected.append({"body": body, "errors": problems})
        return _json(
            {"message": "Invalid Form Body", "code": 50035, "errors": problems}, status=400
        )

    # ---------------------------------------------------------- gateway side

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        session = _GatewaySession(self, ws)
        self._sockets.append(session)
        try:
            await session.run()
        finally:
            self._sockets.remove(session)
        return ws


class _GatewaySession:
    HELLO, IDENTIFY, RESUME, HEARTBEAT, HEARTBEAT_ACK, DISPATCH = 10, 2, 6, 1, 11, 0
    INVALID_SESSION = 9

    def __init__(self, fake: FakeDiscord, ws: web.WebSocketResponse) -> None:
        self.fake = fake
        self.ws = ws
        self.seq = 0
        self.shard = 0
        self.ready = False
        self.session_id = fake._ids.next()

    async def send(self, op: int, d: Any, t: str | None = None) -> None:
        s = None
        if op == self.DISPATCH:
            self.seq += 1
            s = self.seq
        await self.ws.send_str(json.dumps({"op": op, "d": d, "s": s, "t": t}))

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        await self.send(self.DISPATCH, data, event)

    async def run(self) -> None:
        await self.send(self.HELLO, {"heartbeat_interval": self.fake.heartbeat_interval_ms})
        async for msg in self.ws:
            if msg.type != WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            op, d = frame.get("op"), frame.get("d")
            if op == self.HEARTBEAT:
                await self.send(self.HEARTBEAT_ACK, None)
            elif op == self.IDENTIFY:
                await self._identify(d)
            elif op == self.RESUME:
                self.ready = True
                await self.dispatch("RESUMED", {})

    async def _identify(self, d: dict[str, Any]) -> None:
        if d.get("token") != self.fake.token:
            await self.ws.close(code=4004, message=b"Authentication failed.")
            return
        self.fake.identifies.append({k: v for k, v in d.items() if k != "token"})
        shard_id, shard_count = d.get("shard") or [0, 1]
        self.shard = shard_id
        mine = [g for g in self.fake.guilds.values() if (int(g.id) >> 22) % shard_count == shard_id]
        await self.dispatch(
            "READY",
            {
                "v": 10,
                "user": {**self.fake.bot_user, "verified": True, "mfa_enabled": False},
                "guilds": [{"id": g.id, "unavailable": True} for g in mine],
                "session_id": self.session_id,
                "resume_gateway_url": self.fake.gateway_url,
                "shard": [shard_id, shard_count],
                "application": {"id": self.fake.application_id, "flags": 0},
                "private_channels": [],
                "relationships": [],
                "user_settings": {},
                "presences": [],
            },
        )
        self.ready = True
        for guild in mine:
            await self.dispatch("GUILD_CREATE", self.fake._guild_object(guild))
        self.fake._changed.set()


# ------------------------------------------------------------------ helpers


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # Exactly `application/json`, as Discord sends it: discord.py compares the header verbatim.
    response = web.Response(text=json.dumps(data), status=status, headers=headers)
    response.headers["Content-Type"] = "application/json"
    return response


def _option_type(value: Any) -> int:
    return OPTION_INTEGER if isinstance(value, int) else OPTION_STRING


def _error(status: int, code: int, message: str) -> web.Response:
    return _json({"message": message, "code": code}, status=status)


def _bucket_headers(*, remaining: int, reset_after: float = 5.0, limit: int = 5) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
        "X-RateLimit-Reset-After": f"{reset_after:.3f}",
        "X-RateLimit-Bucket": "fakebucket0123456789abcdef",
    }


def _rate_limited(retry_after: float, is_global: bool, limit: int = 5) -> web.Response:
    headers = _bucket_headers(remaining=0, reset_after=retry_after, limit=limit)
    headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    headers["X-RateLimit-Scope"] = "global" if is_global else "user"
    # discord.py takes a 429 without Discord's `Via` header for a Cloudflare ban.
    headers["Via"] = "1.1 google"
    if is_global:
        headers["X-RateLimit-Global"] = "true"
    body = {
        "message": "You are being rate limited.",
        "retry_after": retry_after,
        "global": is_global,
        "code": 0,
    }
    return _json(body, status=429, headers=headers)


async def _read_body(request: web.Request) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    """JSON, or multipart with `payload_json` and `files[n]` parts, as discord.py sends."""
    if not request.can_read_body:
        return {}, []
    if request.content_type.startswith("multipart/"):
        form = await request.post()
        body = json.loads(str(form.get("payload_json") or "{}"))
        files: list[tuple[str, bytes]] = []
        for key, value in form.items():
            if key.startswith("files[") and isinstance(value, web.FileField):
                files.append((value.filename, value.file.read()))
        return body, files
    return await request.json(), []


def _attachment_objects(files: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    return [
        {
            "id": str(900000000000000000 + i),
            "filename": name,
            "size": len(data),
            "url": f"https://cdn.discordapp.com/attachments/0/0/{name}",
            "proxy_url": f"https://media.discordapp.net/attachments/0/0/{name}",
            "content_type": "image/png",
        }
        for i, (name, data) in enumerate(files)
    ]


def _message_problems(
    body: dict[str, Any], files: list[tuple[str, bytes]], *, edit: bool = False
) -> dict[str, str]:
    """Discord's validation of a message body: {field: problem}, empty when it is fine."""
    problems: dict[str, str] = {}
    content = body.get("content") or ""
    embeds = body.get("embeds") or []
    components = body.get("components") or []
    if not edit and not (content or embeds or files or components or body.get("sticker_ids")):
        problems["content"] = "Cannot send an empty message"
    if len(content) > CONTENT_MAX:
        problems["content"] = f"Must be {CONTENT_MAX} or fewer in length."
    if len(embeds) > EMBEDS_MAX:
        problems["embeds"] = f"Must be {EMBEDS_MAX} or fewer in length."
    total = 0
    for n, embed in enumerate(embeds):
        for key, limit in (("title", EMBED_TITLE_MAX), ("description", EMBED_DESCRIPTION_MAX)):
            value = embed.get(key) or ""
            total += len(value)
            if len(value) > limit:
                problems[f"embeds.{n}.{key}"] = f"Must be {limit} or fewer in length."
        fields = embed.get("fields") or []
        if len(fields) > EMBED_FIELDS_MAX:
            problems[f"embeds.{n}.fields"] = f"Must be {EMBED_FIELDS_MAX} or fewer in length."
        for m, f in enumerate(fields):
            total += len(f.get("name") or "") + len(f.get("value") or "")
            if not f.get("name") or len(f["name"]) > EMBED_FIELD_NAME_MAX:
                problems[f"embeds.{n}.fields.{m}.name"] = "Bad field name."
            if not f.get("value") or len(f["value"]) > EMBED_FIELD_VALUE_MAX:
                problems[f"embeds.{n}.fields.{m}.value"] = "Bad field value."
        footer = (embed.get("footer") or {}).get("text") or ""
        author = (embed.get("author") or {}).get("name") or ""
        total += len(footer) + len(author)
        if len(footer) > EMBED_FOOTER_MAX:
            problems[f"embeds.{n}.footer.text"] = "Too long."
        if len(author) > EMBED_AUTHOR_MAX:
            problems[f"embeds.{n}.author.name"] = "Too long."
        if not (embed.get("title") or embed.get("description") or fields or embed.get("image")):
            problems[f"embeds.{n}"] = "Embed is empty."
    if total > EMBED_TOTAL_MAX:
        problems["embeds"] = f"Embed size exceeds maximum size of {EMBED_TOTAL_MAX}"
    if len(components) > ROWS_MAX:
        problems["components"] = f"Must be {ROWS_MAX} or fewer in length."
    ids = [
        c["custom_id"] for r in components for c in r.get("components") or [] if "custom_id" in c
    ]
    if len(ids) != len(set(ids)):
        problems["components"] = "Component custom id cannot be duplicated"
    for r, row in enumerate(components):
        buttons = row.get("components") or []
        if row.get("type") != 1 or not 1 <= len(buttons) <= BUTTONS_PER_ROW_MAX:
            problems[f"components.{r}"] = "Bad action row."
        if any(c.get("type") == STRING_SELECT for c in buttons):
            problems.update(_select_problems(r, buttons))
            continue
        for b, button in enumerate(buttons):
            where = f"components.{r}.components.{b}"
            if len(button.get("label") or "") > LABEL_MAX:
                problems[where + ".label"] = f"Must be {LABEL_MAX} or fewer in length."
            if button.get("style") == 5:
                if not button.get("url") or "custom_id" in button:
                    problems[where] = "Link buttons take a url and no custom_id."
            elif not button.get("custom_id") or len(button["custom_id"]) > CUSTOM_ID_MAX:
                problems[where + ".custom_id"] = f"Must be 1 to {CUSTOM_ID_MAX} in length."
    if len(files) > 10:
        problems["files"] = "Up to 10 attachments."
    return problems


def _select_problems(r: int, row: list[dict[str, Any]]) -> dict[str, str]:
    """A string select fills its action row alone: 1–25 options, labels and values ≤ 100."""
    where = f"components.{r}.components.0"
    if len(row) != 1:
        return {f"components.{r}": "A select menu must be alone in its row."}
    select = row[0]
    problems: dict[str, str] = {}
    if not 1 <= len(select.get("custom_id") or "") <= CUSTOM_ID_MAX:
        problems[where + ".custom_id"] = f"Must be 1 to {CUSTOM_ID_MAX} in length."
    if len(select.get("placeholder") or "") > SELECT_PLACEHOLDER_MAX:
        problems[where + ".placeholder"] = f"Must be {SELECT_PLACEHOLDER_MAX} or fewer in length."
    options = select.get("options") or []
    if not 1 <= len(options) <= SELECT_OPTIONS_MAX:
        problems[where + ".options"] = f"Must be 1 to {SELECT_OPTIONS_MAX} in length."
    values = [o.get("value") for o in options]
    if len(set(values)) != len(values):
        problems[where + ".options"] = "Option values must be unique."
    for o, option in enumerate(options):
        for key in ("label", "value"):
            if not 1 <= len(option.get(key) or "") <= SELECT_OPTION_MAX:
                problems[f"{where}.options.{o}.{key}"] = f"Must be 1 to {SELECT_OPTION_MAX}."
    return problems


def _command_problems(command: dict[str, Any]) -> dict[str, str]:
    problems: dict[str, str] = {}
    name = command.get("name") or ""
    if not (1 <= len(name) <= 32 and name == name.lower()):
        problems["name"] = "Bad name."
    if not 1 <= len(command.get("description") or "") <= 100:
        problems["description"] = "Must be 1 to 100 in length."
    options = command.get("options") or []
    if len(options) > 25:
        problems["options"] = "Up to 25 options."
    seen_optional = False
    for n, option in enumerate(options):
        if not 1 <= len(option.get("description") or "") <= 100:
            problems[f"options.{n}.description"] = "Must be 1 to 100 in length."
        if option.get("required"):
            if seen_optional:
                problems[f"options.{n}.required"] = "Required options must come first."
        else:
            seen_optional = True
        if option.get("autocomplete") and option.get("choices"):
            problems[f"options.{n}"] = "Autocomplete and choices are exclusive."
        if len(option.get("choices") or []) > 25:
            problems[f"options.{n}.choices"] = "Up to 25 choices."
    return problems
