"""Compare several models measured in one interleaved session: speed-up with a bootstrap CI,
size ratio, accuracy delta and an exact McNemar p-value, each against the first model.

Example:
    >>> rows = compare(["runs/cnn", "runs/cnn-int8"])  # doctest: +SKIP
    >>> rows[0]["speedup"]  # doctest: +SKIP
    1.0
"""

from __future__ import annotations

import os

from .record import measure_all
from .stats import bootstrap_speedup, mcnemar_exact, with_session_resolution


def compare(specs: list[str | os.PathLike], *, data: str | None = None,
            runtime: str = "onnxruntime", threads: int = 1, batch: int = 1,
            variants: list[str] | None = None) -> list[dict]:
    """Measure ``specs`` together; return one record per model with the ratio fields added.

    The first model is the reference: speed-up 1, p-value 1.
    """
    records, correct, _ = measure_all(specs, data=data, runtime=runtime, threads=threads,
                                      batch=batch)
    ref, ref_ms = records[0], records[0]["_latency_samples_ms"]
    for i, rec in enumerate(records):
        ms = rec.pop("_latency_samples_ms")
        if variants is not None:
            rec["variant"] = variants[i]
        rec["speedup"] = ref["latency_ms"]["median"] / rec["latency_ms"]["median"]
        if i == 0:
            rec["speedup_ci95"] = rec["speedup_ci95_timing"] = [1.0, 1.0]
        else:  # the timing noise (bootstrap), widened to the resolution between two sessions
            timing = bootstrap_speedup(ref_ms, ms)
            rec["speedup_ci95_timing"] = list(timing)
            rec["speedup_ci95"] = list(with_session_resolution(rec["speedup"], timing))
        rec["size_ratio"] = rec["size_gzip_bytes"] / ref["size_gzip_bytes"]
        rec["accuracy_delta_pts"] = 100.0 * (rec["accuracy"] - ref["accuracy"])
        rec["p_value"] = 1.0 if i == 0 else mcnemar_exact(correct[0], correct[i])
    return records
