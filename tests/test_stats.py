"""scrub.stats: paired differences against a slow jackknife, Holm by hand, the formal tests on the
hand-built golden model (whose answers follow from its construction), and a small calibration."""

from __future__ import annotations

import math
from types import MappingProxyType, SimpleNamespace

import numpy as np
import pytest
from test_scrub_golden import TRUE, _true_nodes, build_golden_model, golden_dataset

from scrub import OUTPUT, Hypothesis, heads, keep, node
from scrub.runner import claims
from scrub.stats import formal, ledger
from scrub.stats.calibration import calibrate
from scrub.stats.paired import difference, ratio_difference, recovered, shared_reference
from scrub.stats.result import Kind, holm

# -- paired differences ---------------------------------------------------------------------------


def _jackknife_se(x: np.ndarray, signs) -> float:
    """Slow reference: leave-one-example-out jackknife SE of the same statistic."""

    def stat(cols: np.ndarray) -> float:
        m = cols.mean(1)
        return float(sum(s * m[2 * j] / m[2 * j + 1] for j, s in enumerate(signs)))

    n = x.shape[1]
    leave = np.array([stat(np.delete(x, i, axis=1)) for i in range(n)])
    return math.sqrt((n - 1) / n * ((leave - leave.mean()) ** 2).sum())


def _fake(clean, scrubbed, random, *, ref=None, model="m"):
    n = len(clean)
    rows = {"": np.arange(n) if ref is None else np.asarray(ref)}
    return SimpleNamespace(
        hypothesis="h",
        n=n,
        clean=np.asarray(clean, float),
        scrubbed=np.asarray(scrubbed, float),
        random=np.asarray(random, float),
        settings={"model": model, "dataset": ["d"], "pool": 1000, "metric": "logit-diff"},
        assignment=SimpleNamespace(rows=MappingProxyType(rows)),
    )


def _correlated_pair(n=400, seed=0):
    rng = np.random.default_rng(seed)
    clean = 10 + rng.normal(0, 2, n)
    random = rng.normal(0, 3, n)
    shared = rng.normal(0, 3, n)  # what both scrubs inherit from the reference example
    a = _fake(clean, 0.8 * clean + shared + rng.normal(0, 0.5, n), random)
    b = _fake(clean, 0.6 * clean + shared + rng.normal(0, 0.5, n), random)
    return a, b


@pytest.mark.parametrize("signs", [(1.0,), (1.0, -1.0)])
def test_delta_method_se_matches_the_jackknife(signs):
    a, b = _correlated_pair()
    series = [a.scrubbed - a.random, a.clean - a.random, b.scrubbed - b.random, b.clean - b.random]
    x = np.stack(series[: 2 * len(signs)])
    value, se = ratio_difference(x, signs)
    assert se == pytest.approx(_jackknife_se(x, signs), rel=0.05)
    if len(signs) == 1:
        assert (value, se) == pytest.approx((recovered(a).value, recovered(a).se))


def test_paired_difference_is_tighter_and_falls_back_with_a_reason():
    a, b = _correlated_pair()
    d = difference(a, b)
    assert d.paired and d.note == ""
    independent = math.hypot(recovered(a).se, recovered(b).se)
    assert d.se < independent / 3  # the shared per-example noise cancels
    assert d.value == pytest.approx(recovered(a).value - recovered(b).value)
    moved = _fake(a.clean, a.scrubbed, a.random, ref=np.arange(a.n) + 1)
    assert shared_reference(moved, b) == "their reference rows differ"
    other = _fake(a.clean, a.scrubbed, a.random, model="other")
    assert "model differs" in shared_reference(other, b)
    fallback = difference(moved, b)
    assert not fallback.paired and "not paired (their reference rows differ)" in fallback.note
    assert fallback.se == pytest.approx(math.hypot(recovered(moved).se, recovered(b).se))


def test_equivalence_p_by_hand():
    from scrub.stats.paired import Estimate

    # H0 "|value| >= 0.1": z = (0.05 + 0.1) / 0.05 = 3 below, (0.1 - 0.05) / 0.05 = 1 above.
    assert Estimate(0.05, 0.05, 100).p_within(0.0, 0.1) == pytest.approx(0.158655, abs=1e-6)
    assert Estimate(0.05, 0.0, 100).p_within(0.0, 0.1) == 0.0  # no noise, inside
    assert Estimate(0.15, 0.0, 100).p_within(0.0, 0.1) == 1.0  # no noise, outside
    assert math.isnan(Estimate(math.nan, 0.1, 100).p_within(0.0, 0.1))


def test_holm_by_hand():
    # sorted 0.01 (x3), 0.03 (x2), 0.04 (x1) -> 0.03, 0.06, 0.06 (made non-decreasing)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.001, 0.2, 0.9]) == pytest.approx([1.0, 0.004, 0.6, 1.0])
    out = holm([0.02, math.nan])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1])


