"""Per-layer pruning sensitivity: prune one layer at a time, watch validation accuracy.

Each Conv / Linear layer in turn is magnitude-pruned to each sparsity (the others untouched, no
fine-tuning) and the model is scored on the validation split — the split for decisions such as
which layers to skip or prune less. Layers whose curve falls early are the sensitive ones.

Example:
    >>> scan = sensitivity_scan(model, ds, sparsities=(0.5, 0.9))  # doctest: +SKIP
    >>> write_scan(scan, "runs/mlp-scan")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import Dataset
from ..errors import InputError
from ..training import accuracy
from .masks import prunable_layers, smallest_mask, weight_of

DEFAULT_SPARSITIES = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95)


@torch.no_grad()
def sensitivity_scan(model: nn.Module, data: Dataset, *,
                     sparsities: tuple[float, ...] = DEFAULT_SPARSITIES,
                     skip_layers: tuple[str, ...] = ()) -> dict[str, Any]:
    """Validation accuracy with one layer pruned to each sparsity (the model is left unchanged).

    Args:
        model: a trained model.
        data: its dataset; only the validation split is used.
        sparsities: fractions in [0, 1).
        skip_layers: layers not to scan.

    Returns:
        ``{"baseline": acc, "sparsities": [...], "layers": [{"layer", "params", "accuracy":
        [...]}], "split": "val"}``.

    Raises:
        InputError: a sparsity outside [0, 1) or an unknown skip layer.
    """
    bad = [s for s in sparsities if not 0.0 <= s < 1.0]
    if bad or not sparsities:
        raise InputError(f"sensitivity sparsities must be in [0, 1) (got {list(sparsities)})")
    layers = prunable_layers(model, skip_layers)
    baseline = accuracy(model, data.x_val, data.y_val)
    rows = []
    for name, layer in layers.items():
        weight = weight_of(layer)
        original = weight.detach().clone()
        accs = []
        for s in sparsities:
            weight.mul_(smallest_mask(original, round(s * original.numel())))
            accs.append(accuracy(model, data.x_val, data.y_val))
            weight.copy_(original)
        rows.append({"layer": name, "params": original.numel(), "accuracy": accs})
    return {"baseline": baseline, "sparsities": list(sparsities), "layers": rows, "split": "val",
            "data": data.name}


def scan_markdown(scan: dict[str, Any]) -> str:
    """The scan as a Markdown table (accuracy drop in points against the unpruned model)."""
    head = "| layer | params | " + " | ".join(f"{s:.0%}" for s in scan["sparsities"]) + " |"
    lines = [f"Validation accuracy of the unpruned model: {scan['baseline']:.4f} "
             f"({scan['data']}); cells: accuracy (Δ points) with only that layer pruned.", "",
             head, "|---|---|" + "---|" * len(scan["sparsities"])]
    for row in scan["layers"]:
        cells = [f"{a:.4f} ({100 * (a - scan['baseline']):+.1f})" for a in row["accuracy"]]
        lines.append(f"| {row['layer']} | {row['params']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_scan(scan: dict[str, Any], path: str | os.PathLike, title: str = "") -> None:
    """Accuracy-vs-sparsity curves, one per layer, to a PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    xs = [100 * s for s in scan["sparsities"]]
    for row in scan["layers"]:
        ax.plot(xs, [100 * a for a in row["accuracy"]], marker="o", label=row["layer"])
    ax.axhline(100 * scan["baseline"], color="gray", linestyle="--", label="unpruned")
    ax.set_xlabel("sparsity of the one pruned layer (%)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(title or f"per-layer pruning sensitivity ({scan['data']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(str(path))
    plt.close(fig)


def scan_run(run: str | os.PathLike, *, out: str | os.PathLike, data: str | None = None,
             sparsities: tuple[float, ...] = DEFAULT_SPARSITIES,
             skip_layers: tuple[str, ...] = ()) -> dict[str, Any]:
    """Scan a run's model (see :func:`sensitivity_scan`) and write the table and plot to ``out``.

    Raises:
        InputError: a run without PyTorch weights, bad sparsities or skip layers.
    """
    from ..checkpoint import check_output_dir, open_trainable

    final = check_output_dir(out)
    if (final / "model.json").exists():
        raise InputError(f"--out {str(final)!r} is a run directory; the scan would replace it "
                         f"(choose a new folder)")
    parent, ds = open_trainable(run, data, technique="pruning")
    scan = sensitivity_scan(parent.build_model(), ds, sparsities=sparsities,
                            skip_layers=skip_layers)
    scan["run"] = str(parent.path)
    write_scan(scan, out, title=f"{parent.name} ({parent.model_name}) on {ds.name}")
    return scan


def write_scan(scan: dict[str, Any], out: str | os.PathLike, title: str = "") -> dict[str, Path]:
    """Write ``sensitivity.json``, ``sensitivity.md`` and ``sensitivity.png`` into ``out``.

    The folder is built aside and moved into place only when complete.
    """
    from ..checkpoint import atomic_dir

    final = Path(out)
    with atomic_dir(final) as tmp:
        (tmp / "sensitivity.json").write_text(json.dumps(scan, indent=2) + "\n")
        (tmp / "sensitivity.md").write_text(scan_markdown(scan))
        plot_scan(scan, tmp / "sensitivity.png", title)
    return {k: final / f"sensitivity.{k}" for k in ("json", "md", "png")}
