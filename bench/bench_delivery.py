"""Delivery benchmarks (`python -m bench.bench_delivery`), printing figures:

1. upstream requests per round: 10,000 chats over a handful of feeds, against the fake
   arXiv and Hugging Face servers; must equal the number of distinct feeds;
2. 10,000 chats through the real Telegram adapter against the fake Bot API server with
   its rolling-window limits on (scaled up to 300 msg/s; the bot paces at 28/30 of it):
   achieved rate as a share of our headroom limit and of the enforced one, 429s (goal:
   >= 90% of the headroom limit, none);
2b. the same for Discord: 1,500 channels through the real discord.py client against the
   fake Discord (windows 2x shorter: 100 requests/s enforced, the bot at 45/50 of it);
2c. recovery after kill -9: `paperboy deliver --now` killed a third of the way through a
   round at the real limits (Telegram: 300 chats; Discord: 100 channels, windows 5x
   shorter), restarted: when the chats it held resumed, duplicates, 429s;
3. the same with every limit off: messages per second, the bot on one core (goal: 1000);
4. 100,000 due subscriptions enqueued by one scheduler tick: seconds (goal: <= 10) and
   peak memory, measured in a fresh process so that seeding does not count.

The fake Telegram server runs in its own process (pinned to another core when there is
one), so the figures are the bot's, not the fake's; each send figure comes with the CPU
both processes used, which shows who set the pace.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench import peak_rss_mb
from bot.config import Settings
from bot.delivery import Dispatcher, scheduler_tick
from bot.models import ChatRef, ChatSettings, Paper
from bot.service import Paperboy, feed_day
from bot.sources.arxiv import ArxivSource
from bot.sources.hf import HuggingFaceSource
from bot.store.sql import SQLStore

ARXIV_FEEDS = ("cs.AI", "cs.LG", "cs.CL", "cs.CV", "stat.ML")
HF_FEEDS = ("daily", "trending")
CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]


# ----------------------------------------------------------------- fake Telegram process


def _fake_telegram(conn: Connection, limits_on: bool, rate: float, cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    from tests.fakes.telegram import FakeTelegram, RateLimits

    async def serve() -> None:
        limits = RateLimits(enabled=limits_on, global_per_second=rate)
        async with FakeTelegram(rate_limits=limits) as tg:
            conn.send((tg.base_url, tg.file_base_url, tg.token))
            loop = asyncio.get_running_loop()
            while True:
                command = await loop.run_in_executor(None, conn.recv)
                if command == "stats":
                    sent = sum(1 for m in tg.sent if m.method == "sendMessage")
                    conn.send((sent, tg.rate_limited, time.process_time()))
                else:
                    return

    asyncio.run(serve())


@contextlib.contextmanager
def fake_telegram(limits_on: bool, rate: float) -> Any:
    cpus = CPUS
    parent, child = mp.Pipe()
    ctx = mp.get_context("spawn")
    process = ctx.Process(
        target=_fake_telegram,
        args=(child, limits_on, rate, cpus[-1] if len(cpus) > 1 else None),
        daemon=True,
    )
    process.start()
    try:
        yield parent, parent.recv()
    finally:
        parent.send("stop")
        process.join(10)
        if process.is_alive():
            process.kill()


# ------------------------------------------------------------------------- seeding


async def seed_chats(
    store: SQLStore, chats: int, feeds: Sequence[str], per_chat: int, *, prefix: str = ""
) -> None:
    """Chats due an hour ago, each following `per_chat` random feeds (plain SQL: fast)."""
    now = datetime.now(UTC)
    stamp = now.isoformat()
    due = (now - timedelta(hours=1)).isoformat(timespec="microseconds")
    rng = random.Random(4)
    async with store.transaction() as conn:
        db = await store.driver_connection(conn)  # aiosqlite's own, for executemany
        rows = []
        for n in range(chats):
            # One in ten is a group (negative id), the rest private chats.
            chat_id = str(-(10**12) - n) if n % 10 == 0 else f"{prefix}{10**6 + n}"
            rows.append(("telegram", chat_id, stamp, stamp, due))
        await db.executemany(
            "INSERT INTO chats (platform, chat_id, created_at, updated_at, next_run_at)"
            " VALUES (?, ?, ?, ?, ?)",
            rows,
        )
        async with db.execute("SELECT id FROM chats") as cur:
            pks = [row[0] for row in await cur.fetchall()]
        subs = [
            (pk, feed, stamp)
            for pk in pks
            for feed in rng.sample(list(feeds), min(per_chat, len(feeds)))
        ]
        await db.executemany(
            "INSERT INTO subscriptions (chat, feed, created_at) VALUES (?, ?, ?)", subs
        )
        # The first-subscription trigger cleared next_run_at: put the due time back.
        await db.execute("UPDATE chats SET next_run_at = ?", (due,))


@contextlib.asynccontextmanager
async def core(settings: Settings, path: Path) -> AsyncIterator[Paperboy]:
    store = SQLStore(sqlite_path=str(path))
    await store.open()
    app = Paperboy(store, ArxivSource(settings), HuggingFaceSource(settings))
    try:
        yield app
    finally:
        await app.aclose()
        await store.close()


# ---------------------------------------------------------------------- benchmarks


async def bench_fetch_once(path: Path, chats: int) -> None:
    from tests.fakes.arxiv import FakeArxiv
    from tests.fakes.hf import FakeHF

    async with FakeArxiv() as arxiv, FakeHF() as hf:
        body = arxiv.listings[("atom", "cs.AI")]
        for category in ARXIV_FEEDS:
            arxiv.set_listing(category, body)
        # Today's Hugging Face list is out, as on any weekday once HF publishes it (on a
        # day without one, hf:daily asks a second time, for the latest list).
        hf.add_daily(datetime.now(UTC).date().isoformat(), hf.days[max(hf.days)])
        settings = arxiv.settings(hf_api_url=hf.api_url)
        feeds = [f"arxiv:{c}" for c in ARXIV_FEEDS] + [f"hf:{n}" for n in HF_FEEDS]
        async with core(settings, path) as app:
            await seed_chats(app.store, chats, feeds, per_chat=3)  # type: ignore[arg-type]
            before = len(arxiv.requests) + len(hf.requests)
            started = time.perf_counter()
            stats = await scheduler_tick(app)
            took = time.perf_counter() - started
            upstream = len(arxiv.requests) + len(hf.requests) - before
            again = await scheduler_tick(app)  # nothing due: no upstream request at all
            upstream_again = len(arxiv.requests) + len(hf.requests) - before - upstream
    print(
        f"upstream requests per round: {upstream} for {len(feeds)} distinct feeds and "
        f"{stats.chats} chats (a second round: {upstream_again}, {again.chats} chats due)"
    )
    print(f"  round: {stats.messages} messages for {stats.digests} digests in {took:.2f} s")


# Our pace under the platforms' limits (the settings' defaults: 28 of 30, 45 of 50).
TELEGRAM_HEADROOM = 28 / 30
DISCORD_HEADROOM = 45 / 50


async def bench_send(path: Path, *, limits_on: bool, rate: float) -> None:
    from adapters.telegram import TelegramAdapter

    with fake_telegram(limits_on, rate) as (conn, (base_url, file_url, token)):
        ours = rate * TELEGRAM_HEADROOM
        settings = Settings(
            database_url=f"sqlite:///{path}",
            telegram_bot_token=token,
            telegram_api_base_url=base_url,
            telegram_file_base_url=file_url,
            telegram_rate_per_second=ours if limits_on else 0,
            delivery_chat_rate_per_second=0.95 if limits_on else 0,
            delivery_group_rate_per_minute=19.0 if limits_on else 0,
            delivery_in_flight=512,
            # Limits off: as few on the wire as keep up on localhost (as measured before).
            delivery_concurrency=16 if limits_on else 4,
        )
        async with core(settings, path) as app:
            store: SQLStore = app.store  # type: ignore[assignment]
            # Every row goes out again (the previous benchmark sent them).
            await store.db.execute(
                "UPDATE outbox SET status = 'pending', attempts = 0, lease_until = NULL"
            )
            counts = await store.outbox_counts()
            adapter = TelegramAdapter(app, settings)
            await adapter.start(receive=False)
            try:
                dispatcher = Dispatcher(store, {"telegram": adapter}, settings)
                conn.send("stats")
                fake_cpu = conn.recv()[2]
                cpu = time.process_time()
                started = time.perf_counter()
                await dispatcher.run(until_idle=True, deadline=None)
                took = time.perf_counter() - started
                cpu = time.process_time() - cpu
            finally:
                await adapter.stop()
            conn.send("stats")
            received, limited, fake_after = conn.recv()
    sent = dispatcher.stats.sent
    achieved = sent / took
    load = f"CPU: bot {100 * cpu / took:.0f}%, fake {100 * (fake_after - fake_cpu) / took:.0f}%"
    if limits_on:
        print(
            f"TelegramAdapter, limits on (enforced {rate:.0f} msg/s, ours {ours:.0f}): {sent} of"
            f" {counts['pending']} messages in {took:.1f} s = {achieved:.1f} msg/s ="
            f" {100 * achieved / ours:.1f}% of our headroom limit"
            f" ({100 * achieved / rate:.1f}% of the enforced one); 429s: {limited} (server),"
            f" {dispatcher.stats.rate_limited} (seen); {load}"
        )
    else:
        print(
            f"TelegramAdapter, limits off, bot on one core: {sent} messages in {took:.1f} s = "
            f"{achieved:.0f} msg/s (server received {received}); {load}"
        )


async def bench_discord_send(path: Path, channels: int, scale: float = 0.5) -> None:
    """Every channel one digest, through discord.py, against the fake's rolling windows."""
    from adapters.discord import DiscordAdapter
    from bot.doc import Message, Paragraph, Text
    from bot.serialize import message_to_json
    from bot.store.base import Enqueue
    from tests.fakes.discord import FakeDiscord
    from tests.fakes.discord import RateLimits as DiscordLimits

    enforced = 50 / scale
    ours = enforced * DISCORD_HEADROOM
    async with FakeDiscord(rate_limits=DiscordLimits(scale=scale)) as fake:
        settings = Settings(
            database_url=f"sqlite:///{path}",
            discord_bot_token=fake.token,
            discord_api_base_url=fake.api_url,
            discord_rate_per_second=ours,
            delivery_chat_rate_per_second=0.95 / scale,
            delivery_in_flight=512,
        )
        store = SQLStore(sqlite_path=str(path))
        await store.open()
        now = datetime.now(UTC)
        body = message_to_json(Message([Paragraph((Text("Today's papers: " + "x" * 300),))]))
        digests = []
        for n in range(channels):
            chat = ChatRef("discord", str(800_000 + n))
            await store.save_chat(ChatSettings(chat))
            digests.append(Enqueue(chat, now, now + timedelta(days=1), [(f"{chat.key}:b", body)]))
        await store.enqueue_digests(digests, now)
        app = Paperboy(store, ArxivSource(_OFFLINE), HuggingFaceSource(_OFFLINE))
        with tempfile.TemporaryDirectory() as state:
            adapter = DiscordAdapter(app, settings, state_dir=state)
            await adapter.start(receive=False)
            try:
                dispatcher = Dispatcher(store, {"discord": adapter}, settings)
                started = time.perf_counter()
                await dispatcher.run(until_idle=True, deadline=None)
                took = time.perf_counter() - started
            finally:
                await adapter.stop()
                await app.aclose()
                await store.close()
        sent = dispatcher.stats.sent
        achieved = sent / took
        print(
            f"DiscordAdapter, limits on (enforced {enforced:.0f} requests/s, ours {ours:.0f}):"
            f" {sent} of {channels} messages in {took:.1f} s = {achieved:.1f} msg/s ="
            f" {100 * achieved / ours:.1f}% of our headroom limit"
            f" ({100 * achieved / enforced:.1f}% of the enforced one); 429s: {fake.rate_limited}"
            f" (server, every request counted: {len(fake.requests)})"
        )


