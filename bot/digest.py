"""A chat's digest: every subscription merged, de-duplicated, ranked, capped, rendered.

A `Round` remembers each feed it fetched, so one scheduler round asks each feed once
however many chats follow it (and Paperboy.feed stores it, so later rounds that day
read the store instead of the upstream).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from operator import itemgetter
from typing import TYPE_CHECKING

from bot import cards
from bot.doc import Button, Heading, Message, Text
from bot.models import ChatSettings, Paper, Subscription, filter_key
from bot.models import _word_in as word_in
from bot.rank.ranker import plain_reason
from bot.schedule import local_date, next_run
from bot.serialize import (
    block_to_json,
    button_to_json,
    item_to_json,
    list_message_rest,
    list_message_to_json,
    message_to_json,
)
from bot.service import Paperboy, feed_day, merge_hf
from bot.sources.base import FeedFetch, SourceError

if TYPE_CHECKING:
    from bot.explain.digest_line import DigestLine

log = logging.getLogger(__name__)


_VERSION = re.compile(r"v\d+$")


def base_id(paper_id: str) -> str:
    """The versionless id: 2401.00001v3 and 2401.00001 are one paper."""
    return _VERSION.sub("", paper_id)


# Rankings and rendered digests kept between batches of a round, at most: a realistic
# mix of filters makes tens of thousands of distinct ones, most of them seen once.
ROUND_MEMORY = 2000


class Round:
    """One scheduler round: feeds fetched at most once, digests rendered once per content."""

    def __init__(self, app: Paperboy, now: datetime) -> None:
        self.app = app
        self.now = now
        self.feeds: dict[str, FeedFetch | None] = {}  # None: the feed failed this round
        self._rendered: dict[tuple[object, ...], tuple[list[str], list[str]]] = {}
        self._titles: dict[str, str] = {}  # by timezone: the local date names the digest
        self._headings: dict[str, str] = {}  # a title's heading block, encoded
        self._next_runs: dict[tuple[object, ...], datetime] = {}
        self._fresh: dict[tuple[object, ...], tuple[list[str], list[str]]] = {}
        self._ranked: dict[tuple[object, ...], list[tuple[str, Paper]] | None] = {}
        self._tops: dict[tuple[object, ...], list[tuple[str, Paper]] | None] = {}
        self.shared = Shared()
        self.anyone_learning: bool | None = None  # asked of the store once a round
        self.lines: dict[str, DigestLine] = {}  # math lines ready this round, by paper id
        # By id: the round's papers (in `feeds` and `shared`) live as long as it does.
        self._items: dict[int, str] = {}
        self._cards: dict[tuple[int, int, bool], str] = {}
        self._buttons: dict[Button, str] = {}
        self._layouts: dict[int, list[list[Button]]] = {}  # digest rows by paper count
        self._numbers: dict[tuple[str, int, int], dict[str | None, str]] = {}
        self._lists: dict[tuple[int, ...], str] = {}  # a compact digest after its heading

    async def load_lines(self, papers: Iterable[Paper], *, wait: bool = True) -> None:
        """Math lines for chats with `explain` on: fetched (bounded, waited on briefly, or
        not at all with `wait=False`) by the app's one cache; papers whose line is not
        ready get none in this round, and theirs is fetched for the next."""
        if self.app.math_lines is not None:
            ready = await self.app.math_lines.prepare(papers, wait=None if wait else 0.0)
            self.lines.update(ready)

    async def feed(self, feed: str) -> FeedFetch | None:
        if feed not in self.feeds:
            try:
                fetch = await self.app.feed(feed, feed_day(feed, self.now), background=True)
                self.feeds[feed] = fetch
            except (SourceError, ValueError) as e:  # one broken feed must not stop the round
                log.warning("feed %s unavailable this round: %s", feed, e)
                self.feeds[feed] = None
        return self.feeds[feed]

    async def prefetch(self, feeds: Iterable[str]) -> None:
        # All at once: arXiv's gate spaces the requests, and a slow feed must not hold
        # up the others (most rounds find every feed already stored anyway).
        await asyncio.gather(*(self.feed(feed) for feed in dict.fromkeys(feeds)))

    def ranked(self, subs: Sequence[Subscription]) -> list[tuple[str, Paper]] | None:
        """`rank(candidates(...))` for these subscriptions, shared by every chat with the
        same feeds and filters; None if every feed failed. Call `prefetch` first."""
        key = tuple(map(filter_key, subs))
        if key not in self._ranked:
            self._ranked[key] = self._rank(subs)
        return self._ranked[key]

    def top(
        self,
        subs: Sequence[Subscription],
        count: int,
        filters: Hashable | None = None,
    ) -> list[tuple[str, Paper]] | None:
        """`ranked(subs)[:count]`, what a chat that has received none of these papers gets,
        shared like `ranked` but without ranking the rest: most chats need no more.
        `filters`: what equals `tuple(map(filter_key, subs))`, when the caller has it (a
        round's DueChat.mix, hashed once)."""
        key = (tuple(map(filter_key, subs)) if filters is None else filters, count)
        found = self._tops.get(key, _NOT_YET)
        if found is _NOT_YET:
            found = self._tops[key] = self._top(subs, count)
        return found  # type: ignore[return-value]

    def _top(self, subs: Sequence[Subscription], count: int) -> list[tuple[str, Paper]] | None:
        picks = self._picks(subs)
        if picks is None:
            return None
        if len(picks) == 1 and picks[0].distinct:
            return picks[0].ranked[:count]
        if not _apart(picks):
            best = self.ranked(subs) or []  # a paper picked twice: the full ranking
            return best[:count]
        # An item past a list's first `count` has `count` items of its own list before it
        # in `_rank`'s stable sort, so the first `count` of each list are enough.
        hits = [hit for pick in picks for hit in pick.ordered[:count]]
        hits.sort(key=_first)
        return [pair for _, pair in hits[:count]]

    def candidate_ids(self, feeds: Iterable[str]) -> list[str]:
        """Every base id these feeds announced this round: all that any ranking of them
        can hold (asked which of them chats already received)."""
        ids: set[str] = set()
        for feed in feeds:
            fetch = self.feeds.get(feed)
            if fetch is not None and fetch.announced is not None:
                ids.update(hit[0] for hit in self.shared.every(feed, fetch)[0])
        return sorted(ids)

    def _picks(self, subs: Sequence[Subscription]) -> list[Picks] | None:
        """Each subscription's keyed hits (none for a feed without an announcement); None
        if every feed failed."""
        picks: list[Picks] = []
        failed = 0
        for sub in subs:
            fetch = self.feeds.get(sub.feed)
            if fetch is None:
                failed += 1
            elif fetch.announced is not None:  # no announcement: nothing to add
                picks.append(self.shared.keyed(fetch, sub))
        if subs and failed == len(subs):
            return None
        return picks

    def _rank(self, subs: Sequence[Subscription]) -> list[tuple[str, Paper]] | None:
        """`rank(candidates(...))` without a candidate per paper: each subscription's hits
        carry their sort key, worked out once a round; only papers that several of them
        pick (merged, counted twice) get theirs again. Sorting the hits concatenated in
        subscription order is stable, so ties fall as `rank`'s insertion order does."""
        picks = self._picks(subs)
        if picks is None:
            return None
        if len(picks) == 1 and picks[0].distinct:
            return picks[0].ranked
        if _apart(picks):
            # Each list already sorted: the stable sort merges the runs, ties to the first.
            hits = [hit for pick in picks for hit in pick.ordered]
        else:
            hits = self._merged([pick.hits for pick in picks])
        hits.sort(key=_first)
        return [pair for _, pair in hits]  # the round's own pairs: no new object per paper

    def _merged(self, lists: list[list[_Keyed]]) -> list[_Keyed]:
        """The hits with each paper picked more than once merged into one candidate, at
        its first place, keyed as `rank` keys it."""
        counts = Counter(hit[1][0] for found in lists for hit in found)
        out: list[_Keyed] = []
        merged: dict[str, tuple[int, _Candidate]] = {}
        for found in lists:
            for hit in found:
                key, paper = hit[1]
                if counts[key] == 1:
                    out.append(hit)
                    continue
                position, fresh = int(hit[0][4]), hit[0][2] == 0  # as `keyed` keyed it
                if key not in merged:
                    merged[key] = (len(out), _Candidate(paper, position=position))
                    out.append(hit)  # its place, re-keyed below
                else:
                    cand = merged[key][1]
                    cand.paper = self.shared.merge(cand.paper, paper)
                    cand.position = min(cand.position, position)
                cand = merged[key][1]
                cand.matches += 1
                cand.fresh = cand.fresh or fresh
        for key, (at, cand) in merged.items():
            out[at] = (_rank_key(cand), (key, cand.paper))
        return out

    def trim(self) -> None:
        """Between batches: forget rankings and digests once there are many (memory stays
        flat for any number of chats; the common ones are worked out again once).
        Together, so an id in `_fresh` never outlives the ranking it names. (Keeping the
        rankings longer than the digests saved 4% of a realistic round's CPU for 30% more
        memory: not worth it.)"""
        if max(len(self._ranked), len(self._tops), len(self._rendered)) > ROUND_MEMORY:
            self._ranked.clear()
            self._tops.clear()
            self._fresh.clear()
            self._rendered.clear()
            self._lists.clear()

    def next_run(self, settings: ChatSettings) -> datetime:
        """`schedule.next_run` after this round, once per distinct schedule."""
        key = (settings.timezone, settings.delivery_time, settings.weekdays)
        at = self._next_runs.get(key)
        if at is None:
            at = self._next_runs[key] = next_run(settings, self.now)
        return at

    def digest(
        self, settings: ChatSettings, best: list[tuple[str, Paper]], delivered: set[str]
    ) -> tuple[list[str], list[str]]:
        """`rendered(unseen(...))` for a chat ranked `best` (from `ranked`); ([], []) when
        nothing is new. Chats that received none of these papers yet (most, on most days)
        share one answer per ranking, count, format and zone."""
        if delivered:
            papers = unseen(best, delivered, settings.count)
            return self.rendered(settings, papers) if papers else ([], [])
        # `best` lives in self._ranked until `trim` clears both: its id stays its own.
        key = (id(best), settings.count, settings.format, settings.timezone, settings.explain)
        done = self._fresh.get(key)
        if done is None:
            papers = unseen(best, delivered, settings.count)
            done = self._fresh[key] = self.rendered(settings, papers) if papers else ([], [])
        return done

    def fresh(
        self, settings: ChatSettings, top: list[tuple[str, Paper]]
    ) -> tuple[list[str], list[str]]:
        """`digest(settings, ranked, set())` from `top(subs, settings.count)`, shared by
        every chat with the same top papers, format, zone and math lines."""
        # `top` lives in self._tops until `trim` clears both: its id stays its own.
        key = (id(top), settings.format, settings.timezone, settings.explain)
        done = self._fresh.get(key)
        if done is None:
            papers = [paper for _, paper in top]
            done = self._fresh[key] = self.rendered(settings, papers) if papers else ([], [])
        return done

    def rendered(
        self, settings: ChatSettings, papers: Sequence[Paper]
    ) -> tuple[list[str], list[str]]:
        """The digest's messages as outbox JSON, and its papers' base ids. Chats with the
        same papers share the work, and the very same strings (the outbox stores each
        distinct body once)."""
        title = self._titles.get(settings.timezone)
        if title is None:
            title = self._titles[settings.timezone] = digest_title(settings, self.now)
        # By the papers themselves, not their ids: the same id merged from other feeds
        # can differ (HF upvotes, a newer version). Feed papers and merged ones live for
        # the whole round (in `feeds` and `shared`), so their ids stay their own.
        papers_key = tuple(map(id, papers))
        if settings.explain:  # math lines: the few chats who asked, the plain way
            lines = {p.id: self.lines[p.id] for p in papers if p.id in self.lines}
            key: tuple[object, ...] = (settings.format, title, papers_key, tuple(lines))
            done = self._rendered.get(key)
            if done is None:
                messages = render_digest(settings, papers, title, lines=lines)
                bodies = [message_to_json(m) for m in messages]
                done = self._rendered[key] = (bodies, [base_id(p.id) for p in papers])
            return done
        full = settings.format == "full"
        key = (settings.format, "" if full else title, papers_key)  # cards name no date
        done = self._rendered.get(key)
        if done is None:
            if full:
                last = len(papers)
                bodies = [self._card(p, i, i == last) for i, p in enumerate(papers, 1)]
            else:
                rest = self._lists.get(papers_key)
                if rest is None:
                    rest = self._lists[papers_key] = list_message_rest(
                        [self._item(p) for p in papers], self._rows(papers)
                    )
                heading = self._headings.get(title)
                if heading is None:
                    heading = self._headings[title] = block_to_json(Heading((Text(title),)))
                bodies = [list_message_to_json(heading, rest)]
            done = self._rendered[key] = (bodies, [base_id(p.id) for p in papers])
        return done

    # `render_digest`'s messages from pieces each encoded once a round: a paper's list
    # item, its numbered card, a button (tests hold the two ways byte-identical).

    def _item(self, paper: Paper) -> str:
        done = self._items.get(id(paper))
        if done is None:
            item = cards.list_item(paper, plain_reason(paper))
            done = self._items[id(paper)] = item_to_json(item)
        return done

    def _rows(self, papers: Sequence[Paper]) -> list[list[str]]:
        """render_digest's rows (Explain, the digest's own, then votes), laid out by cards
        once per number of papers. A numbered button differs from list to list only by
        the paper it names: each is encoded once per (paper, command, number)."""
        layout = self._layouts.get(len(papers))
        if layout is None:
            layout = self._layouts[len(papers)] = [
                *cards.explain_rows(papers),
                cards.digest_buttons(),
                *cards.vote_rows(papers),
            ]
        numbered = [self._numbered(p, n, len(papers)) for n, p in enumerate(papers, 1)]
        return [
            [self._button(b) if b.item is None else numbered[b.item - 1][b.command] for b in row]
            for row in layout
        ]

    def _numbered(self, paper: Paper, number: int, count: int) -> dict[str | None, str]:
        """The paper's buttons at place `number` of a `count`-paper digest, by command."""
        key = (paper.id, number, count)
        done = self._numbers.get(key)
        if done is None:
            done = self._numbers[key] = {
                b.command: button_to_json(replace(b, arg=paper.id))
                for row in self._layouts[count]
                for b in row
                if b.item == number
            }
        return done

    def _button(self, button: Button) -> str:
        done = self._buttons.get(button)
        if done is None:
            done = self._buttons[button] = button_to_json(button)
        return done

    def _card(self, paper: Paper, number: int, last: bool) -> str:
        key = (id(paper), number, last)
        done = self._cards.get(key)
        if done is None:
            message = cards.paper_message(
                paper, number=number, note=plain_reason(paper), votes=True
            )
            if last:
                message.buttons.append(cards.digest_buttons())
            done = self._cards[key] = message_to_json(message)
        return done


@dataclass(slots=True)
class _Candidate:
    paper: Paper
    matches: int = 0  # subscriptions that picked it
    position: int = 0  # best position in any feed: upstream order breaks ties
    fresh: bool = False  # an arXiv "new" (or not from an arXiv listing) somewhere
    feeds: list[str] = field(default_factory=list)


# (base id, position in the feed, paper, fresh) of one paper a subscription picks.
_Hit = tuple[str, int, Paper, bool]
# (rank's sort key as if one subscription picked it, (base id, paper)) of such a paper.
_Keyed = tuple[tuple[float, ...], tuple[str, Paper]]
_first = itemgetter(0)
_NOT_YET = object()


class Picks:
    """One (feed, filters)' hits keyed, in feed order and best first (a stable sort keeps
    feed order among ties), with their base ids."""

    __slots__ = ("distinct", "hits", "ids", "ordered", "ranked")

    def __init__(self, hits: list[_Keyed]) -> None:
        self.hits = hits
        self.ordered = sorted(hits, key=_first)
        self.ranked = [pair for _, pair in self.ordered]
        self.ids = frozenset(pair[0] for _, pair in hits)
        self.distinct = len(self.ids) == len(hits)  # no paper twice (two versions)


def _apart(picks: Sequence[Picks]) -> bool:
    """No paper picked twice, within one list or across them: nothing to merge. (Pairwise:
    a chat has a few subscriptions, and no union set is built for each mix.)"""
    if not all(pick.distinct for pick in picks):
        return False
    return all(a.ids.isdisjoint(b.ids) for i, a in enumerate(picks) for b in picks[i + 1 :])


class Shared:
    """What one round works out once for every chat: each (feed, filters)' papers, found
    through one look per (feed, word) and (feed, author); and papers merged across feeds.
    Choices are exactly `Subscription.matches`'s (tests hold them equal)."""

    def __init__(self) -> None:
        self._hits: dict[tuple[object, ...], list[_Hit]] = {}
        self._looks: dict[tuple[str, str, str], frozenset[int]] = {}
        self._texts: dict[str, list[str]] = {}
        self._merged: dict[tuple[int, int], Paper] = {}
        self._keyed: dict[tuple[object, ...], Picks] = {}
        self._feeds: dict[str, tuple[list[_Hit], list[_Keyed]]] = {}

    def keyed(self, fetch: FeedFetch, sub: Subscription) -> Picks:
        """`hits`, each with the key `rank` gives a paper that only this subscription picks."""
        key = filter_key(sub)
        found = self._keyed.get(key)
        if found is None:
            every = self.every(sub.feed, fetch)[1]
            found = self._keyed[key] = Picks([every[i] for i in self._chosen(fetch, sub)])
        return found

    def hits(self, fetch: FeedFetch, sub: Subscription) -> list[_Hit]:
        key = filter_key(sub)
        found = self._hits.get(key)
        if found is None:
            every = self.every(sub.feed, fetch)[0]
            found = self._hits[key] = [every[i] for i in self._chosen(fetch, sub)]
        return found

    def every(self, feed: str, fetch: FeedFetch) -> tuple[list[_Hit], list[_Keyed]]:
        """Every paper of a feed as a hit and keyed, once a round."""
        done = self._feeds.get(feed)
        if done is None:
            hits = [
                (base_id(paper.id), i, paper, paper.announce_type != "cross")
                for i, paper in enumerate(fetch.papers)
            ]
            keyed = [
                (_rank_key(_Candidate(paper, 1, i, fresh)), (base, paper))
                for base, i, paper, fresh in hits
            ]
            done = self._feeds[feed] = (hits, keyed)
        return done

    def _chosen(self, fetch: FeedFetch, sub: Subscription) -> Iterable[int]:
        """The positions of the feed's papers the subscription's filters let through."""
        keep: Iterable[int] = range(len(fetch.papers))
        if sub.keywords or sub.exclude or sub.authors:
            chosen = set(keep)
            if sub.keywords:
                chosen &= self._any(sub.feed, fetch, "word", sub.keywords)
            if sub.authors:
                chosen &= self._any(sub.feed, fetch, "author", sub.authors)
            if sub.exclude:
                chosen -= self._any(sub.feed, fetch, "word", sub.exclude)
            keep = sorted(chosen)
        return keep

    def _any(self, feed: str, fetch: FeedFetch, kind: str, terms: Sequence[str]) -> set[int]:
        out: set[int] = set()
        for term in terms:
            look = self._looks.get((feed, kind, term))
            if look is None:
                look = self._looks[(feed, kind, term)] = self._look(feed, fetch, kind, term)
            out |= look
        return out

    def _look(self, feed: str, fetch: FeedFetch, kind: str, term: str) -> frozenset[int]:
        if kind == "author":
            wanted = term.casefold()
            return frozenset(
                i
                for i, paper in enumerate(fetch.papers)
                if any(wanted in name.casefold() for name in paper.authors)
            )
        texts = self._texts.get(feed)
        if texts is None:
            texts = self._texts[feed] = [
                f"{p.title}\n{p.abstract}".casefold() for p in fetch.papers
            ]
        return frozenset(i for i, text in enumerate(texts) if word_in(term, text))

    def merge(self, kept: Paper, other: Paper) -> Paper:
        # Papers live in the round's feeds for the whole round: their ids stay their own.
        key = (id(kept), id(other))
        merged = self._merged.get(key)
        if merged is None:
            merged = self._merged[key] = _merge(kept, other)
        return merged


def candidates(
    fetches: dict[str, FeedFetch | None],
    subs: Sequence[Subscription],
    shared: Shared | None = None,
) -> dict[str, _Candidate] | None:
    """Matching papers of every subscription, merged by base id; None if every feed failed."""
    shared = shared or Shared()
    found: dict[str, _Candidate] = {}
    failed = 0
    for sub in subs:
        fetch = fetches.get(sub.feed)
        if fetch is None:
            failed += 1
            continue
        if fetch.announced is None:  # no announcement (weekend, holiday): nothing to add
            continue
        for key, position, paper, fresh in shared.hits(fetch, sub):
            cand = found.get(key)
            if cand is None:
                cand = found[key] = _Candidate(paper, position=position)
            else:
                cand.paper = shared.merge(cand.paper, paper)
                cand.position = min(cand.position, position)
            cand.matches += 1
            cand.fresh = cand.fresh or fresh
            cand.feeds.append(sub.feed)
    if subs and failed == len(subs):
        return None
    return found


def _merge(kept: Paper, other: Paper) -> Paper:
    """One paper seen in two feeds: the arXiv record (newest version), plus what HF adds."""
    base, extra = kept, other
    arxiv_first = base.announce_type is None and extra.announce_type is not None
    if arxiv_first or (extra.version or 0) > (base.version or 0):
        base, extra = extra, base
    merged = replace(base)  # feed papers are shared by every chat of the round: copy
    merge_hf(merged, extra)
    if "new" in (kept.announce_type, other.announce_type):
        merged.announce_type = "new"
    return merged


def rank(cands: dict[str, _Candidate]) -> list[tuple[str, Paper]]:
    """(base id, paper), best first: HF upvotes, then how many subscriptions picked it,
    arXiv new before cross-list, the most recent, then upstream order."""

    return [(k, c.paper) for k, c in sorted(cands.items(), key=lambda kc: _rank_key(kc[1]))]


def _rank_key(c: _Candidate) -> tuple[float, ...]:
    when = c.paper.published or c.paper.updated
    return (
        -(c.paper.upvotes or 0),
        -c.matches,
        0 if c.fresh else 1,
        -(when.timestamp() if when else 0.0),
        c.position,
    )


def unseen(ranked: Sequence[tuple[str, Paper]], delivered: set[str], count: int) -> list[Paper]:
    """The best `count` papers the chat has not received (ranking survives removals)."""
    if not delivered:  # the common case: a chat that has seen none of today's papers
        return [paper for _, paper in ranked[:count]]
    out: list[Paper] = []
    for key, paper in ranked:
        if len(out) >= count:
            break
        if key not in delivered:
            out.append(paper)
    return out


def digest_title(settings: ChatSettings, now: datetime) -> str:
    day = local_date(settings, now)
    return f"📰 Your papers for {day:%a} {day.day} {day:%b %Y}"


def render_digest(
    settings: ChatSettings,
    papers: Sequence[Paper],
    title: str | None = None,
    notes: Sequence[str] | None = None,
    lines: Mapping[str, DigestLine] | None = None,
) -> list[Message]:
    """Compact: one numbered message with Explain and vote buttons. Full: one message per
    paper. Each paper says why it is there (`notes`; by default where it is new), and with
    `explain` on carries its math line (`lines`, by paper id) when one is ready."""
    if not papers:
        return []
    why = list(notes) if notes is not None else [plain_reason(p) for p in papers]
    lines = lines if settings.explain else None
    if settings.format == "full":
        messages = [
            cards.paper_message(
                p, number=i, note=why[i - 1], votes=True, line=(lines or {}).get(p.id)
            )
            for i, p in enumerate(papers, 1)
        ]
    else:
        heading = title or "📰 Your papers"
        messages = cards.paper_list(
            heading, papers, limit=len(papers), notes=why, lines=lines
        ).messages
        # Votes after the digest row: where rows are capped (Discord: 5), Unsubscribe and
        # Settings stay; the /like and /dislike commands always work.
        messages[-1].buttons.append(cards.digest_buttons())
        messages[-1].buttons += cards.vote_rows(papers)
        return messages
    messages[-1].buttons.append(cards.digest_buttons())
    return messages
