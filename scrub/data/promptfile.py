"""Prompt files: a user's own prompts (.jsonl, .csv, .parquet), checked and read into a PromptSet.

One row per prompt (the README's "Your own prompts" section has a worked example):

* ``text``: the prompt without its answer; or ``tokens``: its token ids, without BOS (scrub puts
  the tokenizer's BOS in front of every prompt). With both, the tokens must be the text's.
* ``correct`` and ``incorrect``: the answers the logit difference compares, one token each. In a
  row with text they are words, read as the word that follows the text after a space; in a row
  given as tokens they are token ids.
* named positions: a ``pos_NAME`` column each, or (JSONL) one ``positions`` object
  ``{"NAME": value}``. A value is a word of the text (``"John"``: its first occurrence), a word
  and which occurrence (``"John#2"``, or ``["John", 2]`` in JSONL), or a token index counted
  from 0 in the prompt's own tokens (``3``; ``-1`` is the last token). A word several tokens
  long marks its last token. ``END`` defaults to the last token.
* ``id`` (optional): ties a corrupted row to its clean row (:func:`load_pair`); unique per file.
* every other column is a feature (for ``agree(...)`` rules and tables).

Files written by ``scrub dataset ioi`` (they have a ``template_text`` column) load as before,
through :func:`scrub.data.export.read_promptset`. A bad file gets one :class:`ScrubError` naming
the file, row (data rows count from 1; a CSV's header is not a row), column and fix.

>>> ps = load_prompts(Path("prompts.jsonl"), load_tokenizer("toy-ioi"))   # doctest: +SKIP
>>> ps.positions["S2"], ps.features["order"]                              # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np
import torch

from scrub.data.export import FORMATS, is_missing, read_promptset, write_records
from scrub.data.promptset import (
    PromptSet,
    check_fast,
    covering_tokens,
    decode_rows,
    encode,
    pad_rows,
    special_ids,
    unknown_words,
)
from scrub.errors import ScrubError

if TYPE_CHECKING:  # pandas costs a quarter second to import: only where a frame is made
    import pandas as pd

ANSWERS = ("correct", "incorrect")
RESERVED = ("text", "tokens", "positions", *ANSWERS)
POSITION_FIX = (
    'write a word of the text (John), a word and its occurrence (John#2, or ["John", 2] in '
    "JSONL) or a token index (3; -1 is the last token)"
)
_INT = re.compile(r"[+-]?\d+")
_OCCURRENCE = re.compile(r"(.+)#(\d+)")


def _bad(path: Path, row: int, column: str, problem: str, fix: str) -> ScrubError:
    return ScrubError(f"{path.name} row {row}, column {column}: {problem}", fix=fix)


# -- reading the table ----------------------------------------------------------------------------


def _plain(v: object) -> object:
    """numpy scalars and arrays (as parquet gives them) as Python values; missing as None."""
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        v = v.item()
    return None if is_missing(v) else v


def check_path(path: Path) -> Path:
    """``path``, once known to exist and to end in a readable suffix (checked before any model
    is loaded)."""
    path = Path(path)
    if path.suffix not in FORMATS:
        raise ScrubError(
            f"cannot read {path.name}", fix=f"use a file ending in {', '.join(FORMATS)}"
        )
    if not path.is_file():
        raise ScrubError(f"prompt file {path} does not exist", fix="check the path")
    return path


def read_table(path: Path) -> list[dict]:
    """The file's rows as dicts of plain Python values (missing cells left out)."""
    import pandas as pd

    path = check_path(path)
    if path.suffix == ".jsonl":
        rows = []
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        for i, line in enumerate(lines, 1):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ScrubError(
                    f"{path.name} row {i}: not valid JSON ({e.msg} at character {e.pos})",
                    fix="write one JSON object per line",
                ) from None
            if not isinstance(rec, dict):
                raise ScrubError(
                    f"{path.name} row {i}: a JSON {type(rec).__name__}, not an object",
                    fix='write one object per line, e.g. {"text": "...", "correct": "..."}',
                )
            rows.append(rec)
    else:
        try:
            if path.suffix == ".csv":
                # Every cell as text: numbers in a text column stay words, empty cells are missing.
                frame = pd.read_csv(path, dtype=str, keep_default_na=False)
                frame = _numeric_features(frame)
            else:
                frame = pd.read_parquet(path)
        except (ValueError, OSError, pd.errors.ParserError) as e:
            raise ScrubError(
                f"cannot read {path.name}: {e}", fix=f"write a valid {path.suffix[1:]} file"
            ) from None
        rows = frame.to_dict("records")
    rows = [{str(k): _plain(v) for k, v in r.items()} for r in rows]
    rows = [{k: v for k, v in r.items() if v is not None} for r in rows]
    if not rows:
        raise ScrubError(f"prompt file {path} has no rows", fix="write one prompt per row")
    return rows