async def bench_recovery(tmp: Path) -> None:
    """kill -9 a third of the way through a round, restart: how soon held chats resume."""
    from tests.fakes.discord import FakeDiscord
    from tests.fakes.discord import RateLimits as DiscordLimits
    from tests.fakes.telegram import FakeTelegram
    from tests.test_delivery_e2e import Arrivals, base_env, env_for, kill_and_restart, seed

    db = tmp / "recovery-telegram.db"
    chats = [(ChatRef("telegram", str(5000 + n)), "compact", 3) for n in range(300)]
    await seed(db, chats)
    async with FakeTelegram() as tg:
        arrivals = Arrivals(lambda: [str(m.chat_id) for m in tg.sent])
        held, resumed, _ = await kill_and_restart(
            env_for(tg, db), db, lambda: len(tg.sent), 100, arrivals
        )
        await arrivals.stop()
        per_chat = Counter(m.chat_id for m in tg.sent)
        _recovery("Telegram, 300 chats at 28/s", held, resumed, per_chat, tg.rate_limited)

    db = tmp / "recovery-discord.db"
    scale = 0.2
    chats = [(ChatRef("discord", str(700_000 + n)), "compact", 3) for n in range(100)]
    await seed(db, chats)
    async with FakeDiscord(rate_limits=DiscordLimits(scale=scale)) as fake:
        times = fake.send_times

        def order() -> list[str]:
            return [ch for _, ch in sorted((t, ch) for ch in times for t in times[ch])]

        arrivals = Arrivals(order)
        env = base_env(
            db,
            DISCORD_BOT_TOKEN=fake.token,
            DISCORD_API_BASE_URL=fake.api_url,
            DISCORD_RATE_PER_SECOND=str(45 / scale),
            DELIVERY_CHAT_RATE_PER_SECOND=str(0.95 / scale),
        )
        held, resumed, _ = await kill_and_restart(env, db, lambda: len(order()), 33, arrivals)
        await arrivals.stop()
        counts = Counter({ch: len(ts) for ch, ts in times.items()})
        _recovery("Discord, 100 channels", held, resumed, counts, fake.rate_limited)


