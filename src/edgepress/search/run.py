"""``search(run, config, out=...)``: the measured, constrained Pareto front over every family, on
Optuna — resumable, and spread over many workers through one storage.

Each trial draws a recipe (:mod:`.space`), runs it through the step runner (``compress``, untimed)
into ``OUT/trials/<n>``, and is scored cheap first, exact last:

1. validation accuracy of its deployment on a fixed sample of ``screen`` images — a trial whose
   loss there exceeds the budget by more than the sample's 95% margin is stopped (pruned);
2. the whole validation split: the loss is the trial's **constraint** (Optuna's constraint
   mechanism: ``loss − budget ≤ 0``), never an objective;
3. only then latency: an interleaved session of the reference and the trial on the chosen
   runtime (with the reference's second session for the noise floor) gives the speed-up and its
   CI, under a host-wide exclusive lock that every worker's training holds shared — nothing on
   this host trains while a trial is timed.

The objectives are gzip'd deployment bytes (minimised) and the speed-up (maximised). The shipped
recipes the space can express are enqueued first. At the end the noise-aware front of the
feasible trials (:mod:`.front`) — and only it — is measured on the test split in one compare,
copied to ``OUT/front/<trial>``, and written: ``front.json``, ``trials.csv``, ``search.md``,
``report.html``.

Example:
    >>> summary = search("runs/cnn", SearchConfig(trials=30),
    ...                  out="runs/cnn-search")  # doctest: +SKIP
    >>> summary["knee"]["recipe"]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import io
import json
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..checkpoint import Run, check_output_dir, load_run, write_json
from ..errors import InputError
from ..measurement.validation import val_accuracy
from .config import SearchConfig
from .front import Point, front, hypervolume, knee
from .space import params_of_recipe, recipe_of, step_label, suggest_recipe, yaml_steps

SPACE_VERSION = 1
DEFAULT_STUDY = "edgepress-search"
GRACE_ENV = "EDGEPRESS_SEARCH_GRACE"  # seconds without a heartbeat before a trial is retried
LOCK_PATH = Path(tempfile.gettempdir()) / f"edgepress-timing-{os.getuid()}.lock"


def mask_url(url: str) -> str:
    """A storage URL with its password masked.

    >>> mask_url("postgresql://bob:s3cret@db:5432/opt")
    'postgresql://bob:***@db:5432/opt'
    """
    return re.sub(r"(//[^:/@]+:)[^@]*@", r"\1***@", url)


@contextlib.contextmanager
def host_lock(exclusive: bool) -> Iterator[float]:
    """The host-wide lock between workers: training holds it shared, timing exclusive (so a
    trial is timed only when no worker on this host trains). Yields the seconds waited.

    A gate keeps the timer from starving: every worker passes through it (an exclusive lock
    held for an instant by trainers, for the whole wait and timing by the timer), so once a
    worker waits to time, no new training starts; it waits only for those already running.
    """
    gate = LOCK_PATH.with_name(LOCK_PATH.name + ".gate")
    for p in (LOCK_PATH, gate):
        p.touch(exist_ok=True)
    with open(gate, "r+") as g, open(LOCK_PATH, "r+") as f:
        t0 = time.perf_counter()
        fcntl.flock(g, fcntl.LOCK_EX)
        try:
            fcntl.flock(f, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        finally:
            if not exclusive:
                fcntl.flock(g, fcntl.LOCK_UN)
        try:
            yield time.perf_counter() - t0
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
            if exclusive:
                fcntl.flock(g, fcntl.LOCK_UN)


_SCHEMA_RACE = ("UniqueViolation", "already exists", "UNIQUE constraint failed")  # two creators


def open_storage(url: str) -> Any:
    """An Optuna RDB storage with heartbeats (a killed worker's trial is retried).

    Raises:
        InputError: the database cannot be reached (the URL named, its password masked).
    """
    import warnings

    import optuna
    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    warnings.filterwarnings("ignore", category=ExperimentalWarning)  # heartbeats: noise

    given = url
    if url.startswith("postgresql://"):  # SQLAlchemy's default driver is psycopg2: use psycopg 3
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    grace = int(os.environ.get(GRACE_ENV) or 30)
    try:
        for attempt in range(3):  # workers starting together race to create the schema
            try:
                return RDBStorage(url, heartbeat_interval=max(1, grace // 3), grace_period=grace,
                                  heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                                      max_retry=2), engine_kwargs={"pool_pre_ping": True})
            except Exception as e:  # sqlalchemy / driver errors of many kinds
                if attempt < 2 and any(m in repr(e) for m in _SCHEMA_RACE):
                    time.sleep(1.0 + attempt)
                    continue
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                first = mask_url(first.replace(url, given))
                raise InputError(f"cannot open the search storage {mask_url(given)}: "
                                 f"{first[:200]}") from None
        raise AssertionError("unreachable")
    finally:
        optuna.logging.set_verbosity(optuna.logging.WARNING)


class _Search:
    """One worker's view of the search: the parent, the reference figures, the study."""

    def __init__(self, parent: Run, config: SearchConfig, out: Path, data: str):
        self.parent, self.config, self.out, self.data = parent, config, out, data
        arch = parent.meta["architecture"]
        self.residual = _has_residual(parent)
        self.zoo = arch.get("zoo")
        from ..data import load_data

        self.ds = load_data(data)  # loaded once: every trial is scored on it
        self.ref_val = val_accuracy(parent.path, self.ds)
        self.ref_screen = val_accuracy(parent.path, self.ds, config.screen)
        self.fmt = "pte" if config.runtime == "executorch" else "onnx"
        self.ref_size = _gzip_bytes(parent.path, self.fmt)

    def objective(self, trial: Any) -> tuple[float, ...]:
        import optuna

        from ..recipe import compress, parse_recipe

        steps = suggest_recipe(trial, residual=self.residual, max_epochs=self.config.max_epochs,
                               train_subset=self.config.train_subset)
        trial.set_user_attr("recipe", recipe_of(steps))
        trial.set_user_attr("constraint", 1e9)  # infeasible until shown otherwise
        if not steps:
            return self._stop(trial, "no compression: the reference itself", 1e9)
        earlier = _same_recipe(trial, recipe_of(steps))
        if earlier is not None:  # the sampler drew a recipe already scored: reuse its figures
            return self._repeat(trial, earlier)
        d = self.out / "trials" / f"{trial.number:04d}"
        t0 = time.perf_counter()
        try:
            with host_lock(exclusive=False):
                compress(self.parent, parse_recipe(recipe_of(steps), source=f"<trial "
                         f"{trial.number}>"), out=d, data=self.data, progress=False,
                         timed=False)
        except InputError as e:  # the recipe does not apply to this model
            return self._stop(trial, f"not made: {e}", 1e9)
        trial.set_user_attr("build_seconds", round(time.perf_counter() - t0, 1))
        trial.set_user_attr("dir", str(d))
        size = _gzip_bytes(d)  # ONNX until the trial is feasible: lowering costs time
        trial.set_user_attr("size_gzip_bytes", size)
        screen = val_accuracy(d, self.ds, self.config.screen)
        n = min(self.config.screen, len(self.ds.y_val))
        margin = 196.0 * math.sqrt(max(screen * (1 - screen), 1.0 / n) / n)  # 95%, points
        screen_loss = 100.0 * (self.ref_screen - screen)
        trial.set_user_attr("screen_loss_pts", screen_loss)
        if screen_loss - margin > self.config.budget_pts:
            return self._stop(trial, f"validation screen: {screen_loss:.2f} pts lost on {n} "
                              f"images (±{margin:.2f}) > budget {self.config.budget_pts}",
                              screen_loss - self.config.budget_pts)
        loss = 100.0 * (self.ref_val - val_accuracy(d, self.ds))
        trial.set_user_attr("val_loss_pts", loss)
        trial.set_user_attr("constraint", loss - self.config.budget_pts)
        trial.set_constraint("val_loss_over_budget", loss - self.config.budget_pts)
        speed, ci, timing = 1.0, (1.0, 1.0), None
        if "latency" in self.config.objectives:
            if loss > self.config.budget_pts:  # infeasible: not worth timing
                trial.set_user_attr("stopped", f"{loss:.2f} pts lost on validation > budget")
                raise optuna.TrialPruned("over budget")
            speed, ci, timing = self._timed(d)
        if self.fmt != "onnx":  # the deployment the runtime runs (lowered by now if timed)
            size = _gzip_bytes(d, self.fmt)
            trial.set_user_attr("size_gzip_bytes", size)
        trial.set_user_attr("size_of", self.fmt)
        trial.set_user_attr("speedup", speed)
        trial.set_user_attr("speedup_ci95", list(ci))
        trial.set_user_attr("timing", timing)
        values = {"size": float(size), "latency": float(speed)}
        return tuple(values[o] for o in self.config.objectives)

    def _repeat(self, trial: Any, earlier: Any) -> tuple[float, ...]:
        """The figures of ``earlier``, a finished trial of the same recipe, without rebuilding
        or timing it again (a repeat is marked ``duplicate_of`` and kept off the front).
        """
        import optuna

        trial.set_user_attr("duplicate_of", earlier.number)
        for k, v in earlier.user_attrs.items():
            if k not in ("shipped_recipe", "duplicate_of", "recipe", "build_seconds", "dir"):
                trial.set_user_attr(k, v)
        over = earlier.user_attrs.get("constraint", 1e9)
        trial.set_constraint("val_loss_over_budget", over)
        if earlier.state.name != "COMPLETE":
            raise optuna.TrialPruned(f"the recipe of trial {earlier.number}: "
                                     f"{earlier.user_attrs.get('stopped', 'stopped')}")
        return tuple(earlier.values)

    @staticmethod
    def _stop(trial: Any, why: str, over: float) -> Any:
        """Prune the trial, saying why, with its constraint value (how far over budget)."""
        import optuna

        trial.set_user_attr("stopped", why)
        trial.set_constraint("val_loss_over_budget", over)
        raise optuna.TrialPruned(why)

    def _timed(self, d: Path) -> tuple[float, tuple[float, float], dict]:
        from ..measurement import compare

        with host_lock(exclusive=True) as waited:
            rows = compare([self.parent.path, d], data=self.data, runtime=self.config.runtime,
                           seconds=self.config.latency_seconds, split="val")
        r = rows[1]
        timing = {"runtime": self.config.runtime, "lock": str(LOCK_PATH),
                  "waited_s": round(waited, 2),
                  "how": "interleaved with the reference and its second session, under the "
                         "host's exclusive timing lock (no worker here trained meanwhile)",
                  "noise_floor": r["noise_floor"], "latency_change": r["latency_change"],
                  "isa": r["machine"].get("isa")}
        return float(r["speedup"]), (float(r["speedup_ci95"][0]),
                                     float(r["speedup_ci95"][1])), timing


def search(run: str | os.PathLike, config: SearchConfig, *, out: str | os.PathLike,
           progress: bool = True) -> dict[str, Any]:
    """Search, then write the front (see the module); return the ``front.json`` summary.

    Raises:
        InputError: a run without PyTorch weights, ``out`` equal to the run, an unreachable
            storage, a study of that name with a different search space.
    """
    from optuna.samplers import TPESampler
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    final = check_output_dir(out, (run,))
    parent = load_run(run)
    if not parent.has_weights:
        raise InputError(f"run {parent.name!r} has no PyTorch weights: search compresses a "
                         "PyTorch model")
    from ..data import load_data

    ds = load_data(config.data or parent.meta["data"])
    if not ds.labelled:
        raise InputError(f"edgepress search needs labels ({ds.name} has none): its budget is "
                         "points of validation accuracy; on photographs, compress recipes "
                         "with fine-tunes that distil from the parent and compare them")
    data = ds.name
    url = config.storage or f"sqlite:///{(final / 'search.db').resolve()}"
    if config.storage:  # reachable before anything is written
        storage = open_storage(url)
    final.mkdir(parents=True, exist_ok=True)
    if not config.storage:
        storage = open_storage(url)
    name = config.study_name or DEFAULT_STUDY
    signature = _signature(parent, config, data)
    directions = ["minimize" if o == "size" else "maximize" for o in config.objectives]
    sampler = TPESampler(seed=config.seed, multivariate=True, n_startup_trials=6)
    study = _open_study(storage, name, directions, sampler, signature, url)
    s = _Search(parent, config, final, data)
    _enqueue_shipped(study, s)
    done = (TrialState.COMPLETE, TrialState.PRUNED)
    if len(study.get_trials(states=done)) < config.trials:
        callbacks: list[Any] = [MaxTrialsCallback(config.trials, states=done)]
        if progress:
            callbacks.append(_say_trial)
        study.optimize(s.objective, timeout=config.timeout, gc_after_trial=True,
                       callbacks=callbacks, catch=(RuntimeError, ValueError))
    return finish(study, s, progress=progress)


def _same_recipe(trial: Any, recipe: str) -> Any | None:
    """The first finished trial (complete or stopped, itself no repeat) drawing ``recipe``."""
    from optuna.trial import TrialState

    for t in trial.study.get_trials(deepcopy=False,
                                    states=(TrialState.COMPLETE, TrialState.PRUNED)):
        if t.number != trial.number and t.user_attrs.get("recipe") == recipe \
                and "duplicate_of" not in t.user_attrs:
            return t
    return None


def _say_trial(study: Any, trial: Any) -> None:
    """One line on stderr per finished trial: what it drew and what it scored."""
    import sys

    a = trial.user_attrs
    steps = ", ".join(step_label(st) for st in yaml_steps(a.get("recipe"))) or "nothing"
    if trial.state.name == "COMPLETE":
        got = (f"{a.get('size_gzip_bytes', 0):,} B gzip, speed-up {a.get('speedup', 1.0):.2f}×, "
               f"validation Δ {-a.get('val_loss_pts', 0.0):+.2f} pts"
               + ("" if a.get("constraint", 1e9) <= 0 else " (over budget)"))
    else:
        got = f"{trial.state.name.lower()}: {a.get('stopped', '')}"
    secs = a.get("build_seconds")
    if "duplicate_of" in a:
        got = f"a repeat of trial {a['duplicate_of']}, not rebuilt: {got}"
    print(f"  trial {trial.number} [{steps}]" + (f" built in {secs:.0f} s" if secs else "")
          + f" — {got}", file=sys.stderr, flush=True)


def _open_study(storage: Any, name: str, directions: list[str], sampler: Any,
                signature: dict, url: str) -> Any:
    import optuna

    try:
        study = optuna.create_study(storage=storage, study_name=name,
                                    directions=directions,  # type: ignore[arg-type]
                                    sampler=sampler, load_if_exists=True)
    except ValueError as e:  # directions differ from the stored study's
        raise InputError(f"study {name!r} in {mask_url(url)} exists with another search "
                         f"({e}); give --study-name NEW (or another --storage) to start a new "
                         "one") from None
    stored = study.user_attrs.get("signature")
    if stored is None:
        study.set_user_attr("signature", signature)
    elif stored != signature:
        diff = sorted(k for k in set(stored) | set(signature) if stored.get(k) != signature.get(k))
        raise InputError(f"study {name!r} in {mask_url(url)} exists with a different search "
                         f"space ({', '.join(diff)} differ); give --study-name NEW (or another "
                         "--storage) to start a new one")
    return study


def _signature(parent: Run, config: SearchConfig, data: str) -> dict:
    """What makes two searches the same one: the parent's weights, data, space and scoring."""
    h = hashlib.sha256((parent.path / "model.safetensors").read_bytes()).hexdigest()[:16]
    return {"space_version": SPACE_VERSION, "parent_weights": h, "data": data,
            "budget_pts": config.budget_pts, "objectives": list(config.objectives),
            "runtime": config.runtime, "max_epochs": config.max_epochs,
            "screen": config.screen, "train_subset": config.train_subset}


def _enqueue_shipped(study: Any, s: _Search) -> None:
    """The shipped recipes the space can express go first (once per study), so the front can
    only match or beat the best of them.
    """
    import yaml

    from ..recipe import shipped_recipes

    if study.user_attrs.get("enqueued"):
        return
    study.set_user_attr("enqueued", True)
    for path in shipped_recipes():
        params = params_of_recipe(yaml.safe_load(path.read_text()), residual=s.residual)
        if params is not None:
            if "finetune_epochs" in params:
                params["finetune_epochs"] = min(params["finetune_epochs"], s.config.max_epochs)
            study.enqueue_trial(params, user_attrs={"shipped_recipe": path.stem},
                                skip_if_exists=True)


# --- the front ---------------------------------------------------------------------------------

def finish(study: Any, s: _Search, *, progress: bool = True) -> dict[str, Any]:
    """The noise-aware front of the feasible trials, measured on test, and the outputs."""
    from optuna.trial import TrialState

    trials = [t for t in study.get_trials(deepcopy=False)
              if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)]
    feasible = [t for t in trials if t.state == TrialState.COMPLETE
                and t.user_attrs.get("constraint", 1e9) <= 0
                and "duplicate_of" not in t.user_attrs]  # a repeat is its first trial's point
    lat = "latency" in s.config.objectives
    points = {t.number: Point(f"{t.number:04d}", int(t.user_attrs["size_gzip_bytes"]),
                              float(t.user_attrs.get("speedup", 1.0)),
                              tuple(t.user_attrs.get("speedup_ci95", (1.0, 1.0))))
              for t in feasible}
    best = front(list(points.values()), latency=lat)
    k = knee(best, reference_size=s.ref_size)
    records = _measure_front(s, best, {p.name: t for t in feasible
                                       for p in [points[t.number]]})
    hv = _hypervolume_curve(trials, points, s.ref_size)
    summary = {"run": str(s.parent.path), "data": s.data, "config": s.config.to_dict(),
               "study": study.study_name, "trials": len(trials), "feasible": len(feasible),
               "reference_val_accuracy": s.ref_val, "reference_size_gzip_bytes": s.ref_size,
               "front": records, "knee": next((r for r in records if k and
                                               r["trial"] == int(k.name)), None),
               "hypervolume": hv, "shipped": _shipped_rows(trials)}
    write_json(s.out / "front.json", summary)
    _write_csv(s.out / "trials.csv", trials)
    _write_md(s.out / "search.md", summary)
    _write_report(s, summary, trials)
    return summary