def _is_feature(column: str) -> bool:
    return column not in (*RESERVED, "id") and not column.startswith("pos_")


def _numeric_features(frame: pd.DataFrame) -> pd.DataFrame:
    """A CSV feature column whose every cell is a number is read as numbers (as JSONL would)."""
    import pandas as pd

    for col in frame.columns:
        if _is_feature(str(col)) and (frame[col] != "").all():
            with contextlib.suppress(ValueError, TypeError):
                frame[col] = pd.to_numeric(frame[col])
    return frame


def is_ioi_export(rows: Sequence[Mapping]) -> bool:
    """Whether rows were written by ``scrub dataset ioi`` (they carry their template)."""
    return "template_text" in rows[0]


# -- checking rows (no tokenizer needed) ----------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """Where a named position is: a token index, or the ``occurrence``-th ``word``."""

    index: int | None = None
    word: str | None = None
    occurrence: int = 1


@dataclass(frozen=True)
class Row:
    """One checked row: what it says, before tokenisation. ``number`` counts from 1."""

    number: int
    text: str | None
    tokens: tuple[int, ...] | None
    positions: Mapping[str, tuple[str, Ref]]  # name -> (column it came from, reference)
    answers: Mapping[str, object]  # "correct"/"incorrect" -> word or token id, as given
    features: Mapping[str, object]
    id: str | None


def _ref(value: object) -> Ref | None:
    """A position value as a :class:`Ref`, or None if it cannot be read as one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return Ref(index=int(value))
    if isinstance(value, str):
        v = value.strip()
        if _INT.fullmatch(v):
            return Ref(index=int(v))
        m = _OCCURRENCE.fullmatch(v)
        return Ref(word=m.group(1), occurrence=int(m.group(2))) if m else Ref(word=v)
    if isinstance(value, (list, tuple)) and len(value) == 2:
        word, k = value
        if (
            isinstance(word, str)
            and word.strip()
            and isinstance(k, int)
            and not isinstance(k, bool)
        ):
            return Ref(word=word.strip(), occurrence=k)
    return None


def _token_ids(value: object) -> list[int] | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    ints = isinstance(value, (list, tuple)) and all(
        isinstance(x, int) and not isinstance(x, bool) for x in value
    )
    return list(value) if ints and value else None


def check_rows(records: Sequence[Mapping], path: Path) -> list[Row]:
    """Check every row's structure (text or tokens, positions, answers, id, features)."""
    path = Path(path)
    rows = [_check_row(rec, i, path) for i, rec in enumerate(records, 1)]
    # Every row names the same positions and features: a hole would be a silently wrong index.
    for attr, what in (("positions", "position"), ("features", "feature")):
        columns: dict[str, str] = {}
        for r in rows:
            for k, v in getattr(r, attr).items():
                columns.setdefault(k, v[0] if attr == "positions" else k)
        for r in rows:
            for k, col in columns.items():
                if k not in getattr(r, attr) and (attr, k) != ("positions", "END"):
                    raise _bad(
                        path,
                        r.number,
                        col,
                        f"missing; other rows give the {what} {k}",
                        f"give {k} in every row, or drop the column",
                    )
    with_id = [r for r in rows if r.id is not None]
    if with_id and len(with_id) != len(rows):
        r = next(r for r in rows if r.id is None)
        raise _bad(path, r.number, "id", "missing", "give every row an id, or none")
    seen: dict[str, int] = {}
    for r in with_id:
        if r.id in seen:
            raise _bad(
                path,
                r.number,
                "id",
                f"{r.id!r} already names row {seen[r.id]}",
                "ids must be unique within a file",
            )
        seen[r.id] = r.number
    return rows


