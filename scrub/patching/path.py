"""Path patching (Wang et al. 2022, App. B): sender -> receivers, other heads frozen.

Semantics, for each sender (a head or an MLP, at every position or at one named position):

1. The clean prompts run with the sender's output replaced by its corrupted-run value (at its
   positions) and every other attention head frozen at its clean output. MLPs are recomputed
   (``mlps="free"``, the paper's and ARENA's convention) or frozen at their clean output
   (``mlps="frozen"``). The receivers' inputs are read from this run: the final residual stream
   (``Receivers("logits")``), or chosen heads' q, k or v input at the receiver positions.
2. The clean prompts run again with only the receivers' inputs replaced (at the receiver
   positions) by the values of step 1; everything else, receivers' outputs and every later head and
   MLP included, runs freely to the logits. (For logits receivers step 1 already gives them.)

The metric is logit(IO) - logit(S) at END under the clean answers. A sender must be upstream of
every receiver (its layer strictly before every receiver's layer).

How it is made fast, exact to float rounding (tested against a hook-based two-pass reference):

* With every other head frozen, the residual stream of step 1 is the clean one plus a change that
  starts at the sender and flows only through MLPs, which act per position. So step 1 needs no
  attention at all: only the MLPs of the layers between sender and receiver, at the receiver
  positions (END alone for logits or q at END), and with MLPs frozen not even those - the change is
  the sender's own output change, added to the cached clean input.
* Step 2 starts at the first receiver's layer from the cached clean residual stream. When receivers
  are patched at END only (the last real token), only END changes downstream, so later layers run
  one query per row against cached clean keys and values.
* Many senders share one batched pass (chunked to a memory budget); the unembedding is computed at
  END for the two answer columns only.

>>> recv = Receivers.parse("q:9.6,9.9")                                   # doctest: +SKIP
>>> result = path_scan(model, inputs, "heads", recv, mlps="free")         # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from scrub.errors import ScrubError
from scrub.models.kernel import Proj, mlp
from scrub.models.runs import (
    EndPatch,
    RunCache,
    SlotPatch,
    clean_keys_values,
    logit_diff_at_end,
    run_end_only,
    run_free,
)
from scrub.models.weights import ModelWeights
from scrub.patching.inputs import (
    DEFAULT_BUDGET_BYTES,
    Component,
    PatchInputs,
    batch_rows,
    chunk_size,
    progress_bar,
    run_caches,
    run_logit_diffs,
)
from scrub.patching.results import PatchResult, PatchSettings, build_result, check_normalization

SENDER_KINDS = ("head", "mlp")
SLOTS = ("q", "k", "v")
MLP_MODES = ("free", "frozen")


@dataclass(frozen=True)
class Receivers:
    """Where senders' effects are read: the logits, or some heads' q, k or v input.

    ``position`` is the named position the receivers' inputs are patched at, or None for every
    position. ``parse`` defaults it to END for q and every position for k and v.

    >>> Receivers.parse("q:9.6,9.9")
    Receivers(slot='q', heads=((9, 6), (9, 9)), position='END')
    >>> Receivers.parse("v:7.3@S2").position
    'S2'
    """

    slot: str  # "logits", "q", "k" or "v"
    heads: tuple[tuple[int, int], ...] = ()
    position: str | None = "END"

    @classmethod
    def parse(cls, text: str, position: str | None | bool = False) -> Receivers:
        """``logits``, or ``q|k|v:L.H,L.H[@POSITION|@all]``; ``position`` overrides the suffix."""
        text = text.strip()
        if text == "logits":
            return cls("logits", (), None)
        match = re.fullmatch(r"([qkv]):([\d.,\s]+)(?:@(\S+))?", text)
        heads = match and re.findall(r"(\d+)\.(\d+)", match.group(2))
        if (
            not match
            or not heads
            or len(heads) != len([h for h in match.group(2).split(",") if h.strip()])
        ):
            raise ScrubError(
                f"cannot read receivers {text!r}",
                fix="write logits, or q:L.H,L.H (or k:/v:), optionally @POSITION, e.g. q:9.6,9.9",
            )
        slot = match.group(1)
        pos: str | None = match.group(3) or ("END" if slot == "q" else None)
        if position is not False:
            pos = position  # type: ignore[assignment]
        pos = None if pos == "all" else pos
        return cls(slot, tuple((int(a), int(b)) for a, b in heads), pos)

    def __str__(self) -> str:
        if self.slot == "logits":
            return "logits"
        return f"{self.slot}:{','.join(f'{a}.{b}' for a, b in self.heads)}"

    def check(self, n_layers: int, n_heads: int, n_kv_heads: int | None = None) -> None:
        """Heads exist; in a grouped-query model, k/v receivers list whole key/value groups."""
        if self.slot not in ("logits", *SLOTS):
            raise ScrubError(f"unknown receiver slot {self.slot!r}", fix="use logits, q, k or v")
        if self.slot == "logits":
            return
        if not self.heads:
            raise ScrubError("q/k/v receivers need at least one head", fix="e.g. q:9.6,9.9")
        for layer, head in self.heads:
            if not (0 <= layer < n_layers and 0 <= head < n_heads):
                raise ScrubError(
                    f"receiver head {layer}.{head} does not exist: this model has layers "
                    f"0-{n_layers - 1} with heads 0-{n_heads - 1}"
                )
        if self.slot in ("k", "v") and n_kv_heads and n_kv_heads < n_heads:
            ratio = n_heads // n_kv_heads
            listed = set(self.heads)
            for layer, head in self.heads:
                g = head // ratio
                group = [(layer, h) for h in range(g * ratio, (g + 1) * ratio)]
                if not listed.issuperset(group):
                    names = ",".join(f"{a}.{b}" for a, b in group)
                    raise ScrubError(
                        f"receiver {self.slot}:{layer}.{head} is ambiguous in this grouped-query "
                        f"model: heads {names} share key/value group {g} of layer {layer}, and a "
                        f"{self.slot} input is the group's (as TransformerLens names it)",
                        fix=f"list the whole group, e.g. {self.slot}:{names}",
                    )

    @property
    def first_layer(self) -> int:
        """The earliest receiver layer (a huge number for logits: every layer is upstream)."""
        return min((layer for layer, _ in self.heads), default=10**9)

    def index(self, w: ModelWeights, layer: int) -> Tensor:
        """What the receivers of ``layer`` patch: heads for q, key/value groups for k and v."""
        heads = [h for lay, h in self.heads if lay == layer]
        if self.slot == "q":
            return torch.tensor(heads)
        return torch.tensor(sorted({w.group_of(h) for h in heads}))

    def layers(self, n_layers: int) -> list[int]:
        if self.slot == "logits":
            return [n_layers]
        return sorted({layer for layer, _ in self.heads})


def is_upstream(sender: Component, receivers: Receivers) -> bool:
    """True when ``sender`` feeds every receiver (a layer strictly before all of them)."""
    return sender.layer < receivers.first_layer


def check_senders(
    senders: Sequence[Component],
    receivers: Receivers,
    n_layers: int,
    n_heads: int,
    n_kv_heads: int | None = None,
) -> None:
    receivers.check(n_layers, n_heads, n_kv_heads)
    for s in senders:
        s.check(n_layers, n_heads, SENDER_KINDS)
        if not is_upstream(s, receivers):
            what = f"{s.layer}.{s.head}" if s.kind == "head" else f"MLP {s.layer}"
            raise ScrubError(
                f"sender {what} is not upstream of receiver layer {receivers.first_layer} "
                f"({receivers})",
                fix="senders must be in an earlier layer than every receiver",
            )


# ----------------------------------------------------------------------------- step 1: deltas


def _sender_deltas(
    w: ModelWeights,
    inputs: PatchInputs,
    clean: RunCache,
    corrupt: RunCache,
    group: Sequence[Component],
    gather: tuple[Tensor, Tensor],
) -> Float[Tensor, "s *g d_model"]:
    """The output changes of senders of one layer and kind at the gathered positions, each
    masked to its own positions."""
    layer = group[0].layer
    if group[0].kind == "head":
        # Gather z before W_O: for END-only experiments this is one row per prompt, not t.
        heads = torch.tensor([s.head for s in group])
        dz = (corrupt.z[layer][gather] - clean.z[layer][gather])[..., heads, :]
        delta = torch.einsum("...se,sed->s...d", dz, w.layers[layer].W_O[heads])
    else:
        delta = (corrupt.mlp_out[layer][gather] - clean.mlp_out[layer][gather])[None]
    if all(s.position is None for s in group):
        return delta.expand(len(group), *delta.shape[1:])
    masks = {p: inputs.position_mask(p)[gather][..., None] for p in {s.position for s in group}}
    return delta * torch.stack([masks[s.position] for s in group])


def _residual_deltas(
    w: ModelWeights,
    clean: RunCache,
    delta: Float[Tensor, "s n p d"],
    sender_layer: int,
    sender_is_head: bool,
    targets: list[int],
    gather: tuple[Tensor, Tensor],
    mlps: str,
) -> dict[int, Tensor]:
    """The change of the residual stream at each target layer's input, senders ``s`` batched.

    Other heads are frozen, so the change flows only through MLPs (per position): at the gathered
    positions ``gather`` (row, token index tensors) it is the sender delta plus, with free MLPs,
    each MLP's response to the change. Layer ``n_layers`` means the final residual stream.
    """
    rows, cols = gather
    out: dict[int, Tensor] = {}

    def through_mlp(layer: int, delta: Tensor) -> Tensor:
        x = clean.mlp_in[layer][rows, cols]
        return delta + mlp(w, layer, x + delta).to(delta.device) - clean.mlp_out[layer][rows, cols]

    # The sender's own block's MLP reads a head's change, unless attention and MLP are parallel.
    if mlps == "free" and sender_is_head and not w.parallel:
        delta = through_mlp(sender_layer, delta)
    for layer in range(sender_layer + 1, max(targets) + 1):
        if layer in targets:
            out[layer] = delta
        if layer == max(targets):
            break
        if mlps == "free":
            delta = through_mlp(layer, delta)
    return out


def _all_deltas(
    w: ModelWeights,
    inputs: PatchInputs,
    clean: RunCache,
    corrupt: RunCache,
    senders: Sequence[Component],
    targets: list[int],
    end_only: bool,
    mlps: str,
) -> dict[int, Tensor]:
    """Residual changes at the target layers for all senders: [S, n, d] (END) or [S, n, t, d]."""
    n, t = inputs.clean.shape
    if end_only:
        gather = (torch.arange(n), inputs.end)
    else:
        gather = (torch.arange(n)[:, None], torch.arange(t)[None])
    groups: dict[tuple[int, bool], list[int]] = {}
    for i, s in enumerate(senders):
        groups.setdefault((s.layer, s.kind == "head"), []).append(i)
    out = {lay: [None] * len(senders) for lay in targets}
    for (layer, is_head), idx in groups.items():
        group = [senders[i] for i in idx]
        delta = _sender_deltas(w, inputs, clean, corrupt, group, gather)
        deltas = _residual_deltas(w, clean, delta, layer, is_head, targets, gather, mlps)
        for lay, d in deltas.items():
            for j, i in enumerate(idx):
                out[lay][i] = d[j]
    return {lay: torch.stack(ds) for lay, ds in out.items()}


# ----------------------------------------------------------------------------- step 2


def _run_end_only(
    w: ModelWeights,
    inputs: PatchInputs,
    clean: RunCache,
    clean_kv: dict[int, tuple[Tensor, Tensor]],
    receivers: Receivers,
    deltas: dict[int, Float[Tensor, "s n d"]],
) -> Float[Tensor, "s n"]:
    """Step 2 when receivers are patched at END only: only END changes, keys elsewhere are clean
    (``clean_kv``, from :func:`scrub.models.runs.clean_keys_values`)."""
    rows, end = torch.arange(inputs.n), inputs.end
    first = receivers.first_layer
    k = next(iter(deltas.values())).shape[0]
    patches = {
        layer: EndPatch(
            receivers.index(w, layer),
            Proj(receivers.slot),
            clean.resid_pre[layer][rows, end] + deltas[layer],
        )
        for layer in receivers.layers(len(w.layers))
    }
    x = clean.resid_pre[first][rows, end].expand(k, inputs.n, -1)
    return run_end_only(w, x, first, clean_kv, inputs.mask, end, inputs.answers, patches)


def _run_all_positions(
    w: ModelWeights,
    inputs: PatchInputs,
    clean: RunCache,
    receivers: Receivers,
    deltas: dict[int, Float[Tensor, "s n t d"]],
) -> Float[Tensor, "s n"]:
    """Step 2 in general: a full batched run from the first receiver layer."""
    n = inputs.n
    k = next(iter(deltas.values())).shape[0]
    where = batch_rows(inputs.position_mask(receivers.position), k)
    patches = {}
    for layer in receivers.layers(len(w.layers)):
        value = (clean.resid_pre[layer][None] + deltas[layer]).flatten(0, 1)
        patches[layer] = SlotPatch(receivers.index(w, layer), Proj(receivers.slot), value, where)
    first = receivers.first_layer
    ld = run_free(
        w,
        batch_rows(clean.resid_pre[first], k),
        first,
        batch_rows(inputs.mask, k),
        batch_rows(inputs.end, k),
        batch_rows(inputs.answers, k),
        patches,
    )
    return ld.reshape(k, n)


# ----------------------------------------------------------------------------- public API


def path_patch(
    w: ModelWeights,
    inputs: PatchInputs,
    senders: Sequence[Component],
    receivers: Receivers,
    *,
    mlps: str = "free",
    caches: tuple[RunCache, RunCache] | None = None,
    progress: bool = False,
    budget: int = DEFAULT_BUDGET_BYTES,
) -> Float[Tensor, "sender n"]:
    """Per-example logit differences after path patching each sender to ``receivers``.

    Every sender must be upstream of every receiver (else a :class:`ScrubError`).

    >>> senders = [Component("head", 0, 1)]                        # doctest: +SKIP
    >>> path_patch(w, inputs, senders, Receivers.parse("q:2.0")).shape  # doctest: +SKIP
    torch.Size([1, 50])
    """
    if mlps not in MLP_MODES:
        raise ScrubError(f"unknown MLP mode {mlps!r}", fix="use free or frozen")
    n_layers = len(w.layers)
    check_senders(senders, receivers, n_layers, w.n_heads, w.n_kv_heads)
    for s in senders:
        inputs.position_mask(s.position)  # validates position names before any work
    if receivers.position is not None:
        inputs.index(receivers.position)
    clean, corrupt = caches or run_caches(w, inputs)
    # Receivers at END only (or the logits) never change another position.
    end_only = receivers.slot == "logits" or bool(
        torch.equal(inputs.index(receivers.position), inputs.end) if receivers.position else False
    )
    targets = receivers.layers(n_layers)
    n, t = inputs.clean.shape
    size = chunk_size(n, 1 if end_only else t, w.d_model, budget)
    out = torch.empty(len(senders), n, dtype=w.dtype)
    chunks = [list(range(i, min(i + size, len(senders)))) for i in range(0, len(senders), size)]
    with torch.no_grad():
        if end_only and receivers.slot != "logits":
            clean_kv = clean_keys_values(w, clean, receivers.first_layer)
        for idx in progress_bar(chunks, progress, "path patching"):
            group = [senders[i] for i in idx]
            deltas = _all_deltas(w, inputs, clean, corrupt, group, targets, end_only, mlps)
            if receivers.slot == "logits":
                final = clean.final_end[None] + deltas[n_layers].to(clean.final_end.device)
                ld = logit_diff_at_end(w, final.flatten(0, 1), batch_rows(inputs.answers, len(idx)))
                out[idx] = ld.reshape(len(idx), n).cpu()
            elif end_only:
                out[idx] = _run_end_only(w, inputs, clean, clean_kv, receivers, deltas).cpu()
            else:
                out[idx] = _run_all_positions(w, inputs, clean, receivers, deltas).cpu()
    return out


def sender_components(
    which: str, n_layers: int, n_heads: int, position: str | None = None
) -> list[Component]:
    """``heads``, ``mlps`` or ``heads+mlps``: every such sender in layer order (MLP last)."""
    if which not in ("heads", "mlps", "heads+mlps"):
        raise ScrubError(f"unknown senders {which!r}", fix="use heads, mlps or heads+mlps")
    out = []
    for layer in range(n_layers):
        if "heads" in which:
            out += [Component("head", layer, h, position) for h in range(n_heads)]
        if "mlps" in which:
            out.append(Component("mlp", layer, None, position))
    return out


def path_scan(
    model: Any,
    inputs: PatchInputs,
    senders: str | Sequence[Component],
    receivers: Receivers,
    *,
    mlps: str = "free",
    position: str | None = None,
    normalization: str = "clean",
    progress: bool = False,
    settings: dict[str, Any] | None = None,
) -> PatchResult:
    """Path-patch every sender to ``receivers`` and tabulate the scores.

    ``senders`` is ``"heads"``, ``"mlps"`` or ``"heads+mlps"`` (each at ``position``, None = every
    position) or an explicit list of components. In a named scan, senders that are not upstream
    of the receivers get NaN rows; in an explicit list they are an error.

    >>> res = path_scan(model, inputs, "heads", Receivers("logits"))  # doctest: +SKIP
    """
    normalization = check_normalization(normalization)
    info = model.info
    n_layers, n_heads = info.n_layers, info.n_heads
    receivers.check(n_layers, n_heads, info.n_kv_heads)
    if isinstance(senders, str):
        name = senders
        comps = sender_components(senders, n_layers, n_heads, position)
    else:
        comps = list(senders)
        name = ",".join(
            f"{c.kind}:{c.layer}" + (f".{c.head}" if c.head is not None else "") for c in comps
        )
        check_senders(comps, receivers, n_layers, n_heads, info.n_kv_heads)
    live = [i for i, c in enumerate(comps) if is_upstream(c, receivers)]
    per_example = torch.full((len(comps), inputs.n), float("nan"), dtype=torch.float64)
    if receivers.position is not None:
        inputs.index(receivers.position)
    if model.weights is None:  # the hook backend: two bridge passes per sender
        from scrub.patching import hooked

        for s in comps:
            inputs.position_mask(s.position)
        caches = hooked.reference_caches(model, inputs)
        for i in progress_bar(live, progress, "path patching (hooks)"):
            per_example[i] = hooked.reference_path_patch(
                model, inputs, comps[i], receivers, mlps, caches
            ).double()
        clean_ld, corrupt_ld = (
            hooked.run_logit_diff(model, x, inputs).cpu() for x in (inputs.clean, inputs.corrupted)
        )
    else:
        w = model.weights
        caches = run_caches(w, inputs)
        if live:
            senders_live = [comps[i] for i in live]
            per_example[live] = path_patch(
                w, inputs, senders_live, receivers, mlps=mlps, caches=caches, progress=progress
            ).double()
        clean_ld, corrupt_ld = run_logit_diffs(w, caches, inputs)
    stated = PatchSettings(
        experiment="path",
        model=model.info.name,
        senders=name,
        sender_position=position,
        receivers=str(receivers),
        receiver_position=None if receivers.slot == "logits" else receivers.position,
        mlps=mlps,
        normalization=normalization,
        n=inputs.n,
        **(settings or {}),
    )
    return build_result(stated, clean_ld, corrupt_ld, [c.label for c in comps], per_example)
