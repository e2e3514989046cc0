"""Mixed precision under an accuracy budget: start all-int8, keep the most sensitive layers float.

1. Quantize everything; if validation accuracy is within ``budget`` points of fp32, stop.
2. Otherwise rank the layers by :func:`~.sensitivity.layer_sensitivity` (validation accuracy lost
   when only that layer is int8, then logit SQNR), and move them to float one by one, most
   sensitive first, re-measuring after each, until the budget holds (or every layer is float).

Every decision uses the validation split; the test split is only measured afterwards. The
result names each float layer and why it was kept float. On data without labels the budget is in
points of top-1 agreement with the fp32 model (``--accuracy-budget 3``: keep ≥ 97% agreement).

Example:
    >>> decision = choose_float_layers(ctx, budget_pts=0.5)  # doctest: +SKIP
    >>> decision["float_layers"]  # doctest: +SKIP
    [{'layer': 'features.0', 'reason': '...'}]
"""

from __future__ import annotations

from typing import Any

from .evaluate import score
from .sensitivity import StaticContext, layer_sensitivity


def choose_float_layers(ctx: StaticContext, budget_pts: float) -> dict:
    """Decide which layers stay float so that val accuracy is within ``budget_pts`` of fp32.

    Returns:
        ``{"budget_pts", "fp32_val_accuracy", "all_int8": {accuracy, loss_pts, sqnr_db},
        "float_layers": [{layer, node, reason, val_accuracy_after}], "final": {...},
        "within_budget": bool, "sensitivity": [rows] | None}``.
    """
    fp32 = ctx.fp32_accuracy
    current = ctx.evaluate()
    result: dict[str, Any] = {"budget_pts": budget_pts, "metric": ctx.metric,
                              "fp32_val_accuracy": fp32,
                              "all_int8": current, "float_layers": [], "sensitivity": None}
    if current["loss_pts"] <= budget_pts:
        return {**result, "final": current, "within_budget": True}
    rows = layer_sensitivity(ctx)
    result["sensitivity"] = rows
    kept: list[str] = []
    float_layers: list[dict] = result["float_layers"]
    for row in rows:
        kept.append(row["node"])
        current = ctx.evaluate(exclude=kept)
        float_layers.append({
            "layer": row["layer"], "node": row["node"],
            "reason": (f"int8 alone costs {row['loss_pts']:.2f} pts of val {ctx.metric} "
                       f"(logit SQNR "
                       f"{row['sqnr_db']:.1f} dB), the most of the layers still int8; "
                       f"with it float the model loses {current['loss_pts']:.2f} pts "
                       f"(budget {budget_pts:g})"),
            "val_accuracy_after": score(current), "loss_pts_after": current["loss_pts"]})
        if current["loss_pts"] <= budget_pts:
            break
    return {**result, "final": current, "within_budget": current["loss_pts"] <= budget_pts}
