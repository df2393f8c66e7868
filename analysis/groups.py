"""One answer per scientific value: the best trial of each group, across its seeds.

A search space keeps the settings a study is about (``scientific``: the LoRA rank) apart
from those tuned so that every scientific value gets a fair chance (``nuisance``: the
learning rate). A study's answer is therefore one row per scientific value: the best of
its nuisance settings, judged on trials that ran to the end, never a mix of trials stopped
at different epochs. With seed replicates (``--seeds N``), each seed is its own tuning run:
the row reports the median and the range over the seeds of their best trials.

The sweep summary (rows from Ray Tune) and ``analysis/`` (rows read back from MLflow) both
call :func:`best_per_group`; rows are plain mappings, so neither needs the other's types.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from analysis.values import finite, sort_key

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Stat:
    """A metric over the seeds of a group: their median, lowest and highest value, and mean."""

    median: float
    low: float
    high: float
    n: int
    mean: float = math.nan

    def text(self, fmt: str = "{:.4f}", unit: str = "seeds") -> str:
        """``70.1200`` for one seed, ``70.1200 (69.8000-70.4000, 3 seeds)`` for several."""
        if self.n == 1:
            return fmt.format(self.median)
        return f"{fmt.format(self.median)} ({fmt.format(self.low)}-{fmt.format(self.high)}, {self.n} {unit})"


@dataclass
class Group:
    """The trials sharing one scientific value (seeds pooled)."""

    values: dict[str, Any]
    """The scientific values (without the seed), e.g. ``{'r': 4}``."""
    trials: list[Row] = field(default_factory=list)
    """Every trial of the group, whatever its status."""
    chosen: list[Row] = field(default_factory=list)
    """The best trial that ran to the end, one per seed (per replicate unit: ``seed_key``'s
    value) in that order; empty when none did."""

    def count(self, status: str, status_key: str = "status") -> int:
        return sum(r.get(status_key) == status for r in self.trials)

    def stat(self, metric: str) -> Stat | None:
        """``metric`` over the chosen trials (None when none has a finite value)."""
        values = sorted(float(r[metric]) for r in self.chosen if finite(r.get(metric)))
        if not values:
            return None
        return Stat(statistics.median(values), values[0], values[-1], len(values), statistics.fmean(values))

    def chosen_values(self, key: str) -> list[Any]:
        """The distinct values of setting ``key`` among the chosen trials, in their order."""
        return list(dict.fromkeys(r.get(key) for r in self.chosen))


def _unit_order(unit: Any) -> tuple:
    """Seeds in order; a tuple unit (a sweep and its seed) element by element."""
    return tuple(map(sort_key, unit)) if isinstance(unit, tuple) else (sort_key(unit),)


def best_first(metric: str, mode: str) -> Callable[[Row], tuple[float, str]]:
    """The sort key that puts the best row of a finite ``metric`` first (``mode``: ``min`` or
    ``max``); of rows tied at a value, the first by ``trial_id``."""
    sign = 1.0 if mode == "min" else -1.0
    return lambda row: (sign * row[metric], str(row.get("trial_id", "")))


def best_per_group(rows: Sequence[Row], *, scientific: Sequence[str], metric: str, mode: str,
                   seed_key: str | None = "seed", is_complete: Callable[[Row], bool] | None = None,
                   ) -> list[Group]:
    """Group ``rows`` by their ``scientific`` values and pick each group's best.

    ``scientific``: the keys that make a group (a ``seed_key`` among them marks replicates:
    it separates seeds, not groups). ``metric``/``mode``: what "best" means (``min`` or
    ``max``). ``is_complete``: which rows ran to the end (default: ``status == 'completed'``);
    only those, with a finite ``metric``, can be chosen; of rows tied at the best value, the
    first by ``trial_id`` (as the sweep's best trial is picked). Groups come sorted by their values.
    """
    complete = is_complete or (lambda r: r.get("status") == "completed")
    keys = [k for k in scientific if k != seed_key]
    replicated = seed_key is not None and seed_key in scientific
    groups: dict[tuple[str, ...], Group] = {}
    for row in rows:
        values = {k: row.get(k) for k in keys}
        group = groups.setdefault(tuple(repr(v) for v in values.values()), Group(values))
        group.trials.append(row)
    key = best_first(metric, mode)
    for group in groups.values():
        best: dict[Any, Row] = {}
        for row in group.trials:
            if not (complete(row) and finite(row.get(metric))):
                continue
            seed = row.get(seed_key) if replicated else None
            if seed not in best or key(row) < key(best[seed]):
                best[seed] = row
        group.chosen = [best[s] for s in sorted(best, key=_unit_order)]
    return sorted(groups.values(), key=lambda g: tuple(sort_key(v) for v in g.values.values()))
