import json
import math

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from safetensors.torch import load_file
from tests.conftest import cli, contract_ok
from torch import nn

from edgepress.checkpoint import load_run, new_meta, write_json
from edgepress.errors import InputError
from edgepress.prune import (
    AgpOptions,
    FinetuneOptions,
    PruneConfig,
    load_sparse,
    prune,
    prune_,
    save_sparse,
)
from edgepress.prune.config import L1Options
from edgepress.prune.magnitude import MagnitudeMethod
from edgepress.prune.masks import GLOBAL_MIN_KEEP, prunable_layers
from edgepress.prune.nm import nm_holds
from edgepress.prune.schedule import AGP, agp_sparsity
from edgepress.zoo import create_model

NO_FT = FinetuneOptions(epochs=0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _zeros(model):
    return {n: int((m.weight == 0).sum()) for n, m in prunable_layers(model).items()}


# --- the rules -------------------------------------------------------------------------------

def test_threshold_rule_on_the_seed_example():
    model = nn.Sequential(nn.Linear(3, 3))
    with torch.no_grad():
        model[0].weight.copy_(torch.arange(1.0, 10.0).reshape(3, 3))
        model[0].bias.copy_(torch.tensor([0.5, 1.0, 4.0]))  # biases are never pruned
    method = MagnitudeMethod(model, PruneConfig(method="magnitude", threshold=4.0, finetune=NO_FT))
    method.prepare(0)
    method.finish()
    assert model[0].weight.tolist() == [[0, 0, 0], [0, 5, 6], [7, 8, 9]]
    assert model[0].bias.tolist() == [0.5, 1.0, 4.0]


@pytest.mark.parametrize("scope", ["layer", "global"])
@pytest.mark.parametrize("sparsity", [0.3, 0.77])
def test_sparsity_hits_the_target_within_one_weight_per_layer(scope, sparsity):
    torch.manual_seed(0)
    model = create_model("mobilenet-mini", input_shape=(1, 8, 8), num_classes=10)
    bn = {n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    bn_before = {k: v.clone() for k, v in model.state_dict().items() if k.rsplit(".", 1)[0] in bn}
    MagnitudeMethod(model, PruneConfig(method="magnitude", sparsity=sparsity, scope=scope)
                    ).prepare(0)
    layers, zeros = prunable_layers(model), _zeros(model)
    n = {k: m.weight.numel() for k, m in layers.items()}
    if scope == "layer":
        assert all(abs(zeros[k] - sparsity * n[k]) <= 1 for k in n), zeros
    else:
        assert abs(sum(zeros.values()) - sparsity * sum(n.values())) <= 1
        assert len({round(zeros[k] / n[k], 2) for k in n}) > 3  # global: layers differ
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in bn_before.items())  # BN untouched


def test_global_scope_never_empties_a_layer():
    torch.manual_seed(0)
    model = create_model("mlp", input_shape=(1, 8, 8), num_classes=10)
    with torch.no_grad():
        model.classifier.weight.mul_(1e-4)  # the global ranking would take all of it
    MagnitudeMethod(model, PruneConfig(method="magnitude", sparsity=0.9, scope="global")
                    ).prepare(0)
    zeros = _zeros(model)
    n = {k: m.weight.numel() for k, m in prunable_layers(model).items()}
    kept = n["classifier"] - zeros["classifier"]
    assert kept == math.ceil(GLOBAL_MIN_KEEP * n["classifier"])  # held at the cap, not emptied
    assert sum(zeros.values()) == round(0.9 * sum(n.values()))  # the target still holds


def test_nm_pattern_holds_in_every_group():
    torch.manual_seed(0)
    model = create_model("cnn", input_shape=(1, 8, 8), num_classes=10)
    from edgepress.prune.nm import NMMethod

    method = NMMethod(model, PruneConfig(method="nm", nm="2:4"))
    method.prepare(0)
    report = method.finish()
    assert report["pattern_holds"] and "features.0.0" in report["skipped_layers"]  # 1 input
    for name in method.pruned_layers:
        w = model.get_submodule(name).weight.detach()
        groups = w.movedim(1, -1).reshape(-1, 4)
        assert ((groups != 0).sum(1) == 2).all(), name  # exactly N of every M, every group
        assert nm_holds(w, 2, 4)
    assert model.get_submodule("features.0.0").weight.count_nonzero() == 32 * 9  # left dense


def test_agp_ramps_cubically_to_the_target():
    assert agp_sparsity(0, final=0.8, end=10) == 0.0
    assert agp_sparsity(5, final=0.8, end=10) == pytest.approx(0.8 * (1 - 0.5 ** 3))
    assert agp_sparsity(10, final=0.8, end=10) == 0.8
    s = AGP(0.8, end_fraction=0.5, updates=10)
    targets = [t for step in range(101) if (t := s.target(step, 100)) is not None]
    assert targets == sorted(targets) and targets[-1] == 0.8 and len(targets) == 10
    assert s.target(60, 100) is None  # after the ramp, the masks stay


def test_sparse_storage_roundtrip_and_choice(tmp_path):
    torch.manual_seed(0)
    dense = torch.randn(64, 64)
    half = dense * (torch.rand(64, 64) > 0.5)
    rare = dense * (torch.rand(64, 64) > 0.995)
    state = {"dense": dense, "half": half, "rare": rare, "steps": torch.tensor(3)}
    info = save_sparse(tmp_path / "s.safetensors", state)
    assert info["encodings"] == {"dense": "dense", "half": "bitmask", "rare": "index",
                                 "steps": "dense"}
    back = load_sparse(tmp_path / "s.safetensors")
    assert all(torch.equal(back[k], v) for k, v in state.items())
    assert info["bytes"] < 0.8 * info["dense_bytes"]


def test_config_roundtrip_and_validation():
    configs = [
        PruneConfig(method="magnitude", sparsity=0.9, scope="global", schedule="agp",
                    skip_layers=("classifier",), agp=AgpOptions(end_fraction=0.5)),
        PruneConfig(method="magnitude", threshold=0.01),
        PruneConfig(method="l1", l1_lambda=1e-3, sparsity=0.5, l1=L1Options(cut_at=1.0)),
        PruneConfig(method="nm", nm="1:4", finetune=FinetuneOptions(epochs=3, lr=1e-3)),
        PruneConfig(method="channel", channel_ratio=0.25, importance="bn"),
    ]
    for c in configs:
        again = PruneConfig.from_dict(json.loads(json.dumps(c.to_dict())))
        assert again == c
    assert configs[3].nm_pattern == (1, 4) and configs[4].importance == "bn"
    bad = [dict(method="magnitude", sparsity=1.0), dict(method="magnitude", sparsity=-0.1),
           dict(method="nm", nm="4:4"), dict(method="nm", nm="2-4"),
           dict(method="magnitude", sparsity=0.5, channel_ratio=0.5),
           dict(method="channel", channel_ratio=0.5, sparsity=0.5),
           dict(method="channel", channel_ratio=1.0), dict(method="magnitude"),
           dict(method="magnitude", threshold=0.1, schedule="agp"),
           dict(method="l1", l1_lambda=0.0), dict(method="wavelet")]
    for kwargs in bad:
        with pytest.raises(InputError):
            PruneConfig(**kwargs)
    with pytest.raises(InputError, match="unknown pruning option"):
        PruneConfig.from_dict({"method": "nm", "ratio": 2})


# --- runs: masks through fine-tuning and export, L1, channels ---------------------------------

def _onnx_weights(path):
    m = onnx.load(str(path))
    return {i.name: numpy_helper.to_array(i) for i in m.graph.initializer
            if numpy_helper.to_array(i).ndim >= 2}


def test_masks_survive_finetuning_and_export(mlp_run, tmp_path):
    out = tmp_path / "mlp-agp"
    config = PruneConfig(method="magnitude", sparsity=0.8, scope="global", schedule="agp",
                         finetune=FinetuneOptions(epochs=3, batch_size=32))
    rec = prune(mlp_run, config, out=out, progress=False)
    parent = json.loads((mlp_run / "metrics.json").read_text())
    ok, msg = contract_ok(out)
    assert ok, msg
    n = sum(v.numel() for k, v in load_file(str(out / "model.safetensors")).items()
            if k.endswith("weight"))
    zeros = sum(int((v == 0).sum()) for k, v in load_file(str(out / "model.safetensors")).items()
                if k.endswith("weight"))
    assert zeros == round(0.8 * n)  # the fine-tuned weights still hold the final masks
    onnx_zeros = sum(int((a == 0).sum()) for a in _onnx_weights(out / "model.onnx").values())
    assert onnx_zeros == zeros  # ... and so do the ONNX initializers
    assert rec["params_nonzero"] == rec["params_total"] - zeros
    assert rec["weight_sparsity"] == pytest.approx(0.8, abs=1e-4)
    assert set(rec["layer_sparsity"]) == {"features.0", "features.2", "classifier"}
    assert rec["accuracy"] >= parent["accuracy"] - 0.06  # 80% of a tiny mlp, fine-tuned
    assert rec["fidelity"]["parent"] == str(mlp_run.resolve())
    # the sparse file is exact and, at 80% zeros, well under the dense weights
    state = load_sparse(out / "model.sparse.safetensors")
    dense = load_file(str(out / "model.safetensors"))
    assert all(torch.equal(state[k], v) for k, v in dense.items())
    assert rec["sparse_storage"]["bytes"] < 0.35 * rec["sparse_storage"]["dense_bytes"]
    meta = load_run(out).meta
    trace = [s for _, s in json.loads((out / "prune.json").read_text())["details"]
             ["schedule_trace"]]
    assert trace == sorted(trace) and len(trace) > 5 and trace[-1] == 0.8  # a real ramp
    assert meta["provenance"]["config"]["schedule"] == "agp"


def test_l1_training_drives_weights_to_zero(mlp_run, digits):
    model = load_run(mlp_run).build_model()
    small_before = sum(int((m.weight.abs() <= 1e-3).sum()) for m in prunable_layers(model).values())
    ft = FinetuneOptions(epochs=4, batch_size=32)
    report = prune_(model, PruneConfig(method="l1", l1_lambda=2e-3, finetune=ft,
                                       l1=L1Options(cut_at=1.0)), data=digits, progress=False)
    d = report.details
    n = sum(r["params"] for r in report.layers.values())
    assert d["threshold"] == 1e-3 and d["sparsity"] == pytest.approx(report.weight_sparsity)
    assert small_before / n < 0.05 and d["sparsity"] > 0.3  # the penalty did it, not the cut
    assert report.training["history"][-1]["val_accuracy"] > 0.7


@pytest.fixture(scope="module")
def conv_runs(tmp_path_factory, digits):
    """Trained cnn and mobilenet-mini runs (weights + model.json; ONNX made on demand)."""
    from edgepress.checkpoint import atomic_dir, save_model
    from edgepress.training import TrainConfig, fit

    root = tmp_path_factory.mktemp("conv")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    for name in ("cnn", "mobilenet-mini"):
        torch.manual_seed(0)
        model = create_model(name, input_shape=(1, 8, 8), num_classes=10)
        fit(model, digits, TrainConfig(epochs=4, batch_size=64, lr=4e-3), progress=False)
        meta = new_meta(zoo=name, kwargs={}, input_shape=(1, 8, 8), num_classes=10,
                        data="digits", splits=digits.splits_record())
        with atomic_dir(root / name) as tmp:
            save_model(tmp, model, meta)
    torch.set_num_threads(before)
    return root


@pytest.mark.parametrize("name", ["cnn", "mobilenet-mini"])
def test_channel_pruning_removes_channels_and_matches_onnx(conv_runs, tmp_path, name, digits):
    import onnxruntime as ort

    from edgepress.measurement.graph import count_macs, count_params
    from edgepress.training import accuracy

    parent_acc = accuracy(load_run(conv_runs / name).build_model(), digits.x_test, digits.y_test)
    out = tmp_path / f"{name}-ch50"
    config = PruneConfig(method="channel", channel_ratio=0.5, importance="l2",
                         finetune=FinetuneOptions(epochs=2, batch_size=64))
    rec = prune(conv_runs / name, config, out=out, progress=False)
    ok, msg = contract_ok(out)
    assert ok, msg
    parent_onnx = onnx.load(str(conv_runs / name / "model.onnx"))  # exported for fidelity
    assert rec["params_total"] < 0.45 * count_params(parent_onnx)[0]
    assert rec["macs"] < 0.45 * count_macs(parent_onnx, (1, 1, 8, 8))
    assert rec["accuracy"] >= parent_acc - 0.15
    run = load_run(out)
    assert run.meta["architecture"]["pruned_shapes"]
    model = run.build_model()  # reloads at the new widths
    assert [w[0] for w in run.meta["architecture"]["widths"].values()] == [
        m.weight.shape[0] for m in prunable_layers(model).values()]
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    x = digits.x_test[:64]
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.abs(sess.run(None, {sess.get_inputs()[0].name: x})[0] - ref).max() <= 1e-4


def test_lenet5_flatten_and_mlp_channel_pruning(digits):
    for name in ("lenet5", "mlp"):
        model = create_model(name, input_shape=(1, 8, 8), num_classes=10)
        before = sum(p.numel() for p in model.parameters())
        report = prune_(model, PruneConfig(method="channel", channel_ratio=0.5, finetune=NO_FT),
                        data=digits, progress=False)
        assert report.params_after < 0.4 * before
        assert model(torch.from_numpy(digits.x_test[:4])).shape == (4, 10)
        assert report.details["widths"]["classifier" if name == "mlp" else "classifier.4"][0] == 10


# --- bad input: exit 2, one line ---------------------------------------------------------------

def _fails(*args, match):
    proc = cli(*args, check=2)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgepress: error:"), proc.stderr
    assert match in lines[0], lines[0]
    return lines[0]


def test_bad_sparsity_and_nm(mlp_run, tmp_path):
    _fails("prune", mlp_run, "--out", tmp_path / "x", "--method", "magnitude", "--sparsity", "1",
           match="[0, 1)")
    _fails("prune", mlp_run, "--out", tmp_path / "x", "--method", "nm", "--nm", "4:2",
           match="N < M")
    assert not (tmp_path / "x").exists()


def test_flag_that_does_not_fit_the_method(mlp_run, tmp_path):
    _fails("prune", mlp_run, "--out", tmp_path / "x", "--method", "magnitude", "--sparsity", "0.5",
           "--channel-ratio", "0.5", match="--channel-ratio does not fit --method magnitude")
    _fails("prune", mlp_run, "--out", tmp_path / "x", "--method", "channel", "--channel-ratio",
           "0.5", "--schedule", "agp", match="--schedule does not fit --method channel")


def test_channel_ratio_that_empties_a_layer(mlp_run, tmp_path):
    _fails("prune", mlp_run, "--out", tmp_path / "x", "--method", "channel", "--channel-ratio",
           "0.999", match="would remove every channel of layer")
    assert not (tmp_path / "x").exists()


def test_plain_onnx_file_needs_a_pytorch_model(foreign_onnx, tmp_path):
    _fails("prune", foreign_onnx, "--out", tmp_path / "x", "--method", "magnitude",
           "--sparsity", "0.5", match="needs a PyTorch model")
    run = tmp_path / "onnx-run"  # a run made from an ONNX file: no safetensors
    run.mkdir()
    (run / "model.onnx").write_bytes(foreign_onnx.read_bytes())
    write_json(run / "model.json", new_meta(onnx_source=str(foreign_onnx), input_shape=(1, 8, 8),
                                            num_classes=10, data="digits"))
    _fails("prune", run, "--out", tmp_path / "x", "--method", "nm", match="needs a PyTorch model")


def test_sensitivity_scan_cli(mlp_run, tmp_path):
    out = tmp_path / "scan"
    cli("sensitivity", mlp_run, "--out", out, "--sparsities", "0,0.5,0.99", check=0)
    scan = json.loads((out / "sensitivity.json").read_text())
    assert [r["layer"] for r in scan["layers"]] == ["features.0", "features.2", "classifier"]
    for row in scan["layers"]:
        assert row["accuracy"][0] == scan["baseline"]  # 0% pruned: unchanged
        assert row["accuracy"][2] < scan["baseline"]   # 99% of one layer hurts
    assert (out / "sensitivity.png").read_bytes()[:4] == b"\x89PNG"
    assert "| features.0 |" in (out / "sensitivity.md").read_text()


# --- data-driven ranking and least-squares re-fit (prune --reconstruct) ----------------------

def test_refit_recovers_what_the_kept_inputs_can_predict():
    """Inputs 4–5 are exact linear mixes of inputs 0–3 (plus a constant): after removing them
    the re-fitted layer gives exactly what the full one gave; a plain cut does not.
    """
    from edgepress.prune.reconstruct import Moments, refit_

    g = torch.Generator().manual_seed(0)
    base = torch.randn(512, 4, generator=g)
    x = torch.cat([base, base[:, :2] @ torch.tensor([[1.0, -2.0], [0.5, 3.0]]) + 0.7], dim=1)
    full = nn.Linear(6, 3)
    model = nn.Sequential(full).eval()
    mom = Moments.collect(model, x, second=True)
    keep = [0, 1, 2, 3]
    cut = nn.Linear(4, 3)
    with torch.no_grad():
        cut.weight.copy_(full.weight[:, keep])
        cut.bias.copy_(full.bias)
        ref, plain = full(x), cut(x[:, keep])
    refit_(cut, full.weight.detach(), full.bias.detach(), mom.second["0"], keep, [0, 1, 2])
    with torch.no_grad():
        fitted = cut(x[:, keep])
    assert (plain - ref).abs().max() > 0.1
    assert (fitted - ref).abs().max() <= 1e-4


def test_reconstruct_keeps_more_of_the_function_than_a_plain_cut(conv_runs, digits):
    """cnn on digits, 50% of channels removed, no fine-tuning: the data ranking with the
    least-squares re-fit agrees with the unpruned model far more often than the l2 cut.
    """
    parent = load_run(conv_runs / "cnn").build_model()
    x = torch.from_numpy(digits.x_test)
    with torch.no_grad():
        ref = parent(x).argmax(1)
    agreement = {}
    for importance, reconstruct in (("l2", False), ("data", False), ("data", True)):
        model = load_run(conv_runs / "cnn").build_model()
        report = prune_(model, PruneConfig(method="channel", channel_ratio=0.5,
                                           importance=importance, reconstruct=reconstruct,
                                           finetune=NO_FT), data=digits, progress=False)
        with torch.no_grad():
            agreement[(importance, reconstruct)] = float((model(x).argmax(1) == ref).float().mean())
        if reconstruct:
            assert report.details["refitted_layers"] and report.details["calibration_images"] > 0
            assert any(m.bias is not None for m in prunable_layers(model).values())
    assert agreement[("data", True)] >= agreement[("l2", False)] + 0.1, agreement
    assert agreement[("data", True)] >= 0.8, agreement


def test_a_reconstructed_run_reloads_with_its_new_biases(conv_runs, tmp_path, digits):
    out = tmp_path / "rc"
    rec = prune(conv_runs / "mobilenet-mini", PruneConfig(
        method="channel", channel_ratio=0.5, importance="data", reconstruct=True,
        finetune=NO_FT), out=out, progress=False)
    model = load_run(out).build_model()
    import onnxruntime as ort

    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    x = digits.x_test[:32]
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.abs(sess.run(None, {sess.get_inputs()[0].name: x})[0] - ref).max() <= 1e-4
    assert rec["pruning"]["reconstruct"] is True and rec["pruning"]["refitted_layers"]


def test_reconstruct_does_not_fit_other_methods(mlp_run, tmp_path):
    _fails("prune", mlp_run, "--out", tmp_path / "x", "--method", "magnitude", "--sparsity",
           "0.5", "--reconstruct", match="--reconstruct does not fit --method magnitude")
