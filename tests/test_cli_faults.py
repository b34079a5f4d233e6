"""Bad input and faults through the command line: exit code and the one line each one gets.

``CASES`` is a table of bad inputs and faults (usage, values, output paths, resources,
hypotheses, model directories, stored runs, ``scrub check`` options), each with the exit code and
the words its message must contain. Every case runs in-process through ``scrub.cli.main`` (the
function the ``scrub`` console script calls, so the same exit-code mapping) with model loading
replaced by a tripwire: a case that would load a model before failing exits 1 instead of 2, so
the table also checks that the cheap checks come first. The cases marked ``real`` (at least one
of each class) also run through the installed ``scrub`` console script in a subprocess, as do
the signal tests: SIGINT and SIGKILL during ``scrub run --json`` and ``scrub check`` (the
result is complete or absent, SIGINT exits 130, the run's status is ``interrupted``).
A subprocess costs about 0.3 s, or 2-3 s when it imports torch, hence the subset.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scrub.cli import main

REPO = Path(__file__).resolve().parents[1]
TOY = REPO / "scrub" / "models" / "toy_ioi"
H = f"{REPO / 'hypotheses' / 'toy_ioi.py'}::name_mover"

HYPOTHESES = """
from scrub import OUTPUT, Hypothesis, heads, keep, mlps, node
cyc = Hypothesis("cyc", [node("a", heads("1.2", at="END"), feeds=["b.q", OUTPUT], rule=keep),
                         node("b", heads("2.0", at="END"), feeds="a.q", rule=keep)])
missing = Hypothesis("missing", [node("a", heads("1.2", at="END"), feeds="nope.q", rule=keep)])
dup = Hypothesis("dup", [node("a", heads("1.2", at="END"), feeds=OUTPUT, rule=keep),
                         node("a", heads("2.0", at="END"), feeds=OUTPUT, rule=keep)])
mlp = Hypothesis("mlp", [node("m", mlps("2"), feeds=OUTPUT, rule=keep)])
"""

CLAIMS = """
import time
import pytest
pytestmark = pytest.mark.scrub_claim(model="toy-ioi", n=20, pool=200, seed=0)

def test_first(scrub):
    scrub.run("{h}")

def test_waits_for_the_signal():
    time.sleep(120)
