"""Display equations: finding them, their printed numbers and labels, the
sentence that leads in and the "where ..." clause after; math cleaned of layout."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from bot.explain import latex
from bot.explain.prose import NUM
from bot.explain.textutil import sentences, upright_greek
from bot.latex import split_display_rows


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


_DISPLAY = re.compile(
    r"\\begin\s*\{(equation|align|gather|multline|eqnarray|flalign|alignat|displaymath|dmath)"
    r"(\*?)\}|\\\[|\$\$"
)
_NUMBERED_ENVS = {"equation", "align", "gather", "multline", "eqnarray", "flalign", "alignat"}
_ROW_ENVS = {"align", "gather", "eqnarray", "flalign", "alignat"}


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


def displays(body: str) -> Iterator[tuple[re.Match[str], str, int]]:
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
    s = NUM.sub(r"\1", s)
    s = upright_greek(s)
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


def labels(s: str) -> list[str]:
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


def find_equations(
    body: str, by_section: bool, sections: list[tuple[int, int, bool, str]]
) -> list[Equation]:
    out: list[Equation] = []
    counters = _Counters(by_section=by_section)
    appendix_at = body.find("\\appendix")
    section_starts = [(p, t) for p, lvl, starred, t in sections if lvl == 1 and not starred]
    si = 0
    current_section = ""
    for m, content, end in displays(body):
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
            keys += labels(row)
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


def intro_sentence(raw_before: str) -> str:
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


AFTER_START = re.compile(r"^\s*[,.;]?\s*(where|with|here|in which|such that|for|whereby)\b", re.I)


def after_clause(raw_after: str) -> str:
    raw_after = raw_after.lstrip()
    chunk = re.split(r"\n\s*\n|\\begin\s*\{|\\\[|\$\$", raw_after)[0]
    chunk = re.sub(r"\s+", " ", chunk).strip()
    if not AFTER_START.match(chunk):
        return ""
    chunk = re.sub(r"^[,.;]\s*", "", chunk)
    # To the end of the sentence (a period followed by space and a capital, or the end).
    m = re.search(r"\.(?=\s+[A-Z\\]|\s*$)", chunk)
    return chunk[: m.start() + 1] if m else chunk


def strip_displays(text: str) -> str:
    return re.sub(
        r"\\begin\s*\{(equation|align|gather|multline|eqnarray)(\*?)\}.*?\\end\s*\{\1\2\}|"
        r"\\\[.*?\\\]|\$\$.*?\$\$",
        " ",
        text,
        flags=re.S,
    )


def displays_inline(content: str) -> str:
    """Display math inside a statement as `$...$`, so one line of prose can carry it."""
    out: list[str] = []
    pos = 0
    for m, inner, end in displays(content):
        env = m.group(1) or ""
        rows = split_display_rows(inner) if env in _ROW_ENVS else [inner]
        math = ", ".join(r for r in (clean_math(r) for r in rows) if r)
        out.append(content[pos : m.start()] + (f" ${math}$ " if math else " "))
        pos = end
    out.append(content[pos:])
    return "".join(out)
