"""Datasets by name, for the CLI and the runner: ``ioi`` and ``induction``."""

from __future__ import annotations

from scrub.errors import ScrubError

DATASETS = ("ioi", "induction")


def build_dataset(
    kind: str, n: int, *, seed: int, tokenizer, n_vocab: int | None = None, n_ctx: int | None = None
):
    """``n`` rows of dataset ``kind`` tokenised by ``tokenizer``, checked against the model."""
    if kind == "ioi":
        from scrub.data.ioi import make_ioi

        ds = make_ioi(n, seed=seed, tokenizer=tokenizer)
    elif kind == "induction":
        from scrub.data.induction import make_induction

        ds = make_induction(n, seed=seed, tokenizer=tokenizer)
    else:
        raise ScrubError(f"unknown dataset {kind!r}", fix=f"use one of: {', '.join(DATASETS)}")
    return check_fits(ds, n_vocab=n_vocab, n_ctx=n_ctx)


def dataset_for(kind: str, n: int, *, seed: int, model):
    """:func:`build_dataset` tokenised by ``model``'s tokenizer and checked against it.

    >>> ds = dataset_for("ioi", 2000, seed=0, model=load_model("toy-ioi"))   # doctest: +SKIP
    """
    info = model.info
    return build_dataset(
        kind, n, seed=seed, tokenizer=model.tokenizer, n_vocab=info.d_vocab, n_ctx=info.n_ctx
    )


def check_fits(ds, *, n_vocab: int | None = None, n_ctx: int | None = None):
    """``ds`` itself, once checked to use only the model's token ids and to fit its context."""
    if n_vocab is not None and int(ds.tokens.max()) >= n_vocab:
        raise ScrubError(
            f"the dataset uses token id {int(ds.tokens.max())} but the model has {n_vocab} tokens",
            fix="tokenise with the model's own tokenizer",
        )
    if n_ctx is not None and ds.tokens.shape[1] > n_ctx:
        raise ScrubError(
            f"prompts of {ds.tokens.shape[1]} tokens exceed the model's context of {n_ctx}",
            fix="use shorter prompts",
        )
    return ds
