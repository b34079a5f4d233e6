"""Metrics on logits at END, shared by patching and the scrubbing engine.

All metrics are per example. The logit difference needs only two vocabulary columns (IO and S of
the reference row), so callers may pass logits of shape [n, 2] gathered at those columns.
"""

from __future__ import annotations

from jaxtyping import Float, Int
from torch import Tensor

from scrub.errors import ScrubError

METRICS = ("logit-diff", "loss", "kl")


def check_metric(name: str) -> str:
    if name not in METRICS:
        raise ScrubError(f"unknown metric {name!r}", fix=f"use one of: {', '.join(METRICS)}")
    return name


def logit_diff_from_pair(pair: Float[Tensor, "n 2"]) -> Float[Tensor, " n"]:
    """logit(IO) - logit(S), from logits gathered at the columns [IO, S].

    >>> import torch
    >>> logit_diff_from_pair(torch.tensor([[3.0, 1.0]]))
    tensor([2.])
    """
    return pair[:, 0] - pair[:, 1]


def logit_diff(
    logits: Float[Tensor, "n vocab"], answers: Int[Tensor, "n 2"]
) -> Float[Tensor, " n"]:
    """logit(IO) - logit(S) from full-vocabulary logits at END."""
    return logit_diff_from_pair(logits.gather(1, answers))


def io_loss(logits: Float[Tensor, "n vocab"], answers: Int[Tensor, "n 2"]) -> Float[Tensor, " n"]:
    """Cross-entropy of the IO token at END (lower is better)."""
    return -logits.log_softmax(-1).gather(1, answers[:, :1])[:, 0]


def kl_to(logits: Float[Tensor, "n vocab"], clean: Float[Tensor, "n vocab"]) -> Float[Tensor, " n"]:
    """KL(clean || logits) at END, per example (0 for the clean model itself)."""
    p_log = clean.log_softmax(-1)
    return (p_log.exp() * (p_log - logits.log_softmax(-1))).sum(-1)


def normalize(value: Tensor | float, clean: float, corrupted: float) -> Tensor | float:
    """Rescale so the clean run scores 1 and the corrupted run 0."""
    if clean == corrupted:
        raise ScrubError(
            "clean and corrupted metrics are equal, so a normalised score is undefined",
            fix="use a corruption that changes the model's behaviour",
        )
    return (value - corrupted) / (clean - corrupted)
