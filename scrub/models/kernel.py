"""A functional GPT-2 forward pass on raw Hugging Face weights, with no hooks.

The fast engine and fast patching compose these pieces themselves; :func:`forward` is the plain
composition and matches ``GPT2LMHeadModel`` logits to ~1e-6 in float32.

>>> w = GPT2Weights.from_hf(model.hf_model)        # doctest: +SKIP
>>> logits = forward(w, tokens)                    # doctest: +SKIP

Correspondence with the bridge hooks of :class:`scrub.models.Model` (booted without weight
processing, so values are raw-model values, equal to ~1e-6):

* ``embed(w, tokens)``                      = ``Site(EMBED)`` = resid_pre of layer 0
* the ``q_in/k_in/v_in`` of :func:`attention` = ``Q_INPUT/K_INPUT/V_INPUT`` (pre-LayerNorm,
  per head; resid_pre broadcast over heads when unpatched)
* :func:`attention` ``result``, ``pattern``  = ``HEAD_RESULT`` (no b_O), ``PATTERN``
* ``result.sum(2) + w.layers[L].b_O``       = ``ATTN_OUT``
* :func:`mlp` of resid_mid                  = ``MLP_OUT``
* the input of :func:`unembed`              = ``RESID_FINAL``
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from scrub.errors import ScrubError


@dataclass(frozen=True)
class LayerWeights:
    """One transformer block's weights, split per head. H heads, d = d_model, e = d_head."""

    ln1_w: Float[Tensor, " d_model"]
    ln1_b: Float[Tensor, " d_model"]
    W_Q: Float[Tensor, "head d_model d_head"]
    W_K: Float[Tensor, "head d_model d_head"]
    W_V: Float[Tensor, "head d_model d_head"]
    b_Q: Float[Tensor, "head d_head"]
    b_K: Float[Tensor, "head d_head"]
    b_V: Float[Tensor, "head d_head"]
    # HF's fused c_attn (columns q | k | v, heads contiguous): one matmul projects all three.
    W_qkv: Float[Tensor, "d_model three_d_model"]
    b_qkv: Float[Tensor, " three_d_model"]
    W_O: Float[Tensor, "head d_head d_model"]
    b_O: Float[Tensor, " d_model"]
    attn_scale: float  # scores are divided by this
    ln2_w: Float[Tensor, " d_model"]
    ln2_b: Float[Tensor, " d_model"]
    # GPT-2 always has an MLP; an attention-only model has all of these exactly zero.
    W_in: Float[Tensor, "d_model d_mlp"]
    b_in: Float[Tensor, " d_mlp"]
    W_out: Float[Tensor, "d_mlp d_model"]
    b_out: Float[Tensor, " d_model"]
    # W_out and b_out exactly zero: the MLP outputs exactly 0 for finite input, so it is skipped.
    # Attention-only toy models are stored as standard GPT-2 checkpoints with zero MLPs.
    mlp_is_zero: bool


