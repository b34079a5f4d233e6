"""Activation patching, and the cached runs every patching experiment starts from.

Semantics (noising): the clean prompts run, one component's output is replaced by its value on the
row-aligned corrupted prompt, the rest of the model runs freely, and the metric is the logit
difference logit(IO) - logit(S) at END under the clean answers.

How it is made fast (same arithmetic as one full forward pass per patch, less work):

* the clean and corrupted runs are computed once and cached (residual streams, per-head z, MLP
  outputs) with the functional kernel, no hooks;
* a patch starts at the layer it changes, from the cached clean residual stream;
* all patches starting at one layer share one batched pass (chunked to a memory budget);
* the last layer computes its queries, its MLP and the unembedding at END only, and only the two
  answer columns.

>>> inputs = PatchInputs.from_promptsets(clean_ps, corrupted_ps)     # doctest: +SKIP
>>> result = activation_scan(model, inputs, "heads", position="END")  # doctest: +SKIP
>>> result.to_frame().head()                                          # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from scrub.errors import ScrubError
from scrub.models.kernel import GPT2Weights, attend, embed, layer_norm, mlp, unembed
from scrub.patching.results import PatchResult, PatchSettings, build_result, check_normalization

#: Components activation patching can replace.
ACTIVATION_KINDS = ("head", "resid_pre", "attn_out", "mlp_out")
#: Per-row activations of one chunk are kept under this many bytes (a soft budget).
DEFAULT_BUDGET_BYTES = 256 * 2**20


# ----------------------------------------------------------------------------- inputs


@dataclass(frozen=True, eq=False)
class PatchInputs:
    """Row-aligned clean and corrupted prompts with the clean answers and named positions.

    Both token tensors are right-padded to the same width with identical ``mask`` (patching
    copies activations position by position, so row i of both sets must have the same length).
    ``positions`` maps names ("END", "S2", ...) to one index per row; "END" is required.

    >>> PatchInputs(clean, corrupted, mask, answers, {"END": end})   # doctest: +SKIP
    """

    clean: Int[Tensor, "n t"]
    corrupted: Int[Tensor, "n t"]
    mask: Bool[Tensor, "n t"]
    answers: Int[Tensor, "n 2"]
    positions: Mapping[str, Int[Tensor, " n"]]

    def __post_init__(self) -> None:
        if self.clean.shape != self.corrupted.shape:
            raise ScrubError(
                f"clean prompts have shape {tuple(self.clean.shape)} but corrupted prompts "
                f"{tuple(self.corrupted.shape)} (rows x tokens)",
                fix="use a corruption that keeps every prompt's length (e.g. abc, flip-io), "
                "with as many corrupted prompts as clean ones",
            )
        n, t = self.clean.shape
        if self.mask.shape != (n, t) or self.answers.shape != (n, 2):
            raise ScrubError(f"mask must be [{n}, {t}] and answers [{n}, 2]")
        if "END" not in self.positions:
            raise ScrubError("positions must include END", fix="pass positions={'END': ...}")
        for name, pos in self.positions.items():
            if pos.shape != (n,):
                raise ScrubError(f"position {name!r} must have one index per row ({n})")
        end = self.positions["END"]
        if bool((end < 0).any() | (end >= t).any()) or not bool(
            self.mask[torch.arange(n), end].all()
        ):
            raise ScrubError("END must be a real (unpadded) token of every row")
        object.__setattr__(self, "positions", MappingProxyType(dict(self.positions)))

    @classmethod
    def from_promptsets(cls, clean: Any, corrupted: Any) -> PatchInputs:
        """Adapt two row-aligned :class:`scrub.data.PromptSet` objects (clean answers are used)."""
        if len(clean) != len(corrupted):
            raise ScrubError(
                f"the clean set has {len(clean)} prompts but the corrupted set {len(corrupted)}",
                fix="corrupt the clean set itself so rows align",
            )
        if clean.tokens.shape != corrupted.tokens.shape or not torch.equal(
            clean.mask, corrupted.mask
        ):
            raise ScrubError(
                "clean and corrupted prompts differ in length",
                fix="use a corruption that keeps every prompt's length (e.g. abc, flip-io; "
                "not prefix)",
            )
        return cls(
            clean=clean.tokens,
            corrupted=corrupted.tokens,
            mask=clean.mask,
            answers=clean.answers,
            positions=dict(clean.positions),
        )

    @property
    def n(self) -> int:
        return self.clean.shape[0]

    @property
    def end(self) -> Int[Tensor, " n"]:
        return self.positions["END"]

    def position_mask(self, position: str | int | None) -> Bool[Tensor, "n t"]:
        """Which (row, token) a component patched at ``position`` covers.

        None is every position; a name is resolved per row; an int is an absolute index.
        """
        n, t = self.clean.shape
        if position is None:
            return torch.ones(n, t, dtype=torch.bool)
        if isinstance(position, int):
            if not 0 <= position < t:
                raise ScrubError(f"position {position} is outside 0-{t - 1}")
            return (torch.arange(t) == position)[None].expand(n, t).clone()
        return torch.arange(t)[None] == self.index(position)[:, None]

    def index(self, name: str) -> Int[Tensor, " n"]:
        """The per-row index of a named position, checked to exist in every row."""
        if name not in self.positions:
            raise ScrubError(
                f"the dataset has no position named {name!r}",
                fix=f"use one of: {', '.join(self.positions)}",
            )
        pos = self.positions[name]
        bad = (pos < 0) | (pos >= self.clean.shape[1])
        if bool(bad.any()):
            raise ScrubError(
                f"position {name!r} is undefined in {int(bad.sum())} of {self.n} rows",
                fix="choose a position every prompt has",
            )
        return pos


# ----------------------------------------------------------------------------- cached runs


@dataclass(frozen=True, eq=False)
class RunCache:
    """Activations of one plain forward pass (kernel, no hooks), in float32.

    ``resid_pre[L]`` for L < n_layers is block L's input and ``resid_pre[n_layers]`` the final
    residual stream (the input of ln_f). ``z`` is per head before W_O (a head's result is
    ``z[L, :, :, h] @ W_O[h]``); ``attn_out`` includes b_O.
    """

    resid_pre: Float[Tensor, "layer_plus_1 n t d_model"]
    resid_mid: Float[Tensor, "layer n t d_model"]
    z: Float[Tensor, "layer n t head d_head"]
    attn_out: Float[Tensor, "layer n t d_model"]
    mlp_out: Float[Tensor, "layer n t d_model"]

    def head_result(self, w: GPT2Weights, layer: int, head: int) -> Float[Tensor, "n t d_model"]:
        return self.z[layer, :, :, head] @ w.layers[layer].W_O[head]

    def final_at(self, end: Int[Tensor, " n"]) -> Float[Tensor, "n d_model"]:
        return self.resid_pre[-1][torch.arange(end.shape[0]), end]


def run_cache(
    w: GPT2Weights, tokens: Int[Tensor, "n t"], mask: Bool[Tensor, "n t"], end: Int[Tensor, " n"]
) -> RunCache:
    """Cache one forward pass of ``tokens`` (the same arithmetic as :func:`kernel.forward`).

    Every patching experiment reads the last block's outputs at END only (nothing downstream of
    the last block but the logits at END), so the last block is computed at END only: its z,
    attn_out, resid_mid, mlp_out and the final residual are NaN at other positions.
    """
    n_layers, (n, t), d = len(w.layers), tokens.shape, w.W_E.shape[1]
    H, e = w.layers[0].W_Q.shape[0], w.layers[0].W_Q.shape[2]
    rows, last = torch.arange(n), n_layers - 1
    with torch.no_grad():
        # Written in place into preallocated tensors: stacking copies would cost a pass's time.
        pre = torch.empty(n_layers + 1, n, t, d)
        mid, attn, mlps = (torch.empty(n_layers, n, t, d) for _ in range(3))
        zs = torch.empty(n_layers, n, t, H, e)
        pre[0] = embed(w, tokens)
        for layer in range(last):
            zs[layer] = attention_z(w, layer, pre[layer], mask)
            attn[layer] = heads_out(w, layer, zs[layer])
            torch.add(pre[layer], attn[layer], out=mid[layer])
            mlps[layer] = mlp(w, layer, mid[layer])
            torch.add(mid[layer], mlps[layer], out=pre[layer + 1])
        for x in (pre[last + 1], mid[last], attn[last], mlps[last], zs[last]):
            x.fill_(float("nan"))
        z = attention_z(w, last, pre[last], mask, end)[:, 0]
        zs[last, rows, end] = z
        attn[last, rows, end] = heads_out(w, last, z)
        mid[last, rows, end] = pre[last, rows, end] + attn[last, rows, end]
        mlps[last, rows, end] = mlp(w, last, mid[last, rows, end])
        pre[last + 1, rows, end] = mid[last, rows, end] + mlps[last, rows, end]
        return RunCache(resid_pre=pre, resid_mid=mid, z=zs, attn_out=attn, mlp_out=mlps)


def run_caches(w: GPT2Weights, inputs: PatchInputs) -> tuple[RunCache, RunCache]:
    """The clean and the corrupted run's caches, from one batched pass over both."""
    both = run_cache(
        w,
        torch.cat([inputs.clean, inputs.corrupted]),
        batch_rows(inputs.mask, 2),
        batch_rows(inputs.end, 2),
    )
    n = inputs.n
    halves = [
        RunCache(
            resid_pre=both.resid_pre[:, part],
            resid_mid=both.resid_mid[:, part],
            z=both.z[:, part],
            attn_out=both.attn_out[:, part],
            mlp_out=both.mlp_out[:, part],
        )
        for part in (slice(0, n), slice(n, 2 * n))
    ]
    return halves[0], halves[1]


