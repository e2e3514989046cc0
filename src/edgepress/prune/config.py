"""What to prune and how: a validated :class:`PruneConfig` that round-trips through JSON.

Each method accepts only the options that mean something for it (:data:`METHOD_OPTIONS`); setting
another one (``channel_ratio`` with ``magnitude``, ``nm`` with ``l1``, ...) is an ``InputError``.
Options a method accepts but that were left unset get that method's default in ``__post_init__``,
so a stored config says exactly what ran.

Example:
    >>> c = PruneConfig(method="magnitude", sparsity=0.9, scope="global", schedule="agp")
    >>> PruneConfig.from_dict(c.to_dict()) == c
    True
    >>> PruneConfig(method="magnitude", sparsity=0.5, channel_ratio=0.5)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    edgepress.errors.InputError: --channel-ratio does not fit --method magnitude (it takes ...)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ..errors import InputError
from ..finetune import Finetune
from ..jsonconfig import CONFIG_VERSION, check_version

METHODS = ("magnitude", "l1", "nm", "channel")
SCOPES = ("layer", "global")
SCHEDULES = ("oneshot", "agp")
IMPORTANCES = ("l1", "l2", "bn", "data")

# The method-specific options each method takes (everything else must stay unset).
METHOD_OPTIONS: dict[str, tuple[str, ...]] = {
    "magnitude": ("sparsity", "threshold", "scope", "schedule"),
    "l1": ("sparsity", "threshold", "scope", "l1_lambda"),
    "nm": ("nm",),
    "channel": ("channel_ratio", "importance", "reconstruct"),
}
# Defaults filled in for the options a method takes but the user left unset.
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "magnitude": {"scope": "layer", "schedule": "oneshot"},
    "l1": {"scope": "layer", "l1_lambda": 1e-4},
    "nm": {"nm": "2:4"},
    "channel": {"importance": "l2", "reconstruct": False},
}
# After L1-regularised training with neither a sparsity nor a threshold, weights with
# |w| <= this are pruned.
L1_DEFAULT_THRESHOLD = 1e-3
FLAGS = {name: "--" + name.replace("_", "-") for name in
         ("sparsity", "threshold", "scope", "nm", "channel_ratio", "importance", "reconstruct",
          "l1_lambda", "schedule")}


FinetuneOptions = Finetune  # the shared fine-tune shape (:mod:`edgepress.finetune`)


@dataclass
class AgpOptions:
    """Zhu & Gupta (2017) gradual pruning: the ramp's shape along the fine-tune steps.

    Sparsity rises from ``initial`` to the target as ``s_f + (s_i − s_f)(1 − t/T)³`` where ``T``
    is ``end_fraction`` of the fine-tune steps; masks are recomputed ``updates`` times on the way,
    and the remaining steps fine-tune at the final sparsity.
    """

    initial: float = 0.0
    end_fraction: float = 0.6
    updates: int = 40

    def __post_init__(self) -> None:
        if not 0.0 <= self.initial < 1.0:
            raise InputError(f"AGP initial sparsity must be in [0, 1) (got {self.initial})")
        if not 0.0 < self.end_fraction <= 1.0:
            raise InputError(f"AGP end fraction must be in (0, 1] (got {self.end_fraction})")
        if self.updates < 1:
            raise InputError(f"AGP needs at least one mask update (got {self.updates})")


@dataclass
class L1Options:
    """When the L1 run cuts: after ``cut_at`` of the fine-tune steps trained with the penalty.

    The remaining steps fine-tune without the penalty and with the masks fixed (train with
    the regulariser, prune, retrain: Han et al. 2015). ``cut_at=1.0`` cuts at the very end.
    """

    cut_at: float = 0.75

    def __post_init__(self) -> None:
        if not 0.0 < self.cut_at <= 1.0:
            raise InputError(f"L1 cut point must be in (0, 1] (got {self.cut_at})")


@dataclass
class PruneConfig:
    """A pruning method and its options; validates itself and fills the method's defaults.

    Args:
        method: ``magnitude``, ``l1``, ``nm`` or ``channel``.
        sparsity: fraction of weights to zero, in [0, 1) (magnitude, l1).
        threshold: zero weights with ``|w| <= threshold`` (magnitude, l1).
        scope: ``layer`` (each layer reaches ``sparsity``) or ``global`` (one ranking across
            layers, never emptying one).
        nm: ``"N:M"`` semi-structured pattern, N < M (nm).
        channel_ratio: fraction of output channels / neurons removed per layer, in (0, 1).
        importance: channel ranking, ``l1``, ``l2`` (weight norms), ``bn`` (BN scales) or
            ``data`` (share of the next layers' output energy on calibration images).
        reconstruct: re-fit the layers after removed channels by least squares on calibration
            images (:mod:`edgepress.prune.reconstruct`; channel).
        l1_lambda: weight of the penalty ``λ·Σ|w|`` during fine-tuning (l1).
        skip_layers: layer names (or name prefixes) left untouched.
        schedule: ``oneshot`` (prune, then fine-tune with fixed masks) or ``agp`` (magnitude).
        finetune: fine-tuning options; agp: the AGP ramp; l1: when the L1 run cuts;
        seed: fine-tuning seed.

    Raises:
        InputError: an option outside its range or one that does not fit the method.
    """

    method: str
    sparsity: float | None = None
    threshold: float | None = None
    scope: str | None = None
    nm: str | None = None
    channel_ratio: float | None = None
    importance: str | None = None
    reconstruct: bool | None = None
    l1_lambda: float | None = None
    skip_layers: tuple[str, ...] = ()
    schedule: str | None = None
    finetune: FinetuneOptions = field(default_factory=FinetuneOptions)
    agp: AgpOptions = field(default_factory=AgpOptions)
    l1: L1Options = field(default_factory=L1Options)
    seed: int = 0
    version: int = CONFIG_VERSION  # of this config's format

    def __post_init__(self) -> None:
        check_version("pruning", self.version)
        if self.method not in METHODS:
            raise InputError(f"unknown pruning method {self.method!r} ({', '.join(METHODS)})")
        self.skip_layers = tuple(str(s) for s in self.skip_layers)
        self._check_fit()
        for name, value in METHOD_DEFAULTS[self.method].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        self._check_values()
        _CHECKS[self.method](self)

    def _check_fit(self) -> None:
        allowed = METHOD_OPTIONS[self.method]
        for name in FLAGS:
            if getattr(self, name) is not None and name not in allowed:
                takes = ", ".join(FLAGS[a] for a in allowed)
                raise InputError(f"{FLAGS[name]} does not fit --method {self.method} "
                                 f"(it takes {takes})")

    def _check_values(self) -> None:
        if self.sparsity is not None and not 0.0 <= self.sparsity < 1.0:
            raise InputError(f"--sparsity must be in [0, 1) (got {self.sparsity})")
        if self.threshold is not None and not (math.isfinite(self.threshold)
                                               and self.threshold >= 0):
            raise InputError(f"--threshold must be a finite number >= 0 (got {self.threshold})")
        if self.sparsity is not None and self.threshold is not None:
            raise InputError("give --sparsity or --threshold, not both")
        _one_of("--scope", self.scope, SCOPES)
        _one_of("--schedule", self.schedule, SCHEDULES)
        _one_of("--importance", self.importance, IMPORTANCES)
        if self.reconstruct is not None and not isinstance(self.reconstruct, bool):
            raise InputError(f"--reconstruct is true or false (got {self.reconstruct!r})")
        if self.channel_ratio is not None and not 0.0 < self.channel_ratio < 1.0:
            raise InputError(f"--channel-ratio must be in (0, 1) (got {self.channel_ratio})")
        if self.l1_lambda is not None and not (math.isfinite(self.l1_lambda)
                                               and self.l1_lambda > 0):
            raise InputError(f"--l1-lambda must be > 0 (got {self.l1_lambda})")
        if self.nm is not None:
            self.nm_pattern  # noqa: B018 - parses and validates

    @property
    def nm_pattern(self) -> tuple[int, int]:
        """``(N, M)`` parsed from ``nm``.

        Raises:
            InputError: not ``N:M`` with 1 <= N < M.
        """
        n, sep, m = str(self.nm).partition(":")
        try:
            pattern = (int(n), int(m))
        except ValueError:
            pattern = None
        if not sep or pattern is None:
            raise InputError(f"--nm must look like N:M, e.g. 2:4 (got {self.nm!r})")
        if not 1 <= pattern[0] < pattern[1]:
            raise InputError(f"--nm N:M needs 1 <= N < M (got {self.nm}): N of every M "
                             f"weights are kept")
        return pattern

    def finetune_options(self) -> Finetune:
        """The fine-tune in the shared shape (pruning always has one; 0 epochs is allowed)."""
        return self.finetune

    def with_finetune(self, ft: Finetune) -> PruneConfig:
        """A copy fine-tuning as ``ft`` says (validated again: AGP and L1 need epochs)."""
        return replace(self, finetune=ft)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (nested options included)."""
        d = asdict(self)
        d["skip_layers"] = list(self.skip_layers)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PruneConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an ``InputError``."""
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise InputError(f"unknown pruning option(s): {', '.join(sorted(unknown))}")
        d = dict(d)
        d["finetune"] = _nested(FinetuneOptions, d.get("finetune", {}))
        d["agp"] = _nested(AgpOptions, d.get("agp", {}))
        d["l1"] = _nested(L1Options, d.get("l1", {}))
        d["skip_layers"] = tuple(d.get("skip_layers", ()))
        return cls(**d)


def _nested(cls: type, d: dict[str, Any] | Any) -> Any:
    if isinstance(d, cls):
        return d
    unknown = set(d) - {f.name for f in fields(cls)}
    if unknown:
        raise InputError(f"unknown pruning option(s): {', '.join(sorted(unknown))}")
    return cls(**d)


def _one_of(flag: str, value: str | None, choices: tuple[str, ...]) -> None:
    if value is not None and value not in choices:
        raise InputError(f"{flag} must be one of {', '.join(choices)} (got {value!r})")


def _check_magnitude(c: PruneConfig) -> None:
    if c.sparsity is None and c.threshold is None:
        raise InputError("--method magnitude needs --sparsity F or --threshold T")
    if c.threshold is not None and c.scope == "global":
        raise InputError("--scope global ranks weights to reach a --sparsity; a --threshold is "
                         "already one value for every layer")
    if c.schedule == "agp":
        if c.sparsity is None:
            raise InputError("--schedule agp ramps up to a --sparsity (a --threshold has no "
                             "target to ramp to)")
        if c.finetune.epochs < 1:
            raise InputError("--schedule agp prunes during fine-tuning: it needs "
                             "--finetune-epochs >= 1")


def _check_l1(c: PruneConfig) -> None:
    if c.threshold is not None and c.scope == "global":
        raise InputError("--scope global ranks weights to reach a --sparsity; a --threshold is "
                         "already one value for every layer")
    if c.finetune.epochs < 1:
        raise InputError("--method l1 trains with the L1 penalty: it needs --finetune-epochs >= 1")


def _check_channel(c: PruneConfig) -> None:
    if c.channel_ratio is None:
        raise InputError("--method channel needs --channel-ratio F (a fraction of channels)")


_CHECKS = {"magnitude": _check_magnitude, "l1": _check_l1, "nm": lambda c: None,
           "channel": _check_channel}
