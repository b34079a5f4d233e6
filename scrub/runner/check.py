"""``scrub check``: run the claims under ``hypotheses/`` with pytest and the scrub plugin.

Every argument is passed to pytest unchanged (``-k``, ``-x``, ``-n auto`` with pytest-xdist, ...);
when none of them names an existing path, ``hypotheses`` is added. The exit code is pytest's
(0 all passed, 1 some claim failed, 3 internal error, 5 nothing collected), except that bad input
is 2 like every scrub command (pytest's usage error 4, and its 2 for a collection error) and an
interrupt (Ctrl-C, SIGTERM) is 130.

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


class _Interrupts:
    """Sees whether pytest's session ended by a KeyboardInterrupt (its exit code 2 is shared)."""

    seen = False

    def pytest_keyboard_interrupt(self, excinfo) -> None:
        self.seen = excinfo.errisinstance(KeyboardInterrupt)  # not pytest.exit()


#: Interrupted, as every scrub command reports it (128 + SIGINT).
EXIT_INTERRUPTED = 130


def check(args: Sequence[str]) -> int:
    """Run pytest over the claims; returns the exit code (see the module docstring)."""
    import pytest

    watch = _Interrupts()
    code = int(pytest.main(pytest_args(args), plugins=[watch]))
    if watch.seen:
        return EXIT_INTERRUPTED
    return 2 if code == pytest.ExitCode.USAGE_ERROR else code
