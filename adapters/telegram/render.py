"""Telegram HTML: a Message becomes the parts and inline keyboard Telegram is sent.

`render_html` is the one place where text becomes Telegram HTML: every piece of data is
escaped exactly once there, and long messages are split at block boundaries (inside a
block at line or word boundaries, tags closed and reopened) so that no part is longer
than Telegram allows. `plan` adds what a message needs besides its text: display
equations that have an image go as photos between the text parts, and buttons become
the keyboard under the last part.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.conversation import button_data, fit_button, parse_button_data
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
)

MAX_TEXT = 4096  # UTF-16 code units, after entity parsing
MAX_CAPTION = 1024
MAX_CALLBACK_DATA = 64  # bytes
_LINK_SCHEMES = ("http://", "https://", "tg://", "mailto:")
_BUTTON_SCHEMES = ("http://", "https://", "tg://")

# Button data as the core encodes it (bot/conversation.py), under the names tests know.
callback_data = button_data
parse_callback_data = parse_button_data


_Tag = tuple[str, str]  # (opening, closing) HTML
_B: _Tag = ("<b>", "</b>")
_I: _Tag = ("<i>", "</i>")
_CODE: _Tag = ("<code>", "</code>")
_PRE: _Tag = ("<pre>", "</pre>")


@dataclass(frozen=True, slots=True)
class _Run:
    """Raw (unescaped) text under a stack of tags: the unit the splitter moves around."""

    tags: tuple[_Tag, ...]
    text: str


def utf16_len(text: str) -> int:
    """Length as Telegram counts it: characters outside the BMP take two UTF-16 units."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def _safe_url(url: str) -> bool:
    return url.lower().startswith(_LINK_SCHEMES) and not any(c.isspace() for c in url)


def _inline_runs(nodes: Iterable[Inline], tags: tuple[_Tag, ...], out: list[_Run]) -> None:
    for node in nodes:
        match node:
            case Text(text):
                if text:
                    out.append(_Run(tags, text))
            case Bold(children):
                _inline_runs(children, (*tags, _B), out)
            case Italic(children):
                _inline_runs(children, (*tags, _I), out)
            case Code(text):
                if text:
                    out.append(_Run((*tags, _CODE), text))
            case Link(text, url):
                label = text or url
                in_link = any(t[1] == "</a>" for t in tags)
                if _safe_url(url) and not in_link:
                    # The one place a URL enters the HTML: escaped for an attribute.
                    anchor = (f'<a href="{html.escape(url, quote=True)}">', "</a>")
                    out.append(_Run((*tags, anchor), label))
                elif label:
                    out.append(_Run(tags, label))
            case Math(_, unicode):
                if unicode:
                    out.append(_Run(tags, unicode))


def _block_runs(block: Block) -> list[_Run]:
    runs: list[_Run] = []
    match block:
        case Paragraph(children):
            _inline_runs(children, (), runs)
        case Heading(children):
            _inline_runs(children, (_B,), runs)
        case ListBlock(items, ordered, start):
            for number, item in enumerate(items, start):
                if runs:
                    runs.append(_Run((), "\n"))
                runs.append(_Run((), f"{number}. " if ordered else "• "))
                _inline_runs(item, (), runs)
        case CodeBlock(text):
            if text:
                runs.append(_Run((_PRE,), text))
        case MathBlock(_, unicode, label, _):
            text = f"{unicode}    ({label})" if label else unicode
            if text:
                runs.append(_Run((_PRE,), text))
    return runs


def _runs_len(runs: Sequence[_Run]) -> int:
    return sum(utf16_len(run.text) for run in runs)


def _to_html(runs: Sequence[_Run]) -> str:
    """Runs -> HTML, opening and closing only the tags that change between runs."""
    out: list[str] = []
    stack: tuple[_Tag, ...] = ()
    for run in runs:
        common = 0
        while common < min(len(stack), len(run.tags)) and stack[common] == run.tags[common]:
            common += 1
        out.extend(tag[1] for tag in reversed(stack[common:]))
        out.extend(tag[0] for tag in run.tags[common:])
        # The one place text enters the HTML: escaped once, here.
        out.append(html.escape(run.text, quote=False))
        stack = run.tags
    out.extend(tag[1] for tag in reversed(stack))
    return "".join(out)


def _fit(text: str, room: int) -> int:
    """How many characters of `text` fit in `room` UTF-16 units."""
    used = 0
    for index, ch in enumerate(text):
        used += 2 if ord(ch) > 0xFFFF else 1
        if used > room:
            return index
    return len(text)


def _cut(text: str, room: int) -> int:
    """Where to cut `text` to fit `room`: after a line break or a space when there is one."""
    fit = _fit(text, room)
    head = text[:fit]
    newline = head.rfind("\n")
    space = max(head.rfind(" "), head.rfind("\t"))
    if newline >= 0 and newline >= fit // 2:
        return newline + 1
    if space >= 0:
        return space + 1
    if newline >= 0:
        return newline + 1
    return fit