def logit_diff_at_end(
    w: GPT2Weights, resid_end: Float[Tensor, "b d_model"], answers: Int[Tensor, "b 2"]
) -> Float[Tensor, " b"]:
    """logit(IO) - logit(S) from final residuals at END, computing only the two columns."""
    pair = unembed(w, resid_end, columns=answers)
    return pair[:, 0] - pair[:, 1]


# ----------------------------------------------------------------------------- the layer runner


@dataclass(frozen=True, eq=False)
class SlotPatch:
    """Replace some heads' q, k or v input (pre-LayerNorm residual) where ``where`` is True."""

    heads: Int[Tensor, " r"]
    slot: str  # "q", "k" or "v"
    value: Float[Tensor, "b t d_model"]
    where: Bool[Tensor, "b t"]


def project(
    w: GPT2Weights,
    layer: int,
    x_ln: Float[Tensor, "*b d_model"],
    slot: str,
    heads: Tensor | None = None,
) -> Float[Tensor, "*b head d_head"]:
    """Per-head q, k or v from LayerNormed residuals (optionally only some heads).

    One matmul against the heads' weights laid side by side (a view of HF's fused c_attn weight
    when all heads are used), rather than a batched per-head product.
    """
    lw = w.layers[layer]
    W, b = {"q": (lw.W_Q, lw.b_Q), "k": (lw.W_K, lw.b_K), "v": (lw.W_V, lw.b_V)}[slot]
    if heads is not None:
        W, b = W[heads], b[heads]
    h, d, e = W.shape
    out = x_ln @ W.permute(1, 0, 2).reshape(d, h * e) + b.reshape(h * e)
    return out.unflatten(-1, (h, e))


