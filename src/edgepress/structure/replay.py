"""Replaying structural transforms on a fresh zoo model, so a run directory reloads exactly.

``model.json``'s architecture lists what changed the zoo model's layers, in order::

    "transforms": [{"kind": "lowrank", "ranks": {"features.0": 40}},
                   {"kind": "fold", "pairs": [["stem.0", "stem.1"]]},
                   {"kind": "drop_blocks", "blocks": ["blocks.2"]},
                   {"kind": "merge", "ops": [{"op": "merge", "into": "features.0.0",
                                              "from": "features.0.1", "case": "linear"}]}]

:meth:`edgepress.checkpoint.Run.build_model` creates the zoo model, calls :func:`replay_`, then
(for a channel-pruned ancestor) resizes layers to the saved shapes and loads the weights. Replay
only rebuilds structure; every value comes from ``model.safetensors``.

Example:
    >>> from edgepress.zoo import create_model
    >>> m = create_model("mlp", input_shape=(1, 8, 8), num_classes=10)
    >>> replay_(m, [{"kind": "lowrank", "ranks": {"features.0": 4}}])
    >>> tuple(m.features[0][0].weight.shape)
    (4, 64)
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..checkpoint import register_replay
from ..errors import InputError
from .drop import replay_drop_blocks_
from .fold import replay_fold_
from .lowrank import replay_lowrank_
from .merge import replay_merge_

TRANSFORMS: dict[str, Callable[[nn.Module, dict], None]] = {
    "fold": replay_fold_,
    "merge": replay_merge_,
    "lowrank": replay_lowrank_,
    "drop_blocks": replay_drop_blocks_,
}


@register_replay
def replay_(model: nn.Module, transforms: list[dict]) -> None:
    """Apply the recorded structural ``transforms`` to ``model`` in order (in place).

    Raises:
        InputError: an unknown or malformed transform, or one naming a layer the model lacks.
    """
    for i, t in enumerate(transforms):
        kind = t.get("kind") if isinstance(t, dict) else None
        fn = TRANSFORMS.get(str(kind))
        if fn is None:
            raise InputError(f"model.json: unknown structural transform #{i} {kind!r} "
                             f"(known: {', '.join(TRANSFORMS)})")
        try:
            fn(model, t)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            if isinstance(e, InputError):
                raise
            raise InputError(f"model.json: malformed {kind} transform #{i}: {e}") from None
