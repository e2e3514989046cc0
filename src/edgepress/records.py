"""Typed records: a run's ``model.json`` (:class:`RunMeta`) and a measurement record
(:class:`MeasurementRecord`), each with a schema version, written as the contract JSON.

Both are dataclasses whose fields are the contract's; what a producing step adds beside them
(``pruning``, ``structure``, ``weight_sparsity``, a runtime's extras...) is kept in ``extra`` and
written at the top level, so ``to_dict`` gives exactly the JSON that was always written, and
``from_dict(to_dict())`` gives the record back. Reading checks what a reader relies on: a
missing field, a wrong type, or a schema newer than this edgepress is an
:class:`~edgepress.errors.InputError` that names the field, instead of a ``KeyError`` deep in a
command.

Example:
    >>> meta = RunMeta.new(architecture={"input_shape": [1, 8, 8], "num_classes": 10,
    ...                                  "zoo": "mlp", "kwargs": {}}, data="digits")
    >>> RunMeta.from_dict(meta.to_dict()) == meta
    True
    >>> RunMeta.from_dict({"schema": 1, "data": "digits"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    edgepress.errors.InputError: model.json: missing 'architecture'
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import sys
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from .errors import InputError
from .version import __version__

META_SCHEMA = 1
RECORD_SCHEMA = 1

T = TypeVar("T", bound="_Typed")


class _Typed:
    """Shared ``to_dict`` / ``from_dict`` of a typed record with ``extra`` top-level fields."""

    what: ClassVar[str] = "record"
    SCHEMA: ClassVar[int] = 1
    REQUIRED: ClassVar[dict[str, type | tuple[type, ...]]] = {}

    def to_dict(self) -> dict[str, Any]:
        """The contract JSON: the declared fields in order, then the extra ones."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)  # type: ignore[arg-type]
             if f.name != "extra"}
        return {**d, **getattr(self, "extra", {})}

    @classmethod
    def from_dict(cls: type[T], d: Any) -> T:
        """Read a record, checking its schema and the fields readers rely on.

        Raises:
            InputError: not a mapping, a missing or mistyped required field, a newer schema.
        """
        if not isinstance(d, dict):
            raise InputError(f"{cls.what}: expected a JSON object, got {type(d).__name__}")
        schema = d.get("schema", 1)
        if not isinstance(schema, int) or schema > cls.SCHEMA:
            raise InputError(f"{cls.what}: schema {schema!r} is newer than this edgepress reads "
                             f"({cls.SCHEMA}); upgrade edgepress")
        for name, kind in cls.REQUIRED.items():
            if name not in d:
                raise InputError(f"{cls.what}: missing {name!r}")
            if not isinstance(d[name], kind):
                raise InputError(f"{cls.what}: {name!r} must be "
                                 f"{getattr(kind, '__name__', 'of another type')}, "
                                 f"got {type(d[name]).__name__}")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}  # type: ignore[arg-type]
        known = {k: v for k, v in d.items() if k in names}
        return cls(**known, extra={k: v for k, v in d.items() if k not in names})  # type: ignore[call-arg]


def fp32_deployment() -> dict[str, Any]:
    """The ``deployment`` record of an fp32 ONNX export of a PyTorch model."""
    return {"format": "onnx", "precision": "fp32", "quantization": None,
            "calibration_indices_hash": None}


@dataclass
class Provenance:
    """Where a run came from: its parent, the command, the config and seed, the version."""

    parent: str | None = None
    command: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    edgepress_version: str = __version__
    created: str = ""

    @classmethod
    def now(cls, *, parent: str | None = None, config: dict | None = None,
            seed: int | None = None) -> Provenance:
        """The provenance of a run made now by this command line."""
        return cls(parent=parent, command=" ".join(["edgepress", *sys.argv[1:]]),
                   config=dict(config or {}), seed=seed,
                   created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))


