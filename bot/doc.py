"""The platform-neutral document model: nodes, messages, replies, and small builders.

The core builds `Reply` values out of these nodes; each adapter owns one renderer
(Telegram HTML, Discord markdown/embeds, terminal text) and is the only place that
escapes anything. Text in nodes is always raw, never pre-escaped. LaTeX in titles and
abstracts becomes nodes in `bot.latex`.

The builders keep replies short to write: `p("Try ", code("/help"), ".")` is
`Paragraph((Text("Try "), Code("/help"), Text(".")))`; a `str` part is always plain text.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

# ---------------------------------------------------------------- inline nodes


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Bold:
    children: tuple[Inline, ...]


@dataclass(frozen=True, slots=True)
class Italic:
    children: tuple[Inline, ...]


@dataclass(frozen=True, slots=True)
class Code:
    text: str


@dataclass(frozen=True, slots=True)
class Link:
    text: str
    url: str


@dataclass(frozen=True, slots=True)
class Math:
    """Inline math: `latex` as the author wrote it, `unicode` as readable text."""

    latex: str
    unicode: str


Inline = Text | Bold | Italic | Code | Link | Math

# ----------------------------------------------------------------- block nodes


@dataclass(frozen=True, slots=True)
class Paragraph:
    children: tuple[Inline, ...]


@dataclass(frozen=True, slots=True)
class Heading:
    children: tuple[Inline, ...]


@dataclass(frozen=True, slots=True)
class ListBlock:
    items: tuple[tuple[Inline, ...], ...]
    ordered: bool = False
    start: int = 1


@dataclass(frozen=True, slots=True)
class CodeBlock:
    text: str


@dataclass(frozen=True, slots=True)
class MathBlock:
    """A display equation; `image` is a PNG rendering when one was made (see bot.explain)."""

    latex: str
    unicode: str
    label: str | None = None
    image: bytes | None = None


Block = Paragraph | Heading | ListBlock | CodeBlock | MathBlock

# ------------------------------------------------------------------- replies


@dataclass(frozen=True, slots=True)
class Button:
    """A button under a message: either a link, or a command run with an argument.

    Command buttons are encoded by adapters as compact callback data
    (Telegram allows 64 bytes), so `arg` must stay short: an arXiv id or a feed name.
    """

    label: str
    url: str | None = None
    command: str | None = None
    arg: str = ""
    # The numbered list item this button is about: a renderer that splits a long message
    # puts the button under the part that shows that item.
    item: int | None = None


@dataclass(frozen=True, slots=True)
class Document:
    """A file sent with a message (/export bibtex): a document on Telegram, an attachment
    on Discord, a file path in the terminal. Only in command replies, never in the outbox."""

    filename: str
    data: bytes
    mime: str = "application/octet-stream"


@dataclass(slots=True)
class Message:
    blocks: list[Block] = field(default_factory=list)
    buttons: list[list[Button]] = field(default_factory=list)  # rows of buttons
    document: Document | None = None


@dataclass(slots=True)
class Reply:
    """What a command (or a digest) sends: one or more messages, in order."""

    messages: list[Message] = field(default_factory=list)
    ephemeral: bool = False  # Discord: only the caller sees it (errors, usage lines)
    # A better reply still on its way (the LLM's explanation after the offline one): once
    # this reply is sent, adapters await it and edit the sent messages into what it gives.
    update: Callable[[], Awaitable[Reply]] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def text(cls, *paragraphs: str, ephemeral: bool = False) -> Reply:
        blocks: list[Block] = [Paragraph((Text(p),)) for p in paragraphs]
        return cls([Message(blocks)], ephemeral=ephemeral)

    @classmethod
    def of(cls, *blocks: Block, buttons: list[list[Button]] | None = None) -> Reply:
        return cls([Message(list(blocks), buttons or [])])


def plain(nodes: tuple[Inline, ...] | list[Inline]) -> str:
    """The text of inline nodes without any markup (math as its Unicode form)."""
    out: list[str] = []
    for node in nodes:
        match node:
            case Text(text) | Code(text):
                out.append(text)
            case Bold(children) | Italic(children):
                out.append(plain(children))
            case Link(text, _):
                out.append(text)
            case Math(_, uni):
                out.append(uni)
    return "".join(out)


def block_text(block: Block) -> str:
    """The plain text of one block, used by plain-text renderers and length estimates."""
    match block:
        case Paragraph(children) | Heading(children):
            return plain(children)
        case ListBlock(items, ordered, start):
            lines = []
            for i, item in enumerate(items, start):
                bullet = f"{i}." if ordered else "•"
                lines.append(f"{bullet} {plain(item)}")
            return "\n".join(lines)
        case CodeBlock(text):
            return text
        case MathBlock(_, uni, label, _):
            return f"{uni}    ({label})" if label else uni
    raise TypeError(f"unknown block {block!r}")


# ------------------------------------------------------------------ builders

Part = str | Inline  # a str is plain text


def inlines(*parts: Part) -> tuple[Inline, ...]:
    """Parts as inline nodes: each str becomes Text."""
    return tuple(Text(part) if isinstance(part, str) else part for part in parts)


def p(*parts: Part) -> Paragraph:
    return Paragraph(inlines(*parts))


def b(*parts: Part) -> Bold:
    return Bold(inlines(*parts))


def i(*parts: Part) -> Italic:
    return Italic(inlines(*parts))


def code(text: str) -> Code:
    return Code(text)


def link(text: str, url: str) -> Link:
    return Link(text, url)


def heading(*parts: Part) -> Heading:
    return Heading(inlines(*parts))


def section(title: str) -> Paragraph:
    """A bold title line over the blocks that follow ("Commands", "Settings")."""
    return p(b(title))


def joined(parts: Iterable[Part], sep: str) -> tuple[Part, ...]:
    """Parts with `sep` between them: `p("Try ", *joined(map(code, cmds), ", "), ".")`."""
    out: list[Part] = []
    for part in parts:
        if out:
            out.append(sep)
        out.append(part)
    return tuple(out)


def bullets(*items: Part | tuple[Part, ...]) -> ListBlock:
    """A bulleted list; an item is one part or a tuple of parts."""
    return ListBlock(tuple(inlines(*(it if isinstance(it, tuple) else (it,))) for it in items))
