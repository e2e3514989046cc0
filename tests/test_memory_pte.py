"""The model's own memory (RSS baseline) on both runtimes; measuring a bare ExecuTorch program."""

import importlib.util
import json
import shutil

import pytest
from tests.conftest import cli, contract_ok, run_cli

needs_executorch = pytest.mark.skipif(
    importlib.util.find_spec("executorch") is None,
    reason="executorch is not installed (pip install 'edgepress[mobile]')")


def _memory_ok(rec, *, torch):
    assert 0 < rec["rss_baseline_mb"] < rec["peak_rss_mb"]
    assert rec["peak_rss_model_mb"] == pytest.approx(rec["peak_rss_mb"] - rec["rss_baseline_mb"])
    assert rec["rss_includes_torch"] is torch


def _twin_counts(run):
    from edgepress.measurement.graph import count_macs, count_params, load_onnx

    model = load_onnx(run / "model.onnx")
    total, nonzero = count_params(model)
    return {"params_total": total, "params_nonzero": nonzero,
            "macs": count_macs(model, (1, 1, 8, 8))}


def _counts(rec):
    assert all(type(rec[k]) is int for k in ("params_total", "params_nonzero", "macs")), rec
    return {k: rec[k] for k in ("params_total", "params_nonzero", "macs")}


def test_onnxruntime_record_has_the_probe_baseline(foreign_onnx, tmp_path):
    from edgepress.measurement import measure

    rec = measure(foreign_onnx, data="digits")
    _memory_ok(rec, torch=False)
    assert rec["counts_from"] == "deployment" and rec["counts_file"] == str(foreign_onnx)
    (tmp_path / "m.json").write_text(json.dumps(rec))
    ok, out = contract_ok(tmp_path / "m.json")
    assert ok, out


def test_onnxruntime_peak_rss_reports_baseline_after_imports(foreign_onnx, digits):
    from edgepress.runtimes import get_runtime

    rss = get_runtime("onnxruntime").peak_rss(foreign_onnx, threads=1, x=digits.x_test[:1])
    assert set(rss) == {"peak_rss_mb", "rss_baseline_mb", "rss_includes_torch"}
    assert 0 < rss["rss_baseline_mb"] < rss["peak_rss_mb"] and rss["rss_includes_torch"] is False


@pytest.fixture(scope="module")
def pte_run(mlp_run, tmp_path_factory):
    """A copy of the session's mlp run, exported to ``model.pte`` (and its ``model.pte.json``)
    by ``edgepress export --format pte``.
    """
    from edgepress.cli.main import main

    run = tmp_path_factory.mktemp("pte") / "mlp"
    shutil.copytree(mlp_run, run)
    assert main(["export", str(run), "--format", "pte"]) == 0
    return run


@needs_executorch
def test_export_records_the_onnx_twin_counts(pte_run):
    counts = json.loads((pte_run / "model.pte.json").read_text())["counts"]
    assert counts["from"] == "onnx-twin"
    assert {k: counts[k] for k in ("params_total", "params_nonzero", "macs")} == \
        _twin_counts(pte_run)


@needs_executorch
def test_run_on_executorch_counts_on_its_onnx_twin(pte_run):
    from edgepress.measurement.record import resolve_target
    from edgepress.runtimes import get_runtime

    target = resolve_target(pte_run, get_runtime("executorch"))
    got = target.count((1, 1, 8, 8))
    assert got["counts_from"] == "onnx-twin" and got["counts_file"] == str(pte_run / "model.onnx")
    assert _counts(got) == _twin_counts(pte_run)


@needs_executorch
def test_bare_pte_measures_with_the_exporters_counts(pte_run, tmp_path, capsys):
    bare = tmp_path / "net.pte"
    shutil.copyfile(pte_run / "model.pte", bare)
    shutil.copyfile(pte_run / "model.pte.json", tmp_path / "net.pte.json")
    out = tmp_path / "out.json"
    code, _, err = run_cli(capsys, "measure", bare, "--runtime", "executorch", "--data", "digits",
                           "--json", out)
    assert code == 0, err
    rec = json.loads(out.read_text())
    assert rec["runtime"] == "executorch" and rec["file"] == str(bare)
    assert rec["counts_from"] == "pte-info" and rec["counts_file"] == str(tmp_path / "net.pte.json")
    assert _counts(rec) == _twin_counts(pte_run)
    _memory_ok(rec, torch=True)
    assert rec["peak_rss_baseline_mb"] == rec["rss_baseline_mb"]  # the older names stay
    assert rec["peak_rss_torch_imported"] is True
    ok, msg = contract_ok(out)
    assert ok, msg


@needs_executorch
def test_bare_pte_without_its_info_counts_from_the_program(pte_run, tmp_path, capsys):
    bare = tmp_path / "raw.pte"
    shutil.copyfile(pte_run / "model.pte", bare)
    out = tmp_path / "out.json"
    # no --runtime: a .pte is measured with executorch
    code, _, err = run_cli(capsys, "measure", bare, "--data", "digits", "--json", out)
    assert code == 0, err
    rec = json.loads(out.read_text())
    assert rec["runtime"] == "executorch"
    assert rec["counts_from"] == "pte-program" and rec["counts_file"] == str(bare)
    assert _counts(rec) == _twin_counts(pte_run)


@needs_executorch
def test_bare_pte_on_onnxruntime_says_which_runtime(pte_run, capsys):
    code, _, err = run_cli(capsys, "measure", pte_run / "model.pte", "--runtime", "onnxruntime")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("edgepress: error: ") and "--runtime executorch" in lines[0]


@needs_executorch
def test_corrupt_pte_is_exit_2_with_one_line(pte_run, tmp_path):
    truncated, garbage = tmp_path / "truncated.pte", tmp_path / "garbage.pte"
    truncated.write_bytes((pte_run / "model.pte").read_bytes()[:3000])
    garbage.write_bytes(b"not an ExecuTorch program\n" * 10)
    for bad in (truncated, garbage):
        proc = cli("measure", bad, "--data", "digits", "--json", tmp_path / "out.json")
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("edgepress: error: "), proc.stderr
        assert str(bad) in lines[0] and not (tmp_path / "out.json").exists()
