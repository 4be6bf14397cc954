"""The script on Telegram: the real TelegramAdapter and python-telegram-bot against the
fake Bot API, in a basic group (so it can be upgraded: the moved chat) that the user
administers. What the user sees is each message's visible text (HTML parsed away) and
the toasts of the buttons they press."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from adapters.telegram import TelegramAdapter
from bot.config import Settings
from bot.service import Paperboy
from tests.contract.core import core_settings, open_core
from tests.contract.drivers.base import Driver, settle
from tests.fakes.arxiv import FakeArxiv
from tests.fakes.hf import FakeHF
from tests.fakes.telegram import FakeTelegram

USER = 1001
GROUP = -4001  # a basic group: Telegram upgrades those to supergroups, with a new id
SUPERGROUP = -1004001


async def start_adapter(app: Paperboy, settings: Settings) -> TelegramAdapter:
    """The one place that knows how the Telegram adapter is built and started."""
    adapter = TelegramAdapter(app, settings, poll_timeout=1)
    await adapter.start()
    return adapter


class TelegramDriver(Driver):
    name = "telegram"

    def __init__(self, tg: FakeTelegram, app: Paperboy, settings: Settings) -> None:
        super().__init__()
        self.tg, self.app, self.settings = tg, app, settings
        self.chat = GROUP
        self._moving_to: int | None = None
        self._mark = 0
        self._queries: list[str] = []  # callback queries of this window
        self._calls_mark = 0  # sendMessage calls when a fault was scripted

    # -- the window

    def begin(self) -> None:
        self._mark = len(self.tg.sent)
        self._queries = []

    def _answers(self) -> list[str]:
        answers = self.tg.callback_answers
        return [answers[q]["text"] for q in self._queries if q in answers]

    def _seen(self) -> int:
        return len(self.tg.sent) - self._mark + len(self._answers())

    def visible(self) -> str:
        return "\n".join([*(m.text for m in self.tg.sent[self._mark :]), *self._answers()])

    def files(self) -> list[str]:
        return [m.document[0] for m in self.tg.sent[self._mark :] if m.document]

    # -- actions

    async def say(self, text: str) -> None:
        self.tg.send_text(self.chat, USER, text)
        await self._answered()

    async def press(self, label: str) -> None:
        message = next(
            m
            for m in reversed(self.tg.sent)
            if any(b["text"] == label and "callback_data" in b for b in m.buttons)
        )
        self._queries.append(
            self.tg.press_button(int(message.chat_id), message.message_id, USER, label)
        )
        await settle(self._seen)

    async def reply(self, text: str) -> None:
        last = self.tg.sent_to(self.chat)[-1]
        self.tg.send_text(self.chat, USER, text, reply_to_message_id=last.message_id)
        await self._answered()

    async def _answered(self) -> None:
        self.answered_at = await settle(self._seen)
        if self._moving_to is not None:
            # The answer reached the chat's new id; the user talks there from now on.
            assert {m.chat_id for m in self.tg.sent[self._mark :]} == {self._moving_to}
            self.chat, self._moving_to = self._moving_to, None

    async def chat_moves(self) -> None:
        self.tg.fail_chat(self.chat, "migrated", migrate_to=SUPERGROUP)
        self.tg.set_member(SUPERGROUP, USER, "administrator")
        self._moving_to = SUPERGROUP  # the bot learns it when it answers next

    def _send_calls(self) -> int:
        return self.tg.method_counts.get("sendmessage", 0)

    async def chat_gone(self) -> None:
        self.tg.fail_chat(self.chat, "kicked")  # 403: bot was kicked from the supergroup chat
        self._calls_mark = self._send_calls()

    async def chat_back(self) -> None:
        assert self._send_calls() > self._calls_mark, "the bot never tried the gone chat"
        self.tg.clear_failures(self.chat)

    async def rate_limited(self, seconds: float) -> None:
        retry = int(seconds)
        self.tg.fail_next(
            "sendMessage", 429, f"Too Many Requests: retry after {retry}", {"retry_after": retry}
        )
        self._calls_mark = self._send_calls()

    def rate_limit_served(self) -> bool:
        sent = sum(m.method == "sendMessage" for m in self.tg.sent[self._mark :])
        return self._send_calls() - self._calls_mark > sent  # one more call: the 429

    adapter: TelegramAdapter


@asynccontextmanager
async def telegram_driver(arxiv: FakeArxiv, hf: FakeHF) -> AsyncIterator[TelegramDriver]:
    async with FakeTelegram() as tg:
        tg.rate_limits.enabled = False
        tg.group(GROUP, "Reading group", supergroup=False)
        tg.set_member(GROUP, USER, "administrator")
        settings = core_settings(
            arxiv,
            hf,
            telegram_bot_token=tg.token,
            telegram_api_base_url=tg.base_url,
            telegram_file_base_url=tg.file_base_url,
        )
        async with open_core(settings) as app:
            driver = TelegramDriver(tg, app, settings)
            driver.adapter = driver.sender = await start_adapter(app, settings)
            try:
                yield driver
            finally:
                await driver.adapter.stop()
