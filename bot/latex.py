"""LaTeX in titles and abstracts made readable: math as Unicode, text-mode markup as
document nodes.

pylatexenc's own LatexNodes2Text is not used whole: it flattens x^2 and \\frac, drops
unknown macros and reads a bare % as a comment, which loses text in abstracts. So the
structure (math delimiters, scripts, fractions, text-mode markup) is parsed here by two
small readers that cannot raise, bound their nesting, and stay linear on hostile input.
The symbol tables they share are in `bot.latex_symbols`. (`bot.explain.latex` is another
thing: it cleans a paper's e-print source.)
"""

from __future__ import annotations

import re
from bisect import bisect_left
from functools import lru_cache

from bot.doc import Bold, Code, Inline, Italic, Link, Math, Text, plain
from bot.latex_symbols import (
    ACCENTS,
    ALPHABETS,
    ARRAYS,
    CONTROL_SYMBOLS,
    DROP,
    DROP_WITH_ARG,
    PLAIN_ARG,
    RELATIONS,
    SUBSCRIPTS,
    SUPERSCRIPTS,
    TEXT_ACCENT_WORDS,
    TEXT_ARG,
    accent,
    alphabet,
    fraction,
    is_atom,
    script,
    symbol,
)

_MAX_DEPTH = 24  # real titles nest a few levels; deeper is hostile and is kept flat
_MAX_INLINE_MATH = 2000  # how far a `$` looks for its partner
_MAX_DISPLAY_MATH = 20000

_SAFE_URL = re.compile(r"(?:https?|ftp)://\S+|mailto:\S+", re.IGNORECASE)
_WS = re.compile(r"\s+")

_MATH_TOKEN = re.compile(r"\\(?:[A-Za-z]+\*?|.)?|[{}^_\[\]]|\s+|[^\\{}^_\[\]\s]", re.DOTALL)


class _Reader:
    """A cursor over LaTeX tokens, with the steps both readers (math, text) take alike."""

    def __init__(self, toks: list[str]) -> None:
        self.toks = toks
        self.pos = 0

    def _peek(self) -> str | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def _skip_ws(self) -> None:
        while self.pos < len(self.toks) and self.toks[self.pos].isspace():
            self.pos += 1

    def _raw_group(self) -> str:
        """A {name} argument taken verbatim (environment names, colours, URLs, \\text bodies)."""
        self._skip_ws()
        if self._peek() != "{":
            return ""
        self.pos += 1
        parts: list[str] = []
        level = 0
        while self.pos < len(self.toks):
            tok = self.toks[self.pos]
            self.pos += 1
            if tok == "}" and level == 0:
                break
            level += {"{": 1, "}": -1}.get(tok, 0)
            parts.append(tok)
        return "".join(parts)

    def _arg_text(self, depth: int) -> str:
        """The next macro argument as plain text."""
        raise NotImplementedError

    def _simple_macro(self, name: str, depth: int) -> str | None:
        """The text of a macro both modes read alike: a lone backslash, any macro past the
        nesting bound, a control symbol (\\%, \\,) or accent (\\"o). None for the rest."""
        if name == "":
            return "\\"  # a lone trailing backslash
        if depth >= _MAX_DEPTH:
            return CONTROL_SYMBOLS.get(name, name)
        if not name[0].isalpha():
            if name in ACCENTS:
                return accent(ACCENTS[name], self._arg_text(depth))
            return CONTROL_SYMBOLS.get(name, name)
        return None


