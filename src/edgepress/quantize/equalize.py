"""Data-free quantization aids: cross-layer equalisation and bias correction (Nagel et al.,
"Data-Free Quantization Through Weight Equalization and Bias Correction", ICCV 2019; the way
AIMET applies them).

Why: a depthwise layer's output channels have weight ranges that differ by orders of magnitude
(Lite0's first depthwise conv: 0.0x to 40+), so one int8 scale per tensor leaves most channels
with a handful of levels. Per-channel scales fix that in the kernel; equalisation fixes it in
the weights, so per-tensor int8 (all some runtimes and accelerators offer) works too.

:func:`equalize` (the fp32 function is unchanged, up to float rounding):

1. BatchNorm is folded into the conv before it.
2. ReLU6 becomes a per-channel clip, ``min(max(x, 0), c)`` with ``c = 6`` (:class:`ChannelClip`).
   The paper and AIMET make it a ReLU instead, because ReLU commutes with a positive
   per-channel scale and ReLU6 does not; measured on Lite0 that costs the fp32 network its
   function (top-1 agreement with itself 17.7% on the validation photographs: its activations
   exceed 6 everywhere). A clip whose bound is scaled with its channel commutes exactly:
   ``relu6(x)/s = clip(x/s, 0, 6/s)``. ``relu="relu"`` does what AIMET does.
3. For every pair conv₁ → (clip | ReLU | zero padding)* → conv₂ in which conv₁'s output feeds
   only conv₂, output channel i of conv₁ (and the clip bound of channel i) is divided by s_i
   and input channel i of conv₂ multiplied by it, with s_i = √(r₁ᵢ / r₂ᵢ) (r: the channel's
   largest absolute weight): both ranges become √(r₁ᵢ·r₂ᵢ). Pairs are swept until the scales
   settle (chains dw ← pw → dw share layers).

:func:`correct_biases`: with the weights rounded the way the quantizer will round them
(symmetric int8, per tensor or per channel, ±127 or the reduced ±64), each layer's output
shifts on average by E[(Q(W) − W) ∗ x]; that mean, measured on the calibration images with
float inputs, is subtracted from the layer's bias (empirical bias correction). Layers the
config keeps float (``skip_layers``, as module paths) have no such error and keep their bias.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6(),
    ...                     nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(),
    ...                     nn.Conv2d(8, 4, 1)).eval()
    >>> eq, report = equalize(net)
    >>> x = torch.rand(2, 3, 8, 8)
    >>> bool((eq(x) - net(x)).abs().max() < 1e-4), report["pairs"]
    (True, 2)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from ..errors import InputError
from .layers import module_is_depthwise, weight_qmax

SWEEPS = 20          # passes over the pairs (converges in a few for Lite0)
SETTLED = 1e-4       # a pass whose largest |log s| is below this ends the sweeps
_PASS_THROUGH = (nn.ReLU, nn.Identity, nn.Dropout)


class ChannelClip(nn.Module):
    """``min(max(x, 0), c)`` with one bound per channel (dimension 1): ReLU6 when ``c = 6``,
    and still exact after equalisation scales channel i by 1/s_i (its bound becomes 6/s_i).

    >>> clip = ChannelClip(2, 6.0)
    >>> clip(torch.tensor([[-1.0, 7.0]]).view(1, 2, 1, 1)).flatten().tolist()
    [0.0, 6.0]
    """

    def __init__(self, channels: int, bound: float = 6.0):
        super().__init__()
        self.register_buffer("bound", torch.full((channels,), float(bound)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        shape = (1, -1) + (1,) * (x.ndim - 2)
        bound: torch.Tensor = self.bound  # type: ignore[assignment]
        return torch.minimum(torch.relu(x), bound.view(shape))


def _trace(model: nn.Module) -> fx.GraphModule:
    try:
        return fx.symbolic_trace(copy.deepcopy(model).eval())
    except Exception as e:  # a forward with data-dependent control flow
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise InputError(f"--equalize needs a model torch.fx can trace: {first}") from None


def _module(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    return gm.get_submodule(str(node.target)) if node.op == "call_module" else None


def fold_batchnorm(gm: fx.GraphModule) -> int:
    """Fold every BatchNorm2d that follows a Conv2d (used by nothing else) into it, in place;
    return how many were folded.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = 0
    for node in list(gm.graph.nodes):
        bn = _module(gm, node)
        if not isinstance(bn, nn.BatchNorm2d) or not isinstance(node.args[0], fx.Node):
            continue
        prev = node.args[0]
        conv = _module(gm, prev)
        if not isinstance(conv, nn.Conv2d) or len(prev.users) != 1:
            continue
        _set_module(gm, str(prev.target), fuse_conv_bn_eval(conv, bn))
        node.replace_all_uses_with(prev)
        gm.graph.erase_node(node)
        folded += 1
    gm.graph.lint()
    gm.recompile()
    return folded


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


