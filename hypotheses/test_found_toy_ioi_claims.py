"""The hypothesis `scrub discover` found on toy-ioi (found_toy_ioi.py), checked like any claim.

The search accepted it because it recovered at least its target, 0.9 (n = 200, seed 0); here it
must do so by 2 standard errors.
"""

import pytest

from scrub.runner.claims import assert_recovers

pytestmark = pytest.mark.scrub_claim(model="toy-ioi", n=200, seed=0)


def test_found_hypothesis_recovers_the_search_target(scrub):
    assert_recovers(scrub.run("found_toy_ioi.py::found"), at_least=0.9)