def _measure_front(s: _Search, best: list[Point], by_name: dict[str, Any]) -> list[dict]:
    """Copy each front trial to ``OUT/front/<trial>`` and measure them all, with the reference,
    in one compare on the test split (the only time test is seen).
    """
    from ..measurement import compare

    if not best:
        return []
    dirs = []
    for p in best:
        dst = s.out / "front" / p.name
        if not dst.exists():
            shutil.copytree(by_name[p.name].user_attrs["dir"], dst)
        dirs.append(dst)
    with host_lock(exclusive=True):
        rows = compare([s.parent.path, *dirs], data=s.data, runtime=s.config.runtime,
                       variants=["reference", *[p.name for p in best]],
                       seconds=s.config.front_seconds)
    out = []
    for p, r in zip(best, rows[1:-1], strict=True):
        t = by_name[p.name]
        out.append({**r, "trial": t.number, "recipe": t.user_attrs["recipe"],
                    "val_loss_pts": t.user_attrs.get("val_loss_pts"),
                    "search_speedup": p.speedup, "search_speedup_ci95": list(p.ci),
                    "shipped_recipe": t.user_attrs.get("shipped_recipe"),
                    "dir": str(s.out / "front" / p.name)})
    return out


def _hypervolume_curve(trials: list[Any], points: dict[int, Point], ref: int) -> list[dict]:
    seen: list[Point] = []
    curve = []
    for t in sorted(trials, key=lambda t: t.number):
        if t.number in points:
            seen.append(points[t.number])
        curve.append({"trial": t.number, "hypervolume": hypervolume(front(seen),
                                                                    reference_size=ref)})
    return curve


