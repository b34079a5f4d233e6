"""Circuit discovery in causal-scrubbing semantics, and scoring against a known circuit.

* :mod:`~scrub.discover.space`: sites (head at a named position), edges, the candidate space.
* :mod:`~scrub.discover.data`: the rows a search scrubs and the prompt pairs that order it (IOI
  with one or several corruptions mixed, or the user's prompt files).
* :mod:`~scrub.discover.attribution`: path-patching scores that order the search.
* :mod:`~scrub.discover.search`: the build from the output, a beam search per expansion with
  every step's candidates scrubbed in one batched pass, the chosen step verified.
* :mod:`~scrub.discover.ranking`: the found hypothesis as a ranking of every site and edge.
* :mod:`~scrub.discover.writer`: the found hypothesis as a readable hypothesis file.
* :mod:`~scrub.discover.graph`, :mod:`~scrub.discover.baselines`: an edge-masked differentiable
  forward pass, and the EAP, ACDC-style and path-patching-ranking baselines built on it.
* :mod:`~scrub.discover.scoring`, :mod:`~scrub.discover.compare`: ROC AUC against
  ``circuit.json``; the comparison table.
* :mod:`~scrub.discover.command`: ``scrub discover``.

Submodules import torch; this package itself does not.
"""
