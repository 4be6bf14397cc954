"""/explain on the real-paper corpus (tests/corpus/explain): quality and speed per paper.

Per paper and overall:
- root file right, main result among the key items, glossary precision (tests/corpus/score.py),
- offline explain time (unpack + flatten + analyze + offline explanation),
- share of the paper's display equations drawn as images, and by which engine,
- share of the LLM prompt that is TeX internals (`@`-macros, \\typeout, \\setbox, ...;
  goal 0%).

Run: python -m bench.bench_explain_corpus
"""

from __future__ import annotations

import inspect
import re
import time
from dataclasses import dataclass
from typing import Any

from bot.explain import render as render_mod
from bot.explain.analyze import Analysis
from bot.explain.equations import find_equations
from bot.explain.prompt import explain_prompt
from bot.explain.sections import find_sections
from bot.explain.source import LatexSource
from bot.explain.textutil import clean_text
from tests.corpus.score import (
    CorpusPaper,
    PaperScore,
    observe,
    papers,
    score,
    summarize,
    table,
)

# A line of prompt text that carries TeX's own machinery rather than the paper's words.
TEX_INTERNALS = re.compile(
    r"\\[A-Za-z]*@[A-Za-z@]*|\\(?:typeout|setbox|catcode|expandafter|makeatletter|"
    r"makeatother|csname|endcsname|edef|gdef|xdef|newcount|newdimen|newtoks|newbox|"
    r"futurelet|afterassignment|ifx|ifdim|ifnum)(?![A-Za-z])|\\def\\|\\let\\"
)


@dataclass(slots=True)
class Figures:
    slug: str
    seconds: float
    display: int
    drawn: int
    prompt_chars: int
    internal_chars: int


def display_equations(src: LatexSource, analysis: Analysis) -> list[str]:
    """Every display equation the analysis found, as the reply would draw it."""
    found = getattr(analysis, "all_equations", None)
    if found is None:
        # the analyzer keeps only the chosen ones; list them all the same way it does
        body = clean_text(src.body)
        found = find_equations(body, False, find_sections(body))
    return [e.latex for e in found if e.latex.strip()]


def engine() -> str:
    tex = getattr(render_mod, "tex_available", None)
    if callable(tex) and tex():
        return "TeX (latex + dvipng), mathtext fallback"
    return "mathtext"


def prompt_for(analysis: Analysis) -> str:
    """The LLM prompt as the explainer builds it (only the arguments this version takes)."""
    args: dict[str, Any] = {
        "title": analysis.title,
        "authors": [],
        "abstract": analysis.abstract,
        "equations": analysis.equations,
        "text": analysis.text,
        "built_from": "LaTeX source",
        "language": "en",
        "max_chars": 60_000,
        "results": getattr(analysis, "results", []),
    }
    accepted = inspect.signature(explain_prompt).parameters
    _system, user = explain_prompt(**{k: v for k, v in args.items() if k in accepted})
    return user


def internal_chars(text: str) -> int:
    return sum(len(line) for line in text.splitlines() if TEX_INTERNALS.search(line))


def measure(paper: CorpusPaper) -> tuple[PaperScore, Figures]:
    data = paper.data()
    started = time.perf_counter()
    seen, src, analysis = observe(data)
    seconds = time.perf_counter() - started
    latexes = display_equations(src, analysis)
    drawn = render_mod.render_many(latexes)
    prompt = prompt_for(analysis)
    figures = Figures(
        slug=paper.slug,
        seconds=seconds,
        display=len(set(latexes)),
        drawn=sum(1 for s in set(latexes) if drawn.get(s)),
        prompt_chars=len(prompt),
        internal_chars=internal_chars(prompt),
    )
    return score(paper, seen), figures


def main() -> None:
    results = [measure(p) for p in papers()]
    scores = [s for s, _ in results]
    print(table(scores))
    print(f"\nequations drawn with: {engine()}")
    print(f"{'paper':34} {'explain s':>9} {'drawn':>9} {'prompt TeX internals':>22}")
    for f in (f for _, f in results):
        share = f.internal_chars / f.prompt_chars if f.prompt_chars else 0.0
        drawn = f"{f.drawn}/{f.display}"
        print(f"{f.slug:34} {f.seconds:9.2f} {drawn:>9} {share:21.1%}")
    figs = [f for _, f in results]
    display = sum(f.display for f in figs)
    drawn_total = sum(f.drawn for f in figs)
    chars = sum(f.prompt_chars for f in figs)
    internal = sum(f.internal_chars for f in figs)
    slowest = max(figs, key=lambda f: f.seconds)
    total = summarize(scores)
    print(
        f"overall: root right {total.root_right}/{total.papers}, main result "
        f"{total.main_hits}/{total.main_expected}, glossary precision "
        f"{total.glossary_precision:.0%}; equations drawn {drawn_total}/{display} "
        f"({drawn_total / display if display else 0:.0%}); prompt TeX internals "
        f"{internal / chars if chars else 0:.1%}; explain time mean "
        f"{sum(f.seconds for f in figs) / len(figs):.2f} s, slowest {slowest.seconds:.2f} s "
        f"({slowest.slug})"
    )


if __name__ == "__main__":
    main()
