"""Command arguments from user text: words and quotes, feeds, filters, topics, and
the values of chat settings. Everything here raises UsageError for bad input."""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Mapping, Sequence
from datetime import time
from zoneinfo import available_timezones

from bot.commands.base import Arg, Args, ArgValue, Command, UsageError
from bot.explain.prompt import LANGUAGES
from bot.ids import InvalidArxivId, parse_arxiv_id
from bot.models import HF_FEEDS, ChatSettings
from bot.sources.categories import CATEGORIES, canonical_category, category_name


def _split(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:  # unbalanced quote: fall back to plain whitespace
        return text.split()


_WORD = re.compile(r"""\s*("[^"]*"|'[^']*'|\S+)""")


def parse_text(command: Command, text: str) -> Args:
    """Raw text after the command -> typed arguments, or UsageError.

    Words may be quoted; a `rest` argument takes the remaining text verbatim.
    """
    values: dict[str, str] = {}
    pos = 0
    for arg in command.args:
        if arg.rest:
            if text[pos:].strip():
                values[arg.name] = text[pos:].strip()
            pos = len(text)
            break
        match = _WORD.match(text, pos)
        if not match:
            break
        values[arg.name] = match[1].strip("\"'")
        pos = match.end()
    if text[pos:].strip():
        raise UsageError("Too many arguments.")
    return validate(command, values)


def validate(command: Command, raw: Mapping[str, object]) -> Args:
    """Check and convert arguments given by name (Discord options, or parse_text)."""
    out: Args = {}
    for arg in command.args:
        value = raw.get(arg.name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if arg.required:
                raise UsageError(f"Missing {arg.name}: {arg.help}")
            continue
        out[arg.name] = _convert(arg, value)
    return out


def _convert(arg: Arg, value: object) -> ArgValue:
    if arg.kind == "int":
        try:
            number = int(str(value).strip())
        except ValueError:
            raise UsageError(f"{arg.name} must be a whole number, not “{value}”.") from None
        low = arg.min_value if arg.min_value is not None else number
        high = arg.max_value if arg.max_value is not None else number
        if not low <= number <= high:
            raise UsageError(f"{arg.name} must be between {arg.min_value} and {arg.max_value}.")
        return number
    text = str(value).strip()
    if arg.kind == "choice" and arg.choices:
        lowered = text.lower()
        if lowered not in arg.choices:
            raise UsageError(f"{arg.name} must be one of: {', '.join(arg.choices)}.")
        return lowered
    if arg.kind == "category":
        category = canonical_category(text.removeprefix("arxiv:"))
        if category is None:
            raise UsageError(f"“{text}” is not an arXiv category. Try cs.LG, math.AP or hep-th.")
        return category
    if arg.kind in ("feed", "subscription"):
        return parse_feed(text)
    if arg.kind == "paper":
        try:
            return str(parse_arxiv_id(text))
        except InvalidArxivId as e:
            raise UsageError(str(e)) from None
    if len(text) > 500:
        raise UsageError(f"{arg.name} is too long (500 characters at most).")
    return text


def parse_feed(text: str) -> str:
    """'hf:trending', 'trending', 'hf:daily', 'daily', 'arxiv:cs.AI', 'cs.AI' -> canonical feed."""
    lowered = text.strip().lower()
    for feed in HF_FEEDS:
        if lowered in (feed, feed.removeprefix("hf:")):
            return feed
    category = canonical_category(text.strip().removeprefix("arxiv:").removeprefix("ARXIV:"))
    if category is None:
        raise UsageError(
            f"“{text}” is not a feed. Feeds are hf:trending, hf:daily, or arxiv:<category> "
            "such as arxiv:cs.LG."
        )
    return f"arxiv:{category}"


def all_feeds() -> list[str]:
    return [*HF_FEEDS, *(f"arxiv:{cid}" for cid in CATEGORIES)]


def suggest_feeds(text: str, feeds: Sequence[str], limit: int = 25) -> list[str]:
    """Autocomplete: the feeds that `text` starts any part of ("arx" → arxiv:…, "cs.L" →
    arxiv:cs.LG, "trend" → hf:trending, "lg" → arxiv:cs.LG), the whole name first, then
    feeds whose category name contains it ("language" → arxiv:cs.CL)."""
    needle = text.strip().casefold()
    ranked: list[tuple[int, int, str]] = []
    for n, feed in enumerate(feeds):
        folded = feed.casefold()
        scheme, _, name = folded.partition(":")
        if folded.startswith(needle):
            rank = 0
        elif name.startswith(needle):
            rank = 1
        elif any(part.startswith(needle) for part in (scheme, *re.split(r"[.\-_]", name))):
            rank = 2
        elif len(needle) > 2 and needle in (category_name(feed.partition(":")[2]) or "").casefold():
            rank = 3
        else:
            continue
        ranked.append((rank, n, feed))
    return [feed for _, _, feed in sorted(ranked)[:limit]]


def parse_filters(text: str) -> tuple[list[str], list[str], list[str]]:
    """Filter words after a feed: `diffusion "graph neural" -survey author:Hinton`."""
    keywords: list[str] = []
    exclude: list[str] = []
    authors: list[str] = []
    for word in _split(text):
        word = word.strip()
        if not word:
            continue
        lowered = word.lower()
        if lowered.startswith(("author:", "au:")):
            name = word.split(":", 1)[1].strip()
            if name:
                authors.append(name)
        elif word.startswith("-") and len(word) > 1:
            exclude.append(word[1:])
        else:
            keywords.append(word)
    if len(keywords) + len(exclude) + len(authors) > 30:
        raise UsageError("Up to 30 filters per subscription, please.")
    return keywords, exclude, authors


_TOPIC = re.compile(r"""(?:^|\s)topic:(?:"([^"]*)"|'([^']*)'|(\S+))""", re.IGNORECASE)


def split_topics(text: str) -> tuple[list[str], str]:
    """`topic:"shape correspondence" diffusion` -> (['shape correspondence'], 'diffusion')."""
    topics = [" ".join((m[1] or m[2] or m[3] or "").split()) for m in _TOPIC.finditer(text)]
    topics = [t for t in topics if t]
    if any(len(t) > 200 for t in topics):
        raise UsageError("A topic is a few words (200 characters at most).")
    if len(topics) > 5:
        raise UsageError("Up to 5 topics per subscription, please.")
    return topics, _TOPIC.sub(" ", text).strip()


# ------------------------------------------------------------- chat settings

SETTING_KEYS = (
    "time",
    "timezone",
    "count",
    "format",
    "days",
    "quality",
    "cadence",
    "topic",
    "forget",
    "explain",
    "language",
)


_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def apply_setting(settings: ChatSettings, key: str, value: str) -> None:
    """Set one chat setting from user text, or raise UsageError (settings stay untouched)."""
    if key == "time":
        match = re.fullmatch(r"(\d{1,2})[:.h](\d{2})", value)
        if not match or int(match[1]) > 23 or int(match[2]) > 59:
            raise UsageError("Time is HH:MM on a 24-hour clock, e.g. 08:30.")
        settings.delivery_time = time(int(match[1]), int(match[2]))
    elif key == "timezone":
        settings.timezone = canonical_timezone(value)
    elif key == "count":
        # isdecimal, not isdigit: "²" is a digit that int() refuses.
        if not value.isdecimal() or not 1 <= int(value) <= 50:
            raise UsageError("Count is a number of papers from 1 to 50.")
        settings.count = int(value)
    elif key == "format":
        if value.lower() not in ("compact", "full"):
            raise UsageError("Format is compact (one message) or full (one message per paper).")
        settings.format = "compact" if value.lower() == "compact" else "full"
    elif key == "days":
        settings.weekdays = parse_weekdays(value)
    elif key == "explain":
        if value.lower() not in ("on", "off"):
            raise UsageError(
                "Explain is on (a key equation and one sentence under each digest paper) or off."
            )
        settings.explain = value.lower() == "on"
    elif key == "language":
        code = value.lower()
        if code not in LANGUAGES:
            raise UsageError(f"Language is one of: {', '.join(LANGUAGES)}.")
        settings.language = code  # the language of /explain and of answers to /ask
    else:
        raise UsageError(f"Unknown setting. Settings are: {', '.join(SETTING_KEYS)}.")


# Keys in the zoneinfo database that are not a place: "localtime" is the server's own zone
# (not the user's), "posixrules" a template, "Factory" a placeholder.
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@functools.cache
def _zone_names() -> dict[str, str]:
    """Lower-cased IANA name -> name. Listing the zones reads the disk: once per process."""
    return {name.lower(): name for name in available_timezones() if name not in _NOT_ZONES}


def canonical_timezone(value: str) -> str:
    if value.upper() in ("UTC", "GMT", "Z"):
        return "UTC"
    name = _zone_names().get(value.strip().lower())
    if name is None:
        raise UsageError(
            f"“{value}” is not a time zone. Use an IANA name like Europe/Berlin or Asia/Tokyo."
        )
    return name


def parse_weekdays(value: str) -> frozenset[int] | None:
    """'mon-fri', 'mon,wed,fri', 'weekdays', 'every day' -> weekday numbers (None = every day)."""
    text = value.lower().replace(" ", "")
    if text in ("all", "everyday", "daily", "*"):
        return None
    if text in ("weekdays", "workdays"):
        return frozenset(range(5))
    days: set[int] = set()
    for part in text.split(","):
        ends = part.split("-")
        try:
            numbers = [_DAY_NAMES.index(e[:3]) for e in ends]
        except ValueError:
            raise UsageError("Days are like mon-fri, mon,wed,fri, weekdays or daily.") from None
        if len(numbers) == 1:
            days.add(numbers[0])
        elif len(numbers) == 2:
            start, end = numbers
            days.update(
                range(start, end + 1) if start <= end else [*range(start, 7), *range(0, end + 1)]
            )
        else:
            raise UsageError("Days are like mon-fri, mon,wed,fri, weekdays or daily.")
    return frozenset(days) if len(days) < 7 else None
