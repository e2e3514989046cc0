"""Teacher → student distillation, always beside the same student trained without a teacher.

Both arms share the student architecture, initial weights (the same seed), epochs, optimizer,
schedule and data order; they differ only in the loss. ``distill.json`` records both.

Example:
    >>> summary = distill("runs/cnn", "lenet5:width=0.25", DistillConfig(seeds=3),
    ...                   out="runs/kd")  # doctest: +SKIP
    >>> summary["gap_closed"]  # doctest: +SKIP
    0.62
"""

from __future__ import annotations

import copy
import dataclasses
import os
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..checkpoint import Run, architecture_record, load_run
from ..data import Dataset, load_data
from ..errors import InputError
from ..training import TrainConfig, accuracy, cross_entropy, default_recipe, fit, seed_everything
from ..zoo import ModelSpec, create_model
from .config import DistillConfig, DistillStepConfig
from .loss import HintProjection, kd_loss


@dataclasses.dataclass
class _Student:
    """How to build a fresh student, and what to record about it."""

    build: Callable[[], nn.Module]
    zoo: str
    kwargs: dict
    recipe_name: str
    architecture: dict  # the new run's architecture record (a run's own, kept whole)


def distill(teacher: str | os.PathLike | nn.Module, student: str | nn.Module,
            config: DistillConfig, *, out: str | os.PathLike | None = None,
            data: str | Dataset | None = None, progress: bool = True) -> dict:
    """Train ``student`` from ``teacher`` (KD arm) and without it (baseline arm), per seed —
    or, given two in-memory models (and no ``out``), train ``student`` in place on ``teacher``'s
    soft targets (:func:`distill_`).

    Example:
        >>> report = distill(teacher_net, student_net, DistillConfig(epochs=2),
        ...                  data="digits")  # doctest: +SKIP

    The step runner (:func:`edgepress.steps.run_step`) opens the teacher, applies
    :func:`apply_distill` and writes both measured runs.

    Args:
        teacher: a run directory with PyTorch weights (frozen, eval mode).
        student: a zoo spec (``"lenet5:width=0.25"``), ``same[:k=v]`` (the teacher's own
            architecture with these options) or a run directory to start from.
        config: temperature, α, epochs, seeds, caching, hint.
        out: the KD student's run directory (seed ``config.seed``), with ``distill.json`` and the
            baseline student of the same seed in ``out/baseline``.
        data: the data (default: the teacher's).
        progress: show progress bars.

    Returns:
        The ``distill.json`` dict.

    Raises:
        InputError: teacher not a run, mismatched classes or input shapes, bad options.
    """
    if isinstance(teacher, nn.Module) or isinstance(student, nn.Module):
        if not (isinstance(teacher, nn.Module) and isinstance(student, nn.Module)):
            raise InputError("distill in memory takes two nn.Modules (teacher and student); "
                             "for run directories give both as paths or specs")
        if out is not None or data is None:
            raise InputError("in-memory distillation needs data= and no out= (save the student "
                             "as a run with edgepress.import_model)")
        return distill_(teacher, student, config, data=data, progress=progress)
    if out is None:
        raise InputError("distill needs out= (the student's run directory)")
    if isinstance(data, Dataset):
        data = data.name
    from ..steps import run_step

    step = DistillStepConfig(**config.to_dict(), student=str(student))
    return run_step("distill", teacher, step, out=out, data=data, progress=progress).report


def open_teacher(target: str | os.PathLike | Run, data: str | None,
                 config: DistillConfig) -> tuple[nn.Module, Any]:
    """The teacher run (frozen model) and the step context with its data.

    Raises:
        InputError: not a run, no PyTorch weights, images that do not fit, a hint with a cache.
    """
    from ..steps import StepContext

    t_run = target if isinstance(target, Run) else load_run(target)
    t_model = _frozen(t_run)
    ds = load_data(data or t_run.meta["data"])
    if not ds.labelled:
        raise InputError(f"distill trains a student beside a no-teacher twin on labels, and "
                         f"{ds.name} has none; to recover a compressed model without labels, "
                         "fine-tune it with --finetune-teacher parent")
    _check_shapes(t_run, ds)
    if config.cache_teacher and config.hint:
        raise InputError("a hint needs the teacher's features every batch; drop --cache-teacher")
    return t_model, StepContext(data=ds, parent=t_run, parent_ref=str(t_run.path.resolve()))


