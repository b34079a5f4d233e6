"""Block primitives of the one forward pass, for every supported architecture, with no hooks.

Every experiment (the scrubbing engine, activation and path patching) composes these on the
standardised weights of :mod:`scrub.models.weights`; the layer loops themselves live in
:mod:`scrub.models.runs`. :func:`forward` is the plain composition and equals the Hugging Face
model's logits (~1e-6 in float32).

>>> w = model.weights                              # doctest: +SKIP
>>> logits = forward(w, tokens)                    # doctest: +SKIP

Correspondence with the hook sites of :class:`scrub.models.Model` (raw-model values):

* ``embed(w, tokens)``                         = ``Site(EMBED)`` = resid_pre of layer 0
* the ``q_in/k_in/v_in`` of :func:`attention`  = ``Q_INPUT/K_INPUT/V_INPUT`` (pre-norm, per head;
  per key/value group for k and v in grouped-query models)
* :func:`attention` ``result``, ``pattern``    = ``HEAD_RESULT`` (no b_O), ``PATTERN``
* :func:`heads_out` of every head's z          = ``ATTN_OUT``
* :func:`mlp` of :func:`mlp_input`             = ``MLP_OUT``
* the input of :func:`unembed`                 = ``RESID_FINAL``

Devices: each primitive moves its activations to its layer's device, so weights spread over
devices (a ``device_map``) work layer by layer; on one device the moves are no-ops.
"""

from __future__ import annotations

import enum
import functools
import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from scrub.models.weights import LayerWeights, ModelWeights, Norm


class Proj(enum.Enum):
    """The three projections of attention."""

    Q = "q"
    K = "k"
    V = "v"


def linear(x: Float[Tensor, "*b d_in"], W: Tensor, b: Tensor) -> Float[Tensor, "*b d_out"]:
    """``x @ W + b`` (``W`` is [d_in, d_out]) in one GEMM, with no second activation-sized
    tensor for the bias add.

    float32 GEMMs on CPU go through oneDNN, as ``torch.compile`` does on CPU, rather than the
    MKL path of ``torch.addmm``: MKL chooses its kernels by CPU vendor and takes slow ones on AMD
    CPUs (2.2x slower than oneDNN on this project's AMD EPYC machines), oneDNN by instruction
    set. Both equal float32 rounding (tests compare the two); ``SCRUB_GEMM=addmm`` forces the
    MKL path, and other dtypes, other devices (GPUs use cuBLAS through addmm), strided weights,
    autograd and builds without oneDNN take it.

    >>> linear(torch.ones(2, 3), torch.ones(3, 4), torch.zeros(4)).tolist()[0]
    [3.0, 3.0, 3.0, 3.0]
    """
    flat = x.reshape(-1, x.shape[-1])
    # oneDNN's fast kernels want a dense weight (a strided view took 100x longer).
    fast = (
        flat.dtype == torch.float32
        and flat.device.type == "cpu"
        and W.is_contiguous()
        and b.is_contiguous()
        and _use_onednn()
        and not _needs_grad(flat, W, b)
    )
    if fast:
        out = torch.ops.mkldnn._linear_pointwise(flat.contiguous(), W.t(), b, "none", [], "")
    else:
        out = torch.addmm(b, flat, W)
    return out.unflatten(0, x.shape[:-1])


