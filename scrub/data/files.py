"""Read the plain data files under the repository's top-level ``datasets/`` folder.

``datasets/`` is data, never an importable package (that name would shadow Hugging Face's
``datasets``), so files are found by path: ``$SCRUB_DATASETS`` if set, else the folder beside the
``scrub`` package in a source checkout.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from scrub.errors import ScrubError

PLACEHOLDERS = ("[A]", "[B]", "[PLACE]", "[OBJECT]")
_PLACEHOLDER = re.compile(r"\[[A-Z]+\]")


def datasets_dir() -> Path:
    """The folder holding ``ioi/`` and ``induction/``."""
    env = os.environ.get("SCRUB_DATASETS")
    root = Path(env) if env else Path(__file__).resolve().parents[2] / "datasets"
    if not (root / "ioi").is_dir():
        raise ScrubError(
            f"dataset files not found at {root}",
            fix="run scrub from a source checkout (pip install -e .) or set SCRUB_DATASETS",
        )
    return root


def read_list(path: Path, *, what: str) -> tuple[str, ...]:
    """Non-empty, non-comment lines of ``path``; duplicates are an error."""
    if not path.is_file():
        raise ScrubError(f"{what} file {path} does not exist")
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    items = tuple(ln for ln in lines if ln and not ln.startswith("#"))
    seen: set[str] = set()
    dupes = sorted({x for x in items if x in seen or seen.add(x)})
    if dupes:
        raise ScrubError(
            f"{what} file {path} has duplicates: {', '.join(dupes)}", fix="list each entry once"
        )
    if not items:
        raise ScrubError(f"{what} file {path} is empty")
    return items


def check_template(template: str, index: int) -> None:
    """A BABA template: [A] and [B] twice each, [B] first, ending with the answer [A]."""
    unknown = sorted(set(_PLACEHOLDER.findall(template)) - set(PLACEHOLDERS))
    problems = []
    if unknown:
        problems.append(f"unknown placeholders {', '.join(unknown)}")
    if template.count("[A]") != 2 or template.count("[B]") != 2:
        problems.append("needs [A] and [B] exactly twice each")
    if not template.rstrip().endswith("[A]"):
        problems.append("must end with the answer [A]")
    elif template.find("[B]") > template.find("[A]"):
        problems.append("must name [B] before [A] in the first clause (BABA)")
    if problems:
        raise ScrubError(
            f"template {index} ({template!r}): {'; '.join(problems)}",
            fix="write templates like 'When [B] and [A] went to the [PLACE], [B] gave it to [A]'",
        )


@dataclass(frozen=True)
class IOIVocabulary:
    """The word lists an IOI dataset draws from, validated."""

    templates: tuple[str, ...]
    names: tuple[str, ...]
    places: tuple[str, ...]
    objects: tuple[str, ...]
    prefixes: tuple[str, ...]

    @classmethod
    def load(cls, root: Path | None = None) -> IOIVocabulary:
        d = (root or datasets_dir()) / "ioi"
        templates = read_list(d / "templates_baba.txt", what="templates")
        for i, t in enumerate(templates):
            check_template(t, i)
        return cls(
            templates=templates,
            names=read_list(d / "names.txt", what="names"),
            places=read_list(d / "places.txt", what="places"),
            objects=read_list(d / "objects.txt", what="objects"),
            prefixes=read_list(d / "prefixes.txt", what="prefixes"),
        )