def relu6_as_relu(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ``ReLU6`` replaced by ``ReLU`` (step 2 of the module)."""
    out = copy.deepcopy(model)
    for name, m in list(out.named_modules()):
        if isinstance(m, nn.ReLU6):
            _set_module(out, name, nn.ReLU(inplace=m.inplace))
    return out


def _is_zero_pad(m: nn.Module) -> bool:
    return isinstance(m, nn.ZeroPad2d) or (isinstance(m, nn.ConstantPad2d) and m.value == 0)


def _relu6_as_clips(gm: fx.GraphModule) -> int:
    """Every ReLU6 of ``gm`` as a :class:`ChannelClip` of its input's channels (known from the
    conv before it); return how many.
    """
    done = 0
    for node in gm.graph.nodes:
        m = _module(gm, node)
        if not isinstance(m, nn.ReLU6) or not isinstance(node.args[0], fx.Node):
            continue
        prev = node.args[0]
        while _is_zero_pad(_module(gm, prev) or nn.Identity()) and \
                isinstance(prev.args[0], fx.Node):
            prev = prev.args[0]
        conv = _module(gm, prev)
        if isinstance(conv, nn.Conv2d):
            _set_module(gm, str(node.target), ChannelClip(conv.out_channels, 6.0))
            done += 1
    gm.recompile()
    return done


def conv_pairs(gm: fx.GraphModule) -> list[tuple[str, list[str], str]]:
    """``(conv₁, [modules between], conv₂)`` names that can be equalised (see the module)."""
    pairs = []
    for node in gm.graph.nodes:
        c2 = _module(gm, node)
        if not isinstance(c2, nn.Conv2d) or not isinstance(node.args[0], fx.Node):
            continue
        if c2.groups not in (1, c2.in_channels) or (c2.groups > 1 and
                                                   c2.out_channels != c2.in_channels):
            continue
        prev, between = node.args[0], []
        while (len(prev.users) == 1 and isinstance(m := _module(gm, prev), nn.Module)
               and (isinstance(m, (*_PASS_THROUGH, ChannelClip)) or _is_zero_pad(m))
               and isinstance(prev.args[0], fx.Node)):
            between.append(str(prev.target))
            prev = prev.args[0]
        c1 = _module(gm, prev)
        if isinstance(c1, nn.Conv2d) and len(prev.users) == 1 and \
                c1.out_channels == c2.in_channels:
            pairs.append((str(prev.target), between, str(node.target)))
    return pairs


@torch.no_grad()
def _equalize_pair(c1: nn.Conv2d, between: list[nn.Module], c2: nn.Conv2d) -> float:
    """Scale one pair (and the clip bounds between) in place; return the largest |log s|."""
    r1 = c1.weight.abs().flatten(1).amax(1)
    w2 = c2.weight
    r2 = (w2.abs().flatten(1).amax(1) if c2.groups > 1
          else w2.abs().transpose(0, 1).flatten(1).amax(1))
    s = torch.where((r1 > 0) & (r2 > 0), torch.sqrt(r1 / r2.clamp_min(1e-30)),
                    torch.ones_like(r1))
    c1.weight.div_(s.view(-1, 1, 1, 1))
    if c1.bias is not None:
        c1.bias.div_(s)
    for m in between:
        if isinstance(m, ChannelClip):
            m.bound.div_(s)  # type: ignore[operator]
    if c2.groups > 1:
        c2.weight.mul_(s.view(-1, 1, 1, 1))
    else:
        c2.weight.mul_(s.view(1, -1, 1, 1))
    return float(s.log().abs().max())


def equalize(model: nn.Module, relu: str = "clip") -> tuple[fx.GraphModule, dict[str, Any]]:
    """The equalised copy of ``model`` (see the module) and what was done:
    ``{"folded_batchnorm", "relu6_replaced", "pairs", "sweeps", "range_spread_before",
    "range_spread_after"}`` (the spreads: the median over equalised layers of the ratio of the
    largest to the smallest per-channel weight range).

    Raises:
        InputError: the model cannot be traced, or has no pair to equalise.
    """
    if relu not in ("clip", "relu"):
        raise InputError(f"equalize: relu must be clip or relu (got {relu!r})")
    relu6 = sum(isinstance(m, nn.ReLU6) for m in model.modules())
    gm = _trace(relu6_as_relu(model) if relu == "relu" else model)
    folded = fold_batchnorm(gm)
    clips = _relu6_as_clips(gm)
    pairs = conv_pairs(gm)
    if not pairs:
        raise InputError("--equalize found no conv → ReLU → conv pair to equalise in this model")
    convs: dict[str, Any] = {n: gm.get_submodule(n) for a, _, b in pairs for n in (a, b)}
    mids = {n: gm.get_submodule(n) for _, between, _ in pairs for n in between}
    before = range_spread(convs.values())
    sweeps = 0
    for sweeps in range(1, SWEEPS + 1):  # noqa: B007
        moved = max(_equalize_pair(convs[a], [mids[n] for n in between], convs[b])
                    for a, between, b in pairs)
        if moved < SETTLED:
            break
    return gm, {"folded_batchnorm": folded, "relu6_replaced": relu6 if relu == "relu" else 0,
                "relu6_as_channel_clip": clips, "pairs": len(pairs),
                "sweeps": sweeps, "range_spread_before": before,
                "range_spread_after": range_spread(convs.values())}


def range_spread(convs: Any) -> float:
    """Median over ``convs`` of (largest / median per-output-channel weight range): how many
    times the range one scale per tensor must cover exceeds a typical channel's.

    >>> c = nn.Conv2d(1, 3, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = c.weight.copy_(torch.tensor([1.0, 2.0, 8.0]).view(3, 1, 1, 1))
    >>> range_spread([c])
    4.0
    """
    spreads = []
    for c in convs:
        r = c.weight.detach().abs().flatten(1).amax(1)
        if len(r) and float(r.median()) > 0:
            spreads.append(float(r.max() / r.median()))
    return float(np.median(spreads)) if spreads else 1.0


def fake_quant_weight(w: torch.Tensor, *, per_channel: bool, qmax: int) -> torch.Tensor:
    """``w`` rounded as a symmetric int8 quantizer rounds it (scale max|w| / qmax per tensor
    or per output channel, zero point 0, round half to even).

    >>> fake_quant_weight(torch.tensor([1.0, -0.26, 0.3]), per_channel=False, qmax=2).tolist()
    [1.0, -0.5, 0.5]
    """
    dims = tuple(range(1, w.ndim))
    amax = w.abs().amax(dim=dims, keepdim=True) if per_channel and w.ndim > 1 else w.abs().max()
    scale = (amax / qmax).clamp_min(1e-12)
    return torch.clamp(torch.round(w / scale), -qmax, qmax) * scale


@torch.no_grad()
def correct_biases(model: nn.Module, x: np.ndarray, *, per_channel: bool, reduce_range: bool,
                   batch: int = 16, skip: Sequence[str] = ()) -> dict[str, Any]:
    """Correct, in place, the bias of every Conv2d and Linear of ``model`` for its weights'
    quantization error, measured on the float32 images ``x`` (see the module); return
    ``{"layers", "images", "mean_abs_shift", "skipped"}``.

    Layers named in ``skip`` (module paths such as ``features.0``, or a parent of them) stay
    float, so they have no quantization error and their biases are left alone. Weights round
    to ±127, or ±64 with ``reduce_range`` except depthwise ones, as the ONNX quantizer does
    (:func:`~edgepress.quantize.layers.weight_qmax`).
    """
    weighted = [(name, m) for name, m in model.named_modules()
                if isinstance(m, nn.Conv2d | nn.Linear)]
    layers = [m for name, m in weighted if not _named_in(name, skip)]
    skipped = len(weighted) - len(layers)
    errors: dict[nn.Module, torch.Tensor] = {
        m: fake_quant_weight(m.weight, per_channel=per_channel,
                             qmax=weight_qmax(reduce_range, module_is_depthwise(m))) - m.weight
        for m in layers}
    sums: dict[nn.Module, torch.Tensor] = {}
    counts: dict[nn.Module, int] = {}

    def hook(m: nn.Module, inputs: tuple, _out: Any) -> None:
        (inp,) = inputs[:1]
        if isinstance(m, nn.Conv2d):
            shift = m._conv_forward(inp, errors[m], None)  # noqa: SLF001
            total, n = shift.sum(dim=(0, 2, 3)), shift.shape[0] * shift.shape[2] * shift.shape[3]
        else:
            shift = inp.reshape(-1, inp.shape[-1]) @ errors[m].T
            total, n = shift.sum(0), shift.shape[0]
        sums[m] = sums.get(m, 0) + total
        counts[m] = counts.get(m, 0) + n

    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        model.eval()
        for i in range(0, len(x), batch):
            model(torch.from_numpy(np.ascontiguousarray(x[i:i + batch])))
    finally:
        for h in handles:
            h.remove()
    moved = []
    for m in layers:
        if m not in counts:
            continue
        mean = sums[m] / counts[m]
        if m.bias is None:
            m.bias = nn.Parameter(torch.zeros(m.weight.shape[0], dtype=m.weight.dtype))
        m.bias.sub_(mean)
        moved.append(float(mean.abs().mean()))
    return {"layers": len(moved), "images": int(len(x)), "skipped": skipped,
            "mean_abs_shift": float(np.mean(moved)) if moved else 0.0}


def _named_in(name: str, names: Sequence[str]) -> bool:
    """Whether module path ``name`` is one of ``names`` or inside one of them."""
    return any(name == s or name.startswith(s + ".") for s in names)


def prepare_for_quantization(model: nn.Module, config: Any, data: Any,
                             reduce_range: bool | None = None, *,
                             onnx: bool = False) -> tuple[nn.Module, dict]:
    """The model the int8 quantizer sees under ``config`` (``equalize``, ``bias_correction``;
    ``model`` itself is not changed) and what was done (for ``quantize.json``). Bias
    correction uses the config's calibration images and rounds weights to ±127, or ±64 with
    ``reduce_range`` (default: the config's) except depthwise ones. For the ONNX quantizer
    (``onnx``) it is left out: that build corrects the biases on its quantized graph instead
    (:mod:`~edgepress.quantize.biascorrect`), with the rounded inputs this correction ignores.
    """
    correct = config.bias_correction and not onnx
    if not (config.equalize or correct):
        return model, {}
    from .ptq import CALIB_BATCH, calibration_images

    report: dict[str, Any] = {}
    out: nn.Module = copy.deepcopy(model).eval()
    if config.equalize:
        out, report["equalize"] = equalize(out)
    if correct:
        x, _ = calibration_images(data, config.calibration or 0, config.seed, CALIB_BATCH)
        report["bias_correction"] = correct_biases(
            out, x, per_channel=config.per_channel,
            reduce_range=bool(config.reduce_range if reduce_range is None else reduce_range),
            skip=tuple(config.skip_layers))
    for p in out.parameters():
        p.requires_grad_(False)
    if not all(math.isfinite(float(p.abs().max())) for p in out.parameters() if p.numel()):
        raise InputError("equalisation / bias correction gave non-finite weights")
    return out, report
