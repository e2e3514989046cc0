"""Quantization-aware training: fake-quant with a straight-through estimator, then fine-tune.

What the fine-tuning sees is what ONNX Runtime will run:

* BatchNorm is folded into its convolution first (the exporter folds it too), so the weights
  that are fake-quantized are the ones that get quantized. The folded shift lives in a small
  trainable bias module during training and is written back as an identity BatchNorm, so the run
  keeps the zoo architecture and its ``model.safetensors`` loads as usual.
* Weights: symmetric int8 (±127, or ±64 with ``reduce_range`` except depthwise ones), per
  output channel or per tensor, scale from the current max |w| — exactly ONNX Runtime's weight
  quantization.
  Low-bit QAT (``bits`` < 8) fake-quantizes weights with :mod:`.lowbit`'s own quantizer (the
  one the weight-only export uses, so the trained-for grid is the deployed grid), and no
  activations.
* Activations: the input of every quantized Conv / Linear is fake-quantized to uint8
  (asymmetric) with a running (EMA) min/max; at the end the ranges are re-measured on the
  calibration images with min/max, as ONNX Runtime's calibration will measure them.
* Gradients pass through rounding unchanged (STE) and are cut outside the clamping range.

The result is exported like any fp32 model and then quantized by the static int8 (or
weight-only) path with the same calibration images.

Example:
    >>> cfg = QuantConfig(mode="qat")
    >>> info = qat_(model, ds, cfg, calib_x, progress=False)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..data import Dataset
from ..training import TrainConfig, accuracy, cross_entropy, fit
from .config import QuantConfig
from .layers import module_is_depthwise, weight_qmax

EMA = 0.01


class _Shift(nn.Module):
    """A folded BatchNorm: only its per-channel shift remains (trainable)."""

    def __init__(self, bias: torch.Tensor):
        super().__init__()
        self.bias = nn.Parameter(bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x + self.bias.view(1, -1, *([1] * (x.dim() - 2)))


def _conv_bn_pairs(model: nn.Module) -> Iterator[tuple[nn.Sequential, int]]:
    for seq in model.modules():
        if isinstance(seq, nn.Sequential):
            mods = list(seq)
            for i in range(len(mods) - 1):
                if isinstance(mods[i], nn.Conv2d) and isinstance(mods[i + 1], nn.BatchNorm2d):
                    yield seq, i


@torch.no_grad()
def fold_bn_(model: nn.Module) -> int:
    """Fold every Conv→BatchNorm pair in place (BN becomes a trainable shift); return the count."""
    n = 0
    for seq, i in list(_conv_bn_pairs(model)):
        conv, bn = cast(nn.Conv2d, seq[i]), cast(nn.BatchNorm2d, seq[i + 1])
        assert bn.running_var is not None and bn.running_mean is not None
        k = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        conv.weight.mul_(k.view(-1, 1, 1, 1))
        shift = bn.bias - bn.running_mean * k
        if conv.bias is not None:
            shift = shift + conv.bias * k
            conv.bias.zero_()
        seq[i + 1] = _Shift(shift)
        n += 1
    return n


@torch.no_grad()
def unfold_bn_(model: nn.Module) -> None:
    """Turn each folded shift back into a BatchNorm that adds it and does nothing else."""
    for seq in model.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for i, mod in enumerate(list(seq)):
            if isinstance(mod, _Shift):
                c = mod.bias.numel()
                bn = nn.BatchNorm2d(c)
                assert bn.running_var is not None and bn.running_mean is not None
                bn.running_var.fill_(_one_minus(bn.eps))
                bn.running_mean.zero_()
                bn.weight.fill_(1.0)
                bn.bias.copy_(mod.bias)
                seq[i] = bn.eval()


def _one_minus(eps: float) -> float:
    """A float32 ``v`` with ``v + eps == 1`` exactly, so BN's ``1/sqrt(v + eps)`` is exactly 1."""
    v = np.float32(1.0) - np.float32(eps)
    while np.float32(v + np.float32(eps)) != np.float32(1.0):
        v = np.nextafter(v, np.float32(2.0) if v + np.float32(eps) < 1 else np.float32(0.0))
    return float(v)


