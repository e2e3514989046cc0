"""When masks are (re)computed during fine-tuning: ``oneshot`` or ``agp``.

``oneshot`` (static pruning): prune once to the target before fine-tuning; the masks then stay
fixed and are re-applied after every optimizer step.

``agp`` (dynamic pruning, Zhu & Gupta 2017, "To prune, or not to prune"): sparsity ramps up
cubically over the fine-tune steps,

    s_t = s_f + (s_i − s_f) · (1 − t / T)³     for 0 <= t <= T,

and the masks are recomputed from the current weight magnitudes at evenly spaced steps on the way
(pruning fast while the network has many redundant weights, slowly near the end). After ``T``
(``end_fraction`` of all steps) the network fine-tunes at the final sparsity.

Example:
    >>> agp_sparsity(0, final=0.9, end=100), agp_sparsity(50, final=0.9, end=100)
    (0.0, 0.7875)
    >>> agp_sparsity(100, final=0.9, end=100)
    0.9
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .config import PruneConfig


def agp_sparsity(step: int, *, final: float, end: int, initial: float = 0.0) -> float:
    """The AGP target sparsity after ``step`` of ``end`` ramp steps (clamped after ``end``)."""
    if end <= 0 or step >= end:
        return final
    return final + (initial - final) * (1.0 - max(step, 0) / end) ** 3


@dataclass
class OneShot:
    """Prune to the final sparsity at step 0; never recompute."""

    final: float

    def target(self, step: int, total: int) -> float | None:
        """The sparsity to recompute masks at after ``step`` of ``total``, or ``None``."""
        return self.final if step == 0 else None


@dataclass
class AGP:
    """The cubic ramp, with masks recomputed ``updates`` times up to ``end_fraction·total``."""

    final: float
    initial: float = 0.0
    end_fraction: float = 0.6
    updates: int = 40

    def end(self, total: int) -> int:
        """The step at which the ramp reaches the final sparsity."""
        return max(1, round(self.end_fraction * total))

    def target(self, step: int, total: int) -> float | None:
        """The sparsity to recompute masks at after ``step`` of ``total``, or ``None``."""
        end = self.end(total)
        if step == 0:
            return self.initial if self.initial > 0 else None
        if step > end:
            return None
        every = max(1, end // self.updates)
        if step % every == 0 or step == end:
            return agp_sparsity(step, final=self.final, end=end, initial=self.initial)
        return None


def make_schedule(config: PruneConfig, final: float) -> OneShot | AGP:
    """The schedule ``config.schedule`` names, ramping to ``final``."""
    return _SCHEDULES[config.schedule or "oneshot"](config, final)


_SCHEDULES: dict[str, Callable[[PruneConfig, float], OneShot | AGP]] = {
    "oneshot": lambda c, final: OneShot(final),
    "agp": lambda c, final: AGP(final, c.agp.initial, c.agp.end_fraction, c.agp.updates),
}
