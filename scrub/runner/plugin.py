"""scrub as a pytest plugin: the ``scrub`` fixture, the ``scrub_claim`` marker, a results table.

Registered through the ``pytest11`` entry point (or ``-p scrub.runner.plugin``). It adds nothing
to a session that records no scrub result: no files, no table.

* ``scrub`` fixture: ``scrub.run(hypothesis_or_ref, n=, seed=, metric=, model=, dataset=)``
  returns a :class:`~scrub.scrubbing.result.ScrubResult` and records it. Models load once per
  session; datasets are cached per (model, kind, size, seed), both in ``config.stash``.
* ``@pytest.mark.scrub_claim(model="toy-ioi", n=200, seed=0, dataset="prompts.jsonl")``: the
  defaults of ``scrub.run`` in that test (``dataset``: a prompt file, relative to the claims
  file). A claim about a model whose weights cannot be had (GPT-2 small offline) skips with the
  loader's reason.
* Options: ``--scrub-model M`` runs only claims about model M (others skip) and is the default
  model of unmarked tests; ``--scrub-n`` and ``--scrub-seed`` override every run's n and seed;
  ``--scrub-out DIR`` is where run directories go (default ``runs/`` in the directory pytest or
  ``scrub check`` was started from, not the rootdir). An unknown ``--scrub-model`` is a usage
  error.
* No network unless asked: a claim about a model whose weights are not on disk (GPT-2 small
  outside the Hugging Face cache) skips with the loader's reason; ``SCRUB_ALLOW_DOWNLOAD=1``
  lets the loader download it.
* The run directory records its status (running, finished, interrupted, failed) and end time,
  see :mod:`scrub.runner.store`; temp files a killed session left under the runs directory are
  removed when the next session stores its first result.
* Precedence for n and seed: command line > ``scrub.run(...)`` argument > marker > default.
  For the model: ``scrub.run(model=)`` > marker > ``--scrub-model`` > ``toy-ioi`` (a claim is
  about one model; running it on another would make it meaningless).
* Each result is written to the run directory when its test finishes (with pass/fail/error/skip),
  see :mod:`scrub.runner.store`. With pytest-xdist the controller names the run directory and
  hands it to the workers; the controller's summary reads the results back from the files.
* A claim test that raises anything but ``AssertionError`` is reported as an error, not a failure.

>>> @pytest.mark.scrub_claim(model="toy-ioi", n=200)          # doctest: +SKIP
... def test_full(scrub):
...     assert_recovers(scrub.run("toy_ioi.py::full_circuit"), at_least=0.8)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from scrub.atomic import remove_stale_temp_files
from scrub.runner.store import (
    RunDir,
    RunStatus,
    new_run_name,
    record_of,
    result_identity,
    safe_key,
    worst,
)

DEFAULT_MODEL = "toy-ioi"
DEFAULT_N = 200
#: Models fetched from the network: when they cannot be loaded, their claims skip (not error).
NETWORK_MODELS = ("gpt2-small",)
MARKER = "scrub_claim"
_ERROR_TAG = ("scrub_outcome", "error")


@dataclass
class SessionState:
    """Per-session plugin state (lives in ``config.stash``; mutable caches by design)."""

    run: RunDir
    model_option: str | None
    n_option: int | None
    seed_option: int | None
    threads: int = 1
    device: str = "auto"
    dtype: str = "float32"
    models: dict[str, Any] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    datasets: dict[tuple, Any] = field(default_factory=dict)
    pending: dict[str, list[tuple[str, Any, dict]]] = field(default_factory=dict)
    #: Results by (hypothesis, model, n, seed, metric, dataset): claims often share a baseline,
    #: and scrubbing is deterministic, so one session computes each once.
    memo: dict[tuple, Any] = field(default_factory=dict)
    recorded: int = 0
    #: The process whose life the run's status follows (xdist: the controller's).
    owner_pid: int = field(default_factory=os.getpid)
    interrupted: bool = False


STATE = pytest.StashKey[SessionState]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("scrub", "causal-scrubbing claims")
    group.addoption("--scrub-model", default=None, help="run only claims about this model")
    group.addoption("--scrub-n", type=int, default=None, help="reference examples per run")
    group.addoption("--scrub-seed", type=int, default=None, help="seed of every run")
    group.addoption("--scrub-out", default=None, help="directory for run dirs (default runs/)")
    group.addoption(
        "--scrub-device", default="auto", help="auto (a GPU when there is one), cpu, cuda, mps"
    )
    group.addoption("--scrub-dtype", default="float32", help="float32, float64, bfloat16, float16")
    group.addoption(
        "--scrub-threads",
        type=int,
        default=1,
        help="torch threads while claims run (default 1: numbers are bit-identical for a fixed "
        "thread count, and pytest-xdist -n gives parallelism)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(model=None, n=None, seed=None, dataset=None): a causal-scrubbing claim and "
        "its defaults (dataset: a prompt file beside the claims file)",
    )
    workerinput = getattr(config, "workerinput", None)
    owner_pid = os.getpid()
    if workerinput is not None and "scrub_run_dir" in workerinput:
        run = RunDir(Path(workerinput["scrub_run_dir"]))
        owner_pid = int(workerinput.get("scrub_owner_pid", owner_pid))
    else:
        _check_options(config)
        out = config.getoption("scrub_out")
        # Where the user stands, not the rootdir (which may be a parent directory).
        root = Path(out) if out else config.invocation_params.dir / "runs"
        run = RunDir(root.resolve() / new_run_name())  # created on the first result only
    config.stash[STATE] = SessionState(
        run=run,
        model_option=config.getoption("scrub_model"),
        n_option=config.getoption("scrub_n"),
        seed_option=config.getoption("scrub_seed"),
        threads=config.getoption("scrub_threads"),
        device=config.getoption("scrub_device"),
        dtype=config.getoption("scrub_dtype"),
        owner_pid=owner_pid,
    )
    config.pluginmanager.register(_InterruptWatcher(config.stash[STATE]), "scrub-interrupts")


def _check_options(config: pytest.Config) -> None:
    """The scrub options' values, before any test runs: bad ones are usage errors."""
    from scrub.errors import ScrubError

    checks = [
        ("scrub_n", "--scrub-n", 1),
        ("scrub_seed", "--scrub-seed", 0),
        ("scrub_threads", "--scrub-threads", 1),
    ]
    for dest, flag, least in checks:
        value = config.getoption(dest)
        if value is not None and value < least:
            raise pytest.UsageError(f"{flag} {value} must be at least {least}")
    out = config.getoption("scrub_out")
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise pytest.UsageError(f"--scrub-out {out} is a file; runs go in a directory")
    model = config.getoption("scrub_model")
    if model is not None:
        from scrub.arguments import check_model

        try:
            check_model(model, "--scrub-model")
        except ScrubError as e:
            raise pytest.UsageError(str(e)) from None


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """pytest-xdist (controller): every worker writes into the controller's run directory."""
    state = node.config.stash[STATE]
    node.workerinput["scrub_run_dir"] = str(state.run.path)
    node.workerinput["scrub_owner_pid"] = state.owner_pid


