"""Golden tests: a hand-built model whose circuit is known by construction.

The model (see :func:`build_golden_model`) is a 2-layer, attention-only GPT-2 reading prompts

    BOS  x1  x2  x3  and  to          (positions 0..5; named IO=1, S=2, ECHO=3, END=5)

where x1, x2, x3 are "names" n0..n11, x1 != x2, and the answers are (io, s) = (x1, x2). At END:

* head 0.0 attends to IO and copies x1 into a private subspace ``A`` (one dim per name);
* head 0.1 attends to S and copies x2 into a private subspace ``B``;
* heads 0.2 and 0.3 attend to IO and write +C_CANCEL and -C_CANCEL on x1's unembedding
  direction: they cancel exactly on every input;
* head 1.0 attends to END and maps ``A`` onto the unembedding, +K (it pushes x1);
* head 1.1 attends to END and maps ``B`` onto the unembedding, -K (it suppresses x2).

Nothing else writes to the unembedding subspace, so the clean logit difference is 2K, and a
head's contribution under the reference labels is a function of which row it effectively copied
from. Every expectation below is derived from that, per example, from the assignment's rows: e.g.
head 1.0 contributes ``K * ([x1(row) == io] - [x1(row) == s])``.

LayerNorm: every position carries a huge constant (+BIG, -BIG on two dims, mean zero), so the
LayerNorm scale is the same for all residual vectors to ~1e-4, and LayerNorm weights of exactly
that scale make LN(x) ~ x - mean(x). The mean term adds the same amount to every name's logit
(all reads are "all names alike" in the mean), so it cancels in logit differences.
Attention is hard: queries are constant (a bias), keys read one position dimension, and the
score gap is ~50, so the pattern is one-hot to ~1e-20.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scrub.data import TokenSet, build_word_tokenizer
from scrub.errors import ScrubError
from scrub.models import Model, load_model
from scrub.scrubbing.experiment import scrub_hypothesis
from scrub.scrubbing.hypothesis import OUTPUT, Embed, Hypothesis, agree, heads, node, random

N_NAMES = 12
NAMES = [f"n{i}" for i in range(N_NAMES)]
WORDS = [*NAMES, "and", "to"]  # ids 2.. (0 = BOS, 1 = UNK)
NAME_ID0 = 2
AND_ID, TO_ID = NAME_ID0 + N_NAMES, NAME_ID0 + N_NAMES + 1
VOCAB = 2 + len(WORDS)
POS = {"IO": 1, "S": 2, "ECHO": 3, "END": 5}
T = 6
K = 1.0  # the push of 1.0 and the suppression of 1.1 (clean logit difference is 2K)
C_CANCEL = 1.0  # what 0.2 adds and 0.3 removes
BIG = 100.0  # the constant that pins the LayerNorm scale

# Residual stream layout (d_model = 64).
D, N_HEADS, D_HEAD = 64, 4, 16
CONST = (0, 1)
TOK0 = 2  # token one-hots: dims 2 .. 2+VOCAB
POS0 = TOK0 + VOCAB  # position one-hots
SUB_A = POS0 + T  # names copied by 0.0
SUB_B = SUB_A + N_NAMES  # names copied by 0.1
SUB_U = SUB_B + N_NAMES  # the unembedding's name directions
assert SUB_U + N_NAMES <= D
SIGMA = BIG * math.sqrt(2 / D)  # LayerNorm's std of a residual vector, up to ~1e-4
SCORE = 14.0  # query bias and key weight: score gap SCORE**2 / sqrt(D_HEAD) = 49


def _head_weights(attend_to: int, reads: int | None, writes: int | None, sign: float):
    """(W_Q, b_Q, W_K, W_V, W_O) of one head: attend to position ``attend_to``, copy names.

    The query is a constant bias, the key reads the one-hot of ``attend_to``; the value reads
    the N_NAMES dims starting at ``reads`` and the output writes them, times ``sign``, to the
    dims starting at ``writes``. ``reads=None`` makes a head that writes nothing.
    """
    W_Q, W_K, W_V = (torch.zeros(D, D_HEAD) for _ in range(3))
    W_O = torch.zeros(D_HEAD, D)
    b_Q = torch.zeros(D_HEAD)
    b_Q[0] = SCORE
    W_K[POS0 + attend_to, 0] = SCORE
    if reads is not None:
        for j in range(N_NAMES):
            W_V[reads + j, j] = 1.0
            W_O[j, writes + j] = sign
    return W_Q, b_Q, W_K, W_V, W_O


def build_golden_model(path) -> Model:
    """Write the model described in the module docstring to ``path`` and load it."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        n_layer=2,
        n_head=N_HEADS,
        n_embd=D,
        vocab_size=VOCAB,
        n_positions=T,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    hf = GPT2LMHeadModel(cfg).eval()
    layer_heads = [
        [  # layer 0: readers of the embeddings
            _head_weights(POS["IO"], TOK0 + NAME_ID0, SUB_A, 1.0),
            _head_weights(POS["S"], TOK0 + NAME_ID0, SUB_B, 1.0),
            _head_weights(POS["IO"], TOK0 + NAME_ID0, SUB_U, C_CANCEL),
            _head_weights(POS["IO"], TOK0 + NAME_ID0, SUB_U, -C_CANCEL),
        ],
        [  # layer 1: read layer 0's subspaces at END itself
            _head_weights(POS["END"], SUB_A, SUB_U, K),
            _head_weights(POS["END"], SUB_B, SUB_U, -K),
            _head_weights(POS["END"], None, None, 0.0),
            _head_weights(POS["END"], None, None, 0.0),
        ],
    ]
    with torch.no_grad():
        for p in hf.parameters():
            p.zero_()
        tr = hf.transformer
        tr.wte.weight[torch.arange(VOCAB), TOK0 + torch.arange(VOCAB)] = 1.0
        tr.wpe.weight[torch.arange(T), POS0 + torch.arange(T)] = 1.0
        tr.wpe.weight[:, CONST[0]] = BIG
        tr.wpe.weight[:, CONST[1]] = -BIG
        for block, hs in zip(tr.h, layer_heads):
            # LN weight = the fixed std, so LN(x) ~ x - mean(x).
            block.ln_1.weight.fill_(SIGMA)
            block.ln_2.weight.fill_(1.0)
            for h, (W_Q, b_Q, W_K, W_V, W_O) in enumerate(hs):
                cols = slice(h * D_HEAD, (h + 1) * D_HEAD)
                block.attn.c_attn.weight[:, cols] = W_Q
                block.attn.c_attn.weight[:, D:][:, cols] = W_K
                block.attn.c_attn.weight[:, 2 * D :][:, cols] = W_V
                block.attn.c_attn.bias[cols] = b_Q
                block.attn.c_proj.weight[cols] = W_O
        tr.ln_f.weight.fill_(SIGMA)
        hf.lm_head.weight[NAME_ID0 + torch.arange(N_NAMES), SUB_U + torch.arange(N_NAMES)] = 1.0
    hf.save_pretrained(path)
    build_word_tokenizer(WORDS, sort=False).save_pretrained(path)
    return load_model(str(path))


