"""What every patching experiment starts from: row-aligned clean and corrupted prompts, the
components it patches, and the two cached runs (from :mod:`scrub.models.runs`).

>>> inputs = PatchInputs.from_promptsets(clean_ps, corrupted_ps)   # doctest: +SKIP
>>> clean, corrupt = run_caches(model.weights, inputs)             # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from scrub.errors import ScrubError
from scrub.models.runs import RunCache, check_right_padded, logit_diff_at_end, shared_run
from scrub.models.weights import ModelWeights

#: Per-row activations of one chunk are kept under this many bytes (a soft budget).
DEFAULT_BUDGET_BYTES = 256 * 2**20


@dataclass(frozen=True, eq=False)
class PatchInputs:
    """Row-aligned clean and corrupted prompts with the clean answers and named positions.

    Both token tensors are right-padded to the same width with identical ``mask`` (patching
    copies activations position by position, so row i of both sets must have the same length).
    ``positions`` maps names ("END", "S2", ...) to one index per row; "END" is required.

    >>> PatchInputs(clean, corrupted, mask, answers, {"END": end})   # doctest: +SKIP
    """

    clean: Int[Tensor, "n t"]
    corrupted: Int[Tensor, "n t"]
    mask: Bool[Tensor, "n t"]
    answers: Int[Tensor, "n 2"]
    positions: Mapping[str, Int[Tensor, " n"]]

    def __post_init__(self) -> None:
        if self.clean.shape != self.corrupted.shape:
            raise ScrubError(
                f"clean prompts have shape {tuple(self.clean.shape)} but corrupted prompts "
                f"{tuple(self.corrupted.shape)} (rows x tokens)",
                fix="use a corruption that keeps every prompt's length (e.g. abc, flip-io), "
                "with as many corrupted prompts as clean ones",
            )
        n, t = self.clean.shape
        if self.mask.shape != (n, t) or self.answers.shape != (n, 2):
            raise ScrubError(f"mask must be [{n}, {t}] and answers [{n}, 2]")
        check_right_padded(self.mask)
        if "END" not in self.positions:
            raise ScrubError("positions must include END", fix="pass positions={'END': ...}")
        for name, pos in self.positions.items():
            if pos.shape != (n,):
                raise ScrubError(f"position {name!r} must have one index per row ({n})")
        end = self.positions["END"]
        if bool((end < 0).any() | (end >= t).any()) or not bool(
            self.mask[torch.arange(n), end].all()
        ):
            raise ScrubError("END must be a real (unpadded) token of every row")
        object.__setattr__(self, "positions", MappingProxyType(dict(self.positions)))

    @classmethod
    def from_promptsets(cls, clean: Any, corrupted: Any) -> PatchInputs:
        """Adapt two row-aligned :class:`scrub.data.PromptSet` objects (clean answers are used)."""
        if len(clean) != len(corrupted):
            raise ScrubError(
                f"the clean set has {len(clean)} prompts but the corrupted set {len(corrupted)}",
                fix="corrupt the clean set itself so rows align",
            )
        if clean.tokens.shape != corrupted.tokens.shape or not torch.equal(
            clean.mask, corrupted.mask
        ):
            raise ScrubError(
                "clean and corrupted prompts differ in length",
                fix="use a corruption that keeps every prompt's length (e.g. abc, flip-io; "
                "not prefix)",
            )
        return cls(
            clean=clean.tokens,
            corrupted=corrupted.tokens,
            mask=clean.mask,
            answers=clean.answers,
            positions=dict(clean.positions),
        )

    @property
    def n(self) -> int:
        return self.clean.shape[0]

    @property
    def end(self) -> Int[Tensor, " n"]:
        return self.positions["END"]

    def position_mask(self, position: str | int | None) -> Bool[Tensor, "n t"]:
        """Which (row, token) a component patched at ``position`` covers.

        None is every position; a name is resolved per row; an int is an absolute index.
        """
        n, t = self.clean.shape
        if position is None:
            return torch.ones(n, t, dtype=torch.bool)
        if isinstance(position, int):
            if not 0 <= position < t:
                raise ScrubError(f"position {position} is outside 0-{t - 1}")
            return (torch.arange(t) == position)[None].expand(n, t).clone()
        return torch.arange(t)[None] == self.index(position)[:, None]

    def index(self, name: str) -> Int[Tensor, " n"]:
        """The per-row index of a named position, checked to exist in every row."""
        if name not in self.positions:
            raise ScrubError(
                f"the dataset has no position named {name!r}",
                fix=f"use one of: {', '.join(self.positions)}",
            )
        pos = self.positions[name]
        bad = (pos < 0) | (pos >= self.clean.shape[1])
        if bool(bad.any()):
            raise ScrubError(
                f"position {name!r} is undefined in {int(bad.sum())} of {self.n} rows",
                fix="choose a position every prompt has",
            )
        return pos


def run_cache(
    w: ModelWeights, tokens: Int[Tensor, "n t"], mask: Bool[Tensor, "n t"], end: Int[Tensor, " n"]
) -> RunCache:
    """Cache one forward pass of ``tokens`` (:func:`scrub.models.runs.shared_run`): the last
    block at END only."""
    return shared_run(w, tokens, mask, end)[0]


def run_caches(w: ModelWeights, inputs: PatchInputs) -> tuple[RunCache, RunCache]:
    """The clean and the corrupted run's caches, from one batched pass over both: a corrupted
    row shares its clean row's activations up to its first corrupted token."""
    n = inputs.n
    clean, corrupt = shared_run(
        w,
        torch.cat([inputs.clean, inputs.corrupted]),
        batch_rows(inputs.mask, 2),
        batch_rows(inputs.end, 2),
        [slice(0, n), slice(n, 2 * n)],
    )
    return clean, corrupt


