"""The seam between the core and the platforms: what an adapter does to put messages in a
chat (Sender for digests, Outbound for replies), and the errors it may raise.

Adapters map their platform's errors onto these, so the core decides what to do (wait,
retry, deactivate, move: bot/conversation.py for replies and chat state, bot/delivery for
the outbox) without knowing any platform.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.doc import Document, Message
from bot.models import ChatRef


class SendError(Exception):
    """Base class; the message must never contain a secret."""


class RetryAfter(SendError):
    """The platform asked us to wait (Telegram RetryAfter, Discord 429)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"rate limited, retry after {seconds:.1f}s")
        self.seconds = seconds


class TransientError(SendError):
    """5xx, timeouts, network errors: retry with backoff."""


class ChatGone(SendError):
    """Blocked, kicked, chat not found, unknown channel, missing access: deactivate the chat."""


class ChatMoved(SendError):
    """The chat has a new id (Telegram group -> supergroup): move it and resend."""

    def __init__(self, new_chat: ChatRef) -> None:
        super().__init__(f"chat moved to {new_chat.key}")
        self.new_chat = new_chat


class PermanentError(SendError):
    """A message the platform will never accept (e.g. bad request): drop it, log it."""


class Sender(Protocol):
    """A sender paces its own requests; one that does may also have
    `async def ready(chat)`, which the dispatcher awaits before taking a send slot: it
    returns once the chat's own limits would let a message go."""

    platform: str

    async def send(self, chat: ChatRef, message: Message) -> list[str]:
        """Send one message (the renderer may split it); returns platform message ids.

        `message` is shared and read-only: the outbox hands out one Message object per
        distinct row body while it is in use (many chats get the same digest), so a sender
        may memoise its rendering per object (adapters/telegram/fastpath.py does)."""
        ...


@dataclass(slots=True)
class Sent:
    """One message as it went out: its platform message ids (one per part, in order), and
    whatever the adapter needs to edit it later (`state` is the adapter's own)."""

    ids: list[str] = field(default_factory=list)
    state: Any = None


class Outbound(Protocol):
    """How a reply reaches a chat: the few things bot/conversation.py asks of an adapter.

    Conversation decides what an error means (see `Conversation.reply`); the adapter only
    maps its platform's errors onto the SendError family."""

    async def post(self, chat: ChatRef, message: Message, *, reply_to: str | None) -> Sent:
        """Send one message (all its parts, buttons under the last). Raise RetryAfter only
        before the first part went out: a flood wait between parts is sat out here, so a
        retry never repeats parts."""
        ...

    async def edit(self, chat: ChatRef, sent: Sent, message: Message) -> Sent:
        """Turn a sent message into `message` in place: parts that line up are edited,
        leftover old parts deleted, extra new parts sent below. Returns what shows it now."""
        ...

    async def delete(self, chat: ChatRef, sent: Sent) -> None:
        """Delete every part of a sent message (one already gone is fine)."""
        ...

    async def attach(self, chat: ChatRef, document: Document) -> list[str]:
        """Send a file after a message (/export); returns its message ids."""
        ...


class Adapter(Sender, Protocol):
    """A chat platform: inbound commands plus the Sender for digests."""

    async def start(self, *, receive: bool = True) -> None:
        """Connect. `receive=False`: for sending only (`deliver --now`), no inbound updates,
        so a bot already running with the same token keeps receiving its own."""
        ...

    async def stop(self) -> None: ...
