"""The paper's LaTeX source: polite download, safe in-memory unpacking, one flat document.

arXiv's e-print endpoint serves a gzipped single file, a gzipped tar, sometimes a plain tar
or a PDF (when no source was submitted); only the bytes say which. Nothing touches disk:
members become entries of a dict, so path traversal and symlinks cannot escape anywhere,
and every size, count and depth is capped against hostile archives.
"""

from __future__ import annotations

import asyncio
import io
import logging
import posixpath
import re
import tarfile
import zlib
from dataclasses import dataclass, field

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from bot.config import USER_AGENT
from bot.explain import latex
from bot.explain.hidden import strip_hidden_counted
from bot.explain.includes import IncludeReport, expand_includes, includes_in, resolve
from bot.explain.macros import expand_macros, parse_macros
from bot.explain.tex_internals import strip_internals
from bot.sources.http import (
    RETRY_STATUSES,
    BadBody,
    BodyTooLarge,
    PoliteGate,
    RetryAfterOrBackoff,
    parse_retry_after,
    read_capped,
)

log = logging.getLogger(__name__)

TEXT_SUFFIXES = (".tex", ".sty", ".ltx", ".def", ".macros", ".cls")


class SourceUnavailable(Exception):
    """No usable LaTeX source (missing, PDF-only, unreadable or over a limit).

    `transient`: arXiv was busy or failing (429/5xx), so a later try may well succeed."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True, slots=True)
class Limits:
    max_download_bytes: int = 60_000_000
    max_unpacked_bytes: int = 300_000_000  # everything decompressed, figures included
    max_members: int = 5000
    max_member_bytes: int = 8_000_000  # one .tex file
    max_text_bytes: int = 24_000_000  # all kept text files
    max_include_depth: int = 8
    max_document_chars: int = 4_000_000


@dataclass(slots=True)
class ExtractReport:
    members: int = 0
    skipped_unsafe: list[str] = field(default_factory=list)  # traversal, links, devices
    skipped_large: int = 0
    kind: str = ""  # "tar.gz", "gzip", "tar", "plain"


@dataclass(slots=True)
class LatexSource:
    main: str
    preamble: str
    body: str  # includes and macros expanded, comments and hidden text removed
    files: int
    report: ExtractReport
    includes: IncludeReport
    hidden_removed: int = 0  # passages of hidden text (white, transparent, tiny) dropped


# -------------------------------------------------------------- download


async def polite_get(
    http: httpx.AsyncClient,
    gate: PoliteGate,
    url: str,
    *,
    max_bytes: int,
    attempts: int = 3,
    max_wait: float = 30.0,
    deadline: float = 60.0,
) -> bytes | None:
    """GET through arXiv's shared gate, backing off on 429/5xx, streaming with a size cap
    (as sent and decompressed) and a total deadline per attempt, body included.

    The gate only spaces request starts: a slow download holds nobody else up. A server
    that asked us to wait pushes every arXiv request out (`gate.back_off`). Returns the
    body, or None on 404.
    """
    attempts = max(1, attempts)

    def backed_off(state: RetryCallState) -> None:
        busy = state.outcome.exception() if state.outcome else None
        retry_in = state.next_action.sleep if state.next_action else 0.0
        gate.back_off(retry_in)
        log.info("arXiv busy (HTTP %s), retrying in %.1fs", getattr(busy, "status", "?"), retry_in)

    retrying = AsyncRetrying(
        stop=stop_after_attempt(attempts),
        # Retry-After when arXiv sends one, else 2 s doubling per attempt, both capped.
        wait=RetryAfterOrBackoff(2.0, max_wait),
        retry=retry_if_exception_type(_Busy),
        before_sleep=backed_off,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await _get_once(
                http,
                gate,
                url,
                max_bytes,
                deadline,
                max_wait,
                last=attempt.retry_state.attempt_number >= attempts,
            )
    raise AssertionError("unreachable: tenacity either returns or raises")


class _Busy(Exception):
    """arXiv answered 429/5xx on an attempt that is not the last: try again."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after  # read by RetryAfterOrBackoff


