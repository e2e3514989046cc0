"""The full ``edgepress study`` of EfficientNet-Lite0 (ImageNet weights) on the unlabelled
photographs: its wall time on this host (the goal is 45 min on 2 cores), each step's seconds,
the largest process's peak RSS, each variant's fresh-process peak RSS, and the study's table.

    python benchmarks/study_lite0.py [--out benchmarks/out/study-lite0] [--timeout-min 60]
                                     [--results study-efficientnet-lite0-avx2.md]

One ``edgepress study --data photos --model efficientnet-lite0:pretrained=1 --search-seconds 0``
process (``--search-seconds 0``: the combined row is the old pick among the shipped recipes, no
search), killed at ``--timeout-min``. Writes ``benchmarks/results/study-efficientnet-lite0.md``
(or ``--results``: another host's figures kept) and prints it. Nothing else heavy may run meanwhile.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import stamped

HERE = Path(__file__).resolve().parent
MODEL = "efficientnet-lite0:pretrained=1"


def stage_minutes(out: Path, t0: float) -> list[str]:
    """When each row's run folder was finished (its model.json written), minutes from start."""
    rows = []
    for meta in sorted((out / "runs").glob("**/model.json"), key=lambda p: p.stat().st_mtime):
        rel = meta.parent.relative_to(out / "runs")
        if "steps" in rel.parts:
            continue
        rows.append(f"{rel} {(meta.stat().st_mtime - t0) / 60:.1f} min")
    return rows


def main() -> None:  # noqa: D103
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=HERE / "out" / "study-lite0")
    ap.add_argument("--timeout-min", type=float, default=60.0)
    ap.add_argument("--results", default="study-efficientnet-lite0.md",
                    help="the results file's name in benchmarks/results")
    args = ap.parse_args()
    if args.out.exists():  # a fresh study: resumed steps would not be timed
        shutil.rmtree(args.out)
    cmd = ["study", "--data", "photos", "--model", MODEL, "--search-seconds", "0",
           "--no-progress", "--out", str(args.out)]
    print("$ edgepress " + " ".join(cmd), flush=True)
    t0 = time.time()
    try:
        r = subprocess.run([sys.executable, "-m", "edgepress", *cmd], capture_output=True,
                           text=True, timeout=args.timeout_min * 60)
        code, err = r.returncode, r.stderr.strip()
    except subprocess.TimeoutExpired:
        code, err = None, ""
    wall = time.time() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    head = (f"`edgepress {' '.join(cmd)}`: ")
    if code is None:
        head += (f"**did not finish within {args.timeout_min:g} min** (the goal is 45); rows "
                 f"finished at: {', '.join(stage_minutes(args.out, t0)) or 'none'}.")
    elif code:
        sys.exit(f"study failed ({code}): {err[-2000:]}")
    else:
        meta = json.loads((args.out / "study-meta.json").read_text())
        steps = ", ".join(f"{k} {v:.0f} s" for k, v in meta["seconds"].items() if k != "total")
        head += (f"**{wall / 60:.1f} min wall** on 2 cores (goal ≤ 45 min; "
                 f"{'met' if wall <= 45 * 60 else 'not met'}); steps: {steps}.")
    md = ["# edgepress study: EfficientNet-Lite0 on the unlabelled photographs", "", head, "",
          f"Peak RSS of the largest process (the study or one of its fresh-process timers): "
          f"{peak_mb:,.0f} MB.", ""]
    recs = args.out / "study.json"
    if code == 0 and recs.is_file():
        md += ["## Fresh-process peak RSS of each variant", "",
               "| variant | runtime | peak RSS MB |", "|---|---|---|"]
        md += [f"| {r['variant']} | {r['runtime']} | {r.get('peak_rss_mb') or 0:.0f} |"
               for r in json.loads(recs.read_text())]
        md.append("")
    table = args.out / "study.md"
    if code == 0 and table.is_file():
        body = table.read_text().split("\n", 1)[1]  # the study's title line is replaced
        md += ["## The study's table", "", body.strip(), ""]
    text = stamped("\n".join(md))
    (HERE / "results" / args.results).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
