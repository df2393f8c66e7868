"""ASHA's rung records across ``--resume``: Tune's experiment snapshot leaves the scheduler out,
so :class:`sweeps.schedulers.SchedulerRecords` keeps them in the callback state it saves with
each snapshot. A resumed sweep stops the trials an uninterrupted one stops.

The unit tests cut a stream of reports at every point, carry the records through the
callback's state (pickled as Tune pickles it) into a fresh scheduler, and compare its decisions
with the uninterrupted scheduler's. The end-to-end test SIGKILLs a real sweep once two trials
have ended in Tune's snapshot and resumes it.
"""

from __future__ import annotations

import inspect
import json
import os
import pickle
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from ray.tune.experiment import Trial

from sweeps.schedulers import GroupedASHA, PromotingASHA, SchedulerRecords

#: (trial, rank, epoch, val loss), in the order Tune hands them to the scheduler.
REPORTS = [("a", 1, 1, 2.0), ("b", 4, 1, 2.5), ("a", 1, 2, 1.8), ("c", 1, 1, 2.4), ("d", 4, 1, 2.1),
           ("e", 1, 1, 1.9), ("d", 4, 2, 2.0), ("f", 4, 1, 2.6), ("e", 1, 2, 1.7), ("g", 1, 1, 2.2),
           ("h", 4, 1, 1.5), ("h", 4, 2, 1.4), ("i", 1, 1, 1.95), ("i", 1, 2, 1.85)]


MAX_T = 3


def _trial(tid: str, r: int, status: str = Trial.PENDING):
    trial = SimpleNamespace(trial_id=tid, config={"r": r}, status=status)
    trial.set_status = lambda s: setattr(trial, "status", s)
    return trial


def _scheduler(kind: str):
    args = {"time_attr": "epoch", "grace_period": 1, "reduction_factor": 2, "max_t": MAX_T,
            "group_keys": ("r",), "metric": "val_loss", "mode": "min"}
    return GroupedASHA(**args) if kind == "stop" else PromotingASHA(**args)


def _feed(scheduler, reports, trials) -> list[str]:
    out = []
    for tid, r, epoch, loss in reports:
        if tid not in trials:
            trials[tid] = _trial(tid, r)
            scheduler.on_trial_add(None, trials[tid])
        out.append(scheduler.on_trial_result(None, trials[tid], {"epoch": epoch, "val_loss": loss}))
    return out


def _restored(kind: str, state, trials) -> GroupedASHA | PromotingASHA:
    """A fresh scheduler given ``state`` as Tune gives it (pickled), then the trials added."""
    fresh = _scheduler(kind)
    SchedulerRecords(fresh).set_state(pickle.loads(pickle.dumps(state)))
    for tid, t in trials.items():
        fresh.on_trial_add(None, _trial(tid, t.config["r"], Trial.PENDING))
    return fresh


@pytest.mark.parametrize("kind", ["stop", "pause"])
def test_a_restored_scheduler_decides_as_the_uninterrupted_one_wherever_the_cut(kind):
    whole = _feed(_scheduler(kind), REPORTS, {})
    assert "STOP" in whole or "PAUSE" in whole  # the records decide something
    for cut in range(len(REPORTS)):
        before, trials = _scheduler(kind), {}
        first = _feed(before, REPORTS[:cut], trials)
        state = SchedulerRecords(before).get_state()
        restored = _restored(kind, state, trials)
        # A report the snapshot had seen may be sent again by the restored trial: no new decision.
        if cut and first[-1] == "CONTINUE":
            tid, r, epoch, loss = REPORTS[cut - 1]
            again = restored.on_trial_result(None, _trial(tid, r), {"epoch": epoch, "val_loss": loss})
            assert again == "CONTINUE"
        rest = _feed(restored, REPORTS[cut:], {tid: _trial(tid, t.config["r"]) for tid, t in trials.items()})
        assert first + rest == whole, (kind, cut)
        assert restored.records() == _feed_records(kind)
        if kind == "stop":
            assert restored._num_stopped == whole.count("STOP")


def _feed_records(kind: str):
    scheduler = _scheduler(kind)
    _feed(scheduler, REPORTS, {})
    return scheduler.records()


def test_without_the_records_a_restored_scheduler_lets_a_worse_trial_go_on():
    """What the records are for: ``c`` is worse than ``a`` at rung 1 of rank 1."""
    before = _scheduler("stop")
    _feed(before, [("a", 1, 1, 2.0)], {})
    c = [("c", 1, 1, 2.4)]
    assert _feed(_scheduler("stop"), c, {}) == ["CONTINUE"]
    assert _feed(_restored("stop", SchedulerRecords(before).get_state(), {}), c, {}) == ["STOP"]


def test_a_trial_waiting_at_its_rung_waits_again_after_a_restore():
    """Tune requeues it PENDING and would start it; the scheduler files it PAUSED again, and
    promotes it, or stops it, as the uninterrupted sweep would."""
    before, trials = _scheduler("pause"), {}
    assert _feed(before, [("a", 1, 1, 2.0), ("c", 1, 1, 2.4)], trials) == ["PAUSE", "PAUSE"]
    state = SchedulerRecords(before).get_state()
    fresh = _scheduler("pause")
    SchedulerRecords(fresh).set_state(pickle.loads(pickle.dumps(state)))
    a, c = _trial("a", 1), _trial("c", 1)
    for t in (a, c):
        fresh.on_trial_add(None, t)
        assert t.status == Trial.PAUSED
    stopped = []
    controller = SimpleNamespace(get_trials=lambda: [a, c], stop_trial=stopped.append,
                                 search_alg=SimpleNamespace(is_finished=lambda: False))
    assert fresh.choose_trial_to_run(controller) is a  # top floor(2 / 2) of rung 1
    a.status = Trial.RUNNING
    assert fresh.choose_trial_to_run(controller) is None  # c waits: not in the top
    a.status = Trial.TERMINATED
    fresh.on_trial_complete(None, a, {"epoch": 3})
    failed = _scheduler("pause")
    SchedulerRecords(failed).set_state(state)
    failed.on_trial_add(None, _trial("a", 1, Trial.ERROR))  # ended (failed) after the snapshot
    assert set(failed.waiting) == {"c"}
    controller.search_alg.is_finished = lambda: True
    assert fresh.choose_trial_to_run(controller) is None and stopped == [c]


