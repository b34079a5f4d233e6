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

import json
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from scrub import env
from scrub.errors import ScrubError
from scrub.models.handle import Backend, Model, ModelInfo

TOY_IOI_DIR = Path(__file__).resolve().parent / "toy_ioi"
GPT2_SMALL_REPO = "gpt2"
_GPT2_SMALL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def available_models() -> tuple[str, ...]:
    """The built-in model names (any local Hugging Face model directory also works)."""
    return tuple(_LOADERS)


@dataclass(frozen=True)
class Placement:
    """Where and in what precision a model's weights live: one device, or a ``device_map`` of
    layer index -> device (the kernel moves activations between devices layer by layer)."""

    device: torch.device
    dtype: torch.dtype
    device_map: Mapping[int, torch.device] | None = None


def resolve_device(device: str) -> torch.device:
    """``auto`` picks a CUDA GPU, else Apple's MPS, else the CPU; an explicit device must exist.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    name = str(device).strip().lower()
    kind = name.split(":")[0]
    if kind not in DEVICES:
        raise ScrubError(f"unknown device {device!r}", fix=f"use one of: {', '.join(DEVICES)}")
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ScrubError(
            f"--device {device} asked for, but torch sees no CUDA GPU on this machine",
            fix="use --device cpu (or auto, which picks a GPU only when there is one)",
        )
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ScrubError(
            f"--device {device} asked for, but Apple's MPS is not available here",
            fix="use --device cpu (or auto)",
        )
    return torch.device(name)


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """``float32`` (default), ``float64``, ``bfloat16`` or ``float16``."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype in DTYPES.values():
            return dtype
        dtype = str(dtype)
    if dtype not in DTYPES:
        raise ScrubError(f"unknown dtype {dtype!r}", fix=f"use one of: {', '.join(DTYPES)}")
    return DTYPES[dtype]


def placement(
    device: str = "auto", dtype: str | torch.dtype | None = None, device_map: Any = None
) -> Placement:
    """Check and resolve the device options before anything loads."""
    if device_map is None:
        return Placement(resolve_device(device), resolve_dtype(dtype))
    if isinstance(device_map, str):
        if device_map != "auto":
            raise ScrubError(f"unknown device_map {device_map!r}", fix="use 'auto' or a dict")
        return Placement(resolve_device("auto"), resolve_dtype(dtype), {})
    layers = {int(k): resolve_device(v) for k, v in dict(device_map).items()}
    first = layers[min(layers)] if layers else resolve_device(device)
    return Placement(first, resolve_dtype(dtype), layers)


def load_model(
    name_or_path: str,
    *,
    seed: int = 0,
    device: str = "auto",
    dtype: str | torch.dtype | None = None,
    device_map: Any = None,
    backend: str = "auto",
) -> Model:
    """Load a model by built-in name or local Hugging Face directory.

    Names: ``toy-ioi`` (the embedded default), ``gpt2-small`` (needs the Hugging Face cache or
    network), ``gpt2-small-random``, ``pythia-small-random`` and ``llama-small-random`` (GPT-2
    small, Pythia-160M and a 12-layer GQA Llama shape, random weights from ``seed``). Anything
    else is treated as a local directory holding ``config.json``, weights and a tokenizer.
    ``seed`` only affects random-weight models. ``device`` is ``auto`` (a GPU when there is
    one), ``cpu``, ``cuda[:i]`` or ``mps``; ``dtype`` ``float32`` (default), ``float64``,
    ``bfloat16`` or ``float16``; ``device_map`` is ``"auto"`` (layers spread over the GPUs by
    free memory) or ``{layer: device}``.

    GPT-2, GPT-NeoX (Pythia) and Llama-family (Llama, Mistral, Qwen2) models run on the
    functional kernel; any other architecture the TransformerBridge loads runs on hooks (slow
    but exact), announced on stderr; ``backend="hooks"`` puts any model there (to cross-check
    the kernel, say).

    >>> load_model("gpt2-small-random", seed=1).info.n_layers   # doctest: +SKIP
    12
    """
    where = placement(device, dtype, device_map)
    if backend not in ("auto", "kernel", "hooks"):
        raise ScrubError(f"unknown backend {backend!r}", fix="use auto, kernel or hooks")
    model = _load(name_or_path, seed, where)
    if backend == "kernel" and model.weights is None:
        raise ScrubError(
            f"{model.info.name} ({model.info.arch}) has no functional-kernel adapter",
            fix="use backend='auto' (hooks)",
        )
    if backend == "hooks" and model.weights is not None:
        return _hook_backend(model.hf_model, model.tokenizer, model.info.name, "hooks requested")
    return model


def _load(name_or_path: str, seed: int, where: Placement) -> Model:
    loader = _LOADERS.get(name_or_path)
    if loader is not None:
        return loader(seed, where)
    path = Path(name_or_path).expanduser()
    if path.is_dir() or os.sep in name_or_path or name_or_path.startswith("."):
        return _load_dir(path, name=str(path), where=where)
    raise ScrubError(
        f"unknown model {name_or_path!r}",
        fix=f"use one of: {', '.join(available_models())}, or a local Hugging Face model directory",
    )


