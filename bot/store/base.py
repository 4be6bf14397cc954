"""The Store protocol: everything Paperboy keeps. SQLite and PostgreSQL implement it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import Protocol

from bot.models import ChatRef, ChatSettings, Paper, Subscription


class Store(Protocol):
    async def open(self) -> None:
        """Connect and apply pending migrations."""
        ...

    async def close(self) -> None: ...

    async def schema_version(self) -> int: ...

    # papers (a cache of what the sources returned)
    async def upsert_papers(self, papers: Iterable[Paper]) -> None: ...

    async def get_paper(self, paper_id: str) -> Paper | None: ...

    async def get_papers(self, paper_ids: Sequence[str]) -> dict[str, Paper]: ...

    # feeds: fetched once per day, however many chats follow them
    async def save_feed(self, feed: str, day: date, announced: date | None,
                        paper_ids: Sequence[str]) -> None: ...

    async def load_feed(self, feed: str, day: date) -> tuple[date | None, list[str]] | None:
        """(announced, paper ids in feed order) of the fetch stored for `day`, or None."""
        ...

    # chats
    async def get_chat(self, chat: ChatRef) -> ChatSettings | None: ...

    async def save_chat(self, settings: ChatSettings) -> None: ...

    async def set_chat_active(self, chat: ChatRef, active: bool) -> None: ...

    async def migrate_chat(self, old: ChatRef, new: ChatRef) -> None:
        """Move a chat's settings, subscriptions and history to a new id (Telegram migration)."""
        ...

    # subscriptions
    async def add_subscription(self, sub: Subscription) -> Subscription:
        """Add, or replace the filters of, the chat's subscription to `sub.feed`."""
        ...

    async def remove_subscription(self, chat: ChatRef, feed: str) -> bool: ...

    async def list_subscriptions(self, chat: ChatRef) -> list[Subscription]: ...

    # delivered: a paper reaches a chat once, whatever the feed
    async def mark_delivered(self, chat: ChatRef, paper_ids: Iterable[str]) -> None: ...

    async def delivered_ids(self, chat: ChatRef, paper_ids: Iterable[str]) -> set[str]: ...
