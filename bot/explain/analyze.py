"""Read a flat LaTeX document: sections, contributions, key equations, notation.

Everything here is heuristics over text, tuned on how papers are usually written:
the objective is introduced with "we minimize", key equations are numbered and referred
to again, and notation follows an equation in a "where x is ..." clause.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from pylatexenc.latex2text import LatexNodes2Text

from bot.explain import latex
from bot.explain.textutil import (
    clean_text,
    sentences,
    shorten,
    strip_injections,
)
from bot.explain.textutil import upright_greek as _upright_greek
from bot.explain.theorems import RESULT_KINDS, Statement, statements
from bot.latex import clean_text as unicode_text
from bot.latex import split_display_rows

# ------------------------------------------------------------------ results


@dataclass(slots=True)
class Equation:
    latex: str  # display LaTeX, rows joined by " \\ ", labels and alignment removed
    lines: list[str]
    number: str | None  # as printed: "3", "2.1"; None when unnumbered
    key: str | None  # the \label
    keys: list[str] = field(default_factory=list)  # every \label in the display
    intro: str = ""  # the sentence that leads into it (prose, math as $...$)
    after: str = ""  # the clause that follows it ("where ...")
    refs: int = 0
    section: str = ""
    kind: str = ""  # "objective" or "definition"
    score: float = 0.0
    position: int = 0
    glossary: list[tuple[str, str]] = field(default_factory=list)  # (symbol LaTeX, meaning)
    eid: str = ""  # "E1".. for the chosen ones: how the LLM refers to them
    where: str = ""  # the raw "where ..." clause right after it (LaTeX), for the glossary
    statement: str = ""  # heading of the theorem-like statement it sits in, if any
    undefined: list[str] = field(default_factory=list)  # main symbols the paper never defines
    boxed: bool = False  # the author framed it (\\boxed, \\fbox): a pointer to the result


@dataclass(slots=True)
class Section:
    level: int
    title: str
    number: str = ""


@dataclass(slots=True)
class Analysis:
    title: str = ""
    abstract: str = ""
    sections: list[Section] = field(default_factory=list)
    contributions: list[str] = field(default_factory=list)
    equations: list[Equation] = field(default_factory=list)  # chosen, in document order
    equation_count: int = 0
    text: str = ""  # readable full text for an LLM (math kept as LaTeX)
    injections_removed: int = 0
    hidden_removed: int = 0  # passages of hidden text dropped before analysis (source path)
    theorems: list[Statement] = field(default_factory=list)  # every theorem-like statement
    results: list[Statement] = field(default_factory=list)  # the main result(s), best first
    claims: list[str] = field(default_factory=list)  # the abstract's claim sentences (TL;DR)


# -------------------------------------------------------------- prose text

_L2T = LatexNodes2Text(math_mode="verbatim", strict_latex_spaces=True)
_MATH_INLINE = re.compile(r"(?<!\\)\$(?!\$)((?:\\.|[^$\\])+?)(?<!\\)\$|\\\((.+?)\\\)", re.S)
_REF = re.compile(r"~?\\(eqref|ref|cref|Cref|autoref|labelcref)\*?\s*\{([^{}]*)\}")
_CITE = re.compile(r"~?\\(?:cite[a-z]*|nocite)\*?\s*(?:\[[^\]]*\]\s*)*\{[^{}]*\}")
_DROP_WITH_ARG = re.compile(r"\\(?:footnote|label|thanks|vspace|hspace|index|marginpar)\*?\s*")


_NUM = re.compile(r"\\num\s*(?:\[[^\]]*\])?\s*\{([^{}]*)\}")  # siunitx: \num{22028942}


def prose(fragment: str, numbers: dict[str, str] | None = None) -> str:
    """LaTeX prose -> readable text; inline math stays as `$latex$` for the renderer."""
    numbers = numbers or {}
    maths: list[str] = []

    def keep_math(m: re.Match[str]) -> str:
        body = (m.group(1) or m.group(2) or "").strip()
        body = re.sub(r"\\label\s*\{[^{}]*\}", "", body)
        maths.append(body)
        return f"\ue000{len(maths) - 1}\ue001"

    def ref(m: re.Match[str]) -> str:
        keys = [k.strip() for k in m.group(2).split(",")]
        nums = [numbers.get(k, "") for k in keys]
        nums = [n for n in nums if n]
        if not nums:
            return ""
        joined = ", ".join(nums)
        if m.group(1) == "eqref":
            return f" ({joined})"
        if m.group(1) in ("cref", "Cref", "autoref"):
            return f" Eq. ({joined})"
        return f" {joined}"

    s = _upright_greek(_NUM.sub(r"\1", fragment))
    s = _MATH_INLINE.sub(keep_math, s)
    s = _REF.sub(ref, s)
    s = _CITE.sub("", s)
    s = _drop_commands_with_arg(s)
    s = re.sub(r"\\(?:url)\s*\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\\href\s*\{[^{}]*\}\s*\{([^{}]*)\}", r"\1", s)
    try:
        s = _L2T.latex_to_text(s)
    except Exception:  # a lenient parser, but this is hostile input
        s = re.sub(r"\\[A-Za-z@]+\*?|[{}]", "", s)
    s = re.sub(r"\ue000(\d+)\ue001", lambda m: "$" + maths[int(m.group(1))] + "$", s)
    s = clean_text(s)
    return _tidy_residue(re.sub(r"\s+", " ", s).strip())


def _tidy_residue(s: str) -> str:
    """What dropped citations leave behind: "such as , , and ." -> "such as ."."""
    s = re.sub(r"(?:[ \t]*,){2,}[ \t]*(?:(?:and|or)[ \t]+)?", " ", s)
    s = re.sub(r"(?:[ \t]*,)+[ \t]*(?:(?:and|or)[ \t]*)?(?=[.;:)])", "", s)
    s = re.sub(r"\(\s*(?:see|e\.g\.|cf\.|i\.e\.)?\s*[,;]?\s*\)|\[\s*\]", "", s)
    s = re.sub(r"[ \t]+([,.;:])", r"\1", s)
    return re.sub(r"[ \t]{2,}", " ", s).strip(" \t")


def _drop_commands_with_arg(s: str) -> str:
    out: list[str] = []
    pos = 0
    for m in _DROP_WITH_ARG.finditer(s):
        if m.start() < pos:
            continue
        g = latex.read_group(s, m.end())
        if g is None:
            continue
        out.append(s[pos : m.start()])
        pos = g[1]
    out.append(s[pos:])
    return "".join(out)


# ----------------------------------------------------------------- sections

_SECTION = re.compile(r"\\(section|subsection|subsubsection)(\*?)\s*(?:\[[^\]]*\])?\s*(?=\{)")
_SKIP_SECTIONS = re.compile(
    r"acknowledg|reference|bibliograph|appendix|supplementa|checklist|broader impact|"
    r"supporting information|author (?:statement|contribution)|credit\b|data availability|"
    r"code availability|funding|competing interest|conflicts? of interest|ethics statement",
    re.I,
)


def _section_numbers(body: str, secs: list[tuple[int, int, bool, str]]) -> dict[str, str]:
    """Section labels -> printed numbers ("sec:method" -> "3", after \\appendix "A.1"), so
    "In \\cref{sec:method} we ..." reads "In 3 we ..." rather than "In we ..."."""
    appendix_at = body.find("\\appendix")
    numbers: dict[str, str] = {}
    counts = [0, 0, 0]
    in_appendix = False
    for pos, level, starred, _title in secs:
        if starred:
            continue
        if not in_appendix and appendix_at >= 0 and pos > appendix_at:
            in_appendix, counts = True, [0, 0, 0]
        counts[level - 1] += 1
        counts[level:] = [0] * (3 - level)
        top = chr(ord("A") + counts[0] - 1) if in_appendix else str(counts[0])
        number = ".".join([top] + [str(c) for c in counts[1:level]])
        m = _SECTION.match(body, pos)
        g = latex.read_group(body, m.end()) if m else None
        if g is not None:
            label = re.match(r"\s*\\label\s*\{([^{}]*)\}", body[g[1] : g[1] + 300])
            if label:
                numbers[label.group(1).strip()] = number
    return numbers


def _sections(body: str) -> list[tuple[int, int, bool, str]]:
    """(position, level, starred, raw title) for every sectioning command."""
    found = []
    for m in _SECTION.finditer(body):
        g = latex.read_group(body, m.end())
        if g is None:
            continue
        level = {"section": 1, "subsection": 2, "subsubsection": 3}[m.group(1)]
        found.append((m.start(), level, bool(m.group(2)), g[0]))
    return found


# ---------------------------------------------------------------- equations

_DISPLAY = re.compile(
    r"\\begin\s*\{(equation|align|gather|multline|eqnarray|flalign|alignat|displaymath|dmath)"
    r"(\*?)\}|\\\[|\$\$"
)
_NUMBERED_ENVS = {"equation", "align", "gather", "multline", "eqnarray", "flalign", "alignat"}
_ROW_ENVS = {"align", "gather", "eqnarray", "flalign", "alignat"}
_OBJECTIVE_MATH = re.compile(
    r"\\mathcal\s*\{?\s*L|\\(?:arg)?min|\\(?:arg)?max|\\operatorname\*?\s*\{\s*arg|"
    r"\\mathbb\s*\{?\s*E|\\log\s*p|\\ell\b|\\text\s*\{\s*loss|\\mathrm\s*\{\s*loss|ELBO",
)
_OBJECTIVE_WORDS = re.compile(
    r"\b(loss|objective|minimi[sz]e|maximi[sz]e|optimi[sz]|training|likelihood|ELBO|reward|"
    r"cost function|regulari[sz])",
    re.I,
)
_DEFINITION_WORDS = re.compile(
    r"\b(defined?|given by|computed as|formulated|we (?:model|write|obtain|use|compute|get)|"
    r"update|follows|as follows|is:|are:)",
    re.I,
)
_METHOD_SECTION = re.compile(
    r"method|approach|model|framework|formulation|objective|training|our|propos|algorithm|"
    r"architecture|learning|technique|design",
    re.I,
)
_WEAK_SECTION = re.compile(
    r"related|background|preliminar|notation|experiment|evaluation|prior|review|known results|"
    r"setup|set-up|recap",
    re.I,
)


def _end_of_display(body: str, m: re.Match[str]) -> tuple[str, int] | None:
    """The display's content and the index just past its end marker."""
    if m.group(1):
        end_marker = f"\\end{{{m.group(1)}{m.group(2)}}}"
        e = body.find(end_marker, m.end())
        if e < 0:
            e2 = re.compile(r"\\end\s*\{" + re.escape(m.group(1) + m.group(2)) + r"\}").search(
                body, m.end()
            )
            if not e2:
                return None
            return body[m.end() : e2.start()], e2.end()
        return body[m.end() : e], e + len(end_marker)
    marker = "\\]" if m.group(0) == "\\[" else "$$"
    e = body.find(marker, m.end())
    if e < 0:
        return None
    return body[m.end() : e], e + len(marker)