@dataclass(frozen=True)
class GPT2Weights:
    """All weights of a GPT-2, extracted once from a ``GPT2LMHeadModel``: views of its
    parameters, except one dense copy of the q, k and v weights (see ``from_hf``)."""

    W_E: Float[Tensor, "vocab d_model"]
    W_pos: Float[Tensor, "n_ctx d_model"]
    layers: tuple[LayerWeights, ...]
    ln_f_w: Float[Tensor, " d_model"]
    ln_f_b: Float[Tensor, " d_model"]
    W_U: Float[Tensor, "d_model vocab"]  # lm_head.weight.T (tied to W_E in GPT-2)
    eps: float

    @property
    def has_mlps(self) -> bool:
        """False for an attention-only model: every MLP outputs exactly zero."""
        return not all(lw.mlp_is_zero for lw in self.layers)

    @property
    def n_heads(self) -> int:
        return self.layers[0].W_Q.shape[0]

    @classmethod
    def from_hf(cls, hf_model: Any) -> GPT2Weights:
        """Read the weights of a Hugging Face ``GPT2LMHeadModel`` (Conv1D weights are [in, out])."""
        cfg = hf_model.config
        if cfg.model_type != "gpt2":
            raise ScrubError(
                f"the functional kernel supports GPT-2 only, not {cfg.model_type!r}",
                fix="use the bridge (model.run) for this model",
            )
        if cfg.activation_function != "gelu_new" or getattr(cfg, "reorder_and_upcast_attn", False):
            raise ScrubError(
                "the functional kernel needs activation_function='gelu_new' and "
                "reorder_and_upcast_attn=False",
                fix="use the bridge (model.run) for this model",
            )
        H, d = cfg.n_head, cfg.n_embd
        e = d // H
        tr = hf_model.transformer
        layers = []
        for i, block in enumerate(tr.h):
            W_qkv = block.attn.c_attn.weight.detach()  # [d, 3d], columns q|k|v, heads contiguous
            b_qkv = block.attn.c_attn.bias.detach()
            # Dense copies per slot: a slot's weight is then a dense [d, H e] matrix, which
            # linear() can hand to oneDNN (a strided column block of W_qkv would go to addmm).
            W_Q, W_K, W_V = (
                m.contiguous().view(d, H, e).permute(1, 0, 2) for m in W_qkv.split(d, dim=1)
            )
            b_Q, b_K, b_V = (b.reshape(H, e) for b in b_qkv.split(d))
            scale = math.sqrt(e) if cfg.scale_attn_weights else 1.0
            if getattr(cfg, "scale_attn_by_inverse_layer_idx", False):
                scale *= i + 1
            layers.append(
                LayerWeights(
                    ln1_w=block.ln_1.weight.detach(),
                    ln1_b=block.ln_1.bias.detach(),
                    W_Q=W_Q,
                    W_K=W_K,
                    W_V=W_V,
                    b_Q=b_Q,
                    b_K=b_K,
                    b_V=b_V,
                    W_qkv=W_qkv,
                    b_qkv=b_qkv,
                    W_O=block.attn.c_proj.weight.detach().reshape(H, e, d),
                    b_O=block.attn.c_proj.bias.detach(),
                    attn_scale=scale,
                    ln2_w=block.ln_2.weight.detach(),
                    ln2_b=block.ln_2.bias.detach(),
                    W_in=block.mlp.c_fc.weight.detach(),
                    b_in=block.mlp.c_fc.bias.detach(),
                    W_out=block.mlp.c_proj.weight.detach(),
                    b_out=block.mlp.c_proj.bias.detach(),
                    mlp_is_zero=not (
                        bool(block.mlp.c_proj.weight.any()) or bool(block.mlp.c_proj.bias.any())
                    ),
                )
            )
        return cls(
            W_E=tr.wte.weight.detach(),
            W_pos=tr.wpe.weight.detach(),
            layers=tuple(layers),
            ln_f_w=tr.ln_f.weight.detach(),
            ln_f_b=tr.ln_f.bias.detach(),
            W_U=hf_model.lm_head.weight.detach().T,
            eps=cfg.layer_norm_epsilon,
        )


def linear(x: Float[Tensor, "*b d_in"], W: Tensor, b: Tensor) -> Float[Tensor, "*b d_out"]:
    """``x @ W + b`` (``W`` is [d_in, d_out]) in one GEMM, with no second activation-sized
    tensor for the bias add.

    float32 GEMMs go through oneDNN, as ``torch.compile`` does on CPU, rather than the MKL
    path of ``torch.addmm``: MKL chooses its kernels by CPU vendor and takes slow ones on AMD
    CPUs (2.2x slower than oneDNN on this project's AMD EPYC machines), oneDNN by instruction
    set. Both equal float32 rounding (tests compare the two); ``SCRUB_GEMM=addmm`` forces the
    MKL path, and other dtypes, strided weights, autograd and builds without oneDNN take it.

    >>> linear(torch.ones(2, 3), torch.ones(3, 4), torch.zeros(4)).tolist()[0]
    [3.0, 3.0, 3.0, 3.0]
    """
    flat = x.reshape(-1, x.shape[-1])
    # oneDNN's fast kernels want a dense weight (a strided view took 100x longer).
    dense = W.is_contiguous() and b.is_contiguous()
    if _use_onednn() and dense and flat.dtype == torch.float32 and not _needs_grad(flat, W, b):
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


def layer_norm(
    x: Float[Tensor, "... d_model"], weight: Tensor, bias: Tensor, eps: float
) -> Float[Tensor, "... d_model"]:
    return F.layer_norm(x, x.shape[-1:], weight, bias, eps)


