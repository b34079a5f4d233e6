"""Circuit discovery in causal-scrubbing semantics, and scoring against a known circuit.

* :mod:`~scrub.discover.space`: sites (head at a named position), edges, the candidate space.
* :mod:`~scrub.discover.attribution`: path-patching scores that order the search.
* :mod:`~scrub.discover.search`: the greedy forward build, every accepted step scrubbed.
* :mod:`~scrub.discover.writer`: the found hypothesis as a readable hypothesis file.
* :mod:`~scrub.discover.graph`, :mod:`~scrub.discover.baselines`: an edge-masked differentiable
  forward pass, and the EAP, ACDC-style and path-patching-ranking baselines built on it.
* :mod:`~scrub.discover.scoring`: ROC AUC against ``circuit.json``; the comparison table.
* :mod:`~scrub.discover.command`: ``scrub discover``.

Submodules import torch; this package itself does not.
"""