@functools.cache
def _use_onednn() -> bool:
    if os.environ.get("SCRUB_GEMM", "onednn") == "addmm":
        return False
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _needs_grad(*tensors: Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


# ----------------------------------------------------------------------------- norms


def norm(w: ModelWeights, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """The architecture's norm: LayerNorm, or RMSNorm computed as Hugging Face's Llama does
    (in float32, cast back before the weight)."""
    if w.norm is Norm.LAYER:
        return F.layer_norm(x, x.shape[-1:], weight, bias, w.eps)
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + w.eps)
    return weight * h.to(x.dtype)


def ln1(w: ModelWeights, layer: int, x: Float[Tensor, "*b d_model"]) -> Tensor:
    """The norm attention reads (per head and slot, when inputs are per head)."""
    lw = w.layers[layer]
    return norm(w, x.to(lw.device), lw.norm1_w, lw.norm1_b)


def ln2(w: ModelWeights, layer: int, x: Float[Tensor, "*b d_model"]) -> Tensor:
    lw = w.layers[layer]
    return norm(w, x.to(lw.device), lw.norm2_w, lw.norm2_b)


# ----------------------------------------------------------------------------- embeddings


def embed(w: ModelWeights, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
    """Token embeddings, plus learned position embeddings (positions 0..pos-1) where the model
    has them (rotary models add positions inside attention)."""
    x = w.W_E[tokens.to(w.W_E.device)]
    return x if w.W_pos is None else x + w.W_pos[: tokens.shape[1]]


def embed_at(
    w: ModelWeights, tokens: Int[Tensor, " k"], positions: Int[Tensor, " k"]
) -> Float[Tensor, "k d_model"]:
    """:func:`embed` of single (token, position) pairs."""
    x = w.W_E.index_select(0, tokens.to(w.W_E.device))
    return x if w.W_pos is None else x + w.W_pos.index_select(0, positions.to(w.W_E.device))


def rotate(
    w: ModelWeights, x: Float[Tensor, "*b n d_head"], positions: Int[Tensor, "*b"]
) -> Float[Tensor, "*b n d_head"]:
    """Queries or keys rotated for their positions (identity without rotary embeddings).

    ``positions`` has ``x``'s leading shape (or broadcasts to it): e.g. [t] for [b, t, n, e].
    The first ``w.rotary.dim`` features of each head are rotated, pairing feature i with
    i + dim/2 (``rotate_half``), as GPT-NeoX and Llama do.
    """
    if w.rotary is None:
        return x
    r = w.rotary.dim
    cos = w.rotary.cos.to(x.device)[positions.to(x.device)][..., None, :]
    sin = w.rotary.sin.to(x.device)[positions.to(x.device)][..., None, :]
    x_rot, x_pass = x[..., :r], x[..., r:]
    half = torch.cat([-x_rot[..., r // 2 :], x_rot[..., : r // 2]], dim=-1)
    return torch.cat([x_rot * cos + half * sin, x_pass], dim=-1)


# ----------------------------------------------------------------------------- attention


def project(
    w: ModelWeights,
    layer: int,
    x_ln: Float[Tensor, "*b d_model"],
    proj: Proj,
    index: Sequence[int] | Tensor | None = None,
) -> Float[Tensor, "*b n d_head"]:
    """Queries of every head, or keys/values of every key/value group, from normed residuals
    (before rotation); ``index`` selects some heads (q) or groups (k, v).

    One matmul against the heads' weights laid side by side (with all of them, a view of the
    slot's dense weight, which takes oneDNN's GEMM), rather than a batched per-head product.
    """
    lw = w.layers[layer]
    W, b = {Proj.Q: (lw.W_Q, lw.b_Q), Proj.K: (lw.W_K, lw.b_K), Proj.V: (lw.W_V, lw.b_V)}[proj]
    if index is not None:
        index = torch.as_tensor(index, device=W.device)
        W, b = W[index], b[index]
    n, d, e = W.shape
    out = linear(x_ln.to(lw.device), W.permute(1, 0, 2).reshape(d, n * e), b.reshape(n * e))
    return out.unflatten(-1, (n, e))


def project_qkv(
    w: ModelWeights, layer: int, x_ln: Float[Tensor, "*b d_model"]
) -> tuple[Tensor, Tensor, Tensor]:
    """Every head's q and every group's k and v (before rotation) in one GEMM."""
    lw = w.layers[layer]
    H, G = w.n_heads, w.n_kv_heads
    out = linear(x_ln.to(lw.device), lw.W_qkv, lw.b_qkv).unflatten(-1, (H + 2 * G, -1))
    return out[..., :H, :], out[..., H : H + G, :], out[..., H + G :, :]


def expand_groups(w: ModelWeights, kv: Float[Tensor, "*b group e"]) -> Float[Tensor, "*b head e"]:
    """Keys or values per query head (each group repeated for its heads); a no-op without GQA."""
    ratio = w.n_heads // w.n_kv_heads
    return kv if ratio == 1 else kv.repeat_interleave(ratio, dim=-2)


def _head_index(w: ModelWeights, heads: Sequence[int] | None):
    """Indices of ``heads`` (None: all) into the query weights, and of their groups into the
    key/value weights. Every head without GQA is ``slice(None)``: views, not copies."""
    if heads is None and w.n_kv_heads == w.n_heads:
        return slice(None), slice(None)
    heads = list(range(w.n_heads)) if heads is None else list(heads)
    return heads, [w.group_of(h) for h in heads]


def allowed_keys(
    n_keys: int, q_positions: Tensor, attn_mask: Tensor | None
) -> Bool[Tensor, "batch_or_1 1 q_pos k_pos"]:
    """Which keys each query attends to: causal (keys up to its position) and unpadded."""
    allowed = torch.arange(n_keys, device=q_positions.device) <= q_positions[..., :, None]
    allowed = allowed[:, None] if allowed.dim() == 3 else allowed[None, None]
    return allowed if attn_mask is None else allowed & attn_mask[:, None, None, :]


def attend(q, k, v, scale: float, q_positions: Tensor, attn_mask: Tensor | None):
    """Causal, padding-masked softmax attention: (z [b,q,h,e], pattern [b,h,q,k]).

    ``k`` and ``v`` have as many heads as ``q`` (see :func:`expand_groups`).
    """
    scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / scale
    allowed = allowed_keys(k.shape[1], q_positions.to(q.device), _on(attn_mask, q))
    # The dtype's minimum rather than -inf, as HF does: a fully masked row stays finite.
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    pattern = scores.softmax(dim=-1)
    return torch.einsum("bhqk,bkhe->bqhe", pattern, v), pattern


def _on(t: Tensor | None, like: Tensor) -> Tensor | None:
    return None if t is None else t.to(like.device)


def attend_z(q, k, v, scale: float, q_positions: Tensor | None, attn_mask: Tensor | None) -> Tensor:
    """:func:`attend`'s z alone, via PyTorch's fused attention (equal to ~1e-6, and faster on CPU
    and GPU, with no [b, h, q, k] pattern or layout copies). Unlike :func:`attend`, a query with
    no allowed key gets z = 0; with BOS unpadded at position 0 there is none. ``k``/``v`` may
    have fewer (grouped) heads than ``q``.

    ``q_positions=None`` means a query at every position of right-padded rows, and then
    ``attn_mask`` must be None: causality alone keeps a real query off the padding after it
    (a padded query's z is finite, for the caller to ignore), and no mask is built or read.
    """
    ratio = q.shape[2] // k.shape[2]
    if ratio != 1:
        k, v = k.repeat_interleave(ratio, dim=2), v.repeat_interleave(ratio, dim=2)
    if q_positions is None:
        if attn_mask is not None:
            raise ValueError("causal self-attention (q_positions=None) takes no attn_mask")
        allowed, causal = None, True
    else:
        q_positions = q_positions.to(q.device)
        allowed, causal = allowed_keys(k.shape[1], q_positions, _on(attn_mask, q)), False
    z = F.scaled_dot_product_attention(
        q.transpose(1, 2),
        k.transpose(1, 2),
        v.transpose(1, 2),
        allowed,
        is_causal=causal,
        scale=1 / scale,
    )
    return z.transpose(1, 2)


def attention(
    w: ModelWeights,
    layer: int,
    q_in: Float[Tensor, "batch q_pos head d_model"],
    k_in: Float[Tensor, "batch k_pos head d_model"],
    v_in: Float[Tensor, "batch k_pos head d_model"],
    attn_mask: Bool[Tensor, "batch k_pos"] | None = None,
    q_positions: Int[Tensor, " q_pos"] | Int[Tensor, "batch q_pos"] | None = None,
    heads: Sequence[int] | None = None,
) -> tuple[Float[Tensor, "batch q_pos head d_model"], Float[Tensor, "batch head q_pos k_pos"]]:
    """Per-head attention results and patterns of ``layer`` from per-head residual inputs.

    ``q_in``, ``k_in``, ``v_in`` are the pre-norm residual inputs of each head (the norm is
    applied here, per head, so each head's q, k and v inputs can be patched independently; a
    head's k and v inputs feed its key/value group's projection). Returns
    ``result[b, q, h] = z_h @ W_O[h]`` WITHOUT b_O.

    Queries may be a subset of positions: ``q_positions`` gives the key position of each query
    (shape [q_pos], or [batch, q_pos] when it differs per row); it defaults to ``arange(k_pos)``,
    which requires q_pos == k_pos. Query at position p attends to keys 0..p (causal), minus the
    keys where ``attn_mask`` is False (right padding). Rows of padded queries are meaningless.

    ``heads`` computes only those heads (the inputs then hold one slice per chosen head, in
    that order), e.g. ``heads=[3]`` with inputs [b, t, 1, d] computes head 3 alone.
    """
    lw = w.layers[layer]
    n_q, n_k = q_in.shape[1], k_in.shape[1]
    dev = lw.device
    if q_positions is None:
        if n_q != n_k:
            raise ValueError(f"{n_q} queries but {n_k} keys: pass q_positions")
        q_positions = torch.arange(n_k, device=dev)
    q_positions = q_positions.to(dev)
    heads, groups = _head_index(w, heads)
    q = torch.einsum("bqhd,hde->bqhe", ln1(w, layer, q_in), lw.W_Q[heads]) + lw.b_Q[heads]
    k = torch.einsum("bkhd,hde->bkhe", ln1(w, layer, k_in), lw.W_K[groups]) + lw.b_K[groups]
    v = torch.einsum("bkhd,hde->bkhe", ln1(w, layer, v_in), lw.W_V[groups]) + lw.b_V[groups]
    q = rotate(w, q, q_positions)
    k = rotate(w, k, torch.arange(n_k, device=dev))
    z, pattern = attend(q, k, v, lw.attn_scale, q_positions, _on(attn_mask, q))
    result = torch.einsum("bqhe,hed->bqhd", z, lw.W_O[heads])
    return result, pattern


def self_attention_z(
    w: ModelWeights,
    layer: int,
    resid: Float[Tensor, "batch pos d_model"],
    attn_mask: Bool[Tensor, "batch pos"] | None = None,
) -> Float[Tensor, "batch pos head d_head"]:
    """Every head's z for an unpatched layer: the norm once, one fused q|k|v projection.

    Equal to :func:`attention` with ``resid`` broadcast to every head's q, k and v inputs, where
    ``result[..., h, :] = z[..., h, :] @ W_O[h]``.
    """
    q, k, v = project_qkv(w, layer, ln1(w, layer, resid))
    pos = torch.arange(resid.shape[1], device=q.device)
    q, k = rotate(w, q, pos), rotate(w, k, pos)
    return attend_z(q, k, v, w.layers[layer].attn_scale, pos, _on(attn_mask, q))


def one_query_z(
    w: ModelWeights,
    layer: int,
    q: Float[Tensor, "b 1 head d_head"],
    x_ln: Float[Tensor, "b t d_model"],
    allowed: Bool[Tensor, "b t"],
) -> Float[Tensor, "b 1 head d_head"]:
    """z of one (already rotated) query per row against keys and values of normed residuals.

    Without rotary embeddings this is reassociated, equal to rounding: q . (x W_K + b_K) =
    (W_K q) . x + q . b_K, and sum_t p_t (x_t W_V + b_V) = (sum_t p_t x_t) W_V + b_V as the p_t
    sum to 1. Two [t, d] x [d] products per head replace the k and v projections of every
    position (the bulk of a last block computed at END only). Rotary keys depend on their
    position, so there keys and values are projected.
    """
    lw = w.layers[layer]
    x_ln, allowed = x_ln.to(lw.device), allowed.to(lw.device)
    if w.rotary is not None:
        k, v = project(w, layer, x_ln, Proj.K), project(w, layer, x_ln, Proj.V)
        k = rotate(w, k, torch.arange(x_ln.shape[1], device=lw.device))
        z = F.scaled_dot_product_attention(
            q.transpose(1, 2),
            expand_groups(w, k).transpose(1, 2),
            expand_groups(w, v).transpose(1, 2),
            allowed[:, None, None, :],
            scale=1 / lw.attn_scale,
        )
        return z.transpose(1, 2)
    _, heads_group = _head_index(w, None)
    W_K, W_V = lw.W_K[heads_group], lw.W_V[heads_group]
    b_K, b_V = lw.b_K[heads_group], lw.b_V[heads_group]
    q = q[:, 0]
    q_k = torch.einsum("bhe,hde->bhd", q, W_K)
    scores = (torch.einsum("bhd,btd->bht", q_k, x_ln) + (q * b_K).sum(-1)[..., None]) / (
        lw.attn_scale
    )
    # The dtype's minimum rather than -inf, as attend does.
    pattern = scores.masked_fill(~allowed[:, None], torch.finfo(scores.dtype).min).softmax(-1)
    mixed = torch.einsum("bht,btd->bhd", pattern, x_ln)
    return (torch.einsum("bhd,hde->bhe", mixed, W_V) + b_V)[:, None]


def heads_out(w: ModelWeights, layer: int, z: Float[Tensor, "*b head d_head"]) -> Tensor:
    """The attention block's output: every head's z @ W_O summed, plus b_O."""
    lw = w.layers[layer]
    return linear(z.to(lw.device).flatten(-2), lw.W_O.reshape(-1, lw.W_O.shape[-1]), lw.b_O)


# ----------------------------------------------------------------------------- MLP and blocks


def mlp(
    w: ModelWeights, layer: int, x_in: Float[Tensor, "... d_model"]
) -> Float[Tensor, "... d_model"]:
    """The MLP output of ``layer`` from the pre-norm residual it reads (:func:`mlp_input`)."""
    lw = w.layers[layer]
    x_in = x_in.to(lw.device)
    if lw.mlp_is_zero:  # exactly what the arithmetic below gives for finite input
        return x_in.new_zeros(()).expand(x_in.shape)  # read-only: no memory
    x = ln2(w, layer, x_in)
    h = linear(x, lw.W_in, lw.b_in)
    if lw.W_gate is None:
        h = w.act(h)
    else:  # gated (SwiGLU): act(x W_gate + b_gate) * (x W_in + b_in), as HF's Llama MLP
        h = w.act(linear(x, lw.W_gate, lw.b_gate)) * h
    return linear(h, lw.W_out, lw.b_out)


def mlp_input(w: ModelWeights, resid_pre: Tensor, resid_mid: Tensor) -> Tensor:
    """What the MLP reads: the residual after attention, or the block's input when attention
    and MLP run in parallel (GPT-NeoX), where the MLP of layer L does not read layer L's heads."""
    return resid_pre if w.parallel else resid_mid


def add_mlp(w: ModelWeights, layer: int, x_resid_mid: Tensor) -> Tensor:
    """Sequential blocks: the residual stream after ``layer``'s MLP; ``x`` itself when the MLP
    is zero."""
    if w.layers[layer].mlp_is_zero:
        return x_resid_mid
    return x_resid_mid + mlp(w, layer, x_resid_mid)


def block_parts(
    w: ModelWeights, layer: int, resid_pre: Tensor, attn_out: Tensor
) -> tuple[Tensor, Tensor | None, Tensor]:
    """(resid_mid, MLP output or None for a zero MLP, block output) from the block's input and
    its attention output. In a sequential block without an MLP the output IS resid_mid."""
    resid_pre = resid_pre.to(attn_out.device)
    mid = resid_pre + attn_out
    if w.layers[layer].mlp_is_zero:
        return mid, None, mid if not w.parallel else attn_out + resid_pre
    m = mlp(w, layer, mlp_input(w, resid_pre, mid))
    # HF GPT-NeoX sums mlp + attn + input in that order.
    return mid, m, m + attn_out + resid_pre if w.parallel else mid + m


def block_out(w: ModelWeights, layer: int, resid_pre: Tensor, attn_out: Tensor) -> Tensor:
    """The block's output from its input and its attention output (the MLP run here)."""
    return block_parts(w, layer, resid_pre, attn_out)[2]


def unembed(
    w: ModelWeights,
    resid_final: Float[Tensor, "batch *pos d_model"],
    columns: Int[Tensor, "batch k"] | None = None,
) -> Float[Tensor, "batch *pos vocab_or_k"]:
    """Logits from the final residual stream (the final norm applied here).

    With ``columns`` [batch, k], only those vocabulary ids are computed, per row: e.g. resid at END
    [batch, d_model] with columns ``stack([io, s], 1)`` gives [batch, 2], and the logit difference
    is ``out[:, 0] - out[:, 1]``.
    """
    x = norm(w, resid_final.to(w.W_U.device), w.norm_f_w, w.norm_f_b)
    if columns is None:
        out = x @ w.W_U
        return out if w.b_U is None else out + w.b_U
    columns = columns.to(w.W_U.device)
    W = w.W_U.T[columns]  # [batch, k, d_model]: gather only the requested unembedding rows
    flat = x.reshape(x.shape[0], -1, x.shape[-1])  # [batch, pos', d_model]
    out = torch.einsum("bpd,bkd->bpk", flat, W)
    if w.b_U is not None:
        out = out + w.b_U[columns][:, None]
    return out.reshape(*x.shape[:-1], columns.shape[1])


def forward(
    w: ModelWeights,
    tokens: Int[Tensor, "batch pos"],
    attn_mask: Bool[Tensor, "batch pos"] | None = None,
) -> Float[Tensor, "batch pos vocab"]:
    """Full-vocabulary logits: the plain composition of the pieces above."""
    resid = embed(w, tokens)
    for layer in range(len(w.layers)):
        z = self_attention_z(w, layer, resid, attn_mask)
        resid = block_out(w, layer, resid, heads_out(w, layer, z))
    return unembed(w, resid)


__all__ = [
    "LayerWeights",
    "ModelWeights",
    "Proj",
    "add_mlp",
    "attention",
    "attend",
    "attend_z",
    "block_out",
    "embed",
    "forward",
    "heads_out",
    "linear",
    "mlp",
    "mlp_input",
    "one_query_z",
    "project",
    "project_qkv",
    "rotate",
    "self_attention_z",
    "unembed",
]
