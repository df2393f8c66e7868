"""An optuna sweep keeps its Optuna study in an RDB storage beside the MLflow store, and
``--extend N`` adds trials to it under the same MLflow parent run.

One tiny sweep runs once for the module (the real command line in this process, real local
Ray, a real MLflow SQLite store and Optuna SQLite storage): 2 trials of a sampled learning
rate, then ``--extend 2``; another, its first run on the same Ray, has its extension (the
command, in a subprocess) killed and resumed. How :class:`~sweeps.searchers.StudySearch`
tells each kind of ending is checked on an in-memory study, with the values worked out by
hand.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os

import pytest

SPACE = "nuisance:\n  lr: {loguniform: [1.0e-4, 1.0e-2]}\nfixed: {r: 4, alpha: 32, targets: qv}\n"
NAME = "tiny-optuna"
QUICK = ["--preset", "smoke", "--scheduler", "fifo", "--search-alg", "optuna", "--set", "eval.generate=false",
         "--set", "data.val_limit=32", "--set", "train.max_steps=4", "--set", "train.warmup_steps=0",
         "--set", "train.log_every_steps=2"]


def _run(argv: list[str]) -> tuple[int, str]:
    from sweeps.cli import run_study

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = run_study("rank_e2e", argv)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def extended(tmp_path_factory, smoke_assets):
    """The sweep (2 trials) and its ``--extend 2``, run once: each run's exit code and output,
    the MLflow store's URI, the Optuna storage's URL and the sweep's directory. On the same
    local Ray, the first run of the sweep whose extension is killed (its ``root``)."""
    from sweep_runs import local_ray

    root = tmp_path_factory.mktemp("optuna_study")
    (root / "space.yaml").write_text(SPACE)
    where = _where(root)
    other = tmp_path_factory.mktemp("optuna_interrupted")
    cwd = os.getcwd()
    try:
        with local_ray():  # one local Ray for the three runs (a sweep joins a running one)
            os.chdir(root)  # MLflow's default artifact root is ./mlruns
            first = _run([*QUICK, "--search-space", str(root / "space.yaml"), "--num-samples", "2", *where])
            extension = _run(["--preset", "smoke", *where, "--extend", "2"])
            os.chdir(other)
            interrupted = _first_of_the_interrupted(other)
    finally:
        os.chdir(cwd)
    return {"first": first, "extension": extension, "uri": f"sqlite:///{root / 'mlruns.db'}",
            "storage": f"sqlite:///{root / 'optuna.db'}", "dir": root / "rr" / NAME,
            "interrupted": {"root": other, "first": interrupted}}


def _where(root) -> list[str]:
    return ["--tracking-uri", f"sqlite:///{root / 'mlruns.db'}", "--storage", str(root / "rr"), "--name", NAME]


def _first_of_the_interrupted(root) -> tuple[int, str]:
    """The sweep of :func:`test_an_interrupted_extension_resumes_to_every_trial_once` before
    its extension: 2 trials, 2 validations each."""
    (root / "space.yaml").write_text(SPACE)
    return _run([*QUICK, "--set", "train.eval_every_steps=2", "--search-space", str(root / "space.yaml"),
                 "--num-samples", "2", *_where(root)])


@pytest.mark.integration
def test_the_study_holds_every_trial_with_its_value(extended):
    import optuna
    from mlflow import MlflowClient
    from optuna.trial import TrialState

    (code1, out1), (code2, out2) = extended["first"], extended["extension"]
    assert code1 == 0 and code2 == 0, out1[-3000:] + out2[-3000:]
    assert f"Optuna study {NAME} in {extended['storage']}" in out1
    assert "trials: 2 (optuna; sweeping lr: loguniform [0.0001, 0.01]; 2 more after 2 sample(s))" in out2
    assert "4 completed, 0 stopped early, 0 failed" in out2  # the summary covers both runs

    study = optuna.load_study(study_name=NAME, storage=extended["storage"])
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    lrs = [t.params["train.lr"] for t in trials]
    assert len(set(lrs)) == 4  # the extension drew new learning rates, not the first run's again

    client = MlflowClient(tracking_uri=extended["uri"])
    runs = client.search_runs([client.get_experiment_by_name("lorasweep-rank_e2e").experiment_id])
    parents = [r for r in runs if r.data.tags.get("lorasweep.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("lorasweep.kind") == "trial"]
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    assert parent.info.status == "FINISHED" and parent.data.tags["lorasweep.extended"] == "2+2"
    assert parent.data.tags["lorasweep.optuna.storage"] == extended["storage"]
    assert parent.data.tags["lorasweep.optuna.studies"] == NAME
    # Each Optuna trial's value is the final val_loss MLflow recorded for the trial of its lr.
    recorded = {float(c.data.params["train.lr"]): c.data.metrics["val_loss"] for c in children}
    assert sorted(recorded) == pytest.approx(sorted(lrs), rel=1e-9)
    for t in trials:
        lr = min(recorded, key=lambda x: abs(x - t.params["train.lr"]))
        assert t.value == pytest.approx(recorded[lr], rel=1e-9)
    stored = json.loads((extended["dir"] / "lorasweep_sweep.json").read_text())
    assert stored["search"]["num_samples"] == 4


@pytest.mark.integration
def test_the_report_draws_the_stored_study(extended, tmp_path):
    """The report's Optuna section: the optimisation history and parallel coordinates of the
    study the parent run names, drawn from its 4 completed trials, as PNG and SVG."""
    import optuna

    from analysis.load import load
    from analysis.report import Report, _study_section

    data = load(extended["uri"], experiment="lorasweep-rank_e2e")
    report = Report(out_dir=tmp_path, html=tmp_path / "report.html")
    html = _study_section(report, data.sweeps[0], "val loss")
    assert f"Optuna study: rank_e2e / {NAME}" in html
    values = sorted(t.value for t in optuna.load_study(study_name=NAME, storage=extended["storage"]).trials)
    for kind in ("history", "parallel"):
        drawn = report.figures[f"optuna_{kind}_{NAME}"]
        assert drawn["trials"] == drawn["completed"] == 4 and sorted(drawn["values"]) == values
        assert (tmp_path / f"optuna_{kind}_{NAME}.png").stat().st_size > 0
        assert (tmp_path / f"optuna_{kind}_{NAME}.svg").stat().st_size > 0


def test_each_ending_is_told_to_the_study():
    """COMPLETE with the final value; ASHA's stop PRUNED at the last reported value (1.5, its
    second report); an error, or a final value that is not finite, FAIL."""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState

    from sweeps.searchers import StudySearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = StudySearch(space={"lr": FloatDistribution(1e-4, 1e-2, log=True)}, metric="val_loss", mode="min",
                         sampler=optuna.samplers.TPESampler(seed=0), study_name="endings")
    for tid in "abcd":
        assert 1e-4 <= search.suggest(tid)["lr"] <= 1e-2
    search.on_trial_result("a", {"val_loss": 2.0, "training_iteration": 1})
    search.on_trial_result("a", {"val_loss": 1.5, "training_iteration": 2})
    search.on_trial_complete("a", {"val_loss": 1.5, "training_iteration": 2, "is_final": False})
    search.on_trial_result("b", {"val_loss": 1.4, "training_iteration": 1})
    search.on_trial_complete("b", {"val_loss": 1.2, "training_iteration": 2, "is_final": True})
    search.on_trial_complete("c", error=True)
    search.on_trial_complete("d", {"val_loss": math.nan, "training_iteration": 1, "is_final": True})
    search.on_trial_complete("b", {"val_loss": 0.1, "training_iteration": 3, "is_final": True})  # once only
    # A resumed driver's searcher (its state from before "a" ended) hears "a" again: the study
    # keeps its record.
    search._completed_trials.discard("a")
    search.on_trial_result("a", {"val_loss": 1.9, "training_iteration": 3})
    search.on_trial_complete("a", {"val_loss": 1.1, "training_iteration": 3, "is_final": True})
    trials = search._ot_study.get_trials()
    assert [(t.state, t.value) for t in trials] == [
        (TrialState.PRUNED, 1.5), (TrialState.COMPLETE, 1.2), (TrialState.FAIL, None), (TrialState.FAIL, None)]
    assert trials[0].intermediate_values == {1: 2.0, 2: 1.5}


def test_two_objectives_give_a_pareto_front(tmp_path):
    """``search.objectives=metric+params``: each trial's val_loss and trainable parameters go to
    the study; of (1.5, 100), (1.2, 800) and (1.6, 800) the third is dominated by the second
    (worse loss, as many parameters), so the front is the first two; the report draws it."""
    import optuna
    from optuna.trial import TrialState
    from ray import tune

    from analysis.studies import study_figures
    from sweeps.optuna_store import pareto_trial_ids, rdb
    from sweeps.searchers import StudySearch

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    search = StudySearch(metric=["val_loss", "trainable_params"], mode=["min", "min"], study_name="mo",
                         sampler=optuna.samplers.TPESampler(seed=0), storage=rdb(url))
    search.set_search_properties("val_loss", "min", {"lr": tune.loguniform(1e-4, 1e-2)})  # as Tune does
    for tid in "abcd":
        search.suggest(tid)
    for tid, loss, params in (("a", 1.5, 100), ("b", 1.2, 800), ("c", 1.6, 800)):
        search.on_trial_complete(tid, {"val_loss": loss, "trainable_params": params, "is_final": True})
    search.on_trial_complete("d", {"val_loss": 1.0, "trainable_params": 10, "is_final": False})
    study = optuna.load_study(study_name="mo", storage=url)
    assert [d.name for d in study.directions] == ["MINIMIZE", "MINIMIZE"]
    assert [(t.state, t.values) for t in study.trials] == [
        (TrialState.COMPLETE, [1.5, 100.0]), (TrialState.COMPLETE, [1.2, 800.0]),
        (TrialState.COMPLETE, [1.6, 800.0]), (TrialState.PRUNED, None)]
    assert pareto_trial_ids(url, "mo") == {"a", "b"}
    figures = {kind: drawn for kind, _, drawn in study_figures(study, "val loss")}
    assert figures["pareto"]["front"] == [(1.2, 800.0), (1.5, 100.0)]


@pytest.mark.integration
def test_an_interrupted_extension_resumes_to_every_trial_once(extended):
    """A sweep of 2 trials (2 validations each), its ``--extend 2`` SIGKILLed with its local
    Ray once an added trial has reported, then ``--resume``: the study holds 4 complete trials
    with 4 learning rates, MLflow one finished parent with their 4 children, each validation
    once. A trial the killed driver had asked the study for before Tune's snapshot recorded
    it is asked for again by the resumed searcher; the first ask stays in the study as
    ``FAIL`` (no MLflow run: it never reached Tune). The extension and the resume are the
    commands; the sweep's first run is run by the module's fixture."""
    import subprocess
    import sys

    import optuna
    from conftest import REPO
    from fault_runs import stop_when, trial_runs
    from mlflow import MlflowClient
    from optuna.trial import TrialState

    root = extended["interrupted"]["root"]
    code, out = extended["interrupted"]["first"]
    assert code == 0, out[-3000:]
    db, where = root / "mlruns.db", _where(root)
    script = [sys.executable, str(REPO / "sweeps" / "rank_e2e.py")]
    stop_when([*script, "--preset", "smoke", *where, "--extend", "2"], root, root / "extend.log",
              lambda: sum(n >= 1 for *_, n in trial_runs(db)) >= 3, "after an added trial reported")
    resumed = subprocess.run([*script, "--preset", "smoke", *where, "--resume"], cwd=root,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]

    trials = optuna.load_study(study_name=NAME, storage=f"sqlite:///{root / 'optuna.db'}").get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    orphans = [t for t in trials if t.state != TrialState.COMPLETE]
    assert len(complete) == 4 and len({t.params["train.lr"] for t in complete}) == 4
    assert all(t.state == TrialState.FAIL for t in orphans) and len(orphans) <= 2
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("lorasweep-rank_e2e").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("lorasweep.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("lorasweep.kind") == "trial"]
    assert parent.info.status == "FINISHED" and "lorasweep.interrupted" not in parent.data.tags
    assert parent.data.tags["lorasweep.extended"] == "2+2"
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    for c in children:
        assert [m.step for m in client.get_metric_history(c.info.run_id, "val_loss")] == [2, 4]
    ran = {c.data.tags["lorasweep.trial_id"] for c in children}
    assert {t.user_attrs["trial_id"] for t in complete} == ran
    assert not {t.user_attrs.get("trial_id") for t in orphans} & ran


def test_a_sweep_and_its_replicate_under_another_seed_draw_independent_start_up_points():
    """Each group's TPE is seeded from (sweep seed, group, prior trials): the same triple draws
    the same points (a resume, a rerun), and group 1 of seed 0 does not draw group 0 of seed 1's."""
    import optuna

    from sweeps.optuna_store import sampler

    def draws(seed: int, group: int) -> list[float]:
        study = optuna.create_study(sampler=sampler(seed, group=group))
        return [study.ask({"lr": optuna.distributions.FloatDistribution(1e-5, 1e-2, log=True)}).params["lr"]
                for _ in range(5)]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    assert draws(0, 1) == draws(0, 1)
    assert not set(draws(0, 1)) & set(draws(1, 0))
    assert not set(draws(0, 0)) & set(draws(0, 1))
