"""bot.schedule: per-chat wall-clock times across time zones and DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, time

from bot.models import ChatRef, ChatSettings
from bot.schedule import local_date, next_run

CHAT = ChatRef("telegram", "1")


def settings(tz: str, at: str, weekdays: frozenset[int] | None = None) -> ChatSettings:
    return ChatSettings(CHAT, timezone=tz, delivery_time=time.fromisoformat(at), weekdays=weekdays)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_same_day_when_the_time_is_still_ahead() -> None:
    assert next_run(settings("UTC", "09:00"), utc(2025, 6, 2, 8, 59)) == utc(2025, 6, 2, 9, 0)


def test_strictly_after_so_a_run_never_repeats() -> None:
    assert next_run(settings("UTC", "09:00"), utc(2025, 6, 2, 9, 0)) == utc(2025, 6, 3, 9, 0)


def test_wall_clock_time_is_kept_across_dst_in_two_zones() -> None:
    berlin, new_york = settings("Europe/Berlin", "08:00"), settings("America/New_York", "08:00")
    # Europe springs forward on 30 March 2025, the US on 9 March.
    assert next_run(berlin, utc(2025, 3, 29, 12)) == utc(2025, 3, 30, 6, 0)  # CEST, UTC+2
    assert next_run(berlin, utc(2025, 3, 28, 12)) == utc(2025, 3, 29, 7, 0)  # CET, UTC+1
    assert next_run(new_york, utc(2025, 3, 8, 14)) == utc(2025, 3, 9, 12, 0)  # EDT, UTC-4
    assert next_run(new_york, utc(2025, 3, 7, 14)) == utc(2025, 3, 8, 13, 0)  # EST, UTC-5


def test_nonexistent_local_time_rolls_forward() -> None:
    # 02:30 does not exist in Berlin on 30 March 2025: it becomes 03:30 CEST (01:30 UTC).
    at = next_run(settings("Europe/Berlin", "02:30"), utc(2025, 3, 29, 12))
    assert at == utc(2025, 3, 30, 1, 30)


def test_ambiguous_local_time_takes_the_first() -> None:
    # 02:30 happens twice in Berlin on 26 October 2025; the first is CEST (00:30 UTC).
    s = settings("Europe/Berlin", "02:30")
    assert next_run(s, utc(2025, 10, 25, 12)) == utc(2025, 10, 26, 0, 30)
    # ...and only once: the second 02:30 is not another run.
    assert next_run(s, utc(2025, 10, 26, 0, 30)) == utc(2025, 10, 27, 1, 30)


def test_weekdays() -> None:
    mon_wed = settings("Asia/Tokyo", "07:00", frozenset({0, 2}))
    # Tuesday 3 June 2025 noon in Tokyo -> Wednesday 07:00 JST = 22:00 UTC Tuesday.
    assert next_run(mon_wed, utc(2025, 6, 3, 3)) == utc(2025, 6, 3, 22, 0)
    # After Wednesday's run -> Monday.
    assert next_run(mon_wed, utc(2025, 6, 3, 22, 0)) == utc(2025, 6, 8, 22, 0)


def test_local_date_and_unknown_zone() -> None:
    s = settings("Pacific/Auckland", "06:00")
    at = next_run(s, utc(2025, 6, 2, 12))
    assert local_date(s, at).isoformat() == "2025-06-03"
    assert next_run(settings("Not/AZone", "09:00"), utc(2025, 6, 2)) == utc(2025, 6, 2, 9)
