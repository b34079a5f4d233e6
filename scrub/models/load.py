"""Loading models by name or path: the single entry point :func:`load_model`.

>>> model = load_model("toy-ioi")                  # doctest: +SKIP
>>> model.info.n_layers                            # doctest: +SKIP

Every model is booted the same way: the Hugging Face module and tokenizer are loaded from local
files only (never a silent download, never a retry loop), then wrapped by
``TransformerBridge.boot_transformers(name, hf_model=..., tokenizer=...)`` and put in
compatibility mode WITHOUT weight processing (``no_processing=True``) with split q/k/v inputs and
per-head results.

Why no weight processing: the default compatibility mode folds LayerNorm into the next weights and
centres the writing weights and the unembedding, and it does so by rewriting the wrapped Hugging
Face module's parameters in place. Measured on a random GPT-2 (float32), relative to the raw model:

* logits differ by a constant per (batch, position): logit differences and log-softmax are equal
  (to ~5e-7); raw logits are not;
* residual-stream activations (resid_pre/mid/post, q/k/v inputs, mlp_out, attn_out) are equal
  only after subtracting their mean over d_model;
* attention patterns are equal;
* per-head results satisfy ``processed_h = centre(raw_h - (ln1_b @ W_V[h] + b_V[h]) @ W_O[h])``
  (the value bias, including the folded LayerNorm bias, moves into b_O), equal to ~4e-9.

With ``no_processing=True`` every hook activation and the logits equal the raw HF model's (to
~1e-7), so slow references written with bridge hooks and the fast functional kernel
(:mod:`scrub.models.kernel`, which reads raw HF weights) agree on everything, not only on logit
differences, and the kernel can read ``model.hf_model`` unmodified.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from scrub.errors import ScrubError
from scrub.models.handle import Model, ModelInfo

TOY_IOI_DIR = Path(__file__).resolve().parent / "toy_ioi"
GPT2_SMALL_REPO = "gpt2"
_GPT2_SMALL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def available_models() -> tuple[str, ...]:
    """The built-in model names (any local Hugging Face model directory also works)."""
    return tuple(_LOADERS)


def load_model(name_or_path: str, *, seed: int = 0) -> Model:
    """Load a model by built-in name or local Hugging Face directory.

    Names: ``toy-ioi`` (the embedded default), ``gpt2-small`` (needs the Hugging Face cache or
    network), ``gpt2-small-random`` (GPT-2 small shape, random weights from ``seed``). Anything
    else is treated as a local directory holding ``config.json``, weights and a tokenizer.
    ``seed`` only affects random-weight models.

    >>> load_model("gpt2-small-random", seed=1).info.n_layers   # doctest: +SKIP
    12
    """
    loader = _LOADERS.get(name_or_path)
    if loader is not None:
        return loader(seed)
    path = Path(name_or_path).expanduser()
    if path.is_dir() or os.sep in name_or_path or name_or_path.startswith("."):
        return _load_dir(path, name=str(path))
    raise ScrubError(
        f"unknown model {name_or_path!r}",
        fix=f"use one of: {', '.join(available_models())}, or a local Hugging Face model directory",
    )


def _load_toy_ioi(seed: int) -> Model:
    if not (TOY_IOI_DIR / "config.json").is_file():
        raise ScrubError(
            f"the toy-ioi checkpoint is missing (expected it in {TOY_IOI_DIR})",
            fix="rebuild it with `python -m scrub.models.train_toy`",
        )
    return _load_dir(TOY_IOI_DIR, name="toy-ioi")


def _load_gpt2_small(seed: int) -> Model:
    return _load_dir(_gpt2_small_dir(), name="gpt2-small", bridge_name=GPT2_SMALL_REPO)


def _load_gpt2_small_random(seed: int) -> Model:
    from scrub.data.tokenizer import load_tokenizer
    from scrub.models.random_gpt2 import GPT2_SMALL_SHAPE, random_gpt2

    with _quiet_transformers(), tempfile.TemporaryDirectory(prefix="scrub-tokenizer-") as tmp:
        # The toy model's tokenizer (or, without its checkpoint, the IOI word-level one), so
        # IOI datasets tokenise for this model exactly as for toy-ioi.
        tokenizer = load_tokenizer("toy-ioi")
        if "name_or_path" not in tokenizer.init_kwargs:
            # Built in memory: the bridge re-reads its tokenizer from name_or_path while booting,
            # so give it a directory that lives until the boot is done.
            from transformers import AutoTokenizer

            tokenizer.save_pretrained(tmp)
            tokenizer = AutoTokenizer.from_pretrained(tmp, local_files_only=True)
        hf_model = random_gpt2(GPT2_SMALL_SHAPE, seed=seed)
        return _boot("gpt2-small-random", hf_model, tokenizer, bridge_name="gpt2-small-random")


_LOADERS: dict[str, Callable[[int], Model]] = {
    "toy-ioi": _load_toy_ioi,
    "gpt2-small": _load_gpt2_small,
    "gpt2-small-random": _load_gpt2_small_random,
}


def _load_dir(path: Path, *, name: str, bridge_name: str | None = None) -> Model:
    """Boot a local Hugging Face causal-LM directory, reading local files only."""
    from scrub.models.preflight import check_model_dir

    check_model_dir(path)  # names the broken file (config, weights, tokenizer) before transformers
    if not path.is_dir():
        raise ScrubError(f"model directory {path} does not exist", fix="check the path")
    if not (path / "config.json").is_file():
        raise ScrubError(
            f"{path} is not a Hugging Face model directory: config.json is missing",
            fix="pass a directory written by `model.save_pretrained(...)`",
        )
    weights = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
    if not any((path / w).is_file() for w in weights):
        raise ScrubError(
            f"{path} has no weights: none of {', '.join(weights)} exists",
            fix="save the model with `model.save_pretrained(...)` into that directory",
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _quiet_transformers():
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as e:
            raise ScrubError(
                f"cannot load a tokenizer from {path}: {e}",
                fix="save the tokenizer with `tokenizer.save_pretrained(...)` into that directory",
            ) from e
        hf_model = AutoModelForCausalLM.from_pretrained(
            path, local_files_only=True, dtype=torch.float32
        )
    return _boot(name, hf_model, tokenizer, bridge_name=bridge_name or str(path))


def _boot(name: str, hf_model: Any, tokenizer: Any, *, bridge_name: str) -> Model:
    from transformer_lens.model_bridge import TransformerBridge

    hf_model.eval()
    with _quiet_transformers():
        bridge = TransformerBridge.boot_transformers(
            bridge_name, hf_model=hf_model, tokenizer=tokenizer, device="cpu"
        )
        # no_processing: keep raw HF weights (see the module docstring for what folding changes).
        bridge.enable_compatibility_mode(disable_warnings=True, no_processing=True)
        bridge.set_use_split_qkv_input(True)
        bridge.set_use_attn_result(True)
    cfg = bridge.cfg
    info = ModelInfo(
        name=name,
        n_layers=cfg.n_layers,
        n_heads=cfg.n_heads,
        d_model=cfg.d_model,
        d_head=cfg.d_head,
        d_vocab=cfg.d_vocab,
        n_ctx=cfg.n_ctx,
        has_mlps=_has_mlps(hf_model),
    )
    return Model(bridge=bridge, tokenizer=tokenizer, info=info, hf_model=hf_model)


def _has_mlps(hf_model: Any) -> bool:
    """False only when every MLP parameter is exactly zero (an attention-only model)."""
    mlp_params = [p for n, p in hf_model.named_parameters() if ".mlp." in n]
    return bool(mlp_params) and any(bool(p.detach().any()) for p in mlp_params)


def _gpt2_small_dir() -> Path:
    """The local snapshot directory of GPT-2 small; downloads only with ``SCRUB_ALLOW_DOWNLOAD=1``.

    No network unless asked: without the opt-in, weights that are not in the Hugging Face cache
    are a :class:`ScrubError` (claims about the model then skip with this reason), whatever the
    hub would have answered. With it, the host is probed with one short connection attempt
    (huggingface_hub's own download retries an unreachable host for about 25 seconds) and any
    failure of the download is reported as one line.
    """
    from huggingface_hub import snapshot_download, try_to_load_from_cache

    def _env_flag(name: str) -> bool:
        return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")

    cache_dir = os.environ.get("HF_HUB_CACHE")  # read now: the library reads it at import time
    cached = [
        try_to_load_from_cache(GPT2_SMALL_REPO, f, cache_dir=cache_dir) for f in _GPT2_SMALL_FILES
    ]
    if all(isinstance(c, str) for c in cached):
        return Path(cached[0]).parent
    how = (
        "make the weights available: set SCRUB_ALLOW_DOWNLOAD=1 to let scrub download them "
        "(about 550 MB), or `huggingface-cli download gpt2` on a connected machine and copy the "
        "Hugging Face cache, or pass a local model directory to load_model instead of 'gpt2-small'"
    )
    if not _env_flag("SCRUB_ALLOW_DOWNLOAD"):
        raise ScrubError(
            "gpt2-small is not in the Hugging Face cache and downloads are off", fix=how
        )
    if _env_flag("HF_HUB_OFFLINE"):
        raise ScrubError(
            "gpt2-small is not in the Hugging Face cache and HF_HUB_OFFLINE is set", fix=how
        )
    if not _hub_reachable():
        raise ScrubError(
            "gpt2-small is not in the Hugging Face cache and the hub is unreachable", fix=how
        )
    try:
        with _quiet_transformers():
            return Path(
                snapshot_download(
                    GPT2_SMALL_REPO, allow_patterns=list(_GPT2_SMALL_FILES), cache_dir=cache_dir
                )
            )
    except Exception as e:  # noqa: BLE001  whatever the hub answers (HTTP errors, bad payloads)
        raise ScrubError(
            f"downloading gpt2-small failed: {type(e).__name__}: {' '.join(str(e).split())[:200]}",
            fix=how,
        ) from e


def _hub_reachable(timeout: float = 2.0) -> bool:
    """One TCP connection attempt to the hub endpoint, no retries."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers / hub logging and progress bars while loading, then restore them."""
    import huggingface_hub.utils as hub_utils
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hub_bars = not hub_utils.are_progress_bars_disabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    hub_utils.disable_progress_bars()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
        if hub_bars:
            hub_utils.enable_progress_bars()
