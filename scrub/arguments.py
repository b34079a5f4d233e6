"""Cheap checks of command-line values, run before any model loads or computation starts.

Each check raises :class:`ScrubError` naming the option, the value and the fix, so a bad value
costs the user a second, not a model load and a computation whose result cannot be written.
No torch import here.

>>> check_count(0, "--n")
Traceback (most recent call last):
...
scrub.errors.ScrubError: --n 0 must be at least 1; pass a positive number of examples
>>> parse_bytes("2GB", "--max-memory")
2147483648
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from scrub.errors import ScrubError

#: Memory one IOI prompt takes while a dataset is built and held (tokens, positions, features and
#: the Python prompt specs). A measurement, not a bound: 4.7-5.7 KB per prompt for 20,000-100,000
#: toy-ioi prompts (RSS growth); rounded up.
BYTES_PER_PROMPT = 6 * 1024
#: A dataset may take at most this share of the memory available when the command starts.
MEMORY_SHARE = 0.5


def check_count(value: int, option: str, *, what: str = "examples") -> int:
    if value < 1:
        raise ScrubError(
            f"{option} {value} must be at least 1", fix=f"pass a positive number of {what}"
        )
    return value


def check_seed(value: int, option: str = "--seed") -> int:
    if value < 0:
        raise ScrubError(f"{option} {value} is negative", fix="seeds are integers >= 0")
    return value


def check_pool(pool: int | None, n: int) -> int | None:
    """The resampling pool holds the n reference rows, so it has at least n rows."""
    if pool is None:
        return None
    check_count(pool, "--pool", what="rows")
    if pool < n:
        raise ScrubError(
            f"--pool {pool} is smaller than --n {n}: the reference examples are rows of the pool",
            fix=f"pass --pool {n} or more (or lower --n)",
        )
    return pool


def parse_bytes(text: str, option: str = "--max-memory") -> int:
    """``"2GB"``, ``"500MB"``, ``"64KB"`` or a plain byte count; positive and finite."""
    units = {"KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
    t = text.strip().upper()
    factor = next((f for unit, f in units.items() if t.endswith(unit)), 1)
    number = t[:-2] if factor != 1 else t
    try:
        value = float(number)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0 or value * factor < 1:
        raise ScrubError(
            f"{option} {text!r} is not a positive, finite size",
            fix="write e.g. 2GB, 500MB or a number of bytes",
        )
    return int(value * factor)


def available_memory() -> int | None:
    """Bytes the kernel says new allocations can get (``MemAvailable``); None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gb(x: float) -> str:
    """A size for people: ``"17.2 GB"``, ``"11.7 MB"``."""
    return f"{x / 1024**3:.1f} GB" if x >= 1024**3 else f"{x / 1024**2:.1f} MB"


def check_fits(rows: int, what: str, *, extra_bytes: int = 0, extra_what: str = "") -> None:
    """Refuse a dataset of ``rows`` prompts (plus a budget of ``extra_bytes``) that cannot fit.

    The dataset may take :data:`MEMORY_SHARE` of the memory available now, at
    :data:`BYTES_PER_PROMPT` per row; with the extra budget (e.g. ``--max-memory``, a cap the
    engine may fill) it must fit in what is available. So a command never starts what would
    swap or be killed. ``what`` names the setting at fault, e.g. ``"--n 3000000"``.
    """
    available = available_memory()
    if available is None:
        return
    data = rows * BYTES_PER_PROMPT
    if data > available * MEMORY_SHARE:
        raise ScrubError(
            f"{what} needs about {_gb(data)} of memory ({rows} prompts x "
            f"{BYTES_PER_PROMPT // 1024} KB), more than half of the {_gb(available)} available",
            fix=f"use at most about {int(available * MEMORY_SHARE) // BYTES_PER_PROMPT} rows, "
            f"or free memory",
        )
    if data + extra_bytes > available:
        raise ScrubError(
            f"{extra_what} {_gb(extra_bytes)} plus {_gb(data)} for {what} is more than the "
            f"{_gb(available)} of memory available",
            fix=f"lower {extra_what} to at most {_gb(available - data)}, or free memory",
        )


def check_output(path: Path, suffixes: Iterable[str], option: str) -> Path:
    """``path`` can receive a file: known suffix, not a directory, a writable parent (created).

    Writability is probed by creating and removing a temporary file in the parent, the only test
    that sees read-only filesystems, ``/proc`` and permission bits alike.
    """
    suffixes = tuple(suffixes)
    if path.is_dir():
        raise ScrubError(f"{option} {path} is a directory", fix="give a file path inside it")
    if path.suffix not in suffixes:
        raise ScrubError(
            f"{option} {path}: cannot write a {path.suffix or 'suffix-less'} file",
            fix=f"use a file ending in {', '.join(suffixes)}",
        )
    parent = path.parent
    ancestor = parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ScrubError(
            f"{option} {path}: {ancestor} is a file, not a directory",
            fix="choose an output path under a directory",
        )
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.probe.", suffix=".tmp", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ScrubError(
            f"{option} {path}: cannot write in {parent} ({e.strerror or e})",
            fix="choose a writable directory",
        ) from None
    return path


def check_model(name: str, option: str = "--model") -> str:
    """A built-in model name, or a local model directory that passes the preflight checks."""
    from scrub.models.preflight import check_model_dir

    path = Path(name).expanduser()
    if path.exists() and (os.sep in name or name.startswith(".") or path.is_dir()):
        check_model_dir(path)
        return name
    from scrub.models.load import available_models  # imports torch: only for a name

    if name not in available_models():
        raise ScrubError(
            f"{option} {name!r} is neither a built-in model nor a directory",
            fix=f"use one of: {', '.join(available_models())}, or a local Hugging Face model "
            f"directory",
        )
    return name


def check_tokenizer(spec: str, option: str = "--tokenizer") -> str:
    """``toy-ioi`` or a directory holding tokenizer files (named when missing or broken)."""
    from scrub.models.preflight import check_tokenizer_dir

    path = Path(spec).expanduser()
    if spec != "toy-ioi" and path.is_dir():
        check_tokenizer_dir(path)
    return spec
