"""Sweeps run and stopped as a user runs and stops them (the real command in a subprocess,
killed or signalled from outside), and what they left in MLflow: shared by the fault-tolerance
tests (``test_fault_tolerance.py``, ``test_chaos.py``, ``test_signals.py``, the worker-group
resume in ``test_ray_train.py``).

The sweeps are minimal (a few optimizer steps per trial): they prove the machinery, not the
model."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO

SCRIPT = str(REPO / "sweeps" / "rank_e2e.py")
EXPERIMENT = "lorasweep-rank_e2e"

#: The smoke preset cut to seconds per trial: few examples, no beam search, FIFO.
QUICK = ["--preset", "smoke", "--scheduler", "fifo", "--set", "eval.generate=false",
         "--set", "data.val_limit=32"]


#: One Optuna study over the whole space (not one per rank): num_samples trials in all.
OPTUNA_SWEEP_WIDE = ["--set", "scheduler.groups=none"]


def sweep_cmd(root: Path, name: str, uri: str, *args: str) -> list[str]:
    return [sys.executable, SCRIPT, *QUICK, "--tracking-uri", uri, "--storage", str(root / "rr"),
            "--name", name, *args]


def write_space(root: Path, text: str) -> str:
    path = root / "space.yaml"
    path.write_text(text)
    return str(path)


def runs_by_kind(client, experiment=EXPERIMENT):
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    return ([r for r in runs if r.data.tags.get("lorasweep.kind") == "trial"],
            [r for r in runs if r.data.tags.get("lorasweep.kind") == "sweep"])


def trial_runs(db: Path) -> list[tuple[str, str, str | None, int]]:
    """(run id, MLflow status, lorasweep.status, reports recorded) of each child run, straight
    from the SQLite file (the driver writes it). Only reads, on a read-write connection: after a
    driver is SIGKILLed mid-write, the file's hot journal must be rolled back before it can be
    read, which a read-only connection cannot do."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return list(con.execute(
                "select r.run_uuid, r.status, "
                "(select value from tags s where s.run_uuid = r.run_uuid and s.key = 'lorasweep.status'), "
                "(select count(*) from metrics m where m.run_uuid = r.run_uuid and m.key = 'val_loss') "
                "from runs r join tags t on t.run_uuid = r.run_uuid "
                "where t.key = 'lorasweep.kind' and t.value = 'trial'"))
    except sqlite3.Error:
        return []


def stop_when(cmd: list[str], cwd: Path, log: Path, ready, what: str, sig: int = signal.SIGKILL,
               group: bool = True, timeout: float = 400, env: dict | None = None) -> int:
    """Run a sweep until ``ready()``, then send ``sig`` (to its whole process group: the driver
    and the Ray it started; else to the driver only); its exit code."""
    with open(log, "a") as fh:
        fh.write(f"\n===== {' '.join(cmd[-3:])}: stopped {what} =====\n")
        fh.flush()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                                env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None and not ready():
        time.sleep(0.2)
    assert proc.poll() is None, f"the sweep ended before it could be stopped {what}:\n" + log.read_text()[-3000:]
    assert time.monotonic() < deadline, f"never {what}:\n" + log.read_text()[-3000:]
    import psutil

    started = psutil.Process(proc.pid).children(recursive=True)  # its Ray and trial processes
    (os.killpg if group else os.kill)(proc.pid, sig)
    code = proc.wait(timeout=120)
    # A trial process outlives a killed driver for a moment (until it sees its raylet gone);
    # the next step starts once every process this sweep started is gone.
    _, alive = psutil.wait_procs(started, timeout=30)
    for p in alive:
        p.kill()
    psutil.wait_procs(alive, timeout=30)
    return code

