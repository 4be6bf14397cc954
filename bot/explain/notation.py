"""Notation: which symbols an equation uses and what the text says they mean
("let $x$ be ...", "where $y$ is ...")."""

from __future__ import annotations

import functools
import re

from bot.explain import latex
from bot.explain.prose import CITE, NUM, REF
from bot.explain.textutil import shorten, upright_greek
from bot.latex import clean_text as unicode_text

# One symbol: a letter or a control word (\theta, \mathcal{L}), maybe with scripts, primes,
# accents or an argument list: x, x_i, \hat{y}_t, \mathcal{L}_{\rm CE}, f(x), p_\theta(x|z).
_ONE_SYMBOL = re.compile(
    r"(?:\\(?:hat|tilde|bar|vec|dot|ddot|mathbf|mathcal|mathbb|mathrm|mathsf|mathfrak|boldsymbol|"
    r"bm|widehat|widetilde|overline)\s*\{[^{}]{1,12}\}|\\[A-Za-z]+|[A-Za-z])"
    r"(?:'|\^\{?[^{}\s]{1,10}\}?|_\{?[^{}\s]{1,12}\}?)*(?:\([^()]{1,20}\))?"
)
_NOT_SYMBOLS = frozenset(
    re.findall(
        r"\w+",
        "in sim to leq geq le ge cdot times mathrm text operatorname left right big Big quad "
        "qquad sum prod int log exp sin cos lim max min sup inf det dim ker ldots cdots dots "
        "frac sqrt partial nabla infty forall exists",
    )
)
_VERB = (
    r"(?:is|are|denotes?|represents?|stands? for|refers? to|is defined as|are defined as|"
    r"corresponds? to|indicates?|is called|are called)"
)
_ARTICLE = r"(?:the|a|an|our|its|their|each|some|any)\b"
# "$x$ is the ...", "$x$ denotes ...", "Let $x$ be ...", "we denote by $x$ the ..."
GLOBAL_DEF = re.compile(
    r"\$([^$]{1,60})\$\s*,?\s*(?:(?:denotes?|represents?|stands? for|refers? to)\s+|"
    r"(?:is|are)\s+(?:defined as\s+)?(?=" + _ARTICLE + r"))"
    r"|\b[Ll]et\s+\$([^$]{1,60})\$\s+(?:be|denote)\s+"
    r"|\b[Ww]e (?:will )?(?:denote|write)\s+(?:by\s+)?\$([^$]{1,60})\$\s+(?=" + _ARTICLE + r")"
)
# Inside a where-clause, also the elliptic ", $y$ the label" form.
_WHERE_DEF = re.compile(r"\$([^$]{1,60})\$\s*,?\s*(?:" + _VERB + r"\s+|(?=" + _ARTICLE + r"))")


def _symbol_head(sym: str) -> str:
    """`x \\in \\mathbb{R}^d` -> `x`: the symbol being introduced, not its type."""
    head = re.split(
        r"\\in\b|\\sim\b|=|:|\\coloneqq|\\triangleq|\\subseteq|\\subset\b|\\geq?\b|\\leq?\b|>|<",
        sym,
    )[0]
    return head.strip().rstrip(",")


def _is_symbol(sym: str) -> bool:
    m = _ONE_SYMBOL.fullmatch(re.sub(r"\s+", "", sym))
    return m is not None and sym.strip().lstrip("\\") not in _NOT_SYMBOLS


def _meaning_text(raw: str) -> str:
    """A meaning as plain Unicode text: no LaTeX left, inline math turned into symbols."""
    raw = NUM.sub(r"\1", CITE.sub("", raw))
    raw = re.sub(
        r"(?:Eq(?:uation)?s?\.?|Fig(?:ure)?s?\.?|Sec(?:tion)?s?\.?|Table|Appendix)\s*~?\s*\(?\s*"
        r"(?=\\(?:eq|c|C|auto)?ref)",
        "",
        raw,
    )
    raw = REF.sub("", raw)
    raw = re.sub(r"\(\s*\)", "", raw)
    text = unicode_text(raw)
    text = re.sub(r"\\[A-Za-z]+\*?|[{}$]", "", text)
    return re.sub(r"\s+", " ", text).strip(" ,;:")


# Where one meaning ends: a sentence end, a semicolon, or the next symbol being defined
# (", $y$ the label", " and $z$ is ..."), or a new clause (", and let", ", therefore").
_NEXT_SYMBOL = r"(?:,\s*(?:and\s+|while\s+|whereas\s+)?|\s+and\s+)\$[^$]{1,60}\$\s*,?\s*(?:" + _VERB
_MEANING_END = re.compile(
    r"\.(?=\s|$)|;|\n\s*\n|" + _NEXT_SYMBOL + r"|" + _ARTICLE + r")"
    r"|,\s*(?:and\s+)?(?:let|therefore|thus|hence|so that|which|where)\b"
    r"|(?:,\s*|\s+)and\s+\$[^$]*(?:=|\\equiv)[^$]*\$"  # ", and $\alpha = (a, c)$"
    r"|\s+and\s+\$[^$]{1,40}\$\s*,\s*\$"  # " and $\epsilon$, $A$ ...": a list of symbols
    r"|,\s*and\s+(?:the\s+)?[A-Za-z]+\s+\$[^$]{1,40}\$\s+(?:is|are)\b"  # ", and the map $f$ is"
)


def _cut_meaning(raw: str) -> str:
    end = _MEANING_END.search(raw)
    meaning = raw[: end.start()] if end else raw
    return re.sub(r"(?:,|;)?\s*(?:and|while|with|respectively)?\s*$", "", meaning.strip())


