"""The comparison table: scrub's search and each baseline, node- and edge-level ROC AUC, times.

>>> print(compare(model, inputs, space, truth, found, search_seconds))   # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from scrub.discover import baselines
from scrub.discover.ranking import edge_scores, site_scores
from scrub.discover.scoring import Row, format_table, roc_auc


@dataclass(frozen=True)
class Ranking:
    """One method's scores of every site and edge, and how long it took."""

    method: str
    sites: dict
    edges: dict
    seconds: float
    note: str = ""

    def rank_of(self, site) -> int:
        """1 for the highest-scored site; ties share the best rank."""
        return 1 + sum(v > self.sites[site] for v in self.sites.values())


def rankings(
    model, inputs, space, found, search_seconds: float, corruption: str = "abc"
) -> list[Ranking]:
    out = [
        Ranking(
            "scrub search (causal scrubbing)",
            site_scores(found, space),
            edge_scores(found, space),
            search_seconds,
            f"{len(found.head_parts())} heads, recovered {found.recovered:.3f}",
        )
    ]
    for name, fn in (
        (f"ACDC-style edge pruning ({corruption})", baselines.acdc),
        (f"EAP (gradients, {corruption})", baselines.eap),
        (f"path-patching scan ranking ({corruption})", baselines.path_patching_rank),
    ):
        start = time.perf_counter()
        sites, edges = fn(model, inputs, space)
        out.append(Ranking(name, sites, edges, time.perf_counter() - start))
    return out


def compare(
    model, inputs, space, truth, found, search_seconds: float, corruption: str = "abc"
) -> str:
    """The AUC table, and where each method ranks each planted site; ``corruption`` labels the
    baselines (every method reads the same ``inputs``)."""
    ranked = rankings(model, inputs, space, found, search_seconds, corruption)
    table = [
        Row(
            r.method,
            roc_auc(r.sites, truth.sites),
            roc_auc(r.edges, truth.edges),
            r.seconds,
            r.note,
        )
        for r in ranked
    ]
    planted = sorted(truth.sites)
    w = max(34, *(len(r.method) + 1 for r in ranked))
    ranks = [f"{'rank of planted site':<{w}}" + "".join(f"{str(s):>10}" for s in planted)]
    ranks += [f"{r.method:<{w}}" + "".join(f"{r.rank_of(s):>10}" for s in planted) for r in ranked]
    return (
        f"ROC AUC against the planted circuit ({len(truth.sites)} of {len(space.sites())} sites, "
        f"{len(truth.edges)} of {len(space.edges())} edges; n={inputs.n} prompts):\n"
        + format_table(table, w)
        + f"\n\nof {len(space.sites())} sites:\n"
        + "\n".join(ranks)
    )
