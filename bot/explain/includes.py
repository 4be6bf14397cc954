"""`\\input`/`\\include`/`\\import`: resolving them against the archive's files and
inlining them, with depth, cycle and size caps."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

_INCLUDE = re.compile(
    r"\\(?:input|include|subfile|InputIfFileExists)\*?\s*(?:\{([^{}\n]*)\}|([^\s{}\\*]+))"
    r"|\\(?:sub)?(?:import|inputfrom|includefrom)\*?\s*\{([^{}\n]*)\}\s*\{([^{}\n]*)\}"
)


@dataclass(slots=True)
class IncludeReport:
    skipped_depth: int = 0
    skipped_cycles: int = 0
    missing: list[str] = field(default_factory=list)
    truncated: bool = False


def resolve(files: Mapping[str, str], base_dir: str, name: str) -> str | None:
    """The archive path that `\\input{name}` means, if the archive holds it."""
    name = name.strip().strip('"')
    if not name:
        return None
    candidates = []
    for base in (base_dir, ""):
        path = posixpath.normpath(posixpath.join(base, name))
        candidates += [path, path + ".tex"]
    for c in candidates:
        if c in files:
            return c
    return None


def _include_target(
    files: Mapping[str, str], m: re.Match[str], rel_dir: str
) -> tuple[str | None, str]:
    """(archive path, directory for its own includes) of one include command."""
    if m.group(3) is not None:  # \import{dir}{file}: relative to dir
        sub_dir = posixpath.normpath(posixpath.join(rel_dir, m.group(3)))
        return resolve(files, sub_dir, m.group(4)), sub_dir
    return resolve(files, rel_dir, m.group(1) or m.group(2) or ""), rel_dir


def includes_in(files: Mapping[str, str], path: str, text: str) -> list[str]:
    """The archive files that `text` (the file at `path`) includes."""
    # Relative to the directory LaTeX runs in, which may be any ancestor of this file.
    dirs = [posixpath.dirname(path)]
    while dirs[-1]:
        dirs.append(posixpath.dirname(dirs[-1]))
    found = []
    for m in _INCLUDE.finditer(text):
        for rel_dir in dirs:
            target = _include_target(files, m, rel_dir)[0]
            if target is not None:
                found.append(target)
                break
    return found


def expand_includes(
    files: Mapping[str, str],
    main: str,
    *,
    max_depth: int = 8,
    max_chars: int = 4_000_000,
) -> tuple[str, IncludeReport]:
    """The main file with `\\input`/`\\include`/`\\import` replaced by the files' text.

    Depth is capped and cycles are cut, so hostile sources cannot loop or blow up.
    """
    report = IncludeReport()
    main_dir = posixpath.dirname(main)
    budget = [max_chars]

    def expand(path: str, stack: tuple[str, ...], rel_dir: str) -> str:
        text = files[path]
        out: list[str] = []
        pos = 0
        for m in _INCLUDE.finditer(text):
            out.append(text[pos : m.start()])
            pos = m.end()
            target, next_dir = _include_target(files, m, rel_dir)
            if target is None:
                report.missing.append((m.group(1) or m.group(2) or m.group(4) or "")[:80])
                continue
            if target in stack:
                report.skipped_cycles += 1
                continue
            if len(stack) >= max_depth:
                report.skipped_depth += 1
                continue
            if budget[0] <= 0:
                report.truncated = True
                continue
            chunk = expand(target, (*stack, target), next_dir)
            budget[0] -= len(chunk)
            out.append("\n" + chunk + "\n")
        out.append(text[pos:])
        return "".join(out)

    text = expand(main, (main,), main_dir)
    if len(text) > max_chars:
        report.truncated = True
        text = text[:max_chars]
    return text, report