def _is_claim(item: pytest.Item) -> bool:
    return item.get_closest_marker(MARKER) is not None or "scrub" in getattr(
        item, "fixturenames", ()
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    exc = call.excinfo
    if (
        report.when == "call"
        and report.failed
        and exc is not None
        and not exc.errisinstance(AssertionError)
        and _is_claim(item)
    ):
        report.user_properties.append(_ERROR_TAG)
    # Runs in the process that ran the test (an xdist worker or the only process).
    if report.when == "call" or not report.passed:
        _flush(item.config, report)
        _flush_claims(item.config, report)


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    if report.when == "call" and _ERROR_TAG in list(getattr(report, "user_properties", ())):
        return "error", "E", "ERROR"
    return None


def _outcome(report: pytest.TestReport) -> str:
    if _ERROR_TAG in list(report.user_properties):
        return "error"
    return {"passed": "pass", "failed": "fail", "skipped": "skip"}[report.outcome]


def _flush(config: pytest.Config, report: pytest.TestReport) -> None:
    """Write the results a test recorded, now that its outcome is known."""
    state = config.stash[STATE]
    pending = state.pending.pop(report.nodeid, None)
    if not pending:
        return
    if not (state.run.path / "run.json").is_file():
        # The session's first result: clear temp files a killed session left beside it.
        remove_stale_temp_files(state.run.path.parent, recursive=True)
    state.run.ensure(_run_meta(config))
    for key, result, extra in pending:
        state.run.write_record(
            record_of(result, key=key, test=report.nodeid, outcome=_outcome(report), extra=extra)
        )
        state.recorded += 1


def _flush_claims(config: pytest.Config, report: pytest.TestReport) -> None:
    """Store the claims (with p-values) a test made, now that its outcome is known."""
    from scrub.stats import ledger

    claims = ledger.take(report.nodeid)
    if claims:
        state = config.stash[STATE]
        state.run.ensure(_run_meta(config))
        ledger.write(state.run.path, report.nodeid, _outcome(report), claims)


def _run_meta(config: pytest.Config) -> dict[str, Any]:
    state = config.stash[STATE]
    return {
        "pid": state.owner_pid,
        "options": {
            "scrub_model": state.model_option,
            "scrub_n": state.n_option,
            "scrub_seed": state.seed_option,
            "scrub_threads": state.threads,
        },
        "pytest_args": list(config.invocation_params.args),
    }


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


class _InterruptWatcher:
    """Notes Ctrl-C (and SIGTERM, which ``scrub check`` raises as one) in the session state.

    pytest's hook gets no config, and its exit status INTERRUPTED also means "a collection
    error stopped the session", so the interrupt is recorded where it happens.
    """

    def __init__(self, state: SessionState):
        self.state = state

    def pytest_keyboard_interrupt(self, excinfo) -> None:
        # pytest also calls this hook for pytest.exit(), which is no interrupt.
        self.state.interrupted = excinfo.errisinstance(KeyboardInterrupt)


def _final_status(state: SessionState, exitstatus: int) -> RunStatus:
    if state.interrupted:
        return RunStatus.INTERRUPTED
    if exitstatus in (pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.INTERRUPTED):
        return RunStatus.FAILED  # the session broke (e.g. a collection error stopped it)
    return RunStatus.FINISHED


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    state = config.stash[STATE]
    if _is_worker(config):
        return
    if (state.run.path / "results").is_dir():
        state.run.rebuild_table()  # the final table sees every worker's results
    from scrub.stats import ledger

    ledger.write_table(state.run.path)  # raw and Holm-adjusted p-values of every claim
    state.run.finish(_final_status(state, exitstatus))


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if _is_worker(config):
        return
    run = config.stash[STATE].run
    records = run.read_records()[0]
    if not records:
        return
    tr = terminalreporter
    tr.write_sep("=", "scrub results")
    for line in format_table(records):
        tr.write_line(line)
    from scrub.stats import ledger

    claims = ledger.read(run.path)
    if claims:
        tr.write_sep("-", "claims (p: raw one-sided; Holm: adjusted over the session's claims)")
        for line in ledger.format_claims(claims):
            tr.write_line(line)
    for problem in run.problems():
        tr.write_line(f"warning: {problem}", yellow=True)
    tr.write_line(f"results: {run.path} ({run.status()})")


def format_table(records: list[dict]) -> list[str]:
    """Fixed-width lines: hypothesis, model, N, clean, scrubbed, random, recovered +- SE, claims
    (how many tests used the result; one row per distinct result) and result (the worst outcome).
    """

    def num(x, w=8):
        return f"{x:>{w}.3f}" if isinstance(x, (int, float)) else f"{'-':>{w}}"

    rows: dict[tuple, list[dict]] = {}
    for r in records:
        rows.setdefault(result_identity(r), []).append(r)
    width = max([10, *(len(str(r.get("hypothesis", ""))) for r in records)])
    head = (
        f"{'hypothesis':<{width}}  {'model':<10} {'N':>5} {'clean':>8} {'scrubbed':>8} "
        f"{'random':>8} {'recovered +- SE':>17} {'claims':>6}  result"
    )
    lines = [head, "-" * len(head)]
    for uses in rows.values():
        r = uses[0]
        outcome = worst(u.get("outcome") or "?" for u in uses)
        rec, se = r.get("recovered"), r.get("recovered_se")
        rec_txt = f"{num(rec, 7)} +- {num(se, 5)}" if rec is not None else f"{'-':>17}"
        lines.append(
            f"{str(r.get('hypothesis')):<{width}}  {str(r.get('model')):<10} {r.get('n', 0):>5} "
            f"{num(r.get('clean'))} {num(r.get('scrubbed'))} {num(r.get('random'))} "
            f"{rec_txt:>17} {len(uses):>6}  {outcome.upper()}"
        )
    return lines


class Scrub:
    """What the ``scrub`` fixture gives a test: run hypotheses and record the results.

    >>> def test_x(scrub):                                          # doctest: +SKIP
    ...     result = scrub.run("toy_ioi.py::full_circuit", n=200)
    """

    def __init__(self, request: pytest.FixtureRequest, state: SessionState):
        self._request = request
        self._state = state
        marker = request.node.get_closest_marker(MARKER)
        self._defaults: dict[str, Any] = dict(marker.kwargs) if marker else {}
        self._here = Path(str(request.node.path)).parent
        self.results: list = []

    # -- resolution -------------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        """The model this test's claims are about (see the module docstring for precedence)."""
        return self._defaults.get("model") or self._state.model_option or DEFAULT_MODEL

    def hypothesis(self, ref):
        """A :class:`~scrub.Hypothesis`, or ``"FILE::NAME"`` resolved beside the test file."""
        from scrub.scrubbing.hypothesis import Hypothesis
        from scrub.scrubbing.loader import load_hypothesis, split_ref

        if isinstance(ref, Hypothesis):
            return ref
        path, name = split_ref(str(ref))
        if not path.is_absolute() and (self._here / path).is_file():
            path = self._here / path
        return load_hypothesis(f"{path}::{name}" if name is not None else str(path))

    def model(self, name: str | None = None):
        """The session's copy of model ``name``; skips the test if its weights are unavailable."""
        from scrub.errors import ScrubError
        from scrub.models import load_model

        name = name or self.model_name
        st = self._state
        if name in st.unavailable:
            pytest.skip(st.unavailable[name])
        if name not in st.models:
            try:
                st.models[name] = load_model(name, device=st.device, dtype=st.dtype)
            except ScrubError as e:
                if name not in NETWORK_MODELS:
                    raise
                st.unavailable[name] = f"{name} weights unavailable: {e}"
                pytest.skip(st.unavailable[name])
        return st.models[name]

    def dataset(self, kind: str, size: int, seed: int, model=None):
        """Dataset ``kind`` with ``size`` rows for ``model``, built once per session."""
        from scrub.data.registry import dataset_for

        m = model or self.model()
        key = (m.info.name, kind, size, seed)
        if key not in self._state.datasets:
            self._state.datasets[key] = dataset_for(kind, size, seed=seed, model=m)
        return self._state.datasets[key]

    def prompt_file(self, path, model):
        """The prompts of file ``path`` (relative to the claims file) for ``model``, read once per
        session (and again if the file changes)."""
        from scrub.data.promptfile import check_path, load_prompts

        path = check_path(self._here / path).resolve()
        stat = path.stat()
        key = (model.info.name, "file", str(path), stat.st_mtime_ns, stat.st_size)
        if key not in self._state.datasets:
            info = model.info
            self._state.datasets[key] = load_prompts(
                path, model.tokenizer, n_vocab=info.d_vocab, n_ctx=info.n_ctx
            )
        return self._state.datasets[key]

    # -- running ----------------------------------------------------------------------------------

    def run(
        self,
        hypothesis,
        *,
        n: int | None = None,
        seed: int | None = None,
        metric: str = "logit-diff",
        model: str | None = None,
        dataset=None,
        pool: int | None = None,
        label: str | None = None,
        record: bool = True,
    ):
        """Scrub ``hypothesis`` and record the result under this test; returns the ScrubResult.

        ``dataset`` replaces the hypothesis's own dataset: any PromptSet/TokenSet, or a prompt
        file (a path relative to the claims file; the marker's ``dataset=`` is the default). All
        its rows are the pool; n defaults to all rows of a file. ``label`` names the result in
        the table (default: the hypothesis name). ``record=False`` runs without recording (the
        formal tests' many helper runs).
        """
        from scrub.scrubbing.experiment import scrub_hypothesis
        from scrub.scrubbing.run import DEFAULT_POOL
        from scrub.scrubbing.validate import check_model_has_mlps

        st = self._state
        h = self.hypothesis(hypothesis)
        wanted = model or self.model_name
        if st.model_option and wanted != st.model_option:
            pytest.skip(f"claim about {wanted}; --scrub-model {st.model_option} selects others")
        m = self.model(wanted)
        check_model_has_mlps(h, m.info.name, m.info.has_mlps)
        if dataset is None:
            dataset = self._defaults.get("dataset")
        if isinstance(dataset, (str, os.PathLike)):
            dataset = self.prompt_file(dataset, m)
            n = n or self._defaults.get("n") or len(dataset)
        n = st.n_option or n or self._defaults.get("n") or DEFAULT_N
        seed = st.seed_option if st.seed_option is not None else seed
        seed = seed if seed is not None else self._defaults.get("seed", 0)
        if dataset is None:
            size = max(n, pool or self._defaults.get("pool") or DEFAULT_POOL)
            dataset = self.dataset(h.dataset, size, seed, m)
        memo_key = (h, m.info.name, n, seed, metric, dataset)  # the dataset by identity
        if memo_key not in st.memo:
            st.memo[memo_key] = scrub_hypothesis(h, m, dataset, n=n, seed=seed, metric=metric)
        result = st.memo[memo_key]
        if not record:
            return result
        self.results.append(result)
        name = label or h.name
        nodeid = self._request.node.nodeid
        taken = {k for k, _, _ in st.pending.get(nodeid, [])}
        key = safe_key(f"{nodeid}::{name}")
        key = key if key not in taken else f"{key}-{len(taken)}"
        extra = {"hypothesis": name, "hypothesis_spec": spec_of(h)}
        st.pending.setdefault(nodeid, []).append((key, result, extra))
        return result


def spec_of(h) -> dict[str, Any]:
    """The structure of a hypothesis as JSON: nodes, components, feeds and rules."""
    return {
        "name": h.name,
        "dataset": h.dataset,
        "output_other": str(h.output_other),
        "nodes": {
            n.name: {
                "components": [str(c) for c in n.components],
                "feeds": [str(f) for f in n.feeds],
                "rule": str(n.rule),
                "other": str(n.other),
            }
            for n in h.nodes
        },
    }


@pytest.fixture
def scrub(request: pytest.FixtureRequest) -> Scrub:
    """Run hypotheses and record their results (see :class:`Scrub`)."""
    import torch

    state = request.config.stash[STATE]
    # Pinned only once a claim asks for scrub: the plugin loads in every pytest session, and
    # unrelated test suites keep their own thread settings.
    torch.set_num_threads(state.threads)
    from scrub.stats import ledger

    ledger.begin(request.node.nodeid)  # the claims this test makes, with their p-values
    return Scrub(request, state)
