"""`make bench`: run every benchmark module in bench/ and print its figures."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import pkgutil
import sys
import time

import bench


def main() -> int:
    names = sorted(
        m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_")
    )
    failed = 0
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        started = time.perf_counter()
        module = importlib.import_module(f"bench.{name}")
        try:
            result = module.main()
            if inspect.iscoroutine(result):  # some benchmarks are async all the way
                asyncio.run(result)
        except Exception as e:  # one broken benchmark should not hide the others' figures
            failed += 1
            print(f"{name} failed: {e!r}")
        print(f"({time.perf_counter() - started:.1f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
