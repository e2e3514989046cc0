"""Reports of a comparison: Markdown, CSV, JSON, PNG plots and a self-contained HTML page.

Example:
    >>> files = write_comparison(records, "out/", stem="study", title="cnn")  # doctest: +SKIP
    >>> sorted(files)  # doctest: +SKIP
    ['csv', 'html', 'json', 'md', 'plots']
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from ..checkpoint import atomic_path, write_json
from .effects import effect_sentence
from .html import render_report
from .pareto import pareto_front
from .plots import write_plots
from .table import COLUMNS, csv_rows, markdown_table

LATENCY_NOTE = (
    "Latency: the median of the runs in quiet blocks (blocks in which the models' shared "
    "slow-down stayed within 5%; 'runs kept' gives their number and share, 'never quiet' means "
    "every run was kept). 'Speed-up, all runs' uses every round. The noise floor is how far a "
    "second session of the reference file, timed in the same rounds, landed from the first; "
    "every speed-up CI is at least ± that floor, and a CI that overlaps 1 ± floor is "
    "'no measurable change'. Δ pts comes with the 95% CI of the paired difference.")

__all__ = ["effect_sentence", "markdown_table", "pareto_front", "render_report",
           "write_comparison"]


def write_comparison(records: list[dict], out: str | os.PathLike, *, stem: str, title: str,
                     definitions: dict[str, str] | None = None,
                     notes: list[str] | None = None,
                     caveat: str | None = None) -> dict[str, Path]:
    """Write ``STEM.md``, ``STEM.csv``, ``STEM.json``, the PNG plots and ``report.html`` into
    ``out`` (each file atomically); return ``{kind: path}``. ``caveat`` goes at the top of the
    Markdown and the report (a quick study's).
    """
    from ..measurement.comparison import measured_rows
    from .html import isa_note
    from .plots import CAPTIONS

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    every = records
    records = measured_rows(records)  # the noise-floor rows stay in the JSON only
    notes = [*(notes or []), LATENCY_NOTE, *memory_notes(records)]
    plots = write_plots(records, out)
    sentences = [effect_sentence(r, _reference(records, r)) for r in records]
    md = [f"# {title}", ""]
    if caveat:
        md += [f"> **Caveat.** {caveat}", ""]
    if records:
        m = records[0].get("machine", {})
        md += [f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores; ISA "
               f"{', '.join(m.get('isa', []))}. {isa_note(m.get('isa', []))}", ""]
    md += [markdown_table(records), "## What each variant really bought", ""]
    md += [f"- ({r['runtime']}) {s}" for r, s in zip(records, sentences, strict=True)]
    if definitions:
        md += ["", "## How each row was made", ""]
        md += [f"- **{k}**: {v}" for k, v in definitions.items()]
    md += ["", *(notes or [])]
    files = {"md": out / f"{stem}.md", "csv": out / f"{stem}.csv", "json": out / f"{stem}.json",
             "html": out / "report.html"}
    _write_text(files["md"], "\n".join(md) + "\n")
    _write_text(files["csv"], _csv(records))
    write_json(files["json"], every)
    _write_text(files["html"], render_report(title, records, plots=plots,
                                             definitions=definitions or {}, notes=notes,
                                             caveat=caveat, captions=CAPTIONS))
    return {**files, **{f"plot_{k}": v for k, v in plots.items()}}


def memory_notes(records: list[dict]) -> list[str]:
    """Per runtime, the reference's peak RSS and what of it is the model's own; says when the
    probe had to import torch (ExecuTorch's bindings need it).

    >>> memory_notes([{"runtime": "executorch", "variant": "a", "peak_rss_mb": 230.0,
    ...                "rss_baseline_mb": 228.0, "peak_rss_model_mb": 2.0,
    ...                "rss_includes_torch": True}])[0][:73]
    'Memory (executorch): a peaks at 230.0 MB in a fresh process, of which 2.0'
    """
    out = []
    for runtime in dict.fromkeys(r["runtime"] for r in records):
        r = next(x for x in records if x["runtime"] == runtime)
        if r.get("peak_rss_model_mb") is None:
            continue
        torch_note = (" The probe imports torch (ExecuTorch's Python bindings need it), so the "
                      "baseline includes libtorch; the model's own cost is the difference."
                      if r.get("rss_includes_torch") else "")
        out.append(f"Memory ({runtime}): {r['variant']} peaks at {r['peak_rss_mb']:.1f} MB in a "
                   f"fresh process, of which {r['peak_rss_model_mb']:.1f} MB is the model's own "
                   f"(over a {r['rss_baseline_mb']:.1f} MB baseline after the imports)."
                   + torch_note)
    return out


def _reference(records: list[dict], rec: dict) -> dict:
    """The first record of ``rec``'s runtime (each runtime is compared against its own)."""
    return next(r for r in records if r["runtime"] == rec["runtime"])


def _csv(records: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS)
    w.writeheader()
    w.writerows(csv_rows(records))
    return buf.getvalue()


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