def _displays(body: str) -> Iterator[tuple[re.Match[str], str, int]]:
    """Each closed display in order: its opening match, its content, the index past its end.
    An opening inside an earlier display, or one never closed, is passed over."""
    pos = 0
    for m in _DISPLAY.finditer(body):
        if m.start() < pos:
            continue
        found = _end_of_display(body, m)
        if found is not None:
            yield m, found[0], found[1]
            pos = found[1]


def clean_math(s: str) -> str:
    """Display math without the bits that are about layout, not content."""
    # A web address is never math (papers link equations to their code this way).
    s = re.sub(r"\{\s*(?:https?://|www\.)[^{}\s]*\s*\}|(?:https?://|www\.)[^\s{}]+", "", s)
    s = re.sub(r"\\(?:label|tag\*?)\s*\{[^{}]*\}", "", s)
    s = _NUM.sub(r"\1", s)
    s = _upright_greek(s)
    s = re.sub(r"\\(?:hbox|mbox|textrm|textup)(?![A-Za-z])", r"\\text", s)
    s = re.sub(r"\\m(left|right)(?![A-Za-z])", r"\\\1", s)  # mleftright package
    s = re.sub(r"\\(?:nonumber|notag|displaystyle|allowdisplaybreaks)(?![A-Za-z])", "", s)
    s = _unwrap(s, "boxed")
    s = re.sub(
        r"\\begin\s*\{(?:split|aligned|gathered)\}(?:\[[a-z]\])?|\\end\s*\{(?:split|aligned|gathered)\}",
        "",
        s,
    )
    s = _drop_alignment(s)
    s = re.sub(r"\\qquad|\\quad", " ", s)
    s = re.sub(r"[ \t]*\n[ \t]*", " ", s)
    s = re.sub(r"\s{2,}", " ", s).strip()
    return s.rstrip(",.; ").strip()


