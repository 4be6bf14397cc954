"""One splitter for every platform: marked-up text into parts within a length limit.

A platform describes its markup once (a `Style`): how it counts length, whether the
markup itself counts against the limit, how raw text is escaped, and which pieces a cut
must keep whole. The text to split is a sequence of `Run`s, raw text under a stack of
`Mark`s (an opening and a closing string: `("<b>", "</b>")`, `("**", "**")`). Cuts fall
between runs or inside a run's text, never inside markup: every part opens and closes its
own marks, so each is valid on its own. A cut never falls inside a surrogate pair (a Python
string is indexed by code point) nor inside an escape (a `Style.unit`); escaping happens
after the cut, in `render`, so never inside an HTML entity either.

- `split(runs, limit, style)`: one block -> parts, each at most `limit` long, cut after a
  line break in the second half of what fits, else at the last word boundary, else
  between runs; a word longer than a whole part is cut where the part is full. Lossless:
  the parts' texts concatenate to the input's.
- `pack(blocks, limit, style, sep)`: whole blocks, `sep` apart, into as few parts as fit;
  a block longer than a part is `split`.
- `render(runs, style)`: one part -> the platform's string, each mark opened and closed
  only where the stack changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

Mark = tuple[str, str]  # (opening, closing) markup

_CHAR = re.compile(".", re.DOTALL)
_BREAKS = " \t\n"  # where a line may wrap (a no-break space may not)
_EDGES = re.compile(r"(\s*)(.*?)(\s*)", re.DOTALL)


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, as Telegram and Discord count it (astral = 2)."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _same(text: str) -> str:
    return text


@dataclass(frozen=True, slots=True)
class Style:
    """How a platform's markup opens, closes, escapes and counts."""

    # How the platform counts a string's length.
    length: Callable[[str], int] = utf16_len
    # True: the limit applies to the rendered string, markup included (Discord's markdown);
    # False: to the visible text only (Telegram counts after parsing its HTML).
    counts_markup: bool = True
    # Raw text -> the platform's string, applied by `render` (HTML: html.escape).
    escape: Callable[[str], str] = _same
    # The smallest pieces a cut keeps whole: a character, or an escape and what it escapes
    # (it must match at every position: compile it with re.DOTALL).
    unit: re.Pattern[str] = _CHAR
    # Markdown's emphasis must touch words (`*word *` shows its asterisks): whitespace
    # takes only the marks its neighbours share, and a part's edge whitespace goes.
    tight: bool = False


@dataclass(frozen=True, slots=True)
class Run:
    """Raw text under a stack of marks, outermost first. `whole`: never cut (a link's
    markdown, a code span), unless it cannot fit a part on its own."""

    text: str
    marks: tuple[Mark, ...] = ()
    whole: bool = False


_NOTHING = Run("")

# ------------------------------------------------------------------------ rendering


def _shared(a: tuple[Mark, ...], b: tuple[Mark, ...]) -> int:
    n = 0
    while n < len(a) and n < len(b) and a[n] == b[n]:
        n += 1
    return n


def _settle(runs: Sequence[Run]) -> list[Run]:
    """Tight markup: edge whitespace dropped; whitespace between words takes the marks
    both sides share, so markers always touch words."""
    out: list[Run] = []
    for run in runs:  # a run's edge whitespace apart (inside, it has its words' marks)
        edges = None if run.whole else _EDGES.fullmatch(run.text)
        if edges is None:
            out.append(run)
        else:
            out.extend(Run(t, run.marks) for t in edges.groups() if t)
    while out and not out[0].text.strip():
        out.pop(0)
    while out and not out[-1].text.strip():
        out.pop()
    following: tuple[Mark, ...] = ()
    for i in range(len(out) - 1, -1, -1):  # the marks of the next word, right to left
        if out[i].text.strip():
            following = out[i].marks
        else:
            out[i] = replace(out[i], marks=following)
    stack: tuple[Mark, ...] = ()
    for i, run in enumerate(out):  # then only those the word before shares too
        if run.text.strip():
            stack = run.marks
        else:
            out[i] = replace(run, marks=run.marks[: _shared(stack, run.marks)])
            stack = out[i].marks
    return out


