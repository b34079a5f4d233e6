"""Standardised per-layer weights: what every architecture adapter produces for the kernel.

An adapter reads a Hugging Face checkpoint's config (a plain dict) and state dict and lays the
weights out one way for every architecture: per head ``W_Q [head, d_model, d_head]``, per
key/value group ``W_K``, ``W_V [group, d_model, d_head]``, ``W_O [head, d_head, d_model]``, MLPs as
``x @ W_in`` (and ``x @ W_gate`` for gated MLPs) then ``@ W_out``; missing biases are zeros. It
also declares the structure the kernel needs: the norm kind, the positional scheme (learned
positions or rotary on a fraction of each head), sequential or parallel attention and MLP, the
number of key/value groups, and the unembedding. Nothing here imports ``transformers``: loading a
supported model reads ``config.json`` and the safetensors directly, so startup stays cheap.

Supported (``ARCHITECTURES``): GPT-2, GPT-NeoX (Pythia), and the Llama family (Llama, Mistral,
Qwen2). Anything else raises :class:`UnsupportedArchitecture`, and :mod:`scrub.models.load` runs
it on the hook-based backend instead.

>>> w = ModelWeights.from_hf(hf_model)                 # doctest: +SKIP
>>> w.n_heads, w.n_kv_heads, w.parallel                # doctest: +SKIP
(4, 2, False)
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from scrub.errors import ScrubError


class Norm(enum.Enum):
    LAYER = "layernorm"
    RMS = "rmsnorm"


class Activation(enum.Enum):
    GELU_TANH = "gelu_new"  # HF's gelu_new / gelu_pytorch_tanh: the tanh approximation
    GELU = "gelu"
    SILU = "silu"
    RELU = "relu"

    def __call__(self, x: Tensor) -> Tensor:
        if self is Activation.GELU_TANH:
            return torch.nn.functional.gelu(x, approximate="tanh")
        if self is Activation.GELU:
            return torch.nn.functional.gelu(x)
        if self is Activation.SILU:
            return torch.nn.functional.silu(x)
        return torch.relu(x)


_ACTIVATIONS = {
    "gelu_new": Activation.GELU_TANH,
    "gelu_pytorch_tanh": Activation.GELU_TANH,
    "gelu_fast": None,  # a different approximation: not supported by the kernel
    "gelu": Activation.GELU,
    "silu": Activation.SILU,
    "swish": Activation.SILU,
    "relu": Activation.RELU,
}


class UnsupportedArchitecture(ScrubError):
    """The kernel cannot express this model; the hook-based backend runs it instead."""


@dataclass(frozen=True)
class Rotary:
    """Rotary embeddings on the first ``dim`` features of every query and key head
    (``rotate_half`` pairing, as GPT-NeoX and Llama use), with ``cos``/``sin`` tables per
    position."""

    dim: int
    cos: Float[Tensor, "n_ctx dim"]
    sin: Float[Tensor, "n_ctx dim"]

    @classmethod
    def build(cls, dim: int, base: float, n_ctx: int, dtype: torch.dtype, device) -> Rotary:
        # As HF computes it: frequencies in float32, cast to the activations' dtype at the end.
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
        freqs = torch.arange(n_ctx, dtype=torch.float32)[:, None] * inv_freq[None]
        emb = torch.cat([freqs, freqs], dim=-1)
        return cls(
            dim, emb.cos().to(dtype=dtype, device=device), emb.sin().to(dtype=dtype, device=device)
        )


@dataclass(frozen=True)
class LayerWeights:
    """One block. H query heads, G key/value groups (G divides H; G == H without GQA)."""

    norm1_w: Float[Tensor, " d_model"]
    norm1_b: Float[Tensor, " d_model"] | None  # None for RMSNorm
    W_Q: Float[Tensor, "head d_model d_head"]
    W_K: Float[Tensor, "group d_model d_head"]
    W_V: Float[Tensor, "group d_model d_head"]
    b_Q: Float[Tensor, "head d_head"]
    b_K: Float[Tensor, "group d_head"]
    b_V: Float[Tensor, "group d_head"]
    # q | k | v side by side, one dense matrix: a clean pass projects all three in one GEMM.
    W_qkv: Float[Tensor, "d_model qkv"]
    b_qkv: Float[Tensor, " qkv"]
    W_O: Float[Tensor, "head d_head d_model"]
    b_O: Float[Tensor, " d_model"]
    attn_scale: float  # scores are divided by this
    norm2_w: Float[Tensor, " d_model"]
    norm2_b: Float[Tensor, " d_model"] | None
    W_in: Float[Tensor, "d_model d_mlp"]
    b_in: Float[Tensor, " d_mlp"]
    # A gated MLP (SwiGLU): act(x W_gate + b_gate) * (x W_in + b_in); None for a plain MLP.
    W_gate: Float[Tensor, "d_model d_mlp"] | None
    b_gate: Float[Tensor, " d_mlp"] | None
    W_out: Float[Tensor, "d_mlp d_model"]
    b_out: Float[Tensor, " d_model"]
    # W_out and b_out exactly zero: the MLP outputs exactly 0 for finite input, so it is skipped.
    mlp_is_zero: bool

    @property
    def device(self) -> torch.device:
        return self.W_Q.device


@dataclass(frozen=True)
class ModelWeights:
    """Every weight the kernel reads, with the architecture's structure."""

    arch: str  # the Hugging Face model_type
    W_E: Float[Tensor, "vocab d_model"]
    W_pos: Float[Tensor, "n_ctx d_model"] | None  # learned positions (GPT-2); None with rotary
    rotary: Rotary | None
    layers: tuple[LayerWeights, ...]
    norm_f_w: Float[Tensor, " d_model"]
    norm_f_b: Float[Tensor, " d_model"] | None
    W_U: Float[Tensor, "d_model vocab"]
    b_U: Float[Tensor, " vocab"] | None
    norm: Norm
    eps: float
    act: Activation
    parallel: bool  # attention and MLP both read the block input (GPT-NeoX / Pythia)
    n_ctx: int

    @property
    def n_heads(self) -> int:
        return self.layers[0].W_Q.shape[0]

    @property
    def n_kv_heads(self) -> int:
        return self.layers[0].W_K.shape[0]

    @property
    def d_model(self) -> int:
        return self.W_E.shape[1]

    @property
    def dtype(self) -> torch.dtype:
        return self.W_E.dtype

    @property
    def has_mlps(self) -> bool:
        """False for an attention-only model: every MLP outputs exactly zero."""
        return not all(lw.mlp_is_zero for lw in self.layers)

    def group_of(self, head: int) -> int:
        """The key/value group a query head reads (heads ``g * H/G .. (g+1) * H/G - 1``)."""
        return head // (self.n_heads // self.n_kv_heads)

    @classmethod
    def from_hf(cls, hf_model: Any) -> ModelWeights:
        """The weights of a loaded Hugging Face causal LM (views of its parameters, except the
        dense per-slot copies)."""
        state = {k: v.detach() for k, v in hf_model.state_dict().items()}
        return from_checkpoint(hf_model.config.to_dict(), state)


