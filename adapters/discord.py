"""Discord: slash commands from the command table, a markdown/embed renderer, a REST sender.

- Inbound: every command in `bot.commands.COMMANDS` becomes a slash command with typed
  options (integers with bounds, choices, autocomplete for feeds and categories). The
  command set is synced with Discord only when its payload changes (a hash is kept in the
  state directory). Slow commands defer first, then follow up.
- Outbound: `render_discord` turns the document model into message content or embeds
  within every Discord limit; command buttons carry `pb:<command>:<arg>` custom ids that a
  dynamic item answers, so buttons keep working after a restart. Mentions are disabled in
  everything the bot posts.
- Delivery: `DiscordAdapter.send` posts over REST with our own per-channel pacing on top of
  discord.py's rate-limit handling, and maps Discord errors onto `bot.sending` errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import io
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket

from bot import cards, learning
from bot.commands import (
    COMMANDS,
    ArgValue,
    Command,
    Context,
    all_feeds,
    run_args,
    suggest_feeds,
)
from bot.config import Settings
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
    Reply,
    Text,
    plain,
)
from bot.logs import install_redaction, redact
from bot.models import ChatRef
from bot.pacing import Pacer, SendLimits
from bot.sending import (
    ChatGone,
    PermanentError,
    RetryAfter,
    SendError,
    TransientError,
)
from bot.service import Paperboy
from bot.sources.categories import category_name, suggest_categories
from bot.startup import PlatformError, describe, retrying

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
CHOICES_MAX = 25
EMBED_COLOR = 0xB31B1B
CUSTOM_ID_PREFIX = "pb"
# The select menus of papers: `pb-pick-<n>` (ids are unique within a message, and this
# shape is not a command button's), options' values `<command>:<arg>`.
PICK_ID = "pb-pick-{}"
OPTIONS_MAX = 25
OPTION_LABEL_MAX = 100
OPTION_VALUE_MAX = 100

NO_MENTIONS = discord.AllowedMentions.none()
# What the bot needs in a channel to post digests (embeds, equation images), as Discord's
# client names them.
POST_PERMISSIONS = (
    ("view_channel", "View Channel"),
    ("send_messages", "Send Messages"),
    ("embed_links", "Embed Links"),
    ("attach_files", "Attach Files"),
)
# Errors that mean Discord (or the network) is not there yet: start-up tries again.
UNREACHABLE = (
    aiohttp.ClientError,
    OSError,
    TimeoutError,
    discord.DiscordServerError,
    discord.GatewayNotFound,
)
TELL_ADMINS_EVERY = 3600.0  # seconds: at most one "digests paused" notice per channel


def missing_permissions(
    permissions: discord.Permissions, *, thread: bool = False
) -> tuple[str, ...]:
    """The posting permissions `permissions` lacks, by their names in Discord's client
    (in a thread, Send Messages in Threads stands for Send Messages)."""
    needed: dict[str, str] = dict(POST_PERMISSIONS)
    if thread:
        del needed["send_messages"]
        needed["send_messages_in_threads"] = "Send Messages in Threads"
    return tuple(label for attr, label in needed.items() if not getattr(permissions, attr))


# ===================================================================== renderer


@dataclass(slots=True)
class RenderedMessage:
    """One Discord message: content and/or embeds, image attachments, buttons."""

    content: str = ""
    embeds: list[discord.Embed] = field(default_factory=list)
    files: list[tuple[str, bytes]] = field(default_factory=list)  # (filename, PNG bytes)
    buttons: list[list[Button]] = field(default_factory=list)
    # Select menus, each one row: the command buttons it stands for (label: the option's).
    menus: list[list[Button]] = field(default_factory=list)


def dlen(text: str) -> int:
    """Length as Discord counts it, conservatively: UTF-16 code units (astral = 2)."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


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


# An atom is a piece of markdown that is never cut: an escaped word, a whitespace run,
# a code span, a link. `wrap` is the stack of emphasis markers around it.
@dataclass(frozen=True, slots=True)
class _Atom:
    text: str
    wrap: tuple[str, ...] = ()

    @property
    def blank(self) -> bool:
        return not self.text.strip()


_WORDS = re.compile(r"\s+|\S+")
_UNITS = re.compile(r"\\.|.", re.DOTALL)  # never separate a backslash from what it escapes


def _atoms(nodes: Sequence[Inline], wrap: tuple[str, ...], piece: int, links: bool) -> list[_Atom]:
    out: list[_Atom] = []
    for node in nodes:
        match node:
            case Text(text):
                for word in _WORDS.findall(escape(text)):
                    out += [_Atom(part, wrap) for part in _cut(word, piece)]
            case Bold(children):
                out += _atoms(children, (*wrap, "**"), piece, links)
            case Italic(children):
                out += _atoms(children, (*wrap, "*"), piece, links)
            case Code(text):
                out += _code_atoms(text, wrap, piece)
            case Math(latex, uni):
                out += _code_atoms(uni or latex, wrap, piece)
            case Link(text, url):
                safe = _safe_url(url)
                label = escape(text or url)
                md = f"[{label}](<{safe}>)" if links else f"[{label}]({safe})"
                if safe is None or dlen(md) > piece:
                    out += _atoms((Text(text or url),), wrap, piece, links)
                    if safe is not None and text and text != url:
                        out += [_Atom(" ", wrap), *(_Atom(p, wrap) for p in _cut(safe, piece))]
                else:
                    out.append(_Atom(md, wrap))
    return out