def _check_row(rec: Mapping, number: int, path: Path) -> Row:
    def bad(column: str, problem: str, fix: str) -> ScrubError:
        return _bad(path, number, column, problem, fix)

    text = rec.get("text")
    if text is not None and (not isinstance(text, str) or not text.strip()):
        raise bad("text", f"{text!r} is not a prompt", "write the prompt as a string")
    tokens = None
    if "tokens" in rec:
        tokens = _token_ids(rec["tokens"])
        if tokens is None:
            raise bad(
                "tokens",
                f"{str(rec['tokens'])[:60]!r} is not a list of token ids",
                'write the ids as a list, e.g. [464, 3290, 373] (in a CSV: "[464, 3290, 373]")',
            )
    if text is None and tokens is None:
        raise bad(
            "text",
            f"missing (columns: {', '.join(rec)})",
            "give the prompt as text (or its token ids as tokens)",
        )

    positions: dict[str, tuple[str, Ref]] = {}
    nested = rec.get("positions", {})
    if not isinstance(nested, dict):
        raise bad(
            "positions", "not an object", 'write e.g. {"S1": "John", "S2": ["John", 2], "END": -1}'
        )
    given = [(f"positions.{k}", str(k), v) for k, v in nested.items()]
    given += [(k, k[len("pos_") :], v) for k, v in rec.items() if k.startswith("pos_")]
    for column, name, value in given:
        if not name or name != name.strip() or " " in name:
            raise bad(column, f"{name!r} is not a position name", "name it like S1, IO or END")
        if name in positions:
            raise bad(
                column, f"position {name} is also given in {positions[name][0]}", "give it once"
            )
        ref = _ref(value)
        if ref is None or (ref.word is not None and ref.occurrence < 1):
            raise bad(column, f"cannot read {value!r} as a position", POSITION_FIX)
        positions[name] = (column, ref)

    answers: dict[str, object] = {}
    for column in ANSWERS:
        value = rec.get(column)
        if value is None:
            continue
        if text is not None:
            if not isinstance(value, str) or not value.strip():
                raise bad(
                    column,
                    f"{value!r} is not a word",
                    'in a row with text the answers are words (write "5" for the number 5)',
                )
            answers[column] = value.strip()
        elif isinstance(value, int) and not isinstance(value, bool):
            answers[column] = value
        elif isinstance(value, str) and _INT.fullmatch(value.strip()):
            answers[column] = int(value)
        else:
            raise bad(
                column,
                f"{value!r} is not a token id",
                "in a row given as tokens the answers are token ids (or give the text)",
            )

    features: dict[str, object] = {}
    for column, value in rec.items():
        if not _is_feature(column):
            continue
        if isinstance(value, (dict, list, tuple)):
            raise bad(
                column,
                f"a {type(value).__name__} is not a feature value",
                "use a string or a number (features are compared for equality)",
            )
        features[column] = value
    ident = rec.get("id")
    if isinstance(ident, (dict, list, tuple)):
        raise bad("id", f"{ident!r} is not an id", "use a string or a number")
    return Row(
        number,
        text,
        tuple(tokens) if tokens is not None else None,
        MappingProxyType(positions),
        MappingProxyType(answers),
        MappingProxyType(features),
        None if ident is None else str(ident),
    )


# -- tokenising and resolving ---------------------------------------------------------------------


def _occurrences(text: str, word: str) -> list[tuple[int, int]]:
    """Character spans of ``word`` in ``text`` as a whole word (not inside a longer one)."""
    left = r"(?<!\w)" if re.match(r"\w", word[0]) else ""
    right = r"(?!\w)" if re.match(r"\w", word[-1]) else ""
    return [m.span() for m in re.finditer(left + re.escape(word) + right, text)]


@dataclass(frozen=True)
class _Encoded:
    """One row's own tokens (no BOS), with offsets and text when it came as text."""

    ids: list[int]
    text: str | None = None
    offsets: list[tuple[int, int]] | None = None