def apply_distill(teacher: nn.Module, config: DistillStepConfig, ctx: Any) -> Any:
    """The distill step: the parent is the teacher; train ``config.student`` with it (KD arm)
    and without it (baseline arm), for each seed. The new run is the KD student of the first
    seed, with the baseline of that seed as the child run ``baseline``.
    """
    from ..steps import StepResult

    ds = ctx.data
    t_run = ctx.parent
    spec = _student(config.resolve_student(t_run.meta["architecture"].get("zoo")), ds)
    _check_student(spec, teacher, ds)
    dcfg = config.distill_config()
    base_cfg = default_recipe(spec.recipe_name, epochs=dcfg.epochs, lr=dcfg.lr,
                              batch_size=dcfg.batch_size, train_subset=dcfg.train_subset)
    if dcfg.cache_teacher:  # cached logits are of the unaugmented images: no mirroring
        base_cfg = dataclasses.replace(base_cfg, augment="none")
    arms: dict[str, list[dict]] = {"kd": [], "baseline": []}
    first: dict[str, nn.Module] = {}
    for seed in range(dcfg.seed, dcfg.seed + dcfg.seeds):
        train_cfg = TrainConfig(**{**base_cfg.to_dict(), "seed": seed})
        for arm in ("baseline", "kd"):
            model, res = _train_arm(arm, spec, teacher, ds, train_cfg, dcfg, ctx.progress)
            arms[arm].append({"seed": seed, "val_accuracy": res,
                              "test_accuracy": accuracy(model, ds.x_test, ds.y_test)})
            first.setdefault(arm, model)
    summary = _summary(_teacher_accuracy(teacher, t_run, ds), ds, arms, dcfg, base_cfg,
                       t_run, spec)
    splits = ds.subset(dcfg.train_subset).splits_record()

    def arm_result(arm: str) -> StepResult:
        return StepResult(model=first[arm], architecture=spec.architecture, splits=splits,
                          config={"arm": arm, "distill": dcfg.to_dict(),
                                  "train": base_cfg.to_dict()}, seed=dcfg.seed)

    result = arm_result("kd")
    result.files = {"distill.json": summary}
    result.children = {"baseline": arm_result("baseline")}
    result.report = summary
    return result


def distill_(teacher: nn.Module, student: nn.Module, config: DistillConfig, *,
             data: str | Dataset, recipe: TrainConfig | None = None,
             progress: bool = True) -> dict:
    """Train an in-memory ``student`` (in place) on ``teacher``'s soft targets; the teacher is
    left unchanged. Training uses ``data``'s train split; the report gives validation accuracy.

    Example:
        >>> report = distill_(teacher, student, DistillConfig(epochs=2),
        ...                   data="digits")  # doctest: +SKIP
        >>> report["val_accuracy"] > 0.9  # doctest: +SKIP
        True

    Raises:
        InputError: the models do not take the data's images or give its classes.
    """
    ds = data if isinstance(data, Dataset) else load_data(data)
    from ..api import check_io

    check_io(teacher, ds.input_shape, ds.num_classes, "teacher")
    check_io(student, ds.input_shape, ds.num_classes, "student")
    base = recipe or TrainConfig()
    tc = TrainConfig(**{**base.to_dict(), **{k: v for k, v in (
        ("epochs", config.epochs), ("lr", config.lr), ("batch_size", config.batch_size),
        ("train_subset", config.train_subset)) if v is not None}, "seed": config.seed})
    was = [p.requires_grad for p in teacher.parameters()]
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    try:
        loss_fn, extra = _online_loss(teacher, student, ds, config)
        res = fit(student, ds, tc, loss_fn=loss_fn, progress=progress,
                  params=[*student.parameters(), *extra])
    finally:
        for p, g in zip(teacher.parameters(), was, strict=True):
            p.requires_grad_(g)
    student.eval()
    return {"val_accuracy": res.val_accuracy, "history": res.history,
            "seconds": round(res.seconds, 2), "config": tc.to_dict()}