class _MathReader(_Reader):
    """Renders one math snippet. Every step consumes a token, so it always ends."""

    def __init__(self, latex: str) -> None:
        super().__init__(_MATH_TOKEN.findall(latex))

    def render(self, depth: int, closing: bool = False) -> str:
        out: list[str] = []
        while self.pos < len(self.toks):
            tok = self.toks[self.pos]
            if tok == "}":
                self.pos += 1
                if closing:
                    break
                continue  # a stray closer: drop it
            if tok in ("^", "_"):
                self.pos += 1
                arg = self._arg(depth)
                # The space an author leaves before a script is not meant to show.
                if out and out[-1] == " ":
                    out.pop()
                table = SUPERSCRIPTS if tok == "^" else SUBSCRIPTS
                out.append(script(arg, table, tok) or tok)
                continue
            out.append(self._item(depth))
        return "".join(out)

    def _item(self, depth: int) -> str:
        tok = self.toks[self.pos]
        self.pos += 1
        if tok == "{":
            return self.render(depth + 1, closing=True) if depth < _MAX_DEPTH else ""
        if tok.isspace():
            return " "
        if tok.startswith("\\"):
            return self._macro(tok[1:], depth)
        return {"~": " ", "&": " ", "'": "′"}.get(tok, tok)

    def _arg(self, depth: int) -> str:
        """One argument: a group, a macro with its own arguments, or one character."""
        self._skip_ws()
        return self._item(depth + 1) if self.pos < len(self.toks) else ""

    _arg_text = _arg  # a math argument renders to plain text already

    def _optional(self, depth: int) -> str | None:
        self._skip_ws()
        if self._peek() != "[":
            return None
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.toks) and self.toks[self.pos] != "]":
            out.append(self._item(depth + 1))
        self.pos += 1
        return "".join(out).strip()

    def _macro(self, name: str, depth: int) -> str:
        text = self._simple_macro(name, depth)
        if text is not None:
            return text
        if name in ("frac", "dfrac", "tfrac", "cfrac"):
            return fraction(self._arg(depth), self._arg(depth))
        if name in ("binom", "dbinom", "tbinom"):
            n, k = self._arg(depth).strip(), self._arg(depth).strip()
            return f"C({n}, {k})"
        if name == "sqrt":
            index = self._optional(depth)
            body = self._arg(depth).strip()
            body = body if is_atom(body) else f"({body})"
            root = {None: "√", "": "√", "2": "√", "3": "∛", "4": "∜"}.get(index)
            if root is None:
                root = script(index or "", SUPERSCRIPTS, "^") + "√"
            return root + body
        if name in ACCENTS:
            return accent(ACCENTS[name], self._arg(depth))
        if name in ALPHABETS:
            return alphabet(name, self._arg(depth))
        if name in TEXT_ARG:
            self._skip_ws()
            if self._peek() == "{":
                # \text{...} holds text-mode LaTeX, possibly with $math$ of its own.
                return plain(_TextReader(self._raw_group()).read(depth + 1))
            return self._arg(depth)
        if name in PLAIN_ARG:
            return self._arg(depth)
        if name == "begin":
            env = self._raw_group().strip()
            return self._array(env, depth) if env.rstrip("*") in ARRAYS else ""
        if name in DROP_WITH_ARG:
            self._raw_group()
            return ""
        if name in ("textcolor", "colorbox"):
            self._raw_group()
            return self._arg(depth)
        if name in ("left", "right", "middle") or name.startswith(("big", "Big")):
            # Sizing only; "\left." is an invisible delimiter.
            self._skip_ws()
            if self._peek() == ".":
                self.pos += 1
            return ""
        if name in DROP:
            return ""
        sym = symbol(name)
        if sym is not None:
            return sym
        # Unknown: keep its name, and its braced arguments as name(a, b) so nothing is lost.
        args: list[str] = []
        while self._peek() == "{":
            self.pos += 1
            args.append(self.render(depth + 1, closing=True).strip())
        return f"{name}({', '.join(args)})" if args else name

    def _array(self, env: str, depth: int) -> str:
        """A matrix, cases or aligned block on one line: `(a, b; c, d)`, `[w, x, y]ᵀ`."""
        if env == "array" or env.startswith("alignedat"):
            self._raw_group()  # the column spec / column count
        self._skip_ws()
        if self._peek() == "[":  # [t], [c]: placement only
            while self.pos < len(self.toks) and self.toks[self.pos] != "]":
                self.pos += 1
            self.pos += 1
        rows: list[list[str]] = [[]]
        cell: list[str] = []
        nest = level = 0
        while self.pos < len(self.toks):
            tok = self.toks[self.pos]
            self.pos += 1
            if tok == "\\begin":
                nest += 1
            elif tok == "\\end":
                if nest == 0:
                    self._raw_group()
                    break
                nest -= 1
            elif tok in "{}":
                level += 1 if tok == "{" else -1
            elif nest == 0 and level == 0 and tok in ("&", "\\\\"):
                rows[-1].append("".join(cell))
                cell = []
                if tok != "&":
                    rows.append([])
                continue
            cell.append(tok)
        rows[-1].append("".join(cell))
        text = [[_math_unicode(c, depth + 1) for c in r] for r in rows]
        text = [r for r in text if any(r)]
        return _array_text(env.rstrip("*"), text)


