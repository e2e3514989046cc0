import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from tests.conftest import cli, contract_ok
from torch import nn

import edgepress.produce as produce
from edgepress.checkpoint import atomic_dir, load_run, new_meta, save_model
from edgepress.errors import InputError
from edgepress.prune import FinetuneOptions, PruneConfig, prune_
from edgepress.prune.channel import widths
from edgepress.structure import (
    StructureConfig,
    factorise,
    fold_bn_,
    kmeans_1d,
    merge_,
    replay_,
    structure,
    structure_,
)
from edgepress.structure.config import METHODS
from edgepress.structure.stats import count_macs
from edgepress.training import TrainConfig, fit
from edgepress.zoo import create_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _trained(name, digits, epochs):
    torch.manual_seed(0)
    model = create_model(name, input_shape=digits.input_shape, num_classes=10)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    fit(model, digits, TrainConfig(epochs=epochs, batch_size=64, lr=5e-3), progress=False)
    torch.set_num_threads(before)
    return model


def _save_run(path, name, model, digits, **arch):
    """A parent run directory (weights + model.json; no ONNX or metrics needed)."""
    meta = new_meta(zoo=name, kwargs={}, input_shape=digits.input_shape, num_classes=10,
                    data="digits", splits=digits.splits_record())
    meta["architecture"].update(arch)
    with atomic_dir(path) as tmp:
        save_model(tmp, model, meta)
    return path


@pytest.fixture(scope="module")
def mlp_parent(tmp_path_factory, digits):
    model = _trained("mlp", digits, 4)
    return _save_run(tmp_path_factory.mktemp("structure") / "mlp", "mlp", model, digits)


@pytest.fixture(scope="module")
def mobilenet_parent(tmp_path_factory, digits):
    model = _trained("mobilenet-mini", digits, 2)
    return _save_run(tmp_path_factory.mktemp("structure") / "mnm", "mobilenet-mini", model,
                     digits)


def _logits(model, x):
    with torch.no_grad():
        return model.eval()(torch.from_numpy(x))


def _max_diff(a, b, x):
    return float((_logits(a, x) - _logits(b, x)).abs().max())


def _randomise_bn(model):
    """Non-trivial BN statistics and affines, so folding has something to fold."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) * 2 - 1)
                m.running_var.copy_(torch.rand(n, generator=gen) * 3 + 0.1)
                m.weight.copy_(torch.rand(n, generator=gen) * 2 + 0.2)
                m.bias.copy_(torch.rand(n, generator=gen) - 0.5)


def _n_bn(model):
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def _reloaded_like(name, model, transforms, digits):
    """A fresh zoo model with the transforms replayed and ``model``'s weights loaded."""
    fresh = create_model(name, input_shape=digits.input_shape, num_classes=10)
    replay_(fresh, transforms)
    fresh.load_state_dict(model.state_dict(), strict=True)
    return fresh.eval()


# --- configuration -----------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_config_round_trips_and_fills_defaults(method):
    c = StructureConfig(method=method)
    assert StructureConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert (c.finetune_epochs is None) == (method in ("fold", "merge"))
    assert {"lowrank": c.energy, "drop-blocks": c.blocks, "cluster": c.bits}.get(method, 1)


@pytest.mark.parametrize("opts, words", [
    (dict(method="lowrank", rank=0), "--rank must be an integer >= 1"),
    (dict(method="lowrank", rank=4, energy=0.5), "not both"),
    (dict(method="lowrank", energy=1.5), "--energy must be in (0, 1]"),
    (dict(method="cluster", bits=0), "--bits must be in 1..8"),
    (dict(method="fold", finetune_epochs=2), "--finetune-epochs does not fit --method fold"),
    (dict(method="lowrank", bits=4), "--bits does not fit --method lowrank"),
    (dict(method="drop-blocks", blocks=1, block_names=("blocks.0",)), "not both"),
    (dict(method="prune"), "unknown structure method"),
])
def test_config_rejects(opts, words):
    with pytest.raises(InputError, match=None) as e:
        StructureConfig(**opts)
    assert words in str(e.value)


