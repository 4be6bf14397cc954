"""`Explainer`: the one entry point the `/explain` command uses.

Flow: rate limits -> cache -> (single-flight) paper text -> offline analysis -> LLM
(optional, with budget) -> cache -> equation images (off the event loop) -> Reply.
Paper text comes from the LaTeX source, else arXiv HTML, else the abstract, and the
reply says which; an LLM failure degrades to the offline explanation and says why.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from dataclasses import dataclass, field, replace

import httpx

from bot.config import USER_AGENT, Settings
from bot.explain import analyze as analysis_mod
from bot.explain.analyze import Analysis
from bot.explain.cache import CacheKey, ExplanationCache, MemoryCache, SingleFlight
from bot.explain.html import html_to_latex
from bot.explain.limits import LimitSettings, RateLimiter, TokenBudget
from bot.explain.llm import LLMClient, LLMError, config_from_settings, make_client
from bot.explain.prompt import (
    BadAnswer,
    explain_prompt,
    followup_prompt,
    parse_answer,
    parse_followup,
)
from bot.explain.render import render_many
from bot.explain.reply import (
    OFFLINE_NO_LLM,
    EquationView,
    Explanation,
    build_reply,
    paper_links,
)
from bot.explain.source import Limits, SourceUnavailable, extract, polite_get
from bot.explain.textutil import math_inlines, sentences, url_key
from bot.models import Paper
from bot.sources.http import PoliteGate
from bot.text import Bold, Italic, Link, Message, Paragraph, Reply, Text

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ExplainOptions:
    limits: LimitSettings = field(default_factory=LimitSettings)
    source_limits: Limits = field(default_factory=Limits)
    ttl_seconds: float = 7 * 86400.0  # a paper version does not change
    failure_ttl_seconds: float = 300.0  # an LLM fallback is retried after this
    max_html_bytes: int = 20_000_000
    max_paper_chars: int = 60_000  # of paper text sent to the LLM (~15k tokens)
    max_output_tokens: int = 2000
    followup_output_tokens: int = 900
    llm_attempts: int = 3
    llm_max_wait: float = 30.0


@dataclass(slots=True)
class Stats:
    eprint_fetches: int = 0
    html_fetches: int = 0
    llm_calls: int = 0
    llm_tokens: int = 0
    cache_hits: int = 0


@dataclass(slots=True)
class PaperText:
    built_from: str  # "latex" | "html" | "abstract"
    analysis: Analysis
    notes: list[str] = field(default_factory=list)
    # A fallback forced by a failing arXiv (network, 429/5xx), not by the paper itself:
    # kept only briefly, so the next request tries the better source again.
    transient: bool = False


class Explainer:
    def __init__(
        self,
        settings: Settings,
        http: httpx.AsyncClient | None = None,
        cache: ExplanationCache | None = None,
        *,
        options: ExplainOptions | None = None,
        arxiv_gate: PoliteGate | None = None,
    ) -> None:
        """`arxiv_gate`: the gate every other arXiv client uses (`ArxivSource.gate`), so the
        bot as a whole keeps to one request at a time; without it the explainer has its own."""
        self.settings = settings
        self.options = options or ExplainOptions()
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(
            timeout=settings.http_timeout_seconds, headers={"User-Agent": USER_AGENT}
        )
        self._cache: ExplanationCache = cache or MemoryCache()
        self._docs = MemoryCache(max_entries=128)
        self._flight: SingleFlight[object] = SingleFlight()
        self._gate = arxiv_gate or PoliteGate(settings.arxiv_delay_seconds)
        self._rate = RateLimiter(self.options.limits)
        self.budget = TokenBudget(self.options.limits.daily_tokens)
        self.stats = Stats()
        config, self._llm_problem = config_from_settings(
            settings.llm_provider,
            settings.llm_base_url,
            settings.llm_api_key,
            settings.llm_model,
            settings.http_timeout_seconds,
        )
        self._llm: LLMClient | None = None
        if config is not None:
            config = replace(
                config, attempts=self.options.llm_attempts, max_wait=self.options.llm_max_wait
            )
            self._llm = make_client(config, self._http)

    @property
    def llm_model(self) -> str | None:
        return self._llm.model if self._llm else None

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    # ------------------------------------------------------------ explain

    async def explain(
        self,
        paper: Paper,
        *,
        user: str,
        chat: str,
        language: str = "en",
        render_images: bool = True,
    ) -> Reply:
        wait = self._rate.check(user, chat)
        if wait > 0:
            return _slow_down(wait)
        try:
            return await self._explain(paper, language, render_images)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must not become a stack trace in somebody's chat
            log.exception("explaining %s failed", paper.id)
            return Reply.text(
                "Sorry, something went wrong while explaining this paper. Please try again later.",
                ephemeral=True,
            )

    async def _explain(self, paper: Paper, language: str, render_images: bool) -> Reply:
        llm = self._llm
        mode, model = ("llm", llm.model) if llm else ("offline", "")
        # Offline text is the same in every language: share one cache entry.
        key = CacheKey(paper.id, paper.version or 0, mode, model, language if llm else "")
        ex = await self._cache.get(key)
        if isinstance(ex, Explanation):
            self.stats.cache_hits += 1
        else:
            result = await self._flight.do(("explain", key), lambda: self._compute(paper, key))
            assert isinstance(result, Explanation)
            ex = result
        if render_images and ex.equations and ex.images is None:
            await self._flight.do(("images", key), lambda: self._render(ex))
        return build_reply(ex, paper, images=render_images)

    async def _compute(self, paper: Paper, key: CacheKey) -> Explanation:
        doc = await self._document(paper)
        ex = self._offline(paper, doc)
        ttl = self.options.failure_ttl_seconds if doc.transient else self.options.ttl_seconds
        if self._llm is None:
            if self._llm_problem:
                ex.header = "Offline explanation — LLM not set up correctly"
                ex.reason = self._llm_problem
        else:
            ex, ok = await self._with_llm(self._llm, paper, doc, ex, key.language)
            if not ok:
                ttl = self.options.failure_ttl_seconds
        await self._cache.set(key, ex, ttl)
        return ex

    async def _render(self, ex: Explanation) -> None:
        latexes = [eq.latex for eq in ex.equations]
        try:
            ex.images = await asyncio.to_thread(render_many, latexes)
        except Exception:  # images are a nicety: Unicode is always there
            log.exception("equation rendering failed")
            ex.images = {}

    # ------------------------------------------------------------ paper text

    async def _document(self, paper: Paper) -> PaperText:
        key = ("doc", paper.id, paper.version or 0)
        doc = self._docs.get_now(key)
        if isinstance(doc, PaperText):
            return doc
        result = await self._flight.do(key, lambda: self._load_document(paper))
        assert isinstance(result, PaperText)
        ttl = self.options.failure_ttl_seconds if result.transient else self.options.ttl_seconds
        self._docs.set_now(key, result, ttl)
        return result

    async def _load_document(self, paper: Paper) -> PaperText:
        limits = self.options.source_limits
        vid = paper.versioned_id
        transient = False  # whether a failing arXiv, not the paper, forced a fallback
        try:
            self.stats.eprint_fetches += 1
            url = f"{self.settings.arxiv_eprint_url.rstrip('/')}/{vid}"
            data = await polite_get(
                self._http, self._gate, url, max_bytes=limits.max_download_bytes
            )
            if data is not None:
                src = await asyncio.to_thread(extract, data, limits)
                found = await asyncio.to_thread(
                    analysis_mod.analyze, src.body, src.preamble, abstract_hint=paper.abstract
                )
                if _substantial(found):
                    return PaperText("latex", found, _notes(found))
                log.info("source of %s has too little text; trying HTML", vid)
        except SourceUnavailable as exc:
            log.info("no usable source for %s: %s", vid, exc)
            transient = exc.transient
        except httpx.HTTPError as exc:
            log.info("e-print fetch for %s failed: %s", vid, type(exc).__name__)
            transient = True
        except Exception:
            log.exception("reading the source of %s failed", vid)
        try:
            self.stats.html_fetches += 1
            url = f"{self.settings.arxiv_html_url.rstrip('/')}/{vid}"
            data = await polite_get(
                self._http, self._gate, url, max_bytes=self.options.max_html_bytes
            )
            if data is not None and b"<" in data[:2048]:
                _title, body = await asyncio.to_thread(
                    html_to_latex, data.decode("utf-8", errors="replace")
                )
                found = await asyncio.to_thread(
                    analysis_mod.analyze, body, "", abstract_hint=paper.abstract
                )
                if _substantial(found):
                    return PaperText("html", found, _notes(found), transient)
        except SourceUnavailable as exc:
            log.info("no usable HTML for %s: %s", vid, exc)
            transient = transient or exc.transient
        except httpx.HTTPError as exc:
            log.info("HTML fetch for %s failed: %s", vid, type(exc).__name__)
            transient = True
        except Exception:
            log.exception("reading the HTML of %s failed", vid)
        found = await asyncio.to_thread(
            analysis_mod.analyze, paper.abstract, "", abstract_hint=paper.abstract
        )
        found.abstract = paper.abstract
        return PaperText("abstract", found, _notes(found), transient)

    # ------------------------------------------------------------ offline

    def _offline(self, paper: Paper, doc: PaperText) -> Explanation:
        a = doc.analysis
        if paper.ai_summary:
            tldr, tldr_from = paper.ai_summary.strip(), "Hugging Face AI summary"
        else:
            abstract = paper.abstract or a.abstract
            tldr, tldr_from = " ".join(sentences(abstract)[:2]), "from the abstract"
        outline: list[str] = []
        for s in a.sections:
            if s.level == 1:
                outline.append(f"{s.number}. {s.title}" if s.number else s.title)
            elif outline:
                sep = ": " if not outline[-1].endswith(")") and ": " not in outline[-1] else "; "
                outline[-1] += sep + s.title
        outline = [_trim(o, 160) for o in outline[:14]]
        return Explanation(
            paper_id=paper.id,
            version=paper.version or 0,
            title=paper.title or a.title,
            mode="offline",
            built_from=doc.built_from,
            header=OFFLINE_NO_LLM,
            tldr=tldr,
            tldr_from=tldr_from,
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
                )
                for e in a.equations
            ],
            outline=outline,
            links=paper_links(paper, doc.built_from),
            notes=list(doc.notes),
        )

    # ------------------------------------------------------------ LLM

    def _allowed_links(self, paper: Paper, ex: Explanation) -> set[str]:
        allowed = {url_key(u) for _, u in ex.links}
        for kind in ("abs", "pdf", "html"):
            allowed.add(f"arxiv.org/{kind}/{paper.id}")
        return allowed

    async def _with_llm(
        self, llm: LLMClient, paper: Paper, doc: PaperText, offline: Explanation, language: str
    ) -> tuple[Explanation, bool]:
        a = doc.analysis
        system, user = explain_prompt(
            title=paper.title or a.title,
            authors=paper.authors,
            abstract=paper.abstract or a.abstract,
            equations=a.equations,
            text=a.text if doc.built_from != "abstract" else "",
            built_from={"latex": "LaTeX source", "html": "arXiv HTML", "abstract": "abstract"}[
                doc.built_from
            ],
            language=language,
            max_chars=self.options.max_paper_chars,
        )
        estimate = (len(system) + len(user)) // 3 + self.options.max_output_tokens
        if not self.budget.reserve(estimate):
            offline.header = "Offline explanation — today's LLM budget is used up"
            offline.reason = "the bot's daily LLM token budget is spent; it resets at midnight UTC"
            return offline, False
        used = 0
        try:
            self.stats.llm_calls += 1
            completion = await llm.complete(
                system, user, max_tokens=self.options.max_output_tokens, json_mode=True
            )
            used = completion.tokens or estimate
            answer = parse_answer(
                completion.text,
                {e.eid for e in a.equations},
                self._allowed_links(paper, offline),
            )
        except LLMError as exc:
            log.warning("LLM explanation of %s failed: %s", paper.id, exc)
            offline.header = "Offline explanation — the LLM was unavailable"
            offline.reason = str(exc)
            return offline, False
        except BadAnswer as exc:
            log.warning("LLM answer for %s unusable: %s", paper.id, exc)
            offline.header = "Offline explanation — the LLM's answer was unusable"
            offline.reason = "the model did not answer with the structured JSON it was asked for"
            return offline, False
        except Exception:
            log.exception("LLM explanation of %s failed unexpectedly", paper.id)
            offline.header = "Offline explanation — the LLM was unavailable"
            offline.reason = "something unexpected went wrong while asking the LLM"
            return offline, False
        finally:
            self.budget.settle(estimate, used)
            self.stats.llm_tokens += used
        equations = []
        for eq in offline.equations:
            note = answer.equations.get(eq.eid)
            if note:
                eq = replace(eq, meaning=note.meaning, terms=note.terms)
            equations.append(eq)
        ex = Explanation(
            paper_id=paper.id,
            version=paper.version or 0,
            title=offline.title,
            mode="llm",
            built_from=doc.built_from,
            model=llm.model,
            tldr=answer.tldr,
            idea=answer.idea,
            equations=equations,
            how_it_works=answer.how_it_works,
            results=answer.results,
            caveats=answer.caveats,
            links=offline.links,
            notes=offline.notes,
            tokens=used,
        )
        return ex, True

    # ------------------------------------------------------------ follow-up

    async def follow_up(
        self, paper: Paper, question: str, *, user: str, chat: str, language: str = "en"
    ) -> Reply:
        llm = self._llm
        if llm is None:
            why = f" ({self._llm_problem})" if self._llm_problem else ""
            return Reply.text(
                "Follow-up questions need an LLM, and none is configured here"
                f"{why}. The bot admin can set LLM_PROVIDER, LLM_MODEL and LLM_API_KEY.",
                ephemeral=True,
            )
        question = question.strip()
        if not question:
            return Reply.text("Ask a question about the paper by replying with it.", ephemeral=True)
        wait = self._rate.check(user, chat)
        if wait > 0:
            return _slow_down(wait)
        norm = re.sub(r"\s+", " ", question.casefold())[:500]
        key = CacheKey(paper.id, paper.version or 0, "followup:" + norm, llm.model, language)
        cached = await self._cache.get(key)
        if isinstance(cached, str):
            return _answer_reply(paper, question, cached, llm.model)
        try:
            result = await self._flight.do(
                ("followup", key), lambda: self._answer(llm, paper, question, language, key)
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("follow-up on %s failed", paper.id)
            return Reply.text(
                "Sorry, something went wrong while answering. Please try again later.",
                ephemeral=True,
            )
        if isinstance(result, Reply):
            return result
        assert isinstance(result, str)
        return _answer_reply(paper, question, result, llm.model)

    async def _answer(
        self, llm: LLMClient, paper: Paper, question: str, language: str, key: CacheKey
    ) -> str | Reply:
        doc = await self._document(paper)
        a = doc.analysis
        system, user = followup_prompt(
            title=paper.title or a.title,
            abstract=paper.abstract or a.abstract,
            text=a.text if doc.built_from != "abstract" else "",
            question=question,
            language=language,
            max_chars=self.options.max_paper_chars,
        )
        estimate = (len(system) + len(user)) // 3 + self.options.followup_output_tokens
        if not self.budget.reserve(estimate):
            return Reply.text(
                "Today's LLM budget for this bot is used up, so I can't answer follow-up "
                "questions until midnight UTC. The offline /explain still works.",
                ephemeral=True,
            )
        used = 0
        try:
            self.stats.llm_calls += 1
            completion = await llm.complete(
                system, user, max_tokens=self.options.followup_output_tokens, json_mode=True
            )
            used = completion.tokens or estimate
        except LLMError as exc:
            log.warning("LLM follow-up on %s failed: %s", paper.id, exc)
            return Reply.text(
                f"Sorry, I couldn't get an answer from the LLM: {exc}. Please try again later.",
                ephemeral=True,
            )
        finally:
            self.budget.settle(estimate, used)
            self.stats.llm_tokens += used
        links = paper_links(paper, doc.built_from)
        allowed = {url_key(u) for _, u in links}
        answer = parse_followup(completion.text, allowed)
        await self._cache.set(key, answer, self.options.ttl_seconds)
        return answer


def _substantial(a: Analysis) -> bool:
    """Enough text to be worth more than the abstract."""
    return len(a.text) > 800 or bool(a.equations) or len(a.sections) >= 2


def _notes(a: Analysis) -> list[str]:
    if a.injections_removed:
        n = a.injections_removed
        return [
            f"Note: {n} sentence{'s' if n > 1 else ''} addressed to AI tools "
            "(prompt injection) were removed from the paper text."
        ]
    return []


def _trim(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1].rstrip() + "…"


def _slow_down(wait: float) -> Reply:
    seconds = max(1, math.ceil(wait))
    return Reply.text(
        f"Easy there — that's a lot of explaining at once. Please try again in {seconds} s.",
        ephemeral=True,
    )


def _answer_reply(paper: Paper, question: str, answer: str, model: str) -> Reply:
    blocks: list = [
        Paragraph((Bold((Text(f"Answer by {model}"),)), Text(f" · {paper.title}"))),
        Paragraph((Italic((Text(f"Q: {_trim(question, 300)}"),)),)),
    ]
    for para in re.split(r"\n\s*\n", answer):
        if para.strip():
            blocks.append(Paragraph(math_inlines(para.strip())))
    blocks.append(
        Paragraph((Link("arXiv", paper.abs_url), Text(" · "), Link("PDF", paper.pdf_url)))
    )
    return Reply([Message(blocks)])
