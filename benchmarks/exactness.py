"""The exactness table: fast paths against the hook backend, per architecture and slot kind.

Builds the tests' tiny random GPT-2, Pythia, Llama (2 key/value groups) and Qwen2 models offline
and prints the largest |fast - reference| per-example logit difference in float32 and float64,
for the scrubbing engine (hypotheses that feed q, k, v, MLP and residual slots at named and all
positions) and path patching (receivers: logits, q, k, v; MLPs free and frozen).

    python benchmarks/exactness.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    from conftest import build_tiny_model_dir
    from test_architectures import ARCH_HYPOTHESES, VOCAB, build_family_dir
    from test_patching_path import tiny_inputs
    from test_scrub_engine import tiny_dataset

    from scrub.models import load_model
    from scrub.patching import Receivers, path_patch
    from scrub.patching.hooked import reference_caches, reference_path_patch
    from scrub.patching.path import sender_components
    from scrub.scrubbing.experiment import plan, scrub_hypothesis
    from scrub.scrubbing.hooked import reference_logit_diffs

    torch.set_num_threads(1)
    engine_cases = {  # what each hypothesis exercises
        "chain-q-k-v": "q, k, v slots; named positions; keep/agree/random",
        "mlp-and-embed": "MLP slot; embeddings",
        "dag-shared": "DAG (treeified), residual slot",
        "all-positions": "all positions; q and k",
    }
    receivers = ["logits", "q:2.1,2.3", "k:2.0,2.1", "v:1.2,1.3@all"]
    print(f"{'architecture':<10} {'dtype':<8} {'experiment':<44} {'max |fast - hooks|':>18}")
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {"gpt2": build_tiny_model_dir(Path(tmp) / "gpt2")}
        dirs |= {f: build_family_dir(Path(tmp) / f, f) for f in ("pythia", "llama", "qwen2")}
        for family, path in dirs.items():
            for dtype in ("float32", "float64"):
                model = load_model(str(path), device="cpu", dtype=dtype)
                ds = tiny_dataset(vocab=VOCAB)
                for name, what in engine_cases.items():
                    h = ARCH_HYPOTHESES[name]
                    r = scrub_hypothesis(h, model, ds, n=16, seed=3)
                    tree, a, ref, rnd = plan(h, model.info, ds, n=16, seed=3)
                    slow = reference_logit_diffs(model, ds, tree, a, ref, rnd)
                    diff = max(
                        float(np.abs(x - y).max())
                        for x, y in zip((r.clean, r.scrubbed, r.random), slow)
                    )
                    print(f"{family:<10} {dtype:<8} {'engine: ' + what:<44} {diff:>18.1e}")
                inputs = tiny_inputs(vocab=VOCAB)
                caches = reference_caches(model, inputs)
                for text in receivers:
                    recv = Receivers.parse(text)
                    senders = [
                        c
                        for c in sender_components("heads+mlps", 3, 4)
                        if c.layer < recv.first_layer
                    ]
                    for mlps in ("free", "frozen"):
                        fast = path_patch(model.weights, inputs, senders, recv, mlps=mlps)
                        slow = torch.stack(
                            [
                                reference_path_patch(model, inputs, s, recv, mlps, caches)
                                for s in senders
                            ]
                        )
                        diff = float((fast - slow).abs().max())
                        label = f"path patching -> {text}, MLPs {mlps}"
                        print(f"{family:<10} {dtype:<8} {label:<44} {diff:>18.1e}")


if __name__ == "__main__":
    main()
