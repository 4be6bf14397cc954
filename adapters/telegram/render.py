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
from collections.abc import Iterable
from dataclasses import dataclass, field

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from adapters.split import Mark, Run, Style, pack, render, utf16_len
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


_B: Mark = ("<b>", "</b>")
_I: Mark = ("<i>", "</i>")
_CODE: Mark = ("<code>", "</code>")
_PRE: Mark = ("<pre>", "</pre>")
# Telegram counts a message's length after parsing its HTML: visible text only.
HTML = Style(length=utf16_len, counts_markup=False, escape=lambda t: html.escape(t, quote=False))


def _safe_url(url: str) -> bool:
    return url.lower().startswith(_LINK_SCHEMES) and not any(c.isspace() for c in url)


def _inline_runs(nodes: Iterable[Inline], marks: tuple[Mark, ...], out: list[Run]) -> None:
    for node in nodes:
        match node:
            case Text(text):
                if text:
                    out.append(Run(text, marks))
            case Bold(children):
                _inline_runs(children, (*marks, _B), out)
            case Italic(children):
                _inline_runs(children, (*marks, _I), out)
            case Code(text):
                if text:
                    out.append(Run(text, (*marks, _CODE)))
            case Link(text, url):
                label = text or url
                in_link = any(mark[1] == "</a>" for mark in marks)
                if _safe_url(url) and not in_link:
                    # The one place a URL enters the HTML: escaped for an attribute.
                    anchor = (f'<a href="{html.escape(url, quote=True)}">', "</a>")
                    out.append(Run(label, (*marks, anchor)))
                elif label:
                    out.append(Run(label, marks))
            case Math(_, unicode):
                if unicode:
                    out.append(Run(unicode, marks))


def _block_runs(block: Block) -> list[Run]:
    runs: list[Run] = []
    match block:
        case Paragraph(children):
            _inline_runs(children, (), runs)
        case Heading(children):
            _inline_runs(children, (_B,), runs)
        case ListBlock(items, ordered, start):
            for number, item in enumerate(items, start):
                if runs:
                    runs.append(Run("\n"))
                runs.append(Run(f"{number}. " if ordered else "• "))
                _inline_runs(item, (), runs)
        case CodeBlock(text):
            if text:
                runs.append(Run(text, (_PRE,)))
        case MathBlock(_, unicode, label, _):
            text = f"{unicode}    ({label})" if label else unicode
            if text:
                runs.append(Run(text, (_PRE,)))
    return runs


def render_html(message: Message, limit: int = MAX_TEXT) -> list[str]:
    """A message as Telegram HTML parts, each at most `limit` UTF-16 units of visible text
    (adapters/split.py cuts them, never inside a tag or an entity; Telegram trims
    messages and refuses empty ones, so whitespace-only parts go).

    Display equations render as <pre> text here; the adapter sends their images as photos.
    """
    if limit < 2:
        raise ValueError("limit must be at least 2 UTF-16 units")
    blocks = [_block_runs(block) for block in message.blocks]
    return [render(part, HTML) for part in pack(blocks, limit, HTML)]


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
