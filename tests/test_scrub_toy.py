"""The fast engine against the slow hook-based reference on the embedded toy-ioi model.

tests/test_scrub_engine.py does this on tiny random models with synthetic data; here the model is
the real checkpoint and the data real IOI prompts, including prompts whose named positions differ
between rows (random prefixes), so a child's output at S2 in its world lands at S2 of its
parent's world. The heads are only plausible roles: the comparison is of two engines, not a claim
about the circuit, so nothing depends on which circuit the checkpoint has.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scrub.data import corrupt, make_ioi
from scrub.errors import ScrubError
from scrub.models import load_model
from scrub.scrubbing.experiment import plan, scrub_hypothesis
from scrub.scrubbing.hooked import reference_logit_diffs
from scrub.scrubbing.hypothesis import OUTPUT, Embed, Hypothesis, agree, heads, keep, node, random

N, POOL = 12, 60
ATOL = 1e-9  # float64


@pytest.fixture(scope="module")
def toy():
    try:
        model = load_model("toy-ioi", dtype="float64")
    except ScrubError as e:  # the checkpoint is built by `python -m scrub.models.train_toy`
        pytest.skip(f"toy-ioi checkpoint unavailable: {e}")
    # In float64: the toy's logit differences reach ~18, where float32 rounding alone differs by
    # ~2e-5 between two orderings of the same sums; float64 shows the arithmetic is the same.
    return model


def ioi_hypothesis(n_layers: int, n_heads: int) -> Hypothesis:
    """An IOI-shaped story touching every slot and rule, scaled to the model's depth.

    Name movers (last layer, END) -> output agree io; S-inhibition (one layer down, END) ->
    name movers' queries agree order; induction at S2 -> S-inhibition values; previous-token at
    S1+1 -> induction keys; a duplicate-token head at S2 feeding both S-inhibition's values and
    induction's queries (a DAG node, treeified into two samples); the IO embedding -> name
    movers' values; a keep edge and a keep other-inputs rule.
    """
    top = n_layers - 1
    h0, h1, h2, h3 = (i % n_heads for i in range(4))  # any checkpoint shape with >= 3 layers
    return Hypothesis(
        "toy-ioi-everything",
        [
            node(
                "name movers",
                heads(f"{top}.{h0} {top}.{h1}", at="END"),
                feeds=OUTPUT,
                rule=agree("io", allow_self=True),
            ),
            node(
                "s-inhibition",
                heads(f"{top - 1}.{h2}", at="END"),
                feeds="name movers.q",
                rule=agree("order"),
            ),
            node(
                "induction",
                heads(f"{top - 2}.{h1}", at="S2"),
                feeds="s-inhibition.v",
                rule=agree("s", allow_self=True),
                other=keep,
            ),
            node("previous token", heads(f"0.{h3}", at="S1+1"), feeds="induction.k", rule=keep),
            node(
                "duplicate token",
                heads(f"0.{h1}", at="S2"),
                feeds=["s-inhibition.v", "induction.q"],
                rule=agree("order"),
            ),
            node("io embed", Embed("IO"), feeds="name movers.v", rule=agree("io", allow_self=True)),
            node("direct", heads(f"{top}.{h3}"), feeds=OUTPUT, rule=random),
        ],
    )


def _compare(model, ds, h, seed):
    result = scrub_hypothesis(h, model, ds, n=N, seed=seed)
    tree, a, ref, rnd = plan(h, model.info, ds, n=N, seed=seed)
    clean, scrubbed, random_ = reference_logit_diffs(model, ds, tree, a, ref, rnd)
    np.testing.assert_allclose(result.clean, clean, atol=ATOL, rtol=0)
    np.testing.assert_allclose(result.random, random_, atol=ATOL, rtol=0)
    np.testing.assert_allclose(result.scrubbed, scrubbed, atol=ATOL, rtol=0)
    # The scrub must change something, or the equality proves little.
    assert np.abs(result.scrubbed - result.clean).max() > 1e-3
    return result


def test_fast_equals_reference_on_toy_ioi(toy):
    torch.manual_seed(0)
    ds = make_ioi(POOL, seed=0, tokenizer=toy.tokenizer)
    _compare(toy, ds, ioi_hypothesis(toy.info.n_layers, toy.info.n_heads), seed=1)


def test_fast_equals_reference_with_prefixes(toy):
    """Every row gets 1-3 random prefix sentences: S2, S1+1, IO and END move between rows."""
    ds = corrupt(make_ioi(POOL, seed=1, tokenizer=toy.tokenizer), ["prefix"], seed=2)
    assert len(set(ds.positions["S2"].tolist())) > 3  # positions really differ between rows
    result = _compare(toy, ds, ioi_hypothesis(toy.info.n_layers, toy.info.n_heads), seed=4)
    # Some child is drawn from a row whose named position differs from its parent world's.
    a = result.assignment
    s2 = ds.positions["S2"].numpy()
    child = "name movers/s-inhibition/induction"
    assert (s2[a.rows[child]] != s2[a.other["name movers/s-inhibition"]]).any()
