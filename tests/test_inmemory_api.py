"""The in-memory API in torchao's shape: a model and a config in, the model changed (or a
deployable artefact) out, no run directory involved."""

import numpy as np
import pytest
import torch

import edgepress
from edgepress.data import load_data
from edgepress.zoo import create_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained():
    from edgepress.training import TrainConfig, fit

    ds = load_data("digits")
    torch.manual_seed(0)
    model = create_model("lenet5", input_shape=ds.input_shape, num_classes=10)
    fit(model, ds, TrainConfig(epochs=12, lr=5e-3, batch_size=64), progress=False)
    return model.eval(), ds


def _acc(model, ds):
    from edgepress.training import accuracy

    return accuracy(model, ds.x_test, ds.y_test)


def test_prune_and_structure_in_memory(trained):
    import copy

    model, ds = trained
    m = copy.deepcopy(model)
    from edgepress.prune import FinetuneOptions

    report = edgepress.prune_(m, edgepress.PruneConfig(
        method="magnitude", sparsity=0.5, finetune=FinetuneOptions(epochs=0)), data="digits")
    assert abs(report.weight_sparsity - 0.5) < 0.02
    w = torch.cat([p.detach().flatten() for n, p in m.named_parameters() if "weight" in n])
    assert 0.45 < float((w == 0).float().mean()) < 0.55
    s = copy.deepcopy(model)
    rep = edgepress.structure_(s, edgepress.StructureConfig(method="fold"), data="digits")
    assert rep.after["params"] <= rep.before["params"]
    assert abs(_acc(s, ds) - _acc(model, ds)) < 0.01  # folding is exact


def test_quantize_in_memory_returns_a_deployable_model(trained, tmp_path):
    import onnx

    model, ds = trained
    before = {k: v.clone() for k, v in model.state_dict().items()}
    q = edgepress.quantize(model, edgepress.QuantConfig(mode="static", calibration=128),
                           data="digits")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched
    path = q.save(tmp_path / "int8.onnx")
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    logits = q.predict(ds.x_test)
    assert logits.shape == (len(ds.y_test), 10)
    acc = float((logits.argmax(1) == ds.y_test).mean())
    assert abs(acc - _acc(model, ds)) < 0.03
    assert q.report["val_accuracy"]["loss_pts"] < 3.0
    with pytest.raises(edgepress.InputError, match="needs data"):
        edgepress.quantize(model, edgepress.QuantConfig(mode="static"))


def test_distill_in_memory_trains_the_student(trained):
    teacher, ds = trained
    torch.manual_seed(1)
    student = create_model("mlp:width=0.25", input_shape=ds.input_shape, num_classes=10)
    t_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    config = edgepress.DistillConfig(epochs=15, lr=5e-3, batch_size=32)
    report = edgepress.distill(teacher, student, config, data="digits", progress=False)
    assert report["val_accuracy"] > 0.85 and _acc(student, ds) > 0.85
    assert all(torch.equal(t_before[k], v) for k, v in teacher.state_dict().items())
    assert all(p.requires_grad for p in teacher.parameters())  # left as it was
    assert np.isfinite(report["history"][-1]["val_accuracy"])
    with pytest.raises(edgepress.InputError, match="needs data= and no out="):
        edgepress.distill(teacher, student, config)
    with pytest.raises(edgepress.InputError, match="two nn.Modules"):
        edgepress.distill(teacher, "mlp", config, data="digits")
