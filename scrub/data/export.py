"""Write and read PromptSets as .jsonl, .csv or .parquet, atomically (complete or absent)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

from scrub.atomic import atomic_path
from scrub.data.promptset import PromptSet, PromptSpec, build_promptset
from scrub.errors import ScrubError

FORMATS = (".jsonl", ".csv", ".parquet")


def is_missing(v: object) -> bool:
    """An empty cell: None, NaN (as pandas reads it) or the empty string."""
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v)


def write_records(path: Path, recs: list[dict], flatten: Callable[[dict, str], dict]) -> None:
    """``recs`` to ``path`` by its suffix, atomically (complete or absent): JSONL one record a
    line; CSV and parquet one ``flatten(record, suffix)`` a row, where a column holding values
    of several types is written as strings (a parquet column holds one type).

    >>> write_records(Path("p.csv"), [{"a": {"b": 1}}], lambda r, _: r["a"])  # doctest: +SKIP
    """
    import pandas as pd  # a quarter second to import: only where a frame is made

    path = Path(path)
    if path.suffix not in FORMATS:
        raise ScrubError(
            f"cannot write {path.name}", fix=f"use a file ending in {', '.join(FORMATS)}"
        )
    with atomic_path(path) as tmp:
        if path.suffix == ".jsonl":
            tmp.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
            return
        frame = pd.DataFrame([flatten(r, path.suffix) for r in recs])
        for col in frame.columns:
            values = [v for v in frame[col] if not is_missing(v)]
            if col != "tokens" and len({type(v) for v in values}) > 1:
                frame[col] = [None if is_missing(v) else str(v) for v in frame[col]]
        if path.suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)


def records(ps: PromptSet) -> list[dict]:
    """One JSON-ready dict per prompt (unpadded tokens, positions, names and the full spec)."""
    out = []
    for i, spec in enumerate(ps.specs):
        length = int(ps.mask[i].sum())
        out.append(
            {
                "text": spec.render()[0],
                "tokens": ps.tokens[i, :length].tolist(),
                "str_tokens": list(ps.str_tokens[i]),
                "positions": {k: int(v[i]) for k, v in ps.positions.items()},
                "names": {"IO": spec.io, "S1": spec.s1, "S2": spec.s2},
                "answers": {"IO": int(ps.answers[i, 0]), "S": int(ps.answers[i, 1])},
                "template": spec.template_id,
                "template_text": spec.template,
                "order": spec.order,
                "place": spec.place,
                "object": spec.obj,
                "prefix": list(spec.prefix),
                "prefix_len": int(ps.prefix_len[i]),
                "lineage": list(ps.lineage),
            }
        )
    return out


def write_promptset(ps: PromptSet, path: Path) -> None:
    """Write ``ps`` to ``path``; the format follows the suffix. Nothing is left on failure."""
    write_records(path, records(ps), lambda r, _suffix: _flat(r))


def _flat(r: dict) -> dict:
    flat = {k: v for k, v in r.items() if not isinstance(v, (dict, list))}
    flat |= {f"pos_{k}": v for k, v in r["positions"].items()}
    flat |= {f"name_{k}": v for k, v in r["names"].items()}
    flat |= {
        "tokens": json.dumps(r["tokens"]),
        "str_tokens": json.dumps(r["str_tokens"]),
        "prefix": json.dumps(r["prefix"]),
        "lineage": json.dumps(r["lineage"]),
    }
    return flat


def read_promptset(path: Path, tokenizer) -> PromptSet:
    """Rebuild a PromptSet written by :func:`write_promptset`, checking its tokens still match."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise ScrubError(f"dataset file {path} does not exist")
    if path.suffix == ".jsonl":
        recs = [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln]
    elif path.suffix in (".csv", ".parquet"):
        frame = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
        recs = [
            {
                **r,
                "names": {k: r[f"name_{k}"] for k in ("IO", "S1", "S2")},
                "tokens": json.loads(r["tokens"]),
                "prefix": json.loads(r["prefix"]),
                "lineage": json.loads(r["lineage"]),
            }
            for r in frame.to_dict("records")
        ]
    else:
        raise ScrubError(
            f"cannot read {path.name}", fix=f"use a file ending in {', '.join(FORMATS)}"
        )
    if not recs:
        raise ScrubError(f"dataset file {path} has no rows")
    specs = [
        PromptSpec(
            int(r["template"]),
            r["template_text"],
            r["order"],
            r["names"]["IO"],
            r["names"]["S1"],
            r["names"]["S2"],
            r.get("place") or "",
            r.get("object") or "",
            tuple(r["prefix"]),
        )
        for r in recs
    ]
    pool = sorted({n for s in specs for n in (s.io, s.s1, s.s2)})
    ps = build_promptset(
        specs, tokenizer, names_pool=pool, lineage=(*recs[0]["lineage"], f"read({path.name})")
    )
    for i, r in enumerate(recs):
        if ps.tokens[i, : len(r["tokens"])].tolist() != list(r["tokens"]):
            raise ScrubError(
                f"row {i} of {path} was tokenised with a different tokenizer",
                fix="pass the tokenizer (or model) that wrote the file",
            )
    return ps
