"""Replay a sweep's schedulers over learning curves recorded when every trial ran to the end.

Which trials asynchronous successive halving stops depends on the order in which they reach
each rung, so one live sweep is one draw. Given the validation curves of a grid run to the
end (FIFO), :func:`replay` runs the sweep's own schedulers (:class:`sweeps.schedulers.GroupedASHA`
for ``promotion: stop``, :class:`sweeps.schedulers.PromotingASHA` for ``pause``) on a simulated
clock: ``workers`` trials at a time, one epoch per time step, new trials started in a given
order. It returns how far each trial trained, from which the trial-epochs spent and the best
final value found per group follow, for as many orders as one wants.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any


@dataclass
class Replayed:
    epochs: dict[Hashable, int]
    """Trial -> epochs it trained before it stopped or completed."""
    max_t: int

    @property
    def spent(self) -> int:
        return sum(self.epochs.values())

    def completed(self) -> list[Hashable]:
        return [k for k, e in self.epochs.items() if e >= self.max_t]


def replay(curves: dict[Hashable, Sequence[float]], order: Sequence[Hashable], *, rule: str,
           grace: float, eta: float, workers: int, mode: str = "min",
           group_of: Callable[[Hashable], Any] | None = None) -> Replayed:
    """Run ``rule`` (``stop`` or ``pause``) over ``curves`` (trial -> metric after each epoch,
    all of equal length), starting trials in ``order``; ``group_of`` (trial -> group) makes
    the schedulers compare trials within groups only."""
    from ray.tune.schedulers import TrialScheduler

    from sweeps.schedulers import GroupedASHA, PromotingASHA

    max_t = len(next(iter(curves.values())))
    keys = ("group",) if group_of is not None else ()
    trials = {k: SimpleNamespace(trial_id=k, status="PENDING",
                                 config={"group": group_of(k) if group_of else None}) for k in order}
    cls = PromotingASHA if rule == "pause" else GroupedASHA
    scheduler = cls(time_attr="epoch", grace_period=grace, reduction_factor=eta, max_t=max_t,
                    group_keys=keys, metric="m", mode=mode)
    controller = SimpleNamespace(get_trials=lambda: list(trials.values()),
                                 search_alg=SimpleNamespace(is_finished=lambda: True),
                                 stop_trial=lambda t: setattr(t, "status", "TERMINATED"))
    if rule == "stop":
        for trial in trials.values():
            scheduler.on_trial_add(controller, trial)

        def choose() -> Any:
            return next((t for t in trials.values() if t.status == "PENDING"), None)
    else:
        def choose() -> Any:
            return scheduler.choose_trial_to_run(controller)

    reached: dict[Hashable, int] = {}
    events: list[tuple[int, int, Any]] = []
    tick = itertools.count()
    busy = 0

    def fill(now: int) -> None:
        nonlocal busy
        while busy < workers and (trial := choose()) is not None:
            trial.status, busy = "RUNNING", busy + 1
            heapq.heappush(events, (now + 1, next(tick), trial))

    fill(0)
    while events:
        now, _, trial = heapq.heappop(events)
        epoch = reached[trial.trial_id] = reached.get(trial.trial_id, 0) + 1
        action = scheduler.on_trial_result(controller, trial, {"epoch": epoch,
                                                               "m": curves[trial.trial_id][epoch - 1]})
        if epoch >= max_t or action == TrialScheduler.STOP:
            trial.status, busy = "TERMINATED", busy - 1
        elif action == TrialScheduler.PAUSE:
            trial.status, busy = "PAUSED", busy - 1
        else:
            heapq.heappush(events, (now + 1, next(tick), trial))
        fill(now)
    return Replayed(reached, max_t)
