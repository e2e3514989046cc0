"""The measurement record: every figure of one model, and of several measured together.

:func:`measure_all` loads every target with the runtime, measures accuracy, kernels, memory and
size for each, then times them all in one interleaved session. ``edgepress measure`` is the case
of one target; ``edgepress compare`` adds ratios against the first (see :mod:`.compare`).

Example:
    >>> rec = measure_all(["runs/mlp"], data="fashion-mnist")[0]  # doctest: +SKIP
    >>> rec["latency_ms"]["median"] > 0  # doctest: +SKIP
    True
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..checkpoint import Run, load_run
from ..data import Dataset, default_data, load_data
from ..errors import InputError
from ..records import MeasurementRecord
from ..runtimes import Runtime, Session, get_runtime
from .agreement import agreement
from .graph import count_params, load_onnx, mac_report
from .latency import time_interleaved
from .machine import machine_info, versions
from .size import file_sha256, file_sizes
from .stats import sqnr_db, wilson_ci

EVAL_BATCH = 256
EVAL_ELEMENTS = 4_000_000  # input values a chunk: bounds the runtime's activation memory


@dataclass
class Target:
    """One thing to measure: a run directory or a bare deployment file.

    Parameters and MACs are counted on ``onnx_path``: the deployment file itself
    (``counts_from="deployment"``) or, for a run measured in another format, its ONNX twin
    (``"onnx-twin"``). A bare file without an ONNX graph (``onnx_path=None``) brings its
    ``counts`` instead, as :meth:`Runtime.file_counts` read them.
    """

    label: str
    path: Path               # the deployment file the runtime loads
    onnx_path: Path | None   # the ONNX graph that params and MACs are read from
    run: Run | None = None
    counts_from: str = "deployment"
    counts: dict | None = None  # the record's count fields, when there is no ONNX graph

    @property
    def model_name(self) -> str:
        """The record's ``model`` field."""
        return self.run.model_name if self.run else self.path.name

    def count(self, input_shape: tuple[int, ...]) -> dict:
        """``params_total``, ``params_nonzero``, ``macs`` (at ``input_shape``, batch 1 included),
        and where they come from: ``counts_from`` and ``counts_file``.
        """
        if self.onnx_path is None:
            assert self.counts is not None, "a target without an ONNX graph brings its counts"
            unknown = self.counts.get("counts_from") == "unavailable"
            return {"macs_incomplete": unknown, "macs_incomplete_nodes": [], **self.counts}
        model = load_onnx(self.onnx_path)
        total, nonzero = count_params(model)
        macs, missing = mac_report(model, input_shape)
        return {"params_total": total, "params_nonzero": nonzero, "macs": macs,
                "macs_incomplete": bool(missing), "macs_incomplete_nodes": missing,
                "counts_from": self.counts_from, "counts_file": str(self.onnx_path)}


@dataclass
class _Loaded:
    target: Target
    session: Session
    x: np.ndarray                  # the test images, shaped for this model
    logits: np.ndarray = field(default_factory=lambda: np.zeros(0))


def resolve_target(spec: str | os.PathLike, runtime: Runtime) -> Target:
    """A run directory (its deployment exported if needed) or a deployment file.

    Raises:
        InputError: missing path, not a run, or a file this runtime cannot load.
    """
    from ..export.deploy import ensure_deployment

    p = Path(spec)
    if p.is_dir():
        run = load_run(p)
        fmt = runtime.suffix.lstrip(".")
        path = ensure_deployment(run, fmt)
        onnx_path = ensure_deployment(run, "onnx") if fmt != "onnx" else path
        if fmt == "pte":
            record_twin_counts(run)
        return Target(run.name, path, onnx_path, run,
                      counts_from="deployment" if fmt == "onnx" else "onnx-twin")
    if not p.exists():
        raise InputError(f"{str(p)!r} does not exist (expected a run directory or a "
                         f"{runtime.suffix} file)")
    if p.suffix != runtime.suffix:
        hint = {".onnx": "onnxruntime", ".pte": "executorch"}.get(p.suffix)
        raise InputError(f"{str(p)!r} is not a {runtime.suffix} file for {runtime.name}"
                         + (f"; measure it with --runtime {hint}" if hint else ""))
    if p.suffix == ".onnx":
        load_onnx(p)  # fail early and clearly on a truncated or non-ONNX file
        return Target(p.stem, p, p)
    counts = runtime.file_counts(p)  # no ONNX graph: the runtime reads the file itself
    return Target(p.stem, p, None, counts_from=counts["counts_from"], counts=counts)


