"""The terminal chat: every command without any token, on the embedded database."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TextIO

from bot.commands import (
    COMMANDS,
    Command,
    Context,
    UsageError,
    parse_text,
    run_text,
    split_command_line,
)
from bot.conversation import show_paper
from bot.doc import (
    Block,
    Bold,
    Code,
    CodeBlock,
    Document,
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
)
from bot.ids import find_arxiv_ids
from bot.models import ChatRef
from bot.service import Paperboy
from bot.sources.clean import inert

CONSOLE_CHAT = ChatRef("console", "local")
PROMPT = "you> "


class Style:
    """ANSI styles when writing to a terminal, nothing otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled and text else text


def render_inlines(nodes: tuple[Inline, ...], style: Style) -> str:
    # Every piece of text is made inert here, the last step before the terminal: upstream
    # text already is (bot.sources.clean), but an escape sequence from anywhere else (a
    # paper's LaTeX, an LLM's answer) must not retitle or clear the user's terminal either.
    # Only our own Style codes reach it.
    out: list[str] = []
    for node in nodes:
        match node:
            case Text(text):
                out.append(inert(text))
            case Bold(children):
                out.append(style.wrap("1", render_inlines(children, style)))
            case Italic(children):
                out.append(style.wrap("3", render_inlines(children, style)))
            case Code(text):
                out.append(style.wrap("36", inert(text)))
            case Link(text, url):
                text, url = inert(text), inert(url)
                out.append(text if text == url else f"{text} <{url}>")
            case Math(_, uni):
                out.append(inert(uni))
    return "".join(out)


def render_block(block: Block, style: Style, width: int = 100) -> str:
    match block:
        case Heading(children):
            return style.wrap("1;4", render_inlines(children, style))
        case Paragraph(children):
            text = render_inlines(children, style)
            return "\n".join(_wrap(line, width) for line in text.split("\n"))
        case ListBlock(items, ordered, start):
            lines = []
            for number, item in enumerate(items, start):
                bullet = f"{number}." if ordered else "•"
                body = render_inlines(item, style).split("\n")
                indent = " " * (len(bullet) + 1)
                lines.append(f"{bullet} {body[0]}")
                lines += [indent + part for part in body[1:]]
            return "\n".join(lines)
        case CodeBlock(text):
            return textwrap.indent(inert(text), "    ")
        case MathBlock(_, uni, label, _):
            return inert(f"    {uni}" + (f"    ({label})" if label else ""))
    raise TypeError(f"unknown block {block!r}")


def _wrap(line: str, width: int) -> str:
    # Only wrap plain prose: ANSI codes and URLs make widths lie, and they rarely need it.
    if "\x1b[" in line or len(line) <= width:
        return line
    return textwrap.fill(line, width, break_long_words=False, break_on_hyphens=False)


def render_message(message: Message, style: Style | None = None) -> str:
    style = style or Style(False)
    parts = [render_block(block, style) for block in message.blocks]
    for row in message.buttons:
        labels = []
        for button in row:
            if button.url:
                labels.append(inert(f"[{button.label}: {button.url}]"))
            else:
                labels.append(
                    inert(f"[{button.label}: /{button.command} {button.arg}]".replace(" ]", "]"))
                )
        parts.append("  ".join(labels))
    return "\n\n".join(parts)


def render_reply(reply: Reply, style: Style | None = None) -> str:
    return "\n\n────────\n\n".join(render_message(m, style) for m in reply.messages)


