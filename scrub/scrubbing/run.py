"""Run a hypothesis by model name: load the model, build its dataset, scrub, write results."""

from __future__ import annotations

import json
from pathlib import Path

from scrub.atomic import atomic_path
from scrub.errors import ScrubError
from scrub.scrubbing.hypothesis import Hypothesis
from scrub.scrubbing.result import ScrubResult

#: The default pool: large enough that an agree-on-IO-name draw almost never finds a name only
#: once (with ~100 names, P(some name appears once in 2,000 rows) is about 1e-5).
DEFAULT_POOL = 2000
#: Reference examples when no n is given (with a prompt file: all its rows).
DEFAULT_N = 200


def run_hypothesis(
    hypothesis: Hypothesis,
    model,
    *,
    n: int | None = None,
    seed: int = 0,
    metric: str = "logit-diff",
    pool: int | None = None,
    max_memory: int | None = None,
    progress: bool = False,
    dataset: Path | None = None,
) -> ScrubResult:
    """Scrub ``hypothesis`` on ``model`` (a Model or a name) over ``n`` rows of its dataset.

    ``dataset`` is a prompt file (:mod:`scrub.data.promptfile`) to use instead of generating the
    hypothesis's dataset: every row is in the pool, and ``n`` (default: all rows) are references.
    """
    from scrub.data.registry import dataset_for
    from scrub.scrubbing.experiment import DEFAULT_MAX_MEMORY, scrub_hypothesis
    from scrub.scrubbing.validate import check_model_has_mlps

    if dataset is not None:
        from scrub.data.promptfile import check_path

        check_path(dataset)
        if pool is not None:
            raise ScrubError(
                "--pool sizes a generated dataset",
                fix="leave it out: every row of --dataset is in the pool",
            )
    if isinstance(model, str):
        from scrub.models import load_model

        model = load_model(model)
    m = model
    check_model_has_mlps(hypothesis, m.info.name, m.info.has_mlps)
    if dataset is not None:
        from scrub.data.promptfile import load_prompts

        ds = load_prompts(dataset, m.tokenizer, n_vocab=m.info.d_vocab, n_ctx=m.info.n_ctx)
        n = len(ds) if n is None else n
    else:
        n = DEFAULT_N if n is None else n
        ds = dataset_for(hypothesis.dataset, max(n, pool or DEFAULT_POOL), seed=seed, model=m)
    return scrub_hypothesis(
        hypothesis,
        m,
        ds,
        n=n,
        seed=seed,
        metric=metric,
        max_memory=max_memory or DEFAULT_MAX_MEMORY,
        progress=progress,
    )


def write_result(result: ScrubResult, path: Path) -> None:
    """Write ``result.to_json()`` atomically."""
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(json.dumps(result.to_json(), indent=1))
