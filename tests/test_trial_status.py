"""A trial's outcome in the summary, from Tune's result and the MLflow recorder.

Ctrl-C while every trial is still waiting for its process (a slow start) ends Tune's loop with
results that carry no report: those trials are unfinished (exit 130, ``--resume``), never
"stopped early by ASHA", which acts on reports only.
"""

from __future__ import annotations

from ray.tune import Result

from sweeps.summary import status_of
from sweeps.tracking.recorder import MlflowRecorder


def _recorder(tmp_path) -> MlflowRecorder:
    return MlflowRecorder(tracking_uri=f"sqlite:///{tmp_path / 'mlruns.db'}", experiment_id="0",
                          parent_run_id="parent", base={}, sweep_seed=0, sweep_name="s", model_type="gpt2")


def _result(**metrics) -> Result:
    return Result(metrics=metrics, checkpoint=None, error=None, path="/nowhere")


def test_a_trial_that_never_reported_is_unfinished_not_stopped_early(tmp_path):
    recorder = _recorder(tmp_path)  # no trial event reached it: none had started
    assert status_of(_result(trial_id="a"), recorder) == "unfinished"
    assert status_of(Result(metrics=None, checkpoint=None, error=None, path="/nowhere"), recorder) == "unfinished"


def test_reported_trials_without_driver_events_keep_their_outcome(tmp_path):
    """Ray Client runs Tune remotely: no trial event reaches this driver, and a trial's last
    report says whether it ran to the end or ASHA stopped it."""
    recorder = _recorder(tmp_path)
    assert status_of(_result(trial_id="a", training_iteration=2, epoch=2.0, is_final=True), recorder) == "completed"
    assert status_of(_result(trial_id="b", training_iteration=1, epoch=1.0), recorder) == "stopped_early"


def test_an_outcome_the_recorder_has_wins(tmp_path):
    recorder = _recorder(tmp_path)
    recorder.outcomes["c"] = "completed"
    recorder.attempts["c"] = 1
    assert status_of(_result(trial_id="c"), recorder) == "completed"
    assert status_of(_result(trial_id="d", training_iteration=1, epoch=1.0), recorder) == "unfinished"
    failed = Result(metrics={"trial_id": "e"}, checkpoint=None, error=RuntimeError("boom"), path="/nowhere")
    assert status_of(failed, recorder) == "failed"


def test_tunes_warning_about_trials_that_never_reported_is_dropped_and_no_other():
    """An interrupted sweep's pending trials have no results file: Tune's warning listing them
    only is dropped (it reads like lost data); a listing with another failure is kept."""
    import logging

    from ray.tune.analysis import experiment_analysis

    from sweeps.ray_start import _not_only_unreported

    assert experiment_analysis.logger.name == "ray.tune.analysis.experiment_analysis"  # the logger filtered

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord(experiment_analysis.logger.name, logging.WARNING, __file__, 1, msg, None, None)

    pending = "Failed to fetch metrics for 2 trial(s):\n- t1: FileNotFoundError('a')\n- t2: FileNotFoundError('b')"
    assert not _not_only_unreported(record(pending))
    assert _not_only_unreported(record(pending.replace("FileNotFoundError('b')", "ValueError('bad row')")))
    assert _not_only_unreported(record("something else"))


def test_the_trials_note_and_its_tasks_note_are_both_in_the_result():
    """Early stopping's note (restored weights) and the task's (no test split) side by side."""
    from trainables.report import Report

    report = Report(epoch=2.0, step=20, validation={"val_loss": 1.0}, train_loss=1.1, lr=1e-3, trainable_params=8,
                    total_params=100, trainable_pct=8.0, seed=1, samples_per_s=1.0, tokens_per_s=None,
                    peak_mem_mb=1.0, peak_mem_kind="process_rss", setup_s=0.0, data_s=0.0, wall_s=1.0, history={},
                    is_final=True, final_note="early stopping: weights of the best report restored",
                    scores={"accuracy": 50.0, "final_note": "the data has no test split"})
    result = report.to_result()
    assert result["final_note"] == "early stopping: weights of the best report restored; the data has no test split"
    assert result["accuracy"] == 50.0
    assert Report(**{**vars(report), "final_note": None}).to_result()["final_note"] == "the data has no test split"
