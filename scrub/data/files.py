"""Read the plain data files under the repository's top-level ``datasets/`` folder.

``datasets/`` is data, never an importable package (that name would shadow Hugging Face's
``datasets``), so files are found by path: ``$SCRUB_DATASETS`` if set, else the folder beside the
``scrub`` package in a source checkout.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
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


#: The list files of an IOI vocabulary, and the field each fills.
LIST_FILES = {
    "templates_baba.txt": "templates",
    "names.txt": "names",
    "places.txt": "places",
    "objects.txt": "objects",
    "prefixes.txt": "prefixes",
}
#: Punctuation that a tokenizer splitting only on whitespace needs set off by spaces.
_PUNCTUATION = ",.;:!?"


def space_punctuation(text: str) -> str:
    """``text`` with , . ; : ! and ? set off by spaces (placeholders are left alone).

    >>> space_punctuation("When [B] went to the [PLACE], [B] said: hi.")
    'When [B] went to the [PLACE] , [B] said : hi .'
    """
    text = re.sub(rf"(?<=\S)([{_PUNCTUATION}])", r" \1", text)
    return re.sub(rf"([{_PUNCTUATION}])(?=\S)", r"\1 ", text)


@dataclass(frozen=True)
class IOIVocabulary:
    """The word lists an IOI dataset draws from, validated."""

    templates: tuple[str, ...]
    names: tuple[str, ...]
    places: tuple[str, ...]
    objects: tuple[str, ...]
    prefixes: tuple[str, ...]
    #: Where each list came from (field -> file), for messages.
    sources: tuple[tuple[str, str], ...] = ()

    @classmethod
    def load(cls, root: Path | None = None) -> IOIVocabulary:
        """The lists under ``root/ioi`` (default: :func:`datasets_dir`)."""
        return cls.from_folder((root or datasets_dir()) / "ioi", fallback=False)

    @classmethod
    def from_folder(cls, folder: Path, *, fallback: bool = True) -> IOIVocabulary:
        """The lists in ``folder`` (files named as in :data:`LIST_FILES`); with ``fallback``, a
        list the folder lacks is the shipped one.

        >>> IOIVocabulary.from_folder(Path("my_ioi")).sources  # doctest: +SKIP
        (('templates', 'my_ioi/templates_baba.txt'), ('names', 'my_ioi/names.txt'), ...)
        """
        folder = Path(folder)
        if fallback:
            if not folder.is_dir():
                raise ScrubError(f"templates folder {folder} does not exist", fix="check the path")
            if not any((folder / f).is_file() for f in LIST_FILES):
                raise ScrubError(
                    f"{folder} holds none of scrub's list files",
                    fix=f"add some of: {', '.join(LIST_FILES)} (one entry a line)",
                )
        shipped = None
        lists, sources = {}, []
        for fname, field in LIST_FILES.items():
            path = folder / fname
            if not path.is_file() and fallback:
                shipped = shipped or datasets_dir() / "ioi"
                path = shipped / fname
            lists[field] = read_list(path, what=field)
            sources.append((field, str(path)))
        for i, t in enumerate(lists["templates"]):
            check_template(t, i)
        return cls(**lists, sources=tuple(sources))

    def spaced(self) -> IOIVocabulary:
        """The same lists with punctuation set off by spaces in templates and prefixes."""
        return replace(
            self,
            templates=tuple(map(space_punctuation, self.templates)),
            prefixes=tuple(map(space_punctuation, self.prefixes)),
        )