def render(runs: Sequence[Run], style: Style) -> str:
    """Runs -> the platform's string, opening and closing only the marks that change."""
    if style.tight:
        runs = _settle(runs)
    out: list[str] = []
    stack: tuple[Mark, ...] = ()
    for run in runs:
        keep = _shared(stack, run.marks)
        out.extend(mark[1] for mark in reversed(stack[keep:]))
        out.extend(mark[0] for mark in run.marks[keep:])
        out.append(style.escape(run.text))  # the one place text is escaped
        stack = run.marks
    out.extend(mark[1] for mark in reversed(stack))
    return "".join(out)


# ------------------------------------------------------------------------ measuring


def _text_len(text: str, style: Style) -> int:
    return style.length(style.escape(text)) if style.counts_markup else style.length(text)


class _Part:
    """A part being filled, its size kept as it grows (the rendered size before any tight
    settling, which only makes it shorter)."""

    __slots__ = ("body", "runs", "stack", "style")

    def __init__(self, style: Style, runs: Sequence[Run] = ()) -> None:
        self.style = style
        self.runs: list[Run] = []
        self.body = 0  # the size without closing the marks still open
        self.stack: tuple[Mark, ...] = ()
        for run in runs:
            self.add(run)

    def grown(self, run: Run) -> tuple[int, int]:
        """(body, size) with `run` appended."""
        style = self.style
        if not style.counts_markup:
            body = self.body + style.length(run.text)
            return body, body
        keep = _shared(self.stack, run.marks)
        body = self.body + _text_len(run.text, style)
        body += sum(style.length(m[1]) for m in self.stack[keep:])
        body += sum(style.length(m[0]) for m in run.marks[keep:])
        return body, body + sum(style.length(m[1]) for m in run.marks)

    def size(self) -> int:
        return self.grown(_NOTHING)[1]

    def add(self, run: Run, grown: tuple[int, int] | None = None) -> None:
        self.body = (grown or self.grown(run))[0]
        self.stack = run.marks
        self.runs.append(run)


def size(runs: Sequence[Run], style: Style) -> int:
    """A part's size as `split` measures it."""
    return _Part(style, runs).size()


# ------------------------------------------------------------------------ cutting


def _fit(text: str, room: int, style: Style) -> int:
    """How many characters of `text`, in whole units, take at most `room`."""
    if room <= 0:
        return 0
    if _text_len(text, style) <= room:
        return len(text)
    lo, hi = 0, min(len(text), room)  # every character takes at least one
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _text_len(text[:mid], style) <= room:
            lo = mid
        else:
            hi = mid - 1
    if style.unit is _CHAR:
        return lo
    end = 0
    for unit in style.unit.finditer(text):
        if unit.end() > lo:
            break
        end = unit.end()
    return end


def _word_cut(text: str, end: int) -> int:
    """Where to cut `text` within its first `end` characters: after a line break in the
    second half, else at the last word boundary; 0 when there is none."""
    head = text[:end]
    newline = head.rfind("\n")
    if newline >= 0 and newline >= end // 2:
        return newline + 1
    if 0 < end < len(text) and text[end] in _BREAKS:
        return end
    return max(head.rfind(" "), head.rfind("\t"), newline) + 1


def _last_break(runs: Sequence[Run]) -> tuple[int, int] | None:
    """The last word boundary inside `runs`: (run index, characters of that run before
    it); None when there is none past the first character."""
    for i in range(len(runs) - 1, -1, -1):
        run = runs[i]
        if run.whole:
            continue
        at = max(run.text.rfind(c) for c in _BREAKS) + 1
        if at and (i or run.text[:at].strip()):  # something before it
            return (i, at) if at < len(run.text) else (i + 1, 0)
    return None


