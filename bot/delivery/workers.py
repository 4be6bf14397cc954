"""Who holds an outbox lease, and whether that process is known to be dead.

A worker's name says where it runs: the host, the PID namespace (two containers on the
host network share a host name but not their process ids), its process id and a random
tag. A process starting on the same host and namespace can tell that an earlier one is
gone, so the rows it held come back at once after a restart instead of when their
leases run out. Anything it cannot be sure of (another host, a process id now used by
someone else) counts as alive: those rows wait for their leases, as before.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from pathlib import Path


def _namespace() -> str:
    """This process's PID namespace ("" where there is no /proc to say)."""
    with contextlib.suppress(OSError):
        return str(os.stat("/proc/self/ns/pid").st_ino)
    return ""


# Names handed out in this process: alive, whatever their process id says.
_ours: set[str] = set()


def worker_name() -> str:
    name = f"{socket.gethostname()}|{_namespace()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    _ours.add(name)
    return name


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    # A process killed but not yet reaped by its parent is a zombie: it sends nothing.
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] != "Z"
    return True


def gone(worker: str, me: str) -> bool:
    """True when `worker` was a process on this host and namespace that no longer runs."""
    place, _, rest = worker.partition(":")
    pid_text, _, tag = rest.partition(":")
    my_place, _, my_rest = me.partition(":")
    if worker in _ours or worker == me or not tag or place != my_place:
        return False
    if not my_place.partition("|")[2]:
        return False
    try:
        pid, my_pid = int(pid_text), int(my_rest.partition(":")[0])
    except ValueError:
        return False
    if pid == my_pid:
        return True  # our process id, not our name: the earlier process with it has ended
    return not _running(pid)
