"""What an ``mlflow server`` costs in CPU to start and while idle, with MLflow's job runner on
and off.

Both servers start side by side (SQLite store, one uvicorn worker, on free ports) and, once
each answers ``/health``, wait ``--window`` seconds with no request. Printed per server: the CPU
seconds its whole process tree took to start and during the idle window, and its process
count. The job runner (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION``, on by default) starts a pool of
consumer processes; ``cluster/mlflow/`` and the tests turn it off.

    python bench/mlflow_server_idle.py --window 60
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.process_cpu import tree_cpu  # noqa: E402
from sweeps.ray_start import free_port  # noqa: E402


def _tree_cpu(pid: int) -> tuple[float, int]:
    """CPU seconds (user + system) of a process and its descendants, and how many there are."""
    tree = tree_cpu(pid)
    return sum(cpu for _, cpu in tree.values()), len(tree)


def _start(root: Path, jobs: bool) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true" if jobs else "false"}
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts")],
        cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return proc, port


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--window", type=float, default=60.0, help="idle seconds measured after start")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lorasweep-mlflow-idle-"))
    servers = {}
    try:
        for jobs in (True, False):
            (work / str(jobs)).mkdir()
            servers[jobs] = _start(work / str(jobs), jobs)
        deadline = time.monotonic() + 180
        while not all(_healthy(port) for _, port in servers.values()):
            if time.monotonic() > deadline:
                sys.exit("bench/mlflow_server_idle.py: a server did not answer /health in 180 s")
            time.sleep(0.5)
        time.sleep(10)  # the job runner's consumers finish starting after /health answers
        start = {jobs: _tree_cpu(proc.pid) for jobs, (proc, _) in servers.items()}
        time.sleep(args.window)
        end = {jobs: _tree_cpu(proc.pid) for jobs, (proc, _) in servers.items()}
    finally:
        for proc, _ in servers.values():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'job runner':<11} {'processes':>9} {'start CPU s':>12} {'idle CPU s':>11} {'idle cores':>11}")
    for jobs in (True, False):
        idle = end[jobs][0] - start[jobs][0]
        print(f"{'on' if jobs else 'off':<11} {end[jobs][1]:>9} {start[jobs][0]:>12.1f} {idle:>11.1f} "
              f"{idle / args.window:>11.2f}")
    on, off = (end[j][0] - start[j][0] for j in (True, False))
    print(f"idle CPU, on / off: {on / max(off, 1e-9):.1f}x")


if __name__ == "__main__":
    main()
