"""The cached explanation (plain data) and how it becomes a platform-neutral Reply."""

from __future__ import annotations

import base64
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from bot.doc import (
    Block,
    Bold,
    Button,
    Code,
    Heading,
    Inline,
    Italic,
    Link,
    ListBlock,
    Math,
    MathBlock,
    Message,
    Paragraph,
    Reply,
    Text,
)
from bot.explain.mathfix import normalize
from bot.explain.textutil import latex_to_unicode, math_inlines, rich_inlines, upright_greek
from bot.latex import display_unicode
from bot.models import Paper

BUILT_FROM = {"latex": "LaTeX source", "html": "arXiv HTML", "abstract": "abstract only"}
OFFLINE_NO_LLM = "Offline explanation — no LLM configured"


@dataclass(slots=True)
class EquationView:
    eid: str
    latex: str
    number: str | None
    kind: str = ""
    intro: str = ""
    after: str = ""
    glossary: list[tuple[str, str]] = field(default_factory=list)
    undefined: list[str] = field(default_factory=list)  # symbols the paper never defines
    meaning: str = ""  # LLM mode
    terms: list[tuple[str, str]] = field(default_factory=list)  # LLM mode

    @property
    def unicode(self) -> str:
        return display_unicode(normalize(self.latex))


@dataclass(slots=True)
class StatementView:
    """A theorem-like statement shown as the paper's main result."""

    heading: str  # as printed: "Theorem 1.1 (Main theorem)"
    text: str  # prose, inline math as $...$
    kind: str = ""
    label: str = ""


@dataclass(slots=True)
class Explanation:
    paper_id: str
    version: int
    title: str
    mode: str  # "offline" | "llm"
    built_from: str  # "latex" | "html" | "abstract"
    model: str = ""
    header: str = ""  # for offline: why offline
    reason: str = ""  # user-safe reason an LLM explanation was not possible
    tldr: str = ""
    tldr_from: str = ""  # "Hugging Face AI summary" | "abstract" | ""
    idea: str = ""
    main_result: str = ""  # LLM mode: the main theorem/result in plain words
    novelty: str = ""  # LLM mode: what is new versus prior work
    statements: list[StatementView] = field(default_factory=list)  # main result(s), best first
    contributions: list[str] = field(default_factory=list)
    equations: list[EquationView] = field(default_factory=list)
    how_it_works: list[str] = field(default_factory=list)
    results: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)
    outline: list[str] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    images: dict[str, bytes | None] | None = None
    tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, for a store-backed cache."""
        d = asdict(self)
        if self.images is not None:
            d["images"] = {
                k: base64.b64encode(v).decode() if v else None for k, v in self.images.items()
            }
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Explanation:
        d = dict(d)
        d["equations"] = [
            EquationView(
                **{
                    **e,
                    "glossary": [tuple(g) for g in e["glossary"]],
                    "terms": [tuple(t) for t in e["terms"]],
                }
            )
            for e in d["equations"]
        ]
        d["statements"] = [StatementView(**st) for st in d.get("statements", [])]
        d["links"] = [tuple(x) for x in d["links"]]
        if d.get("images") is not None:
            d["images"] = {k: base64.b64decode(v) if v else None for k, v in d["images"].items()}
        return cls(**d)


def paper_links(paper: Paper, built_from: str) -> list[tuple[str, str]]:
    """Only the paper's own links: arXiv pages, its Hugging Face page, its GitHub repo."""
    links = [("arXiv", paper.abs_url), ("PDF", paper.pdf_url)]
    if built_from == "html":
        links.append(("HTML", paper.html_url))
    if paper.upvotes is not None or paper.ai_summary:
        links.append(("Hugging Face", paper.hf_url))
    repo = (paper.github_repo or "").strip()
    if re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+/?", repo):
        links.append(("Code", repo.rstrip("/")))
    return links


def _header(ex: Explanation) -> Paragraph:
    source = BUILT_FROM.get(ex.built_from, ex.built_from)
    head = f"Explained by {ex.model}" if ex.mode == "llm" else ex.header or OFFLINE_NO_LLM
    return Paragraph((Bold((Text(head),)), Text(f" · built from {source}")))


def _inl(text: str) -> tuple[Inline, ...]:
    return math_inlines(text)


def _unlinked(nodes: tuple[Inline, ...]) -> tuple[Inline, ...]:
    """Metadata read as LaTeX may carry \\href; links in a reply come only from us."""
    out: list[Inline] = []
    for n in nodes:
        if isinstance(n, Link):
            out.append(Text(n.text))
        elif isinstance(n, Bold | Italic):
            out.append(type(n)(_unlinked(n.children)))
        else:
            out.append(n)
    return tuple(out)


def _symbol_item(sym: str, meaning: str) -> tuple[Inline, ...]:
    return (Math(sym, latex_to_unicode(upright_greek(sym))), Text(" — "), *_inl(meaning))


_KIND = {"objective": "objective / loss", "definition": "definition"}


