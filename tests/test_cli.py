import json

import pytest
from tests.conftest import cli, contract_ok


def _one_error_line(proc):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgepress: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_train_measure_compare_export_end_to_end(tmp_path, mlp_run):
    out = tmp_path / "lenet"
    proc = cli("train", "--model", "lenet5:width=0.5", "--data", "digits", "--epochs", "2",
               "--no-progress", "--out", out, check=0)
    assert "accuracy" in proc.stdout
    meta = json.loads((out / "model.json").read_text())
    assert meta["architecture"]["kwargs"] == {"width": 0.5}
    assert meta["splits"]["test"]["size"] == 270 and meta["provenance"]["seed"] == 0
    assert {p.name for p in out.iterdir()} == {"model.json", "model.safetensors", "model.onnx",
                                               "metrics.json"}
    before = (out / "model.onnx").stat().st_mtime
    cli("export", out, check=0)
    assert (out / "model.onnx").stat().st_mtime >= before
    cli("measure", out, "--json", tmp_path / "m.json", check=0)
    cli("compare", mlp_run, out, "--json", tmp_path / "c.json", check=0)
    rows = json.loads((tmp_path / "c.json").read_text())
    assert [r["variant"] for r in rows] == ["mlp", "lenet", "reference-again"]
    ok, msg = contract_ok(out, tmp_path / "m.json", tmp_path / "c.json")
    assert ok, msg


def test_measure_exports_when_onnx_missing_or_stale(tmp_path, mlp_run):
    import os
    import shutil

    import onnx

    run = tmp_path / "copy"
    shutil.copytree(mlp_run, run)
    (run / "model.onnx").unlink()
    cli("measure", run, check=0)
    assert (run / "model.onnx").is_file()
    # stale: an ONNX file older than the weights, holding other weights, is exported again
    good = (run / "model.onnx").read_bytes()
    m = onnx.load(str(run / "model.onnx"))
    for init in m.graph.initializer:
        if init.raw_data:
            init.raw_data = bytes(len(init.raw_data))  # zeros: a different (wrong) model
    onnx.save(m, str(run / "model.onnx"))
    old = (run / "model.safetensors").stat().st_mtime - 60
    os.utime(run / "model.onnx", (old, old))
    cli("measure", run, "--json", tmp_path / "m.json", check=0)
    assert (run / "model.onnx").read_bytes() == good  # re-exported from the weights
    rec = json.loads((tmp_path / "m.json").read_text())
    assert rec["accuracy"] == json.loads((mlp_run / "metrics.json").read_text())["accuracy"]


def test_measure_foreign_onnx_cli(tmp_path, foreign_onnx):
    cli("measure", foreign_onnx, "--data", "digits", "--json", tmp_path / "f.json", check=0)
    rec = json.loads((tmp_path / "f.json").read_text())
    assert rec["model"] == "foreign.onnx" and rec["macs"] == 640


def test_bad_inputs_each_one_line_exit_2(tmp_path, mlp_run):
    trunc = tmp_path / "trunc.onnx"
    trunc.write_bytes((mlp_run / "model.onnx").read_bytes()[:500])
    text = tmp_path / "text.onnx"
    text.write_text("hello")
    bad_npz = tmp_path / "bad.npz"
    bad_npz.write_bytes(b"PK\x03\x04garbage")
    afile = tmp_path / "afile"
    afile.write_text("x")
    (tmp_path / "empty").mkdir()
    cases = {
        "missing run": (["measure", tmp_path / "nope"], "does not exist"),
        "no model.json": (["measure", tmp_path / "empty"], "model.json"),
        "truncated onnx": (["measure", trunc, "--data", "digits"], "not a valid ONNX"),
        "non-onnx": (["measure", text, "--data", "digits"], "not a valid ONNX"),
        "unknown model": (["train", "--model", "vgg99", "--data", "digits", "--out",
                           tmp_path / "o1"], "unknown model"),
        "unknown data": (["train", "--model", "mlp", "--data", "imagenet", "--out",
                          tmp_path / "o2"], "unknown data"),
        "malformed npz": (["train", "--model", "mlp", "--data", f"npz:{bad_npz}", "--out",
                           tmp_path / "o3"], "npz"),
        "threads 0": (["measure", mlp_run, "--threads", "0"], "threads"),
        "width 0": (["train", "--model", "mlp:width=0", "--data", "digits", "--out",
                     tmp_path / "o4"], "width"),
        "width < 0": (["train", "--model", "cnn:width=-0.5", "--data", "digits", "--out",
                       tmp_path / "o5"], "width"),
        "out is a file": (["train", "--model", "mlp", "--data", "digits", "--epochs", "1", "--out",
                           afile], "not a directory"),
        "unknown runtime": (["measure", mlp_run, "--runtime", "tflite"], "unknown runtime"),
        "wrong shape": (["measure", mlp_run, "--data", "fashion-mnist"], None),
        "missing flag": (["train", "--data", "digits", "--out", tmp_path / "o6"], "--model"),
    }
    for name, (args, expect) in cases.items():
        line = _one_error_line(cli(*args))
        if expect:
            assert expect in line, (name, line)
    assert afile.read_text() == "x"
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 7))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_wrong_shape_message(mlp_run):
    from edgepress.data import default_data

    if default_data() != "fashion-mnist":
        pytest.skip("needs Fashion-MNIST to give a 28×28 input to an 8×8 model")
    line = _one_error_line(cli("measure", mlp_run, "--data", "fashion-mnist"))
    assert "expects input" in line


def test_help_on_every_command():
    from edgepress.cli.main import build_parser, commands

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(commands()) >= {"train", "import", "measure", "compare",
                                                    "prune", "quantize", "study"}
    for name, p in sub.choices.items():
        text = p.format_help()
        own = [a for a in p._actions if a.option_strings and a.dest != "help"]
        assert own, name
        for a in own:  # every flag is listed in the help, with a help text of its own
            assert a.option_strings[-1] in text, (name, a.option_strings)
            assert a.help, (name, a.option_strings)
    proc = cli("measure", "--help", check=0)
    assert "--runtime" in proc.stdout and "usage: edgepress measure" in proc.stdout


def test_verbs_stay_verbs_after_their_subpackages_are_imported():
    import edgepress
    import edgepress.distill
    import edgepress.prune
    import edgepress.quantize
    import edgepress.structure
    import edgepress.study  # noqa: F401

    for name in ("prune", "quantize", "distill", "structure", "study"):
        assert callable(getattr(edgepress, name)), name


def test_measuring_commands_pin_numeric_pools_to_their_threads(monkeypatch):
    """OpenMP/MKL pools follow ``--threads``, and its default 1 for measure / compare; training
    commands keep every core."""
    import os

    from edgepress.cli.main import _pin_threads

    for argv, want in ((["measure", "runs/a"], "1"), (["compare", "a", "b", "--threads", "2"], "2"),
                       (["measure", "a", "--threads=2"], "2"), (["train", "mlp"], None)):
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            monkeypatch.delenv(var, raising=False)
        _pin_threads(argv)
        assert os.environ.get("OMP_NUM_THREADS") == want == os.environ.get("MKL_NUM_THREADS")