def _first_word(run: Run) -> Run:
    if run.whole:
        return run
    ends = [i for i in (run.text.find(c) for c in _BREAKS) if i >= 0]
    return Run(run.text[: min(ends)], run.marks) if ends else run


def split(runs: Sequence[Run], limit: int, style: Style) -> list[list[Run]]:
    """Runs -> parts whose rendered size (or visible text) is at most `limit`, cut at
    word boundaries where possible; the parts' texts concatenate to the runs' text."""
    if limit < 1:
        raise ValueError("limit must be positive")
    queue = [run for run in reversed(runs) if run.text]  # a stack: the next run is last
    parts: list[list[Run]] = []
    part = _Part(style)

    def close(carry: Sequence[Run]) -> None:
        nonlocal part
        if part.runs:
            parts.append(part.runs)
        part = _Part(style)
        queue.extend(reversed([c for c in carry if c.text]))

    while queue:
        run = queue.pop()
        grown = part.grown(run)
        if grown[1] <= limit:
            part.add(run, grown)
            continue
        text, marks = run.text, run.marks
        end = _fit(text, limit - part.grown(Run("", marks))[1], style)
        at = 0 if run.whole else _word_cut(text, end)
        if at and (part.runs or text[:at].strip()):  # a word boundary in what fits here
            part.add(Run(text[:at], marks))
            close([Run(text[at:], marks)])
            continue
        if part.runs:
            # None in what fits: end the part at its own last word boundary (else between
            # runs) and carry the word over, if the word then fits a part of its own.
            found = _last_break(part.runs)
            i, at = found or (len(part.runs), 0)
            kept, carry = part.runs[:i], part.runs[i:]
            if at:
                kept.append(Run(carry[0].text[:at], carry[0].marks))
                carry[0] = Run(carry[0].text[at:], carry[0].marks)
            if _Part(style, [*carry, _first_word(run)]).size() <= limit:
                part = _Part(style, kept)
                close([*carry, run])
                continue
            if end == 0:  # a long word with no room left here: it starts the next part
                close([run])
                continue
        # A word longer than a whole part: cut where the part is full.
        if end == 0:  # a limit below one unit (or below the marks' length): one anyway
            first = style.unit.match(text)
            end = first.end() if first else len(text)
        part.add(Run(text[:end], marks, run.whole))
        close([Run(text[end:], marks, run.whole)])
    if part.runs:
        parts.append(part.runs)
    return parts


def pack(
    blocks: Sequence[Sequence[Run]], limit: int, style: Style, sep: str = "\n\n"
) -> list[list[Run]]:
    """Whole blocks, `sep` apart, into as few parts of at most `limit` as fit; a block
    longer than a part is split. Empty blocks and whitespace-only parts are dropped."""
    parts: list[list[Run]] = []
    current: list[Run] = []
    used = 0
    gap = _text_len(sep, style)
    for block in blocks:
        if not any(run.text for run in block):
            continue
        need = size(block, style)  # the separator has no marks: sizes add up across it
        if current and used + gap + need <= limit:
            current += [Run(sep), *block]
            used += gap + need
            continue
        if current:
            parts.append(current)
        pieces = split(block, limit, style) if need > limit else [list(block)]
        parts.extend(pieces[:-1])
        current = pieces[-1]
        used = size(current, style)
    if current:
        parts.append(current)
    return [part for part in parts if any(run.text.strip() for run in part)]


def cut(text: str, limit: int, style: Style) -> list[str]:
    """Plain text -> pieces of at most `limit`, between units (code lines, long URLs)."""
    if _text_len(text, style) <= limit:
        return [text]
    return [run.text for [run] in split([Run(text, whole=True)], limit, style)]


def merge(pieces: Sequence[str], limit: int, sep: str, style: Style) -> list[str]:
    """Consecutive rendered pieces joined with `sep` while they fit in `limit`."""
    out: list[str] = []
    for piece in pieces:
        if out and style.length(out[-1]) + style.length(sep) + style.length(piece) <= limit:
            out[-1] += sep + piece
        else:
            out.append(piece)
    return out
