"""Secrets stay in the environment: the smoke sweep, run with planted hub and tracking
credentials (the session's ``smoke_sweep``: trials completed with their adapters and generated
outputs, trials stopped by ASHA), leaves no trace of them in the MLflow store (params, tags,
metric names, run names, artifacts, the SQLite file itself), in Tune storage, or in what the
sweep prints."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("smoke_sweep")]


def test_planted_credentials_are_recorded_nowhere(smoke_sweep, tmp_path):
    planted, mark = smoke_sweep["planted"], smoke_sweep["mark"]
    control = smoke_sweep["name"]  # the sweep's name, random: recorded, so the scan must find it
    root, client = smoke_sweep["root"], smoke_sweep["client"]

    def leaks(text: str | bytes) -> list[str]:
        data = text.encode() if isinstance(text, str) else text
        return [k for k, v in planted.items() if v.encode() in data or mark.encode() in data]

    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert len(runs) == 7  # the sweep's parent run and its six trials
    downloads = tmp_path / "downloaded"
    for run in runs:
        fields = {"name": run.info.run_name, **{f"param {k}": v for k, v in run.data.params.items()},
                  **{f"tag {k}": v for k, v in run.data.tags.items()},
                  **{f"metric {k}": k for k in run.data.metrics}}
        for where, value in fields.items():
            assert not leaks(f"{where}={value}"), (run.info.run_id, where)
        assert client.list_artifacts(run.info.run_id)
        client.download_artifacts(run.info.run_id, "", str(downloads / run.info.run_id))
    storage = root / "ray_results"
    files = [p for d in (root, downloads) for p in d.rglob("*") if p.is_file()]
    # The SQLite store, every artifact (downloaded and in ./mlruns), Tune storage, results CSV.
    assert any(p.name == "mlruns.db" for p in files) and any(storage in p.parents for p in files)
    assert any(downloads in p.parents for p in files) and any(root / "mlruns" in p.parents for p in files)
    found = {str(p): leaks(p.read_bytes()) for p in files}
    for where in (root / "mlruns.db", storage, downloads):  # the scan reads what is recorded
        assert any(control.encode() in p.read_bytes() for p in files if p == where or where in p.parents), where
    assert not {p: k for p, k in found.items() if k}
    assert not leaks(smoke_sweep["out"]) and not leaks(smoke_sweep["err"])
