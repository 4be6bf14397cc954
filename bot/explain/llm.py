"""LLM clients on httpx: one OpenAI-compatible client, one native Anthropic client.

OpenAI-compatible covers OpenAI, Ollama, vLLM, llama.cpp, OpenRouter, Groq, DeepSeek,
Mistral, Together and most self-hosted servers: POST {base}/chat/completions with a
Bearer key. Anthropic is POST {base}/v1/messages with x-api-key and anthropic-version.
Both retry 429/5xx (honouring Retry-After) within one total time budget (every try may
use what is left of it), count tokens from `usage`, and never put the API key into a log
line or an error message.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

from bot import metrics
from bot.config import USER_AGENT
from bot.sources.http import RetryAfterOrBackoff, parse_retry_after

log = logging.getLogger(__name__)

ANTHROPIC_VERSION = "2023-06-01"

# provider name -> (wire format, default base URL; None = LLM_BASE_URL is required)
PROVIDERS: dict[str, tuple[str, str | None]] = {
    "openai": ("openai", "https://api.openai.com/v1"),
    "anthropic": ("anthropic", "https://api.anthropic.com"),
    "claude": ("anthropic", "https://api.anthropic.com"),
    "ollama": ("openai", "http://localhost:11434/v1"),
    "vllm": ("openai", "http://localhost:8000/v1"),
    "llamacpp": ("openai", "http://localhost:8080/v1"),
    "llama.cpp": ("openai", "http://localhost:8080/v1"),
    "llama-cpp": ("openai", "http://localhost:8080/v1"),
    "lmstudio": ("openai", "http://localhost:1234/v1"),
    "openrouter": ("openai", "https://openrouter.ai/api/v1"),
    "groq": ("openai", "https://api.groq.com/openai/v1"),
    "deepseek": ("openai", "https://api.deepseek.com/v1"),
    "mistral": ("openai", "https://api.mistral.ai/v1"),
    "together": ("openai", "https://api.together.xyz/v1"),
    "openai-compatible": ("openai", None),
    "compatible": ("openai", None),
    "custom": ("openai", None),
}
# Local servers usually run without a key.
KEYLESS = {"ollama", "vllm", "llamacpp", "llama.cpp", "llama-cpp", "lmstudio", "openai-compatible",
           "compatible", "custom"}  # fmt: skip
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529}
# Chat platforms and users give up on a bot that is silent for a minute: the whole LLM
# call, retries and waits included, stays below it.
MAX_BUDGET_SECONDS = 59.0


class LLMError(Exception):
    """The LLM call failed; the message is safe to show to users (no secrets, no bodies)."""

    # Whether the failure is about this request (say, a paper too long for the model)
    # rather than the provider (down, hung, wrong key), which fails for every paper.
    request_specific = False


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(slots=True)
class Completion:
    text: str
    input_tokens: int
    output_tokens: int
    truncated: bool = False

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class LLMConfig:
    provider: str
    wire: str  # "openai" or "anthropic"
    base_url: str
    model: str
    api_key: str = ""
    attempts: int = 3
    max_wait: float = 30.0  # cap on one back-off (and on Retry-After)
    # All tries and waits together; each try may take what is left (models can take a
    # while to write), and a retry is made only if it can start within the budget.
    budget: float = 45.0


def clamp_budget(seconds: float) -> float:
    """A usable total budget: positive and below a minute."""
    return min(max(seconds, 1.0), MAX_BUDGET_SECONDS)


def config_from_settings(
    provider: str, base_url: str, api_key: str, model: str, budget: float
) -> tuple[LLMConfig | None, str]:
    """(config, "") when an LLM is usable, else (None, why not) — the reason is user-safe."""
    name = provider.strip().lower()
    if not name:
        return None, ""
    wire, default_base = PROVIDERS.get(name, ("openai", None))
    base = (base_url or default_base or "").rstrip("/")
    if not base:
        return None, f"LLM_BASE_URL is not set for provider {name!r}"
    if not model:
        return None, "LLM_MODEL is not set"
    if not api_key and name not in KEYLESS and name in PROVIDERS:
        return None, "LLM_API_KEY is not set"
    return (
        LLMConfig(name, wire, base, model, api_key, budget=clamp_budget(budget)),
        "",
    )


class LLMClient(Protocol):
    model: str

    async def complete(
        self, system: str, user: str, *, max_tokens: int, json_mode: bool = True
    ) -> Completion: ...


class _BaseClient:
    wire = ""

    def __init__(self, config: LLMConfig, http: httpx.AsyncClient) -> None:
        self.config = config
        self.model = config.model
        self._http = http
        self._json_ok = True  # set False if the server rejects response_format

    def _redact(self, s: str) -> str:
        key = self.config.api_key
        return s.replace(key, "***") if key else s

    async def complete(
        self, system: str, user: str, *, max_tokens: int, json_mode: bool = True
    ) -> Completion:
        budget = self.config.budget
        ends = asyncio.get_running_loop().time() + budget
        jitter = wait_exponential_jitter(initial=1, max=self.config.max_wait)
        wait = RetryAfterOrBackoff(1.0, self.config.max_wait, fallback=jitter)
        tries = 0
        try:
            # The timeout is the hard bound; the stop rule only avoids starting a retry
            # (or a wait before one) that could not finish within the budget.
            async with asyncio.timeout_at(ends):
                async for attempt in AsyncRetrying(
                    stop=stop_after_attempt(self.config.attempts) | stop_before_delay(budget),
                    wait=wait,
                    retry=retry_if_exception_type(_Retryable),
                    reraise=True,
                ):
                    with attempt:
                        tries += 1
                        completion = await self._once(system, user, max_tokens, json_mode, ends)
                        metrics.record_tokens(
                            self.config.provider,
                            prompt=completion.input_tokens,
                            completion=completion.output_tokens,
                        )
                        return completion
        except _Retryable as exc:
            raise LLMError(f"{exc.reason} (gave up after {_tries(tries)})") from None
        except TimeoutError:
            raise LLMError(
                f"the LLM provider did not answer within {budget:g} s ({_tries(tries)})"
            ) from None
        raise LLMError("the LLM provider did not answer")  # not reached: tenacity reraises

    async def _post(
        self, url: str, headers: dict[str, str], body: dict[str, Any], ends: float
    ) -> dict[str, Any]:
        left = max(0.1, ends - asyncio.get_running_loop().time())  # what the budget leaves
        timeout = httpx.Timeout(left, connect=min(10.0, left))
        try:
            with metrics.upstream_timer("LLM"):
                resp = await self._http.post(url, headers=headers, json=body, timeout=timeout)
        except httpx.TimeoutException as exc:
            raise _Retryable("the LLM provider timed out") from exc
        except httpx.TransportError as exc:
            raise _Retryable(f"could not reach the LLM provider ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:  # a bad base URL and the like: retrying won't help
            raise LLMError(f"could not call the LLM provider ({type(exc).__name__})") from exc
        status = resp.status_code
        if status in RETRY_STATUS:
            after = parse_retry_after(resp.headers.get("retry-after"), self.config.max_wait)
            what = "rate-limited the request" if status == 429 else "had an error"
            log.info("LLM %s answered HTTP %s; will retry", self.config.provider, status)
            raise _Retryable(f"the LLM provider {what} (HTTP {status})", after)
        if status in (401, 403):
            raise LLMError(f"the LLM provider rejected the API key (HTTP {status})")
        if status == 404:
            raise LLMError(f"the LLM endpoint or model {self.model!r} was not found (HTTP 404)")
        if status >= 400:
            log.info(
                "LLM %s refused the request: HTTP %s %s",
                self.config.provider,
                status,
                self._redact(resp.text[:300]),
            )
            raise _Refused(f"the LLM provider refused the request (HTTP {status})", status)
        try:
            data = resp.json()
        except ValueError as exc:
            raise _Retryable("the LLM provider sent a response that is not JSON") from exc
        if not isinstance(data, dict):
            raise _Retryable("the LLM provider sent an unexpected response")
        return data

    async def _once(
        self, system: str, user: str, max_tokens: int, json_mode: bool, ends: float
    ) -> Completion:
        raise NotImplementedError


def _tries(n: int) -> str:
    return f"{n} attempt{'s' if n != 1 else ''}"


class _Refused(LLMError):
    request_specific = True

    def __init__(self, reason: str, status: int) -> None:
        super().__init__(reason)
        self.status = status


def _int(v: object) -> int:
    return v if isinstance(v, int) and v >= 0 else 0


class OpenAICompatClient(_BaseClient):
    wire = "openai"

    async def _once(
        self, system: str, user: str, max_tokens: int, json_mode: bool, ends: float
    ) -> Completion:
        headers = {"User-Agent": USER_AGENT, "Content-Type": "application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ],
            "temperature": 0.2,
        }
        # OpenAI's newer models want max_completion_tokens; compatible servers know max_tokens.
        body["max_completion_tokens" if self.config.provider == "openai" else "max_tokens"] = (
            max_tokens
        )
        if json_mode and self._json_ok:
            body["response_format"] = {"type": "json_object"}
        url = f"{self.config.base_url}/chat/completions"
        try:
            data = await self._post(url, headers, body, ends)
        except _Refused as exc:
            if exc.status == 400 and "response_format" in body:
                # Some servers/models have no JSON mode: ask again without it.
                self._json_ok = False
                body.pop("response_format")
                data = await self._post(url, headers, body, ends)
            else:
                raise
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise _Retryable("the LLM provider sent no answer")
        message = choices[0].get("message") or {}
        text = message.get("content") if isinstance(message, dict) else None
        if isinstance(text, list):  # some servers send content parts
            text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
        if not isinstance(text, str) or not text.strip():
            raise _Retryable("the LLM provider sent an empty answer")
        usage = data.get("usage") or {}
        return Completion(
            text,
            _int(usage.get("prompt_tokens")),
            _int(usage.get("completion_tokens")),
            truncated=choices[0].get("finish_reason") == "length",
        )


class AnthropicClient(_BaseClient):
    wire = "anthropic"

    async def _once(
        self, system: str, user: str, max_tokens: int, json_mode: bool, ends: float
    ) -> Completion:
        headers = {
            "User-Agent": USER_AGENT,
            "Content-Type": "application/json",
            "x-api-key": self.config.api_key,
            "anthropic-version": ANTHROPIC_VERSION,
        }
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "system": system,
            "messages": [{"role": "user", "content": user}],
            "temperature": 0.2,
        }
        base = self.config.base_url
        url = f"{base}/messages" if base.endswith("/v1") else f"{base}/v1/messages"
        data = await self._post(url, headers, body, ends)
        if data.get("type") == "error":
            raise _Retryable("the LLM provider reported an error")
        blocks = data.get("content")
        if not isinstance(blocks, list):
            raise _Retryable("the LLM provider sent no answer")
        text = "".join(
            b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text"
        )
        if not text.strip():
            raise _Retryable("the LLM provider sent an empty answer")
        usage = data.get("usage") or {}
        return Completion(
            text,
            _int(usage.get("input_tokens")),
            _int(usage.get("output_tokens")),
            truncated=data.get("stop_reason") == "max_tokens",
        )


def make_client(config: LLMConfig, http: httpx.AsyncClient) -> LLMClient:
    if config.wire == "anthropic":
        return AnthropicClient(config, http)
    return OpenAICompatClient(config, http)
