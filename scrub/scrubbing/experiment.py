"""Scrub hypotheses: validate, treeify, sample, evaluate, summarise.

:func:`scrub_hypothesis` scrubs one; :func:`scrub_many` scrubs several (e.g. a search's
candidates) over one shared clean pass, with the same results.

>>> result = scrub_hypothesis(hyp, model, dataset, n=200, seed=0)   # doctest: +SKIP
>>> print(result)                                                    # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True, eq=False)
class Planned:
    """One hypothesis ready to evaluate: its tree, its assignment and the rows it runs."""

    hypothesis: Hypothesis
    tree: TreeNode
    assignment: Assignment
    ref: np.ndarray
    random_rows: np.ndarray

    @property
    def needs(self) -> dict[Need, np.ndarray]:
        """The clean activations its evaluation reads, on which rows (:func:`needs_of`)."""
        parts = needs_of(self.tree, self.assignment, self.ref, self.random_rows)
        return {k: np.concatenate(v) for k, v in parts.items()}


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
    run = Planned(hypothesis, tree, a, ref, random_rows)
    return _scrub_planned([run], model, dataset, seed, metric, max_memory, progress)[0]


def scrub_many(
    hypotheses: Sequence[Hypothesis],
    model,
    dataset,
    *,
    n: int | None = None,
    seed: int = 0,
    metric: str = "logit-diff",
    max_memory: int = DEFAULT_MAX_MEMORY,
    progress: bool = False,
) -> list[ScrubResult]:
    """:func:`scrub_hypothesis` of each hypothesis, sharing one batched clean pass.

    Every hypothesis is validated and sampled first (a :class:`ScrubError` names the first
    invalid one before any model work), each with ``seed`` as on its own, so its assignment is
    the one :func:`scrub_hypothesis` draws. The clean activations all of them read come from one
    :class:`CleanCache` over the union of their rows (at most the dataset's pool, so K
    candidates cost far less than K passes), and the reference and random-baseline logits,
    whose rows depend on ``seed`` and ``n`` alone, are unembedded once. Each tree is then
    evaluated on its own over the shared cache.

    Results equal :func:`scrub_hypothesis`'s: the same assignments, settings and warnings, and
    the same values up to float32 round-off. They were bit-identical in every comparison made
    (tests/test_scrub_many.py, benchmarks/bench_many.py; one and two threads), but that is not
    guaranteed: the clean pass batches a row with other rows than it does alone, and matmul
    kernels may depend on the batch (tests allow 1e-5 relative). Hypotheses are batched while
    the cache's buffers fit ``max_memory`` (on top of the pass's own ``max_memory`` of live
    activations); one that needs more runs alone, as it would on its own. The hook backend
    evaluates them one by one.

    >>> results = scrub_many([h1, h2], model, dataset, n=200, seed=0)   # doctest: +SKIP
    >>> [r.recovered for r in results]                                  # doctest: +SKIP
    [0.41, 0.87]
    """
    metrics.check_metric(metric)
    runs = []
    for h in hypotheses:
        tree, a, ref, random_rows = plan(h, model.info, dataset, n=n, seed=seed)
        runs.append(Planned(h, tree, a, ref, random_rows))
    return _scrub_planned(runs, model, dataset, seed, metric, max_memory, progress)


def _scrub_planned(
    runs: Sequence[Planned], model, dataset, seed: int, metric: str, max_memory: int, progress
) -> list[ScrubResult]:
    """Evaluate planned hypotheses (all with the same reference rows) and build their results."""
    if not runs:
        return []
    ref = runs[0].ref
    assert all(np.array_equal(r.ref, ref) for r in runs), "one batch has one set of references"
    answers = dataset.answers[torch.from_numpy(ref)]
    cols = answers if metric == "logit-diff" else None
    needs = [r.needs for r in runs]
    series = []
    with torch.no_grad():
        # Reduced to the metric as they come: full-vocabulary logits (loss, kl) of every
        # candidate at once could outgrow the clean pass.
        logits = _logits(runs, needs, model, dataset, cols, max_memory, progress)
        for clean, scrubbed, random in logits:
            series.append(
                [
                    _metric(metric, _host(x), answers, _host(clean)).numpy().astype(np.float64)
                    for x in (clean, scrubbed, random)
                ]
            )
    return [
        _result(r, model, dataset, seed, metric, s, _distinct(nd))
        for r, s, nd in zip(runs, series, needs)
    ]


def _logits(runs, needs, model, dataset, cols, max_memory: int, progress) -> Iterator[tuple]:
    """(clean, scrubbed, random) logits of each run, in order (``cols`` only, if given)."""
    if model.weights is None:  # the hook backend: one bridge pass per node (slow, exact)
        from scrub.scrubbing.hooked import reference_logits

        for r in runs:
            triple = reference_logits(model, dataset, r.tree, r.assignment, r.ref, r.random_rows)
            yield tuple(x if cols is None else x.gather(1, cols.to(x.device)) for x in triple)
        return
    w = model.weights
    for group in batches(needs, w, dataset.tokens.shape[1], max_memory):
        batch = [runs[i] for i in group]
        merged = union([needs[i] for i in group])
        yield from _kernel_logits(w, dataset, batch, merged, cols, max_memory, progress)


def _kernel_logits(w, dataset, runs, needs, cols, max_memory: int, progress) -> Iterator[tuple]:
    """(clean, scrubbed, random) logits of each run, from one clean pass over ``needs``.

    Runs with the same rows share their clean and random logits: the reference rows are the
    same for every run, and the baseline's come from the seed alone (tree.draw_baseline); a
    replayed assignment may bring other baseline rows, hence the lookup by rows.
    """
    cache = CleanCache(
        w,
        dataset.tokens,
        dataset.mask,
        dataset.positions["END"],
        needs,
        max_bytes=max_memory,
        progress=progress,
    )
    unembedded: dict[bytes, torch.Tensor] = {}

    def final(rows: np.ndarray) -> torch.Tensor:
        key = np.ascontiguousarray(rows, dtype=np.int64).tobytes()
        if key not in unembedded:
            unembedded[key] = kernel.unembed(w, cache.get(Need(Act.FINAL), rows), cols)
        return unembedded[key]

    for r in runs:
        ev = TreeEvaluator(w, cache, r.assignment, dataset.positions, dataset.mask)
        yield final(r.ref), kernel.unembed(w, ev.final_at_end(r.tree), cols), final(r.random_rows)


def union(needs: Sequence[Mapping[Need, np.ndarray]]) -> dict[Need, np.ndarray]:
    """Each need's rows over all of ``needs`` (distinct, sorted)."""
    merged: dict[Need, list[np.ndarray]] = {}
    for nd in needs:
        for k, rows in nd.items():
            merged.setdefault(k, []).append(rows)
    return {k: np.unique(np.concatenate(v)) for k, v in merged.items()}


