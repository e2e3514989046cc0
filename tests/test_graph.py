"""Parameters and MACs read from ONNX graphs (issue 16, items 4 and 5).

The deployed models are built with the library's own exporters (fp32, static int8, dynamic int8,
weight-only 4/2 bits, per channel and per group) and checked against what ONNX Runtime decodes;
the MAC rules against hand-built graphs with hand-computed counts.
"""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from edgepress.measurement.graph import count_macs, count_params, mac_report
from edgepress.quantize import QuantConfig
from edgepress.quantize.deploy import build_quantized, export_fp32
from edgepress.zoo import create_model

F = TensorProto.FLOAT
MLP_DIGITS = 64 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10  # LeNet-300-100 on 8×8
DEPLOYMENTS = {
    "int8": QuantConfig(mode="static"),
    "dynamic": QuantConfig(mode="dynamic"),
    "w4": QuantConfig(mode="weight-only", bits=4),
    "w4-group": QuantConfig(mode="weight-only", bits=4, group_size=32),  # 300 = 9·32 + 12
    "w2": QuantConfig(mode="weight-only", bits=2),
}


def _deploy(name, digits, out, kinds):
    torch.manual_seed(0)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = create_model(name, input_shape=digits.input_shape, num_classes=10).eval()
        for bn in model.modules():  # trained-like BN: folding it gives each conv a bias
            if isinstance(bn, torch.nn.BatchNorm2d):
                torch.nn.init.normal_(bn.bias, 0, 0.1)
                torch.nn.init.normal_(bn.running_mean, 0, 0.1)
        paths = {"fp32": export_fp32(model, out / f"{name}.onnx", digits.input_shape, digits)}
        for kind in kinds:
            work = out / f"{name}-{kind}"
            work.mkdir()
            paths[kind] = out / f"{name}-{kind}.onnx"
            build_quantized(paths["fp32"], paths[kind], DEPLOYMENTS[kind].resolved(), digits, work)
    finally:
        torch.set_num_threads(before)
    return model, paths


@pytest.fixture(scope="module")
def mlp_files(tmp_path_factory, digits):
    return _deploy("mlp", digits, tmp_path_factory.mktemp("mlp"), DEPLOYMENTS)[1]


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory, digits):
    return _deploy("mobilenet-mini", digits, tmp_path_factory.mktemp("mnet"), ["int8", "w4"])


def _decoded(path, shape=(1, 1, 8, 8)):
    """``(elements, non-zero)`` of the Conv/Gemm/MatMul weights and biases as ONNX Runtime
    decodes them (no graph optimisation: each weight input made a graph output).
    """
    m = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    names = {i for n in m.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")
             for i in n.input[1:3] if i}
    arrays = [inits[n] for n in names if n in inits]
    computed = sorted(names - set(inits))
    if computed:
        m.graph.output.extend(helper.make_tensor_value_info(n, F, None) for n in computed)
        sess = _session(m)
        arrays += sess.run(computed, {sess.get_inputs()[0].name: np.zeros(shape, np.float32)})
    return sum(a.size for a in arrays), sum(int(np.count_nonzero(a)) for a in arrays)