def test_claims_compare_paired_and_say_when_they_cannot():
    a, b = _correlated_pair()
    ledger.begin("t")
    # 0.2 apart: paired SE ~0.004 passes "by 0.17"; independent SEs (~0.03) would not.
    claims.assert_improves(a, b, by=0.17)
    with pytest.raises(AssertionError, match="not paired"):
        claims.assert_improves(_fake(a.clean, a.scrubbed, a.random, model="x"), b, by=0.17)
    recorded = ledger.take("t")
    assert [c["kind"] for c in recorded] == ["improves", "improves"]
    assert recorded[0]["passed"] and recorded[0]["p_value"] < 1e-6
    assert not recorded[1]["passed"]
    claims.assert_improves(a, b)  # outside a test page: nothing is recorded, nothing breaks
    assert ledger.take("t") == []


# -- formal tests on the golden model -------------------------------------------------------------


@pytest.fixture(scope="module")
def golden_setup(tmp_path_factory):
    model = build_golden_model(tmp_path_factory.mktemp("golden-stats"))
    return model, formal.Setup.on(model, golden_dataset(600, echo_rate=0.5), n=200, seed=0)


IDLE = node("idle", heads("1.2", at="END"), feeds=OUTPUT, rule=keep)  # head 1.2 writes nothing


def test_equivalence_and_localisation(golden_setup):
    _, setup = golden_setup
    eq = formal.equivalence(setup, TRUE)
    assert eq.kind is Kind.EQUIVALENCE and eq.passes(0.05) and abs(eq.estimate) < 1e-4
    # Without the suppression the story recovers ~1/2: far from equivalent.
    half = formal.equivalence(setup, Hypothesis("half", _true_nodes()[:2]))
    assert half.p_value > 0.99 and half.estimate == pytest.approx(-0.5, abs=0.1)
    # Scrub away 1.0 and 1.1's direct paths (and 0.0, 0.1's): nothing else writes the answer
    # (0.2 and 0.3 cancel, 1.2 and 1.3 write nothing), so the rest is at random.
    loc = formal.localisation(setup, TRUE, delta=0.2)
    assert loc.passes(0.05) and loc.ci[0] < 0 < loc.ci[1]
    assert (
        formal.localisation(setup, Hypothesis("push", _true_nodes()[:1]), delta=0.2).p_value > 0.5
    )


def test_minimality_costs_follow_the_construction(golden_setup):
    """Scrubbing any true node away loses its half of the logit difference: cost 1/2 (with
    random rows, E[vote] = 0). The idle head costs exactly 0 and is not necessary."""
    _, setup = golden_setup
    h = formal.with_node(TRUE, IDLE)
    null = formal.null_costs(setup, h, k=19)
    assert np.array_equal(null, formal.null_costs(setup, h, k=19))  # seeded: deterministic
    stats = {s.subject: s for s in formal.minimality(setup, h, null=null)}
    for name in ("push", "copy io", "suppress", "copy s"):
        s = stats[name]
        assert s.ci[0] < 0.5 < s.ci[1] or abs(s.estimate - 0.5) < 0.05, (name, s)
        assert s.passes(0.01), s
    assert stats["idle"].estimate == pytest.approx(0.0, abs=1e-6)
    assert not stats["idle"].passes(0.05)


def test_sufficiency_ranks_the_true_story_first(golden_setup):
    _, setup = golden_setup
    s = formal.sufficiency(setup, TRUE, k=19)
    assert s.p_value == pytest.approx(1 / 20)  # every random hypothesis recovers less
    assert s.estimate > 0.5


def test_random_draws_keep_the_shape():
    rng = np.random.default_rng(0)
    h = formal.with_node(TRUE, IDLE)
    shaped = formal.random_shape(h, 4, rng, 0)
    for a, b in zip(h.nodes, shaped.nodes):
        assert [(c.layer, c.position) for c in a.components] == [
            (c.layer, c.position) for c in b.components
        ]
        assert (a.feeds, a.rule, a.other) == (b.feeds, b.rule, b.other)
    taken = {c for n in h.nodes for c in n.components}
    for _ in range(50):
        try:
            extra = formal.random_node(h, 2, 4, rng)
        except Exception:  # noqa: BLE001  a taken head: the caller redraws
            continue
        assert extra.components[0] not in taken and extra.rule == keep


def test_calibration_small(golden_setup):
    """The paired null claims reject at about alpha, and 95% intervals cover the truth."""
    model, _ = golden_setup
    ds = golden_dataset(20 * 30, echo_rate=0.5, seed=3)
    h = Hypothesis("no suppress", _true_nodes()[:2])
    report = calibrate(model, ds, [h], n=30, seeds=10, slices=20)
    assert report.claims == 100 and report.intervals == 200
    # Binomial(100, 0.05): P(more than 12 false positives) ~ 0.002; deterministic given seeds.
    assert report.false_positive_rate <= 0.12
    assert report.coverage >= 0.88