class WeightFakeQuant(nn.Module):
    """Parametrization: the weight as the quantized model will see it (STE gradient)."""

    def __init__(self, bits: int, per_channel: bool, group_size: int | None = None,
                 qmax: int = 127):
        super().__init__()
        self.bits, self.per_channel, self.group_size = bits, per_channel, group_size
        self.qmax = qmax
        self.enabled = True

    def forward(self, w: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if not self.enabled:
            return w
        if self.bits == 8:
            dims = tuple(range(1, w.dim())) if self.per_channel else tuple(range(w.dim()))
            s = (w.detach().abs().amax(dim=dims, keepdim=True) / self.qmax).clamp_min(1e-12)
            q = torch.clamp(torch.round(w / s), -self.qmax, self.qmax) * s
        else:
            q = _lowbit_fake(w, self.bits, self.group_size)
        return w + (q - w).detach()


def _lowbit_fake(w: torch.Tensor, bits: int, group_size: int | None) -> torch.Tensor:
    """The weight exactly as the weight-only export will store it: the same
    :func:`~.lowbit.quantize_weight` (per output channel / group, clipping search), so the grid
    QAT trains against is the grid that is deployed.
    """
    from .lowbit import dequantize_weight, quantize_weight

    t = quantize_weight(w.detach().cpu().numpy(), axis=0, bits=bits, group_size=group_size)
    return torch.from_numpy(dequantize_weight(t)).to(w.dtype)


class ActObserver:
    """Forward pre-hook: tracks the input range (EMA in training) and fake-quantizes to uint8."""

    def __init__(self) -> None:
        self.lo: float | None = None
        self.hi: float | None = None
        self.enabled = True
        self.calibrating = False

    def observe(self, x: torch.Tensor, ema: bool) -> None:
        """Update the range with ``x``: running min/max, or an EMA of batch min/max."""
        lo, hi = float(x.detach().min()), float(x.detach().max())
        if self.lo is None or self.hi is None:
            self.lo, self.hi = lo, hi
        elif ema:
            self.lo += EMA * (lo - self.lo)
            self.hi += EMA * (hi - self.hi)
        else:
            self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)

    def __call__(self, module: nn.Module, args: tuple) -> tuple | None:  # noqa: D102
        x = args[0]
        if self.calibrating:
            self.observe(x, ema=False)
            return None
        if module.training:
            self.observe(x, ema=True)
        if not self.enabled or self.lo is None or self.hi is None:
            return None
        lo, hi = min(self.lo, 0.0), max(self.hi, 0.0)
        scale = max((hi - lo) / 255.0, 1e-12)
        zero = int(min(255, max(0, round(-lo / scale))))
        return (torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255), *args[1:])


def _targets(model: nn.Module, skip: list[str]) -> list[tuple[str, nn.Module]]:
    def skipped(name: str) -> bool:
        return any(name == s or name.startswith(s + ".") for s in skip)

    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear)) and not skipped(n)]


@torch.no_grad()
def _calibrate(model: nn.Module, observers: list[ActObserver], x: np.ndarray) -> None:
    """Re-measure activation ranges with min/max over ``x`` on the float model (as ORT does)."""
    fakes = [m for m in model.modules() if isinstance(m, WeightFakeQuant)]
    for ob in observers:
        ob.lo = ob.hi = None
        ob.calibrating = True
    for f in fakes:
        f.enabled = False
    model.eval()
    try:
        for i in range(0, len(x), 256):
            model(torch.from_numpy(x[i:i + 256]))
    finally:
        for ob in observers:
            ob.calibrating = False
        for f in fakes:
            f.enabled = True


def qat_(model: nn.Module, data: Dataset, config: QuantConfig, calib_x: np.ndarray | None, *,
         progress: bool = True, teacher: nn.Module | None = None) -> dict:
    """Fine-tune ``model`` in place with fake quantization; leave plain fp32 weights behind.

    Args:
        model: a zoo model (BN is folded, then written back as identity BN).
        data: fine-tuning uses its train split; validation accuracy is reported per epoch.
        config: ``bits``, ``granularity``, ``group_size``, ``skip_layers``, ``epochs``, ``lr``,
            ``seed``.
        calib_x: the calibration images (int8 QAT only).
        progress: show the training progress bar.
        teacher: distil from this model while fine-tuning (``config.alpha`` and
            ``temperature``; see :mod:`edgepress.finetune`); ``None``: the labels alone.

    Returns:
        ``{"folded_bn", "layers", "history", "val_accuracy_fakequant", "seconds"}``.
    """
    config = config.resolved()
    folded = fold_bn_(model)
    targets = _targets(model, config.skip_layers)
    observers: list[ActObserver] = []
    hooks = []
    for _, mod in targets:
        qmax = weight_qmax(bool(config.reduce_range), module_is_depthwise(mod))
        fake = WeightFakeQuant(int(config.bits or 8), config.per_channel, config.group_size, qmax)
        parametrize.register_parametrization(mod, "weight", fake)
        if config.bits == 8:
            ob = ActObserver()
            observers.append(ob)
            hooks.append(mod.register_forward_pre_hook(ob))
    try:
        if observers:
            assert calib_x is not None, "int8 QAT needs the calibration images"
            _calibrate(model, observers, calib_x)
        tc = TrainConfig(epochs=int(config.epochs or 2), lr=float(config.lr or 1e-4),
                         schedule="cosine", weight_decay=0.0, seed=config.seed,
                         train_subset=config.train_subset)
        loss_fn = cross_entropy
        if teacher is not None:
            from ..finetune import distilled

            loss_fn = distilled(cross_entropy, teacher, alpha=float(config.alpha or 0.7),
                                temperature=float(config.temperature or 4.0))
        result = fit(model, data, tc, loss_fn=loss_fn, progress=progress)
        if observers and calib_x is not None:
            _calibrate(model, observers, calib_x)
        val = accuracy(model, data.x_val, data.y_val)
    finally:
        for h in hooks:
            h.remove()
        for _, mod in targets:
            if parametrize.is_parametrized(mod, "weight"):
                parametrize.remove_parametrizations(mod, "weight", leave_parametrized=False)
        unfold_bn_(model)
        model.eval()
    return {"folded_bn": folded, "layers": [n for n, _ in targets], "history": result.history,
            "val_accuracy_fakequant": val, "seconds": round(result.seconds, 2),
            "train": tc.to_dict()}