"""


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory of broken things, shared by every case."""
    d = tmp_path_factory.mktemp("faults")
    (d / "h.py").write_text(HYPOTHESES)
    (d / "broken.py").write_text("raise RuntimeError('boom')\n")
    (d / "nothing.py").write_text("x = 1\n")
    (d / "afile").write_text("not a directory\n")

    def model(name: str) -> Path:
        shutil.copytree(TOY, d / name, ignore=shutil.ignore_patterns("*.md", "circuit.json"))
        return d / name

    model("badcfg").joinpath("config.json").write_text('{"model_type": ')
    cfg = json.loads((TOY / "config.json").read_text())
    model("unknown_type").joinpath("config.json").write_text(
        json.dumps({**cfg, "model_type": "gpt9000"})
    )
    model("no_type").joinpath("config.json").write_text(
        json.dumps({k: v for k, v in cfg.items() if k != "model_type"})
    )
    weights = (TOY / "model.safetensors").read_bytes()
    model("truncated").joinpath("model.safetensors").write_bytes(weights[: len(weights) // 2])
    model("garbage").joinpath("model.safetensors").write_bytes(os.urandom(4096))
    model("padded").joinpath("model.safetensors").write_bytes(weights + b"\0" * 16)
    no_tokenizer = model("no_tokenizer")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (no_tokenizer / f).unlink()
    model("bad_tokenizer").joinpath("tokenizer.json").write_text("{")
    (model("no_weights") / "model.safetensors").unlink()
    (model("no_config") / "config.json").unlink()

    # Stored runs: a finished one with a truncated result and a leftover temp file of a writer
    # killed mid-write, one whose run.json is corrupt, one still "running" by a dead process.
    from test_runner_store import _result

    from scrub.runner.store import RunDir, RunStatus, record_of

    runs = d / "runs"
    good = RunDir.create(runs, {}, name="20240101-000000-aaaaaa")
    good.write_record(record_of(_result("h"), key="ok", outcome="pass"))
    good.write_record(record_of(_result("h"), key="cut", outcome="pass"))
    cut = good.results_dir / "cut.json"
    cut.write_text(cut.read_text()[:100])
    (good.results_dir / f".x.json.{_dead_pid()}.abcd1234.tmp").write_text("")
    good.finish(RunStatus.FINISHED)
    bad = RunDir.create(runs, {}, name="20240102-000000-bbbbbb")
    (bad.path / "run.json").write_text('{"run": ')
    killed = RunDir.create(runs, {"pid": _dead_pid()}, name="20240103-000000-cccccc")
    killed.write_record(record_of(_result("h"), key="k", outcome="pass"))
    (d / "noruns").mkdir()
    return d


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    argv: str  # split on spaces after {d} (the fixture dir) and {h} are filled in
    code: int
    words: tuple[str, ...]
    real: bool = False  # also through the console script in a subprocess


def case(id, argv, code, *words, real=False) -> Case:
    return Case(id, argv, code, words, real)


CASES = [
    # -- usage errors (typer's bundled click classes) --
    case("seed-not-int", "run {h} --seed abc", 2, "--seed", "integer", real=True),
    case("n-not-int", "run {h} --n ten", 2, "--n", "integer"),
    case("missing-out", "dataset ioi --n 3", 2, "Missing option", "--out", real=True),
    case("unknown-command", "bogus", 2, "No such command", "bogus", real=True),
    case("unknown-option", "run {h} --frob", 2, "No such option", "--frob"),
    case("missing-argument", "run", 2, "Missing argument"),
    case("missing-draw-out", "draw {h}", 2, "Missing option", "-o"),
    case("extra-argument", "runs extra", 2, "unexpected extra argument"),
    # -- values --
    case("n-negative", "run {h} --n -3", 2, "--n -3", "at least 1", real=True),
    case("n-zero", "run {h} --n 0", 2, "--n 0", "at least 1"),
    case("seed-negative", "run {h} --seed -1", 2, "--seed -1", "negative"),
    case("pool-below-n", "run {h} --n 10 --pool 5", 2, "--pool 5", "smaller than --n 10"),
    case("memory-inf", "run {h} --max-memory infGB", 2, "--max-memory", "finite", real=True),
    case("memory-negative", "run {h} --max-memory -1GB", 2, "--max-memory", "positive"),
    case("memory-nan", "run {h} --max-memory nanGB", 2, "--max-memory", "finite"),
    case("memory-words", "run {h} --max-memory lots", 2, "--max-memory 'lots'"),
    case("unknown-metric", "run {h} --metric bleu", 2, "unknown metric 'bleu'"),
    case("dataset-n-zero", "dataset ioi --n 0 --out {d}/x.csv", 2, "--n 0", "at least 1"),
    case("dataset-seed", "dataset ioi --seed -2 --out {d}/x.csv", 2, "--seed -2", "negative"),
    case("unknown-corruption", "dataset ioi --corrupt flipio --out {d}/x.csv", 2, "flipio"),
    # -- resources: refused up front, with the estimate --
    case(
        "dataset-huge",
        "dataset ioi --n 1000000000 --out {d}/x.csv",
        2,
        "GB of memory",
        "available",
        real=True,
    ),  # fmt: skip
    case("pool-huge", "run {h} --pool 1000000000", 2, "--pool 1000000000", "GB of memory"),
    case("memory-huge", "run {h} --max-memory 100000TB", 2, "--max-memory", "GB of memory"),
    # -- output paths (checked before the hypothesis, the model or any computation) --
    case("out-directory", "dataset ioi --n 3 --out {d}", 2, "is a directory"),
    case("out-under-file", "dataset ioi --n 3 --out {d}/afile/x.csv", 2, "afile is a file"),
    case("out-proc", "dataset ioi --n 3 --out /proc/scrub.csv", 2, "cannot write in /proc"),
    case("out-suffix", "dataset ioi --n 3 --out {d}/x.txt", 2, ".txt", ".jsonl"),
    case("json-suffix", "run {h} --json {d}/out.txt", 2, "--json", ".json"),
    case("json-directory", "run {h} --json {d}", 2, "--json", "is a directory"),
    case("json-proc", "run {h} --json /proc/out.json", 2, "cannot write in /proc", real=True),
    case("draw-suffix", "draw {h} -o {d}/g.txt", 2, ".txt", ".svg"),
    case("draw-under-file", "draw {h} -o {d}/afile/g.svg", 2, "afile is a file", real=True),
    # -- hypotheses --
    case("draw-cycle", "draw {d}/h.py::cyc -o {d}/g.svg", 2, "cycle", "a -> b -> a", real=True),
    case("draw-missing-parent", "draw {d}/h.py::missing -o {d}/g.svg", 2, "'nope'", "not a node"),
    case("draw-duplicate", "draw {d}/h.py::dup -o {d}/g.svg", 2, "'a'", "used twice"),
    case("run-cycle", "run {d}/h.py::cyc", 2, "cycle"),
    case("import-error", "run {d}/broken.py::x", 2, "does not import", "python {d}/broken.py"),
    case("no-hypothesis", "run {d}/nothing.py::x", 2, "defines no hypothesis"),
    case("no-file", "run {d}/nope.py::x", 2, "does not exist"),
    case("typo", f"run {H}x", 2, "did you mean name_mover"),
    # -- model directories: the file at fault and the fix --
    case("model-unknown", "run {h} --model bogus", 2, "'bogus'", "toy-ioi"),
    case("config-broken", "run {h} --model {d}/badcfg", 2, "config.json", "not valid JSON"),
    case("type-unknown", "run {h} --model {d}/unknown_type", 2, "'gpt9000'", "unknown to"),
    case("type-missing", "run {h} --model {d}/no_type", 2, "config.json has no model_type"),
    case(
        "weights-truncated",
        "run {h} --model {d}/truncated",
        2,
        "model.safetensors",
        "truncated",
        real=True,
    ),  # fmt: skip
    case("weights-garbage", "run {h} --model {d}/garbage", 2, "model.safetensors", "corrupt"),
    case("weights-padded", "run {h} --model {d}/padded", 2, "model.safetensors", "the file has"),
    case("weights-missing", "run {h} --model {d}/no_weights", 2, "has no weights"),
    case("config-missing", "run {h} --model {d}/no_config", 2, "config.json is missing"),
    case("no-tokenizer", "run {h} --model {d}/no_tokenizer", 2, "no tokenizer in"),
    case("tokenizer-broken", "run {h} --model {d}/bad_tokenizer", 2, "tokenizer.json", "JSON"),
    case(
        "dataset-no-tokenizer",
        "dataset ioi --n 3 --tokenizer {d}/no_tokenizer --out {d}/x.csv",
        2,
        "no tokenizer in",
    ),  # fmt: skip
    # -- stored runs: unreadable files named, latest = latest finished --
    case(
        "runs-lists-faults",
        "runs --root {d}/runs",
        0,
        "cut.json is unreadable",
        "run.json is unreadable",
        "killed writer",
        real=True,
    ),  # fmt: skip
    case("compare-names-faults", "compare 20240101 latest --root {d}/runs", 0, "cut.json"),
    case("latest-none-finished", "compare latest latest --root {d}/noruns", 2, "no finished run"),
    case("compare-unknown", "compare nope latest --root {d}/runs", 2, "not a stored run"),
    case("draw-results-missing", "draw {h} -o {d}/g.svg --results nope", 2, "not a stored run"),
    # -- scrub check: its options are usage errors (2), before any claim runs --
    case(
        "check-model-bogus",
        "check {d}/h.py --scrub-model bogus",
        2,
        "--scrub-model 'bogus'",
        real=True,
    ),  # fmt: skip
    case("check-n-zero", "check {d}/h.py --scrub-n 0", 2, "--scrub-n 0"),
    case("check-out-file", "check {d}/h.py --scrub-out {d}/afile", 2, "is a file"),
]


def _argv(c: Case, d: Path) -> list[str]:
    return c.argv.format(d=d, h=H).split()


@pytest.fixture
def no_model_loads(monkeypatch: pytest.MonkeyPatch):
    """A model load is a bug in these cases: it would mean a check came too late."""
    import scrub.models
    import scrub.models.load

    def tripwire(*args, **kwargs):
        raise RuntimeError("a model was loaded before the bad input was found")

    monkeypatch.setattr(scrub.models, "load_model", tripwire)
    monkeypatch.setattr(scrub.models.load, "load_model", tripwire)


def test_the_table_is_large_and_covers_every_class():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)
    assert sum(c.real for c in CASES) >= 10


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_fault_in_process(c: Case, fx: Path, capsys, no_model_loads, monkeypatch):
    monkeypatch.chdir(fx)
    code = main(_argv(c, fx))
    err = capsys.readouterr().err
    assert code == c.code, err
    for word in c.words:
        assert word.format(d=fx) in err
    if c.code == 2:  # one line (pytest's usage errors, from scrub check, are upper case)
        (line,) = err.strip().splitlines()
        assert line.lower().startswith("error: ")
    assert not (fx / "x.csv").exists() and not (fx / "g.svg").exists()


def scrub_cmd() -> list[str]:
    """The installed console script beside this Python, else the module."""
    exe = Path(sys.executable).with_name("scrub")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "scrub.cli"]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "tests")])
    env.pop("SCRUB_DEBUG", None)
    env.update(extra)
    return env


