"""``study``: the seed's comparison table (original / pruned / quantized / distilled / structured
/ combined), measured honestly — every row through one interleaved ``compare`` session per
runtime — and written as Markdown, CSV, JSON, PNG plots and an HTML report.

Layout of ``OUT``::

    OUT/runs/original/        the baseline run (trained, or a copy of --baseline)
    OUT/runs/<row>/           each row, made by ``compress`` (its steps in OUT/runs/<row>/steps)
    OUT/runs/candidates/<r>/  each shipped recipe, the ``combined`` row's candidates
    OUT/study.md|csv|json     the table (one record per variant and runtime)
    OUT/report.html, *.png    the report and its plots
    OUT/study-meta.json       configuration, candidates, per-step wall times

Resume: every step's run directory is reused when its inputs (parent fingerprint, step config,
data) are unchanged, so an interrupted study redoes only what is missing.

Example:
    >>> records = study(StudyConfig(model="mlp", data="digits", quick=True),
    ...                 out="study-mlp")  # doctest: +SKIP
    >>> [r["variant"] for r in records][:2]  # doctest: +SKIP
    ['original', 'pruned']
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from ..checkpoint import MODEL_JSON, check_output_dir, load_run, write_json
from ..data import default_data, load_data
from ..errors import InputError
from ..measurement.validation import val_accuracy
from ..produce import has_record, step_record
from ..recipe import Recipe, compress, load_recipe, shipped_recipes
from .config import Budget, StudyConfig
from .rows import DEFINITIONS, definition, row_steps, with_budget

ROWS = ("original", "pruned", "quantized", "distilled", "structured", "combined")
WITHIN_PTS = 1.0  # the combined row: validation accuracy within this many points of original


@dataclasses.dataclass
class _Study:
    config: StudyConfig
    out: Path
    data: str
    progress: bool
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)  # row -> why not made
    labelled: bool = True  # False (photos): the original is imported, fine-tunes distil

    @property
    def budget(self) -> Budget:
        """The config's budget; on data without labels every fine-tune distils from its
        parent (the only loss there is).
        """
        b = self.config.budget
        return b if self.labelled else dataclasses.replace(b, finetune_teacher="parent")

    @property
    def runs(self) -> Path:
        return self.out / "runs"

    def say(self, text: str) -> None:
        if self.progress:
            from rich.console import Console

            Console(stderr=True).print(text)


def study(config: StudyConfig, *, out: str | os.PathLike, progress: bool = True) -> list[dict]:
    """Build every row, compare them on each runtime, write the table and the report.

    Args:
        config: the model, data, budget (quick or full), seed, runtimes and recipes.
        out: the study directory (created; an existing one is resumed).
        progress: a progress line per step and the steps' own progress bars.

    Returns:
        The ``study.json`` records: one per (variant, runtime), ``original`` first.

    Raises:
        InputError: ``out`` is a file, unknown data or model, a bad recipe, an unknown runtime.
    """
    final = check_output_dir(out)
    t0 = time.perf_counter()
    ds = load_data(_sampled(config.data or default_data(), config.budget))
    data = ds.name
    runtimes = _runtimes(config)
    st = _Study(config, final, data, progress, labelled=ds.labelled)
    recipes = _recipes(config, st.budget)
    runs: dict[str, Path] = {"original": _original(st)}
    zoo = load_run(runs["original"]).meta["architecture"]["zoo"]
    for i, row in enumerate(ROWS[1:-1], start=2):
        st.say(f"[bold cyan]study {i}/{len(ROWS)}[/] {row}")
        try:
            runs[row] = _compress(st, row, runs["original"],
                                  Recipe(f"<study row {row}>", "", row_steps(row, zoo,
                                                                             st.budget)),
                                  st.runs / row)
        except InputError as e:  # the technique does not apply to this model: say why
            st.skipped[row] = str(e)
            st.say(f"[yellow]{row}: not made[/] — {e}")
    searched = None
    if config.searching and not ds.labelled:
        st.say("[yellow]combined: chosen among the recipes[/] — edgepress search needs labels "
               "for its budget")
    if config.searching and ds.labelled:
        st.say(f"[bold cyan]study {len(ROWS)}/{len(ROWS)}[/] combined: the knee of a "
               f"{config.searching:.0f} s search (the shipped recipes first)")
        searched = _searched(st, runs["original"], runtimes[0])
        candidates: list[dict] = []
        if searched["knee"] is not None:
            runs["combined"] = Path(searched["knee"]["dir"])
        else:
            st.skipped["combined"] = (f"the {config.searching:.0f} s search found "
                                      f"no trial within {WITHIN_PTS} pt of validation accuracy")
    else:
        st.say(f"[bold cyan]study {len(ROWS)}/{len(ROWS)}[/] combined: {len(recipes)} recipes")
        runs["combined"], candidates = _combined(st, runs, recipes)
    records = _measure(st, runs, runtimes)
    meta = {"config": config.to_dict(), "data": data, "runtimes": runtimes,
            "runs": {k: str(v) for k, v in runs.items()}, "candidates": candidates,
            "search": _search_meta(searched),
            "not_made": dict(st.skipped), "labelled": ds.labelled,
            "seconds": {**st.seconds, "total": round(time.perf_counter() - t0, 1)}}
    _report(st, records, meta, zoo)
    return records


def _sampled(spec: str, b: Budget) -> str:
    """``spec`` with the budget's test / validation samples (``digits[test=2000,val=1000]``).

    >>> _sampled("digits", Budget(test_subset=100, val_subset=50))
    'digits[test=100,val=50]'
    """
    opts = [f"{k}={n}" for k, n in (("test", b.test_subset), ("val", b.val_subset)) if n]
    return f"{spec}[{','.join(opts)}]" if opts else spec


def _runtimes(config: StudyConfig) -> list[str]:
    from ..runtimes.base import get_runtime

    if config.runtimes is not None:
        for name in config.runtimes:
            get_runtime(name)  # raises InputError: unknown or not installed
        return list(config.runtimes)
    found = ["onnxruntime"]
    try:
        get_runtime("executorch")
        found.append("executorch")
    except InputError as e:
        from ..errors import note_once

        note_once(f"the study measures on ONNX Runtime only: {e}")
    return found


def _recipes(config: StudyConfig, budget: Budget) -> list[Recipe]:
    paths = [Path(p) for p in config.recipes] if config.recipes else shipped_recipes()
    if not paths:
        raise InputError("no recipes to choose the combined row from")
    return [with_budget(load_recipe(p), budget) for p in paths]


def _original(st: _Study) -> Path:
    """The baseline: trained (reused when its inputs are unchanged) or copied from --baseline."""
    from ..api import train

    c, b = st.config, st.budget
    d = st.runs / "original"
    if c.baseline:
        src = load_run(c.baseline)
        if not src.has_weights:
            raise InputError(f"--baseline {c.baseline!r} has no PyTorch weights")
        key = {"baseline": str(src.path.resolve()),
               "mtime": (src.path / MODEL_JSON).stat().st_mtime}
        if _done(d, key):
            return d
        st.say(f"[bold cyan]study 1/{len(ROWS)}[/] original: copying {src.path}")
        tmp = d.with_name(".original.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src.path, tmp)
        shutil.rmtree(d, ignore_errors=True)
        os.replace(tmp, d)
    elif not st.labelled:  # nothing to train on: the model as it is (pretrained weights)
        from ..api import import_model

        key = {"model": c.model, "data": st.data, "seed": c.seed, "imported": True}
        if _done(d, key):
            st.say(f"[bold cyan]study 1/{len(ROWS)}[/] original: inputs unchanged, reused")
            return d
        st.say(f"[bold cyan]study 1/{len(ROWS)}[/] original: {c.model} as it is ({st.data} "
               "has no labels to train on)")
        t0 = time.perf_counter()
        import_model(c.model, out=d, data=st.data, seed=c.seed, timed=False)
        st.seconds["original"] = round(time.perf_counter() - t0, 1)
    else:
        key = {"model": c.model, "data": st.data, "seed": c.seed, "epochs": b.epochs,
               "train_subset": b.train_subset}
        if _done(d, key):
            st.say(f"[bold cyan]study 1/{len(ROWS)}[/] original: inputs unchanged, reused")
            return d
        st.say(f"[bold cyan]study 1/{len(ROWS)}[/] original: training {c.model} on {st.data}")
        t0 = time.perf_counter()
        train(c.model, out=d, data=st.data, epochs=b.epochs, seed=c.seed,
              train_subset=b.train_subset, progress=st.progress, timed=False)
        st.seconds["original"] = round(time.perf_counter() - t0, 1)
    write_json(d / "study-step.json", {"key": key})
    return d


def _done(d: Path, key: dict) -> bool:
    try:
        return json.loads((d / "study-step.json").read_text())["key"] == json.loads(
            json.dumps(key)) and has_record(d)
    except (OSError, json.JSONDecodeError, KeyError):
        return False


def _compress(st: _Study, name: str, parent: Path, recipe: Recipe, out: Path) -> Path:
    t0 = time.perf_counter()
    compress(parent, recipe, out=out, data=st.data, progress=st.progress, timed=False)
    st.seconds[name] = round(time.perf_counter() - t0, 1)
    return out


def _combined(st: _Study, runs: dict[str, Path], recipes: list[Recipe]
              ) -> tuple[Path, list[dict]]:
    """Run every recipe (starting from a row that already made its first step), then keep the
    smallest gzip'd deployment whose validation accuracy is within WITHIN_PTS of the original.
    """
    zoo = load_run(runs["original"]).meta["architecture"]["zoo"]
    ref_val = val_accuracy(runs["original"], st.data)
    rows: list[dict[str, Any]] = []
    # a quick study tries only the recipes that extend a row — unless none does (Lite0's rows
    # are its own: then every recipe is tried, or the combined row would have no candidate)
    starts = [(recipe, *_shortcut(st, runs, recipe, zoo)) for recipe in recipes]
    extending = any(via is not None for *_, via in starts)
    for recipe, parent, rest, via in starts:
        name = Path(recipe.source).stem
        failed = _failed_row(st, recipe, zoo)
        if failed is not None:  # it starts with a row that does not apply: the same reason
            st.say(f"[yellow]candidate {name}: not made[/] — {failed}")
            rows.append({"recipe": name, "run": None, "via": None, "not_made": failed,
                         "eligible": False})
            continue
        if (via is None and st.budget.row_recipes_only and extending and recipe.steps
                and st.config.recipes is None):  # recipes the user named are always tried
            why = "quick study: only the shipped recipes that extend a row are tried"
            st.say(f"[yellow]candidate {name}: not tried[/] — {why}")
            rows.append({"recipe": name, "run": None, "via": None, "not_made": why,
                         "eligible": False})
            continue
        out = st.runs / "candidates" / name
        try:
            if rest.steps:
                _compress(st, f"candidate {name}", parent, rest, out)
            else:  # the whole recipe is a row already
                out = parent
        except InputError as e:  # does not apply to this model
            st.say(f"[yellow]candidate {name}: not made[/] — {e}")
            rows.append({"recipe": name, "run": None, "via": via, "not_made": str(e),
                         "eligible": False})
            continue
        record = step_record(out)
        val = val_accuracy(out, st.data)
        rows.append({"recipe": name, "run": str(out), "via": via,
                     "val_accuracy": val, "val_delta_pts": 100 * (val - ref_val),
                     "size_gzip_bytes": record["size_gzip_bytes"],
                     "eligible": 100 * (ref_val - val) <= WITHIN_PTS})
    made = [r for r in rows if r["run"] is not None]
    if not made:
        raise InputError("no recipe could be applied to this model for the combined row: "
                         + "; ".join(f"{r['recipe']}: {r['not_made']}" for r in rows))
    eligible = [r for r in made if r["eligible"]]
    pick = (min(eligible, key=lambda r: r["size_gzip_bytes"]) if eligible
            else max(made, key=lambda r: r["val_accuracy"]))
    for r in rows:
        r["chosen"] = r is pick
    return Path(pick["run"]), rows


def _searched(st: _Study, original: Path, runtime: str) -> dict[str, Any]:
    """Search for the combined row (``OUT/search``) within the budget's seconds; return its
    ``front.json`` summary. A finished search with unchanged inputs is reused; one whose
    inputs changed (a retrained original, other data) is started again.
    """
    from ..files import file_sha256
    from ..search import SearchConfig, search

    b, d = st.budget, st.out / "search"
    key = {"original": file_sha256(original / "model.safetensors"), "data": st.data,
           "seconds": st.config.searching, "seed": st.config.seed, "runtime": runtime}
    try:
        if json.loads((d / "study-step.json").read_text())["key"] == key:
            st.say("  search: inputs unchanged, reused")
            return json.loads((d / "front.json").read_text())
    except (OSError, json.JSONDecodeError, KeyError):
        pass
    shutil.rmtree(d, ignore_errors=True)
    t0 = time.perf_counter()
    config = SearchConfig(budget_pts=WITHIN_PTS, trials=10_000, timeout=st.config.searching,
                          runtime=runtime, seed=st.config.seed, data=st.data,
                          max_epochs=b.finetune_epochs or 2,
                          train_subset=b.finetune_subset or b.train_subset,
                          latency_seconds=b.latency_seconds or 1.0,
                          front_seconds=_latency_seconds(b))
    summary = search(original, config, out=d, progress=st.progress)
    st.seconds["search"] = round(time.perf_counter() - t0, 1)
    write_json(d / "study-step.json", {"key": key})
    return summary


def _search_meta(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the study keeps of its search: counts, the knee and its recipe."""
    if summary is None:
        return None
    k = summary["knee"]
    return {"dir": "search", "trials": summary["trials"], "feasible": summary["feasible"],
            "front": len(summary["front"]), "seconds": summary["config"]["timeout"],
            "knee": None if k is None else {"trial": k["trial"], "recipe": k["recipe"],
                                            "val_loss_pts": k["val_loss_pts"],
                                            "shipped_recipe": k.get("shipped_recipe")}}


