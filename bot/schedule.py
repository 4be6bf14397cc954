"""Per-chat delivery time and timezone -> the next instant a digest is due.

Times are wall-clock times in the chat's IANA zone, so "09:00 Europe/Berlin" stays 09:00
across DST changes. A local time that does not exist (the spring-forward gap) is moved
forward by the length of the gap; one that happens twice (fall back) takes the first.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.models import ChatSettings


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """The zone for an IANA name; unknown names fall back to UTC rather than stop delivery."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_instant(day: date, settings: ChatSettings) -> datetime:
    """The UTC instant of `settings.delivery_time` on local `day`, DST resolved."""
    tz = zone(settings.timezone)
    # fold=0 picks the first of two ambiguous times, and for a nonexistent time applies
    # the offset in force before the gap, which lands after the gap: "roll forward".
    wall = datetime.combine(day, settings.delivery_time).replace(tzinfo=tz, fold=0)
    return wall.astimezone(UTC)


def next_run(settings: ChatSettings, after: datetime) -> datetime:
    """The first delivery instant strictly after `after` (aware, UTC), honouring weekdays."""
    if after.tzinfo is None:
        after = after.replace(tzinfo=UTC)
    tz = zone(settings.timezone)
    start = after.astimezone(tz).date() - timedelta(days=1)  # a gap can shift across midnight
    # An empty weekday set would never deliver; treat it like "every day" instead of hanging.
    days = settings.weekdays or None
    for offset in range(16):
        day = start + timedelta(days=offset)
        if days is not None and day.weekday() not in days:
            continue
        at = local_instant(day, settings)
        if at > after:
            return at
    raise AssertionError("unreachable: every week has a matching day")  # pragma: no cover


def local_date(settings: ChatSettings, at: datetime) -> date:
    """The chat's calendar date at instant `at` (a digest's name in idempotency keys)."""
    return at.astimezone(zone(settings.timezone)).date()
