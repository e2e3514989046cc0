"""``--method channel``: remove whole output channels / neurons, physically, dependency-aware.

Torch-Pruning's :class:`DependencyGraph` traces the model and groups every tensor slice that must
shrink together: a conv's output channels with its BatchNorm and the next conv's input channels,
a depthwise conv's channels with the convs on both sides, the two branches of a residual add, the
``C·H·W`` block of a Flatten that feeds a Linear. Each group's channels are ranked by importance
(``l1`` / ``l2`` weight norms over the group, or ``bn`` — BatchNorm scales, network slimming) and
the lowest ``channel_ratio`` of them are cut out. The result is a smaller dense model: fewer
parameters and MACs, nothing left to mask. The output layer keeps its width (the classes).

Example:
    >>> from edgepress.zoo import create_model
    >>> m = create_model("cnn", input_shape=(1, 8, 8), num_classes=10)
    >>> method = ChannelMethod(m, PruneConfig(method="channel", channel_ratio=0.5),
    ...                        input_shape=(1, 8, 8))
    >>> method.prepare(total_steps=0)
    >>> m.features[0][0].out_channels, m.classifier.out_features
    (16, 10)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import DEFAULT_CALIBRATION
from ..errors import InputError
from .base import Method
from .config import PruneConfig
from .masks import PRUNABLE, prunable_layers, weight_of
from .reconstruct import Moments, consumers, data_importance, refit_


def _importance(kind: str) -> Any:
    import torch_pruning as tp

    return _IMPORTANCES[kind](tp)


_IMPORTANCES: dict[str, Callable[[Any], Any]] = {
    "l1": lambda tp: tp.importance.GroupMagnitudeImportance(p=1),
    "l2": lambda tp: tp.importance.GroupMagnitudeImportance(p=2),
    "bn": lambda tp: tp.importance.BNScaleImportance(),
}


def output_layers(model: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    """The Conv / Linear layer that runs last (it produces the logits; its width is the classes)."""
    order: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda mod, i, o: order.append(mod))
             for m in model.modules() if isinstance(m, PRUNABLE)]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    return order[-1:]


def widths(model: nn.Module) -> dict[str, list[int]]:
    """``[out, in]`` channels / features of every Conv and Linear layer."""
    return {name: [int(weight_of(m).shape[0]), int(weight_of(m).shape[1] * getattr(m, "groups", 1))]
            for name, m in prunable_layers(model).items()}


class ChannelMethod(Method):
    """Structured channel removal with Torch-Pruning, before fine-tuning."""

    def __init__(self, model: nn.Module, config: PruneConfig, *,
                 input_shape: tuple[int, ...] = (), data: Any = None):
        super().__init__(model, config, input_shape=input_shape, data=data)
        if not input_shape:
            raise InputError("channel pruning needs the model's input shape")
        self.example = torch.zeros(1, *input_shape)
        if config.importance == "bn" and not any(
                isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            raise InputError("--importance bn ranks channels by BatchNorm scales, but this model "
                             "has no BatchNorm layers; use --importance l1 or l2")
        self.before: dict[str, list[int]] = {}
        self.ratio = float(config.channel_ratio or 0.0)
        self.calibration = 0  # images the data-driven ranking / re-fit read
        self.refitted: list[str] = []

    def prepare(self, total_steps: int) -> None:
        """Build the dependency graph, check the ratio leaves every layer a channel, prune."""
        import torch_pruning as tp

        was_training = self.model.training
        self.model.eval()  # tracing must not touch BatchNorm running statistics
        self.before = widths(self.model)
        skipped = set(prunable_layers(self.model)) - set(self.layers)
        ignored = output_layers(self.model, self.example) + [
            self.model.get_submodule(n) for n in skipped]
        moments, original = self._moments(), None
        if self.config.reconstruct:
            original = {n: (m.weight.detach().clone(),
                            None if m.bias is None else m.bias.detach().clone())
                        for n, m in consumers(self.model).items()}
        names = {m: n for n, m in self.model.named_modules()}
        importance = (data_importance(moments, names) if self.config.importance == "data"
                      else _importance(self.config.importance or "l2"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pruner = tp.pruner.BasePruner(self.model, self.example, importance=importance,
                                          pruning_ratio=self.ratio, ignored_layers=ignored)
            self._check_ratio(pruner)
            kept = _Kept(self.before)
            for group in pruner.step(interactive=True):
                kept.record(group, names, pruner.DG)
                group.prune()
        if original is not None:
            self._refit(moments, original, kept)
        with torch.no_grad():
            self.model(self.example)  # the pruned model must still run
        self.model.train(was_training)

    def _moments(self) -> Moments:
        """Calibration moments of the unpruned model, when the ranking or the re-fit needs them."""
        if self.config.importance != "data" and not self.config.reconstruct:
            return Moments()
        if self.data is None:
            raise InputError("--importance data and --reconstruct read calibration images: "
                             "give the method its data")
        pool, _ = self.data.calibration_pool
        x = torch.from_numpy(np.ascontiguousarray(pool[:DEFAULT_CALIBRATION], dtype=np.float32))
        if not len(x):
            raise InputError("--importance data and --reconstruct need calibration images; "
                             "the data has none")
        self.calibration = int(len(x))
        return Moments.collect(self.model, x, second=bool(self.config.reconstruct))

    def _refit(self, moments: Moments, original: dict[str, Any], kept: _Kept) -> None:
        """Least-squares re-fit of every consumer whose inputs were removed."""
        layers = consumers(self.model)
        for name, (w, b) in original.items():
            keep_in = kept.keep.get((name, "in"))
            if keep_in is None or len(keep_in) == w.shape[1] or name not in moments.second:
                continue
            keep_out = kept.keep.get((name, "out"), list(range(w.shape[0])))
            refit_(layers[name], w, b, moments.second[name], keep_in, keep_out)
            self.refitted.append(name)

    def _check_ratio(self, pruner: Any) -> None:
        names = {m: n for n, m in self.model.named_modules()}
        ratio = self.ratio
        for group in pruner.DG.get_all_groups(ignored_layers=pruner.ignored_layers,
                                              root_module_types=pruner.root_module_types):
            if not pruner._check_pruning_ratio(group):
                continue
            root = group[0].dep.target.module
            channels = pruner.DG.get_out_channels(root) // pruner._get_channel_groups(group)
            if int(channels * (1 - ratio)) < 1:
                raise InputError(
                    f"--channel-ratio {ratio:g} would remove every channel of layer "
                    f"{names.get(root, '?')!r} ({channels} channels); use a ratio below "
                    f"{1 - 1 / channels:.3f} or --skip-layers it")

    def finish(self) -> dict[str, Any]:
        """Report the widths before and after."""
        after = widths(self.model)
        changed = {n: {"before": self.before[n], "after": after[n]}
                   for n in after if after[n] != self.before.get(n)}
        return {"widths": after, "changed": changed, "importance": self.config.importance,
                "channel_ratio": self.config.channel_ratio,
                "reconstruct": bool(self.config.reconstruct), "refitted_layers": self.refitted,
                "calibration_images": self.calibration}


class _Kept:
    """Which original input / output channels of each layer survive the groups pruned so far
    (a layer can be cut by several groups; later indices refer to what is left).
    """

    def __init__(self, widths_before: dict[str, list[int]]):
        self.widths = widths_before
        self.keep: dict[tuple[str, str], list[int]] = {}

    def record(self, group: Any, names: dict[nn.Module, str], graph: Any) -> None:
        for dep, idxs in group:
            name = names.get(dep.target.module)
            if name not in self.widths:
                continue
            side = ("out" if graph.is_out_channel_pruning_fn(dep.handler) else
                    "in" if graph.is_in_channel_pruning_fn(dep.handler) else None)
            if side is None:
                continue
            width = self.widths[name][0 if side == "out" else 1]
            left = self.keep.get((name, side), list(range(width)))
            gone = set(int(i) for i in idxs)
            self.keep[(name, side)] = [c for i, c in enumerate(left) if i not in gone]
