"""The command table: every command declared once, for every platform.

An adapter turns `COMMANDS` into its platform's commands (Telegram `/name` +
setMyCommands, Discord slash commands with typed options), builds a `Context`, and
calls `run_text` (raw text after the command, as Telegram and the terminal give it)
or `run_args` (already-typed options, as Discord gives them). Both return a `Reply`;
bad arguments give a usage line, never a traceback.
"""

from __future__ import annotations

import functools
import logging
import re
import shlex
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import time
from typing import TYPE_CHECKING, Literal
from zoneinfo import available_timezones

from bot import cards
from bot.doc import (
    Block,
    Bold,
    Button,
    Code,
    Inline,
    Italic,
    ListBlock,
    Message,
    Paragraph,
    Reply,
    Text,
)
from bot.ids import InvalidArxivId, parse_arxiv_id
from bot.models import HF_FEEDS, ChatRef, ChatSettings, Subscription
from bot.sources.base import FeedFetch, SourceError
from bot.sources.categories import CATEGORIES, canonical_category, category_name

if TYPE_CHECKING:
    from bot.service import Paperboy

log = logging.getLogger(__name__)

# "subscription": a feed, offered from the chat's own subscriptions (autocomplete).
ArgKind = Literal["text", "int", "choice", "feed", "subscription", "category", "paper"]
ArgValue = str | int
ChatKind = Literal["private", "group", "channel"]
COMMAND_NAME = re.compile(r"^[a-z0-9_]{1,32}$")


class UsageError(Exception):
    """Bad arguments; the message is shown to the user above the usage line."""


@dataclass(frozen=True, slots=True)
class Arg:
    name: str
    help: str
    kind: ArgKind = "text"
    required: bool = True
    choices: tuple[str, ...] = ()
    rest: bool = False  # takes the rest of the line (only the last argument)
    min_value: int | None = None
    max_value: int | None = None


@dataclass(slots=True)
class Context:
    """Who runs a command, where. Adapters fill it in; handlers never see a platform."""

    app: Paperboy
    chat: ChatRef
    user_id: str
    chat_kind: ChatKind = "private"
    is_admin: bool = True  # adapters say whether the user administers the chat
    user_name: str = ""
    reply_to_paper: str | None = None  # the paper of the explanation this message replies to
    images: bool = False  # the platform shows PNG equations
    # What the bot lacks to post digests here, as people read it ("Embed Links"); adapters
    # that can tell (Discord's app_permissions) fill it in.
    missing_permissions: tuple[str, ...] = ()


Handler = Callable[[Context, dict[str, ArgValue]], Awaitable[Reply]]


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    description: str  # one line, shown in command menus (Telegram caps it at 256)
    handler: Handler
    args: tuple[Arg, ...] = ()
    admin_only: bool = False  # changes chat state: only chat admins in groups and channels
    slow: bool = False  # may take seconds (Discord defers first)
    examples: tuple[str, ...] = ()

    @property
    def usage(self) -> str:
        parts = [f"/{self.name}"]
        for arg in self.args:
            label = arg.name + ("…" if arg.rest else "")
            parts.append(f"<{label}>" if arg.required else f"[{label}]")
        return " ".join(parts)


# ---------------------------------------------------------------- argument parsing


