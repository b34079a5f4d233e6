"""The cached runs: run_caches shares the clean run's prefix and skips padding, exactly.

The reference is a plain pass of each prompt alone, cut to its length (no padding, no sharing).
"""

from __future__ import annotations

import pytest
import torch

from scrub.errors import ScrubError
from scrub.models import Model
from scrub.models.runs import prefix_sources
from scrub.models.weights import ModelWeights
from scrub.patching import PatchInputs, run_cache, run_caches

FIELDS = ("resid_pre", "resid_mid", "z", "attn_out", "mlp_out")


def _inputs() -> PatchInputs:
    """Padded rows whose corruption starts mid-prompt, at the first non-BOS token, nowhere (two
    rows, one padded) and at position 0."""
    g = torch.Generator().manual_seed(3)
    n, t = 6, 9
    lengths = torch.tensor([9, 7, 9, 6, 9, 8])
    mask = torch.arange(t)[None] < lengths[:, None]
    clean = torch.randint(2, 40, (n, t), generator=g)
    clean[:, 0] = 0  # BOS
    clean = clean.masked_fill(~mask, 0)
    corrupted = clean.clone()
    for row, pos in [(0, 4), (1, 1), (4, 0), (5, 2)]:  # rows 2 and 3 stay equal
        corrupted[row, pos:] = (clean[row, pos:] + 1 - 2) % 38 + 2  # differs at pos, stays >= 2
    corrupted = corrupted.masked_fill(~mask, 0)
    answers = torch.randint(2, 40, (n, 2), generator=g)
    return PatchInputs(clean, corrupted, mask, answers, {"END": lengths - 1})


def _check_against_alone(w: ModelWeights, cache, tokens, inputs: PatchInputs) -> None:
    for row in range(inputs.n):
        length = int(inputs.mask[row].sum())
        alone = run_cache(
            w,
            tokens[row : row + 1, :length],
            inputs.mask[row : row + 1, :length],
            inputs.end[[row]],
        )
        for field in FIELDS:
            for layer, (got, want) in enumerate(zip(getattr(cache, field), getattr(alone, field))):
                got = got[row, :length]
                torch.testing.assert_close(
                    got, want[0], atol=1e-5, rtol=0, equal_nan=True, msg=f"{field}[{layer}] {row}"
                )
                # Padding is never computed, but it must stay finite where real positions are.
                pad = getattr(cache, field)[layer][row, length:]
                assert pad.isfinite().all() or not want[0].isfinite().all(), (field, layer, row)


@pytest.mark.parametrize("model", ["tiny_model", "tiny_attn_only_model"])
def test_shared_prefix_caches_equal_separate_passes(model: str, request) -> None:
    w = request.getfixturevalue(model).weights
    inputs = _inputs()
    clean, corrupt = run_caches(w, inputs)
    _check_against_alone(w, clean, inputs.clean, inputs)
    _check_against_alone(w, corrupt, inputs.corrupted, inputs)
    # The batched single-set cache agrees with the shared one on the corrupted run.
    alone = run_cache(w, inputs.corrupted, inputs.mask, inputs.end)
    for field in FIELDS:
        for got, want in zip(getattr(corrupt, field), getattr(alone, field)):
            m = inputs.mask.reshape(*inputs.mask.shape, *[1] * (got.dim() - 2))
            torch.testing.assert_close(
                got.where(m, 0), want.where(m, 0), atol=1e-5, rtol=0, equal_nan=True
            )


def test_all_rows_equal_and_all_rows_differing(tiny_model: Model) -> None:
    """Edge cases: nothing to compute for the corrupted run, and nothing to share."""
    w = tiny_model.weights
    base = _inputs()
    same = PatchInputs(base.clean, base.clean, base.mask, base.answers, base.positions)
    clean, corrupt = run_caches(w, same)
    for field in FIELDS:
        for a, b in zip(getattr(clean, field), getattr(corrupt, field)):
            m = base.mask.reshape(*base.mask.shape, *[1] * (a.dim() - 2))
            torch.testing.assert_close(a.where(m, 0), b.where(m, 0), equal_nan=True)
    shifted = (base.clean + 1 - 2) % 38 + 2  # every token differs, BOS included
    other = PatchInputs(base.clean, shifted, base.mask, base.answers, base.positions)
    _check_against_alone(w, run_caches(w, other)[1], shifted, other)


def test_prefix_sources_share_exactly_the_equal_prefixes() -> None:
    """Brute force on a 3-token alphabet, where many rows share prefixes (and whole rows)."""
    g = torch.Generator().manual_seed(0)
    n, t = 40, 6
    tokens = torch.randint(0, 3, (n, t), generator=g)
    lengths = torch.randint(1, t + 1, (n,), generator=g)
    mask = torch.arange(t)[None] < lengths[:, None]
    tokens = tokens.masked_fill(~mask, 0)  # padding reuses a real token id: 0
    source = prefix_sources(tokens, mask)
    for p in range(t):
        prefixes = {}
        for i in range(n):
            key = (tuple(tokens[i, : p + 1].tolist()), tuple(mask[i, : p + 1].tolist()))
            prefixes.setdefault(key, set()).add(int(source[i, p]))
        # one source per distinct prefix, at position p of a row with that prefix, self-sourced
        for key, sources in prefixes.items():
            assert len(sources) == 1, (p, key, sources)
            (s,) = sources
            j = s // t
            assert s % t == p and int(source[j, p]) == s
            assert (tuple(tokens[j, : p + 1].tolist()), tuple(mask[j, : p + 1].tolist())) == key


def test_rows_sharing_prefixes_across_prompts(tiny_model: Model) -> None:
    """Prefixes shared between different prompts (not only a clean row and its corruption):
    a copy of a row, rows forking after a few tokens, and a shorter row whose padding id
    equals the longer row's real token there."""
    w = tiny_model.weights
    base = _inputs()
    clean, lengths = base.clean.clone(), base.mask.sum(1)
    clean[0, 6] = 0  # a real token equal to the padding id
    clean[2] = clean[0]  # an exact copy (both length 9)
    clean[4, :5] = clean[0, :5]  # forks from row 0 after 5 tokens
    clean[3, :6] = clean[0, :6]  # row 3 has length 6: its padding at 6 is id 0, like row 0
    clean = clean.masked_fill(~base.mask, 0)
    inputs = PatchInputs(clean, base.corrupted, base.mask, base.answers, base.positions)
    assert int(lengths[3]) == 6 and int(lengths[0]) == 9
    got_clean, got_corrupt = run_caches(w, inputs)
    _check_against_alone(w, got_clean, inputs.clean, inputs)
    _check_against_alone(w, got_corrupt, inputs.corrupted, inputs)


def test_left_padded_prompts_are_refused() -> None:
    base = _inputs()
    left = base.mask.flip(1)
    with pytest.raises(ScrubError, match="right-padded"):
        PatchInputs(base.clean, base.corrupted, left, base.answers, {"END": base.end * 0 + 8})
