"""Why channel pruning of EfficientNet-Lite0 does not recover without its training data: how
much of the fp32 function survives removing hidden (expansion) channels, *before* any
fine-tuning, under four ways of choosing and compensating them.

    python benchmarks/lite0_pruning_probe.py [--run benchmarks/out/efficientnet/fp32]

Only the MBConv hidden channels are removed (the residual stream, stem, head and classifier
are kept), by zeroing their input to the block's projection convolution — the function a
structural removal of those channels gives. Per block, ``ratio`` of the hidden channels go:

* ``l2``: lowest L2 norm of the expansion conv's weights (what ``--importance l2`` ranks by);
* ``data``: lowest ``std(a_c) · ||W_proj[:, c]||`` on calibration photographs (their share of
  the projection's output variance);
* ``data+mean``: as ``data``, and the removed channels' mean contribution ``W_proj[:, c]·E[a_c]``
  is moved into the projection's BatchNorm (a channel that is nearly constant is mostly bias);
* ``lsq``: as ``data``, and the projection of the kept channels is re-fitted by least squares
  to the unpruned projection's output on the calibration photographs (closed form from the
  second moments E[a aᵀ]; no labels, no gradient steps).

Agreement (top-1 with fp32) and logit SQNR on a quarter of the evaluation crops; statistics
from a quarter of the calibration crops. Writes ``benchmarks/results/lite0_pruning_probe.md``.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch
from _common import stamped
from torch import nn

HERE = Path(__file__).resolve().parent
RATIOS = (0.1, 0.25, 0.4)
CRITERIA = ("l2", "data", "data+mean", "lsq")


def hidden_layers(model: nn.Module, block: str) -> tuple[nn.Conv2d, nn.Module, nn.Conv2d,
                                                          nn.BatchNorm2d]:
    """(expansion conv, the module whose output is the hidden activation, projection conv,
    projection BN) of one MBConv block of edgepress's Lite0.
    """
    get = model.get_submodule
    return (get(f"{block}.conv.0.0.0"), get(f"{block}.conv.1"), get(f"{block}.conv.2.0.0"),
            get(f"{block}.conv.2.1"))


def statistics(model: nn.Module, blocks: list[str], x: torch.Tensor) -> dict:
    """Per block: mean, std and the second-moment matrix (with a ones row) of the hidden
    activations over images and positions.
    """
    stats: dict = {}

    def hook(name: str):  # noqa: ANN202
        def h(_m: nn.Module, _i: tuple, o: torch.Tensor) -> None:
            a = o.detach().double().permute(1, 0, 2, 3).flatten(1)
            a1 = torch.cat([a, torch.ones(1, a.shape[1], dtype=a.dtype)])
            stats[name] = (a.mean(1).float(), a.std(1).float(), (a1 @ a1.T) / a.shape[1])
        return h

    handles = [hidden_layers(model, b)[1].register_forward_hook(hook(b)) for b in blocks]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return stats


def pruned(model: nn.Module, blocks: list[str], stats: dict, ratio: float,
           criterion: str) -> nn.Module:
    """A copy of ``model`` with ``ratio`` of every block's hidden channels removed."""
    m = copy.deepcopy(model)
    for b in blocks:
        expand, _, proj, bn = hidden_layers(m, b)
        mu, sd, second = stats[b]
        w = proj.weight[:, :, 0, 0]
        if criterion == "l2":
            imp = expand.weight.flatten(1).norm(dim=1)
        else:
            imp = sd * w.norm(dim=0)
        order = imp.argsort()
        k = int(len(imp) * ratio)
        gone, keep = order[:k], order[k:].sort().values
        with torch.no_grad():
            if criterion == "lsq":
                kk = torch.cat([keep, torch.tensor([w.shape[1]])])  # the kept channels and 1
                a = second[kk][:, kk]
                a = a + 1e-6 * a.diagonal().mean() * torch.eye(len(kk), dtype=a.dtype)
                fit = w.double() @ second[:-1][:, kk] @ torch.linalg.inv(a)
                new = torch.zeros_like(w)
                new[:, keep] = fit[:, :-1].float()
                bn.running_mean -= fit[:, -1].float()
                proj.weight[:, :, 0, 0] = new
            else:
                if criterion == "data+mean":
                    bn.running_mean -= w[:, gone] @ mu[gone]
                proj.weight[:, gone] = 0
    return m


def main() -> None:  # noqa: D103
    from edgepress.checkpoint import load_run
    from edgepress.data import load_data

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, default=HERE / "out" / "efficientnet" / "fp32")
    args = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    ds = load_data("photos")
    model = load_run(args.run).build_model().eval()
    x = torch.from_numpy(np.ascontiguousarray(ds.x_test[::4]))
    xc = torch.from_numpy(np.ascontiguousarray(ds.x_calib[::4]))
    blocks = sorted({n.rsplit(".conv", 1)[0] for n, _ in model.named_modules()
                     if n.startswith("blocks.") and n.endswith(".conv.2.0.0")},
                    key=lambda s: int(s.split(".")[1]))
    with torch.no_grad():
        ref = model(x)
    stats = statistics(model, blocks, xc)
    macs_note = "hidden channels of blocks " + ", ".join(b.split(".")[1] for b in blocks)
    rows = ["| removed | " + " | ".join(CRITERIA) + " |", "|---|" + "---|" * len(CRITERIA)]
    for ratio in RATIOS:
        cells = []
        for crit in CRITERIA:
            with torch.no_grad():
                y = pruned(model, blocks, stats, ratio, crit)(x)
            agree = float((y.argmax(1) == ref.argmax(1)).float().mean())
            sqnr = float(10 * torch.log10(ref.pow(2).sum() / (ref - y).pow(2).sum()))
            cells.append(f"{100 * agree:.1f}% ({sqnr:+.1f} dB)")
        rows.append(f"| {ratio:.0%} | " + " | ".join(cells) + " |")
    md = ["# Lite0: how much survives channel removal before any fine-tuning", "",
          f"`python benchmarks/lite0_pruning_probe.py`: {time.perf_counter() - t0:.0f} s. "
          f"Top-1 agreement with fp32 (logit SQNR) on {len(x)} evaluation crops; statistics "
          f"and least-squares fits from {len(xc)} calibration crops (disjoint photographs). "
          f"Removed: {macs_note} (the residual stream, stem, head and classifier kept).", "",
          *rows, ""]
    text = stamped("\n".join(md))
    (HERE / "results" / "lite0_pruning_probe.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