def _failed_row(st: _Study, recipe: Recipe, zoo: str) -> str | None:
    """Why the row that ``recipe`` starts with was not made, if it was not."""
    if not recipe.steps:
        return None
    first = recipe.steps[0].to_dict()
    for row, why in st.skipped.items():
        try:
            steps = row_steps(row, zoo, st.budget)
        except InputError:
            continue
        if len(steps) == 1 and steps[0].to_dict() == first:
            return f"its first step is the {row} row, which was not made: {why}"
    return None


def _shortcut(st: _Study, runs: dict[str, Path], recipe: Recipe, zoo: str
              ) -> tuple[Path, Recipe, str | None]:
    """Start ``recipe`` from a row whose single step equals the recipe's first step."""
    if recipe.steps:
        first = recipe.steps[0].to_dict()
        for row in ("pruned", "quantized", "distilled", "structured"):
            if row not in runs:
                continue
            steps = row_steps(row, zoo, st.budget)
            if len(steps) == 1 and steps[0].to_dict() == first:
                rest = dataclasses.replace(recipe, steps=recipe.steps[1:])
                return runs[row], rest, row
    return runs["original"], recipe, None


def _measure(st: _Study, runs: dict[str, Path], runtimes: list[str]) -> list[dict]:
    from ..measurement import compare
    from ..measurement.latency import fallback_warning

    records: list[dict] = []
    for rt in runtimes:
        made = [r for r in ROWS if r in runs]
        st.say(f"[bold cyan]measuring[/] {len(made)} variants on {rt}, latency interleaved")
        t0 = time.perf_counter()
        rows = compare([runs[r] for r in made], data=st.data, runtime=rt, variants=made,
                       progress=st.progress, seconds=_latency_seconds(st.budget))
        st.seconds[f"compare {rt}"] = round(time.perf_counter() - t0, 1)
        warn = fallback_warning(rows)
        if warn:
            print(f"edgepress: {warn} ({rt})", file=sys.stderr)
        if rt == runtimes[0]:
            _write_row_records(runs, made, rows)
        records += rows
    return records


