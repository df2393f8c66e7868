"""What the benchmarks share: launching the smoke rank study as a user would."""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def smoke_sweep_cmd(work: Path, name: str, *flags: str) -> list[str]:
    """``python sweeps/rank_e2e.py --preset smoke`` writing its MLflow store and Tune storage
    under ``work``."""
    return [sys.executable, str(REPO / "sweeps" / "rank_e2e.py"), "--preset", "smoke", "--name", name,
            "--tracking-uri", f"sqlite:///{work / 'mlruns.db'}", "--storage", str(work / "ray_results"),
            *flags]


def run_smoke_sweep(work: Path, name: str, *flags: str, env: dict[str, str] | None = None) -> float:
    """Run it to the end in a fresh process; its wall time in seconds (a failure ends the bench)."""
    start = time.perf_counter()
    proc = subprocess.run(smoke_sweep_cmd(work, name, *flags), cwd=work, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"sweep {name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return elapsed


def results(work: Path, name: str) -> list[dict[str, str]]:
    """The sweep's results CSV (one row per trial)."""
    with open(work / "ray_results" / name / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))