@dataclass
class RunMeta(_Typed):
    """A run's ``model.json``.

    Attributes:
        architecture: ``input_shape``, ``num_classes`` and how to rebuild the model (``zoo`` +
            ``kwargs``, a user model's ``source``, structural ``transforms``, pruned ``widths``),
            or the ``onnx`` file it came from.
        data: the data set's name.
        splits: the split sizes and hashes the run was trained / tuned on.
        provenance: parent, command, config, seed, version, time.
        deployment: format, precision, the quantization config, the calibration hash.
        extra: what the producing step recorded (``pruning``, ``structure``, ``training``...).
    """

    what: ClassVar[str] = "model.json"
    SCHEMA: ClassVar[int] = META_SCHEMA
    REQUIRED: ClassVar[dict[str, type | tuple[type, ...]]] = {"architecture": dict, "data": str}

    architecture: dict[str, Any]
    data: str
    splits: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    deployment: dict[str, Any] = field(default_factory=fp32_deployment)
    schema: int = META_SCHEMA
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        arch = self.architecture
        shape = arch.get("input_shape") if isinstance(arch, dict) else None
        if not (isinstance(shape, list) and shape and all(isinstance(v, int) and v > 0
                                                          for v in shape)):
            raise InputError(f"model.json: architecture.input_shape must be a list of positive "
                             f"integers (got {shape!r})")
        if not isinstance(arch.get("num_classes"), int) or arch["num_classes"] < 1:
            raise InputError(f"model.json: architecture.num_classes must be a positive integer "
                             f"(got {arch.get('num_classes')!r})")

    @classmethod
    def new(cls, *, architecture: dict[str, Any], data: str, splits: dict | None = None,
            parent: str | None = None, config: dict | None = None,
            seed: int | None = None) -> RunMeta:
        """A fresh run description made now (fp32 deployment until a step says otherwise)."""
        prov = Provenance.now(parent=parent, config=config, seed=seed)
        return cls(architecture=architecture, data=data, splits=dict(splits or {}),
                   provenance=dataclasses.asdict(prov))

    def to_dict(self) -> dict[str, Any]:
        """``model.json`` as always written: schema first."""
        d = super().to_dict()
        return {"schema": d.pop("schema"), **d}


@dataclass
class MeasurementRecord(_Typed):
    """One model measured (``metrics.json``, one row of ``compare`` / ``study``): the contract's
    fields; ``extra`` holds the comparison's ratios, the runtime's extras and what the producing
    step added.
    """

    what: ClassVar[str] = "measurement record"
    SCHEMA: ClassVar[int] = RECORD_SCHEMA
    REQUIRED: ClassVar[dict[str, type | tuple[type, ...]]] = {
        "model": str, "runtime": str, "params_total": int, "size_bytes": int,
        "size_gzip_bytes": int, "latency_ms": dict}

    model: str
    variant: str
    data: str
    runtime: str
    params_total: int
    size_bytes: int
    size_gzip_bytes: int
    latency_ms: dict[str, Any]
    accuracy: float | None = None
    accuracy_ci95: list[float] | None = None
    n_test: int = 0
    seed: int | None = None
    runtime_version: str = ""
    threads: int = 1
    batch: int = 1
    machine: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    params_nonzero: int = 0
    macs: int = 0
    macs_incomplete: bool = False
    macs_incomplete_nodes: list[str] = field(default_factory=list)
    counts_from: str = "deployment"
    counts_file: str | None = None
    load_ms: float = 0.0
    peak_rss_mb: float | None = None
    rss_baseline_mb: float | None = None
    rss_includes_torch: bool | None = None
    peak_rss_model_mb: float | None = None
    kernels: dict[str, int] = field(default_factory=dict)
    kernel_time_us: dict[str, float] = field(default_factory=dict)
    fidelity: dict[str, Any] | None = None
    fidelity_note: str | None = None  # why fidelity is null though a parent is recorded
    deployment: dict[str, Any] | None = None
    file: str = ""
    schema: int = RECORD_SCHEMA
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The record as the contract writes it: schema first."""
        d = super().to_dict()
        return {"schema": d.pop("schema"), **d}


def read_record(path: Any) -> dict[str, Any]:
    """A ``metrics.json`` read and checked (:meth:`MeasurementRecord.from_dict`), as a dict.

    Raises:
        InputError: unreadable, not JSON, or not a measurement record.
    """
    import json
    from pathlib import Path

    p = Path(path)
    try:
        d = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{p}: not a readable measurement record ({e})") from None
    try:
        return MeasurementRecord.from_dict(d).to_dict()
    except InputError as e:
        raise InputError(f"{p}: {e}") from None