def record_twin_counts(run: Run) -> dict | None:
    """Write the run's ONNX-twin parameter and MAC counts into its ``model.pte.json`` (the
    figures its ONNX Runtime record reports), so the ``.pte`` file measured on its own later,
    copied out of the run, reports them too. Kept when already there for this ONNX file.

    Returns:
        The counts, or ``None`` when the run has no ``model.pte`` with a description.
    """
    from ..checkpoint import write_json
    from ..export.deploy import ensure_deployment
    from ..runtimes.executorch import info_path, read_info
    from .graph import count_macs

    pte = run.file("model.pte")
    info = read_info(pte) if pte.is_file() else None
    if info is None:
        return None
    onnx_path = ensure_deployment(run, "onnx")
    sha = file_sha256(onnx_path)
    counts = info.get("counts") or {}
    if counts.get("onnx_sha256") != sha:
        model = load_onnx(onnx_path)
        total, nonzero = count_params(model)
        counts = {"params_total": total, "params_nonzero": nonzero,
                  "macs": int(count_macs(model, (1, *run.input_shape))),
                  "from": "onnx-twin", "onnx_sha256": sha}
        write_json(info_path(pte), {**info, "counts": counts})
    return counts


def resolve_data(target: Target, data: str | None) -> str:
    """The data a target is measured on: ``--data``, else the run's, else guessed from the input."""
    if data:
        return data
    if target.run is not None:
        return target.run.meta["data"]
    return default_data()


def shape_for(session: Session, x: np.ndarray, where: str) -> np.ndarray:
    """Reshape images N×C×H×W to the model's own per-example input shape (e.g. N×784).

    Raises:
        InputError: the model's input cannot hold these images.
    """
    dims = session.input_shape[1:]
    per = int(np.prod(x.shape[1:]))
    if all(isinstance(d, int) for d in dims) and math.prod(d or 0 for d in dims) == per:
        return np.ascontiguousarray(x.reshape(len(x), *dims))
    if len(dims) == x.ndim - 1 and all(d in (None, s) for d, s in zip(dims, x.shape[1:],
                                                                       strict=True)):
        return x
    raise InputError(f"{where} expects input {list(session.input_shape)} but the data has "
                     f"images of shape {list(x.shape[1:])} (wrong --data?)")


