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
           "accuracy_ci95_low", "accuracy_ci95_high", "accuracy_delta_pts", "p_value",
           "agreement_top1", "agreement_top1_ci95_low", "agreement_top1_ci95_high",
           "agreement_top5", "agreement_kl_mean", "agreement_logit_sqnr_db",
           "accuracy_delta_ci95_low_pts", "accuracy_delta_ci95_high_pts", "speedup_all",
           "noise_floor", "latency_change", "runs_kept", "runs_all", "quiet_fraction",
           "quiet_fallback", "macs_incomplete", "deployment_sha256", "same_deployment_as"]


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
             "accuracy": r["accuracy"],
             "accuracy_ci95_low": (r["accuracy_ci95"] or [None])[0],
             "accuracy_ci95_high": (r["accuracy_ci95"] or [None, None])[1],
             "accuracy_delta_pts": r["accuracy_delta_pts"], "p_value": r["p_value"],
             **_agreement_columns(r), **_provenance(r)}
            for r in records]


def _agreement_columns(r: dict) -> dict:
    """On data without labels: the agreement with the reference (empty otherwise)."""
    a = r.get("agreement") or {}
    return {"agreement_top1": a.get("top1"),
            "agreement_top1_ci95_low": (a.get("top1_ci95") or [None])[0],
            "agreement_top1_ci95_high": (a.get("top1_ci95") or [None, None])[1],
            "agreement_top5": a.get("top5"), "agreement_kl_mean": a.get("kl_mean"),
            "agreement_logit_sqnr_db": a.get("logit_sqnr_db")}


def _provenance(r: dict) -> dict:
    """How far the figures can be trusted: runs kept, quiet share, all-rounds speed-up, the
    measured noise floor, whether MACs were complete, and which file was deployed.
    """
    lat = r["latency_ms"]
    ci = r.get("accuracy_delta_ci95_pts") or [None, None]
    return {"accuracy_delta_ci95_low_pts": ci[0], "accuracy_delta_ci95_high_pts": ci[1],
            "speedup_all": r.get("speedup_all"), "noise_floor": r.get("noise_floor"),
            "latency_change": r.get("latency_change"), "runs_kept": lat.get("runs"),
            "runs_all": lat.get("runs_all"), "quiet_fraction": lat.get("quiet_fraction"),
            "quiet_fallback": lat.get("quiet_fallback"),
            "macs_incomplete": r.get("macs_incomplete"),
            "deployment_sha256": r.get("deployment_sha256"),
            "same_deployment_as": r.get("same_deployment_as")}


def runs_cell(r: dict) -> str:
    """Runs kept and the quiet share, e.g. ``812 (54% quiet)``; ``all 900 (never quiet)`` when
    the host never was.

    >>> runs_cell({"latency_ms": {"runs": 812, "quiet_fraction": 0.54}})
    '812 (54% quiet)'
    >>> runs_cell({"latency_ms": {"runs": 900, "quiet_fraction": 0.2, "quiet_fallback": True}})
    'all 900 (never quiet: 20%)'
    """
    lat = r["latency_ms"]
    q = lat.get("quiet_fraction")
    if lat.get("quiet_fallback"):
        return f"all {lat['runs']} (never quiet: {q:.0%})"
    return f"{lat['runs']}" + (f" ({q:.0%} quiet)" if q is not None else "")


def speedup_all_cell(r: dict) -> str:
    """The all-rounds speed-up and the noise floor, e.g. ``2.01× (floor 0.6%)``."""
    s, f = r.get("speedup_all"), r.get("noise_floor")
    if s is None:
        return "—"
    return f"{s:.2f}×" + (f" (floor {100 * f:.1f}%)" if f is not None else "")


def delta_cell(r: dict) -> str:
    """The accuracy delta with the CI of the paired difference, e.g. ``-0.14 [-0.41, +0.12]``;
    on data without labels the top-1 agreement lost (``agreement_delta_pts``).

    >>> delta_cell({"accuracy_delta_pts": None, "agreement_delta_pts": -1.5})
    '-1.50 (agreement)'
    """
    if r.get("accuracy_delta_pts") is None:
        d = r.get("agreement_delta_pts")
        return "n/a" if d is None else f"{d:+.2f} (agreement)"
    ci = r.get("accuracy_delta_ci95_pts")
    d = f"{r['accuracy_delta_pts']:+.2f}"
    return f"{d} [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else d


def score(r: dict) -> float | None:
    """What a row scores: its accuracy, or on data without labels its top-1 agreement with the
    reference (``None`` when there is neither).

    >>> score({"accuracy": None, "agreement": {"top1": 0.98}})
    0.98
    """
    if r.get("accuracy") is not None:
        return float(r["accuracy"])
    a = r.get("agreement")
    return float(a["top1"]) if a else None


def score_cell(r: dict) -> str:
    """Accuracy ± the half-width of its CI, or the agreement figures on unlabelled data.

    >>> score_cell({"accuracy": 0.9, "accuracy_ci95": [0.88, 0.91]})
    '90.00% ± 2.00'
    >>> score_cell({"accuracy": None, "agreement": {"top1": 0.98, "top1_ci95": [0.97, 0.99],
    ...             "top5": 1.0, "kl_mean": 0.01, "logit_sqnr_db": 20.0}})
    'top-1 agreement 98.00% [97.00, 99.00], top-5 100.00%, KL 0.0100, SQNR 20.0 dB'
    """
    if r.get("accuracy") is not None:
        a_lo, a_hi = r["accuracy_ci95"]
        half = max(r["accuracy"] - a_lo, a_hi - r["accuracy"])
        return f"{100 * r['accuracy']:.2f}% ± {100 * half:.2f}"
    a = r.get("agreement")
    if not a:
        return "no labels, no reference"
    lo, hi = a["top1_ci95"]
    return (f"top-1 agreement {100 * a['top1']:.2f}% [{100 * lo:.2f}, {100 * hi:.2f}], "
            f"top-5 {100 * a['top5']:.2f}%, KL {a['kl_mean']:.4f}, "
            f"SQNR {a['logit_sqnr_db']:.1f} dB")


def variant_cell(r: dict) -> str:
    """The variant's name, with the row it shares its deployment file with."""
    same = r.get("same_deployment_as")
    return f"{r['variant']} (same deployment as {same})" if same else r["variant"]


HEADER = ["variant", "runtime", "params (non-zero / total)", "MACs", "bytes", "gzip bytes",
          "latency median / p90 ms", "runs kept", "speed-up [95% CI]", "speed-up, all runs",
          "accuracy ± 95% CI (no labels: agreement)", "Δ pts [95% CI]", "p-value"]


def markdown_table(records: list[dict]) -> str:
    """The table in Markdown (GitHub pipes)."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in records:
        lo, hi = r["speedup_ci95"]
        macs = f"{r['macs']:,}" + (" (incomplete)" if r.get("macs_incomplete") else "")
        cells = [variant_cell(r), r["runtime"],
                 f"{r['params_nonzero']:,} / {r['params_total']:,}", macs,
                 f"{r['size_bytes']:,}", f"{r['size_gzip_bytes']:,}",
                 f"{r['latency_ms']['median']:.4f} / {r['latency_ms']['p90']:.4f}",
                 runs_cell(r), f"{r['speedup']:.2f}× [{lo:.2f}, {hi:.2f}]", speedup_all_cell(r),
                 score_cell(r), delta_cell(r),
                 f"{r['p_value']:.2g}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
