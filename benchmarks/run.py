"""Run every benchmark in this folder and print a table of speed ratios (reference / fast).

Each ``bench_*.py`` module defines ``run() -> list[dict]`` with rows holding at least ``name``,
``ratio`` and ``target`` (the ratio the issue asks for); the fast path and its reference are
timed side by side in one process, so ratios are meaningful even when absolute times are noisy.

    python benchmarks/run.py [--json out.json] [--only patching]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import sys
from pathlib import Path


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write {name: ratio} to this file")
    parser.add_argument("--only", help="run only bench_<ONLY>.py")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    # The benchmarks time the tests' slow reference implementations against the fast paths.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    rows = []
    for path in sorted(Path(__file__).parent.glob("bench_*.py")):
        if args.only and path.stem != f"bench_{args.only}":
            continue
        rows.extend(_load(path).run())
    width = max((len(r["name"]) for r in rows), default=10)
    print(f"{'benchmark':<{width}}  {'ratio':>8}  {'target':>7}  ok   detail")
    for r in rows:
        ok = "yes" if r["ratio"] >= r["target"] else "NO"
        ratios = f"{r['ratio']:>7.1f}x  {r['target']:>6.1f}x"
        print(f"{r['name']:<{width}}  {ratios}  {ok:<4} {r.get('detail', '')}")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak_mb:.0f} MB")
    if args.json:
        from scrub.atomic import atomic_path

        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps({r["name"]: r["ratio"] for r in rows}, indent=2))
    return 0 if all(r["ratio"] >= r["target"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
