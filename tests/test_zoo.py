import pytest
import torch
from tests.conftest import grayscale_models

from edgepress.errors import InputError
from edgepress.zoo import ModelSpec, create_model

GRAY = grayscale_models()


@pytest.mark.parametrize("name", GRAY)
@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 8, 8)])
def test_every_model_runs(name, shape):
    m = create_model(name, input_shape=shape, num_classes=10).eval()
    assert m(torch.rand(3, *shape)).shape == (3, 10)
    assert not isinstance(m, torch.nn.Sequential)


def test_width_rounding():
    assert create_model("mlp:width=0.5", input_shape=(1, 8, 8), num_classes=10).hidden == (150, 50)
    m = create_model("lenet5:width=0.1", input_shape=(1, 28, 28), num_classes=10)
    assert m.features[0].out_channels == 1  # max(1, round(6·0.1)) = max(1, 1)
    assert m.features[3].out_channels == 2  # round(16·0.1) = 2


def test_mobilenet_mini_size():
    m = create_model("mobilenet-mini", input_shape=(1, 28, 28), num_classes=10)
    n = sum(p.numel() for p in m.parameters())
    assert 100_000 <= n <= 200_000
    assert any(getattr(b, "use_residual", False) for b in m.blocks)


@pytest.mark.parametrize("spec", ["mlp:width=0", "mlp:width=-1", "cnn:width=abc"])
def test_bad_width(spec):
    with pytest.raises(InputError, match="width"):
        ModelSpec.parse(spec)


def test_unknown_model():
    with pytest.raises(InputError, match="unknown model"):
        ModelSpec.parse("resnet152")
