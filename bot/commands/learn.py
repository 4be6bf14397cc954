"""The commands of issue 14: votes, the library, /train, /digest, learning settings.

/settings (bot/commands/chats.py) hands the keys in `LEARN_KEYS` to `learn_setting` and
shows `settings_summary`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from bot import cards, learning
from bot.commands.base import PAPER_ID, Arg, Args, Command, Context, UsageError
from bot.digest import Round
from bot.doc import Document, Message, Paragraph, Reply, b, code, p
from bot.library import bibtex, matches
from bot.rank import features
from bot.rank.ranker import FLOORS, TOPIC_THRESHOLD, Day
from bot.service import Paperboy

TRAIN_COUNT = 5  # one row each of 💡, 👍 and 👎: within Discord's 5 rows of 5 buttons
LEARN_KEYS = ("quality", "cadence", "topic", "forget")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


# ---------------------------------------------------------------------- votes


async def _vote(service: Paperboy, ctx: Context, args: Args, value: int) -> Reply:
    try:
        paper = await learning.vote(service, ctx.chat, ctx.user_id, str(args["id"]), value)
    except LookupError:
        return Reply.text(f"I couldn't find arXiv paper {args['id']}. Is the id right?")
    state = await service.learning(ctx.chat)
    mark = "👍" if value > 0 else "👎"
    return Reply.text(
        f"{mark} {cards.shorten(paper.title, 80)} — this chat's ranking has learned from "
        f"{state.model_votes} vote{'s' if state.model_votes != 1 else ''}.",
        ephemeral=True,
    )


async def _like(service: Paperboy, ctx: Context, args: Args) -> Reply:
    return await _vote(service, ctx, args, 1)


async def _dislike(service: Paperboy, ctx: Context, args: Args) -> Reply:
    return await _vote(service, ctx, args, -1)


# -------------------------------------------------------------------- library


async def _save(service: Paperboy, ctx: Context, args: Args) -> Reply:
    paper = await service.paper_or_reply(str(args["id"]))
    if isinstance(paper, Reply):
        return paper
    new = await service.save_paper(ctx.chat, paper.id)
    title = cards.shorten(paper.title, 80)
    if not new:
        return Reply.text(f"💾 Already in this chat's library: {title}.", ephemeral=True)
    return Reply.text(f"💾 Saved: {title}. /saved lists the library.", ephemeral=True)


async def _unsave(service: Paperboy, ctx: Context, args: Args) -> Reply:
    if await service.unsave_paper(ctx.chat, str(args["id"])):
        return Reply.text(f"Removed {args['id']} from this chat's library.")
    return Reply.text(f"{args['id']} is not in this chat's library.")


async def _saved(service: Paperboy, ctx: Context, args: Args) -> Reply:
    words = str(args.get("words", "")).strip()
    papers = await service.saved_papers(ctx.chat)
    if not papers:
        return Reply.text("This chat's library is empty. Save a paper with 💾 or /save <id>.")
    found = [paper for paper in papers if matches(paper, words)] if words else papers
    if not found:
        return Reply.text(f"No saved paper matches “{words}”.")
    title = f"Saved papers matching “{words}”" if words else "Saved papers"
    return cards.paper_list(f"{title} ({len(found)})", found, limit=25)


async def _export(service: Paperboy, ctx: Context, args: Args) -> Reply:
    papers = await service.saved_papers(ctx.chat)
    if not papers:
        return Reply.text("This chat's library is empty: nothing to export yet.")
    data = bibtex(papers).encode("utf-8")
    note = p(
        f"{len(papers)} saved paper{'s' if len(papers) != 1 else ''} as BibTeX, with arXiv DOIs."
    )
    return Reply(
        [Message([note], document=Document("paperboy-library.bib", data, "application/x-bibtex"))]
    )


# ------------------------------------------------------------- train, digest


async def _train(service: Paperboy, ctx: Context, args: Args) -> Reply:
    subs = await service.subscriptions(ctx.chat)
    if not subs:
        return Reply.text("Subscribe to a feed first (/subscribe arxiv:cs.LG), then /train.")
    rnd = Round(service, datetime.now(UTC))
    await rnd.prefetch(s.feed for s in subs)
    best = rnd.ranked(subs)
    if not best:
        return Reply.text("Your feeds have no papers today to train on. Try again tomorrow.")
    voted = await service.voted_papers(ctx.chat)
    space = await features.space()
    day = await asyncio.to_thread(Day, space, best)  # vectors: CPU, off the loop
    picks = [paper for _, paper in day.explore(TRAIN_COUNT, voted)]
    if not picks:
        return Reply.text("You have rated every paper of today's feeds already. Thanks!")
    reply = cards.paper_list(
        "🎯 Rate these: 👍 what you want more of, 👎 what you don't",
        picks,
        limit=TRAIN_COUNT,
        votes=True,
    )
    teach = p(
        "Each tap teaches this chat's digest. ",
        code("/settings"),
        " shows how many votes it has learned from.",
    )
    reply.messages.append(Message([teach]))
    return reply


async def _digest(service: Paperboy, ctx: Context, args: Args) -> Reply:
    subs = await service.subscriptions(ctx.chat)
    if not subs:
        return Reply.text("This chat follows no feed yet. Try /subscribe arxiv:cs.LG.")
    settings = await service.chat_settings(ctx.chat)
    messages = await learning.preview(service, settings, subs, datetime.now(UTC))
    if not messages:
        return Reply.text(
            "Nothing new for this chat right now: no paper passes its feeds, "
            "filters and quality floor that it has not received already."
        )
    return Reply(messages)


# ------------------------------------------------------------------- settings


async def settings_summary(service: Paperboy, ctx: Context) -> Paragraph:
    state = await service.learning(ctx.chat)
    topics = await service.chat_topics(ctx.chat)
    threshold = state.topic_threshold or TOPIC_THRESHOLD
    cadence = f"weekly on {_DAYS[state.weekly_day]}" if state.cadence == "weekly" else "daily"
    text = (
        f"Ranking: learned from {state.model_votes} vote{'s' if state.model_votes != 1 else ''}"
        f"; quality {state.quality}; cadence {cadence}"
    )
    if topics:
        text += f"; topic threshold {threshold:.2f}"
    return p(text + ".")


async def learn_setting(service: Paperboy, ctx: Context, key: str, value: str) -> Reply:
    if key == "forget":
        deleted = await service.forget_learning(ctx.chat)
        return Reply.text(
            f"Forgotten: {deleted} vote{'s' if deleted != 1 else ''} and the model learned from "
            "them. Topics, settings and saved papers stay (/unsubscribe, /unsave remove them)."
        )
    state = await service.learning(ctx.chat)
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
    await service.save_learning(ctx.chat, state)
    return Reply.of(p(b("Saved.")), await settings_summary(service, ctx))


LEARN_COMMANDS: tuple[Command, ...] = (
    # Not `slow`: a vote answers at once (a toast on Telegram, a private note on Discord).
    Command("like", "👍 More papers like this one", _like, (PAPER_ID,)),
    Command("dislike", "👎 Fewer papers like this one", _dislike, (PAPER_ID,)),
    Command("save", "💾 Save a paper to this chat's library", _save, (PAPER_ID,)),
    Command("unsave", "Remove a paper from the library", _unsave, (PAPER_ID,)),
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
