"""User-facing errors.

Every error a user can cause by bad input is a :class:`ScrubError` whose message names the problem
and the fix. The CLI turns it into one line on stderr and exit code 2; nothing else is caught.
"""

from __future__ import annotations


class ScrubError(ValueError):
    """Bad input: the message says what is wrong and how to fix it.

    >>> raise ScrubError("unknown corruption 'flipio'", fix="use one of: flip-io, flip-s")
    Traceback (most recent call last):
    ...
    scrub.errors.ScrubError: unknown corruption 'flipio'; use one of: flip-io, flip-s
    """

    def __init__(self, problem: str, *, fix: str | None = None):
        super().__init__(problem if fix is None else f"{problem}; {fix}")
        self.problem = problem
        self.fix = fix
