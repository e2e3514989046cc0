"""Deep Compression (Han et al. 2016) on the mlp (LeNet-300-100), stage by stage, as its Table 1.

Pipeline, all through edgepress's own verbs: the recipe runner (`edgepress.recipe.compress`)
prunes (global magnitude ~92%, AGP ramp, fine-tuning) and clusters the survivors (k-means weight
sharing, 2^bits values per layer, centroid fine-tuning; `edgepress.structure`), each step
measured; then `edgepress.pack` writes the entropy-coded archive (sparse gaps + cluster indices,
Huffman or LZMA per stream, whichever is smaller) and `unpack` rebuilds the model from it to
show that the coding stage is lossless (same test accuracy, bit-identical weights).

Sizes per stage, against the fp32 weights (4 bytes × parameters):
  prune     — sparse positions (fixed-width relative gaps) + fp32 non-zero values, no coding;
  + cluster — sparse positions + per-weight cluster indices + codebooks, no coding;
  + coding  — the packed archive (entropy-coded streams, header and manifest included).

Usage: python benchmarks/deep_compression.py [--data fashion-mnist] [--sparsity 0.92] [--bits 5]
       [--prune-epochs 30] [--cluster-epochs 8] [--baseline benchmarks/out/foundation/runs/mlp]
       [--out benchmarks/out/deep-compression] [--quick]

The baseline run is reused when it exists and was trained on --data, else trained into
OUT/runs/mlp. Re-running resumes: recipe steps whose inputs are unchanged are reused. --quick:
one fine-tune epoch per stage and a 3-epoch baseline (a smoke test, e.g. with --data digits).
Writes OUT/deep_compression.md and OUT/deep_compression.json. Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _common import reuse_or_train, stamped

from edgepress.errors import InputError

TARGET_RATIO, GOAL_RATIO, MAX_LOSS_PTS = 30.0, 40.0, 0.5


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--out", default="benchmarks/out/deep-compression")
    ap.add_argument("--baseline", default="benchmarks/out/foundation/runs/mlp")
    ap.add_argument("--sparsity", type=float, default=0.92)
    ap.add_argument("--bits", type=int, default=5)
    ap.add_argument("--prune-epochs", type=int, default=30)
    ap.add_argument("--cluster-epochs", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="1 fine-tune epoch per stage")
    args = ap.parse_args()
    out, t0 = Path(args.out), time.perf_counter()
    recipe = build_recipe(args, out)  # fails here, before any work, without edgepress.structure
    base = baseline(args, out / "runs")
    from edgepress.recipe import compress

    summary = compress(base, recipe, out=out / "runs" / "mlp-dc", data=args.data)
    stages, archives = measure_stages(base, out / "runs" / "mlp-dc", summary, out)
    result = {"data": args.data, "config": vars(args), "stages": stages, "archives": archives,
              "compress": summary, "minutes": (time.perf_counter() - t0) / 60}
    (out / "deep_compression.json").write_text(json.dumps(result, indent=2))
    md = report(result)
    (out / "deep_compression.md").write_text(stamped(md))
    print(md)


def build_recipe(args: argparse.Namespace, out: Path):  # noqa: ANN201
    """The prune → cluster recipe, validated (exits with a clear message if a step is missing)."""
    from edgepress.recipe import parse_recipe

    prune_ep, cluster_ep = (1, 1) if args.quick else (args.prune_epochs, args.cluster_epochs)
    text = (f"- step: prune\n  method: magnitude\n  sparsity: {args.sparsity}\n"
            f"  scope: global\n  schedule: agp\n  finetune_epochs: {prune_ep}\n"
            f"- step: structure\n  method: cluster\n  bits: {args.bits}\n"
            f"  finetune_epochs: {cluster_ep}\n")
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.yaml").write_text(text)
    try:
        return parse_recipe(text, str(out / "recipe.yaml"))
    except InputError as e:
        sys.exit(f"deep_compression: cannot build the pipeline: {e}")


def baseline(args: argparse.Namespace, runs: Path) -> Path:
    """The dense mlp: the foundation run when it was trained on this data, else train one."""
    return reuse_or_train("mlp", args.data, Path(args.baseline), runs / "mlp",
                          epochs=3 if args.quick else None)


def measure_stages(base: Path, final: Path, summary: dict,
                   out: Path) -> tuple[list[dict], dict]:
    """Pack the dense, pruned and clustered runs; unpack the last one to show it is lossless."""
    from edgepress.pack import pack, unpack

    archives = out / "archives"
    dense = pack(base, out=archives / "mlp.epz")
    pruned = pack(final / summary["steps"][0]["dir"], out=archives / "mlp-pruned.epz")
    clustered = pack(final, out=archives / "mlp-dc.epz")
    back = unpack(archives / "mlp-dc.epz", out=out / "runs" / "mlp-dc-unpacked")
    fp32 = 4 * dense["params"]
    acc0 = summary["input"].get("accuracy")
    if acc0 is None:  # the baseline has no metrics.json: measure it (read-only for the run)
        from edgepress.measurement import measure

        acc0 = measure(base)["accuracy"]
    p_acc, c_acc = summary["steps"][0]["accuracy"], summary["steps"][1]["accuracy"]

    def stage(name: str, nbytes: int, acc: float, info: dict, note: str) -> dict:
        return {"stage": name, "bytes": nbytes, "ratio": fp32 / nbytes,
                "weights_kept": info["nonzero"] / info["params"], "accuracy": acc,
                "accuracy_delta_pts": 100 * (acc - acc0), "note": note}

    stages = [
        stage("fp32", fp32, acc0, dense, "4 bytes × parameters"),
        stage("prune", pruned["uncoded_bytes"], p_acc, pruned,
              "sparse gaps + fp32 values, fixed width"),
        stage("+ cluster", clustered["uncoded_bytes"], c_acc, clustered,
              f"gaps + {summary['steps'][1]['config']['bits']}-bit indices + codebooks, "
              "fixed width"),
        stage("+ coding", clustered["bytes"], back["accuracy"], clustered,
              f"the .epz archive (unpacked accuracy {back['accuracy']:.4f})"),
    ]
    return stages, {"dense": dense, "pruned": pruned, "clustered": clustered}


def report(result: dict) -> str:
    """Markdown: the stage table (Table 1 style), the per-layer table (Table 2), the verdict."""
    stages, archive = result["stages"], result["archives"]
    lines = [f"# Deep Compression on mlp ({result['data']})", "",
             f"{time.strftime('%Y-%m-%d')}, {result['minutes']:.1f} min in all"
             f"{' (--quick)' if result['config']['quick'] else ''}. Accuracy: the full test "
             "split through the deployed ONNX model (ONNX Runtime).", "",
             "| stage | weights kept | bytes | × smaller than fp32 | accuracy (Δ pts) "
             "| stored as |",
             "|---|---|---|---|---|---|"]
    for s in stages:
        lines.append(f"| {s['stage']} | {s['weights_kept']:.1%} | {s['bytes']:,} "
                     f"| {s['ratio']:.1f}× | {100 * s['accuracy']:.2f} "
                     f"({s['accuracy_delta_pts']:+.2f}) | {s['note']} |")
    lines += ["", "## Per layer (the archive of the clustered model)", "",
              "| tensor | shape | kept | layout | gap bits | index bits | bytes |",
              "|---|---|---|---|---|---|---|"]
    for t in archive["clustered"]["tensors"]:
        n = 1
        for d in t["shape"]:
            n *= d
        kept = t.get("nonzero", n) / max(n, 1)
        lines.append(f"| {t['name']} | {'×'.join(map(str, t['shape']))} | {kept:.1%} "
                     f"| {t['layout']}/{t['values']} | {t.get('gap_bits', '—')} "
                     f"| {t.get('index_bits', '—')} | {sum(s['bytes'] for s in t['streams']):,} |")
    final = stages[-1]
    ok = final["ratio"] >= TARGET_RATIO and final["accuracy_delta_pts"] >= -MAX_LOSS_PTS
    lines += ["", f"- {'PASS' if ok else 'FAIL'}: archive {final['ratio']:.1f}× smaller than "
              f"fp32 (target ≥ {TARGET_RATIO:.0f}×, goal {GOAL_RATIO:.0f}×), accuracy "
              f"{final['accuracy_delta_pts']:+.2f} pts (≥ −{MAX_LOSS_PTS})",
              "- streams of the archive: " + "; ".join(
                  f"{k} {v['bytes']:,} B (raw {v['raw_bytes']:,}, Huffman {v['huffman_bytes']:,},"
                  f" LZMA {v['lzma_bytes']:,})"
                  for k, v in archive["clustered"]["streams"].items())]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
