"""``scrub check``: run the claims under ``hypotheses/`` with pytest and the scrub plugin.

Every argument is passed to pytest unchanged (``-k``, ``-x``, ``-n auto`` with pytest-xdist, ...);
when none of them names an existing path, ``hypotheses`` is added. The exit code is pytest's
(0 all passed, 1 some claim failed, 3 internal error, 5 nothing collected), except that bad input
is 2 like every scrub command (pytest's usage error 4, and its 2 for a collection error) and an
interrupt (Ctrl-C, SIGTERM) is 130. ``--help`` shows scrub's own options first; ``--pytest-help``
all of pytest's.

>>> check(["hypotheses/", "-q"])     # doctest: +SKIP
0
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

PLUGIN = "scrub.runner.plugin"
#: Loaded by ``scrub check`` only: claims files import helpers from their own folder.
OWN_IMPORTS = "scrub.runner.own_imports"
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
    return [*extra, "-p", OWN_IMPORTS, *out]


def help_text() -> str:
    """``scrub check --help``: scrub's own options first (read from the plugin itself), then
    where pytest's are."""
    from scrub.runner import plugin

    class _Group:
        def __init__(self) -> None:
            self.options: list[tuple[str, str]] = []

        def addoption(self, *names: str, **kw) -> None:
            flag = kw.get("action") in ("store_true", "store_false")
            metavar = "" if flag else " " + names[0].rsplit("-", 1)[-1].upper()
            self.options.append((", ".join(names) + metavar, kw.get("help", "")))

    group = _Group()

    class _Parser:
        def getgroup(self, *_args, **_kw) -> _Group:
            return group

    plugin.pytest_addoption(_Parser())
    width = max(len(n) for n, _ in group.options) + 2
    wrap = textwrap.TextWrapper(width=98, subsequent_indent=" " * (width + 2))
    return "\n".join(
        [
            "Usage: scrub check [PATHS...] [OPTIONS]",
            "",
            f"  Run the claims in PATHS (default: {DEFAULT_PATH}/) with pytest and the scrub",
            "  plugin. The exit code is pytest's; results go to runs/<time>-<id>/.",
            "",
            "scrub options:",
            *(wrap.fill(f"  {n:<{width}}{h}") for n, h in group.options),
            "",
            "pytest options (all of them work), most used:",
            "  -k EXPR       only claims whose names match EXPR",
            "  -x            stop at the first failing claim",
            "  -q / -v       less / more output; -rs lists skip reasons",
            "  -n auto       run claims in parallel (pytest-xdist)",
            "",
            "All of pytest's options: scrub check --pytest-help",
        ]
    )


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

    args = list(args)
    if "--pytest-help" in args:
        return int(pytest.main([*pytest_args([]), "--help"]))
    if "-h" in args or "--help" in args:
        print(help_text())
        return 0
    watch = _Interrupts()
    code = int(pytest.main(pytest_args(args), plugins=[watch]))
    if watch.seen:
        return EXIT_INTERRUPTED
    return 2 if code == pytest.ExitCode.USAGE_ERROR else code
