"""EfficientNet-Lite0 (ImageNet weights) compressed without its training data, measured at
224×224 on ONNX Runtime and ExecuTorch/XNNPACK.

    python benchmarks/efficientnet.py [--out benchmarks/out/efficientnet] [--epochs 2]
                                      [--variants int8-channel-bc,int8-channel-bc-mixed]
                                      [--results efficientnet-avx2.md]

Every variant is made by the edgepress CLI (one process each) from the pretrained run, on
``--data photos`` (20 scenes of photographs that installed packages ship, no labels;
calibration, fine-tuning, validation and evaluation from disjoint photographs):

* fp32; static int8 per channel (as it is; with bias correction; with bias correction and the
  layers that cost the most agreement kept float until ≥ 97% of the validation crops agree,
  ``--accuracy-budget 3``); per tensor;
  per tensor + cross-layer equalisation; per tensor + equalisation + bias correction;
* channel pruning of the MBConv hidden channels, 25% and 50% (the stem, the projections that
  write the residual stream, the head and the classifier kept), ranked by their share of the
  next layer's output on the calibration photographs and the layers after them re-fitted by
  least squares (``--importance data --reconstruct``); each as it is and then distilled from the
  fp32 parent on the fine-tuning photographs (no labels: the loss is the teacher's soft
  targets; peak rate 1e-4); and the 25% one int8 per channel.

Then one ``edgepress compare`` per runtime (interleaved, 1 thread, batch 1): top-1 / top-5
agreement with fp32 (Wilson 95% CI), KL, logit SQNR, the exact McNemar p-values between
variants, speed-ups with CIs, sizes, kernels, fresh-process peak RSS. Writes
``benchmarks/results/efficientnet.md`` and prints it. Nothing else heavy may run meanwhile.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from _common import stamped

HERE = Path(__file__).resolve().parent
EP = [sys.executable, "-m", "edgepress"]
# not pruned: the stem and every block's projection write the residual stream (removing its
# channels leaves 0–5% agreement, benchmarks/results/lite0_pruning_probe.md); the 1280-channel
# head feeds the ImageNet classifier
KEEP = ",".join(["head", "classifier", "stem", "blocks.0.conv.1",
                 *(f"blocks.{i}.conv.2" for i in range(1, 16))])
BUDGET = "3"  # points of top-1 agreement on the validation photographs: keep ≥ 97%
KD_LR = "1e-4"  # the recipe's fine-tune rate (1e-3) is for networks edgepress trained itself


def run(args: list[str], log: list[str]) -> float:
    """Run one edgepress command; return its wall time (s)."""
    t0 = time.perf_counter()
    print("$ edgepress " + " ".join(args), flush=True)
    r = subprocess.run([*EP, *args, "--no-progress"] if args[0] in ("prune", "quantize")
                       else [*EP, *args], capture_output=True, text=True)
    dt = time.perf_counter() - t0
    log.append(f"| `edgepress {' '.join(args)}` | {dt:.0f} s |")
    if r.returncode:
        sys.exit(f"failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    return dt


def variants(out: Path, epochs: int) -> list[tuple[str, list[str]]]:
    """(run name, the command that makes it), in order."""
    fp32 = str(out / "fp32")
    q = ["quantize", fp32, "--mode", "static"]
    p = ["--method", "channel", "--importance", "data", "--reconstruct", "--skip-layers", KEEP]
    kd = ["--finetune-teacher", "parent", "--finetune-lr", KD_LR]
    return [
        ("fp32", ["import", "--model", "efficientnet-lite0:pretrained=1", "--data", "photos",
                  "--out", fp32]),
        ("int8-channel", [*q, "--granularity", "channel", "--out", str(out / "int8-channel")]),
        ("int8-channel-bc", [*q, "--granularity", "channel", "--bias-correction",
                             "--out", str(out / "int8-channel-bc")]),
        ("int8-channel-bc-mixed", [*q, "--granularity", "channel", "--bias-correction",
                                   "--accuracy-budget", BUDGET,
                                   "--out", str(out / "int8-channel-bc-mixed")]),
        ("int8-tensor", [*q, "--granularity", "tensor", "--out", str(out / "int8-tensor")]),
        ("int8-tensor-cle", [*q, "--granularity", "tensor", "--equalize",
                             "--out", str(out / "int8-tensor-cle")]),
        ("int8-tensor-cle-bc", [*q, "--granularity", "tensor", "--equalize",
                                "--bias-correction", "--out", str(out / "int8-tensor-cle-bc")]),
        *[(f"pruned{r}{'-kd' if e else ''}",
           ["prune", fp32, *p, "--channel-ratio", f"0.{r}", "--finetune-epochs", str(e),
            *(kd if e else []), "--out", str(out / f"pruned{r}{'-kd' if e else ''}")])
          for r in (25, 50) for e in (0, epochs)],
        ("pruned25-int8", ["quantize", str(out / "pruned25"), "--mode", "static",
                           "--granularity", "channel", "--out", str(out / "pruned25-int8")]),
    ]


def _confident(a: dict) -> str:
    c = a.get("confident") or {}
    return "" if c.get("top1") is None else f"{100 * c['top1']:.2f}% ({c['n']})"


def table(rows: list[dict], against: str) -> str:
    """The Markdown table of one compare (the reference's second session left out); p-values
    of the paired agreements against variant ``against``."""
    head = ("| variant | params | MACs | gzip bytes | median ms | speed-up [95% CI] | "
            "top-1 agreement [95% CI] | top-1 where fp32 p ≥ 0.5 (n) | top-5 | KL | SQNR dB | "
            f"p vs {against} | "
            "peak RSS MB | kernels |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if r["variant"] == "reference-again":
            continue
        a, (lo, hi) = r["agreement"], r["speedup_ci95"]
        p = (r.get("agreement_p_values") or {}).get(against)
        kernels = ", ".join(f"{k}×{v}" for k, v in sorted(r["kernels"].items(),
                                                            key=lambda kv: -kv[1])[:6])
        lines.append(
            f"| {r['variant']} | {r['params_nonzero']:,} | {r['macs'] / 1e6:.0f} M | "
            f"{r['size_gzip_bytes']:,} | {r['latency_ms']['median']:.2f} | "
            f"{r['speedup']:.2f}× [{lo:.2f}, {hi:.2f}] | {100 * a['top1']:.2f}% "
            f"[{100 * a['top1_ci95'][0]:.2f}, {100 * a['top1_ci95'][1]:.2f}] | "
            f"{_confident(a)} | {100 * a['top5']:.1f}% | {a['kl_mean']:.3f} | "
            f"{a['logit_sqnr_db']:.1f} | "
            f"{'' if p is None else f'{p:.2g}'} | {r['peak_rss_mb']:.0f} | {kernels} |")
    return "\n".join(lines)


def mixed_section(path: Path) -> list[str]:
    """What ``--accuracy-budget`` decided on the validation photographs: the layers kept float."""
    if not path.is_file():
        return []
    summary = json.loads(path.read_text())
    mp = summary.get("mixed_precision") or {}
    if not mp:
        return []
    n = len(summary.get("sensitivity") or [])
    md = [f"## Layers kept float by `--accuracy-budget {BUDGET}`", "",
          f"Decided on the 192 validation crops (3 photographs, none of them evaluation ones): "
          f"all {n} weighted layers int8 agree with fp32 on "
          f"{100 * mp['all_int8']['agreement']:.2f}%; layers moved to float, most costly first "
          f"(cost = agreement lost with only that layer int8), until "
          f"{100 * mp['final']['agreement']:.2f}% agree "
          f"({'within' if mp['within_budget'] else 'not within'} the budget):", ""]
    md += [f"- `{f['layer']}`: {f['reason']}" for f in mp["float_layers"]]
    if summary.get("layers_judged_without_bias_correction"):
        md += ["", "The layers were judged without bias correction; the final build then "
               "corrects every layer's bias on its quantized graph (`edgepress.quantize."
               "biascorrect`), the float layers' too."]
    return [*md, ""]


def main() -> None:  # noqa: D103
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=HERE / "out" / "efficientnet")
    ap.add_argument("--epochs", type=int, default=2, help="distillation epochs after pruning")
    ap.add_argument("--runtimes", default="onnxruntime,executorch")
    ap.add_argument("--variants", help="only these (comma-separated; fp32 always): made, "
                    "compared and written to benchmarks/results/efficientnet-<last one>.md")
    ap.add_argument("--results", help="the results file's name in benchmarks/results (default: "
                    "efficientnet.md, or as --variants says), e.g. efficientnet-avx2.md for a "
                    "host of another ISA")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite the results file from the compare JSONs already in --out")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    log: list[str] = []
    t_all = time.perf_counter()
    made = variants(args.out, args.epochs)
    results_file = "efficientnet.md"
    if args.variants:
        wanted = {"fp32", *args.variants.split(",")}
        if unknown := wanted - {n for n, _ in made}:
            sys.exit(f"unknown variants: {', '.join(sorted(unknown))}")
        made = [(n, c) for n, c in made if n in wanted]
        results_file = f"efficientnet-{args.variants.split(',')[-1]}.md"
    results_file = args.results or results_file
    names = [n for n, _ in made]
    against = "int8-channel" if "int8-channel" in names else names[min(1, len(names) - 1)]
    results = {}
    for name, cmd in made:
        if not args.report_only and not (args.out / name / "metrics.json").is_file():
            run(cmd, log)
    for rt in args.runtimes.split(","):
        js = args.out / f"compare-{rt}.json"
        if not args.report_only:
            run(["compare", *[str(args.out / n) for n, _ in made], "--runtime", rt, "--json",
                 str(js)], log)
        results[rt] = json.loads(js.read_text())
    if args.report_only:
        saved = args.out / "log.md"
        log = saved.read_text().splitlines() if saved.is_file() else []
    else:  # the variants made before keep their lines; the compares are re-run every time
        saved = args.out / "log.md"
        old = saved.read_text().splitlines() if saved.is_file() else []
        made_now = {line.split("` |")[0] for line in log}
        log = [line for line in old if not line.startswith("| `edgepress compare")
               and line.split("` |")[0] not in made_now] + log
        saved.write_text("\n".join(log) + "\n")
    wall = time.perf_counter() - t_all
    md = ["# EfficientNet-Lite0 without its training data (224×224, photos)", "",
          f"`python benchmarks/efficientnet.py --epochs {args.epochs}"
          f"{f' --variants {args.variants}' if args.variants else ''}`: {wall / 60:.1f} min "
          "of wall time on 2 cores for what was not yet made and the compares (each "
          "command's wall time below; a variant made by an earlier run of this script keeps "
          "its line).", "",
          "Agreement is with the fp32 pretrained network on the 1,029 evaluation crops of 7 "
          "photographs (no labels exist); p: exact McNemar on the paired agreements against "
          f"`{against}`. One interleaved compare per runtime, 1 thread, batch 1.", ""]
    for rt, rows in results.items():
        floor = rows[0].get("noise_floor")
        md += [f"## {rt}" + (f" (noise floor {100 * floor:.1f}%)" if floor else ""), "",
               table(rows, against), ""]
    md += mixed_section(args.out / "int8-channel-bc-mixed" / "quantize.json")
    md += ["## Commands and wall times", "", "| command | wall |", "|---|---|", *log, ""]
    text = stamped("\n".join(md))
    (HERE / "results" / results_file).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