def _shipped_rows(trials: list[Any]) -> list[dict]:
    return [{"recipe": t.user_attrs["shipped_recipe"], "trial": t.number,
             "state": t.state.name, "size_gzip_bytes": t.user_attrs.get("size_gzip_bytes"),
             "speedup": t.user_attrs.get("speedup"), "val_loss_pts":
                 t.user_attrs.get("val_loss_pts"), "stopped": t.user_attrs.get("stopped")}
            for t in trials if t.user_attrs.get("shipped_recipe")]


CSV_FIELDS = ("trial", "state", "shipped_recipe", "duplicate_of", "size_gzip_bytes", "speedup",
              "speedup_lo", "speedup_hi", "screen_loss_pts", "val_loss_pts", "constraint",
              "build_seconds", "stopped", "recipe")


def _write_csv(path: Path, trials: list[Any]) -> None:
    from ..checkpoint import atomic_path

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
    w.writeheader()
    for t in sorted(trials, key=lambda t: t.number):
        a = t.user_attrs
        ci = a.get("speedup_ci95") or [None, None]
        w.writerow({"trial": t.number, "state": t.state.name,
                    "shipped_recipe": a.get("shipped_recipe"),
                    "duplicate_of": a.get("duplicate_of"),
                    "size_gzip_bytes": a.get("size_gzip_bytes"), "speedup": a.get("speedup"),
                    "speedup_lo": ci[0], "speedup_hi": ci[1],
                    "screen_loss_pts": a.get("screen_loss_pts"),
                    "val_loss_pts": a.get("val_loss_pts"), "constraint": a.get("constraint"),
                    "build_seconds": a.get("build_seconds"), "stopped": a.get("stopped"),
                    "recipe": json.dumps(a.get("recipe"))})
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())


