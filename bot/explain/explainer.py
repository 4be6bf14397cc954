"""`Explainer`: the one entry point the `/explain` command uses.

Flow: rate limits -> cache -> (single-flight) paper text -> offline analysis -> equation
images (off the event loop) -> Reply, sent at once; with an LLM configured, its call
(single-flight, within a total time budget) runs meanwhile, and the Reply's `update`
gives the LLM's explanation for adapters to edit the sent offline one into.
Paper text comes from the LaTeX source, else arXiv HTML, else the abstract, and the
reply says which; an LLM failure degrades to the offline explanation and says why, and
backs the provider off so the next users get the offline one without waiting.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import httpx

from bot.config import USER_AGENT, Settings
from bot.doc import Reply
from bot.explain.analyze import Analysis
from bot.explain.cache import CacheKey, ExpiringCache, SingleFlight
from bot.explain.limits import Backoff, LimitSettings, RateLimiter, Stats, TokenBudget
from bot.explain.llm import LLMClient, LLMError, config_from_settings, make_client
from bot.explain.offline import offline_explanation
from bot.explain.paper_text import PaperText, load_paper_text
from bot.explain.prompt import (
    BadAnswer,
    explain_prompt,
    followup_prompt,
    parse_answer,
    parse_followup,
)
from bot.explain.render import render_many
from bot.explain.reply import (
    Explanation,
    answer_reply,
    build_reply,
    paper_links,
    slow_down_reply,
)
from bot.explain.source import Limits
from bot.explain.textutil import url_key
from bot.models import Paper
from bot.sources.http import PoliteGate

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ExplainOptions:
    limits: LimitSettings = field(default_factory=LimitSettings)
    source_limits: Limits = field(default_factory=Limits)
    ttl_seconds: float = 7 * 86400.0  # a paper version does not change
    failure_ttl_seconds: float = 300.0  # a fallback forced by a failing arXiv: retried after
    max_html_bytes: int = 20_000_000
    max_paper_chars: int = 60_000  # of paper text sent to the LLM (~15k tokens)
    max_output_tokens: int = 2000
    followup_output_tokens: int = 900
    llm_attempts: int = 3
    llm_max_wait: float = 30.0
    # Wait this long for the LLM before sending the offline explanation first (a quick
    # model then gives one message, not one plus an edit). 0: send the offline one at once.
    llm_grace_seconds: float = 0.0
    # A failing provider (or paper at a provider) is left alone this long, doubling per
    # failure in a row up to the cap; meanwhile users get the offline explanation at once.
    backoff_seconds: float = 30.0
    backoff_max_seconds: float = 1800.0
    clock: Callable[[], float] = time.monotonic


class Explainer:
    def __init__(
        self,
        settings: Settings,
        http: httpx.AsyncClient | None = None,
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
        self._cache = ExpiringCache()
        self._docs = ExpiringCache(max_entries=128)
        self._flight: SingleFlight[object] = SingleFlight()
        self._llm_flight: SingleFlight[Explanation] = SingleFlight()  # one LLM call per key
        self._gate = arxiv_gate or PoliteGate(settings.arxiv_delay_seconds)
        self._rate = RateLimiter(self.options.limits)
        self._backoff = Backoff(
            self.options.backoff_seconds, self.options.backoff_max_seconds, self.options.clock
        )
        self.budget = TokenBudget(self.options.limits.daily_tokens)
        self.stats = Stats()
        config, self._llm_problem = config_from_settings(
            settings.llm_provider,
            settings.llm_base_url,
            settings.llm_api_key,
            settings.llm_model,
            settings.llm_budget_seconds,
        )
        self._llm: LLMClient | None = None
        self._provider_key = f"{config.provider}:{config.model}" if config else ""
        if config is not None:
            config = replace(
                config, attempts=self.options.llm_attempts, max_wait=self.options.llm_max_wait
            )
            self._llm = make_client(config, self._http)

    @property
    def llm_model(self) -> str | None:
        return self._llm.model if self._llm else None

    async def aclose(self) -> None:
        await self._llm_flight.cancel()  # LLM answers nobody will be shown any more
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
            return slow_down_reply(wait)
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
        version = paper.version or 0
        llm = self._llm
        if llm is not None:
            key = CacheKey(paper.id, version, "llm", llm.model, language)
            done = self._cache.get(key)
            if isinstance(done, Explanation):
                self.stats.cache_hits += 1
                return await self._reply(done, key, paper, render_images)
        # Offline text is the same in every language: one cache entry for all.
        offline_key = CacheKey(paper.id, version, "offline", "", "")
        offline = await self._offline_explanation(paper, offline_key, count_hit=llm is None)
        if render_images:
            await self._images(offline, offline_key)
        if llm is None:
            if self._llm_problem:
                offline = replace(
                    offline,
                    header="Offline explanation — LLM not set up correctly",
                    reason=self._llm_problem,
                )
            return build_reply(offline, paper, images=render_images)
        refused = self._llm_refusal(paper)
        if refused is not None:  # backed off or out of budget: offline at once, labelled
            header, reason = refused
            return build_reply(
                replace(offline, header=header, reason=reason), paper, images=render_images
            )
        # The LLM starts now (one call however many ask); the offline explanation goes
        # out at once unless the LLM is quicker than the grace, and is edited later.
        answer = self._llm_flight.start(
            key, lambda: self._llm_explanation(llm, paper, offline, key)
        )
        grace = self.options.llm_grace_seconds
        if grace > 0:
            await asyncio.wait([answer], timeout=grace)
            if answer.done():
                return await self._reply(answer.result(), key, paper, render_images)
        pending = replace(
            offline,
            header=f"Offline explanation — a fuller one by {llm.model} is on its way",
            reason="",
        )
        first = build_reply(pending, paper, images=render_images)
        first.update = functools.partial(self._update, answer, key, paper, offline, render_images)
        return first

    async def _update(
        self,
        answer: asyncio.Future[Explanation],
        key: CacheKey,
        paper: Paper,
        offline: Explanation,
        render_images: bool,
    ) -> Reply:
        """The reply that replaces the offline one: the LLM's, or the offline one saying
        why there is no LLM explanation."""
        try:
            ex = await asyncio.shield(answer)
            return await self._reply(ex, key, paper, render_images)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must not become a stack trace in somebody's chat
            log.exception("finishing the explanation of %s failed", paper.id)
            failed = replace(
                offline,
                header="Offline explanation — the LLM was unavailable",
                reason="something unexpected went wrong while asking the LLM",
            )
            return build_reply(failed, paper, images=render_images)

    async def _reply(
        self, ex: Explanation, key: CacheKey, paper: Paper, render_images: bool
    ) -> Reply:
        if render_images:
            await self._images(ex, key)
        return build_reply(ex, paper, images=render_images)

    async def _images(self, ex: Explanation, key: CacheKey) -> None:
        if ex.equations and ex.images is None:
            await self._flight.do(("images", key, id(ex)), lambda: self._render(ex))

    async def _offline_explanation(
        self, paper: Paper, key: CacheKey, *, count_hit: bool
    ) -> Explanation:
        ex = self._cache.get(key)
        if isinstance(ex, Explanation):
            self.stats.cache_hits += count_hit
            return ex
        result = await self._flight.do(("offline", key), lambda: self._compute(paper, key))
        assert isinstance(result, Explanation)
        return result

    async def _compute(self, paper: Paper, key: CacheKey) -> Explanation:
        doc = await self._document(paper)
        ex = offline_explanation(paper, doc)
        ttl = self.options.failure_ttl_seconds if doc.transient else self.options.ttl_seconds
        self._cache.set(key, ex, ttl)
        return ex

    async def _render(self, ex: Explanation) -> None:
        latexes = [eq.latex for eq in ex.equations]
        try:
            ex.images = await asyncio.to_thread(render_many, latexes)
        except Exception:  # images are a nicety: Unicode is always there
            log.exception("equation rendering failed")
            ex.images = {}

    # ------------------------------------------------------------ paper text

    async def _load_document(self, paper: Paper) -> PaperText:
        return await load_paper_text(
            paper,
            settings=self.settings,
            http=self._http,
            gate=self._gate,
            limits=self.options.source_limits,
            max_html_bytes=self.options.max_html_bytes,
            stats=self.stats,
        )

    async def _document(self, paper: Paper) -> PaperText:
        key = ("doc", paper.id, paper.version or 0)
        doc = self._docs.get(key)
        if isinstance(doc, PaperText):
            return doc
        result = await self._flight.do(key, lambda: self._load_document(paper))
        assert isinstance(result, PaperText)
        ttl = self.options.failure_ttl_seconds if result.transient else self.options.ttl_seconds
        self._docs.set(key, result, ttl)
        return result

    async def paper_analysis(self, paper: Paper) -> Analysis | None:
        """The offline analysis of a paper built from its LaTeX source (or HTML), shared with
        /explain's cache; None when only the abstract could be had."""
        doc = await self._document(paper)
        return None if doc.built_from == "abstract" else doc.analysis

    async def ask_llm(self, system: str, user: str, *, max_tokens: int) -> str | None:
        """One short JSON completion within the daily token budget (digest math lines);
        None when no LLM is configured, the provider is backed off, the budget is spent or
        the call fails (which backs the provider off like any other failure)."""
        llm = self._llm
        if llm is None or self._backoff.blocked(self._provider_key) is not None:
            return None
        estimate = (len(system) + len(user)) // 3 + max_tokens
        if not self.budget.reserve(estimate):
            return None
        used = 0
        try:
            self.stats.llm_calls += 1
            completion = await llm.complete(system, user, max_tokens=max_tokens, json_mode=True)
            used = completion.tokens or estimate
            self._backoff.succeeded(self._provider_key)
            return completion.text
        except LLMError as exc:
            log.warning("short LLM completion failed: %s", exc)
            if not exc.request_specific:
                self._backoff.failed(self._provider_key, str(exc))
            return None
        finally:
            self.budget.settle(estimate, used)
            self.stats.llm_tokens += used

    # ------------------------------------------------------------ offline

    # ------------------------------------------------------------ LLM

    def _allowed_links(self, paper: Paper, ex: Explanation) -> set[str]:
        allowed = {url_key(u) for _, u in ex.links}
        for kind in ("abs", "pdf", "html"):
            allowed.add(f"arxiv.org/{kind}/{paper.id}")
        return allowed

    def _llm_refusal(self, paper: Paper) -> tuple[str, str] | None:
        """(header, reason) when the LLM is not to be asked now: backed off after failures,
        or today's token budget spent."""
        failure = self._backoff.blocked(self._provider_key) or self._backoff.blocked(
            self._paper_key(paper)
        )
        if failure is not None:
            wait = max(1.0, failure.until - self.options.clock())
            return (
                "Offline explanation — the LLM is unavailable right now",
                f"{failure.reason}; it will be asked again in {_duration(wait)}",
            )
        if self.budget.remaining < self.options.max_output_tokens:
            return "Offline explanation — today's LLM budget is used up", _BUDGET_REASON
        return None

    def _paper_key(self, paper: Paper) -> tuple[str, str, int]:
        return (self._provider_key, paper.id, paper.version or 0)

    async def _llm_explanation(
        self, llm: LLMClient, paper: Paper, offline: Explanation, key: CacheKey
    ) -> Explanation:
        """The LLM's explanation, cached; on failure the offline one saying why, with the
        provider (or this paper at the provider) backed off."""
        doc = await self._document(paper)

        def failed(
            header: str, reason: str, backoff: tuple[object, ...] | str | None
        ) -> Explanation:
            if backoff is not None:
                delay = self._backoff.failed(backoff, reason)
                log.info("LLM backed off for %.0f s (%s)", delay, backoff)
            return replace(offline, header=header, reason=reason)

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
            language=key.language,
            max_chars=self.options.max_paper_chars,
            results=a.results,
        )
        estimate = (len(system) + len(user)) // 3 + self.options.max_output_tokens
        if not self.budget.reserve(estimate):
            return failed(
                "Offline explanation — today's LLM budget is used up", _BUDGET_REASON, None
            )
        used = 0
        unavailable = "Offline explanation — the LLM was unavailable"
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
            scope = self._paper_key(paper) if exc.request_specific else self._provider_key
            return failed(unavailable, str(exc), scope)
        except BadAnswer as exc:
            log.warning("LLM answer for %s unusable: %s", paper.id, exc)
            return failed(
                "Offline explanation — the LLM's answer was unusable",
                "the model did not answer with the structured JSON it was asked for",
                self._paper_key(paper),
            )
        except Exception:
            log.exception("LLM explanation of %s failed unexpectedly", paper.id)
            return failed(
                unavailable,
                "something unexpected went wrong while asking the LLM",
                self._paper_key(paper),
            )
        finally:
            self.budget.settle(estimate, used)
            self.stats.llm_tokens += used
        self._backoff.succeeded(self._provider_key)
        self._backoff.succeeded(self._paper_key(paper))
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
            main_result=answer.main_result,
            novelty=answer.novelty,
            statements=offline.statements,
            equations=equations,
            how_it_works=answer.how_it_works,
            results=answer.results,
            caveats=answer.caveats,
            links=offline.links,
            notes=offline.notes,
            images=offline.images,  # the same equations
            tokens=used,
        )
        ttl = self.options.failure_ttl_seconds if doc.transient else self.options.ttl_seconds
        self._cache.set(key, ex, ttl)
        return ex

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
            return slow_down_reply(wait)
        failure = self._backoff.blocked(self._provider_key)
        if failure is not None:
            later = _duration(max(1.0, failure.until - self.options.clock()))
            return Reply.text(
                f"The LLM is unavailable right now ({failure.reason}); I'll try it again in "
                f"{later}. The offline /explain still works.",
                ephemeral=True,
            )
        norm = re.sub(r"\s+", " ", question.casefold())[:500]
        key = CacheKey(paper.id, paper.version or 0, "followup:" + norm, llm.model, language)
        cached = self._cache.get(key)
        if isinstance(cached, str):
            return answer_reply(paper, question, cached, llm.model)
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
        return answer_reply(paper, question, result, llm.model)

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
            self._backoff.succeeded(self._provider_key)
        except LLMError as exc:
            log.warning("LLM follow-up on %s failed: %s", paper.id, exc)
            if not exc.request_specific:
                self._backoff.failed(self._provider_key, str(exc))
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
        self._cache.set(key, answer, self.options.ttl_seconds)
        return answer


_BUDGET_REASON = "the bot's daily LLM token budget is spent; it resets at midnight UTC"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{math.ceil(seconds)} s"
    return f"{math.ceil(seconds / 60)} min"