def _array_text(env: str, rows: list[list[str]]) -> str:
    left, right, cell_sep = ARRAYS[env]
    if env in ("aligned", "gathered", "split", "alignedat", "multlined"):
        lines = [" ".join(c for c in r if c) for r in rows]
        out = lines[0] if lines else ""
        for line in lines[1:]:
            out += (" " if line[:1] in RELATIONS else "; ") + line
        return out
    if left and len(rows) > 1 and all(len(r) == 1 for r in rows):
        return left + ", ".join(r[0] for r in rows) + right + "ᵀ"  # a column vector
    return left + "; ".join(cell_sep.join(r) for r in rows) + right


_INNER_SPACE = re.compile(r"(?<=[(\[{]) | (?=[)\]}])")


def _math_unicode(latex: str, depth: int) -> str:
    text = _WS.sub(" ", _MathReader(latex).render(depth)).strip()
    # "\left( x \right)" spaces its delimiters for the source's sake, not the reader's.
    return _INNER_SPACE.sub("", text)


def split_display_rows(latex: str) -> list[str]:
    """Rows of a display at `\\\\` outside any group or environment (a matrix keeps its rows)."""
    rows: list[str] = []
    depth = start = i = 0
    n = len(latex)
    while i < n:
        c = latex[i]
        if c == "\\":
            if latex.startswith("\\\\", i):
                if depth == 0:
                    rows.append(latex[start:i])
                    m = _ROW_SPACING.match(latex, i + 2)
                    i = start = m.end() if m else i + 2
                    continue
                i += 2
                continue
            m = _ENV_EDGE.match(latex, i)
            if m:
                depth += 1 if m.group(1) == "begin" else -1
                i = m.end()
                continue
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        i += 1
    rows.append(latex[start:])
    return [r.strip() for r in rows if r.strip()]


_ENV_EDGE = re.compile(r"\\(begin|end)\s*\{[^{}]*\}")
# `\\*` and its optional spacing argument, `\\[2pt]` or `\\[\baselineskip]`, as LaTeX reads it.
_ROW_SPACING = re.compile(r"\*?\s*(?:\[[^\[\]]*\])?")


def display_unicode(latex: str) -> str:
    """A display equation as readable Unicode: one line per top-level row, a matrix or
    cases block inside a row kept on its line, continuation rows (`= …`) indented."""
    lines = []
    for i, row in enumerate(split_display_rows(latex)):
        text = latex_to_unicode(row)
        lines.append(("    " + text) if i and text[:1] in RELATIONS else text)
    return "\n".join(line for line in lines if line)


def latex_to_unicode(latex: str) -> str:
    """One math snippet (without its $ delimiters) as readable Unicode. Never raises."""
    try:
        return _math_unicode(latex, 0)
    except Exception:  # belt and braces: a title must always come out as something
        return _WS.sub(" ", latex).strip()


# ------------------------------------------------------------------ text mode

_TEXT_TOKEN = re.compile(
    r"\\\$|\$\$|\$|\\[()\[\]]|\\(?:[A-Za-z]+\*?|.)?|---|--|``|''|[{}~`]|\s+"
    r"|[^\\${}~`'\-\s]+|.",
    re.DOTALL,
)
# A lone ` is kept: in abstracts it is markdown code far more often than a LaTeX quote.
_TEXT_CHARS = {"~": " ", "---": "—", "--": "–", "``": "“", "''": "”"}
_MATH_ENVS = frozenset(
    {"equation", "equation*", "align", "align*", "gather", "gather*", "multline",
     "multline*", "eqnarray", "eqnarray*", "displaymath", "math"}
)  # fmt: skip
_CLOSERS = {"$": "$", "$$": "$$", "\\(": "\\)", "\\[": "\\]"}
# A `$` can close inline math if it has a non-space before it and no digit or `$` after
# it (pandoc's rule: "$5 and $10" is money, not math); escaped and doubled ones never do.
_DOLLAR_CLOSER = re.compile(r"(?<=[^\s\\$])\$(?![\d$])")


