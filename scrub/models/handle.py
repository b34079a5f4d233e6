"""The model handle: typed activation sites and scoped hooks over a TransformerBridge.

This is the only module that knows transformer_lens hook-name strings. Everything else names an
activation by a :class:`Site`, validated against the model's :class:`ModelInfo`.

>>> site = Site(SiteKind.HEAD_RESULT, 3)
>>> hook_name(site, info)                          # doctest: +SKIP
'blocks.3.attn.hook_result'
>>> with model.hooks([(site, lambda x: x * 0)]):   # doctest: +SKIP
...     logits = model.run(tokens)

Activation semantics (the bridge is booted with ``enable_compatibility_mode(no_processing=True)``,
see :mod:`scrub.models.load`): every site holds the raw Hugging Face model's value, with no
LayerNorm folding or weight centring, so the functional kernel (:mod:`scrub.models.kernel`)
reproduces each of them.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from scrub.errors import ScrubError

if TYPE_CHECKING:  # heavy imports, only for annotations
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from scrub.models.weights import ModelWeights


class SiteKind(enum.Enum):
    """Kinds of activation a hook can read or replace. Shapes are for batch b, positions t."""

    EMBED = "embed"  # token + position embedding sum = resid_pre of layer 0 [b,t,d]; no layer
    RESID_PRE = "resid_pre"  # [b,t,d]
    RESID_MID = "resid_mid"  # after attention, before the MLP [b,t,d]
    RESID_POST = "resid_post"  # [b,t,d]
    Q_INPUT = "q_input"  # pre-LayerNorm residual each head's queries read [b,t,H,d]
    K_INPUT = "k_input"  # [b,t,H,d]
    V_INPUT = "v_input"  # [b,t,H,d]
    Z = "z"  # per-head attention-weighted values [b,t,H,d_head]
    PATTERN = "pattern"  # softmaxed attention [b,H,t_query,t_key]
    HEAD_RESULT = "head_result"  # per-head z @ W_O, without b_O [b,t,H,d]
    ATTN_OUT = "attn_out"  # sum of head results + b_O [b,t,d]
    MLP_IN = "mlp_in"  # the pre-LayerNorm residual the MLP reads (= resid_mid) [b,t,d]
    MLP_OUT = "mlp_out"  # [b,t,d]
    RESID_FINAL = "resid_final"  # input of ln_final [b,t,d]; no layer

    @property
    def has_layer(self) -> bool:
        return self not in (SiteKind.EMBED, SiteKind.RESID_FINAL)


@dataclass(frozen=True)
class Site:
    """One activation of the model: a kind and, for per-layer kinds, a layer.

    >>> Site(SiteKind.Z, 2)
    Site(kind=<SiteKind.Z: 'z'>, layer=2)
    >>> Site(SiteKind.EMBED)
    Site(kind=<SiteKind.EMBED: 'embed'>, layer=None)
    """

    kind: SiteKind
    layer: int | None = None

    def __post_init__(self) -> None:
        if self.kind.has_layer and not isinstance(self.layer, int):
            raise ScrubError(
                f"site {self.kind.value} needs a layer", fix="pass Site(kind, layer=<int>)"
            )
        if not self.kind.has_layer and self.layer is not None:
            raise ScrubError(
                f"site {self.kind.value} has no layer (got {self.layer})", fix="omit the layer"
            )


class Backend(enum.Enum):
    """How experiments run: the functional kernel (fast), or hooks on the TransformerBridge
    (any architecture it loads; slow but exact)."""

    KERNEL = "kernel"
    HOOKS = "hooks"


@dataclass(frozen=True)
class ModelInfo:
    """Architecture facts other modules may rely on."""

    name: str
    n_layers: int
    n_heads: int
    d_model: int
    d_head: int
    d_vocab: int
    n_ctx: int
    has_mlps: bool  # False when every MLP weight is exactly zero (attention-only model)
    n_kv_heads: int | None = None  # key/value groups (grouped-query attention); None: n_heads
    parallel: bool = False  # attention and MLP read the same residual (GPT-NeoX)
    arch: str = "gpt2"  # the Hugging Face model_type
    backend: Backend = Backend.KERNEL
    device: str = "cpu"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.n_kv_heads is None:
            object.__setattr__(self, "n_kv_heads", self.n_heads)


# Per-layer kinds -> hook name after "blocks.{L}.". EMBED is resid_pre of block 0 (its hook fires
# on the sum of hook_embed and hook_pos_embed, which is what a patch of "the embeddings" needs).
_LAYER_HOOKS: dict[SiteKind, str] = {
    SiteKind.RESID_PRE: "hook_resid_pre",
    SiteKind.RESID_MID: "hook_resid_mid",
    SiteKind.RESID_POST: "hook_resid_post",
    SiteKind.Q_INPUT: "hook_q_input",
    SiteKind.K_INPUT: "hook_k_input",
    SiteKind.V_INPUT: "hook_v_input",
    SiteKind.Z: "attn.hook_z",
    SiteKind.PATTERN: "attn.hook_pattern",
    SiteKind.HEAD_RESULT: "attn.hook_result",
    SiteKind.ATTN_OUT: "hook_attn_out",
    # hook_mlp_in is gated off in the bridge; resid_mid is the same tensor the MLP reads.
    SiteKind.MLP_IN: "hook_resid_mid",
    SiteKind.MLP_OUT: "hook_mlp_out",
}


def hook_name(site: Site, info: ModelInfo) -> str:
    """The bridge hook name of ``site``, after checking its layer exists in the model.

    >>> hook_name(Site(SiteKind.EMBED), info)      # doctest: +SKIP
    'blocks.0.hook_resid_pre'
    """
    if site.kind is SiteKind.EMBED:
        return "blocks.0.hook_resid_pre"
    if site.kind is SiteKind.RESID_FINAL:
        return "ln_final.hook_in"
    if site.kind is SiteKind.MLP_IN and info.parallel:  # parallel blocks: the MLP reads resid_pre
        return f"blocks.{site.layer}.hook_resid_pre"
    if site.kind is SiteKind.RESID_MID and info.parallel:
        raise ScrubError(
            "this model runs attention and MLP in parallel: it has no resid_mid",
            fix="read resid_pre (the MLP's input) or attn_out",
        )
    assert site.layer is not None  # guaranteed by Site.__post_init__
    if not 0 <= site.layer < info.n_layers:
        raise ScrubError(
            f"layer {site.layer} does not exist: this model has layers 0-{info.n_layers - 1}",
            fix=f"use a layer between 0 and {info.n_layers - 1}",
        )
    return f"blocks.{site.layer}.{_LAYER_HOOKS[site.kind]}"


HookFn = Callable[[Tensor], "Tensor | None"]


@dataclass(frozen=True, eq=False)
class Model:
    """A loaded model: its tokenizer, architecture facts and standardised weights.

    ``weights`` feed the functional kernel (None on the hook backend). ``hf_model`` (the Hugging
    Face module) and ``bridge`` (a transformer_lens ``TransformerBridge`` in compatibility mode
    without weight processing, with split q/k/v inputs and per-head results) are built on first
    use: the kernel does not need them, and importing transformers and booting the bridge cost
    seconds. Build one with :func:`scrub.models.load_model`.
    """

    tokenizer: PreTrainedTokenizerBase
    info: ModelInfo
    weights: ModelWeights | None
    make_hf_model: Callable[[], PreTrainedModel] = field(repr=False)

    @functools.cached_property
    def hf_model(self) -> PreTrainedModel:
        """The Hugging Face module (loaded on first use; same values as ``weights``)."""
        return self.make_hf_model()

    @functools.cached_property
    def bridge(self) -> Any:
        """A TransformerBridge with :attr:`hf_model`'s weights (booted on first use).

        It wraps a copy: booting rewires the module it wraps (its state dict's names change
        and ``save_pretrained`` fails), and ``hf_model`` stays a plain Hugging Face model. On
        the hook backend, where the bridge is the only way to run, it wraps ``hf_model`` itself.
        """
        import copy

        from scrub.models.load import boot_bridge

        if self.weights is None:
            return boot_bridge(self.hf_model, self.tokenizer)
        return boot_bridge(copy.deepcopy(self.hf_model), self.tokenizer)

    @contextmanager
    def hooks(self, hooks: Sequence[tuple[Site, HookFn]]) -> Iterator[Model]:
        """Register forward hooks for the duration of the block; always removes them.

        A hook receives the activation and returns a replacement or None (keep). Hooks are removed
        on normal exit, on an exception in the block and on a KeyboardInterrupt raised inside a
        hook (PyTorch hooks are global state on the module: a leaked one corrupts every later
        run).

        >>> with model.hooks([(Site(SiteKind.MLP_OUT, 0), torch.zeros_like)]):  # doctest: +SKIP
        ...     logits = model.run(tokens)
        """
        # Resolve every name before registering anything, so a bad site registers nothing.
        named = [(hook_name(site, self.info), _adapt(fn)) for site, fn in hooks]
        handles: list[tuple[Any, Any]] = []
        try:
            for name, fn in named:
                point = self.bridge.get_hook_point(name)
                if point is None:
                    raise ScrubError(f"the model has no hook point {name!r}")
                handles.append((point, point.add_hook(fn, dir="fwd")))
            yield self
        finally:
            for point, handle in reversed(handles):
                handle.hook.remove()
                if handle in point.fwd_hooks:
                    point.fwd_hooks.remove(handle)

    def run(
        self,
        tokens: Int[Tensor, "batch pos"],
        hooks: Sequence[tuple[Site, HookFn]] = (),
        attn_mask: Bool[Tensor, "batch pos"] | None = None,
    ) -> Float[Tensor, "batch pos vocab"]:
        """Logits of one forward pass (without gradients) with ``hooks`` active.

        ``attn_mask`` marks real tokens (True) for right-padded batches; padded key positions are
        masked out, and outputs at padded query positions are meaningless.
        """
        device = next(self.hf_model.parameters()).device
        kwargs = {} if attn_mask is None else {"attention_mask": attn_mask.long().to(device)}
        with torch.no_grad(), self.hooks(hooks):
            return self.bridge(tokens.to(device), **kwargs)

    def run_with_cache(
        self,
        tokens: Int[Tensor, "batch pos"],
        sites: Sequence[Site],
        hooks: Sequence[tuple[Site, HookFn]] = (),
        attn_mask: Bool[Tensor, "batch pos"] | None = None,
    ) -> dict[Site, Tensor]:
        """The activations at ``sites`` (detached) from one forward pass with ``hooks`` active.

        Caching hooks run after ``hooks``, so a cached site shows the patched value.
        """
        cache: dict[Site, Tensor] = {}

        def saver(site: Site) -> HookFn:
            def save(x: Tensor) -> None:
                cache[site] = x.detach()

            return save

        self.run(tokens, [*hooks, *((s, saver(s)) for s in sites)], attn_mask)
        missing = [s for s in sites if s not in cache]
        if missing:
            raise ScrubError(
                f"{self.info.name}: the TransformerBridge of this architecture "
                f"({self.info.arch}) provides no {missing[0].kind.value} hook",
                fix="scrub components whose outputs it exposes (e.g. MLPs), or use a model "
                "with a kernel adapter (gpt2, gpt_neox, llama, mistral, qwen2)",
            )
        return cache


def _adapt(fn: HookFn) -> Callable[..., Tensor | None]:
    """Wrap a one-argument hook into transformer_lens's ``(tensor, hook=...)`` signature."""

    def hook(x: Tensor, hook: Any = None) -> Tensor | None:
        return fn(x)

    return hook