def predict_session(session: Session, x: np.ndarray) -> np.ndarray:
    """Logits for all of ``x``, in the model's fixed batch or in chunks of ``EVAL_BATCH``
    (fewer for large images: about 4 M input values a chunk).
    """
    per = int(np.prod(x.shape[1:])) if len(x) else 1
    step = session.fixed_batch or max(1, min(EVAL_BATCH, EVAL_ELEMENTS // max(per, 1)))
    out = []
    for i in range(0, len(x), step):
        chunk = x[i:i + step]
        n = len(chunk)
        if session.fixed_batch and n < step:  # pad the last chunk of a fixed-batch model
            chunk = np.concatenate([chunk, np.zeros((step - n, *chunk.shape[1:]), chunk.dtype)])
        out.append(np.asarray(session.run(chunk))[:n].reshape(n, -1))
    return np.concatenate(out)


def _load(target: Target, runtime: Runtime, ds: Dataset, threads: int) -> _Loaded:
    session = runtime.load(target.path, threads=threads)
    x = shape_for(session, ds.x_test, str(target.path))
    loaded = _Loaded(target, session, x)
    loaded.logits = predict_session(session, x)
    if loaded.logits.shape[1] < int(ds.y_test.max()) + 1:
        raise InputError(f"{target.path} returns {loaded.logits.shape[1]} outputs but the data "
                         f"has {int(ds.y_test.max()) + 1} classes")
    return loaded


def _batch_input(loaded: _Loaded, batch: int) -> np.ndarray:
    fixed = loaded.session.fixed_batch
    if fixed is not None and fixed != batch:
        raise InputError(f"{loaded.target.path} has a fixed batch of {fixed}; use --batch {fixed}")
    reps = -(-batch // len(loaded.x))
    return np.ascontiguousarray(np.concatenate([loaded.x] * reps)[:batch])


def _fidelity(loaded: _Loaded, runtime: Runtime, ds: Dataset, threads: int,
              known: dict[str, np.ndarray] | None = None) -> dict | None:
    """Agreement with the run's parent. ``known``: logits of runs already loaded in this
    session, by resolved run path (a compare's rows are often each other's parents).
    """
    run = loaded.target.run
    parent = run.parent_path() if run else None
    if parent is None:
        return None  # none recorded, or moved / deleted: the record's fidelity_note says so
    key = str(Path(parent).resolve())
    try:
        ref = known[key] if known and key in known else _load(
            resolve_target(parent, runtime), runtime, ds, threads).logits
    except InputError:
        return None  # the parent run was moved or deleted: no fidelity figure, not an error
    return {"parent": str(parent),
            "top1_agreement": float((ref.argmax(1) == loaded.logits.argmax(1)).mean()),
            "logit_sqnr_db": sqnr_db(ref, loaded.logits), "_logits": ref}


def _scores(loaded: _Loaded, ds: Dataset, fidelity: dict | None) -> dict:
    """The record's accuracy fields — or, on data without labels, ``accuracy: null`` and the
    ``agreement`` with the parent (``null`` without one; a compare puts its first run there).
    """
    if ds.labelled:
        correct = loaded.logits.argmax(1) == ds.y_test
        return {"accuracy": float(correct.mean()),
                "accuracy_ci95": list(wilson_ci(int(correct.sum()), len(correct)))}
    if not fidelity or fidelity.get("_logits") is None:
        return {"accuracy": None, "accuracy_ci95": None, "agreement": None}
    return {"accuracy": None, "accuracy_ci95": None,
            "agreement": agreement(fidelity["_logits"], loaded.logits, fidelity["parent"])}


def _record(loaded: _Loaded, runtime: Runtime, ds: Dataset, threads: int, batch: int,
            xb: np.ndarray, known: dict[str, np.ndarray] | None = None) -> dict:
    t = loaded.target
    size, size_gz = file_sizes(t.path)
    fidelity = _fidelity(loaded, runtime, ds, threads, known)
    scores = _scores(loaded, ds, fidelity)
    if fidelity:
        fidelity.pop("_logits")
    kernels, kernel_us = loaded.session.kernels(xb)
    prov = t.run.meta.get("provenance", {}) if t.run else {}
    rss = runtime.peak_rss(t.path, threads=threads, x=xb)  # peak, baseline, includes torch
    extras = runtime.record_extras(loaded.session, t.path)  # after peak_rss: may use its probe
    return MeasurementRecord(
        model=t.model_name, variant=t.label, data=ds.name, n_test=int(len(ds.y_test)),
        seed=prov.get("seed"), runtime=runtime.name, runtime_version=runtime.version(),
        threads=threads, batch=batch, machine=machine_info(), versions=versions(),
        **t.count((1, *loaded.x.shape[1:])),  # params_total, params_nonzero, macs, counts_from
        size_bytes=size, size_gzip_bytes=size_gz,
        accuracy=scores.pop("accuracy"), accuracy_ci95=scores.pop("accuracy_ci95"),
        latency_ms={}, load_ms=float(loaded.session.load_ms),
        **rss, peak_rss_model_mb=max(0.0, rss["peak_rss_mb"] - rss["rss_baseline_mb"]),
        kernels=kernels, kernel_time_us=kernel_us,
        fidelity=fidelity,
        fidelity_note=t.run.parent_note() if t.run else None,
        deployment=(t.run.meta.get("deployment") if t.run else
                    {"format": t.path.suffix.lstrip("."), "source": str(t.path)}),
        file=str(t.path), extra={**extras, **scores}).to_dict()


def _runner(session: Session, x: np.ndarray) -> Callable[[], object]:
    """A zero-argument call of one inference, for the timing loop."""
    return lambda: session.run(x)


def measure_all(specs: list[str | os.PathLike], *, data: str | None = None,
                runtime: str = "onnxruntime", threads: int = 1, batch: int = 1,
                reference_again: bool = False, progress: bool = False,
                seconds: float | None = None, split: str = "test",
                ) -> tuple[list[dict], list[np.ndarray], Dataset]:
    """Measure every target; their latencies come from one interleaved session.

    With ``progress``, each phase shows a live line on stderr with its elapsed time: per
    target its export (ExecuTorch lowering included), accuracy, kernels and memory; then the
    interleaved timing. ``split="val"`` scores accuracy on the validation split instead of
    test (a search scores its trials there; only its final front sees test): the record then
    says ``"accuracy_split": "val"``.

    With ``reference_again``, a second session of the first target's file is timed in the same
    rounds and its record (a copy of the first's with its own latency) is appended last: how far
    it lands from the first is the session's noise floor (see :mod:`.comparison`).

    Returns:
        ``(records, correct, dataset)``: one contract record per target, each target's
        per-example correctness on the test split, and the dataset used. Each record also holds
        ``_latency_samples_ms`` (the kept runs: the same rounds for every model) and
        ``_latency_all_ms`` (every run) and ``_logits`` (its test logits), for the caller to
        pop. On data without labels (``photos``) ``correct`` compares with no label: use the
        logits (:mod:`.agreement`).

    Raises:
        InputError: bad paths, data, thread or batch counts, or shapes that do not fit.
    """
    if threads < 1:
        raise InputError(f"--threads must be >= 1 (got {threads})")
    if batch < 1:
        raise InputError(f"--batch must be >= 1 (got {batch})")
    from ..progress import phase

    rt = get_runtime(runtime)
    ds: Dataset | None = None
    loaded: list[_Loaded] = []
    records: list[dict] = []
    inputs: list[np.ndarray] = []
    known: dict[str, np.ndarray] = {}
    for i, spec in enumerate(specs, start=1):
        with phase(_phase_text(spec, rt, i, len(specs)), enabled=progress):
            t = resolve_target(spec, rt)
            ds = ds or _eval_split(load_data(resolve_data(t, data)), split)
            lo = _load(t, rt, ds, threads)
            xb = _batch_input(lo, batch)
            if t.run is not None:
                known[str(t.run.path.resolve())] = lo.logits
            rec = _record(lo, rt, ds, threads, batch, xb, known)
            rec["deployment_sha256"] = file_sha256(t.path)
            if split != "test":
                rec["accuracy_split"] = split
        loaded.append(lo)
        inputs.append(xb)
        records.append(rec)
    assert ds is not None, "measure_all needs at least one target"
    targets = [lo.target for lo in loaded]
    runners = [_runner(lo.session, xb) for lo, xb in zip(loaded, inputs, strict=True)]
    if reference_again:
        again = rt.load(targets[0].path, threads=threads)
        runners.append(_runner(again, inputs[0]))
        records.append({**copy.deepcopy(records[0]), "load_ms": float(again.load_ms)})
    with phase(f"{rt.name}: timing {len(runners)} sessions interleaved, batch {batch}",
               enabled=progress):
        timings = time_interleaved(runners, min_seconds=seconds)
    for rec, tm in zip(records, timings, strict=True):
        rec["latency_ms"] = tm.summary()
        rec["_latency_samples_ms"] = tm.kept  # quiet rounds: the same for every model
        rec["_latency_all_ms"] = tm.ms
    correct = [lo.logits.argmax(1) == ds.y_test for lo in loaded]
    for rec, lo in zip(records, loaded, strict=False):
        rec["_logits"] = lo.logits
    if reference_again:
        records[-1]["_logits"] = loaded[0].logits
    return records, correct, ds


def _eval_split(ds: Dataset, split: str) -> Dataset:
    """``ds`` with ``split`` in the place of test (what every accuracy here is scored on)."""
    import dataclasses

    if split == "test":
        return ds
    if split != "val":
        raise InputError(f"unknown split {split!r} to score on (test, val)")
    return dataclasses.replace(ds, x_test=ds.x_val, y_test=ds.y_val)


def _phase_text(spec: str | os.PathLike, rt: Runtime, i: int, n: int) -> str:
    """What the measurement of target ``i`` of ``n`` will do, for its progress line."""
    p = Path(spec)
    what = "accuracy, kernels, memory"
    if p.is_dir():
        from ..export.deploy import needs_export

        try:
            if needs_export(load_run(p), rt.suffix.lstrip(".")):
                what = ("lowering to ExecuTorch/XNNPACK, " if rt.suffix == ".pte"
                        else "exporting, ") + what
        except InputError:
            pass  # resolve_target says what is wrong
    return f"{rt.name} {i}/{n} {p.name}: {what}"


def measure(spec: str | os.PathLike, *, data: str | None = None, runtime: str = "onnxruntime",
            threads: int = 1, batch: int = 1, progress: bool = False) -> dict:
    """Measure one run directory or deployment file; return its record (see the contract)."""
    records, _, _ = measure_all([spec], data=data, runtime=runtime, threads=threads, batch=batch,
                                progress=progress)
    for key in ("_latency_samples_ms", "_latency_all_ms", "_logits"):
        records[0].pop(key)
    return records[0]


def measure_untimed(spec: str | os.PathLike, *, data: str | None = None) -> dict:
    """The figures of one run or ONNX file that need no timing: parameters, MACs, bytes, gzip
    bytes and test accuracy on ONNX Runtime — what a study step records (``figures.json``),
    leaving latency, memory and kernels to the one interleaved ``compare`` of every variant.

    The record has the measurement record's fields with ``latency_ms``, ``kernels``, memory and
    ``fidelity`` left ``None`` and ``timed: false``.

    Raises:
        InputError: as :func:`measure`.
    """
    rt = get_runtime("onnxruntime")
    t = resolve_target(spec, rt)
    ds = load_data(resolve_data(t, data))
    lo = _load(t, rt, ds, threads=1)
    size, size_gz = file_sizes(t.path)
    fidelity = _fidelity(lo, rt, ds, 1) if not ds.labelled else None
    scores = _scores(lo, ds, fidelity)
    prov = t.run.meta.get("provenance", {}) if t.run else {}
    return {"schema": 1, "timed": False, "model": t.model_name, "variant": t.label,
            "data": ds.name, "n_test": int(len(ds.y_test)), "seed": prov.get("seed"),
            "runtime": rt.name, "runtime_version": rt.version(), "threads": 1, "batch": 1,
            "machine": machine_info(), **t.count((1, *lo.x.shape[1:])),
            "size_bytes": size, "size_gzip_bytes": size_gz, **scores,
            "latency_ms": None, "kernels": None, "peak_rss_mb": None, "fidelity": None,
            "deployment": t.run.meta.get("deployment") if t.run else None, "file": str(t.path),
            "deployment_sha256": file_sha256(t.path)}


def save_record(path: str | os.PathLike, record: dict) -> None:
    """Write ``record`` to ``path`` atomically, keeping the fields an earlier record there had
    and this one lacks — what the producing command knew about the run (per-layer sparsity,
    packed sizes, the quantization time), not measurements: re-measuring a run must not lose them.
    """
    import json

    from ..checkpoint import write_json

    p = Path(path)
    try:
        old = json.loads(p.read_text()) if p.is_file() else {}
    except (OSError, ValueError):
        old = {}
    write_json(p, {**record, **{k: v for k, v in old.items() if k not in record}}
               if isinstance(old, dict) else record)
