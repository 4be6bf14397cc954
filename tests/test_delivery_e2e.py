"""Delivery end to end: `paperboy deliver --now` in a subprocess against the strict fake
Telegram and Discord servers (rolling-window limits, 429 + retry_after), killed with
SIGKILL mid-round and restarted: zero 429s, every chat's messages in order, nothing lost,
at most one duplicate per chat (the message in flight at the kill), recovery in seconds."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import sys
import time as clock
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest

from bot.models import ChatRef, ChatSettings, Paper, Subscription
from bot.service import feed_day
from bot.store.sql import SQLStore
from tests.fakes.discord import FakeDiscord
from tests.fakes.discord import RateLimits as DiscordLimits
from tests.fakes.telegram import FakeTelegram, RateLimits

ROOT = Path(__file__).resolve().parents[1]
FEED = "arxiv:cs.LG"
DEAD = "http://127.0.0.1:9"  # nothing upstream is asked: the feed is already stored
RECOVERY_SECONDS = 10.0
_CARD = re.compile(r"(\d+)\\?\. Paper number")  # Discord escapes the list-like "1."


async def seed(path: Path, chats: Sequence[tuple[ChatRef, str, int]], papers: int = 5) -> None:
    """A file database with these due (chat, format, count)s and today's feed."""
    now = datetime.now(UTC)
    feed = [
        Paper(
            f"2506.{i:05d}",
            f"Paper number {i}",
            ["A. Author"],
            "Abstract text.",
            ["cs.LG"],
            announce_type="new",
            upvotes=100 - i,  # ranked in number order
        )
        for i in range(1, papers + 1)
    ]
    store = SQLStore(sqlite_path=str(path))
    await store.open()
    await store.upsert_papers(feed)
    await store.save_feed(FEED, feed_day(FEED, now), date.today(), [p.id for p in feed])
    for chat, format, count in chats:
        settings = ChatSettings(chat, delivery_time=time(9), count=count, format=format)  # type: ignore[arg-type]
        await store.save_chat(settings)
        await store.add_subscription(Subscription(chat, FEED))
    past = (now - timedelta(hours=1)).isoformat(timespec="microseconds")
    await store.db.execute("UPDATE chats SET next_run_at = ?", (past,))
    await store.close()


def base_env(db: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "DISCORD_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        PAPERBOY_DATABASE_URL=f"sqlite:///{db}",
        ARXIV_API_URL=DEAD,
        ARXIV_LISTING_URL=DEAD,
        HF_API_URL=DEAD,
        LLM_PROVIDER="",
        DELIVERY_BACKOFF_SECONDS="0.5",
        DELIVERY_DRAIN_SECONDS="90",
        **extra,
    )
    return env


def env_for(tg: FakeTelegram, db: Path, **extra: str) -> dict[str, str]:
    return base_env(
        db,
        TELEGRAM_BOT_TOKEN=tg.token,
        TELEGRAM_API_BASE_URL=tg.base_url,
        TELEGRAM_FILE_BASE_URL=tg.file_base_url,
        **extra,
    )


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


def leased_chats(db: Path) -> set[str]:
    """Chats whose row a (dead) sender still holds."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT DISTINCT c.chat_id FROM outbox o JOIN chats c ON c.id = o.chat"
            " WHERE o.status = 'sending'"
        ).fetchall()
    return {row[0] for row in rows}


class Arrivals:
    """When each chat's messages arrived, polled from the fake (20 ms resolution)."""

    def __init__(self, read: Callable[[], list[str]]) -> None:
        self.read = read
        self.times: list[tuple[float, str]] = []
        self._task = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            chats = self.read()
            now = clock.monotonic()
            self.times += [(now, chat) for chat in chats[len(self.times) :]]
            await asyncio.sleep(0.02)

    def first_after(self, since: float, chat: str) -> float | None:
        return next((t for t, c in self.times if c == chat and t >= since), None)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def check_order(numbers: list[int], expected: int) -> int:
    """A chat's card numbers: 1..expected in order, a message repeated at most once and
    only right after itself (resent after the kill). Returns the duplicates."""
    deduped = [n for i, n in enumerate(numbers) if i == 0 or numbers[i - 1] != n]
    assert deduped == list(range(1, expected + 1)), numbers
    duplicates = len(numbers) - len(deduped)
    assert duplicates <= 1, numbers
    return duplicates


