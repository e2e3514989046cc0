"""Structural-compression figures: BN folding (cnn, mobilenet-mini), a low-rank mlp with 4× fewer
hidden-layer parameters, and mobilenet-mini with 1 and 2 residual blocks dropped — each compared
(one interleaved session per model family) with its parent through edgepress.compare.

Usage: python benchmarks/structure.py [--data fashion-mnist] [--out benchmarks/out/structure]
       [--baselines benchmarks/out/foundation/runs] [--reuse] [--quick]

Parents: BASELINES/<model> when that run exists and was trained on --data (the foundation
benchmark's default-trained runs), else trained with the default recipe into OUT/runs/<model>.
--reuse: keep structured runs already in OUT/runs. --quick: one fine-tune epoch and 2-epoch
parents (a smoke test, e.g. with --data digits). Writes OUT/structure.md, OUT/structure.json and
OUT/compare-<model>.json. Run it on an idle machine (latency).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from _common import reuse_or_train, stamped

from edgepress import compare
from edgepress.checkpoint import load_run
from edgepress.measurement import measured_rows
from edgepress.structure import StructureConfig, structure

FAMILIES = ("mlp", "cnn", "mobilenet-mini")
HIDDEN_PARAM_CUT = 4.0  # the low-rank mlp keeps ≤ 1/4 of its hidden layers' weights
# name -> (parent model, config options, fine-tune epochs); lowrank's rank is set from the parent
VARIANTS: dict[str, tuple[str, dict, int]] = {
    "cnn-fold": ("cnn", {"method": "fold"}, 0),
    "mobilenet-mini-fold": ("mobilenet-mini", {"method": "fold"}, 0),
    "mlp-lowrank4x": ("mlp", {"method": "lowrank", "skip_layers": ("classifier",)}, 4),
    "mobilenet-mini-drop1": ("mobilenet-mini", {"method": "drop-blocks", "blocks": 1}, 3),
    "mobilenet-mini-drop2": ("mobilenet-mini", {"method": "drop-blocks", "blocks": 2}, 3),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--out", default="benchmarks/out/structure")
    ap.add_argument("--baselines", default="benchmarks/out/foundation/runs")
    ap.add_argument("--reuse", action="store_true", help="reuse structured runs in OUT/runs")
    ap.add_argument("--quick", action="store_true", help="1 fine-tune epoch, 2-epoch parents")
    args = ap.parse_args()
    out, t0 = Path(args.out), time.perf_counter()
    runs = out / "runs"
    parents = {m: baseline(m, args, runs) for m in FAMILIES}
    made = {name: make_variant(name, parents[model], opts, epochs, args, runs)
            for name, (model, opts, epochs) in VARIANTS.items()}
    rows = []
    for family in FAMILIES:
        variants = [n for n, v in VARIANTS.items() if v[0] == family]
        cmp = compare([parents[family], *[runs / n for n in variants]], data=args.data,
                      variants=[family, *variants])
        (out / f"compare-{family}.json").write_text(json.dumps(cmp, indent=2))
        rows += [row(rec, cmp[0], made.get(name), family)
                 for rec, name in zip(measured_rows(cmp), [family, *variants], strict=True)]
        print(f"compared {family}", flush=True)
    minutes = (time.perf_counter() - t0) / 60
    (out / "structure.json").write_text(json.dumps(rows, indent=2))
    md = report(rows, args, minutes)
    (out / "structure.md").write_text(stamped(md))
    print(md)


def baseline(model: str, args: argparse.Namespace, runs: Path) -> Path:
    """The parent run: the foundation's when it was trained on this data, else train one."""
    return reuse_or_train(model, args.data, Path(args.baselines) / model, runs / model,
                          epochs=2 if args.quick else None)