class _TextReader(_Reader):
    """Text-mode LaTeX, as found in titles and abstracts, into inline nodes."""

    def __init__(self, text: str) -> None:
        super().__init__(_TEXT_TOKEN.findall(text))
        self.src = text
        # Start offsets let math be cut from the source exactly as the author wrote it.
        self.starts: list[int] = []
        at = 0
        for tok in self.toks:
            self.starts.append(at)
            at += len(tok)
        self._closer_at: dict[str, list[int]] = {}
        self._group_ended = False

    def _seek(self, offset: int) -> None:
        """Move to the first token starting at or after `offset` in the source."""
        while self.pos < len(self.toks) and self.starts[self.pos] < offset:
            self.pos += 1

    def _closers(self, closer: str) -> list[int]:
        # Found once per reader and bisected, so a thousand lone `$` stay cheap.
        if closer not in self._closer_at:
            pattern = _DOLLAR_CLOSER if closer == "$" else re.compile(re.escape(closer))
            self._closer_at[closer] = [m.start() for m in pattern.finditer(self.src)]
        return self._closer_at[closer]

    def _math(self, opener: str, depth: int) -> Math | None:
        """The math span opened by the current token, or None if it never closes."""
        begin = self.starts[self.pos] + len(opener)
        if opener == "$" and (begin >= len(self.src) or self.src[begin].isspace()):
            return None
        closer = _CLOSERS[opener]
        positions = self._closers(closer)
        i = bisect_left(positions, begin + (opener == "$"))
        limit = _MAX_INLINE_MATH if opener == "$" else _MAX_DISPLAY_MATH
        if i == len(positions) or positions[i] - begin > limit:
            return None
        end = positions[i]
        self._seek(end + len(closer))
        return self._math_node(self.src[begin:end], depth)

    def _env_math(self, env: str, begin: int, depth: int) -> Math | None:
        close = f"\\end{{{env}}}"
        end = self.src.find(close, begin, begin + _MAX_DISPLAY_MATH)
        if end < 0:
            return None
        self._seek(end + len(close))
        return self._math_node(self.src[begin:end], depth)

    @staticmethod
    def _math_node(latex: str, depth: int) -> Math:
        body = _WS.sub(" ", latex).strip()
        return Math(body, _math_unicode(body, depth + 1))

    def _arg(self, depth: int) -> list[Inline]:
        """A macro argument: a braced group, or else the next single character or macro."""
        self._skip_ws()
        tok = self._peek()
        if tok is None:
            return []
        if tok == "{":
            self.pos += 1
            return self.read(depth + 1, closing=True)
        if tok.startswith("\\") or tok in ("$", "$$"):
            return self.read(depth + 1, single=True)
        if len(tok) > 1 and tok not in _TEXT_CHARS:
            # "\"over" accents only the "o", as TeX does; the rest stays for the caller.
            self.toks[self.pos] = tok[1:]
            self.starts[self.pos] += 1
            return [Text(tok[0])]
        self.pos += 1
        return [Text(_TEXT_CHARS.get(tok, tok))]

    def _arg_text(self, depth: int) -> str:
        return plain(self._arg(depth))

    def read(self, depth: int = 0, closing: bool = False, single: bool = False) -> list[Inline]:
        nodes: list[Inline] = []
        while self.pos < len(self.toks):
            tok = self.toks[self.pos]
            if tok == "}":
                self.pos += 1
                if closing:
                    break
                continue  # a stray closer: drop it
            if tok == "{":
                self.pos += 1
                if depth < _MAX_DEPTH:
                    nodes.extend(self.read(depth + 1, closing=True))
            elif tok in _CLOSERS:
                math = self._math(tok, depth) if depth < _MAX_DEPTH else None
                if math is None:
                    self.pos += 1
                    nodes.append(Text(tok.lstrip("\\")))
                else:
                    nodes.append(math)
            elif tok.startswith("\\"):
                self.pos += 1
                nodes.extend(self._macro(tok[1:], depth, closing))
                if self._group_ended:
                    self._group_ended = False
                    break
            else:
                self.pos += 1
                nodes.append(Text(_TEXT_CHARS.get(tok, tok)))
            if single:
                break
        return nodes

    def _macro(self, name: str, depth: int, in_group: bool) -> list[Inline]:
        text = self._simple_macro(name, depth)
        if text is not None:
            return [Text(text)]
        if name in TEXT_ACCENT_WORDS:
            return [Text(accent(ACCENTS[name], self._arg_text(depth)))]
        if name in ("textbf", "mathbf", "boldsymbol", "bm"):
            return _wrap(Bold, self._arg(depth))
        if name in ("emph", "textit", "textsl", "mathit"):
            return _wrap(Italic, self._arg(depth))
        if name == "texttt":
            return [Code(self._arg_text(depth))]
        if name in ("url", "href"):
            url = re.sub(r"\\([%#_&~$])", r"\1", self._raw_group()).strip()
            label = self._arg_text(depth).strip() if name == "href" else url
            if _SAFE_URL.fullmatch(url):
                return [Link(label or url, url)]
            return [Text(label)]  # no javascript: or data: links reach a chat
        if name in ("bf", "it", "em", "sl") and in_group:
            # {\bf words}: the switch covers the rest of the enclosing group, which
            # this inner read also closes.
            self._group_ended = True
            return _wrap(Bold if name == "bf" else Italic, self.read(depth + 1, closing=True))
        if name == "begin":
            env = self._raw_group()
            if env in _MATH_ENVS:
                begin = self.starts[self.pos] if self.pos < len(self.toks) else len(self.src)
                math = self._env_math(env, begin, depth)
                if math is not None:
                    return [math]
            return []
        if name in DROP_WITH_ARG:
            self._raw_group()
            return []
        if name in DROP:
            return []
        if name in TEXT_ARG or name in PLAIN_ARG:
            return self._arg(depth)
        if name in ALPHABETS:
            return [Text(alphabet(name, self._arg_text(depth)))]
        sym = symbol(name)
        if sym is not None:
            if self.toks[self.pos : self.pos + 2] == ["{", "}"]:
                self.pos += 2  # "\ss{}": the empty group only ends the macro's name
            return [Text(sym)]
        args: list[Inline] = []
        while self._peek() == "{":
            self.pos += 1
            if args:
                args.append(Text(", "))
            args.extend(self.read(depth + 1, closing=True))
        return [Text(f"{name}("), *args, Text(")")] if args else [Text(name)]


