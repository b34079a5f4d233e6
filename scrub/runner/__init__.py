"""The claim runner: a pytest plugin, noise-aware claims, stored runs, drawings.

>>> from scrub.runner import assert_recovers     # doctest: +SKIP
"""

from scrub.runner.claims import (
    assert_improves,
    assert_recovers,
    assert_recovers_at_most,
    assert_similar,
)

__all__ = ["assert_improves", "assert_recovers", "assert_recovers_at_most", "assert_similar"]
