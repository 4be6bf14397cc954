"""Read a flat LaTeX document: sections, contributions, key equations, notation.

Everything here is heuristics over text, tuned on how papers are usually written:
the objective is introduced with "we minimize", key equations are numbered and referred
to again, and notation follows an equation in a "where x is ..." clause.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

from bot.explain import latex
from bot.explain.claims import claim_sentences, contributions
from bot.explain.equations import (
    Equation,
    after_clause,
    clean_math,
    displays,
    displays_inline,
    find_equations,
    intro_sentence,
    labels,
    strip_displays,
)
from bot.explain.notation import (
    GLOBAL_DEF,
    collect_definitions,
    mentions,
    prose_math,
    symbol_text,
    variables,
    where_definitions,
)
from bot.explain.prose import REF, prose, quick_prose
from bot.explain.ranking import (
    choose,
    content_words,
    main_results,
    pointed_labels,
    score_equation,
)
from bot.explain.sections import (
    SKIP_SECTIONS,
    drop_sections,
    find_sections,
    headings_as_lines,
    section_numbers,
)
from bot.explain.textutil import clean_text, shorten, strip_injections
from bot.explain.theorems import Statement, statements

# ------------------------------------------------------------------ results


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

    secs = find_sections(body)
    by_section = bool(
        re.search(r"\\numberwithin\s*\{equation\}\s*\{section\}", preamble + body)
        or re.search(r"\\counterwithin\s*\{equation\}\s*\{section\}", preamble + body)
    )
    equations = find_equations(body, by_section, secs)
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
    for key, number in section_numbers(body, secs).items():
        numbers.setdefault(key, number)
    ref_counts: dict[str, int] = {}
    for m in REF.finditer(body):
        for k in m.group(2).split(","):
            ref_counts[k.strip()] = ref_counts.get(k.strip(), 0) + 1

    pointed = pointed_labels(body, raw_abstract, secs)
    results = main_results(stmts, pointed, body, secs, result.title)
    main = results[0] if results else None
    starts = [st.position for st in stmts]  # in order, never nested
    for eq in equations:
        k = bisect.bisect_left(starts, eq.position) - 1
        if k >= 0 and eq.position < stmts[k].end:
            eq.statement = stmts[k].heading

    claim_words = content_words(" ".join(claim_sentences(prose(raw_abstract))))
    appendix_at = body.find("\\appendix")
    for eq in equations:
        keys = eq.keys
        raw_intro, raw_after = eq.intro, eq.after
        intro = intro_sentence(raw_intro)
        after = after_clause(raw_after)
        eq.refs = sum(ref_counts.get(k, 0) for k in keys)
        in_main = main is not None and main.position < eq.position < main.end
        eq.score = score_equation(
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
    glossary_all = collect_definitions(GLOBAL_DEF, body, 400) if chosen else []
    mentioned = prose_math(body) if chosen else ""
    explained: set[str] = set()
    for eq in chosen:
        local = [(s, m) for s, m in where_definitions(eq.where) if mentions(eq.latex, s)]
        # A symbol defined more than once (papers reuse letters): the definition nearest
        # to the equation is the one that speaks about it.
        nearest: dict[str, tuple[int, str, str]] = {}
        for sym, meaning, pos in glossary_all:
            if mentions(eq.latex, sym):
                key = symbol_text(sym)
                distance = abs(pos - eq.position)
                if key not in nearest or distance < nearest[key][0]:
                    nearest[key] = (distance, sym, meaning)
        local += [(sym, meaning) for _d, sym, meaning in sorted(nearest.values())]
        entries: list[tuple[str, str]] = []
        for sym, meaning in local:
            key = symbol_text(sym)
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
            if v not in eq.undefined and not mentions(mentioned, v) and not mentions(lhs, v):
                eq.undefined.append(v)
        eq.undefined = eq.undefined[:4]
        eq.intro = shorten(prose(eq.intro, numbers), 400)
        eq.after = shorten(prose(eq.after, numbers), 400)
    result.equations = chosen

    # Careful prose for the statements shown; a cheap reading for the rest (papers with
    # hundreds of lemmas exist).
    for st in stmts:
        if st in results:
            st.text = shorten(prose(displays_inline(st.latex), numbers), 900)
        else:
            st.text = shorten(re.sub(r"\s+", " ", quick_prose(st.latex, numbers)).strip(), 900)
    result.theorems = stmts
    result.results = [st for st in results if st.text]

    result.abstract = prose(raw_abstract, numbers) if raw_abstract else abstract_hint
    if result.abstract:
        result.claims = claim_sentences(result.abstract)
    else:
        # No abstract (a short note): the introduction's own claims ("here we report ...").
        tops = [p for p, lvl, _s, _t in secs if lvl == 1]
        intro_end = tops[1] if len(tops) > 1 else len(body)
        intro_text = quick_prose(strip_displays(body[: min(intro_end, 20_000)]), numbers)
        result.claims = claim_sentences(re.sub(r"\s+", " ", intro_text), strict=True)
    result.contributions = contributions(body, result.abstract, numbers)

    appendix = appendix_at if appendix_at >= 0 else len(body)
    counter = 0
    for pos, level, starred, title in secs:
        if pos > appendix or level > 2:
            continue
        name = prose(title, numbers)
        if not name or (level == 1 and SKIP_SECTIONS.search(name)):
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
    body = drop_sections(body, SKIP_SECTIONS)
    body = body[: limit * 2]
    body = headings_as_lines(body)
    pieces: list[str] = []
    pos = 0
    for m, content, end in displays(body):
        pieces.append(quick_prose(body[pos : m.start()], numbers))
        label = labels(content)
        num = numbers.get(label[0], "") if label else ""
        pieces.append("\n$$ " + clean_math(content) + " $$" + (f" ({num})" if num else "") + "\n")
        pos = end
    pieces.append(quick_prose(body[pos:], numbers))
    text = "".join(pieces)
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r"\n\s*\n(\s*\n)+", "\n\n", text)
    return text.strip()[:limit]
