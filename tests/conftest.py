"""Shared fixtures. Models are tiny, seeded and built offline into a session temp directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from scrub.data import build_word_tokenizer
from scrub.models import Model, load_model
from scrub.models.random_gpt2 import GPT2Shape, random_gpt2
from scrub.models.weights import ModelWeights


def pytest_configure(config: pytest.Config) -> None:
    """One torch thread per test process: results are bit-reproducible for a fixed thread count
    (1 and 2 threads differ by ~1e-6), and `make test` already runs two xdist workers on two cores.
    """
    import torch

    torch.set_num_threads(1)


TINY_SHAPE = GPT2Shape(n_layers=3, n_heads=4, d_model=32, d_vocab=40, n_ctx=64)


def build_tiny_model_dir(
    path: Path, *, shape: GPT2Shape = TINY_SHAPE, seed: int = 0, zero_mlps: bool = False
) -> Path:
    """Save a seeded random GPT-2 and a word-level tokenizer (w2..w{vocab-1}) as an HF dir.

    A large init scale makes attention far from uniform, so patching effects are large.
    """
    model = random_gpt2(shape, seed=seed, init_std=0.3, zero_mlps=zero_mlps)
    tokenizer = build_word_tokenizer([f"w{i}" for i in range(2, shape.d_vocab)], sort=False)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def w(tiny_model: Model) -> ModelWeights:
    """The tiny model's weights for the functional kernel."""
    return tiny_model.weights


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Model:
    """A 3-layer, 4-head, d_model 32, vocab 40 GPT-2 with MLPs (BOS = pad = id 0)."""
    return load_model(str(build_tiny_model_dir(tmp_path_factory.mktemp("tiny"))))


@pytest.fixture(scope="session")
def tiny_attn_only_model(tmp_path_factory: pytest.TempPathFactory) -> Model:
    """The same shape with every MLP weight exactly zero (``info.has_mlps`` is False)."""
    path = tmp_path_factory.mktemp("tiny_attn_only")
    return load_model(str(build_tiny_model_dir(path, zero_mlps=True)))
