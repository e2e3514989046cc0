"""PNG plots of a comparison: accuracy vs gzip size and accuracy vs latency with the Pareto front
marked, and per-variant bars (speed-up, size ratio, accuracy delta).

matplotlib is imported inside the functions (Agg backend, no display needed).

Example:
    >>> paths = write_plots(records, "study/")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

from ..checkpoint import atomic_path
from .pareto import pareto_front

PLOTS = {"accuracy_vs_size": "accuracy_vs_size.png",
         "accuracy_vs_latency": "accuracy_vs_latency.png",
         "variants": "variants.png"}


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


def _scatter(records: list[dict], cost, xlabel: str, log: bool, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    for runtime in sorted({r["runtime"] for r in records}):
        recs = [r for r in records if r["runtime"] == runtime]
        pts = [(cost(r), 100 * r["accuracy"]) for r in recs]
        front = pareto_front(pts)
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], label=runtime, zorder=3)
        for r, (x, y) in zip(recs, pts, strict=True):
            ax.annotate(r["variant"], (x, y), textcoords="offset points", xytext=(4, 4),
                        fontsize=8)
        fp = sorted(pts[i] for i in front)
        ax.plot([p[0] for p in fp], [p[1] for p in fp], "--", alpha=0.6,
                label=f"Pareto front ({runtime})")
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _bars(records: list[dict], path: Path) -> Path:
    import matplotlib.pyplot as plt

    labels = [r["variant"] if len({x["runtime"] for x in records}) == 1
              else f"{r['variant']}\n{r['runtime']}" for r in records]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), dpi=110)
    series = (("speed-up vs original (×)", [r["speedup"] for r in records], 1.0),
              ("gzip size vs original (×)", [r.get("size_ratio", 1.0) for r in records], 1.0),
              ("accuracy Δ (pts)", [r["accuracy_delta_pts"] for r in records], 0.0))
    for ax, (title, values, ref) in zip(axes, series, strict=True):
        ax.bar(range(len(values)), values, color="tab:blue")
        if title.startswith("speed"):
            lo = [r["speedup"] - r["speedup_ci95"][0] for r in records]
            hi = [r["speedup_ci95"][1] - r["speedup"] for r in records]
            ax.errorbar(range(len(values)), values, yerr=[lo, hi], fmt="none", ecolor="black")
        ax.axhline(ref, color="grey", lw=0.8)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(len(values)), labels, rotation=45, ha="right", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