def ln1(w: GPT2Weights, layer: int, x: Tensor) -> Tensor:
    lw = w.layers[layer]
    return layer_norm(x, lw.ln1_w, lw.ln1_b, w.eps)


def attention_z(
    w: GPT2Weights,
    layer: int,
    resid: Float[Tensor, "b t d_model"],
    mask: Bool[Tensor, "b t"],
    q_index: Int[Tensor, " b"] | None = None,
    patch: SlotPatch | None = None,
) -> Float[Tensor, "b q head d_head"]:
    """Per-head z of ``layer``, with every head reading ``resid`` except where ``patch`` says.

    Unlike :func:`kernel.attention` this never builds per-head residual copies [b, t, H, d]: q, k
    and v are projected from one LayerNorm, and only the patched heads' slot is recomputed.
    With ``q_index`` only that one query position per row is computed (q = 1).
    """
    lw = w.layers[layer]
    b, t, _ = resid.shape
    rows = torch.arange(b)
    x = ln1(w, layer, resid)
    xq = x if q_index is None else x[rows, q_index][:, None]
    qkv = {
        "q": project(w, layer, xq, "q"),
        "k": project(w, layer, x, "k"),
        "v": project(w, layer, x, "v"),
    }
    if patch is not None:
        value, where = patch.value, patch.where
        if patch.slot == "q" and q_index is not None:
            value, where = value[rows, q_index][:, None], where[rows, q_index][:, None]
        new = project(w, layer, ln1(w, layer, value), patch.slot, patch.heads)
        target = qkv[patch.slot]
        target[:, :, patch.heads] = torch.where(
            where[:, :, None, None], new, target[:, :, patch.heads]
        )
    q_pos = torch.arange(t) if q_index is None else q_index[:, None]
    z, _ = attend(qkv["q"], qkv["k"], qkv["v"], lw.attn_scale, q_pos, mask)
    return z