def run_logit_diffs(
    w: ModelWeights, caches: tuple[RunCache, RunCache], inputs: PatchInputs
) -> tuple[Float[Tensor, " n"], Float[Tensor, " n"]]:
    """The clean and the corrupted run's own logit differences (the normalisation's ends)."""
    return tuple(logit_diff_at_end(w, c.final_end, inputs.answers).cpu() for c in caches)


def chunk_size(n: int, t: int, d_model: int, budget: int = DEFAULT_BUDGET_BYTES) -> int:
    """How many patches of ``n`` rows fit the budget (about 16 float32 [t, d] tensors a row)."""
    return max(1, budget // max(1, n * t * d_model * 4 * 16))


def batch_rows(x: Tensor, k: int) -> Tensor:
    """``x`` repeated for ``k`` patches: row ``s * n + i`` is patch s, example i."""
    return x.repeat(k, *([1] * (x.dim() - 1)))


@dataclass(frozen=True)
class Component:
    """A component whose output is patched: a head, a residual stream, attention or MLP output.

    ``position`` is None (every position), a named position resolved per row ("END"), or an
    absolute token index.

    >>> Component("head", 9, 6, "END")
    Component(kind='head', layer=9, head=6, position='END')
    """

    kind: str  # "head", "mlp" (path patching senders), "resid_pre", "attn_out", "mlp_out"
    layer: int
    head: int | None = None
    position: str | int | None = None

    def check(self, n_layers: int, n_heads: int, kinds: Sequence[str]) -> None:
        if self.kind not in kinds:
            raise ScrubError(
                f"unknown component kind {self.kind!r}", fix=f"use one of: {', '.join(kinds)}"
            )
        if not 0 <= self.layer < n_layers:
            raise ScrubError(
                f"layer {self.layer} does not exist: this model has layers 0-{n_layers - 1}"
            )
        if (self.kind == "head") != (self.head is not None):
            raise ScrubError(
                f"{self.kind} components {'need' if self.kind == 'head' else 'take no'} a head"
            )
        if self.head is not None and not 0 <= self.head < n_heads:
            raise ScrubError(
                f"head {self.layer}.{self.head} does not exist: layers have heads 0-{n_heads - 1}"
            )

    @property
    def label(self) -> tuple[str, int, int | None, str | int | None]:
        return (self.kind, self.layer, self.head, self.position)


def progress_bar(items: list, enabled: bool, desc: str):
    if not enabled or len(items) < 2:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, leave=False)
