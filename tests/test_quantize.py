import contextlib
import json
import math

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from safetensors.numpy import load_file
from tests.conftest import contract_ok

from edgepress.checkpoint import load_run
from edgepress.cli.main import main as cli_main
from edgepress.errors import InputError
from edgepress.quantize import QuantConfig, quantize
from edgepress.quantize.affine import dequantize, fake_quantize, qparams, sqnr_db
from edgepress.quantize.affine import quantize as q_ints
from edgepress.quantize.lowbit import (
    dequantize_weight,
    pack,
    pack_bits,
    packed_nbytes,
    quantize_weight,
    unpack,
    unpack_bits,
)

SCHEMES = [(8, False), (8, True), (4, False), (4, True), (2, False), (2, True)]


@contextlib.contextmanager
def one_thread():
    """Train with one torch thread: on a shared 2-core machine it is the fast setting."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _make_run(out, spec, digits, epochs):
    """A trained zoo run (weights + model.json, no metrics: a parent needs none)."""
    from edgepress.checkpoint import atomic_dir, new_meta, save_model
    from edgepress.training import default_recipe, fit, seed_everything
    from edgepress.zoo import ModelSpec, create_model

    s = ModelSpec.parse(spec)
    with one_thread():
        seed_everything(0)
        m = create_model(s, input_shape=digits.input_shape, num_classes=10)
        fit(m, digits, default_recipe(s.name, epochs=epochs, batch_size=32, lr=3e-3),
            progress=False)
    meta = new_meta(zoo=s.name, kwargs=s.kwargs, input_shape=digits.input_shape,
                    num_classes=10, data="digits", splits=digits.splits_record(), seed=0)
    with atomic_dir(out) as tmp:
        save_model(tmp, m, meta)
    return out


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory, digits):
    return _make_run(tmp_path_factory.mktemp("q") / "cnn", "cnn:width=0.5", digits, 6)


@pytest.fixture(scope="module")
def cnn_int8(tmp_path_factory, cnn_run):
    out = tmp_path_factory.mktemp("q") / "cnn-int8"
    rec = quantize(cnn_run, QuantConfig(mode="static", accuracy_budget=1.0), out=out,
                   progress=False)
    return out, rec


def run_cli(capsys, *args):
    """The real CLI entry point in-process: (exit code, stderr)."""
    with pytest.raises(SystemExit) as e:
        cli_main([str(a) for a in args])
    return e.value.code, capsys.readouterr().err


# --- the arithmetic --------------------------------------------------------------------------

def test_errata_example_hand_computed():
    # x in [-1, 10.5], 8 bits asymmetric: s = 11.5/255, z = round(1/s) = 22; x_max -> 255
    x = np.array([-1.0, 0.0, 10.5], np.float32)
    qp = qparams(x, bits=8, symmetric=False)
    assert qp.scale.item() == pytest.approx(11.5 / 255)
    assert qp.zero_point.item() == 22
    assert q_ints(x, qp).tolist() == [0, 22, 255]
    # symmetric: s = max|x| / 127, z = 0
    qs = qparams(x, bits=8, symmetric=True)
    assert qs.scale.item() == pytest.approx(10.5 / 127) and qs.zero_point.item() == 0
    assert q_ints(x, qs).tolist() == [-12, 0, 127]


@pytest.mark.parametrize("bits,symmetric", SCHEMES)
@pytest.mark.parametrize("axis", [None, 0])
def test_round_trip_error_at_most_half_a_step_and_zero_exact(bits, symmetric, axis):
    rng = np.random.default_rng(bits)
    x = (rng.normal(size=(8, 300)) * rng.uniform(0.1, 5, size=(8, 1)) + 0.3).astype(np.float32)
    x[:, 0] = 0.0
    qp = qparams(x, bits=bits, symmetric=symmetric, axis=axis)
    err = np.abs(fake_quantize(x, qp) - x)
    assert (err <= qp.scale / 2 * (1 + 1e-5) + 1e-7).all()
    assert (fake_quantize(np.zeros_like(x), qp) == 0).all()
    q = q_ints(x, qp)
    assert q.min() >= qp.qmin and q.max() <= qp.qmax
    assert np.array_equal(dequantize(q, qp), fake_quantize(x, qp))


def test_all_positive_or_all_negative_ranges_still_hold_zero():
    for x in (np.array([2.0, 3.0, 5.0], np.float32), np.array([-4.0, -1.0], np.float32)):
        qp = qparams(x, bits=8)
        assert fake_quantize(np.float32(0.0), qp) == 0.0
        assert np.abs(fake_quantize(x, qp) - x).max() <= qp.scale.item() / 2 + 1e-7


def test_int8_per_channel_sqnr_on_gaussian_beats_35db_and_per_tensor():
    rng = np.random.default_rng(0)
    w = (rng.normal(size=(64, 256)) * rng.uniform(0.01, 1.0, size=(64, 1))).astype(np.float32)
    pc = sqnr_db(w, fake_quantize(w, qparams(w, bits=8, symmetric=True, axis=0)))
    pt = sqnr_db(w, fake_quantize(w, qparams(w, bits=8, symmetric=True)))
    assert pc >= 35.0
    assert pc > pt + 3


# --- configs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", [
    QuantConfig(), QuantConfig(mode="dynamic", granularity="tensor"),
    QuantConfig(mode="qat", epochs=3, lr=1e-3, skip_layers=["features.0"]),
    QuantConfig(mode="qat", bits=4, group_size=64),
    QuantConfig(mode="weight-only", bits=1, group_size=32),
    QuantConfig(mode="static", calib_method="entropy", calibration=64, accuracy_budget=0.5,
                reduce_range=True)])
def test_config_round_trips_through_json(cfg):
    assert QuantConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.mark.parametrize("kwargs,match", [
    ({"bits": 3, "mode": "weight-only"}, "--bits must be one of"),
    ({"bits": 4}, "int8 only"),
    ({"mode": "dynamic", "calib_method": "entropy"}, "--calib-method does not apply"),
    ({"mode": "dynamic", "calibration": 100}, "--calibration does not apply"),
    ({"mode": "weight-only", "accuracy_budget": 1.0}, "--accuracy-budget does not apply"),
    ({"group_size": 64}, "--group-size does not apply"),
    ({"mode": "weight-only", "granularity": "tensor", "group_size": 64}, "granularity channel"),
    ({"mode": "weight-only", "granularity": "tensor"}, "per channel"),
    ({"calibration": 0}, "calibration set is empty"),
    ({"mode": "fancy"}, "unknown --mode")])
def test_config_rejects_what_does_not_fit(kwargs, match):
    with pytest.raises(InputError, match=match):
        QuantConfig(**kwargs)


# --- low-bit storage -------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [1, 2, 4])
def test_pack_unpack_round_trip(bits):
    v = np.random.default_rng(bits).integers(0, 2**bits, size=1001).astype(np.uint8)
    packed = pack_bits(v, bits)
    assert len(packed) == math.ceil(1001 * bits / 8)
    assert np.array_equal(unpack_bits(packed, bits, 1001), v)


@pytest.mark.parametrize("bits,group",
                         [(4, None), (4, 64), (2, None), (1, None), (1, 32), (8, None)])
def test_packed_sizes_equal_the_computed_ones(bits, group):
    w = np.random.default_rng(0).normal(size=(24, 7, 3, 3)).astype(np.float32)  # K = 63
    t = quantize_weight(w, axis=0, bits=bits, group_size=group)
    stored = pack(t)
    n_scales = 24 * (1 if group is None else math.ceil(63 / group))
    scale_bytes = 2 if group else 4
    zp = 0 if bits == 1 else math.ceil(n_scales * bits / 8)
    expected = math.ceil(24 * 63 * bits / 8) + n_scales * scale_bytes + zp
    assert packed_nbytes(t) == sum(a.nbytes for a in stored.values()) == expected
    back = unpack(stored, bits=bits, shape=w.shape, axis=0, group_size=group)
    assert np.array_equal(dequantize_weight(back), dequantize_weight(t))
    if bits == 4 and group is None:  # 4-bit per channel: 1/8 of fp32 plus the scales
        assert packed_nbytes(t) <= 0.15 * w.nbytes


def test_lowbit_error_shrinks_with_bits_and_one_bit_is_sign_times_mean():
    w = np.random.default_rng(1).normal(size=(16, 128)).astype(np.float32)
    errs = [sqnr_db(w, dequantize_weight(quantize_weight(w, axis=0, bits=b))) for b in (1, 2, 4, 8)]
    assert errs == sorted(errs) and errs[2] > 18 and errs[3] > 40
    one = dequantize_weight(quantize_weight(w, axis=0, bits=1))
    assert np.allclose(one, np.sign(w) * np.abs(w).mean(1, keepdims=True), atol=1e-6)


# --- static int8 on ONNX Runtime -------------------------------------------------------------

def test_static_int8_runs_int8_kernels_within_budget(cnn_run, cnn_int8):
    out, rec = cnn_int8
    ok, msg = contract_ok(out)
    assert ok, msg
    assert rec["kernels"].get("QLinearConv", 0) >= 3 and rec["kernels"].get("QGemm", 0) >= 1
    assert "BatchNormalization" not in rec["kernels"]
    summary = json.loads((out / "quantize.json").read_text())
    val = summary["val_accuracy"]
    assert val["fp32"] - val["quantized"] <= 0.01 + 1e-9  # the 1-point budget, on validation
    assert rec["fidelity"]["top1_agreement"] >= 0.97
    parent = json.loads((cnn_run / "model.json").read_text())
    meta = load_run(out).meta
    dep = meta["deployment"]
    assert dep["precision"] == "int8" and dep["quantization"]["mode"] == "static"
    assert len(dep["calibration_indices_hash"]) == 16
    assert meta["provenance"]["parent"] == str(cnn_run)
    # the parent's fp32 weights are kept, tensor for tensor
    kept = load_file(str(out / "model.safetensors"))
    orig = load_file(str(cnn_run / "model.safetensors"))
    assert kept.keys() == orig.keys() and all(np.array_equal(kept[k], orig[k]) for k in kept)
    assert parent["deployment"]["precision"] == "fp32"
    # int8 weights: the ONNX file is well under half of fp32
    fp32_bytes = sum(p.numel() * 4 for p in load_run(cnn_run).build_model().parameters())
    assert rec["size_bytes"] < 0.5 * fp32_bytes


def test_export_rebuilds_the_same_int8_model(cnn_int8):
    from edgepress.export.deploy import export_run

    out, _ = cnn_int8
    before = (out / "model.onnx").read_bytes()
    (out / "model.onnx").unlink()
    path = export_run(load_run(out), "onnx")
    assert path.read_bytes() == before
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(path)).graph.node)


def test_mixed_precision_keeps_an_outlier_layer_float(tmp_path, cnn_run, digits):
    """Blow up one output channel of the first conv (×300) and shrink the matching input of the
    next (÷300): the function is unchanged (ReLU and max-pool are positively homogeneous),
    but per-tensor int8 of that layer now loses accuracy; the budget must keep it float."""
    from edgepress.checkpoint import atomic_dir, save_model

    run = load_run(cnn_run)
    m = run.build_model()
    with torch.no_grad():
        bn1, conv2 = m.features[0][1], m.features[1][0]
        bn1.weight[0] *= 300
        bn1.bias[0] *= 300
        conv2.weight[:, 0] /= 300
    src = tmp_path / "outlier"
    with atomic_dir(src) as tmp:
        save_model(tmp, m, run.meta)
    cfg = QuantConfig(mode="static", granularity="tensor", accuracy_budget=0.5)
    rec = quantize(src, cfg, out=tmp_path / "mixed", progress=False)
    summary = json.loads((tmp_path / "mixed" / "quantize.json").read_text())
    mp = summary["mixed_precision"]
    assert mp["all_int8"]["loss_pts"] > 0.5  # the search was needed
    assert mp["within_budget"] and summary["val_accuracy"]["loss_pts"] <= 0.5 + 1e-9
    floats = [f["layer"] for f in mp["float_layers"]]
    assert floats and set(floats) <= {"features.0.0", "features.1.0"}
    assert all("pts of val accuracy" in f["reason"] for f in mp["float_layers"])
    assert sorted(rec["float_layers"]) == sorted(floats)
    assert load_run(tmp_path / "mixed").meta["deployment"]["quantization"]["skip_layers"] == floats
    assert len(summary["sensitivity"]) == 4  # one row per weighted layer
    assert (tmp_path / "mixed" / "sensitivity.png").stat().st_size > 1000
    # with bias correction: layers judged without it; the build corrects every layer, the float
    # ones too (they read rounded inputs)
    bc = QuantConfig(mode="static", granularity="tensor", accuracy_budget=0.5,
                     bias_correction=True)
    quantize(src, bc, out=tmp_path / "mixed-bc", progress=False)
    summary = json.loads((tmp_path / "mixed-bc" / "quantize.json").read_text())
    floats = [f["layer"] for f in summary["mixed_precision"]["float_layers"]]
    assert summary["layers_judged_without_bias_correction"] and floats
    assert summary["bias_correction"]["skipped"] == 0
    assert summary["bias_correction"]["layers"] == 4


def test_foreign_onnx_quantizes(tmp_path, foreign_onnx):
    rec = quantize(foreign_onnx, QuantConfig(mode="static", calibration=64), out=tmp_path / "f",
                   data="digits")
    assert rec["kernels"].get("QGemm", 0) + rec["kernels"].get("QLinearMatMul", 0) == 1
    assert rec["fidelity"]["top1_agreement"] >= 0.95 and rec["fidelity"]["logit_sqnr_db"] > 25
    meta = load_run(tmp_path / "f").meta
    assert meta["architecture"]["onnx"] == str(foreign_onnx)
    assert not (tmp_path / "f" / "model.safetensors").exists()
    ok, msg = contract_ok(tmp_path / "f")
    assert ok, msg


def test_bias_correction_on_a_fixed_batch_onnx_file(tmp_path, foreign_onnx):
    """The correction feeds a model its own fixed batch (here 1); its MatMul + Add, fused into
    a Gemm by the pre-processing, has its bias corrected."""
    quantize(foreign_onnx, QuantConfig(mode="static", calibration=64, bias_correction=True),
             out=tmp_path / "f", data="digits", progress=False)
    report = json.loads((tmp_path / "f" / "quantize.json").read_text())["bias_correction"]
    assert report == {**report, "layers": 1, "skipped": 0, "images": 64}


def test_dynamic_on_linear_model_via_cli(tmp_path, mlp_run):
    assert cli_main(["quantize", str(mlp_run), "--out", str(tmp_path / "dyn"), "--mode",
                     "dynamic"]) == 0
    rec = json.loads((tmp_path / "dyn" / "metrics.json").read_text())
    assert rec["kernels"].get("DynamicQuantizeMatMul", 0) == 3
    assert rec["fidelity"]["top1_agreement"] >= 0.97
    assert load_run(tmp_path / "dyn").meta["deployment"]["calibration_indices_hash"] is None


def test_weight_only_4bit_packed_and_accurate(tmp_path, mlp_run):
    rec = quantize(mlp_run, QuantConfig(mode="weight-only", bits=4), out=tmp_path / "w4")
    parent = json.loads((mlp_run / "metrics.json").read_text())
    assert parent["accuracy"] - rec["accuracy"] <= 0.015
    n_w = 64 * 300 + 300 * 100 + 100 * 10
    n_ch = 300 + 100 + 10
    assert rec["fp32_weight_bytes"] == 4 * n_w
    assert rec["packed_weight_bytes"] == n_w // 2 + 4 * n_ch + math.ceil(n_ch * 4 / 8)
    assert rec["packed_ratio"] <= 0.15
    stored = load_file(str(tmp_path / "w4" / "model.packed.safetensors"))
    assert sum(a.nbytes for a in stored.values()) == rec["packed_weight_bytes"]
    assert rec["size_bytes"] < 0.25 * parent["size_bytes"]  # the ONNX file holds int4 codes
    # ... which ONNX Runtime decodes once, at load: the executed kernels are the fp32 ones
    assert set(rec["kernels"]) == set(parent["kernels"])
    codes = [i for i in onnx.load(str(tmp_path / "w4" / "model.onnx")).graph.initializer
             if i.data_type == onnx.TensorProto.UINT4 and i.name.endswith("_codes")]
    assert len(codes) == 3


@pytest.mark.parametrize("bits,group", [(8, None), (4, None), (4, 24), (2, None), (1, None),
                                        (1, 16)])
def test_weight_only_onnx_decodes_exactly_the_dequantized_weights(tmp_path, foreign_onnx, bits,
                                                                  group):
    import onnxruntime as ort

    from edgepress.quantize.weight_only import weight_only_onnx

    cfg = QuantConfig(mode="weight-only", bits=bits, group_size=group)
    tensors = weight_only_onnx(foreign_onnx, tmp_path / "w.onnx", cfg)
    (t,) = tensors.values()
    src = onnx.load(str(foreign_onnx))
    w = numpy_helper.to_array(src.graph.initializer[0])  # [64, 10]: channels on axis 1
    assert t.axis == 1 and t.shape == w.shape
    x = np.random.default_rng(0).random((1, 1, 8, 8), np.float32)
    out = ort.InferenceSession(str(tmp_path / "w.onnx")).run(None, {"pixels": x})[0]
    assert np.allclose(out, x.reshape(1, 64) @ dequantize_weight(t), atol=1e-5)
    assert packed_nbytes(t) <= math.ceil(w.size * bits / 8) + 10 * 8 * 2 + 64


def test_qat_fine_tunes_and_exports_int8(tmp_path, cnn_run, digits):
    with one_thread():
        rec = quantize(cnn_run, QuantConfig(mode="qat", granularity="tensor", epochs=1),
                       out=tmp_path / "qat", progress=False)
    summary = json.loads((tmp_path / "qat" / "quantize.json").read_text())
    assert summary["qat"]["folded_bn"] == 3 and len(summary["qat"]["layers"]) == 4
    assert rec["kernels"].get("QLinearConv", 0) >= 3
    # what the fake-quant model scored on validation is what ONNX Runtime's int8 model scores
    assert abs(summary["qat"]["val_accuracy_fakequant"] - summary["val_accuracy"]["quantized"]) \
        <= 0.02
    assert summary["val_accuracy"]["loss_pts"] <= 2.0
    # the weights are the fine-tuned ones, stored in the zoo layout (identity BN)
    m = load_run(tmp_path / "qat").build_model()
    bn = m.features[0][1]
    assert torch.allclose(bn.running_var + bn.eps, torch.ones_like(bn.running_var))


# --- bad input: exit 2, one line, nothing written ---------------------------------------------

def _assert_refused(capsys, out, args, match):
    code, err = run_cli(capsys, "quantize", *args, "--out", out)
    assert code == 2, err
    assert err.startswith("edgepress: error:") and err.count("\n") == 1 and match in err, err
    assert not out.exists()


def test_bad_calibration_sizes(tmp_path, capsys, mlp_run):
    _assert_refused(capsys, tmp_path / "a", [mlp_run, "--mode", "static", "--calibration", "0"],
                    "calibration set is empty")
    _assert_refused(capsys, tmp_path / "b", [mlp_run, "--mode", "static", "--calibration", "8"],
                    "smaller than one calibration batch")


def test_bits_outside_the_allowed_set(tmp_path, capsys, mlp_run):
    _assert_refused(capsys, tmp_path / "a", [mlp_run, "--mode", "weight-only", "--bits", "3"],
                    "--bits must be one of 1, 2, 4, 8")


def test_flag_that_does_not_fit_the_mode(tmp_path, capsys, mlp_run):
    _assert_refused(capsys, tmp_path / "a", [mlp_run, "--mode", "static", "--bits", "4"],
                    "int8 only")
    _assert_refused(capsys, tmp_path / "b", [mlp_run, "--mode", "dynamic", "--calib-method",
                                             "entropy"], "does not apply to --mode dynamic")


def test_already_quantized_run_and_file(tmp_path, capsys, cnn_int8):
    out, _ = cnn_int8
    _assert_refused(capsys, tmp_path / "a", [out, "--mode", "static"], "already quantized")
    _assert_refused(capsys, tmp_path / "b", [out / "model.onnx", "--mode", "dynamic", "--data",
                                             "digits"], "already quantized")


def test_nan_weights_are_refused_by_name(tmp_path, capsys, mlp_run, foreign_onnx):
    from edgepress.checkpoint import atomic_dir, save_model

    run = load_run(mlp_run)
    m = run.build_model()
    with torch.no_grad():
        m.features[2].weight[3, 1] = float("nan")
    with atomic_dir(tmp_path / "nan") as tmp:
        save_model(tmp, m, run.meta)
    _assert_refused(capsys, tmp_path / "a", [tmp_path / "nan", "--mode", "static"],
                    "features.2.weight")
    model = onnx.load(str(foreign_onnx))
    w = numpy_helper.to_array(model.graph.initializer[0]).copy()
    w[0, 0] = np.inf
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(w, "W"))
    onnx.save(model, str(tmp_path / "inf.onnx"))
    _assert_refused(capsys, tmp_path / "b", [tmp_path / "inf.onnx", "--mode", "static", "--data",
                                             "digits"], "'W'")


def test_low_bit_qat_trains_for_the_grid_that_is_deployed(tmp_path, cnn_run, digits):
    from edgepress.quantize.deploy import export_fp32
    from edgepress.quantize.evaluate import OnnxEval
    from edgepress.quantize.qat import qat_
    from edgepress.quantize.weight_only import weight_only_onnx

    model = load_run(cnn_run).build_model()
    fp32 = export_fp32(model, tmp_path / "fp32.onnx", digits.input_shape, digits)
    cfg = QuantConfig(mode="qat", bits=2, epochs=1, lr=1e-3)
    weight_only_onnx(fp32, tmp_path / "ptq.onnx", cfg)
    ptq = OnnxEval(tmp_path / "ptq.onnx").accuracy(digits.x_val, digits.y_val)
    with one_thread():
        info = qat_(model, digits, cfg, None, progress=False)
    export_fp32(model, tmp_path / "qat32.onnx", digits.input_shape, digits)
    weight_only_onnx(tmp_path / "qat32.onnx", tmp_path / "qat.onnx", cfg)
    deployed = OnnxEval(tmp_path / "qat.onnx").accuracy(digits.x_val, digits.y_val)
    assert deployed == pytest.approx(info["val_accuracy_fakequant"], abs=0.005)
    assert deployed > ptq + 0.2  # 2-bit PTQ of this cnn is near chance; QAT recovers most


def test_calibration_one_batch_at_a_time_gives_the_whole_set_minmax_ranges(tmp_path,
                                                                            foreign_onnx):
    """ONNX Runtime calibrates edgepress's reader one batch at a time (bounded memory); the
    MinMax ranges are exactly those of calibrating on the whole set at once.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantType, quantize_static

    from edgepress.quantize.ptq import _reader, extra_options, quiet, static_int8

    x = np.random.default_rng(5).normal(0, 1, (40, 1, 8, 8)).astype(np.float32)
    x[17] *= 9  # one outlier image sets the ranges: it must not be skipped by the strides
    config = QuantConfig(mode="static", granularity="tensor").resolved()
    static_int8(foreign_onnx, tmp_path / "strided.onnx", config, x, input_name="pixels",
                batch=1, cache=tmp_path / "strided.json")
    whole = {k: v for k, v in extra_options(config).items() if k != "CalibStridedMinMax"}
    with quiet():
        quantize_static(str(foreign_onnx), str(tmp_path / "whole.onnx"),
                        _reader(x, "pixels", 1), per_channel=False,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, extra_options=whole,
                        calibration_cache_path=str(tmp_path / "whole.json"))
    strided = json.loads((tmp_path / "strided.json").read_text())
    at_once = json.loads((tmp_path / "whole.json").read_text())
    assert "CalibStridedMinMax" in extra_options(config)
    assert strided.keys() == at_once.keys() and len(strided) > 1
    assert json.dumps(strided, sort_keys=True) == json.dumps(at_once, sort_keys=True)


