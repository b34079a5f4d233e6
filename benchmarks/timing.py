"""What every benchmark shares: best-of-k timing and the ``SCRUB_BENCH_MODELS`` filter.

Not a benchmark itself (``run.py`` runs ``bench_*.py``); the benchmarks import it from their
own folder, which is on the path however they are run.
"""

from __future__ import annotations

import os
import time


def best(fn, repeats: int):
    """(fastest time of ``repeats`` calls of ``fn``, the last call's result)."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def selected(names) -> list[str]:
    """``SCRUB_BENCH_MODELS=a,b`` runs only those models' rows (all by default)."""
    wanted = os.environ.get("SCRUB_BENCH_MODELS")
    return [n for n in names if not wanted or n in wanted.split(",")]