REAL = [c for c in CASES if c.real]


@pytest.mark.parametrize("c", REAL, ids=[c.id for c in REAL])
def test_fault_through_console_script(c: Case, fx: Path):
    p = subprocess.run(
        [*scrub_cmd(), *_argv(c, fx)], cwd=fx, env=_env(), capture_output=True, text=True
    )
    assert p.returncode == c.code, p.stderr
    for word in c.words:
        assert word.format(d=fx) in p.stderr
    if c.code == 2:
        (line,) = p.stderr.strip().splitlines()
        assert line.lower().startswith("error: ")


def test_a_bug_exits_1_with_one_line_and_a_traceback_only_on_request(fx: Path, capsys, monkeypatch):
    import scrub.runner.store

    def broken(root):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(scrub.runner.store, "list_runs", broken)
    monkeypatch.delenv("SCRUB_DEBUG", raising=False)
    assert main(["runs", "--root", str(fx / "runs")]) == 1
    err = capsys.readouterr().err
    assert "internal error (ZeroDivisionError: boom)" in err and "--debug" in err
    assert "Traceback" not in err and err.count("\n") == 1
    assert main(["--debug", "runs", "--root", str(fx / "runs")]) == 1
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv("SCRUB_DEBUG", "1")
    assert main(["runs", "--root", str(fx / "runs")]) == 1
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [[], ["dataset"]], ids=["scrub", "scrub-dataset"])
def test_no_command_prints_the_help_and_exits_2(argv, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "Usage: scrub" in captured.out and captured.err == ""


def test_mlp_node_on_an_attention_only_model_is_refused(fx: Path, capsys):
    """toy-ioi's MLPs are exactly zero: scrubbing one would report a meaningless 0 +- 0."""
    assert main(["run", f"{fx}/h.py::mlp", "--n", "5", "--pool", "50"]) == 2
    err = capsys.readouterr().err
    assert "mlp2" in err and "exactly zero" in err and "attention-only" in err


def test_runs_shows_status_and_latest_skips_unfinished(fx: Path, capsys):
    assert main(["runs", "--root", str(fx / "runs")]) == 0
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()}
    assert "finished" in lines["20240101-000000-aaaaaa"]
    assert "unreadable" in lines["20240102-000000-bbbbbb"]
    assert "killed" in lines["20240103-000000-cccccc"]  # "running", but its process is gone
    from scrub.runner.store import resolve_run

    assert resolve_run("latest", fx / "runs").path.name == "20240101-000000-aaaaaa"


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_files_get_the_umask_mode(tmp_path: Path, umask: int):
    from scrub.atomic import atomic_path

    old = os.umask(umask)
    try:
        with atomic_path(tmp_path / "x.json") as tmp:
            tmp.write_text("{}")
    finally:
        os.umask(old)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_stale_temp_file_is_removed_by_the_next_write(tmp_path: Path):
    from scrub.atomic import atomic_path, stale_temp_files

    stale = tmp_path / f".x.json.{_dead_pid()}.abcd1234.tmp"
    stale.write_text("half")
    assert stale_temp_files(tmp_path) == [stale]
    with atomic_path(tmp_path / "x.json") as tmp:
        tmp.write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


