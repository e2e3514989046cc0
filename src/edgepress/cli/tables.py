"""Rich tables of measurement records."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def record_table(rec: dict) -> Table:
    """One record as a two-column table."""
    t = Table(title=f"{rec['variant']} ({rec['model']}) on {rec['data']}, {rec['runtime']} "
              f"{rec['runtime_version']}, {rec['threads']} thread(s), batch {rec['batch']}")
    t.add_column("figure")
    t.add_column("value", justify="right")
    lat, ci = rec["latency_ms"], rec["accuracy_ci95"]
    rows = [
        ("parameters (non-zero / total)", f"{rec['params_nonzero']:,} / {rec['params_total']:,}"),
        ("MACs", f"{rec['macs']:,}" + (f" (incomplete: {len(rec.get('macs_incomplete_nodes', []))} "
                                       "node(s) of unknown shape not counted)"
                                       if rec.get("macs_incomplete") else "")),
        ("file (gzip -9)",
         f"{_fmt_bytes(rec['size_bytes'])} ({_fmt_bytes(rec['size_gzip_bytes'])})"),
        ("accuracy (95% CI)",
         f"{rec['accuracy']:.4f} [{ci[0]:.4f}, {ci[1]:.4f}] n={rec['n_test']}"),
        ("latency median / p90", f"{lat['median']:.4f} / {lat['p90']:.4f} ms ({lat['runs']} runs"
         + _quiet_note(lat) + ")"),
        ("load time", f"{rec['load_ms']:.1f} ms"),
        ("peak RSS", _rss(rec)),
        ("kernels", ", ".join(f"{k}×{v}" for k, v in rec["kernels"].items())),
    ]
    if rec.get("fidelity"):
        f = rec["fidelity"]
        rows.append(("fidelity vs parent", f"top-1 agreement {f['top1_agreement']:.4f}, "
                     f"logit SQNR {f['logit_sqnr_db']:.1f} dB"))
    for k, v in rows:
        t.add_row(k, v)
    return t


def _rss(rec: dict) -> str:
    """Peak RSS, and what of it the model itself costs over the probe's baseline."""
    text = f"{rec['peak_rss_mb']:.1f} MB"
    if rec.get("peak_rss_model_mb") is not None:
        text += (f" (model {rec['peak_rss_model_mb']:.1f} MB over a "
                 f"{rec['rss_baseline_mb']:.1f} MB baseline"
                 + ("; the probe imports torch" if rec.get("rss_includes_torch") else "") + ")")
    return text


def _quiet_note(lat: dict) -> str:
    """What the latency figure left out (disturbed spells), if anything."""
    if lat.get("quiet_fallback"):
        return (f"; never quiet: every run kept, {lat['quiet_fraction']:.0%} were in quiet "
                "blocks")
    if lat.get("quiet_fraction", 1.0) >= 1.0:
        return ""
    return (f" in quiet blocks, {lat['quiet_fraction']:.0%} of {lat['runs_all']}; all runs "
            f"{lat['median_all']:.4f} / {lat['p90_all']:.4f} ms")


def comparison_table(rows: list[dict]) -> Table:
    """Several records side by side, with ratios against the first (the reference's second
    session gives the noise floor in the title, not a row).
    """
    from ..measurement.comparison import measured_rows
    from ..report.table import delta_cell, runs_cell, variant_cell

    floor = rows[0].get("noise_floor")
    floor_note = f"; noise floor {100 * floor:.1f}%" if floor is not None else ""
    t = Table(title=f"compare on {rows[0]['data']}, {rows[0]['runtime']}, "
              f"{rows[0]['threads']} thread(s), batch {rows[0]['batch']} (reference: "
              f"{rows[0]['variant']}{floor_note})")
    for col in ("variant", "params nz/total", "MACs", "gzip", "size ×", "median ms", "p90 ms",
                "runs kept", "speed-up [95% CI]", "all runs", "accuracy", "Δ pts [95% CI]", "p"):
        t.add_column(col, justify="left" if col == "variant" else "right")
    for r in measured_rows(rows):
        lo, hi = r["speedup_ci95"]
        t.add_row(variant_cell(r), f"{r['params_nonzero']:,}/{r['params_total']:,}",
                  f"{r['macs']:,}" + ("?" if r.get("macs_incomplete") else ""),
                  _fmt_bytes(r["size_gzip_bytes"]), f"{r['size_ratio']:.3f}",
                  f"{r['latency_ms']['median']:.4f}", f"{r['latency_ms']['p90']:.4f}",
                  runs_cell(r), f"{r['speedup']:.2f} [{lo:.2f}, {hi:.2f}]",
                  f"{r.get('speedup_all', r['speedup']):.2f}", f"{r['accuracy']:.4f}",
                  delta_cell(r), f"{r['p_value']:.3g}")
    return t


def show(table: Table) -> None:
    """Print a table to stdout."""
    Console(width=max(120, Console().width)).print(table)


def warn_if_never_quiet(records: list[dict]) -> None:
    """One line on stderr when the latency of any record fell back to every run."""
    import sys

    from ..measurement.latency import fallback_warning

    warn = fallback_warning(records)
    if warn:
        print(f"edgepress: {warn}", file=sys.stderr)