def _frozen(run: Run) -> nn.Module:
    if not run.has_weights:
        raise InputError(f"teacher {str(run.path)!r} has no PyTorch weights (came from an ONNX "
                         "file); distillation needs a PyTorch teacher")
    model = run.build_model().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _check_shapes(t_run: Run, ds: Dataset) -> None:
    if tuple(t_run.input_shape) != tuple(ds.input_shape):
        raise InputError(f"teacher expects input {list(t_run.input_shape)} but {ds.name} has "
                         f"{list(ds.input_shape)}")
    if t_run.meta["architecture"]["num_classes"] != ds.num_classes:
        raise InputError(f"teacher has {t_run.meta['architecture']['num_classes']} classes but "
                         f"{ds.name} has {ds.num_classes}")


def _student(student: str, ds: Dataset) -> _Student:
    p = Path(student)
    if p.is_dir():
        run = load_run(p)
        if tuple(run.input_shape) != tuple(ds.input_shape):
            raise InputError(f"student expects input {list(run.input_shape)} but {ds.name} has "
                             f"{list(ds.input_shape)}")
        arch = run.meta["architecture"]
        if "zoo" not in arch:
            raise InputError(f"student {str(p)!r} has no PyTorch architecture (it came from an "
                             "ONNX file)")
        return _Student(run.build_model, arch["zoo"], dict(arch.get("kwargs", {})), arch["zoo"],
                        copy.deepcopy(arch))
    spec = ModelSpec.parse(student)
    return _Student(lambda: create_model(spec, input_shape=ds.input_shape,
                                         num_classes=ds.num_classes),
                    spec.name, dict(spec.kwargs), spec.name,
                    architecture_record(zoo=spec.name, kwargs=dict(spec.kwargs),
                                        input_shape=tuple(ds.input_shape),
                                        num_classes=int(ds.num_classes)))


def _check_student(spec: _Student, teacher: nn.Module, ds: Dataset) -> None:
    x = torch.from_numpy(ds.x_val[:2])
    with torch.no_grad():
        n_t = teacher(x).shape[1]
        n_s = spec.build().eval()(x).shape[1]
    if n_t != n_s:
        raise InputError(f"teacher has {n_t} classes but the student has {n_s}")


def _train_arm(arm: str, spec: _Student, teacher: nn.Module, ds: Dataset, train_cfg: TrainConfig,
               config: DistillConfig, progress: bool) -> tuple[nn.Module, float]:
    seed_everything(train_cfg.seed)  # both arms start from the same weights
    model = spec.build()
    if arm == "baseline":
        res = fit(model, ds, train_cfg, loss_fn=cross_entropy, progress=progress)
        return model, res.val_accuracy
    if config.cache_teacher:  # the teacher's logits of the images trained on, and no others
        used = ds.subset(train_cfg.train_subset)
        loss_fn, data = _cached_loss(teacher, used, config), _indexed(used)
        return model, fit(model, data, train_cfg, loss_fn=loss_fn, progress=progress).val_accuracy
    loss_fn, extra = _online_loss(teacher, model, ds, config)
    params = [*model.parameters(), *extra]
    return model, fit(model, ds, train_cfg, loss_fn=loss_fn, progress=progress,
                      params=params).val_accuracy