def _unwrap(s: str, command: str) -> str:
    """`\\boxed{x}` -> `x` (the frame is layout; its content is the equation)."""
    for _ in range(20):
        m = re.search(r"\\" + command + r"\s*(?=\{)", s)
        if not m:
            break
        g = latex.read_group(s, m.end())
        if g is None:
            break
        s = s[: m.start()] + g[0] + s[g[1] :]
    return s


def _drop_alignment(s: str) -> str:
    """Alignment `&`s go; those inside a matrix, cases or array separate cells and stay."""
    out: list[str] = []
    depth = 0
    for m in re.finditer(r"\\(?:begin|end)\s*\{[^{}]*\}|\\.|[{}&]|[^\\{}&]+", s, re.S):
        tok = m.group(0)
        if tok.startswith(("\\begin", "{")):
            depth += 1
        elif tok.startswith(("\\end", "}")):
            depth -= 1
        elif tok == "&" and depth <= 0:
            tok = " "
        out.append(tok)
    return "".join(out)


def _labels(s: str) -> list[str]:
    return re.findall(r"\\label\s*\{([^{}]*)\}", s)


def _tag(s: str) -> str | None:
    m = re.search(r"\\tag\*?\s*\{([^{}]*)\}", s)
    return m.group(1).strip() if m else None


@dataclass(slots=True)
class _Counters:
    eq: int = 0
    section: int = 0
    appendix: bool = False
    by_section: bool = False

    def next_number(self) -> str:
        self.eq += 1
        if self.by_section:
            prefix = chr(ord("A") + self.section - 1) if self.appendix else str(self.section)
            return f"{prefix}.{self.eq}"
        return str(self.eq)


def _equations(
    body: str, by_section: bool, sections: list[tuple[int, int, bool, str]]
) -> list[Equation]:
    out: list[Equation] = []
    counters = _Counters(by_section=by_section)
    appendix_at = body.find("\\appendix")
    section_starts = [(p, t) for p, lvl, starred, t in sections if lvl == 1 and not starred]
    si = 0
    current_section = ""
    for m, content, end in _displays(body):
        while si < len(section_starts) and section_starts[si][0] < m.start():
            counters.section += 1
            current_section = section_starts[si][1]
            if appendix_at >= 0 and section_starts[si][0] > appendix_at and not counters.appendix:
                counters.appendix = True
                counters.section = 1
            if by_section:
                counters.eq = 0
            si += 1
        env = m.group(1) or "displaymath"
        numbered = env in _NUMBERED_ENVS and not m.group(2)
        rows = split_display_rows(content) if env in _ROW_ENVS else [content]
        numbers: list[str] = []
        keys: list[str] = []
        for row in rows:
            tag = _tag(row)
            if tag is not None:
                numbers.append(tag)
            elif (
                numbered
                and (env not in _ROW_ENVS or not re.search(r"\\no(?:number|tag)", row))
                and (env in _ROW_ENVS or not numbers)
            ):
                numbers.append(counters.next_number())
            keys += _labels(row)
        lines = [clean_math(r) for r in rows]
        lines = [ln for ln in lines if ln]
        if not lines:
            continue
        number = None
        if numbers:
            number = numbers[0] if len(numbers) == 1 else f"{numbers[0]}–{numbers[-1]}"
        out.append(
            Equation(
                latex=" \\\\ ".join(lines),
                lines=lines,
                number=number,
                key=keys[0] if keys else None,
                section=current_section,
                position=m.start(),
            )
        )
        out[-1].boxed = bool(re.search(r"\\(?:boxed|fbox|framebox)(?![A-Za-z])", content))
        out[-1].after = body[end : end + 700]
        out[-1].intro = body[max(0, m.start() - 700) : m.start()]
        # All labels of a multi-row display point to it, so refs to any row count.
        out[-1].keys = keys
    return out


def _intro_sentence(raw_before: str) -> str:
    # Only the current paragraph, and not across another display.
    chunk = re.split(
        r"\n\s*\n|\\end\s*\{[a-z*]+\}|\\\]|\$\$|\\(?:sub)*section\*?\s*\{[^{}]*\}",
        raw_before.rstrip(),
    )[-1]
    chunk = re.sub(r"\\label\s*\{[^{}]*\}", "", chunk)
    chunk = chunk.strip()
    if not chunk:
        return ""
    parts = sentences(re.sub(r"\s+", " ", chunk))
    return parts[-1] if parts else ""


_AFTER_START = re.compile(r"^\s*[,.;]?\s*(where|with|here|in which|such that|for|whereby)\b", re.I)


def _after_clause(raw_after: str) -> str:
    raw_after = raw_after.lstrip()
    chunk = re.split(r"\n\s*\n|\\begin\s*\{|\\\[|\$\$", raw_after)[0]
    chunk = re.sub(r"\s+", " ", chunk).strip()
    if not _AFTER_START.match(chunk):
        return ""
    chunk = re.sub(r"^[,.;]\s*", "", chunk)
    # To the end of the sentence (a period followed by space and a capital, or the end).
    m = re.search(r"\.(?=\s+[A-Z\\]|\s*$)", chunk)
    return chunk[: m.start() + 1] if m else chunk


