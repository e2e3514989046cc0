"""``--method merge``: no-op layers out, and consecutive linear maps multiplied into one layer.

Two layers with nothing non-linear between them compute one linear map:
``W₂(W₁x + b₁) + b₂ = (W₂W₁)x + (W₂b₁ + b₂)``. Merged here, inside each ``nn.Sequential``:

* Linear → Linear;
* Conv2d (groups 1) → 1×1 Conv2d (stride 1, no padding, groups 1): the 1×1 mixes channels of
  every output pixel, so it folds into the first kernel;
* 1×1 Conv2d (stride 1, no padding) → Conv2d (groups 1), when the second has no padding or the
  first no bias (zero padding would otherwise meet the first layer's bias).

Identity and Dropout layers (no-ops at inference) are deleted first, so they do not stand between
two mergeable layers. Merging cuts layers and operator launches; it can *add* parameters and MACs
(a low-rank pair merged back is the full matrix again) — the report says so per pair. The zoo's
models have an activation or BatchNorm between every pair of layers: on them the honest answer is
"nothing to merge".

Example:
    >>> from torch import nn
    >>> m = nn.Sequential(nn.Linear(8, 2), nn.Dropout(), nn.Linear(2, 8))
    >>> r = merge_(m)
    >>> r["removed"], [p["layers"] for p in r["merged"]], m[0].weight.shape
    (['1'], [['0', '2']], torch.Size([8, 8]))
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .surgery import NO_OPS, get_module, remove_module_, replace_module_, sequential_runs


def _pointwise(m: Any) -> bool:
    return (isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.stride == (1, 1)
            and m.padding in ((0, 0), "valid") and m.groups == 1)


def _case(a: Any, b: Any) -> str | None:
    """How ``a`` then ``b`` merge (``linear``, ``pointwise_after``, ``pointwise_before``), if so."""
    if isinstance(a, nn.Linear) and isinstance(b, nn.Linear):
        return "linear"
    if not (isinstance(a, nn.Conv2d) and isinstance(b, nn.Conv2d) and a.groups == b.groups == 1):
        return None
    if _pointwise(b):
        return "pointwise_after"
    no_pad = (all(p == 0 for p in b.padding) if isinstance(b.padding, tuple)
              else b.padding == "valid")
    bias_free = a.bias is None or not bool(a.bias.detach().any())
    if _pointwise(a) and (no_pad or bias_free):
        return "pointwise_before"
    return None


def _shell(a: Any, b: Any, case: str) -> nn.Module:
    """The merged layer's structure (weights filled by :func:`_merged`)."""
    bias = a.bias is not None or b.bias is not None
    if case == "linear":
        return nn.Linear(a.in_features, b.out_features, bias=bias)
    geo = a if case == "pointwise_after" else b
    return nn.Conv2d(a.in_channels, b.out_channels, geo.kernel_size, geo.stride, geo.padding,
                     geo.dilation, bias=bias, padding_mode=geo.padding_mode)


@torch.no_grad()
def _merged(a: Any, b: Any, case: str) -> Any:
    layer: Any = _shell(a, b, case)
    w1, w2 = a.weight.double(), b.weight.double()
    b1 = a.bias.double() if a.bias is not None else torch.zeros(w1.shape[0], dtype=torch.float64)
    b2 = b.bias.double() if b.bias is not None else torch.zeros(w2.shape[0], dtype=torch.float64)
    if case == "linear":
        w, bias = w2 @ w1, w2 @ b1 + b2
    elif case == "pointwise_after":
        w = torch.einsum("oc,cikl->oikl", w2[:, :, 0, 0], w1)
        bias = w2[:, :, 0, 0] @ b1 + b2
    else:
        w = torch.einsum("ockl,ci->oikl", w2, w1[:, :, 0, 0])
        bias = torch.einsum("ockl,c->o", w2, b1) + b2
    layer.weight.copy_(w.float())
    if layer.bias is not None:
        layer.bias.copy_(bias.float())
    return layer


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _next_pair(model: nn.Module) -> tuple[str, str, str] | None:
    for _, children in sequential_runs(model):
        for (a_name, a), (b_name, b) in zip(children, children[1:], strict=False):
            case = _case(a, b)
            if case is not None:
                return a_name, b_name, case
    return None


def _no_ops(model: nn.Module) -> list[str]:
    """No-op layers that can go: any inside a Sequential, Dropout elsewhere (→ Identity)."""
    return [n for n, m in model.named_modules() if n and isinstance(m, NO_OPS)
            and (not isinstance(m, nn.Identity) or _in_sequential(model, n))]


def _in_sequential(model: nn.Module, name: str) -> bool:
    parent = name.rpartition(".")[0]
    return isinstance(get_module(model, parent) if parent else model, nn.Sequential)


def merge_(model: nn.Module) -> dict[str, Any]:
    """Delete no-op layers, then merge every mergeable pair (repeatedly: chains collapse).

    Returns:
        ``{"removed": [names], "merged": [{"layers", "kind", "params_before", "params_after"}],
        "ops": [...] (what :func:`replay_merge_` repeats), "nothing_to_merge": bool}``.
    """
    model.eval()
    ops: list[dict[str, Any]] = []
    removed = _no_ops(model)
    for name in removed:
        remove_module_(model, name)
        ops.append({"op": "remove", "name": name})
    merged = []
    while (pair := _next_pair(model)) is not None:
        a_name, b_name, case = pair
        a, b = get_module(model, a_name), get_module(model, b_name)
        layer = _merged(a, b, case)
        merged.append({"layers": [a_name, b_name], "kind": case,
                       "params_before": _params(a) + _params(b), "params_after": _params(layer)})
        replace_module_(model, a_name, layer)
        remove_module_(model, b_name)
        ops.append({"op": "merge", "into": a_name, "from": b_name, "case": case})
    return {"removed": removed, "merged": merged, "ops": ops,
            "nothing_to_merge": not removed and not merged}


def replay_merge_(model: nn.Module, transform: dict) -> None:
    """Repeat the recorded removals and merges structurally (weights are loaded afterwards)."""
    for op in transform["ops"]:
        if op["op"] == "remove":
            remove_module_(model, op["name"])
            continue
        a, b = get_module(model, op["into"]), get_module(model, op["from"])
        replace_module_(model, op["into"], _shell(a, b, op["case"]))
        remove_module_(model, op["from"])