def _write_md(path: Path, summary: dict) -> None:
    from ..checkpoint import atomic_path

    c = summary["config"]
    lines = [f"# edgepress search: {summary['run']} on {summary['data']}", "",
             f"Budget {c['budget_pts']} pts of validation accuracy (reference "
             f"{100 * summary['reference_val_accuracy']:.2f}%), objectives "
             f"{', '.join(c['objectives'])}, runtime {c['runtime']}; {summary['trials']} trials, "
             f"{summary['feasible']} feasible; study {summary['study']}.", "",
             "| trial | gzip bytes | size × | speed-up [95% CI] (test compare) | test acc | "
             "Δ pts [95% CI] | val loss pts | shipped as |", "|---|---|---|---|---|---|---|---|"]
    for r in summary["front"]:
        lo, hi = r["speedup_ci95"]
        ci = r.get("accuracy_delta_ci95_pts") or [0, 0]
        lines.append(f"| {r['trial']} | {r['size_gzip_bytes']:,} | {r['size_ratio']:.3f} | "
                     f"{r['speedup']:.2f}× [{lo:.2f}, {hi:.2f}] | {100 * r['accuracy']:.2f}% | "
                     f"{r['accuracy_delta_pts']:+.2f} [{ci[0]:+.2f}, {ci[1]:+.2f}] | "
                     f"{r['val_loss_pts']:.2f} | {r.get('shipped_recipe') or ''} |")
    k = summary["knee"]
    if k:
        lines += ["", f"Suggested knee: trial {k['trial']} — rebuild it with `edgepress compress "
                  f"{summary['run']} --recipe RECIPE.yaml` on:", "", "```yaml",
                  k["recipe"].rstrip(), "```"]
    else:
        lines += ["", "No trial met the budget: the front is empty."]
    lines += ["", "Shipped recipes as trials: " + ("; ".join(
        f"{r['recipe']} (trial {r['trial']}, {r['state'].lower()}"
        + (f", {r['stopped']}" if r.get("stopped") else "") + ")"
        for r in summary["shipped"]) or "none the space can express")]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def _write_report(s: _Search, summary: dict, trials: list[Any]) -> None:
    """``report.html``: the front over every trial (size and speed-up against validation
    loss; dominated trials faint), the hypervolume over trials, the knee and its recipe.
    """
    import base64
    import html

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..checkpoint import atomic_path

    front_ids = {r["trial"] for r in summary["front"]}
    done = [t for t in trials if "val_loss_pts" in t.user_attrs]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), dpi=100)
    for ax, key, label in ((axes[0], "size_gzip_bytes", "gzip bytes"),
                           (axes[1], "speedup", "speed-up (×)")):
        for t in done:
            if key not in t.user_attrs:
                continue
            on = t.number in front_ids
            ax.scatter(t.user_attrs["val_loss_pts"], t.user_attrs[key],
                       alpha=1.0 if on else 0.25, color="C3" if on else "C0", s=30 if on else 15)
        ax.axvline(s.config.budget_pts, color="grey", ls="--", lw=0.8)
        ax.set_xlabel("validation accuracy loss (pts)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    hv = summary["hypervolume"]
    axes[2].plot([h["trial"] for h in hv], [h["hypervolume"] for h in hv])
    axes[2].set_xlabel("trial")
    axes[2].set_ylabel("hypervolume")
    axes[2].grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    img = base64.b64encode(buf.getvalue()).decode()
    md = (s.out / "search.md").read_text()
    e = html.escape
    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' "
            "content='width=device-width, initial-scale=1'><title>edgepress search</title>"
            "<style>body{font-family:system-ui,sans-serif;max-width:1200px;margin:1rem auto;"
            "padding:0 1rem}img{max-width:100%;height:auto}pre{white-space:pre-wrap}</style>"
            f"</head><body><h1>edgepress search</h1><img alt='front' "
            f"src='data:image/png;base64,{img}'><p>Front points are red; dominated or "
            "infeasible trials faint; the dashed line is the budget. Right: the hypervolume "
            "the front dominates over the uncompressed model, trial by trial.</p>"
            f"<pre>{e(md)}</pre></body></html>")
    with atomic_path(s.out / "report.html") as tmp:
        tmp.write_text(page)


# --- helpers -----------------------------------------------------------------------------------

def _gzip_bytes(run_dir: Path, fmt: str = "onnx") -> int:
    """Gzip'd bytes of the run's deployment in ``fmt`` (``onnx``, or ``pte`` for ExecuTorch)."""
    from ..export.deploy import ensure_deployment
    from ..files import file_sizes

    return file_sizes(ensure_deployment(load_run(run_dir), fmt))[1]


def _has_residual(parent: Run) -> bool:
    """Whether the model has residual blocks that drop-blocks could bypass."""
    try:
        from ..structure.drop import block_shapes

        shapes = block_shapes(parent.build_model(), tuple(parent.input_shape))
    except (ImportError, InputError):
        return False
    return any(row["droppable"] for row in shapes.values())
