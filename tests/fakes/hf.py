"""A fake Hugging Face papers API on 127.0.0.1, in the real JSON shapes.

    async with FakeHF() as fake:
        settings = fake.settings()               # hf_api_url pointed here
        fake.add_daily("2026-06-13", [item, ...])
        fake.fail_next(503)
        fake.requests                            # path, query, time, User-Agent

Routes: `/api/daily_papers` (`date=YYYY-MM-DD`, `week=YYYY-Www`, `sort=trending`, `limit`),
`/api/papers/{id}` (the bare paper object, 404 when unknown), `/api/papers/search?q=`.
Daily items come from `tests/fixtures/hf/*.json`, grouped by the day they were listed
(`submittedOnDailyAt`).
Items are served as stored, so a test can append a malformed one.
"""

from __future__ import annotations

import copy
import json
from collections import deque
from datetime import date
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from bot.config import Settings
from tests.fakes.base import FakeServer
from tests.fakes.hostile import HostilePlan
from tests.fakes.hostile import answer as hostile_answer

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "hf"


def load_daily_fixtures(folder: Path = FIXTURES) -> dict[str, list[Any]]:
    """Items from the recorded daily_papers responses, by listed day."""
    days: dict[str, list[Any]] = {}
    for path in sorted(folder.glob("daily_papers_*.json")):
        for item in json.loads(path.read_text(encoding="utf-8")):
            day = item["paper"]["submittedOnDailyAt"][:10]
            days.setdefault(day, []).append(item)
    return days


class FakeHF(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.days: dict[str, list[Any]] = load_daily_fixtures()
        self.trending: list[Any] | None = None  # None: every item, most upvoted first
        self._failures: deque[tuple[int, str | None]] = deque()
        self.hostile = HostilePlan()  # tests.fakes.hostile modes for the next requests

    # -- test controls -----------------------------------------------------------------

    def hostile_next(self, mode: str, *, times: int = 1) -> None:
        """Answer the next `times` requests in a hostile `mode` (see tests.fakes.hostile)."""
        self.hostile.add(mode, times)

    def add_daily(self, day: str, items: list[Any]) -> None:
        self.days.setdefault(day, []).extend(items)

    def fail_next(
        self, status: int = 503, *, times: int = 1, retry_after: str | None = None
    ) -> None:
        for _ in range(times):
            self._failures.append((status, retry_after))

    def all_items(self) -> list[Any]:
        return [item for day in sorted(self.days) for item in self.days[day]]

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {"hf_api_url": self.api_url, "http_timeout_seconds": 5.0}
        values.update(overrides)
        return Settings(**values)

    # -- handlers ----------------------------------------------------------------------

    def _routes(self, app: web.Application) -> None:
        app.router.add_get("/api/daily_papers", self._daily)
        app.router.add_get("/api/papers/search", self._search)
        app.router.add_get("/api/papers/{id}", self._paper)

    async def _answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self._failures:
            status, retry_after = self._failures.popleft()
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            return web.json_response(
                {"error": "Service Unavailable"}, status=status, headers=headers
            )
        return await hostile_answer(self.hostile, request, handler)

    async def _daily(self, request: web.Request) -> web.Response:
        q = request.query
        limit = int(q.get("limit", "50"))
        if q.get("sort") == "trending":
            items = self.trending
            if items is None:
                items = sorted(self.all_items(), key=_upvotes, reverse=True)
        elif "date" in q:
            items = self.days.get(q["date"], [])
        elif "week" in q:  # ISO week, as the real API takes it: 2026-W49
            items = [
                item
                for day, listed in sorted(self.days.items())
                if _iso_week(day) == q["week"]
                for item in listed
            ]
        else:
            items = self.days[max(self.days)] if self.days else []
        return web.json_response(items[:limit])

    async def _paper(self, request: web.Request) -> web.Response:
        pid = request.match_info["id"]
        for item in reversed(self.all_items()):
            paper = item.get("paper") if isinstance(item, dict) else None
            if isinstance(paper, dict) and paper.get("id") == pid:
                return web.json_response(copy.deepcopy(paper))
        return web.json_response({"error": "Paper not found"}, status=404)

    async def _search(self, request: web.Request) -> web.Response:
        words = request.query.get("q", "").casefold().split()
        hits = []
        for item in self.all_items():
            paper = item.get("paper") if isinstance(item, dict) else None
            if not isinstance(paper, dict):
                continue
            names = " ".join(
                a.get("name", "") for a in paper.get("authors", []) if isinstance(a, dict)
            )
            text = f"{paper.get('title', '')} {paper.get('summary', '')} {names}".casefold()
            if words and all(w in text for w in words):
                hits.append(item)
        return web.json_response(hits[: int(request.query.get("limit", "50"))])


def _upvotes(item: Any) -> int:
    paper = item.get("paper") if isinstance(item, dict) else None
    votes = paper.get("upvotes") if isinstance(paper, dict) else None
    return votes if isinstance(votes, int) else 0


def _iso_week(day: str) -> str:
    year, week, _ = date.fromisoformat(day).isocalendar()
    return f"{year}-W{week:02d}"
