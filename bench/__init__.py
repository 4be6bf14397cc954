"""Benchmarks (`python -m bench`); helpers they share."""

from __future__ import annotations

import contextlib
import resource
from pathlib import Path


def peak_rss_mb() -> float:
    """This process image's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss over
    from the parent into a spawned child, so the child would report the parent's peak
    (a worker spawned after seeding 100k chats, the seeding's memory)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
