"""``--method cluster``: weight sharing — each layer's weights take one of k = 2**bits values.

As in Deep Compression (Han et al. 2016, §3): per layer, 1-D k-means over the weights with the
centroids initialised *linearly* between the smallest and largest weight (which keeps the rare
large weights represented, unlike density-based initialisation); a pruned layer clusters only its
non-zero weights and its zeros stay zero. Then the centroids are fine-tuned with the assignments
fixed: the model is run with ``W = codebook[index]``, so the gradient reaching centroid j is the
sum of the gradients of its member weights. Afterwards every layer holds at most k distinct
non-zero values (plus 0 where it was pruned): ``bits`` per weight index plus a k-entry codebook.

Example:
    >>> import torch
    >>> c, idx = kmeans_1d(torch.tensor([0.0, 0.1, 0.9, 1.0]), k=2)
    >>> [round(v, 2) for v in c.tolist()], idx.tolist()
    ([0.05, 0.95], [0, 0, 1, 1])
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError

KMEANS_ITERS = 100
_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _matches(name: str, skip: str) -> bool:
    return name == skip or name.startswith(skip + ".")


def clusterable(model: nn.Module, skip: tuple[str, ...] = ()) -> dict[str, nn.Module]:
    """The Conv / Linear layers whose weights are clustered, minus ``skip``.

    Raises:
        InputError: a skip entry matches no layer.
    """
    layers = {n: m for n, m in model.named_modules() if isinstance(m, _WEIGHTED)}
    for s in skip:
        if not any(_matches(n, s) for n in layers):
            raise InputError(f"--skip-layers: no layer named {s!r} (layers: {', '.join(layers)})")
    return {n: m for n, m in layers.items() if not any(_matches(n, s) for s in skip)}


def _assign(w: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid (``centroids`` sorted ascending)."""
    return torch.searchsorted((centroids[1:] + centroids[:-1]) / 2, w)


@torch.no_grad()
def kmeans_1d(w: torch.Tensor, k: int, iters: int = KMEANS_ITERS) -> tuple[torch.Tensor,
                                                                             torch.Tensor]:
    """Lloyd's k-means on a 1-D tensor with linear initialisation; ``(centroids, index)``.

    Centroids come back sorted; an empty cluster keeps its previous centroid (it stays in the
    codebook, unused).
    """
    x = w.detach().double().flatten()
    if x.numel() == 0:
        return torch.zeros(k, dtype=w.dtype), torch.zeros(0, dtype=torch.long)
    c = torch.linspace(float(x.min()), float(x.max()), k, dtype=torch.float64)
    for _ in range(iters):
        idx = _assign(x, c)
        sums = torch.zeros(k, dtype=torch.float64).scatter_add_(0, idx, x)
        counts = torch.bincount(idx, minlength=k)
        new = torch.where(counts > 0, sums / counts.clamp_min(1), c).sort().values
        if torch.equal(new, c):
            break
        c = new
    return c.to(w.dtype), _assign(x, c)


class Codebooks:
    """Each layer's centroids (trainable) and fixed assignments; ``weight(name)`` rebuilds W.

    Pruned positions point at an extra, fixed 0 entry, so they stay exactly zero.
    """

    def __init__(self, layers: dict[str, Any], k: int):
        self.layers, self.k = layers, k
        self.centroids: dict[str, nn.Parameter] = {}
        self.index: dict[str, torch.Tensor] = {}
        for name, layer in layers.items():
            w = layer.weight.detach()
            keep = w != 0
            c, idx = kmeans_1d(w[keep], k)
            full = torch.full(w.shape, k, dtype=torch.long)
            full[keep] = idx
            self.centroids[name], self.index[name] = nn.Parameter(c.clone()), full
        self.write_()

    def weight(self, name: str) -> torch.Tensor:
        """The layer's weight from its codebook (differentiable in the centroids)."""
        c = self.centroids[name]
        return torch.cat([c, c.new_zeros(1)])[self.index[name]]

    @torch.no_grad()
    def write_(self, *_: Any) -> None:
        """Copy ``codebook[index]`` into every layer's weight (an ``after_step`` hook)."""
        for name, layer in self.layers.items():
            layer.weight.copy_(self.weight(name))

    def loss_fn(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the model run with the codebook weights (gradients reach centroids)."""
        from torch.func import functional_call

        weights = {f"{name}.weight": self.weight(name) for name in self.layers}
        return F.cross_entropy(functional_call(model, weights, (x,), strict=False), y)

    def trainable(self, model: nn.Module) -> list[nn.Parameter]:
        """The centroids plus every parameter that is not a clustered weight (biases, BN)."""
        clustered = {id(layer.weight) for layer in self.layers.values()}
        rest = [p for p in model.parameters() if p.requires_grad and id(p) not in clustered]
        return [*self.centroids.values(), *rest]

    def report(self, bits: int) -> dict[str, dict[str, Any]]:
        """Per layer: weights, zeros kept, clusters used, distinct non-zero values, codebook."""
        rows = {}
        for name, layer in self.layers.items():
            w = layer.weight.detach()
            nonzero = w[w != 0]
            used = int(torch.unique(self.index[name][self.index[name] < self.k]).numel())
            rows[name] = {
                "shape": list(w.shape), "weights": w.numel(), "zeros": int((w == 0).sum()),
                "k": self.k, "clusters_used": used,
                "distinct_nonzero": int(torch.unique(nonzero).numel()),
                "codebook": [float(v) for v in self.centroids[name].detach()],
                "index_bits": bits,
                "coded_bytes": math.ceil(w.numel() * bits / 8) + 4 * self.k,
                "fp32_bytes": 4 * w.numel()}
        return rows
