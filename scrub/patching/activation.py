"""Activation patching, and the cached runs every patching experiment starts from.

Semantics (noising): the clean prompts run, one component's output is replaced by its value on the
row-aligned corrupted prompt, the rest of the model runs freely, and the metric is the logit
difference logit(IO) - logit(S) at END under the clean answers.

How it is made fast (same arithmetic as one full forward pass per patch, less work):

* the clean and corrupted runs are computed once and cached (residual streams, per-head z, MLP
  outputs) with the functional kernel, no hooks;
* a patch starts at the layer it changes, from the cached clean residual stream;
* all patches starting at one layer share one batched pass (chunked to a memory budget);
* the last layer computes its queries, its MLP and the unembedding at END only, and only the two
  answer columns.

>>> inputs = PatchInputs.from_promptsets(clean_ps, corrupted_ps)     # doctest: +SKIP
>>> result = activation_scan(model, inputs, "heads", position="END")  # doctest: +SKIP
>>> result.to_frame().head()                                          # doctest: +SKIP
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from scrub.errors import ScrubError
from scrub.models.kernel import (
    GPT2Weights,
    add_mlp,
    allowed_keys,
    attend_z,
    layer_norm,
    linear,
    mlp,
    project_qkv,
    unembed,
)
from scrub.patching.results import PatchResult, PatchSettings, build_result, check_normalization

#: Components activation patching can replace.
ACTIVATION_KINDS = ("head", "resid_pre", "attn_out", "mlp_out")
#: Per-row activations of one chunk are kept under this many bytes (a soft budget).
DEFAULT_BUDGET_BYTES = 256 * 2**20


# ----------------------------------------------------------------------------- inputs


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


def check_right_padded(mask: Bool[Tensor, "n t"]) -> None:
    """Every row's real tokens first, then its padding (the cached runs rely on it)."""
    if not torch.equal(mask, torch.arange(mask.shape[1]) < mask.sum(1, keepdim=True)):
        raise ScrubError(
            "the prompts' mask is not right-padded (each row's real tokens first, then padding)",
            fix="pad on the right, as scrub.data's PromptSets do",
        )


# ----------------------------------------------------------------------------- cached runs


class _Lazy(Sequence[Tensor]):
    """A read-only tuple of tensors, each built on its first read.

    An experiment reads few of a cache's [n, t, ...] tensors (path patching to the logits reads
    z and the final residual at END); building the others would cost time and fresh memory.
    """

    def __init__(self, makers: Sequence[Callable[[], Tensor]]) -> None:
        self._makers, self._made = tuple(makers), {}

    def __len__(self) -> int:
        return len(self._makers)

    def __getitem__(self, i: int) -> Tensor:  # type: ignore[override]
        i = range(len(self._makers))[i]  # negative indices; IndexError ends iteration
        if i not in self._made:
            self._made[i] = self._makers[i]()
        return self._made[i]


@dataclass(frozen=True, eq=False)
class RunCache:
    """Activations of one plain forward pass (kernel, no hooks), one tensor a layer.

    ``resid_pre[L]`` for L < n_layers is block L's input and ``resid_pre[n_layers]`` the final
    residual stream (the input of ln_f); ``final_end`` is that stream at END. ``z`` is per head
    before W_O (a head's result is ``z[L][:, :, h] @ W_O[h]``); ``attn_out`` includes b_O. Each
    field indexes like a tuple and builds a tensor when it is first read. Tensors are shared,
    not copied (e.g. ``resid_pre[L + 1] is resid_mid[L]`` when MLP L is exactly zero), so treat
    them as read-only.
    """

    resid_pre: Sequence[Float[Tensor, "n t d_model"]]  # n_layers + 1
    resid_mid: Sequence[Float[Tensor, "n t d_model"]]
    z: Sequence[Float[Tensor, "n t head d_head"]]
    attn_out: Sequence[Float[Tensor, "n t d_model"]]
    mlp_out: Sequence[Float[Tensor, "n t d_model"]]
    final_end: Float[Tensor, "n d_model"]

    def head_result(self, w: GPT2Weights, layer: int, head: int) -> Float[Tensor, "n t d_model"]:
        return self.z[layer][:, :, head] @ w.layers[layer].W_O[head]


