"""Patching results: the settings that produced them, one score per component, tables and JSON.

A :class:`PatchResult` is what every scan returns. Its tidy table has one row per sender (and
receiver set), with the settings repeated as columns so several results can be concatenated and
compared with plain pandas:

>>> frame = result.to_frame()                                  # doctest: +SKIP
>>> frame.pivot(index="layer", columns="head", values="normalized")   # doctest: +SKIP
>>> result.write_json(Path("runs/pp.json"))                    # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from scrub.atomic import atomic_path
from scrub.errors import ScrubError

#: Normalisations of a patched logit difference, by name.
#: ``clean=1,corrupted=0``: (patched - corrupted) / (clean - corrupted), the clean run scores 1.
#: ``no-harm=0,corrupted=-1``: (patched - clean) / (clean - corrupted), the field's damage scale.
NORMALIZATIONS = ("clean=1,corrupted=0", "no-harm=0,corrupted=-1")


def check_normalization(name: str) -> str:
    aliases = {"clean": NORMALIZATIONS[0], "damage": NORMALIZATIONS[1]}
    name = aliases.get(name, name)
    if name not in NORMALIZATIONS:
        raise ScrubError(
            f"unknown normalisation {name!r}",
            fix=f"use one of: clean ({NORMALIZATIONS[0]}), damage ({NORMALIZATIONS[1]})",
        )
    return name


def normalize_score(value: float, clean: float, corrupted: float, normalization: str) -> float:
    """Rescale a mean logit difference; NaN stays NaN (a sender that was skipped).

    >>> normalize_score(1.0, clean=3.0, corrupted=1.0, normalization="clean=1,corrupted=0")
    0.0
    >>> normalize_score(1.0, clean=3.0, corrupted=1.0, normalization="no-harm=0,corrupted=-1")
    -1.0
    """
    if clean == corrupted:
        raise ScrubError(
            "clean and corrupted logit differences are equal, so a normalised score is undefined",
            fix="use a corruption that changes the model's behaviour",
        )
    base = corrupted if check_normalization(normalization) == NORMALIZATIONS[0] else clean
    return (value - base) / (clean - corrupted)


@dataclass(frozen=True)
class PatchSettings:
    """Everything that determines a patching result, stated in every table row and JSON file.

    ``mlps`` is ``"free"`` or ``"frozen"`` for path patching and ``"n/a"`` for activation patching.
    Positions are a named position (``"END"``), ``"each"`` for a per-position scan, or None for
    every position.
    """

    experiment: str  # "path" or "activation"
    model: str
    senders: str  # "heads", "mlps", "heads+mlps", "resid_pre", "attn_out", "mlp_out", ...
    sender_position: str | None
    receivers: str  # "logits" or e.g. "q:9.6,9.9"
    receiver_position: str | None
    mlps: str
    normalization: str
    n: int
    corruption: str = ""
    seed: int | None = None


@dataclass(frozen=True)
class Score:
    """The effect of patching one component: its mean logit difference, raw and normalised.

    ``head`` is None for a non-head component; ``position`` is the named position or absolute index
    the component was patched at (None for every position). ``logit_diff`` is NaN when the
    component was skipped (a sender that is not upstream of the receivers).
    """

    component: str  # "head", "mlp", "resid_pre", "attn_out", "mlp_out"
    layer: int
    head: int | None
    position: str | int | None
    logit_diff: float
    normalized: float
    stderr: float  # standard error of the mean logit difference over examples


@dataclass(frozen=True, eq=False)
class PatchResult:
    """Settings, the clean and corrupted mean logit differences, and one :class:`Score` each."""

    settings: PatchSettings
    clean: float
    corrupted: float
    scores: tuple[Score, ...]
    #: Standard error of the mean of (clean - corrupted) over examples.
    gap_se: float = math.nan

    def warnings(self) -> tuple[str, ...]:
        """Why the normalised scores may mislead: the corruption does not lower the logit
        difference, or clean and corrupted are too close for a ratio over their gap.

        Normalised scores divide by ``clean - corrupted``, so each one's noise is its own SE over
        that gap. A gap under 2 SE is not distinguishable from zero; a gap under a tenth of the
        scores' size turns small changes into large normalised ones (10x or more).
        """
        c, k = self.clean, self.corrupted
        gap = c - k
        out = []
        if gap <= 0:
            out.append(
                f"the corrupted logit difference ({k:.3f}) is not below the clean one ({c:.3f}): "
                "the corruption does not hurt the task, so normalised scores are inverted (red "
                "cells raise the logit difference); use a corruption that lowers it"
            )
        if math.isfinite(self.gap_se) and abs(gap) < 2 * self.gap_se:
            out.append(
                f"clean and corrupted differ by {gap:.3f}, less than 2 SE ({self.gap_se:.3f}): "
                "normalised scores divide by noise; use more prompts or a stronger corruption"
            )
        elif abs(gap) < 0.1 * max(abs(c), abs(k)):
            out.append(
                f"clean ({c:.3f}) and corrupted ({k:.3f}) are within 10% of each other: "
                "normalised scores magnify small changes tenfold or more; use a stronger corruption"
            )
        return tuple(out)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> PatchResult:
        """The inverse of :meth:`to_json` (null scores become NaN)."""

        def num(x: Any) -> float:
            return math.nan if x is None else float(x)

        known = PatchSettings.__dataclass_fields__
        settings = PatchSettings(**{k: v for k, v in doc["settings"].items() if k in known})
        scores = tuple(
            Score(
                s["component"],
                int(s["layer"]),
                s.get("head"),
                s.get("position"),
                num(s.get("logit_diff")),
                num(s.get("normalized")),
                num(s.get("stderr")),
            )
            for s in doc["scores"]
        )
        return cls(
            settings,
            float(doc["clean"]),
            float(doc["corrupted"]),
            scores,
            num(doc.get("gap_se")),
        )

    def no_effect(self, column: str = "normalized") -> float:
        """The score of a component whose patch changes nothing, in ``column``."""
        if column != "normalized":
            return self.clean
        return 1.0 if self.settings.normalization == NORMALIZATIONS[0] else 0.0

    def to_frame(self) -> pd.DataFrame:
        """One row per component, settings as columns (prefixed where they would clash)."""
        rows = [asdict(s) for s in self.scores]
        frame = pd.DataFrame(rows, columns=list(Score.__dataclass_fields__))
        frame["head"] = frame["head"].astype("Int64")
        frame["clean"], frame["corrupted"] = self.clean, self.corrupted
        for key, value in asdict(self.settings).items():
            frame[key if key not in frame else f"setting_{key}"] = value
        return frame

    def to_json(self) -> dict[str, Any]:
        """The JSON document ``scrub patch --json`` writes (NaN scores become null)."""
        scores = []
        for s in self.scores:
            row: dict[str, Any] = {"component": s.component, "layer": s.layer}
            if s.head is not None:
                row["head"] = s.head
            row |= {
                "position": s.position,
                "logit_diff": _finite(s.logit_diff),
                "normalized": _finite(s.normalized),
                "stderr": _finite(s.stderr),
            }
            scores.append(row)
        return {
            "settings": asdict(self.settings),
            "clean": self.clean,
            "corrupted": self.corrupted,
            "gap_se": _finite(self.gap_se),
            "warnings": list(self.warnings()),
            "scores": scores,
        }

    def write_json(self, path: Path) -> None:
        """Write :meth:`to_json` to ``path``, complete or absent."""
        text = json.dumps(self.to_json(), indent=2, allow_nan=False)
        with atomic_path(Path(path)) as tmp:
            tmp.write_text(text + "\n", encoding="utf-8")


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else x


def build_result(
    settings: PatchSettings,
    clean: Tensor,
    corrupted: Tensor,
    labels: list[tuple[str, int, int | None, str | int | None]],
    per_example: Tensor,
) -> PatchResult:
    """Assemble a result from per-example logit differences ``per_example`` [components, n].

    ``labels[i]`` is (component, layer, head, position) of row i; a row of NaN is a skipped one.
    """
    c, k = float(clean.mean()), float(corrupted.mean())
    means = per_example.mean(1)
    n = per_example.shape[1]
    stderr = per_example.std(1) / math.sqrt(n) if n > 1 else torch.zeros_like(means)
    scores = tuple(
        Score(
            comp,
            layer,
            head,
            pos,
            float(m),
            normalize_score(float(m), c, k, settings.normalization),
            float(e),
        )
        for (comp, layer, head, pos), m, e in zip(labels, means, stderr)
    )
    gap = (clean - corrupted).double()
    gap_se = float(gap.std() / math.sqrt(len(gap))) if len(gap) > 1 else math.nan
    return PatchResult(settings=settings, clean=c, corrupted=k, scores=scores, gap_se=gap_se)