def _write_row_records(runs: dict[str, Path], made: list[str], rows: list[dict]) -> None:
    """Each row's run gets its ``metrics.json``: its record from the study's interleaved
    session on the first runtime (the one time it was timed), beside its untimed figures.
    """
    from ..checkpoint import METRICS
    from ..measurement.comparison import measured_rows
    from ..measurement.record import save_record

    written: set[Path] = set()
    for row, rec in zip(made, measured_rows(rows), strict=True):
        d = runs[row].resolve()
        if d in written:  # combined can be a row's own run: that row's record stays
            continue
        written.add(d)
        save_record(d / METRICS, {**rec, "timed_in": "study compare (interleaved)"})


def _latency_seconds(b: Budget) -> float | None:
    """The budget's timed seconds per model, unless ``$EDGEPRESS_LATENCY_SECONDS`` says."""
    from ..measurement.latency import SECONDS_ENV

    return None if os.environ.get(SECONDS_ENV) else b.latency_seconds


def _report(st: _Study, records: list[dict], meta: dict[str, Any], zoo: str) -> None:
    from ..report import write_comparison

    defs = {r: definition(r, zoo) if r not in DEFINITIONS else DEFINITIONS[r] for r in ROWS}
    for row, why in meta["not_made"].items():
        defs[row] += f" — NOT MADE for this model: {why}"
    if not st.labelled:
        defs["original"] = (f"the pretrained {st.config.model} as it is (the data has no "
                            "labels to train on; fp32 ONNX)")
        for row in ("pruned", "structured"):
            defs[row] += (" by distillation from the original (no labels: the loss is its "
                          "soft targets, T = 4)")
        defs["combined"] = defs["combined"].replace(
            "validation accuracy", "validation top-1 agreement with the original")
    found = meta["search"]
    if found is not None:
        from ..search.space import step_label, yaml_steps

        defs["combined"] = SEARCHED.format(seconds=found["seconds"], pts=WITHIN_PTS)
        k = found["knee"]
        if k is not None:
            shipped = f", the shipped recipe {k['shipped_recipe']}" if k["shipped_recipe"] else ""
            defs["combined"] += (f" — here trial {k['trial']} of {found['trials']}{shipped} "
                                 f"(validation Δ {-k['val_loss_pts']:+.2f} pts): "
                                 + "; ".join(step_label(s) for s in yaml_steps(k["recipe"])))
    else:
        chosen = next(c for c in meta["candidates"] if c["chosen"])
        fallback = ("" if chosen["eligible"]
                    else "; no recipe stayed within 1 pt: the most accurate")
        defs["combined"] += (f" — here {chosen['recipe']} (validation Δ "
                             f"{chosen['val_delta_pts']:+.2f} pts{fallback})")
    b = st.budget
    combined = (f"the combined row from a {st.config.searching:.0f} s search"
                if st.config.searching else
                "the combined row chosen among the recipes that extend a row")
    caveat = (f"This is a quick study (make demo): {b.train_subset:,} training images, "
              f"{b.epochs} baseline epochs, {b.finetune_epochs} fine-tune epoch(s), "
              f"{b.test_subset:,} test images, {b.latency_seconds} s of timing per model, and "
              f"{combined}. It checks the whole pipeline; its figures are not the study's — run "
              "edgepress study without --quick for those." if st.config.quick else None)
    notes = [] if st.labelled else [
        f"{st.data} has no labels: every accuracy column is the top-1 agreement with the "
        "original on the evaluation photographs (Wilson 95% CI), beside top-5 agreement, mean "
        "KL divergence and logit SQNR; p-values are exact McNemar tests on the paired "
        "agreements."]
    notes += [f"Study of {st.config.model} on {st.data}; "
             f"wall time {meta['seconds']['total']:.0f} s (steps reused from an earlier run "
             f"excluded).",
             _combined_note(meta)]
    notes.append(_budget_note(st.budget))
    notes += _distill_note(st.runs / "distilled" / "distill.json")
    write_comparison(records, st.out, stem="study",
                     title=f"edgepress study: {st.config.model} on {st.data}",
                     definitions=defs, notes=notes, caveat=caveat)
    write_json(st.out / "study-meta.json", meta)


