"""Which structural method and its options: a validated :class:`StructureConfig` (JSON round-trip).

Each method takes only the options that mean something for it (:data:`METHOD_OPTIONS`); setting
another one (``--bits`` with ``lowrank``, ``--finetune-epochs`` with the exact ``fold``) is an
``InputError``. Options a method takes but that were left unset get its default
(:data:`METHOD_DEFAULTS`), so a stored config says exactly what ran.

Example:
    >>> c = StructureConfig(method="lowrank", rank=16)
    >>> StructureConfig.from_dict(c.to_dict()) == c
    True
    >>> c.finetune_epochs
    2
    >>> StructureConfig(method="cluster", bits=9)
    Traceback (most recent call last):
    ...
    edgepress.errors.InputError: --bits must be in 1..8 (got 9)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from ..jsonconfig import CONFIG_VERSION, JsonConfig, check_version

METHODS = ("fold", "merge", "lowrank", "drop-blocks", "cluster")
_FINETUNE = ("finetune_epochs", "finetune_lr", "train_subset", "finetune_teacher",
             "finetune_alpha", "finetune_temperature")
_TEACHER_DEFAULTS = {"finetune_teacher": "none", "finetune_alpha": 0.7,
                     "finetune_temperature": 4.0}
# The method-specific options each method takes (everything else must stay unset).
METHOD_OPTIONS: dict[str, tuple[str, ...]] = {
    "fold": (),
    "merge": (),
    "lowrank": ("rank", "energy", "skip_layers", *_FINETUNE),
    "drop-blocks": ("blocks", "block_names", *_FINETUNE),
    "cluster": ("bits", "skip_layers", *_FINETUNE),
}
# Defaults filled in for the options a method takes but the user left unset.
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "fold": {}, "merge": {},
    "lowrank": {"finetune_epochs": 2, **_TEACHER_DEFAULTS},
    "drop-blocks": {"finetune_epochs": 2, **_TEACHER_DEFAULTS},
    "cluster": {"bits": 5, "finetune_epochs": 2, **_TEACHER_DEFAULTS},
}
DEFAULT_ENERGY = 0.9  # lowrank with neither --rank nor --energy keeps 90% of each layer's energy
FLAGS = {name: "--" + name.replace("_", "-") for name in
         ("rank", "energy", "blocks", "block_names", "bits", "skip_layers", "finetune_epochs",
          "finetune_lr", "train_subset", "finetune_teacher", "finetune_alpha",
          "finetune_temperature")}


@dataclass
class StructureConfig(JsonConfig):
    """A structural compression method and its options; validates itself, fills defaults.

    Args:
        method: ``fold`` (BatchNorm into the conv/linear before it), ``merge`` (consecutive
            linear / 1×1 conv layers into one, no-op layers out), ``lowrank`` (truncated SVD),
            ``drop-blocks`` (bypass the least important residual blocks) or ``cluster``
            (k-means weight sharing).
        rank: lowrank: the same rank for every factorised layer (1 <= rank < min(m, n)).
        energy: lowrank: per-layer rank keeping this fraction of the squared singular values,
            in (0, 1] (default 0.9 when neither rank nor energy is given).
        blocks: drop-blocks: how many residual blocks to drop (default 1).
        block_names: drop-blocks: drop exactly these blocks (``blocks.2`` or ``2``) instead.
        bits: cluster: k = 2**bits shared values per layer, bits in 1..8 (default 5).
        skip_layers: lowrank / cluster: layer names (or name prefixes) left alone.
        finetune_epochs: fine-tuning epochs after lowrank / drop-blocks / cluster (default 2).
        finetune_lr: peak fine-tuning rate (default: the model's recipe rate × 0.5).
        train_subset: fine-tune on the first N training images only.
        seed: fine-tuning seed.

    Raises:
        InputError: an option outside its range or one that does not fit the method.
    """

    config_name = "structure"

    method: str
    rank: int | None = None
    energy: float | None = None
    blocks: int | None = None
    block_names: tuple[str, ...] | None = None
    bits: int | None = None
    skip_layers: tuple[str, ...] | None = None
    finetune_epochs: int | None = None
    finetune_lr: float | None = None
    train_subset: int | None = None
    finetune_teacher: str | None = None  # none | parent | RUN: distillation-aided recovery
    finetune_alpha: float | None = None
    finetune_temperature: float | None = None
    seed: int = 0
    version: int = CONFIG_VERSION  # of this config's format

    def __post_init__(self) -> None:
        check_version("structure", self.version)
        if self.method not in METHODS:
            raise InputError(f"unknown structure method {self.method!r} ({', '.join(METHODS)})")
        for name in ("block_names", "skip_layers"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, tuple(str(v).strip() for v in value if str(v).strip())
                        or None)
        self._check_fit()
        if self.method == "lowrank" and self.rank is None and self.energy is None:
            self.energy = DEFAULT_ENERGY
        if self.method == "drop-blocks" and self.blocks is None and self.block_names is None:
            self.blocks = 1
        for name, value in METHOD_DEFAULTS[self.method].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        self._check_values()

    def _check_fit(self) -> None:
        allowed = METHOD_OPTIONS[self.method]
        for name, flag in FLAGS.items():
            if getattr(self, name) is not None and name not in allowed:
                takes = ", ".join(FLAGS[a] for a in allowed) or "no options: it is exact"
                raise InputError(f"{flag} does not fit --method {self.method} (it takes {takes})")

    def _check_values(self) -> None:
        if self.rank is not None and self.energy is not None:
            raise InputError("give --rank or --energy, not both")
        if self.rank is not None and (not isinstance(self.rank, int) or self.rank < 1):
            raise InputError(f"--rank must be an integer >= 1 (got {self.rank})")
        if self.energy is not None and not (math.isfinite(self.energy)
                                            and 0.0 < self.energy <= 1.0):
            raise InputError(f"--energy must be in (0, 1] (got {self.energy})")
        if self.blocks is not None and self.block_names is not None:
            raise InputError("give --blocks K or --block-names A,B, not both")
        if self.blocks is not None and (not isinstance(self.blocks, int) or self.blocks < 1):
            raise InputError(f"--blocks must be an integer >= 1 (got {self.blocks})")
        if self.bits is not None and (not isinstance(self.bits, int) or not 1 <= self.bits <= 8):
            raise InputError(f"--bits must be in 1..8 (got {self.bits})")
        if self.finetune_epochs is not None and (not isinstance(self.finetune_epochs, int)
                                                 or self.finetune_epochs < 0):
            raise InputError(f"--finetune-epochs must be >= 0 (got {self.finetune_epochs})")
        if self.finetune_lr is not None and not (math.isfinite(self.finetune_lr)
                                                 and self.finetune_lr > 0):
            raise InputError(f"--finetune-lr must be > 0 (got {self.finetune_lr})")
        if self.train_subset is not None and self.train_subset < 1:
            raise InputError(f"--train-subset must be >= 1 (got {self.train_subset})")
        if self.finetune_teacher is not None:
            from ..finetune import check_teacher_options

            check_teacher_options(self.finetune_teacher, self.finetune_alpha,
                                  self.finetune_temperature)

    def finetune_options(self) -> Any:
        """The fine-tune in the shared :class:`~edgepress.finetune.Finetune` shape; ``None``
        for the exact methods (fold, merge), which do not train.

        >>> StructureConfig(method="cluster").finetune_options().epochs
        2
        """
        from ..finetune import Finetune

        if "finetune_epochs" not in METHOD_OPTIONS[self.method]:
            return None
        return Finetune(epochs=int(self.finetune_epochs or 0), lr=self.finetune_lr,
                        train_subset=self.train_subset,
                        teacher=self.finetune_teacher or "none",
                        alpha=float(self.finetune_alpha or 0.7),
                        temperature=float(self.finetune_temperature or 4.0))

    def with_finetune(self, ft: Any) -> StructureConfig:
        """A copy fine-tuning as ``ft`` says.

        Raises:
            InputError: options a structural fine-tune does not take (batch size, schedule).
        """
        if ft.batch_size is not None or ft.schedule != "cosine":
            raise InputError("a structural fine-tune runs at the recipe batch size on a cosine "
                             "schedule")
        return StructureConfig.from_dict({
            **self.to_dict(), "finetune_epochs": ft.epochs, "finetune_lr": ft.lr,
            "train_subset": ft.train_subset, "finetune_teacher": ft.teacher,
            "finetune_alpha": ft.alpha, "finetune_temperature": ft.temperature})

    @property
    def clusters(self) -> int:
        """K = 2**bits (cluster)."""
        return 2 ** int(self.bits or 0)
