"""Issue 11, the smaller items: one clear line for bad settings, non-zero exits for failed
lookups, a terminal chat that survives invalid UTF-8, admin rights re-checked promptly on
Telegram, and the webhook's listen address."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from adapters.telegram import ALLOWED_UPDATES, TelegramAdapter
from bot.config import ConfigError, Settings
from bot.models import ChatRef
from tests.fakes.arxiv import FakeArxiv
from tests.fakes.hf import FakeHF
from tests.test_telegram import ADMIN, GROUP, Bot, bot, paperboy, say  # noqa: F401

SECRET = "s3cret-pw"


@pytest.fixture
async def env(
    arxiv_server: FakeArxiv, hf_server: FakeHF, tmp_path: Path
) -> AsyncIterator[dict[str, str]]:
    values = dict(os.environ)
    for key in ("TELEGRAM_BOT_TOKEN", "DISCORD_BOT_TOKEN", "LLM_PROVIDER", "LLM_API_KEY"):
        values.pop(key, None)
    values.update(
        ARXIV_API_URL=arxiv_server.api_url,
        ARXIV_LISTING_URL=arxiv_server.listing_url,
        ARXIV_DELAY_SECONDS="0",
        HF_API_URL=hf_server.api_url,
        PAPERBOY_DATABASE_URL=f"sqlite:///{tmp_path}/bot.db",
        PAPERBOY_TEST_CWD=str(tmp_path),
    )
    yield values


async def paperboy_cli(env: dict[str, str], *args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=env["PAPERBOY_TEST_CWD"],  # no stray .env file is read
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("ARXIV_DELAY_SECONDS", "abc", "ARXIV_DELAY_SECONDS='abc' is not a number"),
        ("WORKER_COUNT", "two", "WORKER_COUNT='two' is not a whole number"),
        ("UPSTREAM_DEADLINE_SECONDS", "0", "UPSTREAM_DEADLINE_SECONDS='0' must be more than 0"),
        ("PAPERBOY_DATABASE_URL", f"mysql://bot:{SECRET}@db/papers", "uses 'mysql'"),
        ("PAPERBOY_DATABASE_URL", "garbage", "is not a database URL"),
        ("PAPERBOY_DATABASE_URL", "not-a-db", "not a usable SQLite database"),
    ],
)
async def test_a_bad_setting_is_one_line_naming_it(
    env: dict[str, str], tmp_path: Path, name: str, value: str, problem: str
) -> None:
    if value == "not-a-db":
        junk = tmp_path / "notes.txt"
        junk.write_text("these are my notes, not a database\n" * 100)
        value = f"sqlite:///{junk}"
    env[name] = value
    code, _out, err = await paperboy_cli(env, "digest", "--feed", "hf:trending")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert name in lines[0] and problem in lines[0]
    assert "Traceback" not in err and SECRET not in err


def test_config_errors_are_value_errors_naming_the_setting() -> None:
    os.environ["HTTP_TIMEOUT_SECONDS"] = "nan"
    try:
        with pytest.raises(ConfigError, match="HTTP_TIMEOUT_SECONDS"):
            Settings.from_env(read_dotenv=False)
    finally:
        del os.environ["HTTP_TIMEOUT_SECONDS"]


async def test_failed_lookups_exit_non_zero(env: dict[str, str]) -> None:
    code, _, err = await paperboy_cli(env, "paper", "2601.99999")
    assert code == 1 and "couldn't find arXiv paper 2601.99999" in err
    code, _, err = await paperboy_cli(env, "explain", "not-an-id")
    assert code == 2 and "Traceback" not in err
    code, out, err = await paperboy_cli(env, "paper", "1605.08386")
    assert code == 0 and "Heat-bath" in out


async def test_invalid_utf8_on_the_terminal_does_not_end_the_chat(env: dict[str, str]) -> None:
    code, out, err = await paperboy_cli(env, "chat", stdin=b"\xff\xfe\xc3(\n/help\n/quit\n")
    assert code == 0 and "Traceback" not in err
    assert "/today" in out and out.rstrip().endswith("Bye.")


# ------------------------------------------------------------------------------ Telegram


async def test_a_demoted_admin_loses_admin_commands_at_once(bot: Bot) -> None:  # noqa: F811
    assert "chat_member" in ALLOWED_UPDATES
    [ok] = await say(bot, GROUP, ADMIN, "/subscribe hf:trending")
    assert "Subscribed" in ok.text
    assert bot.adapter.admin_cache_seconds <= 10  # seconds at most
    bot.tg.member_changed(GROUP, ADMIN, "member", by_user=ADMIN)
    for _ in range(100):  # the chat_member update drops the cached answer
        if (GROUP, ADMIN) not in bot.adapter.inbound._admins:
            break
        await asyncio.sleep(0.05)
    [refused] = await say(bot, GROUP, ADMIN, "/subscribe arxiv:cs.AI")
    assert "Only chat admins" in refused.text
    feeds = [s.feed for s in await bot.store.list_subscriptions(ChatRef("telegram", str(GROUP)))]
    assert feeds == ["hf:trending"]


async def test_the_webhook_listens_on_loopback_unless_told(bot: Bot) -> None:  # noqa: F811
    assert Settings().telegram_webhook_listen == "127.0.0.1"
    assert bot.adapter.webhook_listen == "127.0.0.1"
    container = replace(bot.settings, telegram_webhook_listen="0.0.0.0")
    assert TelegramAdapter(bot.app, container).webhook_listen == "0.0.0.0"
    dockerfile = (Path(__file__).parent.parent / "deploy" / "Dockerfile").read_text()
    assert "TELEGRAM_WEBHOOK_LISTEN=0.0.0.0" in dockerfile
