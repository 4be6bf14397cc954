"""Upstream text made inert and bounded where it enters: one pass over every Paper a source
builds, so no renderer (Telegram HTML, Discord markdown, a terminal) ever sees a control
character, an escape sequence or a bidi override, and no field is stored at any size.
"""

from __future__ import annotations

import re
from dataclasses import replace

from bot.models import Paper

# Terminal escape sequences first (whole, so "]0;new title" does not survive as text):
# OSC (ESC ] ... BEL or ST), CSI (ESC [ params final), and any other ESC + one character.
_ESCAPES = re.compile(
    r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window title, hyperlinks, clipboard
    r"|\x1b\[[0-?]*[ -/]*[@-~]?"  # CSI: colours, cursor moves, screen clears
    r"|\x9b[0-?]*[ -/]*[@-~]?"  # the 8-bit CSI
    r"|\x1b.?",
    re.S,
)
# Then every remaining control character but newline and tab: C0, DEL, C1; and the
# invisible bidi overrides, embeddings and isolates that reorder what a reader sees.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")

# Field limits, generous for real papers (arXiv caps abstracts at 1,920 characters).
MAX_TITLE = 1_000
MAX_ABSTRACT = 10_000
MAX_AUTHORS = 500
MAX_NAME = 300
MAX_CATEGORIES = 20
MAX_CATEGORY = 40
MAX_NOTE = 1_000  # comment, journal ref, AI summary
MAX_KEYWORDS = 30
MAX_KEYWORD = 100
MAX_URL = 500
MAX_SHORT = 200  # doi, announce type


def inert(text: str) -> str:
    """`text` without escape sequences, control characters (but \\n and \\t) or bidi overrides."""
    if text.isprintable():
        return text  # the common case: nothing to do
    return _CONTROLS.sub("", _ESCAPES.sub("", text))


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, cut at a word boundary with an ellipsis when too long."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit * 0.8:
        cut = cut[:space]
    return cut.rstrip() + "…"


def field_text(text: str | None, limit: int) -> str:
    """One text field: inert and clipped (cut to twice the limit first, so a 100 MB value
    costs no more than a normal one)."""
    return clip(inert(text[: limit * 2]), limit) if text else ""


def _opt(text: str | None, limit: int) -> str | None:
    return field_text(text, limit) or None


def _list(items: list[str], count: int, limit: int) -> list[str]:
    return list(dict.fromkeys(t for t in (field_text(i, limit) for i in items[:count]) if t))


def tidy_paper(paper: Paper) -> Paper:
    """The paper with every upstream text field inert and within its limit."""
    return replace(
        paper,
        title=field_text(paper.title, MAX_TITLE),
        abstract=field_text(paper.abstract, MAX_ABSTRACT),
        authors=_list(paper.authors, MAX_AUTHORS, MAX_NAME),
        categories=_list(paper.categories, MAX_CATEGORIES, MAX_CATEGORY),
        comment=_opt(paper.comment, MAX_NOTE),
        journal_ref=_opt(paper.journal_ref, MAX_NOTE),
        doi=_opt(paper.doi, MAX_SHORT),
        ai_summary=_opt(paper.ai_summary, MAX_NOTE * 2),
        ai_keywords=_list(paper.ai_keywords, MAX_KEYWORDS, MAX_KEYWORD),
        github_repo=_opt(paper.github_repo, MAX_URL),
        project_page=_opt(paper.project_page, MAX_URL),
        announce_type=_opt(paper.announce_type, MAX_SHORT),
    )


def merge_duplicates(papers: list[Paper]) -> list[Paper]:
    """One entry per paper id, in first-seen order (a listing may repeat an entry)."""
    seen: dict[str, Paper] = {}
    for paper in papers:
        seen.setdefault(paper.id, paper)
    return list(seen.values())
