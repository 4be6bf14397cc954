"""Fake LLM servers on 127.0.0.1 speaking the real wire formats.

- OpenAI-compatible: POST /v1/chat/completions, `Authorization: Bearer <key>`, answers
  `{"choices": [{"message": {...}, "finish_reason": ...}], "usage": {...}}`.
- Anthropic: POST /v1/messages, `x-api-key` + `anthropic-version`, answers
  `{"type": "message", "content": [{"type": "text", ...}], "usage": {...}}`.

Both check auth and request shape (400/401 with each API's error body otherwise), follow
a script of behaviours (ok, 429 with Retry-After, 500/529, junk), can be slow (`delay`)
or hung (`stall`: no answer until the test sets it), and record every call.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeServer

Step = str | tuple[int, str | None]  # "ok" | "junk" | "prose" | (status, retry_after)


def default_answer(equation_ids: list[str]) -> dict[str, Any]:
    return {
        "tldr": "DFM learns a straight-line velocity field so images can be sampled in 4 steps.",
        "idea": "Instead of many denoising steps, learn the velocity $v_\\theta$ of a straight "
        "path from noise to data and integrate it with a few Euler steps.",
        "main_result": "Straight-line flow matching samples ImageNet at FID 2.1 in 4 steps.",
        "new_vs_prior": "Earlier flow models need dozens of steps; DFM needs four.",
        "equations": [
            {
                "id": eid,
                "meaning": f"Equation {eid} explained plainly.",
                "terms": [{"symbol": "\\theta", "meaning": "the network parameters"}],
            }
            for eid in equation_ids
        ],
        "how_it_works": ["Interpolate noise and data.", "Regress the velocity.", "Integrate."],
        "results": ["FID 2.1 on ImageNet 256 in 4 steps."],
        "caveats": ["Only images were tested; see https://evil.example.com/phish for more."],
    }


@dataclass
class Call:
    api: str  # "openai" | "anthropic"
    headers: dict[str, str]
    body: dict[str, Any]
    at: float


@dataclass
class FakeLLM(FakeServer):
    api_key: str = "sk-test-SECRET-123456"
    script: list[Step] = field(default_factory=list)  # consumed one per call; then "ok"
    delay: float = 0.0
    # A hung provider: while this event is not set, every call waits (the client's timeout
    # or the event ends the wait). None: answer after `delay`.
    stall: asyncio.Event | None = None
    prompt_tokens: int = 1200
    completion_tokens: int = 300
    calls: list[Call] = field(default_factory=list)  # well-formed, authorised calls only
    answer: dict[str, Any] | None = None  # overrides default_answer
    reject_response_format: bool = False  # behave like a server without JSON mode

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/v1/messages", self._anthropic)

    _arrived: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def count(self, api: str | None = None) -> int:
        return sum(1 for c in self.calls if api is None or c.api == api)

    async def wait_calls(self, n: int, within: float = 5.0) -> None:
        """Until `n` well-formed calls have arrived (answered or not)."""
        async with asyncio.timeout(within):
            while len(self.calls) < n:
                self._arrived.clear()
                await self._arrived.wait()

    # ------------------------------------------------------------ behaviour

    async def _next(self) -> Step:
        """The next scripted behaviour (taken on arrival), after the configured delay."""
        self._arrived.set()
        step = self.script.pop(0) if self.script else "ok"
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.stall is not None:
            await self.stall.wait()
        return step

    def _content(self, user_text: str) -> str:
        if "<<<QUESTION>>>" in user_text:
            return json.dumps({"answer": "The loss in Eq. (2) regresses the velocity $v$."})
        ids = sorted(set(re.findall(r"^(E\d+): \$\$", user_text, re.M)))
        return json.dumps(self.answer if self.answer is not None else default_answer(ids))

    # --------------------------------------------------------------- OpenAI

    async def _openai(self, request: web.Request) -> web.Response:
        def error(status: int, message: str, kind: str) -> web.Response:
            body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
            return web.json_response(body, status=status)

        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return error(401, "Incorrect API key provided.", "invalid_request_error")
        try:
            body = await request.json()
        except ValueError:
            return error(
                400, "We could not parse the JSON body of your request.", "invalid_request_error"
            )
        self.calls.append(Call("openai", dict(request.headers), body, time.monotonic()))
        msgs = body.get("messages")
        if not isinstance(body.get("model"), str) or not isinstance(msgs, list) or not msgs:
            return error(400, "'model' and 'messages' are required", "invalid_request_error")
        for m in msgs:
            if m.get("role") not in ("system", "user", "assistant") or not isinstance(
                m.get("content"), str
            ):
                return error(400, "Invalid message", "invalid_request_error")
        limit = body.get("max_tokens", body.get("max_completion_tokens"))
        if limit is not None and not isinstance(limit, int):
            return error(400, "max_tokens must be an integer", "invalid_request_error")
        if self.reject_response_format and "response_format" in body:
            return error(400, "response_format is not supported", "invalid_request_error")
        step = await self._next()
        if isinstance(step, tuple):
            status, retry_after = step
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            resp = error(
                status, "Rate limit reached" if status == 429 else "Server error", "server_error"
            )
            resp.headers.update(headers)
            return resp
        user_text = next((m["content"] for m in msgs if m["role"] == "user"), "")
        content = {"junk": "I think this paper is great! {not json", "prose": "Plain words."}.get(
            step, self._content(user_text)
        )
        return web.json_response(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": self.prompt_tokens,
                    "completion_tokens": self.completion_tokens,
                    "total_tokens": self.prompt_tokens + self.completion_tokens,
                },
            }
        )

    # ------------------------------------------------------------ Anthropic

    async def _anthropic(self, request: web.Request) -> web.Response:
        def error(status: int, message: str, kind: str) -> web.Response:
            return web.json_response(
                {"type": "error", "error": {"type": kind, "message": message}}, status=status
            )

        if request.headers.get("x-api-key") != self.api_key:
            return error(401, "invalid x-api-key", "authentication_error")
        if not request.headers.get("anthropic-version"):
            return error(400, "anthropic-version header is required", "invalid_request_error")
        try:
            body = await request.json()
        except ValueError:
            return error(400, "invalid JSON", "invalid_request_error")
        self.calls.append(Call("anthropic", dict(request.headers), body, time.monotonic()))
        msgs = body.get("messages")
        if not isinstance(body.get("model"), str) or not isinstance(body.get("max_tokens"), int):
            return error(400, "model and max_tokens are required", "invalid_request_error")
        if not isinstance(msgs, list) or not msgs or msgs[0].get("role") != "user":
            return error(
                400, "messages: first message must use the user role", "invalid_request_error"
            )
        if any(m.get("role") not in ("user", "assistant") for m in msgs):
            return error(400, "messages: roles must be user or assistant", "invalid_request_error")
        if "system" in body and not isinstance(body["system"], (str, list)):
            return error(400, "system: invalid type", "invalid_request_error")
        step = await self._next()
        if isinstance(step, tuple):
            status, retry_after = step
            kind = {429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
            resp = error(status, "slow down" if status == 429 else "internal error", kind)
            if retry_after is not None:
                resp.headers["retry-after"] = retry_after
            return resp
        user_text = msgs[0]["content"] if isinstance(msgs[0]["content"], str) else ""
        content = {"junk": "Sure! Here's my take: {{{", "prose": "Plain words."}.get(
            step, self._content(user_text)
        )
        return web.json_response(
            {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [{"type": "text", "text": content}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {
                    "input_tokens": self.prompt_tokens,
                    "output_tokens": self.completion_tokens,
                },
            }
        )
