"""Per-layer sensitivity: quantize one layer at a time, measure what it costs on validation.

For every weighted layer, only that layer is made int8 (static QDQ, the run's calibration
settings; ranges calibrated once and reused from a cache); the rest stays fp32. Its cost is the
validation accuracy lost against fp32, in points, and the SQNR of the model's logits. On data
without labels (photographs) the cost is the top-1 agreement with fp32 lost, in points: the
fp32 model agrees with itself on every image, so a layer that costs 3 pts leaves 97%.

Example:
    >>> rows = layer_sensitivity(ctx)  # doctest: +SKIP
    >>> write_sensitivity(rows, "runs/cnn-int8")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import Dataset
from .config import QuantConfig
from .evaluate import OnnxEval, compare_logits
from .layers import Layer, find_layers, resolve_layers
from .ptq import calibration_batch, calibration_images, preprocess, static_int8


@dataclass
class StaticContext:
    """What the static-int8 experiments share.

    The pre-processed model, calibration images, validation data and its fp32 logits, and a
    scratch folder with a calibration-range cache.
    """

    pre: Path
    config: QuantConfig
    calib_x: np.ndarray
    calibration_indices_hash: str
    x_val: np.ndarray
    y_val: np.ndarray | None
    ref_logits: np.ndarray
    input_name: str
    batch: int
    work: Path

    @classmethod
    def build(cls, fp32: str | os.PathLike, config: QuantConfig, data: Dataset,
              work: str | os.PathLike, *, reference: np.ndarray | None = None) -> StaticContext:
        """Pre-process ``fp32`` and gather calibration images and fp32 validation logits
        (``reference``: the parent's own, when ``fp32`` is not exactly its function, e.g.
        with bias-corrected biases).
        """
        work = Path(work)
        pre = work / "pre.onnx"
        preprocess(fp32, pre)
        ev = OnnxEval(pre)
        batch = calibration_batch(ev.fixed_batch)
        x, h = calibration_images(data, config.calibration or 0, config.seed, batch)
        return cls(pre, config, ev.shaped(x), h, data.x_val,
                   data.y_val if data.labelled else None,
                   ev.logits(data.x_val) if reference is None else reference,
                   ev.input_name, batch, work)

    @property
    def metric(self) -> str:
        """``accuracy`` on labelled data, else ``agreement`` (top-1, with the fp32 model)."""
        return "accuracy" if self.y_val is not None else "agreement"

    @property
    def layers(self) -> list[Layer]:
        """The weighted layers of the pre-processed model."""
        import onnx

        return find_layers(onnx.load(str(self.pre)))

    def skipped(self) -> list[Layer]:
        """The layers the config keeps float."""
        return resolve_layers(self.layers, self.config.skip_layers)

    def evaluate(self, *, exclude: Sequence[str] = (), only: list[str] | None = None) -> dict:
        """Quantize (all but ``exclude`` / only ``only`` nodes): accuracy (or agreement), loss
        and SQNR on val.
        """
        out = self.work / "trial.onnx"
        static_int8(self.pre, out, self.config, self.calib_x, input_name=self.input_name,
                    batch=self.batch, exclude_nodes=list(exclude), only_nodes=only,
                    cache=self.work / "ranges.json")
        logits = OnnxEval(out).logits(self.x_val)
        return compare_logits(self.ref_logits, logits, self.y_val)

    @property
    def fp32_accuracy(self) -> float:
        """Validation accuracy of the fp32 model (its agreement with itself, 1, unlabelled)."""
        if self.y_val is None:
            return 1.0
        return float((self.ref_logits.argmax(1) == self.y_val).mean())


def layer_sensitivity(ctx: StaticContext) -> list[dict]:
    """One row per layer (not skipped): ``layer, node, op, accuracy`` (``agreement`` on
    unlabelled data)``, loss_pts, sqnr_db``.

    Rows come back most sensitive first (largest loss, then lowest SQNR).
    """
    skipped = {ly.node for ly in ctx.skipped()}
    rows = []
    for ly in ctx.layers:
        if ly.node in skipped:
            continue
        rows.append({"layer": ly.name, "node": ly.node, "op": ly.op,
                     **ctx.evaluate(only=[ly.node])})
    return sorted(rows, key=lambda r: (-r["loss_pts"], r["sqnr_db"]))


def _metric(rows: list[dict]) -> str:
    return "agreement" if rows and "agreement" in rows[0] else "accuracy"


def sensitivity_markdown(rows: list[dict]) -> str:
    """The rows as a Markdown table (val accuracy, or top-1 agreement with fp32 unlabelled)."""
    metric = _metric(rows)
    head = "val accuracy" if metric == "accuracy" else "val top-1 agreement with fp32"
    lines = [f"| layer | op | {head} | loss (pts) | logit SQNR (dB) |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['layer']} | {r['op']} | {r[metric]:.4f} | {r['loss_pts']:+.2f} | "
              f"{r['sqnr_db']:.1f} |" for r in rows]
    return "\n".join(lines) + "\n"


def plot_sensitivity(rows: list[dict], path: str | os.PathLike, title: str = "") -> None:
    """A PNG bar plot: accuracy loss per layer (bars) and logit SQNR (points, right axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = sorted(rows, key=lambda r: r["layer"])
    names = [r["layer"] for r in order]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(names) + 2), 4.0))
    ax.bar(range(len(names)), [r["loss_pts"] for r in order], color="#c0504d")
    ax.set_ylabel(f"val {_metric(rows)} loss (pts)")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax2 = ax.twinx()
    ax2.plot(range(len(names)), [r["sqnr_db"] for r in order], "o", color="#1f4e79")
    ax2.set_ylabel("logit SQNR (dB)")
    ax.set_title(title or "int8 sensitivity, one layer at a time")
    fig.tight_layout()
    fig.savefig(str(path), dpi=110)
    plt.close(fig)


def write_sensitivity(rows: list[dict], folder: str | os.PathLike, title: str = "") -> list[Path]:
    """Write ``sensitivity.md`` and ``sensitivity.png`` into ``folder``; return the paths."""
    folder = Path(folder)
    md, png = folder / "sensitivity.md", folder / "sensitivity.png"
    md.write_text(sensitivity_markdown(rows))
    plot_sensitivity(rows, png, title)
    return [md, png]
