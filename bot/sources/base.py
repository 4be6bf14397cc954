"""The one protocol every upstream (arXiv, Hugging Face) implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

from bot.models import Paper


class SourceError(Exception):
    """An upstream failed in a way the user should hear about (message is user-safe)."""


@dataclass(slots=True)
class FeedFetch:
    """One fetch of a feed. `announced` is None when there was no announcement (weekend,
    holiday): that is not an error, and such a day produces no digest."""

    papers: list[Paper] = field(default_factory=list)
    announced: date | None = None
    # Served from an earlier day because the upstream failed or was slow just now: `stale`
    # says why (user-safe). Never stored; the fetch goes on in the background.
    stale: str | None = None


class Source(Protocol):
    prefix: str  # feed prefix: "hf" or "arxiv"

    async def feed(self, name: str) -> FeedFetch:
        """The feed's current papers; `name` is the part after the prefix ("trending", "cs.AI")."""
        ...

    async def papers(self, ids: Sequence[str]) -> list[Paper]:
        """Look papers up by canonical id (unknown ids are simply missing from the result)."""
        ...

    async def search(self, query: str, limit: int = 10) -> list[Paper]: ...

    async def aclose(self) -> None: ...
