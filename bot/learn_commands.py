"""The commands of issue 14: votes, the library, /train, /digest, learning settings.

Importing this module (bot.commands does, at its end) adds `LEARN_COMMANDS` to the command
table; bot.commands calls `learn_setting`,
`settings_summary` and `split_topics` from its /settings and /subscribe handlers.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

from bot import cards, learning
from bot.commands import COMMANDS, Arg, ArgValue, Command, Context, UsageError
from bot.digest import Round
from bot.doc import Bold, Code, Document, Message, Paragraph, Reply, Text
from bot.library import bibtex, matches
from bot.models import Paper
from bot.rank import features
from bot.rank.ranker import FLOORS, TOPIC_THRESHOLD, Day

TRAIN_COUNT = 5  # one row each of 💡, 👍 and 👎: within Discord's 5 rows of 5 buttons
LEARN_KEYS = ("quality", "cadence", "topic", "forget")
_TOPIC = re.compile(r"""(?:^|\s)topic:(?:"([^"]*)"|'([^']*)'|(\S+))""", re.IGNORECASE)
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def split_topics(text: str) -> tuple[list[str], str]:
    """`topic:"shape correspondence" diffusion` -> (['shape correspondence'], 'diffusion')."""
    topics = [" ".join((m[1] or m[2] or m[3] or "").split()) for m in _TOPIC.finditer(text)]
    topics = [t for t in topics if t]
    if any(len(t) > 200 for t in topics):
        raise UsageError("A topic is a few words (200 characters at most).")
    if len(topics) > 5:
        raise UsageError("Up to 5 topics per subscription, please.")
    return topics, _TOPIC.sub(" ", text).strip()


# ---------------------------------------------------------------------- votes


async def _vote(ctx: Context, args: dict[str, ArgValue], value: int) -> Reply:
    try:
        paper = await learning.vote(ctx.app, ctx.chat, ctx.user_id, str(args["id"]), value)
    except LookupError:
        return Reply.text(f"I couldn't find arXiv paper {args['id']}. Is the id right?")
    state = await ctx.app.store.get_learning(ctx.chat)
    mark = "👍" if value > 0 else "👎"
    return Reply.text(
        f"{mark} {cards._shorten(paper.title, 80)} — this chat's ranking has learned from "
        f"{state.model_votes} vote{'s' if state.model_votes != 1 else ''}.",
        ephemeral=True,
    )


async def _like(ctx: Context, args: dict[str, ArgValue]) -> Reply:
    return await _vote(ctx, args, 1)


async def _dislike(ctx: Context, args: dict[str, ArgValue]) -> Reply:
    return await _vote(ctx, args, -1)


# -------------------------------------------------------------------- library


async def _save(ctx: Context, args: dict[str, ArgValue]) -> Reply:
    paper = await ctx.app.paper(str(args["id"]))
    if paper is None:
        return Reply.text(f"I couldn't find arXiv paper {args['id']}. Is the id right?")
    new = await ctx.app.store.save_paper(ctx.chat, paper.id)
    title = cards._shorten(paper.title, 80)
    if not new:
        return Reply.text(f"💾 Already in this chat's library: {title}.", ephemeral=True)
    return Reply.text(f"💾 Saved: {title}. /saved lists the library.", ephemeral=True)


async def _unsave(ctx: Context, args: dict[str, ArgValue]) -> Reply:
    if await ctx.app.store.unsave_paper(ctx.chat, str(args["id"])):
        return Reply.text(f"Removed {args['id']} from this chat's library.")
    return Reply.text(f"{args['id']} is not in this chat's library.")


async def _saved_papers(ctx: Context) -> list[Paper]:
    saved = await ctx.app.store.saved_papers(ctx.chat)
    papers = await ctx.app.store.get_papers([p for p, _ in saved])
    return [papers[p] for p, _ in saved if p in papers]


async def _saved(ctx: Context, args: dict[str, ArgValue]) -> Reply:
    words = str(args.get("words", "")).strip()
    papers = await _saved_papers(ctx)
    if not papers:
        return Reply.text("This chat's library is empty. Save a paper with 💾 or /save <id>.")
    found = [p for p in papers if matches(p, words)] if words else papers
    if not found:
        return Reply.text(f"No saved paper matches “{words}”.")
    title = f"Saved papers matching “{words}”" if words else "Saved papers"
    return cards.paper_list(f"{title} ({len(found)})", found, limit=25)


async def _export(ctx: Context, args: dict[str, ArgValue]) -> Reply:
    papers = await _saved_papers(ctx)
    if not papers:
        return Reply.text("This chat's library is empty: nothing to export yet.")
    data = bibtex(papers).encode("utf-8")
    note = Paragraph(
        (
            Text(
                f"{len(papers)} saved paper{'s' if len(papers) != 1 else ''}"
                " as BibTeX, with arXiv DOIs."
            ),
        )
    )
    return Reply(
        [Message([note], document=Document("paperboy-library.bib", data, "application/x-bibtex"))]
    )


# ------------------------------------------------------------- train, digest


