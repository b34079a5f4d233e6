"""The causal-scrubbing engine: fast evaluator vs the slow reference, and vs one plain pass.

A full IOI-style hypothesis (name movers -> output agree io; S-inhibition -> name movers' queries
agree order; induction + duplicate-token at S2 -> S-inhibition's values agree s; previous-token at
S1+1 -> induction's keys agree s), N = 200 reference examples drawn from a pool of 2000 IOI
prompts, on toy-ioi and on gpt2-small-random (the published GPT-2 heads).

Rows (ratio, target):

* ``engine vs reference``: reference time / engine time (target 3x). The reference
  (scrub/scrubbing/hooked.py) runs one bridge pass per component and per patched slot, each over
  all examples, so its cost is linear in the number of examples: on gpt2-small-random it is timed
  on a subset and scaled (the detail column says so; SCRUB_BENCH_FULL=1 times all of it).
  Its values are checked against the engine's on the examples it ran.
* ``engine vs plain pass``: plain-pass time / engine time (target 1/1.3). The plain pass is the
  functional kernel's forward over as many sequences as distinct rows the engine ran
  (``settings["distinct_rows"]``): every layer at every position, with the unembedding at END
  only (the engine never needs more, and the full-vocabulary unembedding at every position
  would dominate GPT-2's cost and flatter the engine). The detail column also gives the
  full-logits ``kernel.forward`` and the bridge's ``model.run`` times for the same rows.

Everything is timed with ``time.perf_counter`` in one process, best of ``REPEATS``.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from timing import best, selected

N, POOL = 200, 2000
REPEATS = 2
REFERENCE_BUDGET_EXAMPLES = 25  # examples the reference runs on GPT-2 scale unless FULL


def ioi_hypothesis(name: str, nm: str, s_inh: str, induction: str, duplicate: str, previous: str):
    """The full IOI story with the given heads per class (all resampling rules exercised)."""
    from scrub.scrubbing.hypothesis import OUTPUT, Hypothesis, agree, heads, node

    return Hypothesis(
        name,
        [
            node("name movers", heads(nm, at="END"), feeds=OUTPUT, rule=agree("io")),
            node(
                "s-inhibition", heads(s_inh, at="END"), feeds="name movers.q", rule=agree("order")
            ),
            node("induction", heads(induction, at="S2"), feeds="s-inhibition.v", rule=agree("s")),
            node(
                "duplicate token",
                heads(duplicate, at="S2"),
                feeds="s-inhibition.v",
                rule=agree("s"),
            ),
            node(
                "previous token", heads(previous, at="S1+1"), feeds="induction.k", rule=agree("s")
            ),
        ],
    )


HYPOTHESES = {
    # toy-ioi: 4 layers x 4 heads, plausible roles by layer only (its circuit may change).
    "toy-ioi": dict(
        nm="3.0 3.1 3.2", s_inh="2.0 2.2", induction="1.1 1.3", duplicate="0.1", previous="0.2"
    ),
    # gpt2-small-random: Wang et al. 2022's GPT-2 small heads (ioi-reference.md).
    "gpt2-small-random": dict(
        nm="9.9 9.6 10.0",
        s_inh="7.3 7.9 8.6 8.10",
        induction="5.5 5.8 5.9 6.9",
        duplicate="0.1 0.10 3.0",
        previous="2.2 4.11",
    ),
    # Pythia-shaped (parallel blocks: nothing feeds an MLP): the same heads.
    "pythia-small-random": dict(
        nm="9.9 9.6 10.0",
        s_inh="7.3 7.9 8.6 8.10",
        induction="5.5 5.8 5.9 6.9",
        duplicate="0.1 0.10 3.0",
        previous="2.2 4.11",
    ),
    # Llama-shaped with 4 key/value groups of 3 heads: nodes whose values or keys are fed
    # (S-inhibition, induction) hold whole groups.
    "llama-small-random": dict(
        nm="9.9 9.6 10.0",
        s_inh="7.3 7.4 7.5 8.9 8.10 8.11",
        induction="5.3 5.4 5.5 6.9 6.10 6.11",
        duplicate="0.1 0.10 3.0",
        previous="2.2 4.11",
    ),
}


def _plain_end_only(w, tokens, mask, end):
    """Every layer at every position, then logits at END only: the engine's floor."""
    from scrub.models import kernel

    with torch.no_grad():
        resid = kernel.embed(w, tokens)
        for layer in range(len(w.layers)):
            z = kernel.self_attention_z(w, layer, resid, mask)
            resid = kernel.block_out(w, layer, resid, kernel.heads_out(w, layer, z))
        return kernel.unembed(w, resid[torch.arange(len(end)), end])