def _recovery(
    name: str, held: set[str], resumed: list[float], per_chat: Counter[Any], limited: int
) -> None:
    duplicates = sum(n - 1 for n in per_chat.values() if n > 1)
    span = f"{resumed[0]:.1f}-{resumed[-1]:.1f} s" if resumed else "n/a"
    print(
        f"recovery after kill -9 ({name}): {len(held)} chats held at the kill resumed"
        f" {span} after the restart (taken back at its start; otherwise a lease of"
        f" {Settings().delivery_lease_seconds:.0f} s);"
        f" duplicates {duplicates}; every chat served: {len(per_chat)}; 429s {limited}"
    )


class _NullSender:
    """Sends nothing: what the outbox and dispatcher alone can do."""

    platform = "telegram"

    async def send(self, chat: object, message: object) -> list[str]:
        await asyncio.sleep(0)
        return ["0"]


async def bench_dispatcher_alone(path: Path) -> None:
    settings = Settings(
        telegram_rate_per_second=0,
        delivery_chat_rate_per_second=0,
        delivery_group_rate_per_minute=0,
        delivery_in_flight=512,
    )
    store = SQLStore(sqlite_path=str(path))
    await store.open()
    try:
        await store.db.execute(
            "UPDATE outbox SET status = 'pending', attempts = 0, lease_until = NULL"
        )
        dispatcher = Dispatcher(store, {"telegram": _NullSender()}, settings)
        started = time.perf_counter()
        await dispatcher.run(until_idle=True, deadline=None)
        took = time.perf_counter() - started
    finally:
        await store.close()
    print(
        f"  the outbox and dispatcher alone (no-op sender): "
        f"{dispatcher.stats.sent / took:.0f} msg/s"
    )