# --- fold --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["cnn", "mobilenet-mini"])
def test_fold_matches_unfolded_and_replays(name, digits):
    torch.manual_seed(0)
    model = create_model(name, input_shape=digits.input_shape, num_classes=10)
    _randomise_bn(model)
    ref = create_model(name, input_shape=digits.input_shape, num_classes=10)
    ref.load_state_dict(model.state_dict())
    n_bn = _n_bn(model)
    pairs = fold_bn_(model)
    assert len(pairs) == n_bn > 0 and _n_bn(model) == 0
    assert _max_diff(model, ref.eval(), digits.x_val) <= 1e-5
    again = _reloaded_like(name, model, [{"kind": "fold", "pairs": pairs}], digits)
    assert _max_diff(again, model, digits.x_val) == 0.0


# --- low-rank ----------------------------------------------------------------------------------

@pytest.mark.parametrize("layer", [nn.Linear(64, 30), nn.Conv2d(6, 10, 3, stride=2, padding=1)])
def test_full_rank_svd_reproduces_the_layer(layer):
    torch.manual_seed(0)
    x = torch.randn(5, 64) if isinstance(layer, nn.Linear) else torch.randn(5, 6, 9, 9)
    w = layer.weight.reshape(layer.weight.shape[0], -1)
    pair = factorise(layer, rank=min(w.shape))
    with torch.no_grad():
        assert float((pair(x) - layer(x)).abs().max()) <= 1e-5
    if isinstance(layer, nn.Conv2d):
        assert pair[1].kernel_size == (1, 1) and pair[0].stride == (2, 2)


def test_lowrank_cuts_exactly_the_expected_parameters(digits):
    model = _trained("mlp", digits, 0)
    cfg = StructureConfig(method="lowrank", rank=8, skip_layers=("classifier",), finetune_epochs=0)
    r = structure_(model, cfg, data=digits, progress=False)
    expected = (64 * 300 - 8 * (64 + 300)) + (300 * 100 - 8 * (300 + 100))
    assert r.before["params"] - r.after["params"] == expected
    assert r.after["macs"] == r.before["macs"] - expected
    assert r.transform == {"kind": "lowrank", "ranks": {"features.0": 8, "features.2": 8}}
    assert "classifier" not in r.details["layers"]


def test_lowrank_energy_keeps_the_energy_and_skips_layers_that_would_grow(digits):
    model = _trained("mlp", digits, 1)
    r = structure_(model, StructureConfig(method="lowrank", energy=0.5, finetune_epochs=0),
                   data=digits, progress=False)
    rows = r.details["layers"]
    assert all(row["energy_kept"] >= 0.5 for row in rows.values())
    for row in rows.values():
        m, n = row["matrix"]
        assert row["factorised"] == (row["rank"] * (m + n) < m * n)
    high = structure_(_trained("mlp", digits, 1), StructureConfig(
        method="lowrank", energy=1.0, finetune_epochs=0), data=digits, progress=False)
    assert high.transform is None and "would not reduce" in high.details["layers"]["classifier"][
        "skipped"]


def test_lowrank_rank_not_below_min_dim_is_input_error(digits):
    model = _trained("mlp", digits, 0)
    with pytest.raises(InputError, match="must be < min"):
        structure_(model, StructureConfig(method="lowrank", rank=10, finetune_epochs=0),
                   data=digits, progress=False)


# --- merge -------------------------------------------------------------------------------------

