"""Early stopping that never decides the scientific question: ASHA within groups.

A study sweeps *scientific* settings (what it is about: the LoRA rank) and *nuisance*
settings (tuned so that each scientific value gets a fair chance: the learning rate). ASHA
run over the whole sweep compares a rank-1 trial with a rank-64 one and stops most ranks
after an epoch: the study then has no answer for them. Here ASHA compares a trial only with
the trials of its *group*, those that share its scientific values (``scheduler.groups``),
so it prunes nuisance settings within each scientific value and each value's best trial runs
to the end.

Both promotion rules (``scheduler.promotion``) work within groups:

- ``stop``: :class:`GroupedASHA` is Ray Tune's ``ASHAScheduler`` with one bracket per group.
  A trial reaching a rung goes on unless it is below the top 1/eta of the group's trials
  that reached the rung before it; the first trial at each rung goes on.
- ``pause``: :class:`PromotingASHA` states ASHA as Li et al. (2020, "A System for Massively
  Parallel Hyperparameter Tuning", Algorithm 2) do: a trial that reaches a rung waits there
  (a Tune trial PAUSED at its rung's report, which checkpoints it); a freed worker promotes
  a waiting trial that is in the top ``floor(n / eta)`` of the ``n`` trials of its group
  recorded at its rung (highest rung first), and otherwise starts a new trial. A trial
  already in that top when it reaches the rung goes on without pausing.

A group runs out of trials to compare with when its last trials wait at a rung with fewer
than ``eta`` of them recorded: nobody there is in the top ``floor(n / eta)``. Once nothing of
the group is pending or running and the search has nothing left to start, its best waiting
trial at its highest rung is promoted, until one of the group's trials reaches the end; then
the group's other waiting trials stop where they are.

Both keep their rung records across ``--resume``: Tune's experiment snapshot leaves the
scheduler out (a restored sweep gets the scheduler as it was launched, with no records), so
:class:`SchedulerRecords`, a Tune callback, saves them with each snapshot (``get_state``) and
loads them into the restored scheduler (``set_state``) before Tune adds the restored trials.
A trial recorded at a rung is compared with the same trials as in an uninterrupted sweep; a
report the snapshot had not seen is sent again by the restored trial and recorded then.

Pausing needs trials that can wait: it is refused with ``search.max_concurrent`` (Tune counts
paused trials against that limit, so waiting trials would block every new one) and with Ray
Train worker groups (``workers_per_trial`` > 1), whose pause and resume is not checked.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler
from ray.tune.schedulers.async_hyperband import _Bracket

Group = tuple[str, ...]


def group_of(config: Mapping[str, Any], keys: Sequence[str]) -> Group:
    """A trial's group: its values of the grouping ``keys`` (Tune ``param_space`` keys)."""
    return tuple(json.dumps(config.get(k), sort_keys=True, default=str) for k in keys)


class GroupedASHA(AsyncHyperBandScheduler):
    """Ray Tune's asynchronous successive halving, one bracket per group of trials."""

    def __init__(self, *, group_keys: Sequence[str], time_attr: str, grace_period: float,
                 reduction_factor: float, max_t: float, metric: str | None = None,
                 mode: str | None = None) -> None:
        super().__init__(time_attr=time_attr, metric=metric, mode=mode, max_t=max_t,
                         grace_period=grace_period, reduction_factor=reduction_factor, brackets=1)
        self.group_keys = tuple(group_keys)
        self._grace = grace_period
        self.brackets: dict[Group, _Bracket] = {}

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        super().on_trial_add(tune_controller, trial)  # checks metric and mode
        self._trial_info[trial.trial_id] = self._bracket(group_of(trial.config, self.group_keys))

    def _bracket(self, group: Group) -> _Bracket:
        if group not in self.brackets:
            self.brackets[group] = _Bracket(self._grace, self._max_t, self._reduction_factor, s=0)
        return self.brackets[group]

    def records(self) -> dict[str, Any]:
        """The rung records (plain data): per group, milestone -> {trial id: score}, and the
        number of trials stopped."""
        return {"stopped": self._num_stopped,
                "groups": [(list(group), [(float(m), {tid: float(v) for tid, v in rec.items()})
                                          for m, rec in bracket._rungs])
                           for group, bracket in self.brackets.items()]}

    def load_records(self, state: Mapping[str, Any]) -> None:
        """Takes back :meth:`records` (a restored sweep's, before its trials are added)."""
        self._num_stopped = state["stopped"]
        for group, rungs in state["groups"]:
            saved = dict(rungs)
            for m, rec in self._bracket(tuple(group))._rungs:
                rec.update(saved.get(float(m), {}))

    def debug_string(self) -> str:
        where = f"within each of {len(self.brackets)} groups" if self.group_keys else "sweep-wide"
        return f"Asynchronous successive halving {where} (eta {self._reduction_factor:g}); " \
               f"{self._num_stopped} trials stopped"


