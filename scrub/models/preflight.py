"""Check a local model directory before loading it: every fault names its file and the fix.

Loading a broken directory through transformers fails deep inside it, often blaming the wrong
file (a broken ``config.json`` surfaces as a tokenizer error). These checks read only small
files and headers: ``config.json``, the safetensors header (8-byte length + JSON, whose tensor
offsets must end exactly at the end of the file), the shard index, and which tokenizer files
exist. No tensor is read.

>>> check_model_dir(Path("scrub/models/toy_ioi"))   # doctest: +SKIP
>>> check_model_dir(Path("/tmp/empty"))             # doctest: +SKIP
Traceback (most recent call last):
...
scrub.errors.ScrubError: /tmp/empty is not a Hugging Face model directory: config.json is ...
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path
from typing import Any

from scrub.errors import ScrubError

_RESAVE = "save the model again with `model.save_pretrained(DIR)` (or copy the file again)"
#: Any one of these sets of files is a tokenizer transformers can load.
TOKENIZER_FILES = (
    ("tokenizer.json",),
    ("vocab.json", "merges.txt"),
    ("tokenizer.model",),
    ("vocab.txt",),
)
#: A safetensors JSON header larger than this is not a header (the format caps it at 100 MB).
_MAX_HEADER = 100 * 1024 * 1024


def check_model_dir(path: Path) -> dict[str, Any]:
    """Raise :class:`ScrubError` naming the file at fault unless ``path`` looks loadable;
    return its parsed ``config.json``."""
    path = Path(path)
    if not path.is_dir():
        what = "is a file, not a directory" if path.exists() else "does not exist"
        raise ScrubError(f"model directory {path} {what}", fix="check the path")
    config = _read_json(
        path / "config.json",
        missing=(
            f"{path} is not a Hugging Face model directory: config.json is missing",
            "pass a directory written by `model.save_pretrained(...)`",
        ),
    )
    _check_model_type(path / "config.json", config)
    _check_weights(path)
    check_tokenizer_dir(path)
    return config


def _read_json(file: Path, *, missing: tuple[str, str] | None = None) -> Any:
    if missing is not None and not file.is_file():
        raise ScrubError(missing[0], fix=missing[1])
    try:
        return json.loads(file.read_bytes())
    except OSError as e:
        raise ScrubError(
            f"cannot read {file}: {e.strerror or e}", fix="check its permissions"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ScrubError(f"{file} is not valid JSON ({e})", fix=_RESAVE) from None


def _check_model_type(file: Path, config: Any) -> None:
    if not isinstance(config, dict):
        raise ScrubError(f"{file} is not a JSON object", fix=_RESAVE)
    model_type = config.get("model_type")
    if not model_type:
        raise ScrubError(
            f"{file} has no model_type", fix=f'add e.g. "model_type": "gpt2"; or {_RESAVE}'
        )
    from scrub.models.weights import ARCHITECTURES

    if model_type in ARCHITECTURES:  # the kernel's own: no need to import transformers
        return
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    if model_type not in CONFIG_MAPPING_NAMES:
        raise ScrubError(
            f"{file}: model_type {model_type!r} is unknown to transformers "
            f"{transformers.__version__}",
            fix="upgrade transformers if the architecture is newer than it, or fix model_type "
            f"(scrub's kernel runs {', '.join(ARCHITECTURES)}; others run on hooks)",
        )


def _check_weights(path: Path) -> None:
    single = path / "model.safetensors"
    index = path / "model.safetensors.index.json"
    legacy = path / "pytorch_model.bin"
    if single.is_file():
        check_safetensors(single)
    elif index.is_file():
        doc = _read_json(index)
        shards = (
            sorted(set((doc.get("weight_map") or {}).values())) if isinstance(doc, dict) else []
        )
        if not shards:
            raise ScrubError(f"{index} lists no weight shards", fix=_RESAVE)
        for shard in shards:
            if not (path / shard).is_file():
                raise ScrubError(
                    f"{index} lists {shard}, which is missing from {path}", fix=_RESAVE
                )
            check_safetensors(path / shard)
    elif legacy.is_file():
        _readable(legacy)
        if not zipfile.is_zipfile(legacy):
            raise ScrubError(
                f"{legacy} is truncated or corrupt (not a torch.save archive)", fix=_RESAVE
            )
    else:
        names = ", ".join(p.name for p in (single, index, legacy))
        raise ScrubError(f"{path} has no weights: none of {names} exists", fix=_RESAVE)


def _readable(file: Path) -> None:
    try:
        with file.open("rb") as f:
            f.read(1)
    except OSError as e:
        raise ScrubError(
            f"cannot read {file}: {e.strerror or e}", fix="check its permissions"
        ) from None


def check_safetensors(file: Path) -> None:
    """The header parses and its tensors end exactly where the file does (else truncated)."""
    bad = f"{file} is truncated or corrupt"
    try:
        size = file.stat().st_size
        with file.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ScrubError(
                    f"{bad}: {size} bytes, shorter than a safetensors header", fix=_RESAVE
                )
            (length,) = struct.unpack("<Q", head)
            if length > min(_MAX_HEADER, size - 8):
                raise ScrubError(
                    f"{bad}: its header claims {length} bytes but the file has {size}", fix=_RESAVE
                )
            header = json.loads(f.read(length))
    except OSError as e:
        raise ScrubError(
            f"cannot read {file}: {e.strerror or e}", fix="check its permissions"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ScrubError(f"{bad}: its header is not JSON", fix=_RESAVE) from None
    if not isinstance(header, dict):
        raise ScrubError(f"{bad}: its header is not a JSON object", fix=_RESAVE)
    try:
        end = max(
            (int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"),
            default=0,
        )
    except (KeyError, TypeError, ValueError, IndexError):
        raise ScrubError(
            f"{bad}: a tensor entry of its header has no data_offsets", fix=_RESAVE
        ) from None
    expected = 8 + length + end
    if size != expected:
        raise ScrubError(
            f"{bad}: its header describes {expected} bytes but the file has {size}", fix=_RESAVE
        )


def check_tokenizer_dir(path: Path) -> None:
    """One complete set of tokenizer files exists in ``path``, and its JSON files parse."""
    present = [files for files in TOKENIZER_FILES if all((path / f).is_file() for f in files)]
    if not present:
        wanted = "; ".join(" + ".join(files) for files in TOKENIZER_FILES)
        raise ScrubError(
            f"no tokenizer in {path} (none of: {wanted})",
            fix="save the tokenizer there with `tokenizer.save_pretrained(DIR)`",
        )
    for files in present:
        for f in files:
            if f.endswith(".json"):
                _read_json(path / f)
            else:
                _readable(path / f)
