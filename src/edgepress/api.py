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
from .produce import produce_run
from .training import default_recipe, fit, seed_everything
from .zoo import ModelSpec, create_model


def train(model: str, *, out: str | os.PathLike, data: str | None = None,
          epochs: int | None = None, seed: int = 0, batch_size: int | None = None,
          lr: float | None = None, train_subset: int | None = None,
          progress: bool = True) -> dict:
    """Train a zoo model with its default recipe and write a complete run directory.

    Args:
        model: zoo spec, e.g. ``"cnn"`` or ``"lenet5:width=0.25"``.
        out: the run directory to write (replaced atomically if it exists).
        data: ``fashion-mnist``, ``digits`` or ``npz:PATH`` (default: Fashion-MNIST if
            installed, else digits).
        epochs, seed, batch_size, lr, train_subset: overrides of the model's default recipe.
        progress: show a progress bar.

    Returns:
        The run's measurement record (also in ``out/metrics.json``).

    Raises:
        InputError: unknown model or data, bad options, or an output path that is a file.
    """
    spec = ModelSpec.parse(model)
    check_output_dir(out)
    config = default_recipe(spec.name, epochs=epochs, seed=seed, batch_size=batch_size, lr=lr,
                            train_subset=train_subset)
    ds = load_data(data or default_data())
    seed_everything(config.seed)  # the initial weights come from the seed too
    net = create_model(spec, input_shape=ds.input_shape, num_classes=ds.num_classes)
    torch.set_num_threads(os.cpu_count() or 1)
    result = fit(net, ds, config, progress=progress)
    meta = new_meta(zoo=spec.name, kwargs=spec.kwargs, input_shape=ds.input_shape,
                    num_classes=ds.num_classes, data=ds.name, splits=ds.subset(
                        config.train_subset).splits_record(), config=config.to_dict(),
                    seed=config.seed)
    meta["training"] = {"history": result.history, "seconds": round(result.seconds, 2)}
    return produce_run(out, net, meta)