def _load_toy_ioi(seed: int, where: Placement) -> Model:
    if not (TOY_IOI_DIR / "config.json").is_file():
        raise ScrubError(
            f"the toy-ioi checkpoint is missing (expected it in {TOY_IOI_DIR})",
            fix="rebuild it with `python -m scrub.models.train_toy`",
        )
    return _load_dir(TOY_IOI_DIR, name="toy-ioi", where=where)


def _load_gpt2_small(seed: int, where: Placement) -> Model:
    return _load_dir(_gpt2_small_dir(), name="gpt2-small", where=where)


def _random_loader(family: str) -> Callable[[int, Placement], Model]:
    """``{family}-small-random``: random weights from the seed, with the toy model's tokenizer
    (or, without its checkpoint, the IOI word-level one), so IOI datasets tokenise for it
    exactly as for toy-ioi."""

    def load(seed: int, where: Placement) -> Model:
        from scrub.data.tokenizer import load_tokenizer
        from scrub.models.random_gpt2 import random_family

        hf_model = random_family(family, seed=seed).to(where.device, where.dtype)
        name = f"{family}-small-random"
        return from_hf_model(hf_model, load_tokenizer("toy-ioi"), name=name, where=where)

    return load


_LOADERS: dict[str, Callable[[int, Placement], Model]] = {
    "toy-ioi": _load_toy_ioi,
    "gpt2-small": _load_gpt2_small,
    # Benchmark shapes with random weights: GPT-2 small, Pythia-160M-like, Llama-like (GQA).
    "gpt2-small-random": _random_loader("gpt2"),
    "pythia-small-random": _random_loader("pythia"),
    "llama-small-random": _random_loader("llama"),
}


def from_hf_model(
    hf_model: Any, tokenizer: Any, *, name: str, where: Placement | None = None
) -> Model:
    """A :class:`Model` over an already loaded Hugging Face module (weights are its views)."""
    from scrub.models.weights import ModelWeights, UnsupportedArchitecture

    hf_model.eval()
    try:
        w = ModelWeights.from_hf(hf_model)
    except UnsupportedArchitecture as e:
        return _hook_backend(hf_model, tokenizer, name, str(e))
    if where is not None and where.device_map is not None:  # {} is "auto"
        w = _spread(w, where)
    return _model(name, tokenizer, w, lambda: hf_model)


def _load_dir(path: Path, *, name: str, where: Placement) -> Model:
    """A local Hugging Face causal-LM directory, reading local files only.

    Supported architectures read config.json and the weights directly (no transformers model
    is built until ``model.hf_model`` or the bridge is used); others load through transformers
    onto the hook backend.
    """
    from scrub.models.preflight import check_model_dir
    from scrub.models.weights import UnsupportedArchitecture, from_checkpoint

    # Names the broken file (config, weights, tokenizer) before anything loads.
    config = check_model_dir(path)
    tokenizer = _load_tokenizer(path)

    def make_hf() -> Any:
        from transformers import AutoModelForCausalLM

        with _quiet_transformers():
            hf = AutoModelForCausalLM.from_pretrained(
                path, local_files_only=True, dtype=where.dtype
            )
        return hf.to(where.device).eval()

    try:
        w = from_checkpoint(
            config, _read_state(path, where.device), dtype=where.dtype, device=where.device
        )
    except UnsupportedArchitecture as e:
        return _hook_backend(make_hf(), tokenizer, name, str(e))
    if where.device_map is not None:
        w = _spread(w, where)
    return _model(name, tokenizer, w, make_hf)


def _load_tokenizer(path: Path) -> Any:
    with _quiet_transformers():
        try:
            if (path / "tokenizer.json").is_file():  # the fast tokenizer: no Auto* machinery
                from transformers import PreTrainedTokenizerFast

                return PreTrainedTokenizerFast.from_pretrained(path, local_files_only=True)
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as e:
            raise ScrubError(
                f"cannot load a tokenizer from {path}: {e}",
                fix="save the tokenizer with `tokenizer.save_pretrained(...)` into that directory",
            ) from e


