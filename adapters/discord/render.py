"""Discord rendering: the document model -> message content or embeds within every
Discord limit, buttons and paper menus -> persistent views.

Text is escaped once, at the leaves; the shared splitter (adapters/split.py) cuts long
blocks with Discord's markdown as its Style. Command buttons carry `pb:<command>:<arg>`
custom ids that a dynamic item answers (slash.py), so they keep working after a restart.
Mentions are disabled in everything the bot posts.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import discord

from adapters.split import Mark, Run, Style, cut, merge, render, split, utf16_len
from bot.cards import is_explain
from bot.doc import (
    Block,
    Bold,
    Button,
    Code,
    CodeBlock,
    Heading,
    Inline,
    Italic,
    Link,
    ListBlock,
    Math,
    MathBlock,
    Message,
    Paragraph,
    Text,
    plain,
)

log = logging.getLogger(__name__)

# Discord's limits (https://discord.com/developers/docs/resources/message).
CONTENT_MAX = 2000
EMBED_DESCRIPTION_MAX = 4096
EMBED_TITLE_MAX = 256
EMBED_FIELD_MAX = 1024
EMBED_TOTAL_MAX = 6000
EMBEDS_MAX = 10
FILES_MAX = 10
ROWS_MAX = 5
BUTTONS_PER_ROW_MAX = 5
CUSTOM_ID_MAX = 100
LABEL_MAX = 80
URL_MAX = 512
EMBED_COLOR = 0xB31B1B
CUSTOM_ID_PREFIX = "pb"
# The select menus of papers: `pb-pick-<n>` (ids are unique within a message, and this
# shape is not a command button's), options' values `<command>:<arg>`.
PICK_ID = "pb-pick-{}"
OPTIONS_MAX = 25
OPTION_LABEL_MAX = 100
OPTION_VALUE_MAX = 100
NO_MENTIONS = discord.AllowedMentions.none()


@dataclass(slots=True)
class RenderedMessage:
    """One Discord message: content and/or embeds, image attachments, buttons."""

    content: str = ""
    embeds: list[discord.Embed] = field(default_factory=list)
    files: list[tuple[str, bytes]] = field(default_factory=list)  # (filename, PNG bytes)
    buttons: list[list[Button]] = field(default_factory=list)
    # Select menus, each one row: the command buttons it stands for (label: the option's).
    menus: list[list[Button]] = field(default_factory=list)


# Discord counts length in UTF-16 code units (astral = 2), conservatively.
dlen = utf16_len

# Every character Discord's markdown gives a meaning to, wherever it stands: emphasis,
# strike, spoiler, code, quotes, headings and list markers, masked links, and the `<…>`
# syntaxes (mentions <@id> <@&id> <#id>, timestamps <t:0:R>, command mentions </x:1>,
# custom emoji, suppressed links) and @everyone / @here. A backslash before any ASCII
# punctuation shows that character as itself, so escaping all of them always works.
_MARKDOWN = re.compile(r"[\\*_~`|>#\[\]()<@]")
# List markers ("- ", "+ ", "1. ") count only at a line's start; a leaf's start may be one
# too (a line break, or the digits, may end the leaf before it).
_LIST_MARKER = re.compile(r"^(\s*)([-+]|\d*\.)", re.MULTILINE)
# Bidirectional controls would let a title reorder the text around it (U+202E shows what
# follows backwards): they are dropped, as are the marks that only steer them.
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def strip_bidi(text: str) -> str:
    return _BIDI.sub("", text)


def escape(text: str) -> str:
    """Raw data -> markdown that shows exactly `text` (bidi controls dropped), inert
    however it meets its neighbours. Applied once, to leaves only."""
    out = _MARKDOWN.sub(r"\\\g<0>", strip_bidi(text))
    return _LIST_MARKER.sub(lambda m: f"{m[1]}{m[2][:-1]}\\{m[2][-1]}", out)


def code_span(text: str) -> str:
    """Inline code: `_` and `*` stay literal. A backtick cannot be escaped inside a span,
    so it becomes a look-alike; newlines become spaces (a span is one line)."""
    inner = " ".join(strip_bidi(text).replace("`", "ˋ").split())
    return f"`{inner}`" if inner else ""


def _fence(text: str) -> str:
    # A fence inside the text would close the block early: break it with zero-width spaces.
    return "```\n" + strip_bidi(text).replace("```", "`\u200b`\u200b`") + "\n```"


def _safe_url(url: str) -> str | None:
    url = url.strip()
    if not re.match(r"^https?://", url, re.IGNORECASE):
        return None
    # Parentheses, spaces and angle brackets would end the markdown link early.
    for raw, quoted in (("(", "%28"), (")", "%29"), (" ", "%20"), ("<", "%3C"), (">", "%3E")):
        url = url.replace(raw, quoted)
    return url


# Discord's markdown for adapters/split.py: the limit counts the markers, a cut never
# separates a backslash from what it escapes, and emphasis markers must touch words.
MARKDOWN = Style(length=dlen, counts_markup=True, unit=re.compile(r"\\.|.", re.DOTALL), tight=True)
BOLD: Mark = ("**", "**")
ITALIC: Mark = ("*", "*")


def _runs(nodes: Sequence[Inline], marks: tuple[Mark, ...], piece: int, links: bool) -> list[Run]:
    """Inline nodes -> escaped markdown runs; links and code spans up to `piece` long are
    kept whole."""
    out: list[Run] = []
    for node in nodes:
        match node:
            case Text(text):
                if text:
                    out.append(Run(escape(text), marks))
            case Bold(children):
                out += _runs(children, (*marks, BOLD), piece, links)
            case Italic(children):
                out += _runs(children, (*marks, ITALIC), piece, links)
            case Code(text):
                out += _code_runs(text, marks, piece)
            case Math(latex, uni):
                out += _code_runs(uni or latex, marks, piece)
            case Link(text, url):
                safe = _safe_url(url)
                label = escape(text or url)
                md = f"[{label}](<{safe}>)" if links else f"[{label}]({safe})"
                if safe is None or dlen(md) > piece:
                    out += _runs((Text(text or url),), marks, piece, links)
                    if safe is not None and text and text != url:
                        out += [Run(" ", marks), Run(safe, marks)]
                else:
                    out.append(Run(md, marks, whole=True))
    return out


def _code_runs(text: str, marks: tuple[Mark, ...], piece: int) -> list[Run]:
    span = code_span(text)
    if dlen(span) <= piece:
        return [Run(span, marks, whole=True)] if span else []
    return [
        Run(code_span(part), marks, whole=True) for part in cut(span[1:-1], piece - 2, MARKDOWN)
    ]


def render_inlines(
    nodes: Sequence[Inline], limit: int, *, prefix: str = "", links_quiet: bool = False
) -> list[str]:
    """Inline nodes -> markdown chunks of at most `limit` characters each."""
    runs = _runs(nodes, (), max(16, limit // 2), links_quiet)
    if prefix:
        runs.insert(0, Run(prefix))
    chunks = [render(part, MARKDOWN) for part in split(runs, limit, MARKDOWN)]
    return [c for c in chunks if c]


def render_block(block: Block, limit: int, *, links_quiet: bool = False) -> list[str]:
    """One block -> one markdown chunk, or several when it is longer than `limit`."""
    match block:
        case Paragraph(children):
            return render_inlines(children, limit, links_quiet=links_quiet)
        case Heading(children):
            return render_inlines((Bold(children),), limit, links_quiet=links_quiet)
        case ListBlock(items, ordered, start):
            lines: list[str] = []
            for n, item in enumerate(items, start):
                bullet = f"{n}\\. " if ordered else "• "
                lines += render_inlines(item, limit, prefix=bullet, links_quiet=links_quiet)
            return merge(lines, limit, "\n", MARKDOWN)
        case CodeBlock(text):
            lines = [p for line in text.split("\n") for p in cut(line, limit - 12, MARKDOWN)]
            return [_fence(body) for body in merge(lines, limit - 12, "\n", MARKDOWN)]
        case MathBlock(latex, uni, label, _):
            shown = uni or latex
            tail = f"    ({escape(label)})" if label else ""
            if "\n" in shown:
                return render_block(CodeBlock(shown), limit) + ([tail.strip()] if tail else [])
            chunks = [r.text for r in _code_runs(shown, (), limit - dlen(tail))]
            if tail:
                chunks = [*chunks[:-1], chunks[-1] + tail] if chunks else [tail.strip()]
            return chunks
    raise TypeError(f"unknown block {block!r}")


class _EmbedPacker:
    """Fills embeds, then messages, within the per-embed and per-message limits."""

    def __init__(self) -> None:
        self.messages: list[RenderedMessage] = [RenderedMessage()]
        self._description = ""
        self._title: str | None = None
        self._open = False  # whether the last embed may take more text

    @property
    def _message(self) -> RenderedMessage:
        return self.messages[-1]

    def _total(self) -> int:
        return sum(_embed_size(e) for e in self._message.embeds)

    def _new_embed(self, title: str | None = None) -> discord.Embed:
        if len(self._message.embeds) >= EMBEDS_MAX:
            self.messages.append(RenderedMessage())
        embed = discord.Embed(colour=EMBED_COLOR, title=title)
        self._message.embeds.append(embed)
        self._open = True
        return embed

    def title(self, title: str) -> None:
        self._new_embed(title)

    def add(self, chunk: str, sep: str = "\n\n") -> None:
        embed = self._message.embeds[-1] if self._message.embeds and self._open else None
        if embed is not None:
            current = embed.description or ""
            joined = f"{current}{sep}{chunk}" if current else chunk
            grow = dlen(joined) - dlen(current)
            if dlen(joined) <= EMBED_DESCRIPTION_MAX and self._total() + grow <= EMBED_TOTAL_MAX:
                embed.description = joined
                return
        if self._total() + dlen(chunk) > EMBED_TOTAL_MAX:
            self.messages.append(RenderedMessage())
        self._new_embed().description = chunk

    def image(self, png: bytes) -> None:
        message = self._message
        embed = message.embeds[-1] if message.embeds and self._open else None
        if embed is None or embed.image.url or len(message.files) >= FILES_MAX:
            if len(message.files) >= FILES_MAX:
                self.messages.append(RenderedMessage())
            embed = self._new_embed()
        name = f"equation-{len(self._message.files) + 1}.png"
        self._message.files.append((name, png))
        embed.set_image(url=f"attachment://{name}")
        self._open = False  # text after the image goes below it, in a new embed


def _embed_size(embed: discord.Embed) -> int:
    size = dlen(embed.title or "") + dlen(embed.description or "")
    size += sum(dlen(f.name or "") + dlen(f.value or "") for f in embed.fields)
    size += dlen(embed.footer.text or "") + dlen(embed.author.name or "")
    return size


def render_discord(message: Message) -> list[RenderedMessage]:
    """A document-model message -> Discord messages within every limit.

    Short text-only messages become plain content; longer ones, and ones with equation
    images, become embeds (4096 per description, 6000 and 10 embeds per message), split
    at block boundaries. Buttons go under the last message.
    """
    images = [b.image for b in message.blocks if isinstance(b, MathBlock) and b.image]
    rendered: list[RenderedMessage]
    titles = _item_titles(message.blocks)
    if not images:
        chunks = [c for b in message.blocks for c in render_block(b, CONTENT_MAX, links_quiet=True)]
        content = "\n\n".join(chunks)
        if dlen(content) <= CONTENT_MAX:
            rendered = [RenderedMessage(content=content)]
            return _with_document(_with_buttons(rendered, message.buttons, {}, titles), message)
    packer = _EmbedPacker()
    shown_in: dict[int, RenderedMessage] = {}  # list item number -> the part showing it
    blocks = list(message.blocks)
    if blocks and isinstance(blocks[0], Heading):
        title = escape(" ".join(plain(blocks[0].children).split()))
        if 0 < dlen(title) <= EMBED_TITLE_MAX:
            packer.title(title)
            blocks = blocks[1:]
    for block in blocks:
        if isinstance(block, ListBlock):
            # Item by item, so each item's buttons can go under the part that shows it.
            for n, item in enumerate(block.items, block.start):
                single = ListBlock((item,), block.ordered, n)
                for k, chunk in enumerate(render_block(single, EMBED_DESCRIPTION_MAX)):
                    packer.add(chunk, "\n" if k or n > block.start else "\n\n")
                    shown_in.setdefault(n, packer.messages[-1])
            continue
        for chunk in render_block(block, EMBED_DESCRIPTION_MAX):
            packer.add(chunk)
        if isinstance(block, MathBlock) and block.image:
            packer.image(block.image)
    rendered = [m for m in packer.messages if m.embeds or m.content] or [RenderedMessage()]
    where = {id(m): i for i, m in enumerate(rendered)}
    parts = {n: where.get(id(m), len(rendered) - 1) for n, m in shown_in.items()}
    return _with_document(_with_buttons(rendered, message.buttons, parts, titles), message)


def _item_titles(blocks: Sequence[Block]) -> dict[int, str]:
    """List item number -> the item's first line (a paper's title), for menu options."""
    titles: dict[int, str] = {}
    for block in blocks:
        if isinstance(block, ListBlock):
            for n, item in enumerate(block.items, block.start):
                line = plain(item).strip().split("\n", 1)[0]
                titles.setdefault(n, " ".join(line.split()))
    return titles


def _with_document(rendered: list[RenderedMessage], message: Message) -> list[RenderedMessage]:
    """A file (a .bib export) rides as an attachment of the last part."""
    if message.document is not None:
        rendered[-1].files.append((message.document.filename, message.document.data))
    return rendered


def _with_buttons(
    rendered: list[RenderedMessage],
    rows: list[list[Button]],
    parts: dict[int, int],
    titles: dict[int, str],
) -> list[RenderedMessage]:
    """Buttons about a list item go under the part that shows it; the others under the last
    part. A part whose buttons would pass Discord's 5 rows of 5 gets its item buttons as
    select menus (25 options each) instead."""
    last = len(rendered) - 1
    items: dict[int, list[Button]] = {}
    other: list[list[Button]] = []
    for row in rows:
        rest = []
        for b in row:
            if b.item is not None and b.command and not b.url:
                items.setdefault(parts.get(b.item, last), []).append(b)
            else:
                rest.append(b)
        if rest:
            other.append(rest)
    for index, part in enumerate(rendered):
        own = usable_buttons([items.get(index, [])], rows_max=None)
        extra = usable_buttons(other, rows_max=None) if index == last else []
        if len(own) + len(extra) <= ROWS_MAX:
            part.buttons = own + extra
            continue
        options: list[Button] = []
        values: set[str] = set()  # Discord refuses a menu with two equal values
        for b in (b for row in own for b in row):
            value = f"{b.command}:{b.arg}"
            if len(value) <= OPTION_VALUE_MAX and value not in values:
                values.add(value)
                options.append(Button(_option_label(b, titles), None, b.command, b.arg, b.item))
        part.menus = [options[i : i + OPTIONS_MAX] for i in range(0, len(options), OPTIONS_MAX)]
        part.menus = part.menus[:ROWS_MAX]
        part.buttons = extra[: ROWS_MAX - len(part.menus)]
    return rendered


def _option_label(button: Button, titles: dict[int, str]) -> str:
    title = titles.get(button.item or 0, "")
    # Several commands may share a menu (💡, 👍, 👎 of one digest): their mark tells them apart.
    mark = "" if is_explain(button) else button.label.split(" ", 1)[0] + " "
    label = f"{mark}{button.item}. {title}" if title else button.label
    return label if len(label) <= OPTION_LABEL_MAX else label[: OPTION_LABEL_MAX - 1] + "…"


def custom_id(button: Button) -> str:
    return f"{CUSTOM_ID_PREFIX}:{button.command}:{button.arg}"


def usable_buttons(rows: list[list[Button]], rows_max: int | None = ROWS_MAX) -> list[list[Button]]:
    """Rows Discord accepts: at most 5 rows of 5, labels up to 80, ids up to 100."""
    out: list[list[Button]] = []
    ids: set[str] = set()  # a custom id appears once per message
    for row in rows:
        kept: list[Button] = []
        for b in row:
            if b.url:
                if len(b.url) > URL_MAX or _safe_url(b.url) is None:
                    continue
            elif not b.command or len(custom_id(b)) > CUSTOM_ID_MAX:
                log.warning("dropping a button Discord cannot carry: /%s %s", b.command, b.arg)
                continue
            elif custom_id(b) in ids:
                continue
            else:
                ids.add(custom_id(b))
            label = b.label if len(b.label) <= LABEL_MAX else b.label[: LABEL_MAX - 1] + "…"
            kept.append(Button(label or "…", b.url, b.command, b.arg, b.item))
        for start in range(0, len(kept), BUTTONS_PER_ROW_MAX):
            out.append(kept[start : start + BUTTONS_PER_ROW_MAX])
    return out if rows_max is None else out[:rows_max]


def build_view(
    rows: list[list[Button]], menus: Sequence[list[Button]] = ()
) -> discord.ui.View | None:
    """Buttons -> a persistent view (no timeout): command buttons carry their custom id;
    a menu's options carry `<command>:<arg>`."""
    if not rows and not menus:
        return None
    view = discord.ui.View(timeout=None)
    for m, menu in enumerate(menus):
        explain = all(is_explain(b) for b in menu)
        first, end = menu[0].item, menu[-1].item
        span = f" {first}–{end}" if first is not None and end is not None else ""
        options = [
            discord.SelectOption(label=b.label or "…", value=f"{b.command}:{b.arg}") for b in menu
        ]
        view.add_item(
            discord.ui.Select(
                custom_id=PICK_ID.format(m),
                placeholder=(f"💡 Explain paper{span}…" if explain else f"Choose{span}…"),
                options=options,
                row=m,
            )
        )
    for r, row in enumerate(rows, len(menus)):
        for b in row:
            if b.url:
                view.add_item(discord.ui.Button(label=b.label, url=b.url, row=r))
            else:
                style = (
                    discord.ButtonStyle.primary
                    if is_explain(b)
                    else (discord.ButtonStyle.secondary)
                )
                view.add_item(
                    discord.ui.Button(label=b.label, custom_id=custom_id(b), style=style, row=r)
                )
    return view


def send_kwargs(part: RenderedMessage) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"allowed_mentions": NO_MENTIONS}
    if part.content:
        kwargs["content"] = part.content
    if part.embeds:
        kwargs["embeds"] = part.embeds
    if part.files:
        kwargs["files"] = [
            discord.File(io.BytesIO(data), filename=name) for name, data in part.files
        ]
    view = build_view(part.buttons, part.menus)
    if view is not None:
        kwargs["view"] = view
    return kwargs


def edit_kwargs(part: RenderedMessage) -> dict[str, Any]:
    """An edit that makes a sent message `part`: every field given, so what the new part
    lacks is cleared (attachments are replaced by the part's files)."""
    return {
        "allowed_mentions": NO_MENTIONS,
        "content": part.content or None,
        "embeds": part.embeds,
        "attachments": [discord.File(io.BytesIO(data), filename=name) for name, data in part.files],
        "view": build_view(part.buttons),
    }


def forget_view(kwargs: dict[str, Any]) -> None:
    # discord.py keeps every sent view in memory; the dynamic item answers presses instead.
    view = kwargs.get("view")
    if isinstance(view, discord.ui.View):
        view.stop()
