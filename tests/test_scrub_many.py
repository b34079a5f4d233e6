"""scrub_many: for every hypothesis the result scrub_hypothesis gives it, from one shared pass."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import build_tiny_model_dir
from test_scrub_engine import HYPOTHESES as TINY_HYPOTHESES
from test_scrub_engine import tiny_dataset

from scrub.errors import ScrubError
from scrub.models import load_model
from scrub.scrubbing import experiment
from scrub.scrubbing.evaluate import CleanCache
from scrub.scrubbing.experiment import Planned, batches, plan, scrub_hypothesis, scrub_many
from scrub.scrubbing.hypothesis import (
    OUTPUT,
    Embed,
    Hypothesis,
    agree,
    heads,
    keep,
    node,
    random,
)

# A pool of 400 has names only one row holds: agreeing on a name may keep that row.
IO, S = agree("io", allow_self=True), agree("s", allow_self=True)
TOY_HYPOTHESES = [
    Hypothesis("keep leaf", [node("nm", heads("3.1", at="END"), feeds=OUTPUT, rule=keep)]),
    Hypothesis(
        "q k v",
        [
            node("nm", heads("3.1", at="END"), feeds=OUTPUT, rule=IO),
            node("s-inh", heads("2.0", at="END"), feeds="nm.q", rule=agree("order")),
            node("k", heads("1.2", at="IO"), feeds="nm.k", rule=IO),
            node("v", heads("0.1 0.3", at="S1"), feeds="nm.v", rule=S),
        ],
    ),
    Hypothesis(
        "embeddings",
        [
            node("nm", heads("3.1", at="END"), feeds=OUTPUT, rule=IO),
            node(
                "names",
                [Embed("IO"), Embed("S1")],
                feeds=["nm.k", "nm.v"],
                rule=agree("io", "s", allow_self=True),
            ),
        ],
    ),
    Hypothesis(
        "template",
        [
            node("nm", heads("3.1", at="END"), feeds=OUTPUT, rule=IO, other=agree("template")),
            node("prev", heads("0.1"), feeds="nm.k", rule=agree("template"), other=random),
        ],
    ),
    Hypothesis("nothing", []),
]


@pytest.fixture(scope="module")
def toy():
    from scrub.data.registry import dataset_for

    model = load_model("toy-ioi")
    return model, dataset_for("ioi", 400, seed=0, model=model)


def assert_same(batched, alone) -> None:
    """Equal results: assignment, settings and warnings exactly, values to float32 round-off."""
    assert (batched.hypothesis, batched.metric) == (alone.hypothesis, alone.metric)
    a, b = batched.assignment, alone.assignment
    assert list(a.rows) == list(b.rows)
    for path in b.rows:
        assert np.array_equal(a.rows[path], b.rows[path])
        assert np.array_equal(a.other[path], b.other[path])
    assert np.array_equal(a.baseline, b.baseline)
    assert batched.settings == alone.settings
    assert batched.warnings == alone.warnings
    assert batched.features == alone.features
    for series in ("clean", "scrubbed", "random"):
        np.testing.assert_allclose(
            getattr(batched, series), getattr(alone, series), rtol=1e-5, atol=1e-6
        )
    assert batched.recovered == pytest.approx(alone.recovered, abs=1e-6)


def test_toy_ioi_results_equal_one_by_one(toy):
    model, ds = toy
    batched = scrub_many(TOY_HYPOTHESES, model, ds, n=200, seed=0)
    assert len(batched) == len(TOY_HYPOTHESES)
    for h, r in zip(TOY_HYPOTHESES, batched):
        assert_same(r, scrub_hypothesis(h, model, ds, n=200, seed=0))
    # Different shapes give different results, or the equalities above prove little.
    assert len({round(r.recovered, 6) for r in batched}) == len(batched)


@pytest.mark.parametrize("metric", ["logit-diff", "loss", "kl"])
def test_tiny_model_results_equal_one_by_one(tiny_model, metric):
    """The tiny model has MLPs: MLP nodes, embeddings beside heads, DAGs, all-position nodes."""
    hs = [TINY_HYPOTHESES[k] for k in sorted(TINY_HYPOTHESES)]
    ds = tiny_dataset()
    batched = scrub_many(hs, tiny_model, ds, n=16, seed=3, metric=metric)
    for h, r in zip(hs, batched):
        assert_same(r, scrub_hypothesis(h, tiny_model, ds, n=16, seed=3, metric=metric))


def test_results_do_not_depend_on_the_batch(toy):
    model, ds = toy
    hs = TOY_HYPOTHESES
    every = scrub_many(hs, model, ds, n=200, seed=0)
    backwards = scrub_many(hs[::-1], model, ds, n=200, seed=0)[::-1]
    for a, b in zip(every, backwards):
        assert_same(a, b)
    for i in (0, 2):
        (pair_first, pair_second) = scrub_many([hs[i], hs[i + 1]], model, ds, n=200, seed=0)
        assert_same(pair_first, every[i])
        assert_same(pair_second, every[i + 1])


def test_one_clean_pass_for_the_batch(toy, monkeypatch):
    model, ds = toy
    built = []

    class Counting(CleanCache):
        def __init__(self, *args, **kwargs):
            built.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(experiment, "CleanCache", Counting)
    scrub_many(TOY_HYPOTHESES, model, ds, n=200, seed=0)
    assert len(built) == 1


class _NoModelWork:
    """A model whose weights may not be read: only plan() (validation) may run."""

    def __init__(self, model):
        self.info = model.info

    @property
    def weights(self):
        raise AssertionError("model work before every hypothesis was validated")


def test_an_invalid_hypothesis_fails_before_any_model_work(toy):
    model, ds = toy
    bad = Hypothesis("too deep", [node("x", heads("7.0", at="END"), feeds=OUTPUT)])
    with pytest.raises(ScrubError) as alone:
        scrub_hypothesis(bad, model, ds, n=200, seed=0)
    with pytest.raises(ScrubError) as batched:
        scrub_many([TOY_HYPOTHESES[0], bad], _NoModelWork(model), ds, n=200, seed=0)
    assert str(batched.value) == str(alone.value)


def test_batches_fit_the_memory_budget(tiny_model):
    ds = tiny_dataset()
    hs = [TINY_HYPOTHESES[k] for k in sorted(TINY_HYPOTHESES)]
    w, t = tiny_model.weights, ds.tokens.shape[1]
    needs = [Planned(h, *plan(h, tiny_model.info, ds, n=16, seed=3)).needs for h in hs]
    assert batches(needs, w, t, 10**12) == [list(range(len(hs)))]
    assert batches(needs, w, t, 1) == [[i] for i in range(len(hs))]
    # Room for the first two together, not for all of them.
    budget = CleanCache.buffer_bytes(w, t, experiment.union(needs[:2]))
    groups = batches(needs, w, t, budget)
    assert groups[0][:2] == [0, 1] and len(groups) > 1
    assert [i for g in groups for i in g] == list(range(len(hs)))
    for g in groups:
        merged = experiment.union([needs[i] for i in g])
        assert CleanCache.buffer_bytes(w, t, merged) <= budget
    # Batched under that budget, results are still each hypothesis's own.
    for h, r in zip(hs, scrub_many(hs, tiny_model, ds, n=16, seed=3, max_memory=budget)):
        assert_same(r, scrub_hypothesis(h, tiny_model, ds, n=16, seed=3, max_memory=budget))


def test_hook_backend_loops(tmp_path):
    slow = load_model(str(build_tiny_model_dir(tmp_path)), backend="hooks")
    assert slow.weights is None
    hs = [TINY_HYPOTHESES["chain-q-k-v"], TINY_HYPOTHESES["mlp-and-embed"]]
    ds = tiny_dataset()
    for h, r in zip(hs, scrub_many(hs, slow, ds, n=8, seed=1)):
        assert_same(r, scrub_hypothesis(h, slow, ds, n=8, seed=1))