def golden_dataset(n: int, echo_rate: float, seed: int = 0) -> TokenSet:
    """Rows ``BOS x1 x2 x3 and to`` with distinct x1, x2; x3 = x1 with probability ``echo_rate``.

    ``echo`` (x3) is a feature no head reads, correlated with the true cause ``io`` (x1):
    perfectly when ``echo_rate`` is 1, imperfectly otherwise (then x3 is a name != x1).
    """
    rng = np.random.default_rng(seed)
    x1 = rng.integers(0, N_NAMES, n)
    x2 = (x1 + rng.integers(1, N_NAMES, n)) % N_NAMES
    other = (x1 + rng.integers(1, N_NAMES, n)) % N_NAMES
    x3 = np.where(rng.random(n) < echo_rate, x1, other)
    tokens = np.stack([np.zeros(n, int), x1, x2, x3, np.full(n, AND_ID), np.full(n, TO_ID)], 1)
    tokens[:, 1:4] += NAME_ID0
    return TokenSet.build(
        tokens,
        {name: np.full(n, p) for name, p in POS.items()},
        np.stack([x1, x2], 1) + NAME_ID0,
        {"io": x1.tolist(), "s": x2.tolist(), "echo": x3.tolist()},
        lineage=(f"golden(echo_rate={echo_rate})",),
    )


@pytest.fixture(scope="module")
def golden(tmp_path_factory) -> Model:
    return build_golden_model(tmp_path_factory.mktemp("golden"))


N_REF, N_POOL = 200, 600


def _cols(ds: TokenSet):
    f = ds.features
    return np.array(f["io"]), np.array(f["s"])


