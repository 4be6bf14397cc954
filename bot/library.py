"""A chat's library: saved papers, searched by words, exported as BibTeX.

Entries are built from the stored metadata only (no upstream request per paper), with the
DOI arXiv registers for every paper: 10.48550/arXiv.<id>.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from datetime import datetime

from bot.models import Paper

_LATEX_SPECIALS = re.compile(r"(?<!\\)([&%#_])")
_KEY_WORD = re.compile(r"[A-Za-z0-9]+")
_MATH = re.compile(r"\$[^$]*\$")
_OLD_ID = re.compile(r"^[a-z\-]+(?:\.[A-Z]{2})?/(\d{2})(\d{2})\d+$")
_NEW_ID = re.compile(r"^(\d{2})(\d{2})\.\d{4,5}$")
_SKIP = frozenset({"a", "an", "the", "on", "of", "in", "for", "to", "and", "with", "towards"})


def matches(paper: Paper, words: str) -> bool:
    """Every word of `words` in the paper's title, abstract or authors (any case)."""
    text = " ".join([paper.id, paper.title, paper.abstract, *paper.authors]).casefold()
    return all(w in text for w in words.casefold().split())


def doi(paper: Paper) -> str:
    return paper.doi or f"10.48550/arXiv.{paper.id}"


def year(paper: Paper) -> int | None:
    """The year of the first version: from the date, else from the identifier itself."""
    when: datetime | None = paper.published or paper.updated
    if when is not None:
        return when.year
    match = _NEW_ID.match(paper.id) or _OLD_ID.match(paper.id)
    if match is None:
        return None
    yy = int(match[1])
    return (1900 if yy >= 91 else 2000) + yy


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def _last_name(author: str) -> str:
    return author.split(",")[0].strip() if "," in author else author.strip().split(" ")[-1]


def _author(author: str) -> str:
    """'Ada Lovelace' -> 'Lovelace, Ada' (BibTeX's unambiguous form)."""
    author = " ".join(author.split())
    if "," in author or " " not in author:
        return author
    first, last = author.rsplit(" ", 1)
    return f"{last}, {first}"


def _value(text: str) -> str:
    """A field value safe inside braces: balanced braces, LaTeX specials escaped."""
    text = " ".join(text.split())
    depth = 0
    for ch in text:
        depth += (ch == "{") - (ch == "}")
        if depth < 0:
            break
    if depth != 0:
        text = text.replace("{", "").replace("}", "")
    return _LATEX_SPECIALS.sub(r"\\\1", text)


def cite_key(paper: Paper, taken: set[str]) -> str:
    """'vaswani2017attention': first author's last name, year, first real title word."""
    last = _ascii(_last_name(paper.authors[0])).lower() if paper.authors else "anon"
    last = "".join(_KEY_WORD.findall(last)) or "anon"
    title = _MATH.sub(" ", _ascii(paper.title))
    words = [w.lower() for w in _KEY_WORD.findall(title)]
    word = next((w for w in words if w not in _SKIP and len(w) > 2), "paper")
    base = f"{last}{year(paper) or ''}{word}"
    key, n = base, 0
    while key in taken:
        n += 1
        key = f"{base}{chr(ord('a') + n - 1)}" if n <= 26 else f"{base}{n}"
    taken.add(key)
    return key


def bibtex_entry(paper: Paper, key: str) -> str:
    fields: list[tuple[str, str]] = [("title", _value(paper.title))]
    if paper.authors:
        fields.append(("author", " and ".join(_value(_author(a)) for a in paper.authors)))
    found = year(paper)
    if found:
        fields.append(("year", str(found)))
    fields += [("eprint", paper.id), ("archivePrefix", "arXiv")]
    if paper.primary_category:
        fields.append(("primaryClass", paper.primary_category))
    fields += [("doi", doi(paper)), ("url", f"https://arxiv.org/abs/{paper.id}")]
    if paper.journal_ref:
        fields.append(("note", _value(paper.journal_ref)))
    body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields)
    return f"@misc{{{key},\n{body}\n}}\n"


def bibtex(papers: Sequence[Paper]) -> str:
    """A .bib file: one @misc entry per paper, keys unique within the file."""
    taken: set[str] = set()
    return "\n".join(bibtex_entry(p, cite_key(p, taken)) for p in papers)