async def kill_and_restart(
    env: dict[str, str], db: Path, sent: Callable[[], int], at: int, arrivals: Arrivals
) -> tuple[set[str], list[float], bytes]:
    """Start a round, SIGKILL it once `at` messages arrived, restart; returns the chats it
    held at the kill, when each got its next message after the restart, and the output."""
    first = await deliver_now(env)
    deadline = clock.monotonic() + 90
    while sent() < at:
        assert first.returncode is None, (await first.communicate())[1].decode()[-2000:]
        assert clock.monotonic() < deadline, "the first round made no progress"
        await asyncio.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    await first.wait()
    held = leased_chats(db)
    restarted = clock.monotonic()
    second = await deliver_now(env)
    out, err = await asyncio.wait_for(second.communicate(), 120)
    assert second.returncode == 0, err.decode()[-2000:]
    waits = [arrivals.first_after(restarted, chat) for chat in held]
    resumed = sorted(w - restarted for w in waits if w is not None)
    return held, resumed, out


@pytest.mark.slow
async def test_telegram_round_killed_and_restarted_keeps_order_limits_and_every_message(
    tmp_path: Path,
) -> None:
    """200 chats at Telegram's real limits: full digests (3 cards), groups, a group that
    became a supergroup, two blocked users, three 5xx; SIGKILL a third of the way."""
    db = tmp_path / "paperboy.db"
    chats: list[tuple[ChatRef, str, int]] = []
    for n in range(200):
        chat_id = str(-(10**12) - n if n % 20 == 0 else 1000 + n)
        full = n % 5 == 1 or n % 20 == 0
        chats.append((ChatRef("telegram", chat_id), "full" if full else "compact", 3))
    old_group, new_group = "-4001", -1009999000001
    chats.append((ChatRef("telegram", old_group), "full", 3))
    await seed(db, chats, papers=3)
    blocked = {"1007", "1077"}
    async with FakeTelegram(rate_limits=RateLimits()) as tg:
        for chat_id in blocked:
            tg.fail_chat(int(chat_id), "blocked")
        tg.fail_chat(int(old_group), "migrated", migrate_to=new_group)
        tg.fail_next("sendMessage", 502, "Bad Gateway", times=3)
        arrivals = Arrivals(lambda: [str(m.chat_id) for m in tg.sent])
        env = env_for(tg, db)
        total = sum(3 if f == "full" else 1 for c, f, _ in chats if c.chat_id not in blocked)
        held, resumed, out = await kill_and_restart(
            env, db, lambda: len(tg.sent), total // 3, arrivals
        )
        await arrivals.stop()

        per_chat: dict[str, list[int]] = {}
        for m in tg.sent:
            found = _CARD.match(m.text)
            per_chat.setdefault(str(m.chat_id), []).append(int(found.group(1)) if found else 0)
        duplicates = 0
        for chat, format, _ in chats:
            chat_id = str(new_group) if chat.chat_id == old_group else chat.chat_id
            got = per_chat.get(chat_id, [])
            if chat.chat_id in blocked:
                assert got == []
            elif format == "full":
                duplicates += check_order(got, 3)
            else:
                assert len(got) in (1, 2), (chat_id, got)
                duplicates += len(got) - 1
        print(
            f"\nkilled at {total // 3}/{total} messages holding {len(held)} chats;"
            f" restart: {out.decode().strip()}; duplicates {duplicates};"
            f" held chats resumed {resumed[0]:.1f}-{resumed[-1]:.1f} s after the restart;"
            f" 429s {tg.rate_limited} {tg._limiter.refused}"
        )
        assert tg.rate_limited == 0
        assert duplicates <= len(held)
        assert len(resumed) == len(held - blocked)
        # The restarted process takes back what the killed one held at once (it is gone
        # from this host): every held chat gets its next message within RECOVERY_SECONDS.
        assert resumed[-1] <= RECOVERY_SECONDS
        assert per_chat.get(old_group) is None

        # A third run finds nothing due and nothing left to send.
        before = len(tg.sent)
        third = await deliver_now(env)
        out, err = await asyncio.wait_for(third.communicate(), 60)
        assert third.returncode == 0, err.decode()[-2000:]
        assert len(tg.sent) == before


