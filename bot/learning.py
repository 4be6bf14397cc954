"""Feedback and per-chat learning, wired to the store and the digest (issue 14).

Votes come in from commands, buttons and reactions (`vote`), and refit the chat's model
(`refit`, the CPU part in a thread). A delivery round asks `lessons` once per batch of due
chats; a chat with a model, topics, a quality floor or a weekly cadence gets its digest from
`Lesson.digest`, every other chat keeps the round's shared one. `/digest` previews either
through `preview`, the very same code, without marking anything delivered.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from bot.digest import Round, base_id, candidates, digest_title, rank, render_digest
from bot.doc import Message
from bot.models import ChatRef, ChatSettings, Paper, Subscription
from bot.rank import features
from bot.rank.features import Space
from bot.rank.model import IGNORED_WEIGHT, Example, Model, fit, recency
from bot.rank.ranker import Day, Profile, Ranked, Topic, topic
from bot.schedule import local_date
from bot.serialize import message_from_json, message_to_json
from bot.service import Paperboy, feed_day
from bot.sources import hf
from bot.sources.base import FeedFetch, SourceError
from bot.store.learning import LearnState

log = logging.getLogger(__name__)

MAX_LIKED = 5  # liked papers kept with the model, for "close to <title> you liked"
IGNORED_WINDOW = 200  # latest deliveries looked at for ignored papers
WEEK = 7


# ------------------------------------------------------------------- feedback


async def vote(app: Paperboy, chat: ChatRef, user_id: str, paper_id: str, value: int) -> Paper:
    """Record a member's vote (+1, -1, 0 to take back) and refit the chat's model.
    Raises LookupError for a paper arXiv does not know."""
    paper = await app.paper(paper_id)  # stored with its metadata: training and BibTeX need it
    if paper is None:
        raise LookupError(paper_id)
    await app.store.set_vote(chat, user_id, paper.id, value)
    await refit(app, chat)
    return paper


# Reactions on a one-paper message. Telegram offers no 💾 reaction: ✍ saves there.
LIKES = frozenset({"👍", "❤", "🔥"})
DISLIKES = frozenset({"👎", "💩"})
SAVES = frozenset({"💾", "✍"})
_MODIFIERS = dict.fromkeys([0xFE0F, *range(0x1F3FB, 0x1F400)])  # variation, skin tones


def _emoji(text: str) -> str:
    return text.translate(_MODIFIERS)


async def react(
    app: Paperboy,
    chat: ChatRef,
    user_id: str,
    message_id: str,
    added: set[str],
    removed: set[str] = frozenset(),  # type: ignore[assignment]
) -> str | None:
    """A member's reactions on one of our messages changed: vote (or take the vote back) on
    the message's paper, save it on 💾/✍. Returns the paper, or None when the message is not
    about one paper or the reactions mean nothing here."""
    added = {_emoji(e) for e in added}
    removed = {_emoji(e) for e in removed}
    if not (added | removed) & (LIKES | DISLIKES | SAVES):
        return None
    paper = await app.store.message_paper(chat, message_id)
    if paper is None:
        return None
    if added & SAVES:
        await app.store.save_paper(chat, paper)
    if added & LIKES:
        await vote(app, chat, user_id, paper, 1)
    elif added & DISLIKES:
        await vote(app, chat, user_id, paper, -1)
    elif removed & (LIKES | DISLIKES):
        await vote(app, chat, user_id, paper, 0)
    return paper


async def refit(app: Paperboy, chat: ChatRef, now: datetime | None = None) -> int:
    """Fit the chat's model on its votes (+ ignored deliveries) and store it; returns how
    many votes it learned from."""
    now = now or datetime.now(UTC)
    store = app.store
    votes = await store.chat_votes(chat)
    voted = {v.paper_id for v in votes}
    ignored = [
        (p, at) for p, at in await store.recent_delivered(chat, IGNORED_WINDOW) if p not in voted
    ]
    papers = await store.get_papers([v.paper_id for v in votes] + [p for p, _ in ignored])
    space = await features.space()
    labelled = [
        (papers[v.paper_id], 1 if v.value > 0 else 0, _age(now, v.voted_at))
        for v in votes
        if v.paper_id in papers
    ]
    weak = [(papers[p], 0, _age(now, at)) for p, at in ignored if p in papers]
    model = await asyncio.to_thread(_fit, space, labelled, weak) if labelled else None
    state = await store.get_learning(chat)
    state.model = model.to_bytes() if model is not None else None
    state.model_votes = len(labelled)
    await store.save_learning(chat, state)
    return len(labelled)


def _age(now: datetime, then: datetime) -> float:
    return (now - then).total_seconds() / 86400


def _fit(
    space: Space,
    voted: Sequence[tuple[Paper, int, float]],
    ignored: Sequence[tuple[Paper, int, float]],
) -> Model | None:
    _, vectors = space.papers([p for p, _, _ in (*voted, *ignored)])
    examples = [
        Example(v, label, recency(age) * (1.0 if i < len(voted) else IGNORED_WEIGHT))
        for i, ((_, label, age), v) in enumerate(zip((*voted, *ignored), vectors, strict=True))
    ]
    model = fit(examples, space.background)
    if model is None:
        return None
    liked = [(p.title, v) for (p, label, _), v in zip(voted, vectors, strict=False) if label]
    return replace(model, liked=tuple(liked[:MAX_LIKED]))


# ---------------------------------------------------------------- the digest


@dataclass(slots=True)
class Lesson:
    """One chat's learning, for a delivery round or a preview."""

    chat: ChatRef
    state: LearnState
    profile: Profile
    topics: dict[str, list[str]] = field(default_factory=dict)

    async def digest(
        self,
        rnd: Round,
        settings: ChatSettings,
        subs: Sequence[Subscription],
        best: Sequence[tuple[str, Paper]],
        delivered: set[str],
        *,
        preview: bool = False,
    ) -> tuple[list[str], list[str]]:
        """(outbox bodies, base ids) of this chat's digest, like `Round.digest`; a weekly
        chat gets one only on its day, once (a preview shows it any day)."""
        title = digest_title(settings, rnd.now)
        if self.state.cadence == "weekly":
            today = local_date(settings, rnd.now)
            if not preview and (
                today.weekday() != self.state.weekly_day or self.state.last_weekly == today
            ):
                return [], []
            best, fetches = await week_ranking(rnd, subs)
            delivered = await rnd.app.store.delivered_ids(settings.chat, [k for k, _ in best])
            title = f"🗓 Your week's best papers, to {today:%a} {today.day} {today:%b %Y}"
            if not preview:
                self.state.last_weekly = today
                await rnd.app.store.save_learning(settings.chat, self.state)
        else:
            fetches = rnd.feeds
        day = await _day(rnd, subs, best, fetches)
        chosen = day.rank(self.profile, settings.count, delivered)
        if not chosen:
            return [], []
        papers = [r.paper for r in chosen]
        if settings.explain:  # lines already fetched this round; the others start now
            await rnd.load_lines(papers, wait=False)
        messages = render_digest(settings, papers, title, _notes(chosen), lines=rnd.lines)
        return [message_to_json(m) for m in messages], [base_id(r.paper.id) for r in chosen]


