"""Node costs, computed once per run and stored in it: ``runs/<run>/costs/<hypothesis>.json``.

A node's cost is what scrubbing that node alone costs: ``recovered(full) - recovered(full without
the node and the nodes that only feed it)`` (:func:`scrub.runner.draw.without`). Computing it
scrubs one ablated hypothesis per node under the stored result's model, n, seed, metric and pool,
on one dataset built once; the numbers are those ``scrub run`` would print for each ablation.

The stored file names the hypothesis's nodes and the result's settings; it is used only while
both still match (a changed hypothesis or another result recomputes it).

>>> costs = costs_for(hypothesis, records, run=RunDir(Path("runs/20250101-...")))  # doctest: +SKIP
>>> costs.costs["name movers"], costs.source                                   # doctest: +SKIP
(0.93, 'stored')
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scrub.atomic import atomic_path
from scrub.errors import ScrubError
from scrub.runner.store import RunDir, safe_key, settings_of

COSTS_DIR = "costs"
#: Settings that determine a result's numbers; a stored cost is reused only if they all match.


@dataclass(frozen=True)
class NodeCosts:
    """The full hypothesis's result and each node's cost; ``source`` says where they came from.

    ``source``: ``"results"`` (ablations found among the run's results), ``"stored"`` (read from
    ``costs/``), ``"computed"`` (scrubbed now) or ``"none"`` (not asked to compute).
    ``ablated`` holds each ablation's (recovered, SE) when known.
    """

    hypothesis: str
    full: float
    full_se: float | None
    settings: Mapping[str, Any]
    costs: Mapping[str, float]
    source: str
    ablated: Mapping[str, tuple[float, float | None]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "hypothesis": self.hypothesis,
            "full": self.full,
            "full_se": self.full_se,
            "settings": dict(self.settings),
            "costs": dict(self.costs),
            "ablated": {k: list(v) for k, v in self.ablated.items()},
        }


def _matches(record: Mapping, name: str) -> bool:
    spec = record.get("hypothesis_spec") or {}
    return name in (record.get("hypothesis"), spec.get("name"))


def full_record(h, records: Sequence[Mapping]) -> Mapping:
    """The newest record of ``h``; raises if there is none or it is of another version of ``h``."""
    from scrub.runner.plugin import spec_of

    mine = [r for r in records if _matches(r, h.name)]
    if not mine:
        found = sorted({str(r.get("hypothesis")) for r in records})
        raise ScrubError(
            f"the results are not of hypothesis {h.name!r} (they are of: {', '.join(found)})",
            fix="give results produced by this hypothesis (scrub run --json, or a scrub check run)",
        )
    full = mine[-1]
    if not isinstance(full.get("recovered"), (int, float)):
        raise ScrubError(
            f"the result of {h.name!r} has no recovered fraction (clean equals random), so no "
            "node has a cost",
            fix="use a dataset or metric where the clean and random runs differ",
        )
    stored_spec = full.get("hypothesis_spec")
    if stored_spec is not None and stored_spec.get("nodes") != spec_of(h)["nodes"]:
        raise ScrubError(
            f"the results of {h.name!r} come from a different version of it (its nodes differ)",
            fix="re-run the hypothesis, then draw with the new results",
        )
    return full


def matches(doc: Mapping, nodes, settings: Mapping) -> bool:
    """Stored costs ``doc`` are those of a hypothesis with these ``nodes``, run with these
    ``settings`` (:func:`scrub.runner.store.settings_of`)."""
    return doc.get("nodes") == nodes and doc.get("settings") == settings


def costs_path(run: RunDir, hypothesis: str) -> Path:
    return run.path / COSTS_DIR / f"{safe_key(hypothesis)}.json"


def read_stored(run: RunDir, h, full: Mapping) -> NodeCosts | None:
    """The stored costs of ``h`` in ``run`` if they belong to this hypothesis and result."""
    from scrub.runner.plugin import spec_of

    p = costs_path(run, h.name)
    try:
        doc = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not matches(doc, spec_of(h)["nodes"], settings_of(full)):
        return None
    return NodeCosts(
        h.name,
        doc["full"],
        doc.get("full_se"),
        doc["settings"],
        doc["costs"],
        "stored",
        {k: tuple(v) for k, v in doc.get("ablated", {}).items()},
    )


def read_any(run: RunDir) -> dict[str, dict[str, Any]]:
    """Every stored costs file of ``run`` by hypothesis name (for the report; unchecked)."""
    out = {}
    for p in sorted((run.path / COSTS_DIR).glob("*.json")):
        try:
            doc = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        out[str(doc.get("hypothesis"))] = doc
    return out


def write_stored(run: RunDir, h, costs: NodeCosts) -> Path:
    from scrub.runner.plugin import spec_of

    p = costs_path(run, h.name)
    with atomic_path(p) as tmp:
        tmp.write_text(json.dumps({**costs.to_json(), "nodes": spec_of(h)["nodes"]}, indent=1))
    return p


def compute(h, full: Mapping, *, progress: bool = True, cache: dict | None = None) -> NodeCosts:
    """Scrub ``h`` without each node under ``full``'s settings, on one dataset built once.

    ``cache`` keeps loaded models and built datasets across calls (one dict for many hypotheses).
    """
    import torch
    from tqdm.auto import tqdm

    from scrub.data.registry import dataset_for
    from scrub.models import load_model
    from scrub.runner.draw import without
    from scrub.scrubbing.experiment import scrub_hypothesis
    from scrub.scrubbing.run import DEFAULT_POOL

    ident = settings_of(full)
    if ident["model"] is None or ident["n"] is None:
        raise ScrubError(
            f"the result of {h.name!r} does not say which model and n produced it",
            fix="give a result JSON written by scrub run --json or a scrub check run",
        )
    cache = {} if cache is None else cache
    if ident["model"] not in cache:
        cache[ident["model"]] = load_model(str(ident["model"]))
    model = cache[ident["model"]]
    n, seed = int(ident["n"]), int(ident["seed"] or 0)
    size = max(n, int(ident["pool"] or DEFAULT_POOL))
    key = (ident["model"], h.dataset, size, seed)
    if key not in cache:
        cache[key] = dataset_for(h.dataset, size, seed=seed, model=model)
    ds = cache[key]
    if ident["dataset"] is not None and list(ds.lineage) != list(ident["dataset"]):
        raise ScrubError(
            f"the result of {h.name!r} was computed on a dataset scrub cannot rebuild "
            f"({' -> '.join(ident['dataset'])})",
            fix="compute node costs with results of the hypothesis's own dataset",
        )
    metric = str(ident["metric"] or "logit-diff")
    ablated = {}
    # One thread, as claims run: small batches gain little from more, and on a shared machine
    # spinning threads cost far more than they give.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            for node in tqdm(h.nodes, desc=f"node costs of {h.name}", disable=not progress):
                r = scrub_hypothesis(
                    without(h, node.name), model, ds, n=n, seed=seed, metric=metric
                )
                ablated[node.name] = (r.recovered, r.recovered_se)
    finally:
        torch.set_num_threads(threads)
    costs = {k: full["recovered"] - v[0] for k, v in ablated.items()}
    return NodeCosts(
        h.name, full["recovered"], full.get("recovered_se"), ident, costs, "computed", ablated
    )


def costs_for(
    h,
    records: Sequence[Mapping],
    *,
    run: RunDir | None = None,
    compute_missing: bool = True,
    progress: bool = True,
    cache: dict | None = None,
) -> NodeCosts:
    """``h``'s node costs: from ablation results in ``records``, stored in ``run``, or computed
    now (and then stored in ``run``, so the next call reads them)."""
    from scrub.runner.draw import ablation_name

    full = full_record(h, records)
    base = dict(hypothesis=h.name, full=full["recovered"], full_se=full.get("recovered_se"))
    by_name = {r.get("hypothesis"): r for r in records}
    found = {n.name: by_name.get(ablation_name(h.name, n.name)) for n in h.nodes}
    if all(v is not None for v in found.values()):
        return NodeCosts(
            **base,
            settings=settings_of(full),
            costs={k: full["recovered"] - v["recovered"] for k, v in found.items()},
            source="results",
            ablated={k: (v["recovered"], v.get("recovered_se")) for k, v in found.items()},
        )
    stored = read_stored(run, h, full) if run is not None else None
    if stored is not None:
        return stored
    if not compute_missing:
        return NodeCosts(**base, settings=settings_of(full), costs={}, source="none")
    costs = compute(h, full, progress=progress, cache=cache)
    if run is not None:
        write_stored(run, h, costs)
    return costs
