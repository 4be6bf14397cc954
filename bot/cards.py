"""How papers look, as platform-neutral documents: one card, a numbered list, a digest."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from bot.doc import (
    Block,
    Bold,
    Button,
    Heading,
    Inline,
    ListBlock,
    Message,
    Reply,
    Text,
    b,
    code,
    heading,
    i,
    inlines,
    joined,
    link,
    p,
)
from bot.explain.prompt import language_name
from bot.latex import clean_text, rich_inlines
from bot.models import ChatSettings, Paper

if TYPE_CHECKING:
    from bot.explain.digest_line import DigestLine

MAX_AUTHORS = 5
COMPACT_ABSTRACT_CHARS = 220
_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def authors_line(paper: Paper, limit: int = MAX_AUTHORS) -> str:
    # Listing feeds carry TeX accents in names (Pi\v{z}urica): show them as letters.
    names = [clean_text(name) for name in paper.authors]
    if not names:
        return "Unknown authors"
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(names[:limit])} and {len(names) - limit} more"


def meta_line(paper: Paper) -> str:
    """Primary category · date · ▲ upvotes · ★ stars, whichever are known."""
    parts: list[str] = []
    if paper.primary_category:
        parts.append(paper.primary_category)
    when = paper.published or paper.updated
    if when:
        parts.append(f"{when:%Y-%m-%d}")
    if paper.upvotes:
        parts.append(f"▲ {paper.upvotes}")
    if paper.github_stars:
        parts.append(f"★ {paper.github_stars}")
    if paper.announce_type == "cross":
        parts.append("cross-list")
    return " · ".join(parts)


def shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(",;:.") + "…"


def paper_buttons(paper: Paper, feed: str | None = None) -> list[list[Button]]:
    row = [
        Button("Explain", command="explain", arg=paper.id),
        Button("PDF", url=paper.pdf_url),
        Button("HF page", url=paper.hf_url),
    ]
    rows = [row]
    if feed:
        rows.append([Button(f"Unsubscribe {feed}", command="unsubscribe", arg=feed)])
    return rows


def vote_row(paper: Paper) -> list[Button]:
    """👍 / 👎 / 💾 under a one-paper message (reactions work there too)."""
    return [
        Button("👍", command="like", arg=paper.id),
        Button("👎", command="dislike", arg=paper.id),
        Button("💾", command="save", arg=paper.id),
    ]


def voted_paper(message: Message) -> str | None:
    """The paper of a one-paper message with vote buttons (reactions to it vote on it)."""
    papers = {b.arg for row in message.buttons for b in row if b.command == "like"}
    return papers.pop() if len(papers) == 1 else None


def vote_rows(papers: Sequence[Paper]) -> list[list[Button]]:
    """Numbered 👍 and 👎 for a message holding several papers, five to a row."""
    rows: list[list[Button]] = []
    for start in range(0, len(papers), 5):
        chunk = list(enumerate(papers[start : start + 5], start + 1))
        rows.append([Button(f"👍 {n}", command="like", arg=paper.id, item=n) for n, paper in chunk])
        rows.append(
            [Button(f"👎 {n}", command="dislike", arg=paper.id, item=n) for n, paper in chunk]
        )
    return rows


def links(paper: Paper) -> tuple[Inline, ...]:
    found = [
        link("abs", paper.abs_url),
        link("pdf", paper.pdf_url),
        link("html", paper.html_url),
        link("HF", paper.hf_url),
    ]
    if paper.github_repo:
        found.append(link("code", paper.github_repo))
    if paper.project_page:
        found.append(link("project", paper.project_page))
    return inlines(*joined(found, " · "))


def math_line(line: DigestLine) -> tuple[Inline, ...]:
    """A digest paper's key equation and what it says (`/settings explain on`)."""
    return inlines(
        "🧮 ", code(line.formula), *([i(f" — {line.sentence}")] if line.sentence else [])
    )