class ConsoleChat:
    """An interactive chat on stdin/stdout; also the Sender for digests to the terminal."""

    platform = "console"

    def __init__(
        self,
        app: Paperboy,
        out: TextIO | None = None,
        read_line: Callable[[], Awaitable[str | None]] | None = None,
        files_dir: Path | None = None,
    ) -> None:
        self.app = app
        self.files_dir = files_dir or Path.cwd()  # where /export writes its file
        self.out = out or sys.stdout
        self.style = Style(self.out.isatty())
        self._read_line = read_line or _stdin_line
        self._later: set[asyncio.Task[None]] = set()  # replies whose update is awaited

    def context(self) -> Context:
        return Context(CONSOLE_CHAT, user_id="local", chat_kind="private", is_admin=True)

    async def handle(self, line: str) -> Reply | None:
        """One line typed by the user -> the reply (None for a blank line); files it
        carries (/export) are written to `files_dir` and the reply names their path."""
        reply = await self._handle(line)
        if reply is not None:
            for message in reply.messages:
                if message.document is not None:
                    path = await asyncio.to_thread(self._write, message.document)
                    message.blocks.append(Paragraph((Text("File: "), Code(str(path)))))
                    message.document = None
        return reply

    def _write(self, document: Document) -> Path:
        self.files_dir.mkdir(parents=True, exist_ok=True)
        path = self.files_dir / Path(document.filename).name  # never outside files_dir
        path.write_bytes(document.data)
        return path.resolve()

    async def _handle(self, line: str) -> Reply | None:
        line = line.strip()
        if not line:
            return None
        invocation = split_command_line(line if line.startswith("/") else "/" + line)
        if line.startswith("/") and invocation:
            return await run_text(self.app, self.context(), invocation.name, invocation.text)
        bare = COMMANDS.get(invocation.name) if invocation else None
        # A command without its slash ("explain 1706.03762") when its arguments make sense;
        # otherwise a pasted link or id in the line shows that paper.
        if invocation and bare and _parses(bare, invocation.text):
            return await run_text(self.app, self.context(), invocation.name, invocation.text)
        ids = find_arxiv_ids(line)
        if ids:  # a pasted link or id: show that paper
            return await show_paper(self.app, self.context(), str(ids[0]))
        if invocation and bare:  # the command's usage line says what is wrong
            return await run_text(self.app, self.context(), invocation.name, invocation.text)
        return Reply.text(
            "Type a command such as /help, /trending or /explain 1706.03762, "
            "or paste an arXiv link. /quit leaves."
        )

    def show(self, reply: Reply) -> None:
        """Print a reply; its update (the LLM's explanation after the offline one) is
        printed below when it comes, while the chat goes on."""
        self.out.write(render_reply(reply, self.style) + "\n\n")
        self.out.flush()
        if reply.update is not None:
            task = asyncio.create_task(self._show_update(reply.update))
            self._later.add(task)
            task.add_done_callback(self._later.discard)

    async def _show_update(self, update: Callable[[], Awaitable[Reply]]) -> None:
        better = await update()
        self.out.write("\n" + render_reply(better, self.style) + "\n\n" + PROMPT)
        self.out.flush()

    async def settle(self) -> None:
        """Wait for the updates still to come."""
        await asyncio.gather(*self._later)

    async def send(self, chat: ChatRef, message: Message) -> list[str]:
        self.out.write(render_message(message, self.style) + "\n\n")
        self.out.flush()
        return ["console"]

    async def run(self) -> None:
        self.out.write("Paperboy terminal chat. /help lists commands, /quit leaves.\n\n")
        while True:
            self.out.write(PROMPT)
            self.out.flush()
            line = await self._read_line()
            if line is None or line.strip() in ("/quit", "/exit", "quit", "exit"):
                for task in self._later:  # explanations still on their way are not waited for
                    task.cancel()
                self.out.write("Bye.\n")
                return
            reply = await self.handle(line)
            if reply is not None:
                self.show(reply)


def _parses(command: Command, text: str) -> bool:
    try:
        parse_text(command, text)
    except UsageError:
        return False
    return True


async def _stdin_line() -> str | None:
    # input() blocks, so it runs in a worker thread and the loop stays free for deliveries.
    try:
        return await asyncio.to_thread(_read_stdin_line) or None
    except (EOFError, KeyboardInterrupt):
        return None


def _read_stdin_line() -> str:
    """One line of stdin; bytes that are not valid in its encoding become U+FFFD rather
    than ending the chat with a UnicodeDecodeError."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:  # already a text stream (a test, an embedded console)
        return sys.stdin.readline()
    return buffer.readline().decode(sys.stdin.encoding or "utf-8", errors="replace")
