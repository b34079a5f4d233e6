"""Stored runs: one directory per session, one JSON per result, a table of all results.

Layout (every file written through :func:`scrub.atomic.atomic_path`, so it is complete or absent)::

    runs/20250101-120000-a1b2c3/
        run.json            settings, versions, seed, command line, status, started, ended
        results/<key>.json  one scrub result: summary, settings, per-example values, assignment
        results.csv         one row per result (rebuilt after each result and at session end)
        results.parquet     the same table

An interrupted run therefore leaves every finished result readable, and the table lists at least
the results finished before the last rebuild (rebuild it with :func:`rebuild_table`).

Lifecycle: ``run.json`` is written with ``status: running`` (and the writer's pid and host) when
the first result arrives, and rewritten at the end with ``finished``, ``interrupted`` (Ctrl-C,
SIGTERM) or ``failed`` (the session itself broke: internal or collection error) and ``ended``.
A run still ``running`` whose process is gone was killed (SIGKILL, power cut). ``latest`` is the
newest ``finished`` run. Files that cannot be read (corrupt JSON, a leftover temp file) are
reported by name by :meth:`RunDir.problems`, never silently dropped.

>>> run = RunDir.create(Path("runs"), {"seed": 0})          # doctest: +SKIP
>>> run.write_record(record_of(result, key="test_x"))      # doctest: +SKIP
>>> list_runs(Path("runs"))                                 # doctest: +SKIP
"""

from __future__ import annotations

import enum
import json
import math
import os
import re
import secrets
import socket
import sys
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from scrub.atomic import atomic_path, stale_temp_files
from scrub.errors import ScrubError


class RunStatus(str, enum.Enum):
    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"
    FAILED = "failed"


class RunFileWarning(UserWarning):
    """A file of a stored run could not be read (it is skipped, and named)."""


#: Columns of the results table, in display order.
TABLE_COLUMNS = (
    "key",
    "hypothesis",
    "model",
    "n",
    "seed",
    "metric",
    "clean",
    "scrubbed",
    "random",
    "recovered",
    "recovered_se",
    "outcome",
    "test",
)