def test_a_layer_quantized_alone_or_kept_float_takes_its_relu6(tmp_path, digits):
    """A conv quantized alone gets its clipped range, not the range of its unclipped output
    (which cost Lite0's stem 61 pts of agreement instead of 5 in the per-layer sensitivity)."""
    from edgepress.quantize.deploy import export_fp32
    from edgepress.quantize.evaluate import OnnxEval
    from edgepress.quantize.layers import find_layers
    from edgepress.quantize.ptq import preprocess, static_int8

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU6(), torch.nn.Conv2d(8, 4, 3),
                              torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 10)).eval()
    with torch.no_grad():
        net[0].weight.mul_(40.0)  # pre-activations far outside [0, 6]
    pre = tmp_path / "pre.onnx"
    preprocess(export_fp32(net, tmp_path / "fp32.onnx", (1, 8, 8), digits), pre)
    first = find_layers(onnx.load(str(pre)))[0].node
    x = OnnxEval(pre).shaped(digits.x_train[:64])
    config = QuantConfig(mode="static", granularity="tensor").resolved()
    static_int8(pre, tmp_path / "one.onnx", config, x, input_name=OnnxEval(pre).input_name,
                batch=16, only_nodes=[first])
    q = onnx.load(str(tmp_path / "one.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    conv = next(n for n in q.graph.node if n.name == first)
    qnode = next(n for n in q.graph.node if n.op_type == "QuantizeLinear"
                 and n.input[0] == conv.output[0])  # the ReLU6 folded into the output's range
    assert not any(n.op_type == "Clip" for n in q.graph.node)
    assert float(inits[qnode.input[1]]) <= 6.0 / 255 + 1e-6  # [0, 6], not the unclipped ±40
    static_int8(pre, tmp_path / "float.onnx", config, x, input_name=OnnxEval(pre).input_name,
                batch=16, exclude_nodes=[first])
    q = onnx.load(str(tmp_path / "float.onnx"))
    clip = next(n for n in q.graph.node if n.op_type == "Clip")
    conv = next(n for n in q.graph.node if n.name == first)
    assert conv.output[0] == clip.input[0]  # the float conv feeds its float ReLU6 directly,
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] == clip.input[0]
                   for n in q.graph.node)  # no rounding of the unclipped output between


