"""The pruning verbs: :func:`prune_` (a model, in place) and :func:`prune` (a run → a new run).

``prune`` rebuilds the parent run's PyTorch model, prunes and fine-tunes it (masks re-applied
after every optimizer step, so they survive into the saved weights and the ONNX initializers),
and writes a complete run directory: weights, ``model.json`` (parent recorded, for fidelity),
``prune.json`` (the per-layer report), ``model.sparse.safetensors`` (the compressed sparse form),
the deployment ONNX and ``metrics.json`` with extra fields ``layer_sparsity``,
``weight_sparsity``, ``sparse_storage`` and ``pruning``.

Example:
    >>> from edgepress.prune import PruneConfig, prune
    >>> rec = prune("runs/mlp", PruneConfig(method="magnitude", sparsity=0.9, scope="global",
    ...             schedule="agp"), out="runs/mlp-p90")  # doctest: +SKIP
    >>> rec["weight_sparsity"] > 0.89  # doctest: +SKIP
    True
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..checkpoint import WEIGHTS, Run
from ..data import Dataset
from ..training import TrainConfig, TrainResult, fit
from .base import Method
from .channel import ChannelMethod, widths
from .config import PruneConfig
from .l1 import L1Method
from .magnitude import MagnitudeMethod
from .masks import layer_sparsity
from .nm import NMMethod
from .storage import SPARSE_FILE, save_sparse

METHODS: dict[str, type[Method]] = {"magnitude": MagnitudeMethod, "l1": L1Method,
                                    "nm": NMMethod, "channel": ChannelMethod}
REPORT_FILE = "prune.json"


@dataclass
class PruneReport:
    """What pruning did: per-layer sparsity, parameters before/after, method details, training."""

    method: str
    layers: dict[str, dict] = field(default_factory=dict)
    weight_sparsity: float = 0.0
    params_before: int = 0
    params_after: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def finetune_config(config: PruneConfig, recipe: TrainConfig | None = None) -> TrainConfig:
    """The fine-tuning :class:`TrainConfig`: the model's recipe with the pruning options applied
    (:meth:`~edgepress.finetune.Finetune.train_config`).
    """
    return config.finetune.train_config(recipe, seed=config.seed)


def prune_(model: nn.Module, config: PruneConfig, *, data: Dataset | str,
           recipe: TrainConfig | None = None, teacher: nn.Module | None = None,
           progress: bool = True) -> PruneReport:
    """Prune ``model`` in place, fine-tune it on ``data``'s train split, report what changed.

    Args:
        model: a trained PyTorch model (changed in place; channel pruning replaces its layers'
            weights with smaller ones).
        config: the method and its options.
        data: fine-tuning uses train; validation accuracy is reported per epoch.
        recipe: the model's training recipe (fine-tuning starts from it); default TrainConfig().
        teacher: distil from this model while fine-tuning (``config.finetune.alpha`` and
            ``temperature``); ``None`` fine-tunes on the labels alone.
        progress: show a progress bar.

    Returns:
        A :class:`PruneReport`.

    Raises:
        InputError: options that do not fit this model (unknown skip layer, a channel ratio that
            empties a layer, BN importance without BN, ...).

    Example:
        >>> report = prune_(model, PruneConfig(method="nm", nm="2:4"),
        ...                 data="digits")  # doctest: +SKIP
    """
    if isinstance(data, str):
        from ..data import load_data

        data = load_data(data)
    params_before = sum(p.numel() for p in model.parameters())
    method = METHODS[config.method](model, config, input_shape=data.input_shape, data=data)
    tc = finetune_config(config, recipe)
    n_train = len(data.subset(tc.train_subset).y_train)
    method.prepare(math.ceil(n_train / tc.batch_size) * tc.epochs)
    loss_fn = method.loss_fn
    if teacher is not None:
        from ..finetune import distilled

        loss_fn = distilled(loss_fn, teacher, alpha=config.finetune.alpha,
                            temperature=config.finetune.temperature)
    result = (fit(model, data, tc, loss_fn=loss_fn, after_step=method.after_step,
                  progress=progress) if tc.epochs > 0 else TrainResult())
    details = method.finish()
    model.eval()
    pruned = set(method.pruned_layers)
    layers = {name: {**row, "pruned": name in pruned}
              for name, row in layer_sparsity(model).items()}
    total = sum(r["params"] for r in layers.values())
    nonzero = sum(r["nonzero"] for r in layers.values())
    return PruneReport(
        method=config.method, layers=layers, weight_sparsity=1.0 - nonzero / max(total, 1),
        params_before=params_before, params_after=sum(p.numel() for p in model.parameters()),
        details=details,
        training={"config": tc.to_dict(), "history": result.history,
                  "seconds": round(result.seconds, 2)})


def prune(run: str | os.PathLike | Run, config: PruneConfig, *, out: str | os.PathLike,
          data: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Prune a run's model into a new run directory at ``out``; return its measurement record.

    The step runner (:func:`edgepress.steps.run_step`) opens the parent, applies
    :func:`apply_prune` and writes the measured run.

    Args:
        run: a run directory (or loaded :class:`Run`) with PyTorch weights.
        config: the method and its options.
        out: the run directory to write (built aside, moved into place when complete).
        data: fine-tuning data (default: the parent run's).
        progress: show a progress bar.

    Returns:
        The ``metrics.json`` record, with ``layer_sparsity``, ``weight_sparsity``,
        ``sparse_storage`` and ``pruning`` added.

    Raises:
        InputError: a plain ONNX file or a run without PyTorch weights, data whose images do not
            fit the model, ``out`` equal to the parent, or options that do not fit the model.
    """
    from ..steps import run_step

    return run_step("prune", run, config, out=out, data=data, progress=progress).record


