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
        ("MACs", f"{rec['macs']:,}"),
        ("file (gzip -9)",
         f"{_fmt_bytes(rec['size_bytes'])} ({_fmt_bytes(rec['size_gzip_bytes'])})"),
        ("accuracy (95% CI)",
         f"{rec['accuracy']:.4f} [{ci[0]:.4f}, {ci[1]:.4f}] n={rec['n_test']}"),
        ("latency median / p90", f"{lat['median']:.4f} / {lat['p90']:.4f} ms ({lat['runs']} runs"
         + _quiet_note(lat) + ")"),
        ("load time", f"{rec['load_ms']:.1f} ms"),
        ("peak RSS", f"{rec['peak_rss_mb']:.1f} MB"),
        ("kernels", ", ".join(f"{k}×{v}" for k, v in rec["kernels"].items())),
    ]
    if rec.get("fidelity"):
        f = rec["fidelity"]
        rows.append(("fidelity vs parent", f"top-1 agreement {f['top1_agreement']:.4f}, "
                     f"logit SQNR {f['logit_sqnr_db']:.1f} dB"))
    for k, v in rows:
        t.add_row(k, v)
    return t


def _quiet_note(lat: dict) -> str:
    """What the latency figure left out (disturbed spells), if anything."""
    if lat.get("quiet_fraction", 1.0) >= 1.0:
        return ""
    return (f" in quiet blocks, {lat['quiet_fraction']:.0%} of {lat['runs_all']}; all runs "
            f"{lat['median_all']:.4f} / {lat['p90_all']:.4f} ms")


def comparison_table(rows: list[dict]) -> Table:
    """Several records side by side, with ratios against the first."""
    t = Table(title=f"compare on {rows[0]['data']}, {rows[0]['runtime']}, "
              f"{rows[0]['threads']} thread(s), batch {rows[0]['batch']} (reference: "
              f"{rows[0]['variant']})")
    for col in ("variant", "params nz/total", "MACs", "gzip", "size ×", "median ms", "p90 ms",
                "speed-up [95% CI]", "accuracy", "Δ pts", "p"):
        t.add_column(col, justify="left" if col == "variant" else "right")
    for r in rows:
        lo, hi = r["speedup_ci95"]
        t.add_row(r["variant"], f"{r['params_nonzero']:,}/{r['params_total']:,}", f"{r['macs']:,}",
                  _fmt_bytes(r["size_gzip_bytes"]), f"{r['size_ratio']:.3f}",
                  f"{r['latency_ms']['median']:.4f}", f"{r['latency_ms']['p90']:.4f}",
                  f"{r['speedup']:.2f} [{lo:.2f}, {hi:.2f}]", f"{r['accuracy']:.4f}",
                  f"{r['accuracy_delta_pts']:+.2f}", f"{r['p_value']:.3g}")
    return t


def show(table: Table) -> None:
    """Print a table to stdout."""
    Console(width=max(120, Console().width)).print(table)
