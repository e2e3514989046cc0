"""A self-contained HTML report: the table, the plots (embedded as data URIs), one sentence per
variant on its measured effect, each row's definition, and the machine and library versions the
records were taken on. No scripts, no external resources: it opens anywhere, offline.

Example:
    >>> page = render_report("cnn", records, plots={}, definitions={})  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from .effects import effect_sentence
from .table import delta_cell, runs_cell, speedup_all_cell, variant_cell

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1200px;padding:0 1rem;color:#222}
table{border-collapse:collapse;font-size:.85rem;margin:1rem 0}
th,td{border:1px solid #ccc;padding:.3rem .5rem;text-align:right}
th{background:#f3f3f3}td:first-child,td:nth-child(2),th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee;margin:.5rem 0}
code{background:#f6f6f6;padding:0 .2rem}.small{color:#555;font-size:.85rem}
"""

_COLUMNS = [("variant", variant_cell), ("runtime", lambda r: r["runtime"]),
            ("params non-zero / total",
             lambda r: f"{r['params_nonzero']:,} / {r['params_total']:,}"),
            ("MACs", lambda r: f"{r['macs']:,}" + (" (incomplete)" if r.get("macs_incomplete")
                                                   else "")),
            ("bytes", lambda r: f"{r['size_bytes']:,}"),
            ("gzip bytes", lambda r: f"{r['size_gzip_bytes']:,}"),
            ("median / p90 ms",
             lambda r: f"{r['latency_ms']['median']:.4f} / {r['latency_ms']['p90']:.4f}"),
            ("runs kept", runs_cell),
            ("speed-up [95% CI]", lambda r: f"{r['speedup']:.2f}× [{r['speedup_ci95'][0]:.2f}, "
                                            f"{r['speedup_ci95'][1]:.2f}]"),
            ("speed-up, all runs (noise floor)", speedup_all_cell),
            ("accuracy [95% CI]", lambda r: f"{100 * r['accuracy']:.2f}% "
                                            f"[{100 * r['accuracy_ci95'][0]:.2f}, "
                                            f"{100 * r['accuracy_ci95'][1]:.2f}]"),
            ("Δ pts [95% CI]", delta_cell),
            ("p-value", lambda r: f"{r['p_value']:.2g}")]


def render_report(title: str, records: list[dict], *, plots: dict[str, Path],
                  definitions: dict[str, str], notes: list[str] | None = None) -> str:
    """The report as one HTML string.

    Args:
        title: the heading.
        records: comparison records (first = reference of its runtime), with ``variant``.
        plots: ``{name: PNG path}``, embedded as base64 images.
        definitions: ``{variant: how it was made}``.
        notes: extra paragraphs (wall times, skipped variants, ...).
    """
    e = html.escape
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(title)}"
             f"</title><style>{_CSS}</style></head><body>", f"<h1>{e(title)}</h1>"]
    parts += [_machine(records[0]) if records else "", "<h2>Table</h2>", _table(records)]
    parts += ["<h2>What each variant really bought</h2><ul>"]
    for runtime in _runtimes(records):
        recs = [r for r in records if r["runtime"] == runtime]
        for r in recs:
            parts.append(f"<li><b>{e(runtime)}</b> — {e(effect_sentence(r, recs[0]))}</li>")
    parts.append("</ul>")
    if plots:
        parts.append("<h2>Plots</h2>")
        for name, path in plots.items():
            data = base64.b64encode(Path(path).read_bytes()).decode()
            parts.append(f"<figure><img alt='{e(name)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption class='small'>{e(name.replace('_', ' '))}"
                         f"</figcaption></figure>")
    if definitions:
        parts.append("<h2>How each row was made</h2><dl>")
        for k, v in definitions.items():
            parts.append(f"<dt><b>{e(k)}</b></dt><dd>{e(v)}</dd>")
        parts.append("</dl>")
    for note in notes or []:
        parts.append(f"<p class='small'>{e(note)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _runtimes(records: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["runtime"] for r in records))


def _table(records: list[dict]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(name)}</th>" for name, _ in _COLUMNS)
    rows = ["<tr>" + "".join(f"<td>{e(str(fn(r)))}</td>" for _, fn in _COLUMNS) + "</tr>"
            for r in records]
    return f"<table id='study-table'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}" \
           "</tbody></table>"


def _machine(rec: dict) -> str:
    e = html.escape
    m, v = rec.get("machine", {}), rec.get("versions", {})
    isa = ", ".join(m.get("isa", [])) or "—"
    versions = ", ".join(f"{k} {val}" for k, val in v.items() if val)
    return (f"<p class='small'>Measured on {e(str(m.get('cpu', '?')))} ({m.get('cores', '?')} "
            f"cores; ISA: {e(isa)}; {e(str(m.get('os', '')))}), {rec.get('threads', 1)} thread, "
            f"batch {rec.get('batch', 1)}; data {e(str(rec.get('data', '?')))}, "
            f"n_test = {rec.get('n_test', '?')}. Versions: {e(versions)}.</p>")