def _split(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:  # unbalanced quote: fall back to plain whitespace
        return text.split()


_WORD = re.compile(r"""\s*("[^"]*"|'[^']*'|\S+)""")


def parse_text(command: Command, text: str) -> dict[str, ArgValue]:
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


def validate(command: Command, raw: Mapping[str, object]) -> dict[str, ArgValue]:
    """Check and convert arguments given by name (Discord options, or parse_text)."""
    out: dict[str, ArgValue] = {}
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


# -------------------------------------------------------------------- handlers


async def _start(ctx: Context, args: dict[str, ArgValue]) -> Reply:
    return Reply.of(
        Paragraph((Bold((Text("Paperboy delivers research papers."),)),)),
        Paragraph(
            (
                Text(
                    "Every day at your hour, the papers that matter: Hugging Face trending "
                    "and daily papers, and what arXiv announced in the categories you follow. "
                    "Ask me about any paper, too."
                ),
            )
        ),
        Paragraph(
            (
                Text("Try "),
                Code("/trending"),
                Text(", "),
                Code("/subscribe arxiv:cs.LG diffusion"),
                Text(" or "),
                Code("/explain 1706.03762"),
                Text(". "),
                Code("/help"),
                Text(" lists everything."),
            )
        ),
    )


async def _help(ctx: Context, args: dict[str, ArgValue]) -> Reply:
    items = tuple(
        (
            Code(cmd.usage),
            Text(f" — {cmd.description}" + (" (chat admins)" if cmd.admin_only else "")),
        )
        for cmd in COMMANDS.values()
    )
    return Reply.of(
        Paragraph((Bold((Text("Commands"),)),)),
        ListBlock(items),
        Paragraph(
            (
                Text("Feeds: "),
                Code("hf:trending"),
                Text(", "),
                Code("hf:daily"),
                Text(", "),
                Code("arxiv:<category>"),
                Text(". Filters after a feed: words to match, "),
                Code("-word"),
                Text(" to exclude, "),
                Code("author:Name"),
                Text("."),
            )
        ),
    )


async def _paper(ctx: Context, args: dict[str, ArgValue]) -> Reply:
    paper = await ctx.app.paper(str(args["id"]))
    if paper is None:
        return Reply.text(f"I couldn't find arXiv paper {args['id']}. Is the id right?")
    message = cards.paper_message(paper, detail=True)
    wanted = parse_arxiv_id(str(args["id"])).version
    if wanted and paper.version and wanted > paper.version:
        note = f"arXiv has no v{wanted} of {paper.id}; this is the latest, v{paper.version}."
        message.blocks.insert(0, Paragraph((Italic((Text(note),)),)))
    return Reply([message])


async def _trending(ctx: Context, args: dict[str, ArgValue]) -> Reply:
    count = int(args.get("n", 10))
    fetch = await ctx.app.feed("hf:trending")
    papers = fetch.papers[:count]
    if not papers:
        return Reply.text("Hugging Face lists no trending papers right now. Try again later.")
    return _stale_note(cards.paper_list("Trending on Hugging Face", papers), fetch)


def _stale_note(reply: Reply, fetch: FeedFetch) -> Reply:
    """Say so when the list is an earlier day's, served because the upstream failed."""
    if fetch.stale and reply.messages:
        day = f" from {fetch.announced:%a %d %b}" if fetch.announced else ""
        note = f"{fetch.stale} Showing the last list I have{day}."
        reply.messages[0].blocks.insert(0, Paragraph((Italic((Text(note),)),)))
    return reply


async def _today(ctx: Context, args: dict[str, ArgValue]) -> Reply:
    category = str(args["category"])
    fetch = await ctx.app.feed(f"arxiv:{category}")
    if fetch.stale:
        title = f"{category} — {fetch.announced:%a %d %b %Y} ({len(fetch.papers)})"
        return _stale_note(cards.paper_list(title, fetch.papers, limit=25), fetch)
    if fetch.announced is None:
        return Reply.text(
            f"arXiv announced nothing in {category} today: there are no announcements "
            "on Friday and Saturday nights (US Eastern) or on holidays."
        )
    if not fetch.papers:
        return Reply.text(
            f"No new papers in {category} in the {fetch.announced:%A %d %B} announcement."
        )
    title = f"New in {category} — {fetch.announced:%a %d %b %Y} ({len(fetch.papers)})"
    return cards.paper_list(title, fetch.papers, limit=25)


async def _search(ctx: Context, args: dict[str, ArgValue]) -> Reply:
    query = str(args["query"])
    papers = await ctx.app.search(query)
    if not papers:
        return Reply.text(f"Nothing on arXiv matches “{query}”.")
    return cards.paper_list(f"arXiv search: {query}", papers)


def _require_admin(ctx: Context) -> None:
    if ctx.chat_kind != "private" and not ctx.is_admin:
        raise UsageError("Only chat admins can change this chat's subscriptions and settings.")


async def _subscribe(ctx: Context, args: dict[str, ArgValue]) -> Reply:
    feed = str(args["feed"])
    if ctx.missing_permissions:
        missing = ", ".join(ctx.missing_permissions)
        return Reply.text(
            f"I can't post digests in this channel: I'm missing the {missing} permission"
            f"{'s' if len(ctx.missing_permissions) > 1 else ''} here. Give them to me "
            "(channel settings → Permissions), then run /subscribe again.",
            ephemeral=True,
        )
    topics, filters = learn_commands.split_topics(str(args.get("filters", "")))
    keywords, exclude, authors = parse_filters(filters)
    before = [s for s in await ctx.app.store.list_subscriptions(ctx.chat) if s.feed == feed]
    sub = await ctx.app.store.add_subscription(
        Subscription(ctx.chat, feed, keywords=keywords, exclude=exclude, authors=authors)
    )
    await ctx.app.store.set_topics(ctx.chat, feed, topics)  # matched by meaning (bot/rank)
    settings = await ctx.app.chat_settings(ctx.chat)
    when = f"{settings.delivery_time:%H:%M} {settings.timezone}"
    # One subscription per feed: a second /subscribe replaces its filters, and says so.
    done: tuple[Inline, ...] = (Text("Subscribed: "), Code(sub.describe()), Text("."))
    if before and before[0].describe() != sub.describe():
        done = (
            Text("Updated: "),
            Code(sub.describe()),
            Text(" (it was "),
            Code(before[0].describe()),
            Text(")."),
        )
    elif before:
        done = (Text("Already subscribed: "), Code(sub.describe()), Text("."))
    if topics:
        done = (*done, Text(" Topics: " + ", ".join(f"“{t}”" for t in topics) + "."))
    return Reply.of(
        Paragraph(done),
        Paragraph(
            (
                Text(f"Your digest arrives daily at {when}. Change it with "),
                Code("/settings time 08:00"),
                Text(" and "),
                Code("/settings timezone Europe/Berlin"),
                Text("."),
            )
        ),
    )


async def _unsubscribe(ctx: Context, args: dict[str, ArgValue]) -> Reply:
    if "feed" not in args:  # the digest's Unsubscribe button: which feed?
        subs = await ctx.app.store.list_subscriptions(ctx.chat)
        if not subs:
            return Reply.text("This chat follows no feed.", ephemeral=True)
        rows = [
            [Button(f"Unsubscribe {sub.feed}", command="unsubscribe", arg=sub.feed)]
            for sub in subs[:MAX_FEED_BUTTONS]
        ]
        blocks: list[Block] = [Paragraph((Text("Which feed should this chat stop following?"),))]
        if len(subs) > MAX_FEED_BUTTONS:
            blocks.append(Paragraph((Text("Or any of them: "), Code("/unsubscribe <feed>"))))
        return Reply([Message(blocks, rows)])
    feed = str(args["feed"])
    if await ctx.app.store.remove_subscription(ctx.chat, feed):
        await ctx.app.store.set_topics(ctx.chat, feed, [])
        return Reply.text(f"Unsubscribed from {feed}.")
    return Reply.text(
        f"This chat is not subscribed to {feed}. /subscriptions lists what it follows."
    )


async def _subscriptions(ctx: Context, args: dict[str, ArgValue]) -> Reply:
    subs = await ctx.app.store.list_subscriptions(ctx.chat)
    if not subs:
        return Reply.of(
            Paragraph(
                (
                    Text("No subscriptions yet. Try "),
                    Code("/subscribe hf:trending"),
                    Text(" or "),
                    Code("/subscribe arxiv:cs.CL"),
                    Text("."),
                )
            )
        )
    settings = await ctx.app.chat_settings(ctx.chat)
    topics = await ctx.app.store.chat_topics(ctx.chat)
    items = tuple(
        (Code(" ".join([sub.describe(), *(f'topic:"{t}"' for t in topics.get(sub.feed, []))])),)
        for sub in subs
    )
    return Reply.of(
        Paragraph((Bold((Text("Subscriptions"),)),)),
        ListBlock(items),
        Paragraph((Text(cards.describe_settings(settings)),)),
    )


MAX_FEED_BUTTONS = 5  # one row each: Discord's limit of rows under a message

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
)