def _encode_rows(rows: Sequence[Row], tokenizer, path: Path) -> list[_Encoded]:
    texts = [r.text for r in rows if r.text is not None]
    enc = encode(tokenizer, texts) if texts else {"input_ids": [], "offset_mapping": []}
    unknown = unknown_words(tokenizer, texts, enc)
    with_text = [r for r in rows if r.text is not None]
    if unknown:
        first = min(unknown)
        words = ", ".join(map(repr, unknown[first][:10]))
        raise _bad(
            path,
            with_text[first].number,
            "text",
            f"the tokenizer does not know {words}",
            "reword, or use a model whose vocabulary has them (a tokenizer that splits only on "
            "spaces needs punctuation spaced out: 'garden .')",
        )
    by_text = iter(zip(texts, enc["input_ids"], enc["offset_mapping"]))
    out = []
    n_vocab = len(tokenizer)
    for r in rows:
        if r.text is None:
            bad_ids = [x for x in r.tokens if not 0 <= x < n_vocab]
            if bad_ids:
                raise _bad(
                    path,
                    r.number,
                    "tokens",
                    f"token id {bad_ids[0]} is not in the tokenizer's vocabulary of {n_vocab}",
                    "use ids from the model's own tokenizer",
                )
            out.append(_Encoded(list(r.tokens)))
            continue
        text, ids, offs = next(by_text)
        if r.tokens is not None and list(r.tokens) != list(ids):
            raise _bad(
                path,
                r.number,
                "tokens",
                f"{list(r.tokens)[:8]}... are not the tokens of the text ({list(ids)[:8]}...)",
                "drop the tokens column, or use the tokenizer that made it",
            )
        out.append(_Encoded(list(ids), text, [tuple(o) for o in offs]))
    return out


def _resolve(row: Row, column: str, ref: Ref, e: _Encoded, pieces, path: Path) -> int:
    """The index in the row's own tokens (0 = first token after BOS) that ``ref`` points at."""
    n = len(e.ids)
    if ref.index is not None:
        if not -n <= ref.index < n:
            raise _bad(
                path,
                row.number,
                column,
                f"token index {ref.index} but the prompt has {n} tokens",
                f"use 0..{n - 1} (or -{n}..-1 from the end)",
            )
        return ref.index % n
    word, k = ref.word, ref.occurrence
    if e.text is not None:
        spans = _occurrences(e.text, word)
    else:  # a row given as tokens: a word is a token that decodes to it
        spans = [(j, j + 1) for j, p in enumerate(pieces) if p.strip() == word]
    if len(spans) < k:
        where = "in the text" if e.text is not None else "as a token"
        found = f"occurs {len(spans)} time(s) {where}, so it has no occurrence {k}"
        raise _bad(
            path,
            row.number,
            column,
            f"the word {word!r} {found if spans else 'does not occur ' + where}",
            "mark a word of the prompt (WORD#K for its K-th occurrence) or a token index",
        )
    if e.text is None:
        return spans[k - 1][0]
    covered = covering_tokens(e.text, e.offsets, spans[k - 1])
    if covered is None:
        a, b = spans[k - 1]
        straddling = [pieces[j] for j, (x, y) in enumerate(e.offsets) if x < b and y > a and x < y]
        raise _bad(
            path,
            row.number,
            column,
            f"the word {word!r} does not start and end at token boundaries (tokens {straddling})",
            "mark whole tokens, or give a token index",
        )
    return covered[-1]


