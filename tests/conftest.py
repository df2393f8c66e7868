"""Shared fixtures. Tests use real parts: a tiny GPT-2 and tokenizer built locally, synthetic
E2E data in the official format, real peft adapters, real local Ray, real MLflow (SQLite).

The offline assets are built once per test session into a private cache
(``LORASWEEP_CACHE``), so a test run never reads or writes the user's cache.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Set before any lorasweep code resolves the cache; subprocesses inherit it. The process that
# runs pytest (xdist's controller, or the only process) owns the run's cache: it makes it new
# and removes it when the run ends (pytest_unconfigure). Its xdist workers, its children,
# share it (the builders hold a file lock: one builds, the others wait for it).
_WORKER = bool(os.environ.get("PYTEST_XDIST_WORKER"))
_SESSION_CACHE = Path(tempfile.gettempdir()) / f"lorasweep-test-cache-{os.getppid() if _WORKER else os.getpid()}"
if not _WORKER:
    shutil.rmtree(_SESSION_CACHE, ignore_errors=True)  # an earlier run's, killed before its end
_SESSION_CACHE.mkdir(exist_ok=True)
os.environ["LORASWEEP_CACHE"] = str(_SESSION_CACHE)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# The tests' `mlflow server`s: no job runner (a pool of processes, each importing MLflow).
os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")

REPO = Path(__file__).resolve().parents[1]

from trainables.session import LocalSession  # noqa: E402  (after the cache is chosen)


#: The test files that take longest (``--durations``), handed to the xdist workers first so
#: that the many short files fill the gaps at the end (``--no-loadscope-reorder`` in the
#: pyproject's addopts keeps this order). A file missing here only starts later.
LONGEST_FIRST = (
    "test_study_smoke.py", "test_signals.py", "test_chaos.py", "test_sweep_smoke.py", "test_ray_train.py",
    "test_ray_train_lifecycle.py", "test_ray_train_classification.py", "test_cluster.py", "test_agnews_budget.py",
    "test_gpu_check.py", "test_export.py", "test_glue_warm_start.py", "test_glue_sweeps.py",
    "test_cluster_multinode.py", "test_promotion.py", "test_ray_train_qlora.py", "test_cold_start.py",
    "test_fsdp.py", "test_optuna_study.py", "test_vision.py", "test_analysis.py", "test_user_data.py",
    "test_fault_tolerance.py", "test_export_classifier.py", "test_cli_bad_input.py", "test_study_file.py",
    "test_qlora_judge.py", "test_qlora.py", "test_extending.py", "test_docs_commands.py",
)


def pytest_unconfigure(config):
    if not _WORKER:
        shutil.rmtree(_SESSION_CACHE, ignore_errors=True)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file's order kept


class Interrupted(Exception):
    pass


class DiesAfterFirstReport(LocalSession):
    """A driver killed after the first checkpoint (what a restore must recover from)."""

    def report(self, metrics, checkpoint_dir=None):
        super().report(metrics, checkpoint_dir)
        raise Interrupted


@pytest.fixture(scope="session")
def smoke_assets(torch_one_thread):
    """The tiny GPT-2 (size s) and the synthetic E2E directory (built once per session)."""
    from trainables.offline.tiny_lm import ensure_smoke_assets

    return ensure_smoke_assets(size="s")


@pytest.fixture(scope="session")
def torch_one_thread():
    """The 2-core CI machine: intra-op threads fight other processes (20x slower steps)."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def one_local_ray():
    """One local Ray in this test process for a module's in-process sweeps
    (``sweep_runs.local_ray``, ``sweep_runs.run_sweep_in_process``)."""
    from sweep_runs import local_ray

    with local_ray():
        yield


@pytest.fixture
def make_trial(smoke_assets):
    """``make_trial(**overrides)``: a small, fast E2E trial config on the smoke assets."""
    return lambda **overrides: tiny_trial(smoke_assets, **overrides)


def sweep_config(study: str, *argv: str):
    """The validated SweepConfig that ``sweeps/<study>.py *argv`` would run."""
    from sweeps.cli import build_config, build_parser
    from sweeps.study_file import load_study

    spec = load_study(study)
    return build_config(spec, build_parser(spec).parse_args(list(argv)))


def tiny_trial(smoke_assets, **overrides):
    from trainables.config import TrialConfig
    from trainables.schema import deep_merge, from_dict

    base = {
        "task": "e2e", "seed": 3,
        "model": {"name_or_path": str(smoke_assets.model_dir)},
        "data": {"source": str(smoke_assets.data_dir), "max_length": 128, "train_limit": 256,
                 "val_limit": 64, "test_limit": 6},
        "adapter": {"r": 4, "alpha": 32, "targets": "qv"},
        "train": {"epochs": 1, "warmup_steps": 2, "batch_size": 16, "lr": 2e-3, "log_every_steps": 4},
        "eval": {"num_beams": 2, "max_new_tokens": 24, "meteor": False},
    }
    return from_dict(TrialConfig, deep_merge(base, overrides))
