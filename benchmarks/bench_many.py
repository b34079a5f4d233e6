"""Scrubbing a search's candidates: one ``scrub_many`` call against a loop of ``scrub_hypothesis``.

Circuit discovery scrubs many hypotheses that differ from a base by one added node. Here the
base is toy-ioi's name mover (3.1 at END, agree io) with its S-inhibition query (2.0 at END,
agree order), and the K = 16 candidates each add one layer 0-1 head: at S2 into S-inhibition's
values (agree s), or at IO into the name mover's keys (agree io). N = 200 reference examples,
a pool of 2000 IOI prompts, seed 0.

A second row times a whole ``scrub discover`` search on toy-ioi (its defaults, ``abc`` and
``swap-order`` mixed) with each step's candidates scrubbed in one batched pass against the same
search scrubbing them one call each; both must find the same hypothesis.

Row (ratio, target): the loop's time / ``scrub_many``'s (target 4x). Both sides return the same
results (the detail column gives the largest difference in recovered); ``scrub_many`` runs one
clean pass over the union of the candidates' rows (at most the pool) instead of one per
candidate. Timed with ``time.perf_counter`` in one process, best of ``REPEATS``.

    python benchmarks/run.py --only many
"""

from __future__ import annotations

import time

import torch
from timing import best

N, POOL, K = 200, 2000, 16
REPEATS = 2


def candidates():
    """The base plus one head each: 8 heads x (S-inhibition's values, the name mover's keys)."""
    from scrub.scrubbing.hypothesis import OUTPUT, Hypothesis, agree, heads, node

    base = [
        node("name mover", heads("3.1", at="END"), feeds=OUTPUT, rule=agree("io")),
        node("s-inhibition", heads("2.0", at="END"), feeds="name mover.q", rule=agree("order")),
    ]
    out = []
    for head in ("0.0", "0.1", "0.2", "0.3", "1.0", "1.1", "1.2", "1.3"):
        for at, feeds, rule in (
            ("S2", "s-inhibition.v", agree("s")),
            ("IO", "name mover.k", agree("io")),
        ):
            added = node(f"{head} at {at}", heads(head, at=at), feeds=feeds, rule=rule)
            out.append(Hypothesis(f"+ {head} at {at}", [*base, added]))
    assert len(out) == K
    return out


def search_row(model, ds) -> list[dict]:
    """The discover search, batched against one scrub per candidate (timed once each)."""
    from scrub.discover import search
    from scrub.discover.data import ioi_data
    from scrub.scrubbing.experiment import scrub_hypothesis

    inputs = ioi_data(model, pool=POOL, n_patch=100, corruptions=[["abc"], ["swap-order"]], seed=0)
    t0 = time.perf_counter()
    batched = search.discover(model, ds, inputs.inputs)
    batched_s = time.perf_counter() - t0

    class OneByOne(search.Search):
        def __init__(self, *args):
            super().__init__(*args)
            self._scrub_many = lambda hs, *a, **k: [scrub_hypothesis(h, *a, **k) for h in hs]

    plain, search.Search = search.Search, OneByOne
    try:
        t0 = time.perf_counter()
        looped = search.discover(model, ds, inputs.inputs)
        looped_s = time.perf_counter() - t0
    finally:
        search.Search = plain
    same = looped.parts == batched.parts and looped.recovered == batched.recovered
    return [
        {
            "name": "discover search, batched passes vs one scrub per candidate (toy-ioi)",
            "ratio": looped_s / batched_s,
            "target": 2.0,
            "detail": f"one by one {looped_s:.1f}s, batched {batched_s:.1f}s "
            f"({batched.evaluations} scrubs in {batched.passes} passes); "
            f"same hypothesis: {same}",
        }
    ]


def run() -> list[dict]:
    from scrub.data.registry import dataset_for
    from scrub.models import load_model
    from scrub.scrubbing.experiment import scrub_hypothesis, scrub_many

    model = load_model("toy-ioi")
    ds = dataset_for("ioi", POOL, seed=0, model=model)
    hs = candidates()
    many_s, many = best(lambda: scrub_many(hs, model, ds, n=N, seed=0), REPEATS)
    loop_s, loop = best(lambda: [scrub_hypothesis(h, model, ds, n=N, seed=0) for h in hs], REPEATS)
    diff = max(abs(a.recovered - b.recovered) for a, b in zip(many, loop))
    rows = sum(int(r.settings["distinct_rows"]) for r in loop)
    return [
        *search_row(model, ds),
        {
            "name": f"scrub_many vs loop (toy-ioi, K={K}, N={N}, pool {POOL})",
            "ratio": loop_s / many_s,
            "target": 4.0,
            "detail": f"loop {loop_s:.2f}s ({rows} rows over {K} passes), "
            f"scrub_many {many_s:.2f}s; max |diff recovered| {diff:.1e}",
        },
    ]


if __name__ == "__main__":
    torch.set_num_threads(1)
    for r in run():
        print(r)
