"""Commands about the chat: /subscribe, /unsubscribe, /subscriptions, /settings."""

from __future__ import annotations

from bot import cards
from bot.commands.base import Arg, Args, Command, Context, UsageError, require_admin
from bot.commands.learn import LEARN_KEYS, learn_setting, settings_summary
from bot.commands.parse import SETTING_KEYS, apply_setting, parse_filters, split_topics
from bot.doc import Block, Button, Message, Reply, bullets, code, joined, p, section
from bot.models import Subscription
from bot.service import Paperboy

MAX_FEED_BUTTONS = 5  # one row each: Discord's limit of rows under a message


async def _subscribe(service: Paperboy, ctx: Context, args: Args) -> Reply:
    feed = str(args["feed"])
    if ctx.missing_permissions:
        missing = ", ".join(ctx.missing_permissions)
        return Reply.text(
            f"I can't post digests in this channel: I'm missing the {missing} permission"
            f"{'s' if len(ctx.missing_permissions) > 1 else ''} here. Give them to me "
            "(channel settings → Permissions), then run /subscribe again.",
            ephemeral=True,
        )
    topics, filters = split_topics(str(args.get("filters", "")))
    keywords, exclude, authors = parse_filters(filters)
    sub, before = await service.subscribe(
        Subscription(ctx.chat, feed, keywords=keywords, exclude=exclude, authors=authors), topics
    )
    # One subscription per feed: a second /subscribe replaces its filters, and says so.
    done = p("Subscribed: ", code(sub.describe()), ".")
    if before and before.describe() != sub.describe():
        done = p("Updated: ", code(sub.describe()), " (it was ", code(before.describe()), ").")
    elif before:
        done = p("Already subscribed: ", code(sub.describe()), ".")
    if topics:
        done = p(*done.children, " Topics: " + ", ".join(f"“{t}”" for t in topics) + ".")
    settings = await service.chat_settings(ctx.chat)
    when = f"{settings.delivery_time:%H:%M} {settings.timezone}"
    return Reply.of(
        done,
        p(
            f"Your digest arrives daily at {when}. Change it with ",
            code("/settings time 08:00"),
            " and ",
            code("/settings timezone Europe/Berlin"),
            ".",
        ),
    )


async def _unsubscribe(service: Paperboy, ctx: Context, args: Args) -> Reply:
    if "feed" not in args:  # the digest's Unsubscribe button: which feed?
        subs = await service.subscriptions(ctx.chat)
        if not subs:
            return Reply.text("This chat follows no feed.", ephemeral=True)
        rows = [
            [Button(f"Unsubscribe {sub.feed}", command="unsubscribe", arg=sub.feed)]
            for sub in subs[:MAX_FEED_BUTTONS]
        ]
        blocks: list[Block] = [p("Which feed should this chat stop following?")]
        if len(subs) > MAX_FEED_BUTTONS:
            blocks.append(p("Or any of them: ", code("/unsubscribe <feed>")))
        return Reply([Message(blocks, rows)])
    feed = str(args["feed"])
    if await service.unsubscribe(ctx.chat, feed):
        return Reply.text(f"Unsubscribed from {feed}.")
    return Reply.text(
        f"This chat is not subscribed to {feed}. /subscriptions lists what it follows."
    )


async def _subscriptions(service: Paperboy, ctx: Context, args: Args) -> Reply:
    subs = await service.subscriptions(ctx.chat)
    if not subs:
        return Reply.of(
            p(
                "No subscriptions yet. Try ",
                code("/subscribe hf:trending"),
                " or ",
                code("/subscribe arxiv:cs.CL"),
                ".",
            )
        )
    settings = await service.chat_settings(ctx.chat)
    topics = await service.chat_topics(ctx.chat)
    return Reply.of(
        section("Subscriptions"),
        bullets(
            *(
                code(
                    " ".join([sub.describe(), *(f'topic:"{t}"' for t in topics.get(sub.feed, []))])
                )
                for sub in subs
            )
        ),
        p(cards.describe_settings(settings)),
    )


async def _settings(service: Paperboy, ctx: Context, args: Args) -> Reply:
    settings = await service.chat_settings(ctx.chat)
    key = args.get("key")
    if key is None:
        examples = ["time 08:30", "timezone America/New_York", "count 5", "format full"]
        examples += ["days mon-fri", "explain on"]
        changes = joined((code(f"/settings {example}") for example in examples), ", ")
        return Reply.of(
            section("Settings"),
            p(cards.describe_settings(settings)),
            await settings_summary(service, ctx),
            p("Change one: ", *changes, "."),
        )
    require_admin(ctx)
    value = str(args.get("value", "")).strip()
    if key in LEARN_KEYS:  # what the ranking learns (bot/commands/learn.py)
        return await learn_setting(service, ctx, str(key), value)
    if not value:
        raise UsageError(f"Give a value: /settings {key} <value>.")
    apply_setting(settings, str(key), value)
    await service.save_chat_settings(settings)
    return Reply.text(f"Saved. {cards.describe_settings(settings)}")


CHAT_COMMANDS: tuple[Command, ...] = (
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
        "Delivery time, time zone, count, format, days, quality, cadence, topic, math lines, "
        "language",
        _settings,
        (
            Arg(
                "key",
                "time, timezone, count, format, days, quality, cadence, topic, forget, explain, "
                "language",
                kind="choice",
                required=False,
                choices=SETTING_KEYS,
            ),
            Arg("value", "the new value", required=False, rest=True),
        ),
        admin_only=True,
    ),
)