def batches(
    needs: Sequence[Mapping[Need, np.ndarray]], w, t: int, max_bytes: int
) -> list[list[int]]:
    """Consecutive indices of ``needs`` grouped so that each group's cache buffers
    (:meth:`CleanCache.buffer_bytes` of their :func:`union`) fit ``max_bytes``; a single one
    that does not forms a group of its own.

    The buffers hold every needed activation on every needed row, so they grow with the
    candidates' union of rows; ``max_bytes`` bounds only the pass's live activations.
    """
    groups: list[list[int]] = []
    merged: dict[Need, np.ndarray] = {}
    for i, nd in enumerate(needs):
        grown = union([merged, nd])
        if not groups or CleanCache.buffer_bytes(w, t, grown) > max_bytes:
            groups.append([])
            grown = union([nd])
        groups[-1].append(i)
        merged = grown
    return groups


def _distinct(needs: Mapping[Need, np.ndarray]) -> int:
    return len(np.unique(np.concatenate(list(needs.values()))))


def _result(run: Planned, model, dataset, seed: int, metric: str, series, distinct_rows: int):
    clean, scrubbed, random = series
    a = run.assignment
    return ScrubResult(
        hypothesis=run.hypothesis.name,
        metric=metric,
        clean=clean,
        scrubbed=scrubbed,
        random=random,
        stats=Recovered.from_series(clean, scrubbed, random),
        assignment=a,
        settings={
            "model": model.info.name,
            "n": len(run.ref),
            "pool": len(dataset),
            "seed": seed,
            "metric": metric,
            "dataset": list(getattr(dataset, "lineage", ())),
            "distinct_rows": distinct_rows,
            "treeified_nodes": len(a.rows),
        },
        warnings=cancellation_warnings(scrubbed, clean, random)
        + alignment_warnings(run.tree, a, dataset),
        features=reference_features(dataset, run.ref),
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
