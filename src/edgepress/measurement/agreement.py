"""Fidelity where no labels exist: how closely a model follows a reference model.

On photographs without labels (``--data photos``) accuracy cannot be measured; what can be is
whether a compressed model still says what its reference (the fp32 parent, or a compare's
first run) says:

* **top-1 agreement**: the share of images where both pick the same class, with its Wilson 95%
  interval;
* **top-5 agreement**: the share where the reference's class is among the model's five best;
* **mean KL divergence** KL(p_ref ‖ p) of the softmax distributions, in nats;
* **logit SQNR** 10·log10(‖z_ref‖² / ‖z − z_ref‖²), in dB;
* the top-1 agreement on the images the reference is **confident** about (its top class has
  p ≥ 0.5): photographs of textures or crops without an ImageNet object sit on near-ties, where
  any rounding flips the top class;
* between two variants, an **exact McNemar test** on their paired agreements
  (:func:`agreement_p_value`): does one follow the reference on images where the other does not,
  more than chance allows?

Example:
    >>> import numpy as np
    >>> ref = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 0.0, 2.0], [2.0, 1.0, 0.0]])
    >>> a = agreement(ref, ref, "fp32")
    >>> a["top1"], a["top5"], a["kl_mean"], a["logit_sqnr_db"]
    (1.0, 1.0, 0.0, 300.0)
"""

from __future__ import annotations

import numpy as np

from .stats import mcnemar_exact, sqnr_db, wilson_ci

TOP_K = 5
CONFIDENT = 0.5  # ``confident``: agreement on the images the reference gives p >= this


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def kl_mean(reference: np.ndarray, other: np.ndarray) -> float:
    """Mean over images of KL(softmax(reference) ‖ softmax(other)), in nats.

    >>> round(kl_mean(np.array([[0.0, 0.0]]), np.array([[0.0, np.log(3.0)]])), 4)
    0.1438
    """
    lr, lo = _log_softmax(reference), _log_softmax(other)
    return float(np.maximum((np.exp(lr) * (lr - lo)).sum(axis=1), 0.0).mean())


def topk_agreement(reference: np.ndarray, other: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """Per image: whether the reference's top-1 class is among ``other``'s ``k`` best.

    >>> topk_agreement(np.array([[0.0, 1.0, 2.0]]), np.array([[2.0, 1.0, 0.0]]), k=2).tolist()
    [False]
    """
    k = min(k, other.shape[1])
    best = np.argpartition(-other, k - 1, axis=1)[:, :k]
    return (best == reference.argmax(1)[:, None]).any(axis=1)


def agrees(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Per image: whether both pick the same class (top-1)."""
    return np.asarray(reference).argmax(1) == np.asarray(other).argmax(1)


def agreement(reference: np.ndarray, other: np.ndarray, name: str) -> dict:
    """The record's ``agreement`` of ``other`` against ``reference`` (logits, N×classes).

    Raises:
        ValueError: the two do not have the same shape.
    """
    if reference.shape != other.shape:
        raise ValueError(f"logits of shape {other.shape} against a reference of {reference.shape}")
    same = agrees(reference, other)
    sure = np.exp(_log_softmax(reference).max(axis=1)) >= CONFIDENT
    return {"reference": name, "n": int(len(same)), "top1": float(same.mean()),
            "top1_ci95": list(wilson_ci(int(same.sum()), len(same))),
            "top5": float(topk_agreement(reference, other).mean()),
            "kl_mean": kl_mean(reference, other), "logit_sqnr_db": sqnr_db(reference, other),
            "confident": {"p_min": CONFIDENT, "n": int(sure.sum()),
                          "top1": float(same[sure].mean()) if sure.any() else None}}


def agreement_p_value(reference: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Exact McNemar p-value of the paired top-1 agreements of ``a`` and ``b`` with
    ``reference``: 1 when they follow it on the same images.

    >>> ref = np.eye(3)[[0] * 20]
    >>> a, b = ref.copy(), ref.copy()
    >>> b[:8] = np.eye(3)[[1] * 8]  # b leaves the reference on 8 images, a on none
    >>> round(agreement_p_value(ref, a, b), 4)
    0.0078
    """
    return mcnemar_exact(agrees(reference, a), agrees(reference, b))
