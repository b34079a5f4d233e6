"""Looking at heads directly: attention patterns and direct logit attribution (DLA).

Both read one clean forward pass through the public model API (:meth:`Model.run_with_cache` with
typed :class:`~scrub.models.Site` s), so they show exactly what the model computes, hooks and all.

Direct logit attribution freezes the final LayerNorm's scale at its clean value (as is usual): a
head's result at END is centred, divided by that scale, multiplied by ln_f's weight and read
along ``W_U[:, IO] - W_U[:, S]``. With the scale frozen the final LayerNorm is affine, so the
attributions of every piece of the final residual (embeddings, each head, each ``b_O``, each MLP)
plus ln_f's bias along the same direction sum to the logit difference.

>>> heads = [(1, 2), (3, 1)]
>>> patterns = attention_patterns(model, ps.tokens[:1], heads)      # doctest: +SKIP
>>> dla = direct_logit_attribution(model, ps.tokens, ps.mask, ps.positions["END"], ps.answers)
...                                                                  # doctest: +SKIP
>>> dla.mean(0)   # layer x head, averaged over prompts              # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from scrub.errors import ScrubError
from scrub.models import Model, Site, SiteKind


def check_heads(model: Model, heads: Sequence[tuple[int, int]]) -> None:
    info = model.info
    for layer, head in heads:
        if not (0 <= layer < info.n_layers and 0 <= head < info.n_heads):
            raise ScrubError(
                f"head {layer}.{head} does not exist in {info.name} "
                f"({info.n_layers} layers of {info.n_heads} heads)",
                fix=f"use L.H with L < {info.n_layers} and H < {info.n_heads}",
            )


def attention_patterns(
    model: Model,
    tokens: Int[Tensor, "b t"],
    heads: Sequence[tuple[int, int]],
    attn_mask: Bool[Tensor, "b t"] | None = None,
) -> Float[Tensor, "heads b t_query t_key"]:
    """Each of ``heads``' attention pattern on every prompt (rows: queries, columns: keys)."""
    check_heads(model, heads)
    layers = sorted({layer for layer, _ in heads})
    cache = model.run_with_cache(
        tokens, [Site(SiteKind.PATTERN, lay) for lay in layers], attn_mask=attn_mask
    )
    return torch.stack([cache[Site(SiteKind.PATTERN, layer)][:, head] for layer, head in heads])


def _weights(model: Model):
    from scrub.models.weights import ModelWeights

    return model.weights if model.weights is not None else ModelWeights.from_hf(model.hf_model)


def _centres(w) -> bool:
    """LayerNorm centres a vector before scaling it; RMSNorm does not."""
    from scrub.models.weights import Norm

    return w.norm is Norm.LAYER


def logit_direction(model: Model, answers: Int[Tensor, "b 2"]) -> Float[Tensor, "b d_model"]:
    """``norm_f.weight * (W_U[:, IO] - W_U[:, S])``: what a frozen-scale vector is read along."""
    return _direction(_weights(model), answers)


def final_scale(model: Model, resid_final: Float[Tensor, "b d_model"]) -> Float[Tensor, "b 1"]:
    """The final norm's scale of each residual (frozen for DLA): ``sqrt(var + eps)`` for
    LayerNorm, ``sqrt(mean square + eps)`` for RMSNorm."""
    return _scale(_weights(model), resid_final)


# On the hook backend ``_weights`` builds the weights from the HF model: the helpers below take
# them built once.
def _direction(w, answers: Int[Tensor, "b 2"]) -> Float[Tensor, "b d_model"]:
    answers = answers.to(w.W_U.device)
    return (w.W_U.T[answers[:, 0]] - w.W_U.T[answers[:, 1]]) * w.norm_f_w


def _scale(w, resid_final: Float[Tensor, "b d_model"]) -> Float[Tensor, "b 1"]:
    spread = (
        resid_final.var(-1, unbiased=False, keepdim=True)
        if _centres(w)
        else resid_final.pow(2).mean(-1, keepdim=True)
    )
    return (spread + w.eps).sqrt()


def direct_logit_attribution(
    model: Model,
    tokens: Int[Tensor, "b t"],
    attn_mask: Bool[Tensor, "b t"],
    end: Int[Tensor, " b"],
    answers: Int[Tensor, "b 2"],
) -> Float[Tensor, "b layer head"]:
    """Each head's direct effect on logit(IO) - logit(S) at END, per prompt (module docstring)."""
    info = model.info
    sites = [Site(SiteKind.HEAD_RESULT, layer) for layer in range(info.n_layers)]
    cache = model.run_with_cache(tokens, [*sites, Site(SiteKind.RESID_FINAL)], attn_mask=attn_mask)
    rows = torch.arange(tokens.shape[0])
    w = _weights(model)
    scale = _scale(w, cache[Site(SiteKind.RESID_FINAL)][rows, end])
    direction = _direction(w, answers)
    centres = _centres(w)
    out = torch.empty(tokens.shape[0], info.n_layers, info.n_heads)
    for layer, site in enumerate(sites):
        result = cache[site][rows, end]  # [b, H, d]
        if centres:
            result = result - result.mean(-1, keepdim=True)
        out[:, layer] = (result / scale[:, None] * direction[:, None]).sum(-1)
    return out
