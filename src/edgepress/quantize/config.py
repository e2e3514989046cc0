"""The quantization configuration: one validated dataclass for every mode.

Options that a mode does not use stay ``None``; giving one anyway (``--bits 4`` with ``static``,
``--calib-method`` with ``dynamic``) is an :class:`~edgepress.errors.InputError`, not a silent
no-op. Defaults that depend on the mode are filled in after validation, so ``to_dict`` records
exactly what was applied and ``from_dict(to_dict())`` gives the same config back.

Example:
    >>> cfg = QuantConfig(mode="static")
    >>> cfg.calib_method, cfg.calibration, cfg.bits
    ('minmax', 512, 8)
    >>> QuantConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ..data import DEFAULT_CALIBRATION
from ..errors import InputError
from ..jsonconfig import CONFIG_VERSION, check_version

MODES = ("static", "dynamic", "qat", "weight-only")
GRANULARITIES = ("tensor", "channel")
CALIB_METHODS = ("minmax", "percentile", "entropy")
BITS = (1, 2, 4, 8)
QAT_LR = 1e-4  # QAT's peak rate: fake-quant fine-tuning wants a small, fixed step

# Which optional fields each mode accepts (the others must be left unset).
_ACCEPTS: dict[str, set[str]] = {
    "static": {"calib_method", "calibration", "bits", "accuracy_budget", "reduce_range",
               "equalize", "bias_correction"},
    "dynamic": {"bits", "reduce_range"},
    "qat": {"calib_method", "calibration", "bits", "group_size", "epochs", "lr", "reduce_range",
            "train_subset", "teacher", "alpha", "temperature"},
    "weight-only": {"bits", "group_size"},
}
_FLAG = {"calib_method": "--calib-method", "calibration": "--calibration", "bits": "--bits",
         "group_size": "--group-size", "accuracy_budget": "--accuracy-budget",
         "epochs": "--epochs", "lr": "--lr", "reduce_range": "reduce_range",
         "train_subset": "--train-subset", "teacher": "--finetune-teacher",
         "alpha": "--finetune-alpha", "temperature": "--finetune-temperature",
         "equalize": "--equalize", "bias_correction": "--bias-correction"}
_DEFAULTS: dict[str, dict[str, Any]] = {
    "static": {"calib_method": "minmax", "calibration": DEFAULT_CALIBRATION, "bits": 8,
               "equalize": False, "bias_correction": False},
    "dynamic": {"bits": 8},
    "qat": {"calib_method": "minmax", "calibration": DEFAULT_CALIBRATION, "bits": 8,
            "epochs": 2, "lr": QAT_LR, "teacher": "none", "alpha": 0.7, "temperature": 4.0},
    "weight-only": {"bits": 4},
}


@dataclass
class QuantConfig:
    """How to quantize.

    Attributes:
        mode: ``static`` (int8 weights and activations, calibrated), ``dynamic`` (int8 weights,
            activations quantized at run time), ``qat`` (fake-quant fine-tuning, then static
            int8), ``weight-only`` (b-bit weights, float compute).
        granularity: ``channel`` (one scale per output channel) or ``tensor``.
        calib_method: ``minmax``, ``percentile`` or ``entropy`` (static, qat).
        calibration: number of training images to calibrate on (static, qat).
        bits: 8 for static and dynamic; 1, 2, 4 or 8 for weight-only and qat (qat below 8 bits
            fine-tunes for a weight-only deployment).
        group_size: weight-only (and low-bit qat): one scale per ``group_size`` consecutive
            input weights of a channel.
        skip_layers: layers kept in float (torch module path, ONNX node or weight name).
        accuracy_budget: static: keep the most sensitive layers float until validation
            accuracy is within this many points of fp32 (on unlabelled data: until top-1
            agreement with fp32 is at least 100 − this many points).
        epochs, lr: qat fine-tuning length and learning rate.
        train_subset, teacher, alpha, temperature: qat fine-tunes on the first N training
            images only; distils from ``teacher`` (``none``, ``parent`` or a run) with soft-target
            weight ``alpha`` at ``temperature`` (see :mod:`edgepress.finetune`).
        reduce_range: int8 weights in 7 bits (±64). ``None`` = decided for this machine by
            :func:`resolve_reduce_range` when quantizing, and recorded: x86 CPUs without VNNI
            saturate the u8·s8 products of ONNX Runtime's fused kernels with full-range weights
            (measured: logit SQNR 16 dB instead of 41 dB on LeNet-5), with VNNI they do not.
            Depthwise convolutions keep 8 bits either way: their kernel does not saturate.
        equalize: static: cross-layer equalisation before quantizing (Nagel et al. 2019, as
            AIMET does it): BatchNorm folded, ReLU6 a per-channel clip, the weight ranges of every
            conv → ReLU → conv pair evened out by per-channel scales that leave the fp32
            function unchanged — so that one scale per tensor fits depthwise layers.
        bias_correction: static: each layer's bias absorbs the mean shift of its output on
            the calibration images (empirical bias correction). ONNX Runtime builds measure it
            on the quantized graph, layer by layer, so that rounded inputs count too
            (:mod:`~edgepress.quantize.biascorrect`; works on ONNX parents); XNNPACK builds
            correct the weights' rounding with float inputs.
        seed: picks the calibration images (and seeds QAT).

    Raises:
        InputError: an unknown value, or an option the mode does not use.
    """

    mode: str = "static"
    granularity: str = "channel"
    calib_method: str | None = None
    calibration: int | None = None
    bits: int | None = None
    group_size: int | None = None
    skip_layers: list[str] = field(default_factory=list)
    accuracy_budget: float | None = None
    epochs: int | None = None
    lr: float | None = None
    reduce_range: bool | None = None
    train_subset: int | None = None
    teacher: str | None = None
    alpha: float | None = None
    temperature: float | None = None
    equalize: bool | None = None
    bias_correction: bool | None = None
    seed: int = 0
    version: int = CONFIG_VERSION  # of this config's format

    def __post_init__(self) -> None:
        check_version("quantization", self.version)
        if self.mode not in MODES:
            raise InputError(f"unknown --mode {self.mode!r} ({', '.join(MODES)})")
        if self.granularity not in GRANULARITIES:
            raise InputError(f"unknown --granularity {self.granularity!r} "
                             f"({', '.join(GRANULARITIES)})")
        if self.bits is not None and self.bits not in BITS:
            raise InputError(f"--bits must be one of {', '.join(map(str, BITS))} (got {self.bits})")
        self._check_fits_mode()
        self._check_values()
        defaults = dict(_DEFAULTS[self.mode])
        if self.mode == "qat" and self.bits not in (None, 8):
            del defaults["calib_method"], defaults["calibration"]  # weight-only fine-tuning
        for key, value in defaults.items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        self.skip_layers = [s.strip() for s in self.skip_layers if s.strip()]

    def _check_fits_mode(self) -> None:
        accepted = _ACCEPTS[self.mode]
        for name, flag in _FLAG.items():
            if getattr(self, name) is not None and name not in accepted:
                raise InputError(f"{flag} does not apply to --mode {self.mode}")
        if self.mode in ("static", "dynamic") and self.bits not in (None, 8):
            raise InputError(f"--mode {self.mode} is int8 only; --bits {self.bits} needs "
                             "--mode weight-only (or qat)")
        if self.mode == "qat" and self.group_size is not None and self.bits in (None, 8):
            raise InputError("--group-size needs low-bit weights (--bits 4, 2 or 1)")
        if self.mode == "qat" and self.bits not in (None, 8) and (
                self.calib_method is not None or self.calibration is not None
                or self.reduce_range is not None):
            raise InputError("low-bit QAT quantizes weights only; --calib-method and "
                             "--calibration apply to int8 QAT")
        if self.group_size is not None and self.granularity == "tensor":
            raise InputError("--group-size needs --granularity channel (groups split channels)")
        low_bit = self.mode == "weight-only" or (self.mode == "qat" and self.bits not in (None, 8))
        if low_bit and self.granularity == "tensor":
            raise InputError("weight-only quantization is per channel (or per --group-size "
                             "group); --granularity tensor does not apply")

    def _check_values(self) -> None:
        if self.calib_method is not None and self.calib_method not in CALIB_METHODS:
            raise InputError(f"unknown --calib-method {self.calib_method!r} "
                             f"({', '.join(CALIB_METHODS)})")
        if self.calibration is not None and self.calibration < 1:
            raise InputError(f"the calibration set is empty (--calibration {self.calibration})")
        if self.group_size is not None and self.group_size < 2:
            raise InputError(f"--group-size must be >= 2 (got {self.group_size})")
        if self.accuracy_budget is not None and not (
                math.isfinite(self.accuracy_budget) and self.accuracy_budget >= 0):
            raise InputError(f"--accuracy-budget must be >= 0 points (got {self.accuracy_budget})")
        if self.epochs is not None and self.epochs < 1:
            raise InputError(f"--epochs must be >= 1 (got {self.epochs})")
        if self.lr is not None and not self.lr > 0:
            raise InputError(f"--lr must be > 0 (got {self.lr})")
        for name in ("equalize", "bias_correction"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), bool):
                raise InputError(f"{_FLAG[name]} is true or false (got {getattr(self, name)!r})")
        if isinstance(self.skip_layers, str):
            raise InputError("skip_layers must be a list of layer names")
        if self.train_subset is not None and (not isinstance(self.train_subset, int)
                                              or self.train_subset < 1):
            raise InputError(f"--train-subset must be >= 1 (got {self.train_subset})")
        if self.teacher is not None:
            from ..finetune import check_teacher_options

            check_teacher_options(self.teacher, 0.7 if self.alpha is None else self.alpha,
                                  4.0 if self.temperature is None else self.temperature)

    def finetune_options(self) -> Any:
        """QAT's fine-tune in the shared :class:`~edgepress.finetune.Finetune` shape; ``None``
        for the modes that do not train.

        >>> QuantConfig(mode="qat", epochs=3).finetune_options().epochs
        3
        >>> QuantConfig(mode="static").finetune_options() is None
        True
        """
        from ..finetune import Finetune

        if self.mode != "qat":
            return None
        return Finetune(epochs=int(self.epochs or 0), lr=self.lr, train_subset=self.train_subset,
                        teacher=self.teacher or "none", alpha=float(self.alpha or 0.7),
                        temperature=float(self.temperature or 4.0))

    def with_finetune(self, ft: Any) -> QuantConfig:
        """A copy fine-tuning as ``ft`` says (QAT trains at least one epoch).

        Raises:
            InputError: options QAT does not take (batch size, schedule), or 0 epochs.
        """
        if ft.batch_size is not None or ft.schedule != "cosine":
            raise InputError("QAT fine-tunes at the recipe batch size on a cosine schedule")
        return QuantConfig.from_dict({**self.to_dict(), "epochs": ft.epochs, "lr": ft.lr or QAT_LR,
                                      "train_subset": ft.train_subset, "teacher": ft.teacher,
                                      "alpha": ft.alpha, "temperature": ft.temperature})

    @property
    def per_channel(self) -> bool:
        """Whether weights get one scale per output channel."""
        return self.granularity == "channel"

    def resolved(self) -> QuantConfig:
        """This config with ``reduce_range`` decided for this machine (when it applies)."""
        if self.reduce_range is not None or not self.int8_activations:
            return self
        return QuantConfig.from_dict({**self.to_dict(), "reduce_range": resolve_reduce_range()})

    @property
    def int8_activations(self) -> bool:
        """Whether activations are quantized too (static, dynamic, 8-bit qat)."""
        return self.mode in ("static", "dynamic") or (self.mode == "qat" and self.bits == 8)

    @property
    def precision(self) -> str:
        """The deployment precision this config produces: ``int8``, or ``int4`` etc. for
        weight-only.
        """
        return f"int{self.bits}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``model.json`` records under deployment.quantization)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QuantConfig:
        """Inverse of :meth:`to_dict`.

        Raises:
            InputError: unknown keys or invalid values.
        """
        if not isinstance(d, dict):
            raise InputError("a quantization config must be a mapping")
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise InputError(f"unknown quantization option(s): {', '.join(sorted(unknown))}")
        return cls(**{**d, "skip_layers": list(d.get("skip_layers") or [])})


def resolve_reduce_range() -> bool:
    """Whether int8 weights should use 7 bits here: on x86 without VNNI (AVX2 ``vpmaddubsw``
    saturates u8·s8 pairs), not on VNNI / AMX x86 nor on ARM.
    """
    import platform

    from ..measurement.machine import machine_info

    x86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
    vnni = {"avx512_vnni", "avx_vnni", "amx_int8"} & set(machine_info()["isa"])
    return x86 and not vnni
