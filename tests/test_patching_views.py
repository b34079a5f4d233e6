"""Patching outputs a reader can trust: warnings, titles, legends, activation scans from the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from test_patching_cli import needs_toy, run_cli

from scrub.patching.results import PatchResult, PatchSettings, Score
from scrub.patching.views import heatmap_html, heatmap_png


def _result(clean: float, corrupted: float, gap_se: float = 0.01) -> PatchResult:
    settings = PatchSettings(
        "path", "toy-ioi", "heads", "END", "logits", None, "free", "clean=1,corrupted=0", 50,
        corruption="flip-io", seed=3,
    )  # fmt: skip
    scores = tuple(
        Score("head", layer, head, "END", v, (v - corrupted) / (clean - corrupted), 0.01)
        for layer, head, v in [(0, 0, clean), (0, 1, corrupted), (1, 0, (clean + corrupted) / 2)]
    )
    return PatchResult(settings, clean, corrupted, scores, gap_se)


def test_warnings_for_inverted_and_close_runs_and_none_for_a_clear_gap():
    assert _result(3.0, 0.5).warnings() == ()
    inverted = _result(0.5, 3.0).warnings()
    assert len(inverted) == 1 and "not below the clean one" in inverted[0]
    noisy = _result(1.0, 0.98, gap_se=0.05).warnings()
    assert any("less than 2 SE" in w for w in noisy)
    close = _result(5.0, 4.8, gap_se=0.01).warnings()
    assert any("within 10%" in w for w in close)


def test_title_and_legend_name_the_run_and_the_direction():
    page = heatmap_html(_result(3.0, 0.5))
    assert "toy-ioi, corruption flip-io, n=50, seed 3" in page
    assert "here it lowers it" in page and "warning" not in page
    inverted = heatmap_html(_result(0.5, 3.0))
    assert "here it raises it" in inverted and 'class="warn"' in inverted
    assert heatmap_png(_result(0.5, 3.0))[:4] == b"\x89PNG"


def test_json_round_trip_keeps_scores_and_gap():
    r = _result(3.0, 0.5)
    back = PatchResult.from_json(json.loads(json.dumps(r.to_json())))
    assert back.scores == r.scores and back.settings == r.settings and back.gap_se == r.gap_se


@needs_toy
def test_activation_experiment_from_the_cli_matches_the_api_and_is_stored_in_a_run(tmp_path):
    from scrub.data import corrupt, make_ioi
    from scrub.models import load_model
    from scrub.patching import PatchInputs, activation_scan
    from scrub.runner.store import RunDir

    run = RunDir.create(tmp_path, {}, name="r")
    out = tmp_path / "a.json"
    argv = ["--experiment", "activation", "--senders", "heads", "--positions", "END"]
    assert run_cli(*argv, "--n", "8", "--seed", "1", "--corrupt", "flip-io",
                   "--json", str(out), "--run", str(run.path), "--no-progress") == 0  # fmt: skip
    doc = json.loads(out.read_text())
    assert doc["settings"]["experiment"] == "activation" and doc["settings"]["seed"] == 1
    stored = list((run.path / "patching").glob("*.json"))
    assert len(stored) == 1 and json.loads(stored[0].read_text()) == doc
    model = load_model("toy-ioi")
    clean = make_ioi(8, seed=1, tokenizer=model.tokenizer)
    inputs = PatchInputs.from_promptsets(clean, corrupt(clean, ["flip-io"], seed=1))
    want = activation_scan(model, inputs, "head", position="END")
    got = [s["logit_diff"] for s in doc["scores"]]
    assert got == pytest.approx([s.logit_diff for s in want.scores], abs=1e-6)
    assert not any(math.isnan(x) for x in got)


@pytest.mark.parametrize(
    "argv",
    [
        ["--experiment", "causal"],
        ["--experiment", "activation", "--senders", "0.1"],
        ["--experiment", "activation", "--receivers", "q:3.1"],
    ],
)
def test_bad_activation_options_exit_2(tmp_path: Path, argv: list[str]) -> None:
    assert run_cli("--model", "no-such-model", *argv, "--png", str(tmp_path / "p.png")) == 2
    assert not any(tmp_path.iterdir())
