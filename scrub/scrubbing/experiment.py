"""Scrub a hypothesis: validate, treeify, sample, evaluate, summarise.

>>> result = scrub_hypothesis(hyp, model, dataset, n=200, seed=0)   # doctest: +SKIP
>>> print(result)                                                    # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import torch

from scrub import metrics
from scrub.errors import ScrubError
from scrub.models import kernel
from scrub.scrubbing.evaluate import Act, CleanCache, Need, TreeEvaluator, needs_of
from scrub.scrubbing.hypothesis import Hypothesis
from scrub.scrubbing.result import (
    Recovered,
    ScrubResult,
    cancellation_warnings,
    reference_features,
)
from scrub.scrubbing.tree import Assignment, TreeNode, sample, treeify
from scrub.scrubbing.validate import check_against

DEFAULT_MAX_MEMORY = 2 * 1024**3


def plan(hypothesis: Hypothesis, info, dataset, *, n: int | None, seed: int):
    """Validate and sample: the tree, the assignment, the reference and random-baseline rows."""
    check_against(
        hypothesis,
        info.n_layers,
        info.n_heads,
        dataset.positions,
        dataset.features,
        n_kv_heads=info.n_kv_heads,
        parallel=info.parallel,
    )
    pool = len(dataset)
    n = pool if n is None else n
    if not 1 <= n <= pool:
        raise ScrubError(
            f"n={n} reference examples but the dataset has {pool} rows",
            fix="lower n or build a larger dataset",
        )
    tree = treeify(hypothesis)
    ref = np.arange(n)
    assignment = sample(tree, hypothesis, dataset.features, pool, ref, seed)
    # The baseline has its own stream (tree.draw_baseline): "empty recovers 0" is a measurement.
    return tree, assignment, ref, assignment.baseline


def _host(x: torch.Tensor) -> torch.Tensor:
    """Logits on the CPU, half precision widened to float32 (numpy has no bfloat16)."""
    x = x.cpu()
    return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x


def _metric(name: str, logits_at_end, answers, clean_logits=None):
    if name == "logit-diff":
        return metrics.logit_diff_from_pair(logits_at_end)
    if name == "loss":
        return metrics.io_loss(logits_at_end, answers)
    return metrics.kl_to(logits_at_end, clean_logits)


def scrub_hypothesis(
    hypothesis: Hypothesis,
    model,
    dataset,
    *,
    n: int | None = None,
    seed: int = 0,
    metric: str = "logit-diff",
    max_memory: int = DEFAULT_MAX_MEMORY,
    assignment: Assignment | None = None,
    progress: bool = False,
) -> ScrubResult:
    """Causally scrub ``hypothesis`` on ``model`` over the first ``n`` rows of ``dataset``.

    Rows are drawn from the whole dataset (the pool); the reference examples are its first ``n``
    rows. Pass a previous result's ``assignment`` to replay it exactly.
    """
    metrics.check_metric(metric)
    tree, drawn, ref, random_rows = plan(hypothesis, model.info, dataset, n=n, seed=seed)
    a = assignment or drawn
    if a.baseline is not None:  # a replayed assignment brings its baseline's rows
        random_rows = a.baseline
    answers = dataset.answers[torch.from_numpy(ref)]
    cols = answers if metric == "logit-diff" else None
    needs = {k: np.concatenate(v) for k, v in needs_of(tree, a, ref, random_rows).items()}
    distinct_rows = len(np.unique(np.concatenate(list(needs.values()))))
    with torch.no_grad():
        if model.weights is None:  # the hook backend: one bridge pass per node (slow, exact)
            from scrub.scrubbing.hooked import reference_logits

            logits = reference_logits(model, dataset, tree, a, ref, random_rows)
            if cols is not None:
                logits = [x.gather(1, cols.to(x.device)) for x in logits]
            clean_logits, scrub_logits, random_logits = logits
        else:
            w = model.weights
            cache = CleanCache(
                w,
                dataset.tokens,
                dataset.mask,
                dataset.positions["END"],
                needs,
                max_bytes=max_memory,
                progress=progress,
            )
            ev = TreeEvaluator(w, cache, a, dataset.positions, dataset.mask)
            clean_logits = kernel.unembed(w, cache.get(Need(Act.FINAL), ref), cols)
            random_logits = kernel.unembed(w, cache.get(Need(Act.FINAL), random_rows), cols)
            scrub_logits = kernel.unembed(w, ev.final_at_end(tree), cols)
        series = [
            _metric(metric, _host(x), answers, _host(clean_logits)).numpy().astype(np.float64)
            for x in (clean_logits, scrub_logits, random_logits)
        ]
    clean, scrubbed, random = series
    return ScrubResult(
        hypothesis=hypothesis.name,
        metric=metric,
        clean=clean,
        scrubbed=scrubbed,
        random=random,
        stats=Recovered.from_series(clean, scrubbed, random),
        assignment=a,
        settings={
            "model": model.info.name,
            "n": len(ref),
            "pool": len(dataset),
            "seed": seed,
            "metric": metric,
            "dataset": list(getattr(dataset, "lineage", ())),
            "distinct_rows": distinct_rows,
            "treeified_nodes": len(a.rows),
        },
        warnings=cancellation_warnings(scrubbed, clean, random)
        + alignment_warnings(tree, a, dataset),
        features=reference_features(dataset, ref),
    )


def alignment_warnings(tree: TreeNode, a: Assignment, dataset) -> tuple[str, ...]:
    """All-position components are matched by token index between rows; warn when that mixes.

    A child's output at index t of its world (:meth:`Assignment.world`) enters its parent's world
    at index t. That is right when the two rows share one layout (e.g. the child keeps its
    parent's row or agrees on the template) and silently mixes tokens when their lengths differ.
    """
    lengths = dataset.mask.sum(1).numpy()
    loose = []
    for parent in tree.walk():
        for child in parent.children:
            if any(c.position is None for c in child.node.components):
                mixed = lengths[a.world(child)] != lengths[a.world(parent)]
                if mixed.any():
                    loose.append(f"{child.path!r} ({mixed.mean():.0%} of examples)")
    if not loose:
        return ()
    return (
        f"all-position node(s) {', '.join(loose)} read rows whose length differs from their "
        f"parent's, so positions are matched by index across different prompts; name a position "
        f"(at='END') or agree on the template",
    )