# ----------------------------------------------------------------------------- adapters


def _get(config: Mapping[str, Any], *names: str, default: Any = None) -> Any:
    for name in names:
        if config.get(name) is not None:
            return config[name]
    return default


def _activation(config: Mapping[str, Any], *keys: str, default: str) -> Activation:
    name = _get(config, *keys, default=default)
    act = _ACTIVATIONS.get(name)
    if act is None:
        raise UnsupportedArchitecture(f"activation {name!r} is not supported by the kernel")
    return act


def _rope(config: Mapping[str, Any], d_head: int) -> tuple[int, float]:
    """(rotated dims per head, base) from either the new ``rope_parameters`` or the old fields."""
    params = dict(config.get("rope_parameters") or {})
    scaling = config.get("rope_scaling") or {}
    kind = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if kind != "default":
        raise UnsupportedArchitecture(f"rope type {kind!r} is not supported by the kernel")
    base = params.get("rope_theta", _get(config, "rope_theta", "rotary_emb_base", default=10000.0))
    frac = params.get("partial_rotary_factor", _get(config, "partial_rotary_factor", "rotary_pct"))
    dim = int(d_head * (1.0 if frac is None else frac))
    return dim, float(base)


def _strip_prefix(state: Mapping[str, Tensor], prefixes: tuple[str, ...]) -> dict[str, Tensor]:
    """Checkpoints save the base model's keys with or without its prefix: drop it."""
    out = {}
    for k, v in state.items():
        for p in prefixes:
            if k.startswith(p):
                k = k[len(p) :]
                break
        out[k] = v
    return out


