"""Values made storable: text cleaning, instants, weekday sets."""

from __future__ import annotations

from datetime import UTC, datetime


def clean_text(value: str) -> str:
    """Make a string storable everywhere: PostgreSQL rejects NUL, UTF-8 rejects lone surrogates.

    Both only come from broken upstream data and carry no meaning, so they are dropped or
    replaced rather than failing a whole batch.
    """
    if "\x00" in value:
        value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def to_utc(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC, so both databases return the same aware values."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def weekdays_to_text(days: frozenset[int] | None) -> str | None:
    """{4, 0, 2} -> '0,2,4'; None (every day) stays None. Rejects impossible days."""
    if days is None:
        return None
    if any(isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= 6 for d in days):
        raise ValueError(f"weekdays must be 0 (Monday) .. 6 (Sunday), got {sorted(days)}")
    return ",".join(str(d) for d in sorted(days))


def weekdays_from_text(text: str | None) -> frozenset[int] | None:
    if text is None:
        return None
    return frozenset(int(d) for d in text.split(",") if d)
