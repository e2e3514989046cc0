"""ExecuTorch / XNNPACK: export, run, quantize, measure (digits, tiny models)."""

import importlib.util
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from tests.conftest import cli, contract_ok
from torch import nn

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("executorch") is None,
    reason="executorch is not installed (pip install 'edgepress[mobile]')")


def _one_error_line(proc):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgepress: error: "), proc.stderr
    return lines[0]


def _logits(pte, x):
    from edgepress.runtimes import get_runtime

    session = get_runtime("executorch").load(pte, threads=1)
    assert session.input_shape == (1, *x.shape[1:])  # exported at batch 1
    return np.concatenate([session.run(x[i:i + 1]) for i in range(len(x))]), session


@pytest.fixture(scope="module")
def runs(tmp_path_factory, digits):
    """A trained cnn:width=0.25 run (no measurement: built from the library's pieces) and an
    int8 static per-channel run of it, recorded as ``quantize`` records one.
    """
    from edgepress.checkpoint import new_meta, save_model, write_json
    from edgepress.data import calibration_subset
    from edgepress.quantize import QuantConfig
    from edgepress.training import default_recipe, fit, seed_everything
    from edgepress.zoo import create_model

    root = tmp_path_factory.mktemp("et")
    seed_everything(0)
    net = create_model("cnn:width=0.25", input_shape=digits.input_shape, num_classes=10)
    fit(net, digits, default_recipe("cnn", epochs=4), progress=False)
    meta = new_meta(zoo="cnn", kwargs={"width": 0.25}, input_shape=digits.input_shape,
                    num_classes=10, data="digits", splits=digits.splits_record(), seed=0)
    save_model(root / "fp32", net, meta)
    cfg = QuantConfig(mode="static", granularity="channel").resolved()
    _, indices_hash = calibration_subset(digits, cfg.calibration, cfg.seed)
    q_meta = {**meta, "provenance": {**meta["provenance"], "parent": str(root / "fp32")},
              "deployment": {"format": "onnx", "precision": "int8",
                             "quantization": cfg.to_dict(),
                             "calibration_indices_hash": indices_hash}}
    (root / "int8").mkdir()
    shutil.copyfile(root / "fp32" / "model.safetensors", root / "int8" / "model.safetensors")
    write_json(root / "int8" / "model.json", q_meta)
    return {"fp32": root / "fp32", "int8": root / "int8", "model": net.eval(), "hash": indices_hash}


def test_fp32_pte_matches_torch_and_is_fully_delegated(runs, digits):
    from edgepress.checkpoint import load_run
    from edgepress.export.deploy import export_run

    pte = export_run(load_run(runs["fp32"]), "pte")
    assert pte.name == "model.pte"
    x = digits.x_test[:64]
    got, session = _logits(pte, x)
    with torch.no_grad():
        ref = runs["model"](torch.from_numpy(x)).numpy()
    assert np.abs(got - ref).max() <= 1e-4
    info = json.loads((runs["fp32"] / "model.pte.json").read_text())
    assert info["precision"] == "fp32" and info["quantization"] is None
    assert info["delegation"]["share"] == 1.0 and info["delegation"]["outside"] == {}
    assert info["delegation"]["delegated"]["aten.convolution"] == 3
    kernels, _ = session.kernels(x[:1])
    assert kernels["XnnpackBackend"] == 1 and kernels["xnnpack:aten.convolution"] == 3


def test_int8_pte_agrees_with_fp32_and_replays_the_recorded_calibration(runs, digits):
    from edgepress.checkpoint import load_run
    from edgepress.export.deploy import export_run

    pte = export_run(load_run(runs["int8"]), "pte")
    got, _ = _logits(pte, digits.x_test)
    with torch.no_grad():
        ref = runs["model"](torch.from_numpy(digits.x_test)).numpy()
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.95
    info = json.loads((runs["int8"] / "model.pte.json").read_text())
    q = info["quantization"]
    assert info["precision"] == "int8" and q["mode"] == "static"
    assert q["calibration_indices_hash"] == runs["hash"] and q["calibration_images"] == 512
    assert q["activation_observer"] == "minmax" and "per channel" in q["weights"]
    assert info["delegation"]["delegated"]["quantized_decomposed.quantize_per_tensor"] > 0
    fp32_size = (runs["fp32"] / "model.pte").stat().st_size
    assert pte.stat().st_size < 0.7 * fp32_size  # int8 weights, not fp32 ones


