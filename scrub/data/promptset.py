"""PromptSet: tokenised prompts with named positions, answers and feature columns.

A PromptSet is built from :class:`PromptSpec` rows (what each prompt says) by rendering their text
and tokenising it with any Hugging Face fast tokenizer. Positions are found from the tokenizer's
character offsets and then verified by decoding, so a name split into several tokens or merged with
punctuation can never be silently mislabelled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from types import MappingProxyType
from typing import TYPE_CHECKING

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from scrub.errors import ScrubError

if TYPE_CHECKING:  # pandas costs a quarter second to import: only where a frame is made
    import pandas as pd

#: Named positions every IOI PromptSet resolves per row (-1 where a position is undefined).
POSITION_NAMES = ("IO", "IO-1", "IO+1", "S1", "S1-1", "S1+1", "S2", "END")
ORDERS = ("ABBA", "BABA")


@dataclass(frozen=True)
class PromptSpec:
    """What one IOI prompt says, before tokenisation.

    ``template`` is a BABA template with [A] (IO) and [B] (S) placeholders; ``order`` chooses which
    name comes first in the first clause. ``s1`` and ``s2`` differ only in ABC-style corruptions.
    """

    template_id: int
    template: str
    order: str
    io: str
    s1: str
    s2: str
    place: str
    obj: str
    prefix: tuple[str, ...] = ()

    def render(self) -> tuple[str, dict[str, tuple[int, int]]]:
        """The prompt text (answer removed) and the character span of IO, S1 and S2.

        >>> spec = PromptSpec(0, "When [B] and [A] left, [B] waved to [A]", "BABA",
        ...                   "Mary", "John", "John", "store", "ring")
        >>> spec.render()
        ('When John and Mary left, John waved to', {'S1': (5, 9), 'IO': (14, 18), 'S2': (25, 29)})
        """
        first_b, first_a = ("S1", "IO") if self.order == "BABA" else ("IO", "S1")
        fill = {"IO": self.io, "S1": self.s1, "S2": self.s2}
        body = self.template[: self.template.rstrip().rfind("[A]")].rstrip()
        text = " ".join(self.prefix) + " " if self.prefix else ""
        spans: dict[str, tuple[int, int]] = {}
        seen_a = seen_b = 0
        i = 0
        while i < len(body):
            if body.startswith("[A]", i) or body.startswith("[B]", i):
                is_a = body[i + 1] == "A"
                role = (
                    (first_a if seen_a == 0 else "IO")
                    if is_a
                    else (first_b if seen_b == 0 else "S2")
                )
                seen_a, seen_b = seen_a + is_a, seen_b + (not is_a)
                spans[role] = (len(text), len(text) + len(fill[role]))
                text += fill[role]
                i += 3
            elif body.startswith("[PLACE]", i):
                text, i = text + self.place, i + len("[PLACE]")
            elif body.startswith("[OBJECT]", i):
                text, i = text + self.obj, i + len("[OBJECT]")
            else:
                text, i = text + body[i], i + 1
        return text, spans


@dataclass(frozen=True, eq=False)
class PromptSet:
    """Token ids with named positions, answers and features; row i of every field is prompt i.

    Tensors are right-padded with ``pad_id``; ``mask`` marks real tokens. ``positions[name][i]`` is
    the index of that named position in row i (-1 if undefined). ``answers[:, 0]`` is the correct
    token (IO), ``answers[:, 1]`` the incorrect one (S, the name at S1). Values are never mutated:
    transformations return new PromptSets (see :mod:`scrub.data.corrupt`).

    IOI prompts carry their ``specs``, from which texts and features follow (and which corruptions
    rewrite). Prompts read from a user's file (:mod:`scrub.data.promptfile`) have no specs: their
    texts (None for a row given as token ids) and feature columns are stored as read.
    """

    specs: tuple[PromptSpec, ...]
    tokens: Int[Tensor, "n t"]
    mask: Bool[Tensor, "n t"]
    positions: Mapping[str, Int[Tensor, " n"]]
    answers: Int[Tensor, "n 2"]
    str_tokens: tuple[tuple[str, ...], ...]
    pad_id: int
    names_pool: tuple[str, ...]
    prefix_len: Int[Tensor, " n"]
    lineage: tuple[str, ...] = ()
    excluded_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return self.tokens.shape[0]

    @property
    def texts(self) -> tuple[str, ...]:
        if self.specs:
            return tuple(s.render()[0] for s in self.specs)
        decode = self.tokenizer.decode
        return tuple(
            t if t is not None else decode(self.tokens[i, 1 : self.width(i)].tolist())
            for i, t in enumerate(self.text_rows)
        )

    def width(self, i: int) -> int:
        """How many real tokens (BOS included) row ``i`` has."""
        return int(self.mask[i].sum())

    @cached_property
    def features(self) -> Mapping[str, tuple]:
        """Feature columns for agree-on rules and tables (names, template, order, positions)."""
        pos = {f"pos_{k}": tuple(v.tolist()) for k, v in self.positions.items()}
        if not self.specs:
            return MappingProxyType({**self.columns, **pos})
        cols = {
            "template": tuple(s.template_id for s in self.specs),
            "order": tuple(s.order for s in self.specs),
            "io": tuple(s.io for s in self.specs),
            "s": tuple(s.s1 for s in self.specs),
            "s1": tuple(s.s1 for s in self.specs),
            "s2": tuple(s.s2 for s in self.specs),
            "place": tuple(s.place for s in self.specs),
            "object": tuple(s.obj for s in self.specs),
            "prefix_len": tuple(self.prefix_len.tolist()),
            **pos,
        }
        return MappingProxyType(cols)

    def to_frame(self) -> pd.DataFrame:
        """One row per prompt: text plus every feature column."""
        import pandas as pd

        return pd.DataFrame({"text": self.texts, **{k: list(v) for k, v in self.features.items()}})

    def with_lineage(self, step: str) -> PromptSet:
        return replace(self, lineage=(*self.lineage, step))

    #: The tokenizer that made the tokens (kept out of repr: it is large).
    tokenizer: object = field(default=None, repr=False)
    #: Prompts from a file: each row's text (None if given as token ids), and feature columns.
    text_rows: tuple[str | None, ...] = ()
    columns: Mapping[str, tuple] = field(default_factory=lambda: MappingProxyType({}))

    def rebuild(self, specs: Sequence[PromptSpec], step: str) -> PromptSet:
        """A PromptSet of ``specs`` with this tokenizer and names; ``step`` joins the lineage."""
        return build_promptset(
            specs,
            self.tokenizer,
            names_pool=self.names_pool,
            lineage=(*self.lineage, step),
            excluded_names=self.excluded_names,
        )


def covering_tokens(
    text: str, offsets: Sequence[tuple[int, int]], span: tuple[int, int]
) -> list[int] | None:
    """Indices of the tokens that exactly cover ``span`` of ``text``, or None if there are none or
    a token crosses either end (the first token may carry leading whitespace, as GPT-2's do).

    >>> covering_tokens("to Mary.", [(0, 2), (2, 7), (7, 8)], (3, 7))
    [1]
    >>> covering_tokens("garden.", [(0, 7)], (0, 6)) is None
    True
    """
    start, end = span
    inside = [j for j, (a, b) in enumerate(offsets) if a < end and b > start and a < b]
    if not inside:
        return None
    a, b = offsets[inside[0]]
    piece = text[a:b]
    if a + len(piece) - len(piece.lstrip()) != start or offsets[inside[-1]][1] != end:
        return None
    return inside


def _name_token(text: str, offsets: Sequence[tuple[int, int]], span: tuple[int, int]) -> int:
    """Index of the one token covering exactly ``span`` (ignoring a leading space), or -1."""
    found = covering_tokens(text, offsets, span)
    return found[0] if found is not None and len(found) == 1 else -1


def _decode_one(tokenizer, token_id: int, cache: dict[int, str]) -> str:
    if token_id not in cache:
        cache[token_id] = tokenizer.decode([token_id])
    return cache[token_id]


def single_token_names(tokenizer, names: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split ``names`` into those the tokenizer keeps as one token in a prompt, and the rest.

    >>> kept, excluded = single_token_names(tok, ["Mary", "Bartholomew"])  # doctest: +SKIP
    """
    probes = [f"Then, {n} said to {n}" for n in names]
    enc = tokenizer(probes, add_special_tokens=False, return_offsets_mapping=True)
    cache: dict[int, str] = {}
    kept, excluded = [], []
    for name, text, ids, offs in zip(names, probes, enc["input_ids"], enc["offset_mapping"]):
        start = len("Then, ")
        j = _name_token(text, offs, (start, start + len(name)))
        ok = j >= 0 and _decode_one(tokenizer, ids[j], cache).strip() == name
        (kept if ok else excluded).append(name)
    return tuple(kept), tuple(excluded)


def check_fast(tokenizer) -> None:
    """scrub finds positions from character offsets, which only fast tokenizers give."""
    if not getattr(tokenizer, "is_fast", False):
        raise ScrubError(
            f"tokenizer {type(tokenizer).__name__} is not a fast tokenizer",
            fix="load it with AutoTokenizer.from_pretrained(path, use_fast=True)",
        )


def special_ids(tokenizer) -> tuple[int, int]:
    """(BOS, pad) ids: BOS goes first in every row, pad fills rows right of their end."""
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else 0
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else bos
    return bos, pad


def encode(tokenizer, texts: Sequence[str]):
    """``texts`` tokenised without special tokens, with character offsets (a BatchEncoding)."""
    return tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)