def test_tune_files_a_trial_it_adds_under_the_status_the_scheduler_left():
    """The restored waiting trial stays PAUSED only because Tune's ``add_trial`` asks the
    scheduler before it files the trial under its status."""
    from ray.tune.execution.tune_controller import TuneController

    src = inspect.getsource(TuneController.add_trial)
    assert src.index("on_trial_add(") < src.index("status_str_map[trial.status]")


def test_a_callback_state_not_the_schedulers_is_ignored():
    scheduler = _scheduler("stop")
    SchedulerRecords(scheduler).set_state({"other": 1})
    assert scheduler.brackets == {}


# --------------------------------------------------------------------------- end to end
def _snapshot_statuses(sweep_dir: Path) -> dict[str, str]:
    """Trial id -> status in Tune's newest experiment snapshot, once its callback state (the
    rung records) is at least as new; else {}."""
    states = sorted(sweep_dir.glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
    records = list(sweep_dir.glob("callback-states-*.pkl"))
    if not states or not records:
        return {}
    try:
        if max(p.stat().st_mtime for p in records) < states[-1].stat().st_mtime:
            return {}
        data = json.loads(states[-1].read_text())
    except (OSError, ValueError):
        return {}
    out = {}
    for trial_state, _ in data["trial_data"]:
        t = json.loads(trial_state)
        out[t["trial_id"]] = t["status"]
    return out


def _expected(histories: dict[str, tuple[int, list[tuple[float, float]]]]) -> dict[str, str]:
    """ASHA's decisions over the reported values, one trial after the other (one at a time):
    what an uninterrupted sweep decides with these reports."""
    scheduler = _scheduler("stop")
    out = {}
    for tid in sorted(histories):
        r, reports = histories[tid]
        trial = _trial(tid, r)
        scheduler.on_trial_add(None, trial)
        # Tune's ASHA says STOP at max_t too: the trial's end.
        decisions = [scheduler.on_trial_result(None, trial, {"epoch": e, "val_loss": v})
                     for e, v in reports if e < MAX_T]
        out[tid] = "stopped_early" if "STOP" in decisions else "completed"
    return out


@pytest.mark.integration
def test_a_resumed_sweep_stops_the_trials_an_uninterrupted_one_stops(tmp_path, smoke_assets):
    """Two ranks, two learning rates each, one trial at a time, 3 epochs (rungs at 1 and 2,
    eta 2). The driver and its Ray are SIGKILLed once Tune's snapshot holds an ended trial;
    ``--resume`` runs the rest. Each trial ends as ASHA decides over every trial's reported
    values, and a trial run after the kill is stopped early (by the records of the trials
    before it)."""
    from fault_runs import stop_when, sweep_cmd, write_space
    from mlflow import MlflowClient

    space = write_space(tmp_path, "scientific:\n  r: {grid: [1, 4]}\n"
                             "nuisance:\n  lr: {grid: [2.0e-3, 2.0e-5]}\nfixed: {alpha: 32, targets: qv}\n")
    db, name = tmp_path / "mlruns.db", "asha"
    uri = f"sqlite:///{db}"
    cmd = sweep_cmd(tmp_path, name, uri, "--scheduler", "asha", "--search-space", space,
                    "--set", "data.train_limit=32", "--set", "train.epochs=3", "--set", "train.warmup_steps=0",
                    "--set", "data.val_limit=17", "--set", "data.test_limit=3",
                    "--cpus-per-trial", "1", "--max-concurrent", "1")
    sweep_dir, log = tmp_path / "rr" / name, tmp_path / "asha.log"
    seen: dict[str, str] = {}

    def one_ended() -> bool:
        seen.clear()
        seen.update(_snapshot_statuses(sweep_dir))
        return any(s == Trial.TERMINATED for s in seen.values())

    # A snapshot at every step of Tune's loop: these trials take seconds, less than its
    # automatic snapshot period.
    env = {**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "0"}
    stop_when(cmd, tmp_path, log, one_ended, "once a trial ended in Tune's snapshot", env=env)
    ended_before = {tid for tid, s in seen.items() if s == Trial.TERMINATED}
    done = subprocess.run([*cmd, "--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("lorasweep-rank_e2e")
    runs = [r for r in client.search_runs([exp.experiment_id], max_results=100)
            if r.data.tags.get("lorasweep.kind") == "trial" and r.data.tags["lorasweep.status"] != "interrupted"]
    histories, got = {}, {}
    for run in runs:
        tid = run.data.tags["lorasweep.trial_id"]
        epochs = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "epoch")}
        losses = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "val_loss")}
        histories[tid] = (int(run.data.params["adapter.r"]), [(epochs[s], losses[s]) for s in sorted(losses)])
        got[tid] = run.data.tags["lorasweep.status"]
    assert len(got) == 4, got
    expected = _expected(histories)
    assert got == expected, (histories, log.read_text()[-3000:])
    assert any(s == "stopped_early" for tid, s in expected.items() if tid not in ended_before), (ended_before, expected)
