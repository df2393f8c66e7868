"""The MLflow record without Ray: the writer that waits for a tracking store, its queue bounded
by bytes, the journal a resumed sweep replays, and a child run's record across drivers (its
parameters after a driver died at its creation, each report once, the final report of a trial
that stopped early). Real MLflow: a SQLite store, or a tracking server that is not there."""

from __future__ import annotations

import json
import os
import time

import pytest

from sweeps.ray_start import free_port


@pytest.fixture
def quick_http_failures():
    env = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield
    for k, v in old.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def test_records_a_store_never_reachable_again_are_named_not_dropped(quick_http_failures):
    """The recorder's writer against a tracking server that is not there: the trials' writes
    wait and are retried; at the deadline they are given up and listed per trial."""
    from sweeps.tracking.writer import TrackingWriter, transient

    writer = TrackingWriter(f"http://127.0.0.1:{free_port()}", backoff_s=(0.2, 0.5))
    done: list[str] = []
    writer.submit("t_00000", "report at step 8", lambda client: client.search_experiments(max_results=1))
    writer.submit("t_00001", "end (completed)", lambda client: done.append("never"), record={"op": "end"})
    deadline = time.monotonic() + 120
    while not writer.outages and time.monotonic() < deadline:  # the first attempt (importing MLflow)
        time.sleep(0.05)
    t0 = time.monotonic()
    assert writer.flush(3.0) is False
    assert 2.5 <= time.monotonic() - t0 < 10  # waited for the store, then gave up
    assert writer.outages == 1 and not done
    assert writer.lost["t_00000"] == ["report at step 8 (store unreachable until the deadline)"]
    assert writer.lost["t_00001"] == ["end (completed) (store unreachable until the deadline)"]
    assert writer.pending_records() == [{"op": "end"}]  # what the journal keeps
    writer.submit("t_00002", "late", lambda client: None)
    assert "t_00002" in writer.lost  # after the deadline: recorded as lost, not queued

    from mlflow.exceptions import MlflowException, RestException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    assert transient(ConnectionError("refused"))
    assert transient(MlflowException("API request failed: Max retries exceeded"))
    assert transient(RestException({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "503"}))
    assert not transient(MlflowException("bad", error_code=INVALID_PARAMETER_VALUE))
    assert not transient(RestException({"error_code": "BAD_REQUEST", "message": "no"}))


def test_the_waiting_writes_are_bounded_by_bytes_and_an_end_record_is_never_dropped(quick_http_failures):
    """While the store is away: past the byte bound the oldest waiting reports go (listed as
    lost), never the one in progress and never a trial's end record."""
    from sweeps.tracking.writer import TrackingWriter

    writer = TrackingWriter(f"http://127.0.0.1:{free_port()}", backoff_s=(0.2, 0.5), max_pending_bytes=2000)

    def down(client):
        client.search_experiments(max_results=1)

    def report(n: int) -> dict:
        return {"op": "report", "tid": "t_1", "step": n, "metrics": [["val_loss", 1.0, 0, n]] * 8}

    writer.submit("t_1", "report at step 1", down, record=report(1))
    deadline = time.monotonic() + 120
    while not writer.outages and time.monotonic() < deadline:  # the first write is in progress
        time.sleep(0.05)
    writer.submit("t_1", "end (completed)", down, record={"op": "end", "tid": "t_1", "pad": "x" * 1500}, end=True)
    for n in (2, 3, 4):
        writer.submit("t_1", f"report at step {n}", down, record=report(n))
    kept = writer.pending_records()
    assert [r.get("step") for r in kept if r["op"] == "report"][0] == 1  # in progress: kept
    assert [r["op"] for r in kept].count("end") == 1
    assert sum(len(json.dumps(r)) for r in kept[1:]) <= 2000 + len(json.dumps(kept[-1]))
    assert any("(queue full)" in w for w in writer.lost["t_1"])
    writer.flush(0.1)
    assert [r["op"] for r in writer.pending_records()].count("end") == 1  # kept for the journal


