import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from edgepress.checkpoint import atomic_dir, load_run, new_meta, save_model
from edgepress.errors import InputError
from edgepress.zoo import create_model


def _save(tmp_path, name="mobilenet-mini"):
    m = create_model(name, input_shape=(1, 8, 8), num_classes=10)
    with torch.no_grad():  # non-default BN statistics must round-trip too
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-1, 1)
                mod.running_var.uniform_(0.5, 2)
    meta = new_meta(zoo=name, kwargs={}, input_shape=(1, 8, 8), num_classes=10, data="digits")
    out = tmp_path / "run"
    with atomic_dir(out) as tmp:
        save_model(tmp, m, meta)
    return m.eval(), out


def test_reload_rebuilds_exact_model(tmp_path):
    m, out = _save(tmp_path)
    r = load_run(out)
    x = torch.rand(5, 1, 8, 8)
    assert torch.equal(r.build_model()(x), m(x))
    meta = json.loads((out / "model.json").read_text())
    assert meta["deployment"]["precision"] == "fp32"
    assert meta["architecture"]["zoo"] == "mobilenet-mini"


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
    _, out = _save(tmp_path)
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "model.json").write_text("{half")
        raise RuntimeError("boom")
    assert sorted(p.name for p in out.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no temp folders left


def test_nan_weights_are_rejected(tmp_path):
    _, out = _save(tmp_path, "mlp")
    state = load_file(str(out / "model.safetensors"))
    state["classifier.weight"][0, 0] = float("nan")
    save_file(state, str(out / "model.safetensors"))
    with pytest.raises(InputError, match="NaN"):
        load_run(out).build_model()


def test_missing_and_non_run_dirs(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_run(tmp_path / "nope")
    with pytest.raises(InputError, match="not a run"):
        load_run(tmp_path)
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InputError, match="not a directory"), atomic_dir(f):
        pass
