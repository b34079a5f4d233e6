"""Induction claims: GPT-2 small's induction heads; toy-ioi has none."""

import pytest

from scrub.runner.claims import assert_recovers

HYP = "induction.py"


@pytest.mark.scrub_claim(model="toy-ioi", n=200, seed=0)
def test_toy_ioi_does_not_do_induction(scrub):
    # Measured: the toy prefers repeating END's token (clean logit difference about -5.0), so
    # there is no induction behaviour for a hypothesis to explain.
    result = scrub.run(f"{HYP}::toy_layer1")
    mean = result.clean.mean()
    se = result.clean.std(ddof=1) / len(result.clean) ** 0.5
    assert mean + 2 * se < 0, f"clean logit difference {mean:.3f} +- {se:.3f} (n={result.n})"


@pytest.mark.scrub_claim(model="gpt2-small", n=100, seed=0)
def test_gpt2_induction_heads_recover_most(scrub):
    assert_recovers(scrub.run(f"{HYP}::gpt2_induction"), at_least=0.5)
