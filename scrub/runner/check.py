"""``scrub check``: run the claims under ``hypotheses/`` with pytest and the scrub plugin.

Every argument is passed to pytest unchanged (``-k``, ``-x``, ``-n auto`` with pytest-xdist, ...);
when none of them names an existing path, ``hypotheses`` is added. The exit code is pytest's.

>>> check(["hypotheses/", "-q"])     # doctest: +SKIP
0
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

PLUGIN = "scrub.runner.plugin"
DEFAULT_PATH = "hypotheses"


def plugin_installed() -> bool:
    """Whether the ``pytest11`` entry point registers the plugin (then ``-p`` would clash)."""
    return any(ep.value == PLUGIN for ep in metadata.entry_points(group="pytest11"))


def _names_path(arg: str) -> bool:
    return not arg.startswith("-") and Path(arg.split("::")[0]).exists()


def pytest_args(args: Sequence[str], *, installed: bool | None = None) -> list[str]:
    """The pytest command line for ``scrub check ARGS``."""
    out = list(args)
    if not any(_names_path(a) for a in out):
        out.append(DEFAULT_PATH)
    # importlib mode: hypothesis folders need no __init__.py and never shadow each other.
    extra = ["--import-mode=importlib"]
    if not (plugin_installed() if installed is None else installed):
        extra += ["-p", PLUGIN]
    return extra + out


def check(args: Sequence[str]) -> int:
    """Run pytest over the claims; returns pytest's exit code."""
    import pytest

    return int(pytest.main(pytest_args(args)))