def embed(w: GPT2Weights, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
    """Token plus position embeddings (positions 0..pos-1)."""
    return w.W_E[tokens] + w.W_pos[: tokens.shape[1]]


def attention(
    w: GPT2Weights,
    layer: int,
    q_in: Float[Tensor, "batch q_pos head d_model"],
    k_in: Float[Tensor, "batch k_pos head d_model"],
    v_in: Float[Tensor, "batch k_pos head d_model"],
    attn_mask: Bool[Tensor, "batch k_pos"] | None = None,
    q_positions: Int[Tensor, " q_pos"] | Int[Tensor, "batch q_pos"] | None = None,
    heads: Sequence[int] | None = None,
) -> tuple[Float[Tensor, "batch q_pos head d_model"], Float[Tensor, "batch head q_pos k_pos"]]:
    """Per-head attention results and patterns of ``layer``.

    ``q_in``, ``k_in``, ``v_in`` are the pre-LayerNorm residual inputs of each head (ln_1 is
    applied here, per head, so each head's q, k and v inputs can be patched independently).
    Returns ``result[b, q, h] = z_h @ W_O[h]`` WITHOUT b_O: the block's attention output is
    ``result.sum(2) + w.layers[layer].b_O``.

    Queries may be a subset of positions: ``q_positions`` gives the key position of each query
    (shape [q_pos], or [batch, q_pos] when it differs per row); it defaults to ``arange(k_pos)``,
    which requires q_pos == k_pos. Query at position p attends to keys 0..p (causal), minus the
    keys where ``attn_mask`` is False (right padding). Rows of padded queries are meaningless.

    ``heads`` computes only those heads (the inputs then hold one slice per chosen head, in
    that order), e.g. ``heads=[3]`` with inputs [b, t, 1, d] computes head 3 alone.

    >>> x = embed(w, tokens)[:, :, None].expand(-1, -1, w.n_heads, -1)    # doctest: +SKIP
    >>> end = attention(w, 0, x[:, [5]], x, x, q_positions=torch.tensor([5]))  # doctest: +SKIP
    """
    lw = w.layers[layer]
    n_q, n_k = q_in.shape[1], k_in.shape[1]
    if q_positions is None:
        if n_q != n_k:
            raise ValueError(f"{n_q} queries but {n_k} keys: pass q_positions")
        q_positions = torch.arange(n_k, device=q_in.device)
    sel = slice(None) if heads is None else list(heads)
    W_Q, W_K, W_V = lw.W_Q[sel], lw.W_K[sel], lw.W_V[sel]
    q = (
        torch.einsum("bqhd,hde->bqhe", layer_norm(q_in, lw.ln1_w, lw.ln1_b, w.eps), W_Q)
        + lw.b_Q[sel]
    )
    k = (
        torch.einsum("bkhd,hde->bkhe", layer_norm(k_in, lw.ln1_w, lw.ln1_b, w.eps), W_K)
        + lw.b_K[sel]
    )
    v = (
        torch.einsum("bkhd,hde->bkhe", layer_norm(v_in, lw.ln1_w, lw.ln1_b, w.eps), W_V)
        + lw.b_V[sel]
    )
    z, pattern = attend(q, k, v, lw.attn_scale, q_positions, attn_mask)
    result = torch.einsum("bqhe,hed->bqhd", z, lw.W_O[sel])
    return result, pattern


def allowed_keys(
    n_keys: int, q_positions: Tensor, attn_mask: Tensor | None
) -> Bool[Tensor, "batch_or_1 1 q_pos k_pos"]:
    """Which keys each query attends to: causal (keys up to its position) and unpadded."""
    allowed = torch.arange(n_keys, device=q_positions.device) <= q_positions[..., :, None]
    allowed = allowed[:, None] if allowed.dim() == 3 else allowed[None, None]
    return allowed if attn_mask is None else allowed & attn_mask[:, None, None, :]


def attend(q, k, v, scale: float, q_positions: Tensor, attn_mask: Tensor | None):
    """Causal, padding-masked softmax attention: (z [b,q,h,e], pattern [b,h,q,k])."""
    scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / scale
    allowed = allowed_keys(k.shape[1], q_positions, attn_mask)
    # The dtype's minimum rather than -inf, as HF does: a fully masked row stays finite.
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    pattern = scores.softmax(dim=-1)
    return torch.einsum("bhqk,bkhe->bqhe", pattern, v), pattern


def attend_z(q, k, v, scale: float, q_positions: Tensor | None, attn_mask: Tensor | None) -> Tensor:
    """:func:`attend`'s z alone, via PyTorch's fused attention (equal to ~1e-6, and faster on CPU
    with no [b, h, q, k] pattern or layout copies). Unlike :func:`attend`, a query with no allowed
    key gets z = 0; with BOS unpadded at position 0 there is none.

    ``q_positions=None`` means a query at every position of right-padded rows, and then
    ``attn_mask`` must be None: causality alone keeps a real query off the padding after it
    (a padded query's z is finite, for the caller to ignore), and no mask is built or read.
    """
    if q_positions is None:
        if attn_mask is not None:
            raise ValueError("causal self-attention (q_positions=None) takes no attn_mask")
        allowed, causal = None, True
    else:
        allowed, causal = allowed_keys(k.shape[1], q_positions, attn_mask), False
    z = F.scaled_dot_product_attention(
        q.transpose(1, 2),
        k.transpose(1, 2),
        v.transpose(1, 2),
        allowed,
        is_causal=causal,
        scale=1 / scale,
    )
    return z.transpose(1, 2)


def self_attention_z(
    w: GPT2Weights,
    layer: int,
    resid: Float[Tensor, "batch pos d_model"],
    attn_mask: Bool[Tensor, "batch pos"] | None = None,
) -> Float[Tensor, "batch pos head d_head"]:
    """Every head's z for an unpatched layer: LayerNorm once, not once per head and slot.

    Equal to :func:`attention` with ``resid`` broadcast to every head's q, k and v inputs, where
    ``result[..., h, :] = z[..., h, :] @ W_O[h]``; a clean pass uses this because it is several
    times cheaper (one LayerNorm and no [batch, pos, head, d_model] inputs).
    """
    lw = w.layers[layer]
    x = layer_norm(resid, lw.ln1_w, lw.ln1_b, w.eps)
    q, k, v = project_qkv(w, layer, x).unbind(-3)
    return attend_z(q, k, v, lw.attn_scale, torch.arange(resid.shape[1]), attn_mask)


def project_qkv(
    w: GPT2Weights, layer: int, x_ln: Float[Tensor, "*b d_model"]
) -> Float[Tensor, "*b 3 head d_head"]:
    """Every head's q, k and v (in that order on dim -3) from LayerNormed residuals, in one
    GEMM against HF's fused c_attn weight."""
    lw = w.layers[layer]
    return linear(x_ln, lw.W_qkv, lw.b_qkv).unflatten(-1, (3, w.n_heads, -1))


def mlp(
    w: GPT2Weights, layer: int, x_resid_mid: Float[Tensor, "... d_model"]
) -> Float[Tensor, "... d_model"]:
    """The MLP output of ``layer`` from the pre-LayerNorm residual it reads (ln_2 applied here)."""
    lw = w.layers[layer]
    if lw.mlp_is_zero:  # exactly what the arithmetic below gives for finite input
        return x_resid_mid.new_zeros(()).expand(x_resid_mid.shape)  # read-only: no memory
    h = linear(layer_norm(x_resid_mid, lw.ln2_w, lw.ln2_b, w.eps), lw.W_in, lw.b_in)
    # HF's "gelu_new" is the tanh approximation of GELU.
    return linear(F.gelu(h, approximate="tanh"), lw.W_out, lw.b_out)


def add_mlp(w: GPT2Weights, layer: int, x_resid_mid: Tensor) -> Tensor:
    """The residual stream after block ``layer``'s MLP; ``x`` itself when the MLP is zero."""
    if w.layers[layer].mlp_is_zero:
        return x_resid_mid
    return x_resid_mid + mlp(w, layer, x_resid_mid)


def unembed(
    w: GPT2Weights,
    resid_final: Float[Tensor, "batch *pos d_model"],
    columns: Int[Tensor, "batch k"] | None = None,
) -> Float[Tensor, "batch *pos vocab_or_k"]:
    """Logits from the final residual stream (ln_f applied here).

    With ``columns`` [batch, k], only those vocabulary ids are computed, per row: e.g. resid at END
    [batch, d_model] with columns ``stack([io, s], 1)`` gives [batch, 2], and the logit difference
    is ``out[:, 0] - out[:, 1]``.
    """
    x = layer_norm(resid_final, w.ln_f_w, w.ln_f_b, w.eps)
    if columns is None:
        return x @ w.W_U
    W = w.W_U.T[columns]  # [batch, k, d_model]: gather only the requested unembedding rows
    flat = x.reshape(x.shape[0], -1, x.shape[-1])  # [batch, pos', d_model]
    out = torch.einsum("bpd,bkd->bpk", flat, W)
    return out.reshape(*x.shape[:-1], columns.shape[1])


def forward(
    w: GPT2Weights,
    tokens: Int[Tensor, "batch pos"],
    attn_mask: Bool[Tensor, "batch pos"] | None = None,
) -> Float[Tensor, "batch pos vocab"]:
    """Full-vocabulary logits: the plain composition of the pieces above."""
    resid = embed(w, tokens)
    for layer, lw in enumerate(w.layers):
        per_head = resid[:, :, None].expand(-1, -1, w.n_heads, -1)
        result, _ = attention(w, layer, per_head, per_head, per_head, attn_mask)
        resid = resid + result.sum(2) + lw.b_O
        resid = add_mlp(w, layer, resid)
    return unembed(w, resid)