async def _settings(ctx: Context, args: dict[str, ArgValue]) -> Reply:
    settings = await ctx.app.chat_settings(ctx.chat)
    key = args.get("key")
    if key is None:
        return Reply.of(
            Paragraph((Bold((Text("Settings"),)),)),
            Paragraph((Text(cards.describe_settings(settings)),)),
            await learn_commands.settings_summary(ctx),
            Paragraph(
                (
                    Text("Change one: "),
                    Code("/settings time 08:30"),
                    Text(", "),
                    Code("/settings timezone America/New_York"),
                    Text(", "),
                    Code("/settings count 5"),
                    Text(", "),
                    Code("/settings format full"),
                    Text(", "),
                    Code("/settings days mon-fri"),
                    Text(", "),
                    Code("/settings explain on"),
                    Text("."),
                )
            ),
        )
    _require_admin(ctx)
    value = str(args.get("value", "")).strip()
    if key in learn_commands.LEARN_KEYS:  # what the ranking learns (bot/learn_commands.py)
        return await learn_commands.learn_setting(ctx, str(key), value)
    if not value:
        raise UsageError(f"Give a value: /settings {key} <value>.")
    apply_setting(settings, str(key), value)
    await ctx.app.save_chat_settings(settings)
    return Reply.text(f"Saved. {cards.describe_settings(settings)}")


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


