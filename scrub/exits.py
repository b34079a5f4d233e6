"""Exit codes of the ``scrub`` command, and the one place every failure is turned into one.

=====  ==========================================================================================
code   meaning
=====  ==========================================================================================
0      success (``scrub check``: pytest's codes, 0 all claims passed, 1 some failed, ...)
1      a bug in scrub: the traceback is shown with ``scrub --debug ...`` or ``SCRUB_DEBUG=1``
2      bad input: usage (unknown option, missing or malformed value), a value out of range, a
       file that cannot be read or written, a broken model directory, an invalid hypothesis
130    interrupted (Ctrl-C / SIGINT); 143 terminated (SIGTERM)
=====  ==========================================================================================

Every failure gets one line on stderr (``error: ...``), and files being written are removed
(they are written through :func:`scrub.atomic.atomic_path`, so they are complete or absent).

>>> run_guarded(lambda: 0, debug=False)
0
"""

from __future__ import annotations

import contextlib
import enum
import signal
import sys
import traceback
from collections.abc import Callable, Iterator

from scrub import env
from scrub.errors import ScrubError


class ExitCode(enum.IntEnum):
    OK = 0
    BUG = 1
    BAD_INPUT = 2
    INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
    TERMINATED = 143  # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every ``finally`` (temp files, run status) runs."""


#: Set when SIGTERM arrived: typer turns any KeyboardInterrupt into exit code 130, losing which.
_terminated = False


def debug_requested(argv: list[str]) -> bool:
    """``scrub --debug ...`` (first argument only: ``--debug`` after a command is its own) or
    ``SCRUB_DEBUG=1``."""
    return env.flag("SCRUB_DEBUG") or argv[:1] == ["--debug"]


def _usage_error_classes() -> tuple[type[BaseException], ...]:
    """click's ``ClickException`` and, when typer bundles its own copy of click (typer 0.29
    raises ``typer._click.exceptions.ClickException``, unrelated to click's), that one too."""
    classes: list[type[BaseException]] = []
    with contextlib.suppress(ImportError):
        from click.exceptions import ClickException

        classes.append(ClickException)
    with contextlib.suppress(ImportError):
        from typer._click.exceptions import ClickException as TyperClickException

        classes.append(TyperClickException)
    return tuple(classes)


def _abort_classes() -> tuple[type[BaseException], ...]:
    classes: list[type[BaseException]] = []
    with contextlib.suppress(ImportError):
        from click.exceptions import Abort

        classes.append(Abort)
    with contextlib.suppress(ImportError):
        from typer.exceptions import Abort as TyperAbort

        classes.append(TyperAbort)
    return tuple(classes)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _error(message: str) -> None:
    print(f"error: {_one_line(message)}", file=sys.stderr, flush=True)


def _usage_message(e: BaseException) -> str:
    """click's message plus the command it belongs to (``scrub run: ...``) and the help hint."""
    ctx = getattr(e, "ctx", None)
    where = f"{ctx.command_path}: " if ctx is not None else ""
    message = e.format_message() if hasattr(e, "format_message") else str(e)
    hint = f"; see `{ctx.command_path} --help`" if ctx is not None else "; see `scrub --help`"
    return f"{where}{message.rstrip('.')}{hint}"


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Terminated` (default SIGTERM kills without cleanup)."""

    def handler(signum, frame):
        global _terminated
        _terminated = True
        raise Terminated()

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. called from a test runner's thread)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def exit_code_of(value: object) -> int:
    """An exit code from what a command returned or a ``SystemExit`` carried."""
    if value is None:
        return int(ExitCode.OK)
    if isinstance(value, int):
        return int(value)
    print(value, file=sys.stderr)  # sys.exit("message") semantics
    return int(ExitCode.BUG)


def _interrupt_code(code: int) -> int:
    """130 (typer's code for a KeyboardInterrupt, and ``scrub check``'s) gets its one line."""
    if code != ExitCode.INTERRUPTED:
        return code
    if _terminated:
        _error("terminated (SIGTERM); files being written were removed")
        return int(ExitCode.TERMINATED)
    _error("interrupted; files being written were removed")
    return int(ExitCode.INTERRUPTED)


def run_guarded(call: Callable[[], object], *, debug: bool) -> int:
    """Run ``call`` and map its outcome to an exit code, printing one line for any failure."""
    global _terminated
    _terminated = False
    try:
        with sigterm_as_interrupt():
            return _interrupt_code(exit_code_of(call()))
    except ScrubError as e:
        _error(str(e))
        if debug:
            traceback.print_exc()
        return int(ExitCode.BAD_INPUT)
    except KeyboardInterrupt:
        return _interrupt_code(int(ExitCode.INTERRUPTED))
    except SystemExit as e:
        return _interrupt_code(exit_code_of(e.code))
    except Exception as e:  # noqa: BLE001  the one place a bug becomes an exit code
        if isinstance(e, _usage_error_classes()):
            if type(e).__name__ != "NoArgsIsHelpError":  # `scrub` alone: the help was printed
                _error(_usage_message(e))
            return int(ExitCode.BAD_INPUT)
        if isinstance(e, _abort_classes()):  # older typer/click turn Ctrl-C into Abort
            return _interrupt_code(int(ExitCode.INTERRUPTED))
        if isinstance(e, OSError) and e.filename is not None:
            # A file the user named or that scrub writes for the user: bad input, not a bug.
            _error(f"cannot use {e.filename}: {e.strerror or e}")
            if debug:
                traceback.print_exc()
            return int(ExitCode.BAD_INPUT)
        if debug:
            traceback.print_exc()
        else:
            _error(
                f"internal error ({type(e).__name__}: {_one_line(str(e))[:300]}); this is a bug "
                f"in scrub: rerun with `scrub --debug ...` or SCRUB_DEBUG=1 for the traceback "
                f"and report it"
            )
        return int(ExitCode.BUG)