def paper_message(
    paper: Paper,
    *,
    detail: bool = False,
    feed: str | None = None,
    number: int | None = None,
    note: str | None = None,
    votes: bool = False,
    line: DigestLine | None = None,
) -> Message:
    """One paper as one message: the card of /paper, and of full-format digests."""
    title: tuple[Inline, ...] = rich_inlines(paper.title)
    if number is not None:
        title = (Text(f"{number}. "), *title)
    blocks: list[Block] = [
        Heading(title),
        p(i(authors_line(paper, 12 if detail else MAX_AUTHORS))),
    ]
    meta = meta_line(paper)
    if meta:
        blocks.append(p(meta))
    if paper.ai_summary:
        blocks.append(p(b("TL;DR "), *rich_inlines(paper.ai_summary)))
    if paper.abstract:
        abstract = paper.abstract if detail else shorten(paper.abstract, 600)
        blocks.append(p(*rich_inlines(abstract)))
    if line is not None:
        blocks.append(p(*math_line(line)))
    if detail and paper.comment:
        blocks.append(p(i(paper.comment)))
    if note:
        blocks.append(p(i(f"Why: {note}")))
    blocks.append(p(*links(paper)))
    buttons = paper_buttons(paper, feed)
    if votes:
        buttons.insert(1, vote_row(paper))
    return Message(blocks, buttons)


def list_item(
    paper: Paper, note: str | None = None, line: DigestLine | None = None
) -> tuple[Inline, ...]:
    """One paper as an item of a numbered list (the same wherever the list is), with
    its math line if `line` and why it is there if `note`."""
    item: list[Inline] = [Bold(rich_inlines(paper.title)), *inlines("\n", authors_line(paper, 3))]
    meta = meta_line(paper)
    if meta:
        item.append(Text(f" · {meta}"))
    blurb = paper.ai_summary or paper.abstract
    if blurb:
        item += [Text("\n"), *rich_inlines(shorten(blurb, COMPACT_ABSTRACT_CHARS))]
    if line is not None:
        item += [Text("\n"), *math_line(line)]
    item += inlines(
        "\n", link(paper.versioned_id, paper.abs_url), " · ", link("pdf", paper.pdf_url)
    )
    if note:
        item += inlines("\n", i(f"Why: {note}"))
    return tuple(item)


def explain_rows(papers: Sequence[Paper]) -> list[list[Button]]:
    # Numbered Explain buttons, five to a row, so each paper is one tap away.
    explain = [
        Button(f"💡 {n}", command="explain", arg=paper.id, item=n)
        for n, paper in enumerate(papers, 1)
    ]
    return [explain[start : start + 5] for start in range(0, len(explain), 5)]


def paper_list(
    title: str,
    papers: Sequence[Paper],
    *,
    limit: int = 25,
    feed: str | None = None,
    notes: Sequence[str] | None = None,
    votes: bool = False,
    lines: Mapping[str, DigestLine] | None = None,
) -> Reply:
    """A numbered list in one message (compact digests, /trending, /today, /search)."""
    shown = list(papers[:limit])
    items = tuple(
        list_item(
            paper,
            notes[n] if notes and n < len(notes) else None,
            (lines or {}).get(paper.id),
        )
        for n, paper in enumerate(shown)
    )
    blocks: list[Block] = [heading(title), ListBlock(items, ordered=True)]
    if len(papers) > len(shown):
        blocks.append(p(f"…and {len(papers) - len(shown)} more."))
    rows = explain_rows(shown)
    if votes:
        rows += vote_rows(shown)
    if feed:
        rows.append([Button(f"Unsubscribe {feed}", command="unsubscribe", arg=feed)])
    return Reply([Message(blocks, rows)])


def digest_buttons() -> list[Button]:
    """The row under every digest. The same for every chat (digests are shared between
    chats): the commands answer for the chat the button is pressed in."""
    return [
        Button("Unsubscribe", command="unsubscribe"),
        Button("Settings", command="settings"),
    ]


def describe_settings(settings: ChatSettings) -> str:
    if settings.weekdays is None:
        days = "every day"
    else:
        days = ", ".join(_DAY_NAMES[d] for d in sorted(settings.weekdays))
    extras = "; each with its key equation" if settings.explain else ""
    if settings.language != "en":  # the default goes unsaid
        extras += f"; explanations in {language_name(settings.language)}"
    return (
        f"Digest at {settings.delivery_time:%H:%M} {settings.timezone}, {days}; "
        f"up to {settings.count} papers, {settings.format} format{extras}."
    )


def is_explain(button: Button) -> bool:
    """Whether `button` explains a paper, the action a paper's card leads with: platforms
    may set it apart (Discord shows it as the primary button, and a menu of them as
    "💡 Explain paper …") without knowing the command's name."""
    return button.command == "explain"