# -- signals through the console script ---------------------------------------------------------


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"exited early ({proc.returncode}): {proc.stderr.read()}"
        assert time.monotonic() < deadline, "timed out waiting for the command to get going"
        time.sleep(0.1)


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [*scrub_cmd(), *args], cwd=cwd, env=_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_signal_during_scrub_run_json_leaves_no_file(tmp_path: Path, sig: signal.Signals):
    out = tmp_path / "out.json"
    # GPT-2-small-sized random weights: building them and scrubbing take well over 3 s even on a
    # fast machine (toy-ioi finishes in about that), so the signal lands mid-run.
    proc = _start(
        ["run", H, "--model", "gpt2-small-random", "--n", "200", "--json", str(out)], tmp_path
    )
    started = time.monotonic()
    # Past the interpreter's start (scrub's main catches the interrupt from there on).
    _wait_for(lambda: time.monotonic() - started > 3.0, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130, err
        assert err.strip().splitlines()[-1].startswith("error: interrupted")
    else:
        assert proc.returncode == -signal.SIGKILL
    assert not out.exists()  # complete or absent: it was interrupted before the write
    assert [p.name for p in tmp_path.iterdir()] == []  # no temp file either


def _claims(tmp_path: Path) -> Path:
    (tmp_path / "test_claims.py").write_text(CLAIMS.replace("{h}", H))
    return tmp_path / "test_claims.py"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_signal_during_scrub_check(tmp_path: Path, sig: signal.Signals, capsys):
    claims = _claims(tmp_path)
    stale = tmp_path / "runs" / "old" / f".r.json.{_dead_pid()}.abcd1234.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_text("")
    proc = _start(["check", str(claims), "-p", "no:randomly", "-p", "no:xdist"], tmp_path)
    # The first claim's result and table are stored; the second test sleeps until the signal
    # (or the signal lands while the table's parquet copy is written: also a fair interrupt).
    _wait_for(lambda: any((tmp_path / "runs").glob("*/results.csv")), proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    (run,) = [p for p in (tmp_path / "runs").iterdir() if (p / "run.json").is_file()]
    meta = json.loads((run / "run.json").read_text())
    records = [json.loads(p.read_text()) for p in (run / "results").glob("*.json")]
    assert [r["hypothesis"] for r in records] == ["name mover"]  # complete, readable
    assert not stale.exists()  # the session removed the temp file a killed writer left
    if sig == signal.SIGINT:
        assert proc.returncode == 130, err
        assert err.strip().splitlines()[-1].startswith("error: interrupted")
        assert meta["status"] == "interrupted" and meta["ended"]
        expected = "interrupted"
    else:
        assert proc.returncode == -signal.SIGKILL
        assert meta["status"] == "running" and meta["ended"] is None
        expected = "killed"
    assert main(["runs", "--root", str(tmp_path / "runs")]) == 0
    assert expected in capsys.readouterr().out
    assert main(["compare", "latest", "latest", "--root", str(tmp_path / "runs")]) == 2
    assert "no finished run" in capsys.readouterr().err


def test_sigterm_is_an_interrupt_that_cleans_up(tmp_path: Path, capsys):
    """SIGTERM raises inside the command (so ``finally`` blocks run) and exits 143."""
    import threading

    from scrub.atomic import atomic_path
    from scrub.exits import run_guarded

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers can only be installed from the main thread")

    def command():
        with atomic_path(tmp_path / "x.json") as tmp:
            tmp.write_text("{")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this ends

    assert run_guarded(command, debug=False) == 143
    assert capsys.readouterr().err.startswith("error: terminated (SIGTERM)")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("text", "value"),
    [("2GB", 2 * 1024**3), ("500MB", 500 * 1024**2), ("1.5gb", 3 * 1024**3 // 2), ("4096", 4096)],
)
def test_memory_sizes_that_are_fine_parse(text: str, value: int):
    from scrub.arguments import parse_bytes

    assert parse_bytes(text) == value
