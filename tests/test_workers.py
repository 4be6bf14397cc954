"""Several workers, one PostgreSQL outbox: two `paperboy deliver --now` processes at once
against the fake Telegram server (limits enforced) deliver every digest exactly once."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest

from bot.models import ChatRef, ChatSettings, Paper, Subscription
from bot.service import feed_day
from bot.store.sql import SQLStore
from tests.fakes.telegram import FakeTelegram, RateLimits
from tests.test_store import PG_DSN, _pg_admin

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
FEED = "arxiv:cs.LG"
DEAD = "http://127.0.0.1:9"  # nothing upstream is asked: the feed is already stored


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A database URL whose search_path is a fresh, throwaway schema."""
    admin = await _pg_admin()
    schema = f"paperboy_workers_{uuid.uuid4().hex[:12]}"
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_DSN}?search_path={schema}"
    finally:
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()


async def seed(url: str, chats: int) -> list[ChatRef]:
    """`chats` due chats (one in ten a group) following a feed that is already stored."""
    now = datetime.now(UTC)
    papers = [
        Paper(
            f"2506.{i:05d}",
            f"Paper {i}",
            ["A. Author"],
            "Abstract.",
            ["cs.LG"],
            announce_type="new",
        )
        for i in range(1, 4)
    ]
    refs: list[ChatRef] = []
    async with SQLStore(dsn=url) as store:
        await store.upsert_papers(papers)
        await store.save_feed(FEED, feed_day(FEED, now), date.today(), [p.id for p in papers])
        for n in range(chats):
            chat = ChatRef("telegram", str(-(10**12) - n if n % 10 == 0 else 5000 + n))
            await store.save_chat(ChatSettings(chat, delivery_time=time(9), count=3))
            await store.add_subscription(Subscription(chat, FEED))
            refs.append(chat)
        async with store.transaction() as conn:
            await conn.exec_driver_sql(
                "UPDATE chats SET next_run_at = $1", (now - timedelta(hours=1),)
            )
    return refs


def worker_env(tg: FakeTelegram, url: str, index: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "DISCORD_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        PAPERBOY_DATABASE_URL=url,
        TELEGRAM_BOT_TOKEN=tg.token,
        TELEGRAM_API_BASE_URL=tg.base_url,
        TELEGRAM_FILE_BASE_URL=tg.file_base_url,
        ARXIV_API_URL=DEAD,
        ARXIV_LISTING_URL=DEAD,
        HF_API_URL=DEAD,
        LLM_PROVIDER="",
        # 40/s for the platform, so 20/s each: together under the fake's 45/s.
        TELEGRAM_RATE_PER_SECOND="40",
        WORKER_COUNT="2",
        WORKER_INDEX=str(index),
        DELIVERY_IN_FLIGHT="16",
        DELIVERY_DRAIN_SECONDS="90",
    )
    return env


async def test_two_workers_deliver_every_digest_once(pg_url: str) -> None:
    chats = await seed(pg_url, 120)
    async with FakeTelegram(rate_limits=RateLimits(global_per_second=45)) as tg:
        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot.cli",
                "deliver",
                "--now",
                cwd=ROOT,
                env=worker_env(tg, pg_url, index),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            for index in range(2)
        ]
        outputs = await asyncio.wait_for(asyncio.gather(*(w.communicate() for w in workers)), 110)
        for worker, (_, err) in zip(workers, outputs, strict=True):
            assert worker.returncode == 0, err.decode()[-2000:]
        rate_limited = tg.rate_limited
        per_chat = Counter(m.chat_id for m in tg.sent if m.method == "sendMessage")

    async with SQLStore(dsn=pg_url) as store, store.transaction() as conn:
        result = await conn.exec_driver_sql(
            "SELECT c.chat_id, o.status, o.worker FROM outbox o JOIN chats c ON c.id = o.chat"
        )
        rows = result.mappings().all()
    expected = Counter(int(r["chat_id"]) for r in rows)
    print(
        "\n" + " | ".join(out.decode().strip() for out, _ in outputs),
        f"| {sum(per_chat.values())} messages, 429s {rate_limited}",
    )
    assert {r["status"] for r in rows} == {"sent"}
    assert set(expected) == {int(c.chat_id) for c in chats}, "a chat got no digest"
    assert per_chat == expected, "a message was lost or sent twice"
    # Each digest was enqueued once, though both processes ran the scheduler.
    keys = await _keys(pg_url)
    assert len(keys) == len(set(keys)) == sum(expected.values())
    assert len({r["worker"] for r in rows}) == 2, "one worker did all the sending"
    assert rate_limited == 0


async def _keys(url: str) -> list[str]:
    async with SQLStore(dsn=url) as store, store.transaction() as conn:
        return [r[0] for r in await conn.exec_driver_sql("SELECT idem_key FROM outbox")]