def _code_atoms(text: str, wrap: tuple[str, ...], piece: int) -> list[_Atom]:
    span = code_span(text)
    if dlen(span) <= piece:
        return [_Atom(span, wrap)] if span else []
    return [_Atom(code_span(part), wrap) for part in _cut(span[1:-1], piece - 2)]


def _cut(text: str, limit: int) -> list[str]:
    """Split `text` into parts of at most `limit` (Discord-counted), between escape units."""
    if dlen(text) <= limit:
        return [text]
    parts: list[str] = []
    current: list[str] = []
    size = 0
    for unit in _UNITS.findall(text):
        width = dlen(unit)
        if current and size + width > limit:
            parts.append("".join(current))
            current, size = [], 0
        current.append(unit)
        size += width
    if current:
        parts.append("".join(current))
    return parts


def _common(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def _join(atoms: list[_Atom]) -> str:
    """Atoms -> markdown, opening and closing emphasis only where the stack changes.

    Whitespace takes the emphasis its neighbours share, so markers always touch words
    (`*word *` would show its asterisks).
    """
    while atoms and atoms[0].blank:
        atoms = atoms[1:]
    while atoms and atoms[-1].blank:
        atoms = atoms[:-1]
    solid = [a.wrap for a in atoms if not a.blank]
    out: list[str] = []
    stack: tuple[str, ...] = ()
    k = 0  # index into `solid` of the next non-blank atom
    for atom in atoms:
        if atom.blank:
            wrap = _common(stack, solid[k]) if k < len(solid) else ()
        else:
            wrap = atom.wrap
            k += 1
        keep = _common(stack, wrap)
        out.extend(reversed(stack[len(keep) :]))
        out.extend(wrap[len(keep) :])
        out.append(atom.text)
        stack = wrap
    out.extend(reversed(stack))
    return "".join(out)


def _overhead(wrap: tuple[str, ...]) -> int:
    return 2 * sum(len(w) for w in wrap)


def _pack(atoms: list[_Atom], limit: int, prefix: str = "") -> list[str]:
    """Greedy: as many atoms per chunk as fit in `limit` with their emphasis markers."""
    chunks: list[str] = []
    current: list[_Atom] = []
    size = dlen(prefix)
    for atom in atoms:
        cost = dlen(atom.text) + _overhead(atom.wrap)
        if current and size + cost > limit:
            chunks.append(_join(current))
            current, size = [], 0
        if not current and atom.blank:
            continue
        current.append(atom)
        size += cost
    if current:
        chunks.append(_join(current))
    chunks = [c for c in chunks if c]
    if prefix:
        chunks = [prefix + chunks[0], *chunks[1:]] if chunks else [prefix.rstrip()]
    return chunks


def render_inlines(
    nodes: Sequence[Inline], limit: int, *, prefix: str = "", links_quiet: bool = False
) -> list[str]:
    """Inline nodes -> markdown chunks of at most `limit` characters each."""
    piece = max(16, limit // 2)
    return _pack(_atoms(nodes, (), piece, links_quiet), limit, prefix)


def render_block(block: Block, limit: int, *, links_quiet: bool = False) -> list[str]:
    """One block -> one markdown chunk, or several when it is longer than `limit`."""
    match block:
        case Paragraph(children):
            return render_inlines(children, limit, links_quiet=links_quiet)
        case Heading(children):
            return render_inlines((Bold(children),), limit, links_quiet=links_quiet)
        case ListBlock(items, ordered, start):
            chunks: list[str] = []
            for n, item in enumerate(items, start):
                bullet = f"{n}\\. " if ordered else "• "
                chunks += render_inlines(item, limit, prefix=bullet, links_quiet=links_quiet)
            return _merge(chunks, limit, "\n")
        case CodeBlock(text):
            lines: list[str] = []
            for line in text.split("\n"):
                lines += _cut(line, limit - 12)
            return [_fence(body) for body in _merge(lines, limit - 12, "\n")]
        case MathBlock(latex, uni, label, _):
            shown = uni or latex
            tail = f"    ({escape(label)})" if label else ""
            if "\n" in shown:
                return render_block(CodeBlock(shown), limit) + ([tail.strip()] if tail else [])
            chunks = [a.text for a in _code_atoms(shown, (), limit - dlen(tail))]
            if tail:
                chunks = [*chunks[:-1], chunks[-1] + tail] if chunks else [tail.strip()]
            return chunks
    raise TypeError(f"unknown block {block!r}")


def _merge(parts: list[str], limit: int, sep: str) -> list[str]:
    """Join consecutive parts with `sep` while they fit in `limit`."""
    out: list[str] = []
    for part in parts:
        if out and dlen(out[-1]) + dlen(sep) + dlen(part) <= limit:
            out[-1] += sep + part
        else:
            out.append(part)
    return out


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
    mark = "" if button.command == "explain" else button.label.split(" ", 1)[0] + " "
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
        explain = all(b.command == "explain" for b in menu)
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
                    if b.command == "explain"
                    else (discord.ButtonStyle.secondary)
                )
                view.add_item(
                    discord.ui.Button(label=b.label, custom_id=custom_id(b), style=style, row=r)
                )
    return view


def _send_kwargs(part: RenderedMessage) -> dict[str, Any]:
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


def _edit_kwargs(part: RenderedMessage) -> dict[str, Any]:
    """An edit that makes a sent message `part`: every field given, so what the new part
    lacks is cleared (attachments are replaced by the part's files)."""
    return {
        "allowed_mentions": NO_MENTIONS,
        "content": part.content or None,
        "embeds": part.embeds,
        "attachments": [discord.File(io.BytesIO(data), filename=name) for name, data in part.files],
        "view": build_view(part.buttons),
    }


def _forget_view(kwargs: dict[str, Any]) -> None:
    # discord.py keeps every sent view in memory; the dynamic item answers presses instead.
    view = kwargs.get("view")
    if isinstance(view, discord.ui.View):
        view.stop()


# ==================================================================== error mapping


def map_error(exc: BaseException) -> SendError:
    """A discord.py / network error -> what delivery should do about it."""
    if isinstance(exc, SendError):
        return exc
    if isinstance(exc, discord.RateLimited):
        return RetryAfter(exc.retry_after)
    if isinstance(exc, discord.HTTPException):
        what = f"Discord {exc.status} (code {exc.code})"
        if isinstance(exc, discord.Forbidden | discord.NotFound):
            # 50001 Missing Access, 50013 Missing Permissions, 10003 Unknown Channel…
            return ChatGone(what)
        if exc.status == 429:
            return RetryAfter(_retry_after(exc))
        if exc.status >= 500:
            return TransientError(what)
        return PermanentError(what)
    if isinstance(exc, aiohttp.ClientError | TimeoutError | OSError):
        return TransientError(f"network error talking to Discord: {type(exc).__name__}")
    return PermanentError(f"unexpected error sending to Discord: {type(exc).__name__}")


def _retry_after(exc: discord.HTTPException) -> float:
    try:
        return max(0.0, float(exc.response.headers.get("Retry-After", "5")))
    except (AttributeError, ValueError):
        return 5.0


# ======================================================================== pacing


# Discord allows 50 requests a second per bot, every request counted; we keep 45.
_MESSAGES_ROUTE = re.compile(r"/channels/(\d+)/messages$")


def send_limits(settings: Settings, channel_interval: float | None = None) -> SendLimits:
    """Our pace on Discord: the global limit with headroom, and a little under a message a
    second per channel (Discord allows 5 per 5 s; discord.py honours each route's bucket
    too)."""
    if channel_interval is None:
        rate = settings.delivery_chat_rate_per_second
        channel_interval = 1.0 / rate if rate > 0 else 0.0
    return SendLimits(
        overall=settings.worker_share().discord_rate_per_second, chat_interval=channel_interval
    )


def pacing_trace(pacer: Pacer) -> aiohttp.TraceConfig:
    """An aiohttp hook that paces every request discord.py makes, when it makes it: its
    own retries, interaction answers and logins count against the global limit too, and
    a global 429 holds every request back for its retry_after."""

    async def on_start(
        session: aiohttp.ClientSession, context: Any, params: aiohttp.TraceRequestStartParams
    ) -> None:
        channel = None
        if params.method == "POST":
            match = _MESSAGES_ROUTE.search(params.url.path)
            channel = match.group(1) if match else None
        await pacer.acquire(channel)

    async def on_end(
        session: aiohttp.ClientSession, context: Any, params: aiohttp.TraceRequestEndParams
    ) -> None:
        headers = params.response.headers
        if params.response.status == 429 and headers.get("X-RateLimit-Global") == "true":
            try:
                pacer.pause(float(headers.get("Retry-After", "1")))
            except ValueError:
                pacer.pause(1.0)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    trace.on_request_end.append(on_end)
    return trace


# ====================================================================== commands


def use_api_base(url: str) -> None:
    """Point discord.py at `url`: every REST URL it builds (bot calls, interaction
    callbacks, webhooks/follow-ups) starts with Route.BASE; the gateway URL comes from
    GET /gateway/bot. Process-wide, as discord.py allows nothing finer."""
    discord.http.Route.BASE = url.rstrip("/")


ChoiceList = list[app_commands.Choice[str]]


def _feed_choices(current: str, feeds: Sequence[str] | None = None) -> ChoiceList:
    """Feeds that `current` starts any part of; from `feeds` (a chat's own) when given."""
    found = suggest_feeds(current, all_feeds() if feeds is None else feeds, CHOICES_MAX)
    return [
        app_commands.Choice(name=_choice_name(f, f.removeprefix("arxiv:")), value=f) for f in found
    ]


def _category_choices(current: str) -> ChoiceList:
    cids = suggest_categories(current.strip().removeprefix("arxiv:"), CHOICES_MAX)
    return [app_commands.Choice(name=_choice_name(c, c), value=c) for c in cids]


def _choice_name(shown: str, cid: str) -> str:
    name = category_name(cid)
    label = f"{shown} — {name}" if name else shown
    return label if len(label) <= 100 else label[:99] + "…"


Completer = Callable[[discord.Interaction[Any], str], Coroutine[Any, Any, ChoiceList]]
OnCommand = Callable[[discord.Interaction[Any], Command, dict[str, Any]], Awaitable[None]]


def build_app_command(
    command: Command, on_command: OnCommand
) -> app_commands.Command[Any, Any, None]:
    """One table entry -> a slash command whose options mirror its arguments."""
    params = [
        inspect.Parameter(
            "interaction", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=discord.Interaction
        )
    ]
    descriptions: dict[str, str] = {}
    choices: dict[str, list[app_commands.Choice[str]]] = {}
    completers: dict[str, Completer] = {}
    for arg in command.args:
        annotation: Any = str
        if arg.kind == "int":
            has_range = arg.min_value is not None or arg.max_value is not None
            annotation = app_commands.Range[int, arg.min_value, arg.max_value] if has_range else int
        elif arg.kind == "choice" and arg.choices:
            choices[arg.name] = [app_commands.Choice(name=c, value=c) for c in arg.choices]
        elif arg.kind == "feed":
            completers[arg.name] = _complete_feed
        elif arg.kind == "subscription":
            completers[arg.name] = _complete_subscription
        elif arg.kind == "category":
            completers[arg.name] = _complete_category
        default: Any = inspect.Parameter.empty
        if not arg.required:
            annotation, default = Optional[annotation], None  # noqa: UP045 - discord.py reads it
        params.append(
            inspect.Parameter(
                arg.name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default
            )
        )
        descriptions[arg.name] = _clip(arg.help, 100)

    async def callback(interaction: discord.Interaction[Any], **values: Any) -> None:
        await on_command(interaction, command, values)

    # discord.py reads options from the callback's signature; this one is built from the table.
    callback.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    callback.__name__ = callback.__qualname__ = command.name
    func: Any = callback
    if descriptions:
        func = app_commands.describe(**descriptions)(func)
    if choices:
        func = app_commands.choices(**choices)(func)
    if completers:
        func = app_commands.autocomplete(**completers)(func)
    slash: app_commands.Command[Any, Any, None] = app_commands.Command(
        name=command.name, description=_clip(command.description, 100), callback=func
    )
    if command.admin_only:
        # Hidden from members without Manage Channels; the server-side check is is_admin.
        slash.default_permissions = discord.Permissions(manage_channels=True)
    return slash


async def _complete_feed(interaction: discord.Interaction[Any], current: str) -> ChoiceList:
    return _feed_choices(current)


async def _complete_subscription(interaction: discord.Interaction[Any], current: str) -> ChoiceList:
    client = interaction.client
    if not isinstance(client, _Client):
        return []
    chat = ChatRef("discord", str(interaction.channel_id))
    subs = await client.adapter.app.store.list_subscriptions(chat)
    return _feed_choices(current, [sub.feed for sub in subs])


async def _complete_category(interaction: discord.Interaction[Any], current: str) -> ChoiceList:
    return _category_choices(current)


def _clip(text: str, limit: int) -> str:
    text = text.strip() or "…"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def commands_hash(tree: app_commands.CommandTree[Any]) -> str:
    payload = [cmd.to_dict(tree) for cmd in tree.get_commands()]
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


# ======================================================================= buttons


class CommandButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"pb:(?P<command>[a-z0-9_]{1,32}):(?P<arg>[^\n]*)",
):
    """Answers every `pb:<command>:<arg>` button, including ones sent before a restart."""

    def __init__(self, command: str, arg: str) -> None:
        super().__init__(discord.ui.Button(custom_id=f"{CUSTOM_ID_PREFIX}:{command}:{arg}"))
        self.command = command
        self.arg = arg

    @classmethod
    async def from_custom_id(  # type: ignore[override]
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Button[Any],
        match: re.Match[str],
    ) -> CommandButton:
        return cls(match["command"], match["arg"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        client = interaction.client
        if isinstance(client, _Client):
            await client.adapter.on_button(interaction, self.command, self.arg)


class PickMenu(discord.ui.DynamicItem[discord.ui.Select[Any]], template=r"pb-pick-(?P<n>\d)"):
    """Answers every paper menu: the chosen option's value is `<command>:<arg>`."""

    def __init__(self, n: int = 0) -> None:
        super().__init__(discord.ui.Select(custom_id=PICK_ID.format(n)))

    @classmethod
    async def from_custom_id(  # type: ignore[override]
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Select[Any],
        match: re.Match[str],
    ) -> PickMenu:
        return cls(int(match["n"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        data: Any = interaction.data or {}
        values = data.get("values") or [""]
        command, _, arg = str(values[0]).partition(":")
        client = interaction.client
        if isinstance(client, _Client):
            await client.adapter.on_button(interaction, command, arg)


# ======================================================================== client


class _Client(discord.AutoShardedClient):
    def __init__(self, adapter: DiscordAdapter, **options: Any) -> None:
        # Paperboy never joins voice: skip discord.py's startup warnings about voice libraries.
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        super().__init__(
            # Interactions need no privileged intent; reactions (votes, issue 14) are not
            # privileged either.
            intents=discord.Intents(guilds=True, guild_reactions=True, dm_reactions=True),
            allowed_mentions=NO_MENTIONS,
            max_ratelimit_timeout=30.0,  # longer waits come back as RetryAfter to the outbox
            **options,
        )
        self.adapter = adapter
        self.tree: app_commands.CommandTree[_Client] = app_commands.CommandTree(self)
        self.tree.on_error = adapter.on_tree_error  # type: ignore[method-assign]
        # discord.py falls back to its built-in gateway URL whenever it starts a session
        # afresh (a pinned shard count, a reconnect, a non-resumable INVALID_SESSION):
        # ask the configured API's /gateway/bot instead, every time.
        connect = self.http.ws_connect

        async def ws_connect(url: str, *, compress: int = 0) -> Any:
            return await connect(await self.gateway_for(url), compress=compress)

        self.http.ws_connect = ws_connect  # type: ignore[method-assign]

    async def gateway_for(self, url: str) -> str:
        """`url` on the gateway /gateway/bot names, when discord.py chose its default.
        A resume keeps the session's own `resume_gateway_url`."""
        wanted = yarl.URL(url)
        if wanted.host != DiscordWebSocket.DEFAULT_GATEWAY.host:
            return url
        _, gateway, _ = await self.http.get_bot_gateway()
        configured = yarl.URL(gateway)
        log.debug("discord: connecting to the gateway %s", configured.host)
        return str(configured.with_query(wanted.query))

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        await self.adapter.on_reaction(payload, added=True)

    async def on_raw_reaction_remove(self, payload: discord.RawReactionActionEvent) -> None:
        await self.adapter.on_reaction(payload, added=False)

    async def setup_hook(self) -> None:
        self.add_dynamic_items(CommandButton, PickMenu)
        if self.adapter.receiving:
            await self.adapter.sync_commands()

    # A paused channel comes back as soon as the bot can post there again: on GUILD_CREATE
    # (start-up, or invited back) and when a channel's or a role's permissions change.
    async def on_guild_available(self, guild: discord.Guild) -> None:
        await self.adapter.resume_channels(guild, guild.text_channels)

    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self.adapter.resume_channels(guild, guild.text_channels)

    async def on_guild_role_update(self, before: discord.Role, after: discord.Role) -> None:
        await self.adapter.resume_channels(after.guild, after.guild.text_channels)

    async def on_guild_channel_update(
        self, before: discord.abc.GuildChannel, after: discord.abc.GuildChannel
    ) -> None:
        await self.adapter.resume_channels(after.guild, [after])


class DiscordAdapter:
    """Paperboy on Discord: slash commands in, rendered replies and digests out."""

    platform = "discord"

    def __init__(
        self,
        app: Paperboy,
        settings: Settings,
        *,
        state_dir: str | Path | None = None,
        channel_interval: float | None = None,
        guild_ready_timeout: float = 2.0,
        ready_timeout: float = 60.0,
        start_backoff: float = 1.0,
    ) -> None:
        self.app = app
        self.settings = settings
        self.state_dir = Path(state_dir) if state_dir is not None else _default_state_dir(settings)
        # Every request discord.py sends waits for its slot here (bot/pacing.py).
        self.limits = send_limits(settings, channel_interval)
        self.pacer = Pacer(self.limits)
        self.guild_ready_timeout = guild_ready_timeout
        self.ready_timeout = ready_timeout
        self.start_backoff = start_backoff  # first wait when Discord is unreachable at start
        self.synced = False  # whether the last start pushed the command set to Discord
        self.receiving = True  # False: started to send only (no gateway, no command sync)
        self.client: _Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._edits: set[asyncio.Task[None]] = set()  # replies waiting for their update
        self._told: dict[int, float] = {}  # channel id -> when its admins were last told
        self._notices: set[asyncio.Task[None]] = set()
        install_redaction([settings.discord_bot_token])

    # ------------------------------------------------------------ lifecycle

    async def start(self, *, receive: bool = True) -> None:
        """Log in, sync commands if they changed, connect the shards, wait until READY.

        `receive=False` (`deliver --now`) only logs in: sends are REST calls, and a second
        gateway session would only compete with a running bot's."""
        self.receiving = receive
        if not self.settings.discord_bot_token:
            raise RuntimeError("DISCORD_BOT_TOKEN is not set")
        use_api_base(self.settings.discord_api_base_url)
        try:
            # First contact (login, and the gateway's address): retried while Discord (or
            # the network) is unreachable, each time with a fresh client.
            async for attempt in retrying(
                "Discord",
                UNREACHABLE,
                first=self.start_backoff,
                most=60.0,
                give_up_after=self.settings.platform_start_retry_seconds,
            ):
                with attempt:
                    await self.stop()
                    client = self._new_client()
                    await client.login(self.settings.discord_bot_token)
                    gateway = await self._choose_shards(client) if receive else True
        except discord.LoginFailure:
            await self.stop()
            raise PlatformError("Discord refused the bot token: check DISCORD_BOT_TOKEN") from None
        except (*UNREACHABLE, discord.DiscordException) as e:
            await self.stop()
            what = "cannot reach Discord" if isinstance(e, UNREACHABLE) else "Discord refused"
            raise PlatformError(f"{what}: {describe(e)}") from None
        except BaseException:
            await self.stop()
            raise
        if not receive:
            log.info("discord: logged in for sending only")
            return
        if not gateway:
            log.info("discord: no gateway shard falls to this worker; sending only")
            self.receiving = False
            return
        # client.start() would do login + connect; connect runs for the app's lifetime.
        self._task = asyncio.create_task(client.connect(reconnect=True), name="discord")
        ready = asyncio.ensure_future(client.wait_until_ready())
        try:
            done, _ = await asyncio.wait(
                {ready, self._task}, timeout=self.ready_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            ready.cancel()
        if self._task in done:
            await self.stop()
            raise PlatformError("the Discord gateway connection ended before READY")
        if not done:
            await self.stop()
            raise PlatformError("Discord did not become ready in time")
        log.info("discord ready as %s in %d guild(s)", client.user, len(client.guilds))

    def _new_client(self) -> _Client:
        client = _Client(
            self, guild_ready_timeout=self.guild_ready_timeout, http_trace=pacing_trace(self.pacer)
        )
        for command in COMMANDS.values():
            client.tree.add_command(build_app_command(command, self.on_command))
        self.client = client
        return client

    async def _choose_shards(self, client: _Client) -> bool:
        """With several workers, connect only this worker's shards (i % workers == index).

        Returns False when no shard falls to this worker. One worker with no pinned count
        leaves it all to AutoShardedClient."""
        settings = self.settings
        if settings.worker_count <= 1 and not settings.discord_shard_count:
            return True
        recommended, _, _ = await client.http.get_bot_gateway()
        total = settings.discord_shard_count or recommended
        mine = [i for i in range(total) if i % settings.worker_count == settings.worker_index]
        client.shard_count = total
        client.shard_ids = mine
        log.info("discord: shards %s of %d on worker %d", mine, total, settings.worker_index)
        return bool(mine)

    async def stop(self) -> None:
        client, task = self.client, self._task
        self.client, self._task = None, None
        for edit in list(self._edits):
            edit.cancel()
        await asyncio.gather(*self._edits, return_exceptions=True)
        for notice in list(self._notices):
            notice.cancel()
        if client is not None:
            await client.close()
        if task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=5)

    # --------------------------------------------------------------- syncing

    def _hash_file(self, application_id: int | None) -> Path:
        return self.state_dir / f"discord-commands-{application_id}.sha256"

    async def sync_commands(self) -> None:
        """Push the command set to Discord only when it differs from the last push."""
        client = self.client
        assert client is not None
        digest = commands_hash(client.tree)
        path = self._hash_file(client.application_id)
        previous = await asyncio.to_thread(_read_text, path)
        if previous == digest:
            self.synced = False
            log.debug("discord commands unchanged, not syncing")
            return
        await client.tree.sync()
        await asyncio.to_thread(_write_text, path, digest)
        self.synced = True
        log.info("discord commands synced (%d commands)", len(client.tree.get_commands()))

    # ------------------------------------------------------------- inbound

    def context(self, interaction: discord.Interaction[Any]) -> Context:
        in_guild = interaction.guild_id is not None
        thread = isinstance(interaction.channel, discord.Thread)
        missing = (
            missing_permissions(interaction.app_permissions, thread=thread) if in_guild else ()
        )
        return Context(
            chat=ChatRef(self.platform, str(interaction.channel_id)),
            user_id=str(interaction.user.id),
            chat_kind="channel" if in_guild else "private",
            # Server-side check: default_member_permissions only hides commands.
            is_admin=(not in_guild) or interaction.permissions.manage_channels,
            images=True,
            missing_permissions=missing,
        )

    async def on_command(
        self, interaction: discord.Interaction[Any], command: Command, values: dict[str, Any]
    ) -> None:
        options: dict[str, ArgValue] = {k: v for k, v in values.items() if v is not None}
        await self._run(interaction, command, options)

    async def on_button(self, interaction: discord.Interaction[Any], name: str, arg: str) -> None:
        command = COMMANDS.get(name)
        if command is None:
            await interaction.response.send_message(
                "This button no longer works.", ephemeral=True, allowed_mentions=NO_MENTIONS
            )
            return
        options: dict[str, ArgValue] = {}
        if command.args and arg:
            options[command.args[0].name] = arg
        await self._run(interaction, command, options)

    async def _run(
        self, interaction: discord.Interaction[Any], command: Command, options: dict[str, ArgValue]
    ) -> None:
        deferred = False
        if command.slow:
            await interaction.response.defer(thinking=True)  # Discord allows 3 s to answer
            deferred = True
        reply = await run_args(self.app, self.context(interaction), command.name, options)
        await self.answer(interaction, reply, deferred=deferred)

    async def answer(
        self, interaction: discord.Interaction[Any], reply: Reply, *, deferred: bool
    ) -> None:
        batches: list[tuple[Message | None, list[RenderedMessage]]] = [
            (m, [p for p in render_discord(m) if p.content or p.embeds or p.files])
            for m in reply.messages
        ]
        if not any(parts for _, parts in batches):
            batches = [(None, [RenderedMessage(content="Done.")])]
        ephemeral = reply.ephemeral
        if deferred and ephemeral:
            # A public "thinking…" cannot turn private: remove it and answer privately.
            with contextlib.suppress(discord.HTTPException):
                await interaction.delete_original_response()
        shown: list[discord.WebhookMessage | None] = []  # None: the original response
        for message, parts in batches:
            # A one-paper card with vote buttons: reactions to it vote on that paper.
            about = None if ephemeral or message is None else cards.voted_paper(message)
            ids: list[str] = []
            for part in parts:
                kwargs = _send_kwargs(part)
                try:
                    if not interaction.response.is_done():
                        await interaction.response.send_message(ephemeral=ephemeral, **kwargs)
                        shown.append(None)
                        if about:
                            ids.append(str((await interaction.original_response()).id))
                    else:
                        sent = await interaction.followup.send(
                            ephemeral=ephemeral, wait=True, **kwargs
                        )
                        shown.append(sent)
                        ids.append(str(sent.id))
                finally:
                    _forget_view(kwargs)
            if about and ids:
                await self._remember(
                    ChatRef(self.platform, str(interaction.channel_id)), about, ids
                )
        if reply.update is not None:
            # In the background: the edit comes when the update does (well within the
            # interaction token's 15 minutes).
            task = asyncio.create_task(
                self._edit_later(interaction, shown, reply.update, ephemeral=ephemeral)
            )
            self._edits.add(task)
            task.add_done_callback(self._edits.discard)

    async def _edit_later(
        self,
        interaction: discord.Interaction[Any],
        shown: list[discord.WebhookMessage | None],
        update: Callable[[], Awaitable[Reply]],
        *,
        ephemeral: bool,
    ) -> None:
        """Edit an answer into its update: message by message, extra old ones deleted,
        extra new ones sent as follow-ups."""
        try:
            better = await update()
            parts = [p for m in better.messages for p in render_discord(m)]
            parts = [p for p in parts if p.content or p.embeds or p.files]
            for index, part in enumerate(parts):
                if index >= len(shown):
                    kwargs = _send_kwargs(part)
                    try:
                        await interaction.followup.send(ephemeral=ephemeral, wait=True, **kwargs)
                    finally:
                        _forget_view(kwargs)
                    continue
                kwargs = _edit_kwargs(part)
                target = shown[index]
                try:
                    if target is None:
                        await interaction.edit_original_response(**kwargs)
                    else:
                        await target.edit(**kwargs)
                finally:
                    _forget_view(kwargs)
            for target in shown[len(parts) :]:
                if target is None:
                    await interaction.delete_original_response()
                else:
                    await target.delete()
        except asyncio.CancelledError:
            raise
        except discord.HTTPException as e:
            log.info("discord: could not edit an answer: %s", redact(str(e)))
        except Exception:
            log.exception("discord: editing an answer failed")

    async def on_reaction(self, payload: discord.RawReactionActionEvent, *, added: bool) -> None:
        """👍/👎 on a one-paper message votes on its paper (removing it takes the vote
        back); 💾 saves it. The bot's own reactions are not votes."""
        client = self.client
        if client is None or client.user is None or payload.user_id == client.user.id:
            return
        emoji = {str(payload.emoji)}
        chat = ChatRef(self.platform, str(payload.channel_id))
        try:
            await learning.react(
                self.app,
                chat,
                str(payload.user_id),
                str(payload.message_id),
                emoji if added else set(),
                set() if added else emoji,
            )
        except LookupError:
            return
        except Exception:
            log.exception("discord: a reaction in %s could not be counted", chat.key)

    async def _remember(self, chat: ChatRef, paper: str, ids: list[str]) -> None:
        try:
            await self.app.store.remember_message_papers(chat, ids, paper)
        except Exception:  # the reply went out; only reactions to it will not count
            log.exception("discord: cannot remember the paper of messages in %s", chat.key)

    async def on_tree_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        log.error("discord command failed: %s", type(error).__name__, exc_info=error)
        text = "Something went wrong on my side. Please try again in a minute."
        with contextlib.suppress(discord.HTTPException):
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
            else:
                await interaction.response.send_message(
                    text, ephemeral=True, allowed_mentions=NO_MENTIONS
                )

    # ------------------------------------------------------------ outbound

    async def ready(self, chat: ChatRef) -> None:
        """Wait until the channel's own pace lets one more message go (the dispatcher asks
        before it takes a send slot); each request is paced as it goes out."""
        await self.pacer.ready(chat.thread_id or chat.chat_id)

    async def send(self, chat: ChatRef, message: Message) -> list[str]:
        """Post one message to a channel over REST; returns the Discord message ids."""
        client = self.client
        if client is None or client.is_closed():
            raise TransientError("Discord is not connected")
        try:
            channel_id = int(chat.thread_id or chat.chat_id)
        except ValueError:
            raise PermanentError(f"not a Discord channel id: {chat.key}") from None
        channel = client.get_partial_messageable(channel_id)
        ids: list[str] = []
        for part in render_discord(message):
            kwargs = _send_kwargs(part)
            try:
                sent = await channel.send(**kwargs)
            except Exception as exc:
                error = map_error(exc)
                if isinstance(error, ChatGone):
                    self._tell_admins(channel_id, str(error))
                raise error from exc
            finally:
                _forget_view(kwargs)
            ids.append(str(sent.id))
        return ids

    # ------------------------------------------------------ paused channels

    async def resume_channels(
        self, guild: discord.Guild, channels: Iterable[discord.abc.GuildChannel]
    ) -> None:
        """Switch digests back on in the paused channels among `channels` where the bot
        can post again."""
        me = guild.me
        if me is None:
            return
        ids = [
            str(c.id)
            for c in channels
            if isinstance(c, discord.TextChannel) and not missing_permissions(c.permissions_for(me))
        ]
        if not ids:
            return
        try:
            back = await self.app.store.reactivate_chats(self.platform, ids)
        except Exception:
            log.exception("discord: cannot switch channels of guild %s back on", guild.id)
            return
        for chat in back:
            log.info("discord: the bot can post in %s again: digests back on", chat.key)

    def _tell_admins(self, channel_id: int, reason: str) -> None:
        """In the background: say in the guild that digests to a channel are paused."""
        now = time.monotonic()
        if now - self._told.get(channel_id, -TELL_ADMINS_EVERY) < TELL_ADMINS_EVERY:
            return
        self._told[channel_id] = now
        task = asyncio.create_task(self._notice(channel_id, reason))
        self._notices.add(task)
        task.add_done_callback(self._notices.discard)

    async def _notice(self, channel_id: int, reason: str) -> None:
        """Post the notice in the guild's system channel, or else its first channel where
        the bot can write. Discord offers no way to reach a channel's admins otherwise (a
        bot cannot DM someone without a shared guild and an open DM setting), and nothing
        when the whole guild is gone."""
        client = self.client
        channel = client.get_channel(channel_id) if client is not None else None
        guild = getattr(channel, "guild", None)
        if not isinstance(guild, discord.Guild) or guild.me is None:
            log.info("discord: digests to %s paused; no guild channel to say so in", channel_id)
            return
        me = guild.me
        candidates = [guild.system_channel, *sorted(guild.text_channels, key=lambda c: c.position)]
        target = next(
            (
                c
                for c in candidates
                if c is not None
                and c.id != channel_id
                and c.permissions_for(me).view_channel
                and c.permissions_for(me).send_messages
            ),
            None,
        )
        if target is None:
            log.info("discord: digests to %s paused; no channel to say so in", channel_id)
            return
        needed = ", ".join(label for _, label in POST_PERMISSIONS)
        text = (
            f"I can no longer post the paper digests in <#{channel_id}> ({reason}), so they are "
            f"paused there. To switch them back on, give me {needed} in that channel and run "
            "/subscribe there (a change to that channel's or a role's permissions is enough)."
        )
        try:
            await target.send(text, allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as e:
            log.info("discord: cannot post the pause notice in %s: %s", target.id, e.status)


def _default_state_dir(settings: Settings) -> Path:
    """Next to the SQLite database; the working directory otherwise."""
    url = settings.database_url
    if url.startswith("sqlite:///") and ":memory:" not in url:
        return Path(url.removeprefix("sqlite:///")).expanduser().resolve().parent
    return Path.cwd()


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return None


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="utf-8")
