"""A fake arXiv e-print and HTML server on 127.0.0.1, plus archive builders (some hostile).

Routes mirror arxiv.org: GET /e-print/<id>[vN] returns the source (gzip or tar.gz bytes,
`application/x-eprint(-tar)` like the real thing), GET /html/<id>[vN] returns LaTeXML HTML.
Unknown ids get 404. Every request is recorded (`hits`) with its User-Agent and time.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from tests.fakes.base import FakeServer
from tests.fakes.hostile import HostilePlan
from tests.fakes.hostile import answer as hostile_answer

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "eprint"


@dataclass(slots=True)
class Hit:
    kind: str  # "e-print" or "html"
    id: str
    user_agent: str
    at: float


@dataclass
class FakeEprint(FakeServer):
    eprints: dict[str, bytes] = field(default_factory=dict)
    html: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (to let concurrent callers pile up)
    busy: dict[str, int] = field(default_factory=dict)  # id -> how many 503s to send first
    hostile: HostilePlan = field(default_factory=HostilePlan)  # tests.fakes.hostile modes

    def hostile_next(self, mode: str, *, times: int = 1) -> None:
        """Answer the next `times` requests in a hostile `mode` (see tests.fakes.hostile)."""
        self.hostile.add(mode, times)

    async def _answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        return await hostile_answer(self.hostile, request, handler)

    def _routes(self, app: web.Application) -> None:
        app.router.add_get("/e-print/{id:.+}", self._eprint)
        app.router.add_get("/html/{id:.+}", self._html)

    @property
    def hits(self) -> list[Hit]:
        """The e-print and HTML requests, in order."""
        hits: list[Hit] = []
        for r in self.requests:
            kind, _, pid = r.path.removeprefix("/").partition("/")
            if kind in ("e-print", "html") and pid:
                hits.append(Hit(kind, pid, r.user_agent, r.at))
        return hits

    @property
    def eprint_url(self) -> str:
        return f"{self.url}/e-print"

    @property
    def html_url(self) -> str:
        return f"{self.url}/html"

    def count(self, kind: str, paper_id: str | None = None) -> int:
        return sum(
            1 for h in self.hits if h.kind == kind and (paper_id is None or h.id == paper_id)
        )

    @staticmethod
    def _base(paper_id: str) -> str:
        head, _, tail = paper_id.rpartition("v")
        return head if head and tail.isdigit() else paper_id

    async def _eprint(self, request: web.Request) -> web.StreamResponse:
        pid = request.match_info["id"]
        if self.delay:
            await asyncio.sleep(self.delay)
        base = self._base(pid)
        if self.busy.get(base, 0) > 0:
            self.busy[base] -= 1
            return web.Response(status=503, headers={"Retry-After": "0"}, text="busy")
        data = self.eprints.get(pid, self.eprints.get(base))
        if data is None:
            return web.Response(status=404, text="not found")
        kind = "application/x-eprint-tar" if data[:2] == b"\x1f\x8b" else "application/x-eprint"
        return web.Response(body=data, headers={"Content-Type": kind})

    async def _html(self, request: web.Request) -> web.StreamResponse:
        pid = request.match_info["id"]
        page = self.html.get(pid, self.html.get(self._base(pid)))
        if page is None:
            return web.Response(status=404, text="No HTML for this paper")
        return web.Response(text=page, content_type="text/html")


# ------------------------------------------------------------------ builders


def tar_gz(
    files: dict[str, str | bytes],
    *,
    symlinks: dict[str, str] | None = None,
    hardlinks: dict[str, str] | None = None,
) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
        for name, target in (hardlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.LNKTYPE
            info.linkname = target
            tar.addfile(info)
    return buf.getvalue()


def gzip_single(text: str) -> bytes:
    """What arXiv serves for a one-file submission: the .tex, gzipped, no tar."""
    return gzip.compress(text.encode())


def fixture_files(name: str = "paper") -> dict[str, str | bytes]:
    root = FIXTURES / name
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def fixture_paper() -> bytes:
    """The realistic multi-file source: \\input, \\include, macros, a local .sty."""
    files = fixture_files("paper")
    files["figures/plot.png"] = b"\x89PNG\r\n\x1a\n" + b"\x00" * 2048  # sources carry figures
    return tar_gz(files)


def fixture_html() -> str:
    return (FIXTURES / "paper.html").read_text()


def gzip_bomb(unpacked_bytes: int) -> bytes:
    """A small gzip that unpacks to `unpacked_bytes` of zeros."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"\x00" * (1 << 20)
    out = [comp.compress(chunk) for _ in range(unpacked_bytes >> 20)]
    out.append(comp.flush())
    return b"".join(out)


def tar_bomb(member_bytes: int) -> bytes:
    """A tar.gz whose one member is a huge run of zeros."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    info = tarfile.TarInfo("huge.tex")
    info.size = member_bytes
    parts = [comp.compress(info.tobuf())]
    chunk = b"\x00" * (1 << 20)
    for _ in range(member_bytes >> 20):
        parts.append(comp.compress(chunk))
    parts.append(comp.flush())
    return b"".join(parts)


MINIMAL_MAIN = r"""\documentclass{article}
\begin{document}
\section{Introduction}
%s
\end{document}
"""


# ------------------------------------------------------------ crafted (CPU bombs)

_CRAFTED_HEAD = "\\documentclass{article}\n\\begin{document}\n\\section{Introduction}\nHello.\n"


def crafted_sources() -> dict[str, bytes]:
    """Small gzip e-prints built to burn CPU in a naive reader (issue 11): each unpacks to
    at most ~7 MB, and each must cost at most a few seconds before the fallback."""
    body = {
        # \iffalse over 7 MB, never closed.
        "iffalse_7mb": "\\iffalse\n" + "lorem ipsum " * 600_000,
        # Half a million tiny \iffalse ... \fi blocks (quadratic when each search copies).
        "iffalse_blocks": "\\iffalse x\\fi " * 500_000,
        # 300,000 \def's whose bodies never close (each read scans the rest of the file).
        "unclosed_def": "\\def\\a{" * 300_000,
        # One \def that never closes, over 7 MB.
        "unclosed_def_7mb": "\\def\\a{" + "x" * 7_000_000,
        # A macro that doubles itself: \def\a{\a\a}\a.
        "self_doubling": "\\def\\a{\\a\\a}\\a",
        # Eightfold recursion, and two macros calling each other.
        "deep_recursion": "\\def\\a{\\a\\a\\a\\a\\a\\a\\a\\a}\\def\\b{\\c\\c\\c}"
        "\\def\\c{\\b\\b\\b}\\a\\b",
    }
    return {
        name: gzip_single(_CRAFTED_HEAD + text + "\n\\end{document}\n")
        for name, text in body.items()
    }
