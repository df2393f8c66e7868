"""Secrets stay in the environment: a smoke sweep run with planted hub and tracking
credentials leaves no trace of them in the MLflow store (params, tags, metric names, run
names, artifacts, the SQLite file itself), in Tune storage, or in what the sweep prints."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from conftest import REPO

pytestmark = pytest.mark.integration


def test_planted_credentials_are_recorded_nowhere(tmp_path, smoke_assets):
    mark = uuid.uuid4().hex[:12]
    control = uuid.uuid4().hex[:12]  # the sweep's name: recorded, so the scan must find it
    planted = {
        "HF_TOKEN": f"hf_planted{mark}hub",
        "HUGGING_FACE_HUB_TOKEN": f"hf_planted{mark}legacy",
        "MLFLOW_TRACKING_USERNAME": f"planted{mark}user",
        "MLFLOW_TRACKING_PASSWORD": f"planted{mark}password",
        "MLFLOW_TRACKING_TOKEN": f"planted{mark}token",
    }
    (tmp_path / "space.yaml").write_text("scientific:\n  r: {grid: [2, 4]}\nfixed:\n  alpha: 32\n")
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    storage = tmp_path / "ray_results"
    cmd = [sys.executable, str(REPO / "sweeps" / "rank_e2e.py"), "--preset", "smoke",
           "--search-space", str(tmp_path / "space.yaml"), "--tracking-uri", uri,
           "--storage", str(storage), "--name", f"secrets-{control}",
           # Two short trials that complete (adapter and generated outputs get logged).
           "--set", "data.train_limit=64", "--set", "data.val_limit=16", "--set", "data.test_limit=4",
           "--set", "train.epochs=2", "--set", "eval.num_beams=2", "--set", "eval.max_new_tokens=16",
           "--scheduler", "fifo"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **planted})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    def leaks(text: str | bytes) -> list[str]:
        data = text.encode() if isinstance(text, str) else text
        return [k for k, v in planted.items() if v.encode() in data or mark.encode() in data]

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert len(runs) == 3  # the sweep's parent run and its two trials
    downloads = tmp_path / "downloaded"
    for run in runs:
        fields = {"name": run.info.run_name, **{f"param {k}": v for k, v in run.data.params.items()},
                  **{f"tag {k}": v for k, v in run.data.tags.items()},
                  **{f"metric {k}": k for k in run.data.metrics}}
        for where, value in fields.items():
            assert not leaks(f"{where}={value}"), (run.info.run_id, where)
        assert client.list_artifacts(run.info.run_id)
        client.download_artifacts(run.info.run_id, "", str(downloads / run.info.run_id))
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    # The SQLite store, every artifact (downloaded and in ./mlruns), Tune storage, results CSV.
    assert any(p.name == "mlruns.db" for p in files) and any(storage in p.parents for p in files)
    assert any(downloads in p.parents for p in files)
    found = {str(p.relative_to(tmp_path)): leaks(p.read_bytes()) for p in files}
    for where in (tmp_path / "mlruns.db", storage, downloads):  # the scan reads what is recorded
        assert any(control.encode() in p.read_bytes() for p in files if p == where or where in p.parents), where
    assert not {p: k for p, k in found.items() if k}
    assert not leaks(proc.stdout) and not leaks(proc.stderr)
