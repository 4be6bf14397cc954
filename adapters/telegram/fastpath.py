"""The digest fast path: text parts of outbox messages posted as prepared JSON through
httpx's transport, reading back only the message id.

Why it exists: at delivery rates (bench/bench_delivery.py, limits off) python-telegram-bot
costs most of a send's CPU (it builds a full Message object, entities and all, for every
answer), and rendering a digest costs more than sending it; thousands of chats get the
same digest. So each distinct message is rendered and encoded once (`prepare`) and every
chat's copy is one POST (`post`).

The contract, both halves:

- `prepare(message)` is memoised per Message object: the caller promises not to change a
  message it handed over (the outbox's messages are shared and read-only), and the memo
  keeps the object alive while its entry lives, so an id is never reused for another
  message. The outbox hands out one object per distinct row body while it is in use
  (bot/sending.Sender.send); a caller that does not only pays a render per send.
- `post(chat, payload)` answers exactly as PTB's `Bot.send_message` would for the same
  Bot API answer: the message id, or the TelegramError PTB would raise (errors.api_error),
  so the adapter maps every error one way (errors.map_error). Text parts only, never a
  reply to a message: photos and replies go through PTB.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from cachetools import LRUCache
from telegram import error as tg_error
from telegram.constants import ParseMode

from adapters.telegram.chats import telegram_chat_id, thread_id
from adapters.telegram.errors import api_error
from adapters.telegram.render import Plan, plan
from bot.config import USER_AGENT
from bot.doc import Message
from bot.models import ChatRef

if TYPE_CHECKING:
    from bot.config import Settings

_JSON_HEADERS = {"User-Agent": USER_AGENT, "Content-Type": "application/json"}
# Distinct messages in use at once: a round's digests, a handful per feed mix.
PREPARED = 512


@dataclass(slots=True)
class Prepared:
    """A message ready for many chats: its plan and, when every part is text, each part's
    sendMessage JSON without the chat (None: the plan goes through PTB)."""

    plan: Plan
    payloads: list[bytes] | None


class FastPath:
    def __init__(self, settings: Settings) -> None:
        base = f"{settings.telegram_api_base_url}{settings.telegram_bot_token}"
        self._url = httpx.URL(f"{base}/sendMessage")  # parsed once, not per request
        total = settings.http_timeout_seconds
        self._timeout = httpx.Timeout(total, connect=min(10.0, total)).as_dict()
        self._paid = settings.telegram_paid_broadcast
        # The dispatcher keeps delivery_concurrency requests on the wire; a bigger pool
        # only costs more, as httpcore checks every pooled connection on each request.
        self._pool = max(4, settings.delivery_concurrency)
        self._http: httpx.AsyncHTTPTransport | None = None
        # id(message) -> (message, prepared): see the module's contract.
        self._prepared: LRUCache[int, tuple[Message, Prepared]] = LRUCache(PREPARED)

    def open(self) -> None:
        # httpx's transport without AsyncClient's layers (cookies, auth, redirects, hooks):
        # the Bot API needs none of them, and they cost a third of each send's CPU.
        limits = httpx.Limits(max_connections=self._pool, max_keepalive_connections=self._pool)
        self._http = httpx.AsyncHTTPTransport(limits=limits)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def prepare(self, message: Message) -> Prepared:
        cached = self._prepared.get(id(message))
        if cached is not None and cached[0] is message:
            return cached[1]
        prepared = Prepared(plan(message), None)
        if all(part.photo is None for part in prepared.plan.parts):
            prepared.payloads = self._payloads(prepared.plan)
        self._prepared[id(message)] = (message, prepared)
        return prepared

    def _payloads(self, ready: Plan) -> list[bytes]:
        markup = ready.markup.to_dict() if ready.markup is not None else None
        payloads = []
        for index, part in enumerate(ready.parts):
            fields: dict[str, Any] = {
                "text": part.html,
                "parse_mode": ParseMode.HTML.value,
                "link_preview_options": {"is_disabled": True},
            }
            if self._paid:
                fields["allow_paid_broadcast"] = True
            if markup is not None and index == len(ready.parts) - 1:
                fields["reply_markup"] = markup
            body = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
            payloads.append(body[1:].encode())  # "{" comes with the chat id
        return payloads

    async def post(self, chat: ChatRef, payload: bytes) -> int:
        """sendMessage with a prepared payload; failures raise what PTB would raise."""
        transport = self._http
        if transport is None:
            raise RuntimeError("the Telegram adapter is not started")
        head = f'{{"chat_id":{json.dumps(telegram_chat_id(chat))},'
        thread = thread_id(chat)
        if thread is not None:
            head += f'"message_thread_id":{thread},'
        request = httpx.Request(
            "POST",
            self._url,
            content=head.encode() + payload,
            headers=_JSON_HEADERS,
            extensions={"timeout": self._timeout},
        )
        try:
            response = await transport.handle_async_request(request)
            try:
                await response.aread()
            finally:
                await response.aclose()
        except httpx.TimeoutException as e:
            raise tg_error.TimedOut(f"{type(e).__name__}: {e}") from e
        except httpx.HTTPError as e:
            raise tg_error.NetworkError(f"httpx.{type(e).__name__}: {e}") from e
        if not 200 <= response.status_code <= 299:
            raise api_error(response.status_code, response.content)
        try:
            return int(json.loads(response.content)["result"]["message_id"])
        except (ValueError, KeyError, TypeError):
            raise tg_error.TelegramError("Invalid server response") from None
