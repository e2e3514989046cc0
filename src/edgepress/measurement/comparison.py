"""Compare several models measured in one interleaved session: speed-up with a CI, size ratio,
accuracy delta with the CI of the paired difference and an exact McNemar p-value, each against
the first model.

Every compare also times a second session of the reference file (A′) in the same rounds. How far
A′ lands from A is the *noise floor* of this host and session (at least 1%): every speed-up CI
is widened to at least ± that floor, and a speed-up whose CI overlaps ``1 ± floor`` is reported
as "no measurable change". The A′ row is kept last in the list (``variant: "reference-again"``);
reports and plots leave it out (:func:`measured_rows`).

Example:
    >>> rows = compare(["runs/cnn", "runs/cnn-int8"])  # doctest: +SKIP
    >>> rows[0]["speedup"], rows[-1]["variant"]  # doctest: +SKIP
    (1.0, 'reference-again')
"""

from __future__ import annotations

import os

import numpy as np

from .agreement import agreement, agreement_p_value
from .record import measure_all
from .stats import (
    bootstrap_speedup,
    latency_change,
    mcnemar_exact,
    noise_floor,
    paired_delta_ci,
    widen_ci,
)

REFERENCE_AGAIN = "reference-again"


def measured_rows(rows: list[dict]) -> list[dict]:
    """The rows of a comparison without the reference's second session (the noise-floor row).

    >>> [r["variant"] for r in measured_rows([{"variant": "a"}, {"variant": REFERENCE_AGAIN}])]
    ['a']
    """
    return [r for r in rows if r.get("variant") != REFERENCE_AGAIN]


def compare(specs: list[str | os.PathLike], *, data: str | None = None,
            runtime: str = "onnxruntime", threads: int = 1, batch: int = 1,
            variants: list[str] | None = None, progress: bool = False,
            seconds: float | None = None, split: str = "test") -> list[dict]:
    """Measure ``specs`` together; return one record per model with the ratio fields added,
    then the reference's second session (``variant: "reference-again"``).

    The first model is the reference: speed-up 1, p-value 1. ``seconds``: timed seconds per
    model (default :func:`~.latency.timed_seconds`).
    """
    records, correct, ds = measure_all(specs, data=data, runtime=runtime, threads=threads,
                                      batch=batch, reference_again=True, progress=progress,
                                      seconds=seconds, split=split)
    ref = records[0]
    floor = noise_floor(ref["latency_ms"]["median"], records[-1]["latency_ms"]["median"])
    correct = [*correct, correct[0]]  # A′ is the same file: the same predictions
    for i, rec in enumerate(records):
        if variants is not None and i < len(variants):
            rec["variant"] = variants[i]
        _ratios(rec, ref, i == 0, floor)
        rec["size_ratio"] = rec["size_gzip_bytes"] / ref["size_gzip_bytes"]
        if ds.labelled:
            rec["accuracy_delta_pts"] = 100.0 * (rec["accuracy"] - ref["accuracy"])
            rec["accuracy_delta_ci95_pts"] = [100.0 * v for v in
                                              paired_delta_ci(correct[0], correct[i])]
            rec["p_value"] = 1.0 if i == 0 else mcnemar_exact(correct[0], correct[i])
    if not ds.labelled:
        _agreements(records)
    for rec in records:
        for key in ("_latency_samples_ms", "_latency_all_ms", "_logits"):
            rec.pop(key)
    records[-1]["variant"] = REFERENCE_AGAIN
    _same_deployments(records[:-1])
    return records


def _agreements(records: list[dict]) -> None:
    """On data without labels: each row's ``agreement`` with the first run (the reference),
    ``accuracy_delta_pts: null``, ``agreement_delta_pts`` (top-1 agreement lost, in points),
    ``p_value`` (exact McNemar of the row's agreements against the reference's own, which are
    all 1: are any predictions changed at all) and ``agreement_p_values`` (against every other
    measured row: does one follow the reference where the other does not).
    """
    ref = records[0]
    z0 = ref["_logits"]
    for rec in records:
        rec["agreement"] = agreement(z0, rec["_logits"], ref["variant"])
        rec["accuracy_delta_pts"] = None
        rec["agreement_delta_pts"] = 100.0 * (rec["agreement"]["top1"] - 1.0)
        rec["p_value"] = agreement_p_value(z0, z0, rec["_logits"])
    rows = records[:-1]  # the reference's second session is not a variant
    for rec in rows:
        rec["agreement_p_values"] = {o["variant"]: agreement_p_value(z0, rec["_logits"],
                                                                     o["_logits"])
                                     for o in rows if o is not rec}


def _same_deployments(rows: list[dict]) -> None:
    """``same_deployment_as``: the first earlier row that deployed the very same file (same
    sha256), else ``None`` — two rows that ship identical bytes are one deployment.
    """
    first: dict[str, str] = {}
    for r in rows:
        sha = r.get("deployment_sha256")
        r["same_deployment_as"] = first.get(sha) if sha else None
        if sha:
            first.setdefault(sha, r["variant"])


def _ratios(rec: dict, ref: dict, is_ref: bool, floor: float) -> None:
    """The speed-up fields of ``rec`` against ``ref``: quiet rounds, every round, the
    bootstrap CI, the CI widened to the noise floor (and to the all-rounds ratio), the verdict.
    """
    lat, ref_lat = rec["latency_ms"], ref["latency_ms"]
    rec["noise_floor"] = floor
    if is_ref:
        rec.update(speedup=1.0, speedup_all=1.0, speedup_ci95=[1.0, 1.0],
                   speedup_ci95_timing=[1.0, 1.0], latency_change="reference")
        return
    rec["speedup"] = ref_lat["median"] / lat["median"]
    rec["speedup_all"] = float(np.median(ref["_latency_all_ms"])
                               / np.median(rec["_latency_all_ms"]))
    timing = bootstrap_speedup(ref["_latency_samples_ms"], rec["_latency_samples_ms"])
    rec["speedup_ci95_timing"] = list(timing)
    ci = widen_ci(rec["speedup"], timing, floor, rec["speedup_all"])
    rec["speedup_ci95"] = list(ci)
    rec["latency_change"] = latency_change(ci, floor)