def test_compare_on_executorch_gives_contract_records(runs, tmp_path):
    from edgepress.measurement import compare

    rows = compare([runs["fp32"], runs["int8"]], runtime="executorch")
    (tmp_path / "c.json").write_text(json.dumps(rows))
    ok, out = contract_ok(tmp_path / "c.json")
    assert ok, out
    ref, q, again = rows
    assert again["variant"] == "reference-again" and again["noise_floor"] >= 0.01
    assert ref["runtime"] == "executorch" and ref["versions"]["executorch"]
    assert ref["runtime_version"] == ref["versions"]["executorch"]
    assert ref["batch"] == 1 and ref["threads"] == 1
    assert ref["delegation"]["share"] == 1.0 and q["pte"]["precision"] == "int8"
    assert q["fidelity"]["top1_agreement"] >= 0.95
    assert ref["peak_rss_mb"] >= ref["peak_rss_baseline_mb"] > 0
    assert ref["peak_rss_torch_imported"] is True
    assert ref["size_bytes"] == (runs["fp32"] / "model.pte").stat().st_size


class _Cumsum(nn.Module):
    """conv → relu → cumsum (no XNNPACK kernel) → linear."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).cumsum(dim=-1).flatten(1))


def test_bare_sequential_and_partly_delegated_models_export_and_run(tmp_path, digits):
    from edgepress.export.pte import export_pte

    torch.manual_seed(0)
    seq = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Flatten(), nn.Linear(4 * 8 * 8, 10)).eval()
    with torch.no_grad():
        seq[1].running_var.uniform_(0.5, 2.0)
    x = digits.x_test[:16]
    for name, model in [("seq", seq), ("cumsum", _Cumsum().eval())]:
        info = export_pte(model, tmp_path / f"{name}.pte", input_shape=(1, 8, 8),
                          check_inputs=digits.x_val)
        got, session = _logits(tmp_path / f"{name}.pte", x)
        with torch.no_grad():
            assert np.abs(got - model(torch.from_numpy(x)).numpy()).max() <= 1e-4
        if name == "seq":
            assert info["delegation"]["share"] == 1.0
        else:  # still runs; the operator left outside XNNPACK is named
            assert info["delegation"]["outside"] == {"aten.cumsum": 1}
            assert 0 < info["delegation"]["share"] < 1
            kernels, _ = session.kernels(x[:1])
            assert kernels["aten.cumsum"] == 1 and kernels["XnnpackBackend"] == 2


def test_bad_runtime_names_and_unexportable_runs(runs, tmp_path, foreign_onnx):
    from edgepress.checkpoint import new_meta, write_json

    line = _one_error_line(cli("measure", runs["fp32"], "--runtime", "tflite"))
    assert "unknown runtime 'tflite'" in line and "executorch" in line
    # a run that came from a foreign ONNX file has no PyTorch model to export
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    shutil.copyfile(foreign_onnx, foreign / "model.onnx")
    write_json(foreign / "model.json", new_meta(onnx_source=str(foreign_onnx),
                                                input_shape=(1, 8, 8), num_classes=10,
                                                data="digits"))
    line = _one_error_line(cli("export", foreign, "--format", "pte"))
    assert "pte" in line and not (foreign / "model.pte").exists()
    # 4-bit weight-only has no XNNPACK form
    w4 = tmp_path / "w4"
    w4.mkdir()
    shutil.copyfile(runs["fp32"] / "model.safetensors", w4 / "model.safetensors")
    meta = json.loads((runs["fp32"] / "model.json").read_text())
    meta["deployment"] = {"format": "onnx", "precision": "int4", "calibration_indices_hash": None,
                          "quantization": {"mode": "weight-only", "bits": 4}}
    write_json(w4 / "model.json", meta)
    line = _one_error_line(cli("export", w4, "--format", "pte"))
    assert "int4" in line and not (w4 / "model.pte").exists()


def test_missing_executorch_is_exit_2_with_the_install_hint(runs):
    code = ("import sys; sys.modules['executorch'] = None; "
            "from edgepress.cli.main import main; sys.exit(main(sys.argv[1:]))")
    for args in (["measure", str(runs["fp32"]), "--runtime", "executorch"],
                 ["export", str(runs["fp32"]), "--format", "pte"]):
        proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                              text=True, timeout=300)
        line = _one_error_line(proc)
        assert "pip install 'edgepress[mobile]'" in line


def _relu6_net():
    """conv → BN → ReLU6 → depthwise conv → ReLU6 → pool → linear, with pre-clip outputs that
    reach tens (as Lite0's depthwise ones do) while the clip keeps [0, 6].
    """
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU6(),
                        nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.ReLU6(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    with torch.no_grad():
        net[0].weight.mul_(20)
        net[3].weight.mul_(20)
        net[1].running_var.fill_(0.5)
    return net.eval()


def test_xnnpack_quantizes_conv_relu6_once_after_the_clip():
    """XNNPACKQuantizer alone quantizes a conv's raw output before ReLU6 (hardtanh) and again
    after it; edgepress's conv-clamp pattern quantizes only the clipped output (as ONNX Runtime
    does), which is measurably closer to fp32 and leaves no quantize node between conv and clip.
    """
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from edgepress.quantize.xnnpack import XnnpackQuant, _quantizer, quantize_pt2e

    net = _relu6_net()
    x = torch.rand(96, 3, 8, 8)
    quant = XnnpackQuant(mode="static", calib_x=x[:64].numpy(), calib_batch=32)
    fused = quantize_pt2e(net, quant, (x[:1],))
    clips = [n for n in fused.graph.nodes if "hardtanh" in str(n.target)]
    assert len(clips) == 2
    assert all("conv" in str(c.args[0].target) for c in clips)  # no q/dq between conv and clip

    plain_cfg = _quantizer(quant).quantizers[1].global_config
    gm = torch.export.export(net, (x[:32],), dynamic_shapes=(
        {0: torch.export.Dim("batch", min=1, max=1 << 16)},)).module()
    plain = prepare_pt2e(gm, XNNPACKQuantizer().set_global(plain_cfg))
    plain(x[:32])
    plain(x[32:64])
    plain = convert_pt2e(plain)

    def sqnr(m):
        with torch.no_grad():
            ref, got = net(x[64:]), m(x[64:])
        return float(10 * torch.log10(ref.pow(2).sum() / (ref - got).pow(2).sum()))

    with_pattern, without = sqnr(fused), sqnr(plain)
    assert with_pattern > without + 6, (with_pattern, without)


def test_a_float_conv_behind_its_own_same_padding_lowers_to_xnnpack(tmp_path):
    """Mixed precision on XNNPACK: a strided depthwise conv kept float behind its own "same"
    padding (Lite0's layout) used to fail the lowering ("Weight and Input should both be
    quantized"): the pad's output is now quantized, so the float conv reads dequantized values.
    """
    from edgepress.export.pte import export_pte
    from edgepress.quantize.xnnpack import XnnpackQuant

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU6(),
                        nn.Sequential(nn.ZeroPad2d((1, 2, 1, 2)),
                                      nn.Conv2d(8, 8, 5, stride=2, groups=8)),
                        nn.ReLU6(), nn.Conv2d(8, 4, 1), nn.Flatten(),
                        nn.Linear(4 * 4 * 4, 10)).eval()
    x = torch.rand(96, 3, 8, 8).numpy()
    quant = XnnpackQuant(mode="static", calib_x=x[:64], calib_batch=32, skip_modules=["2.1"])
    info = export_pte(net, tmp_path / "mixed.pte", input_shape=(3, 8, 8), check_inputs=x[64:],
                      quantizer=quant)
    got, _ = _logits(tmp_path / "mixed.pte", x[64:])
    with torch.no_grad():
        ref = net(torch.from_numpy(x[64:])).numpy()
    sqnr = 10 * np.log10((ref ** 2).sum() / ((ref - got) ** 2).sum())
    assert sqnr > 20, sqnr
    assert info["delegation"]["share"] == 1.0
