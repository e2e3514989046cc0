import json
import math

import pytest
import torch
import torch.nn.functional as F
from tests.conftest import cli, contract_ok

from edgepress.distill import DistillConfig, distill, kd_loss
from edgepress.errors import InputError


def test_kd_loss_equals_hand_computation():
    zs = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
    zt = torch.tensor([[1.0, 1.0, 0.0], [-1.0, 2.0, 0.5]])
    y = torch.tensor([0, 1])
    t, a = 2.0, 0.7
    kl = 0.0
    for i in range(2):  # KL(p_t || p_s) at T, batch mean
        pt = F.softmax(zt[i] / t, 0)
        ps = F.softmax(zs[i] / t, 0)
        kl += float((pt * (pt.log() - ps.log())).sum())
    kl /= 2
    ce = float(F.cross_entropy(zs, y))
    expect = a * t * t * kl + (1 - a) * ce
    assert math.isclose(float(kd_loss(zs, zt, y, temperature=t, alpha=a)), expect, rel_tol=1e-6)


def test_alpha_zero_is_plain_cross_entropy():
    zs, zt, y = torch.randn(5, 4), torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0])
    assert torch.allclose(kd_loss(zs, zt, y, temperature=3.0, alpha=0.0), F.cross_entropy(zs, y))


@pytest.mark.parametrize("bad", [{"temperature": 0}, {"temperature": -1}, {"alpha": 1.5},
                                 {"alpha": -0.1}, {"seeds": 0}, {"hint": "a:b:c"}])
def test_config_validation(bad):
    with pytest.raises(InputError):
        DistillConfig(**bad)


def test_config_round_trip():
    c = DistillConfig(temperature=2.0, alpha=0.5, seeds=2, hint="features:features")
    assert DistillConfig.from_dict(c.to_dict()) == c


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    from edgepress import train

    out = tmp_path_factory.mktemp("teacher") / "lenet"
    train("lenet5", data="digits", out=out, epochs=12, batch_size=32, progress=False)
    return out


def test_distill_on_digits(teacher, tmp_path):
    out = tmp_path / "kd"
    s = distill(teacher, "mlp:width=0.1", DistillConfig(epochs=6, seeds=2, cache_teacher=True,
                batch_size=32), out=out, progress=False)
    on_disk = json.loads((out / "distill.json").read_text())
    assert on_disk == json.loads(json.dumps(s))
    assert len(s["kd_accuracy"]) == len(s["baseline_accuracy"]) == 2
    assert min(s["kd_accuracy"] + s["baseline_accuracy"]) > 0.5  # chance is 0.1
    mk, mb = s["kd_mean"], s["baseline_mean"]
    if s["teacher_accuracy"] > mb:
        assert math.isclose(s["gap_closed"], (mk - mb) / (s["teacher_accuracy"] - mb))
    else:
        assert s["gap_closed"] is None
    cfg = s["config"]
    assert cfg["seeds"] == [0, 1] and cfg["train"]["epochs"] == 6
    ok, msg = contract_ok(out / "distill.json", out, out / "baseline")
    assert ok, msg
    kd_meta = json.loads((out / "model.json").read_text())
    base_meta = json.loads((out / "baseline" / "model.json").read_text())
    # the arms share every setting but the teacher
    assert kd_meta["provenance"]["config"]["train"] == base_meta["provenance"]["config"]["train"]
    assert kd_meta["architecture"] == base_meta["architecture"]


def test_cached_and_online_teacher_give_the_same_student(teacher, tmp_path):
    """Also on a training subset: the cache holds the logits of the images trained on."""
    cfg = dict(epochs=1, seeds=1, batch_size=64, train_subset=600)
    a = distill(teacher, "mlp:width=0.1", DistillConfig(cache_teacher=True, **cfg),
                out=tmp_path / "a", progress=False)
    b = distill(teacher, "mlp:width=0.1", DistillConfig(cache_teacher=False, **cfg),
                out=tmp_path / "b", progress=False)
    assert abs(a["kd_accuracy"][0] - b["kd_accuracy"][0]) <= 1 / 270 + 1e-9


def test_hint_distillation_runs(teacher, tmp_path):
    s = distill(teacher, "lenet5:width=0.5", DistillConfig(epochs=5, hint="features:features",
                batch_size=32), out=tmp_path / "h", progress=False)
    assert s["kd_accuracy"][0] > 0.5  # chance is 0.1


def test_bad_inputs_cli(teacher, tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "three.npz", x_train=rng.random((40, 8, 8)).astype("float32"),
             y_train=rng.integers(0, 3, 40), x_test=rng.random((10, 8, 8)).astype("float32"),
             y_test=rng.integers(0, 3, 10))
    np.savez(tmp_path / "big.npz", x_train=rng.random((40, 9, 9)).astype("float32"),
             y_train=rng.integers(0, 10, 40), x_test=rng.random((10, 9, 9)).astype("float32"),
             y_test=np.arange(10))
    (tmp_path / "notrun").mkdir()
    cases = [
        (["--temperature", "0"], "temperature"),
        (["--alpha", "1.5"], "alpha"),
        (["--data", f"npz:{tmp_path / 'three.npz'}"], "classes"),
        (["--data", f"npz:{tmp_path / 'big.npz'}"], "input"),
    ]
    for extra, expect in cases:
        p = cli("distill", "--teacher", teacher, "--student", "mlp", "--out", tmp_path / "o",
                *extra)
        assert p.returncode == 2 and expect in p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
    p = cli("distill", "--teacher", tmp_path / "notrun", "--student", "mlp", "--out",
            tmp_path / "o")
    assert p.returncode == 2 and "not a run" in p.stderr
    assert not (tmp_path / "o").exists()