def open_prune(target: Any, data: str | None, config: PruneConfig) -> tuple[nn.Module, Any]:
    """The run to prune (it must have PyTorch weights), its model and the step context.

    Raises:
        InputError: a plain ONNX file, a run without weights, or images that do not fit.
    """
    from ..steps import open_torch

    return open_torch(target, data, config, technique="pruning")


def apply_prune(model: nn.Module, config: PruneConfig, ctx: Any) -> Any:
    """The prune step: :func:`prune_` ``model`` in place (fine-tuned from ``ctx.recipe``,
    distilled from ``ctx.teacher`` when asked), and say what the new run is.
    """
    from ..steps import StepResult

    ds = ctx.data
    teacher = ctx.teacher(config.finetune)
    report = prune_(model, config, data=ds, recipe=ctx.recipe, teacher=teacher,
                    progress=ctx.progress)
    arch = ctx.parent_architecture()
    if config.method == "channel" or arch.get("pruned_shapes"):
        arch.update(pruned_shapes=True, widths=widths(model))
    sections = {"pruning": {"method": config.method, "weight_sparsity": report.weight_sparsity,
                            "params_before": report.params_before,
                            "params_after": report.params_after},
                "training": report.training}
    splits = ds.subset(report.training["config"]["train_subset"]).splits_record()

    def finish(tmp: Path, record: dict[str, Any]) -> dict[str, Any]:
        from ..measurement.size import file_sizes

        storage = save_sparse(tmp / SPARSE_FILE, model.state_dict())
        storage["dense_file_bytes"], storage["dense_file_gzip_bytes"] = file_sizes(tmp / WEIGHTS)
        return _extra_fields(record, report, storage)

    return StepResult(model=model, config=config.to_dict(), architecture=arch, splits=splits,
                      sections=sections, files={REPORT_FILE: report.to_dict()}, finish=finish,
                      report=report, seed=config.seed)


def _extra_fields(record: dict[str, Any], report: PruneReport,
                  storage: dict[str, Any]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for kind in storage["encodings"].values():
        counts[kind] = counts.get(kind, 0) + 1
    sparse = {**{k: v for k, v in storage.items() if k != "encodings"}, "encodings": counts,
              "smaller_than_deployment_gzip": storage["gzip_bytes"] < record["size_gzip_bytes"]}
    return {
        "layer_sparsity": {name: row["sparsity"] for name, row in report.layers.items()},
        "weight_sparsity": report.weight_sparsity,
        "sparse_storage": sparse,
        "pruning": {"method": report.method, "params_before": report.params_before,
                    "params_after": report.params_after,
                    **{k: v for k, v in report.details.items() if k != "schedule_trace"}},
    }
