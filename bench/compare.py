"""Side by side: the figures a renovation must not worsen, run in this checkout and in
another one (say a worktree of the previous main), alternating so both see the same
machine, each in its own checkout's .venv.

    python -m bench.compare /path/to/other/checkout [piece ...]

Pieces: send-off (Telegram send rate, limits off), enqueue-100k (one round, SQLite),
mix-100k (uniform and realistic mix, PostgreSQL and SQLite), pg-1m (one million
subscriptions on PostgreSQL; pg-200k the same at 200k). Not part of `make bench`: it
needs a second checkout.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

# Each piece is a small program run inside a checkout; both checkouts must have the
# benchmark functions it calls.
_PRELUDE = (
    "import asyncio, contextlib, os, pathlib, tempfile\n"
    "with contextlib.suppress(AttributeError, OSError):\n"
    "    os.sched_setaffinity(0, {0})\n"
)
PIECES: dict[str, str] = {
    "send-off": _PRELUDE + "from bench import bench_delivery as b\n"
    "async def go():\n"
    "    with tempfile.TemporaryDirectory() as t:\n"
    "        db = pathlib.Path(t) / 'deliver.db'\n"
    "        await b.bench_fetch_once(db, 10_000)\n"
    "        await b.bench_send(db, limits_on=False, rate=300.0)\n"
    "asyncio.run(go())\n",
    "enqueue-100k": _PRELUDE + "from bench import bench_delivery as b\n"
    "async def go():\n"
    "    with tempfile.TemporaryDirectory() as t:\n"
    "        await b.bench_enqueue(pathlib.Path(t) / 'enqueue.db', 100_000)\n"
    "asyncio.run(go())\n",
    "mix-100k": "import asyncio\nfrom bench import bench_scale as b\n"
    "asyncio.run(b.bench_mix(100_000))\n",
    # pg-1m's round at a fifth of the size: 1 and 4 workers in a few minutes.
    "pg-200k": "import asyncio\nfrom bench import bench_scale as b\n"
    "asyncio.run(b.bench_enqueue(200_000))\n",
    "pg-1m": "import asyncio\nfrom bench import bench_scale as b\n"
    "asyncio.run(b.bench_enqueue(1_000_000))\n",
}


def run_piece(checkout: Path, piece: str) -> str:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [str(checkout / ".venv" / "bin" / "python"), "-c", PIECES[piece]],
        cwd=checkout,
        capture_output=True,
        text=True,
        check=False,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    out = done.stdout.strip() or done.stderr.strip()[-2000:]
    return f"{out}\n  [{time.perf_counter() - started:.1f} s wall, {cpu:.1f} s CPU in all]"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print(__doc__)
        return 2
    here, other = Path.cwd(), Path(args[0]).resolve()
    for piece in args[1:] or list(PIECES):
        for name, checkout in (("this", here), ("other", other)):
            print(f"\n=== {piece} — {name}: {checkout}", flush=True)
            print(run_piece(checkout, piece), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
