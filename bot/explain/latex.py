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


# Colours that make text invisible on a white page: white itself and anything so close to
# it that no reader can tell (xcolor mixes like white!97, rgb 0.98, HTML F8F8F8, gray .95).
_NEAR_WHITE_LEVEL = 0.9
_COLOR_ARG = re.compile(r"\s*(?:\[\s*([A-Za-z]+)\s*\]\s*)?\{([^{}]*)\}")
_HIDE_WITH_ARG = re.compile(
    r"\\(?:(?:h|v)?phantom"
    r"|scalebox\s*\{\s*(?:0*\.0\d*|0)\s*\}"
    r"|resizebox\s*\{\s*0(?:pt)?\s*\}\s*\{[^{}]*\}"
    r"|texttransparent\s*\{\s*0*(?:\.[0-4]\d*)?\s*\}"
    r"|fontsize\s*\{\s*(?:0*\.\d+|[01](?:\.0*)?)\s*(?:pt)?\s*\}\s*\{[^{}]*\}\s*\\selectfont)"
    r"(?![A-Za-z])"
)
# Switches that hide everything to the end of the enclosing group: \transparent{0.1}.
_HIDE_SWITCH = re.compile(r"\\transparent\s*\{\s*0*(?:\.[0-4]\d*)?\s*\}")
_DEFINE_COLOR = re.compile(
    r"\\(?:definecolor|providecolor)\s*\{([^{}]*)\}\s*\{([^{}]*)\}\s*\{([^{}]*)\}"
    r"|\\colorlet\s*\{([^{}]*)\}\s*\{([^{}]*)\}"
)


def _level(model: str, spec: str, names: set[str]) -> bool:
    """Is this xcolor colour (model + spec) white or nearly so?"""
    model = model.strip()
    spec = spec.strip()
    if not model:
        # A name, or an xcolor mix: `red!5` is 5% red in white, `white!90!black` 90% white.
        parts = [p.strip() for p in spec.split("!")]
        if len(parts) == 1:
            return parts[0] in names
        try:
            share = min(max(float(parts[1]) / 100, 0.0), 1.0)
        except ValueError:
            return False
        first = 1.0 if parts[0] in names else 0.0
        second = 1.0 if len(parts) < 3 or parts[2] in names else 0.0
        return first * share + second * (1 - share) >= _NEAR_WHITE_LEVEL
    if model.lower() == "html":
        h = spec.lstrip("#")
        if not re.fullmatch(r"[0-9A-Fa-f]{6}", h):
            return False
        return all(int(h[i : i + 2], 16) / 255 >= _NEAR_WHITE_LEVEL for i in (0, 2, 4))
    try:
        values = [float(v) for v in re.split(r"\s*,\s*|\s+", spec) if v]
    except ValueError:
        return False
    m = model.lower()
    if not values:
        return False
    if model == "RGB":
        return len(values) == 3 and all(v / 255 >= _NEAR_WHITE_LEVEL for v in values)
    if m == "rgb":
        return len(values) == 3 and all(v >= _NEAR_WHITE_LEVEL for v in values)
    if m == "gray":
        return values[0] >= _NEAR_WHITE_LEVEL
    if m == "cmyk":
        return len(values) == 4 and all(v <= 1 - _NEAR_WHITE_LEVEL for v in values)
    return False


def near_white_names(text: str) -> set[str]:
    """Colour names the document defines as white or nearly white (\\definecolor, \\colorlet)."""
    names = {"white"}
    for _ in range(3):  # colorlet chains: a few rounds are plenty
        before = len(names)
        for m in _DEFINE_COLOR.finditer(text):
            if m.group(1) is not None:
                if _level(m.group(2), m.group(3), names):
                    names.add(m.group(1).strip())
            elif _level("", m.group(5), names):
                names.add(m.group(4).strip())
        if len(names) == before:
            break
    return names


def _colour_at(text: str, i: int, names: set[str]) -> tuple[bool, int] | None:
    """After \\color or \\textcolor: (is it near white, index past the colour spec)."""
    m = _COLOR_ARG.match(text, i)
    if not m:
        return None
    return _level(m.group(1) or "", m.group(2), names), m.end()


_COLOR_CMD = re.compile(r"\\(textcolor|color)(?![A-Za-z])")