def collect_definitions(
    pattern: re.Pattern[str], text: str, limit: int
) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    for m in pattern.finditer(text):
        raw_sym = next((g for g in m.groups() if g is not None), "")
        sym = _symbol_head(raw_sym)
        if not sym or not _is_symbol(sym):
            continue
        meaning = _meaning_text(_cut_meaning(text[m.end() : m.end() + 400]))
        if len(meaning) < 3 or re.match(
            r"(?:a|an|the)?\s*(?:following|same|above|below)\b", meaning
        ):
            continue
        if re.match(r"(?:called|given|defined|as|by|then|also|not|in|on|at|to|of)\b", meaning):
            continue
        out.append((sym.strip(), shorten(meaning, 140), m.start()))
        if len(out) >= limit:
            break
    return out


def definitions(text: str, limit: int = 12) -> list[tuple[str, str]]:
    """(symbol LaTeX, meaning) from explicit definitions: "let $x$ be", "$y$ denotes",
    "$z$ is the ...", "we denote by $w$ the ...". Meanings are plain Unicode text."""
    return [(sym, meaning) for sym, meaning, _pos in collect_definitions(GLOBAL_DEF, text, limit)]


def where_definitions(clause: str, limit: int = 12) -> list[tuple[str, str]]:
    """Definitions in an equation's own "where ..." clause (it may omit the verb)."""
    return [(sym, meaning) for sym, meaning, _pos in collect_definitions(_WHERE_DEF, clause, limit)]


_DIFFERENTIAL = re.compile(
    r"\\(?:mathrm|text|operatorname|mathop)\s*\{\s*d\s*\}|(?:\\[,;!:]|\\quad)\s*d(?=\s*\\?[A-Za-z])"
)
_WORD_GROUP = re.compile(r"\\(?:text[a-z]*|mathrm|operatorname\*?|mbox|textrm)\s*\{[^{}]*\}")


@functools.lru_cache(maxsize=4096)  # the same equations and symbols are compared many times
def symbol_text(eq_latex: str) -> str:
    """The equation normalised for symbol matching: differentials (the d of dλ) and words
    in \\text{}/\\mathrm{} removed, single-character scripts braced, spaces removed
    except where they end a control word."""
    s = _DIFFERENTIAL.sub(" ", upright_greek(eq_latex))
    s = _WORD_GROUP.sub(" ", s)
    s = re.sub(r"([_^])\s*([A-Za-z0-9])", r"\1{\2}", s)
    s = re.sub(r"(\\[A-Za-z]+)\s+(?=[A-Za-z])", r"\1 ", s)
    s = re.sub(r"(?<![A-Za-z])\s+|\s+(?![A-Za-z])", "", s)
    return s


_GREEK = (
    "alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu xi "
    "pi varpi rho varrho sigma varsigma tau upsilon phi varphi chi psi omega Gamma Delta Theta "
    "Lambda Xi Pi Sigma Upsilon Phi Psi Omega"
)
_VARIABLE = re.compile(
    r"(?<![_^\\A-Za-z])(?:\\(?:mathcal|mathbf|mathbb|bm|boldsymbol)\{[A-Za-z]\}|\\(?:"
    + _GREEK.replace(" ", "|")
    + r")(?![A-Za-z])|[A-Za-z](?![A-Za-z]))"
)


_INLINE = re.compile(r"(?<!\\)\$([^$]{1,200})(?<!\\)\$")


def prose_math(body: str) -> str:
    """All inline math of the prose, normalised, for "does the text ever mention x"."""
    return " , ".join(m.group(1) for m in _INLINE.finditer(body))


def _drop_scripts(s: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(s):
        if s[i] in "_^":
            arg = latex.read_arg(s, i + 1)
            if arg is None:
                i += 1
                continue
            i = arg[1]
            while arg[0].startswith("\\") and (g := latex.read_group(s, i)) is not None:
                i = g[1]  # ^\boldsymbol{\mathsf{T}}: the command's argument too
                break
            out.append(" ")
            continue
        out.append(s[i])
        i += 1
    return "".join(out)


def variables(eq_latex: str) -> list[str]:
    """The main symbols of an equation, in order: letters, Greek letters and styled letters
    outside scripts (x, \\theta, \\mathcal{L}); indices and function names are left out."""
    body = symbol_text(eq_latex)
    body = re.sub(
        r"\\(?:" + "|".join(sorted(_NOT_SYMBOLS, key=len, reverse=True)) + r")(?![A-Za-z])",
        " ",
        body,
    )
    body = re.sub(r"\\(?:begin|end)\{[^{}]*\}|\\mathbb\{[A-Za-z]\}", " ", body)
    body = _drop_scripts(body)  # indices and transposes are not the equation's symbols
    seen: list[str] = []
    for m in _VARIABLE.finditer(body):
        if m.group(0) in ("e", "d", "i", "\\pi"):
            continue  # Euler's number, a differential, an index or the imaginary unit
        if m.group(0) not in seen:
            seen.append(m.group(0))
    return seen


def mentions(eq_latex: str, sym: str) -> bool:
    """Does the equation use this symbol as a whole symbol (not inside a longer name,
    a word, or the d of an integral)?"""
    compact = symbol_text(sym)
    if not compact:
        return False
    body = symbol_text(eq_latex)
    pattern = re.escape(compact)
    if compact[0].isalpha():
        pattern = r"(?<![A-Za-z\\])" + pattern
    if compact[-1].isalpha():
        pattern += r"(?![A-Za-z])"
    return re.search(pattern, body) is not None
