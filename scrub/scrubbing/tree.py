"""Treeification and sampling: every path from the output gets its own node and its own rows.

A DAG node that feeds two parents (or two slots of one parent) becomes two tree nodes with
independent samples, as in Redwood's implementation.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np

from scrub.scrubbing.hypothesis import OUTPUT, Hypothesis, Node, Rule, Slot

if TYPE_CHECKING:  # pandas costs a quarter second to import: only where a frame is made
    import pandas as pd


@dataclass(frozen=True)
class TreeNode:
    """One treeified node. ``path`` names it uniquely, e.g. ``"name movers.q/s-inhibition"``."""

    path: str
    node: Node | None  # None for the output
    slot: Slot  # the slot of the parent it feeds (RESID for the output itself)
    children: tuple[TreeNode, ...]

    @property
    def is_leaf(self) -> bool:
        return not self.children

    def walk(self) -> Iterator[TreeNode]:
        """Pre-order: parents before children (the sampling order)."""
        yield self
        for c in self.children:
            yield from c.walk()


def treeify(h: Hypothesis) -> TreeNode:
    def build(name: str, path: str, slot: Slot) -> TreeNode:
        kids = tuple(
            build(child.name, f"{path}/{child.name}" if path else child.name, s)
            for child, s in h.children(name)
        )
        # Two slots of one parent fed by one child are two paths: disambiguate their names.
        counts = {k.path: sum(1 for j in kids if j.path == k.path) for k in kids}
        kids = tuple(
            _rename(k, f"{k.path}[{k.slot.value}]") if counts[k.path] > 1 else k for k in kids
        )
        return TreeNode(path, None if name == OUTPUT else h.node(name), slot, kids)

    return build(OUTPUT, "", Slot.RESID)


def _rename(t: TreeNode, path: str) -> TreeNode:
    old = t.path
    return TreeNode(
        path, t.node, t.slot, tuple(_rename(c, path + c.path[len(old) :]) for c in t.children)
    )


#: Child streams of a run's seed (numpy ``SeedSequence`` spawn keys). The sampler draws from the
#: seed itself; the fully random baseline from its own child stream, so that its rows are not the
#: sampler's first draw (with a shared stream, the empty hypothesis "recovered" exactly 0 by
#: construction instead of by measurement). Statistical tests use further keys (scrub.stats).
BASELINE_STREAM = 1


def child_rng(seed: int, *key: int) -> np.random.Generator:
    """The generator of child stream ``key`` of ``seed``: independent of ``default_rng(seed)``.

    >>> child_rng(0, 1).integers(10) == child_rng(0, 1).integers(10)
    True
    """
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def draw_baseline(seed: int, n_pool: int, n: int) -> np.ndarray:
    """The fully random baseline's rows: ``n`` uniform rows of the pool, from their own stream."""
    return child_rng(seed, BASELINE_STREAM).integers(0, n_pool, size=n)