async def _explain(ctx: Context, args: dict[str, ArgValue]) -> Reply:
    return await ctx.app.explain(str(args["id"]), ctx)


async def _ask(ctx: Context, args: dict[str, ArgValue]) -> Reply:
    return await ctx.app.ask(str(args["id"]), str(args["question"]), ctx)


# ------------------------------------------------------------------ the table

_ID = Arg("id", "an arXiv id or link, e.g. 1706.03762", kind="paper")

COMMANDS: dict[str, Command] = {
    cmd.name: cmd
    for cmd in (
        Command("start", "What Paperboy does", _start),
        Command("help", "All commands and feeds", _help),
        Command(
            "paper", "Show one paper", _paper, (_ID,), slow=True, examples=("/paper 1706.03762",)
        ),
        Command(
            "explain",
            "Explain a paper's ideas and math",
            _explain,
            (_ID,),
            slow=True,
            examples=("/explain 1706.03762",),
        ),
        Command(
            "ask",
            "Ask a question about a paper",
            _ask,
            (_ID, Arg("question", "your question", rest=True)),
            slow=True,
        ),
        Command(
            "trending",
            "Trending papers on Hugging Face",
            _trending,
            (Arg("n", "how many (1-25)", kind="int", required=False, min_value=1, max_value=25),),
            slow=True,
        ),
        Command(
            "today",
            "What arXiv announced today in a category",
            _today,
            (Arg("category", "an arXiv category, e.g. cs.LG", kind="category"),),
            slow=True,
            examples=("/today cs.LG",),
        ),
        Command(
            "search",
            "Search arXiv",
            _search,
            (Arg("query", 'words, "a phrase" or author:Name', rest=True),),
            slow=True,
            examples=("/search diffusion author:Ho",),
        ),
        Command(
            "subscribe",
            "Follow a feed, with optional filters",
            _subscribe,
            (
                Arg("feed", "hf:trending, hf:daily or arxiv:<category>", kind="feed"),
                Arg("filters", "words, -excluded words, author:Name", required=False, rest=True),
            ),
            admin_only=True,
            examples=("/subscribe arxiv:cs.LG diffusion -survey",),
        ),
        Command(
            "unsubscribe",
            "Stop following a feed",
            _unsubscribe,
            (Arg("feed", "a feed this chat follows", kind="subscription", required=False),),
            admin_only=True,
        ),
        Command("subscriptions", "What this chat follows", _subscriptions),
        Command(
            "settings",
            "Delivery time, time zone, count, format, days, quality, cadence, topic, math lines",
            _settings,
            (
                Arg(
                    "key",
                    "time, timezone, count, format, days, quality, cadence, topic, forget, explain",
                    kind="choice",
                    required=False,
                    choices=SETTING_KEYS,
                ),
                Arg("value", "the new value", required=False, rest=True),
            ),
            admin_only=True,
        ),
    )
}

