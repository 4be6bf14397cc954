"""The seam between delivery and the platforms: a Sender, and the errors it may raise.

Adapters map their platform's errors onto these, so bot/delivery.py decides what to do
(wait, retry, deactivate, move) without knowing any platform.
"""

from __future__ import annotations

from typing import Protocol

from bot.doc import Message
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
        """Send one message (the renderer may split it); returns platform message ids."""
        ...


class Adapter(Sender, Protocol):
    """A chat platform: inbound commands plus the Sender for digests."""

    async def start(self, *, receive: bool = True) -> None:
        """Connect. `receive=False`: for sending only (`deliver --now`), no inbound updates,
        so a bot already running with the same token keeps receiving its own."""
        ...

    async def stop(self) -> None: ...
