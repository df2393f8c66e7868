"""Worker-group trials of a classification task (MiniLM on synthetic support messages, DDP over
gloo on CPU) end to end through the study's entry point (``run_study``) in the test process, on
one local Ray for the module's sweeps, and how many worker-group trials run at once.

The same two-trial sweep runs as one-process trials, on 2 workers (DDP) and on 2 workers under
FSDP2: the healthy trial gets the same MLflow record in each, and a trial whose loss turns NaN
fails the same way in each (its worker's error recorded; retried once by ``--max-failures`` as
one process and under DDP, and not retried under FSDP2, where a retry would start one more
worker group to show again what DDP's shows). The 2-worker (DDP) healthy trial's final
evaluation on rank 0 outlasts the process group's collective timeout, and it completes.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from sweep_runs import run_sweep_in_process
from test_ray_train import ONE_PROCESS, TWO_WORKERS, _artifacts, _history, _record

pytestmark = pytest.mark.integration

#: MiniLM text classification (the smoke preset) on :func:`_tickets`, 4 steps of a 32-example
#: global batch; a healthy trial and one at lr 1e6, whose loss turns NaN (the loop raises
#: FloatingPointError on every rank: the logged loss is all-reduced), retried once.
TC_FLAGS = ["--preset", "smoke", "--scheduler", "fifo", "--max-failures", "1",
            "--set", "train.max_steps=4", "--set", "train.eval_every_steps=2", "--set", "train.log_every_steps=1"]
TC_SPACE = ("scientific:\n  lr: {grid: [1.0e-3, 1.0e6]}\n"
            "fixed: {r: 4, alpha_over_r: 2, dropout: 0.1, targets: qv}\n")
#: Test messages of the sweeps' data: the 2-worker (DDP) trial predicts them one at a time on
#: rank 0 alone, for far longer than its process group's timeout (the test checks the measured
#: time).
LONG_TEST = 800
#: The one-process and FSDP sweeps predict the first 60 of them (the smoke data's number).
SHORT_TEST = ["--set", "data.test_limit=60"]
#: The process group's timeout of the DDP sweep (``resources.collective_timeout_s``), in seconds.
SHORT_TIMEOUT = 5
#: The DDP sweep's settings for that: its final evaluation (and its validation) one message at
#: a time, and the short timeout.
LONG_FINAL_EVALUATION = ["--set", "train.eval_batch_size=1", "--set", f"resources.collective_timeout_s={SHORT_TIMEOUT}"]


def _tickets(root: Path) -> Path:
    """The synthetic support messages of the smoke preset's kind (``message``, ``topic``): 320
    training messages (10% held out for validation) and :data:`LONG_TEST` test messages."""
    from trainables.offline.user_data_synth import write_tickets

    data = root / "tickets"
    data.mkdir()
    write_tickets(data, n_train=320, n_test=LONG_TEST, seed=1)
    return data


def _classification_sweep(root: Path, name: str, space: Path, data: Path, *flags: str) -> SimpleNamespace:
    """The sweep as a user runs it: exit code 1 (a trial failed), the healthy trial completed."""
    uri = f"sqlite:///{root / (name + '.db')}"
    argv = [*TC_FLAGS, "--data", str(data), "--set", "data.columns.text=message", "--set", "data.columns.label=topic",
            "--search-space", str(space), "--tracking-uri", uri, "--storage", str(root / "rr"),
            "--name", name, *flags]
    sweep = run_sweep_in_process("text_classification", argv, cwd=root, uri=uri,
                                 experiment="lorasweep-text_classification", exit_code=1)
    trials = {float(r.data.params["train.lr"]): r for r in sweep.trials}
    return SimpleNamespace(out=sweep.out, client=sweep.client, uri=uri, good=trials[1e-3], bad=trials[1e6],
                           parent=sweep.parent, data=data)


@pytest.fixture(scope="module")
def classification_pair(tmp_path_factory, one_local_ray):
    """The same two-trial MiniLM sweep run as one-process trials and on 2 workers, these with
    :data:`LONG_FINAL_EVALUATION`."""
    root = tmp_path_factory.mktemp("ray-train-classification")
    space = root / "space.yaml"
    space.write_text(TC_SPACE)
    data = _tickets(root)
    return (_classification_sweep(root, "one-process", space, data, *ONE_PROCESS, *SHORT_TEST),
            _classification_sweep(root, "two-workers", space, data, *TWO_WORKERS, *LONG_FINAL_EVALUATION))


@pytest.fixture(scope="module")
def classification_fsdp(classification_pair, tmp_path_factory):
    """The same sweep on 2 workers under FSDP2 (``train.strategy=fsdp``)."""
    root = tmp_path_factory.mktemp("ray-train-classification-fsdp")
    space = root / "space.yaml"
    space.write_text(TC_SPACE)
    return _classification_sweep(root, "fsdp", space, classification_pair[0].data, *TWO_WORKERS,
                                 "--set", "train.strategy=fsdp", "--max-failures", "0", *SHORT_TEST)


def _shape(sweep) -> dict:
    """The healthy trial's record: which params, metrics, tags and artifacts, its status."""
    return {**_record(SimpleNamespace(trials=[sweep.good], client=sweep.client)), "steps": None}