def _votes(ds: TokenSet, copied: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """+1 / -1 / 0: whether a name copied from rows ``copied`` is the reference's io / s / other."""
    io, s = _cols(ds)
    return (copied == io[ref]).astype(float) - (copied == s[ref]).astype(float)


def expected(ds, *, push, suppress, plus=None, minus=None) -> np.ndarray:
    """The construction's logit difference per reference example, from effective rows.

    ``push``: rows whose x1 head 1.0 pushes (via 0.0); ``suppress``: rows whose x2 head 1.1
    suppresses (via 0.1); ``plus`` / ``minus``: rows heads 0.2 / 0.3 copy x1 from.
    """
    io, s = _cols(ds)
    ref = np.arange(N_REF)
    out = K * _votes(ds, io[push], ref) - K * _votes(ds, s[suppress], ref)
    if plus is not None:
        out += C_CANCEL * (_votes(ds, io[plus], ref) - _votes(ds, io[minus], ref))
    return out


def run(h, model, ds, seed=0):
    return scrub_hypothesis(h, model, ds, n=N_REF, seed=seed)


def assert_matches_construction(r, want: np.ndarray) -> None:
    """Per example, the engine's scrubbed logit difference is what the construction predicts."""
    # LayerNorm's scale moves by ~1e-4 between worlds; 1e-2 is far below any 1-unit effect.
    np.testing.assert_allclose(r.clean, 2 * K, atol=1e-2)
    np.testing.assert_allclose(r.scrubbed, want, atol=1e-2)


def _true_nodes(push_rule=None):
    """The true story; ``push_rule`` replaces the rule of 0.0 (agree io)."""
    return [
        node("push", heads("1.0", at="END"), feeds=OUTPUT, rule=agree("io")),
        node("copy io", heads("0.0", at="END"), feeds="push.v", rule=push_rule or agree("io")),
        node("suppress", heads("1.1", at="END"), feeds=OUTPUT, rule=agree("s")),
        node("copy s", heads("0.1", at="END"), feeds="suppress.v", rule=agree("s")),
    ]


TRUE = Hypothesis("true", _true_nodes())


def test_true_hypothesis_recovers_everything(golden):
    ds = golden_dataset(N_POOL, echo_rate=0.5)
    r = run(TRUE, golden, ds)
    a = r.assignment.rows
    assert_matches_construction(
        r, expected(ds, push=a["push/copy io"], suppress=a["suppress/copy s"])
    )
    np.testing.assert_allclose(r.scrubbed, r.clean, atol=1e-2)  # the same, said plainly
    assert r.recovered >= 0.98
    # The random baseline is a real baseline: most random rows share neither name.
    assert abs(r.random.mean()) < 0.5


def test_empty_hypothesis_recovers_nothing(golden):
    """The random baseline has its own rows, so "recovers 0" is measured, not built in.

    Scrubbed and random are both the construction on random rows (the output's other inputs and
    the baseline's, two different draws): recovered is 0 up to noise, and both series match
    the construction example by example.
    """
    ds = golden_dataset(N_POOL, echo_rate=0.5)
    r = run(Hypothesis("empty", []), golden, ds)
    other, base = r.assignment.other[""], r.assignment.baseline
    assert_matches_construction(r, expected(ds, push=other, suppress=other))
    np.testing.assert_allclose(r.random, expected(ds, push=base, suppress=base), atol=1e-2)
    assert (other != base).mean() > 0.9  # two draws, not one
    assert not np.array_equal(r.scrubbed, r.random)
    assert abs(r.recovered) < 4 * r.recovered_se


def test_parts_that_cancel_one_claimed(golden):
    """Claiming that only 0.3 (the negative half of a cancelling pair) matters.

    0.3 then copies the reference's io (-C) while 0.2 copies a random row's: scrubbed ~ 2K - C,
    recovered ~ 1/2, not 1.
    """
    ds = golden_dataset(N_POOL, echo_rate=0.5)
    h = Hypothesis(
        "neg-half",
        [*_true_nodes(), node("neg", heads("0.3", at="END"), feeds=OUTPUT, rule=agree("io"))],
    )
    r = run(h, golden, ds)
    a, other = r.assignment.rows, r.assignment.other[""]
    assert_matches_construction(
        r,
        expected(
            ds, push=a["push/copy io"], suppress=a["suppress/copy s"], plus=other, minus=a["neg"]
        ),
    )
    assert r.recovered + 4 * r.recovered_se < 0.8


def test_parts_that_cancel_resampled_independently(golden):
    """0.2 and 0.3 in separate nodes with their own draws: the cancellation is broken.

    0.2 agrees on io (+C), 0.3 is resampled at random (~0): scrubbed ~ 2K + C, recovered ~ 3/2.
    Putting both in one node (one draw) keeps them cancelling: recovered ~ 1.
    """
    ds = golden_dataset(N_POOL, echo_rate=0.5)
    split = Hypothesis(
        "split",
        [
            *_true_nodes(),
            node("pos", heads("0.2", at="END"), feeds=OUTPUT, rule=agree("io")),
            node("neg", heads("0.3", at="END"), feeds=OUTPUT, rule=random),
        ],
    )
    r = run(split, golden, ds)
    a = r.assignment.rows
    assert_matches_construction(
        r,
        expected(
            ds, push=a["push/copy io"], suppress=a["suppress/copy s"], plus=a["pos"], minus=a["neg"]
        ),
    )
    assert r.recovered - 4 * r.recovered_se > 1.2

    together = Hypothesis(
        "together",
        [*_true_nodes(), node("pair", heads("0.2 0.3", at="END"), feeds=OUTPUT, rule=random)],
    )
    t = run(together, golden, ds)
    np.testing.assert_allclose(t.scrubbed, t.clean, atol=1e-2)
    assert t.recovered >= 0.98


def test_swapped_intermediates(golden):
    """Attributing 0.0's role (copy io into 1.0's values) to 0.1, and 0.1's to 0.0.

    1.0 then reads subspace A from its own other-inputs row (random), and so does 1.1 for B:
    scrubbed ~ random, recovered ~ 0.
    """
    ds = golden_dataset(N_POOL, echo_rate=0.5)
    h = Hypothesis(
        "swapped",
        [
            node("push", heads("1.0", at="END"), feeds=OUTPUT, rule=agree("io")),
            node("copy io", heads("0.1", at="END"), feeds="push.v", rule=agree("io")),
            node("suppress", heads("1.1", at="END"), feeds=OUTPUT, rule=agree("s")),
            node("copy s", heads("0.0", at="END"), feeds="suppress.v", rule=agree("s")),
        ],
    )
    r = run(h, golden, ds)
    o = r.assignment.other
    assert_matches_construction(r, expected(ds, push=o["push"], suppress=o["suppress"]))
    assert r.recovered + 4 * r.recovered_se < 0.3


@pytest.mark.parametrize("echo_rate", [1.0, 0.6])
def test_data_correlations(golden, echo_rate):
    """Agreeing on ``echo`` (x3, read by no head) instead of ``io`` (x1) for head 0.0.

    When x3 == x1 on every row the two features are the same partition of the data, so the
    wrong story is indistinguishable (recovered ~ 1). When x3 == x1 on only 60% of the rows, a
    row agreeing on echo often has another x1: 0.0 copies the wrong name and the push is lost on
    those examples, while agreeing on io still recovers everything.
    """
    ds = golden_dataset(N_POOL, echo_rate=echo_rate, seed=1)
    wrong = Hypothesis("echo", _true_nodes(push_rule=agree("echo")))
    r = run(wrong, golden, ds)
    a = r.assignment.rows
    assert_matches_construction(
        r, expected(ds, push=a["push/copy io"], suppress=a["suppress/copy s"])
    )
    right = run(TRUE, golden, ds)
    assert right.recovered >= 0.98
    if echo_rate == 1.0:
        assert r.recovered >= 0.98
    else:
        assert r.recovered + 4 * r.recovered_se < 0.9
        assert right.recovered - r.recovered > 4 * r.recovered_se


def test_unspecified_node_left_out(golden):
    """Leaving out 1.1 (which suppresses s): it runs on a random row, recovered ~ 1/2."""
    ds = golden_dataset(N_POOL, echo_rate=0.5)
    h = Hypothesis("no suppress", _true_nodes()[:2])
    r = run(h, golden, ds)
    a, other = r.assignment.rows, r.assignment.other[""]
    assert_matches_construction(r, expected(ds, push=a["push/copy io"], suppress=other))
    assert r.recovered + 4 * r.recovered_se < 0.75


def test_unspecified_intermediate(golden):
    """1.1 is an internal node whose only child is its query's embedding at END, not 0.1.

    Its values (subspace B, written by 0.1) then come from 1.1's other-inputs row: the
    suppression is of a random name, so recovered ~ 1/2. Naming 0.1 fixes it (the true story).
    """
    ds = golden_dataset(N_POOL, echo_rate=0.5)
    h = Hypothesis(
        "no copy s",
        [
            *_true_nodes()[:3],
            node("end embed", Embed("END"), feeds="suppress.q", rule=agree("s")),
        ],
    )
    r = run(h, golden, ds)
    a, o = r.assignment.rows, r.assignment.other
    assert_matches_construction(r, expected(ds, push=a["push/copy io"], suppress=o["suppress"]))
    assert r.recovered + 4 * r.recovered_se < 0.75


def test_repeated_edge_is_rejected(golden):
    """``copy io`` listed twice as feeding push.v is an error, not a silent double patch.

    Patched twice, 1.0's values would hold 2 * x1(copy) - x1(world): the push doubled, making a
    story that misses the suppression (true recovered ~ 1/2) look like ~100%.
    """
    ds = golden_dataset(N_POOL, echo_rate=0.5)

    def story(feeds):
        return Hypothesis(
            "push only",
            [
                node("push", heads("1.0", at="END"), feeds=OUTPUT, rule=agree("io")),
                node("copy io", heads("0.0", at="END"), feeds=feeds, rule=agree("io")),
            ],
        )

    once = run(story("push.v"), golden, ds)
    assert once.recovered < 0.75  # the story misses the suppression: about 1/2
    # Rejected before any forward pass: counting the edge twice would double the push.
    with pytest.raises(ScrubError, match="feeds 'push'.v twice"):
        run(story(["push.v", "push.v"]), golden, ds)