def _split_runs(runs: Sequence[_Run], limit: int) -> list[list[_Run]]:
    """Split one over-long block into pieces of at most `limit` units, at word boundaries."""
    pieces: list[list[_Run]] = []
    current: list[_Run] = []
    used = 0
    for run in runs:
        text = run.text
        while text:
            size = utf16_len(text)
            if used + size <= limit:
                current.append(_Run(run.tags, text))
                used += size
                break
            cut = _cut(text, limit - used)
            whitespace_cut = cut > 0 and text[cut - 1].isspace()
            if current and not whitespace_cut:
                # No word boundary in this run: break between runs rather than mid-word.
                pieces.append(current)
                current, used = [], 0
                continue
            if cut == 0:  # cannot happen with limit >= 2; guards an endless loop
                cut = 1
            current.append(_Run(run.tags, text[:cut]))
            pieces.append(current)
            current, used = [], 0
            text = text[cut:]
    if current:
        pieces.append(current)
    return pieces


def _pack(blocks: Sequence[list[_Run]], limit: int) -> list[list[_Run]]:
    """Greedily pack blocks, a blank line apart, into parts of at most `limit` units."""
    parts: list[list[_Run]] = []
    current: list[_Run] = []
    used = 0
    for runs in blocks:
        size = _runs_len(runs)
        if not size:
            continue
        gap = 2 if current else 0
        if used + gap + size <= limit:
            if gap:
                current.append(_Run((), "\n\n"))
            current.extend(runs)
            used += gap + size
            continue
        if current:
            parts.append(current)
            current, used = [], 0
        if size <= limit:
            current, used = list(runs), size
            continue
        pieces = _split_runs(runs, limit)
        parts.extend(pieces[:-1])
        current, used = pieces[-1], _runs_len(pieces[-1])
    if current:
        parts.append(current)
    # Telegram trims messages and refuses empty ones: whitespace-only parts go.
    return [part for part in parts if any(run.text.strip() for run in part)]


def render_html(message: Message, limit: int = MAX_TEXT) -> list[str]:
    """A message as Telegram HTML parts, each at most `limit` UTF-16 units of visible text.

    Display equations render as <pre> text here; the adapter sends their images as photos.
    """
    if limit < 2:
        raise ValueError("limit must be at least 2 UTF-16 units")
    blocks = [_block_runs(block) for block in message.blocks]
    return [_to_html(part) for part in _pack(blocks, limit)]


# ================================================================ whole messages


@dataclass(slots=True)
class Part:
    """One Telegram message of a rendered Message: HTML text, or a photo with a caption."""

    html: str
    photo: bytes | None = None


@dataclass(slots=True)
class Plan:
    """A message ready to go: its parts and the keyboard under the last one."""

    parts: list[Part]
    markup: InlineKeyboardMarkup | None
    # key -> data of buttons too long for Telegram: saved to the store before the
    # message goes out, so a press reaching any worker finds them.
    long_buttons: dict[str, str] = field(default_factory=dict)


def plan(message: Message) -> Plan:
    long: dict[str, str] = {}
    return Plan(_parts(message), _keyboard(message.buttons, long), long)


def _parts(message: Message) -> list[Part]:
    """Text parts, with display equations that have an image sent as photos between."""
    out: list[Part] = []
    pending: list[Block] = []

    def flush() -> None:
        if pending:
            out.extend(Part(part) for part in render_html(Message(list(pending))))
            pending.clear()

    for block in message.blocks:
        if isinstance(block, MathBlock) and block.image:
            flush()
            captions = render_html(Message([block]), MAX_CAPTION)
            if len(captions) == 1:
                out.append(Part(captions[0], block.image))
            else:
                out.append(Part("", block.image))
                out.extend(Part(part) for part in render_html(Message([block])))
        else:
            pending.append(block)
    flush()
    if not out and message.buttons:
        out.append(Part("⬇"))  # buttons need a message to hang under
    return out


def _keyboard(rows: list[list[Button]], long: dict[str, str]) -> InlineKeyboardMarkup | None:
    """The inline keyboard; data too long for Telegram goes into `long` by key."""
    keyboard: list[list[InlineKeyboardButton]] = []
    for row in rows:
        buttons: list[InlineKeyboardButton] = []
        for button in row:
            label = button.label.strip() or "…"
            if button.url:
                if button.url.lower().startswith(_BUTTON_SCHEMES):
                    buttons.append(InlineKeyboardButton(label, url=button.url))
            elif button.command:
                data = fit_button(button.command, button.arg, MAX_CALLBACK_DATA, long)
                buttons.append(InlineKeyboardButton(label, callback_data=data))
        if buttons:
            keyboard.append(buttons)
    return InlineKeyboardMarkup(keyboard) if keyboard else None
