"""``bench/gpu_check.sh``, the prepared check of the GPU paths, run as its ``--cpu`` dry mode:
the same four steps shrunk on CPU (the E2E smoke sweep in fp16 with two trials at once, the
QLoRA smoke sweep, the throughput bench, the packing bench), one JSON summary on stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

SCRIPT = str(REPO / "bench" / "gpu_check.sh")


def _run(*args: str, timeout: int, tmpdir=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, **({"TMPDIR": str(tmpdir)} if tmpdir else {})}
    return subprocess.run(["bash", SCRIPT, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_a_mistyped_mode_and_a_host_without_cuda_are_refused(tmp_path):
    bad = _run("--gpu", timeout=60, tmpdir=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip() == "usage: bench/gpu_check.sh [--cpu]"
    import torch

    if not torch.cuda.is_available():
        gpu = _run(timeout=120, tmpdir=tmp_path)
        assert gpu.returncode == 2 and "no CUDA device here" in gpu.stderr and not gpu.stdout
    assert list(tmp_path.iterdir()) == []  # its work directory removed


@pytest.mark.integration
def test_the_gpu_check_runs_its_steps_shrunk_on_cpu(smoke_assets):
    proc = _run("--cpu", timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["ok"] is True and out["mode"] == "cpu" and out["device"] == "cpu"
    steps = out["steps"]
    assert list(steps) == ["e2e_packed", "qlora", "throughput", "packing"]
    assert all(s["ok"] and s["exit_code"] == 0 and s["seconds"] > 0 for s in steps.values())
    e2e = steps["e2e_packed"]["result"]
    assert e2e["trials"] == {"completed": 2} and e2e["peak_mem_kind"] == ["process_rss"]
    assert e2e["last_loss_scales"] == [2.0 ** 16, 2.0 ** 16]  # fp16 through the scaler, no overflow
    assert e2e["best"]["BLEU"] >= 0 and e2e["errors"] == []
    assert steps["qlora"]["result"]["trials"] == {"completed": 1}
    configs = steps["throughput"]["result"]["configs"]
    assert set(configs) == {"fp32, AdamW foreach", "bf16 autocast, AdamW foreach", "bf16 autocast, AdamW fused"}
    assert all(c["tokens_per_s"] > 0 and c["mfu"] is None for c in configs.values())  # no peak for CPUs
    assert steps["packing"]["result"]["trials_recorded"] == [2, 2]
