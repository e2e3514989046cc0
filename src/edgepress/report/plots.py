"""PNG plots of a comparison: accuracy vs gzip size and accuracy vs latency with the Pareto front
marked, and per-variant bars grouped by runtime (speed-up, size ratio, accuracy delta).

matplotlib is imported inside the functions (Agg backend, no display needed).

Example:
    >>> paths = write_plots(records, "study/")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..checkpoint import atomic_path
from .pareto import pareto_front
from .table import score

PLOTS = {"accuracy_vs_size": "accuracy_vs_size.png",
         "accuracy_vs_latency": "accuracy_vs_latency.png",
         "variants": "variants.png"}
# what each plot is for, in one sentence (the report's captions)
CAPTIONS = {
    "accuracy_vs_size": "Accuracy against download size (gzip -9, log scale). Look up and to "
                        "the left: the dashed line joins the variants that no other beats on "
                        "both; a variant below it buys nothing the others do not.",
    "accuracy_vs_latency": "Accuracy against median latency (1 thread, batch 1), one marker "
                           "per runtime. Up and to the left is better; the same variant can "
                           "sit far apart on the two runtimes.",
    "variants": "Per variant, against the original of the same runtime: speed-up with its 95% "
                "CI (bars crossing the grey line at 1 bought no speed), gzip size ratio (below 1 "
                "is smaller) and the accuracy change in points (below 0 lost accuracy)."}


def write_plots(records: list[dict], out: str | os.PathLike) -> dict[str, Path]:
    """Write the three PNGs into ``out`` (one set per runtime in the size/latency scatter);
    return ``{plot name: path}``.
    """
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out)
    paths = {}
    for key, cost, label, log in (
            ("accuracy_vs_size", lambda r: r["size_gzip_bytes"] / 1024, "gzip -9 size (KB)", True),
            ("accuracy_vs_latency", lambda r: r["latency_ms"]["median"],
             "median latency, 1 thread, batch 1 (ms)", False)):
        recs = records if key == "accuracy_vs_latency" else _one_per_variant(records)
        paths[key] = _scatter(recs, cost, label, log, out / PLOTS[key])
    paths["variants"] = _bars(records, out / PLOTS["variants"])
    return paths


def _one_per_variant(records: list[dict]) -> list[dict]:
    """Size does not depend on the runtime: keep each variant's first record."""
    seen: dict[str, dict] = {}
    for r in records:
        seen.setdefault(r["variant"], r)
    return list(seen.values())


_MARKERS = ("o", "s", "^", "D")


def _colors(variants: list[str]) -> dict[str, Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {v: cmap(i % 10) for i, v in enumerate(variants)}


def _scatter(records: list[dict], cost, xlabel: str, log: bool, path: Path) -> Path:
    """One colour per variant, one marker per runtime, named in a legend beside the axes (no
    labels written on the points, which overlap when variants are close); each runtime's
    Pareto front dashed.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    variants = list(dict.fromkeys(r["variant"] for r in records))
    runtimes = sorted({r["runtime"] for r in records})
    color = _colors(variants)
    fig, ax = plt.subplots(figsize=(8.0, 4.4), dpi=110)
    for k, runtime in enumerate(runtimes):
        recs = [r for r in records if r["runtime"] == runtime]
        pts = [(cost(r), 100 * (score(r) or 0.0)) for r in recs]
        for r, (x, y) in zip(recs, pts, strict=True):
            ax.scatter([x], [y], color=color[r["variant"]], marker=_MARKERS[k % len(_MARKERS)],
                       s=48, zorder=3, edgecolors="black", linewidths=0.5)
        fp = sorted(pts[i] for i in pareto_front(pts))
        ax.plot([p[0] for p in fp], [p[1] for p in fp], "--", color="grey", alpha=0.7,
                lw=1)
    handles = [Line2D([], [], marker="o", ls="", color=color[v], markeredgecolor="black",
                      label=v) for v in variants]
    if len(runtimes) > 1:
        handles += [Line2D([], [], marker=_MARKERS[k % len(_MARKERS)], ls="", color="white",
                           markeredgecolor="black", label=rt) for k, rt in enumerate(runtimes)]
    handles.append(Line2D([], [], ls="--", color="grey", label="Pareto front"))
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              frameon=False)
    fig.tight_layout()
    return _save(fig, path)


def _bars(records: list[dict], path: Path) -> Path:
    """Speed-up, size ratio and accuracy Δ per variant: bars grouped by runtime (one colour per
    runtime, in a legend), the speed-up's 95% CI as error bars, the reference level as a line.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    variants = list(dict.fromkeys(r["variant"] for r in records))
    runtimes = list(dict.fromkeys(r["runtime"] for r in records))
    by = {(r["variant"], r["runtime"]): r for r in records}
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.2), dpi=110)
    x = np.arange(len(variants))
    labelled = all(r.get("accuracy_delta_pts") is not None for r in records)
    panels = (("speed-up vs original (×), 95% CI", "speedup", 1.0, runtimes),
              ("gzip size vs original (×)", "size_ratio", 1.0, runtimes[:1]),
              ("accuracy Δ vs original (pts)", "accuracy_delta_pts", 0.0, runtimes)
              if labelled else
              ("top-1 agreement lost vs original (pts)", "agreement_delta_pts", 0.0, runtimes))
    for ax, (title, key, ref, rts) in zip(axes, panels, strict=True):
        w = 0.8 / len(rts) if key != "size_ratio" else 0.6
        for k, rt in enumerate(rts):
            offset = (k - (len(rts) - 1) / 2) * w
            recs = [by.get((v, rt)) for v in variants]
            vals = [r.get(key, 1.0) if r else np.nan for r in recs]
            ax.bar(x + offset, vals, w, label=rt if key != "size_ratio" else None,
                          color=f"C{k}")
            if key == "speedup":
                lo = [r["speedup"] - r["speedup_ci95"][0] if r else 0 for r in recs]
                hi = [r["speedup_ci95"][1] - r["speedup"] if r else 0 for r in recs]
                ax.errorbar(x + offset, vals, yerr=[lo, hi], fmt="none", ecolor="black",
                            lw=0.8, capsize=2)
        ax.axhline(ref, color="grey", lw=0.8)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(x, variants, rotation=40, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    if len(runtimes) > 1:
        axes[0].legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