@dataclass
class _Rungs:
    """One group's records under :class:`PromotingASHA`.

    Each rung's trials are kept ranked as they are recorded (a sorted insert), and the rung's
    promotable trials are computed once per change: the scheduler asks for them each time
    Tune looks for a trial to run, far more often than a trial reaches a rung."""

    recorded: dict[float, dict[str, float]]
    """milestone -> {trial id: score at that rung (higher is better)}"""
    promoted: dict[float, set[str]]
    """milestone -> trial ids promoted past it"""
    eta: float
    """The reduction factor: the top ``floor(n / eta)`` of a rung's ``n`` trials go on."""
    finished: bool = False
    """Whether one of the group's trials reached the end."""
    ranked: dict[float, list[tuple[float, int, str]]] = field(default_factory=dict)
    """milestone -> (-score, order recorded, trial id), best first; equal scores in the order
    they were recorded."""
    _promotable: dict[float, list[str]] = field(default_factory=dict)

    def record(self, rung: float, tid: str, score: float) -> None:
        scores = self.recorded[rung]
        scores[tid] = score
        bisect.insort(self.ranked.setdefault(rung, []), (-score, len(scores), tid))
        self._promotable.pop(rung, None)

    def promote(self, rung: float, tid: str) -> None:
        self.promoted[rung].add(tid)
        self._promotable.pop(rung, None)

    def promotable(self, rung: float) -> list[str]:
        """Trials in the top ``floor(n / eta)`` at ``rung`` not promoted yet, best first."""
        if rung not in self._promotable:
            ranked = self.ranked.get(rung, [])
            top = ranked[:int(len(ranked) // self.eta)]
            self._promotable[rung] = [tid for _, _, tid in top if tid not in self.promoted[rung]]
        return self._promotable[rung]


class PromotingASHA(FIFOScheduler):
    """Successive halving that pauses trials at each rung and promotes the top 1/eta of
    each group."""

    def __init__(self, *, time_attr: str, grace_period: float, reduction_factor: float, max_t: float,
                 group_keys: Sequence[str] = (), metric: str | None = None,
                 mode: str | None = None) -> None:
        super().__init__()
        self._time_attr = time_attr
        self._rf = reduction_factor
        self._max_t = max_t
        self._metric, self._mode = metric, mode
        self.group_keys = tuple(group_keys)
        #: Rung milestones below max_t, lowest first (grace, grace * eta, ...).
        self.milestones: list[float] = []
        m = float(grace_period)
        while m < max_t:
            self.milestones.append(m)
            m *= reduction_factor
        self.groups: dict[Group, _Rungs] = {}
        #: trial id -> (its group, the milestone it waits at)
        self.waiting: dict[str, tuple[Group, float]] = {}

    # --------------------------------------------------------------------------- Tune hooks
    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        if (self._metric and metric) or (self._mode and mode):
            return False
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        return True

    def _score(self, result: dict[str, Any]) -> float:
        value = float(result[self._metric])
        if math.isnan(value):
            return -math.inf
        return value if self._mode == "max" else -value

    def _rungs(self, trial: Trial) -> tuple[Group, _Rungs]:
        group = group_of(trial.config, self.group_keys)
        return group, self._group(group)

    def _group(self, group: Group) -> _Rungs:
        if group not in self.groups:
            self.groups[group] = _Rungs({m: {} for m in self.milestones}, {m: set() for m in self.milestones},
                                        self._rf)
        return self.groups[group]

    def records(self) -> dict[str, Any]:
        """The rung records (plain data): per group, each rung's scores in the order they were
        recorded and the trials promoted past it, whether the group finished; the waiting
        trials."""
        return {"groups": [(list(group), [(m, dict(r.recorded[m]), sorted(r.promoted[m])) for m in self.milestones],
                            r.finished) for group, r in self.groups.items()],
                "waiting": [(tid, list(group), m) for tid, (group, m) in self.waiting.items()]}

    def load_records(self, state: Mapping[str, Any]) -> None:
        """Takes back :meth:`records` (a restored sweep's, before its trials are added)."""
        for group, rungs, finished in state["groups"]:
            r = self._group(tuple(group))
            for m, scores, promoted in rungs:
                if m not in r.recorded:
                    continue
                for tid, score in scores.items():
                    if tid not in r.recorded[m]:
                        r.record(m, tid, score)
                for tid in promoted:
                    r.promote(m, tid)
            r.finished = r.finished or finished
        for tid, group, m in state["waiting"]:
            self.waiting[tid] = (tuple(group), m)

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        # Tune requeues every unfinished trial of a restored sweep as PENDING, and starts
        # PENDING trials without asking the scheduler: a trial that waited at its rung waits
        # again, PAUSED (Tune files a trial it adds under its status after this call). One
        # that ended meanwhile (failed) waits no more.
        if trial.trial_id in self.waiting and trial.status == Trial.PENDING:
            trial.set_status(Trial.PAUSED)
        elif trial.status != Trial.PAUSED:
            self.waiting.pop(trial.trial_id, None)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        t = result.get(self._time_attr)
        if t is None or self._metric not in result:
            return TrialScheduler.CONTINUE
        group, rungs = self._rungs(trial)
        if t >= self._max_t:
            rungs.finished = True
            return TrialScheduler.STOP
        reached = [m for m in self.milestones if t >= m]
        if not reached:
            return TrialScheduler.CONTINUE
        rung = reached[-1]
        tid = trial.trial_id
        if tid in rungs.recorded[rung]:  # promoted past it already (or a restored report)
            return TrialScheduler.CONTINUE
        rungs.record(rung, tid, self._score(result))
        if tid in rungs.promotable(rung):
            rungs.promote(rung, tid)
            return TrialScheduler.CONTINUE
        self.waiting[tid] = (group, rung)
        return TrialScheduler.PAUSE

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> None:
        if (result or {}).get(self._time_attr, 0) >= self._max_t:
            self._rungs(trial)[1].finished = True
        self.waiting.pop(trial.trial_id, None)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self.waiting.pop(trial.trial_id, None)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self.waiting.pop(trial.trial_id, None)

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        trials = tune_controller.get_trials()
        paused = {t.trial_id: t for t in trials if t.status == Trial.PAUSED}
        # 1. A promotion, from the highest rung down, best first within each group.
        for rung in reversed(self.milestones):
            for group, rungs in self.groups.items():
                for tid in rungs.promotable(rung):
                    if tid in paused and self.waiting.get(tid) == (group, rung):
                        return self._promote(paused[tid])
        # 2. A new trial.
        for trial in trials:
            if trial.status == Trial.PENDING:
                return trial
        # 3. A paused trial this scheduler does not know (not paused at a rung by it) goes on.
        for tid, trial in paused.items():
            if tid not in self.waiting:
                return trial
        # 4. Groups with nothing pending or running, once the search has nothing left to start.
        return self._drain(tune_controller, trials, paused)

    def debug_string(self) -> str:
        where = f"within each of {len(self.groups)} groups" if self.group_keys else "sweep-wide"
        rungs = ", ".join(f"{m:g}: {sum(len(g.recorded[m]) for g in self.groups.values())} reached, "
                          f"{sum(len(g.promoted[m]) for g in self.groups.values())} promoted"
                          for m in self.milestones)
        return f"Successive halving with promotions {where} (eta {self._rf:g}; rungs {rungs})"

    # --------------------------------------------------------------------------- helpers
    def _promote(self, trial: Trial) -> Trial:
        group, rung = self.waiting.pop(trial.trial_id)
        self.groups[group].promote(rung, trial.trial_id)
        return trial

    def _drain(self, tune_controller: Any, trials: list[Trial], paused: dict[str, Trial]) -> Trial | None:
        """A group whose waiting trials nothing can promote any more (nothing of it pending or
        running, nothing left to start): its best trial at its highest rung goes on until one
        of its trials reaches the end, then the rest stop where they are."""
        if not self.waiting or not tune_controller.search_alg.is_finished():
            return None
        active = {group_of(t.config, self.group_keys) for t in trials
                  if t.status in (Trial.PENDING, Trial.RUNNING)}
        by_group: dict[Group, list[str]] = {}  # one pass over the waiting trials, not one per group
        for tid, (g, _) in self.waiting.items():
            if tid in paused:
                by_group.setdefault(g, []).append(tid)
        for group, rungs in self.groups.items():
            waiting = by_group.get(group, [])
            if not waiting or group in active:
                continue
            if not rungs.finished:
                rung = max(self.waiting[tid][1] for tid in waiting)
                best = max((tid for tid in waiting if self.waiting[tid][1] == rung),
                           key=lambda tid: rungs.recorded[rung][tid])
                return self._promote(paused[best])
            for tid in waiting:
                tune_controller.stop_trial(paused[tid])
                self.waiting.pop(tid, None)
        return None


class SchedulerRecords(Callback):
    """Keeps a scheduler's rung records in Tune's experiment snapshot: Tune saves a callback's
    ``get_state`` with each snapshot and, restoring the experiment, calls ``set_state`` before
    it adds the restored trials to the scheduler. ``scheduler``: the scheduler the Tuner runs
    (a restored Tuner's own)."""

    def __init__(self, scheduler: GroupedASHA | PromotingASHA) -> None:
        self.scheduler = scheduler

    def get_state(self) -> dict[str, Any]:
        return {"records": self.scheduler.records()}

    def set_state(self, state: dict[str, Any]) -> None:
        if isinstance(state, dict) and "records" in state:  # not another callback's state
            self.scheduler.load_records(state["records"])