def _read_state(path: Path, device: torch.device) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors: safetensors (one file or shards), else pytorch_model.bin."""
    from safetensors.torch import load_file

    dev = str(device)
    if (path / "model.safetensors").is_file():
        return load_file(path / "model.safetensors", device=dev)
    index = path / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(load_file(path / shard, device=dev))
        return state
    return torch.load(path / "pytorch_model.bin", map_location=dev, weights_only=True)


def _spread(w: Any, where: Placement) -> Any:
    """Place the layers by ``where.device_map`` (``{}`` means auto: over the visible GPUs)."""
    from scrub.models.weights import on_layer_devices

    layers = dict(where.device_map or {})
    if not layers:
        layers = _auto_map(len(w.layers))
    missing = [i for i in range(len(w.layers)) if i not in layers]
    if missing and where.device_map:
        raise ScrubError(
            f"device_map places layers {sorted(layers)} but the model has layers "
            f"0-{len(w.layers) - 1}",
            fix="give every layer a device",
        )
    return on_layer_devices(w, layers)


def _auto_map(n_layers: int) -> dict[int, torch.device]:
    """Layers over the visible CUDA GPUs in proportion to their free memory, in order (the
    split accelerate's ``device_map="auto"`` makes for a sequential stack); one device else."""
    if not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        dev = resolve_device("auto")
        return dict.fromkeys(range(n_layers), dev)
    free = [torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())]
    bounds, total, acc = [], sum(free), 0
    for f in free:
        acc += f
        bounds.append(acc / total * n_layers)
    return {
        i: torch.device(f"cuda:{next(g for g, b in enumerate(bounds) if i < b)}")
        for i in range(n_layers)
    }


def _model(name: str, tokenizer: Any, w: Any, make_hf: Callable[[], Any]) -> Model:
    info = ModelInfo(
        name=name,
        n_layers=len(w.layers),
        n_heads=w.n_heads,
        d_model=w.d_model,
        d_head=w.layers[0].W_Q.shape[-1],
        d_vocab=w.W_U.shape[1],
        n_ctx=w.n_ctx,
        has_mlps=w.has_mlps,
        n_kv_heads=w.n_kv_heads,
        parallel=w.parallel,
        arch=w.arch,
        backend=Backend.KERNEL,
        device=str(w.layers[0].device),
        dtype=str(w.dtype).removeprefix("torch."),
    )
    return Model(tokenizer=tokenizer, info=info, weights=w, make_hf_model=make_hf)


def _hook_backend(hf_model: Any, tokenizer: Any, name: str, why: str) -> Model:
    """Any other architecture: experiments run with hooks on the bridge (slow but exact)."""
    print(
        f"scrub: {name}: {why}; running on the hook-based backend (slow but exact)",
        file=sys.stderr,
    )
    model = Model(tokenizer=tokenizer, info=None, weights=None, make_hf_model=lambda: hf_model)  # type: ignore[arg-type]
    cfg = model.bridge.cfg
    param = next(hf_model.parameters())
    info = ModelInfo(
        name=name,
        n_layers=cfg.n_layers,
        n_heads=cfg.n_heads,
        d_model=cfg.d_model,
        d_head=cfg.d_head,
        d_vocab=cfg.d_vocab,
        n_ctx=cfg.n_ctx,
        has_mlps=_has_mlps(hf_model),
        n_kv_heads=getattr(cfg, "n_key_value_heads", None) or cfg.n_heads,
        parallel=bool(getattr(cfg, "parallel_attn_mlp", False)),
        arch=hf_model.config.model_type,
        backend=Backend.HOOKS,
        device=str(param.device),
        dtype=str(param.dtype).removeprefix("torch."),
    )
    object.__setattr__(model, "info", info)
    return model


def boot_bridge(hf_model: Any, tokenizer: Any) -> Any:
    """A TransformerBridge over ``hf_model`` in compatibility mode without weight processing,
    with split q/k/v inputs and per-head results (see the module docstring)."""
    from transformer_lens.model_bridge import TransformerBridge

    hf_model.eval()
    device = next(hf_model.parameters()).device
    name = getattr(hf_model.config, "_name_or_path", "") or hf_model.config.model_type
    with _quiet_transformers(), _tokenizer_dir(tokenizer) as tok:
        bridge = TransformerBridge.boot_transformers(
            name, hf_model=hf_model, tokenizer=tok, device=str(device)
        )
        # no_processing: keep raw HF weights (see the module docstring for what folding changes).
        bridge.enable_compatibility_mode(disable_warnings=True, no_processing=True)
        for switch in (bridge.set_use_split_qkv_input, bridge.set_use_attn_result):
            try:
                switch(True)
            except NotImplementedError as e:  # some attention bridges have no such hook
                print(f"scrub: {str(e).split('. ')[0]}", file=sys.stderr)
    return bridge


@contextmanager
def _tokenizer_dir(tokenizer: Any) -> Iterator[Any]:
    """The bridge re-reads its tokenizer from ``name_or_path`` while booting: give a tokenizer
    built in memory a directory that lives until the boot is done."""
    if tokenizer.init_kwargs.get("name_or_path") or getattr(tokenizer, "name_or_path", ""):
        yield tokenizer
        return
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory(prefix="scrub-tokenizer-") as tmp:
        tokenizer.save_pretrained(tmp)
        yield AutoTokenizer.from_pretrained(tmp, local_files_only=True)


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
    if not env.flag("SCRUB_ALLOW_DOWNLOAD"):
        raise ScrubError(
            "gpt2-small is not in the Hugging Face cache and downloads are off", fix=how
        )
    if env.flag("HF_HUB_OFFLINE"):
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
