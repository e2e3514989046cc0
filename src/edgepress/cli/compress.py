"""``edgepress compress``: run a recipe (a YAML list of steps), measuring after every step."""

from __future__ import annotations

import argparse

from .options import add_data, data_spec

HELP = "run a recipe of prune / quantize / distill / structure steps, measured after each"


def add_arguments(p: argparse.ArgumentParser) -> None:  # noqa: D103
    p.add_argument("run", metavar="RUN", help="input run directory (not changed)")
    p.add_argument("--recipe", required=True, metavar="FILE.yaml",
                   help="recipe: a YAML list of steps, e.g. recipes/prune-then-int8.yaml")
    p.add_argument("--out", required=True, metavar="RUN2",
                   help="output run directory (the last step's run; every step's run in "
                   "RUN2/steps/, the comparison in RUN2/compress.json)")
    add_data(p, "each step's parent run's data")
    p.add_argument("--dry-run", action="store_true",
                   help="only validate the recipe against RUN and print the plan")
    p.add_argument("--no-progress", action="store_true", help="no progress output")


def steps_table(summary: dict):  # noqa: ANN201
    """One row per step (and the input run): params, MACs, sizes, accuracy, latency."""
    from rich.table import Table

    t = Table(title=f"recipe {summary['recipe']['file']}")
    for col in ("step", "params nz/total", "MACs", "bytes", "gzip", "accuracy", "median ms",
                "reused"):
        t.add_column(col, justify="left" if col == "step" else "right")
    rows = [("input", summary["input"], "")] if summary["input"].get("measured") else []
    rows += [(f"{r['index']}. {r['label']}", r, "yes" if r["reused"] else "no")
             for r in summary["steps"]]
    for name, r, reused in rows:
        t.add_row(name, f"{r['params_nonzero']:,}/{r['params_total']:,}", f"{r['macs']:,}",
                  f"{r['size_bytes']:,}", f"{r['size_gzip_bytes']:,}", _score(r),
                  f"{r['latency_ms']['median']:.4f}", reused)
    return t


def _score(r: dict) -> str:
    """Accuracy, or on unlabelled data the top-1 agreement with the parent."""
    if r.get("accuracy") is not None:
        return f"{r['accuracy']:.4f}"
    a = (r.get("agreement") or {})
    return f"agree {a['top1']:.4f}" if a else "-"


def run(args: argparse.Namespace) -> int:  # noqa: D103
    from ..checkpoint import check_output_dir, load_run
    from ..recipe import check_order, compress, input_state, load_recipe
    from .tables import show

    recipe = load_recipe(args.recipe)
    if args.dry_run:
        check_output_dir(args.out)
        states = check_order(recipe, input_state(load_run(args.run)))
        for step, state in zip(recipe.steps, states, strict=True):
            print(f"{step.index}. {step.label} (line {step.line}) -> {state.kind}: "
                  f"{step.to_dict()}")
        print("recipe is valid")
        return 0
    summary = compress(args.run, recipe, out=args.out, data=data_spec(args),
                       progress=not args.no_progress)
    show(steps_table(summary))
    print(f"wrote {args.out} ({args.out}/compress.json; each step in {args.out}/steps/)")
    return 0
