"""``edgepress search`` against the shipped recipes and a stop-at-first-pass strategy (issue 19).

Cases (each a search of the foundation benchmark's Fashion-MNIST run, 1-pt validation budget,
objectives gzip'd bytes and speed-up):

* ``cnn-ort``       — cnn, ONNX Runtime, ``--minutes`` (default 30) of wall time in all;
* ``mobilenet-ort`` — mobilenet-mini, ONNX Runtime, ``--other-minutes`` (default 15);
* ``cnn-et``        — cnn, ExecuTorch/XNNPACK, ``--other-minutes``;
* ``workers``       — cnn, ONNX Runtime, two worker processes on one PostgreSQL study (Debian's
  server, started here in a temporary directory as the ``postgres`` user) for
  ``--worker-minutes`` (default 10), one torch thread each: trials per hour against the first
  ``--worker-minutes`` of ``cnn-ort`` (one worker, same settings, SQLite).

After each search, one interleaved compare **on the test split** holds the reference, every
front point, every shipped recipe that met the budget on validation, and the trial a "stop at the
first configuration that passes" strategy (Intel Neural Compressor's tuning) would have returned —
the first trial, in the search's own order, that met the budget — with the time it took to get
there. A front point *dominates* a recipe when it is no larger and no slower and strictly smaller
or faster beyond both CIs (each at least ± the measured noise floor): ``edgepress.search.front``.

Usage (nothing else running on the machine):
    python benchmarks/search.py [--cases cnn-ort,mobilenet-ort,cnn-et,workers] [--minutes 30]
        [--other-minutes 15] [--worker-minutes 10] [--train-subset 20000]
        [--out benchmarks/out/search]

A case whose ``bench.json`` exists is reused (delete it to re-measure). Prints Markdown and writes
OUT/search.md and OUT/search.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import reuse_or_train, stamped

from edgepress.search import SearchConfig, search
from edgepress.search.front import Point, beats

HERE = Path(__file__).resolve().parent
FOUNDATION = HERE / "out" / "foundation" / "runs"
FINISH_RESERVE_S = 120  # the front's test compare and the outputs, inside the case's minutes


def parent_of(model: str, out: Path) -> Path:
    return reuse_or_train(model, "fashion-mnist", FOUNDATION / model, out / "runs" / model)


def trials_of(storage: str, name: str) -> list:
    import optuna

    return sorted(optuna.load_study(study_name=name, storage=storage).get_trials(),
                  key=lambda t: t.number)


def finished(trials: list) -> list:
    return [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]


def passes(t) -> bool:  # noqa: ANN001
    return t.state.name == "COMPLETE" and t.user_attrs.get("constraint", 1e9) <= 0


def compare_on_test(parent: Path, summary: dict, trials: list, runtime: str) -> dict:
    """The reference, the front, the feasible shipped recipes and the first passing trial in
    one interleaved compare on the test split; dominance of each recipe by the front."""
    from edgepress.measurement import compare

    front = {r["trial"]: Path(r["dir"]) for r in summary["front"]}
    feasible = [t for t in trials if passes(t)]
    shipped = [t for t in feasible if t.user_attrs.get("shipped_recipe")]
    first = feasible[0] if feasible else None
    others = {t.number: Path(t.user_attrs["dir"]) for t in [*shipped, *([first] if first else [])]
              if t.number not in front}
    labels = {**{n: f"front-{n}" for n in front}, **{n: f"trial-{n}" for n in others}}
    dirs = {**front, **others}
    order = sorted(dirs)
    rows = compare([parent, *[dirs[n] for n in order]], runtime=runtime,
                   variants=["reference", *[labels[n] for n in order]])
    by = {n: r for n, r in zip(order, rows[1:-1], strict=True)}

    def point(n: int) -> Point:
        r = by[n]
        return Point(str(n), int(r["size_gzip_bytes"]), float(r["speedup"]),
                     (float(r["speedup_ci95"][0]), float(r["speedup_ci95"][1])))

    def row(n: int, role: str) -> dict:
        r, t = by[n], next(t for t in trials if t.number == n)
        dom = [m for m in front if m != n and beats(point(m), point(n))]
        strict = [m for m in front if m != n and point(m).size < point(n).size
                  and point(m).ci[0] > point(n).ci[1]]  # smaller and faster beyond the CIs
        return {"trial": n, "role": role, "shipped_recipe": t.user_attrs.get("shipped_recipe"),
                "recipe": t.user_attrs["recipe"], "size_gzip_bytes": r["size_gzip_bytes"],
                "size_ratio": r["size_ratio"], "speedup": r["speedup"],
                "speedup_ci95": r["speedup_ci95"], "noise_floor": r["noise_floor"],
                "accuracy": r["accuracy"], "accuracy_delta_pts": r["accuracy_delta_pts"],
                "accuracy_delta_ci95_pts": r.get("accuracy_delta_ci95_pts"),
                "val_loss_pts": t.user_attrs.get("val_loss_pts"), "dominated_by_front": dom,
                "strictly_dominated_by_front": strict}

    t0 = min(t.datetime_start for t in trials if t.datetime_start)
    out = {"reference": rows[0], "rows": [], "first_pass": None}
    for n in order:
        roles = [x for x, ok in (("front", n in front), ("shipped", any(
            t.number == n for t in shipped)), ("first-pass", first is not None and
                                                first.number == n)) if ok]
        out["rows"].append(row(n, "+".join(roles)))
    if first is not None:
        out["first_pass"] = {"trial": first.number, "seconds_to_it": round(
            (first.datetime_complete - t0).total_seconds(), 1)}
    out["machine"] = rows[0]["machine"]
    return out


def run_case(name: str, model: str, runtime: str, minutes: float, args: argparse.Namespace
             ) -> dict:
    d = args.out / name
    done = d / "bench.json"
    if done.is_file():
        print(f"{name}: reusing {done}", flush=True)
        return json.loads(done.read_text())
    parent = parent_of(model, args.out)
    shutil.rmtree(d / "search", ignore_errors=True)
    config = SearchConfig(budget_pts=1.0, trials=10_000, runtime=runtime,
                          timeout=minutes * 60 - FINISH_RESERVE_S, max_epochs=2,
                          train_subset=args.train_subset, seed=0)
    print(f"{name}: searching {model} on {runtime} for {minutes:g} min", flush=True)
    t0 = time.perf_counter()
    summary = search(parent, config, out=d / "search")
    wall = time.perf_counter() - t0
    trials = trials_of(f"sqlite:///{(d / 'search' / 'search.db').resolve()}", summary["study"])
    result = {"case": name, "model": model, "runtime": runtime, "minutes": minutes,
              "search_wall_s": round(wall, 1), "summary": summary,
              "trials_finished": len(finished(trials)),
              "trials_timed": sum(1 for t in trials if t.user_attrs.get("timing")),
              "per_trial": [{"trial": t.number, "state": t.state.name,
                             "start": t.datetime_start.isoformat() if t.datetime_start else None,
                             "end": t.datetime_complete.isoformat() if t.datetime_complete
                             else None} for t in trials]}
    print(f"{name}: test compare of the front, the shipped recipes and the first pass",
          flush=True)
    result["test"] = compare_on_test(parent, summary, trials, runtime)
    d.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps(result, indent=1, default=str))
    return result


# --- two workers on PostgreSQL -------------------------------------------------------------------

def start_postgres() -> tuple[str, callable]:
    """A throw-away PostgreSQL server (edgepress.search.testing) and the call that stops it."""
    from edgepress.errors import InputError
    from edgepress.search.testing import throwaway_postgres

    server = throwaway_postgres()
    try:
        url = server.__enter__()
    except InputError as e:
        sys.exit(str(e))
    return url, lambda: server.__exit__(None, None, None)


def run_workers(minutes: float, single: dict, args: argparse.Namespace) -> dict:
    d = args.out / "workers"
    done = d / "bench.json"
    if done.is_file():
        print(f"workers: reusing {done}", flush=True)
        return json.loads(done.read_text())
    parent = parent_of("cnn", args.out)
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    url, stop = start_postgres()
    try:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "edgepress", "search", str(parent), "--storage", url,
               "--study-name", "two", "--trials", "10000", "--timeout",
               str(minutes * 60 - FINISH_RESERVE_S), "--train-subset", str(args.train_subset),
               "--seed", "0"]
        print(f"workers: two workers on one PostgreSQL study for {minutes:g} min", flush=True)
        t0 = time.perf_counter()
        procs = [_staggered(i, [*cmd, "--out", str(d / f"w{i}")], env, d / f"w{i}.log")
                 for i in (1, 2)]
        codes = [p.wait() for p in procs]
        wall = time.perf_counter() - t0
        trials = trials_of(url.replace("postgresql://", "postgresql+psycopg://"), "two")
    finally:
        stop()
    fronts = [json.loads((d / f"w{i}" / "front.json").read_text()) for i in (1, 2)
              if (d / f"w{i}" / "front.json").is_file()]
    window = (minutes * 60 - FINISH_RESERVE_S)
    two = _in_window(trials, window)
    one = _in_window_iso(single["per_trial"], window)
    result = {"minutes": minutes, "wall_s": round(wall, 1), "exit_codes": codes,
              "window_s": window, "two_workers_finished": two, "one_worker_finished": one,
              "two_per_hour": round(3600 * two / window, 1),
              "one_per_hour": round(3600 * one / window, 1),
              "numbers_unique": len({t.number for t in trials}) == len(trials),
              "states": {s: sum(1 for t in trials if t.state.name == s)
                         for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")},
              "lock_waits_s": [t.user_attrs["timing"]["waited_s"] for t in trials
                               if t.user_attrs.get("timing")],
              "front": fronts[-1]["front"] if fronts else [],
              "knee": fronts[-1]["knee"] if fronts else None}
    done.write_text(json.dumps(result, indent=1, default=str))
    return result


def _staggered(i: int, cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    """Worker ``i``, started 3 s after the one before (as a second machine would join)."""
    if i > 1:
        time.sleep(3)
    return subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _in_window(trials: list, seconds: float) -> int:
    starts = [t.datetime_start for t in trials if t.datetime_start]
    if not starts:
        return 0
    t0 = min(starts)
    return sum(1 for t in finished(trials) if (t.datetime_complete - t0).total_seconds()
               <= seconds)


def _in_window_iso(per_trial: list[dict], seconds: float) -> int:
    from datetime import datetime

    starts = [datetime.fromisoformat(t["start"]) for t in per_trial if t["start"]]
    t0 = min(starts)
    return sum(1 for t in per_trial if t["state"] in ("COMPLETE", "PRUNED") and t["end"]
               and (datetime.fromisoformat(t["end"]) - t0).total_seconds() <= seconds)


# --- the table -----------------------------------------------------------------------------------

def _ci(r: dict) -> str:
    lo, hi = r["speedup_ci95"]
    return f"{r['speedup']:.2f}× [{lo:.2f}, {hi:.2f}]"


def _steps(recipe: str) -> str:
    from edgepress.search.space import step_label, yaml_steps

    return "; ".join(step_label(s) for s in yaml_steps(recipe))


def case_md(r: dict) -> list[str]:
    s, t = r["summary"], r["test"]
    ref = t["reference"]
    lines = [f"## {r['case']}: {r['model']} on {r['runtime']}", "",
             f"{s['trials']} trials in {r['search_wall_s'] / 60:.1f} min of search wall time "
             f"(budget {r['minutes']:g} min, the front's own test compare included), "
             f"{s['feasible']} within 1 pt of validation accuracy, {r['trials_timed']} timed; "
             f"front of {len(s['front'])}. Reference: {ref['size_gzip_bytes']:,} B gzip, "
             f"{100 * ref['accuracy']:.2f}% test, {ref['latency_ms']['median']:.3f} ms.", "",
             "Test split, one interleaved compare (noise floor "
             f"{100 * t['rows'][0]['noise_floor']:.1f}%):", "",
             "| trial | role | shipped as | steps | gzip B | size × | speed-up [95% CI] | "
             "Δ test pts [95% CI] | val loss pts | dominated by (front rule) | smaller *and* "
             "faster: by |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    fronts = [x for x in t["rows"] if "front" in x["role"]]
    for x in t["rows"]:  # recomputed here, so a bench.json written before the field has it too
        x["strictly_dominated_by_front"] = [
            f["trial"] for f in fronts if f["trial"] != x["trial"]
            and f["size_gzip_bytes"] < x["size_gzip_bytes"]
            and f["speedup_ci95"][0] > x["speedup_ci95"][1]]
    for x in t["rows"]:
        ci = x["accuracy_delta_ci95_pts"] or [0, 0]
        lines.append(f"| {x['trial']} | {x['role']} | {x['shipped_recipe'] or ''} | "
                     f"{_steps(x['recipe'])} | {x['size_gzip_bytes']:,} | {x['size_ratio']:.3f} | "
                     f"{_ci(x)} | {x['accuracy_delta_pts']:+.2f} [{ci[0]:+.2f}, {ci[1]:+.2f}] | "
                     f"{x['val_loss_pts']:.2f} | "
                     f"{', '.join(map(str, x['dominated_by_front'])) or '—'} | "
                     f"{', '.join(map(str, x.get('strictly_dominated_by_front', []))) or '—'} |")
    shipped = [x for x in t["rows"] if "shipped" in x["role"]]
    beaten = [x for x in shipped if x["dominated_by_front"]]
    strict = [x for x in shipped if x.get("strictly_dominated_by_front")]
    lines += ["", f"Shipped recipes within budget: {len(shipped)}. Dominated on test by a front "
              f"point under the front's rule (no larger, not slower beyond the CIs, and smaller "
              f"or faster beyond them): {len(beaten)}"
              + (" — " + ", ".join(f"{x['shipped_recipe']} by trial(s) "
                                   f"{', '.join(map(str, x['dominated_by_front']))}"
                                   for x in beaten) if beaten else "")
              + f". Strictly (smaller *and* faster, the speed-up CIs apart): {len(strict)}"
              + (" — " + ", ".join(f"{x['shipped_recipe']} by trial(s) "
                                   f"{', '.join(map(str, x['strictly_dominated_by_front']))}"
                                   for x in strict) if strict else "") + "."]
    fp = t["first_pass"]
    if fp:
        x = next(x for x in t["rows"] if x["trial"] == fp["trial"])
        lines.append(f"Stop-at-first-pass: trial {fp['trial']} "
                     f"({x['shipped_recipe'] or _steps(x['recipe'])}) after "
                     f"{fp['seconds_to_it']:.0f} s — {x['size_gzip_bytes']:,} B, {_ci(x)}; "
                     + ("dominated by the front." if x["dominated_by_front"]
                        else "not dominated: it is on the front or the noise cannot separate it."))
    k = s["knee"]
    if k:
        lines.append(f"Knee: trial {k['trial']} ({_steps(k['recipe'])}).")
    return lines + [""]


def workers_md(w: dict) -> list[str]:
    waits = w["lock_waits_s"]
    return ["## workers: two processes on one PostgreSQL study (cnn, ONNX Runtime)", "",
            f"Window {w['window_s'] / 60:.1f} min: two workers (one torch thread each) finished "
            f"{w['two_workers_finished']} trials ({w['two_per_hour']:.0f}/hour); one worker "
            f"(cnn-ort's first {w['window_s'] / 60:.1f} min, SQLite, default threads) "
            f"{w['one_worker_finished']} ({w['one_per_hour']:.0f}/hour). Trial numbers unique: "
            f"{w['numbers_unique']}; states {w['states']}; exit codes {w['exit_codes']}. "
            f"Timing-lock waits: {len(waits)} timed trials, median "
            f"{sorted(waits)[len(waits) // 2] if waits else 0:.1f} s, max "
            f"{max(waits) if waits else 0:.1f} s. Front of {len(w['front'])}"
            + (f"; knee trial {w['knee']['trial']} ({_steps(w['knee']['recipe'])}), "
               f"{w['knee']['size_gzip_bytes']:,} B, {_ci(w['knee'])} on test."
               if w["knee"] else "."), ""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="cnn-ort,mobilenet-ort,cnn-et,workers")
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--other-minutes", type=float, default=15)
    ap.add_argument("--worker-minutes", type=float, default=10)
    ap.add_argument("--train-subset", type=int, default=20000)
    ap.add_argument("--out", type=Path, default=HERE / "out" / "search")
    args = ap.parse_args()
    cases = args.cases.split(",")
    t0 = time.perf_counter()
    results: dict = {}
    specs = {"cnn-ort": ("cnn", "onnxruntime", args.minutes),
             "mobilenet-ort": ("mobilenet-mini", "onnxruntime", args.other_minutes),
             "cnn-et": ("cnn", "executorch", args.other_minutes)}
    for c in cases:
        if c in specs:
            results[c] = run_case(c, *specs[c], args)
    if "workers" in cases:
        single = results.get("cnn-ort") or run_case("cnn-ort", *specs["cnn-ort"], args)
        results["workers"] = run_workers(args.worker_minutes, single, args)
    lines = ["# edgepress search: the measured front against the shipped recipes", "",
             f"Fashion-MNIST, 1-pt validation budget, objectives gzip'd bytes and speed-up, "
             f"fine-tunes of ≤ 2 epochs on the first {args.train_subset:,} training images, "
             f"seed 0; {time.strftime('%Y-%m-%d')}; this invocation "
             f"{(time.perf_counter() - t0) / 60:.1f} min (reused cases excluded).", ""]
    for c in cases:
        if c in specs:
            lines += case_md(results[c])
    if "workers" in results:
        lines += workers_md(results["workers"])
    md = stamped("\n".join(lines))
    print(md)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "search.md").write_text(md)
    (args.out / "search.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
