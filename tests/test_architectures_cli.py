"""``scrub run`` and ``scrub patch`` on tiny Pythia and Llama directories, through the console
script, with IOI prompts from a word-level tokenizer built offline."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_architectures import build_family_dir

from scrub.data.files import IOIVocabulary
from scrub.data.tokenizer import words_of

ROOT = Path(__file__).resolve().parents[1]


def scrub_cli(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("scrub", path=str(Path(sys.executable).parent)) or "scrub"
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=ROOT, timeout=300)


@pytest.fixture(scope="module", params=["pythia", "llama"])
def family_dir(request, tmp_path_factory) -> Path:
    v = IOIVocabulary.load()
    words = words_of([*v.templates, *v.names, *v.places, *v.objects, *v.prefixes])
    path = tmp_path_factory.mktemp(f"tiny-{request.param}")
    return build_family_dir(path, request.param, n_layers=4, words=words)


def test_scrub_run_on_family(family_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    p = scrub_cli(
        "run", "hypotheses/toy_ioi.py::name_mover", "--model", str(family_dir),
        "--n", "20", "--pool", "200", "--device", "cpu", "--json", str(out),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    assert doc["settings"]["model"] == str(family_dir) and len(doc["per_example"]["clean"]) == 20
    assert "recovered" in p.stdout


def test_scrub_patch_on_family(family_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    p = scrub_cli(
        "patch", "--model", str(family_dir), "--n", "12", "--senders", "heads",
        "--receivers", "logits", "--no-progress", "--json", str(out),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert len(json.loads(out.read_text())["scores"]) == 4 * 4


def test_bad_device_and_dtype_exit_2(family_dir: Path) -> None:
    for flag, value, words in (
        ("--dtype", "float8", "unknown dtype"),
        ("--device", "tpu", "unknown device"),
    ):
        p = scrub_cli(
            "run", "hypotheses/toy_ioi.py::name_mover", "--model", str(family_dir), flag, value
        )
        assert p.returncode == 2 and words in p.stderr and "Traceback" not in p.stderr


def test_import_and_kernel_runs_stay_light() -> None:
    """``import scrub`` imports neither transformers nor transformer_lens, and a kernel run never
    boots the bridge (it is built only when a hook-based API is used)."""
    code = (
        "import sys, scrub\n"
        "heavy = ('transformers', 'transformer_lens', 'torch')\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in heavy]\n"
        "from scrub.scrubbing.run import run_hypothesis\n"
        "from scrub.scrubbing.loader import load_hypothesis\n"
        "run_hypothesis(load_hypothesis('hypotheses/toy_ioi.py::name_mover'), 'toy-ioi', n=10)\n"
        "assert 'transformer_lens' not in sys.modules\n"
        "assert not [m for m in sys.modules if m.startswith('transformers.models.')]\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
