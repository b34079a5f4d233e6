"""``scrub test``: the formal tests of one hypothesis, as a table.

Register with ``app.command("test")(formal_tests_command)``. The model, dataset and engine load
inside the command only.

    scrub test hypotheses/toy_ioi.py::full_circuit \\
        --tests equivalence,localisation,minimality,sufficiency --n 200 --seed 0 --k 20
"""

from __future__ import annotations

from typing import Annotated

import typer

from scrub.cli_options import Device, Dtype
from scrub.errors import ScrubError


def parse_tests(text: str) -> list[str]:
    from scrub.stats.formal import TESTS

    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in names if t not in TESTS]
    if bad or not names:
        raise ScrubError(
            f"unknown test(s) {', '.join(bad) or '(none given)'}",
            fix=f"choose from {','.join(TESTS)}",
        )
    return names


def parse_away(text: str):
    """``random`` or a comma list of features to agree on (e.g. ``template``)."""
    from scrub.scrubbing.hypothesis import agree, random

    if text == "random":
        return random
    return agree(*[f.strip() for f in text.split(",") if f.strip()])


def format_stats(stats, *, alpha: float) -> list[str]:
    """One line per test result with raw and Holm-adjusted p-values (Holm over these rows)."""
    from scrub.stats.result import holm

    adjusted = holm([s.p_value for s in stats])
    width = min(40, max([7, *(len(s.subject) for s in stats)]))
    head = (
        f"{'test':<13} {'subject':<{width}} {'estimate':>8} {'95% CI':>17} {'p':>9} "
        f"{'p (Holm)':>9}  result"
    )
    lines = [head, "-" * len(head)]
    for s, ph in zip(stats, adjusted):
        ci = f"[{s.ci[0]:.3f}, {s.ci[1]:.3f}]"
        verdict = "PASS" if ph <= alpha else "fail"
        lines.append(
            f"{s.kind.value:<13} {s.subject[:width]:<{width}} {s.estimate:>8.3f} {ci:>17} "
            f"{s.p_value:>9.2g} {ph:>9.2g}  {verdict}"
        )
    return lines


def formal_tests_command(
    ref: Annotated[str, typer.Argument(help="FILE::NAME of a hypothesis")],
    tests: Annotated[
        str, typer.Option("--tests", help="equivalence,localisation,minimality,sufficiency")
    ] = "equivalence,localisation,minimality,sufficiency",
    model: Annotated[str, typer.Option("--model", help="toy-ioi, gpt2-small or a path")] = (
        "toy-ioi"
    ),
    n: Annotated[int, typer.Option("--n", help="Reference examples")] = 200,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    k: Annotated[int, typer.Option("--k", help="Random nodes for minimality's null")] = 20,
    k_sufficiency: Annotated[
        int, typer.Option("--k-sufficiency", help="Random hypotheses (rank p >= 1/(K+1))")
    ] = 40,
    pool: Annotated[int | None, typer.Option("--pool", help="Rows to resample from")] = None,
    epsilon: Annotated[float, typer.Option("--epsilon", help="Equivalence margin")] = 0.1,
    delta: Annotated[float, typer.Option("--delta", help="Localisation margin")] = 0.1,
    alpha: Annotated[float, typer.Option("--alpha", help="Level after Holm adjustment")] = 0.05,
    away: Annotated[
        str,
        typer.Option("--away", help="How a node is scrubbed away: random, or features to agree on"),
    ] = "random",
    device: Device = "auto",
    dtype: Dtype = "float32",
) -> None:
    """Formal tests of a hypothesis (equivalence, localisation, minimality, sufficiency)."""
    from scrub import arguments as args_check

    # Cheap checks first: nothing above imports torch.
    names = parse_tests(tests)
    if min(k, k_sufficiency) < 2:
        raise ScrubError("--k and --k-sufficiency need at least 2 random draws", fix="use 20+")
    rule = parse_away(away)
    args_check.check_count(n, "--n")
    args_check.check_seed(seed)
    args_check.check_pool(pool, n)
    import torch

    from scrub.data.registry import dataset_for
    from scrub.models import load_model
    from scrub.models.load import placement
    from scrub.scrubbing.loader import load_hypothesis
    from scrub.scrubbing.run import DEFAULT_POOL
    from scrub.stats import formal

    placement(device, dtype)
    args_check.check_model(model)
    hypothesis = load_hypothesis(ref)
    torch.set_num_threads(1)  # the same numbers as a claims session (bit for bit)
    m = load_model(model, device=device, dtype=dtype)
    ds = dataset_for(hypothesis.dataset, max(n, pool or DEFAULT_POOL), seed=seed, model=m)
    setup = formal.Setup.on(m, ds, n=n, seed=seed, away=rule)
    base = setup.run(hypothesis)
    typer.echo(
        f"hypothesis {hypothesis.name}  model {model}  n={base.n}  seed {seed}  "
        f"away {rule}  recovered {base.recovered:.3f} +- {base.recovered_se:.3f}"
    )
    stats = []
    for name in names:
        if name == "equivalence":
            stats.append(formal.equivalence(setup, hypothesis, epsilon=epsilon))
        elif name == "localisation":
            stats.append(formal.localisation(setup, hypothesis, delta=delta))
        elif name == "minimality":
            stats.extend(formal.minimality(setup, hypothesis, k=k))
        else:
            stats.append(formal.sufficiency(setup, hypothesis, k=k_sufficiency))
    for line in format_stats(stats, alpha=alpha):
        typer.echo(line)
    for s in stats:
        typer.echo(f"  {s.kind.value} {s.subject}: null {s.null!r}; {s.detail}")