def _first(s: Mapping[str, Tensor], *names: str) -> Tensor:
    """The first of ``names`` the state dict has (KeyError naming the last if none)."""
    for name in names[:-1]:
        if name in s:
            return s[name]
    return s[names[-1]]


def _heads(W: Tensor, n: int) -> Tensor:
    """A Linear weight [n * e, d] (out, in) as per-head [n, d, e], densely laid out."""
    return W.reshape(n, -1, W.shape[-1]).transpose(1, 2)  # a view: from_checkpoint copies once


def _gpt2(config: Mapping[str, Any], s: dict[str, Tensor]) -> dict[str, Any]:
    d, H = config["n_embd"], config["n_head"]
    e = d // H
    if config.get("reorder_and_upcast_attn"):
        raise UnsupportedArchitecture("GPT-2 with reorder_and_upcast_attn is not supported")
    layers = []
    for i in range(config["n_layer"]):
        p = f"h.{i}."
        W_qkv = s[p + "attn.c_attn.weight"]  # Conv1D: [d, 3d], columns q | k | v
        b_qkv = s[p + "attn.c_attn.bias"]
        W_Q, W_K, W_V = (m.reshape(d, H, e).permute(1, 0, 2) for m in W_qkv.split(d, dim=1))
        b_Q, b_K, b_V = (b.reshape(H, e) for b in b_qkv.split(d))
        scale = math.sqrt(e) if config.get("scale_attn_weights", True) else 1.0
        if config.get("scale_attn_by_inverse_layer_idx"):
            scale *= i + 1
        layers.append(
            dict(
                norm1_w=s[p + "ln_1.weight"],
                norm1_b=s[p + "ln_1.bias"],
                W_Q=W_Q,
                W_K=W_K,
                W_V=W_V,
                b_Q=b_Q,
                b_K=b_K,
                b_V=b_V,
                W_O=s[p + "attn.c_proj.weight"].reshape(H, e, d),
                b_O=s[p + "attn.c_proj.bias"],
                attn_scale=scale,
                norm2_w=s[p + "ln_2.weight"],
                norm2_b=s[p + "ln_2.bias"],
                W_in=s[p + "mlp.c_fc.weight"],
                b_in=s[p + "mlp.c_fc.bias"],
                W_gate=None,
                b_gate=None,
                W_out=s[p + "mlp.c_proj.weight"],
                b_out=s[p + "mlp.c_proj.bias"],
            )
        )
    return dict(
        W_E=s["wte.weight"],
        W_pos=s["wpe.weight"],
        rotary=None,
        layers=layers,
        norm_f_w=s["ln_f.weight"],
        norm_f_b=s["ln_f.bias"],
        W_U=s.get("lm_head.weight", s["wte.weight"]).T,
        b_U=None,
        norm=Norm.LAYER,
        eps=config.get("layer_norm_epsilon", 1e-5),
        act=_activation(config, "activation_function", default="gelu_new"),
        parallel=False,
        n_ctx=config.get("n_positions", 1024),
    )


def _neox(config: Mapping[str, Any], s: dict[str, Tensor]) -> dict[str, Any]:
    d, H = config["hidden_size"], config["num_attention_heads"]
    e = d // H
    layers = []
    for i in range(config["num_hidden_layers"]):
        p = f"layers.{i}."
        # HF splits query_key_value's output per head as [head, q|k|v, d_head].
        W = s[p + "attention.query_key_value.weight"].reshape(H, 3, e, d)
        b = _bias(s, p + "attention.query_key_value.bias", (H, 3, e), W.dtype)
        layers.append(
            dict(
                norm1_w=s[p + "input_layernorm.weight"],
                norm1_b=s[p + "input_layernorm.bias"],
                W_Q=W[:, 0].transpose(1, 2),
                W_K=W[:, 1].transpose(1, 2),
                W_V=W[:, 2].transpose(1, 2),
                b_Q=b[:, 0],
                b_K=b[:, 1],
                b_V=b[:, 2],
                W_O=s[p + "attention.dense.weight"].T.reshape(H, e, d),
                b_O=_bias(s, p + "attention.dense.bias", (d,), W.dtype),
                attn_scale=math.sqrt(e),
                norm2_w=s[p + "post_attention_layernorm.weight"],
                norm2_b=s[p + "post_attention_layernorm.bias"],
                W_in=s[p + "mlp.dense_h_to_4h.weight"].T,
                b_in=s[p + "mlp.dense_h_to_4h.bias"],
                W_gate=None,
                b_gate=None,
                W_out=s[p + "mlp.dense_4h_to_h.weight"].T,
                b_out=s[p + "mlp.dense_4h_to_h.bias"],
            )
        )
    rot_dim, base = _rope(config, e)
    return dict(
        W_E=s["embed_in.weight"],
        W_pos=None,
        rotary=(rot_dim, base),
        layers=layers,
        norm_f_w=s["final_layer_norm.weight"],
        norm_f_b=s["final_layer_norm.bias"],
        # Saved checkpoints name the unembedding embed_out; transformers 5 modules, lm_head.
        W_U=_first(s, "embed_out.weight", "lm_head.weight", "embed_in.weight").T,
        b_U=None,
        norm=Norm.LAYER,
        eps=config.get("layer_norm_eps", 1e-5),
        act=_activation(config, "hidden_act", default="gelu"),
        parallel=bool(config.get("use_parallel_residual", True)),
        n_ctx=config.get("max_position_embeddings", 2048),
    )


