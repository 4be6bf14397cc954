"""Display equations as PNG images: a real TeX engine when installed, else matplotlib.

Two engines, tried in order (`render_many`):

1. **TeX** (`tex_engine.py`): `latex` + `dvipng`, from the texlive packages `.ci/run` and
   the Docker image install, sandboxed (private directory, shell escape off, paranoid file
   access, time and size limits; unsafe equations refused before TeX sees them).
2. **mathtext** (`mathtext_engine.py`, matplotlib, embedded): what it lacks is rewritten,
   each top-level row is drawn and the rows stacked.

This module picks the engine and keeps the images drawn. What neither engine can draw
gets no image, and the reply shows the readable Unicode form. Everything here is CPU or
subprocess work: callers run it in a thread.
"""

from __future__ import annotations

import threading
from typing import Literal

from cachetools import LRUCache

from bot.explain.mathtext_engine import render_mathtext
from bot.explain.tex_engine import render_tex

Engine = Literal["auto", "tex", "mathtext"]

# Drawn images by (engine, LaTeX), least recently used dropped first; None (could not be
# drawn) is kept too, so a hopeless equation is not tried again. Callers run in threads.
_CACHE: LRUCache[tuple[str, str], bytes | None] = LRUCache(maxsize=512)
_CACHE_LOCK = threading.Lock()


def _cached(engine: str, latex: str) -> tuple[bool, bytes | None]:
    with _CACHE_LOCK:
        if (engine, latex) in _CACHE:
            return True, _CACHE[(engine, latex)]
    return False, None


def _store(engine: str, latex: str, png: bytes | None) -> None:
    with _CACHE_LOCK:
        _CACHE[(engine, latex)] = png


def render_many(
    latexes: list[str], *, engine: Engine = "auto", macros: str = ""
) -> dict[str, bytes | None]:
    """Several equations as PNGs (call in a thread: this is CPU and subprocess work).

    `auto` uses TeX when installed and mathtext for whatever TeX did not draw. `macros`
    is preamble LaTeX from `safe_macros` (the explainer expands the author's macros into
    the equations already, so it passes none).
    """
    out: dict[str, bytes | None] = {}
    todo: list[str] = []
    for s in dict.fromkeys(latexes):
        hit, png = _cached(engine, s)
        if hit:
            out[s] = png
        else:
            todo.append(s)
    if not todo:
        return out
    drawn: dict[str, bytes | None] = dict.fromkeys(todo)
    if engine in ("auto", "tex"):
        drawn.update(render_tex(todo, macros))
    if engine in ("auto", "mathtext"):
        for s in todo:
            if drawn[s] is None:
                drawn[s] = render_mathtext(s)
    for s, png in drawn.items():
        if not macros:
            _store(engine, s, png)
        out[s] = png
    return out


def render_png(latex: str, *, engine: Engine = "auto") -> bytes | None:
    """One equation (rows separated by `\\\\`) as a PNG, or None if no engine can draw it."""
    return render_many([latex], engine=engine)[latex]