# ---------------------------------------------------------------- glossary

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
_GLOBAL_DEF = re.compile(
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
    raw = _NUM.sub(r"\1", _CITE.sub("", raw))
    raw = re.sub(
        r"(?:Eq(?:uation)?s?\.?|Fig(?:ure)?s?\.?|Sec(?:tion)?s?\.?|Table|Appendix)\s*~?\s*\(?\s*"
        r"(?=\\(?:eq|c|C|auto)?ref)",
        "",
        raw,
    )
    raw = _REF.sub("", raw)
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


def _collect(pattern: re.Pattern[str], text: str, limit: int) -> list[tuple[str, str, int]]:
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
    return [(sym, meaning) for sym, meaning, _pos in _collect(_GLOBAL_DEF, text, limit)]


def where_definitions(clause: str, limit: int = 12) -> list[tuple[str, str]]:
    """Definitions in an equation's own "where ..." clause (it may omit the verb)."""
    return [(sym, meaning) for sym, meaning, _pos in _collect(_WHERE_DEF, clause, limit)]


_DIFFERENTIAL = re.compile(
    r"\\(?:mathrm|text|operatorname|mathop)\s*\{\s*d\s*\}|(?:\\[,;!:]|\\quad)\s*d(?=\s*\\?[A-Za-z])"
)
_WORD_GROUP = re.compile(r"\\(?:text[a-z]*|mathrm|operatorname\*?|mbox|textrm)\s*\{[^{}]*\}")


@functools.lru_cache(maxsize=4096)  # the same equations and symbols are compared many times
def _symbol_text(eq_latex: str) -> str:
    """The equation normalised for symbol matching: differentials (the d of dλ) and words
    in \\text{}/\\mathrm{} removed, single-character scripts braced, spaces removed
    except where they end a control word."""
    s = _DIFFERENTIAL.sub(" ", _upright_greek(eq_latex))
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


def _prose_math(body: str) -> str:
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
    body = _symbol_text(eq_latex)
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


def _mentions(eq_latex: str, sym: str) -> bool:
    """Does the equation use this symbol as a whole symbol (not inside a longer name,
    a word, or the d of an integral)?"""
    compact = _symbol_text(sym)
    if not compact:
        return False
    body = _symbol_text(eq_latex)
    pattern = re.escape(compact)
    if compact[0].isalpha():
        pattern = r"(?<![A-Za-z\\])" + pattern
    if compact[-1].isalpha():
        pattern += r"(?![A-Za-z])"
    return re.search(pattern, body) is not None


# ------------------------------------------------------------ contributions

_CONTRIB_CUE = re.compile(
    r"contributions?\s+(?:of this (?:paper|work)\s+)?(?:are|is|include|as follows)|"
    r"(?:our|main|key)\s+contributions?|we (?:make|summari[sz]e|highlight) the following|"
    r"in summary,? we|to summari[sz]e,? (?:we|our)",
    re.I,
)
_LIST = re.compile(r"\\begin\s*\{(itemize|enumerate|description)\}")
_CLAIM = re.compile(
    r"\b(?:we|this paper|this work|our (?:method|approach|model))\s+"
    r"(?:propose|introduce|present|show|demonstrate|develop|design|achieve|establish|prove)",
    re.I,
)


def _list_items(body: str, start: int) -> list[str]:
    m = _LIST.search(body, start)
    if not m:
        return []
    end = body.find(f"\\end{{{m.group(1)}}}", m.end())
    if end < 0:
        return []
    content = body[m.end() : end]
    items = re.split(r"\\item\s*(?:\[[^\]]*\])?", content)[1:]
    return [i.strip() for i in items if i.strip()]


def _contributions(body: str, abstract: str, numbers: dict[str, str]) -> list[str]:
    for cue in _CONTRIB_CUE.finditer(body):
        items = _list_items(body, cue.end())
        lm = _LIST.search(body, cue.end())
        if items and lm and lm.start() - cue.end() < 900:
            return [shorten(prose(i, numbers), 320) for i in items[:6]]
    # No list: the claims the introduction makes ("we propose ...").
    intro_end = len(body)
    secs = _sections(body)
    if len(secs) > 1:
        intro_end = secs[1][0]
    found = [s for s in sentences(re.sub(r"\s+", " ", body[:intro_end])) if _CLAIM.search(s)]
    claims = [shorten(prose(s, numbers), 320) for s in found[:4]]
    if not claims and abstract:
        claims = [shorten(s, 320) for s in sentences(abstract) if _CLAIM.search(s)]
    return claims[:4]


# ------------------------------------------------------------------- scoring


_POINTER_WORDS = re.compile(
    r"\bmain (?:result|theorem|contribution|equation|formula|finding)s?\b"
    r"|\bour (?:main |key |central )?(?:objective|loss|result|formula|estimator|bound|method)\b"
    r"|\bwe propose\b|\bkey (?:result|"
    r"equation)\b|\bcentral (?:result|equation)\b|\bthe result of this (?:work|paper)\b",
    re.I,
)
_RECALL_WORDS = re.compile(
    r"\b(?:we|let us) (?:first )?recall\b|\brecall that\b|\bwell[- ]known\b|\bclassical(?:ly)?\b|"
    r"\bit is known\b|\bstandard\b|\bas (?:shown|proved|derived|introduced) (?:in|by)\b|"
    r"\b(?:introduced|proposed|derived|obtained|proved|shown) (?:in|by)\s*(?:\\cite|\[|[A-Z])|"
    r"\bfollowing\s+(?:\\cite|[A-Z][a-z]+ et al)|\bprevious(?:ly)? (?:work|result)|\bprior work\b",
    re.I,
)


_DERIVED = re.compile(
    r"\b(?:it follows that|we (?:obtain|find|arrive at|get|conclude)|which (?:gives|yields)|"
    r"this (?:gives|yields)|is then (?:just|simply|given by)|(?:by )?(?:plugging|substituting|"
    r"combining|inserting))\b",
    re.I,
)
_PROVES = re.compile(
    r"\b(?:which|this) (?:proves|establishes|completes the proof of) (?:our|the)\b|"
    r"\bour (?:main )?(?:result|proposition|claim)\b",
    re.I,
)
_HYPOTHETICAL = re.compile(r"\bwould (?:be|have|give|yield)\b|\bif instead\b", re.I)
_STOP = frozenset(
    re.findall(
        r"\w+",
        "about above after again along also among another based being below between both could "
        "during each every first from further given having here into itself many more most much "
        "other over same several should since some such than that their them then there these "
        "they this those through thus under using very where which while with within without "
        "would paper method approach results result show shows shown propose proposed present "
        "equation equations following",
    )
)


def _content_words(text: str) -> set[str]:
    words = re.findall(r"[A-Za-z][a-z]{4,}", re.sub(r"\$[^$]*\$|\\[A-Za-z]+", " ", text))
    return {w.lower() for w in words} - _STOP


def _score(
    eq: Equation,
    refs: int,
    intro: str,
    after: str,
    appendix_at: int,
    *,
    pointed: int = 0,
    in_main: bool = False,
    claim_words: set[str] | None = None,
) -> float:
    score = 0.0
    # An author who boxes an equation is pointing at it.
    if eq.boxed:
        score += 4.0
    if _DERIVED.search(intro):
        score += 1.0
        if len(_REF.findall(intro)) >= 2:
            score += 1.0  # it brings several earlier equations together: a culmination
    if _PROVES.search(after[:200]):
        score += 2.0
    if _HYPOTHETICAL.search(intro):
        score -= 1.5
    if claim_words:
        # The sentence introducing it talks about what the abstract claims.
        score += min(3, len(_content_words(intro) & claim_words)) * 0.75
    if eq.number:
        score += 1.0
    score += min(refs, 4) * 1.0
    words = intro + " " + after[:200]
    if _OBJECTIVE_MATH.search(eq.latex) or _OBJECTIVE_WORDS.search(intro):
        eq.kind = "objective"
        score += 3.0 if _OBJECTIVE_WORDS.search(words) else 1.5
    elif _DEFINITION_WORDS.search(intro):
        eq.kind = "definition"
        score += 1.0
    if _AFTER_START.match(after or ""):
        score += 1.0
    # What the paper itself points at as its result, and what it only quotes.
    if pointed:  # 2: by the abstract, contributions or a "main result" sentence; 1: conclusion
        score += 4.0 if pointed == 2 else 2.5
    if _POINTER_WORDS.search(intro):
        score += 2.5
    if in_main:
        score += 3.0
    elif eq.statement:
        score += 1.0
    if _RECALL_WORDS.search(intro) or "\\cite" in intro or "\\cite" in after[:150]:
        score -= 3.0
    if _METHOD_SECTION.search(eq.section) and not _WEAK_SECTION.search(eq.section):
        score += 1.0
    elif _WEAK_SECTION.search(eq.section):
        score -= 2.0
    if appendix_at >= 0 and eq.position > appendix_at:
        score -= 3.0
    size = len(eq.latex)
    if size < 10:
        score -= 3.0
    elif size > 400:
        score -= 1.5
    if len(eq.lines) > 4:
        score -= 1.0
    return score


def choose(equations: list[Equation], most: int = 4, least: int = 2) -> list[Equation]:
    """The 2-4 equations worth showing, in document order."""
    if not equations:
        return []
    ranked = sorted(equations, key=lambda e: (-e.score, e.position))
    best = ranked[0].score
    floor = max(1.0, min(best * 0.4, 3.0))
    chosen = [e for e in ranked[:most] if e.score >= floor]
    for e in ranked:
        if len(chosen) >= min(least, len(ranked)):
            break
        if e not in chosen and e.score > -2:
            chosen.append(e)
    chosen.sort(key=lambda e: e.position)
    for i, e in enumerate(chosen, 1):
        e.eid = f"E{i}"
    return chosen


# ------------------------------------------------------------------ main


def _strip_floats(body: str) -> str:
    body = re.sub(
        r"\\begin\s*\{(figure|table|wrapfigure|algorithm|tikzpicture|lstlisting|verbatim|"
        r"minted)(\*?)\}.*?\\end\s*\{\1\2\}",
        " ",
        body,
        flags=re.S,
    )
    body = re.sub(
        r"\\begin\s*\{thebibliography\}.*?(\\end\s*\{thebibliography\}|\Z)", "", body, flags=re.S
    )
    return body


_CONCLUSION = re.compile(r"conclu|discussion|summary|outlook|final remarks|closing", re.I)
_INTRO = re.compile(r"intro|overview|motivation", re.I)


def _spans(body: str, secs: list[tuple[int, int, bool, str]], pattern: re.Pattern[str]) -> str:
    """The text of the level-1 sections whose title matches."""
    tops = [(p, t) for p, lvl, _s, t in secs if lvl == 1]
    out = []
    for k, (p, t) in enumerate(tops):
        if pattern.search(t):
            end = tops[k + 1][0] if k + 1 < len(tops) else len(body)
            out.append(body[p:end])
    return "\n".join(out)


def _pointed_labels(
    body: str, raw_abstract: str, secs: list[tuple[int, int, bool, str]]
) -> tuple[set[str], set[str]]:
    """Labels the paper points at as its result: (strongly) referenced from the abstract,
    from the introduction's contribution list or from a sentence that says "main result",
    "our objective", "we propose"; and (weakly) referenced from the conclusion."""
    places = [raw_abstract]
    intro = _spans(body, secs, _INTRO)
    if not intro:
        tops = [p for p, lvl, _s, _t in secs if lvl == 1]
        intro = body[: tops[1]] if len(tops) > 1 else ""
    for cue in _CONTRIB_CUE.finditer(intro):
        lm = _LIST.search(intro, cue.end())
        if lm and lm.start() - cue.end() < 900:
            places.append("\n".join(_list_items(intro, cue.end())))
    for sentence in sentences(re.sub(r"\s+", " ", body)):
        if _POINTER_WORDS.search(sentence) and _REF.search(sentence):
            places.append(sentence)

    def labels(texts: list[str]) -> set[str]:
        found: set[str] = set()
        for place in texts:
            for m in _REF.finditer(place):
                found.update(k.strip() for k in m.group(2).split(",") if k.strip())
        return found

    strong = labels(places)
    return strong, labels([_spans(body, secs, _CONCLUSION)]) - strong


def _strip_displays(text: str) -> str:
    return re.sub(
        r"\\begin\s*\{(equation|align|gather|multline|eqnarray)(\*?)\}.*?\\end\s*\{\1\2\}|"
        r"\\\[.*?\\\]|\$\$.*?\$\$",
        " ",
        text,
        flags=re.S,
    )


def _displays_inline(content: str) -> str:
    """Display math inside a statement as `$...$`, so one line of prose can carry it."""
    out: list[str] = []
    pos = 0
    for m, inner, end in _displays(content):
        env = m.group(1) or ""
        rows = split_display_rows(inner) if env in _ROW_ENVS else [inner]
        math = ", ".join(r for r in (clean_math(r) for r in rows) if r)
        out.append(content[pos : m.start()] + (f" ${math}$ " if math else " "))
        pos = end
    out.append(content[pos:])
    return "".join(out)


_MAIN_CUE = re.compile(r"\bmain\b|\bcentral\b|\bprincipal\b|\bkey\b", re.I)


def _title_terms(title: str) -> set[str]:
    """What a paper's title is about: its acronyms and longer words."""
    words = re.findall(r"[A-Za-z][A-Za-z-]+", title)
    return {w.lower() for w in words if (w.isupper() and len(w) >= 2) or len(w) >= 6} - _STOP


def _score_statement(
    st: Statement,
    pointed: tuple[set[str], set[str]],
    body: str,
    intro_end: int,
    appendix_at: int,
    title_terms: set[str] | None = None,
) -> float:
    score = {"theorem": 3.0, "proposition": 2.0, "corollary": 1.0, "claim": 0.5}.get(st.kind, 0.0)
    if _MAIN_CUE.search(st.name + " " + st.title + " " + (st.label or "")):
        score += 5.0
    if title_terms and st.title:
        # "Theorem (PFR)" in a paper titled "PFR Blueprint": named after what the paper is about.
        note = {w.lower() for w in re.findall(r"[A-Za-z][A-Za-z-]+", st.title)}
        shared = note & title_terms
        if shared:
            score += 4.0 if note <= title_terms | _STOP | {"of", "the", "a"} else 2.0
    if st.label and st.label in pointed[0]:
        score += 3.0
    elif st.label and st.label in pointed[1]:
        score += 1.0
    lead = body[max(0, st.position - 300) : st.position]
    if _POINTER_WORDS.search(lead.split("\n\n")[-1]):
        score += 3.0
    if st.position < intro_end:
        score += 2.0  # math papers state their main theorem in the introduction
    if (
        "\\cite" in st.title
        or _RECALL_WORDS.search(lead[-200:])
        or _WEAK_SECTION.search(st.section)
    ):
        score -= 4.0  # a quoted, known result
    if appendix_at >= 0 and st.position > appendix_at:
        score -= 3.0
    return score


def _main_results(
    stmts: list[Statement],
    pointed: tuple[set[str], set[str]],
    body: str,
    secs: list[tuple[int, int, bool, str]],
    title: str = "",
) -> list[Statement]:
    tops = [p for p, lvl, _s, _t in secs if lvl == 1]
    terms = _title_terms(title)
    intro_end = tops[1] if len(tops) > 1 else len(body) // 4
    appendix_at = body.find("\\appendix")
    ranked = []
    for st in stmts:
        if st.kind not in RESULT_KINDS:
            continue
        st.score = _score_statement(st, pointed, body, intro_end, appendix_at, terms)
        ranked.append(st)
    ranked.sort(key=lambda st: (-st.score, st.position))
    # A statement is the paper's result when it is named so, stated in the introduction or
    # pointed at; a technical lemma deep in the body is not, however often it is used.
    floor = 4.0
    if not ranked or ranked[0].score < floor:
        return []
    best = ranked[0].score
    return [st for st in ranked[:3] if st.score >= max(floor, best - 3.0)]


_CLAIM_VERBS = re.compile(
    r"\b(?:we|this (?:paper|work|article|note|letter|review|study|project|report)|the (?:project|"
    r"package|library|method|algorithm|framework)|our (?:results?|method|approach|model|analysis|"
    r"work|framework|experiments?|package|code))\s+(?:also\s+|further\s+|then\s+|here\s+|first\s+|"
    r"successfully\s+|have\s+|has\s+)?"
    r"(?:show|prove|propose|obtain|introduce|demonstrate|present|establish|derive|find|found|"
    r"achieve|develop|compute|construct|give|provide|report|identify|reveal|improve|"
    r"outperform|reduce|extend|resolve|settle|confirm|determine|suggest|summari[sz]e|describe)"
    r"|\b(?:is|are) shown to\b|\bwe (?:can )?(?:now )?(?:show|prove)\b",
    re.I,
)
_NUMBERS = re.compile(r"\d+(?:\.\d+)?\s*(?:%|×|x\b|times|fold)|\b\d+(?:[.,]\d+)?\b")
_BACKGROUND = re.compile(
    r"^(?:recent(?:ly)?|however|although|while|despite|in recent|over the past|traditionally|"
    r"it is (?:well )?known|existing|previous|prior|many|most|the last)\b|\bremains? (?:an? )?"
    r"(?:open|challenging|unclear|unknown)|\bhas been\b|\bhave been\b|\bis lost\b|\bhave seen\b",
    re.I,
)


def _numbers_in(sentence: str) -> bool:
    """Numbers a reader sees: in the prose, or math that is only a number ($4694$)."""

    def keep_numeric(m: re.Match[str]) -> str:
        inner = re.sub(r"\\num\s*|[{}\s]|\\,", "", m.group(1))
        return inner if re.fullmatch(r"[\d.,%]+", inner) else " "

    return bool(_NUMBERS.search(re.sub(r"\$([^$]*)\$", keep_numeric, sentence)))


def claim_sentences(abstract: str, most: int = 2, *, strict: bool = False) -> list[str]:
    """The abstract's sentences that say what the paper does: "we show/prove/propose",
    results with numbers; background sentences rank last. In the abstract's order.
    `strict`: only sentences that make a claim (for text other than an abstract)."""
    parts = sentences(abstract)
    scored = []
    for k, sent in enumerate(parts):
        score = 0.0
        if _CLAIM_VERBS.search(sent):
            score += 3.0
        if re.search(r"\b(?:our|we)\b", sent, re.I):
            score += 1.0
        if _numbers_in(sent):
            score += 1.5
        if _BACKGROUND.search(sent):
            score -= 2.0
        scored.append((score, k))
    best = sorted(scored, key=lambda x: (-x[0], x[1]))[:most]
    if strict:
        return [parts[k] for sc, k in sorted(best, key=lambda x: x[1]) if sc >= 3.0]
    if not best or best[0][0] <= 0:
        return parts[:most]
    return [parts[k] for sc, k in sorted(best, key=lambda x: x[1]) if sc > 0] or parts[:most]


def analyze(body: str, preamble: str = "", *, abstract_hint: str = "") -> Analysis:
    """Read the (flat, macro-expanded) document body."""
    body = clean_text(body)
    body, removed = strip_injections(body)
    body = _strip_floats(body)
    result = Analysis(injections_removed=removed)

    t = re.search(r"\\title\s*(?:\[[^\]]*\])?\s*(?=\{)", preamble + body)
    if t:
        g = latex.read_group(preamble + body, t.end())
        if g:
            result.title = prose(g[0])
    a = re.search(r"\\begin\s*\{abstract\}(.*?)\\end\s*\{abstract\}", body, re.S)
    raw_abstract = a.group(1) if a else ""

    secs = _sections(body)
    by_section = bool(
        re.search(r"\\numberwithin\s*\{equation\}\s*\{section\}", preamble + body)
        or re.search(r"\\counterwithin\s*\{equation\}\s*\{section\}", preamble + body)
    )
    equations = _equations(body, by_section, secs)
    result.equation_count = len(equations)
    stmts = statements(body, preamble)

    # Label -> printed number, for "\eqref{eq:loss}" -> "(3)" in prose.
    numbers: dict[str, str] = {}
    for eq in equations:
        for key in eq.keys:
            if eq.number:
                numbers[key] = eq.number.split("–")[0]
    for st in stmts:
        if st.label and st.number:
            numbers[st.label] = st.number
    for key, number in _section_numbers(body, secs).items():
        numbers.setdefault(key, number)
    ref_counts: dict[str, int] = {}
    for m in _REF.finditer(body):
        for k in m.group(2).split(","):
            ref_counts[k.strip()] = ref_counts.get(k.strip(), 0) + 1

    pointed = _pointed_labels(body, raw_abstract, secs)
    results = _main_results(stmts, pointed, body, secs, result.title)
    main = results[0] if results else None
    starts = [st.position for st in stmts]  # in order, never nested
    for eq in equations:
        k = bisect.bisect_left(starts, eq.position) - 1
        if k >= 0 and eq.position < stmts[k].end:
            eq.statement = stmts[k].heading

    claim_words = _content_words(" ".join(claim_sentences(prose(raw_abstract))))
    appendix_at = body.find("\\appendix")
    for eq in equations:
        keys = eq.keys
        raw_intro, raw_after = eq.intro, eq.after
        intro = _intro_sentence(raw_intro)
        after = _after_clause(raw_after)
        eq.refs = sum(ref_counts.get(k, 0) for k in keys)
        in_main = main is not None and main.position < eq.position < main.end
        eq.score = _score(
            eq,
            eq.refs,
            intro,
            after,
            appendix_at,
            pointed=2
            if any(k in pointed[0] for k in keys)
            else int(any(k in pointed[1] for k in keys)),
            in_main=in_main,
            claim_words=claim_words,
        )
        eq.intro, eq.after, eq.where = intro, after, after

    chosen = choose(equations)
    glossary_all = _collect(_GLOBAL_DEF, body, 400) if chosen else []
    mentioned = _prose_math(body) if chosen else ""
    explained: set[str] = set()
    for eq in chosen:
        local = [(s, m) for s, m in where_definitions(eq.where) if _mentions(eq.latex, s)]
        # A symbol defined more than once (papers reuse letters): the definition nearest
        # to the equation is the one that speaks about it.
        nearest: dict[str, tuple[int, str, str]] = {}
        for sym, meaning, pos in glossary_all:
            if _mentions(eq.latex, sym):
                key = _symbol_text(sym)
                distance = abs(pos - eq.position)
                if key not in nearest or distance < nearest[key][0]:
                    nearest[key] = (distance, sym, meaning)
        local += [(sym, meaning) for _d, sym, meaning in sorted(nearest.values())]
        entries: list[tuple[str, str]] = []
        for sym, meaning in local:
            key = _symbol_text(sym)
            if key in explained:
                continue  # once per explanation: the first equation using it explains it
            explained.add(key)
            entries.append((sym, meaning))
            if len(entries) >= 6:
                break
        eq.glossary = entries
        # Said plainly rather than guessed: main symbols of the equation that the text never
        # mentions at all (a symbol the prose talks about may be defined in words we miss).
        # The left-hand side is what the equation itself defines.
        lhs = re.split(r"=|\\equiv|\\coloneqq|\\triangleq|:=|\\approx|\\propto", eq.latex)[0]
        eq.undefined = []
        for v in variables(eq.latex):
            if v not in eq.undefined and not _mentions(mentioned, v) and not _mentions(lhs, v):
                eq.undefined.append(v)
        eq.undefined = eq.undefined[:4]
        eq.intro = shorten(prose(eq.intro, numbers), 400)
        eq.after = shorten(prose(eq.after, numbers), 400)
    result.equations = chosen

    # Careful prose for the statements shown; a cheap reading for the rest (papers with
    # hundreds of lemmas exist).
    for st in stmts:
        if st in results:
            st.text = shorten(prose(_displays_inline(st.latex), numbers), 900)
        else:
            st.text = shorten(re.sub(r"\s+", " ", _quick_prose(st.latex, numbers)).strip(), 900)
    result.theorems = stmts
    result.results = [st for st in results if st.text]

    result.abstract = prose(raw_abstract, numbers) if raw_abstract else abstract_hint
    if result.abstract:
        result.claims = claim_sentences(result.abstract)
    else:
        # No abstract (a short note): the introduction's own claims ("here we report ...").
        tops = [p for p, lvl, _s, _t in secs if lvl == 1]
        intro_end = tops[1] if len(tops) > 1 else len(body)
        intro_text = _quick_prose(_strip_displays(body[: min(intro_end, 20_000)]), numbers)
        result.claims = claim_sentences(re.sub(r"\s+", " ", intro_text), strict=True)
    result.contributions = _contributions(body, result.abstract, numbers)

    appendix = appendix_at if appendix_at >= 0 else len(body)
    counter = 0
    for pos, level, starred, title in secs:
        if pos > appendix or level > 2:
            continue
        name = prose(title, numbers)
        if not name or (level == 1 and _SKIP_SECTIONS.search(name)):
            continue
        if level == 1 and not starred:
            counter += 1
        result.sections.append(
            Section(level, shorten(name, 90), str(counter) if not starred else "")
        )
    result.text = readable_text(body, numbers)
    return result


def readable_text(body: str, numbers: dict[str, str], limit: int = 400_000) -> str:
    """The document as plain text for an LLM: headings, prose, display math as LaTeX."""
    # The abstract goes to the model once, from the metadata; appendices (proofs, extra
    # experiments) go before anything else is cut, so the conclusion survives truncation.
    body = re.sub(r"\\begin\s*\{abstract\}.*?\\end\s*\{abstract\}", "\n", body, flags=re.S)
    appendix = re.search(r"\\appendix(?![A-Za-z])|\\begin\s*\{appendices\}", body)
    if appendix:
        body = body[: appendix.start()]
    body = _drop_sections(body, _SKIP_SECTIONS)
    body = body[: limit * 2]
    body = _headings(body)
    pieces: list[str] = []
    pos = 0
    for m, content, end in _displays(body):
        pieces.append(_quick_prose(body[pos : m.start()], numbers))
        label = _labels(content)
        num = numbers.get(label[0], "") if label else ""
        pieces.append("\n$$ " + clean_math(content) + " $$" + (f" ({num})" if num else "") + "\n")
        pos = end
    pieces.append(_quick_prose(body[pos:], numbers))
    text = "".join(pieces)
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r"\n\s*\n(\s*\n)+", "\n\n", text)
    return text.strip()[:limit]