def run_cache(
    w: GPT2Weights, tokens: Int[Tensor, "n t"], mask: Bool[Tensor, "n t"], end: Int[Tensor, " n"]
) -> RunCache:
    """Cache one forward pass of ``tokens`` (the same arithmetic as :func:`kernel.forward`).

    Every patching experiment reads the last block's outputs at END only (nothing downstream of
    the last block but the logits at END), so the last block is computed at END only: its z,
    attn_out, resid_mid, mlp_out and the final residual are NaN at other positions (mlp_out is 0
    everywhere for a zero MLP). Rows must be right-padded, and padding (``mask`` False) is
    mostly not computed: a padded position holds finite filler that no real position reads.

    Attention is causal, so rows with the same tokens up to a position have the same
    activations there: each distinct prefix is computed once (on IOI prompts, the shared
    template start and, in a corrupted run, everything before the first corrupted token).
    """
    check_right_padded(mask)
    return _run_shared(w, tokens, mask, end, [slice(0, tokens.shape[0])])[0]


def run_caches(w: GPT2Weights, inputs: PatchInputs) -> tuple[RunCache, RunCache]:
    """The clean and the corrupted run's caches, from one batched pass over both: a corrupted
    row shares its clean row's activations up to its first corrupted token (see
    :func:`run_cache`)."""
    n = inputs.n
    clean, corrupt = _run_shared(
        w,
        torch.cat([inputs.clean, inputs.corrupted]),
        batch_rows(inputs.mask, 2),
        batch_rows(inputs.end, 2),
        [slice(0, n), slice(n, 2 * n)],
    )
    return clean, corrupt


def prefix_sources(tokens: Int[Tensor, "n t"], mask: Bool[Tensor, "n t"]) -> Int[Tensor, "n t"]:
    """For each (row i, position p), ``j * t + p`` for a row j whose tokens and mask at positions
    0..p equal row i's, the same j for every row sharing that prefix (and j is its own source).

    >>> prefix_sources(torch.tensor([[5, 6], [5, 7], [5, 6]]), torch.ones(3, 2, dtype=torch.bool))
    tensor([[0, 1],
            [0, 3],
            [0, 1]])
    """
    n, t = tokens.shape
    keys = tokens * 2 + mask  # a padded position never matches a real one
    # Rows sorted lexicographically (stable, column 0 first): the rows sharing a prefix are
    # adjacent, and its group starts where a row first differs from the row before it by p.
    order = torch.from_numpy(np.lexsort(keys.numpy().T[::-1]))
    ordered = keys[order]
    same_as_previous = torch.zeros((n, t), dtype=torch.bool)
    same_as_previous[1:] = (ordered[1:] == ordered[:-1]).cummin(1).values
    sorted_index = torch.arange(n)[:, None].expand(n, t)
    group_start = torch.where(same_as_previous, 0, sorted_index).cummax(0).values
    source = torch.empty((n, t), dtype=torch.long)
    source[order] = order[group_start]
    return source * t + torch.arange(t)


def _length_buckets(
    lengths: Int[Tensor, " n"],
) -> tuple[Int[Tensor, " n"], list[tuple[int, int, int]]]:
    """Rows sorted by length, and one or two buckets ``(first, stop, width)`` of sorted rows: the
    cut that minimises the attended positions, rows x width (a padded position costs as much
    as a real one).

    >>> _length_buckets(torch.tensor([9, 3, 4, 3]))
    (tensor([1, 3, 2, 0]), [(0, 3, 4), (3, 4, 9)])
    """
    order = lengths.argsort(stable=True)
    ordered = lengths[order]
    n, widest = ordered.shape[0], int(ordered[-1])
    k = torch.arange(1, n + 1)
    cut = int((k * ordered + (n - k) * widest).argmin()) + 1  # the first bucket's rows
    if cut == n:
        return order, [(0, n, widest)]
    return order, [(0, cut, int(ordered[cut - 1])), (cut, n, widest)]


