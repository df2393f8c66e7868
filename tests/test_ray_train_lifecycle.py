"""A worker-group trial's life in a sweep (2 workers, DDP over gloo on CPU, the tiny GPT-2 on
the E2E smoke data), end to end through the command line with real local Ray and a real MLflow
SQLite store: ASHA stops worker-group trials and the next group starts; a worker that dies fails
its attempt with its error and the trial is retried from its checkpoint; a worker group whose
driver is killed resumes from its checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from test_ray_train import E2E_SCRIPT, TWO_WORKERS, _history

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------- ASHA and a worker that dies

#: Steps of the global batch of 16 in an epoch of the ASHA sweep below (``data.train_limit``):
#: the kill after the first report leaves the trial a whole epoch to run.
EPOCH_STEPS = 8


def test_asha_stops_worker_group_trials_and_a_worker_that_dies_is_retried(tmp_path, smoke_assets):
    """Two 2-worker trials, one at a time (the cluster holds one group), ASHA on the validation
    loss at every epoch (8 steps of the global batch of 16; grace 1 epoch, eta 2), ``--max-failures
    1``. The smoke seed runs the grid's lr 2e-3 first: it trains and reaches the rung alone.

    Once that first report is in MLflow, one of its 2 Train workers is SIGKILLed. Ray Train
    fails the group, the trial's first attempt fails with that error recorded, and the trial is
    started again from its group's checkpoint: the restored group sends the checkpoint's report
    again (ASHA keeps the rung it recorded) and trains on. Tune stops it at its last epoch
    (ASHA's max_t), which kills its Train controller, and its worker group must be freed for the
    next trial. The trial completes on its second attempt, every report once in MLflow.

    The second trial (lr 2e-9: its adapter barely moves, so its validation loss stays at the
    base model's, above the first's after an epoch at 2e-3) is below the rung's median and ASHA
    stops it there: its run is recorded as stopped early at its first report, and the sweep ends
    with exit code 0."""
    import psutil
    from mlflow import MlflowClient
    from fault_runs import trial_runs

    db, log = tmp_path / "mlruns.db", tmp_path / "sweep.log"
    space = tmp_path / "space.yaml"
    space.write_text("nuisance:\n  lr: {grid: [2.0e-3, 2.0e-9]}\nfixed: {r: 4, alpha: 32, targets: qv}\n")
    cmd = [sys.executable, E2E_SCRIPT, "--preset", "smoke", "--scheduler", "asha", "--search-space", str(space),
           "--set", f"data.train_limit={16 * EPOCH_STEPS}", "--set", "train.epochs=2", "--set", "train.warmup_steps=0",
           "--set", "train.log_every_steps=1", "--set", "eval.generate=false", "--set", "data.val_limit=32",
           "--max-failures", "1", *TWO_WORKERS,
           "--tracking-uri", f"sqlite:///{db}", "--storage", str(tmp_path / "rr"), "--name", "asha"]
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600
        while proc.poll() is None and time.monotonic() < deadline and not any(n >= 1 for *_, n in trial_runs(db)):
            time.sleep(0.2)
        workers = [p for p in psutil.Process(proc.pid).children(recursive=True)
                   if "RayTrainWorker" in " ".join(p.cmdline())]
        assert len(workers) == 2, log.read_text()[-3000:]
        workers[-1].kill()
        code = proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = log.read_text()
    assert code == 0, out[-4000:]
    assert "1 completed, 1 stopped early, 0 failed" in out
    # Ray Train's placement-group cleaner reaches the state API (it warns every second if not).
    assert "State API may be temporarily unavailable" not in out
    assert "PreemptionWatcher" not in out  # a local Ray's Ray Train runs without it
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    trials = {float(r.data.params["train.lr"]): r
              for r in client.search_runs([client.get_experiment_by_name("lorasweep-rank_e2e").experiment_id])
              if r.data.tags.get("lorasweep.kind") == "trial"}
    good, stopped = trials[2e-3], trials[2e-9]
    assert good.info.start_time < stopped.info.start_time  # the order the rest relies on
    tags = good.data.tags
    assert good.info.status == "FINISHED" and tags["lorasweep.status"] == "completed"
    assert tags["lorasweep.attempts"] == "2"
    assert "its worker process has died" in tags["lorasweep.error_attempt_1"], tags["lorasweep.error_attempt_1"]
    last = 2 * EPOCH_STEPS
    assert [s for s, _ in _history(client, good.info.run_id, "val_loss")] == [EPOCH_STEPS, last]
    assert [s for s, _ in _history(client, good.info.run_id, "train_loss")] == list(range(1, last + 1))
    # The second attempt started from the group's latest checkpoint: a step Tune received twice
    # was sent again unchanged (its wall time from the first attempt), never trained anew.
    (result,) = [p for p in (tmp_path / "rr" / "asha").glob("tune_trial_*/result.json")
                 if json.loads(p.read_text().splitlines()[0])["trial_id"] == tags["lorasweep.trial_id"]]
    walls: dict[int, set[float]] = {}
    for row in map(json.loads, result.read_text().splitlines()):
        walls.setdefault(row["step"], set()).add(row["wall_s"])
    assert max(walls) == last and all(len(w) == 1 for w in walls.values()), walls
    assert stopped.info.status == "FINISHED" and stopped.data.tags["lorasweep.status"] == "stopped_early"
    val = _history(client, stopped.info.run_id, "val_loss")
    assert [s for s, _ in val] == [EPOCH_STEPS]  # stopped at its first report
    assert val[0][1] > _history(client, good.info.run_id, "val_loss")[0][1]


# --------------------------------------------------------------------------- a killed driver, resumed


def test_a_worker_group_trial_resumes_from_its_checkpoint_after_its_driver_is_killed(tmp_path, smoke_assets):
    """The sweep's driver and its local Ray are SIGKILLed once the 2-worker trial's first report
    (step 2 of 6) is in MLflow; ``--resume`` starts a new worker group of the same name, which
    resumes from the latest checkpoint in the group's Ray Train storage. That storage may be
    ahead of Tune (a report at step 4 checkpointed but never received): the restored group
    sends its checkpoint's report again. Tune's record of the trial holds each step once or
    sent again unchanged (a group started from scratch would report step 2 anew), and MLflow
    every report once: no report lost between the two records."""
    from mlflow import MlflowClient
    from fault_runs import stop_when, trial_runs

    db, name = tmp_path / "mlruns.db", "resumed"
    space = tmp_path / "space.yaml"
    space.write_text("scientific:\n  r: {grid: [4]}\nfixed: {alpha: 32, targets: qv, lr: 2.0e-3}\n")
    cmd = [sys.executable, E2E_SCRIPT, "--preset", "smoke", "--scheduler", "fifo", "--search-space", str(space),
           "--set", "train.max_steps=6", "--set", "train.eval_every_steps=2", "--set", "train.log_every_steps=1",
           "--set", "eval.generate=false", "--set", "data.val_limit=32", *TWO_WORKERS,
           "--tracking-uri", f"sqlite:///{db}", "--storage", str(tmp_path / "rr"), "--name", name]
    log = tmp_path / "sweep.log"
    stop_when(cmd, tmp_path, log, lambda: any(n >= 1 for _, _, _, n in trial_runs(db)),
               "after the first report", timeout=600)
    done = subprocess.run([*cmd, "--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 completed, 0 stopped early, 0 failed" in done.stdout
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    (trial,) = [r for r in client.search_runs([client.get_experiment_by_name("lorasweep-rank_e2e").experiment_id])
                if r.data.tags.get("lorasweep.kind") == "trial"]
    assert trial.info.status == "FINISHED" and trial.data.tags["lorasweep.status"] == "completed"
    assert [s for s, _ in _history(client, trial.info.run_id, "val_loss")] == [2, 4, 6]
    assert [s for s, _ in _history(client, trial.info.run_id, "train_loss")] == list(range(1, 7))
    # The group's storage keeps its final checkpoint only, not the one it resumed from.
    assert len([p for p in (tmp_path / "rr").glob(f"{name}*-train/checkpoint_*") if p.is_dir()]) == 1
    # Tune's record of the resumed attempt: it starts with its checkpoint's report, sent again
    # unchanged (step 2: the wall time recorded before the kill; a group that trained from
    # scratch would report step 2 anew) or at step 4 (Ray Train's storage was ahead of Tune).
    (result,) = (tmp_path / "rr" / name).glob("tune_trial_*/result.json")
    rows = [json.loads(line) for line in result.read_text().splitlines()]
    steps = [r["step"] for r in rows]
    assert steps == sorted(set(steps)) and steps[0] in (2, 4) and steps[-1] == 6, steps
    if steps[0] == 2:
        assert rows[0]["wall_s"] == dict(_history(client, trial.info.run_id, "wall_s"))[2]
