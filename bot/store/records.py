"""Rows <-> models, shared by the SQLite and PostgreSQL stores.

The two stores differ only in how a list of strings and an instant are kept (JSON text
and ISO text in SQLite; text[] and timestamptz in PostgreSQL): each passes its `Codec`.
Text is cleaned on the way in (see `clean_text`), so one odd paper never fails a batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any, Protocol, cast

from bot.models import ChatRef, ChatSettings, DigestFormat, Paper, Subscription
from bot.store import clean_text, weekdays_from_text, weekdays_to_text


class Row(Protocol):
    """sqlite3.Row and asyncpg.Record alike: columns by name."""

    def __getitem__(self, key: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class Codec:
    list_out: Callable[[list[str]], Any]
    list_in: Callable[[Any], list[str]]
    dt_out: Callable[[datetime], Any]
    dt_in: Callable[[Any], datetime]


# The papers table's columns in `paper_row` order, with how a re-fetch merges each one
# (see the stores' _merge_expr): "keep" fields hold their stored value when a later
# fetch lacks them.
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


def opt_text(value: str | None) -> str | None:
    return None if value is None else clean_text(value)


def key(chat: ChatRef) -> tuple[str, str, str]:
    """(platform, chat_id, thread_id) as stored: no thread is '' so UNIQUE covers it."""
    return clean_text(chat.platform), clean_text(chat.chat_id), clean_text(chat.thread_id or "")


def texts(codec: Codec, values: Iterable[str]) -> Any:
    return codec.list_out([clean_text(v) for v in values])


def _opt_dt_out(codec: Codec, value: datetime | None) -> Any:
    return None if value is None else codec.dt_out(value)


def _opt_dt_in(codec: Codec, value: Any) -> datetime | None:
    return None if value is None else codec.dt_in(value)


def paper_row(paper: Paper, codec: Codec) -> tuple[Any, ...]:
    return (
        clean_text(paper.id),
        paper.version,
        clean_text(paper.title),
        texts(codec, paper.authors),
        clean_text(paper.abstract),
        texts(codec, paper.categories),
        _opt_dt_out(codec, paper.published),
        _opt_dt_out(codec, paper.updated),
        opt_text(paper.comment),
        opt_text(paper.journal_ref),
        opt_text(paper.doi),
        paper.upvotes,
        opt_text(paper.ai_summary),
        texts(codec, paper.ai_keywords),
        opt_text(paper.github_repo),
        paper.github_stars,
        opt_text(paper.project_page),
        opt_text(paper.announce_type),
    )


def paper_from(row: Row, codec: Codec) -> Paper:
    return Paper(
        id=row["id"],
        title=row["title"],
        authors=codec.list_in(row["authors"]),
        abstract=row["abstract"],
        categories=codec.list_in(row["categories"]),
        version=row["version"],
        published=_opt_dt_in(codec, row["published"]),
        updated=_opt_dt_in(codec, row["updated"]),
        comment=row["comment"],
        journal_ref=row["journal_ref"],
        doi=row["doi"],
        upvotes=row["upvotes"],
        ai_summary=row["ai_summary"],
        ai_keywords=codec.list_in(row["ai_keywords"]),
        github_repo=row["github_repo"],
        github_stars=row["github_stars"],
        project_page=row["project_page"],
        announce_type=row["announce_type"],
    )


def settings_row(s: ChatSettings) -> tuple[Any, ...]:
    return (
        clean_text(s.timezone),
        s.delivery_time.strftime("%H:%M"),
        s.count,
        s.format,
        clean_text(s.language),
        weekdays_to_text(s.weekdays),
        bool(s.active),  # sqlite3 stores a bool as 1/0
        opt_text(s.title),
        bool(s.explain),
    )


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


def subscription_from(chat: ChatRef, row: Row, codec: Codec) -> Subscription:
    return Subscription(
        chat=chat,
        feed=row["feed"],
        keywords=codec.list_in(row["keywords"]),
        exclude=codec.list_in(row["exclude"]),
        authors=codec.list_in(row["authors"]),
        id=int(row["id"]),
        created_at=codec.dt_in(row["created_at"]),
    )


def chat_ref(row: Row) -> ChatRef:
    return ChatRef(row["platform"], row["chat_id"], row["thread_id"] or None)
