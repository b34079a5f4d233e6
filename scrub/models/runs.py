"""The layer loops: one cached, prefix-sharing run, and runs from a residual stream to the logits.

Every experiment starts from these; none has a layer loop or an attention of its own:

* :func:`shared_run` caches a plain forward pass (activations per layer) of many rows, computing
  every distinct token prefix once. The scrubbing engine's clean pass and the patching
  experiments' clean and corrupted runs are such caches.
* :func:`run_free` runs from a residual stream at some layer to the logit difference at END,
  every component free, optionally with some heads' q/k/v inputs replaced (:class:`SlotPatch`).
* :func:`run_end_only` does the same when only END changes (receivers patched at END): later
  layers run one query a row against cached clean keys and values.

>>> cache = shared_run(w, tokens, mask, end)[0]      # doctest: +SKIP
>>> cache.resid_pre[2].shape                         # doctest: +SKIP
torch.Size([50, 17, 64])
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from scrub.errors import ScrubError
from scrub.models.kernel import (
    Proj,
    add_mlp,
    allowed_keys,
    attend_z,
    block_out,
    block_parts,
    embed_at,
    expand_groups,
    heads_out,
    ln1,
    one_query_z,
    project,
    project_qkv,
    rotate,
    unembed,
)
from scrub.models.weights import ModelWeights


def check_right_padded(mask: Bool[Tensor, "n t"]) -> None:
    """Every row's real tokens first, then its padding (the cached runs rely on it)."""
    if not torch.equal(
        mask, torch.arange(mask.shape[1], device=mask.device) < mask.sum(1, keepdim=True)
    ):
        raise ScrubError(
            "the prompts' mask is not right-padded (each row's real tokens first, then padding)",
            fix="pad on the right, as scrub.data's PromptSets do",
        )


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
    """Activations of one plain forward pass, one tensor a layer.

    ``resid_pre[L]`` is block L's input and ``resid_pre[n_layers]`` the final residual stream
    (the input of the final norm); ``final_end`` is that stream at END (None when the run stopped
    early). ``resid_mid`` is block input plus attention output; ``mlp_in`` what the MLP reads
    (``resid_mid``, or ``resid_pre`` in parallel blocks). ``z`` is per head before W_O (a head's
    result is ``z[L][:, :, h] @ W_O[h]``); ``attn_out`` includes b_O. Each field indexes like a
    tuple and builds a tensor when it is first read. Tensors are shared, not copied, so treat
    them as read-only.
    """

    resid_pre: Sequence[Float[Tensor, "n t d_model"]]
    resid_mid: Sequence[Float[Tensor, "n t d_model"]]
    mlp_in: Sequence[Float[Tensor, "n t d_model"]]
    z: Sequence[Float[Tensor, "n t head d_head"]]
    attn_out: Sequence[Float[Tensor, "n t d_model"]]
    mlp_out: Sequence[Float[Tensor, "n t d_model"]]
    final_end: Float[Tensor, "n d_model"] | None

    def head_result(self, w: ModelWeights, layer: int, head: int) -> Float[Tensor, "n t d_model"]:
        return self.z[layer][:, :, head] @ w.layers[layer].W_O[head]


def prefix_sources(tokens: Int[Tensor, "n t"], mask: Bool[Tensor, "n t"]) -> Int[Tensor, "n t"]:
    """For each (row i, position p), ``j * t + p`` for a row j whose tokens and mask at positions
    0..p equal row i's, the same j for every row sharing that prefix (and j is its own source).

    >>> prefix_sources(torch.tensor([[5, 6], [5, 7], [5, 6]]), torch.ones(3, 2, dtype=torch.bool))
    tensor([[0, 1],
            [0, 3],
            [0, 1]])
    """
    n, t = tokens.shape
    keys = (tokens * 2 + mask).cpu()  # a padded position never matches a real one
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


