"""Rows <-> models for the SQL store.

How each database keeps a list of strings, an instant or a day is the column types' concern
(bot/store/types.py), so rows here are already Python values on both. Text is cleaned on
the way in (see `clean_text`), so one odd paper never fails a batch.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime, time
from typing import Any, Protocol, cast

from bot.models import ChatRef, ChatSettings, DigestFormat, Paper, Subscription
from bot.store.text import clean_text, weekdays_from_text, weekdays_to_text


class Row(Protocol):
    """A result row's mapping (SQLAlchemy's RowMapping): columns by name."""

    def __getitem__(self, key: str, /) -> Any: ...


# The papers table's columns with how a re-fetch merges each one (see papers.py): "keep"
# fields hold their stored value when a later fetch lacks them.
PAPER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "key"),
    ("version", "max"),
    ("title", "text"),
    ("authors", "list"),
    ("abstract", "text"),
    ("categories", "list"),
    ("published", "keep"),
    ("updated", "keep"),
    ("comment", "keep"),
    ("journal_ref", "keep"),
    ("doi", "keep"),
    ("upvotes", "keep"),
    ("ai_summary", "keep"),
    ("ai_keywords", "list"),
    ("github_repo", "keep"),
    ("github_stars", "keep"),
    ("project_page", "keep"),
    ("announce_type", "keep"),
)

SETTINGS_COLUMNS = (
    "timezone",
    "delivery_time",
    "count",
    "format",
    "language",
    "weekdays",
    "active",
    "title",
    "explain_digest",
)


def opt_text(value: str | None) -> str | None:
    return None if value is None else clean_text(value)


def key(chat: ChatRef) -> tuple[str, str, str]:
    """(platform, chat_id, thread_id) as stored: no thread is '' so UNIQUE covers it."""
    return clean_text(chat.platform), clean_text(chat.chat_id), clean_text(chat.thread_id or "")


def paper_row(paper: Paper, fetched_at: datetime) -> dict[str, Any]:
    return {
        "id": clean_text(paper.id),
        "version": paper.version,
        "title": clean_text(paper.title),
        "authors": paper.authors,
        "abstract": clean_text(paper.abstract),
        "categories": paper.categories,
        "published": paper.published,
        "updated": paper.updated,
        "comment": opt_text(paper.comment),
        "journal_ref": opt_text(paper.journal_ref),
        "doi": opt_text(paper.doi),
        "upvotes": paper.upvotes,
        "ai_summary": opt_text(paper.ai_summary),
        "ai_keywords": paper.ai_keywords,
        "github_repo": opt_text(paper.github_repo),
        "github_stars": paper.github_stars,
        "project_page": opt_text(paper.project_page),
        "announce_type": opt_text(paper.announce_type),
        "fetched_at": fetched_at,
    }


def paper_from(row: Row) -> Paper:
    return Paper(
        id=row["id"],
        title=row["title"],
        authors=list(row["authors"]),
        abstract=row["abstract"],
        categories=list(row["categories"]),
        version=row["version"],
        published=row["published"],
        updated=row["updated"],
        comment=row["comment"],
        journal_ref=row["journal_ref"],
        doi=row["doi"],
        upvotes=row["upvotes"],
        ai_summary=row["ai_summary"],
        ai_keywords=list(row["ai_keywords"]),
        github_repo=row["github_repo"],
        github_stars=row["github_stars"],
        project_page=row["project_page"],
        announce_type=row["announce_type"],
    )


def settings_row(s: ChatSettings) -> dict[str, Any]:
    return {
        "timezone": clean_text(s.timezone),
        "delivery_time": s.delivery_time.strftime("%H:%M"),
        "count": s.count,
        "format": s.format,
        "language": clean_text(s.language),
        "weekdays": weekdays_to_text(s.weekdays),
        "active": bool(s.active),
        "title": opt_text(s.title),
        "explain_digest": bool(s.explain),
    }


def settings_from(chat: ChatRef, row: Row) -> ChatSettings:
    return ChatSettings(
        chat=chat,
        timezone=row["timezone"],
        delivery_time=time.fromisoformat(row["delivery_time"]),
        count=row["count"],
        format=cast(DigestFormat, row["format"]),
        language=row["language"],
        weekdays=weekdays_from_text(row["weekdays"]),
        active=bool(row["active"]),
        title=row["title"],
        explain=bool(row["explain_digest"]),
    )


def settings_from_values(chat: ChatRef, values: Sequence[Any]) -> ChatSettings:
    """`settings_from` for raw values in SETTINGS_COLUMNS order (hot reads)."""
    timezone, at, count, format, language, weekdays, active, title, explain = values
    return ChatSettings(
        chat=chat,
        timezone=timezone,
        delivery_time=_time(at),
        count=count,
        format=format,
        language=language,
        weekdays=weekdays_from_text(weekdays),
        active=bool(active),
        title=title,
        explain=bool(explain),
    )


@functools.lru_cache(maxsize=2048)
def _time(text: str) -> time:
    return time.fromisoformat(text)


def subscription_from(chat: ChatRef, row: Row) -> Subscription:
    return Subscription(
        chat=chat,
        feed=row["feed"],
        keywords=list(row["keywords"]),
        exclude=list(row["exclude"]),
        authors=list(row["authors"]),
        id=int(row["id"]),
        created_at=row["created_at"],
    )


def chat_ref(row: Row) -> ChatRef:
    return ChatRef(row["platform"], row["chat_id"], row["thread_id"] or None)
