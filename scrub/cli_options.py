"""Command-line options several commands share, as typer annotations (no torch import).

>>> def command(device: Device = "auto", dtype: Dtype = "float32") -> None: ...
"""

from __future__ import annotations

from typing import Annotated

import typer

Device = Annotated[
    str, typer.Option("--device", help="auto (a GPU when there is one), cpu, cuda[:i] or mps")
]
Dtype = Annotated[str, typer.Option("--dtype", help="float32, float64, bfloat16 or float16")]