@pytest.mark.slow
async def test_discord_round_with_a_25_card_digest_killed_and_restarted(tmp_path: Path) -> None:
    """100 channels at Discord's limits (windows 5x shorter, same ratios): a 25-card digest,
    full and compact digests, two channels the bot lost, 5xx; SIGKILL mid-round."""
    db = tmp_path / "paperboy.db"
    chats: list[tuple[ChatRef, str, int]] = [(ChatRef("discord", "900000"), "full", 25)]
    for n in range(1, 100):
        chats.append((ChatRef("discord", str(900000 + n)), "full" if n % 4 == 1 else "compact", 3))
    await seed(db, chats, papers=25)
    lost = {"900007", "900070"}
    scale = 0.2
    async with FakeDiscord(rate_limits=DiscordLimits(scale=scale)) as fake:
        for channel in lost:
            fake.fail_channel(channel, 403, 50001)
        for _ in range(3):
            fake.server_error("/channels/", 502)

        def order() -> list[str]:
            times = fake.send_times
            return [ch for _, ch in sorted((t, ch) for ch in times for t in times[ch])]

        arrivals = Arrivals(order)
        env = base_env(
            db,
            DISCORD_BOT_TOKEN=fake.token,
            DISCORD_API_BASE_URL=fake.api_url,
            DISCORD_RATE_PER_SECOND=str(45 / scale),
            DELIVERY_CHAT_RATE_PER_SECOND=str(0.95 / scale),
        )
        total = 25 + sum(3 if f == "full" else 1 for c, f, _ in chats[1:] if c.chat_id not in lost)
        held, resumed, out = await kill_and_restart(
            env, db, lambda: len(order()), total // 3, arrivals
        )
        await arrivals.stop()

        duplicates = 0
        for chat, format, count in chats:
            posted = fake.channel_messages.get(chat.chat_id, [])
            if chat.chat_id in lost:
                assert posted == []
                continue
            numbers = [
                int(found.group(1)) if (found := _CARD.search(m["content"])) else 0 for m in posted
            ]
            if format == "full":
                duplicates += check_order(numbers, count)
            else:
                assert len(numbers) in (1, 2), (chat.chat_id, numbers)
                duplicates += len(numbers) - 1
        print(
            f"\nkilled at {total // 3}/{total} messages holding {len(held)} channels;"
            f" restart: {out.decode().strip()}; duplicates {duplicates};"
            f" held channels resumed {resumed[0]:.1f}-{resumed[-1]:.1f} s after the restart;"
            f" 429s {fake.rate_limited} {fake.refused[:8]}"
        )
        assert fake.rate_limited == 0
        assert duplicates <= len(held)
        assert resumed and resumed[-1] <= RECOVERY_SECONDS


async def test_paid_broadcast_digests_say_so(tmp_path: Path) -> None:
    db = tmp_path / "paperboy.db"
    await seed(db, [(ChatRef("telegram", str(2000 + n)), "compact", 3) for n in range(5)])
    async with FakeTelegram() as tg:
        proc = await deliver_now(env_for(tg, db, TELEGRAM_PAID_BROADCAST="1"))
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()[-2000:]
    sends = [params for method, params in tg.calls if method == "sendmessage"]
    assert len(sends) == 5
    assert all(params.get("allow_paid_broadcast") is True for params in sends)


async def test_deliver_now_sends_without_receiving_updates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`deliver --now` beside a running bot with the same token must not poll: Telegram
    would hand the updates to whichever of the two asked last."""
    from bot.cli import _deliver
    from bot.config import Settings

    db = tmp_path / "paperboy.db"
    chats = [ChatRef("telegram", str(1000 + n)) for n in range(12)]
    await seed(db, [(chat, "compact", 5) for chat in chats])
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