def _answer_ids(rows: Sequence[Row], encoded: Sequence[_Encoded], tokenizer, path: Path) -> dict:
    """(row position, column) -> token id; words are tokenised as they follow the text."""
    out: dict[tuple[int, str], int] = {}
    probes = []
    for i, (r, e) in enumerate(zip(rows, encoded)):
        for column, value in r.answers.items():
            if e.text is None:
                if not 0 <= value < len(tokenizer):
                    raise _bad(
                        path,
                        r.number,
                        column,
                        f"token id {value} is not in the vocabulary",
                        "use ids from the model's own tokenizer",
                    )
                out[(i, column)] = value
            else:
                probes.append((i, column, e.text.rstrip() + " ", value))
    if not probes:
        return out
    enc = encode(tokenizer, [head + word for _, _, head, word in probes])
    for (i, column, head, word), ids, offs in zip(probes, enc["input_ids"], enc["offset_mapping"]):
        covered = covering_tokens(head + word, offs, (len(head), len(head) + len(word)))
        if covered is None or len(covered) != 1:
            pieces = [tokenizer.decode([t]) for t, (a, b) in zip(ids, offs) if b > len(head)]
            raise _bad(
                path,
                rows[i].number,
                column,
                f"{word!r} is not one token (after the text it reads as {pieces})",
                "choose an answer the tokenizer keeps as one token",
            )
        token = ids[covered[0]]
        if token == tokenizer.unk_token_id:
            raise _bad(
                path,
                rows[i].number,
                column,
                f"the tokenizer does not know {word!r}",
                "choose an answer in the model's vocabulary",
            )
        out[(i, column)] = token
    return out


def _check_vocab(path: Path, row: int, column: str, token: int, n_vocab: int | None) -> None:
    """A token id the model has no embedding for would fail deep inside torch."""
    if n_vocab is not None and token >= n_vocab:
        raise _bad(
            path,
            row,
            column,
            f"token id {token} but the model has {n_vocab} tokens",
            "tokenise with the model's own tokenizer",
        )


def build_prompts(
    rows: Sequence[Row],
    tokenizer,
    path: Path,
    *,
    lineage: Sequence[str] = (),
    default_answers: torch.Tensor | None = None,
    n_vocab: int | None = None,
    n_ctx: int | None = None,
) -> PromptSet:
    """Tokenise checked rows and resolve their positions and answers into a PromptSet.

    Answers are required unless ``default_answers`` (one pair per row) stands in for them.
    ``n_vocab`` and ``n_ctx`` check that the prompts fit the model.
    """
    path = Path(path)
    check_fast(tokenizer)
    bos, pad = special_ids(tokenizer)
    encoded = _encode_rows(rows, tokenizer, path)
    for r, e in zip(rows, encoded):
        column = "text" if r.text is not None else "tokens"
        if not e.ids:
            raise _bad(path, r.number, column, "the prompt has no tokens", "write a prompt")
        if n_ctx is not None and len(e.ids) + 1 > n_ctx:
            raise _bad(
                path,
                r.number,
                column,
                f"{len(e.ids) + 1} tokens (with BOS) exceed the model's context of {n_ctx}",
                "shorten the prompt",
            )
        _check_vocab(path, r.number, column, max(e.ids), n_vocab)
    token_rows = [[bos, *e.ids] for e in encoded]
    tokens, mask = pad_rows(token_rows, pad)
    str_tokens = decode_rows(tokenizer, token_rows)

    n = len(rows)
    pos = {k: torch.empty(n, dtype=torch.long) for k in rows[0].positions if k != "END"}
    pos["END"] = torch.tensor([len(e.ids) for e in encoded], dtype=torch.long)  # the default
    for i, (r, e) in enumerate(zip(rows, encoded)):
        for name, (column, ref) in r.positions.items():
            pos[name][i] = 1 + _resolve(r, column, ref, e, str_tokens[i][1:], path)

    ids = _answer_ids(rows, encoded, tokenizer, path)
    answers = torch.empty((n, 2), dtype=torch.long)
    for i, r in enumerate(rows):
        for j, column in enumerate(ANSWERS):
            if (i, column) in ids:
                answers[i, j] = ids[(i, column)]
                _check_vocab(path, r.number, column, ids[(i, column)], n_vocab)
            elif default_answers is not None:
                answers[i, j] = default_answers[i, j]
            else:
                raise _bad(
                    path,
                    r.number,
                    column,
                    "missing",
                    "give the correct next word in `correct` and the incorrect one in `incorrect`",
                )
    columns = {k: tuple(r.features[k] for r in rows) for k in rows[0].features}
    if rows[0].id is not None:
        columns["id"] = tuple(r.id for r in rows)
    return PromptSet(
        specs=(),
        tokens=tokens,
        mask=mask,
        positions=MappingProxyType(pos),
        answers=answers,
        str_tokens=str_tokens,
        pad_id=pad,
        names_pool=(),
        prefix_len=torch.zeros(n, dtype=torch.long),
        lineage=tuple(lineage),
        tokenizer=tokenizer,
        text_rows=tuple(r.text for r in rows),
        columns=MappingProxyType(columns),
    )


