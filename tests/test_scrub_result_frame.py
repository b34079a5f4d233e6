"""ScrubResult.to_frame(): per-example recovered and the dataset's feature columns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scrub import OUTPUT, Hypothesis, agree, heads, node


def test_frame_has_features_of_the_reference_rows_and_per_example_recovered():
    from scrub.data.registry import build_dataset
    from scrub.errors import ScrubError
    from scrub.models import load_model
    from scrub.scrubbing.experiment import scrub_hypothesis

    torch.set_num_threads(1)
    try:
        model = load_model("toy-ioi")
    except ScrubError as e:
        pytest.skip(f"toy-ioi checkpoint unavailable: {e}")
    h = Hypothesis("nm", [node("nm", heads("3.1", at="END"), feeds=OUTPUT, rule=agree("order"))])
    ds = build_dataset("ioi", 120, seed=2, tokenizer=model.tokenizer)
    result = scrub_hypothesis(h, model, ds, n=30, seed=2)
    frame = result.to_frame()
    assert len(frame) == 30
    truth = ds.to_frame()
    for col in ("io", "s", "order", "template"):
        if col in truth:  # the feature columns the dataset has, at each example's own row
            assert list(frame[col]) == list(truth[col].iloc[frame["row"]])
    assert {"io", "order"} <= set(frame.columns)
    by_hand = [(s - r) / (c - r) for c, s, r in zip(result.clean, result.scrubbed, result.random)]
    np.testing.assert_allclose(frame["recovered"], by_hand, rtol=1e-12)
    assert frame["recovered"].mean() == pytest.approx(result.stats.mean_of_ratios)