def heads_out(w: GPT2Weights, layer: int, z: Float[Tensor, "*b head d_head"]) -> Tensor:
    """The attention block's output: every head's z @ W_O summed, plus b_O."""
    lw = w.layers[layer]
    return z.flatten(-2) @ lw.W_O.reshape(-1, lw.W_O.shape[-1]) + lw.b_O


def run_free(
    w: GPT2Weights,
    resid: Float[Tensor, "b t d_model"],
    layer: int,
    stage: str,
    mask: Bool[Tensor, "b t"],
    end: Int[Tensor, " b"],
    answers: Int[Tensor, "b 2"],
    patches: Mapping[int, SlotPatch] | None = None,
) -> Float[Tensor, " b"]:
    """Run from a residual stream to the logit difference at END, every component free.

    ``resid`` is block ``layer``'s input (``stage="pre"``) or its MLP input (``stage="mid"``);
    ``layer == n_layers`` with "pre" means the final residual. ``patches[L]`` replaces some heads'
    slot inputs in block L. The last block computes only END's query, MLP and two logits.
    """
    patches = patches or {}
    n_layers = len(w.layers)
    rows = torch.arange(resid.shape[0])
    x = resid
    if stage == "mid":
        x = x[rows, end] if layer == n_layers - 1 else x
        x = x + mlp(w, layer, x)
        layer += 1
    for lay in range(layer, n_layers):
        if lay == n_layers - 1:
            z = attention_z(w, lay, x, mask, end, patches.get(lay))
            x = x[rows, end] + heads_out(w, lay, z[:, 0])
        else:
            x = x + heads_out(w, lay, attention_z(w, lay, x, mask, None, patches.get(lay)))
        x = x + mlp(w, lay, x)
    if x.dim() == 3:  # started at the final residual stream
        x = x[rows, end]
    return logit_diff_at_end(w, x, answers)