def _notes(chosen: Sequence[Ranked]) -> list[str]:
    return [r.why for r in chosen]


# Per round: the vectors of each distinct candidate list, shared by every chat ranking it.
_days: weakref.WeakKeyDictionary[Round, dict[int, tuple[Sequence[object], Day]]] = (
    weakref.WeakKeyDictionary()
)


async def _day(
    rnd: Round,
    subs: Sequence[Subscription],
    best: Sequence[tuple[str, Paper]],
    fetches: Mapping[str, FeedFetch | None],
) -> Day:
    cache = _days.setdefault(rnd, {})
    found = cache.get(id(best))
    if found is not None and found[0] is best:
        return found[1]
    origins: dict[str, list[str]] = {}
    for sub in subs:
        fetch = fetches.get(sub.feed)
        for paper in fetch.papers if fetch else ():
            if sub.matches(paper):
                origins.setdefault(base_id(paper.id), []).append(sub.feed)
    space = await features.space()
    day = await asyncio.to_thread(Day, space, best, origins)  # vectors: CPU, off the loop
    cache[id(best)] = (best, day)  # `best` kept alive with it, so its id stays its own
    return day


async def week_ranking(
    rnd: Round, subs: Sequence[Subscription]
) -> tuple[list[tuple[str, Paper]], dict[str, FeedFetch | None]]:
    """Everything the chat's feeds announced over the last seven days, from the store only
    (no upstream request), ranked as one day would be; and the week's fetches by feed."""
    store = rnd.app.store
    fetches: dict[str, FeedFetch | None] = {}
    for feed in dict.fromkeys(s.feed for s in subs):
        last = feed_day(feed, rnd.now)
        ids: list[str] = []
        announced = None
        for back in range(WEEK):
            stored = await store.load_feed(feed, last - timedelta(days=back))
            if stored is not None and stored[0] is not None:
                announced = announced or stored[0]
                ids += stored[1]
        papers = await store.get_papers(list(dict.fromkeys(ids)))
        listed = [papers[i] for i in dict.fromkeys(ids) if i in papers]
        if feed.startswith("hf:"):
            listed += await _hf_week(rnd, {p.id for p in listed})
        for paper in listed:
            paper.announce_type = paper.announce_type or "new"
        fetches[feed] = FeedFetch(listed, announced)
    return rank(candidates(fetches, subs) or {}), fetches


