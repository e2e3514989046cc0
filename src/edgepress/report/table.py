"""The comparison table as Markdown and CSV rows, one row per (variant, runtime) record.

Example:
    >>> rec = {"variant": "original", "runtime": "onnxruntime", "params_total": 10,
    ...        "params_nonzero": 10, "macs": 100, "size_bytes": 400, "size_gzip_bytes": 300,
    ...        "latency_ms": {"median": 0.5, "p90": 0.6}, "speedup": 1.0,
    ...        "speedup_ci95": [1.0, 1.0], "accuracy": 0.9, "accuracy_ci95": [0.89, 0.91],
    ...        "accuracy_delta_pts": 0.0, "p_value": 1.0}
    >>> csv_rows([rec])[0]["speedup_ci95_low"]
    1.0
"""

from __future__ import annotations

COLUMNS = ["variant", "runtime", "params_total", "params_nonzero", "macs", "size_bytes",
           "size_gzip_bytes", "latency_median_ms", "latency_p90_ms", "speedup",
           "speedup_ci95_low", "speedup_ci95_high", "size_ratio", "accuracy",
           "accuracy_ci95_low", "accuracy_ci95_high", "accuracy_delta_pts", "p_value"]


def csv_rows(records: list[dict]) -> list[dict]:
    """Flat dicts with :data:`COLUMNS` as keys (for ``csv.DictWriter``)."""
    return [{"variant": r["variant"], "runtime": r["runtime"],
             "params_total": r["params_total"], "params_nonzero": r["params_nonzero"],
             "macs": r["macs"], "size_bytes": r["size_bytes"],
             "size_gzip_bytes": r["size_gzip_bytes"],
             "latency_median_ms": r["latency_ms"]["median"],
             "latency_p90_ms": r["latency_ms"]["p90"],
             "speedup": r["speedup"], "speedup_ci95_low": r["speedup_ci95"][0],
             "speedup_ci95_high": r["speedup_ci95"][1], "size_ratio": r.get("size_ratio", 1.0),
             "accuracy": r["accuracy"], "accuracy_ci95_low": r["accuracy_ci95"][0],
             "accuracy_ci95_high": r["accuracy_ci95"][1],
             "accuracy_delta_pts": r["accuracy_delta_pts"], "p_value": r["p_value"]}
            for r in records]


HEADER = ["variant", "runtime", "params (non-zero / total)", "MACs", "bytes", "gzip bytes",
          "latency median / p90 ms", "speed-up [95% CI]", "accuracy ± 95% CI", "Δ pts",
          "p-value"]


def markdown_table(records: list[dict]) -> str:
    """The table in Markdown (GitHub pipes)."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in records:
        lo, hi = r["speedup_ci95"]
        a_lo, a_hi = r["accuracy_ci95"]
        half = max(r["accuracy"] - a_lo, a_hi - r["accuracy"])
        cells = [r["variant"], r["runtime"], f"{r['params_nonzero']:,} / {r['params_total']:,}",
                 f"{r['macs']:,}", f"{r['size_bytes']:,}", f"{r['size_gzip_bytes']:,}",
                 f"{r['latency_ms']['median']:.4f} / {r['latency_ms']['p90']:.4f}",
                 f"{r['speedup']:.2f}× [{lo:.2f}, {hi:.2f}]",
                 f"{100 * r['accuracy']:.2f}% ± {100 * half:.2f}",
                 f"{r['accuracy_delta_pts']:+.2f}", f"{r['p_value']:.2g}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
