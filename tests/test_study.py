"""The study: every file written, every contract field, the Pareto front, the effect sentences,
the HTML report in a real headless browser, bad input."""

import csv
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from tests.conftest import cli, contract_ok

from edgepress.measurement.stats import mcnemar_exact
from edgepress.report import effect_sentence, pareto_front
from edgepress.study import ROWS, shipped_recipes

REPO = Path(__file__).resolve().parents[1]
CONTRACT_FIELDS = ("variant", "speedup", "speedup_ci95", "size_ratio", "accuracy_delta_pts",
                   "p_value")


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory, mlp_run):
    """A quick study of the digits mlp through the CLI (int8 recipe only, ONNX Runtime only)."""
    out = tmp_path_factory.mktemp("study") / "s"
    t0 = time.perf_counter()
    proc = cli("study", "--data", "digits", "--model", "mlp", "--quick", "--baseline", mlp_run,
               "--recipes", ",".join(str(REPO / "recipes" / f) for f in ("int8.yaml",
                                                                          "sparse-90.yaml")),
               "--runtimes", "onnxruntime", "--no-progress", "--out", out, check=0)
    FIRST_RUN["wall_s"] = time.perf_counter() - t0
    FIRST_RUN["seconds"] = json.loads((out / "study-meta.json").read_text())["seconds"]
    return out, proc


FIRST_RUN: dict = {}  # the quick study's first (not resumed) run: its wall time is reported