def build_reply(ex: Explanation, paper: Paper, *, images: bool) -> Reply:
    blocks: list[Block] = [_header(ex)]
    if ex.reason:
        blocks.append(Paragraph((Italic((Text(f"Why: {ex.reason}."),)),)))
    blocks.append(Heading(_unlinked(rich_inlines(ex.title or paper.title))))
    if paper.authors:
        names = ", ".join(paper.authors[:4]) + (" et al." if len(paper.authors) > 4 else "")
        blocks.append(Paragraph((Text(names),)))

    if ex.tldr:
        label = "TL;DR" + (f" ({ex.tldr_from})" if ex.tldr_from else "")
        # Abstract text is LaTeX-ish metadata; summaries (HF, LLM) are plain text.
        tldr = _unlinked(rich_inlines(ex.tldr)) if ex.tldr_from == "from the abstract" else None
        blocks += [Heading((Text(label),)), Paragraph(tldr or _inl(ex.tldr))]
    # Results first: what the paper proves or finds, then what is new about it.
    if ex.main_result or ex.statements:
        blocks.append(Heading((Text("Main result"),)))
        if ex.main_result:
            blocks.append(Paragraph(_inl(ex.main_result)))
        for st in ex.statements:
            blocks.append(Paragraph((Bold((Text(st.heading + "."),)), Text(" "), *_inl(st.text))))
    if ex.novelty:
        blocks += [Heading((Text("What's new"),)), Paragraph(_inl(ex.novelty))]
    if ex.idea:
        blocks += [Heading((Text("The idea"),)), Paragraph(_inl(ex.idea))]
    if ex.contributions:
        blocks += [
            Heading((Text("Contributions"),)),
            ListBlock(tuple(_inl(c) for c in ex.contributions)),
        ]

    if ex.equations:
        blocks.append(Heading((Text("Key equations"),)))
        for eq in ex.equations:
            title: list[Inline] = [Bold((Text(f"Eq. ({eq.number})" if eq.number else "Equation"),))]
            if eq.kind in _KIND:
                title.append(Text(f" · {_KIND[eq.kind]}"))
            if eq.intro and ex.mode == "offline":
                title += [Text(" — "), *_inl(eq.intro)]
            blocks.append(Paragraph(tuple(title)))
            image = (ex.images or {}).get(eq.latex) if images else None
            blocks.append(MathBlock(eq.latex, eq.unicode, eq.number, image))
            if ex.mode == "llm" and eq.meaning:
                blocks.append(Paragraph(_inl(eq.meaning)))
            terms = eq.terms if ex.mode == "llm" and eq.terms else eq.glossary
            if terms:
                blocks.append(ListBlock(tuple(_symbol_item(s, m) for s, m in terms)))
            elif eq.after and ex.mode == "offline":
                blocks.append(Paragraph(_inl(eq.after)))
            if eq.undefined and ex.mode == "offline":
                missing: list[Inline] = [Italic((Text("Not defined in the paper: "),))]
                for i, sym in enumerate(eq.undefined):
                    missing += [Text(", ")] if i else []
                    missing.append(Math(sym, latex_to_unicode(sym)))
                blocks.append(Paragraph(tuple(missing)))

    for title_text, items in (
        ("How it works", ex.how_it_works),
        ("Results", ex.results),
        ("Caveats", ex.caveats),
    ):
        if items:
            blocks += [Heading((Text(title_text),)), ListBlock(tuple(_inl(i) for i in items))]
    if ex.outline:
        blocks += [
            Heading((Text("Outline"),)),
            ListBlock(tuple(_inl(s) for s in ex.outline)),
        ]
    for note in ex.notes:
        blocks.append(Paragraph((Italic((Text(note),)),)))

    link_nodes: list[Inline] = []
    for i, (label, url) in enumerate(ex.links):
        if i:
            link_nodes.append(Text(" · "))
        link_nodes.append(Link(label, url))
    if link_nodes:
        blocks.append(Paragraph(tuple(link_nodes)))
    if ex.mode == "llm":
        blocks.append(
            Paragraph(
                (
                    Italic(
                        (
                            Text("Ask a follow-up question with "),
                            Code(f"/ask {ex.paper_id} <question>"),
                            Text(" — on Telegram, simply reply to this message."),
                        )
                    ),
                )
            )
        )
    urls = dict(ex.links)
    row = [Button(label, url=urls[label]) for label in ("PDF", "arXiv") if label in urls]
    extra = [Button(label, url=urls[label]) for label in ("Hugging Face", "Code") if label in urls]
    buttons = [r for r in (row, extra) if r]
    return Reply([Message(blocks, buttons)])


def trim(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1].rstrip() + "…"


def slow_down_reply(wait: float) -> Reply:
    seconds = max(1, math.ceil(wait))
    return Reply.text(
        f"Easy there — that's a lot of explaining at once. Please try again in {seconds} s.",
        ephemeral=True,
    )


def answer_reply(paper: Paper, question: str, answer: str, model: str) -> Reply:
    blocks: list = [
        Paragraph((Bold((Text(f"Answer by {model}"),)), Text(f" · {paper.title}"))),
        Paragraph((Italic((Text(f"Q: {trim(question, 300)}"),)),)),
    ]
    for para in re.split(r"\n\s*\n", answer):
        if para.strip():
            blocks.append(Paragraph(math_inlines(para.strip())))
    blocks.append(
        Paragraph((Link("arXiv", paper.abs_url), Text(" · "), Link("PDF", paper.pdf_url)))
    )
    return Reply([Message(blocks)])
