"""The Store protocol: everything Paperboy keeps (bot/store/sql.py implements it)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Protocol

from bot.models import ChatRef, ChatSettings, Paper, Subscription, filter_key
from bot.store.learning import LearningStore


class Store(LearningStore, Protocol):
    # Whether statements on separate connections run side by side, in another process
    # (PostgreSQL's pool), so a round may write one batch while it builds the next. Not
    # on SQLite: one connection, and its work shares this process's core.
    overlaps_writes: bool

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
    async def save_feed(
        self, feed: str, day: date, announced: date | None, paper_ids: Sequence[str]
    ) -> None: ...

    async def load_feed(self, feed: str, day: date) -> tuple[date | None, list[str]] | None:
        """(announced, paper ids in feed order) of the fetch stored for `day`, or None."""
        ...

    # chats
    async def get_chat(self, chat: ChatRef) -> ChatSettings | None: ...

    async def save_chat(self, settings: ChatSettings) -> None: ...

    async def set_chat_active(self, chat: ChatRef, active: bool) -> None: ...

    async def reactivate_chats(self, platform: str, chat_ids: Sequence[str]) -> list[ChatRef]:
        """Switch the paused chats among `chat_ids` back on (the bot can post there again);
        returns those it switched."""
        ...

    async def migrate_chat(self, old: ChatRef, new: ChatRef) -> None:
        """Move a chat's settings, subscriptions and history to a new id (Telegram migration)."""
        ...

    # subscriptions
    async def add_subscription(self, sub: Subscription) -> Subscription:
        """Add, or replace the filters of, the chat's subscription to `sub.feed`."""
        ...

    async def remove_subscription(self, chat: ChatRef, feed: str) -> bool: ...

    async def list_subscriptions(self, chat: ChatRef) -> list[Subscription]: ...

    # delivered: a paper reaches a chat once, whatever the feed (enqueue_digests marks them)
    async def delivered_ids(self, chat: ChatRef, paper_ids: Iterable[str]) -> set[str]: ...

    # outbox and schedule (bot/delivery.py). Instants are aware UTC datetimes.
    async def unscheduled_chats(self, limit: int) -> list[tuple[ChatSettings, datetime]]:
        """Active chats with subscriptions whose next run is unset (new, or settings changed),
        each with the instant its schedule last changed (chat or first subscription)."""
        ...

    async def set_next_runs(self, runs: Sequence[tuple[ChatRef, datetime]]) -> None:
        """Set next runs; only chats still unscheduled are touched (a change in between wins)."""
        ...

    async def due_chats(
        self, now: datetime, limit: int, after: tuple[datetime, int] | None = None
    ) -> list[DueChat]:
        """Active chats with subscriptions whose next run is at or before `now`, oldest first
        (by next run, then row id), from just after `after` (a chat's due_at and row id)."""
        ...

    async def delivered_among(
        self, pks: Sequence[int], paper_ids: Sequence[str]
    ) -> dict[int, set[str]]:
        """`delivered_ids` for many chats at once, by row id (DueChat.pk); chats with none
        are left out."""
        ...

    async def enqueue_digests(self, digests: Sequence[Enqueue], now: datetime) -> int:
        """In ONE transaction: insert each digest's outbox rows (an existing idempotency key is
        skipped), mark its papers delivered and move its chat's next run from `due_at` to
        `next_run_at` (unless the schedule changed meanwhile). Returns rows inserted."""
        ...

    async def claim_outbox(
        self,
        now: datetime,
        limit: int,
        lease_seconds: float,
        worker: str,
        platforms: Sequence[str],
    ) -> list[OutboxItem]:
        """Lease up to `limit` sendable rows (pending and due, or leased and expired), at most
        one per chat: its first unsent row, and only when no earlier row of the chat is
        pending, leased or waiting for a retry. Counts an attempt on each."""
        ...

    async def renew_outbox_leases(
        self, item_ids: Sequence[int], worker: str, lease_until: datetime
    ) -> int:
        """Extend the leases `worker` still holds on these rows; returns rows renewed."""
        ...

    async def outbox_lease_holders(self) -> list[str]:
        """The workers that hold a lease on some row now (expired or not)."""
        ...

    async def expire_outbox_leases(self, workers: Sequence[str], now: datetime) -> int:
        """The leases these workers hold end at `now` (they are known to be dead): their
        rows are claimed again first; returns rows let go."""
        ...

    async def mark_sent(self, sent: Sequence[tuple[int, list[str]]], now: datetime) -> None:
        """(row id, platform message ids) of rows now sent."""
        ...

    async def mark_failed(
        self, item_id: int, next_attempt_at: datetime, error: str, *, refund: bool = False
    ) -> None:
        """Back to pending until `next_attempt_at`; `refund` un-counts the attempt."""
        ...

    async def mark_dead(self, item_id: int, error: str) -> None: ...

    async def defer_chat_outbox(self, chat: ChatRef, until: datetime) -> int:
        """Every unsent row of the chat waits until `until` (the platform said retry_after)."""
        ...

    async def drop_chat_outbox(self, chat: ChatRef, error: str) -> int:
        """Every unsent row of the chat is dead (the chat is gone)."""
        ...

    async def outbox_counts(self) -> dict[str, int]:
        """Rows per status: pending, sending, sent, dead."""
        ...

    async def next_outbox_time(self, platforms: Sequence[str]) -> datetime | None:
        """When the next unsent row becomes claimable, as far as this store can tell: the
        earliest retry of a chat's first unsent row, or lease expiry (None: nothing left)."""
        ...

    async def prune_outbox(self, before: datetime) -> int:
        """Delete sent and dead rows created before `before`."""
        ...

    # message memory: what adapters must remember about what they sent, shared by every
    # worker and kept across restarts (pruned with `prune_message_memory`)
    async def remember_message_papers(
        self, chat: ChatRef, message_ids: Sequence[str], paper_id: str
    ) -> None:
        """These sent messages are about `paper_id`: a reply to one asks about that paper.
        Keyed by platform, chat id and message id (a thread does not matter)."""
        ...

    async def message_paper(self, chat: ChatRef, message_id: str) -> str | None:
        """The paper a sent message is about, if it was remembered (and not pruned)."""
        ...

    async def save_callbacks(self, callbacks: Mapping[str, str]) -> None:
        """Button data too long for the platform, by a key the caller derives from the data
        (so every worker agrees). Saving a key again refreshes its age."""
        ...

    async def load_callback(self, key: str) -> str | None: ...

    async def prune_message_memory(self, before: datetime) -> int:
        """Forget message papers and callbacks last saved before `before`; rows deleted."""
        ...


