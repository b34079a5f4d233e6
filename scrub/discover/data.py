"""What a search reads: the rows its scrubs draw from, and the prompt pairs that order it.

A search scrubs hypotheses on ``pool`` (the reference examples are its first ``n`` rows) and ranks
candidates by path patching on ``inputs`` (clean prompts and their corrupted versions), which the
baselines it is compared with read too. Both come from the IOI generator or from the user's
prompt files.

Why several corruptions. One corruption only shows the paths through the variables it changes.
With ``abc`` every name changes together, so "is the name before IO+1 the subject?" (what a
previous-token head at IO+1 tells the induction head) is *no* on the clean and on the corrupted
prompt alike: patching that head changes nothing, by any method. Swapping the first clause's
order (``swap-order``) puts the subject before IO+1 and shows that path. ``ioi_data`` with
several corruptions *mixes* them: row ``i`` of the corrupted prompts is corrupted by the
``i mod k``-th, so every method is scored on the same prompt pairs at the cost of one corruption.

>>> data = ioi_data(model, pool=2000, n_patch=100,                # doctest: +SKIP
...                 corruptions=[["abc"], ["swap-order"]], seed=0)
>>> data.corruption                                              # doctest: +SKIP
'abc | swap-order'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from scrub.errors import ScrubError


@dataclass(frozen=True)
class SearchData:
    """``pool``: the scrubs' rows; ``inputs``: clean/corrupted pairs; ``corruption``: how the
    corrupted prompts were made (a label); ``run_args``: what ``scrub run`` needs to scrub on the
    same rows (empty for generated IOI, which ``--seed`` and ``--pool`` rebuild)."""

    pool: object  # PromptSet
    inputs: object  # PatchInputs
    corruption: str
    run_args: str = ""


def mixed_inputs(clean, corrupted: Sequence):
    """PatchInputs where row ``i`` reads ``corrupted[i % k]``'s row ``i``.

    Every corrupted set must corrupt ``clean`` row by row and keep each prompt's length (as
    :meth:`PatchInputs.from_promptsets` checks for one set).
    """
    from scrub.patching import PatchInputs

    sets = [PatchInputs.from_promptsets(clean, c) for c in corrupted]
    if len(sets) == 1:
        return sets[0]
    which = torch.arange(len(clean)) % len(sets)
    stacked = torch.stack([s.corrupted for s in sets])
    first = sets[0]
    return PatchInputs(
        clean=first.clean,
        corrupted=stacked[which, torch.arange(len(clean))],
        mask=first.mask,
        answers=first.answers,
        positions=first.positions,
    )


def ioi_data(model, *, pool: int, n_patch: int, corruptions: Sequence[Sequence[str]], seed: int):
    """Generated IOI prompts: the pool ``scrub run --seed seed --pool pool`` builds, and
    ``n_patch`` prompts corrupted by ``corruptions`` (each a list of steps applied in order;
    several lists are mixed row by row)."""
    from scrub.data import corrupt, make_ioi
    from scrub.data.registry import dataset_for

    clean = make_ioi(n_patch, seed=seed, tokenizer=model.tokenizer)
    bad = [corrupt(clean, steps, seed=seed) for steps in corruptions]
    return SearchData(
        pool=dataset_for("ioi", pool, seed=seed, model=model),
        inputs=mixed_inputs(clean, bad),
        corruption=" | ".join(",".join(steps) for steps in corruptions),
    )


def file_data(model, clean: Path, corrupted: Path, *, n_patch: int):
    """The user's prompt files: every clean row is in the pool (references first), and the first
    ``n_patch`` rows with their corrupted versions order the search."""
    from scrub.data.promptfile import load_pair
    from scrub.patching import PatchInputs

    info = model.info
    clean_ps, bad_ps = load_pair(
        clean, corrupted, model.tokenizer, n_vocab=info.d_vocab, n_ctx=info.n_ctx
    )
    inputs = PatchInputs.from_promptsets(clean_ps, bad_ps)
    if n_patch < inputs.n:
        k = n_patch
        inputs = PatchInputs(
            clean=inputs.clean[:k],
            corrupted=inputs.corrupted[:k],
            mask=inputs.mask[:k],
            answers=inputs.answers[:k],
            positions={name: p[:k] for name, p in inputs.positions.items()},
        )
    return SearchData(
        pool=clean_ps,
        inputs=inputs,
        corruption=f"file:{Path(corrupted).name}",
        run_args=f"--dataset {clean}",
    )


def check_other(other: str, pool) -> None:
    """``--other`` names a rule (``random``) or a feature column of ``pool`` to agree on."""
    if other == "random" or other in pool.features:
        return
    columns = [f for f in pool.features if not f.startswith("pos_")]
    raise ScrubError(
        f"--other {other}: the prompts have no feature column {other!r} to resample by",
        fix=f"use --other random or one of: {', '.join(columns) or '(no columns)'}",
    )
