"""Sectioning commands of a flat LaTeX body: where sections start, their printed
numbers, their text, and the sections a reader never needs."""

from __future__ import annotations

import re

from bot.explain import latex

_SECTION = re.compile(r"\\(section|subsection|subsubsection)(\*?)\s*(?:\[[^\]]*\])?\s*(?=\{)")
SKIP_SECTIONS = re.compile(
    r"acknowledg|reference|bibliograph|appendix|supplementa|checklist|broader impact|"
    r"supporting information|author (?:statement|contribution)|credit\b|data availability|"
    r"code availability|funding|competing interest|conflicts? of interest|ethics statement",
    re.I,
)


def section_numbers(body: str, secs: list[tuple[int, int, bool, str]]) -> dict[str, str]:
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


def find_sections(body: str) -> list[tuple[int, int, bool, str]]:
    """(position, level, starred, raw title) for every sectioning command."""
    found = []
    for m in _SECTION.finditer(body):
        g = latex.read_group(body, m.end())
        if g is None:
            continue
        level = {"section": 1, "subsection": 2, "subsubsection": 3}[m.group(1)]
        found.append((m.start(), level, bool(m.group(2)), g[0]))
    return found


def section_text(
    body: str, secs: list[tuple[int, int, bool, str]], pattern: re.Pattern[str]
) -> str:
    """The text of the level-1 sections whose title matches."""
    tops = [(p, t) for p, lvl, _s, t in secs if lvl == 1]
    out = []
    for k, (p, t) in enumerate(tops):
        if pattern.search(t):
            end = tops[k + 1][0] if k + 1 < len(tops) else len(body)
            out.append(body[p:end])
    return "\n".join(out)


def headings_as_lines(body: str) -> str:
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


def drop_sections(body: str, pattern: re.Pattern[str]) -> str:
    """The body without the level-1 sections whose title matches (references, thanks)."""
    secs = [(p, t) for p, lvl, _s, t in find_sections(body) if lvl == 1]
    cuts = []
    for k, (p, t) in enumerate(secs):
        if pattern.search(t):
            cuts.append((p, secs[k + 1][0] if k + 1 < len(secs) else len(body)))
    for start, end in reversed(cuts):
        body = body[:start] + body[end:]
    return body