def chunk_size(n: int, t: int, d_model: int, budget: int = DEFAULT_BUDGET_BYTES) -> int:
    """How many patches of ``n`` rows fit the budget (about 16 float32 [t, d] tensors a row)."""
    return max(1, budget // max(1, n * t * d_model * 4 * 16))


def batch_rows(x: Tensor, k: int) -> Tensor:
    """``x`` repeated for ``k`` patches: row ``s * n + i`` is patch s, example i."""
    return x.repeat(k, *([1] * (x.dim() - 1)))


# ----------------------------------------------------------------------------- activation patching


@dataclass(frozen=True)
class Component:
    """A component whose output is patched: a head, a residual stream, attention or MLP output.

    ``position`` is None (every position), a named position resolved per row ("END"), or an
    absolute token index.

    >>> Component("head", 9, 6, "END")
    Component(kind='head', layer=9, head=6, position='END')
    """

    kind: str  # "head", "mlp" (path patching senders), "resid_pre", "attn_out", "mlp_out"
    layer: int
    head: int | None = None
    position: str | int | None = None

    def check(self, n_layers: int, n_heads: int, kinds: Sequence[str]) -> None:
        if self.kind not in kinds:
            raise ScrubError(
                f"unknown component kind {self.kind!r}", fix=f"use one of: {', '.join(kinds)}"
            )
        if not 0 <= self.layer < n_layers:
            raise ScrubError(
                f"layer {self.layer} does not exist: this model has layers 0-{n_layers - 1}"
            )
        if (self.kind == "head") != (self.head is not None):
            raise ScrubError(
                f"{self.kind} components {'need' if self.kind == 'head' else 'take no'} a head"
            )
        if self.head is not None and not 0 <= self.head < n_heads:
            raise ScrubError(
                f"head {self.layer}.{self.head} does not exist: layers have heads 0-{n_heads - 1}"
            )

    @property
    def label(self) -> tuple[str, int, int | None, str | int | None]:
        return (self.kind, self.layer, self.head, self.position)


def _start_state(
    w: GPT2Weights, clean: RunCache, corrupt: RunCache, comp: Component, where: Tensor
) -> tuple[Tensor, int, str]:
    """The residual stream where a patch of ``comp`` first changes the run, and where that is."""
    m = where[..., None]
    if comp.kind == "head":
        delta = corrupt.head_result(w, comp.layer, comp.head) - clean.head_result(
            w, comp.layer, comp.head
        )
        return clean.resid_mid[comp.layer] + delta * m, comp.layer, "mid"
    if comp.kind == "attn_out":
        out = torch.where(m, corrupt.attn_out[comp.layer], clean.attn_out[comp.layer])
        return clean.resid_pre[comp.layer] + out, comp.layer, "mid"
    if comp.kind == "mlp_out":
        out = torch.where(m, corrupt.mlp_out[comp.layer], clean.mlp_out[comp.layer])
        return clean.resid_mid[comp.layer] + out, comp.layer + 1, "pre"
    state = torch.where(m, corrupt.resid_pre[comp.layer], clean.resid_pre[comp.layer])
    return state, comp.layer, "pre"


def activation_patch(
    w: GPT2Weights,
    inputs: PatchInputs,
    components: Sequence[Component],
    *,
    caches: tuple[RunCache, RunCache] | None = None,
    progress: bool = False,
    budget: int = DEFAULT_BUDGET_BYTES,
) -> Float[Tensor, "component n"]:
    """Per-example logit differences with each component patched from the corrupted run.

    Equals one full forward pass per component with that component's output replaced (tested
    against hooks and against ``transformer_lens.patching``).

    >>> activation_patch(w, inputs, [Component("head", 0, 1, "END")]).shape   # doctest: +SKIP
    torch.Size([1, 50])
    """
    n_layers, n_heads = len(w.layers), w.n_heads
    for comp in components:
        comp.check(n_layers, n_heads, ACTIVATION_KINDS)
    wheres = [inputs.position_mask(c.position) for c in components]  # validates positions early
    clean, corrupt = caches or run_caches(w, inputs)
    out = torch.full((len(components), inputs.n), float("nan"))
    groups: dict[tuple[int, str], list[tuple[int, Tensor]]] = {}
    with torch.no_grad():
        for i, (comp, where) in enumerate(zip(components, wheres)):
            state, layer, stage = _start_state(w, clean, corrupt, comp, where)
            groups.setdefault((layer, stage), []).append((i, state))
        n, t = inputs.clean.shape
        size = chunk_size(n, t, w.W_E.shape[1], budget)
        chunks = [
            (key, items[j : j + size])
            for key, items in groups.items()
            for j in range(0, len(items), size)
        ]
        for (layer, stage), items in _progress(chunks, progress, "activation patching"):
            k = len(items)
            ld = run_free(
                w,
                torch.cat([s for _, s in items]),
                layer,
                stage,
                batch_rows(inputs.mask, k),
                batch_rows(inputs.end, k),
                batch_rows(inputs.answers, k),
            )
            out[[i for i, _ in items]] = ld.reshape(k, n)
    return out


def scan_components(
    kind: str, n_layers: int, n_heads: int, position: str | None, width: int
) -> list[Component]:
    """Every component of ``kind``; ``position="each"`` scans every token index too."""
    positions: list[str | int | None] = list(range(width)) if position == "each" else [position]
    heads: list[int | None] = list(range(n_heads)) if kind == "head" else [None]
    return [
        Component(kind, layer, h, p) for layer in range(n_layers) for h in heads for p in positions
    ]


def activation_scan(
    model: Any,
    inputs: PatchInputs,
    kind: str = "head",
    *,
    position: str | None = None,
    normalization: str = "clean",
    progress: bool = False,
    settings: dict[str, Any] | None = None,
) -> PatchResult:
    """Patch every component of ``kind`` (every head, every layer, or every (layer, position)).

    >>> res = activation_scan(model, inputs, "resid_pre", position="each")    # doctest: +SKIP
    >>> res.to_frame().pivot(index="layer", columns="position")  # doctest: +SKIP
    """
    normalization = check_normalization(normalization)
    w = GPT2Weights.from_hf(model.hf_model)
    comps = scan_components(kind, len(w.layers), w.n_heads, position, inputs.clean.shape[1])
    caches = run_caches(w, inputs)
    per_example = activation_patch(w, inputs, comps, caches=caches, progress=progress)
    clean_ld = logit_diff_at_end(w, caches[0].final_at(inputs.end), inputs.answers)
    corrupt_ld = logit_diff_at_end(w, caches[1].final_at(inputs.end), inputs.answers)
    stated = PatchSettings(
        experiment="activation",
        model=model.info.name,
        senders=kind,
        sender_position=position,
        receivers="logits",
        receiver_position=None,
        mlps="n/a",
        normalization=normalization,
        n=inputs.n,
        **(settings or {}),
    )
    return build_result(stated, clean_ld, corrupt_ld, [c.label for c in comps], per_example)


def _progress(items: list, enabled: bool, desc: str):
    if not enabled or len(items) < 2:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, leave=False)