async def _get_once(
    http: httpx.AsyncClient,
    gate: PoliteGate,
    url: str,
    max_bytes: int,
    deadline: float,
    max_wait: float,
    *,
    last: bool,
) -> bytes | None:
    await gate.start()
    try:
        async with (
            asyncio.timeout(deadline),
            http.stream(
                "GET",
                url,
                headers={"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate"},
                follow_redirects=True,
            ) as resp,
        ):
            if resp.status_code == 404:
                return None
            if resp.status_code not in RETRY_STATUSES or last:
                return await _read_capped(resp, max_bytes)
            raise _Busy(
                resp.status_code, parse_retry_after(resp.headers.get("retry-after"), max_wait)
            )
    except TimeoutError:
        raise SourceUnavailable(
            f"arXiv sent nothing complete within {deadline:g}s", transient=True
        ) from None


async def _read_capped(resp: httpx.Response, max_bytes: int) -> bytes:
    if resp.status_code != 200:
        raise SourceUnavailable(
            f"arXiv answered HTTP {resp.status_code}",
            transient=resp.status_code in RETRY_STATUSES,
        )
    try:
        return await read_capped(resp, max_bytes)
    except BodyTooLarge:
        raise SourceUnavailable("the source is larger than the download limit") from None
    except BadBody as exc:
        raise SourceUnavailable(f"the download is unreadable: {exc}") from None


# -------------------------------------------------------------- unpacking


class _CappedGunzip(io.RawIOBase):
    """A read-only stream of gzip-decompressed bytes that refuses to exceed a cap.

    Decompression is incremental (`max_length`), so a bomb never materializes in memory.
    """

    def __init__(self, data: bytes, cap: int) -> None:
        self._d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        self._src = memoryview(data)
        self._pos = 0
        self._pending = b""
        self._cap = cap
        self.total = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = 1 << 20
        while len(self._pending) < size and not self._d.eof:
            if self._d.unconsumed_tail:
                feed = self._d.unconsumed_tail
            elif self._pos < len(self._src):
                feed = bytes(self._src[self._pos : self._pos + (1 << 16)])
                self._pos += len(feed)
            else:
                feed = b""  # input done: drain what zlib still holds
            piece = self._d.decompress(feed, 1 << 16)
            self.total += len(piece)
            if self.total > self._cap:
                raise SourceUnavailable("the source unpacks to more than the size limit")
            self._pending += piece
            if not piece and not feed:
                break
        out, self._pending = self._pending[:size], self._pending[size:]
        return out

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


def _safe_name(name: str) -> str | None:
    """The member's path inside the archive, or None if it tries to point outside it."""
    if not name or "\x00" in name or "\\" in name:
        return None
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return None
    parts = name.split("/")
    if any(p == ".." for p in parts):
        return None
    norm = posixpath.normpath(name)
    return None if norm in (".", "") or norm.startswith("../") else norm


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _looks_like_tar(head: bytes) -> bool:
    if len(head) >= 262 and head[257:262] == b"ustar":
        return True
    if len(head) < 512:
        return False
    try:
        tarfile.TarInfo.frombuf(head[:512], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def unpack(data: bytes, limits: Limits = Limits()) -> tuple[dict[str, str], ExtractReport]:
    """The text files of an e-print (path -> text), detected by content, never by name."""
    report = ExtractReport()
    if data[:4] == b"%PDF":
        raise SourceUnavailable("arXiv has only a PDF for this paper")
    if data[:2] == b"\x1f\x8b":
        stream: io.RawIOBase = _CappedGunzip(data, limits.max_unpacked_bytes)
        head = stream.read(512)
        if _looks_like_tar(head):
            report.kind = "tar.gz"
            reader = io.BufferedReader(_Prefixed(head, stream), 1 << 16)
            return _untar(reader, limits, report), report
        report.kind = "gzip"
        rest = stream.read(limits.max_member_bytes + 1 - len(head))
        body = head + rest
        if len(body) > limits.max_member_bytes:
            raise SourceUnavailable("the source file is larger than the size limit")
        if body[:4] == b"%PDF":
            raise SourceUnavailable("arXiv has only a PDF for this paper")
        return {"main.tex": _decode(body)}, report
    if _looks_like_tar(data[:512]):
        report.kind = "tar"
        return _untar(io.BytesIO(data), limits, report), report
    report.kind = "plain"
    if len(data) > limits.max_member_bytes:
        raise SourceUnavailable("the source file is larger than the size limit")
    return {"main.tex": _decode(data)}, report


class _Prefixed(io.RawIOBase):
    """A stream with some already-read bytes put back in front."""

    def __init__(self, head: bytes, rest: io.RawIOBase) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(b))
        b[: len(data)] = data
        return len(data)