def pad_rows(
    rows: Sequence[Sequence[int]], pad: int
) -> tuple[Int[Tensor, "n t"], Bool[Tensor, "n t"]]:
    """Right-pad token rows with ``pad``; the mask marks real tokens."""
    n, t_max = len(rows), max(len(r) for r in rows)
    tokens = torch.full((n, t_max), pad, dtype=torch.long)
    mask = torch.zeros((n, t_max), dtype=torch.bool)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = True
    return tokens, mask


def decode_rows(tokenizer, rows: Sequence[Sequence[int]]) -> tuple[tuple[str, ...], ...]:
    """Every token of every row decoded on its own (as shown in tables and plots)."""
    cache: dict[int, str] = {}
    return tuple(tuple(_decode_one(tokenizer, x, cache) for x in row) for row in rows)


def unknown_words(tokenizer, texts: Sequence[str], enc) -> dict[int, list[str]]:
    """Per row, the words the tokenizer maps to its unknown token (they would silently become
    another word)."""
    unk = tokenizer.unk_token_id
    if unk is None:
        return {}
    found: dict[int, list[str]] = {}
    for i, (text, ids, offs) in enumerate(zip(texts, enc["input_ids"], enc["offset_mapping"])):
        words = [text[a:b].strip() for tok, (a, b) in zip(ids, offs) if tok == unk]
        if words:
            found[i] = sorted(set(words))
    return found


