"""Commands about papers: /paper, /explain, /ask, /trending, /today, /search."""

from __future__ import annotations

from bot import cards
from bot.commands.base import PAPER_ID, Arg, Args, Command, Context
from bot.doc import Reply, i, p
from bot.ids import parse_arxiv_id
from bot.service import Paperboy
from bot.sources.base import FeedFetch


async def _paper(service: Paperboy, ctx: Context, args: Args) -> Reply:
    paper = await service.paper_or_reply(str(args["id"]))
    if isinstance(paper, Reply):
        return paper
    message = cards.paper_message(paper, detail=True)
    wanted = parse_arxiv_id(str(args["id"])).version
    if wanted and paper.version and wanted > paper.version:
        note = f"arXiv has no v{wanted} of {paper.id}; this is the latest, v{paper.version}."
        message.blocks.insert(0, p(i(note)))
    return Reply([message])


async def _explain(service: Paperboy, ctx: Context, args: Args) -> Reply:
    return await service.explain(str(args["id"]), ctx.chat, ctx.user_id, images=ctx.images)


async def _ask(service: Paperboy, ctx: Context, args: Args) -> Reply:
    return await service.ask(str(args["id"]), str(args["question"]), ctx.chat, ctx.user_id)


async def _trending(service: Paperboy, ctx: Context, args: Args) -> Reply:
    count = int(args.get("n", 10))
    fetch = await service.feed("hf:trending")
    papers = fetch.papers[:count]
    if not papers:
        return Reply.text("Hugging Face lists no trending papers right now. Try again later.")
    return _stale_note(cards.paper_list("Trending on Hugging Face", papers), fetch)


def _stale_note(reply: Reply, fetch: FeedFetch) -> Reply:
    """Say so when the list is an earlier day's, served because the upstream failed."""
    if fetch.stale and reply.messages:
        day = f" from {fetch.announced:%a %d %b}" if fetch.announced else ""
        reply.messages[0].blocks.insert(
            0, p(i(f"{fetch.stale} Showing the last list I have{day}."))
        )
    return reply


async def _today(service: Paperboy, ctx: Context, args: Args) -> Reply:
    category = str(args["category"])
    fetch = await service.feed(f"arxiv:{category}")
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


async def _search(service: Paperboy, ctx: Context, args: Args) -> Reply:
    query = str(args["query"])
    papers = await service.search(query)
    if not papers:
        return Reply.text(f"Nothing on arXiv matches “{query}”.")
    return cards.paper_list(f"arXiv search: {query}", papers)


PAPER_COMMANDS: tuple[Command, ...] = (
    Command(
        "paper", "Show one paper", _paper, (PAPER_ID,), slow=True, examples=("/paper 1706.03762",)
    ),
    Command(
        "explain",
        "Explain a paper's ideas and math",
        _explain,
        (PAPER_ID,),
        slow=True,
        examples=("/explain 1706.03762",),
    ),
    Command(
        "ask",
        "Ask a question about a paper",
        _ask,
        (PAPER_ID, Arg("question", "your question", rest=True)),
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
)
