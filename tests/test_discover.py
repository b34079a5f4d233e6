"""scrub discover: the search on a hand-built model whose circuit is known, AUC by hand, the
edge-resolved forward against the kernel, and the written file through load, scrub and the CLI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import test_scrub_golden
import torch
from test_scrub_golden import N_NAMES, NAME_ID0, build_golden_model, golden_dataset

from scrub.cli import main
from scrub.discover import graph
from scrub.discover.ranking import edge_scores, site_scores
from scrub.discover.scoring import roc_auc
from scrub.discover.search import Part, Search, Settings, discover
from scrub.discover.space import LOGITS, Edge, Site, Space, Truth
from scrub.discover.writer import write_hypothesis
from scrub.errors import ScrubError
from scrub.models import kernel
from scrub.patching import PatchInputs
from scrub.scrubbing.experiment import scrub_hypothesis
from scrub.scrubbing.hypothesis import OUTPUT, Embed, random
from scrub.scrubbing.loader import load_hypothesis

# ---- ROC AUC on inputs checkable by hand ------------------------------------------------------


def test_auc_perfect_reversed_and_tied():
    assert roc_auc({"a": 3, "b": 2, "c": 1}, {"a"}) == 1.0
    assert roc_auc({"a": 1, "b": 2, "c": 3}, {"a"}) == 0.0
    # a ties b (1/2) and beats c (1): (0.5 + 1) / 2 pairs
    assert roc_auc({"a": 1, "b": 1, "c": 0}, {"a"}) == 0.75
    # positives {a, c} against {b, d}: a>b, a>d, c<b, c>d -> 3 of 4 pairs
    assert roc_auc({"a": 4, "b": 3, "c": 2, "d": 1}, {"a", "c"}) == 0.75


def test_auc_needs_both_classes():
    with pytest.raises(ScrubError, match="positives and negatives"):
        roc_auc({"a": 1.0}, {"a"})


# ---- the search on the golden model: its circuit is known by construction ---------------------


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    """The golden model with a smaller cancelling pair (C = 0.3 K instead of K).

    With C = K the smallest sufficient hypothesis is *not* the built circuit: keeping 0.2 (+C on
    x1) with 0.3 resampled pushes x1 exactly as much as 1.0 does, so {0.2, 1.1 <- 0.1} recovers
    ~1 with three heads. That is causal scrubbing's known blind spot for cancelling parts
    (README, "What can go wrong"); with C = 0.3 K it costs 0.35 and the answer is unique.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(test_scrub_golden, "C_CANCEL", 0.3)
        return build_golden_model(tmp_path_factory.mktemp("golden"))


def golden_inputs(ds, seed: int = 1) -> PatchInputs:
    """Corrupted rows replace both first names (x1, x2) by two other names: ABC-like."""
    rng = np.random.default_rng(seed)
    bad = ds.tokens.clone()
    x1 = ds.tokens[:, 1] - NAME_ID0
    x2 = ds.tokens[:, 2] - NAME_ID0
    shift = torch.from_numpy(rng.integers(1, N_NAMES - 1, len(ds)))
    bad[:, 1] = (x1 + shift) % N_NAMES + NAME_ID0
    bad[:, 2] = (x2 + shift) % N_NAMES + NAME_ID0
    return PatchInputs(ds.tokens, bad, ds.mask, ds.answers, dict(ds.positions))


#: What the golden search reported to its progress callback: (recovered, heads, nodes, scrubs).
PROGRESS: list[tuple[float, int, int, int]] = []


@pytest.fixture(scope="module")
def golden_found(golden):
    ds = golden_dataset(600, echo_rate=0.5)
    inputs = golden_inputs(golden_dataset(100, echo_rate=0.5, seed=3))
    settings = Settings(target=0.9, n=200, other=random)
    with torch.no_grad():
        found = discover(golden, ds, inputs, settings, lambda *a: PROGRESS.append(a))
    return found, ds