def test_lowrank_then_merge_reproduces_the_product(digits):
    model = _trained("mlp", digits, 1)
    structure_(model, StructureConfig(method="lowrank", rank=6, skip_layers=("classifier",),
                                      finetune_epochs=0), data=digits, progress=False)
    a, b = model.features[0][0].weight.detach(), model.features[0][1].weight.detach()
    before = _logits(model, digits.x_val)
    r = structure_(model, StructureConfig(method="merge"), data=digits, progress=False)
    assert [p["layers"] for p in r.details["merged"]] == [["features.0.0", "features.0.1"],
                                                          ["features.2.0", "features.2.1"]]
    assert float((model.features[0][0].weight.detach() - b @ a).abs().max()) <= 1e-6
    assert float((_logits(model, digits.x_val) - before).abs().max()) <= 1e-5
    # merging the factors back gives the full matrix: more parameters, honestly reported
    assert r.after["params"] - r.before["params"] == (64 * 300 - 6 * 364) + (300 * 100 - 6 * 400)
    again = structure_(model, StructureConfig(method="merge"), data=digits, progress=False)
    assert again.details["nothing_to_merge"] and again.transform is None
    assert again.message.startswith("nothing to merge")


@pytest.mark.parametrize("name", ["mlp", "cnn", "mobilenet-mini"])
def test_merge_on_zoo_models_finds_nothing(name, digits):
    model = create_model(name, input_shape=digits.input_shape, num_classes=10)
    r = merge_(model)
    assert r["nothing_to_merge"] and r["ops"] == []


class _Chain(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.Dropout(0.5), nn.Conv2d(8, 4, 1), nn.Identity(),
            nn.ReLU(), nn.Conv2d(4, 6, 1), nn.Conv2d(6, 5, 3, padding=0), nn.ReLU())
        self.drop = nn.Dropout(0.3)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(5 * 6 * 6, 32), nn.Linear(32, 10))

    def forward(self, x):
        return self.head(self.drop(self.body(x)))


def test_merge_removes_noops_and_merges_convs_and_linears(digits):
    torch.manual_seed(0)
    model, ref = _Chain().eval(), _Chain().eval()
    ref.load_state_dict(model.state_dict())
    r = merge_(model)
    assert sorted(r["removed"]) == ["body.1", "body.3", "drop"]
    kinds = {p["kind"] for p in r["merged"]}
    assert kinds == {"pointwise_after", "pointwise_before", "linear"}
    assert isinstance(model.drop, nn.Identity)
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 2
    assert sum(isinstance(m, nn.Linear) for m in model.modules()) == 1
    assert _max_diff(model, ref, digits.x_val) <= 1e-5
    again = _Chain()
    replay_(again, [{"kind": "merge", "ops": r["ops"]}])
    again.load_state_dict(model.state_dict(), strict=True)
    assert _max_diff(again, model, digits.x_val) == 0.0


# --- clustering --------------------------------------------------------------------------------

def test_kmeans_uses_linear_initialisation():
    w = torch.tensor([-1.0, -0.9, 0.0, 0.1, 0.95, 1.0])
    c, idx = kmeans_1d(w, 3)
    assert torch.allclose(c, torch.tensor([-0.95, 0.05, 0.975])) and idx.tolist() == [
        0, 0, 1, 1, 2, 2]


def test_cluster_leaves_at_most_k_values_per_layer_and_keeps_pruned_zeros(digits):
    model = _trained("mlp", digits, 3)
    prune_(model, PruneConfig(method="magnitude", sparsity=0.6,
                              finetune=FinetuneOptions(epochs=0)), data=digits, progress=False)
    zeros = {n: (m.weight == 0).clone() for n, m in model.named_modules()
             if isinstance(m, nn.Linear)}
    cfg = StructureConfig(method="cluster", bits=2, finetune_epochs=1, train_subset=512)
    r = structure_(model, cfg, data=digits, progress=False)
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            w = m.weight.detach()
            assert torch.equal(w == 0, zeros[name]), name  # the pruned zeros, and only those
            assert torch.unique(w[w != 0]).numel() <= 4, name
    assert r.details["max_distinct_nonzero"] <= 4
    assert r.training["history"] and r.after["val_accuracy"] > 0.5


