"""Atomic file writes: a result on disk is complete or absent, never half-written.

The temporary file sits beside the target as ``.<name>.<pid>.<random>.tmp``. It is removed on
every exit path Python sees (success, exception, Ctrl-C, SIGTERM under the ``scrub`` command);
only SIGKILL or a power cut can leave one behind. Such leftovers are recognised by their dead
pid: readers skip and report them (:func:`stale_temp_files`) and the next write to the same
target, or the next run, removes them.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from scrub.errors import ScrubError

_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+\.tmp$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def is_stale_temp(path: Path) -> bool:
    """Whether ``path`` is a temp file of :func:`atomic_path` whose writer is gone.

    Only names of this module's pattern count, so other programs' temp files are never touched.
    """
    m = _TEMP.match(path.name)
    return m is not None and int(m["pid"]) != os.getpid() and not _pid_alive(int(m["pid"]))


def stale_temp_files(directory: Path, *, recursive: bool = False) -> list[Path]:
    """Leftover temp files under ``directory`` whose writer died (e.g. SIGKILL mid-write)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = directory.rglob(".*.tmp") if recursive else directory.glob(".*.tmp")
    return sorted(p for p in found if p.is_file() and is_stale_temp(p))


def remove_stale_temp_files(directory: Path, *, recursive: bool = False) -> list[Path]:
    """Delete :func:`stale_temp_files`; returns what was removed."""
    removed = []
    for p in stale_temp_files(directory, recursive=recursive):
        with contextlib.suppress(OSError):
            p.unlink()
            removed.append(p)
    return removed


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, else delete it.

    The file gets the mode a plain ``open(path, "w")`` would give (``0o666`` minus the umask),
    not ``mkstemp``'s private ``0o600``.

    >>> with atomic_path(Path("out.json")) as tmp:  # doctest: +SKIP
    ...     tmp.write_text("{}")
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for old in stale_temp_files(path.parent):
            m = _TEMP.match(old.name)
            if m is not None and m["name"] == path.name:
                old.unlink(missing_ok=True)
        fd, name = tempfile.mkstemp(
            prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent
        )
    except OSError as e:  # the place is not writable: name the file the user asked for
        raise ScrubError(
            f"cannot write {path}: {e.strerror or e}", fix="choose a writable location"
        ) from None
    tmp = Path(name)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        os.close(fd)
        yield tmp
        os.replace(tmp, path)  # atomic on POSIX within one filesystem
    finally:
        tmp.unlink(missing_ok=True)
