"""Switches read from the environment (``SCRUB_ALLOW_DOWNLOAD``, ``SCRUB_DEBUG``, ...).

>>> import os; os.environ["SCRUB_EXAMPLE"] = " Yes "
>>> flag("SCRUB_EXAMPLE"), flag("SCRUB_UNSET_EXAMPLE")
(True, False)
"""

from __future__ import annotations

import os

TRUE = ("1", "true", "yes", "on")


def flag(name: str) -> bool:
    """Whether the variable ``name`` is set to a true value (1, true, yes or on, any case)."""
    return os.environ.get(name, "").strip().lower() in TRUE