# Issue 14's commands live in their own module, which needs this one's Command and Arg,
# and adds them to COMMANDS when imported.
from bot import learn_commands  # noqa: E402

assert all(COMMAND_NAME.match(name) for name in COMMANDS)


@dataclass(slots=True)
class Invocation:
    """A parsed command line: '/subscribe@Bot arxiv:cs.LG' -> ('subscribe', 'arxiv:cs.LG')."""

    name: str
    text: str = ""
    bot_mention: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


def split_command_line(line: str) -> Invocation | None:
    match = re.match(r"^/([A-Za-z0-9_]{1,32})(?:@(\w+))?(?:\s+(.*))?$", line.strip(), re.DOTALL)
    if not match:
        return None
    return Invocation(match[1].lower(), (match[3] or "").strip(), match[2])


async def run_text(ctx: Context, name: str, text: str) -> Reply:
    """Run a command from raw text (Telegram, terminal)."""
    unknown = f"I don't know /{name}. /help lists what I can do."
    return await _run(ctx, name, unknown, lambda command: parse_text(command, text))


async def run_args(ctx: Context, name: str, raw: Mapping[str, object]) -> Reply:
    """Run a command from typed options (Discord)."""
    return await _run(ctx, name, f"I don't know /{name}.", lambda command: validate(command, raw))


async def _run(
    ctx: Context,
    name: str,
    unknown: str,
    parse: Callable[[Command], dict[str, ArgValue]],
) -> Reply:
    command = COMMANDS.get(name)
    if command is None:
        return Reply.text(unknown, ephemeral=True)
    try:  # apart from the handler's try: a parser bug raises rather than reads as our outage
        args = parse(command)
    except UsageError as e:
        return usage_reply(command, str(e))
    try:
        if command.admin_only and command.name != "settings":
            _require_admin(ctx)
        reply = await command.handler(ctx, args)
        if command.admin_only and (ctx.chat_kind == "private" or ctx.is_admin):
            await _reactivate(ctx, reply)
        return reply
    except UsageError as e:
        return usage_reply(command, str(e))
    except SourceError as e:
        return Reply.text(str(e), ephemeral=True)
    except Exception:
        log.exception("command /%s failed", command.name)
        return Reply.text(
            "Something went wrong on my side. Please try again in a minute.", ephemeral=True
        )


async def _reactivate(ctx: Context, reply: Reply) -> None:
    """An admin at work in a paused chat (delivery failed there) switches it back on, unless
    the adapter can tell that the bot still cannot post there."""
    if ctx.missing_permissions:
        return
    settings = await ctx.app.store.get_chat(ctx.chat)
    if settings is None or settings.active:
        return
    await ctx.app.store.set_chat_active(ctx.chat, True)
    log.info("chat %s switched back on by an admin command", ctx.chat.key)
    if reply.messages:
        note = "Digests to this chat were paused after a delivery failed; they are back on."
        reply.messages[-1].blocks.append(Paragraph((Italic((Text(note),)),)))


def usage_reply(command: Command, problem: str) -> Reply:
    blocks: list[Block] = [
        Paragraph((Text(problem),)),
        Paragraph((Text("Usage: "), Code(command.usage))),
    ]
    if command.examples:
        blocks.append(Paragraph((Text("Example: "), Code(command.examples[0]))))
    return Reply([Message(blocks)], ephemeral=True)