# -- the entry points -----------------------------------------------------------------------------


def _lineage(path: Path) -> str:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return f"file({path.name}, sha256={digest})"


def load_prompts(
    path: Path, tokenizer, *, n_vocab: int | None = None, n_ctx: int | None = None
) -> PromptSet:
    """The prompts of ``path`` (a prompt file, or a file written by ``scrub dataset ioi``)."""
    path = Path(path)
    records = read_table(path)
    if is_ioi_export(records):
        return _read_export(path, tokenizer, n_vocab, n_ctx)
    rows = check_rows(records, path)
    return build_prompts(
        rows, tokenizer, path, lineage=(_lineage(path),), n_vocab=n_vocab, n_ctx=n_ctx
    )


def _read_export(path: Path, tokenizer, n_vocab: int | None, n_ctx: int | None) -> PromptSet:
    """A file ``scrub dataset ioi`` wrote, checked against the model's vocabulary and context."""
    from scrub.data.registry import check_fits

    return check_fits(read_promptset(path, tokenizer), n_vocab=n_vocab, n_ctx=n_ctx)


def load_pair(
    clean: Path,
    corrupted: Path,
    tokenizer,
    *,
    n_vocab: int | None = None,
    n_ctx: int | None = None,
) -> tuple[PromptSet, PromptSet]:
    """Clean prompts and their corrupted versions; row i of the second corrupts row i of the first.

    With an ``id`` column in both files, corrupted rows are matched to clean rows by id (in any
    order); without, by row order. The corrupted file may leave out answers (the clean row's are
    used, as patching uses them) and positions. Each pair must be equally many tokens long.
    """
    clean, corrupted = Path(clean), Path(corrupted)
    clean_ps = load_prompts(clean, tokenizer, n_vocab=n_vocab, n_ctx=n_ctx)
    clean_ids = clean_ps.columns.get("id")
    records = read_table(corrupted)
    if is_ioi_export(records):
        if clean_ids is not None:
            raise ScrubError(
                f"{clean.name} has ids but {corrupted.name} (written by scrub dataset ioi) has "
                "none",
                fix="give both files an id column, or neither",
            )
        bad_ps = _read_export(corrupted, tokenizer, n_vocab, n_ctx)  # its table is read above
        numbers = list(range(1, len(bad_ps) + 1))
    else:
        rows = _align(check_rows(records, corrupted), clean_ids, clean, corrupted, len(clean_ps))
        numbers = [r.number for r in rows]
        bad_ps = build_prompts(
            rows,
            tokenizer,
            corrupted,
            lineage=(_lineage(corrupted),),
            default_answers=clean_ps.answers,
            n_vocab=n_vocab,
            n_ctx=n_ctx,
        )
    if len(bad_ps) != len(clean_ps):
        raise ScrubError(
            f"{clean.name} has {len(clean_ps)} rows but {corrupted.name} has {len(bad_ps)}",
            fix="without ids, row i of the corrupted file corrupts row i of the clean file: give "
            "both the same number of rows, or tie rows with an id column",
        )
    for i, number in enumerate(numbers):
        if clean_ps.width(i) != bad_ps.width(i):
            ident = f" (id {clean_ids[i]!r})" if clean_ids is not None else ""
            raise _bad(
                corrupted,
                number,
                "text",
                f"{bad_ps.width(i) - 1} tokens{ident} but its clean "
                f"row has {clean_ps.width(i) - 1}",
                "patching needs a corrupted prompt exactly as many tokens long as its clean prompt",
            )
    return clean_ps, bad_ps


