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
from .table import delta_cell, runs_cell, score_cell, speedup_all_cell, variant_cell

_CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem auto;
max-width:1200px;padding:0 1rem;color:#222;line-height:1.4;overflow-wrap:anywhere}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{border:1px solid #ccc;padding:.3rem .5rem;text-align:right;overflow-wrap:normal}
th{background:#f3f3f3}td:first-child,td:nth-child(2),th:first-child{text-align:left}
figure{margin:1rem 0}img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{max-width:60rem}
code{background:#f6f6f6;padding:0 .2rem}.small{color:#555;font-size:.85rem}
.box{border-left:4px solid #888;background:#f7f7f7;padding:.5rem .8rem;margin:.8rem 0}
.caveat{border-left-color:#d08c00;background:#fff7e6}
@media (max-width:600px){body{margin:.8rem auto;padding:0 .6rem}h1{font-size:1.4rem}}
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
            ("accuracy [95% CI] (no labels: agreement)", score_cell),
            ("Δ pts [95% CI]", delta_cell),
            ("p-value", lambda r: f"{r['p_value']:.2g}")]


def render_report(title: str, records: list[dict], *, plots: dict[str, Path],
                  definitions: dict[str, str], notes: list[str] | None = None,
                  caveat: str | None = None, captions: dict[str, str] | None = None) -> str:
    """The report as one HTML string: the caveat (if any) and the machine first, then the
    table (scrolling sideways on a narrow screen, never the page), the effects, the plots with
    captions, the definitions and the notes.

    Args:
        title: the heading.
        records: comparison records (first = reference of its runtime), with ``variant``.
        plots: ``{name: PNG path}``, embedded as base64 images.
        definitions: ``{variant: how it was made}``.
        notes: extra paragraphs (wall times, skipped variants, ...).
        caveat: shown at the top (a quick study: its figures are a smoke test).
        captions: ``{plot name: what to look for}``.
    """
    e = html.escape
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
             f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{e(title)}</h1>"]
    if caveat:
        parts.append(f"<p class='box caveat'><b>Caveat.</b> {e(caveat)}</p>")
    parts += [_machine(records[0]) if records else "", "<h2>Table</h2>",
              f"<div class='scroll'>{_table(records)}</div>"]
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
            caption = (captions or {}).get(name, name.replace("_", " "))
            parts.append(f"<figure><img alt='{e(name.replace('_', ' '))}' "
                         f"src='data:image/png;base64,{data}'>"
                         f"<figcaption class='small'>{e(caption)}</figcaption></figure>")
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


def isa_note(isa: list[str]) -> str:
    """One sentence on what the CPU's int8 support means for the ratios.

    >>> isa_note(["avx2", "avx512_vnni"])[:46]
    'This CPU has VNNI (fast int8 dot products): in'
    """
    vnni = {"avx512_vnni", "avx_vnni", "amx_int8"} & set(isa)
    if vnni:
        return ("This CPU has VNNI (fast int8 dot products): int8 speed-ups here are larger "
                "than on a CPU with AVX2 only. Ratios depend on the CPU.")
    if "avx2" in isa:
        return ("This CPU has AVX2 but no VNNI: int8 dot products are slower than with VNNI, "
                "so int8 speed-ups here are smaller than on a VNNI CPU. Ratios depend on the "
                "CPU.")
    return "Ratios depend on the CPU: int8 speed-ups need fast int8 instructions."


def _machine(rec: dict) -> str:
    e = html.escape
    m, v = rec.get("machine", {}), rec.get("versions", {})
    isa = ", ".join(m.get("isa", [])) or "—"
    versions = ", ".join(f"{k} {val}" for k, val in v.items() if val)
    return (f"<div class='box'><p><b>Machine.</b> {e(str(m.get('cpu', '?')))}, "
            f"{m.get('cores', '?')} cores; ISA: {e(isa)}. {e(isa_note(m.get('isa', [])))}</p>"
            f"<p class='small'>{e(str(m.get('os', '')))}; {rec.get('threads', 1)} thread, "
            f"batch {rec.get('batch', 1)}; data {e(str(rec.get('data', '?')))}, "
            f"n_test = {rec.get('n_test', '?')}. Versions: {e(versions)}.</p></div>")
