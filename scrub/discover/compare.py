"""The comparison table: scrub's search and each baseline, node- and edge-level ROC AUC, times.

>>> print(compare(model, inputs, space, truth, found, search_seconds))   # doctest: +SKIP
"""

from __future__ import annotations

import time

from scrub.discover import baselines
from scrub.discover.scoring import Row, format_table, roc_auc
from scrub.discover.search import edge_scores, site_scores


def rows(model, inputs, space, truth, found, search_seconds: float) -> list[Row]:
    out = [
        Row(
            "scrub search (causal scrubbing)",
            roc_auc(site_scores(found, space), truth.sites),
            roc_auc(edge_scores(found, space), truth.edges),
            search_seconds,
            f"{len(found.head_parts())} heads, recovered {found.recovered:.3f}",
        )
    ]
    for name, fn in (
        ("ACDC-style edge pruning (abc)", baselines.acdc),
        ("EAP (gradients, abc)", baselines.eap),
        ("path-patching scan ranking (abc)", baselines.path_patching_rank),
    ):
        start = time.perf_counter()
        sites, edges = fn(model, inputs, space)
        out.append(
            Row(
                name,
                roc_auc(sites, truth.sites),
                roc_auc(edges, truth.edges),
                time.perf_counter() - start,
            )
        )
    return out


def compare(model, inputs, space, truth, found, search_seconds: float) -> str:
    table = rows(model, inputs, space, truth, found, search_seconds)
    return (
        f"ROC AUC against the planted circuit ({len(truth.sites)} of {len(space.sites())} sites, "
        f"{len(truth.edges)} of {len(space.edges())} edges; n={inputs.n} prompts):\n"
        + format_table(table)
    )
