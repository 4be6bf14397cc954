"""What every fake HTTP server shares: an aiohttp app on 127.0.0.1 at an ephemeral port,
started and stopped by hand or as an async context manager, recording every request.

A subclass adds its routes in `_routes`, and may answer in place of them in `_answer`
(scripted failures, throttling).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from aiohttp import web
from aiohttp.typedefs import Handler


@dataclass
class RecordedRequest:
    path: str
    query: dict[str, str]
    at: float  # time.monotonic() on arrival
    user_agent: str
    status: int = 0


# A dataclass, so that the dataclass fakes inherit its fields; none is an __init__ argument.
@dataclass(eq=False)
class FakeServer:
    url: str = field(default="", init=False)  # http://127.0.0.1:<port> once started
    requests: list[RecordedRequest] = field(default_factory=list, init=False)
    _runner: web.AppRunner | None = field(default=None, init=False, repr=False)

    def _routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def _answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        return await handler(request)

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        record = RecordedRequest(
            request.path,
            dict(request.query),
            time.monotonic(),
            request.headers.get("User-Agent", ""),
        )
        self.requests.append(record)
        response = await self._answer(request, handler)
        record.status = response.status
        return response

    async def start(self) -> Self:
        app = web.Application(middlewares=[self._record])
        self._routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


class RollingWindow:
    """At most `limit` requests in any `period` seconds: a rolling window, as Telegram and
    Discord measure, not a bucket that refills. The fakes' own, apart from the bot's pacer,
    so that a test against them checks the bot rather than agreeing with it."""

    __slots__ = ("limit", "period", "times")

    def __init__(self, limit: float, period: float) -> None:
        self.limit = max(1, int(limit))
        self.period = period
        self.times: deque[float] = deque()

    def wait(self, now: float) -> float:
        """0 if a request may go now, else how long until one may."""
        while self.times and self.times[0] <= now - self.period:
            self.times.popleft()
        if len(self.times) < self.limit:
            return 0.0
        return self.times[-self.limit] + self.period - now
