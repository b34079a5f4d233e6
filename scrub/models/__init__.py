"""The model layer: loading models, typed activation sites, scoped hooks, a functional kernel.

>>> from scrub.models import Site, SiteKind, load_model
>>> model = load_model("toy-ioi")                       # doctest: +SKIP
>>> cache = model.run_with_cache(tokens, [Site(SiteKind.Z, 0)])   # doctest: +SKIP

The functional GPT-2 forward pass lives in :mod:`scrub.models.kernel`.
"""

from scrub.models.handle import Model, ModelInfo, Site, SiteKind, hook_name
from scrub.models.load import available_models, load_model

__all__ = [
    "Model",
    "ModelInfo",
    "Site",
    "SiteKind",
    "available_models",
    "hook_name",
    "load_model",
]