def _bias(s: Mapping[str, Tensor], key: str, shape: tuple[int, ...], dtype) -> Tensor:
    """The bias ``key`` of state dict ``s`` as ``shape``, or zeros where the model has none."""
    b = s.get(key)
    return torch.zeros(shape, dtype=dtype) if b is None else b.reshape(shape)


def _llama(config: Mapping[str, Any], s: dict[str, Tensor]) -> dict[str, Any]:
    d, H = config["hidden_size"], config["num_attention_heads"]
    G = config.get("num_key_value_heads") or H
    e = config.get("head_dim") or d // H
    layers = []
    for i in range(config["num_hidden_layers"]):
        p = f"layers.{i}."
        down = s[p + "mlp.down_proj.weight"]
        dt, f = down.dtype, down.shape[1]
        layers.append(
            dict(
                norm1_w=s[p + "input_layernorm.weight"],
                norm1_b=None,
                W_Q=_heads(s[p + "self_attn.q_proj.weight"], H),
                W_K=_heads(s[p + "self_attn.k_proj.weight"], G),
                W_V=_heads(s[p + "self_attn.v_proj.weight"], G),
                b_Q=_bias(s, p + "self_attn.q_proj.bias", (H, e), dt),
                b_K=_bias(s, p + "self_attn.k_proj.bias", (G, e), dt),
                b_V=_bias(s, p + "self_attn.v_proj.bias", (G, e), dt),
                W_O=s[p + "self_attn.o_proj.weight"].T.reshape(H, e, d),
                b_O=_bias(s, p + "self_attn.o_proj.bias", (d,), dt),
                attn_scale=math.sqrt(e),
                norm2_w=s[p + "post_attention_layernorm.weight"],
                norm2_b=None,
                W_in=s[p + "mlp.up_proj.weight"].T,
                b_in=_bias(s, p + "mlp.up_proj.bias", (f,), dt),
                W_gate=s[p + "mlp.gate_proj.weight"].T,
                b_gate=_bias(s, p + "mlp.gate_proj.bias", (f,), dt),
                W_out=down.T,
                b_out=_bias(s, p + "mlp.down_proj.bias", (d,), dt),
            )
        )
    rot_dim, base = _rope(config, e)
    tied = config.get("tie_word_embeddings", False) or "lm_head.weight" not in s
    return dict(
        W_E=s["embed_tokens.weight"],
        W_pos=None,
        rotary=(rot_dim, base),
        layers=layers,
        norm_f_w=s["norm.weight"],
        norm_f_b=None,
        W_U=(s["embed_tokens.weight"] if tied else s["lm_head.weight"]).T,
        b_U=None,
        norm=Norm.RMS,
        eps=config.get("rms_norm_eps", 1e-6),
        act=_activation(config, "hidden_act", default="silu"),
        parallel=False,
        # A sliding window (Mistral) changes nothing for prompts that fit in it: cap the context
        # there, so longer prompts are refused rather than computed without the window.
        n_ctx=min(
            config.get("max_position_embeddings", 2048),
            (config.get("use_sliding_window", True) and config.get("sliding_window")) or 10**9,
        ),
    )


