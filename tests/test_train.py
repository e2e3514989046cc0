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