# --- run directories ---------------------------------------------------------------------------

@pytest.fixture
def fast_measure(monkeypatch):
    """Skip the latency / memory / kernel measurement (seconds per run on a loaded machine):
    these tests are about structure and reloading; the record keeps the ONNX graph's counts."""
    from edgepress.checkpoint import write_json
    from edgepress.measurement.graph import count_macs, count_params, load_onnx

    def quick(tmp, final, timed=True):
        graph = load_onnx(tmp / "model.onnx")
        params, nonzero = count_params(graph)
        rec = {"variant": final.name, "macs": count_macs(graph, (1, 1, 8, 8)),
               "params_total": params, "params_nonzero": nonzero}
        write_json(tmp / "metrics.json", rec)
        return rec

    monkeypatch.setattr(produce, "measure_in_place", quick)


def _onnx_logits(run, x):
    sess = ort.InferenceSession(str(run / "model.onnx"), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def test_merge_through_the_cli_says_nothing_to_merge(mlp_parent, tmp_path):
    out = tmp_path / "merged"
    proc = cli("structure", mlp_parent, "--out", out, "--method", "merge", "--no-progress",
               check=0)
    assert "nothing to merge" in proc.stdout
    rep = json.loads((out / "structure.json").read_text())
    assert rep["details"]["nothing_to_merge"] and rep["transform"] is None
    assert rep["after"]["params"] == rep["before"]["params"]
    assert rep["after"]["val_accuracy"] == rep["before"]["val_accuracy"]
    assert rep["after"]["deployed"]["accuracy"] == json.loads(
        (out / "metrics.json").read_text())["accuracy"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["structure"]["method"] == "merge"
    assert metrics["fidelity"]["top1_agreement"] == 1.0
    assert "transforms" not in json.loads((out / "model.json").read_text())["architecture"]
    ok, msg = contract_ok(out)
    assert ok, msg


def test_drop_blocks_run_then_fold_reloads(mobilenet_parent, digits, tmp_path, fast_measure,
                                           monkeypatch):
    out = tmp_path / "dropped"
    cfg = StructureConfig(method="drop-blocks", blocks=2, finetune_epochs=1)
    rec = structure(mobilenet_parent, cfg, out=out, progress=False)
    rep = json.loads((out / "structure.json").read_text())
    dropped = rep["details"]["dropped"]
    assert len(dropped) == 2 and set(dropped) <= {"blocks.0", "blocks.2", "blocks.4", "blocks.6"}
    scores = {n: b["val_loss"] for n, b in rep["details"]["blocks"].items() if b["droppable"]}
    assert sorted(scores, key=scores.get)[:2] == dropped  # the least important, by val loss
    assert rep["after"]["macs"] < rep["before"]["macs"]
    assert rec["structure"]["after"]["macs"] == rep["after"]["macs"]
    arch = json.loads((out / "model.json").read_text())["architecture"]
    assert arch["transforms"] == [{"kind": "drop_blocks", "blocks": dropped}]
    model = load_run(out).build_model()
    names = {n for n, _ in model.blocks.named_children()}
    assert not names & {d.split(".")[1] for d in dropped} and len(names) == 5
    assert count_macs(model, digits.input_shape) == rep["after"]["macs"]
    x = np.random.default_rng(0).random((16, 1, 8, 8), dtype=np.float32)
    assert np.abs(_onnx_logits(out, x) - _logits(model, x).numpy()).max() <= 1e-4

    import edgepress.export.deploy as deploy

    monkeypatch.setattr(deploy, "export_run", lambda run, fmt: None)  # one export is enough
    monkeypatch.setattr(produce, "measure_in_place", lambda tmp, final, timed=True: {})
    folded = tmp_path / "folded"
    rec = structure(out, StructureConfig(method="fold"), out=folded, progress=False)
    kinds = [t["kind"] for t in load_run(folded).meta["architecture"]["transforms"]]
    assert kinds == ["drop_blocks", "fold"]
    again = load_run(folded).build_model()
    assert _n_bn(again) == 0
    assert _max_diff(again, model, digits.x_val) <= 1e-5
    before, after = rec["structure"]["before"], rec["structure"]["after"]
    assert after["val_accuracy"] == before["val_accuracy"]
    assert after["layers"] < before["layers"] and after["macs"] == before["macs"]


def test_lowrank_of_a_channel_pruned_parent_reloads_identically(mlp_parent, digits, tmp_path,
                                                                 fast_measure):
    model = load_run(mlp_parent).build_model()
    prune_(model, PruneConfig(method="channel", channel_ratio=0.5,
                              finetune=FinetuneOptions(epochs=0)), data=digits, progress=False)
    parent = _save_run(tmp_path / "ch50", "mlp", model, digits, pruned_shapes=True,
                       widths=widths(model))
    cfg = StructureConfig(method="lowrank", rank=5, skip_layers=("classifier",),
                          finetune_epochs=0)
    out = tmp_path / "lowrank"
    rec = structure(parent, cfg, out=out, progress=False)
    expected = load_run(parent).build_model()
    structure_(expected, cfg, data=digits, progress=False)
    reloaded = load_run(out).build_model()
    assert tuple(reloaded.features[0][0].weight.shape) == (5, 64)
    assert tuple(reloaded.features[0][1].weight.shape) == (150, 5)
    assert _max_diff(reloaded, expected, digits.x_val) == 0.0
    assert rec["macs"] == count_macs(reloaded, digits.input_shape)


def test_cluster_of_a_sparse_parent_keeps_its_zeros_in_the_run(mlp_parent, digits, tmp_path,
                                                               fast_measure):
    model = load_run(mlp_parent).build_model()
    prune_(model, PruneConfig(method="magnitude", sparsity=0.8,
                              finetune=FinetuneOptions(epochs=0)), data=digits, progress=False)
    parent = _save_run(tmp_path / "sparse", "mlp", model, digits)
    out = tmp_path / "clustered"
    structure(parent, StructureConfig(method="cluster", bits=3, finetune_epochs=1,
                                      train_subset=256), out=out, progress=False)
    rep = json.loads((out / "structure.json").read_text())
    assert rep["after"]["params_nonzero"] == rep["before"]["params_nonzero"]
    reloaded = load_run(out).build_model()
    for name, layer in rep["details"]["layers"].items():
        w = reloaded.get_submodule(name).weight.detach()
        assert torch.unique(w[w != 0]).numel() <= 8 and layer["k"] == 8
        assert set(torch.unique(w[w != 0]).tolist()) <= set(
            torch.tensor(layer["codebook"]).tolist())


# --- bad input through the CLI -----------------------------------------------------------------

@pytest.mark.parametrize("run, args, words", [
    ("mlp", ["--method", "lowrank", "--rank", "0"], "--rank must be an integer >= 1"),
    ("mlp", ["--method", "lowrank", "--rank", "10"], "must be < min(m, n) = 10"),
    ("mlp", ["--method", "cluster", "--bits", "9"], "--bits must be in 1..8"),
    ("mnm", ["--method", "drop-blocks", "--block-names", "blocks.1"],
     "input and output shapes differ"),
    ("mnm", ["--method", "drop-blocks", "--blocks", "5"], "has only 4 block(s)"),
    ("mlp", ["--method", "fold", "--bits", "4"], "--bits does not fit --method fold"),
])
def test_bad_input_exits_2_with_one_line(run, args, words, mlp_parent, mobilenet_parent,
                                         tmp_path):
    parent = {"mlp": mlp_parent, "mnm": mobilenet_parent}[run]
    out = tmp_path / "out"
    proc = cli("structure", parent, "--out", out, *args, "--no-progress")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgepress: error:"), proc.stderr
    assert words in lines[0]
    assert not out.exists()
