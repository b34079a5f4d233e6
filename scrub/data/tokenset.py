"""TokenSet: the minimal dataset the engine and patching read, for data that is not IOI text.

Any value with these attributes works as a dataset (a :class:`~scrub.data.PromptSet` has them
all): ``tokens`` [n, t], ``mask`` [n, t], ``positions`` (name -> [n] indices), ``answers``
[n, 2] (the two tokens a logit difference compares), ``features`` (name -> column), ``lineage``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from scrub.errors import ScrubError

if TYPE_CHECKING:  # pandas costs a quarter second to import: only where a frame is made
    import pandas as pd


@dataclass(frozen=True, eq=False)
class TokenSet:
    """Token ids with named positions, answer pairs and feature columns.

    >>> ts = TokenSet.build(torch.tensor([[0, 5, 6]]), {"END": [2]}, [[5, 6]], {"kind": ["a"]})
    >>> ts.positions["END"].tolist(), len(ts)
    ([2], 1)
    """

    tokens: Int[Tensor, "n t"]
    mask: Bool[Tensor, "n t"]
    positions: Mapping[str, Int[Tensor, " n"]]
    answers: Int[Tensor, "n 2"]
    features: Mapping[str, tuple]
    lineage: tuple[str, ...] = ()

    @classmethod
    def build(cls, tokens, positions, answers, features=None, mask=None, lineage=()) -> TokenSet:
        tokens = torch.as_tensor(tokens, dtype=torch.long)
        n = tokens.shape[0]
        pos = {k: torch.as_tensor(v, dtype=torch.long) for k, v in positions.items()}
        feats = {k: tuple(v) for k, v in (features or {}).items()}
        if "END" not in pos:
            raise ScrubError("a dataset needs an END position", fix="add positions['END']")
        bad = [k for k, v in [*pos.items(), *feats.items()] if len(v) != n]
        if bad:
            raise ScrubError(f"columns {bad} do not have one value per row ({n} rows)")
        mask = torch.ones_like(tokens, dtype=torch.bool) if mask is None else torch.as_tensor(mask)
        return cls(
            tokens,
            mask,
            MappingProxyType(pos),
            torch.as_tensor(answers, dtype=torch.long),
            MappingProxyType(feats),
            tuple(lineage),
        )

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        cols = {f"pos_{k}": v.tolist() for k, v in self.positions.items()}
        return pd.DataFrame({**{k: list(v) for k, v in self.features.items()}, **cols})