def _separable(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    nn_ = torch.nn
    return nn_.Sequential(nn_.Conv2d(1, 8, 1), nn_.ReLU6(),
                          nn_.Conv2d(8, 8, 3, padding=1, groups=8), nn_.ReLU6(),
                          nn_.Conv2d(8, 4, 1), nn_.Flatten(), nn_.Linear(4 * 8 * 8, 10)).eval()


@pytest.mark.parametrize("granularity", ["channel", "tensor"])
def test_reduce_range_keeps_8_bit_depthwise_weights(tmp_path, digits, granularity):
    """Under reduce_range (x86 without VNNI) only the convolutions ONNX Runtime runs as GEMM
    lose a bit; depthwise ones keep ±127 (Lite0 on AVX2: 81.2% → 87.0% agreement), and the
    int8 kernels still compute what the QDQ graph means."""
    import onnxruntime as ort

    from edgepress.quantize.deploy import export_fp32
    from edgepress.quantize.evaluate import OnnxEval
    from edgepress.quantize.ptq import preprocess, static_int8

    pre, out = tmp_path / "pre.onnx", tmp_path / "int8.onnx"
    preprocess(export_fp32(_separable(), tmp_path / "fp32.onnx", (1, 8, 8), digits), pre)
    ev = OnnxEval(pre)
    config = QuantConfig(mode="static", granularity=granularity, reduce_range=True)
    static_int8(pre, out, config, ev.shaped(digits.x_train[:128]), input_name=ev.input_name,
                batch=16)
    q = onnx.load(str(out))
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    producer = {o: n for n in q.graph.node for o in n.output}
    codes = {}
    for n in q.graph.node:
        if n.op_type in ("Conv", "Gemm"):
            dq = producer[n.input[1]]
            group = next((a.i for a in n.attribute if a.name == "group"), 1)
            codes["dw" if group > 1 else n.name] = int(np.abs(inits[dq.input[0]]).max())
    assert codes.pop("dw") == 127
    assert len(codes) == 3 and set(codes.values()) == {64}

    x = ev.shaped(digits.x_test[:64])
    runs = []
    for level in (ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                  ort.GraphOptimizationLevel.ORT_DISABLE_ALL):  # fused kernels; QDQ in float
        so = ort.SessionOptions()
        so.graph_optimization_level = level
        s = ort.InferenceSession(str(out), so, providers=["CPUExecutionProvider"])
        runs.append(s.run(None, {ev.input_name: x})[0])
    assert sqnr_db(runs[1], runs[0]) > 30.0


def test_bias_correction_rounds_depthwise_weights_to_8_bits_under_reduce_range():
    from edgepress.quantize.equalize import correct_biases, fake_quant_weight

    net = _separable()
    dw = net[2]
    x = np.random.default_rng(0).random((32, 1, 8, 8), dtype=np.float32)
    with torch.no_grad():
        h = net[1](net[0](torch.from_numpy(x)))
        ref = dw(h)
    correct_biases(net, x, per_channel=True, reduce_range=True)
    with torch.no_grad():
        for qmax, tol in ((127, 1e-6), (64, None)):
            q = fake_quant_weight(dw.weight, per_channel=True, qmax=qmax)
            shift = (torch.nn.functional.conv2d(h, q, dw.bias, padding=1, groups=8) - ref)
            worst = float(shift.mean(dim=(0, 2, 3)).abs().max())
            if tol:
                assert worst < tol  # corrected for the ±127 weights ONNX Runtime will use
            else:
                assert worst > 1e-5  # not for ±64 ones


def test_a_layer_kept_float_between_int8_layers_stays_float_in_onnx_runtime(tmp_path, digits,
                                                                           monkeypatch):
    """ONNX Runtime's WeightBiasQuantization would quantize a float conv between QDQ pairs
    itself, per tensor (Lite0 with its first depthwise conv kept float: 53% agreement instead
    of the graph's 86%). Its own per-axis input DQ keeps it float: the kernels compute what the
    file means, and the record names the layer float."""
    import onnxruntime as ort

    from edgepress.quantize.deploy import export_fp32
    from edgepress.quantize.evaluate import OnnxEval
    from edgepress.quantize.keepfloat import runtime_float_layers
    from edgepress.quantize.layers import find_layers
    from edgepress.quantize.ptq import float_layers, preprocess, static_int8

    net = _separable()
    with torch.no_grad():  # depthwise channel ranges 0.01 to 10: one scale cannot hold both
        net[2].weight.mul_(torch.logspace(-2, 1, 8).view(8, 1, 1, 1))
    pre, out = tmp_path / "pre.onnx", tmp_path / "int8.onnx"
    preprocess(export_fp32(net, tmp_path / "fp32.onnx", (1, 8, 8), digits), pre)
    layers = find_layers(onnx.load(str(pre)))
    dw = layers[1]
    ev = OnnxEval(pre)
    config = QuantConfig(mode="static", granularity="channel", skip_layers=[dw.name])
    static_int8(pre, out, config, ev.shaped(digits.x_train[:128]), input_name=ev.input_name,
                batch=16)
    assert float_layers(out, layers) == [dw.name]
    assert runtime_float_layers(out, layers) == [dw.name]
    x = ev.shaped(digits.x_test[:64])
    runs = []
    for level in (ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                  ort.GraphOptimizationLevel.ORT_DISABLE_ALL):
        so = ort.SessionOptions()
        so.graph_optimization_level = level
        s = ort.InferenceSession(str(out), so, providers=["CPUExecutionProvider"])
        runs.append(s.run(None, {ev.input_name: x})[0])
    assert sqnr_db(runs[1], runs[0]) > 30.0

    # without the per-axis DQ, ONNX Runtime rounds the float layer per tensor on its own
    import importlib

    monkeypatch.setattr(importlib.import_module("edgepress.quantize.ptq"),
                        "protect_float_layers", lambda model: [])
    plain = tmp_path / "plain.onnx"
    static_int8(pre, plain, config, ev.shaped(digits.x_train[:128]), input_name=ev.input_name,
                batch=16)
    assert float_layers(plain, layers) == [dw.name]  # float in the file ...
    assert runtime_float_layers(plain, layers) == []  # ... but not as ONNX Runtime runs it


def test_bias_correction_on_the_quantized_graph_removes_each_layers_mean_shift(tmp_path, cnn_run,
                                                                               digits):
    """Every layer's per-channel mean output on the correction images, with the int8 layers
    before it in place, is the fp32 one after correction (up to one int32 bias code); the
    export rebuilds the corrected model byte for byte, and an ONNX parent is corrected too.
    """
    from edgepress.export.deploy import export_run
    from edgepress.quantize.biascorrect import channel_means, correction_images
    from edgepress.quantize.deploy import export_fp32
    from edgepress.quantize.layers import find_layers
    from edgepress.quantize.ptq import calibration_images, preprocess

    cfg = {"mode": "static", "granularity": "tensor", "calibration": 64}
    plain = tmp_path / "plain"
    quantize(cnn_run, QuantConfig(**cfg), out=plain, progress=False)
    fixed = tmp_path / "bc"
    quantize(cnn_run, QuantConfig(**cfg, bias_correction=True), out=fixed, progress=False)
    report = json.loads((fixed / "quantize.json").read_text())["bias_correction"]
    assert report["layers"] == 4 and report["skipped"] == 0 and report["images"] == 64
    export_fp32(load_run(cnn_run).build_model(), tmp_path / "fp32.onnx", digits.input_shape,
                digits)
    preprocess(tmp_path / "fp32.onnx", tmp_path / "pre.onnx")
    pre = onnx.load(str(tmp_path / "pre.onnx"))
    x, _ = calibration_images(digits, 64, 0, 32)
    x = correction_images(x.reshape(-1, *digits.input_shape))

    def shifts(path):
        q = onnx.load(str(path))
        nodes = {n.name: n for n in q.graph.node}
        out = []
        for ly in find_layers(pre):
            ref = channel_means(pre, [next(n for n in pre.graph.node
                                           if n.name == ly.node).output[0]], x)
            got = channel_means(q, [nodes[ly.node].output[0]], x)
            out.append(float(np.abs(next(iter(got.values())) - next(iter(ref.values()))).max()))
        return np.array(out)

    before, after = shifts(plain / "model.onnx"), shifts(fixed / "model.onnx")
    assert before.max() > 1e-3 and after.max() < 1e-4 and (after <= before).all()
    val = {k: json.loads((d / "quantize.json").read_text())["val_accuracy"]["quantized"]
           for k, d in (("plain", plain), ("bc", fixed))}
    assert val["bc"] >= val["plain"] - 0.01
    built = (fixed / "model.onnx").read_bytes()
    (fixed / "model.onnx").unlink()
    assert export_run(load_run(fixed), "onnx").read_bytes() == built
    rec = quantize(tmp_path / "fp32.onnx", QuantConfig(**cfg, bias_correction=True),
                   out=tmp_path / "onnx-bc", data="digits", progress=False)
    assert json.loads((tmp_path / "onnx-bc" / "quantize.json").read_text())[
        "bias_correction"]["layers"] == 4
    assert rec["kernels"].get("QLinearConv", 0) >= 3
