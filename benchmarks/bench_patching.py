"""Path patching: the fast engine against the hook-based two-pass reference of the tests.

All heads are senders (N = 50 IOI prompts, ABC corruption), timed side by side in one process:

* to the logits, MLPs free (target 5x) and frozen (target 50x);
* to name movers' queries at END (target 3x), and on toy-ioi also to values at every position.

Both timings include building the clean and corrupted caches (the reference's are built once
per model and their time added to each case). The two sides are timed in alternating blocks of
back-to-back calls (see ``_case``). The reference costs the same per sender (one or two full
forward passes each), so on GPT-2-small scale, where one reference pass takes seconds on a
shared CPU, it is timed on a sample of senders spread over the layers and scaled to all
senders (the detail column says so; set SCRUB_BENCH_FULL=1 to time every sender). The fast
engine always runs every sender, and its results are checked against the timed reference
senders.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import torch
from timing import selected

ROOT = Path(__file__).resolve().parents[1]
N = 50
ROUNDS, FAST_CALLS, LONG_BLOCK_S = 5, 5, 10.0


def _inputs(model):
    from scrub.data import corrupt, make_ioi
    from scrub.patching import PatchInputs

    clean = make_ioi(N, seed=0, tokenizer=model.tokenizer)
    return PatchInputs.from_promptsets(clean, corrupt(clean, ["abc"], seed=0))


def _sample(senders: list, k: int | None) -> list[int]:
    if k is None or k >= len(senders):
        return list(range(len(senders)))
    step = len(senders) / k
    return [int(i * step + step / 2) for i in range(k)]


def _case(model, inputs, ref, ref_caches, name, receivers_text, mlps, target, sample):
    from scrub.patching import Receivers, path_patch
    from scrub.patching.path import is_upstream, sender_components

    info = model.info
    receivers = Receivers.parse(receivers_text)
    senders = [
        s
        for s in sender_components("heads", info.n_layers, info.n_heads)
        if is_upstream(s, receivers)
    ]
    w = model.weights
    picked = _sample(senders, sample)
    caches, cache_s = ref_caches
    # Each side runs in a block of back-to-back calls (a fast block: the median of FAST_CALLS
    # whole calls, caches included; a reference block: every picked sender), and the blocks
    # alternate for up to ROUNDS rounds, so that both sides sample the same spells of the
    # shared machine's speed, which swings by tens of per cent over seconds. Each side's time is
    # the median over its blocks. GPT-2 scale takes one round (its reference block is minutes).
    fast_blocks, ref_blocks = [], []
    for _ in range(ROUNDS):
        times = []
        for _ in range(FAST_CALLS):
            t0 = time.perf_counter()
            fast = path_patch(w, inputs, senders, receivers, mlps=mlps)
            times.append(time.perf_counter() - t0)
        fast_blocks.append(statistics.median(times))
        t0 = time.perf_counter()
        slow = torch.stack(
            [
                ref.reference_path_patch(model, inputs, senders[i], receivers, mlps, caches)
                for i in picked
            ]
        )
        ref_blocks.append((time.perf_counter() - t0) / len(picked))
        if ref_blocks[-1] * len(picked) > LONG_BLOCK_S:
            break
    fast_s = statistics.median(fast_blocks)
    ref_s = cache_s + statistics.median(ref_blocks) * len(senders)
    err = float((fast[picked] - slow).abs().max())
    scaled = (
        ""
        if len(picked) == len(senders)
        else f", reference timed on {len(picked)} senders and scaled"
    )
    return {
        "name": f"patching/{info.name}/{name}",
        "ratio": ref_s / fast_s,
        "target": target,
        "detail": f"{len(senders)} senders: reference {ref_s:.2f}s, fast {fast_s:.3f}s, "
        f"max |diff| {err:.1e}{scaled}",
    }


def _ref_caches(ref, model, inputs):
    """The reference's clean and corrupted caches and the time they took (counted per case).

    The bridge is booted first, untimed: it is built on first use, and its boot is a one-off
    cost of loading, not of the reference's arithmetic.
    """
    model.bridge  # noqa: B018
    t0 = time.perf_counter()
    caches = ref.reference_caches(model, inputs)
    return caches, time.perf_counter() - t0


def _warm_up(model, inputs, ref, ref_caches) -> None:
    """One small call of each implementation, so neither pays first-call costs in the timings."""
    from scrub.patching import Component, Receivers, path_patch

    recv = Receivers.parse("q:1.0")
    path_patch(model.weights, inputs, [Component("head", 0, 0)], recv)
    ref.reference_path_patch(model, inputs, Component("head", 0, 0), recv, "free", ref_caches[0])


def run() -> list[dict]:
    threads = torch.get_num_threads()
    # One thread: the CPU is shared, and two oversubscribed threads made every timing many-fold
    # slower and noisier on the shared 2-core machine.
    torch.set_num_threads(1)
    try:
        return _run()
    finally:
        torch.set_num_threads(threads)


def _run() -> list[dict]:
    import scrub.patching.hooked as ref  # the hook backend: the tests' reference
    from scrub.models import load_model

    full = os.environ.get("SCRUB_BENCH_FULL") == "1"
    rows = []
    toy = (ROOT / "scrub" / "models" / "toy_ioi" / "config.json").is_file()
    if toy and selected(["toy-ioi"]):
        model = load_model("toy-ioi")
        inputs = _inputs(model)
        caches = _ref_caches(ref, model, inputs)
        _warm_up(model, inputs, ref, caches)
        last = model.info.n_layers - 1
        movers, inhibition = f"q:{last}.0,{last}.1", f"v:{last - 1}.0,{last - 1}.1@all"
        for name, recv, mlps, target in [
            ("logits, MLPs free", "logits", "free", 5.0),
            ("logits, MLPs frozen", "logits", "frozen", 50.0),
            (f"{movers} at END, MLPs free", movers, "free", 3.0),
            (f"{inhibition}, MLPs free", inhibition, "free", 3.0),
        ]:
            rows.append(_case(model, inputs, ref, caches, name, recv, mlps, target, None))
    elif not toy:
        print("toy-ioi checkpoint missing: skipping its rows")
    sample = None if full else 4
    # GPT-2 small's shape, then Pythia-160M's and a GQA Llama's (issue 12: logits >= 20x).
    for model_name, logits_target in (
        ("gpt2-small-random", 5.0),
        ("pythia-small-random", 20.0),
        ("llama-small-random", 20.0),
    ):
        if not selected([model_name]):
            continue
        model = load_model(model_name)
        inputs = _inputs(model)
        caches = _ref_caches(ref, model, inputs)
        for name, recv, mlps, target in [
            ("logits, MLPs free", "logits", "free", logits_target),
            ("logits, MLPs frozen", "logits", "frozen", 50.0),
            ("q:9.6,9.9,10.0 at END, MLPs free", "q:9.6,9.9,10.0", "free", 3.0),
        ]:
            rows.append(_case(model, inputs, ref, caches, name, recv, mlps, target, sample))
    return rows
