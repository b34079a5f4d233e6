"""Seeded random-weight GPT-2 models, built offline.

Used for ``gpt2-small-random`` (benchmarks at real scale) and for tiny test models.

>>> shape = GPT2Shape(n_layers=2, n_heads=2, d_model=8, d_vocab=20, n_ctx=16)
>>> model = random_gpt2(shape, seed=0)
>>> tuple(model.transformer.wte.weight.shape)
(20, 8)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from transformers import GPT2LMHeadModel


@dataclass(frozen=True)
class GPT2Shape:
    """Architecture of a GPT-2 model."""

    n_layers: int
    n_heads: int
    d_model: int
    d_vocab: int
    n_ctx: int


GPT2_SMALL_SHAPE = GPT2Shape(n_layers=12, n_heads=12, d_model=768, d_vocab=50257, n_ctx=1024)


def random_gpt2(
    shape: GPT2Shape, *, seed: int, init_std: float = 0.02, zero_mlps: bool = False
) -> GPT2LMHeadModel:
    """A GPT-2 with Hugging Face's initialisation under ``torch.manual_seed(seed)``, in eval mode.

    ``init_std`` is the config's ``initializer_range``: tiny test models use a larger one so that
    attention patterns are far from uniform and patching effects are large enough to assert on.
    ``zero_mlps`` sets every MLP parameter to exactly zero (an attention-only model).
    The global torch RNG state is restored afterwards.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        n_layer=shape.n_layers,
        n_head=shape.n_heads,
        n_embd=shape.d_model,
        vocab_size=shape.d_vocab,
        n_positions=shape.n_ctx,
        initializer_range=init_std,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
        # HF initialises LayerNorms to (1, 0) and biases to 0; perturb them so tests exercise
        # every weight (only when asked for a non-default init, i.e. test models).
        if init_std != 0.02:
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if name.endswith("bias") or ".ln_" in name:
                        p.add_(torch.randn_like(p) * init_std)
        if zero_mlps:
            with torch.no_grad():
                for block in model.transformer.h:
                    for p in block.mlp.parameters():
                        p.zero_()
    return model.eval()


#: Shapes of the random benchmark models beside GPT-2 small: Pythia-160M's (rotary on a quarter
#: of each head, parallel attention and MLP) and a Llama-style one with grouped-query attention
#: (12 query heads in 4 key/value groups) and a SwiGLU MLP.
FAMILY_SHAPES = {
    "pythia": dict(
        vocab_size=50304,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=2048,
        rotary_pct=0.25,
        use_parallel_residual=True,
    ),
    "llama": dict(
        vocab_size=32000,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        num_key_value_heads=4,
        intermediate_size=2048,
        max_position_embeddings=2048,
    ),
}


def random_family(family: str, *, seed: int):
    """A random-weight GPT-2-small-, Pythia- or Llama-shaped model (:data:`GPT2_SMALL_SHAPE`,
    :data:`FAMILY_SHAPES`) with Hugging Face's initialisation under ``torch.manual_seed(seed)``,
    in eval mode; the global RNG is restored."""
    if family == "gpt2":
        return random_gpt2(GPT2_SMALL_SHAPE, seed=seed)
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM

    config_cls, model_cls = {
        "pythia": (GPTNeoXConfig, GPTNeoXForCausalLM),
        "llama": (LlamaConfig, LlamaForCausalLM),
    }[family]
    config = config_cls(**FAMILY_SHAPES[family], bos_token_id=0, eos_token_id=0, pad_token_id=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config)
    return model.eval()
