"""Patching experiments: activation patching and path patching, exact and batched.

>>> from scrub.patching import PatchInputs, Receivers, path_scan     # doctest: +SKIP
>>> inputs = PatchInputs.from_promptsets(clean_ps, corrupted_ps)     # doctest: +SKIP
>>> result = path_scan(model, inputs, "heads", Receivers.parse("q:9.6,9.9"))  # doctest: +SKIP
>>> result.to_frame()                                                # doctest: +SKIP
"""

import importlib

# Submodules import torch; resolve names lazily so `scrub --help` and `import scrub.cli` stay fast.
_HOMES = {
    **dict.fromkeys(
        [
            "ACTIVATION_KINDS",
            "activation_patch",
            "activation_scan",
        ],
        "scrub.patching.activation",
    ),
    **dict.fromkeys(
        ["Component", "PatchInputs", "RunCache", "run_cache", "run_caches"],
        "scrub.patching.inputs",
    ),
    **dict.fromkeys(
        ["Receivers", "path_patch", "path_scan", "sender_components"], "scrub.patching.path"
    ),
    **dict.fromkeys(
        ["NORMALIZATIONS", "PatchResult", "PatchSettings", "Score"], "scrub.patching.results"
    ),
}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'scrub.patching' has no attribute {name!r}")


__all__ = [
    "ACTIVATION_KINDS",
    "NORMALIZATIONS",
    "Component",
    "PatchInputs",
    "PatchResult",
    "PatchSettings",
    "Receivers",
    "RunCache",
    "Score",
    "activation_patch",
    "activation_scan",
    "path_patch",
    "path_scan",
    "run_cache",
    "run_caches",
    "sender_components",
]
