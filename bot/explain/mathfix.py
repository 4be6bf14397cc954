"""LaTeX math as papers write it, made plain for the renderers and the Unicode reader.

Papers lean on packages (physics, mathtools' paired delimiters, upgreek) and on author
macros whose expansion leaves TeX residue behind. `normalize` rewrites those into plain
amsmath that both image engines and `bot.latex.display_unicode` understand. Cheap and
pure: no TeX, no matplotlib.
"""

from __future__ import annotations

import re

from bot.explain import latex as latex_mod

GREEK_WORDS = """
alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu
xi pi varpi rho varrho sigma varsigma tau upsilon phi varphi chi psi omega Gamma Delta
Theta Lambda Xi Pi Sigma Upsilon Phi Psi Omega
"""
GREEK = GREEK_WORDS.split()
# upgreek's upright letters, read as the ordinary ones.
_UPGREEK = re.compile(r"\\up(" + "|".join(GREEK) + r")(?![A-Za-z])")
# A control space left at the end of a row ("x \\ " trimmed to "x \\") would escape
# what follows it.
_TRAILING_BACKSLASH = re.compile(r"(?<!\\)\\(?:\s+(?=\\\\)|\s*$)")


_QTY = re.compile(r"\\(?:qty|qquantity|pqty|bqty)\s*(?=[(\[{|])")
_CLOSE = {"(": ")", "[": "]", "{": "}", "|": "|"}


def _physics(s: str) -> str:
    """The `physics` package's common commands (`\\qty(…)`, `\\dv`, `\\pdv`, `\\dd`) in
    plain amsmath, so both engines draw them without the package."""
    for _ in range(200):
        m = _QTY.search(s)
        if m is None:
            break
        open_ = s[m.end()]
        end = _matching(s, m.end(), open_, _CLOSE[open_])
        if end < 0:
            s = s[: m.start()] + s[m.end() :]
            continue
        inner = s[m.end() + 1 : end]
        left = "\\{" if open_ == "{" else open_
        right = "\\}" if open_ == "{" else _CLOSE[open_]
        s = f"{s[: m.start()]}\\left{left}{inner}\\right{right}{s[end + 1 :]}"
    s = re.sub(r"\\vb\*?(?![A-Za-z])", r"\\mathbf", s)
    s = re.sub(r"\\vu\*?\s*\{([^{}]*)\}", r"\\hat{\\mathbf{\1}}", s)
    for _ in range(50):
        m = re.search(r"\\[mpb]?mqty\s*(?=[(\[])", s)
        if m is None:
            break
        open_ = s[m.end()]
        end = _matching(s, m.end(), open_, _CLOSE[open_])
        if end < 0:
            break
        env = "pmatrix" if open_ == "(" else "bmatrix"
        inner = s[m.end() + 1 : end]
        s = f"{s[: m.start()]}\\begin{{{env}}}{inner}\\end{{{env}}}{s[end + 1 :]}"
    s = re.sub(r"\\dd(?![A-Za-z])", r"\\mathrm{d}", s)
    s = re.sub(r"\\order(?![A-Za-z])", r"\\mathcal{O}", s)
    for name, d in (("dv", r"\mathrm{d}"), ("pdv", r"\partial")):
        for _ in range(50):
            m = re.search(rf"\\{name}(?![A-Za-z])\s*(?:\[([^\]]*)\])?", s)
            if m is None:
                break
            power = f"^{{{m.group(1)}}}" if m.group(1) else ""
            a = latex_mod.read_arg(s, m.end())
            if a is None:
                s = s[: m.start()] + s[m.end() :]
                continue
            b = latex_mod.read_arg(s, a[1]) if s[a[1] :].lstrip().startswith("{") else None
            if b is None:  # \dv{x}: the operator d/dx
                out, end = rf"\frac{{{d}{power}}}{{{d} {a[0]}{power}}}", a[1]
            else:
                out, end = rf"\frac{{{d}{power} {a[0]}}}{{{d} {b[0]}{power}}}", b[1]
            s = s[: m.start()] + out + s[end:]
    return s


def _matching(s: str, i: int, open_: str, close: str) -> int:
    """Index of the delimiter closing the one at `i`, braces respected; -1 if none."""
    depth = nested = 0
    j = i + 1
    while j < len(s):
        c = s[j]
        if c == "\\":
            j += 2
            continue
        if open_ not in "{|" and c == open_:
            nested += 1
        elif c == close and depth == 0 and open_ != "{":
            if nested == 0:
                return j
            nested -= 1
        if c == "{":
            depth += 1
        elif c == "}":
            if depth == 0:
                return j if open_ == "{" else -1
            depth -= 1
        j += 1
    return -1


_DANGLING = re.compile(r"\\(left|right)(?=\s*(?:\\\\|$))")


_LINK = re.compile(r"\\href\s*\{[^{}]*\}|\\url\s*\{[^{}]*\}|\{\s*https?://[^{}\s]*\s*\}")


_RESIDUE = re.compile(
    r"\\@ifnextchar\s*\\bgroup\s*\{\\gobblenextarg\}\s*\{\}"  # an xspace-like idiom
    r"|\\(?:def|renewcommand)\s*\{?\\arraystretch\}?\s*\{[^{}]*\}"  # table spacing
    r"|\\(?:eqref|ref|cref|Cref|autoref)\s*\{[^{}]*\}"  # a number the image cannot know
    r"|\\xspace(?![A-Za-z])"
    r"|\\hskip\s*\\fontdimen\d\\font"  # an inter-word space, spelled out by a macro
)
_PAIRED = re.compile(r"\\(abs|norm|floor|ceil|set|[kK]et|[bB]ra|[bB]raket|ev|expval)\*?\s*(?=\{)")
_PAIRS = {
    "abs": (r"\left|", r"\right|"),
    "norm": (r"\left\|", r"\right\|"),
    "floor": (r"\left\lfloor", r"\right\rfloor"),
    "ceil": (r"\left\lceil", r"\right\rceil"),
    "set": (r"\left\{", r"\right\}"),
    # braket / physics: |ψ⟩, ⟨φ|, ⟨φ|ψ⟩
    "ket": (r"\left|", r"\right\rangle"),
    "bra": (r"\left\langle", r"\right|"),
    "braket": (r"\left\langle", r"\right\rangle"),
    "ev": (r"\left\langle", r"\right\rangle"),  # physics: expectation value
    "expval": (r"\left\langle", r"\right\rangle"),
}


def normalize(s: str) -> str:
    """Shared by both engines: links out (an icon link beside an equation is not math),
    leftover macro internals out, `physics` commands and mathtools' paired delimiters
    (`\\abs*{x}`, the author's `\\DeclarePairedDelimiter`) in plain amsmath, dangling
    delimiters closed."""
    s = _RESIDUE.sub("", _LINK.sub("", s))
    s = _UPGREEK.sub(r"\\\1", s)
    s = _TRAILING_BACKSLASH.sub("", s)
    for _ in range(200):
        m = _PAIRED.search(s)
        if m is None:
            break
        g = latex_mod.read_group(s, m.end())
        if g is None:
            break
        left, right = _PAIRS[m.group(1).lower()]
        s = f"{s[: m.start()]}{left}{{{g[0]}}}{right}{s[g[1] :]}"
    return _close_delimiters(_physics(s))


def _close_delimiters(s: str) -> str:
    """`\\right` left without its delimiter (a row's final period taken as punctuation)
    gets the invisible one back."""
    return _DANGLING.sub(lambda m: "\\" + m.group(1) + ".", s)
