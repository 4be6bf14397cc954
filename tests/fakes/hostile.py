"""Hostile answers any fake can give in place of its normal one: what a bad day at an
upstream (or an attacker between us and it) looks like on the wire.

    fake.hostile_next("trickle", times=2)     # the next two requests dribble 100 B/s

Modes (`MODES`):
- `cut_after_header`: status 200, the body cut right after the feed's header (before the
  first entry), as a dropped connection behind a buffering proxy delivers it;
- `cut_midway`: status 200, the body cut after half of its entries;
- `cut_json`: status 200, the JSON body cut in half;
- `trickle`: the normal body at ~100 bytes/s (headers at once);
- `huge`: 100 MB of filler, chunked (no Content-Length, so only a streaming cap stops it);
- `gzip_bomb`: `Content-Encoding: gzip` whose body inflates to 512 MB of zeros;
- `retry_after_hour`: 503 with `Retry-After: 3600`;
- `reset`: the connection is closed before any answer.
"""

from __future__ import annotations

import asyncio
import re
import zlib
from collections import deque
from functools import cache

from aiohttp import web
from aiohttp.typedefs import Handler

MODES = frozenset(
    {
        "cut_after_header",
        "cut_midway",
        "cut_json",
        "trickle",
        "huge",
        "gzip_bomb",
        "retry_after_hour",
        "reset",
    }
)
TRICKLE_BYTES_PER_SECOND = 100
HUGE_BYTES = 100_000_000
BOMB_BYTES = 512 * (1 << 20)

_ENTRY = re.compile(rb"<(?:entry|item)>")
_ENTRY_END = re.compile(rb"</(?:entry|item)>")


class HostilePlan:
    """A queue of hostile modes for the next requests (each mode used once per request)."""

    def __init__(self) -> None:
        self._modes: deque[str] = deque()

    def add(self, mode: str, times: int = 1) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown hostile mode {mode!r}; one of {sorted(MODES)}")
        self._modes.extend([mode] * times)

    def take(self) -> str | None:
        return self._modes.popleft() if self._modes else None

    def clear(self) -> None:
        self._modes.clear()


def cut_after_header(body: bytes) -> bytes:
    first = _ENTRY.search(body)
    return body[: first.start()] if first else body[: len(body) // 2]


def cut_midway(body: bytes) -> bytes:
    ends = list(_ENTRY_END.finditer(body))
    if len(ends) < 2:
        return body[: len(body) // 2]
    return body[: ends[len(ends) // 2 - 1].end()]


@cache
def gzip_bomb_body() -> bytes:
    """~500 KB of gzip that inflates to 512 MB of zeros (built once, streaming)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"\x00" * (1 << 20)
    parts = [comp.compress(chunk) for _ in range(BOMB_BYTES >> 20)]
    parts.append(comp.flush())
    return b"".join(parts)


async def answer(plan: HostilePlan, request: web.Request, handler: Handler) -> web.StreamResponse:
    """The handler's answer, or a hostile one built from it when the plan says so."""
    mode = plan.take()
    normal = await handler(request)
    if mode is None or not isinstance(normal, web.Response):
        return normal
    body = normal.body if isinstance(normal.body, bytes) else b""
    return await respond(request, mode, body, normal.headers.get("Content-Type", "text/plain"))


async def respond(
    request: web.Request, mode: str, body: bytes, content_type: str
) -> web.StreamResponse:
    """The hostile answer in `mode`, built from the normal `body`."""
    if mode == "retry_after_hour":
        return web.Response(status=503, text="Service Unavailable", headers={"Retry-After": "3600"})
    if mode == "reset":
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=500)  # never reaches the client
    if mode in ("cut_after_header", "cut_midway", "cut_json"):
        cut = {
            "cut_after_header": cut_after_header,
            "cut_midway": cut_midway,
            "cut_json": lambda b: b[: len(b) // 2],
        }[mode](body)
        return web.Response(body=cut, headers={"Content-Type": content_type})
    response = web.StreamResponse(headers={"Content-Type": content_type})
    if mode == "gzip_bomb":
        data = gzip_bomb_body()
        response.headers["Content-Encoding"] = "gzip"
        response.content_length = len(data)
        await response.prepare(request)
        for i in range(0, len(data), 1 << 16):
            await response.write(data[i : i + (1 << 16)])
        await response.write_eof()
        return response
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        if mode == "trickle":
            step = TRICKLE_BYTES_PER_SECOND // 10
            for i in range(0, len(body), step):
                await response.write(body[i : i + step])
                await asyncio.sleep(0.1)
        elif mode == "huge":
            filler = (b"<!-- filler -->" * 4096)[: 1 << 16]
            for _ in range(HUGE_BYTES // len(filler)):
                await response.write(filler)
        await response.write_eof()
    except ConnectionError:
        pass  # the client gave up, as it should
    return response
