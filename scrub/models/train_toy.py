"""Train the toy IOI model shipped as ``toy-ioi`` (a standard Hugging Face GPT-2 directory).

``python -m scrub.models.train_toy --out scrub/models/toy_ioi --seed 0 [--mode planted|plain]``

* ``plain``: attention-only GPT-2 trained with LM loss plus answer loss at END on IOI prompts,
  30% of them "recency" templates (``datasets/ioi/train_templates.txt``) that break the
  most-recent-name shortcut. Its circuit is whatever training found (see MODEL_CARD.md).
* ``planted``: the same model trained with strict interchange-intervention training (IIT + SIIT)
  so that designated heads implement a small high-level causal model of IOI
  (see :mod:`scrub.models.toy_eval`); the ground truth is written to ``circuit.json``.
  ``--hl ties`` (default, shipped): PT (0.1) -> IND (1.2) and DUP (0.3), which vote at S2 ->
  SINH (2.0) -> NM (3.1), where patching DUP or IND alone from the other order predicts a tie;
  ``--hl chain``: the tie-free PT -> IND -> SINH -> NM, interchange sources keeping S.
  With ``--attn-weight`` > 0 the role heads' attention patterns are also supervised
  (``ATTN_TARGETS``), fully for the first 30% of steps, annealed to 0 at 70%; the LM loss is
  weighted by ``--lm-weight``.
  Per step, on a batch of training bases (10% ABC) with two same-layout source prompts each:
  LM loss + task loss (cross-entropy toward the high-level output; ABC = an even tie) on the
  base; IIT loss (each row interchanges one aligned variable: the aligned head's z at its
  positions comes from the source run, which stays in the autograd graph, and the target is the
  high-level model's counterfactual output); strict SIIT loss (every non-aligned head at every
  position, and every aligned head outside its positions, resampled from the second source;
  target = the base's own output).

Deterministic for a fixed seed and thread count (the script sets 1 thread). The output directory
is replaced atomically (written beside it, then renamed), so it is complete or absent at all times;
an existing ``MODEL_CARD.md`` is carried over.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from scrub.data.files import IOIVocabulary
from scrub.data.promptset import PromptSet, PromptSpec, build_promptset
from scrub.data.tokenizer import build_word_tokenizer, words_of
from scrub.models import toy_eval as ev

N_CTX = 64
#: The recipe of the checkpoint shipped in scrub/models/toy_ioi (the --mode default).
SHIPPED_MODE = "planted"
RECENCY_FRAC = 0.3


def build_tokenizer(vocab: IOIVocabulary):
    """Word-level tokenizer over every word of ``datasets/ioi/*.txt`` (BOS = pad = id 0)."""
    texts = [
        *vocab.templates,
        *ev.train_templates(),
        *vocab.names,
        *vocab.places,
        *vocab.objects,
        *vocab.prefixes,
    ]
    return build_word_tokenizer(words_of(texts))


def build_model(n_vocab: int, *, seed: int, n_layer: int, n_head: int, d_model: int):
    """A GPT-2 whose MLPs are exactly zero and frozen (attention-only, still a GPT-2 checkpoint).

    ``n_inner`` is kept tiny: the zero MLP computes nothing, so its size only costs disk space.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=n_vocab,
        n_positions=N_CTX,
        n_embd=d_model,
        n_layer=n_layer,
        n_head=n_head,
        n_inner=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    for block in model.transformer.h:
        for p in block.mlp.parameters():
            p.data.zero_()
            p.requires_grad_(False)
    return model


def recency_specs(rng: np.random.Generator, n: int, vocab: IOIVocabulary) -> list[PromptSpec]:
    """``n`` training prompts from the recency templates (ids 100+), train split only."""
    tpls = ev.train_templates()
    out: list[PromptSpec] = []
    while len(out) < n:
        t = int(rng.integers(len(tpls)))
        io_i, s_i = rng.choice(len(vocab.names), size=2, replace=False)
        tpl = tpls[t]
        place = vocab.places[rng.integers(len(vocab.places))] if "[PLACE]" in tpl else ""
        obj = vocab.objects[rng.integers(len(vocab.objects))] if "[OBJECT]" in tpl else ""
        io, s = vocab.names[io_i], vocab.names[s_i]
        spec = PromptSpec(100 + t, tpl, "BABA", io, s, s, place, obj)
        if ev.split_of(spec) == "train":
            out.append(spec)
    return out


def pool(tok, vocab: IOIVocabulary, n: int, seed: int, recency: float) -> PromptSet:
    """A shuffled pool of ``n`` training prompts, a ``recency`` fraction from recency templates."""
    rng = np.random.default_rng([seed, 1])
    n_rec = int(round(n * recency))
    specs = ev.sample_specs(rng, n - n_rec, split="train", vocab=vocab, names=vocab.names)
    specs += recency_specs(rng, n_rec, vocab)
    order = rng.permutation(len(specs))
    return build_promptset([specs[i] for i in order], tok, names_pool=vocab.names)


def lm_and_answer_loss(logits, tokens, mask, end, io) -> torch.Tensor:
    """Next-token loss on the prompt plus cross-entropy of the IO answer at END."""
    lm = F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten(), reduction="none")
    m = mask[:, 1:].flatten().float()
    lm = (lm * m).sum() / m.sum()
    ans = F.cross_entropy(logits[torch.arange(len(end)), end], io)
    return lm + ans


def lr_at(step: int, steps: int, lr: float, warmup: int = 100) -> float:
    """Linear warmup then cosine decay to 10% of ``lr``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    frac = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def train_plain(model, tok, vocab, *, seed: int, steps: int, batch: int, lr: float) -> None:
    """LM + answer loss on a fixed pool of training prompts (30% recency templates)."""
    data = pool(tok, vocab, 40_000, seed, RECENCY_FRAC)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    t0 = time.time()
    for step in range(steps):
        idx = torch.randint(len(data), (batch,), generator=gen)
        tokens, mask = data.tokens[idx], data.mask[idx]
        width = int(mask.sum(1).max())
        tokens, mask = tokens[:, :width], mask[:, :width]
        end, io = data.positions["END"][idx], data.answers[idx, 0]
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr)
        loss = lm_and_answer_loss(model(tokens).logits, tokens, mask, end, io)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 250 == 0 or step == steps - 1:
            print(f"step {step:5d}  loss {loss.item():.3f}  {time.time() - t0:6.0f}s", flush=True)
    model.eval()


def save(model, tok, out: Path, circuit: dict) -> None:
    """Write the HF directory beside ``out`` and swap it into place (keeping MODEL_CARD.md)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    (tmp / "circuit.json").write_text(json.dumps(circuit, indent=2) + "\n", encoding="utf-8")
    card = out / "MODEL_CARD.md"
    tmp.chmod(0o755)  # mkdtemp makes it private; the package directory must be readable
    for f in tmp.iterdir():
        f.chmod(0o644)
    if card.is_file():
        shutil.copy2(card, tmp / "MODEL_CARD.md")
        (tmp / "MODEL_CARD.md").chmod(0o644)
    old = out.with_name(f".{out.name}.old")
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def plain_circuit(args) -> dict:
    return {
        "kind": "plain",
        "note": "plainly trained; no ground-truth circuit is planted (see MODEL_CARD.md)",
        "training": {"seed": args.seed, "steps": args.steps, "batch": args.batch},
        "heads": [],
    }


# ----------------------------------------------------------------------------- planted (IIT/SIIT)
#: The planted circuit: which head implements which high-level variable at which positions.
PLANTED_HEADS = (
    {"layer": 0, "head": 1, "class": "previous token", "positions": ["S1+1", "IO+1"],
     "variable": "PT"},
    {"layer": 0, "head": 3, "class": "duplicate token", "positions": ["S2"], "variable": "DUP"},
    {"layer": 1, "head": 2, "class": "induction", "positions": ["S2"], "variable": "IND"},
    {"layer": 2, "head": 0, "class": "s-inhibition", "positions": ["END"], "variable": "SINH"},
    {"layer": 3, "head": 1, "class": "name mover", "positions": ["END"], "variable": "NM"},
)  # fmt: skip
#: The tie-free "chain" alignment (``--hl chain``): PT -> IND -> SINH -> NM, no DUP.
#: Head 0.3 (duplicate token) is not aligned, so no single patch predicts a tie (the ties model
#: needed attention supervision and 4,000 steps to meet its bars).
CHAIN_HEADS = tuple(h for h in PLANTED_HEADS if h["variable"] != "DUP")
#: Attention supervision (layer, head, query position, key position): the textbook pattern of
#: each role, used to start the roles (weight ``--attn-weight``, held for the first
#: ``ATTN_HOLD`` of the steps, then annealed linearly to 0 at ``ATTN_END``).
ATTN_TARGETS = (
    (0, 1, "S1+1", "S1"),
    (0, 1, "IO+1", "IO"),
    (0, 3, "S2", "S1"),
    (1, 2, "S2", "S1+1"),
    (2, 0, "END", "S2"),
    (3, 1, "END", "IO"),
)
ATTN_HOLD, ATTN_END = 0.3, 0.7
ABC_FRAC = 0.1
#: Strict SIIT: besides non-aligned heads, resample aligned heads outside their aligned positions.
STRICT = True
IIT_WEIGHT = 2.0
#: How often each variable is the one interchanged in a row. The S-inhibition variable is the
#: slowest to learn (its head must pass on the position signal and drop S's token identity),
#: so it is drawn twice as often.
VAR_WEIGHTS = {"PT": 1.0, "DUP": 1.0, "IND": 1.0, "SINH": 2.0, "NM": 1.0}


def planted_heads(hl: str) -> tuple[dict, ...]:
    return CHAIN_HEADS if hl == "chain" else PLANTED_HEADS


def planted_circuit(args) -> dict:
    if args.hl == "chain":
        hl_desc = {
            "PT": "name just before each first-clause name+1 position: (n1, n2)",
            "IND": "set of slots k whose PT value equals the S2 token",
            "SINH": "the IND set, carried to END (the inhibited slot)",
            "NM": "output: the name at the slot not in SINH (both names, a tie, if none or both)",
        }
        sources = "interchange sources keep the base's S (order and IO vary)"
    else:
        hl_desc = {
            "PT": "name just before each first-clause name+1 position: (n1, n2)",
            "DUP": "set of first-clause slots whose name equals the S2 token",
            "IND": "set of slots k whose PT value equals the S2 token",
            "SINH": "inhibition votes per slot: [k in DUP] + [k in IND]",
            "NM": "output: name(s) at the slot(s) with fewest votes (two names = a tie)",
        }
        sources = "interchange sources vary order, IO and S"
    return {
        "kind": "planted",
        "high_level": args.hl,
        "model": {"n_layer": 4, "n_head": 4, "d_model": 128, "mlps": "zero and frozen"},
        "heads": [dict(h) for h in planted_heads(args.hl)],
        "high_level_model": hl_desc,
        "interventions": "source prompts share the base's template, prefix, place and object, "
        "so each named position has the same index; a head's z is replaced at the base's "
        "named positions by the source's z at the same indices; " + sources,
        "training": {
            "seed": args.seed,
            "steps": args.steps,
            "batch": args.batch,
            "lr": args.lr,
            "attn_weight": args.attn_weight,
            "lm_weight": args.lm_weight,
            "abc_frac": args.abc_frac,
        },
    }


def planted_pools(
    tok, vocab: IOIVocabulary, n: int, seed: int, hl: str = "ties", abc: float = ABC_FRAC
):
    """Training bases (an ``abc`` fraction ABC, target a tie) and two same-layout source sets
    for IIT (chain: keeping S) and SIIT."""
    rng = np.random.default_rng([seed, 2])
    base = ev.sample_specs(rng, n, split="train", vocab=vocab, names=vocab.names)
    for i in np.flatnonzero(rng.random(n) < abc):
        s = base[i]
        fresh = [x for x in vocab.names if x not in (s.io, s.s1)]
        base[i] = replace(s, s2=fresh[rng.integers(len(fresh))])
    src = [ev.source_variant(s, rng, vocab.names, keep_s=hl == "chain") for s in base]
    res = [ev.source_variant(s, rng, vocab.names) for s in base]
    return tuple(build_promptset(x, tok, names_pool=vocab.names) for x in (base, src, res))


def soft_ce(logits: torch.Tensor, targets: list[list[int]]) -> torch.Tensor:
    """Per row: -mean_{t in targets[i]} log p(t) (one name, or an even tie of two names)."""
    logp = logits.log_softmax(-1)
    return -torch.stack([logp[i, t].mean() for i, t in enumerate(targets)])


def subset(ps: PromptSet, idx: torch.Tensor) -> PromptSet:
    """Rows ``idx`` of ``ps`` (only the fields the training loop reads), trimmed to width."""
    width = int(ps.mask[idx].sum(1).max())
    return replace(
        ps,
        specs=tuple(ps.specs[i] for i in idx.tolist()),
        tokens=ps.tokens[idx, :width],
        mask=ps.mask[idx, :width],
        positions={k: v[idx] for k, v in ps.positions.items()},
        answers=ps.answers[idx],
        str_tokens=(),
        prefix_len=ps.prefix_len[idx],
    )


def attn_weight_at(step: int, steps: int, weight: float) -> float:
    """``weight`` for the first ATTN_HOLD of training, then linear to 0 at ATTN_END."""
    frac = step / max(1, steps)
    if frac <= ATTN_HOLD:
        return weight
    return weight * max(0.0, (ATTN_END - frac) / (ATTN_END - ATTN_HOLD))


def attn_loss(attentions, ps: PromptSet) -> tuple[torch.Tensor, list[float]]:
    """Mean over ATTN_TARGETS of -log(attention of the head from its query to its key position);
    also each target's mean attention probability (for the log)."""
    rows = torch.arange(len(ps))
    terms, probs = [], []
    for layer, head, q, k in ATTN_TARGETS:
        a = attentions[layer][rows, head, ps.positions[q], ps.positions[k]]
        terms.append(-(a + 1e-6).log().mean())
        probs.append(a.mean().item())
    return torch.stack(terms).mean(), probs


def train_planted(
    model,
    tok,
    vocab,
    *,
    seed: int,
    steps: int,
    batch: int,
    lr: float,
    hl: str = "ties",
    attn_weight: float = 0.0,
    lm_weight: float = 1.0,
    abc: float = ABC_FRAC,
) -> None:
    """LM + task loss on bases, IIT loss (one aligned variable per row), SIIT loss, and (with
    ``attn_weight``) attention supervision of the role heads, annealed (see ATTN_TARGETS)."""
    heads = planted_heads(hl)
    circuit = {"heads": [dict(h) for h in heads]}
    variables = tuple(h["variable"] for h in heads)
    run_hl = ev.HL_MODELS[hl]
    base_all, src_all, res_all = planted_pools(tok, vocab, 30_000, seed, hl, abc)
    hl_base = [ev.HLInput.of(s) for s in base_all.specs]
    hl_src = [ev.HLInput.of(s) for s in src_all.specs]
    ids = {n: tok.convert_tokens_to_ids(n) for n in vocab.names}
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng([seed, 3])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    if attn_weight > 0:
        model.set_attn_implementation("eager")  # attention probabilities need the eager path
    model.train()
    per_var: dict[str, list[float]] = {v: [] for v in variables}
    var_p = np.array([VAR_WEIGHTS[v] for v in variables]) / sum(VAR_WEIGHTS[v] for v in variables)
    t0 = time.time()
    for step in range(steps):
        idx = torch.randint(len(base_all), (batch,), generator=gen)
        base, src, res = (subset(x, idx) for x in (base_all, src_all, res_all))
        width = base.tokens.shape[1]
        src_tok, res_tok = pad_to(src.tokens, width), pad_to(res.tokens, width)
        end = base.positions["END"]
        rows = idx.tolist()
        task_t = [[ids[n] for n in sorted(run_hl(hl_base[i])["NM"])] for i in rows]
        var_of_row = list(rng.choice(variables, size=batch, p=var_p))
        iit_t = [
            [ids[n] for n in sorted(ev.hl_interchange(hl_base[i], hl_src[i], v, hl))]
            for i, v in zip(rows, var_of_row)
        ]
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr)
        w_attn = attn_weight_at(step, steps, attn_weight)
        out = model(base.tokens, output_attentions=attn_weight > 0)
        logits = out.logits
        lm = lm_only(logits, base.tokens, base.mask)
        task = soft_ce(logits[torch.arange(batch), end], task_t).mean()
        att, att_p = attn_loss(out.attentions, base) if attn_weight > 0 else (lm * 0, [])
        with ev.patched_heads(
            model, ev.interchange_patches(model, circuit, base, src_tok, var_of_row, grad=True)
        ):
            iit_rows = soft_ce(ev.end_logits(model, base.tokens, end), iit_t)
        iit = iit_rows.mean()
        for v, x in zip(var_of_row, iit_rows.tolist()):
            per_var[v].append(x)
        resample = ev.resample_patches(model, circuit, base, res_tok, strict=STRICT, grad=True)
        with ev.patched_heads(model, resample):
            siit = soft_ce(ev.end_logits(model, base.tokens, end), task_t).mean()
        loss = lm_weight * lm + task + IIT_WEIGHT * iit + siit + w_attn * att
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 250 == 0 or step == steps - 1:
            print(
                f"step {step:5d}  lm {lm.item():.3f}  task {task.item():.3f}  iit {iit.item():.3f}"
                f"  siit {siit.item():.3f}  attn {att.item():.3f} (w {w_attn:.2f})"
                f"  {time.time() - t0:6.0f}s",
                flush=True,
            )
            means = {v: sum(x) / max(1, len(x)) for v, x in per_var.items()}
            print("    iit by variable: " + "  ".join(f"{v} {m:.2f}" for v, m in means.items()))
            if att_p:
                print("    attn: " + "  ".join(
                    f"{la}.{h} {q}->{k} {p:.2f}" for (la, h, q, k), p in zip(ATTN_TARGETS, att_p)
                ))  # fmt: skip
            per_var = {v: [] for v in variables}
    model.eval()


def pad_to(t: torch.Tensor, width: int) -> torch.Tensor:
    """Right-pad (with the pad id 0) or trim ``t`` to ``width`` columns."""
    return F.pad(t, (0, width - t.shape[1]), value=0) if t.shape[1] < width else t[:, :width]


def lm_only(logits, tokens, mask) -> torch.Tensor:
    """Next-token loss over the prompt's real tokens."""
    lm = F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten(), reduction="none")
    m = mask[:, 1:].flatten().float()
    return (lm * m).sum() / m.sum()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ev.TOY_DIR)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode", choices=("planted", "plain"), default=SHIPPED_MODE)
    p.add_argument("--steps", type=int, default=None, help="default: 4000 planted, 3000 plain")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=None, help="default: 1.5e-3 planted, 1e-3 plain")
    p.add_argument(
        "--hl",
        choices=("ties", "chain"),
        default="ties",
        help="planted only: high-level model (ties: DUP and IND vote; chain: PT->IND->SINH->NM)",
    )
    p.add_argument(
        "--attn-weight",
        type=float,
        default=1.0,
        help="planted only: attention-supervision weight (0 = off)",
    )
    p.add_argument("--lm-weight", type=float, default=0.3, help="planted only: LM loss weight")
    p.add_argument(
        "--abc-frac", type=float, default=ABC_FRAC, help="planted only: ABC share of bases"
    )
    args = p.parse_args(argv)
    planted = args.mode == "planted"
    args.steps = args.steps or (4000 if planted else 3000)
    args.lr = args.lr or (1.5e-3 if planted else 1e-3)
    torch.set_num_threads(1)  # determinism, and one core stays free for others
    ev.quiet_transformers()
    vocab = IOIVocabulary.load()
    tok = build_tokenizer(vocab)
    model = build_model(len(tok), seed=args.seed, n_layer=4, n_head=4, d_model=128)
    t0 = time.time()
    if planted:
        train_planted(
            model, tok, vocab, seed=args.seed, steps=args.steps, batch=args.batch, lr=args.lr,
            hl=args.hl, attn_weight=args.attn_weight, lm_weight=args.lm_weight, abc=args.abc_frac,
        )  # fmt: skip
    else:
        train_plain(
            model, tok, vocab, seed=args.seed, steps=args.steps, batch=args.batch, lr=args.lr
        )
    circuit = planted_circuit(args) if args.mode == "planted" else plain_circuit(args)
    print(f"trained in {time.time() - t0:.0f}s on {torch.get_num_threads()} thread(s)")
    q = ev.quality(model, tok, n=1000, seed=0)
    print(q.table())
    if args.mode == "planted":
        model.set_attn_implementation("sdpa")
        print(ev.ground_truth(model, tok, circuit, n=500, seed=0).table())
    save(model, tok, args.out, circuit)
    print(f"saved to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
