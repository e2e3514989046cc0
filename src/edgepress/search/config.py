"""What ``edgepress search`` looks for: a validated :class:`SearchConfig`.

Example:
    >>> c = SearchConfig(budget_pts=0.5, trials=8)
    >>> SearchConfig.from_dict(c.to_dict()) == c
    True
    >>> SearchConfig(objectives=("size", "energy"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    edgepress.errors.InputError: unknown objective 'energy' (size, latency)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InputError
from ..jsonconfig import JsonConfig

OBJECTIVES = ("size", "latency")


@dataclass
class SearchConfig(JsonConfig):
    """A constrained multi-objective search over every compression family.

    Attributes:
        budget_pts: the largest validation accuracy loss (points) a trial may have: a hard
            constraint, never traded against size or speed.
        objectives: ``size`` (gzip'd deployment bytes, minimised) and / or ``latency``
            (speed-up against the reference in an interleaved session, maximised).
        runtime: where latency is timed (``onnxruntime`` or ``executorch``).
        trials: the study's total number of finished trials (all workers together).
        timeout: stop this worker after this many seconds (None: no limit).
        storage: the Optuna storage URL (None: ``sqlite:///OUT/search.db``).
        study_name: the Optuna study (None: ``edgepress-search``).
        seed: the sampler's seed.
        data: the data (None: the run's).
        max_epochs: the longest fine-tune a trial may draw.
        screen: validation images of the cheap first score (a trial that cannot meet the
            budget on them is stopped before the full validation score and any timing).
        latency_seconds: timed seconds per model in each trial's interleaved session.
        front_seconds: timed seconds per model in the front's final test compare (None: the
            compare's default).
        train_subset: fine-tunes use the first N training images (None: all of them); the
            study's time budget sets it.
    """

    config_name = "search"

    budget_pts: float = 1.0
    objectives: tuple[str, ...] = OBJECTIVES
    runtime: str = "onnxruntime"
    trials: int = 20
    timeout: float | None = None
    storage: str | None = None
    study_name: str | None = None
    seed: int = 0
    data: str | None = None
    max_epochs: int = 2
    screen: int = 500
    latency_seconds: float = 1.0
    front_seconds: float | None = None
    train_subset: int | None = None

    def __post_init__(self) -> None:
        self.objectives = tuple(self.objectives)
        if not isinstance(self.budget_pts, int | float) or not math.isfinite(self.budget_pts) \
                or self.budget_pts < 0:
            raise InputError(f"--budget-pts must be >= 0 points (got {self.budget_pts})")
        if not self.objectives:
            raise InputError("--objectives needs at least one of size, latency")
        for o in self.objectives:
            if o not in OBJECTIVES:
                raise InputError(f"unknown objective {o!r} ({', '.join(OBJECTIVES)})")
        if len(set(self.objectives)) != len(self.objectives):
            raise InputError(f"--objectives names one twice ({','.join(self.objectives)})")
        if not isinstance(self.trials, int) or self.trials < 1:
            raise InputError(f"--trials must be >= 1 (got {self.trials})")
        if self.timeout is not None and not self.timeout > 0:
            raise InputError(f"--timeout must be > 0 seconds (got {self.timeout})")
        if self.runtime not in ("onnxruntime", "executorch"):
            raise InputError(f"unknown --runtime {self.runtime!r} (onnxruntime, executorch)")
        if not isinstance(self.max_epochs, int) or self.max_epochs < 1:
            raise InputError(f"max epochs must be >= 1 (got {self.max_epochs})")
        if self.train_subset is not None and (not isinstance(self.train_subset, int)
                                              or self.train_subset < 1):
            raise InputError(f"train subset must be >= 1 images (got {self.train_subset})")
        if self.screen < 1 or not self.latency_seconds > 0:
            raise InputError("screen images and latency seconds must be positive")