def build_promptset(
    specs: Sequence[PromptSpec],
    tokenizer,
    *,
    names_pool: Sequence[str],
    lineage: Sequence[str] = (),
    excluded_names: Sequence[str] = (),
) -> PromptSet:
    """Tokenise ``specs`` (BOS first, right-padded) and resolve and verify every named position."""
    if not specs:
        raise ScrubError("a PromptSet needs at least one prompt", fix="ask for n >= 1")
    check_fast(tokenizer)
    bos, pad = special_ids(tokenizer)
    rendered = [s.render() for s in specs]
    texts = [t for t, _ in rendered]
    enc = encode(tokenizer, texts)
    missing = sorted({w for words in unknown_words(tokenizer, texts, enc).values() for w in words})
    if missing:
        raise ScrubError(
            f"the tokenizer does not know the word(s) {', '.join(map(repr, missing[:20]))}",
            fix="use a model whose vocabulary covers the dataset, or remove those words",
        )
    rows = [[bos, *ids] for ids in enc["input_ids"]]
    tokens, mask = pad_rows(rows, pad)
    n = len(specs)
    pos = {k: torch.full((n,), -1, dtype=torch.long) for k in POSITION_NAMES}
    prefix_len = torch.zeros((n,), dtype=torch.long)
    cache: dict[int, str] = {}
    for i, ((text, spans), ids, offs, spec) in enumerate(
        zip(rendered, enc["input_ids"], enc["offset_mapping"], specs)
    ):
        want = {"IO": spec.io, "S1": spec.s1, "S2": spec.s2}
        for role, span in spans.items():
            j = _name_token(text, offs, span)
            got = _decode_one(tokenizer, ids[j], cache).strip() if j >= 0 else None
            if got != want[role]:
                raise ScrubError(
                    f"prompt {i}: the name {want[role]!r} at {role} is not a single token "
                    f"(decoded {got!r}) in {text!r}",
                    fix="exclude it from the names list (scrub excludes such names when sampling)",
                )
            pos[role][i] = j + 1  # +1 for BOS
        for base in ("IO", "S1"):
            pos[f"{base}-1"][i] = pos[base][i] - 1
            pos[f"{base}+1"][i] = pos[base][i] + 1
        pos["END"][i] = len(rows[i]) - 1
        prefix_chars = len(" ".join(spec.prefix))
        prefix_len[i] = sum(1 for a, _ in offs if a < prefix_chars)
    answers = torch.stack(
        [tokens[torch.arange(n), pos["IO"]], tokens[torch.arange(n), pos["S1"]]], 1
    )
    return PromptSet(
        specs=tuple(specs),
        tokens=tokens,
        mask=mask,
        positions=MappingProxyType(pos),
        answers=answers,
        str_tokens=decode_rows(tokenizer, rows),
        pad_id=pad,
        names_pool=tuple(names_pool),
        lineage=tuple(lineage),
        prefix_len=prefix_len,
        excluded_names=tuple(excluded_names),
        tokenizer=tokenizer,
    )