def test_quick_study_writes_every_file(quick_study):
    out, proc = quick_study
    for name in ("study.md", "study.csv", "study.json", "report.html", "study-meta.json",
                 "accuracy_vs_size.png", "accuracy_vs_latency.png", "variants.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    every = json.loads((out / "study.json").read_text())
    # the reference's second session (noise floor) is in the JSON, last per runtime
    runtimes = list(dict.fromkeys(r["runtime"] for r in every))
    assert [r["variant"] for r in every] == [*ROWS, "reference-again"] * len(runtimes)
    assert all(r["noise_floor"] >= 0.01 for r in every)
    records = [r for r in every if r["variant"] != "reference-again"][:len(ROWS)]
    for r in records:
        for f in CONTRACT_FIELDS:
            assert f in r, f
    ok, msg = contract_ok(out / "study.json", *(out / "runs" / r for r in ROWS[:-1]))
    assert ok, msg  # every row's run has its metrics.json, from the study's one timed session
    for r in records[:-1]:
        rec = json.loads((out / "runs" / r["variant"] / "metrics.json").read_text())
        assert rec["latency_ms"]["median"] == r["latency_ms"]["median"]
        assert rec["timed_in"].startswith("study compare")
    ref = records[0]
    assert ref["speedup"] == 1 and ref["p_value"] == 1
    pruned = records[ROWS.index("pruned")]
    assert pruned["macs"] < 0.5 * ref["macs"]  # half the channels gone: MACs really fell
    assert pruned["params_total"] < ref["params_total"]
    quantized = records[ROWS.index("quantized")]
    assert quantized["size_bytes"] < 0.4 * ref["size_bytes"]  # int8 weights
    rows = list(csv.DictReader((out / "study.csv").open()))
    assert len(rows) == len(ROWS) * len(runtimes) and float(rows[1]["macs"]) == pruned["macs"]
    assert all(r["noise_floor"] and r["runs_kept"] and r["speedup_all"] for r in rows)
    md = (out / "study.md").read_text()
    assert all(f"| {v}" in md for v in ROWS) and "reference-again" not in md
    assert "noise floor" in md


def test_combined_is_the_smallest_eligible_candidate(quick_study):
    out, _ = quick_study
    meta = json.loads((out / "study-meta.json").read_text())
    cands = meta["candidates"]
    assert {c["recipe"] for c in cands} == {"int8", "sparse-90"}
    chosen = [c for c in cands if c["chosen"]]
    assert len(chosen) == 1
    eligible = [c for c in cands if c["val_delta_pts"] >= -1.0]
    if eligible:
        assert chosen[0]["size_gzip_bytes"] == min(c["size_gzip_bytes"] for c in eligible)
    int8 = next(c for c in cands if c["recipe"] == "int8")
    assert int8["via"] == "quantized"  # the quantized row was reused, not recomputed


def test_study_resumes_without_retraining(quick_study, mlp_run):
    out, _ = quick_study
    steps = sorted((out / "runs").glob("*/steps/*/model.safetensors"))
    assert len(steps) >= 3
    before = {p: p.stat().st_mtime_ns for p in steps}
    proc = cli("study", "--data", "digits", "--model", "mlp", "--quick", "--baseline",
               mlp_run, "--recipes", REPO / "recipes" / "int8.yaml",
               "--runtimes", "onnxruntime", "--out", out, check=0)
    assert "reused" in proc.stderr
    assert {p: p.stat().st_mtime_ns for p in steps} == before  # no step was redone


def test_pareto_front_known_points():
    pts = [(1.0, 0.90), (2.0, 0.95), (3.0, 0.94), (0.5, 0.50), (2.0, 0.95)]
    assert pareto_front(pts) == [0, 1, 3, 4]  # (3, .94) is dominated by (2, .95)
    assert pareto_front([]) == []


def test_mcnemar_hand_checked_table():
    # 2×2 table: both right 5, only A right 1, only B right 6, both wrong 2.
    # discordant n = 7, k = min(1, 6) = 1: p = 2·(C(7,0) + C(7,1))/2^7 = 2·8/128 = 0.125
    a = [1] * 5 + [1] + [0] * 6 + [0] * 2
    b = [1] * 5 + [0] + [1] * 6 + [0] * 2
    assert mcnemar_exact(a, b) == pytest.approx(0.125)


def test_effect_sentence_follows_the_figures():
    ref = {"macs": 1000, "params_nonzero": 100, "kernels": {"Conv": 2}}
    faster = {"variant": "p", "size_ratio": 0.26, "speedup": 3.1, "speedup_ci95": [3.0, 3.2],
              "macs": 250, "params_nonzero": 25, "accuracy_delta_pts": -0.9, "p_value": 1e-6,
              "kernels": {"Conv": 2}}
    s = effect_sentence(faster, ref)
    assert "3.8× smaller download" in s and "3.10× faster" in s and "falls 0.90 pts" in s
    overhead = {**faster, "speedup": 1.2, "speedup_ci95": [1.1, 1.3]}
    assert "per-operator overhead" in effect_sentence(overhead, ref)
    slower_int8 = {**faster, "macs": 1000, "params_nonzero": 100, "speedup": 0.5,
                   "speedup_ci95": [0.48, 0.52], "kernels": {"QLinearConv": 2},
                   "p_value": 0.5, "accuracy_delta_pts": 0.1}
    s = effect_sentence(slower_int8, ref)
    assert "2.00× slower" in s and "int8 kernels" in s and "no significant accuracy change" in s


@pytest.mark.parametrize("budget", ["QUICK", "FULL"])
def test_recipes_that_start_like_a_row_reuse_it(budget):
    """The combined row restarts int8 / prune-then-int8 / distill-then-int8 from the quantized /
    pruned / distilled rows: their first steps must be identical once budgeted (else the study
    trains the same thing twice)."""
    from edgepress.recipe import parse_recipe
    from edgepress.study import config as study_config
    from edgepress.study.rows import row_steps, with_budget

    b = getattr(study_config, budget)
    for row, name in (("quantized", "int8"), ("pruned", "prune-then-int8"),
                      ("distilled", "distill-then-int8")):
        recipe = with_budget(parse_recipe((REPO / "recipes" / f"{name}.yaml").read_text(),
                                          source=name), b)
        assert recipe.steps[0].to_dict() == row_steps(row, "cnn", b)[0].to_dict(), name
    fine_tune = row_steps("pruned", "cnn", b)[0].config.finetune
    assert fine_tune.epochs == b.finetune_epochs
    assert fine_tune.train_subset == (b.finetune_subset or b.train_subset)
    assert row_steps("distilled", "cnn", b)[0].config.train_subset == b.train_subset


def test_shipped_recipes_are_packaged_and_valid():
    from edgepress.recipe import load_recipe

    names = {p.stem for p in shipped_recipes()}
    assert {"int8", "prune-then-int8", "deep-compression", "distill-then-int8"} <= names
    for p in shipped_recipes():
        assert load_recipe(p).steps


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_opens_in_headless_chromium(quick_study):
    browser = _chromium()
    if browser is None:
        pytest.skip("Chromium is not installed (the set-up installs Debian's chromium when apt "
                    "is usable)")
    out, _ = quick_study
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
         "--v=0", "--dump-dom", (out / "report.html").resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "id=\"study-table\"" in proc.stdout and "<td>quantized</td>" in proc.stdout
    console = [ln for ln in proc.stderr.splitlines()
               if "CONSOLE" in ln or "Uncaught" in ln or "Failed to load resource" in ln]
    assert not console, console


_LAYOUT_PROBE = """<script>
window.addEventListener('load', () => {
  const vw = document.documentElement.clientWidth, bad = [];
  for (const el of document.body.querySelectorAll('*')) {
    let p = el.parentElement, inScroll = false;
    while (p && p !== document.body) {
      const o = getComputedStyle(p).overflowX;
      if (o === 'auto' || o === 'scroll') { inScroll = true; break; }
      p = p.parentElement;
    }
    const r = el.getBoundingClientRect();
    if (!inScroll && r.right > vw + 1) bad.push(el.tagName + ':' + Math.round(r.right));
  }
  parent.postMessage(JSON.stringify(
    {vw: vw, scroll: document.documentElement.scrollWidth, bad: bad}), '*');
});
</script>"""
# headless Chromium's window is at least 500 px wide: a phone's 390 px is an iframe that wide
_FRAME = """<html><body style="margin:0">
<iframe src="probe.html" style="width:{w}px;height:900px;border:0"></iframe>
<script>window.addEventListener('message',
  e => document.body.setAttribute('data-layout', e.data));</script></body></html>"""


@pytest.mark.parametrize("width", [390, 1280])
def test_report_fits_a_phone_and_a_desktop(quick_study, tmp_path, width):
    """Through the DOM in headless Chromium: the page never scrolls sideways and no element
    outside a scroll container (the wide table's) is wider than the viewport."""
    import html as _html
    import re

    browser = _chromium()
    if browser is None:
        pytest.skip("Chromium is not installed")
    out, _ = quick_study
    page = (out / "report.html").read_text()
    assert "<script" not in page  # the report itself runs no script; the probe is the test's
    (tmp_path / "probe.html").write_text(page.replace("</body>", _LAYOUT_PROBE + "</body>"))
    frame = tmp_path / "frame.html"
    frame.write_text(_FRAME.replace("{w}", str(width)))
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu",
         f"--window-size={max(width, 500) + 40},1000", "--virtual-time-budget=5000",
         "--dump-dom", frame.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = re.search(r'data-layout="([^"]*)"', proc.stdout)
    assert m, "the layout probe did not run"
    layout = json.loads(_html.unescape(m.group(1)))
    assert layout["vw"] <= width and layout["scroll"] <= layout["vw"], layout
    assert layout["bad"] == [], layout
    top = page.index("Caveat.") if "Caveat." in page else None
    assert top is not None and top < page.index("<h2>Table</h2>")  # the quick caveat first
    assert page.index("Machine.") < page.index("<h2>Table</h2>") and "VNNI" in page


def test_an_80_column_table_cuts_no_number(quick_study):
    from rich.console import Console

    from edgepress.cli.tables import comparison_table

    out, _ = quick_study
    rows = json.loads((out / "study.json").read_text())
    console = Console(width=80, record=True, color_system=None, force_terminal=True)
    console.print(comparison_table(rows))
    text = console.export_text()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    for r in rows[1:-1]:
        assert f"{r['speedup']:.2f}×" in text and f"{100 * r['accuracy']:.2f}" in text


def test_quick_study_wall_time_is_reported(quick_study, record_property, capsys):
    """Reported, not asserted: the first run of the fixture's quick study (digits mlp)."""
    seconds = FIRST_RUN["seconds"]
    record_property("quick_study_seconds", FIRST_RUN["wall_s"])
    with capsys.disabled():
        print(f"\n[quick study of the digits mlp: {FIRST_RUN['wall_s']:.1f} s wall, "
              + ", ".join(f"{k} {v} s" for k, v in seconds.items()) + "]")
    assert seconds["total"] > 0


def test_output_dir_that_is_a_file_is_exit_2(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    proc = cli("study", "--data", "digits", "--model", "mlp", "--quick", "--out", f)
    assert proc.returncode == 2
    assert proc.stderr.startswith("edgepress: error:") and len(proc.stderr.splitlines()) == 1
    assert f.read_text() == "x"


def test_unknown_model_is_exit_2(tmp_path):
    proc = cli("study", "--data", "digits", "--model", "resnet9000", "--out", tmp_path / "s")
    assert proc.returncode == 2 and "unknown model" in proc.stderr
    assert not (tmp_path / "s").exists()


def test_combined_row_is_the_knee_of_a_search(tmp_path, mlp_run):
    """Without --recipes the combined row is the knee of a short search (shipped recipes first):
    a front point within the 1-pt validation budget, its recipe stated; a re-run reuses it."""
    out = tmp_path / "s"
    args = ("study", "--data", "digits", "--model", "mlp", "--quick", "--baseline", mlp_run,
            "--runtimes", "onnxruntime", "--search-seconds", "12", "--out", out)
    proc = cli(*args, check=0)
    assert "trial 0 [" in proc.stderr  # one line per trial
    meta = json.loads((out / "study-meta.json").read_text())
    found = meta["search"]
    front = json.loads((out / "search" / "front.json").read_text())
    assert found["trials"] == front["trials"] >= 2
    knee = front["knee"]
    assert knee is not None and found["knee"]["recipe"] == knee["recipe"]
    assert knee["val_loss_pts"] <= 1.0  # the budget is a hard constraint
    assert knee["trial"] in {r["trial"] for r in front["front"]}
    assert Path(meta["runs"]["combined"]) == out / "search" / "front" / f"{knee['trial']:04d}"
    shipped = {r["recipe"] for r in front["shipped"]}
    # the shipped recipes the space can express are its first trials, in name order
    assert {"deep-compression", "int8"} <= shipped
    md = (out / "study.md").read_text()
    assert f"here trial {knee['trial']} of {found['trials']}" in md
    again = cli(*args, check=0)
    assert "search: inputs unchanged, reused" in again.stderr
    assert json.loads((out / "search" / "front.json").read_text())["trials"] == found["trials"]


def test_search_seconds_and_recipes_exclude_each_other(tmp_path):
    proc = cli("study", "--data", "digits", "--model", "mlp", "--quick", "--search-seconds",
               "5", "--recipes", REPO / "recipes" / "int8.yaml", "--out", tmp_path / "s",
               check=2)
    assert proc.stderr.count("\n") == 1 and "exclude each other" in proc.stderr