def versions() -> dict[str, str]:
    """Versions of the packages a result depends on (those installed)."""
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for dist in ("scrub-circuits", "torch", "transformers", "transformer-lens", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


#: The settings that make two results of one hypothesis comparable (and stored costs reusable).
SETTINGS = ("model", "n", "seed", "metric", "pool", "dataset")


def settings_of(record: Mapping) -> dict:
    """A result record's :data:`SETTINGS` (older records keep model, n, metric at top level)."""
    s = dict(record.get("settings") or {})
    for k in ("model", "n", "metric"):
        s.setdefault(k, record.get(k))
    return {k: s.get(k) for k in SETTINGS}


#: A result several claims used is reported with the worst of their outcomes.
SEVERITY = {"error": 3, "fail": 2, "pass": 1, "skip": 0}


def worst(outcomes) -> str:
    """The worst of ``outcomes`` (an unknown one counts as worst of all)."""
    return max(outcomes, key=lambda o: SEVERITY.get(o, 4))


def result_identity(record: Mapping) -> str:
    """What makes records one result: the same hypothesis, settings and numbers.

    (Claims share results through the session memo, but each test stores its own record, and
    xdist workers compute theirs separately; equal settings and numbers are the same result.)
    """
    numbers = [record.get(k) for k in ("clean", "scrubbed", "random", "recovered")]
    return json.dumps(
        [record.get("hypothesis"), settings_of(record), *numbers], sort_keys=True, default=str
    )


def safe_key(text: str) -> str:
    """A file-name-safe form of a test id or hypothesis name (stable, readable)."""
    key = re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_")
    return key[:150] or "result"


def new_run_name() -> str:
    """``<YYYYmmdd-HHMMSS>-<6 hex>``: sortable by time, unique across parallel sessions."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def _finite(x: Any) -> Any:
    return None if isinstance(x, float) and not math.isfinite(x) else x


def assignment_summary(result) -> dict[str, dict[str, int]]:
    """Per treeified node: rows drawn, distinct rows, and how many equal the reference row."""
    a = result.assignment
    ref = a.rows.get("") if "" in a.rows else None
    out = {}
    for path, rows in a.rows.items():
        entry = {"rows": len(rows), "distinct": len(set(rows.tolist()))}
        if ref is not None and len(ref) == len(rows):
            entry["same_as_reference"] = int((rows == ref).sum())
        out[path or "output"] = entry
    return out


def record_of(
    result, *, key: str, test: str = "", outcome: str = "", extra: Mapping | None = None
) -> dict[str, Any]:
    """The JSON document stored for one :class:`~scrub.scrubbing.result.ScrubResult`."""
    summary = {k: _finite(v) for k, v in result.summary().items()}
    settings = dict(result.settings)
    return {
        "key": key,
        "test": test,
        "outcome": outcome,
        **summary,
        "model": settings.get("model"),
        "seed": settings.get("seed"),
        "settings": settings,
        "versions": versions(),
        "warnings": list(result.warnings),
        "assignment_summary": assignment_summary(result),
        "per_example": {k: getattr(result, k).tolist() for k in ("clean", "scrubbed", "random")},
        **dict(extra or {}),
    }


@dataclass(frozen=True)
class RunDir:
    """One stored run: ``path`` holds ``run.json``, ``results/`` and the results table."""

    path: Path

    @classmethod
    def create(cls, root: Path, meta: Mapping[str, Any], name: str | None = None) -> RunDir:
        """Make ``root/<name>/`` and write ``run.json`` (``meta`` plus versions and argv)."""
        run = cls(Path(root) / (name or new_run_name()))
        run.ensure(meta)
        return run

    @property
    def results_dir(self) -> Path:
        return self.path / "results"

    def ensure(self, meta: Mapping[str, Any]) -> None:
        """Create the directory and ``run.json`` unless they exist (safe from parallel workers)."""
        if (self.path / "run.json").is_file():
            return
        doc = {
            "run": self.path.name,
            "status": RunStatus.RUNNING.value,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "ended": None,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": sys.argv,
            "versions": versions(),
            **dict(meta),
        }
        self._write_meta(doc)

    def _write_meta(self, doc: Mapping[str, Any]) -> None:
        with atomic_path(self.path / "run.json") as tmp:
            tmp.write_text(json.dumps(doc, indent=1, default=str))

    def finish(self, status: RunStatus) -> None:
        """Record how the run ended (``run.json``'s ``status`` and ``ended``), if it exists."""
        if self.status() == "unreadable":
            return  # reported by problems(); a corrupt run.json is not rewritten blindly
        doc = self.meta()
        if not doc:
            return
        doc.update(status=RunStatus(status).value, ended=time.strftime("%Y-%m-%dT%H:%M:%S"))
        self._write_meta(doc)

    def meta(self) -> dict[str, Any]:
        """``run.json`` as a dict ({} when absent); a corrupt file is a :class:`ScrubError`."""
        p = self.path / "run.json"
        if not p.is_file():
            return {}
        try:
            doc = json.loads(p.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ScrubError(
                f"{p} is unreadable ({type(e).__name__}: {e})",
                fix="restore or delete that run directory",
            ) from None
        if not isinstance(doc, dict):
            raise ScrubError(
                f"{p} is not a JSON object", fix="restore or delete that run directory"
            )
        return doc

    def status(self) -> str:
        """The recorded status; ``running`` whose process is gone reads ``killed``; a run.json
        from before statuses were recorded reads ``unknown``, a corrupt one ``unreadable``."""
        try:
            doc = self.meta()
        except ScrubError:
            return "unreadable"
        status = doc.get("status") or "unknown"
        if status == RunStatus.RUNNING.value and not _writer_alive(doc):
            return "killed"
        return status

    def write_record(self, record: Mapping[str, Any]) -> Path:
        """Write ``results/<key>.json`` atomically, then rebuild the table."""
        path = self.results_dir / f"{safe_key(str(record['key']))}.json"
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(record, indent=1, default=str, allow_nan=True))
        self.rebuild_table()
        return path

    def read_records(self) -> tuple[list[dict[str, Any]], list[str]]:
        """Every readable stored result (oldest file first) and one line per unreadable file."""
        if not self.results_dir.is_dir():
            return [], []
        files = sorted(self.results_dir.glob("*.json"), key=lambda p: (p.stat().st_mtime, p.name))
        out, problems = [], []
        for f in files:
            # Files are replaced atomically, so a reader never sees a half-written one: a file
            # that does not parse is damaged (truncated, edited), not in flight.
            try:
                doc = json.loads(f.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                problems.append(f"{f} is unreadable ({type(e).__name__}: {e}); skipped")
                continue
            if not isinstance(doc, dict):
                problems.append(f"{f} is not a JSON object; skipped")
                continue
            out.append(doc)
        return out, problems

    def problems(self) -> list[str]:
        """Unreadable files of this run, and temp files left by a killed writer, by name."""
        problems = []
        try:
            self.meta()
        except ScrubError as e:
            problems.append(str(e))
        problems += self.read_records()[1]
        problems += [
            f"{p} is a temp file left by a killed writer; ignored (removed by the next run)"
            for p in stale_temp_files(self.path, recursive=True)
        ]
        return problems

    def records(self) -> list[dict[str, Any]]:
        """Every readable stored result, oldest file first; unreadable ones are skipped with a
        :class:`RunFileWarning` naming the file."""
        records, problems = self.read_records()
        for problem in problems:
            warnings.warn(problem, RunFileWarning, stacklevel=2)
        return records

    def table(self) -> pd.DataFrame:
        """One row per stored result with :data:`TABLE_COLUMNS` (unreadable files skipped)."""
        rows = [{c: r.get(c) for c in TABLE_COLUMNS} for r in self.read_records()[0]]
        return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))

    def rebuild_table(self) -> pd.DataFrame:
        """Rewrite ``results.csv`` and ``results.parquet`` from ``results/`` (atomically)."""
        frame = self.table()
        with atomic_path(self.path / "results.csv") as tmp:
            frame.to_csv(tmp, index=False)
        try:
            with atomic_path(self.path / "results.parquet") as tmp:
                frame.astype({"n": "Int64", "seed": "Int64"}).to_parquet(tmp, index=False)
        except Exception:  # noqa: BLE001  the parquet copy is a convenience: never lose a run over
            # it (pyarrow missing, or its pandas extension types re-registered in one process);
            # the JSON files and the CSV hold the same data.
            (self.path / "results.parquet").unlink(missing_ok=True)
        return frame


def _writer_alive(doc: Mapping[str, Any]) -> bool:
    """Whether the process that wrote ``run.json`` may still run (unknown counts as alive)."""
    pid, host = doc.get("pid"), doc.get("host")
    if not isinstance(pid, int) or host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_runs(root: Path) -> list[RunDir]:
    """Stored runs under ``root``, oldest first (directories with a ``run.json``)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return [RunDir(p) for p in sorted(root.iterdir()) if (p / "run.json").is_file()]


def resolve_run(ref: str | Path, root: Path = Path("runs")) -> RunDir:
    """A run by path, by name under ``root``, by unique name prefix, or ``latest``."""
    p = Path(ref)
    if (p / "run.json").is_file():
        return RunDir(p)
    runs = list_runs(root)
    if str(ref) == "latest":  # the newest finished run: names sort by start time
        newest = next((r for r in reversed(runs) if r.status() == RunStatus.FINISHED.value), None)
        if newest is not None:
            return newest
        raise ScrubError(
            f"no finished run under {root} ({len(runs)} run(s), none finished)",
            fix="name a run directory, or run `scrub check` to the end",
        )
    hits = [r for r in runs if r.path.name.startswith(str(ref))]
    if len(hits) == 1:
        return hits[0]
    names = ", ".join(r.path.name for r in runs[-5:]) or "(none)"
    why = "matches several runs" if hits else "is not a stored run"
    raise ScrubError(f"{ref} {why}", fix=f"give a run directory or a name under {root}: {names}")


def compare_runs(a: RunDir, b: RunDir) -> pd.DataFrame:
    """Results of ``a`` and ``b`` paired by hypothesis and settings: :mod:`scrub.runner.compare`."""
    from scrub.runner.compare import compare_runs as compare

    return compare(a, b)