def _quick_prose(s: str, numbers: dict[str, str]) -> str:
    """Cheap prose cleanup for long text (pylatexenc is too slow for whole papers)."""

    def ref(m: re.Match[str]) -> str:
        nums = [numbers.get(k.strip(), "") for k in m.group(2).split(",")]
        joined = ", ".join(n for n in nums if n)
        if not joined:
            return ""
        return f" ({joined})" if m.group(1) == "eqref" else f" {joined}"

    s = _REF.sub(ref, s)
    s = _NUM.sub(r"\1", s)
    s = _CITE.sub("", s)
    s = _drop_commands_with_arg(s)
    s = re.sub(
        r"\\(?:emph|textbf|textit|text|textsc|texttt|underline|mbox)\s*\{([^{}]*)\}", r"\1", s
    )
    s = re.sub(r"\\(?:item)\b", "\n- ", s)
    s = re.sub(r"\\(?:begin|end)\s*\{[^{}]*\}(?:\[[^\]]*\])?", "\n", s)
    s = re.sub(
        r"\\(?:maketitle|centering|noindent|newpage|clearpage|appendix|small|footnotesize)\b", "", s
    )
    s = _tidy_residue(s.replace("~", " ").replace("``", '"').replace("''", '"'))
    # Whatever markup is left outside math is residue: keep the words, drop the commands.
    parts = re.split(r"((?<!\\)\$[^$]*(?<!\\)\$)", s)
    for k in range(0, len(parts), 2):
        parts[k] = re.sub(r"\\[A-Za-z@]+\*?|(?<!\\)[{}]", "", parts[k])
    return "".join(parts)


def _headings(body: str) -> str:
    """`\\section{Title}` -> a "## Title" line of its own."""
    out: list[str] = []
    pos = 0
    for m in _SECTION.finditer(body):
        g = latex.read_group(body, m.end())
        if m.start() < pos or g is None:
            continue
        mark = "##" if m.group(1) == "section" else "###"
        out += [body[pos : m.start()], f"\n\n{mark} {g[0].strip()}\n"]
        pos = g[1]
    out.append(body[pos:])
    return "".join(out)


def _drop_sections(body: str, pattern: re.Pattern[str]) -> str:
    """The body without the level-1 sections whose title matches (references, thanks)."""
    secs = [(p, t) for p, lvl, _s, t in _sections(body) if lvl == 1]
    cuts = []
    for k, (p, t) in enumerate(secs):
        if pattern.search(t):
            cuts.append((p, secs[k + 1][0] if k + 1 < len(secs) else len(body)))
    for start, end in reversed(cuts):
        body = body[:start] + body[end:]
    return body