SEARCHED = ("the knee of edgepress search's measured front (gzip'd bytes and speed-up, with "
            "validation accuracy within {pts} pt of the original's as a hard constraint) after "
            "a {seconds:.0f} s search whose first trials are the shipped recipes")


def _combined_note(meta: dict[str, Any]) -> str:
    """Where the combined row came from: the search's counts, or the candidate recipes."""
    found = meta["search"]
    if found is not None:
        return (f"Combined: {found['trials']} search trials, {found['feasible']} within budget, "
                f"a front of {found['front']} (search/search.md, search/report.html; "
                "edgepress compress ORIGINAL --recipe on the knee's recipe rebuilds it).")
    what = "val" if meta.get("labelled", True) else "val agreement"
    return "Candidates for combined: " + "; ".join(
        f"{c['recipe']}: {what} {100 * c['val_accuracy']:.2f}% "
        f"({c['val_delta_pts']:+.2f} pts), {c['size_gzip_bytes']:,} B gzip"
        if c["run"] is not None else f"{c['recipe']}: not made ({c['not_made']})"
        for c in meta["candidates"])


def _budget_note(b: Budget) -> str:
    """The training budget every step ran under, in one sentence.

    Example:
        >>> print(_budget_note(Budget(finetune_epochs=2, finetune_subset=30000))[:80])
        Training budget: baseline: its recipe's epochs on all training images; fine-tune
    """
    def cap(what: str, epochs: int | None, subset: int | None) -> str:
        n = "its recipe's epochs" if what == "baseline" and epochs is None else (
            "their recipe's epochs" if epochs is None else f"≤ {epochs} epoch{'s' * (epochs != 1)}")
        on = "all training images" if subset is None else f"the first {subset:,}"
        return f"{what}: {n} on {on}"

    return ("Training budget: " + "; ".join([
        cap("baseline", b.epochs, b.train_subset),
        cap("fine-tunes", b.finetune_epochs, b.finetune_subset or b.train_subset),
        cap("distilled students", b.student_epochs, b.train_subset)]) + ".")


def _distill_note(path: Path) -> list[str]:
    """The distilled row beside its no-teacher twin (both arms, test split)."""
    if not path.is_file():
        return []
    k = json.loads(path.read_text())
    gap = "—" if k["gap_closed"] is None else f"{100 * k['gap_closed']:.0f}%"
    return [f"Distilled row: the student taught by the original reaches "
            f"{100 * k['kd_accuracy'][0]:.2f}%, the same student trained without a teacher "
            f"{100 * k['baseline_accuracy'][0]:.2f}%, the teacher "
            f"{100 * k['teacher_accuracy']:.2f}% (test split; gap closed {gap})."]