def test_progress_reports_scrubs_so_far_and_the_last_accepted_hypothesis(golden_found):
    found, _ = golden_found
    scrubs = [s for *_, s in PROGRESS]
    assert scrubs == sorted(scrubs) and len(PROGRESS) > 1
    # the costs of the found nodes are scrubbed after the last report
    assert scrubs[-1] == found.evaluations - len(found.parts)
    recovered, heads, nodes, _ = PROGRESS[-1]
    assert (heads, nodes) == (len(found.head_parts()), len(found.parts))
    assert recovered == found.recovered


def test_search_finds_the_built_circuit(golden_found):
    """1.0 pushes x1 read by 0.0 from IO; 1.1 suppresses x2 read by 0.1 from S; 0.2 and 0.3
    cancel on every input, so they are not part of any small sufficient hypothesis."""
    found, _ = golden_found
    sites = {p.site for p in found.head_parts()}
    assert sites == {Site(1, 0, "END"), Site(1, 1, "END"), Site(0, 0, "END"), Site(0, 1, "END")}
    by_name = {p.name: p for p in found.parts}
    parent = {p.site: by_name[p.parent].site for p in found.head_parts() if p.parent in by_name}
    assert parent == {Site(0, 0, "END"): Site(1, 0, "END"), Site(0, 1, "END"): Site(1, 1, "END")}
    assert {p.slots for p in found.head_parts() if p.site.layer == 0} == {("v",)}
    embeds = {(p.component, by_name[p.parent].site) for p in found.parts if p.site is None}
    assert (Embed("IO"), Site(0, 0, "END")) in embeds
    assert (Embed("S"), Site(0, 1, "END")) in embeds
    # The construction is exact: the true story recovers everything.
    assert found.recovered == pytest.approx(1.0, abs=0.02)


def test_search_scores_rank_the_circuit_first(golden_found):
    found, ds = golden_found
    space = Space(2, 4, tuple(ds.positions))
    truth = Truth(
        frozenset({Site(1, 0, "END"), Site(1, 1, "END"), Site(0, 0, "END"), Site(0, 1, "END")}),
        frozenset(
            {
                Edge(Site(1, 0, "END"), None, LOGITS),
                Edge(Site(1, 1, "END"), None, LOGITS),
                Edge(Site(0, 0, "END"), (1, 0), "v"),
                Edge(Site(0, 1, "END"), (1, 1), "v"),
            }
        ),
    )
    assert roc_auc(site_scores(found, space), truth.sites) == 1.0
    assert roc_auc(edge_scores(found, space), truth.edges) == 1.0


def test_search_is_deterministic(golden, golden_found):
    found, ds = golden_found
    inputs = golden_inputs(golden_dataset(100, echo_rate=0.5, seed=3))
    with torch.no_grad():
        again = discover(golden, ds, inputs, Settings(target=0.9, n=200, other=random))
    assert again.parts == found.parts
    assert again.recovered == found.recovered


def test_written_file_loads_and_scrubs_the_same(golden, golden_found, tmp_path):
    found, ds = golden_found
    path = tmp_path / "found.py"
    write_hypothesis(found, path, variable="found", title="found", header="Found.")
    text = path.read_text()
    assert text.count("node(") == len(found.parts)
    assert text.count("# scrubbing it alone costs") == len(found.parts)
    h = load_hypothesis(f"{path}::found")
    assert h.nodes == found.hypothesis.nodes and h.output_other == found.hypothesis.output_other
    r = scrub_hypothesis(h, golden, ds, n=200, seed=0)
    assert r.recovered == found.recovered


# ---- the edge-resolved forward ----------------------------------------------------------------


def test_graph_forward_without_removals_is_the_kernel(golden):
    ds = golden_dataset(50, echo_rate=0.5)
    inputs = golden_inputs(ds)
    w = golden.weights
    with torch.no_grad():
        mine = graph.forward(w, inputs.clean, inputs).logit_diff
        logits = kernel.forward(w, inputs.clean, inputs.mask)[:, 5].gather(1, inputs.answers)
    torch.testing.assert_close(mine, logits[:, 0] - logits[:, 1], atol=1e-4, rtol=0)