def _wrap(kind: type[Bold] | type[Italic], children: list[Inline]) -> list[Inline]:
    return [kind(tuple(children))] if children else []


def _tidy(nodes: tuple[Inline, ...] | list[Inline], after_space: list[bool]) -> list[Inline]:
    """Collapse whitespace across node boundaries, merge adjacent text, drop empties.

    `after_space` is one shared flag: whether the text emitted so far ends in a space.
    Pieces are gathered and joined once, so a run of thousands of tokens stays linear.
    """
    out: list[Inline] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            out.append(Text("".join(pending)))
            pending.clear()

    for node in nodes:
        if isinstance(node, Text):
            text = _WS.sub(" ", node.text)
            if after_space[0]:
                text = text.lstrip(" ")
            if text:
                after_space[0] = text.endswith(" ")
                pending.append(text)
        elif isinstance(node, Bold | Italic):
            flush()
            children = _tidy(node.children, after_space)
            if children:
                out.append(type(node)(tuple(children)))
        elif plain((node,)):
            flush()
            out.append(node)
            after_space[0] = False
        # else: math or code that renders to nothing (say "$\label{x}$") is dropped
    flush()
    return out


def _strip_end(nodes: list[Inline]) -> list[Inline]:
    """Drop the trailing space of the last text, however deeply it is nested."""
    if not nodes:
        return nodes
    last = nodes[-1]
    if isinstance(last, Text):
        text = last.text.rstrip(" ")
        return nodes[:-1] + ([Text(text)] if text else [])
    if isinstance(last, Bold | Italic):
        inner = _strip_end(list(last.children))
        return nodes[:-1] + ([type(last)(tuple(inner))] if inner else [])
    return nodes


@lru_cache(maxsize=8192)
def rich_inlines(text: str) -> tuple[Inline, ...]:
    """A title or abstract with LaTeX in it, as inline nodes. Never raises. Cached: a
    delivery round renders the same papers into thousands of digests (nodes are frozen)."""
    try:
        nodes = _TextReader(text).read()
        # Starting "after a space" drops leading whitespace; a trailing one is cut below.
        return tuple(_strip_end(_tidy(nodes, [True])))
    except Exception:  # belt and braces: show the raw text rather than nothing
        collapsed = _WS.sub(" ", text).strip()
        return (Text(collapsed),) if collapsed else ()


def clean_text(text: str) -> str:
    """A title or abstract as plain readable text."""
    return plain(rich_inlines(text))