def hidden_rank(parent: Path, cut: float = HIDDEN_PARAM_CUT) -> int:
    """The one rank that leaves ≤ 1/cut of the mlp's hidden-layer weights (classifier excluded).

    Factorising an m×n layer at rank r keeps r(m + n) of its mn weights.
    """
    model = load_run(parent).build_model()
    shapes = [tuple(m.weight.shape) for m in model.features if hasattr(m, "weight")]
    total = sum(m * n for m, n in shapes)
    return max(1, math.floor(total / cut / sum(m + n for m, n in shapes)))


def make_variant(name: str, parent: Path, opts: dict, epochs: int, args: argparse.Namespace,
                 runs: Path) -> dict:
    """Restructure ``parent`` into OUT/runs/<name> (or reuse it); return its structure summary."""
    target = runs / name
    if not (args.reuse and (target / "structure.json").is_file()):
        opts = dict(opts)
        if opts["method"] == "lowrank":
            opts["rank"] = hidden_rank(parent)
        if opts["method"] not in ("fold", "merge"):
            opts["finetune_epochs"] = 1 if args.quick else epochs
        structure(parent, StructureConfig(**opts), out=target, data=args.data, progress=False)
        print(f"made {name}", flush=True)
    rep = json.loads((target / "structure.json").read_text())
    training = rep.get("training") or {}
    return {"method": rep["method"], "config": rep["config"], "message": rep["message"],
            "before": rep["before"], "after": rep["after"], "details": _details(rep),
            "finetune_epochs": (training.get("config") or {}).get("epochs"),
            "finetune_seconds": training.get("seconds")}


def _details(rep: dict) -> dict:
    d = rep["details"]
    if rep["method"] == "lowrank":
        hidden = {n: r for n, r in d["layers"].items() if n.startswith("features")}
        before = sum(r["params_before"] for r in hidden.values())
        after = sum(r["params_after"] for r in hidden.values())
        return {"ranks": d["ranks"], "hidden_weights_before": before,
                "hidden_weights_after": after, "hidden_cut": before / max(after, 1)}
    if rep["method"] == "drop-blocks":
        return {"dropped": d["dropped"],
                "val_loss_bypassed": {n: b["val_loss"] for n, b in d["blocks"].items()
                                      if b.get("droppable")},
                "baseline_val_loss": d["baseline_val_loss"]}
    if rep["method"] == "fold":
        return {"folded": len(d["folded"]), "bn_left": d["bn_left"]}
    return {}


def row(rec: dict, ref: dict, made: dict | None, family: str) -> dict:
    """One table row: the comparison record's figures plus what the method did."""
    return {
        "family": family, "variant": rec["variant"], "method": (made or {}).get("method", "—"),
        "params_total": rec["params_total"], "macs": rec["macs"],
        "mac_ratio": ref["macs"] / rec["macs"], "size_gzip_bytes": rec["size_gzip_bytes"],
        "size_ratio": rec["size_ratio"], "accuracy": rec["accuracy"],
        "accuracy_delta_pts": rec["accuracy_delta_pts"], "p_value": rec["p_value"],
        "median_ms": rec["latency_ms"]["median"], "speedup": rec["speedup"],
        "speedup_ci95": rec["speedup_ci95"], "kernels": rec["kernels"],
        "details": (made or {}).get("details"), "message": (made or {}).get("message"),
        "finetune_epochs": (made or {}).get("finetune_epochs"),
        "finetune_seconds": (made or {}).get("finetune_seconds"),
    }


def _what(r: dict) -> str:
    d = r["details"] or {}
    if r["method"] == "lowrank":
        ranks = ", ".join(f"{n} r={k}" for n, k in d["ranks"].items())
        return f"{ranks}; hidden weights ÷{d['hidden_cut']:.2f}"
    if r["method"] == "drop-blocks":
        return "dropped " + ", ".join(d["dropped"])
    if r["method"] == "fold":
        return f"{d['folded']} BN folded"
    return "—"