def test_a_child_run_created_by_a_driver_that_died_gets_its_params(tmp_path, smoke_assets):
    """A child run found by its trial tag but without the completeness tag (its driver died
    between creating it and logging its parameters) gets them from the next driver; reports
    are recorded once, and a trial's final report is recorded although it repeats the step of
    the report before it (early stopping), by this driver and not again by the next."""
    from mlflow import MlflowClient

    from conftest import tiny_trial
    from sweeps.tracking.recorder import MlflowRecorder
    from sweeps.tracking.writer import Journal
    from trainables.schema import to_dict

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("x")
    parent = client.create_run(exp).info.run_id
    orphan = client.create_run(exp, tags={"mlflow.parentRunId": parent, "lorasweep.trial_id": "t_1",
                                          "lorasweep.kind": "trial"}).info.run_id

    def recorder():
        return MlflowRecorder(tracking_uri=uri, experiment_id=exp, parent_run_id=parent,
                              base=to_dict(tiny_trial(smoke_assets)), sweep_seed=0, sweep_name="s",
                              model_type="gpt2", final_metrics=("test_accuracy",), storage=str(tmp_path))

    def report(step: int, final: bool, value: float) -> dict:
        ts = 2 if final else 1  # the final report is made after the one before it
        metrics = [["val_loss", value, ts, step]] + ([["test_accuracy", 50.0, ts, step]] if final else [])
        return {"op": "report", "tid": "t_1", "hp": {"adapter.r": 4}, "what": f"report {step}", "step": step,
                "final": final, "metrics": metrics, "once": [], "tags": {}, "once_tags": {}}

    first = recorder()
    for record in (report(8, False, 2.0), report(8, False, 2.0), report(8, True, 1.5)):
        first.perform(first.client, record)
    run = client.get_run(orphan)
    assert run.data.tags["lorasweep.params_logged"] == "true" and run.data.params["adapter.r"] == "4"
    assert "trial_config.json" in {a.path for a in client.list_artifacts(orphan)}
    assert run.data.metrics["test_accuracy"] == 50.0 and run.data.tags["lorasweep.final_step"] == "8"
    assert sorted(m.value for m in client.get_metric_history(orphan, "val_loss")) == [1.5, 2.0]
    assert run.data.metrics["val_loss"] == 1.5  # the final report's (the best weights')

    Journal(str(tmp_path), "s").save([report(8, True, 1.5), report(8, False, 2.0)])
    second = recorder()  # the next driver: replays what the first had not written
    assert second.replay_journal() == 2
    assert second.flush(30) == {}
    assert sorted(m.value for m in client.get_metric_history(orphan, "val_loss")) == [1.5, 2.0]  # not again


def test_a_reports_log_steps_go_to_mlflow_and_not_into_tunes_result(tmp_path, smoke_assets):
    """The train loss and learning rate of every log step since the previous report reach the
    child run at their own steps; Tune's copy of the result (its experiment state, its
    result.json) is left without them."""
    from types import SimpleNamespace

    from mlflow import MlflowClient

    from conftest import tiny_trial
    from sweeps.tracking.recorder import MlflowRecorder
    from trainables.schema import to_dict

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("x")
    parent = client.create_run(exp).info.run_id
    recorder = MlflowRecorder(tracking_uri=uri, experiment_id=exp, parent_run_id=parent,
                              base=to_dict(tiny_trial(smoke_assets)), sweep_seed=0, sweep_name="s",
                              model_type="gpt2", storage=str(tmp_path))
    trial = SimpleNamespace(trial_id="t_1", config={"adapter.r": 4})
    result = {"step": 8, "epoch": 0.5, "val_loss": 2.0, "train_loss": 2.5, "lr": 1e-3,
              "history": {"step": [4, 8], "train_loss": [3.0, 2.5], "lr": [2e-3, 1e-3]}}
    recorder.on_trial_start(0, [], trial)
    recorder.on_trial_result(0, [], trial, result)
    assert "history" not in result and result["val_loss"] == 2.0
    assert recorder.flush(60) == {}
    run_id = recorder.run_id("t_1")
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "train_loss")] == [(4, 3.0), (8, 2.5)]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "lr")] == [(4, 2e-3), (8, 1e-3)]
