"""MLflow writes within MLflow's limits, and the provenance a sweep records with its parent run
(package versions, the git state)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _chunks(items: list[Any], n: int):
    for i in range(0, len(items), n):
        yield items[i:i + n]


def log_batch(client: Any, run_id: str, *, metrics: list[Any] = (), params: dict[str, Any] | None = None,
              tags: dict[str, Any] | None = None) -> None:
    """``log_batch`` within MLflow's per-call limits (1,000 metrics, 100 params + tags)."""
    from mlflow.entities import Param, RunTag

    params_l = [Param(k, str(v)[:6000]) for k, v in (params or {}).items()]
    tags_l = [RunTag(k, str(v)[:8000]) for k, v in (tags or {}).items()]
    for chunk in _chunks(list(metrics), 1000):
        client.log_batch(run_id, metrics=chunk, synchronous=True)
    for chunk in _chunks(params_l, 100):
        client.log_batch(run_id, params=chunk, synchronous=True)
    for chunk in _chunks(tags_l, 100):
        client.log_batch(run_id, tags=chunk, synchronous=True)


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in ("torch", "ray", "transformers", "peft", "mlflow", "optuna", "datasets",
                 "sacrebleu", "lorasweep"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_state(root: Path | None = None) -> dict[str, str]:
    """SHA and dirty flag of the checkout the sweep runs from (empty outside git)."""
    root = root or Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_sha": sha, "git_dirty": str(bool(dirty)).lower()}


def now_ms() -> int:
    return int(time.time() * 1000)