def test_removing_an_edge_matches_the_construction(golden):
    """Cutting 0.0@END -> 1.0.v makes 1.0 push the corrupted x1 instead: the logit difference
    drops from 2K to K, or to 0 where the corrupted x1 is the clean s (it is never the clean io).
    Cutting a v edge at a position 1.0 does not read (IO) changes nothing."""
    ds = golden_dataset(50, echo_rate=0.5)
    inputs = golden_inputs(ds)
    w = golden.weights
    bad = graph.forward(w, inputs.corrupted, inputs).outputs
    cut = graph.Removal.of([Edge(Site(0, 0, "END"), (1, 0), "v")], inputs, 2, 4)
    elsewhere = graph.Removal.of([Edge(Site(0, 0, "IO"), (1, 0), "v")], inputs, 2, 4)
    with torch.no_grad():
        out = graph.forward(w, inputs.clean, inputs, removed=cut, corrupted=bad).logit_diff
        same = graph.forward(w, inputs.clean, inputs, removed=elsewhere, corrupted=bad).logit_diff
    want = 1.0 - (inputs.corrupted[:, 1] == inputs.clean[:, 2]).float()
    assert 0 < int((want == 0).sum()) < len(want)  # both cases occur
    torch.testing.assert_close(out, want, atol=2e-2, rtol=0)
    torch.testing.assert_close(same, torch.full_like(same, 2.0), atol=2e-2, rtol=0)


# ---- the committed toy-ioi hypothesis through the command line --------------------------------

FOUND = Path(__file__).resolve().parents[1] / "hypotheses" / "found_toy_ioi.py"