def report(rows: list[dict], args: argparse.Namespace, minutes: float) -> str:
    """The Markdown report: the table, then the issue's figures with the measured numbers."""
    lines = [f"# Structural compression on {args.data}", "",
             f"ONNX Runtime, 1 thread, batch 1; each family measured in one interleaved session "
             f"against its parent; {time.strftime('%Y-%m-%d')}; {minutes:.1f} min in all"
             f"{' (--quick)' if args.quick else ''}.", "",
             "| variant | method | what | params | MACs (÷) | gzip KB (×) | accuracy (Δ pts, p) "
             "| median ms | speed-up [95% CI] | fine-tune |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lo, hi = r["speedup_ci95"]
        ft = (f"{r['finetune_epochs']} ep, {r['finetune_seconds']:.0f} s"
              if r["finetune_epochs"] else "—")
        lines.append(
            f"| {r['variant']} | {r['method']} | {_what(r) if r['details'] else '—'} "
            f"| {r['params_total']:,} | {r['macs']:,} ({r['mac_ratio']:.2f}) "
            f"| {r['size_gzip_bytes'] / 1024:.1f} ({r['size_ratio']:.3f}) "
            f"| {100 * r['accuracy']:.2f} ({r['accuracy_delta_pts']:+.2f}, {r['p_value']:.2g}) "
            f"| {r['median_ms']:.4f} | {r['speedup']:.2f} [{lo:.2f}, {hi:.2f}] | {ft} |")
    lines += ["", "## Figures", ""] + checks({r["variant"]: r for r in rows})
    return "\n".join(lines) + "\n"


def _ci(r: dict) -> str:
    lo, hi = r["speedup_ci95"]
    return f"{r['speedup']:.2f} [{lo:.2f}, {hi:.2f}]"


def checks(by: dict) -> list[str]:
    """The issue's figures, each with the measured numbers (PASS/FAIL only where it sets one)."""
    out = []
    for name in ("cnn-fold", "mobilenet-mini-fold"):
        f, parent = by.get(name), by.get(name.removesuffix("-fold"))
        if f and parent:
            mark = "PASS" if f["accuracy_delta_pts"] == 0 else "FAIL"
            bn = parent["kernels"].get("BatchNormalization", 0)
            why = (f"the parent's ONNX file already ran without BatchNormalization (the eval-mode "
                   f"export folds it), so the deployed graphs are the same operators "
                   f"({sum(parent['kernels'].values())} vs {sum(f['kernels'].values())} executed "
                   f"nodes) and no speed-up is expected; the fold shows in the PyTorch model "
                   f"({f['details']['folded']} BN modules gone) and its weights file"
                   if not bn else f"the parent ran {bn} BatchNormalization nodes")
            out.append(f"- {mark} {name}: accuracy change {f['accuracy_delta_pts']:+.2f} pts "
                       f"(must be 0); speed-up {_ci(f)}; {why}.")
    lr = by.get("mlp-lowrank4x")
    if lr:
        cut = lr["details"]["hidden_cut"]
        mark = "PASS" if cut >= HIDDEN_PARAM_CUT else "FAIL"
        out.append(f"- {mark} mlp low-rank: hidden-layer weights ÷{cut:.2f} (≥ 4); accuracy "
                   f"{lr['accuracy_delta_pts']:+.2f} pts (p = {lr['p_value']:.2g}), MACs "
                   f"÷{lr['mac_ratio']:.2f}, speed-up {_ci(lr)}")
    for name in ("mobilenet-mini-drop1", "mobilenet-mini-drop2"):
        d = by.get(name)
        if d:
            out.append(f"- REPORT {name} ({', '.join(d['details']['dropped'])}): accuracy "
                       f"{d['accuracy_delta_pts']:+.2f} pts (p = {d['p_value']:.2g}), MACs "
                       f"{d['macs']:,} (÷{d['mac_ratio']:.2f}), speed-up {_ci(d)}")
    return out


if __name__ == "__main__":
    main()