def strip_hidden(text: str, definitions: str = "") -> str:
    """Remove text a reader of the PDF cannot see: white or near-white text, transparent
    text, phantoms, microscopic fonts. `definitions`: where \\definecolor may live too.

    Hidden text is the usual carrier of prompt injections aimed at LLM reviewers.
    """
    return strip_hidden_counted(text, definitions)[0]


def strip_hidden_counted(text: str, definitions: str = "") -> tuple[str, int]:
    """`strip_hidden`, and how many hidden passages were removed.

    Three left-to-right passes (colours, commands with an argument, switches), each linear:
    every match either is skipped or removes a span, and the scan goes on after it.
    """
    names = near_white_names(definitions + "\n" + text)
    removed = 0

    def colour_end(g: Groups, m: re.Match[str]) -> tuple[int, int] | None:
        # \textcolor{white}{...} drops its argument; {\color{white} ...} hides to group end.
        found = _colour_at(g.s, m.end(), names)
        if found is None or not found[0]:
            return None
        if m.group(1) == "textcolor":
            arg = g.read(found[1])
            return found[1], arg[1] if arg is not None else found[1]
        return found[1], _group_end(g.s, found[1], paragraph=True)

    def command_end(g: Groups, m: re.Match[str]) -> tuple[int, int] | None:
        if m.group(0).endswith("selectfont"):  # a font switch: hidden to the group's end
            return m.end(), _group_end(g.s, m.end(), paragraph=True)
        arg = g.read(m.end())
        return m.end(), arg[1] if arg is not None else m.end()

    def switch_end(g: Groups, m: re.Match[str]) -> tuple[int, int] | None:
        return m.end(), _group_end(g.s, m.end(), paragraph=True)

    for pattern, end_of in (
        (_COLOR_CMD, colour_end),
        (_HIDE_WITH_ARG, command_end),
        (_HIDE_SWITCH, switch_end),
    ):
        out: list[str] = []
        pos = 0
        groups = Groups(text)
        for m in pattern.finditer(text):
            if m.start() < pos:
                continue  # inside a span already removed
            span = end_of(groups, m)
            if span is None:
                continue
            removed += _wordy(text[span[0] : span[1]])
            out.append(text[pos : m.start()])
            pos = span[1]
        out.append(text[pos:])
        text = "".join(out)
    return text, removed


def _wordy(hidden: str) -> int:
    """1 if hidden text says something (words, not a `\\phantom{-}` for alignment)."""
    return 1 if re.search(r"[A-Za-z]{2,}[^A-Za-z]+[A-Za-z]{2,}", hidden) else 0


_GROUP_TOKENS = {
    ("{", "}", False): re.compile(r"[\\{}]"),
    ("{", "}", True): re.compile(r"[\\{}]|\n\n"),
    ("[", "]", False): re.compile(r"[\\\[\]]"),
    ("[", "]", True): re.compile(r"[\\\[\]]|\n\n"),
}


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


# ------------------------------------------------------------------- includes

