"""Equations as PNG images with matplotlib's mathtext (no TeX installation needed).

Rendering is CPU work, so callers run `render_many` in a thread. mathtext understands a
large subset of LaTeX math; what it cannot parse gets no image, and the reply shows the
readable Unicode form instead.
"""

from __future__ import annotations

import io
import logging
import re
import threading
from collections import OrderedDict

import matplotlib

matplotlib.use("Agg")

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

log = logging.getLogger(__name__)

# mathtext's parser and font caches are shared state; one render at a time is plenty.
_LOCK = threading.Lock()
_CACHE: OrderedDict[str, bytes | None] = OrderedDict()
_CACHE_SIZE = 512

# Commands mathtext lacks, mapped to ones it has (or dropped when purely cosmetic).
_REWRITES: list[tuple[str, str]] = [
    (r"\\(?:boldsymbol|bm|mathbold|pmb)(?![A-Za-z])", r"\\mathbf"),
    (r"\\mathbbm(?![A-Za-z])", r"\\mathbb"),
    (r"\\(?:dfrac|tfrac)(?![A-Za-z])", r"\\frac"),
    (r"\\(?:lVert|rVert)(?![A-Za-z])", r"\\Vert"),
    (r"\\(?:lvert|rvert)(?![A-Za-z])", r"|"),
    (r"\\coloneqq(?![A-Za-z])", r":="),
    (r"\\eqqcolon(?![A-Za-z])", r"=:"),
    (r"\\triangleq(?![A-Za-z])", r"\\equiv"),
    (r"\\(?:left|right|big|Big|bigg|Bigg)[lr]?(?=\s*\\?[.])", ""),
    (r"\\(?:mathrm|textrm|textnormal|textit|textbf|texttt|mbox)(?![A-Za-z])", r"\\mathrm"),
    (r"\\(?:operatorname\*?)(?![A-Za-z])", r"\\operatorname"),
    (r"\\intercal(?![A-Za-z])", r"T"),
    (r"\\top(?![A-Za-z])", r"T"),
    (r"\\(?:limits|nolimits|displaystyle|textstyle|scriptstyle)(?![A-Za-z])", ""),
    (r"\\(?:,|;|:|!)", " "),
    (r"\\(?:qquad|quad)(?![A-Za-z])", r"\\ "),
    (r"\\text(?![A-Za-z])", r"\\mathrm"),
    (r"\\(?:mathcal|mathscr)\s*\{\s*\}", ""),
    (r"\\(?:hat|tilde|bar|vec)\s*\{\s*\}", ""),
]
_COMPILED = [(re.compile(p), r) for p, r in _REWRITES]


def for_mathtext(latex: str) -> str:
    s = latex
    for pattern, repl in _COMPILED:
        s = pattern.sub(repl, s)
    return s.strip()


def render_png(latex: str, *, dpi: int = 200, fontsize: int = 14) -> bytes | None:
    """One equation (rows separated by `\\\\`) as a PNG, or None if mathtext can't draw it."""
    with _LOCK:
        if latex in _CACHE:
            _CACHE.move_to_end(latex)
            return _CACHE[latex]
    rows = [for_mathtext(r) for r in re.split(r"\\\\", latex) if r.strip()]
    png: bytes | None = None
    if rows and all(len(r) < 1200 for r in rows) and len(rows) <= 12:
        with _LOCK:
            png = _draw(rows, dpi, fontsize)
    with _LOCK:
        _CACHE[latex] = png
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return png


def _draw(rows: list[str], dpi: int, fontsize: int) -> bytes | None:
    fig = Figure(figsize=(0.01, 0.01), dpi=dpi)
    FigureCanvasAgg(fig)
    try:
        # One text, one mathtext run per line: matplotlib stacks the lines itself.
        fig.text(0, 0, "\n".join(f"${row}$" for row in rows), fontsize=fontsize, linespacing=1.6)
        buf = io.BytesIO()
        fig.savefig(
            buf, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.12, facecolor="white"
        )
    except Exception as exc:  # mathtext raises ValueError (and friends) on unknown syntax
        log.debug("mathtext could not render an equation: %s", type(exc).__name__)
        return None
    data = buf.getvalue()
    return data if data.startswith(b"\x89PNG") else None


def render_many(latexes: list[str]) -> dict[str, bytes | None]:
    """Render several equations (call in a thread: this is CPU-bound)."""
    return {latex: render_png(latex) for latex in latexes}