def _align(
    rows: list[Row], clean_ids: Sequence[str] | None, clean: Path, corrupted: Path, n_clean: int
) -> list[Row]:
    """Corrupted rows in the clean file's order (by id), or as they are (no ids)."""
    has_ids = rows[0].id is not None
    if clean_ids is None and not has_ids:
        return rows
    if clean_ids is None or not has_ids:
        with_ids = clean.name if clean_ids is not None else corrupted.name
        raise ScrubError(
            f"only {with_ids} has an id column", fix="give both files an id column, or neither"
        )
    by_id = {r.id: r for r in rows}
    known = set(clean_ids)
    for r in rows:
        if r.id not in known:
            raise _bad(
                corrupted,
                r.number,
                "id",
                f"{r.id!r} is not an id of {clean.name}",
                "give each corrupted row the id of the clean row it corrupts",
            )
    for i, ident in enumerate(clean_ids):
        if ident not in by_id:
            raise _bad(
                clean,
                i + 1,
                "id",
                f"no row of {corrupted.name} has the id {ident!r}",
                "give every clean row a corrupted row with its id",
            )
    return [by_id[ident] for ident in clean_ids]


# -- writing --------------------------------------------------------------------------------------


def prompt_records(ps: PromptSet) -> list[dict]:
    """One prompt-file row per prompt of ``ps``: text (if it has one), tokens, positions as token
    indices, answers (words for rows with text, else ids) and features. Reads back to ``ps``."""
    texts = ps.texts if ps.specs else ps.text_rows
    features = {k: v for k, v in ps.features.items() if not k.startswith("pos_")}
    out = []
    for i, text in enumerate(texts):
        own = ps.tokens[i, 1 : ps.width(i)].tolist()
        rec: dict = {} if text is None else {"text": text}
        rec["tokens"] = own
        positions = {}
        for name, p in ps.positions.items():
            if not 1 <= int(p[i]) < ps.width(i):
                raise ScrubError(
                    f"row {i + 1}: position {name} is {int(p[i])}, not a token of the prompt",
                    fix="only positions inside the prompt can be written",
                )
            positions[name] = int(p[i]) - 1
        rec["positions"] = positions
        for j, column in enumerate(ANSWERS):
            token = int(ps.answers[i, j])
            rec[column] = token if text is None else ps.tokenizer.decode([token]).strip()
        rec |= {k: _plain(v[i]) for k, v in features.items()}
        out.append(rec)
    return out


def write_prompts(ps: PromptSet, path: Path) -> None:
    """Write ``ps`` as a prompt file (format by suffix), atomically: complete or absent."""

    def flatten(r: dict, suffix: str) -> dict:
        f = {k: v for k, v in r.items() if k != "positions"}
        f |= {f"pos_{k}": v for k, v in r["positions"].items()}
        f |= {k: str(f[k]) for k in ANSWERS}  # words and ids in one column: text reads back
        if suffix == ".csv":
            f["tokens"] = json.dumps(f["tokens"])
        return f

    write_records(path, prompt_records(ps), flatten)


def preview(ps: PromptSet, rows: int = 5) -> str:
    """The first ``rows`` prompts with each named position's token and the answers."""
    texts = ps.texts
    features = [k for k in ps.features if not k.startswith("pos_")]
    lines = [
        f"{len(ps)} prompts, {ps.tokens.shape[1]} tokens wide (BOS included)",
        f"positions: {', '.join(ps.positions)}",
        f"features: {', '.join(features) or '(none)'}",
        f"lineage: {' -> '.join(ps.lineage)}",
    ]
    for i in range(min(rows, len(ps))):
        marks = "  ".join(
            f"{name}={int(p[i])}:{ps.str_tokens[i][int(p[i])].strip()!r}"
            for name, p in ps.positions.items()
        )
        correct, incorrect = (ps.tokenizer.decode([int(t)]).strip() for t in ps.answers[i])
        lines.append(f"{i + 1:>3}  {texts[i][:70]!r}")
        lines.append(f"     {marks}  correct={correct!r} incorrect={incorrect!r}")
    return "\n".join(lines)


__all__ = [
    "FORMATS",
    "build_prompts",
    "check_rows",
    "load_pair",
    "load_prompts",
    "preview",
    "prompt_records",
    "read_table",
    "write_prompts",
]
