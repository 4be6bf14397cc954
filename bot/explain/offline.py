"""The offline explanation: what the analysis of a paper shows without any LLM."""

from __future__ import annotations

from bot.explain.analyze import Analysis
from bot.explain.claims import claim_sentences
from bot.explain.paper_text import PaperText
from bot.explain.reply import (
    OFFLINE_NO_LLM,
    EquationView,
    Explanation,
    StatementView,
    paper_links,
    trim,
)
from bot.models import Paper


def offline_explanation(paper: Paper, doc: PaperText) -> Explanation:
    """The explanation built without an LLM: the claims, key equations with their
    notation, the main statements and an outline, all read from the paper."""
    a = doc.analysis
    if paper.ai_summary:
        tldr, tldr_from = paper.ai_summary.strip(), "Hugging Face AI summary"
    else:
        # What the paper claims ("we prove ...", numbers), not the background it opens with.
        abstract = paper.abstract or a.abstract
        claims = claim_sentences(abstract) if abstract else a.claims
        tldr, tldr_from = " ".join(claims), "from the abstract"
    outline: list[str] = []
    for s in a.sections:
        if s.level == 1:
            outline.append(f"{s.number}. {s.title}" if s.number else s.title)
        elif outline:
            sep = ": " if not outline[-1].endswith(")") and ": " not in outline[-1] else "; "
            outline[-1] += sep + s.title
    outline = [trim(o, 160) for o in outline[:14]]
    return Explanation(
        paper_id=paper.id,
        version=paper.version or 0,
        title=paper.title or a.title,
        mode="offline",
        built_from=doc.built_from,
        header=OFFLINE_NO_LLM,
        tldr=tldr,
        tldr_from=tldr_from,
        statements=_statement_views(a),
        contributions=a.contributions[:5],
        equations=[
            EquationView(
                eid=e.eid,
                latex=e.latex,
                number=e.number,
                kind=e.kind,
                intro=e.intro,
                after=e.after,
                glossary=list(e.glossary),
                undefined=list(e.undefined),
            )
            for e in a.equations
        ],
        outline=outline,
        links=paper_links(paper, doc.built_from),
        notes=list(doc.notes),
    )


def _statement_views(a: Analysis) -> list[StatementView]:
    return [StatementView(st.heading, st.text, st.kind, st.label or "") for st in a.results[:2]]