@dataclass(frozen=True, eq=False)
class Assignment:
    """For every tree node, the dataset row of each example: its own input and its other inputs.

    ``rows[path][i]`` is x_n for reference example i; ``other[path][i]`` is x_other(n). The
    output's path is ``""``. ``baseline[i]`` is the row the fully random baseline runs for
    example i. Replaying an assignment (``scrub_hypothesis(..., assignment=a)``) reproduces a run
    exactly, baseline included; :meth:`to_json` / :meth:`from_json` store and load it.
    """

    rows: Mapping[str, np.ndarray]
    other: Mapping[str, np.ndarray]
    baseline: np.ndarray | None = None  # None only for hand-built assignments (no baseline)

    def to_json(self) -> dict:
        """``{"nodes": {path or "output": {"rows", "other"}}, "baseline": rows}``."""
        return {
            "nodes": {
                p or OUTPUT: {"rows": r.tolist(), "other": self.other[p].tolist()}
                for p, r in self.rows.items()
            },
            "baseline": None if self.baseline is None else self.baseline.tolist(),
        }

    @classmethod
    def from_json(cls, doc: Mapping) -> Assignment:
        """The assignment :meth:`to_json` wrote (also accepts a whole result JSON)."""
        doc = doc.get("assignment", doc)
        nodes = doc["nodes"]

        def path(key: str) -> str:
            return "" if key == OUTPUT else key

        rows = {path(k): np.asarray(v["rows"], dtype=np.int64) for k, v in nodes.items()}
        other = {path(k): np.asarray(v["other"], dtype=np.int64) for k, v in nodes.items()}
        base = doc.get("baseline")
        return cls(
            MappingProxyType(rows),
            MappingProxyType(other),
            None if base is None else np.asarray(base, dtype=np.int64),
        )

    def world(self, t: TreeNode) -> np.ndarray:
        """The rows ``t``'s components compute on: a leaf's own row x_n; for a node with children
        (and the output) x_other(n), into which the children's outputs are patched."""
        return self.rows[t.path] if t.is_leaf and t.node is not None else self.other[t.path]

    def summary(self) -> pd.DataFrame:
        """Per tree node: how often its rows equal the reference row."""
        import pandas as pd

        ref = self.rows[""]
        return pd.DataFrame(
            {
                "node": [p or OUTPUT for p in self.rows],
                "same_as_reference": [float((r == ref).mean()) for r in self.rows.values()],
                "other_same_as_reference": [
                    float((self.other[p] == ref).mean()) for p in self.rows
                ],
                "distinct_rows": [len(np.unique(r)) for r in self.rows.values()],
            }
        )


class Sampler:
    """Vectorised draws by rule over a pool of ``n_pool`` rows with feature columns."""

    def __init__(self, features: Mapping[str, tuple], n_pool: int, rng: np.random.Generator):
        self.features, self.n_pool, self.rng = features, n_pool, rng
        self._groups: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _grouping(self, feats: tuple[str, ...]):
        import pandas as pd

        if feats not in self._groups:
            frame = pd.DataFrame({f: list(self.features[f]) for f in feats})
            codes = frame.groupby(list(feats), sort=True).ngroup().to_numpy()
            order = np.argsort(codes, kind="stable")  # rows grouped, ascending within a group
            sizes = np.bincount(codes)
            starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
            self._groups[feats] = (codes, order, np.stack([starts, sizes], 1))
        return self._groups[feats]

    def draw(self, rule: Rule, parent_rows: np.ndarray) -> np.ndarray:
        if rule.kind == "keep":
            return parent_rows.copy()
        if rule.kind == "random":
            return self.rng.integers(0, self.n_pool, size=len(parent_rows))
        codes, order, spans = self._grouping(rule.features)
        start, size = spans[codes[parent_rows]].T
        return order[start + (self.rng.random(len(parent_rows)) * size).astype(np.int64)]


def sample(
    tree: TreeNode, h: Hypothesis, features, n_pool: int, ref_rows: np.ndarray, seed: int
) -> Assignment:
    """Draw rows top-down: each node from its parent's rows, then its other inputs from its own.

    The random baseline's rows come from their own stream (:func:`draw_baseline`).
    """
    sampler = Sampler(features, n_pool, np.random.default_rng(seed))
    rows: dict[str, np.ndarray] = {}
    other: dict[str, np.ndarray] = {}

    def visit(t: TreeNode, parent_rows: np.ndarray) -> None:
        if t.node is None:
            rows[t.path], other[t.path] = parent_rows, sampler.draw(h.output_other, parent_rows)
        else:
            rows[t.path] = sampler.draw(t.node.rule, parent_rows)
            other[t.path] = sampler.draw(t.node.other, rows[t.path])
        for c in t.children:
            visit(c, rows[t.path])

    visit(tree, np.asarray(ref_rows))
    baseline = draw_baseline(seed, n_pool, len(ref_rows))
    return Assignment(MappingProxyType(rows), MappingProxyType(other), baseline)
