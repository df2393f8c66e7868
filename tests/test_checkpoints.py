"""Checkpoint retention without Ray: a checkpoint goes only when the experiment snapshot in
storage no longer needs it and no MLflow record still reads it; a deletion that fails is
listed, never raised."""

from __future__ import annotations

import json
from pathlib import Path


def _snapshot(experiment: Path, trials: dict[str, tuple[str, list[str]]]) -> None:
    """An experiment snapshot in Tune's layout: each trial's status and checkpoint names."""
    data = [[json.dumps({"trial_id": tid, "status": status}),
             json.dumps({"checkpoint_manager": {"_type": "CLOUDPICKLE_FALLBACK",
                                                "value": " ".join(names).encode().hex()}})]
            for tid, (status, names) in trials.items()]
    (experiment / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": data}))


def test_checkpoints_go_only_when_the_stored_snapshot_no_longer_needs_them(tmp_path):
    """The retention deletes a superseded checkpoint only once the snapshot in storage names a
    newer one, a pruned trial's only once it has ended there, never one an MLflow record still
    reads; a deletion that fails is listed and the sweep goes on."""
    from sweeps.retention import CheckpointRetention

    exp = tmp_path / "sweep"
    trial = exp / "trial_a"
    for n in range(3):
        (trial / f"checkpoint_00000{n}").mkdir(parents=True)
        (trial / f"checkpoint_00000{n}" / "adapter.bin").write_bytes(b"x" * 100)
    other = exp / "trial_b" / "checkpoint_000004"
    other.mkdir(parents=True)
    (exp / "trial_c").mkdir()
    (exp / "trial_c" / "checkpoint_000001").write_text("a file where a checkpoint directory was")
    keep = CheckpointRetention(k=1, metric="val_loss", mode="min")
    keep.set_state({"experiment": str(exp), "queue": [
        {"tid": "a", "path": str(trial / "checkpoint_000000"), "kind": "superseded", "index": 0},
        {"tid": "a", "path": str(trial / "checkpoint_000001"), "kind": "superseded", "index": 1},
        {"tid": "b", "path": str(exp / "trial_b"), "kind": "pruned", "index": None},
        {"tid": "c", "path": str(exp / "trial_c" / "checkpoint_000001"), "kind": "superseded", "index": 1}]})
    keep.finish(str(exp))  # no snapshot in storage yet: nothing goes
    assert len(list(trial.iterdir())) == 3 and other.is_dir()

    _snapshot(exp, {"a": ("RUNNING", ["checkpoint_000001"]), "b": ("RUNNING", ["checkpoint_000004"]),
                    "c": ("TERMINATED", [])})
    keep.pinned = lambda: {str(trial / "checkpoint_000001")}
    keep.finish(str(exp))
    assert sorted(p.name for p in trial.iterdir()) == ["checkpoint_000001", "checkpoint_000002"]
    assert other.is_dir()  # b still runs in the stored snapshot
    assert len(keep.failed) == 1 and "trial_c/checkpoint_000001" in keep.failed[0]

    _snapshot(exp, {"a": ("RUNNING", ["checkpoint_000002"]), "b": ("TERMINATED", ["checkpoint_000004"]),
                    "c": ("TERMINATED", [])})
    keep.finish(str(exp))
    assert (trial / "checkpoint_000001").is_dir()  # pinned: an MLflow record still reads it
    assert not other.exists() and keep.deleted == ["b"]
    keep.pinned = set
    keep.finish(str(exp))
    assert [p.name for p in trial.iterdir()] == ["checkpoint_000002"] and keep.waiting == 0
    assert keep.superseded_bytes == 200


def test_a_snapshot_tune_is_still_writing_is_read_again_later_not_a_failure(tmp_path):
    """While Tune writes its next snapshot (get_state), the newest one in storage may be half
    written: the deletions wait for the next snapshot; only after the sweep's last one
    (finish) is an unreadable snapshot a failure."""
    from sweeps.retention import CheckpointRetention

    exp = tmp_path / "sweep"
    (exp / "trial_b" / "checkpoint_000001").mkdir(parents=True)
    keep = CheckpointRetention(k=1, metric="val_loss", mode="min")
    keep.set_state({"experiment": str(exp), "queue": [
        {"tid": "b", "path": str(exp / "trial_b"), "kind": "pruned", "index": None}]})
    keep.finish(str(exp))  # no snapshot yet
    (exp / "experiment_state-2026-12-07_05-00-00.json").write_text('{"trial_data": [["{\\"trial_id\\": ')
    keep.get_state()
    assert keep.failed == [] and keep.waiting == 1
    keep.finish(str(exp))
    assert len(keep.failed) == 1 and keep.failed[0].startswith(f"{exp}: ") and keep.waiting == 1


def test_the_trials_outside_the_best_k_are_queued_once_each(tmp_path):
    """keep_best_k=2, min val_loss: each trial that falls out of the best two is queued for
    pruning once, when it falls out (an errored trial ranks last)."""
    from types import SimpleNamespace

    import pyarrow.fs

    from sweeps.retention import CheckpointRetention

    keep = CheckpointRetention(k=2, metric="val_loss", mode="min")

    def trial(tid: str, loss: float | None) -> SimpleNamespace:
        storage = SimpleNamespace(storage_filesystem=pyarrow.fs.LocalFileSystem(),
                                  experiment_fs_path=str(tmp_path), trial_fs_path=str(tmp_path / tid))
        return SimpleNamespace(trial_id=tid, storage=storage, last_result={"val_loss": loss})

    queued = []
    for tid, loss in [("a", 3.0), ("b", 1.0), ("c", 2.0), ("d", 4.0), ("e", 0.5)]:
        keep.on_trial_complete(0, [], trial(tid, loss))
        queued.append("".join(q["tid"] for q in keep._queue))
    keep.on_trial_error(0, [], trial("f", None))
    # a, b: both kept; c pushes a out; d is outside; e pushes c out; f errored.
    assert queued == ["", "", "a", "ad", "adc"] and "".join(q["tid"] for q in keep._queue) == "adcf"

    # A resumed sweep's retention goes on from the state Tune saved: g (0.1) pushes b out; b
    # finishing again (a restored trial) at 0.05 is best now, and pushes e out (b's own
    # checkpoints are queued already).
    again = CheckpointRetention(k=2, metric="val_loss", mode="min")
    again.set_state(keep.get_state())
    again.on_trial_complete(0, [], trial("g", 0.1))
    again.on_trial_complete(0, [], trial("b", 0.05))
    assert "".join(q["tid"] for q in again._queue) == "adcfbe"