# A mix's subscriptions belong to no one chat: they stand for every chat that has the mix.
MIX_CHAT = ChatRef("", "")


class Mix:
    """One distinct combination of followed feeds and filters, shared by every due chat
    that follows exactly it: a round filters and ranks once per mix, and hashes it once."""

    __slots__ = ("_hash", "feeds", "filters", "subscriptions")

    def __init__(self, subscriptions: Sequence[Subscription]) -> None:
        """`subscriptions` in the chats' order, made for the mix (chat MIX_CHAT, no id)."""
        self.subscriptions = tuple(subscriptions)
        self.filters = tuple(map(filter_key, self.subscriptions))
        self.feeds = tuple(dict.fromkeys(s.feed for s in self.subscriptions))
        self._hash = hash(self.filters)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        # Equal to its filters too (and hashed alike): a Mix and `tuple(map(filter_key,
        # subs))` are the same key in the round's tables.
        if self is other:
            return True
        return self.filters == (other.filters if isinstance(other, Mix) else other)

    def __repr__(self) -> str:
        return f"Mix({' | '.join(s.describe() for s in self.subscriptions)})"


@dataclass(slots=True)
class DueChat:
    settings: ChatSettings
    mix: Mix  # what it follows, shared with every due chat that follows the same
    due_at: datetime  # the chat's next_run_at as stored
    pk: int | None = None  # the chat's row id, which spares the round looking it up by key

    @property
    def subscriptions(self) -> list[Subscription]:
        """The chat's own subscriptions (feeds and filters; ids and times are not read)."""
        return [replace(s, chat=self.settings.chat) for s in self.mix.subscriptions]


@dataclass(slots=True)
class Enqueue:
    """One chat's digest for the outbox."""

    chat: ChatRef
    due_at: datetime
    next_run_at: datetime
    messages: list[tuple[str, str]] = field(default_factory=list)  # (idempotency key, JSON)
    paper_ids: list[str] = field(default_factory=list)
    pk: int | None = None  # the chat's row id when known (DueChat.pk), else found by key


@dataclass(slots=True)
class OutboxItem:
    id: int
    chat: ChatRef
    key: str
    body: str  # the Message as JSON (bot/serialize.py)
    attempts: int  # including this one
