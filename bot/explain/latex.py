"""Small, bounded LaTeX text tools: groups, arguments, comments, `\\iffalse` blocks, the
document split, and the work budgets every reader of an untrusted source keeps to.
Hidden text, includes, macros and TeX internals have their own modules beside this one.

This is not a TeX engine. It does the few things needed to read a paper's source as its
author meant it, and every loop here is capped because the source is untrusted input.
"""

from __future__ import annotations

import re

_CONTROL_WORD = re.compile(r"\\([A-Za-z@]+)\*?")


def read_group(
    s: str, i: int, open_: str = "{", close: str = "}", *, limit: int | None = None
) -> tuple[str, int] | None:
    """The content of the balanced group starting at s[i] (after whitespace), and the index
    just past it; None when there is no group there or it never closes (within `limit`)."""
    n = len(s)
    while i < n and s[i] in " \t\n":
        i += 1
    if i >= n or s[i] != open_:
        return None
    end = group_end(s, i + 1, open_, close, limit=limit)
    return (s[i + 1 : end], end + 1) if end < n and s[end : end + 1] == close else None


class Groups:
    """The matching braces of one text, found in a single pass, so that reading many
    groups from it (every definition of a long preamble) costs O(1) each: a hostile source
    full of unclosed braces cannot make each read scan to the end of the document."""

    def __init__(self, s: str) -> None:
        self.s = s
        self.close: dict[int, int] = {}
        stack: list[int] = []
        for m in re.finditer(r"\\.|[{}]", s, re.S):
            t = m.group(0)
            if t == "{":
                stack.append(m.start())
            elif t == "}" and stack:
                self.close[stack.pop()] = m.start()

    def read(self, i: int, open_: str = "{", close: str = "}") -> tuple[str, int] | None:
        """Like `read_group`; optional `[...]` arguments are short, read directly."""
        if open_ != "{":
            return read_group(self.s, i, open_, close, limit=500)
        n = len(self.s)
        while i < n and self.s[i] in " \t\n":
            i += 1
        end = self.close.get(i) if i < n and self.s[i] == "{" else None
        return (self.s[i + 1 : end], end + 1) if end is not None else None


def read_arg(s: str, i: int) -> tuple[str, int] | None:
    """One macro argument: a braced group, a control sequence or a single character."""
    n = len(s)
    while i < n and s[i] in " \t\n":
        i += 1
    if i >= n:
        return None
    if s[i] == "{":
        return read_group(s, i)
    if s[i] == "\\":
        m = _CONTROL_WORD.match(s, i)
        if m:
            return m.group(0), m.end()
        return s[i : i + 2], i + 2
    if s[i] in "}":
        return None
    return s[i], i + 1


def strip_comments(text: str) -> str:
    """Drop `%` comments (text the PDF never shows, a classic hiding place) but keep `\\%`."""
    out: list[str] = []
    for line in text.split("\n"):
        if "%" in line:
            i = 0
            while True:
                i = line.find("%", i)
                if i < 0:
                    break
                # An even number of backslashes before % means it is a real comment.
                k = i - 1
                while k >= 0 and line[k] == "\\":
                    k -= 1
                if (i - 1 - k) % 2 == 0:
                    line = line[:i]
                    break
                i += 1
        out.append(line)
    return "\n".join(out)


_IF_TOKEN = re.compile(r"\\(iffalse|if[A-Za-z@]*|fi)(?![A-Za-z@])")
_IFFALSE = re.compile(r"\\iffalse(?![A-Za-z@])")


def strip_iffalse(text: str) -> str:
    """Remove `\\iffalse ... \\fi` blocks (with nested conditionals) and comment environments."""
    out: list[str] = []
    pos = 0
    while True:
        # Work budget (issue 11): search from `pos`, never a copy of the rest, so a source
        # of half a million `\iffalse x\fi` costs one pass, not one copy per block.
        m = _IFFALSE.search(text, pos)
        if not m:
            out.append(text[pos:])
            break
        if len(out) > 2 * MAX_IFFALSE_BLOCKS:
            raise WorkBudgetExceeded("more hidden \\iffalse blocks than any real paper has")
        start = m.start()
        out.append(text[pos:start])
        depth = 0
        end = len(text)
        for t in _IF_TOKEN.finditer(text, start):
            if t.group(1) == "fi":
                depth -= 1
                if depth == 0:
                    end = t.end()
                    break
            else:
                depth += 1
        pos = end
    text = "".join(out)
    return re.sub(r"\\begin\{comment\}.*?(\\end\{comment\}|\Z)", "", text, flags=re.S)


_GROUP_TOKENS = {
    ("{", "}", False): re.compile(r"[\\{}]"),
    ("{", "}", True): re.compile(r"[\\{}]|\n\n"),
    ("[", "]", False): re.compile(r"[\\\[\]]"),
    ("[", "]", True): re.compile(r"[\\\[\]]|\n\n"),
}


def group_end(
    s: str,
    i: int,
    open_: str = "{",
    close: str = "}",
    *,
    paragraph: bool = False,
    limit: int | None = None,
) -> int:
    """Index of the `close` ending the group that contains position i, skipping escaped
    characters; len(s) if it never closes (or not within `limit` characters). With
    `paragraph`, a blank line ends it too. Jumps between braces with a regex: linear, and
    fast on long text."""
    tokens = _GROUP_TOKENS.get((open_, close, paragraph))
    if tokens is None:
        tokens = re.compile(
            "[\\\\" + re.escape(open_ + close) + "]" + ("|\n\n" if paragraph else "")
        )
    n = len(s)
    stop = n if limit is None else min(n, i + limit)
    depth = 0
    j = i
    while True:
        m = tokens.search(s, j, stop)
        if m is None:
            return n
        t = m.group(0)
        j = m.end()
        if t == "\\":
            j += 1  # the escaped character
        elif t == open_:
            depth += 1
        elif t == close:
            if depth == 0:
                return m.start()
            depth -= 1
        elif depth == 0:  # a blank line ends a paragraph-long group
            return m.start()


# Work budgets (issue 11): a definition's body is read at most this far (an unclosed
# `\def\a{` must not scan the rest of the document, once per definition), at most this
# many definitions are looked at, and expansion stops after this many replacements.
MAX_DEFINITION_CHARS = 20_000
MAX_DEFINITION_SCAN = 2_000_000  # characters read for definitions, all told
MAX_DEFINITIONS_SEEN = 20_000
MAX_EXPANSIONS = 50_000
MAX_IFFALSE_BLOCKS = 10_000


class WorkBudgetExceeded(ValueError):
    """The source needs more work than any real paper: read it from elsewhere (issue 11)."""


def split_document(text: str) -> tuple[str, str]:
    """(preamble, body) around `\\begin{document}`; the body ends at `\\end{document}`."""
    m = re.search(r"\\begin\s*\{document\}", text)
    if not m:
        return "", text
    body = text[m.end() :]
    e = re.search(r"\\end\s*\{document\}", body)
    if e:
        body = body[: e.start()]
    return text[: m.start()], body
