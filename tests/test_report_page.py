"""``scrub report``: one self-contained page per run, checked as text and in a real browser.

The browser test loads the page in headless Chromium (Debian's ``chromium``), fails on any console
message, and checks a screenshot: each section's card has a known left-edge colour, and inside
the results card the PASS badges' green, inside the hypotheses card the name mover's fill (a node
graphviz drew) must be painted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_runner_store import _result

from scrub import OUTPUT, Hypothesis, agree, heads, node
from scrub.pages.report import MARKERS, OUTCOME_COLOURS, build_report, write_report
from scrub.patching.results import PatchResult, PatchSettings, Score
from scrub.runner.costs import NodeCosts, write_stored
from scrub.runner.plugin import spec_of
from scrub.runner.store import RunDir, RunStatus, record_of

H = Hypothesis(
    "story",
    [
        node("name movers", heads("3.1", at="END"), feeds=OUTPUT, rule=agree("io")),
        node("s-inhibition", heads("2.0", at="END"), feeds="name movers.q"),
    ],
)
NAME_MOVER_FILL = "#a5d8ff"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def run(tmp_path: Path) -> RunDir:
    """A run with two results (one of H, with stored costs), an inverted patching result."""
    run = RunDir.create(tmp_path / "runs", {"options": {"scrub_n": None}}, name="20250101-x")
    result = _result("story")
    extra = {"hypothesis": "story", "hypothesis_spec": spec_of(H)}
    run.write_record(record_of(result, key="t::story", outcome="pass", extra=extra))
    run.write_record(record_of(_result("other", shift=-0.3), key="t::o", outcome="fail"))
    settings = {"model": "toy", "n": 50, "seed": 0, "metric": "logit-diff", "pool": None}
    settings["dataset"] = None
    costs = {"name movers": 0.61, "s-inhibition": 0.17}
    write_stored(run, H, NodeCosts("story", result.recovered, 0.01, settings, costs, "computed"))
    ps = PatchSettings(
        "path", "toy-ioi", "heads", None, "logits", None, "free", "clean=1,corrupted=0", 20,
        corruption="flip-s", seed=1,
    )  # fmt: skip
    scores = tuple(
        Score("head", layer, h, None, 1.0 + 0.1 * h, (1.1 + 0.1 * h - 2.0) / (1.0 - 2.0), 0.01)
        for layer in range(2)
        for h in range(2)
    )
    patch = PatchResult(ps, 1.0, 2.0, scores, 0.02)  # corrupted above clean: inverted
    (run.path / "patching").mkdir()
    (run.path / "patching" / "p.json").write_text(json.dumps(patch.to_json()))
    run.finish(RunStatus.FINISHED)  # `latest` names the latest finished run
    return run


def test_page_has_every_section_and_fetches_nothing(run: RunDir) -> None:
    page = build_report(run)
    for key in MARKERS:
        assert f'id="{key}"' in page
    assert "story" in page and "other" in page and ">PASS<" in page and ">FAIL<" in page
    rec = run.records()[0]
    lo, hi = (
        rec["recovered"] - 1.96 * rec["recovered_se"],
        rec["recovered"] + 1.96 * rec["recovered_se"],
    )
    assert f"{lo:.3f} to {hi:.3f}" in page  # the 95% CI
    assert "not below the clean one" in page and "here it raises it" in page  # inverted patching
    assert "per-example recovered fraction" in page and "torch" in page  # versions
    # Offline: nothing is loaded from elsewhere (SVG namespaces are names, not fetches).
    for needle in ("src=", "<link", "@import", "url("):
        assert needle not in page
    if shutil.which("dot"):
        assert "scrubbing it alone costs +0.610" in page and "other: random" in page


def _chromium(page: Path, tmp: Path, *flags: str) -> tuple[str, str]:
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--hide-scrollbars",
        "--force-color-profile=srgb",
        *flags,
        page.resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return proc.stdout, proc.stderr


def console_messages(stderr: str) -> list[str]:
    """Console output of the page (Chromium logs every console message and uncaught error)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def _rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.uint8)


def card_rows(image: np.ndarray, colour: str) -> tuple[int, int]:
    """First and last screenshot row of the card whose left edge has ``colour``."""
    edge = image[:, 22:30]  # .card: margin 22px, 8px left border
    rows = np.where((edge == _rgb(colour)).all(-1).all(-1))[0]
    assert rows.size > 0, f"no card edged {colour} in the screenshot"
    return int(rows.min()), int(rows.max())


def pixels(image: np.ndarray, rows: tuple[int, int], colour: str) -> int:
    region = image[rows[0] : rows[1] + 1, 30:]
    return int((region == _rgb(colour)).all(-1).sum())


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz `dot` not installed")
def test_page_renders_in_chromium_without_console_messages(run: RunDir, tmp_path: Path) -> None:
    from PIL import Image

    page = write_report(run, tmp_path / "report.html")
    dom, err = _chromium(page, tmp_path, "--dump-dom")
    assert console_messages(err) == []
    assert 'data-ready="1"' in dom  # the inline script ran to its end
    shot = tmp_path / "shot.png"
    _, err = _chromium(page, tmp_path, f"--screenshot={shot}", "--window-size=1200,2600")
    assert console_messages(err) == []
    image = np.asarray(Image.open(shot).convert("RGB"))
    results = card_rows(image, MARKERS["results"])
    assert results[1] - results[0] > 60  # header, two rows and a note
    assert pixels(image, results, OUTCOME_COLOURS["pass"]) > 50  # a PASS badge was painted
    assert pixels(image, results, OUTCOME_COLOURS["fail"]) > 50
    text = image[results[0] : results[1], 30:] < 100
    assert text.all(-1).sum() > 500  # dark text: the table's cells
    graph = card_rows(image, MARKERS["hypotheses"])
    assert pixels(image, graph, NAME_MOVER_FILL) > 500  # the drawn name-mover node
    assert pixels(image, results, NAME_MOVER_FILL) == 0
    card_rows(image, MARKERS["patching"])


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_the_console_check_catches_a_broken_page(tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    page.write_text("<!doctype html><p>x</p><script>notDefined();</script>")
    _, err = _chromium(page, tmp_path, "--dump-dom")
    assert any("notDefined" in m for m in console_messages(err))


def test_report_command_writes_the_page_and_rejects_bad_input(run: RunDir, tmp_path, capsys):
    from scrub.cli import main

    out = tmp_path / "r.html"
    root = str(run.path.parent)
    assert main(["report", "latest", "--root", root, "-o", str(out)]) == 0
    assert f"report: {out.resolve()}" in capsys.readouterr().out and "<svg" in out.read_text()
    assert main(["report", "nope", "--root", root, "-o", str(tmp_path / "x.html")]) == 2
    assert main(["report", "latest", "--root", root, "-o", str(tmp_path / "x.txt")]) == 2
    assert not (tmp_path / "x.html").exists() and not (tmp_path / "x.txt").exists()