def test_a_two_worker_classification_trial_is_recorded_as_a_one_process_trial_is(classification_pair):
    one, two = (_shape(s) for s in classification_pair)
    assert one == two
    assert one["status"] == ("FINISHED", "completed")
    assert {"val_accuracy", "val_macro_f1", "accuracy", "macro_f1", "val_loss", "train_loss"} <= one["metrics"]
    assert {"adapter/adapter_model.safetensors", "outputs/test_predictions.csv"} <= one["artifacts"]
    for sweep in classification_pair:
        steps = [s for s, _ in _history(sweep.client, sweep.good.info.run_id, "train_loss")]
        assert steps == [1, 2, 3, 4]


def test_a_worker_that_raises_fails_its_trial_with_its_error_and_is_retried(classification_pair):
    """Both shapes end the lr 1e6 trial the same way: failed after 2 attempts (--max-failures
    1), the worker's error as the first line of the record and in the summary."""
    one, two = (_failed(sweep) for sweep in classification_pair)
    assert one == two


def _failed(sweep, attempts: int = 2) -> tuple[set, set, set]:
    """Checks that the lr 1e6 trial failed after ``attempts`` attempts with the worker's error;
    the keys of its record (those of an earlier attempt's error left out)."""
    assert "1 completed, 0 stopped early, 1 failed" in sweep.out
    assert (f"failed after {attempts} attempts: lr=1e+06" if attempts > 1 else "failed: lr=1e+06") in sweep.out
    assert "FloatingPointError: train loss is nan" in sweep.out
    bad, tags = sweep.bad, sweep.bad.data.tags
    assert bad.info.status == "FAILED" and tags["lorasweep.status"] == "failed"
    assert tags["lorasweep.attempts"] == str(attempts)
    for key in ["lorasweep.error", *(f"lorasweep.error_attempt_{i}" for i in range(1, attempts))]:
        assert tags[key].startswith("FloatingPointError: train loss is nan at step"), key
    assert f"lorasweep.error_attempt_{attempts}" not in tags
    return set(bad.data.params), {k for k in tags if not k.startswith("lorasweep.error_attempt_")}, set(bad.data.metrics)


def test_an_fsdp_classification_trial_is_recorded_and_fails_as_a_one_process_trial_does(classification_pair,
                                                                                          classification_fsdp):
    """Under FSDP2 the healthy trial gets the one-process trial's record (its final
    evaluation, which does not split over the ranks, runs on both in step), and the NaN trial
    fails the same way (``--max-failures 0``: its one attempt)."""
    one = classification_pair[0]
    assert _shape(classification_fsdp) == _shape(one)
    assert _failed(classification_fsdp, attempts=1) == _failed(one)
    assert classification_fsdp.good.data.params["train.strategy"] == "fsdp"


def test_worker_group_trials_run_as_many_at_once_as_the_cluster_holds_whole():
    """Tune sees only a worker-group trial's 0.01-CPU driver; uncapped, it would start a trial
    per sliver of CPU and their groups would wait on each other for ever. Grid and random
    search are capped by their generator (which ignores Tune's max_concurrent_trials)."""
    from conftest import sweep_config

    from sweeps.planning import plan_sweep
    from sweeps.tune_setup import max_concurrent, search_alg

    cluster = {"CPU": 16.0, "GPU": 4.0}
    groups = sweep_config("rank_e2e", "--preset", "smoke", "--workers-per-trial", "2", "--cpus-per-trial", "4")
    assert max_concurrent(groups, cluster) == 4
    assert max_concurrent(groups, {"CPU": 2.0}) == 1  # never 0: one trial runs when the cluster can hold it
    gpus = sweep_config("rank_e2e", "--preset", "smoke", "--workers-per-trial", "2", "--cpus-per-trial", "2",
                        "--gpus-per-trial", "2")
    assert max_concurrent(gpus, cluster) == 2
    capped = sweep_config("rank_e2e", "--preset", "smoke", "--workers-per-trial", "2", "--cpus-per-trial", "2",
                          "--max-concurrent", "3")
    assert max_concurrent(capped, cluster) == 3
    one_process = sweep_config("rank_e2e", "--preset", "smoke", "--max-concurrent", "2")
    assert max_concurrent(one_process, cluster) == 2  # Tune counts those trials' own resources
    generator = search_alg(plan_sweep(one_process, prepare=False), "val_loss", "min", max_concurrent=2)
    assert generator.max_concurrent == 2


def test_a_final_evaluation_on_rank_0_longer_than_the_collective_timeout_completes(classification_pair):
    """A classification task's final evaluation runs on rank 0 alone (its test set does not
    split over the ranks). The 2-worker healthy trial predicts 800 test messages one at a time,
    longer than its worker group's collective timeout of 5 s: rank 1 waits for it outside every
    collective of the process group, and the trial completes with its final metrics."""
    two = classification_pair[1]
    metrics = two.good.data.metrics
    assert two.parent.data.params["resources.collective_timeout_s"] == str(SHORT_TIMEOUT)
    assert two.good.data.params["train.eval_batch_size"] == "1"
    assert two.good.data.tags["lorasweep.status"] == "completed"
    assert metrics["generate_s"] > 2 * SHORT_TIMEOUT  # rank 0's final evaluation alone
    assert 0 <= metrics["accuracy"] <= 100 and 0 <= metrics["macro_f1"] <= 100  # percentages
    assert "outputs/test_predictions.csv" in _artifacts(two.client, two.good.info.run_id)