_INCLUDE = re.compile(
    r"\\(?:input|include|subfile|InputIfFileExists)\*?\s*(?:\{([^{}\n]*)\}|([^\s{}\\*]+))"
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


def _include_target(
    files: Mapping[str, str], m: re.Match[str], rel_dir: str
) -> tuple[str | None, str]:
    """(archive path, directory for its own includes) of one include command."""
    if m.group(3) is not None:  # \import{dir}{file}: relative to dir
        sub_dir = posixpath.normpath(posixpath.join(rel_dir, m.group(3)))
        return resolve(files, sub_dir, m.group(4)), sub_dir
    return resolve(files, rel_dir, m.group(1) or m.group(2) or ""), rel_dir


def includes_in(files: Mapping[str, str], path: str, text: str) -> list[str]:
    """The archive files that `text` (the file at `path`) includes."""
    # Relative to the directory LaTeX runs in, which may be any ancestor of this file.
    dirs = [posixpath.dirname(path)]
    while dirs[-1]:
        dirs.append(posixpath.dirname(dirs[-1]))
    found = []
    for m in _INCLUDE.finditer(text):
        for rel_dir in dirs:
            target = _include_target(files, m, rel_dir)[0]
            if target is not None:
                found.append(target)
                break
    return found


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
            target, next_dir = _include_target(files, m, rel_dir)
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
        # Layout and font switches: an author (or a style file copied in) redefining these
        # is changing the page, and expanding them only pours TeX internals into the text.
        "maketitle",
        "normalsize",
        "small",
        "footnotesize",
        "scriptsize",
        "tiny",
        "large",
        "Large",
        "LARGE",
        "huge",
        "Huge",
        "text",
        "textbf",
        "textit",
        "emph",
        "mathrm",
        "mathbf",
        "par",
        "relax",
        "newtheorem",
        "bibliography",
        "bibliographystyle",
        "thanks",
    ]
)
# Bodies that do TeX programming rather than notation: `@`-names, boxes, registers,
# conditionals, messages. Such a macro is left unexpanded (and its uses are later stripped).
_INTERNAL_BODY = re.compile(
    r"@|\\(?:typeout|message|setbox|wd|ht|dp|hbox|vbox|vtop|hskip|vskip|kern|penalty|"
    r"global|expandafter|csname|endcsname|catcode|if(?!f(?![A-Za-z]))[a-z]*|else|fi|futurelet|afterassignment|"
    r"noexpand|edef|gdef|xdef|def|let|newcommand|renewcommand|providecommand|setlength|"
    r"addtolength|setcounter|addtocounter|stepcounter|refstepcounter|newcounter|newlength|"
    r"selectfont|fontsize|usefont|fontfamily|fontseries|fontshape|baselineskip|parindent|"
    r"parskip|hrule|vrule|leaders|vfil|hfil|vss|hss|unskip|unhbox|unvbox|lastbox|"
    r"begingroup|endgroup|aftergroup|write|immediate|openout|closeout|read|input|include|"
    r"everypar|mark|insert|vadjust|special|pdfliteral|makeatletter|makeatother)(?![A-Za-z])"
)

# A definition or set-up argument longer than this is not one (an unclosed brace in a
# hostile source must not make every definition scan to the end of the document).
_DEF_LIMIT = 20_000

