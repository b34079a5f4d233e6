"""Induction datasets: repeated random-token sequences.

Row i is ``[BOS] x1 .. xk x1 .. x(k-1)``; at END (the second x(k-1)) an induction head attends to
the first xk (position ``NEXT``, right after ``PREV``, the first occurrence of the END token) and
predicts it. The answer pair is (xk, x(k-1)): the logit difference is "continue the repeated
sequence" against "repeat the current token".
"""

from __future__ import annotations

import json

import numpy as np
import torch

from scrub.data.files import datasets_dir
from scrub.data.tokenset import TokenSet
from scrub.errors import ScrubError


def make_induction(n: int, *, seed: int = 0, tokenizer, length: int | None = None) -> TokenSet:
    """``n`` repeated random-token sequences, the same for the same arguments.

    Features: ``first`` (x1), ``answer`` (xk) and ``prev`` (x(k-1)) token ids.
    """
    spec = json.loads((datasets_dir() / "induction" / "spec.json").read_text())
    k = length or int(spec["length"])
    special = set(tokenizer.all_special_ids)
    excluded = set(spec["exclude"])
    pool = np.array(
        sorted(
            i for t, i in tokenizer.get_vocab().items() if i not in special and t not in excluded
        )
    )
    if k < 2 or len(pool) < k:
        raise ScrubError(
            f"cannot draw {k} distinct tokens from a vocabulary of {len(pool)}",
            fix="use a shorter length (>= 2)",
        )
    rng = np.random.default_rng(seed)
    seqs = np.stack([pool[rng.choice(len(pool), size=k, replace=False)] for _ in range(n)])
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else 0
    tokens = np.concatenate([np.full((n, 1), bos), seqs, seqs[:, :-1]], axis=1)
    end = tokens.shape[1] - 1
    return TokenSet.build(
        torch.from_numpy(tokens),
        {"END": [end] * n, "PREV": [k - 1] * n, "NEXT": [k] * n, "FIRST": [1] * n},
        torch.from_numpy(np.stack([seqs[:, -1], seqs[:, -2]], 1)),
        {
            "first": seqs[:, 0].tolist(),
            "answer": seqs[:, -1].tolist(),
            "prev": seqs[:, -2].tolist(),
        },
        lineage=(f"induction(n={n}, seed={seed}, length={k})",),
    )
