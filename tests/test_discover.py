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
from scrub.discover.scoring import roc_auc
from scrub.discover.search import Part, Search, Settings, discover, edge_scores, site_scores
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


@pytest.fixture(scope="module")
def golden_found(golden):
    ds = golden_dataset(600, echo_rate=0.5)
    inputs = golden_inputs(golden_dataset(100, echo_rate=0.5, seed=3))
    with torch.no_grad():
        found = discover(golden, ds, inputs, Settings(target=0.9, n=200, other=random))
    return found, ds


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
    assert main(["discover", *args, "--out", str(out), "--no-progress"]) == 0
    said = capsys.readouterr().out
    recovered = re.search(r"recovered (-?\d\.\d{3}) \+- ", said).group(1)
    text = out.read_text()
    rerun = re.search(r"`(scrub run [^`]*)`", " ".join(text.split())).group(1)
    assert f"--dataset {clean} --n 60" in rerun
    assert main(rerun.split()[1:]) == 0
    assert re.search(rf"recovered\s+{recovered}", capsys.readouterr().out)


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