_OFFLINE = Settings(arxiv_api_url="http://127.0.0.1:9", hf_api_url="http://127.0.0.1:9")


async def seed_enqueue(path: Path, chats: int, now: datetime) -> None:
    async with core(_OFFLINE, path) as app:
        store: SQLStore = app.store  # type: ignore[assignment]
        feeds = ["hf:daily", *(f"arxiv:{c}" for c in ARXIV_FEEDS)]
        # Today's feeds are already stored, as after the first round of the day.
        papers = [
            Paper(
                f"2506.{i:05d}",
                f"A paper about topic {i}",
                ["A. Author", "B. Author"],
                "An abstract " * 20,
                ["cs.LG"],
                announce_type="new",
                upvotes=i % 50,
            )
            for i in range(300)
        ]
        await store.upsert_papers(papers)
        for n, feed in enumerate(feeds):
            ids = [p.id for p in papers[n * 40 : n * 40 + 60]]
            await store.save_feed(feed, feed_day(feed, now), now.date(), ids)
        await seed_chats(store, chats, feeds, per_chat=1)


def _enqueue_child(conn: Connection, path: Path, now: datetime, cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})

    async def tick() -> None:
        async with core(_OFFLINE, path) as app:
            base = peak_rss_mb()
            started, cpu = time.perf_counter(), time.process_time()
            stats = await scheduler_tick(app, now)
            took, cpu = time.perf_counter() - started, time.process_time() - cpu
        conn.send((stats.chats, stats.messages, took, base, peak_rss_mb(), cpu))

    asyncio.run(tick())


async def bench_enqueue(path: Path, chats: int) -> None:
    now = datetime.now(UTC)
    await seed_enqueue(path, chats, now)
    # The round in a fresh process: its peak RSS is the round's, not the seeding's.
    parent, child = mp.Pipe()
    process = mp.get_context("spawn").Process(
        target=_enqueue_child, args=(child, path, now, CPUS[0]), daemon=True
    )
    process.start()
    due, rows, took, base, peak, cpu = await asyncio.get_running_loop().run_in_executor(
        None, parent.recv
    )
    process.join(10)
    print(
        f"enqueue: {due} due subscriptions ({rows} outbox rows) in {took:.2f} s"
        f" (CPU {cpu:.2f} s) = {due / took:.0f}/s; peak RSS {peak:.0f} MB"
        f" (the process before the round: {base:.0f} MB)"
    )


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "deliver.db"
        await bench_fetch_once(db, args.chats)
        await bench_send(db, limits_on=True, rate=args.rate)
        await bench_discord_send(Path(tmp) / "discord.db", args.channels)
        await bench_recovery(Path(tmp))
        await bench_send(db, limits_on=False, rate=args.rate)
        await bench_dispatcher_alone(db)
        await bench_enqueue(Path(tmp) / "enqueue.db", args.enqueue)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--chats", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--channels", type=int, default=1500)
    parser.add_argument("--enqueue", type=int, default=100_000)
    args = parser.parse_args(argv if argv is not None else [])
    # The bot on one core; the fake server gets another when there is one.
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {CPUS[0]})
    asyncio.run(run(args))


if __name__ == "__main__":
    main(sys.argv[1:])
