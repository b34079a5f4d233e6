"""Corruptions of IOI PromptSets, aligned row by row with their source.

Each corruption rewrites every row's :class:`PromptSpec` and re-tokenises, so positions shifted by
a prefix or a swapped order are resolved afresh and verified. Corruptions compose left to right::

    corrupt(ps, ["prefix", "flip-io"], seed=0)   # prefix first, then flip IO
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from scrub.data.files import IOIVocabulary
from scrub.data.promptset import PromptSet, PromptSpec
from scrub.errors import ScrubError

Rng = np.random.Generator


def _fresh(rng: Rng, pool: Sequence[str], avoid: set[str], k: int) -> list[str]:
    """``k`` distinct names from ``pool`` none of which is in ``avoid``."""
    choices = [n for n in pool if n not in avoid]
    if len(choices) < k:
        raise ScrubError(
            f"need {k} new names besides {sorted(avoid)} but the pool has {len(choices)}",
            fix="use a longer names list",
        )
    return [choices[i] for i in rng.choice(len(choices), size=k, replace=False)]


def _used(s: PromptSpec) -> set[str]:
    return {s.io, s.s1, s.s2}


def flip_io(s: PromptSpec, rng: Rng, pool: Sequence[str], _: IOIVocabulary) -> PromptSpec:
    (io,) = _fresh(rng, pool, _used(s), 1)
    return replace(s, io=io)


def flip_s(s: PromptSpec, rng: Rng, pool: Sequence[str], _: IOIVocabulary) -> PromptSpec:
    (new,) = _fresh(rng, pool, _used(s), 1)
    return replace(s, s1=new, s2=new)


def flip_s1(s: PromptSpec, rng: Rng, pool: Sequence[str], _: IOIVocabulary) -> PromptSpec:
    (new,) = _fresh(rng, pool, _used(s), 1)
    return replace(s, s1=new)


def flip_s2(s: PromptSpec, rng: Rng, pool: Sequence[str], _: IOIVocabulary) -> PromptSpec:
    (new,) = _fresh(rng, pool, _used(s), 1)
    return replace(s, s2=new)


def flip_io_s(s: PromptSpec, rng: Rng, pool: Sequence[str], _: IOIVocabulary) -> PromptSpec:
    io, new = _fresh(rng, pool, _used(s), 2)
    return replace(s, io=io, s1=new, s2=new)


def abc(s: PromptSpec, rng: Rng, pool: Sequence[str], _: IOIVocabulary) -> PromptSpec:
    io, s1, s2 = _fresh(rng, pool, _used(s), 3)
    return replace(s, io=io, s1=s1, s2=s2)


def swap_order(s: PromptSpec, rng: Rng, pool: Sequence[str], _: IOIVocabulary) -> PromptSpec:
    return replace(s, order="BABA" if s.order == "ABBA" else "ABBA")


def make_prefix(k: int) -> Callable[[PromptSpec, Rng, Sequence[str], IOIVocabulary], PromptSpec]:
    """Prepend 1 to ``k`` filler sentences (drawn without replacement) before the prompt."""

    def prefix(s: PromptSpec, rng: Rng, pool: Sequence[str], vocab: IOIVocabulary) -> PromptSpec:
        count = int(rng.integers(1, min(k, len(vocab.prefixes)) + 1))
        picks = rng.choice(len(vocab.prefixes), size=count, replace=False)
        return replace(s, prefix=(*(vocab.prefixes[i] for i in picks), *s.prefix))

    return prefix


CORRUPTIONS: dict[str, Callable] = {
    "flip-io": flip_io,
    "flip-s": flip_s,
    "flip-s1": flip_s1,
    "flip-s2": flip_s2,
    "flip-io-s": flip_io_s,
    "abc": abc,
    "swap-order": swap_order,
    "prefix": make_prefix(3),
}


def parse_corruptions(text: str) -> list[str]:
    """``"prefix,flip-io"`` -> ``["prefix", "flip-io"]``, rejecting unknown names."""
    names = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in names if c not in CORRUPTIONS]
    if unknown or not names:
        raise ScrubError(
            f"unknown corruption {', '.join(map(repr, unknown)) or '(none given)'}",
            fix=f"use one or more of: {', '.join(CORRUPTIONS)}",
        )
    return names


def corrupt(
    ps: PromptSet,
    names: Sequence[str],
    *,
    seed: int = 0,
    prefix_k: int = 3,
    vocab: IOIVocabulary | None = None,
) -> PromptSet:
    """Apply the named corruptions in order; row i of the result corrupts row i of ``ps``.

    The random stream of step j depends only on (seed, j, corruption name), so the output is the
    same bytes for the same arguments. ``vocab`` (the prefixes' source; default: the shipped
    lists) is fitted to the prompts' tokenizer as :func:`~scrub.data.ioi.make_ioi` fits it.
    """
    from scrub.data.ioi import fit_vocabulary

    parse_corruptions(",".join(names))
    if not ps.specs:
        raise ScrubError(
            "corruptions rewrite generated IOI prompts, and these prompts came from a file",
            fix="write the corrupted prompts to a file of their own (scrub patch --corrupted)",
        )
    vocab = vocab or IOIVocabulary.load()
    if ps.tokenizer is not None:
        vocab = fit_vocabulary(vocab, ps.tokenizer)
    for j, name in enumerate(names):
        fn = make_prefix(prefix_k) if name == "prefix" else CORRUPTIONS[name]
        rng = np.random.default_rng([seed, j, zlib.crc32(name.encode())])
        specs = [fn(s, rng, ps.names_pool, vocab) for s in ps.specs]
        ps = ps.rebuild(specs, name if name != "prefix" else f"prefix(k={prefix_k})")
    return ps
