"""Delivery end to end: `paperboy deliver --now` in a subprocess against the fake Telegram
server, killed with SIGKILL mid-round and restarted."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest

from bot.models import ChatRef, ChatSettings, Paper, Subscription
from bot.service import feed_day
from bot.store.sqlite import SQLiteStore
from tests.fakes.telegram import FakeTelegram, RateLimits

ROOT = Path(__file__).resolve().parents[1]
FEED = "arxiv:cs.LG"
CHATS = 240
IN_FLIGHT = 16
DEAD = "http://127.0.0.1:9"  # nothing upstream is asked: the feed is already stored


async def seed(path: Path, chats: int) -> list[ChatRef]:
    """A file database with `chats` due chats (a few of them groups) and today's feed."""
    now = datetime.now(UTC)
    papers = [
        Paper(
            f"2506.{i:05d}",
            f"Paper number {i}",
            ["A. Author"],
            "Abstract text.",
            ["cs.LG"],
            announce_type="new",
        )
        for i in range(1, 6)
    ]
    store = SQLiteStore(str(path))
    await store.open()
    await store.upsert_papers(papers)
    await store.save_feed(FEED, feed_day(FEED, now), date.today(), [p.id for p in papers])
    refs = []
    for n in range(chats):
        chat = ChatRef("telegram", str(-(10**12) - n if n % 10 == 0 else 1000 + n))
        await store.save_chat(ChatSettings(chat, delivery_time=time(9), count=5))
        await store.add_subscription(Subscription(chat, FEED))
        refs.append(chat)
    past = (now - timedelta(hours=1)).isoformat(timespec="microseconds")
    await store.db.execute("UPDATE chats SET next_run_at = ?", (past,))
    await store.close()
    return refs


def env_for(tg: FakeTelegram, db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "DISCORD_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        PAPERBOY_DATABASE_URL=f"sqlite:///{db}",
        TELEGRAM_BOT_TOKEN=tg.token,
        TELEGRAM_API_BASE_URL=tg.base_url,
        TELEGRAM_FILE_BASE_URL=tg.file_base_url,
        ARXIV_API_URL=DEAD,
        ARXIV_LISTING_URL=DEAD,
        HF_API_URL=DEAD,
        LLM_PROVIDER="",
        TELEGRAM_RATE_PER_SECOND="120",
        DELIVERY_IN_FLIGHT=str(IN_FLIGHT),
        DELIVERY_LEASE_SECONDS="2",
        DELIVERY_DRAIN_SECONDS="60",
    )
    return env


async def deliver_now(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        "deliver",
        "--now",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.mark.slow
async def test_kill_9_mid_round_then_restart_delivers_every_digest(tmp_path: Path) -> None:
    db = tmp_path / "paperboy.db"
    chats = await seed(db, CHATS)
    limits = RateLimits(global_per_second=150)
    async with FakeTelegram(rate_limits=limits) as tg:
        env = env_for(tg, db)
        first = await deliver_now(env)
        await tg.wait_for(lambda: len(tg.sent) >= CHATS // 3, 60)
        first.send_signal(signal.SIGKILL)
        await first.wait()
        killed_at = len(tg.sent)
        assert killed_at < CHATS, "the round finished before the kill: make it longer"

        second = await deliver_now(env)
        out, err = await asyncio.wait_for(second.communicate(), 90)
        assert second.returncode == 0, err.decode()[-2000:]

        per_chat = Counter(m.chat_id for m in tg.sent if m.method == "sendMessage")
        missing = [c.chat_id for c in chats if per_chat[int(c.chat_id)] == 0]
        duplicates = sum(n - 1 for n in per_chat.values() if n > 1)
        print(
            f"\nkilled after {killed_at} messages; restart: {out.decode().strip()}; "
            f"duplicates {duplicates} (bound: {IN_FLIGHT} in flight); 429s {tg.rate_limited}"
        )
        assert missing == []
        assert duplicates <= IN_FLIGHT
        assert tg.rate_limited == 0

        # A third run finds nothing due and nothing left to send.
        third = await deliver_now(env)
        out, err = await asyncio.wait_for(third.communicate(), 60)
        assert third.returncode == 0, err.decode()[-2000:]
        assert sum(1 for m in tg.sent if m.method == "sendMessage") == sum(per_chat.values())


async def test_deliver_now_sends_without_receiving_updates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`deliver --now` beside a running bot with the same token must not poll: Telegram
    would hand the updates to whichever of the two asked last."""
    from bot.cli import _deliver
    from bot.config import Settings

    db = tmp_path / "paperboy.db"
    chats = await seed(db, 12)
    async with FakeTelegram() as tg:
        for key, value in env_for(tg, db).items():
            monkeypatch.setenv(key, value)
        assert await _deliver(Settings.from_env(read_dotenv=False)) == 0
        await asyncio.sleep(0.2)  # a poller started by mistake would have asked by now
    sent = Counter(m.chat_id for m in tg.sent if m.method == "sendMessage")
    assert sorted(sent) == sorted(int(c.chat_id) for c in chats)
    assert tg.method_counts.get("getupdates", 0) == 0
    assert tg.method_counts.get("setwebhook", 0) == 0
    assert tg.method_counts.get("setmycommands", 0) == 0
