import pytest
import torch

from edgepress.errors import InputError
from edgepress.training import TrainConfig, accuracy, default_recipe, fit
from edgepress.zoo import create_model


def _mlp(ds):
    return create_model("mlp", input_shape=ds.input_shape, num_classes=10)


def test_training_learns(digits):
    m = _mlp(digits)
    before = accuracy(m, digits.x_val, digits.y_val)
    r = fit(m, digits, TrainConfig(epochs=5, batch_size=32), progress=False)
    assert before < 0.3 and r.val_accuracy > 0.85
    assert len(r.history) == 5 and r.history[-1]["loss"] < r.history[0]["loss"]


def test_training_is_deterministic(digits):
    torch.manual_seed(1)
    a = _mlp(digits)
    torch.manual_seed(1)
    b = _mlp(digits)
    torch.manual_seed(123)  # a different global state at fit time must not matter
    fit(a, digits, TrainConfig(epochs=1, seed=7), progress=False)
    fit(b, digits, TrainConfig(epochs=1, seed=7), progress=False)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_conv_model_trains_channels_last_and_returns_contiguous(digits):
    m = create_model("cnn:width=0.25", input_shape=digits.input_shape, num_classes=10)
    fit(m, digits, TrainConfig(epochs=1, train_subset=256), progress=False)
    assert all(p.is_contiguous() for p in m.parameters())


def test_after_step_hook_sees_every_step(digits):
    seen = []
    fit(_mlp(digits), digits, TrainConfig(epochs=2, batch_size=512),
        after_step=lambda s, t: seen.append((s, t)), progress=False)
    assert seen == [(i, 6) for i in range(1, 7)]  # ceil(1257 / 512) = 3 steps × 2 epochs


def test_config_round_trip_and_validation():
    c = default_recipe("cnn", epochs=2)
    assert TrainConfig.from_dict(c.to_dict()) == c and c.epochs == 2
    for bad in ({"lr": 0}, {"epochs": -1}, {"optimizer": "lion"}, {"batch_size": 0}):
        with pytest.raises(InputError):
            TrainConfig(**bad)
    with pytest.raises(InputError, match="unknown training option"):
        TrainConfig.from_dict({"epochz": 3})


@pytest.mark.parametrize("mode", ["train", "frozen"])
def test_frozen_batchnorm_keeps_running_statistics_while_the_weights_learn(digits, mode):
    m = create_model("cnn:width=0.25", input_shape=digits.input_shape, num_classes=10)
    bns = [b for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)]
    before = [(b.running_mean.clone(), b.running_var.clone(), b.weight.detach().clone())
              for b in bns]
    fit(m, digits, TrainConfig(epochs=1, train_subset=256, batchnorm=mode), progress=False)
    moved_stats = sum(not torch.equal(b.running_mean, mu) or not torch.equal(b.running_var, var)
                      for b, (mu, var, _) in zip(bns, before, strict=True))
    moved_scale = sum(not torch.equal(b.weight, w) for b, (_, _, w) in zip(bns, before,
                                                                          strict=True))
    assert len(bns) >= 3 and moved_scale == len(bns)  # BatchNorm's scale learns either way
    assert moved_stats == (0 if mode == "frozen" else len(bns))
    assert not m.training  # fit leaves the model in eval mode


def test_batchnorm_mode_is_validated_and_lite0_fine_tunes_freeze_it():
    with pytest.raises(InputError, match="batchnorm mode 'fixed'"):
        TrainConfig(batchnorm="fixed")
    assert default_recipe("efficientnet-lite0").batchnorm == "frozen"
    assert default_recipe("cnn").batchnorm == "train"