_ADAPTERS: dict[str, tuple[Callable[..., dict[str, Any]], tuple[str, ...]]] = {
    "gpt2": (_gpt2, ("transformer.",)),
    "gpt_neox": (_neox, ("gpt_neox.",)),
    "llama": (_llama, ("model.",)),
    "mistral": (_llama, ("model.",)),
    "qwen2": (_llama, ("model.",)),
}
#: model_type values the kernel runs; others go to the hook-based backend.
ARCHITECTURES = tuple(_ADAPTERS)


def from_checkpoint(
    config: Mapping[str, Any],
    state: Mapping[str, Tensor],
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> ModelWeights:
    """Standardised weights from a Hugging Face config dict and state dict.

    ``dtype``/``device`` convert every tensor (default: as stored; rotary tables follow the
    weights). Raises :class:`UnsupportedArchitecture` for what the kernel cannot express.
    """
    model_type = config.get("model_type")
    if model_type not in _ADAPTERS:
        raise UnsupportedArchitecture(
            f"the kernel has no adapter for model_type {model_type!r}",
            fix=f"supported: {', '.join(ARCHITECTURES)}; other models run on the hook backend",
        )
    adapter, prefixes = _ADAPTERS[model_type]
    try:
        parts = adapter(config, _strip_prefix(state, prefixes))
    except KeyError as e:
        raise UnsupportedArchitecture(
            f"the {model_type} checkpoint has no weight {e.args[0]!r}",
            fix="save the model with `model.save_pretrained(...)`",
        ) from None
    dtype = dtype or parts["W_E"].dtype
    device = device or parts["W_E"].device

    def conv(x):
        return x if x is None else x.to(device=device, dtype=dtype)

    layers = []
    for lw in parts.pop("layers"):
        lw = {k: (conv(v) if isinstance(v, Tensor) else v) for k, v in lw.items()}
        # Each slot's weight is a per-head view of one dense [d, n * e] matrix, so a projection
        # of all heads is a dense GEMM (which linear() hands to oneDNN), not a strided one.
        dense = [_side_by_side(lw[k]) for k in ("W_Q", "W_K", "W_V")]
        for k, m in zip(("W_Q", "W_K", "W_V"), dense):
            lw[k] = m.view(m.shape[0], lw[k].shape[0], -1).permute(1, 0, 2)
        lw["W_qkv"] = torch.cat(dense, dim=1)
        lw["b_qkv"] = torch.cat([lw[k].flatten() for k in ("b_Q", "b_K", "b_V")])
        for k in ("W_in", "W_gate", "W_out"):  # dense: linear() gives dense weights to oneDNN
            lw[k] = None if lw[k] is None else lw[k].contiguous()
        lw["mlp_is_zero"] = not (bool(lw["W_out"].any()) or bool(lw["b_out"].any()))
        layers.append(LayerWeights(**lw))
    rot = parts.pop("rotary")
    rotary = None if rot is None else Rotary.build(rot[0], rot[1], parts["n_ctx"], dtype, device)
    out = {k: (conv(v) if isinstance(v, Tensor) else v) for k, v in parts.items()}
    return ModelWeights(arch=model_type, rotary=rotary, layers=tuple(layers), **out)


def _side_by_side(W: Tensor) -> Tensor:
    """Per-head [n, d, e] as one dense [d, n * e] matrix (head-major columns)."""
    n, d, e = W.shape
    return W.permute(1, 0, 2).reshape(d, n * e).contiguous()


def on_layer_devices(w: ModelWeights, devices: Mapping[int, torch.device | str]) -> ModelWeights:
    """``w`` with layer ``L``'s weights on ``devices[L]`` (a ``device_map``): the kernel moves
    activations to each layer's device as it reaches it. Embeddings stay where they are, and
    the unembedding goes with the last layer."""

    def move(lw: LayerWeights, dev) -> LayerWeights:
        return replace(
            lw,
            **{
                k: v.to(dev)
                for k, v in vars(lw).items()
                if isinstance(v, Tensor)  # skips None biases and floats
            },
        )

    layers = tuple(move(lw, devices.get(i, lw.device)) for i, lw in enumerate(w.layers))
    last = layers[-1].device
    return replace(
        w,
        layers=layers,
        norm_f_w=w.norm_f_w.to(last),
        norm_f_b=None if w.norm_f_b is None else w.norm_f_b.to(last),
        W_U=w.W_U.to(last),
        b_U=None if w.b_U is None else w.b_U.to(last),
    )