async def _train(ctx: Context, args: dict[str, ArgValue]) -> Reply:
    subs = await ctx.app.store.list_subscriptions(ctx.chat)
    if not subs:
        return Reply.text("Subscribe to a feed first (/subscribe arxiv:cs.LG), then /train.")
    rnd = Round(ctx.app, datetime.now(UTC))
    await rnd.prefetch(s.feed for s in subs)
    best = rnd.ranked(subs)
    if not best:
        return Reply.text("Your feeds have no papers today to train on. Try again tomorrow.")
    voted = {v.paper_id for v in await ctx.app.store.chat_votes(ctx.chat)}
    space = await features.space()
    day = await asyncio.to_thread(Day, space, best)  # vectors: CPU, off the loop
    picks = [p for _, p in day.explore(TRAIN_COUNT, voted)]
    if not picks:
        return Reply.text("You have rated every paper of today's feeds already. Thanks!")
    reply = cards.paper_list(
        "🎯 Rate these: 👍 what you want more of, 👎 what you don't",
        picks,
        limit=TRAIN_COUNT,
        votes=True,
    )
    reply.messages.append(
        Message(
            [
                Paragraph(
                    (
                        Text("Each tap teaches this chat's digest. "),
                        Code("/settings"),
                        Text(" shows how many votes it has learned from."),
                    )
                )
            ]
        )
    )
    return reply


async def _digest(ctx: Context, args: dict[str, ArgValue]) -> Reply:
    subs = await ctx.app.store.list_subscriptions(ctx.chat)
    if not subs:
        return Reply.text("This chat follows no feed yet. Try /subscribe arxiv:cs.LG.")
    settings = await ctx.app.chat_settings(ctx.chat)
    messages = await learning.preview(ctx.app, settings, subs, datetime.now(UTC))
    if not messages:
        return Reply.text(
            "Nothing new for this chat right now: no paper passes its feeds, "
            "filters and quality floor that it has not received already."
        )
    return Reply(messages)


# ------------------------------------------------------------------- settings


async def settings_summary(ctx: Context) -> Paragraph:
    state = await ctx.app.store.get_learning(ctx.chat)
    topics = await ctx.app.store.chat_topics(ctx.chat)
    threshold = state.topic_threshold or TOPIC_THRESHOLD
    cadence = f"weekly on {_DAYS[state.weekly_day]}" if state.cadence == "weekly" else "daily"
    text = (
        f"Ranking: learned from {state.model_votes} vote{'s' if state.model_votes != 1 else ''}"
        f"; quality {state.quality}; cadence {cadence}"
    )
    if topics:
        text += f"; topic threshold {threshold:.2f}"
    return Paragraph((Text(text + "."),))


async def learn_setting(ctx: Context, key: str, value: str) -> Reply:
    store = ctx.app.store
    if key == "forget":
        deleted = await store.forget_learning(ctx.chat)
        return Reply.text(
            f"Forgotten: {deleted} vote{'s' if deleted != 1 else ''} and the model learned from "
            "them. Topics, settings and saved papers stay (/unsubscribe, /unsave remove them)."
        )
    state = await store.get_learning(ctx.chat)
    words = value.lower().split()
    if not words:
        raise UsageError(f"Give a value: /settings {key} <value>.")
    if key == "quality":
        if words[0] not in FLOORS:
            raise UsageError("Quality is strict, normal or all.")
        state.quality = words[0]  # type: ignore[assignment]
    elif key == "cadence":
        if words[0] not in ("daily", "weekly"):
            raise UsageError("Cadence is daily or weekly (optionally a day: weekly fri).")
        state.cadence = words[0]  # type: ignore[assignment]
        if len(words) > 1:
            if words[1][:3] not in _DAYS:
                raise UsageError("The weekly day is one of mon, tue, wed, thu, fri, sat, sun.")
            state.weekly_day = _DAYS.index(words[1][:3])
    elif key == "topic":
        named = {"loose": 0.2, "normal": TOPIC_THRESHOLD, "strict": 0.4}
        try:
            threshold = named[words[0]] if words[0] in named else float(words[0])
        except ValueError:
            raise UsageError("Topic threshold is loose, normal, strict or 0.05–0.9.") from None
        if not 0.05 <= threshold <= 0.9:
            raise UsageError("Topic threshold is loose, normal, strict or 0.05–0.9.")
        state.topic_threshold = threshold
    await store.save_learning(ctx.chat, state)
    return Reply.of(Paragraph((Bold((Text("Saved."),)),)), await settings_summary(ctx))


_ID = Arg("id", "an arXiv id or link, e.g. 1706.03762", kind="paper")

LEARN_COMMANDS: tuple[Command, ...] = (
    # Not `slow`: a vote answers at once (a toast on Telegram, a private note on Discord).
    Command("like", "👍 More papers like this one", _like, (_ID,)),
    Command("dislike", "👎 Fewer papers like this one", _dislike, (_ID,)),
    Command("save", "💾 Save a paper to this chat's library", _save, (_ID,)),
    Command("unsave", "Remove a paper from the library", _unsave, (_ID,)),
    Command(
        "saved",
        "This chat's saved papers, or those matching words",
        _saved,
        (Arg("words", "words to search for", required=False, rest=True),),
    ),
    Command(
        "export",
        "Export the saved papers (BibTeX)",
        _export,
        (Arg("format", "bibtex", kind="choice", choices=("bibtex",)),),
        examples=("/export bibtex",),
    ),
    Command("train", "Rate a few papers so your digest learns", _train, slow=True),
    Command("digest", "This chat's digest right now (a preview)", _digest, slow=True),
)

COMMANDS.update((cmd.name, cmd) for cmd in LEARN_COMMANDS)
