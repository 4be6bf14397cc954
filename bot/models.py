"""Plain data shared by the core and the adapters. No I/O here."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Literal

Platform = Literal["telegram", "discord", "console"]
DigestFormat = Literal["compact", "full"]

HF_FEEDS = ("hf:trending", "hf:daily")


@dataclass(slots=True)
class Paper:
    """One paper. `id` is the canonical arXiv id without version: the de-duplication key."""

    id: str
    title: str
    authors: list[str] = field(default_factory=list)
    abstract: str = ""
    categories: list[str] = field(default_factory=list)  # primary first
    version: int | None = None
    published: datetime | None = None
    updated: datetime | None = None
    comment: str | None = None
    journal_ref: str | None = None
    doi: str | None = None
    # What Hugging Face adds.
    upvotes: int | None = None
    ai_summary: str | None = None
    ai_keywords: list[str] = field(default_factory=list)
    github_repo: str | None = None
    github_stars: int | None = None
    project_page: str | None = None
    # From an arXiv listing: "new", "cross", "replace", "replace-cross".
    announce_type: str | None = None

    @property
    def versioned_id(self) -> str:
        return f"{self.id}v{self.version}" if self.version else self.id

    @property
    def abs_url(self) -> str:
        return f"https://arxiv.org/abs/{self.versioned_id}"

    @property
    def pdf_url(self) -> str:
        return f"https://arxiv.org/pdf/{self.versioned_id}"

    @property
    def html_url(self) -> str:
        return f"https://arxiv.org/html/{self.versioned_id}"

    @property
    def hf_url(self) -> str:
        return f"https://huggingface.co/papers/{self.id}"

    @property
    def primary_category(self) -> str | None:
        return self.categories[0] if self.categories else None


@dataclass(frozen=True, slots=True)
class ChatRef:
    """Where messages go: a platform and its chat id (+ a thread where the platform has one)."""

    platform: str
    chat_id: str
    thread_id: str | None = None

    @property
    def key(self) -> str:
        base = f"{self.platform}:{self.chat_id}"
        return f"{base}:{self.thread_id}" if self.thread_id else base


@dataclass(slots=True)
class ChatSettings:
    chat: ChatRef
    timezone: str = "UTC"
    delivery_time: time = time(9, 0)
    count: int = 10
    format: DigestFormat = "compact"
    language: str = "en"
    weekdays: frozenset[int] | None = None  # 0=Monday..6=Sunday; None = every day
    active: bool = True
    title: str | None = None  # chat or channel name, for logs and admin views
    explain: bool = False  # a math line (key equation + one sentence) under each digest paper


@dataclass(slots=True)
class Subscription:
    chat: ChatRef
    feed: str  # "hf:trending", "hf:daily" or "arxiv:<category>"
    keywords: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    authors: list[str] = field(default_factory=list)
    id: int | None = None
    created_at: datetime | None = None

    def matches(self, paper: Paper) -> bool:
        """Keyword filters: any keyword (title/abstract), no negative keyword, any author."""
        text = f"{paper.title}\n{paper.abstract}".casefold()
        if any(_word_in(word, text) for word in self.exclude):
            return False
        if self.keywords and not any(_word_in(word, text) for word in self.keywords):
            return False
        if self.authors:
            names = [a.casefold() for a in paper.authors]
            if not any(a.casefold() in name for a in self.authors for name in names):
                return False
        return True

    def describe(self) -> str:
        parts = [self.feed]
        parts += self.keywords
        parts += [f"-{w}" for w in self.exclude]
        parts += [f'author:"{a}"' if " " in a else f"author:{a}" for a in self.authors]
        return " ".join(parts)


def filter_key(sub: Subscription) -> tuple[object, ...]:
    """What a subscription's choice of papers depends on: its feed and filters."""
    return (sub.feed, tuple(sub.keywords), tuple(sub.exclude), tuple(sub.authors))


def _word_in(word: str, text: str) -> bool:
    """Whole-word (or whole-phrase) match, case-insensitive; `text` is already casefolded."""
    pattern = r"(?<!\w)" + re.escape(word.casefold()) + r"(?!\w)"
    return re.search(pattern, text) is not None