def _session(model):
    """An ONNX Runtime session that runs ``model`` as written (no fusions, no folding)."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _model(nodes, inputs, outputs, inits=(), opset=17, **kw):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], **kw)


def _const(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


# --- item 4: parameters are weights ----------------------------------------------------------


def test_mlp_params_are_the_same_in_every_deployment(mlp_files):
    assert count_params(onnx.load(str(mlp_files["fp32"]))) == (MLP_DIGITS, MLP_DIGITS)
    for kind, path in mlp_files.items():
        total, nonzero = count_params(onnx.load(str(path)))
        assert total == MLP_DIGITS, kind
        if kind != "dynamic":  # its weights feed MatMulInteger, not a decoded float tensor
            assert (total, nonzero) == _decoded(path), kind
        assert 0.5 * total < nonzero <= total, kind


def test_quantized_codes_at_the_zero_point_are_zeros(mlp_files):
    w4 = count_params(onnx.load(str(mlp_files["w4"])))[1]
    w2 = count_params(onnx.load(str(mlp_files["w2"])))[1]
    assert w2 < w4 < MLP_DIGITS  # coarser codes round more small weights to the zero point


def test_mobilenet_params_skip_relu6_bounds(mobilenet):
    model, paths = mobilenet
    layers = (torch.nn.Conv2d, torch.nn.Linear)
    weights = sum(p.numel() for m in model.modules() if isinstance(m, layers)
                  for p in m.parameters(recurse=False))
    weights += sum(m.num_features for m in model.modules()  # the biases BN folds into
                   if isinstance(m, torch.nn.BatchNorm2d))
    fp32 = onnx.load(str(paths["fp32"]))
    assert any(n.op_type == "Clip" for n in fp32.graph.node)
    for kind, path in paths.items():
        total, nonzero = count_params(onnx.load(str(path)))
        assert total == weights, kind
        assert (total, nonzero) == _decoded(path), kind


def test_relu6_clip_bounds_are_not_parameters():
    rng = np.random.default_rng(0)
    inits = [_const("W", rng.normal(size=(4, 1, 3, 3)).astype(np.float32)),
             _const("B", np.zeros(4, np.float32)),
             _const("lo", np.float32(0)), _const("hi", np.float32(6)),
             _const("W2", rng.normal(size=(4 * 36, 10)).astype(np.float32))]
    model = _model(
        [helper.make_node("Conv", ["x", "W", "B"], ["c"]),
         helper.make_node("Clip", ["c", "lo", "hi"], ["r"]),
         helper.make_node("Flatten", ["r"], ["f"]),
         helper.make_node("MatMul", ["f", "W2"], ["y"])],
        [helper.make_tensor_value_info("x", F, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("y", F, [1, 10])], inits)
    assert count_params(model) == (36 + 4 + 1440, 36 + 1440)  # the bias is zero
    assert mac_report(model, (1, 1, 8, 8)) == (36 * 4 * 9 + 144 * 10, [])


def test_weight_only_gemm_counts_its_logical_weights():
    """A 10×100 Gemm weight stored as uint4 codes, per-row scale and zero point."""
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 16, (10, 100)).astype(np.uint8)
    zero = np.full((10, 1), 8, np.uint8)
    inits = [helper.make_tensor("codes", TensorProto.UINT4, [10, 100], codes.ravel().tolist()),
             helper.make_tensor("zero", TensorProto.UINT4, [10, 1], zero.ravel().tolist()),
             _const("scale", np.full((10, 1), 0.1, np.float32)),
             _const("shape", np.array([10, 100], np.int64)),
             _const("bias", np.ones(10, np.float32))]
    nodes = [helper.make_node("Cast", ["codes"], ["cf"], to=F),
             helper.make_node("Cast", ["zero"], ["zf"], to=F),
             helper.make_node("Sub", ["cf", "zf"], ["c"]),
             helper.make_node("Mul", ["c", "scale"], ["m"]),
             helper.make_node("Reshape", ["m", "shape"], ["w"]),
             helper.make_node("Gemm", ["x", "w", "bias"], ["y"], transB=1)]
    model = _model(nodes, [helper.make_tensor_value_info("x", F, [1, 100])],
                   [helper.make_tensor_value_info("y", F, [1, 10])], inits, opset=21)
    assert count_params(model) == (1010, int(np.count_nonzero(codes != 8)) + 10)
    assert count_macs(model, (1, 100)) == 1000


def test_blocked_int4_dequantize_linear():
    rng = np.random.default_rng(2)
    codes = rng.integers(-8, 8, (100, 10))
    zero = rng.integers(-2, 3, (4, 10))  # blocks of 32 along K = 100
    inits = [helper.make_tensor("q", TensorProto.INT4, [100, 10], codes.ravel().tolist()),
             helper.make_tensor("zp", TensorProto.INT4, [4, 10], zero.ravel().tolist()),
             _const("s", np.full((4, 10), 0.5, np.float32))]
    model = _model([helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["w"], axis=0,
                                     block_size=32),
                    helper.make_node("MatMul", ["x", "w"], ["y"])],
                   [helper.make_tensor_value_info("x", F, [1, 100])],
                   [helper.make_tensor_value_info("y", F, [1, 10])], inits, opset=21)
    expected = int(np.count_nonzero(codes != np.repeat(zero, 32, axis=0)[:100]))
    assert count_params(model) == (1000, expected)


def _nbits(bits, symmetric, fmt="QOperator"):
    from onnxruntime.quantization import QuantFormat
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    w = np.random.default_rng(3).normal(size=(40, 24)).astype(np.float32)
    w[:, :3] = 0
    fp = _model([helper.make_node("MatMul", ["a", "W"], ["y"])],
                [helper.make_tensor_value_info("a", F, ["M", 40])],
                [helper.make_tensor_value_info("y", F, ["M", 24])], [_const("W", w)], opset=21,
                ir_version=10)
    q = MatMulNBitsQuantizer(fp, bits=bits, block_size=16, is_symmetric=symmetric,
                             quant_format=getattr(QuantFormat, fmt))
    q.process()
    return q.model.model


@pytest.mark.parametrize(("bits", "symmetric", "fmt"),
                         [(4, False, "QOperator"), (4, True, "QOperator"), (8, False, "QOperator"),
                          (2, False, "QOperator"), (4, False, "QDQ")])
def test_onnxruntime_block_quantized_matmul(bits, symmetric, fmt):
    """ONNX Runtime's own 4-bit packer (K = 40: the last block of 16 is padded): N·K logical
    weights, the non-zero ones as ONNX Runtime dequantizes them (A = I gives the weight).
    """
    model = _nbits(bits, symmetric, fmt)
    assert {n.op_type for n in model.graph.node} & {"MatMulNBits", "DequantizeLinear"}
    w = _session(model).run(None, {"a": np.eye(40, dtype=np.float32)})[0]
    assert count_params(model) == (40 * 24, int(np.count_nonzero(w)))
    assert mac_report(model, (3, 40)) == (3 * 40 * 24, [])


def test_bias_added_after_a_matmul_is_a_parameter(foreign_onnx):
    assert count_params(onnx.load(str(foreign_onnx))) == (650, 640)  # its bias is all zeros


# --- item 5: MACs are counted or flagged -----------------------------------------------------


def _computed_reshape(shape_input=False):
    """x [N, 12800] → Reshape to a computed [N, 8, 40, 40] → Conv 8→1 3×3 (40·40·72 MACs).

    The target's tail is a Slice whose end is computed (a Div): ONNX shape inference loses its
    length, so the Reshape output and the Conv output have no known rank.
    """
    inits = [_const("W", np.ones((1, 8, 3, 3), np.float32)), _const("i0", np.int64(0)),
             _const("ax0", np.array([0], np.int64)), _const("chw", np.array([8, 40, 40])),
             _const("six", np.array([6])), _const("two", np.array([2]))]
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "i0"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"]),
             helper.make_node("Div", ["six", "two"], ["end"]),
             helper.make_node("Slice", ["chw", "ax0", "end"], ["tail"]),
             helper.make_node("Concat", ["n1", "tail"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "given" if shape_input else "target"], ["x4"]),
             helper.make_node("Conv", ["x4", "W"], ["y"], pads=[1, 1, 1, 1], name="conv")]
    inputs = [helper.make_tensor_value_info("x", F, ["N", 12800])]
    if shape_input:
        inputs.append(helper.make_tensor_value_info("given", TensorProto.INT64, [4]))
    return _model(nodes, inputs, [helper.make_tensor_value_info("y", F, None)], inits)


def test_conv_after_a_computed_reshape_is_counted():
    """Before: the Conv output of unknown rank was taken as a scalar: 72 MACs instead of 115,200."""
    model = _computed_reshape()
    assert mac_report(model, (1, 12800)) == (1600 * 8 * 9, [])
    assert count_macs(model, (1, 12800)) == 115_200


def test_conv_of_unknown_shape_is_flagged_not_guessed():
    model = _computed_reshape(shape_input=True)  # the target is a graph input: unknowable
    model.graph.node.insert(0, helper.make_node("MatMul", ["x", "M"], ["side"]))
    model.graph.initializer.append(_const("M", np.ones((12800, 2), np.float32)))
    model.graph.output.append(helper.make_tensor_value_info("side", F, None))
    assert mac_report(model, (1, 12800)) == (12800 * 2, ["conv"])
    assert count_macs(model, (1, 12800)) == 25_600


def test_batch_left_out_of_the_input_shape_is_one(mlp_files):
    model = onnx.load(str(mlp_files["fp32"]))
    assert mac_report(model, (1, 8, 8)) == mac_report(model, (1, 1, 8, 8)) == (50_200, [])


def test_deployed_models_have_the_fp32_macs(mlp_files, mobilenet):
    for paths in (mlp_files, mobilenet[1]):
        reports = {k: mac_report(onnx.load(str(p)), (1, 1, 8, 8)) for k, p in paths.items()}
        assert all(r == reports["fp32"] for r in reports.values()), reports
        assert reports["fp32"][1] == []


def _recurrent(op, gates, directions, seq=5, size=10, hidden=20, layout=0):
    x = [seq, 1, size] if layout == 0 else [1, seq, size]
    rng = np.random.default_rng(4)
    inits = [_const("W", rng.normal(size=(directions, gates * hidden, size)).astype(np.float32)),
             _const("R", rng.normal(size=(directions, gates * hidden, hidden)).astype(np.float32)),
             _const("B", np.ones((directions, 2 * gates * hidden), np.float32))]
    node = helper.make_node(op, ["x", "W", "R", "B"], ["y"], hidden_size=hidden, layout=layout,
                            direction="bidirectional" if directions == 2 else "forward")
    return _model([node], [helper.make_tensor_value_info("x", F, x)],
                  [helper.make_tensor_value_info("y", F, None)], inits, opset=14)


def test_lstm_and_gru_macs():
    # per step and direction: gates · hidden · (input + hidden) = gates · 20 · 30
    lstm = _recurrent("LSTM", 4, 2)
    assert mac_report(lstm, (5, 1, 10)) == (5 * 2 * 4 * 20 * 30, [])
    assert count_params(lstm) == (2 * 80 * 10 + 2 * 80 * 20 + 2 * 160,) * 2
    assert mac_report(_recurrent("GRU", 3, 1), (5, 1, 10)) == (5 * 3 * 20 * 30, [])
    assert mac_report(_recurrent("GRU", 3, 1, layout=1), (1, 5, 10)) == (5 * 3 * 20 * 30, [])
    assert mac_report(_recurrent("LSTM", 4, 1), (7, 1, 10))[0] == 7 * 4 * 20 * 30


def test_einsum_macs():
    def einsum(eq, *shapes):
        names = [f"i{k}" for k in range(len(shapes))]
        return _model([helper.make_node("Einsum", names, ["y"], equation=eq)],
                      [helper.make_tensor_value_info(f"i{k}", F, s) for k, s in enumerate(shapes)],
                      [helper.make_tensor_value_info("y", F, None)], opset=12)

    assert mac_report(einsum("bij,bjk->bik", [2, 3, 4], [2, 4, 5]), (2, 3, 4)) == (120, [])
    assert mac_report(einsum("...ij,jk->...ik", [2, 3, 4], [4, 5]), (2, 3, 4)) == (120, [])
    assert mac_report(einsum("ij->ji", [3, 4]), (3, 4)) == (0, [])  # no multiplies
    w = _const("i1", np.ones((4, 6), np.float32))
    m = einsum("ij,jk->ik", [1, 4], [4, 6])
    m.graph.input.pop()
    m.graph.initializer.append(w)
    assert count_params(m) == (24, 24) and mac_report(m, (1, 4)) == (24, [])


def test_matmul_nbits_macs_from_its_attributes():
    n, k, block = 24, 64, 32
    inits = [_const("B", np.full((n, k // block, block // 2), 0x98, np.uint8)),  # codes 8, 9
             _const("S", np.ones((n, k // block), np.float32))]
    node = helper.make_node("MatMulNBits", ["a", "B", "S"], ["y"], domain="com.microsoft", K=k,
                            N=n, bits=4, block_size=block)
    model = _model([node], [helper.make_tensor_value_info("a", F, [1, 7, k])],
                   [helper.make_tensor_value_info("y", F, None)], inits)
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    assert mac_report(model, (1, 7, k)) == (7 * n * k, [])
    assert count_params(model) == (n * k, n * k // 2)  # code 8 is the default zero point


def test_mac_nodes_inside_control_flow_are_flagged():
    branch = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["z"])], "b", [],
                               [helper.make_tensor_value_info("z", F, None)])
    node = helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch, name="if")
    model = _model([node], [helper.make_tensor_value_info("c", TensorProto.BOOL, []),
                            helper.make_tensor_value_info("x", F, [1, 4])],
                   [helper.make_tensor_value_info("y", F, None)],
                   [_const("W", np.ones((4, 2), np.float32))])
    assert mac_report(model, ()) == (0, ["if"])
