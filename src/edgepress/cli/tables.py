"""Tables of measurement records for the terminal: compact units and a narrow layout that fits
80 columns without cutting a number (``--wide``: every column), and plain Markdown when stdout
is not a terminal (a pipe, a file, CI logs).

Example:
    >>> compact(93962), compact(29128400), fmt_bytes(352870)
    ('93.96 k', '29.1 M', '344.6 KB')
"""

from __future__ import annotations

import sys

from rich import box
from rich.console import Console
from rich.table import Table


def compact(n: float) -> str:
    """A count in k / M / G with three or four significant digits (``93.96 k``, ``29.1 M``).

    >>> compact(812), compact(1500), compact(4_650_000_000)
    ('812', '1.50 k', '4.65 G')
    """
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            v = n / scale
            if v >= 100:
                return f"{v:.0f} {unit}"
            return f"{v:.2f} {unit}" if v < 10 or unit == "k" else f"{v:.1f} {unit}"
    return f"{n:.0f}"


def fmt_bytes(n: float) -> str:
    """Bytes in B / KB / MB / GB (powers of 1024), one decimal."""
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
        ("parameters (non-zero / total)",
         f"{compact(rec['params_nonzero'])} / {compact(rec['params_total'])}"),
        ("MACs", f"{compact(rec['macs'])}" + (
            f" (incomplete: {len(rec.get('macs_incomplete_nodes', []))} node(s) of unknown "
            "shape not counted)" if rec.get("macs_incomplete") else "")),
        ("file (gzip -9)",
         f"{fmt_bytes(rec['size_bytes'])} ({fmt_bytes(rec['size_gzip_bytes'])})"),
        ("accuracy (95% CI)",
         f"{100 * rec['accuracy']:.2f}% [{100 * ci[0]:.2f}, {100 * ci[1]:.2f}] "
         f"n={rec['n_test']:,}" if rec["accuracy"] is not None else
         f"no labels: agreement with the reference below, n={rec['n_test']:,}"),
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
    if rec["accuracy"] is None:
        from ..report.table import score_cell

        ref = (rec.get("agreement") or {}).get("reference")
        rows.append((f"agreement vs {ref or 'a reference'}", score_cell(rec)))
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


def comparison_table(rows: list[dict], *, wide: bool = False) -> Table:
    """Several records side by side, with ratios against the first (the reference's second
    session gives the noise floor in the title, not a row).

    The default layout fits 80 columns: compact units, each CI on a second line in its cell,
    ``≈`` before a speed-up that is no measurable change. ``wide``: every column (the exact
    counts, p90, runs kept, the all-runs speed-up, the p-value).
    """
    from ..measurement.comparison import measured_rows
    from ..report.table import delta_cell, runs_cell, variant_cell

    floor = rows[0].get("noise_floor")
    floor_note = f"; noise floor {100 * floor:.1f}%" if floor is not None else ""
    t = Table(title=f"compare on {rows[0]['data']}, {rows[0]['runtime']}, "
              f"{rows[0]['threads']} thread(s), batch {rows[0]['batch']} (reference: "
              f"{rows[0]['variant']}{floor_note})", box=box.SIMPLE_HEAD if wide else None,
              padding=(0, 1), pad_edge=False, show_edge=False)
    cols: tuple[str, ...]
    if wide:
        cols = ("variant", "params nz/total", "MACs", "gzip", "size ×", "median ms", "p90 ms",
                "runs kept", "speed-up [95% CI]", "all runs", "accuracy", "Δ pts [95% CI]", "p")
    else:
        cols = ("variant", "params", "MACs", "gzip", "ms", "speed-up", "acc %", "Δ pts")
        if rows[0].get("accuracy") is None:  # no labels: agreement with the first run
            cols = ("variant", "params", "MACs", "gzip", "ms", "speed-up", "top-1 agr %",
                    "top-5 %")
    for col in cols:
        if col == "variant":
            t.add_column(col, justify="left", overflow="fold", min_width=8)
        else:
            t.add_column(col, justify="right", no_wrap=True)
    for r in measured_rows(rows):
        lo, hi = r["speedup_ci95"]
        if wide:
            t.add_row(variant_cell(r), f"{r['params_nonzero']:,}/{r['params_total']:,}",
                      f"{r['macs']:,}" + ("?" if r.get("macs_incomplete") else ""),
                      fmt_bytes(r["size_gzip_bytes"]), f"{r['size_ratio']:.3f}",
                      f"{r['latency_ms']['median']:.4f}", f"{r['latency_ms']['p90']:.4f}",
                      runs_cell(r), f"{r['speedup']:.2f} [{lo:.2f}, {hi:.2f}]",
                      f"{r.get('speedup_all', r['speedup']):.2f}", _score4(r),
                      delta_cell(r), f"{r['p_value']:.3g}")
            continue
        same = "≈" if r.get("latency_change") == "no measurable change" else ""
        ci = r.get("accuracy_delta_ci95_pts")
        delta = (f"{r['accuracy_delta_pts']:+.2f}" + (
            f"\n[{ci[0]:+.1f}, {ci[1]:+.1f}]" if ci and r is not rows[0] else "")
            if r.get("accuracy_delta_pts") is not None else _top5(r))
        label = (f"{r['variant']} (= {r['same_deployment_as']})"
                 if r.get("same_deployment_as") else r["variant"])
        t.add_row(label, compact(r["params_nonzero"]),
                  compact(r["macs"]) + ("?" if r.get("macs_incomplete") else ""),
                  fmt_bytes(r["size_gzip_bytes"]), f"{r['latency_ms']['median']:.4g}",
                  f"{same}{r['speedup']:.2f}×" + (f"\n[{lo:.2f}, {hi:.2f}]"
                                                  if r is not rows[0] else ""),
                  _score_pct(r), delta)
    return t


