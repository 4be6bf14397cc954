"""What a chat teaches its ranking (issue 14): the store's part of it.

`LearningStore` is part of the `Store` protocol; `SQLiteLearning` and `PostgresLearning`
(bot/store/learning_sqlite.py, learning_postgres.py) implement it for the two backends.
Every row hangs off the chat's row, so one chat never reads another's votes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal, Protocol

from bot.models import ChatRef

Quality = Literal["strict", "normal", "all"]
Cadence = Literal["daily", "weekly"]


@dataclass(slots=True)
class Vote:
    """A chat's verdict on one paper: the sum of its members' votes (-1 or +1 each)."""

    paper_id: str
    value: int
    voted_at: datetime  # the latest member vote on it


@dataclass(slots=True)
class LearnState:
    """A chat's learning preferences and its fitted model."""

    quality: Quality = "normal"
    cadence: Cadence = "daily"
    weekly_day: int = 0  # 0 = Monday: the day a weekly digest goes out
    topic_threshold: float | None = None  # None: the default threshold
    model: bytes | None = None  # bot.rank.model.Model.to_bytes()
    model_votes: int = 0  # how many votes the model learned from
    last_weekly: date | None = None  # the chat's local date of its last weekly digest


class LearningStore(Protocol):
    async def set_vote(self, chat: ChatRef, user_id: str, paper_id: str, value: int) -> None:
        """The member's vote on the paper: +1, -1, or 0 to take it back. Voting again
        replaces the member's earlier vote."""
        ...

    async def chat_votes(self, chat: ChatRef) -> list[Vote]:
        """The chat's votes by paper (members summed), newest first; zero sums left out."""
        ...

    async def save_paper(self, chat: ChatRef, paper_id: str) -> bool:
        """Add to the chat's library; False if it was there already."""
        ...

    async def unsave_paper(self, chat: ChatRef, paper_id: str) -> bool: ...

    async def saved_papers(self, chat: ChatRef) -> list[tuple[str, datetime]]:
        """(paper id, saved at), newest first."""
        ...

    async def set_topics(self, chat: ChatRef, feed: str, topics: Sequence[str]) -> None:
        """Replace the plain-words topics of the chat's subscription to `feed`."""
        ...

    async def chat_topics(self, chat: ChatRef) -> dict[str, list[str]]:
        """Topics by feed."""
        ...

    async def get_learning(self, chat: ChatRef) -> LearnState: ...

    async def save_learning(self, chat: ChatRef, state: LearnState) -> None: ...

    async def anyone_learning(self) -> bool:
        """Whether any chat has a learning state or topics: when none has, a delivery
        round skips asking for each chat's."""
        ...

    async def learning_among(
        self, chats: Sequence[ChatRef]
    ) -> dict[ChatRef, tuple[LearnState, dict[str, list[str]]]]:
        """State and topics of many chats at once (a delivery round); chats with neither
        are left out."""
        ...

    async def recent_delivered(self, chat: ChatRef, limit: int) -> list[tuple[str, datetime]]:
        """(paper id, delivered at) of the chat's latest deliveries, newest first: the papers
        it received and did not vote on are the model's weak negatives."""
        ...

    async def forget_learning(self, chat: ChatRef) -> int:
        """Delete the chat's votes and model (preferences, topics and library stay);
        returns the votes deleted."""
        ...
