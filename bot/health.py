"""The health and metrics HTTP endpoint.

`MetricsServer` serves `GET /metrics` (Prometheus text format, bot/metrics.py's registry)
and `GET /healthz` (JSON: 200 when the store answers, 503 when it does not) on
`Settings.metrics_port`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.metrics import OUTBOX_QUEUE_DEPTH, REGISTRY
from bot.store.base import Store

log = logging.getLogger(__name__)


class Health:
    """What `/healthz` reports besides the store: each adapter's state, set by the app."""

    def __init__(self) -> None:
        self.adapters: dict[str, str] = {}
        self.started = time.time()

    def set_adapter(self, platform: str, state: str) -> None:
        self.adapters[platform] = state  # "starting", "running", "stopped", "failed"


async def _store_ok(store: Store, seconds: float) -> tuple[bool, str | None]:
    try:
        await asyncio.wait_for(store.schema_version(), seconds)
    except asyncio.CancelledError:
        raise
    except Exception as e:
        # The class name only: driver messages may echo the DSN, password included.
        return False, type(e).__name__
    return True, None


class MetricsServer:
    """`/healthz` and `/metrics` on host:port (port 0 picks a free one; see `.port`)."""

    def __init__(
        self,
        store: Store,
        health: Health | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        check_timeout: float = 2.0,
        extra: Callable[[], Awaitable[Mapping[str, Any]]] | None = None,
    ) -> None:
        self.store = store
        self.health = health or Health()
        self.host = host
        self.port = port
        self.check_timeout = check_timeout
        self._extra = extra
        self._runner: web.AppRunner | None = None

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def start(self) -> int:
        runner = web.AppRunner(self.make_app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        if runner.addresses:
            self.port = int(runner.addresses[0][1])
        log.info("metrics and health on http://%s:%d", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> MetricsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _healthz(self, request: web.Request) -> web.Response:
        ok, error = await _store_ok(self.store, self.check_timeout)
        store: dict[str, Any] = {"reachable": ok}
        if error:
            store["error"] = error
        body: dict[str, Any] = {
            "status": "ok" if ok else "unavailable",
            "store": store,
            "adapters": dict(self.health.adapters),
            "uptime_seconds": round(time.time() - self.health.started, 1),
        }
        if self._extra is not None:
            with contextlib.suppress(Exception):
                body.update(await self._extra())
        return web.json_response(body, status=200 if ok else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        # The queue depth is read at scrape time: exact, and no loop has to keep it fresh.
        try:
            counts = await asyncio.wait_for(self.store.outbox_counts(), self.check_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.debug("outbox depth unavailable: %s", type(e).__name__)
        else:
            OUTBOX_QUEUE_DEPTH.set(counts.get("pending", 0) + counts.get("sending", 0))
        payload = await asyncio.to_thread(generate_latest, REGISTRY)
        return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})
