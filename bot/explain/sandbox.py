"""Untrusted LaTeX read in a worker process that is killed when it takes too long.

Unpacking, flattening and analysing an e-print is CPU work on attacker-controlled input.
`latex.py` bounds its loops with step and size budgets; this module bounds the rest by
CPU time (RLIMIT_CPU) and wall clock, off the event loop: each job runs in its own
process (forked from a
forkserver that has the modules loaded, so a job starts in milliseconds), the loop waits
on the result pipe without a thread, and the process is killed on timeout or when the
waiting task is cancelled (a SIGTERM stopping the bot). A thread could not be stopped;
a process can. The worker also arms SIGALRM, so even a worker orphaned by a parent
killed outright dies by itself within a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import math
import multiprocessing
import os
import resource
import signal
import sys
from multiprocessing.connection import Connection
from typing import Any

from bot.explain import analyze as analysis_mod
from bot.explain import latex
from bot.explain.analyze import Analysis
from bot.explain.source import Limits, SourceUnavailable, flatten, unpack

log = logging.getLogger(__name__)

# Budgets of one source. CPU time is what a crafted source burns, and it does not grow
# on a busy machine, so the worker is limited to SOURCE_CPU_SECONDS of it (the kernel
# stops it: RLIMIT_CPU); the wall clock is the backstop. Real papers take well under a
# second of CPU.
SOURCE_CPU_SECONDS = 4
SOURCE_SECONDS = 8.0
MAX_GROWTH = 4  # expanded document vs. the source's text files
_PR_SET_PDEATHSIG = 1  # linux/prctl.h

_PRELOAD = ["bot.explain.source", "bot.explain.analyze"]


def _context() -> Any:
    if sys.platform == "linux":
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")


_CTX = _context()


def _nothing() -> None:
    pass


def warm_up() -> None:
    """Start the forkserver and wait for its module imports (seconds on a busy machine),
    so the first explanation does not pay for them. Blocking: call it in a thread."""
    proc = _CTX.Process(target=_nothing, daemon=True, name="latex-warm-up")
    proc.start()
    proc.join()


def _detach() -> None:
    """In the worker: die with the process that started it (on Linux, the forkserver,
    which itself ends with the bot), and let go of the bot's terminal and pipes, so a
    stopped bot leaves nothing holding its output open."""
    if sys.platform == "linux":
        parent = os.getppid()
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # it died before we asked
            os._exit(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def _job(conn: Connection, data: bytes, limits: Limits, abstract: str, seconds: float) -> None:
    """In the worker: bytes -> Analysis, sent back as ("ok", analysis) or an error tuple."""
    _detach()
    signal.alarm(max(1, math.ceil(seconds) + 2))  # dies by itself if nobody kills it
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CPU, (SOURCE_CPU_SECONDS, SOURCE_CPU_SECONDS + 1))
    try:
        files, report = unpack(data, limits)
        if not files:
            raise SourceUnavailable("no LaTeX files in the source")
        src = flatten(files, report, limits)
        # Macros that keep growing the text (\def\a{\a\a}\a) are a bomb even when the
        # expander's own budgets let the last pass through: no real paper grows this much.
        written = sum(len(text) for text in files.values())
        if len(src.body) > MAX_GROWTH * written + 10_000:
            raise latex.WorkBudgetExceeded("macros that expand without end")
        found = analysis_mod.analyze(src.body, src.preamble, abstract_hint=abstract)
        found.hidden_removed = src.hidden_removed  # for the note to the user
        conn.send(("ok", found))
    except SourceUnavailable as exc:
        conn.send(("unavailable", str(exc), exc.transient))
    except latex.WorkBudgetExceeded as exc:
        conn.send(("unavailable", f"the LaTeX source is too costly to read: {exc}", False))
    except Exception as exc:  # reported to the parent, which logs it and falls back
        conn.send(("error", f"{type(exc).__name__}: {str(exc)[:200]}"))
    finally:
        conn.close()


def _settle(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


async def read_source(
    data: bytes, limits: Limits, abstract: str, *, seconds: float | None = None
) -> Analysis:
    """The analysed LaTeX source of an e-print, computed in a killable worker process.

    Raises SourceUnavailable when the source is unusable, over a limit, or takes longer
    than `seconds` (the caller falls back to HTML or the abstract)."""
    seconds = SOURCE_SECONDS if seconds is None else seconds
    loop = asyncio.get_running_loop()
    recv, send = _CTX.Pipe(duplex=False)
    proc = _CTX.Process(
        target=_job, args=(send, data, limits, abstract, seconds), daemon=True, name="latex"
    )
    ready: asyncio.Future[None] = loop.create_future()
    watching = False
    try:
        # Starting sends the job (up to tens of MB) to the forkserver: not on the loop.
        await asyncio.to_thread(proc.start)
        send.close()
        loop.add_reader(recv.fileno(), _settle, ready)
        watching = True
        try:
            async with asyncio.timeout(seconds):
                await ready
                # Readable: the worker is sending (or died, which reads as EOF).
                reply = await asyncio.to_thread(recv.recv)
        except TimeoutError:
            log.warning("reading a LaTeX source took over %.1fs; stopped it", seconds)
            raise SourceUnavailable(
                f"the LaTeX source took too long to read (over {seconds:g}s)"
            ) from None
        except EOFError:
            proc.join(1.0)
            if proc.exitcode == -signal.SIGXCPU:
                log.warning("reading a LaTeX source took over %ds of CPU", SOURCE_CPU_SECONDS)
                raise SourceUnavailable(
                    f"the LaTeX source took too long to read (over {SOURCE_CPU_SECONDS}s)"
                ) from None
            raise SourceUnavailable("the LaTeX reader stopped without an answer") from None
    finally:
        if watching:
            loop.remove_reader(recv.fileno())
        if proc.is_alive():
            proc.kill()
        if proc.pid is not None:
            proc.join(1.0)  # reaps it; a killed process is gone at once
        recv.close()
        send.close()
    if reply[0] == "ok":
        found = reply[1]
        assert isinstance(found, Analysis)
        return found
    if reply[0] == "unavailable":
        raise SourceUnavailable(reply[1], transient=bool(reply[2]))
    log.warning("reading a LaTeX source failed: %s", reply[1])
    raise SourceUnavailable("the LaTeX source could not be read")
