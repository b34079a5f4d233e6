"""Calibration of scrub's statistics on toy-ioi: false-positive rate and interval coverage.

Simulates paired "improves" claims under a true null (a hypothesis against itself, two seeds, the
same reference rows) and checks the 95% intervals of recovered against a value measured with
``--slices`` (20) times the examples; see :mod:`scrub.stats.calibration`. Goals: false-positive
rate at alpha 0.05 within 0.03-0.07 over >= 400 claims, coverage >= 0.93.

    python benchmarks/calibrate.py [--n 100] [--seeds 20] [--slices 20] [--json out.json]

Defaults: n = 100 reference examples per run (so the truth uses 2,000, the usual pool), 20 seeds
per slice (10 null claims per slice), two hypotheses: 2 x 20 x 10 = 400 claims and 800 intervals
from 802 scrubs, a few minutes on one core.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HYPOTHESES = ("toy_ioi.py::full_circuit", "toy_ioi.py::induction_resampled")


def main(argv: list[str] | None = None) -> int:
    import torch

    from scrub.data.registry import build_dataset
    from scrub.models import load_model
    from scrub.scrubbing.loader import load_hypothesis
    from scrub.stats.calibration import calibrate

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="toy-ioi")
    p.add_argument("--n", type=int, default=100, help="reference examples per run")
    p.add_argument("--seeds", type=int, default=20, help="runs per slice (claims: seeds / 2)")
    p.add_argument("--slices", type=int, default=20, help="the truth uses slices x n examples")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--hypotheses", default=",".join(HYPOTHESES), help="FILE::NAME,...")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    root = Path(__file__).resolve().parents[1] / "hypotheses"
    refs = [r if "/" in r else f"{root}/{r}" for r in args.hypotheses.split(",")]
    hyps = [load_hypothesis(r) for r in refs]
    model = load_model(args.model)
    ds = build_dataset(
        hyps[0].dataset,
        args.n * args.slices,
        seed=0,
        tokenizer=model.tokenizer,
        n_vocab=model.info.d_vocab,
        n_ctx=model.info.n_ctx,
    )
    start, cpu = time.perf_counter(), time.process_time()
    report = calibrate(
        model, ds, hyps, n=args.n, seeds=args.seeds, slices=args.slices, alpha=args.alpha,
        progress=True,
    )  # fmt: skip
    took, took_cpu = time.perf_counter() - start, time.process_time() - cpu
    for line in report.lines():
        print(line)
    print(f"{took:.0f} s wall, {took_cpu:.0f} s CPU, {torch.get_num_threads()} torch thread")
    fpr_ok = 0.03 <= report.false_positive_rate <= 0.07
    cov_ok = report.coverage >= 0.93
    print(f"goals: false-positive rate in [0.03, 0.07]: {'met' if fpr_ok else 'MISSED'}; "
          f"coverage >= 0.93: {'met' if cov_ok else 'MISSED'}")  # fmt: skip
    if args.json:
        doc = {
            "false_positive_rate": report.false_positive_rate,
            "claims": report.claims,
            "coverage": report.coverage,
            "intervals": report.intervals,
            "seconds": took,
            "cpu_seconds": took_cpu,
            "settings": vars(args) | {"json": str(args.json)},
            "per_hypothesis": [h.__dict__ for h in report.per_hypothesis],
        }
        args.json.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
