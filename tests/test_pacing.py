"""bot.pacing: rolling windows, measured when each request is let go."""

from __future__ import annotations

import asyncio
import itertools
import time

from bot.pacing import Pacer, SendLimits, Window


def most_in_any_window(times: list[float], period: float) -> int:
    times = sorted(times)
    best = 0
    for i, start in enumerate(times):
        best = max(best, sum(1 for t in times[i:] if t < start + period))
    return best


def test_a_window_counts_the_last_period_only_and_spreads_events() -> None:
    window = Window(3, 1.0)
    assert window.wait(0.0) == 0.0
    window.add(0.0)
    window.add(0.1)  # one slot early: a late wake-up is made up for
    assert abs(window.wait(0.2) - (1 / 3 - 0.2)) < 1e-9  # then back on the 1/3 s schedule
    window.add(2 / 3)
    assert abs(window.wait(0.7) - 0.3) < 1e-9  # three in the last second: until 0.0 leaves
    assert window.wait(1.0) == 0.0
    assert Window(0.5, 1.0).period == 2.0  # a worker's half of 1/s: one every 2 s


async def test_overall_limit_holds_in_every_rolling_window() -> None:
    pacer = Pacer(SendLimits(overall=20, overall_window=0.2))
    stamps: list[float] = []

    async def chat(n: int) -> None:
        for _ in range(3):
            await pacer.acquire(str(n))
            stamps.append(time.monotonic())

    started = time.monotonic()
    await asyncio.gather(*(chat(n) for n in range(30)))
    took = time.monotonic() - started
    assert len(stamps) == 90
    assert most_in_any_window(stamps, 0.2) <= 20
    # 90 requests at 20 per 0.2 s: four full windows' wait at least (how much more
    # depends on the machine; the benchmarks measure the rate).
    assert took > 0.55


async def test_a_chat_is_spaced_at_send_time_and_remembered() -> None:
    pacer = Pacer(SendLimits(overall=1000, chat_interval=0.15, group=3, group_window=0.6))
    stamps: list[float] = []
    for _ in range(3):
        await pacer.acquire("7")
        stamps.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert all(gap >= 0.149 for gap in gaps)
    # A group: three per 0.6 s, however the sends are spread over batches.
    group: list[float] = []
    for _ in range(5):
        await pacer.acquire("-100", group=True)
        group.append(time.monotonic())
    assert most_in_any_window(group, 0.6) <= 3
    assert group[3] - group[0] >= 0.599
    assert group[2] - group[0] < 0.45  # a burst inside the group's window (chat pace only)
    # Readiness is the chat's own windows only, and takes nothing.
    assert pacer.ready_in("-100", group=True) > 0
    assert pacer.ready_in("8") == 0.0


async def test_a_global_429_holds_everyone_back() -> None:
    pacer = Pacer(SendLimits(overall=1000))
    pacer.pause(0.2)
    started = time.monotonic()
    await asyncio.gather(pacer.acquire("1"), pacer.acquire("2"), pacer.acquire(None))
    assert time.monotonic() - started >= 0.19


def test_limits_for_workers_and_off() -> None:
    from bot.config import Settings

    assert Pacer(SendLimits(overall=0))._overall is None
    settings = Settings(worker_count=2, worker_index=1, telegram_bot_token="1:x")
    from adapters.telegram import send_limits

    assert send_limits(settings).overall == 14.0
    assert send_limits(Settings(telegram_paid_broadcast=True)).overall == 950.0
    assert send_limits(Settings()).group == 19.0


async def test_the_metrics_wrapper_passes_readiness_on() -> None:
    from bot.metrics import CountingSender
    from bot.models import ChatRef

    asked: list[ChatRef] = []

    class Paced:
        platform = "telegram"

        async def ready(self, chat: ChatRef) -> None:
            asked.append(chat)

        async def send(self, chat: ChatRef, message: object) -> list[str]:
            return ["1"]

    chat = ChatRef("telegram", "5")
    await CountingSender(Paced()).ready(chat)
    assert asked == [chat]