def _cached_loss(teacher: nn.Module, ds: Dataset, config: DistillConfig) -> Callable:
    """Teacher logits over the train split computed once; ``y`` then carries row indices."""
    from ..training import predict

    logits = torch.from_numpy(predict(teacher, ds.x_train))
    labels = torch.from_numpy(ds.y_train)

    def loss_fn(model: nn.Module, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return kd_loss(model(x), logits[idx], labels[idx], temperature=config.temperature,
                       alpha=config.alpha)

    return loss_fn


def _indexed(ds: Dataset) -> Dataset:
    return dataclasses.replace(ds, y_train=np.arange(len(ds.y_train), dtype=np.int64))


def _online_loss(teacher: nn.Module, student: nn.Module, ds: Dataset,
                 config: DistillConfig) -> tuple[Callable, list[nn.Parameter]]:
    """Teacher logits per batch (no memory), plus the hint term when asked for."""
    hint = _hint(teacher, student, ds, config) if config.hint_layers else None

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            z_t = teacher(x)
        loss = kd_loss(model(x), z_t, y, temperature=config.temperature, alpha=config.alpha)
        if hint is not None:
            proj, feats = hint
            loss = loss + config.hint_weight * proj(feats["s"], feats["t"])
        return loss

    return loss_fn, (list(hint[0].parameters()) if hint else [])


def _hint(teacher: nn.Module, student: nn.Module, ds: Dataset,
          config: DistillConfig) -> tuple[HintProjection, dict]:
    t_name, s_name = config.hint_layers  # type: ignore[misc]
    feats: dict[str, torch.Tensor] = {}
    for key, model, name in (("t", teacher, t_name), ("s", student, s_name)):
        try:
            layer = model.get_submodule(name)
        except AttributeError:
            raise InputError(f"hint layer {name!r} not found in the "
                             f"{'teacher' if key == 't' else 'student'}") from None
        layer.register_forward_hook(lambda _m, _i, out, key=key: feats.__setitem__(key, out))
    with torch.no_grad():
        x = torch.from_numpy(ds.x_val[:2])
        teacher(x)
        student.eval()(x)
    f_t, f_s = feats["t"], feats["s"]
    if f_t.dim() != f_s.dim() or f_t.dim() not in (2, 4):
        raise InputError(f"hint layers give features of shapes {list(f_t.shape)} and "
                         f"{list(f_s.shape)}; both must be N×C×H×W or N×C")
    return HintProjection(f_s.shape[1], f_t.shape[1], spatial=f_t.dim() == 4), feats


def _teacher_accuracy(teacher: nn.Module, t_run: Run, ds: Dataset) -> float:
    """The teacher's test accuracy: its run's measured deployment on this very test split
    (the same weights; the ONNX file matches PyTorch to 1e-4), else computed in PyTorch.
    """
    from ..produce import step_record

    try:
        rec = step_record(t_run.path)
        if rec.get("data") == ds.name and rec.get("n_test") == len(ds.y_test) and \
                (rec.get("deployment") or {}).get("precision", "fp32") == "fp32":
            return float(rec["accuracy"])
    except (InputError, KeyError, TypeError, ValueError):
        pass
    return accuracy(teacher, ds.x_test, ds.y_test)


def _summary(t_acc: float, ds: Dataset, arms: dict, config: DistillConfig,
             base_cfg: TrainConfig, t_run: Run, spec: _Student) -> dict:
    kd = [r["test_accuracy"] for r in arms["kd"]]
    base = [r["test_accuracy"] for r in arms["baseline"]]
    mean_kd, mean_base = statistics.fmean(kd), statistics.fmean(base)
    gap = (mean_kd - mean_base) / (t_acc - mean_base) if t_acc > mean_base else None
    return {
        "teacher_accuracy": t_acc, "kd_accuracy": kd, "baseline_accuracy": base,
        "gap_closed": gap,
        "kd_mean": mean_kd, "kd_std": statistics.stdev(kd) if len(kd) > 1 else 0.0,
        "baseline_mean": mean_base,
        "baseline_std": statistics.stdev(base) if len(base) > 1 else 0.0,
        "kd_val_accuracy": [r["val_accuracy"] for r in arms["kd"]],
        "baseline_val_accuracy": [r["val_accuracy"] for r in arms["baseline"]],
        "config": {"distill": config.to_dict(), "train": base_cfg.to_dict(),
                   "teacher": str(t_run.path), "student": {"zoo": spec.zoo, "kwargs": spec.kwargs},
                   "data": ds.name, "seeds": [r["seed"] for r in arms["kd"]],
                   "arms_differ_only_in": "loss (baseline: cross-entropy; kd: Hinton KD)"},
    }
