"""Paperboy on Discord: start and stop, slash commands and buttons in, replies out by the
core's policy (bot/conversation.py), digests out over REST, paused channels back on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import discord
from cachetools import TTLCache
from discord import app_commands

from adapters.discord.client import (
    POST_PERMISSIONS,
    UNREACHABLE,
    Client,
    map_error,
    missing_permissions,
    pacing_trace,
    send_limits,
    use_api_base,
)
from adapters.discord.render import (
    NO_MENTIONS,
    RenderedMessage,
    edit_kwargs,
    forget_view,
    render_discord,
    send_kwargs,
)
from adapters.discord.slash import build_app_command, commands_hash
from bot import learning
from bot.commands import COMMANDS, ArgValue, Command, Context, run_args
from bot.config import Settings
from bot.conversation import Conversation
from bot.doc import Document, Message, Paragraph, Reply, Text
from bot.logs import install_redaction
from bot.models import ChatRef
from bot.pacing import Pacer
from bot.sending import (
    ChatGone,
    PermanentError,
    RetryAfter,
    SendError,
    Sent,
    TransientError,
)
from bot.service import Paperboy
from bot.startup import PlatformError, describe, retrying

log = logging.getLogger(__name__)

TELL_ADMINS_EVERY = 3600.0  # seconds: at most one "digests paused" notice per channel


class DiscordAdapter:
    """Paperboy on Discord: slash commands in, rendered replies and digests out."""

    platform = "discord"

    def __init__(
        self,
        app: Paperboy,
        settings: Settings,
        *,
        state_dir: str | Path | None = None,
        channel_interval: float | None = None,
        guild_ready_timeout: float = 2.0,
        ready_timeout: float = 60.0,
        start_backoff: float = 1.0,
    ) -> None:
        self.app = app
        self.settings = settings
        self.state_dir = Path(state_dir) if state_dir is not None else _default_state_dir(settings)
        # Every request discord.py sends waits for its slot here (bot/pacing.py).
        self.limits = send_limits(settings, channel_interval)
        self.pacer = Pacer(self.limits)
        self.guild_ready_timeout = guild_ready_timeout
        self.ready_timeout = ready_timeout
        self.start_backoff = start_backoff  # first wait when Discord is unreachable at start
        self.synced = False  # whether the last start pushed the command set to Discord
        self.receiving = True  # False: started to send only (no gateway, no command sync)
        self.client: Client | None = None
        self._task: asyncio.Task[None] | None = None
        self.conversation = Conversation(app.store)
        # Channels whose admins were told lately that their digests are paused.
        self._told: TTLCache[int, bool] = TTLCache(10_000, TELL_ADMINS_EVERY)
        self._notices: set[asyncio.Task[None]] = set()
        install_redaction([settings.discord_bot_token])

    # ------------------------------------------------------------ lifecycle

    async def start(self, *, receive: bool = True) -> None:
        """Log in, sync commands if they changed, connect the shards, wait until READY.

        `receive=False` (`deliver --now`) only logs in: sends are REST calls, and a second
        gateway session would only compete with a running bot's."""
        self.receiving = receive
        if not self.settings.discord_bot_token:
            raise RuntimeError("DISCORD_BOT_TOKEN is not set")
        use_api_base(self.settings.discord_api_base_url)
        try:
            # First contact (login, and the gateway's address): retried while Discord (or
            # the network) is unreachable, each time with a fresh client.
            async for attempt in retrying(
                "Discord",
                UNREACHABLE,
                first=self.start_backoff,
                most=60.0,
                give_up_after=self.settings.platform_start_retry_seconds,
            ):
                with attempt:
                    await self.stop()
                    client = self._new_client()
                    await client.login(self.settings.discord_bot_token)
                    gateway = await self._choose_shards(client) if receive else True
        except discord.LoginFailure:
            await self.stop()
            raise PlatformError("Discord refused the bot token: check DISCORD_BOT_TOKEN") from None
        except (*UNREACHABLE, discord.DiscordException) as e:
            await self.stop()
            what = "cannot reach Discord" if isinstance(e, UNREACHABLE) else "Discord refused"
            raise PlatformError(f"{what}: {describe(e)}") from None
        except BaseException:
            await self.stop()
            raise
        if not receive:
            log.info("discord: logged in for sending only")
            return
        if not gateway:
            log.info("discord: no gateway shard falls to this worker; sending only")
            self.receiving = False
            return
        # client.start() would do login + connect; connect runs for the app's lifetime.
        self._task = asyncio.create_task(client.connect(reconnect=True), name="discord")
        ready = asyncio.ensure_future(client.wait_until_ready())
        try:
            done, _ = await asyncio.wait(
                {ready, self._task}, timeout=self.ready_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            ready.cancel()
        if self._task in done:
            await self.stop()
            raise PlatformError("the Discord gateway connection ended before READY")
        if not done:
            await self.stop()
            raise PlatformError("Discord did not become ready in time")
        log.info("discord ready as %s in %d guild(s)", client.user, len(client.guilds))

    def _new_client(self) -> Client:
        client = Client(
            self, guild_ready_timeout=self.guild_ready_timeout, http_trace=pacing_trace(self.pacer)
        )
        for command in COMMANDS.values():
            client.tree.add_command(build_app_command(command, self.on_command))
        self.client = client
        return client

    async def _choose_shards(self, client: Client) -> bool:
        """With several workers, connect only this worker's shards (i % workers == index).

        Returns False when no shard falls to this worker. One worker with no pinned count
        leaves it all to AutoShardedClient."""
        settings = self.settings
        if settings.worker_count <= 1 and not settings.discord_shard_count:
            return True
        recommended, _, _ = await client.http.get_bot_gateway()
        total = settings.discord_shard_count or recommended
        mine = [i for i in range(total) if i % settings.worker_count == settings.worker_index]
        client.shard_count = total
        client.shard_ids = mine
        log.info("discord: shards %s of %d on worker %d", mine, total, settings.worker_index)
        return bool(mine)

    async def stop(self) -> None:
        client, task = self.client, self._task
        self.client, self._task = None, None
        await self.conversation.close()
        for notice in list(self._notices):
            notice.cancel()
        if client is not None:
            await client.close()
        if task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=5)

    # --------------------------------------------------------------- syncing

    def _hash_file(self, application_id: int | None) -> Path:
        return self.state_dir / f"discord-commands-{application_id}.sha256"

    async def sync_commands(self) -> None:
        """Push the command set to Discord only when it differs from the last push."""
        client = self.client
        assert client is not None
        digest = commands_hash(client.tree)
        path = self._hash_file(client.application_id)
        previous = await asyncio.to_thread(_read_text, path)
        if previous == digest:
            self.synced = False
            log.debug("discord commands unchanged, not syncing")
            return
        await client.tree.sync()
        await asyncio.to_thread(_write_text, path, digest)
        self.synced = True
        log.info("discord commands synced (%d commands)", len(client.tree.get_commands()))

    # ------------------------------------------------------------- inbound

    def context(self, interaction: discord.Interaction[Any]) -> Context:
        in_guild = interaction.guild_id is not None
        thread = isinstance(interaction.channel, discord.Thread)
        missing = (
            missing_permissions(interaction.app_permissions, thread=thread) if in_guild else ()
        )
        return Context(
            chat=ChatRef(self.platform, str(interaction.channel_id)),
            user_id=str(interaction.user.id),
            chat_kind="channel" if in_guild else "private",
            # Server-side check: default_member_permissions only hides commands.
            is_admin=(not in_guild) or interaction.permissions.manage_channels,
            images=True,
            missing_permissions=missing,
        )

    async def on_command(
        self, interaction: discord.Interaction[Any], command: Command, values: dict[str, Any]
    ) -> None:
        options: dict[str, ArgValue] = {k: v for k, v in values.items() if v is not None}
        await self._run(interaction, command, options)

    async def on_button(self, interaction: discord.Interaction[Any], name: str, arg: str) -> None:
        command = COMMANDS.get(name)
        if command is None:
            await interaction.response.send_message(
                "This button no longer works.", ephemeral=True, allowed_mentions=NO_MENTIONS
            )
            return
        options: dict[str, ArgValue] = {}
        if command.args and arg:
            options[command.args[0].name] = arg
        await self._run(interaction, command, options)

    async def _run(
        self, interaction: discord.Interaction[Any], command: Command, options: dict[str, ArgValue]
    ) -> None:
        deferred = False
        if command.slow:
            await interaction.response.defer(thinking=True)  # Discord allows 3 s to answer
            deferred = True
        reply = await run_args(self.app, self.context(interaction), command.name, options)
        await self.answer(interaction, reply, deferred=deferred)

    async def answer(
        self, interaction: discord.Interaction[Any], reply: Reply, *, deferred: bool
    ) -> None:
        """Send a command's reply by the core's policy (bot/conversation.py): the first
        part is the interaction's response, the others follow-ups; an update edits them."""
        if not any(_visible(render_discord(m)) for m in reply.messages):
            reply = Reply([Message([Paragraph((Text("Done."),))])], reply.ephemeral, reply.update)
        if deferred and reply.ephemeral:
            # A public "thinking…" cannot turn private: remove it and answer privately.
            with contextlib.suppress(discord.HTTPException):
                await interaction.delete_original_response()
        chat = ChatRef(self.platform, str(interaction.channel_id))
        via = InteractionReply(interaction, ephemeral=reply.ephemeral)
        await self.conversation.reply(via, chat, reply)

    async def on_reaction(self, payload: discord.RawReactionActionEvent, *, added: bool) -> None:
        """👍/👎 on a one-paper message votes on its paper (removing it takes the vote
        back); 💾 saves it. The bot's own reactions are not votes."""
        client = self.client
        if client is None or client.user is None or payload.user_id == client.user.id:
            return
        emoji = {str(payload.emoji)}
        chat = ChatRef(self.platform, str(payload.channel_id))
        try:
            await learning.react(
                self.app,
                chat,
                str(payload.user_id),
                str(payload.message_id),
                emoji if added else set(),
                set() if added else emoji,
            )
        except LookupError:
            return
        except Exception:
            log.exception("discord: a reaction in %s could not be counted", chat.key)

    async def on_tree_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        log.error("discord command failed: %s", type(error).__name__, exc_info=error)
        text = "Something went wrong on my side. Please try again in a minute."
        with contextlib.suppress(discord.HTTPException):
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
            else:
                await interaction.response.send_message(
                    text, ephemeral=True, allowed_mentions=NO_MENTIONS
                )

    async def subscribed_feeds(self, chat: ChatRef) -> list[str]:
        """The feeds a channel follows (autocomplete of /unsubscribe)."""
        return [sub.feed for sub in await self.app.subscriptions(chat)]

    # ------------------------------------------------------------ outbound

    async def ready(self, chat: ChatRef) -> None:
        """Wait until the channel's own pace lets one more message go (the dispatcher asks
        before it takes a send slot); each request is paced as it goes out."""
        await self.pacer.ready(chat.thread_id or chat.chat_id)

    async def send(self, chat: ChatRef, message: Message) -> list[str]:
        """Post one message to a channel over REST; returns the Discord message ids."""
        client = self.client
        if client is None or client.is_closed():
            raise TransientError("Discord is not connected")
        try:
            channel_id = int(chat.thread_id or chat.chat_id)
        except ValueError:
            raise PermanentError(f"not a Discord channel id: {chat.key}") from None
        channel = client.get_partial_messageable(channel_id)
        ids: list[str] = []
        for part in render_discord(message):
            kwargs = send_kwargs(part)
            try:
                sent = await channel.send(**kwargs)
            except Exception as exc:
                error = map_error(exc)
                if isinstance(error, ChatGone):
                    self._tell_admins(channel_id, str(error))
                raise error from exc
            finally:
                forget_view(kwargs)
            ids.append(str(sent.id))
        return ids

    # ------------------------------------------------------ paused channels

    async def resume_channels(
        self, guild: discord.Guild, channels: Iterable[discord.abc.GuildChannel]
    ) -> None:
        """Switch digests back on in the paused channels among `channels` where the bot
        can post again."""
        me = guild.me
        if me is None:
            return
        ids = [
            str(c.id)
            for c in channels
            if isinstance(c, discord.TextChannel) and not missing_permissions(c.permissions_for(me))
        ]
        if not ids:
            return
        try:
            back = await self.conversation.reactivate(self.platform, ids)
        except Exception:
            log.exception("discord: cannot switch channels of guild %s back on", guild.id)
            return
        for chat in back:
            log.info("discord: the bot can post in %s again: digests back on", chat.key)

    def _tell_admins(self, channel_id: int, reason: str) -> None:
        """In the background: say in the guild that digests to a channel are paused."""
        if channel_id in self._told:
            return
        self._told[channel_id] = True
        task = asyncio.create_task(self._notice(channel_id, reason))
        self._notices.add(task)
        task.add_done_callback(self._notices.discard)

    async def _notice(self, channel_id: int, reason: str) -> None:
        """Post the notice in the guild's system channel, or else its first channel where
        the bot can write. Discord offers no way to reach a channel's admins otherwise (a
        bot cannot DM someone without a shared guild and an open DM setting), and nothing
        when the whole guild is gone."""
        client = self.client
        channel = client.get_channel(channel_id) if client is not None else None
        guild = getattr(channel, "guild", None)
        if not isinstance(guild, discord.Guild) or guild.me is None:
            log.info("discord: digests to %s paused; no guild channel to say so in", channel_id)
            return
        me = guild.me
        candidates = [guild.system_channel, *sorted(guild.text_channels, key=lambda c: c.position)]
        target = next(
            (
                c
                for c in candidates
                if c is not None
                and c.id != channel_id
                and c.permissions_for(me).view_channel
                and c.permissions_for(me).send_messages
            ),
            None,
        )
        if target is None:
            log.info("discord: digests to %s paused; no channel to say so in", channel_id)
            return
        needed = ", ".join(label for _, label in POST_PERMISSIONS)
        text = (
            f"I can no longer post the paper digests in <#{channel_id}> ({reason}), so they are "
            f"paused there. To switch them back on, give me {needed} in that channel and run "
            "/subscribe there (a change to that channel's or a role's permissions is enough)."
        )
        try:
            await target.send(text, allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as e:
            log.info("discord: cannot post the pause notice in %s: %s", target.id, e.status)


def _default_state_dir(settings: Settings) -> Path:
    """Next to the SQLite database; the working directory otherwise."""
    url = settings.database_url
    if url.startswith("sqlite:///") and ":memory:" not in url:
        return Path(url.removeprefix("sqlite:///")).expanduser().resolve().parent
    return Path.cwd()


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return None


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="utf-8")