def test_scrub_run_reproduces_the_found_files_own_figure(capsys):
    """``scrub run`` takes the file as written and gets the recovered fraction in its header."""
    claimed = re.search(r"recovered (\d\.\d{3}) \+- (\d\.\d{3})", FOUND.read_text())
    assert main(["run", f"{FOUND}::found", "--model", "toy-ioi", "--n", "200", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    measured = re.search(r"recovered\s+(-?\d+\.\d+) \+- (\d+\.\d+)", out)
    assert float(measured[1]) == pytest.approx(float(claimed[1]), abs=5e-4)
    assert float(measured[2]) == pytest.approx(float(claimed[2]), abs=5e-4)


def test_scrub_check_accepts_the_found_file():
    claims = FOUND.parent / "test_found_toy_ioi_claims.py"
    done = subprocess.run(
        [sys.executable, "-m", "scrub.cli", "check", str(claims), "-q", "-p", "no:randomly"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(FOUND.parents[1])},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--out", "found.txt"], "ending in .py"),
        (["--out", "f.py", "--seed", "-1"], "--seed -1 is negative"),
        (["--out", "f.py", "--n", "0"], "--n 0 must be at least 1"),
        (["--out", "f.py", "--beam", "0"], "--beam 0 must be at least 1"),
        (["--out", "f.py", "--n", "300", "--pool", "200"], "--pool 200 is smaller than --n 300"),
        (["--out", "f.py", "--target", "1.5"], "not between 0 and 1"),
        (["--out", "f.py", "--other", "same"], "no feature column 'same'"),
        (["--out", "f.py", "--dataset", "induction"], "unknown --dataset"),
        (["--out", "f.py", "--corrupt", "nope"], "nope"),
        (["--out", "f.py", "--corrupt", "abc", "--corrupt", "nope"], "nope"),
        (["--out", "f.py", "--dataset", "p.jsonl"], "needs --corrupted FILE"),
        (["--out", "f.py", "--corrupted", "c.jsonl"], "goes with --dataset FILE"),
        (
            ["--out", "f.py", "--dataset", "p.jsonl", "--corrupted", "c.jsonl", "--corrupt", "abc"],
            "not a prompt file",
        ),
        (["--out", "f.py", "--dataset", "p.jsonl", "--corrupted", "c.jsonl"], "does not exist"),
    ],
)
def test_discover_bad_input_exits_2(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(["discover", *args]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


class _Table(Search):
    """A search over a made-up miss table: parts are embeddings A, B, C fed to the output."""

    MISS = {"": 1.0, "A": 0.5, "B": 0.6, "C": 0.9, "AB": 0.5, "AC": 0.5, "BC": 0.05}

    def __init__(self, beam: int = 1, miss: dict | None = None):
        if miss is not None:
            self.MISS = miss
        self.s = Settings(target=0.9, beam=beam, min_gain=0.01)
        self.evaluations, self.passes, self.verified, self.seen = 0, 0, [], set()
        self.closest = (float("inf"), ())

    def candidates(self, parts, parent):
        have = {p.component for p in parts}
        return [Part(c, Embed(c), OUTPUT, ("resid",)) for c in "ABC" if Embed(c) not in have]

    def score_all(self, candidates):
        keys = ["".join(sorted(p.name for p in parts)) for parts in candidates]
        self.passes += not self.seen.issuperset(keys)  # memoised, as Search's is
        self.seen.update(keys)
        return [(1.0 - self.MISS[k], 0.0, self.MISS[k]) for k in keys]

    def verify(self, parts):
        self.verified.append(tuple(p.name for p in parts))


def test_beam_search_escapes_the_greedy_dead_end():
    """Greedy takes A (the best first step), after which nothing helps; a beam of 2 also keeps
    B, which with C reaches the target. Each step is one batched pass; the answer is verified."""
    assert _Table(beam=1).build_up((), None) is None
    search = _Table(beam=2)
    found = search.build_up((), None)
    assert [p.name for p in found] == ["B", "C"]
    assert search.verified == [("B", "C")]
    assert search.passes == 3  # the start, then one pass per step


def test_prune_down_finds_parts_that_only_work_together():
    """No child helps alone, so building up fails; all three together are good, and dropping
    C (the lowest miss among the good removals) leaves A and B, from which nothing can go."""
    together = dict.fromkeys(["", "A", "B", "C", "AC", "BC"], 1.0) | {"AB": 0.05, "ABC": 0.04}
    search = _Table(miss=together)
    assert search.build_up((), None) is None
    found = search.grow((), None)
    assert [p.name for p in found] == ["A", "B"]
    assert search.verified[-1] == ("A", "B")
    assert _Table(miss=together | {"ABC": 0.5}).grow((), None) is None  # not even all at once


def test_grouped_query_models_explain_only_queries():
    """With key/value groups a single head's k and v are its group's (the engine refuses one
    head there), so a head node's candidates feed q only: heads and the embedding at its own
    position, and k/v receivers are never scanned."""
    from types import SimpleNamespace

    from scrub.discover import search as S
    from scrub.scrubbing.hypothesis import Head

    table = {("q", (1, 0), "END"): {Site(0, 0, "END"): 0.5}}
    asked: list = []
    model = SimpleNamespace(info=SimpleNamespace(n_heads=4, n_kv_heads=2))
    ds = SimpleNamespace(positions={"S": [1, 1], "END": [3, 3]})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(S, "receiver_scores", _fake_scores(table, asked))
        search = Search(model, ds, None, Settings(), None)
        named = Part("1.0@END", Head(1, 0, "END"), OUTPUT, (LOGITS,), expanded=True)
        found = search.candidates((named,), named)
    assert {(p.component, p.slots) for p in found} == {
        (Head(0, 0, "END"), ("q",)),
        (Embed("END"), ("q",)),
    }
    assert {a[0] for a in asked} == {"q"}


def test_prune_down_never_gives_one_slot_a_head_twice():
    """All at once must not hold 0.1@S and 0.1@all in one slot (the engine refuses a component
    claimed twice): the better-ranked one (first) stays."""
    from scrub.scrubbing.hypothesis import Head

    class Spread(_Table):
        def candidates(self, parts, parent):
            return [
                Part("X", Head(0, 1, "S"), OUTPUT, ("k",)),
                Part("Y", Head(0, 1, None), OUTPUT, ("k",)),
                Part("Z", Embed("S"), OUTPUT, ("k",)),
            ]

    miss = dict.fromkeys(["", "X", "Y", "Z"], 1.0) | {"XZ": 0.05}
    assert [p.name for p in Spread(miss=miss).prune_down((), None)] == ["X", "Z"]


def test_a_search_that_misses_the_target_returns_the_closest_hypothesis_it_scrubbed():
    """Nothing reaches miss <= 0.1: building up goes A (0.6), AB (0.4), then ABC gains nothing;
    all at once (ABC, 0.5) is not good either. run() stops at the output with the lowest-miss
    set it scrubbed, AB, verified."""
    short = {"": 1.0, "A": 0.6, "B": 0.7, "C": 0.9, "AB": 0.4, "AC": 0.6, "BC": 0.8, "ABC": 0.5}
    search = _Table(miss=short)
    assert [p.name for p in search.run()] == ["A", "B"]
    assert search.verified[-1] == ("A", "B")


def test_mixed_inputs_take_row_i_from_corruption_i_mod_k():
    from scrub.data import corrupt, make_ioi
    from scrub.data.tokenizer import load_tokenizer
    from scrub.discover.data import mixed_inputs

    clean = make_ioi(7, seed=0, tokenizer=load_tokenizer())
    sets = [corrupt(clean, [c], seed=0) for c in ("abc", "swap-order", "flip-io")]
    mixed = mixed_inputs(clean, sets)
    for i in range(7):
        assert torch.equal(mixed.corrupted[i], sets[i % 3].tokens[i])
        assert torch.equal(mixed.clean[i], clean.tokens[i])
    assert torch.equal(mixed_inputs(clean, sets[:1]).corrupted, sets[0].tokens)


def test_discover_on_prompt_files_writes_a_file_scrub_run_reproduces(tmp_path, capsys):
    """--dataset FILE --corrupted FILE: the pool is the file's rows, the header says how to rerun
    on them, and `scrub run` gives the recovered fraction the search reported."""
    clean, bad, out = tmp_path / "p.jsonl", tmp_path / "c.jsonl", tmp_path / "found.py"
    assert main(["dataset", "ioi", "--n", "80", "--seed", "1", "--out", str(clean)]) == 0
    args = ["--n", "80", "--seed", "1", "--corrupt", "abc", "--out", str(bad)]
    assert main(["dataset", "ioi", *args]) == 0
    capsys.readouterr()
    args = ["--dataset", str(clean), "--corrupted", str(bad), "--n", "60", "--n-patch", "40"]
    args += ["--beam", "1", "--shortlist", "4"]  # a small search: this tests the plumbing
    many = [*args[:4], "--n", "90", "--target", "0.01"]  # the cap only: a search of one step
    assert main(["discover", *many, "--out", str(out), "--no-progress"]) == 0
    assert "has 80 rows: all are references" in capsys.readouterr().err
    assert main(["discover", *args, "--out", str(out), "--no-progress"]) == 0
    said = capsys.readouterr().out
    recovered = re.search(r"recovered (-?\d\.\d{3}) \+- ", said).group(1)
    text = out.read_text()
    rerun = re.search(r"`(scrub run [^`]*)`", " ".join(text.split())).group(1)
    assert f"--dataset {clean} --n 60" in rerun
    assert main(rerun.split()[1:]) == 0
    assert re.search(rf"recovered\s+{recovered}", capsys.readouterr().out)
    again = tmp_path / "again.py"
    assert main(["discover", *args, "--out", str(again), "--no-progress"]) == 0
    assert again.read_text() == text.replace(str(out), str(again))  # same seed, same file


def test_rank_of_counts_strictly_higher_scores():
    from scrub.discover.compare import Ranking

    r = Ranking("m", {"a": 3.0, "b": 2.0, "c": 2.0, "d": 1.0}, {}, 0.0)
    assert [r.rank_of(k) for k in "abcd"] == [1, 2, 2, 4]


# ---- the baselines on the golden model --------------------------------------------------------


def test_eap_equals_patching_where_the_model_is_linear(golden):
    """On the golden model a name reaches the logits linearly (hard attention keyed on position,
    LayerNorm a fixed scale), so the gradient estimate of an edge is its patching effect."""
    from scrub.discover import baselines

    ds = golden_dataset(100, echo_rate=0.5, seed=3)
    inputs = golden_inputs(ds)
    space = Space(2, 4, tuple(ds.positions))
    _, edges = baselines.eap(golden, inputs, space)
    w = golden.weights
    bad = baselines.corrupted_outputs(w, inputs)
    with torch.no_grad():
        clean = graph.forward(w, inputs.clean, inputs).logit_diff
        for e in [
            Edge(Site(0, 0, "END"), (1, 0), "v"),
            Edge(Site(0, 1, "END"), (1, 1), "v"),
            Edge(Site(0, 2, "END"), None, LOGITS),
            Edge(Site(1, 0, "END"), None, LOGITS),
        ]:
            cut = graph.Removal.of([e], inputs, 2, 4)
            patched = graph.forward(w, inputs.clean, inputs, removed=cut, corrupted=bad).logit_diff
            effect = abs(float((patched - clean).mean()))
            assert effect > 0.1
            assert edges[e] == pytest.approx(effect, abs=2e-2), str(e)
    # A head that writes nothing has no edge worth anything.
    assert edges[Edge(Site(1, 2, "END"), None, LOGITS)] == pytest.approx(0.0, abs=1e-4)


def test_acdc_keeps_exactly_the_edges_that_move_the_metric(golden):
    """Kept (score >= threshold): 1.0 and 1.1 into the logits, the names they read (0.0 -> 1.0.v,
    0.1 -> 1.1.v), and each half of the cancelling pair into the logits (alone, each moves the
    logit difference by C). Nothing else moves it."""
    from scrub.discover import baselines

    ds = golden_dataset(100, echo_rate=0.5, seed=3)
    inputs = golden_inputs(ds)
    space = Space(2, 4, tuple(ds.positions))
    _, edges = baselines.acdc(golden, inputs, space, threshold=0.01)
    kept = {e for e, v in edges.items() if v >= 0.01}
    assert kept == {
        Edge(Site(1, 0, "END"), None, LOGITS),
        Edge(Site(1, 1, "END"), None, LOGITS),
        Edge(Site(0, 0, "END"), (1, 0), "v"),
        Edge(Site(0, 1, "END"), (1, 1), "v"),
        Edge(Site(0, 2, "END"), None, LOGITS),
        Edge(Site(0, 3, "END"), None, LOGITS),
    }


# ---- heads at all positions -------------------------------------------------------------------


def _fake_scores(table: dict, asked: list):
    """A stand-in for path patching: ``table[(slot, receiver, position)]``, calls recorded."""

    def receiver_scores(model, inputs, receiver, positions):
        (p,) = positions
        asked.append((*receiver, p))
        return table.get((*receiver, p), {})

    return receiver_scores


def test_all_position_heads_are_candidates_for_k_and_v_only(monkeypatch):
    """Positions S before END. Into 1.0@END's k: 0.0 scores 0.2 at S and 0.4 at all positions
    (it spreads: a candidate); 0.1 scores 0.3 at S and 0.305 at all (within ``min_spread`` of
    one position: not one). Its q and the logits are never scanned at all positions; a node at
    all positions queries everywhere, so its q is."""
    from types import SimpleNamespace

    from scrub.discover import search as S
    from scrub.scrubbing.hypothesis import Head

    k = ("k", (1, 0))
    table = {
        (LOGITS, None, "END"): {Site(1, 0, "END"): 0.9},
        ("q", (1, 0), "END"): {Site(0, 0, "END"): 0.5},
        (*k, "S"): {Site(0, 0, "S"): 0.2, Site(0, 1, "S"): 0.3},
        (*k, "END"): {Site(0, 0, "END"): 0.1, Site(0, 1, "END"): 0.0},
        (*k, None): {Site(0, 0, None): 0.4, Site(0, 1, None): 0.305},
        ("q", (1, 0), None): {Site(0, 2, None): 0.7},
    }
    asked: list = []
    monkeypatch.setattr(S, "receiver_scores", _fake_scores(table, asked))
    ds = SimpleNamespace(positions={"S": [1, 1], "END": [3, 3]})
    model = SimpleNamespace(info=SimpleNamespace(n_heads=4, n_kv_heads=4))
    search = Search(model, ds, None, Settings(shortlist=20, min_spread=0.01), None)

    def heads(parts):
        return {(p.component, p.slots) for p in parts if isinstance(p.component, Head)}

    assert heads(search.candidates((), None)) == {(Head(1, 0, "END"), (LOGITS,))}
    assert asked == [(LOGITS, None, "END")]

    named = Part("1.0@END", Head(1, 0, "END"), OUTPUT, (LOGITS,), expanded=True)
    found = search.candidates((named,), named)
    assert heads(found) == {
        (Head(0, 0, "END"), ("q",)),
        (Head(0, 0, "S"), ("k",)),
        (Head(0, 1, "S"), ("k",)),
        (Head(0, 0, "END"), ("k",)),
        (Head(0, 1, "END"), ("k",)),
        (Head(0, 0, None), ("k",)),
    }
    assert ("q", (1, 0), None) not in asked
    assert {a for a in asked if a[2] is None} == {("k", (1, 0), None), ("v", (1, 0), None)}
    spread = next(p for p in found if p.component == Head(0, 0, None))
    assert spread.name == "0.0@all" and spread.parent == "1.0@END"
    # A head already feeding k at S and the same head everywhere would both patch S: the engine
    # rejects that, so neither is offered once the other is there (other slots stay open).
    at_s = next(p for p in found if p.component == Head(0, 0, "S"))
    offered = heads(search.candidates((named, at_s), named))
    assert (Head(0, 0, None), ("k",)) not in offered and (Head(0, 0, "END"), ("k",)) in offered
    offered = heads(search.candidates((named, spread), named))
    assert not {(Head(0, 0, p), ("k",)) for p in ("S", "END")} & offered
    assert (Head(0, 0, "END"), ("q",)) in offered

    everywhere = Part("1.0@all", Head(1, 0, None), OUTPUT, (LOGITS,), expanded=True)
    found = search.candidates((everywhere,), everywhere)
    assert (Head(0, 2, None), ("q",)) in heads(found)
    # Its query reads every position, so an embedding there feeds q too.
    assert (Embed("S"), ("q", "k", "v")) in {(p.component, p.slots) for p in found}


def test_all_position_attribution_equals_the_hooked_reference(tiny_model):
    """receiver_scores at None against the two-pass hook reference, sender by sender: senders at
    every position, the receiver's k input patched at every position. Compared as logit
    differences (a score is 1 - (patched - corrupted) / (clean - corrupted), the kernel's clean
    and corrupted). It differs from every named position's score, so a None silently read as
    one position would fail."""
    from test_patching_path import tiny_inputs

    from scrub.discover.attribution import receiver_scores
    from scrub.patching import Component, Receivers
    from scrub.patching.hooked import reference_caches, reference_path_patch
    from scrub.patching.inputs import run_caches, run_logit_diffs

    inputs = tiny_inputs()
    recv = Receivers("k", ((2, 0),), None)
    caches = reference_caches(tiny_model, inputs)
    with torch.no_grad():
        scores = receiver_scores(tiny_model, inputs, ("k", (2, 0)), [None])
        named = receiver_scores(tiny_model, inputs, ("k", (2, 0)), ["END", "S2", "IO"])
        w = tiny_model.weights
        clean, bad = (float(x.mean()) for x in run_logit_diffs(w, run_caches(w, inputs), inputs))
        want = {
            Site(layer, head, None): float(
                reference_path_patch(
                    tiny_model, inputs, Component("head", layer, head, None), recv, "free", caches
                ).mean()
            )
            for layer in (0, 1)
            for head in range(4)
        }
    assert set(scores) == set(want)
    for site, ld in want.items():
        assert bad + (1.0 - scores[site]) * (clean - bad) == pytest.approx(ld, abs=1e-5), str(site)
    gaps = [
        min(abs(scores[s] - named[Site(s.layer, s.head, p)]) for p in ("END", "S2", "IO"))
        for s in scores
    ]
    assert max(gaps) > 1e-2


def _spread_parts():
    """1.0@END reads 0.0 at every position through v (it reads END: hard attention), 1.1@END
    kept: the golden model's circuit with 0.0 claimed everywhere."""
    from scrub.scrubbing.hypothesis import Head

    return (
        Part("1.0@END", Head(1, 0, "END"), OUTPUT, (LOGITS,), expanded=True),
        Part("0.0@all", Head(0, 0, None), "1.0@END", ("v",)),
        Part("1.1@END", Head(1, 1, "END"), OUTPUT, (LOGITS,)),
    )


def _found(parts, hypothesis, recovered, costs):
    from scrub.discover.search import Found

    return Found(parts, hypothesis, recovered, 0.0, costs, {}, 0, 0)


def test_all_position_node_round_trips_through_the_file(golden, tmp_path):
    from scrub.discover.search import build

    ds = golden_dataset(600, echo_rate=0.5)
    parts = _spread_parts()
    h = build(parts, "found", random)
    with torch.no_grad():
        r = scrub_hypothesis(h, golden, ds, n=200, seed=0)
    # 0.0 carries x1 into 1.0 at END, from the reference row: the construction is exact.
    assert r.recovered == pytest.approx(1.0, abs=0.02)
    found = _found(parts, h, r.recovered, dict.fromkeys((p.name for p in parts), 0.5))
    path = tmp_path / "found.py"
    write_hypothesis(found, path, variable="found", title="found", header="Found.")
    assert 'heads("0.0", at=None)' in path.read_text()
    loaded = load_hypothesis(f"{path}::found")
    assert loaded.nodes == h.nodes
    with torch.no_grad():
        assert scrub_hypothesis(loaded, golden, ds, n=200, seed=0).recovered == r.recovered


def test_an_all_position_node_claims_its_head_at_every_named_position():
    """0.0@all is a member: 0.0 at IO, S, ECHO and END all score as members (above 1), and so
    does its edge into 1.0.v from each of them; 0.1 (not found) stays below 1."""
    from scrub.discover.search import build

    parts = _spread_parts()
    found = _found(
        parts, build(parts, "found", random), 1.0, {"1.0@END": 2.0, "0.0@all": 1.0, "1.1@END": 2.0}
    )
    space = Space(2, 4, ("IO", "S", "ECHO", "END"))
    sites = site_scores(found, space)
    member = sites[Site(0, 0, "IO")]
    assert member > 1
    assert all(sites[Site(0, 0, p)] == member for p in space.positions)
    assert all(sites[Site(0, 1, p)] < 1 for p in space.positions)
    edges = edge_scores(found, space)
    assert all(edges[Edge(Site(0, 0, p), (1, 0), "v")] == member for p in space.positions)
    assert edges[Edge(Site(0, 0, "END"), (1, 0), "k")] < 1