def shared_run(
    w: ModelWeights,
    tokens: Int[Tensor, "n t"],
    mask: Bool[Tensor, "n t"],
    end: Int[Tensor, " n"],
    parts: Sequence[slice] | None = None,
    *,
    depth: int | None = None,
    last_at_end: bool = True,
    exact_padding: bool = False,
) -> list[RunCache]:
    """Cache a plain forward pass of ``tokens`` (the arithmetic of :func:`kernel.forward`), as
    one :class:`RunCache` per slice of rows in ``parts`` (default: one of all rows).

    ``depth`` runs only blocks ``0..depth-1`` (default: all, and the final residual). With
    ``last_at_end`` the last block is computed at END only (nothing downstream of it but the
    logits at END): its fields are NaN at other positions (mlp_out 0 for a zero MLP).

    Attention is causal, so rows with the same tokens up to a position have the same
    activations there: only the distinct unpadded prefixes (:func:`prefix_sources`) go through
    the matmuls, packed ([positions, ...]), and are gathered into the [n, t, ...] layout for
    attention and when a cache field is read. Block 0's input depends on (token, position)
    alone, so its norm and projections run once per distinct pair. Attention runs on whole rows,
    sorted by length and cut into buckets no wider than their longest row: a shared or padded
    query recomputes a copied or ignored value, and most padding is skipped. Rows must be
    right-padded; a padded position holds finite filler that no real position reads, unless
    ``exact_padding``: then padded positions are computed as Hugging Face computes them with an
    attention mask (attending to the real tokens), for callers that read them.
    """
    check_right_padded(mask)
    n, t = tokens.shape
    n_layers = len(w.layers)
    depth = n_layers if depth is None else depth
    parts = [slice(0, n)] if parts is None else parts
    end_only = last_at_end and depth == n_layers
    loop_layers = depth - 1 if end_only else depth
    tokens, mask, end = tokens.cpu(), mask.cpu(), end.cpu()  # index bookkeeping on the host
    # Padding takes the row's position 0 (through its source), so position 0 is always real.
    real = torch.ones_like(mask) if exact_padding else mask | (torch.arange(t) == 0)
    source = prefix_sources(tokens, mask)
    source = torch.where(real, source, source[:, :1]).flatten()
    computed = (source == torch.arange(n * t)).nonzero()[:, 0]
    packed = torch.empty(n * t, dtype=torch.long)
    packed[computed] = torch.arange(computed.shape[0])
    gather = packed[source].view(n, t)  # each (row, position)'s index among the computed ones
    positions = torch.arange(t)

    def full(x: Tensor) -> Callable[[slice], Tensor]:  # packed [computed, ...]
        idx = gather.to(x.device)
        return lambda part: x.index_select(0, idx[part].flatten()).unflatten(0, (-1, t))

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
        flat_tokens = tokens.flatten()[computed]
        pair_key = flat_tokens * t + computed % t
        pair, of_pair = torch.unique(pair_key, return_inverse=True)
        x = embed_at(w, pair // t, pair % t)
        project_from, project_at = x, of_pair[gather.flatten()]  # rows to project, (i, p)'s row
        x = x.index_select(0, of_pair.to(x.device))
        pre, mid, mlp_ins, zs, attn, mlps = [full(x)], [], [], [], [], []
        zeros = rows_of(x.new_zeros(()).expand(n, t, x.shape[-1]))  # a zero MLP: no memory
        by_length, buckets = _length_buckets(mask.sum(1))  # attention's rows
        if exact_padding:  # every position, padded ones attending to the real keys
            buckets = [(0, n, t)]
        bucket_mask = mask[by_length] if exact_padding else None
        x_last_in = x
        for layer in range(loop_layers):
            lw = w.layers[layer]
            x = x_last_in = x.to(lw.device)
            q, k, v = project_qkv(w, layer, ln1(w, layer, project_from))
            row_pos = (project_at.view(n, t)[by_length]).flatten().to(q.device)
            q, k, v = (p.index_select(0, row_pos).unflatten(0, (n, t)) for p in (q, k, v))
            q, k = rotate(w, q, positions), rotate(w, k, positions)
            z = q.new_zeros(n, t, *q.shape[2:])  # 0 past a bucket's width
            for first, stop, width in buckets:
                # right-padded (checked): causality keeps real queries off the padding
                z_rows = attend_z(
                    q[first:stop, :width],
                    k[first:stop, :width],
                    v[first:stop, :width],
                    lw.attn_scale,
                    None if bucket_mask is None else positions,
                    bucket_mask,
                )
                z[:, :width].index_copy_(0, by_length[first:stop].to(z.device), z_rows)
            zs.append(rows_of(z))
            a = heads_out(
                w, layer, z.view(n * t, *z.shape[2:]).index_select(0, computed.to(z.device))
            )
            attn.append(full(a))
            x_mid, m, x_post = block_parts(w, layer, x, a)
            mid.append(full(x_mid))
            mlp_ins.append(pre[-1] if w.parallel else mid[-1])
            mlps.append(zeros if m is None else full(m))
            pre.append(mid[-1] if x_post is x_mid else full(x_post))
            x = x_post
            project_from, project_at = x, gather.flatten()
        final = None
        if depth == n_layers:
            # The final residual at END always through the last block at END only, even when the
            # block also ran at every position (below): a row's final value, and so a clean
            # metric, is then the same bits whatever else the pass computes for it.
            last_in = x if end_only else x_last_in
            z_end, attn_end, pre_end, (mid_end, mlp_end, final) = _last_block_at_end(
                w, last_in, gather, end
            )
            if end_only:
                zs.append(at_end(z_end))
                attn.append(at_end(attn_end))
                mid.append(at_end(mid_end))
                mlp_ins.append(pre[-1] if w.parallel else mid[-1])
                mlps.append(zeros if mlp_end is None else at_end(mlp_end))
                pre.append(mid[-1] if final is mid_end else at_end(final))

    def cache(part: slice) -> RunCache:
        fields = (pre, mid, mlp_ins, zs, attn, mlps)
        lazy = (_Lazy([functools.partial(make, part) for make in f]) for f in fields)
        return RunCache(*lazy, final_end=None if final is None else final[part])

    return [cache(part) for part in parts]


def _last_block_at_end(
    w: ModelWeights, x: Float[Tensor, "computed d_model"], gather: Int[Tensor, "n t"], end: Tensor
) -> tuple[Tensor, Tensor, Tensor, tuple[Tensor, Tensor | None, Tensor]]:
    """The last block at END only, from its packed input: one query a row against the normed
    residuals. Returns (z, attention output, block input, block_parts) at END."""
    n, t = gather.shape
    last = len(w.layers) - 1
    x = x.to(w.layers[last].device)
    x_ln = ln1(w, last, x).index_select(0, gather.flatten().to(x.device)).unflatten(0, (n, t))
    rows = torch.arange(n)
    q = rotate(w, project(w, last, x_ln[rows, end][:, None], Proj.Q), end[:, None])
    z = one_query_z(w, last, q, x_ln, torch.arange(t) <= end[:, None])[:, 0]
    attn_end = heads_out(w, last, z)
    pre_end = x.index_select(0, gather[rows, end].to(x.device))
    return z, attn_end, pre_end, block_parts(w, last, pre_end, attn_end)


def logit_diff_at_end(
    w: ModelWeights, resid_end: Float[Tensor, "b d_model"], answers: Int[Tensor, "b 2"]
) -> Float[Tensor, " b"]:
    """logit(IO) - logit(S) from final residuals at END, computing only the two columns."""
    pair = unembed(w, resid_end, columns=answers)
    return pair[:, 0] - pair[:, 1]


# ----------------------------------------------------------------------------- free runs


@dataclass(frozen=True, eq=False)
class SlotPatch:
    """Replace some heads' q input (or some key/value groups' k or v input: pre-norm residual)
    where ``where`` is True. ``index`` holds heads for q and groups for k and v."""

    index: Int[Tensor, " r"]
    proj: Proj
    value: Float[Tensor, "b t d_model"]
    where: Bool[Tensor, "b t"]


def attention_z(
    w: ModelWeights,
    layer: int,
    resid: Float[Tensor, "b t d_model"],
    mask: Bool[Tensor, "b t"],
    q_index: Int[Tensor, " b"] | None = None,
    patch: SlotPatch | None = None,
) -> Float[Tensor, "b q head d_head"]:
    """Per-head z of ``layer``, every head reading ``resid`` except where ``patch`` says.

    q, k and v are projected from one norm, and only the patched slot is recomputed for the
    patched heads (groups). With ``q_index`` only that one query position per row is computed.
    """
    b, t, _ = resid.shape
    dev = w.layers[layer].device
    resid = resid.to(dev)
    rows = torch.arange(b, device=dev)
    positions = torch.arange(t, device=dev)
    x = ln1(w, layer, resid)

    def slot(proj: Proj, x_ln: Tensor, index: Tensor | None) -> Tensor:
        out = project(w, layer, x_ln, proj)
        if patch is None or patch.proj is not proj:
            return out
        value, where = patch.value.to(dev), patch.where.to(dev)
        if index is not None:
            value, where = value[rows, index][:, None], where[rows, index][:, None]
        new = project(w, layer, ln1(w, layer, value), proj, patch.index)
        sel = patch.index.to(dev)
        out[:, :, sel] = torch.where(where[:, :, None, None], new, out[:, :, sel])
        return out

    def keys_values() -> tuple[Tensor, Tensor]:
        return rotate(w, slot(Proj.K, x, None), positions), slot(Proj.V, x, None)

    if q_index is None:
        q = rotate(w, slot(Proj.Q, x, None), positions)
        return attend_z(q, *keys_values(), w.layers[layer].attn_scale, positions, mask)
    q_index = q_index.to(dev)
    q = rotate(w, slot(Proj.Q, x[rows, q_index][:, None], q_index), q_index[:, None])
    if (patch is None or patch.proj is Proj.Q) and w.rotary is None:
        # Clean keys and values: reassociated against the normed residuals, never projected.
        return one_query_z(w, layer, q, x, allowed_keys(t, q_index[:, None], mask.to(dev))[:, 0, 0])
    return attend_z(q, *keys_values(), w.layers[layer].attn_scale, q_index[:, None], mask)


def run_free(
    w: ModelWeights,
    resid: Float[Tensor, "b t d_model"],
    layer: int,
    mask: Bool[Tensor, "b t"],
    end: Int[Tensor, " b"],
    answers: Int[Tensor, "b 2"],
    patches: Mapping[int, SlotPatch] | None = None,
    *,
    mid: bool = False,
) -> Float[Tensor, " b"]:
    """Run from a residual stream to the logit difference at END, every component free.

    ``resid`` is block ``layer``'s input, or with ``mid`` (sequential blocks only) its MLP input
    after attention; ``layer == n_layers`` means the final residual. ``patches[L]`` replaces
    some heads' slot inputs in block L. The last block computes only END's query, MLP and two
    logits.
    """
    patches = patches or {}
    n_layers = len(w.layers)
    rows = torch.arange(resid.shape[0])
    x = resid
    if mid:
        if w.parallel:
            raise ValueError("parallel blocks have no separate MLP stage")
        x = x[rows, end] if layer == n_layers - 1 else x
        x = add_mlp(w, layer, x)
        layer += 1
    for lay in range(layer, n_layers):
        if lay == n_layers - 1:
            z = attention_z(w, lay, x, mask, end, patches.get(lay))
            x_end = x[rows.to(x.device), end.to(x.device)]
            x = block_out(w, lay, x_end, heads_out(w, lay, z[:, 0]))
        else:
            z = attention_z(w, lay, x, mask, None, patches.get(lay))
            x = block_out(w, lay, x, heads_out(w, lay, z))
    if x.dim() == 3:  # started at the final residual stream
        x = x[rows.to(x.device), end.to(x.device)]
    return logit_diff_at_end(w, x, answers)


# ----------------------------------------------------------------------------- END-only runs


def clean_keys_values(
    w: ModelWeights, clean: RunCache, first: int
) -> dict[int, tuple[Float[Tensor, "n t head d_head"], Float[Tensor, "n t head d_head"]]]:
    """Every head's clean (rotated) keys and values from layer ``first`` on, for
    :func:`run_end_only`: the same for every batch of patches, so projected (and, with
    grouped-query attention, repeated for each head of a group) once."""
    out = {}
    for layer in range(first, len(w.layers)):
        x_clean = ln1(w, layer, clean.resid_pre[layer])
        t = x_clean.shape[1]
        keys = rotate(w, project(w, layer, x_clean, Proj.K), torch.arange(t, device=x_clean.device))
        values = project(w, layer, x_clean, Proj.V)
        out[layer] = expand_groups(w, keys), expand_groups(w, values)
    return out


@dataclass(frozen=True, eq=False)
class EndPatch:
    """Replace some heads' q input (groups' k or v input) at END by ``value`` [s, n, d]."""

    index: Int[Tensor, " r"]
    proj: Proj
    value: Float[Tensor, "s n d_model"]


def run_end_only(
    w: ModelWeights,
    x: Float[Tensor, "s n d_model"],
    first: int,
    clean_kv: Mapping[int, tuple[Tensor, Tensor]],
    mask: Bool[Tensor, "n t"],
    end: Int[Tensor, " n"],
    answers: Int[Tensor, "n 2"],
    patches: Mapping[int, EndPatch],
) -> Float[Tensor, "s n"]:
    """Logit differences when only END differs from the clean run from layer ``first`` on.

    ``x`` is block ``first``'s input at END for ``s`` variants of the ``n`` rows; keys and values
    at other positions are the clean ones (``clean_kv``, :func:`clean_keys_values`), END's own
    key and value are recomputed, and ``patches[L]`` replaces some slots' inputs at END.
    """
    s, n = x.shape[:2]
    for layer in range(first, len(w.layers)):
        lw = w.layers[layer]
        x = x.to(lw.device)
        keys, values = clean_kv[layer]  # [n, t, H, e]
        e_dev = end.to(keys.device)
        x_ln = ln1(w, layer, x)
        qkv = {p: project(w, layer, x_ln, p) for p in Proj}  # [s, n, H or G, e] at END
        patch = patches.get(layer)
        if patch is not None:
            qkv[patch.proj][:, :, patch.index] = project(
                w, layer, ln1(w, layer, patch.value), patch.proj, patch.index
            )
        q, k_end = rotate(w, qkv[Proj.Q], e_dev[None, :]), rotate(w, qkv[Proj.K], e_dev[None, :])
        z = _end_attention(w, layer, q, k_end, qkv[Proj.V], keys, values, e_dev, mask)
        x = block_out(w, layer, x, heads_out(w, layer, z))
    flat = x.reshape(s * n, -1)
    return logit_diff_at_end(w, flat, answers.repeat(s, 1)).reshape(s, n)


def _end_attention(w, layer, q, k_end, v_end, keys, values, end, mask) -> Tensor:
    """END's query against the clean keys/values with END's own key and value replaced."""
    lw = w.layers[layer]
    k_end, v_end = expand_groups(w, k_end), expand_groups(w, v_end)  # [s, n, H, e]
    s, n = q.shape[:2]
    rows = torch.arange(n, device=q.device)
    pad = ~mask.to(q.device)[None, :, None, :]
    scores = torch.einsum("snhe,nthe->snht", q, keys) / lw.attn_scale
    scores = scores.masked_fill(pad, torch.finfo(scores.dtype).min)
    at_end = end[None, :, None, None].expand(s, n, scores.shape[2], 1)
    end_score = (q * k_end).sum(-1, keepdim=True) / lw.attn_scale
    pattern = scores.scatter(-1, at_end, end_score).softmax(-1)
    p_end = pattern.gather(-1, at_end)  # [s, n, H, 1]
    # sum_t p_t v_t with END's value replaced: the clean sum plus p_END * (v_new - v_clean).
    z = torch.einsum("snht,nthe->snhe", pattern, values)
    return z + p_end * (v_end - values[rows, end][None])