def _untar(fileobj: io.IOBase, limits: Limits, report: ExtractReport) -> dict[str, str]:
    files: dict[str, str] = {}
    kept = 0
    try:
        # Stream mode ("r|"): sequential, no seeking, nothing extracted to disk.
        with tarfile.open(fileobj=fileobj, mode="r|") as tar:
            for member in tar:
                report.members += 1
                if report.members > limits.max_members:
                    raise SourceUnavailable("the source archive has too many files")
                if not member.isfile():
                    if member.issym() or member.islnk() or member.isdev() or member.isfifo():
                        report.skipped_unsafe.append(member.name[:100])
                    continue
                name = _safe_name(member.name)
                if name is None:
                    report.skipped_unsafe.append(member.name[:100])
                    continue
                if not name.lower().endswith(TEXT_SUFFIXES) and not name.lower().endswith(".bbl"):
                    continue
                if member.size > limits.max_member_bytes or kept + member.size > (
                    limits.max_text_bytes
                ):
                    report.skipped_large += 1
                    continue
                f = tar.extractfile(member)
                if f is None:
                    continue
                raw = f.read(limits.max_member_bytes + 1)
                kept += len(raw)
                files[name] = _decode(raw)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        if not files:
            raise SourceUnavailable("the source archive is damaged") from exc
        log.info("source archive ends early; keeping %d files", len(files))
    return files


# ---------------------------------------------------------- main file, flat


_DOCCLASS = re.compile(r"\\documentclass(?![A-Za-z])")
_BEGIN_DOC = re.compile(r"\\begin\s*\{document\}")
_PREFERRED = ("main.tex", "ms.tex", "paper.tex", "article.tex", "manuscript.tex")
# Conference templates and sample files that ship beside the real paper.
_TEMPLATE_NAME = re.compile(
    r"(?:^|[/_-])(?:template|sample|example|instructions?|guidelines?|formatting|demo|"
    r"skeleton|dummy)|^(?:iclr|icml|neurips|nips|aaai|ijcai|cvpr|iccv|eccv|acl|emnlp|naacl|"
    r"colm|corl|aistats|uai|colt|icra|iros|kdd|www|sigir|tmlr|jmlr)[_-]?\d{0,4}(?:[_-]"
    r"(?:conference|submission|camera[_-]?ready|paper))?\.tex$|(?:^|/)(?:acl_latex|"
    r"llncs|elsarticle|sn-article|ieeeconf|bare_conf|bare_jrnl)[^/]*\.tex$",
    re.I,
)
_TEMPLATE_TEXT = re.compile(
    r"submission of (?:conference )?papers to|formatting instructions for|instructions for "
    r"(?:authors|preparing)|this (?:document|file) (?:is|serves as) an? (?:template|sample|"
    r"example)|style file for|sample (?:file|document|paper) for",
    re.I,
)


def include_graph(files: dict[str, str]) -> dict[str, list[str]]:
    """Every .tex file -> the files it `\\input`s/`\\include`s/`\\import`s (comments ignored)."""
    graph: dict[str, list[str]] = {}
    for path, text in files.items():
        if not path.lower().endswith((".tex", ".ltx")):
            continue
        text = latex.strip_comments(text)
        targets = []
        for target in includes_in(files, path, text):
            if target != path and target not in targets:
                targets.append(target)
        graph[path] = targets
    return graph