def _score_pct(r: dict) -> str:
    """Accuracy in %, or on unlabelled data the top-1 agreement with its CI's lower bound."""
    if r.get("accuracy") is not None:
        return f"{100 * r['accuracy']:.2f}"
    a = r.get("agreement") or {}
    return f"{100 * a['top1']:.2f}\n[≥{100 * a['top1_ci95'][0]:.1f}]" if a else "-"


def _score4(r: dict) -> str:
    if r.get("accuracy") is not None:
        return f"{r['accuracy']:.4f}"
    a = r.get("agreement") or {}
    return f"agree {a['top1']:.4f}" if a else "-"


def _top5(r: dict) -> str:
    """Top-5 agreement and KL, the second figure of an unlabelled compare row."""
    a = r.get("agreement") or {}
    return f"{100 * a['top5']:.1f}\nKL {a['kl_mean']:.3f}" if a else "-"


def table_markdown(table: Table) -> str:
    r"""A rich table as a plain Markdown table (title in bold above it, line breaks in a cell
    kept as spaces).

    >>> t = Table(title="t"); t.add_column("a"); t.add_column("b"); t.add_row("1", "x\ny")
    >>> print(table_markdown(t))
    **t**
    <BLANKLINE>
    | a | b |
    |---|---|
    | 1 | x y |
    """
    def cell(v: object) -> str:
        return str(v).replace("\n", " ").replace("|", "\\|")

    cols = [list(c.cells) for c in table.columns]
    lines = [f"**{table.title}**", ""] if table.title else []
    lines += ["| " + " | ".join(cell(c.header) for c in table.columns) + " |",
              "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(col[i]) for col in cols) + " |"
              for i in range(table.row_count)]
    return "\n".join(lines)


def show(table: Table, *, wide: bool = False) -> None:
    """Print a table: on a terminal at its width (``wide``: at least 160 columns, for the
    ``--wide`` layout), else as plain Markdown.
    """
    console = Console()
    if not sys.stdout.isatty() and not console.is_terminal:
        print(table_markdown(table))
        return
    Console(width=max(160, console.width) if wide else console.width).print(table)


def warn_if_never_quiet(records: list[dict]) -> None:
    """One line on stderr when the latency of any record fell back to every run."""
    import sys

    from ..measurement.latency import fallback_warning

    warn = fallback_warning(records)
    if warn:
        print(f"edgepress: {warn}", file=sys.stderr)
