"""The text of a paper to explain, and where it came from: the LaTeX source (read in a
sandboxed worker), else arXiv's HTML, else the abstract; the reply says which."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import httpx

from bot.config import Settings
from bot.explain import analyze as analysis_mod
from bot.explain.analyze import Analysis
from bot.explain.html import html_to_latex
from bot.explain.limits import Stats
from bot.explain.sandbox import read_source
from bot.explain.source import Limits, SourceUnavailable, polite_get
from bot.models import Paper
from bot.sources.http import PoliteGate

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PaperText:
    built_from: str  # "latex" | "html" | "abstract"
    analysis: Analysis
    notes: list[str] = field(default_factory=list)
    # A fallback forced by a failing arXiv (network, 429/5xx), not by the paper itself:
    # kept only briefly, so the next request tries the better source again.
    transient: bool = False


async def load_paper_text(
    paper: Paper,
    *,
    settings: Settings,
    http: httpx.AsyncClient,
    gate: PoliteGate,
    limits: Limits,
    max_html_bytes: int,
    stats: Stats,
) -> PaperText:
    """The paper's text from its LaTeX source, else arXiv HTML, else the abstract; what a
    failing arXiv (not the paper) forced is marked `transient`."""
    vid = paper.versioned_id
    transient = False  # whether a failing arXiv, not the paper, forced a fallback
    thin: Analysis | None = None  # LaTeX without sections or display math: a last resort
    try:
        stats.eprint_fetches += 1
        url = f"{settings.arxiv_eprint_url.rstrip('/')}/{vid}"
        data = await polite_get(
            http,
            gate,
            url,
            max_bytes=limits.max_download_bytes,
            deadline=2 * settings.upstream_deadline_seconds,
        )
        if data is not None:
            # Untrusted CPU work: in a worker process that is killed when it overruns.
            found = await read_source(data, limits, paper.abstract)
            if _substantial(found) and _has_paper_body(found):
                return PaperText("latex", found, removal_notes(found))
            if _substantial(found):
                thin = found
            log.info("source of %s has no sections or display math; trying HTML", vid)
    except SourceUnavailable as exc:
        log.info("no usable source for %s: %s", vid, exc)
        transient = exc.transient
    except httpx.HTTPError as exc:
        log.info("e-print fetch for %s failed: %s", vid, type(exc).__name__)
        transient = True
    except Exception:
        log.exception("reading the source of %s failed", vid)
    try:
        stats.html_fetches += 1
        url = f"{settings.arxiv_html_url.rstrip('/')}/{vid}"
        data = await polite_get(
            http,
            gate,
            url,
            max_bytes=max_html_bytes,
            deadline=2 * settings.upstream_deadline_seconds,
        )
        if data is not None and b"<" in data[:2048]:
            _title, body = await asyncio.to_thread(
                html_to_latex, data.decode("utf-8", errors="replace")
            )
            found = await asyncio.to_thread(
                analysis_mod.analyze, body, "", abstract_hint=paper.abstract
            )
            if _substantial(found):
                return PaperText("html", found, removal_notes(found), transient)
    except SourceUnavailable as exc:
        log.info("no usable HTML for %s: %s", vid, exc)
        transient = transient or exc.transient
    except httpx.HTTPError as exc:
        log.info("HTML fetch for %s failed: %s", vid, type(exc).__name__)
        transient = True
    except Exception:
        log.exception("reading the HTML of %s failed", vid)
    if thin is not None:
        return PaperText("latex", thin, removal_notes(thin), transient)
    found = await asyncio.to_thread(
        analysis_mod.analyze, paper.abstract, "", abstract_hint=paper.abstract
    )
    found.abstract = paper.abstract
    return PaperText("abstract", found, removal_notes(found), transient)


def _substantial(a: Analysis) -> bool:
    """Enough text to be worth more than the abstract."""
    return len(a.text) > 800 or bool(a.equations) or len(a.sections) >= 2


def _has_paper_body(a: Analysis) -> bool:
    """A paper's body has sections or display math; a preamble or a stub file has neither."""
    return bool(a.sections) or a.equation_count > 0 or bool(a.theorems)


def _counted(n: int, singular: str, plural: str) -> str:
    return f"{n} {singular} was" if n == 1 else f"{n} {plural} were"


def removal_notes(a: Analysis) -> list[str]:
    """What was stripped from the paper before anyone (a reader, a model) saw it."""
    notes = []
    if a.injections_removed:
        what = _counted(
            a.injections_removed,
            "hidden instruction to AI tools",
            "hidden instructions to AI tools",
        )
        notes.append(f"Note: {what} removed from the paper text (prompt injection).")
    if a.hidden_removed:
        what = _counted(a.hidden_removed, "passage of hidden text", "passages of hidden text")
        notes.append(
            f"Note: {what} removed (white, transparent or microscopic text that the PDF does "
            "not show)."
        )
    return notes
