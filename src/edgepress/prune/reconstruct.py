"""Channel removal guided by data, and the layers after it re-fitted: no labels, no gradients.

Removing a channel takes its contribution out of every layer that reads it (the *consumers*: the
next conv or linear layer). Two things on calibration images make that cheaper:

* ``importance: data`` ranks a channel by its share of its consumers' output energy,
  ``Σ_consumers std(a_c)² · ‖W[:, c]‖²`` — a channel with large weights that is nearly constant
  on real images costs little (its mean is moved into the bias), one with small weights that
  varies a lot costs more. Weight norms (``l1`` / ``l2``) cannot see that.
* ``reconstruct: true`` re-fits each consumer (a Conv2d with ``groups = 1`` or a Linear) by least
  squares: with ``x`` its input patches on the *unpruned* model and ``K`` the kept inputs, the
  new weights and bias minimise ``E‖W x + b − (W' x_K + b')‖²``, in closed form from the second
  moments ``E[x xᵀ]`` (``W' = W Σ_{:,K} Σ_{KK}⁻¹``, a ones row giving the bias; a small ridge
  keeps it well posed). What the removed channels carried and the kept ones can predict is put
  back. On EfficientNet-Lite0 with 25% of its hidden channels removed, the weight-norm cut keeps
  0.8% top-1 agreement with the unpruned network (``benchmarks/results/lite0_pruning_probe.md``)
  and this ranking with the re-fit 51% (512 calibration crops; 1,029 evaluation crops,
  ``benchmarks/results/efficientnet.md``).

Both read the moments from one forward pass of the unpruned model over the calibration images
(:class:`Moments`); nothing is trained.

Example:
    >>> from edgepress.zoo import create_model
    >>> m = create_model("cnn", input_shape=(1, 8, 8), num_classes=10).eval()
    >>> mom = Moments.collect(m, torch.rand(16, 1, 8, 8), second=True)
    >>> name = "features.1.0"
    >>> mom.std[name].shape, mom.second[name].shape  # its 32 inputs × 3×3 patches, and a ones row
    (torch.Size([32]), torch.Size([289, 289]))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

RIDGE = 1e-6  # × the mean diagonal of Σ_KK: keeps the least-squares fit well posed
CALIB_BATCH = 32


def consumers(model: nn.Module) -> dict[str, nn.Conv2d | nn.Linear]:
    """The layers a least-squares re-fit can handle: Linear, and Conv2d with ``groups = 1`` and
    zero padding (a depthwise conv loses its channels with its producer; nothing to re-fit).
    """
    return {n: m for n, m in model.named_modules()
            if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1
                                            and m.padding_mode == "zeros"
                                            and isinstance(m.padding, tuple))}


def patches(layer: nn.Conv2d | nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """The input of ``layer`` as rows of what each output position reads: ``(D, positions)``
    with ``D = C_in·kh·kw`` (channel-major, as ``W.flatten(1)``) for a conv, features for a
    Linear.
    """
    if isinstance(layer, nn.Linear):
        return x.reshape(-1, x.shape[-1]).T
    if layer.kernel_size == (1, 1) and layer.stride == (1, 1) and layer.padding == (0, 0):
        return x.transpose(0, 1).flatten(1)
    padding = layer.padding
    assert isinstance(padding, tuple)  # "same" / "valid" strings: not consumers (see above)
    cols = F.unfold(x, tuple(layer.kernel_size), dilation=tuple(layer.dilation),
                    padding=padding, stride=tuple(layer.stride))  # (N, D, L)
    return cols.transpose(0, 1).flatten(1)


@dataclass
class Moments:
    """Per consumer layer: the std of each input channel, and (``second``) ``E[[x;1][x;1]ᵀ]`` of
    its input patches, over calibration images run through the model.
    """

    std: dict[str, torch.Tensor] = field(default_factory=dict)
    second: dict[str, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def collect(cls, model: nn.Module, x: torch.Tensor, *, second: bool,
                batch: int = CALIB_BATCH) -> Moments:
        """One pass of ``model`` (eval mode, no gradients) over ``x``, in batches."""
        layers = consumers(model)
        sums: dict[str, list[Any]] = {}

        def hook(name: str, layer: nn.Conv2d | nn.Linear) -> Any:
            def h(_m: nn.Module, inputs: tuple, _o: torch.Tensor) -> None:
                a = inputs[0].detach()
                ch = a.reshape(-1, a.shape[-1]).T if isinstance(layer, nn.Linear) \
                    else a.transpose(0, 1).flatten(1)
                s = sums.setdefault(name, [0.0, 0.0, 0, 0.0, 0])
                s[0] = s[0] + ch.sum(1).double()
                s[1] = s[1] + ch.double().pow(2).sum(1)
                s[2] += ch.shape[1]
                if second:
                    p = patches(layer, a)
                    p1 = torch.cat([p, torch.ones(1, p.shape[1], dtype=p.dtype)])
                    s[3] = s[3] + (p1 @ p1.T).double()
                    s[4] += p.shape[1]
            return h

        handles = [m.register_forward_hook(hook(n, m)) for n, m in layers.items()]
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for i in range(0, len(x), batch):
                    model(x[i:i + batch])
        finally:
            for h in handles:
                h.remove()
            model.train(was_training)
        out = cls()
        for name, (s1, s2, n, m2, npos) in sums.items():
            mean = s1 / n
            out.std[name] = (s2 / n - mean * mean).clamp_min(0).sqrt().float()
            if second:
                out.second[name] = m2 / max(npos, 1)
        return out


def data_importance(moments: Moments, names: dict[nn.Module, str]) -> Any:
    """A Torch-Pruning importance: per channel of a group, ``Σ std(a_c)²·‖W[:, c]‖²`` over the
    group's consumers (their input channels), from ``moments`` of the unpruned model.
    """
    import torch_pruning as tp
    from torch_pruning.pruner import function as tpf

    takes_input = (tpf.prune_conv_in_channels, tpf.prune_linear_in_channels)

    class DataImportance(tp.importance.GroupMagnitudeImportance):
        @torch.no_grad()
        def __call__(self, group: Any) -> torch.Tensor | None:
            imps, roots = [], []
            for i, (dep, idxs) in enumerate(group):
                layer, name = dep.target.module, names.get(dep.target.module)
                if dep.handler not in takes_input or name not in moments.std:
                    continue
                w = layer.weight.detach().transpose(0, 1).flatten(1)  # (C_in, out·kh·kw)
                idx = torch.as_tensor(list(idxs), dtype=torch.long)
                imps.append((moments.std[name][idx] * w[idx].norm(dim=1)) ** 2)
                roots.append(group[i].root_idxs)
            if not imps:
                return None
            return self._reduce(imps, roots)

    return DataImportance(group_reduction="sum", normalizer=None)


def refit_(layer: nn.Conv2d | nn.Linear, weight: torch.Tensor, bias: torch.Tensor | None,
           second: torch.Tensor, keep_in: list[int], keep_out: list[int]) -> None:
    """Set ``layer`` (already narrowed to ``keep_in`` inputs, ``keep_out`` outputs) to the least
    squares fit of the unpruned layer (``weight``, ``bias``) from the kept inputs.

    ``second`` is ``E[[x;1][x;1]ᵀ]`` of the unpruned layer's input patches; for a conv, input
    channel ``c`` owns patch rows ``c·kh·kw … (c+1)·kh·kw − 1``.
    """
    w0 = weight.flatten(1).double()[keep_out]  # (out', D)
    per = w0.shape[1] // weight.shape[1]  # patch rows per input channel (kh·kw; 1 for Linear)
    rows = [c * per + j for c in keep_in for j in range(per)]
    d = second.shape[0] - 1
    kk = torch.tensor([*rows, d])
    a = second[kk][:, kk]
    a = a + RIDGE * a.diagonal().mean() * torch.eye(len(kk), dtype=a.dtype)
    fit = torch.linalg.solve(a, (w0 @ second[:d][:, kk]).T).T  # (out', |K| + 1)
    b0 = torch.zeros(len(keep_out), dtype=torch.float64) if bias is None \
        else bias.double()[keep_out]
    with torch.no_grad():
        layer.weight.copy_(fit[:, :-1].reshape(layer.weight.shape).to(layer.weight.dtype))
        new_bias = (b0 + fit[:, -1]).to(layer.weight.dtype)
        if layer.bias is None:
            layer.bias = nn.Parameter(new_bias)
        else:
            layer.bias.copy_(new_bias)