_DEF_START = re.compile(
    r"\\(?:(re|provide)?newcommand\*?|DeclareRobustCommand\*?|(DeclareMathOperator)(\*)?"
    r"|(?:g|e|x)?def|let|(?:New|Renew|Provide|Declare)DocumentCommand)(?![A-Za-z@])"
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
    groups = Groups(text)
    for seen, m in enumerate(_DEF_START.finditer(text)):
        if len(macros) >= limit or seen >= MAX_DEFINITIONS_SEEN:
            break
        if scan <= 0:
            raise WorkBudgetExceeded("too many macro definitions that never close")
        kw = m.group(0)
        i = m.end()
        parsed = _parse_definition(text, i, kw, m.group(1), m.group(2) is not None, groups)
        # What reading it may have cost: its body, or a whole window when it never closed.
        scan -= len(parsed[1].body) if parsed else min(MAX_DEFINITION_CHARS, len(text) - i)
        if parsed is None:
            if not checked and _runs_to_the_end(text, i):
                raise WorkBudgetExceeded("a macro definition never closes")
            checked = True  # one full scan per document at most
            continue
        name, macro, _end = parsed
        macro = _simplify(macro)
        if name in _PROTECTED or "@" in name:
            continue
        if _INTERNAL_BODY.search(macro.body):
            # TeX programming, not notation: its uses vanish (arguments included) rather
            # than leave a command nobody can read.
            macro = Macro(macro.nargs, "", macro.default)
        if kw.startswith("\\provide") and name in macros:
            continue
        macros[name] = macro
    return macros


def _simplify(macro: Macro) -> Macro:
    """Common harmless idioms in author macros: `\\ifmmode A\\else B\\fi` (we read math
    as math), `\\ensuremath`, `\\mbox{$x$}` and `\\xspace`."""
    body = re.sub(r"\\ifmmode(.*?)\\else.*?\\fi(?![A-Za-z])", r"\1", macro.body, flags=re.S)
    body = re.sub(r"\\(?:xspace|protect)(?![A-Za-z])\s*|\\@(?![A-Za-z@])", "", body)
    # \ensuremath{x} and \mbox{$x$}: math either way once expanded into math; nested $
    # signs would break every reader of the text downstream.
    body = re.sub(r"\\ensuremath(?![A-Za-z])\s*", "", body)
    body = re.sub(r"\\(?:mbox|hbox|text)\s*\{\s*\$([^${}]*)\$\s*\}", r"{\1}", body)
    return macro if body == macro.body else Macro(macro.nargs, body, macro.default)


def _name_at(text: str, i: int, groups: Groups) -> tuple[str, int] | None:
    while i < len(text) and text[i] in " \t\n":
        i += 1
    if text.startswith("{", i):
        g = groups.read(i)
        if g is None:
            return None
        inner = g[0].strip()
        m = re.fullmatch(r"\\([A-Za-z@]+|.)", inner)
        return (m.group(1), g[1]) if m else None
    m = re.compile(r"\\([A-Za-z@]+|.)").match(text, i)
    return (m.group(1), m.end()) if m else None


def _document_command(
    text: str, i: int, name: str, groups: Groups
) -> tuple[str, Macro, int] | None:
    """xparse: \\NewDocumentCommand{\\name}{m m}{body}; mandatory arguments and one leading
    optional one with a default (O{...}) are understood, anything fancier is skipped."""
    spec = groups.read(i)
    if spec is None:
        return None
    g = groups.read(spec[1])
    if g is None:
        return None
    args = re.sub(r"\s+", "", spec[0])
    default: str | None = None
    opt = re.match(r"O\{([^{}]*)\}|o", args)
    if opt:
        default = opt.group(1) or ""
        args = args[opt.end() :]
    if not re.fullmatch(r"m*", args):
        return None
    nargs = len(args) + (1 if opt else 0)
    return name, Macro(min(nargs, 9), g[0], default), g[1]


def _parse_definition(
    text: str, i: int, kw: str, prefix: str | None, is_operator: bool, groups: Groups
) -> tuple[str, Macro, int] | None:
    named = _name_at(text, i, groups)
    if named is None:
        return None
    name, i = named
    if is_operator:
        g = groups.read(i)
        if g is None:
            return None
        return name, Macro(0, r"\operatorname{" + g[0] + "}"), g[1]
    if kw.endswith("DocumentCommand"):
        return _document_command(text, i, name, groups)
    if kw == "\\let":
        j = i
        while j < len(text) and text[j] in " =":
            j += 1
        target = _name_at(text, j, groups)
        if target is None:
            return None
        return name, Macro(0, "\\" + target[0]), target[1]
    if kw.endswith("def"):
        # \def\foo#1#2{...}: only undelimited parameters are understood.
        m = re.compile(r"((?:#\d)*)\s*\{").match(text, i)
        if not m:
            return None
        g = groups.read(m.end() - 1)
        if g is None:
            return None
        return name, Macro(len(m.group(1)) // 2, g[0]), g[1]
    nargs = 0
    default: str | None = None
    opt = groups.read(i, "[", "]")
    if opt is not None:
        if not opt[0].strip().isdigit():
            return None
        nargs = min(int(opt[0].strip()), 9)
        i = opt[1]
        opt2 = groups.read(i, "[", "]")
        if opt2 is not None:
            default, i = opt2
    g = groups.read(i)
    if g is None:
        return None
    return name, Macro(nargs, g[0], default), g[1]


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
                opt = read_group(text, i, "[", "]", limit=500)
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


# ------------------------------------------------------------- TeX internals

# Commands that set up the page or talk to TeX, with how many braced arguments they take.
# None of them is content; left in, they are noise for a reader and for a model.
_SETUP_COMMANDS = {
    "typeout": 1,
    "message": 1,
    "PackageWarning": 2,
    "ClassWarning": 2,
    "setlength": 2,
    "addtolength": 2,
    "setcounter": 2,
    "addtocounter": 2,
    "stepcounter": 1,
    "refstepcounter": 1,
    "newcounter": 1,
    "newlength": 1,
    "numberwithin": 2,
    "counterwithin": 2,
    "hypersetup": 1,
    "pagestyle": 1,
    "thispagestyle": 1,
    "bibliographystyle": 1,
    "bibliography": 1,
    "usepackage": 1,
    "RequirePackage": 1,
    "graphicspath": 1,
    "definecolor": 3,
    "colorlet": 2,
    "theoremstyle": 1,
    "crefname": 3,
    "Crefname": 3,
    "newtheorem": 2,
    "newenvironment": 3,
    "renewenvironment": 3,
    "declaretheorem": 1,
    "vspace": 1,
    "hspace": 1,
    "addvspace": 1,
    "enlargethispage": 1,
    "linespread": 1,
    "fontsize": 2,
    "includegraphics": 1,
    "pdfbookmark": 2,
    "addcontentsline": 3,
}
_SETUP_CMD = re.compile(
    r"\\(" + "|".join(sorted(_SETUP_COMMANDS, key=len, reverse=True)) + r")\*?(?![A-Za-z@])"
)
# Tokens that are TeX machinery wherever they appear, with an optional dimen/number/box.
_DIMEN = r"(?:\s*=?\s*-?[\d.]+\s*(?:pt|em|ex|mm|cm|in|bp|sp|mu|\\[A-Za-z]+)"
_DIMEN += r"(?:\s*(?:plus|minus)\s*-?[\d.]+\s*(?:pt|em|ex|fil+|mm|cm|mu))*)?"
_BARE_INTERNALS = re.compile(
    r"\\[A-Za-z]*@[A-Za-z@]*"  # \@setsize, \xx@yy: class and package internals
    r"|\\(?:setbox|box|copy|wd|ht|dp)(?![A-Za-z])\s*\\?[A-Za-z0-9@]*"
    r"|\\(?:vskip|hskip|kern|mkern|mskip|penalty|baselineskip|parskip|parindent)"
    + _DIMEN
    + r"|\\(?:relax|global|protect|makeatletter|makeatother|noindent|indent|par|"
    r"expandafter|noexpand|csname|endcsname|begingroup|endgroup|unskip|ignorespaces|"
    r"leavevmode|nobreak|allowbreak|null|hfill|vfill|hfil|vfil|newpage|clearpage|"
    r"cleardoublepage|pagebreak|linebreak|smallskip|medskip|bigskip|centering|raggedright|"
    r"raggedleft|selectfont|normalfont|maketitle|tableofcontents|sloppy|fussy|"
    r"onecolumn|twocolumn|frontmatter|mainmatter|backmatter|normalsize|footnotesize|"
    r"scriptsize|small|bf|it|rm|sf|tt|sc|em|nolinenumbers|linenumbers)(?![A-Za-z@])"
)


def strip_internals(text: str) -> str:
    """Remove what is TeX programming, not paper: definitions left in the body, page and
    counter set-up, `@`-names and primitives (a `\\makeatletter` is often never closed, so
    it is the tokens that go, not the text after it).

    One left-to-right loop per kind of thing, each bounded by the text's length.
    """
    # Definitions in the body (their uses were already expanded).
    groups = Groups(text)
    out: list[str] = []
    pos = 0
    for m in _DEF_START.finditer(text):
        if m.start() < pos:
            continue
        parsed = _parse_definition(
            text, m.end(), m.group(0), m.group(1), m.group(2) is not None, groups
        )
        if parsed is None:
            continue
        out.append(text[pos : m.start()])
        pos = parsed[2]
    out.append(text[pos:])
    text = "".join(out)
    # Set-up commands with their arguments.
    groups = Groups(text)
    out = []
    pos = 0
    for m in _SETUP_CMD.finditer(text):
        if m.start() < pos:
            continue
        i = m.end()
        opt = groups.read(i, "[", "]")
        if opt is not None:
            i = opt[1]
        for _ in range(_SETUP_COMMANDS[m.group(1)]):
            opt = groups.read(i, "[", "]")
            if opt is not None:
                i = opt[1]
            g = groups.read(i)
            if g is None:
                break
            i = g[1]
        out.append(text[pos : m.start()])
        pos = i
    out.append(text[pos:])
    text = "".join(out)
    return _BARE_INTERNALS.sub(" ", text)


_INTERNAL_TOKEN = re.compile(
    r"\\[A-Za-z]*@[A-Za-z@]*|\\(?:typeout|setbox|hbox|vbox|vskip|hskip|kern|penalty|global|"
    r"expandafter|csname|catcode|makeatletter|makeatother|selectfont|fontsize|relax|"
    r"newcommand|renewcommand|def|edef|gdef|let|setlength|setcounter|usepackage|"
    r"ProvidesPackage|NeedsTeXFormat|documentclass|hypersetup)(?![A-Za-z@])"
)


def internals_share(text: str) -> float:
    """Share of `text` (by characters) taken by TeX internals: the lines that carry one.

    A measure for benchmarks and tests: a prompt built from a paper should score 0.
    """
    if not text:
        return 0.0
    bad = sum(len(line) + 1 for line in text.split("\n") if _INTERNAL_TOKEN.search(line))
    return min(1.0, bad / (len(text) + 1))
