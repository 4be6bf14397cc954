"""Explanation engine: paper text from arXiv (LaTeX source, HTML, abstract), an offline
explanation from it, an optional LLM explanation, equation images, cache and limits."""

from bot.explain.cache import CacheKey, ExpiringCache
from bot.explain.explainer import Explainer, ExplainOptions, Stats
from bot.explain.limits import LimitSettings
from bot.explain.source import Limits

__all__ = [
    "CacheKey",
    "ExpiringCache",
    "ExplainOptions",
    "Explainer",
    "LimitSettings",
    "Limits",
    "Stats",
]
