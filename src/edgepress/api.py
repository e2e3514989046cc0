"""High-level verbs that produce run directories (what the CLI calls).

Example:
    >>> from edgepress import train
    >>> rec = train("mlp", data="digits", out="runs/mlp-digits", epochs=2)  # doctest: +SKIP
    >>> rec["accuracy"] > 0.9  # doctest: +SKIP
    True
"""

from __future__ import annotations

import os

import torch

from .checkpoint import check_output_dir, new_meta
from .data import default_data, load_data
from .errors import InputError
from .produce import produce_run
from .training import default_recipe, fit, seed_everything
from .zoo import ModelSpec, create_model


def train(model: str, *, out: str | os.PathLike, data: str | None = None,
          epochs: int | None = None, seed: int = 0, batch_size: int | None = None,
          lr: float | None = None, train_subset: int | None = None,
          weights: str | os.PathLike | None = None, progress: bool = True,
          timed: bool = True) -> dict:
    """Train a model with its default recipe and write a complete run directory.

    Args:
        model: zoo spec, e.g. ``"cnn"`` or ``"lenet5:width=0.25"``, or a user's factory,
            ``"net.py:build[:k=v]"`` / ``"package.module:build"`` (trained with the generic
            default recipe, :class:`~edgepress.training.TrainConfig`).
        out: the run directory to write (replaced atomically if it exists).
        data: ``fashion-mnist``, ``digits``, ``npz:PATH`` or ``imagefolder:DIR[@HxW]``
            (default: Fashion-MNIST if installed, else digits).
        epochs, seed, batch_size, lr, train_subset: overrides of the model's default recipe.
        weights: start from these weights (safetensors or a state dict) instead of the seed's.
        progress: show a progress bar.
        timed: measure the run fully (``metrics.json``); ``False``: only what needs no timing
            (``figures.json``), for a study that times every variant in one compare.

    Returns:
        The run's measurement record (also in ``out/metrics.json``).

    Raises:
        InputError: unknown model or data, bad options or weights, or an output path that is a
            file.
    """
    spec = ModelSpec.parse(model)
    check_output_dir(out)
    config = default_recipe(spec.name, epochs=epochs, seed=seed, batch_size=batch_size, lr=lr,
                            train_subset=train_subset)
    ds = load_data(data or default_data())
    ds.require_labels("edgepress train (cross-entropy)")
    net = _built(spec, ds, config.seed, weights)
    torch.set_num_threads(os.cpu_count() or 1)
    result = fit(net, ds, config, progress=progress)
    meta = _meta(spec, ds, config.to_dict(), config.seed, weights,
                 splits=ds.subset(config.train_subset).splits_record())
    meta["training"] = {"history": result.history, "seconds": round(result.seconds, 2)}
    return produce_run(out, net, meta, timed=timed)


def import_model(model: str, *, out: str | os.PathLike, data: str | None = None,
                 weights: str | os.PathLike | None = None, seed: int = 0,
                 timed: bool = True) -> dict:
    """A measured run from a model as it is, without training: a user's pretrained network
    (``weights``) or a zoo model.

    Example:
        >>> rec = import_model("net.py:build", weights="net.safetensors", data="digits",
        ...                    out="runs/mine")  # doctest: +SKIP

    Raises:
        InputError: unknown model or data, weights that do not fit, or images the model rejects.
    """
    spec = ModelSpec.parse(model)
    check_output_dir(out)
    ds = load_data(data or default_data())
    net = _built(spec, ds, seed, weights).eval()
    meta = _meta(spec, ds, {"imported": True}, seed, weights, splits=ds.splits_record())
    if not ds.labelled:  # the model says how many classes it has
        meta["architecture"]["num_classes"] = check_io(net, ds.input_shape, None, str(spec))
    meta["training"] = None
    return produce_run(out, net, meta, timed=timed)


def _built(spec: ModelSpec, ds, seed: int, weights: str | os.PathLike | None):  # noqa: ANN001, ANN202
    """The model for ``ds`` (initial weights from ``seed``, or loaded from ``weights``), checked
    to accept the data's images and give one logit per class.
    """
    from .weights import load_weights_

    seed_everything(seed)  # the initial weights come from the seed too
    classes = ds.num_classes if ds.labelled else UNLABELLED_CLASSES
    net = create_model(spec, input_shape=ds.input_shape, num_classes=classes)
    if weights is not None:
        load_weights_(net, weights)
    check_io(net, ds.input_shape, ds.num_classes if ds.labelled else None, str(spec))
    return net


UNLABELLED_CLASSES = 1000  # photos have no classes: a zoo model gets ImageNet's 1000


def check_io(net: torch.nn.Module, input_shape: tuple[int, ...], num_classes: int | None,
             name: str) -> int:
    """Run one image through ``net``: it must accept ``input_shape`` and give N×classes logits
    (``num_classes=None``: any number, for data without labels); return the number of classes.

    Raises:
        InputError: the model rejects the shape, or returns the wrong number of outputs.
    """
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros((2, *input_shape)))
    except Exception as e:  # a shape mismatch deep in the user's model: say which input
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise InputError(f"model {name} rejects input of shape {[2, *input_shape]} "
                         f"(N×C×H×W): {first}") from None
    finally:
        net.train(was_training)
    if isinstance(out, torch.Tensor) and out.ndim == 2 and len(out) == 2 and \
            num_classes is None and out.shape[1] > 1:
        return int(out.shape[1])
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_classes):
        got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InputError(f"model {name} returns {got} for 2 images; the data has "
                         f"{num_classes or 'some'} classes (expected [2, "
                         f"{num_classes or 'classes'}])")
    return int(num_classes or 0)


def _meta(spec: ModelSpec, ds, config: dict, seed: int, weights, *, splits: dict) -> dict:  # noqa: ANN001
    meta = new_meta(zoo=spec.name, kwargs=spec.kwargs, input_shape=ds.input_shape,
                    num_classes=ds.num_classes or UNLABELLED_CLASSES, data=ds.name,
                    splits=splits, config=config,
                    seed=seed)
    if weights is not None:
        import hashlib
        from pathlib import Path

        w = Path(weights)
        meta["provenance"]["weights"] = {"file": str(w.resolve()),
                                         "sha256": hashlib.sha256(w.read_bytes()).hexdigest()}
    if getattr(ds, "classes", None):
        meta["classes"] = list(ds.classes)
    return meta
