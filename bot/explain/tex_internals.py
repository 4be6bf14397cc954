"""TeX programming left in a source (definitions in the body, page set-up,
`@`-names, primitives): removed from what a reader and a model see."""

from __future__ import annotations

import re

from bot.explain.latex import Groups
from bot.explain.macros import DEF_START, parse_definition

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
    for m in DEF_START.finditer(text):
        if m.start() < pos:
            continue
        parsed = parse_definition(
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