def _sub_assignment(a, k: int):
    from scrub.scrubbing.tree import Assignment

    return Assignment({p: r[:k] for p, r in a.rows.items()}, {p: r[:k] for p, r in a.other.items()})


def _case(model_name: str, full: bool) -> list[dict]:
    import scrub.scrubbing.hooked as ref_mod
    from scrub.data import make_ioi
    from scrub.models import kernel, load_model
    from scrub.scrubbing.experiment import plan, scrub_hypothesis

    model = load_model(model_name)
    model.bridge  # noqa: B018 - boot the reference's bridge (built on first use) before timing
    toy_tok = load_model("toy-ioi").tokenizer if model_name != "toy-ioi" else model.tokenizer
    ds = make_ioi(POOL, seed=0, tokenizer=toy_tok)
    h = ioi_hypothesis(model_name, **HYPOTHESES[model_name])

    engine_s, result = best(lambda: scrub_hypothesis(h, model, ds, n=N, seed=0), REPEATS)
    distinct = int(result.settings["distinct_rows"])

    # The plain pass over the same number of sequences: the first `distinct` rows of the pool.
    w = model.weights
    rows = torch.arange(distinct)
    tokens, mask, end = ds.tokens[rows], ds.mask[rows], ds.positions["END"][rows]
    plain_s, _ = best(lambda: _plain_end_only(w, tokens, mask, end), REPEATS)
    with torch.no_grad():
        full_s, _ = best(lambda: kernel.forward(w, tokens, mask), 1)
        bridge_s, _ = best(lambda: model.run(tokens, attn_mask=mask), 1)

    # The reference, on all examples or a subset scaled linearly.
    tree, a, ref, rnd = plan(h, model.info, ds, n=N, seed=0)
    k = N if full or model_name == "toy-ioi" else REFERENCE_BUDGET_EXAMPLES
    sub = _sub_assignment(a, k)
    ref_s, (clean, scrubbed, _) = best(
        lambda: ref_mod.reference_logit_diffs(model, ds, tree, sub, ref[:k], rnd[:k]), 1
    )
    ref_scaled = ref_s * N / k
    diff = float(np.abs(scrubbed - result.scrubbed[:k]).max())
    scaled = "" if k == N else f", timed on {k} of {N} examples and scaled x{N / k:.0f}"
    return [
        {
            "name": f"engine vs reference ({model_name}, N={N})",
            "ratio": ref_scaled / engine_s,
            "target": 5.0 if model_name in ("pythia-small-random", "llama-small-random") else 3.0,
            "detail": f"reference {ref_scaled:.1f}s{scaled}, engine {engine_s:.2f}s, "
            f"max |diff| {diff:.1e}",
        },
        {
            "name": f"engine vs plain pass ({model_name}, N={N})",
            "ratio": plain_s / engine_s,
            "target": 1 / 1.3,
            "detail": f"plain {plain_s:.2f}s over {distinct} distinct rows (END-only logits); "
            f"kernel.forward full logits {full_s:.2f}s, bridge {bridge_s:.2f}s; "
            f"engine {engine_s:.2f}s",
        },
    ]


def run() -> list[dict]:
    full = os.environ.get("SCRUB_BENCH_FULL", "") not in ("", "0")
    return [row for name in selected(HYPOTHESES) for row in _case(name, full)]


if __name__ == "__main__":
    torch.set_num_threads(1)
    for r in run():
        print(r)
