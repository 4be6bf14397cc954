"""Equation images: the share of real display equations drawn, and time per equation.

Data: every display equation (as the explainer extracts it) of the real papers in
`tests/corpus/explain/*/eprint.*` (their origin and licence: that folder's SOURCES file),
or of the folder named by `BENCH_CORPUS`. Goals: >= 98% drawn with TeX installed,
>= 90% with mathtext alone.

Run: python -m bench.bench_render
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from bot.explain import render, tex_engine
from bot.explain.equations import find_equations
from bot.explain.sections import find_sections
from bot.explain.source import SourceUnavailable, extract

CORPUS = Path(os.environ.get("BENCH_CORPUS", Path(__file__).parent.parent / "tests/corpus/explain"))


def corpus_equations(folder: Path = CORPUS) -> dict[str, list[str]]:
    """Paper name -> the LaTeX of each of its display equations."""
    out: dict[str, list[str]] = {}
    for path in sorted(folder.glob("*/eprint*")):
        try:
            src = extract(path.read_bytes())
        except SourceUnavailable as exc:
            print(f"  {path.parent.name}: no LaTeX ({exc})")
            continue
        sections = find_sections(src.body)
        out[path.parent.name] = [e.latex for e in find_equations(src.body, False, sections)]
    return out


def measure(
    papers: dict[str, list[str]], engine: render.Engine
) -> tuple[int, int, float, list[str]]:
    """Drawn, total, seconds, the ones not drawn: one `render_many` call per paper, as the
    explainer makes one per explanation."""
    render._CACHE.clear()
    drawn = total = 0
    failed: list[str] = []
    started = time.perf_counter()
    for equations in papers.values():
        unique = list(dict.fromkeys(equations))
        images = render.render_many(unique, engine=engine)
        total += len(unique)
        missing = [s for s in unique if images.get(s) is None]
        drawn += len(unique) - len(missing)
        failed += missing
    return drawn, total, time.perf_counter() - started, failed


def main() -> None:
    papers = corpus_equations()
    total = sum(len(set(eqs)) for eqs in papers.values())
    if not total:
        print(f"no corpus papers under {CORPUS}; nothing to measure")
        return
    print(f"{total} display equations from {len(papers)} real papers")
    engines: list[render.Engine] = ["mathtext"]
    if tex_engine.tex_available():
        engines[:0] = ["auto", "tex"]
    else:
        print("TeX (latex + dvipng) is not installed: measuring mathtext only")
    for engine in engines:
        drawn, total, elapsed, failed = measure(papers, engine)
        label = {"auto": "TeX, then mathtext", "tex": "TeX alone"}.get(engine, "mathtext alone")
        share = 100.0 * drawn / total
        per = 1000.0 * elapsed / total
        print(f"{label:>20}: {drawn}/{total} drawn = {share:.1f}%, {per:.0f} ms/equation")
        for s in failed[:12]:
            print(f"      not drawn: {s[:110]}")


if __name__ == "__main__":
    main()
