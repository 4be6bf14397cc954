"""Telegram end to end, the platform's own behaviour: the digest's Unsubscribe/Settings
row, command menus per scope, start-up as a service (an unreachable API, a refused token,
another instance polling), SQL logging and the working directory's .env."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from adapters.telegram import TelegramAdapter
from bot.commands import COMMANDS
from bot.config import Settings
from bot.digest import render_digest
from bot.logs import setup_logging
from bot.models import ChatRef, ChatSettings, Paper, Subscription
from bot.runtime import serve
from bot.serialize import message_from_json, message_to_json
from bot.service import Paperboy
from bot.startup import PlatformError
from tests.fakes.telegram import FakeTelegram
from tests.test_telegram import ADMIN, GROUP, MEMBER, USER, Bot, button_labels
from tests.test_telegram import bot as bot  # fixtures, shared
from tests.test_telegram import paperboy as paperboy

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = [name for name, cmd in COMMANDS.items() if not cmd.admin_only]


async def press(bot: Bot, message_id: str, user: int, label: str) -> str:
    query = bot.tg.press_button(GROUP, int(message_id), user, label)
    await bot.tg.wait_for(lambda: query in bot.tg.callback_answers)
    return query


async def test_digest_has_unsubscribe_and_settings_buttons_that_work(bot: Bot) -> None:
    chat = ChatRef("telegram", str(GROUP))
    for feed in ("hf:trending", "arxiv:cs.LG"):
        await bot.store.add_subscription(Subscription(chat, feed))
    papers = [Paper("1706.03762", "Attention"), Paper("2401.00001", "Another")]
    [digest] = render_digest(ChatSettings(chat), papers, "Digest")
    digest = message_from_json(message_to_json(digest))  # as the outbox keeps it
    [message_id] = await bot.adapter.send(chat, digest)
    [sent] = bot.tg.sent_to(GROUP)
    assert button_labels(sent) == [
        *("💡 1", "💡 2", "Unsubscribe", "Settings"),
        *("👍 1", "👍 2", "👎 1", "👎 2"),  # votes (issue 14)
    ]

    # Anyone may read the settings.
    before = len(bot.tg.sent_to(GROUP))
    await press(bot, message_id, MEMBER, "Settings")
    [settings] = (await bot.tg.wait_sent(GROUP, before + 1))[before:]
    assert "Digest at 09:00 UTC" in settings.text

    # Only admins unsubscribe: a member gets an alert, the chat hears nothing.
    query = await press(bot, message_id, MEMBER, "Unsubscribe")
    assert "Only chat admins" in bot.tg.callback_answers[query]["text"]
    assert len(await bot.store.list_subscriptions(chat)) == 2

    before = len(bot.tg.sent_to(GROUP))
    await press(bot, message_id, ADMIN, "Unsubscribe")
    [which] = (await bot.tg.wait_sent(GROUP, before + 1))[before:]
    assert "Which feed" in which.text
    assert button_labels(which) == ["Unsubscribe hf:trending", "Unsubscribe arxiv:cs.LG"]
    before = len(bot.tg.sent_to(GROUP))
    await press(bot, str(which.message_id), ADMIN, "Unsubscribe hf:trending")
    [done] = (await bot.tg.wait_sent(GROUP, before + 1))[before:]
    assert done.text == "Unsubscribed from hf:trending."
    assert [s.feed for s in await bot.store.list_subscriptions(chat)] == ["arxiv:cs.LG"]


async def test_command_menus_per_scope(bot: Bot) -> None:
    menus = {scope: [c["command"] for c in cmds] for scope, cmds in bot.tg.commands.items()}
    assert menus["default"] == PUBLIC
    assert menus["all_group_chats"] == PUBLIC
    assert menus["all_private_chats"] == list(COMMANDS)
    assert menus["all_chat_administrators"] == list(COMMANDS)
    assert "subscribe" not in PUBLIC and "settings" not in PUBLIC and "help" in PUBLIC


async def test_admin_command_in_a_paused_chat_switches_it_back_on(bot: Bot) -> None:
    from tests.test_telegram import say

    chat = ChatRef("telegram", str(GROUP))
    await bot.store.add_subscription(Subscription(chat, "hf:trending"))
    await bot.store.set_chat_active(chat, False)  # delivery found the bot blocked earlier
    [reply] = await say(bot, GROUP, ADMIN, "/settings count 5")
    assert "Saved" in reply.text and "back on" in reply.text
    settings = await bot.store.get_chat(chat)
    assert settings is not None and settings.active and settings.count == 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_start_retries_while_telegram_is_unreachable(
    paperboy: tuple[Paperboy, Settings], caplog: pytest.LogCaptureFixture
) -> None:
    app, settings = paperboy
    port = free_port()
    tg = FakeTelegram()
    settings = replace(
        settings,
        telegram_bot_token=tg.token,
        telegram_api_base_url=f"http://127.0.0.1:{port}/bot",
    )
    adapter = TelegramAdapter(app, settings, poll_timeout=1, start_backoff=0.05)
    caplog.set_level(logging.WARNING, "bot.startup")
    starting = asyncio.create_task(adapter.start())
    try:
        await asyncio.sleep(0.5)  # nothing listens there: connection refused, again
        assert not starting.done()
        await tg.start(port)  # the network (or Telegram) comes back
        await asyncio.wait_for(starting, 10)
        assert adapter.username == tg.username
        tg.private_chat(USER, "Ada")
        tg.send_text(USER, USER, "/help")
        await tg.wait_sent(USER, 1)
    finally:
        starting.cancel()
        await adapter.stop()
        await tg.stop()
    retries = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(retries) >= 2 and all(r.exc_info is None for r in retries)
    assert "ConnectError" in retries[0].getMessage()


async def test_another_instance_polling_stops_the_bot_clearly(
    paperboy: tuple[Paperboy, Settings], telegram_server: FakeTelegram
) -> None:
    app, settings = paperboy
    settings = replace(settings, telegram_conflict_grace_seconds=0.5, delivery_tick_seconds=60)
    telegram_server.competing_poller = True
    adapter = TelegramAdapter(app, settings, poll_timeout=1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(PlatformError, match="409 Conflict") as info:
        await asyncio.wait_for(serve(app, settings, [adapter]), 30)
    assert loop.time() - started < 15  # after the grace, not forever
    assert "TELEGRAM_WEBHOOK_URL" in str(info.value)
    assert telegram_server.method_counts["getupdates"] >= 2  # it did try, through the grace
    assert adapter._application is None  # stopped


def run_paperboy(cwd: Path, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    import subprocess

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "DISCORD_"))}
    clean.pop("PAPERBOY_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=cwd,
        env={**clean, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout, done.stderr


async def test_bad_token_is_one_line_and_a_failure_exit(
    telegram_server: FakeTelegram, tmp_path: Path
) -> None:
    # The token comes from a .env in the working directory (not the checkout's).
    (tmp_path / ".env").write_text(
        "TELEGRAM_BOT_TOKEN=1234:not-the-right-token\n"
        f"TELEGRAM_API_BASE_URL={telegram_server.base_url}\n"
        "PAPERBOY_DATABASE_URL=sqlite:///pb.db\n",
        encoding="utf-8",
    )
    code, out, err = await asyncio.to_thread(run_paperboy, tmp_path, {}, "run")
    assert code != 0
    assert "Traceback" not in err and "Traceback" not in out
    assert "1234:not-the-right-token" not in err + out
    assert err.strip().splitlines()[-1] == (
        "paperboy: Telegram refused the bot token: check TELEGRAM_BOT_TOKEN"
    )
    errors = [line for line in err.splitlines() if "ERROR" in line or "paperboy:" in line]
    assert len(errors) == 1, err
    assert (tmp_path / "pb.db").exists()  # the database named in the .env


async def test_sql_is_not_logged_at_debug_unless_asked(tmp_path: Path) -> None:
    env = {"PAPERBOY_LOG_LEVEL": "DEBUG", "PAPERBOY_DATABASE_URL": "sqlite:///pb.db"}
    # Opening the store runs SQL (migrations); an invalid id needs no network.
    _, _, err = await asyncio.to_thread(run_paperboy, tmp_path, env, "paper", "junk")
    assert "DEBUG" in err  # DEBUG was on
    assert "aiosqlite" not in err
    _, _, err = await asyncio.to_thread(
        run_paperboy, tmp_path, {**env, "PAPERBOY_SQL_LOG": "1"}, "paper", "junk"
    )
    assert "aiosqlite" in err


def test_setup_logging_quiets_the_sql_libraries() -> None:
    levels = {name: logging.getLogger(name).level for name in ("aiosqlite", "asyncpg")}
    root = logging.getLogger()
    root_level, handlers = root.level, list(root.handlers)
    try:
        setup_logging("DEBUG", None, [])
        assert not logging.getLogger("aiosqlite").isEnabledFor(logging.DEBUG)
        assert not logging.getLogger("asyncpg").isEnabledFor(logging.DEBUG)
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        root.setLevel(root_level)
        root.handlers[:] = handlers