def _run_shared(
    w: GPT2Weights,
    tokens: Int[Tensor, "n t"],
    mask: Bool[Tensor, "n t"],
    end: Int[Tensor, " n"],
    parts: Sequence[slice],
) -> list[RunCache]:
    """:func:`run_cache` of all rows, returned as one cache per slice of rows in ``parts``.

    Only the distinct unpadded prefixes (:func:`prefix_sources`) go through the matmuls: they
    are computed packed ([positions, ...]) and gathered into the [n, t, ...] layout for
    attention, and for the cache when a field is read. On toy-ioi's IOI prompts with ABC
    corruption the matmuls see a third fewer positions, and the gathers (memory copies) cost
    much less than that. Attention runs on whole rows, sorted by length and cut into buckets
    no wider than their longest row (:func:`_length_buckets`): a shared or padded query
    recomputes a copied or ignored value, and most padding is skipped.
    """
    n, t = tokens.shape
    last = len(w.layers) - 1
    # Padding takes the row's position 0 (through its source), so position 0 is always real.
    real = mask | (torch.arange(t) == 0)
    source = prefix_sources(tokens, mask)
    source = torch.where(real, source, source[:, :1]).flatten()
    computed = (source == torch.arange(n * t)).nonzero()[:, 0]
    packed = torch.empty(n * t, dtype=torch.long)
    packed[computed] = torch.arange(computed.shape[0])
    gather = packed[source].view(n, t)  # each (row, position)'s index among the computed ones

    # How each part's tensor of a field is built from what the pass computed.
    def full(x: Tensor) -> Callable[[slice], Tensor]:  # packed [computed, ...]
        return lambda part: x.index_select(0, gather[part].flatten()).unflatten(0, (-1, t))

    def rows_of(x: Tensor) -> Callable[[slice], Tensor]:  # [n, t, ...]
        return lambda part: x[part]

    def at_end(x: Tensor) -> Callable[[slice], Tensor]:  # [n, ...] at END, NaN elsewhere
        def make(part: slice) -> Tensor:
            rows = x[part]
            out = rows.new_full((rows.shape[0], t, *rows.shape[1:]), float("nan"))
            out[torch.arange(rows.shape[0]), end[part]] = rows
            return out

        return make

    with torch.no_grad():
        # kernel.embed at the computed positions. Block 0's input depends on (token, position)
        # alone, and IOI prompts share most pairs (BOS, template words at the same index): its
        # LayerNorm and q|k|v projection run once per distinct pair (a quarter of the positions).
        pair_key = tokens.flatten()[computed] * t + computed % t
        pair, of_pair = torch.unique(pair_key, return_inverse=True)
        x = w.W_E.index_select(0, pair // t) + w.W_pos.index_select(0, pair % t)
        project_from, project_at = x, of_pair[gather.flatten()]  # rows to project, (i, p)'s row
        x = x.index_select(0, of_pair)
        pre, mid, zs, attn, mlps = [full(x)], [], [], [], []
        zeros = rows_of(x.new_zeros(()).expand(n, t, x.shape[-1]))  # a zero MLP: no memory
        by_length, buckets = _length_buckets(mask.sum(1))  # attention's rows
        for layer in range(last):
            lw = w.layers[layer]
            qkv = project_qkv(w, layer, ln1(w, layer, project_from))
            qkv = qkv.index_select(0, project_at.view(n, t)[by_length].flatten())
            qkv = qkv.view(n, t, *qkv.shape[1:])
            z = qkv.new_zeros(n, t, *qkv.shape[3:])  # 0 past a bucket's width
            for first, stop, width in buckets:
                q, k, v = qkv[first:stop, :width].unbind(2)
                # right-padded (checked): causality keeps real queries off the padding
                z_rows = attend_z(q, k, v, lw.attn_scale, None, None)
                z[:, :width].index_copy_(0, by_length[first:stop], z_rows)
            zs.append(rows_of(z))
            a = heads_out(w, layer, z.view(n * t, *z.shape[2:]).index_select(0, computed))
            attn.append(full(a))
            x = x + a
            mid.append(full(x))
            if lw.mlp_is_zero:
                mlps.append(zeros)
                pre.append(mid[-1])
            else:
                m = mlp(w, layer, x)
                mlps.append(full(m))
                x = x + m
                pre.append(full(x))
            project_from, project_at = x, gather.flatten()
        # The last block at END only (its fields are NaN elsewhere): one query a row, reading
        # residuals LayerNormed at the computed positions only.
        x_ln = ln1(w, last, x).index_select(0, gather.flatten()).unflatten(0, (n, t))
        rows = torch.arange(n)
        q = project(w, last, x_ln[rows, end][:, None], "q")
        z = _one_query_z(w, last, q, x_ln, torch.arange(t) <= end[:, None])[:, 0]
        attn_end = heads_out(w, last, z)
        mid_end = x.index_select(0, gather[rows, end]) + attn_end
        zs.append(at_end(z))
        attn.append(at_end(attn_end))
        mid.append(at_end(mid_end))
        if w.layers[last].mlp_is_zero:
            final = mid_end
            mlps.append(zeros)
            pre.append(mid[-1])
        else:
            mlp_end = mlp(w, last, mid_end)
            final = mid_end + mlp_end
            mlps.append(at_end(mlp_end))
            pre.append(at_end(final))

    def cache(part: slice) -> RunCache:
        fields = (pre, mid, zs, attn, mlps)
        lazy = (_Lazy([functools.partial(make, part) for make in f]) for f in fields)
        return RunCache(*lazy, final_end=final[part])

    return [cache(part) for part in parts]


def run_logit_diffs(
    w: GPT2Weights, caches: tuple[RunCache, RunCache], inputs: PatchInputs
) -> tuple[Float[Tensor, " n"], Float[Tensor, " n"]]:
    """The clean and the corrupted run's own logit differences (the normalisation's ends)."""
    return tuple(logit_diff_at_end(w, c.final_end, inputs.answers) for c in caches)


def logit_diff_at_end(
    w: GPT2Weights, resid_end: Float[Tensor, "b d_model"], answers: Int[Tensor, "b 2"]
) -> Float[Tensor, " b"]:
    """logit(IO) - logit(S) from final residuals at END, computing only the two columns."""
    pair = unembed(w, resid_end, columns=answers)
    return pair[:, 0] - pair[:, 1]


# ----------------------------------------------------------------------------- the layer runner


@dataclass(frozen=True, eq=False)
class SlotPatch:
    """Replace some heads' q, k or v input (pre-LayerNorm residual) where ``where`` is True."""

    heads: Int[Tensor, " r"]
    slot: str  # "q", "k" or "v"
    value: Float[Tensor, "b t d_model"]
    where: Bool[Tensor, "b t"]


def project(
    w: GPT2Weights,
    layer: int,
    x_ln: Float[Tensor, "*b d_model"],
    slot: str,
    heads: Tensor | None = None,
) -> Float[Tensor, "*b head d_head"]:
    """Per-head q, k or v from LayerNormed residuals (optionally only some heads).

    One matmul against the heads' weights laid side by side (with all heads a view of the
    slot's dense weight, which takes oneDNN's GEMM), rather than a batched per-head product.
    """
    lw = w.layers[layer]
    W, b = {"q": (lw.W_Q, lw.b_Q), "k": (lw.W_K, lw.b_K), "v": (lw.W_V, lw.b_V)}[slot]
    if heads is not None:
        W, b = W[heads], b[heads]
    h, d, e = W.shape
    out = linear(x_ln, W.permute(1, 0, 2).reshape(d, h * e), b.reshape(h * e))
    return out.unflatten(-1, (h, e))


def ln1(w: GPT2Weights, layer: int, x: Tensor) -> Tensor:
    lw = w.layers[layer]
    return layer_norm(x, lw.ln1_w, lw.ln1_b, w.eps)


def attention_z(
    w: GPT2Weights,
    layer: int,
    resid: Float[Tensor, "b t d_model"],
    mask: Bool[Tensor, "b t"],
    q_index: Int[Tensor, " b"] | None = None,
    patch: SlotPatch | None = None,
) -> Float[Tensor, "b q head d_head"]:
    """Per-head z of ``layer``, with every head reading ``resid`` except where ``patch`` says.

    Unlike :func:`kernel.attention` this never builds per-head residual copies [b, t, H, d]: q, k
    and v are projected from one LayerNorm, and only the patched heads' slot is recomputed.
    With ``q_index`` only that one query position per row is computed (q = 1).
    """
    b, t, _ = resid.shape
    rows = torch.arange(b)
    x = ln1(w, layer, resid)

    def slot(name: str, x_ln: Tensor, index: Tensor | None) -> Tensor:
        out = project(w, layer, x_ln, name)
        if patch is None or patch.slot != name:
            return out
        value, where = patch.value, patch.where
        if index is not None:
            value, where = value[rows, index][:, None], where[rows, index][:, None]
        new = project(w, layer, ln1(w, layer, value), name, patch.heads)
        out[:, :, patch.heads] = torch.where(where[:, :, None, None], new, out[:, :, patch.heads])
        return out

    if q_index is None:
        q_pos = torch.arange(t)
        q = slot("q", x, None)
    else:
        q_pos = q_index[:, None]
        q = slot("q", x[rows, q_index][:, None], q_index)
        if patch is None or patch.slot == "q":
            return _one_query_z(w, layer, q, x, allowed_keys(t, q_pos, mask)[:, 0, 0])
    return attend_z(
        q, slot("k", x, None), slot("v", x, None), w.layers[layer].attn_scale, q_pos, mask
    )


def _one_query_z(
    w: GPT2Weights,
    layer: int,
    q: Float[Tensor, "b 1 head d_head"],
    x_ln: Float[Tensor, "b t d_model"],
    allowed: Bool[Tensor, "b t"],
) -> Float[Tensor, "b 1 head d_head"]:
    """z of one query per row, without projecting keys and values at every position.

    Reassociated, equal to rounding: q . (x W_K + b_K) = (W_K q) . x + q . b_K, and
    sum_t p_t (x_t W_V + b_V) = (sum_t p_t x_t) W_V + b_V as the p_t sum to 1. Two [t, d] x [d]
    products per head replace the k and v projections of every position (two [b t, d] x [d, d]
    matmuls, the bulk of a last block computed at END only).
    """
    lw = w.layers[layer]
    q = q[:, 0]
    q_k = torch.einsum("bhe,hde->bhd", q, lw.W_K)
    scores = (torch.einsum("bhd,btd->bht", q_k, x_ln) + (q * lw.b_K).sum(-1)[..., None]) / (
        lw.attn_scale
    )
    # The dtype's minimum rather than -inf, as kernel.attend does.
    pattern = scores.masked_fill(~allowed[:, None], torch.finfo(scores.dtype).min).softmax(-1)
    mixed = torch.einsum("bht,btd->bhd", pattern, x_ln)
    return (torch.einsum("bhd,hde->bhe", mixed, lw.W_V) + lw.b_V)[:, None]


def heads_out(w: GPT2Weights, layer: int, z: Float[Tensor, "*b head d_head"]) -> Tensor:
    """The attention block's output: every head's z @ W_O summed, plus b_O."""
    lw = w.layers[layer]
    return linear(z.flatten(-2), lw.W_O.reshape(-1, lw.W_O.shape[-1]), lw.b_O)


def run_free(
    w: GPT2Weights,
    resid: Float[Tensor, "b t d_model"],
    layer: int,
    stage: str,
    mask: Bool[Tensor, "b t"],
    end: Int[Tensor, " b"],
    answers: Int[Tensor, "b 2"],
    patches: Mapping[int, SlotPatch] | None = None,
) -> Float[Tensor, " b"]:
    """Run from a residual stream to the logit difference at END, every component free.

    ``resid`` is block ``layer``'s input (``stage="pre"``) or its MLP input (``stage="mid"``);
    ``layer == n_layers`` with "pre" means the final residual. ``patches[L]`` replaces some heads'
    slot inputs in block L. The last block computes only END's query, MLP and two logits.
    """
    patches = patches or {}
    n_layers = len(w.layers)
    rows = torch.arange(resid.shape[0])
    x = resid
    if stage == "mid":
        x = x[rows, end] if layer == n_layers - 1 else x
        x = add_mlp(w, layer, x)
        layer += 1
    for lay in range(layer, n_layers):
        if lay == n_layers - 1:
            z = attention_z(w, lay, x, mask, end, patches.get(lay))
            x = x[rows, end] + heads_out(w, lay, z[:, 0])
        else:
            x = x + heads_out(w, lay, attention_z(w, lay, x, mask, None, patches.get(lay)))
        x = add_mlp(w, lay, x)
    if x.dim() == 3:  # started at the final residual stream
        x = x[rows, end]
    return logit_diff_at_end(w, x, answers)


def chunk_size(n: int, t: int, d_model: int, budget: int = DEFAULT_BUDGET_BYTES) -> int:
    """How many patches of ``n`` rows fit the budget (about 16 float32 [t, d] tensors a row)."""
    return max(1, budget // max(1, n * t * d_model * 4 * 16))


def batch_rows(x: Tensor, k: int) -> Tensor:
    """``x`` repeated for ``k`` patches: row ``s * n + i`` is patch s, example i."""
    return x.repeat(k, *([1] * (x.dim() - 1)))


# ----------------------------------------------------------------------------- activation patching


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


def _start_state(
    w: GPT2Weights, clean: RunCache, corrupt: RunCache, comp: Component, where: Tensor
) -> tuple[Tensor, int, str]:
    """The residual stream where a patch of ``comp`` first changes the run, and where that is."""
    m = where[..., None]
    if comp.kind == "head":
        delta = corrupt.head_result(w, comp.layer, comp.head) - clean.head_result(
            w, comp.layer, comp.head
        )
        return clean.resid_mid[comp.layer] + delta * m, comp.layer, "mid"
    if comp.kind == "attn_out":
        out = torch.where(m, corrupt.attn_out[comp.layer], clean.attn_out[comp.layer])
        return clean.resid_pre[comp.layer] + out, comp.layer, "mid"
    if comp.kind == "mlp_out":
        out = torch.where(m, corrupt.mlp_out[comp.layer], clean.mlp_out[comp.layer])
        return clean.resid_mid[comp.layer] + out, comp.layer + 1, "pre"
    state = torch.where(m, corrupt.resid_pre[comp.layer], clean.resid_pre[comp.layer])
    return state, comp.layer, "pre"


def activation_patch(
    w: GPT2Weights,
    inputs: PatchInputs,
    components: Sequence[Component],
    *,
    caches: tuple[RunCache, RunCache] | None = None,
    progress: bool = False,
    budget: int = DEFAULT_BUDGET_BYTES,
) -> Float[Tensor, "component n"]:
    """Per-example logit differences with each component patched from the corrupted run.

    Equals one full forward pass per component with that component's output replaced (tested
    against hooks and against ``transformer_lens.patching``).

    >>> activation_patch(w, inputs, [Component("head", 0, 1, "END")]).shape   # doctest: +SKIP
    torch.Size([1, 50])
    """
    n_layers, n_heads = len(w.layers), w.n_heads
    for comp in components:
        comp.check(n_layers, n_heads, ACTIVATION_KINDS)
    wheres = [inputs.position_mask(c.position) for c in components]  # validates positions early
    clean, corrupt = caches or run_caches(w, inputs)
    out = torch.full((len(components), inputs.n), float("nan"))
    groups: dict[tuple[int, str], list[tuple[int, Tensor]]] = {}
    with torch.no_grad():
        for i, (comp, where) in enumerate(zip(components, wheres)):
            state, layer, stage = _start_state(w, clean, corrupt, comp, where)
            groups.setdefault((layer, stage), []).append((i, state))
        n, t = inputs.clean.shape
        size = chunk_size(n, t, w.W_E.shape[1], budget)
        chunks = [
            (key, items[j : j + size])
            for key, items in groups.items()
            for j in range(0, len(items), size)
        ]
        for (layer, stage), items in _progress(chunks, progress, "activation patching"):
            k = len(items)
            ld = run_free(
                w,
                torch.cat([s for _, s in items]),
                layer,
                stage,
                batch_rows(inputs.mask, k),
                batch_rows(inputs.end, k),
                batch_rows(inputs.answers, k),
            )
            out[[i for i, _ in items]] = ld.reshape(k, n)
    return out


def scan_components(
    kind: str, n_layers: int, n_heads: int, position: str | None, width: int
) -> list[Component]:
    """Every component of ``kind``; ``position="each"`` scans every token index too."""
    positions: list[str | int | None] = list(range(width)) if position == "each" else [position]
    heads: list[int | None] = list(range(n_heads)) if kind == "head" else [None]
    return [
        Component(kind, layer, h, p) for layer in range(n_layers) for h in heads for p in positions
    ]


def activation_scan(
    model: Any,
    inputs: PatchInputs,
    kind: str = "head",
    *,
    position: str | None = None,
    normalization: str = "clean",
    progress: bool = False,
    settings: dict[str, Any] | None = None,
) -> PatchResult:
    """Patch every component of ``kind`` (every head, every layer, or every (layer, position)).

    >>> res = activation_scan(model, inputs, "resid_pre", position="each")    # doctest: +SKIP
    >>> res.to_frame().pivot(index="layer", columns="position")  # doctest: +SKIP
    """
    normalization = check_normalization(normalization)
    w = GPT2Weights.from_hf(model.hf_model)
    comps = scan_components(kind, len(w.layers), w.n_heads, position, inputs.clean.shape[1])
    caches = run_caches(w, inputs)
    per_example = activation_patch(w, inputs, comps, caches=caches, progress=progress)
    clean_ld, corrupt_ld = run_logit_diffs(w, caches, inputs)
    stated = PatchSettings(
        experiment="activation",
        model=model.info.name,
        senders=kind,
        sender_position=position,
        receivers="logits",
        receiver_position=None,
        mlps="n/a",
        normalization=normalization,
        n=inputs.n,
        **(settings or {}),
    )
    return build_result(stated, clean_ld, corrupt_ld, [c.label for c in comps], per_example)


def _progress(items: list, enabled: bool, desc: str):
    if not enabled or len(items) < 2:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, leave=False)