def _visible(parts: list[RenderedMessage]) -> list[RenderedMessage]:
    return [p for p in parts if p.content or p.embeds or p.files]


# One shown part of an answer: the interaction's original response (None) or a follow-up,
# with its message id when Discord gave one.
_Shown = tuple[discord.WebhookMessage | None, str | None]


class InteractionReply:
    """One interaction's answer as a bot.sending.Outbound: the first part is the response,
    later parts are follow-ups; edits and deletes go through the interaction's token."""

    def __init__(self, interaction: discord.Interaction[Any], *, ephemeral: bool) -> None:
        self.interaction = interaction
        self.ephemeral = ephemeral

    async def post(self, chat: ChatRef, message: Message, *, reply_to: str | None) -> Sent:
        shown: list[_Shown] = []
        for part in _visible(render_discord(message)):
            try:
                shown.append(await self._send(part))
            except Exception as exc:
                error = _answer_error(exc)
                if shown and isinstance(error, RetryAfter | TransientError):
                    # Parts went out: a retry would repeat them.
                    raise PermanentError(f"answer cut short: {error}") from exc
                raise error from exc
        return _sent(shown)

    async def _send(self, part: RenderedMessage) -> _Shown:
        interaction = self.interaction
        kwargs = send_kwargs(part)
        try:
            if not interaction.response.is_done():
                answered = await interaction.response.send_message(
                    ephemeral=self.ephemeral, **kwargs
                )
                mid = answered.message_id
                return None, str(mid) if mid is not None else None
            sent = await interaction.followup.send(ephemeral=self.ephemeral, wait=True, **kwargs)
            return sent, str(sent.id)
        finally:
            forget_view(kwargs)

    async def edit(self, chat: ChatRef, sent: Sent, message: Message) -> Sent:
        """Part by part: extra old parts are deleted, extra new ones sent as follow-ups."""
        old: list[_Shown] = sent.state
        parts = _visible(render_discord(message))
        shown: list[_Shown] = []
        try:
            for index, part in enumerate(parts):
                if index >= len(old):
                    shown.append(await self._send(part))
                    continue
                kwargs = edit_kwargs(part)
                target = old[index][0]
                try:
                    if target is None:
                        await self.interaction.edit_original_response(**kwargs)
                    else:
                        await target.edit(**kwargs)
                finally:
                    forget_view(kwargs)
                shown.append(old[index])
            await self.delete(chat, _sent(old[len(parts) :]))
        except discord.DiscordException as exc:
            raise _answer_error(exc) from exc
        return _sent(shown)

    async def delete(self, chat: ChatRef, sent: Sent) -> None:
        for target, _ in sent.state:
            if target is None:
                await self.interaction.delete_original_response()
            else:
                await target.delete()

    async def attach(self, chat: ChatRef, document: Document) -> list[str]:
        return []  # the file rode with the message's last part (render_discord)


def _sent(shown: list[_Shown]) -> Sent:
    return Sent([mid for _, mid in shown if mid is not None], shown)


def _answer_error(exc: BaseException) -> SendError:
    """An interaction's errors, as for any message, except that a refused token or a
    vanished answer says nothing about the channel: it is not paused for that."""
    error = map_error(exc)
    return PermanentError(str(error)) if isinstance(error, ChatGone) else error
