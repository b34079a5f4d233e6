"""Statistics for scrub results: paired comparisons, formal circuit tests, Holm adjustment.

* :mod:`scrub.stats.paired`: recovered fractions and their paired differences (delta method).
* :mod:`scrub.stats.formal`: equivalence, localisation, minimality and sufficiency tests.
* :mod:`scrub.stats.result`: :class:`StatResult` (estimate, CI, p-value) and :func:`holm`.
* :mod:`scrub.stats.ledger`: the claims a pytest session makes, with raw and Holm p-values.
* :mod:`scrub.stats.calibration`: simulated claims under a true null (false positives, coverage).

Importing this package is light (numpy only); the engine loads when a test runs.
"""
