"""The author's own macros (`\\newcommand`, `\\def`, `\\DeclareMathOperator`, ...):
reading the definitions and expanding their uses, within work budgets."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from bot.explain.latex import (
    MAX_DEFINITION_CHARS,
    MAX_DEFINITION_SCAN,
    MAX_DEFINITIONS_SEEN,
    MAX_EXPANSIONS,
    Groups,
    WorkBudgetExceeded,
    read_arg,
    read_group,
)


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

DEF_START = re.compile(
    r"\\(?:(re|provide)?newcommand\*?|DeclareRobustCommand\*?|(DeclareMathOperator)(\*)?"
    r"|(?:g|e|x)?def|let|(?:New|Renew|Provide|Declare)DocumentCommand)(?![A-Za-z@])"
)


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
    for seen, m in enumerate(DEF_START.finditer(text)):
        if len(macros) >= limit or seen >= MAX_DEFINITIONS_SEEN:
            break
        if scan <= 0:
            raise WorkBudgetExceeded("too many macro definitions that never close")
        kw = m.group(0)
        i = m.end()
        parsed = parse_definition(text, i, kw, m.group(1), m.group(2) is not None, groups)
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


def parse_definition(
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
