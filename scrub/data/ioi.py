"""Sampling IOI datasets: distinct prompts drawn deterministically from the data files."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from scrub.data.files import IOIVocabulary
from scrub.data.promptset import ORDERS, PromptSet, PromptSpec, build_promptset, single_token_names
from scrub.errors import ScrubError

ORDER_CHOICES = ("ABBA", "BABA", "mixed")


def _uses(template: str, placeholder: str) -> bool:
    return placeholder in template


def count_distinct(
    vocab: IOIVocabulary, templates: Sequence[int], orders: Sequence[str], names: Sequence[str]
) -> int:
    """How many distinct prompts the lists allow (ordered IO/S pairs x places x objects)."""
    pairs = len(names) * (len(names) - 1)
    total = 0
    for t in templates:
        tpl = vocab.templates[t]
        places = len(vocab.places) if _uses(tpl, "[PLACE]") else 1
        objects = len(vocab.objects) if _uses(tpl, "[OBJECT]") else 1
        total += len(orders) * pairs * places * objects
    return total


def _check_choices(order: str, templates: Sequence[int] | None, n_templates: int) -> list[int]:
    if order not in ORDER_CHOICES:
        raise ScrubError(f"unknown order {order!r}", fix=f"use one of: {', '.join(ORDER_CHOICES)}")
    chosen = list(range(n_templates)) if templates is None else list(templates)
    bad = [t for t in chosen if not 0 <= t < n_templates]
    if bad or not chosen:
        raise ScrubError(
            f"unknown template id(s) {bad or 'none given'}",
            fix=f"template ids are 0-{n_templates - 1}",
        )
    return chosen


def fit_vocabulary(vocab: IOIVocabulary, tokenizer) -> IOIVocabulary:
    """``vocab`` as ``tokenizer`` can read it: punctuation spaced out for a tokenizer that splits
    only on whitespace (see :func:`scrub.data.tokenizer.splits_only_on_spaces`)."""
    from scrub.data.tokenizer import splits_only_on_spaces

    return vocab.spaced() if splits_only_on_spaces(tokenizer) else vocab


def make_ioi(
    n: int,
    *,
    seed: int = 0,
    tokenizer=None,
    order: str = "mixed",
    templates: Sequence[int] | None = None,
    vocab: IOIVocabulary | None = None,
) -> PromptSet:
    """``n`` distinct IOI prompts, the same for the same arguments. ``vocab`` (default: the
    shipped lists) is fitted to the tokenizer first (:func:`fit_vocabulary`).

    >>> ps = make_ioi(8, seed=0)  # doctest: +SKIP
    >>> ps.to_frame()[["io", "s", "order"]]  # doctest: +SKIP
    """
    from scrub.data.tokenizer import load_tokenizer

    tokenizer = tokenizer if tokenizer is not None else load_tokenizer("toy-ioi")
    vocab = fit_vocabulary(vocab or IOIVocabulary.load(), tokenizer)
    chosen = _check_choices(order, templates, len(vocab.templates))
    orders = ORDERS if order == "mixed" else (order,)
    names, excluded = single_token_names(tokenizer, vocab.names)
    if len(names) < 2:
        raise ScrubError(
            f"the tokenizer keeps only {len(names)} of {len(vocab.names)} names as single tokens",
            fix="use a tokenizer whose vocabulary has the names, or a names list it can encode",
        )
    total = count_distinct(vocab, chosen, orders, names)
    if n > total:
        raise ScrubError(
            f"n={n} is more than the {total} distinct prompts these lists allow",
            fix="lower --n or allow more templates, names, places or objects",
        )
    if n < 1:
        raise ScrubError(f"n={n} must be at least 1")
    rng = np.random.default_rng(seed)
    seen: set[tuple] = set()
    specs: list[PromptSpec] = []
    # Rejection sampling terminates quickly because n <= total; dense requests get slow only
    # when n is within a few percent of total, which the lists above make rare.
    while len(specs) < n:
        t = chosen[rng.integers(len(chosen))]
        o = orders[rng.integers(len(orders))]
        io_i, s_i = rng.choice(len(names), size=2, replace=False)
        tpl = vocab.templates[t]
        place = vocab.places[rng.integers(len(vocab.places))] if "[PLACE]" in tpl else ""
        obj = vocab.objects[rng.integers(len(vocab.objects))] if "[OBJECT]" in tpl else ""
        key = (t, o, io_i, s_i, place, obj)
        if key in seen:
            continue
        seen.add(key)
        io, s = names[io_i], names[s_i]
        specs.append(PromptSpec(t, tpl, o, io, s, s, place, obj))
    which = "all" if templates is None else list(chosen)
    lineage = f"ioi(n={n}, seed={seed}, order={order}, templates={which})"
    return build_promptset(
        specs, tokenizer, names_pool=names, lineage=(lineage,), excluded_names=excluded
    )


__all__ = ["make_ioi", "count_distinct", "fit_vocabulary", "ORDER_CHOICES"]
