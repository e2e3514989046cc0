"""Latency figures that stay true on any host: unbiased quiet blocks, an honest fallback, and a
noise floor measured by timing the reference twice."""

import json
import time

import numpy as np
import pytest
from tests.conftest import contract_ok, run_cli

from edgepress.measurement import compare
from edgepress.measurement.latency import quiet_blocks, time_interleaved


def _simulated_ratio(seed: int, blocks: int = 400, per_block: int = 40) -> tuple[float, float]:
    """Two models, no shared spells, a true ratio of 2.00; model B alone has 3% symmetric block
    noise. Returns (ratio from the quiet blocks, ratio from every round)."""
    rng = np.random.default_rng(seed)
    a = 1.0 * np.exp(rng.normal(0, 0.02, (blocks, per_block)))
    b = 0.5 * np.exp(rng.normal(0, 0.03, (blocks, 1))) * np.exp(rng.normal(0, 0.02,
                                                                          (blocks, per_block)))
    medians = np.stack([np.median(a, axis=1), np.median(b, axis=1)])
    q = quiet_blocks(medians)
    return float(np.median(a[q]) / np.median(b[q])), float(np.median(a) / np.median(b))


def test_one_models_own_noise_does_not_bias_the_ratio():
    """Judging each model against its own best block cut off the noisy model's slow blocks only:
    2.08 instead of 2.00. Judged by what the models share, the ratio stays within 1%."""
    for seed in range(5):
        quiet, every = _simulated_ratio(seed)
        assert abs(quiet / 2.0 - 1) < 0.01, (seed, quiet)
        assert abs(every / 2.0 - 1) < 0.01


def test_a_shared_spell_is_still_left_out():
    """A spell that slows both models by 15% in a third of the blocks is found."""
    rng = np.random.default_rng(0)
    spell = np.where(np.arange(90) % 3 == 0, 1.15, 1.0)
    medians = np.stack([1.0 * spell, 0.5 * spell]) * np.exp(rng.normal(0, 0.005, (2, 90)))
    q = quiet_blocks(medians)
    assert not q[spell > 1].any() and q[spell == 1].mean() > 0.9


def _drifting(work_s: float, start: float):
    """A busy-wait whose cost grows steadily (1× to 3× over the session): never quiet."""
    def fn() -> None:
        now = time.perf_counter()
        end = now + work_s * (1.0 + 4.0 * (now - start))
        while time.perf_counter() < end:
            pass
    return fn


def test_a_host_that_is_never_quiet_is_reported_as_fallback():
    t0 = time.perf_counter()
    (t,) = time_interleaved([_drifting(1e-4, t0)], min_runs=200, min_seconds=0.2)
    s = t.summary()
    assert s["quiet_fallback"] is True
    assert s["quiet_fraction"] < 1.0  # the real fraction, not 1.0 like a steady host
    assert s["quiet_seconds"] < 0.2 and s["runs"] == s["runs_all"]  # every run is reported
    assert s["median"] == s["median_all"]


def test_a_steady_host_is_not_a_fallback():
    (t,) = time_interleaved([lambda: sum(range(2000))], min_runs=200, min_seconds=0.3)
    s = t.summary()
    assert s["quiet_fallback"] is False and s["quiet_seconds"] >= 0.3 * 0.99


def test_compare_times_the_reference_twice(mlp_run, tmp_path):
    rows = compare([mlp_run, mlp_run])
    assert [r["variant"] for r in rows][-1] == "reference-again" and len(rows) == 3
    again, ref = rows[-1], rows[0]
    floor = abs(again["latency_ms"]["median"] / ref["latency_ms"]["median"] - 1)
    assert ref["noise_floor"] == pytest.approx(max(0.01, floor)) == rows[1]["noise_floor"]
    assert again["file"] == ref["file"] and again["accuracy"] == ref["accuracy"]
    s, (lo, hi) = rows[1]["speedup"], rows[1]["speedup_ci95"]
    f = rows[1]["noise_floor"]
    assert lo <= s * (1 - f) * 1.0000001 and hi >= s * (1 + f) * 0.9999999
    assert lo <= rows[1]["speedup_all"] <= hi
    assert rows[1]["latency_change"] == "no measurable change"
    d_lo, d_hi = rows[1]["accuracy_delta_ci95_pts"]
    assert d_lo <= 0 <= d_hi and d_hi - d_lo < 1.5  # identical: ±0.72 pts at n = 270
    (tmp_path / "c.json").write_text(json.dumps(rows))
    ok, out = contract_ok(tmp_path / "c.json")
    assert ok, out


def test_measure_warns_when_the_host_was_never_quiet(mlp_run, capsys, monkeypatch, tmp_path):
    import edgepress.measurement.latency as latency

    real = latency.time_interleaved

    def never_quiet(fns, **kw):  # the real timing, then judged as a host that was never quiet
        out = real(fns, **kw)
        for t in out:
            t.fallback = True
        return out

    monkeypatch.setattr(latency, "time_interleaved", never_quiet)
    import edgepress.measurement.record as record

    monkeypatch.setattr(record, "time_interleaved", never_quiet)
    code, out, err = run_cli(capsys, "measure", mlp_run, "--json", tmp_path / "m.json")
    assert code == 0
    warnings = [line for line in err.splitlines() if line.startswith("edgepress: warning:")]
    assert len(warnings) == 1 and "never quiet" in warnings[0], out + err


def test_two_rows_that_deploy_the_same_file_say_so(mlp_run, tmp_path):
    import shutil

    from edgepress.report import effect_sentence

    twin = tmp_path / "twin"
    shutil.copytree(mlp_run, twin)
    rows = compare([mlp_run, twin])
    assert rows[1]["deployment_sha256"] == rows[0]["deployment_sha256"]
    assert rows[1]["same_deployment_as"] == rows[0]["variant"]
    assert rows[0]["same_deployment_as"] is None
    assert "same deployment as mlp" in effect_sentence(rows[1], rows[0])


def test_effect_sentences_give_the_paired_ci_and_the_threshold():
    from edgepress.report import effect_sentence

    ref = {"macs": 1000, "params_nonzero": 100, "size_bytes": 4000, "kernels": {"Conv": 2}}
    rec = {"variant": "q", "size_ratio": 0.3, "size_bytes": 1000, "speedup": 1.004,
           "speedup_ci95": [0.99, 1.02], "noise_floor": 0.012, "latency_change":
           "no measurable change", "macs": 1000, "params_nonzero": 100,
           "accuracy_delta_pts": -0.14, "accuracy_delta_ci95_pts": [-0.4, 0.1], "p_value": 0.3,
           "kernels": {"XnnpackBackend": 1,
                       "xnnpack:quantized_decomposed.quantize_per_tensor": 4}}
    s = effect_sentence(rec, ref)
    assert "no significant accuracy change (Δ -0.14 pts, 95% CI [-0.40, +0.10])" in s
    assert "1 ± 1.2%, the measured noise floor" in s
    assert "int8 kernels" in s  # ExecuTorch's quantized ops are recognised as int8
    assert "raw file is as large as before" not in s  # int8: the raw file did shrink
    sparse = {**rec, "size_bytes": 3990, "params_nonzero": 10, "kernels": {"Conv": 2}}
    assert "raw file is as large as before" in effect_sentence(sparse, ref)
    incomplete = {**rec, "macs": 10, "macs_incomplete": True, "speedup": 3.0,
                  "speedup_ci95": [2.9, 3.1], "latency_change": "faster", "kernels": {}}
    assert "MACs fell" not in effect_sentence(incomplete, ref)