async def _hf_week(rnd: Round, known: set[str]) -> list[Paper]:
    """Hugging Face's list of the week's papers, beyond the days stored: fetched once a day
    for every weekly chat (a stored feed day), and left out if Hugging Face fails."""
    try:
        week = await rnd.app.feed(f"hf:{hf.WEEKLY}", background=True)
    except SourceError as e:
        log.warning("weekly digests: Hugging Face's weekly list is unavailable (%s)", e)
        return []
    return [p for p in week.papers if p.id not in known]


async def lessons(app: Paperboy, chats: Sequence[ChatRef]) -> dict[ChatRef, Lesson]:
    """The chats of a round that learned something or chose a learning setting."""
    found = await app.store.learning_among(chats)
    if not found:
        return {}
    space = await features.space()
    out: dict[ChatRef, Lesson] = {}
    for chat, (state, topics) in found.items():
        lesson = make_lesson(space, chat, state, topics)
        if lesson.profile.personal or state.cadence == "weekly" or state.quality != "normal":
            out[chat] = lesson
    return out


def make_lesson(
    space: Space, chat: ChatRef, state: LearnState, topics: dict[str, list[str]]
) -> Lesson:
    model = Model.from_bytes(state.model, space.basis.shape[1]) if state.model else None
    vectors: dict[str, list[Topic]] = {
        feed: [topic(space, t) for t in words] for feed, words in topics.items()
    }
    profile = Profile(model=model, topics=vectors, quality=state.quality)
    if state.topic_threshold is not None:
        profile.topic_threshold = state.topic_threshold
    return Lesson(chat, state, profile, topics)


async def preview(
    app: Paperboy, settings: ChatSettings, subs: Sequence[Subscription], now: datetime
) -> list[Message]:
    """The chat's digest right now, exactly as a delivery round would build it; nothing
    is marked delivered."""
    rnd = Round(app, now)
    await rnd.prefetch(s.feed for s in subs)
    best = rnd.ranked(subs)
    if best is None:
        return []
    lesson = (await lessons(app, [settings.chat])).get(settings.chat)
    delivered = await app.store.delivered_ids(settings.chat, [k for k, _ in best])
    if lesson is not None:
        bodies, _ = await lesson.digest(rnd, settings, subs, best, delivered, preview=True)
    else:
        bodies, _ = rnd.digest(settings, best, delivered)
    return [message_from_json(b) for b in bodies]