def _tree(graph: dict[str, list[str]], root: str, limit: int = 500) -> list[str]:
    """The root and every file reachable from it (cycles cut, bounded)."""
    seen = [root]
    todo = [root]
    while todo and len(seen) < limit:
        for t in graph.get(todo.pop(), []):
            if t not in seen:
                seen.append(t)
                todo.append(t)
    return seen


def find_main(files: dict[str, str]) -> str | None:
    """The file LaTeX would be run on, read from the include graph.

    It has `\\begin{document}`, its include tree holds `\\documentclass` (often in an
    `\\input`-ed preamble), and no other file includes it. Conference templates and sample
    files shipped beside the paper rank last; among the rest the one with most paper wins.
    """
    clean = {p: latex.strip_comments(t) for p, t in files.items()}
    graph = include_graph(clean)
    included = {t for targets in graph.values() for t in targets}
    tex = list(graph)
    with_body = [p for p in tex if _BEGIN_DOC.search(clean[p])]
    pool = [p for p in with_body if p not in included] or with_body
    if not pool:
        pool = [p for p in tex if _DOCCLASS.search(clean[p]) and p not in included]
    if not pool:
        roots = [p for p in tex if p not in included]
        return roots[0] if len(roots) == 1 else (tex[0] if len(tex) == 1 else None)

    def rank(p: str) -> tuple[bool, bool, bool, bool, int]:
        tree = _tree(graph, p)
        text = "\n".join(clean[f] for f in tree)
        has_class = any(_DOCCLASS.search(clean[f]) for f in tree)
        template = bool(_TEMPLATE_NAME.search(p)) or bool(_TEMPLATE_TEXT.search(text[:20000]))
        content = len(re.findall(r"\\(?:sub)*section\*?\s*\{|\\begin\s*\{(?:equation|align)", text))
        return (
            has_class,
            not template,
            posixpath.basename(p) in _PREFERRED,
            p.count("/") == 0,
            content * 10_000 + min(len(text), 9_999),
        )

    return max(pool, key=rank)


_STYLE_CODE = re.compile(r"@|\\(?:ProvidesPackage|ProvidesClass|NeedsTeXFormat)(?![A-Za-z])")


def flatten(files: dict[str, str], report: ExtractReport, limits: Limits = Limits()) -> LatexSource:
    """Main file found, comments/hidden text removed, includes and author macros expanded."""
    main = find_main(files)
    if main is None:
        raise SourceUnavailable("no main LaTeX file in the source")
    clean = {p: latex.strip_iffalse(latex.strip_comments(t)) for p, t in files.items()}
    text, includes = expand_includes(
        clean, main, max_depth=limits.max_include_depth, max_chars=limits.max_document_chars
    )
    preamble, body = latex.split_document(text)
    # The author's macros: from the paper's own .tex files (preamble, body), and from a local
    # .sty only when it is a plain list of definitions. A conference or package style is
    # TeX programming (`@`-names, \\ProvidesPackage): expanding it pours internals into the text.
    defs = preamble
    for pkg in re.findall(r"\\usepackage(?:\[[^\]]*\])?\{([^}]*)\}", preamble):
        for name in pkg.split(","):
            path = resolve(clean, posixpath.dirname(main), name.strip() + ".sty")
            if path and not _STYLE_CODE.search(clean[path]):
                defs += "\n" + clean[path]
    macros = parse_macros(defs + "\n" + body)
    body = expand_macros(body, macros, max_chars=limits.max_document_chars * 2)
    body, hidden = strip_hidden_counted(body, preamble)
    body = strip_internals(body)
    return LatexSource(
        main=main,
        preamble=preamble,
        body=body,
        files=len(files),
        report=report,
        includes=includes,
        hidden_removed=hidden,
    )


def extract(data: bytes, limits: Limits = Limits()) -> LatexSource:
    """Bytes from the e-print endpoint -> one flat LaTeX document (CPU-bound: use a thread)."""
    files, report = unpack(data, limits)
    if not files:
        raise SourceUnavailable("no LaTeX files in the source")
    return flatten(files, report, limits)
