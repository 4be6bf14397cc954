"""Small, bounded LaTeX text tools: groups, comments, hidden text, includes and macros.

This is not a TeX engine. It does the few things needed to read a paper's source as its
author meant it, and every loop here is capped because the source is untrusted input.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

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
    end = _group_end(s, i + 1, open_, close, limit=limit)
    return (s[i + 1 : end], end + 1) if end < n and s[end : end + 1] == close else None


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


# Colours that make text invisible on a white page.
_WHITE = (
    r"(?:\{\s*white\s*\}"
    r"|\[\s*rgb\s*\]\s*\{\s*1\s*,\s*1\s*,\s*1\s*\}"
    r"|\[\s*RGB\s*\]\s*\{\s*255\s*,\s*255\s*,\s*255\s*\}"
    r"|\[\s*HTML\s*\]\s*\{\s*[Ff]{6}\s*\}"
    r"|\[\s*gray\s*\]\s*\{\s*1(?:\.0*)?\s*\})"
)
# Sizes no reader can see: at most 1 pt, or a scale factor below 0.1.
_TINY = r"\{\s*(?:0*\.\d+|[01](?:\.0*)?)\s*(?:pt)?\s*\}"
_HIDE_WITH_ARG = re.compile(
    r"\\(?:textcolor\s*" + _WHITE + r"|(?:h|v)?phantom"
    r"|scalebox\s*\{\s*(?:0*\.0\d*|0)\s*\}"
    r"|resizebox\s*\{\s*0(?:pt)?\s*\}\s*\{[^{}]*\}"
    r"|fontsize\s*" + _TINY + r"\s*\{[^{}]*\}\s*\\selectfont)"
)
_COLOR_SWITCH = re.compile(r"\\color\s*" + _WHITE)


def strip_hidden(text: str) -> str:
    """Remove text a reader of the PDF cannot see: white text, phantoms, microscopic fonts.

    Hidden text is the usual carrier of prompt injections aimed at LLM reviewers.
    """
    # \textcolor{white}{...}, \phantom{...}, \scalebox{0.01}{...}: drop the argument.
    for _ in range(1000):
        m = _HIDE_WITH_ARG.search(text)
        if not m:
            break
        g = read_group(text, m.end())
        if m.group(0).endswith("selectfont"):
            # A font switch: hide until the enclosing group ends.
            end = _group_end(text, m.end(), paragraph=True)
            text = text[: m.start()] + text[end:]
        elif g is None:
            text = text[: m.start()] + text[m.end() :]
        else:
            text = text[: m.start()] + text[g[1] :]
    # {\color{white} ...}: a switch that lasts to the end of the enclosing group.
    for _ in range(1000):
        m = _COLOR_SWITCH.search(text)
        if not m:
            break
        end = _group_end(text, m.end(), paragraph=True)
        text = text[: m.start()] + text[end:]
    return text


def _group_end(
    s: str,
    i: int,
    open_: str = "{",
    close: str = "}",
    *,
    paragraph: bool = False,
    limit: int | None = None,
) -> int:
    """Index of the `close` ending the group that contains position i, skipping escaped
    characters; len(s) if it never closes. With `paragraph`, a blank line ends it too.
    With `limit`, a group longer than that counts as never closing (a work budget)."""
    depth = 0
    n = len(s) if limit is None else min(len(s), i + limit)
    j = i
    while j < n:
        c = s[j]
        if c == "\\":
            j += 2
            continue
        if c == open_:
            depth += 1
        elif c == close:
            if depth == 0:
                return j
            depth -= 1
        elif paragraph and c == "\n" and depth == 0 and s.startswith("\n\n", j):
            return j
        j += 1
    return n


# ------------------------------------------------------------------- includes

_INCLUDE = re.compile(
    r"\\(?:input|include|subfile|InputIfFileExists)\s*(?:\{([^{}\n]*)\}|([^\s{}\\]+))"
    r"|\\(?:sub)?(?:import|inputfrom|includefrom)\*?\s*\{([^{}\n]*)\}\s*\{([^{}\n]*)\}"
)


@dataclass(slots=True)
class IncludeReport:
    skipped_depth: int = 0
    skipped_cycles: int = 0
    missing: list[str] = field(default_factory=list)
    truncated: bool = False


def resolve(files: Mapping[str, str], base_dir: str, name: str) -> str | None:
    """The archive path that `\\input{name}` means, if the archive holds it."""
    name = name.strip().strip('"')
    if not name:
        return None
    candidates = []
    for base in (base_dir, ""):
        path = posixpath.normpath(posixpath.join(base, name))
        candidates += [path, path + ".tex"]
    for c in candidates:
        if c in files:
            return c
    return None


def expand_includes(
    files: Mapping[str, str],
    main: str,
    *,
    max_depth: int = 8,
    max_chars: int = 4_000_000,
) -> tuple[str, IncludeReport]:
    """The main file with `\\input`/`\\include`/`\\import` replaced by the files' text.

    Depth is capped and cycles are cut, so hostile sources cannot loop or blow up.
    """
    report = IncludeReport()
    main_dir = posixpath.dirname(main)
    budget = [max_chars]

    def expand(path: str, stack: tuple[str, ...], rel_dir: str) -> str:
        text = files[path]
        out: list[str] = []
        pos = 0
        for m in _INCLUDE.finditer(text):
            out.append(text[pos : m.start()])
            pos = m.end()
            if m.group(3) is not None:  # \import{dir}{file}: relative to dir
                sub_dir = posixpath.normpath(posixpath.join(rel_dir, m.group(3)))
                target = resolve(files, sub_dir, m.group(4))
                next_dir = sub_dir
            else:
                target = resolve(files, rel_dir, m.group(1) or m.group(2) or "")
                next_dir = rel_dir
            if target is None:
                report.missing.append((m.group(1) or m.group(2) or m.group(4) or "")[:80])
                continue
            if target in stack:
                report.skipped_cycles += 1
                continue
            if len(stack) >= max_depth:
                report.skipped_depth += 1
                continue
            if budget[0] <= 0:
                report.truncated = True
                continue
            chunk = expand(target, (*stack, target), next_dir)
            budget[0] -= len(chunk)
            out.append("\n" + chunk + "\n")
        out.append(text[pos:])
        return "".join(out)

    text = expand(main, (main,), main_dir)
    if len(text) > max_chars:
        report.truncated = True
        text = text[:max_chars]
    return text, report


# --------------------------------------------------------------------- macros


@dataclass(frozen=True, slots=True)
class Macro:
    nargs: int
    body: str
    default: str | None = None  # default of an optional first argument


# Redefining these would let a source rewrite the document structure we parse.
_PROTECTED = frozenset(
    [
        "begin",
        "end",
        "section",
        "subsection",
        "subsubsection",
        "paragraph",
        "label",
        "ref",
        "eqref",
        "cref",
        "Cref",
        "autoref",
        "input",
        "include",
        "newcommand",
        "renewcommand",
        "providecommand",
        "def",
        "let",
        "DeclareMathOperator",
        "title",
        "author",
        "abstract",
        "item",
        "caption",
        "cite",
        "citep",
        "citet",
        "footnote",
        "appendix",
        "iffalse",
        "fi",
    ]
)

_DEF_START = re.compile(
    r"\\(?:(re|provide)?newcommand\*?|DeclareRobustCommand\*?|(DeclareMathOperator)(\*)?"
    r"|(?:g|e|x)?def|let)(?![A-Za-z@])"
)


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


_DEF_BODY_START = re.compile(r"\\[A-Za-z@]+\s*(?:#\d)*\s*\{|\{\\[A-Za-z@]+\}\s*(?:\[\d\])?\s*\{")


def _runs_to_the_end(text: str, i: int) -> bool:
    """Whether the `\\def\\name{` / `\\newcommand{\\name}{` body starting at i never closes."""
    m = _DEF_BODY_START.match(text, i)
    if m is None:
        return False
    depth = 0
    for b in _BRACE_OR_ESCAPE.finditer(text, m.end()):  # jumps over plain text
        if b.group() == "{":
            depth += 1
        elif b.group() == "}":
            if depth == 0:
                return False
            depth -= 1
    return True


_BRACE_OR_ESCAPE = re.compile(r"\\.|[{}]", re.S)


def parse_macros(text: str, limit: int = 2000) -> dict[str, Macro]:
    """Author macros from `\\newcommand`, `\\def`, `\\DeclareMathOperator` and `\\let`."""
    macros: dict[str, Macro] = {}
    scan = MAX_DEFINITION_SCAN
    checked = False
    for seen, m in enumerate(_DEF_START.finditer(text)):
        if len(macros) >= limit or seen >= MAX_DEFINITIONS_SEEN:
            break
        if scan <= 0:
            raise WorkBudgetExceeded("too many macro definitions that never close")
        kw = m.group(0)
        i = m.end()
        parsed = _parse_definition(text, i, kw, m.group(1), m.group(2) is not None)
        # What reading it may have cost: its body, or a whole window when it never closed.
        scan -= len(parsed[1].body) if parsed else min(MAX_DEFINITION_CHARS, len(text) - i)
        if parsed is None:
            if not checked and _runs_to_the_end(text, i):
                raise WorkBudgetExceeded("a macro definition never closes")
            checked = True  # one full scan per document at most
            continue
        name, macro = parsed
        if name in _PROTECTED:
            continue
        if kw.startswith("\\provide") and name in macros:
            continue
        macros[name] = macro
    return macros


def _name_at(text: str, i: int) -> tuple[str, int] | None:
    while i < len(text) and text[i] in " \t\n":
        i += 1
    if text.startswith("{", i):
        g = read_group(text, i, limit=MAX_DEFINITION_CHARS)
        if g is None:
            return None
        inner = g[0].strip()
        m = re.fullmatch(r"\\([A-Za-z@]+|.)", inner)
        return (m.group(1), g[1]) if m else None
    m = re.compile(r"\\([A-Za-z@]+|.)").match(text, i)
    return (m.group(1), m.end()) if m else None


def _parse_definition(
    text: str, i: int, kw: str, prefix: str | None, is_operator: bool
) -> tuple[str, Macro] | None:
    named = _name_at(text, i)
    if named is None:
        return None
    name, i = named
    if is_operator:
        g = read_group(text, i, limit=MAX_DEFINITION_CHARS)
        if g is None:
            return None
        return name, Macro(0, r"\operatorname{" + g[0] + "}")
    if kw == "\\let":
        j = i
        while j < len(text) and text[j] in " =":
            j += 1
        target = _name_at(text, j)
        if target is None:
            return None
        return name, Macro(0, "\\" + target[0])
    if kw.endswith("def"):
        # \def\foo#1#2{...}: only undelimited parameters are understood.
        m = re.compile(r"((?:#\d)*)\s*\{").match(text, i)
        if not m:
            return None
        g = read_group(text, m.end() - 1, limit=MAX_DEFINITION_CHARS)
        if g is None:
            return None
        return name, Macro(len(m.group(1)) // 2, g[0])
    nargs = 0
    default: str | None = None
    opt = read_group(text, i, "[", "]", limit=MAX_DEFINITION_CHARS)
    if opt is not None:
        if not opt[0].strip().isdigit():
            return None
        nargs = min(int(opt[0].strip()), 9)
        i = opt[1]
        opt2 = read_group(text, i, "[", "]", limit=MAX_DEFINITION_CHARS)
        if opt2 is not None:
            default, i = opt2
    g = read_group(text, i, limit=MAX_DEFINITION_CHARS)
    if g is None:
        return None
    return name, Macro(nargs, g[0], default)


_MACRO_USE = re.compile(r"\\([A-Za-z@]+)(?![A-Za-z@])")


def expand_macros(
    text: str, macros: Mapping[str, Macro], *, max_passes: int = 12, max_chars: int = 6_000_000
) -> str:
    """Replace uses of the author's macros by their bodies, a few passes deep.

    Each pass is linear; passes stop when nothing changes, at `max_passes` (recursive
    macros) or when the text would grow past `max_chars` (exponential macro bombs).
    """
    if not macros:
        return text
    steps = 0  # replacements over all passes: the work budget (issue 11)
    for _ in range(max_passes):
        changed = False
        out: list[str] = []
        pos = 0
        size = 0
        for m in _MACRO_USE.finditer(text):
            macro = macros.get(m.group(1))
            if macro is None or m.start() < pos:
                continue
            # Skip the definitions themselves: `\newcommand{\foo}` must keep its name.
            before = text[max(0, m.start() - 20) : m.start()]
            if re.search(r"\\(?:re|provide)?newcommand\*?\s*\{?\s*$|def\s*$|let\s*$", before):
                continue
            i = m.end()
            args: list[str] = []
            if macro.default is not None:
                opt = read_group(text, i, "[", "]")
                if opt is not None and text[i : opt[1]].lstrip().startswith("["):
                    args.append(opt[0])
                    i = opt[1]
                else:
                    args.append(macro.default)
            ok = True
            while len(args) < macro.nargs:
                a = read_arg(text, i)
                if a is None:
                    ok = False
                    break
                args.append(a[0])
                i = a[1]
            if not ok:
                continue
            body = macro.body
            for k in range(macro.nargs, 0, -1):
                body = body.replace(f"#{k}", args[k - 1])
            # Keep a following letter from gluing onto a body ending in a control word.
            if re.search(r"\\[A-Za-z@]+$", body) and i < len(text) and text[i].isalpha():
                body += " "
            chunk = text[pos : m.start()]
            out.append(chunk)
            out.append(body)
            size += len(chunk) + len(body)
            pos = i
            changed = True
            steps += 1
            if steps > MAX_EXPANSIONS:
                raise WorkBudgetExceeded("macros that expand without end")
            if size > max_chars:
                return text  # a bomb: keep the last sane pass
        if not changed:
            break
        out.append(text[pos:])
        new = "".join(out)
        if len(new) > max_chars:
            break
        text = new
    return text


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
