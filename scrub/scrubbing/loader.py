"""Load hypotheses from files: ``hypotheses/toy_ioi.py::full_circuit``.

A hypothesis file is a Python module; every module-level :class:`Hypothesis` is one named
hypothesis, found by its variable name or by its ``name``. It can import helpers from its own
folder (``from common import story``), as a script run from there could.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

from scrub.errors import ScrubError
from scrub.scrubbing.hypothesis import Hypothesis


def split_ref(ref: str) -> tuple[Path, str | None]:
    """``"file.py::name"`` -> (path, name); a bare path names no hypothesis."""
    path, sep, name = ref.partition("::")
    return Path(path), (name if sep else None)


def _top_level_names(folder: Path) -> set[str]:
    """Names ``import NAME`` would find in ``folder``: modules and packages."""
    names = {p.stem for p in folder.glob("*.py")}
    return names | {p.parent.name for p in folder.glob("*/__init__.py")}


@contextlib.contextmanager
def own_folder_importable(folder: Path, *, keep: str | None = None) -> Iterator[None]:
    """While the block runs, ``import helpers`` finds ``folder/helpers.py`` (first on the path).

    Afterwards ``sys.path`` is as before and the modules first imported from the folder are
    forgotten (whoever imported them keeps its references), so a ``helpers.py`` in another
    hypothesis folder is not shadowed by this one. Modules imported before, and ``keep`` (the
    importing module's own name, if it is one of the folder's), are left alone. (An ``import``
    run later, inside a function, does not see the folder.)
    """
    folder = Path(folder).resolve()
    fresh = _top_level_names(folder) - {k.partition(".")[0] for k in sys.modules} - {keep}
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        if str(folder) in sys.path:
            sys.path.remove(str(folder))
        for k in [k for k in sys.modules if k.partition(".")[0] in fresh]:
            del sys.modules[k]


def load_file(path: Path) -> dict[str, Hypothesis]:
    """Import ``path`` and return its hypotheses by variable name (in definition order)."""
    path = Path(path)
    if not path.is_file():
        raise ScrubError(f"hypothesis file {path} does not exist", fix="check the path")
    # A name unique to the file's location, so two files called toy_ioi.py do not collide.
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    mod_name = f"scrub_hypotheses_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise ScrubError(f"{path} is not a Python file", fix="hypothesis files end in .py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        with own_folder_importable(path.parent):
            spec.loader.exec_module(module)
    except Exception as e:  # any error in user code: report it as bad input, with its cause
        sys.modules.pop(mod_name, None)
        raise ScrubError(
            f"hypothesis file {path} does not import: {type(e).__name__}: {e}",
            fix=f"run `python {path}` to see the full traceback",
        ) from e
    found = {k: v for k, v in vars(module).items() if isinstance(v, Hypothesis)}
    if not found:
        raise ScrubError(
            f"{path} defines no hypothesis",
            fix="assign Hypothesis(...) values to module-level names",
        )
    return found


def load_hypothesis(ref: str) -> Hypothesis:
    """The hypothesis ``FILE::NAME`` (NAME may be omitted when the file defines exactly one)."""
    path, name = split_ref(ref)
    found = load_file(path)
    if name is None:
        if len(found) == 1:
            return next(iter(found.values()))
        raise ScrubError(
            f"{path} defines {len(found)} hypotheses",
            fix=f"name one: {', '.join(f'{path}::{k}' for k in found)}",
        )
    by_name = {**{h.name: h for h in found.values()}, **found}
    if name in by_name:
        return by_name[name]
    close = difflib.get_close_matches(name, list(by_name), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"choose from {', '.join(found)}"
    raise ScrubError(f"{path} has no hypothesis {name!r}", fix=hint)
