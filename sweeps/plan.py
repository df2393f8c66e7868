"""What a sweep is once everything is checked and derived, before anything launches."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweeps.config import SweepConfig


@dataclass
class Plan:
    """Everything validated and derived before launch."""

    cfg: SweepConfig
    space: Any
    base: dict[str, Any]
    param_space: dict[str, Any]
    n_trials: int | None
    name: str
    storage: str
    tracking_uri: str
    experiment: str
    model_type: str
    prepared: Path | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    adapters: dict[str, str] = field(default_factory=dict)
    """``adapter.init_from`` values -> local adapter directories (warm starts)."""
    points: list[dict[str, Any]] | None = None
    """Under a parameter budget: the grid points within it (the others never launch)."""
    rejected: list[tuple[dict[str, Any], int]] = field(default_factory=list)
    """Under a parameter budget: the grid points over it, with their trainable parameters."""
    max_epoch: float = 1.0
    groups: tuple[str, ...] | None = None
    """The swept settings (Tune keys) whose values make ASHA's groups; None = sweep-wide."""
    group_points: list[dict[str, Any]] | None = None
    """Grouped Optuna: each group's values of the grouping settings (one study each)."""
    bitsandbytes: bool = True
    """Whether a trial may load bitsandbytes (else trial processes skip importing it)."""
    study_storage: str | None = None
    """Optuna searches: the URL of the storage that keeps the sweep's studies (None: in memory)."""
    prior_samples: int = 0
    """``--extend``: the samples (per group with groups) the sweep ran before this extension."""
