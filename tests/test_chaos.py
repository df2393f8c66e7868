"""Kill and resume, end to end through the command line: real local Ray, a real MLflow SQLite
store, real training of the tiny GPT-2. One sweep's driver is killed (SIGKILL) during the first
epoch, right after a checkpoint, during the final evaluation and right after a trial completes,
and stopped by an error at the end, and ``--resume`` each time: every trial once in MLflow with
its final metrics and adapter, the Optuna searcher's state restored, nothing left RUNNING.
"""

from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path

import pytest
from fault_runs import EXPERIMENT, OPTUNA_SWEEP_WIDE, QUICK, runs_by_kind, stop_when, sweep_cmd, trial_runs, write_space


@pytest.mark.integration
def test_chaos_every_kill_resumes_to_every_trial_once_with_its_adapter(tmp_path, smoke_assets):
    """One Optuna sweep (3 trials, one at a time, keep_best_k 1, generation on, a name with a
    quote), its driver and local Ray SIGKILLed during the first epoch, right after a
    checkpoint, during a final evaluation (the one driver with Java: METEOR) and right after
    a trial completes (a trial worse than one before it, whose checkpoint keep_best_k
    prunes), then stopped by an error after
    the last trial (its results CSV cannot be written), and resumed each time. In the end:
    the 3 trials of an uninterrupted sweep, each once among the child runs with its every
    report once, its final metrics and adapter; no trial failed for a missing checkpoint; the
    parent run FINISHED; one checkpoint left in Tune storage, the best trial's."""
    # Seeded TPE draws learning rates of about 3e-4, 3e-3 and 3e-4: the second trial ends
    # worse than the first (3e-3 overshoots), and keep_best_k prunes it as it completes.
    space = write_space(tmp_path, "scientific:\n  r: {choice: [2, 4, 8]}\n"
                             "nuisance:\n  lr: {loguniform: [1.0e-5, 5.0e-3]}\n"
                             "fixed: {alpha: 32, targets: qv}\n")
    db, name, scratch = tmp_path / "mlruns.db", "it's-chaos", tmp_path / "scratch"
    scratch.mkdir()
    uri = f"sqlite:///{db}"
    cmd = sweep_cmd(tmp_path, name, uri, "--search-space", space, "--search-alg", "optuna",
                     "--num-samples", "3", *OPTUNA_SWEEP_WIDE, "--max-concurrent", "1", "--keep-best-k", "1",
                     "--set", "train.epochs=2", "--set", "data.train_limit=128", "--set", "eval.generate=true",
                     "--set", "data.test_limit=4", "--set", "eval.num_beams=2", "--set", "eval.max_new_tokens=16")
    env = {**os.environ, "LORASWEEP_TMP": str(scratch)}  # the trials' checkpoint scratch directories
    # METEOR (eval.meteor null: computed when a working Java is on PATH) runs for seconds at
    # the end of a final evaluation: the window the kill during a final evaluation lands in.
    # That driver's trials have Java; the others' find a `java` that cannot print its
    # version, count it as missing and score without METEOR (BLEU, ROUGE_L and CIDEr are
    # what this test checks).
    no_java = tmp_path / "no-java"
    no_java.mkdir()
    (no_java / "java").write_text("#!/bin/sh\nexit 1\n")
    (no_java / "java").chmod(0o755)
    without_java = {**env, "PATH": f"{no_java}{os.pathsep}{env.get('PATH', '')}"}
    log, sweep_dir = tmp_path / "chaos.log", tmp_path / "rr" / name
    resume = [*cmd, "--resume"]

    def checkpoints():
        return [p for p in sweep_dir.glob("*/checkpoint_*") if (p / "trainer_state.pt").is_file()]

    def completed():
        return sum(s == "completed" for _, _, s, _ in trial_runs(db))

    stop_when(cmd, tmp_path, log, lambda: any(st == "RUNNING" and n == 0 for _, st, _, n in trial_runs(db)),
               "during the first epoch", env=without_java)
    before = set(checkpoints())
    stop_when(resume, tmp_path, log, lambda: bool(set(checkpoints()) - before), "right after a checkpoint",
              env=without_java)
    seen: dict[str, set] = {}

    def in_final_evaluation() -> bool:
        """After the running trial's first report (step 8 of 16) is recorded, its next
        checkpoint scratch directory is its final report's: made before the beam search."""
        if not any(st == "RUNNING" and n == 1 for _, st, _, n in trial_runs(db)):
            seen.clear()
            return False
        return bool(set(scratch.iterdir()) - seen.setdefault("at first report", set(scratch.iterdir())))

    stop_when(resume, tmp_path, log, in_final_evaluation, "during a final evaluation", env=env)
    assert not any(n > 1 for *_, n in trial_runs(db))  # killed before its final report was recorded
    stop_when(resume, tmp_path, log, lambda: completed() >= 2, "right after the second trial completed",
              env=without_java)
    assert completed() == 2
    (sweep_dir / "results.csv").unlink(missing_ok=True)
    (sweep_dir / "results.csv").mkdir()  # the summary cannot write its CSV: the driver fails
    failed = subprocess.run(resume, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=without_java)
    assert failed.returncode == 1 and "IsADirectoryError" in failed.stderr, failed.stderr[-3000:]
    assert f"sweep {name} stopped (IsADirectoryError" in failed.stderr

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    children, parents = runs_by_kind(client)
    assert len(parents) == 1 and parents[0].info.status == "FAILED"  # not left RUNNING
    assert "--resume" in parents[0].data.tags["lorasweep.resume_with"]
    assert not [c for c in children if c.info.status == "RUNNING"]
    assert sum(c.data.tags["lorasweep.status"] == "completed" for c in children) == 3  # flushed

    (sweep_dir / "results.csv").rmdir()
    done = subprocess.run(resume, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=without_java)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "3 completed, 0 stopped early, 0 failed" in done.stdout
    _check_every_trial_once(client, uri, space, tmp_path / "rr" / name, done.stdout)
    # The trials killed while reporting left their checkpoint scratch directories; the trials
    # after them removed those, and their own when they ended.
    assert list(scratch.iterdir()) == []


def _expected_optuna_configs(space: str, n: int) -> list[tuple[int, float]]:
    """What an uninterrupted sweep's seeded Optuna searcher suggests (its first suggestions
    are TPE's seeded random start-up samples, independent of the trials' results)."""
    from sweeps.cli import build_config, build_parser
    from sweeps.study_file import load_study
    from sweeps.planning import plan_sweep
    from sweeps.tune_setup import search_alg
    from trainables.tasks.registry import get_task

    study = load_study("rank_e2e")
    args = build_parser(study).parse_args([*QUICK, "--search-space", space, "--search-alg", "optuna",
                                           "--num-samples", str(n), *OPTUNA_SWEEP_WIDE])
    cfg = build_config(study, args)
    plan = plan_sweep(cfg, prepare=False)
    plan.study_storage = None  # an in-memory study: the sweep's stored one is not touched
    metric = get_task(cfg.trial.task).metric
    searcher = search_alg(plan, metric.name, metric.mode)
    searcher.set_search_properties(metric.name, metric.mode, plan.param_space)
    out = []
    for i in range(n):
        hp = searcher.suggest(f"t{i}")
        out.append((int(hp["adapter.r"]), round(float(hp["train.lr"]), 12)))
    return out


def _check_every_trial_once(client, uri: str, space: str, sweep_dir: Path, out: str) -> None:
    children, parents = runs_by_kind(client)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"  # the parent was reused
    assert parents[0].info.run_id in out and "lorasweep.resume_with" not in parents[0].data.tags
    assert all(c.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for c in children)
    assert not [c for c in children if c.info.status == "RUNNING"]
    trials = [c for c in children if c.data.tags["lorasweep.status"] != "interrupted"]
    assert all(c.info.status == "KILLED" for c in children if c not in trials)
    assert len(trials) == 3 and len({c.data.tags["lorasweep.trial_id"] for c in trials}) == 3
    for c in trials:
        assert c.info.status == "FINISHED" and c.data.tags["lorasweep.status"] == "completed"
        assert c.data.tags["lorasweep.params_logged"] == "true" and c.data.params["adapter.r"]
        steps = [m.step for m in client.get_metric_history(c.info.run_id, "val_loss")]
        assert steps == [8, 16], (c.data.tags["lorasweep.trial_id"], steps)  # every report once
        assert {"BLEU", "ROUGE_L", "CIDEr"} <= set(c.data.metrics)  # its final metrics
        artifacts = {a.path for a in client.list_artifacts(c.info.run_id, "adapter")}
        assert "adapter/adapter_model.safetensors" in artifacts
        assert "outputs/predictions.txt" in {a.path for a in client.list_artifacts(c.info.run_id, "outputs")}
    got = sorted((int(c.data.params["adapter.r"]), round(float(c.data.params["train.lr"]), 12)) for c in trials)
    assert got == sorted(_expected_optuna_configs(space, 3))
    from analysis.load import load

    data = load(uri, experiment=EXPERIMENT)  # what the plots read: the 3 trials, no partial duplicate
    assert sorted(data.trials["trial_id"]) == sorted(c.data.tags["lorasweep.trial_id"] for c in trials)
    with open(sweep_dir / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 and all(r["mlflow_run_id"] for r in rows)
    # keep_best_k 1 across every interruption: the best trial's last checkpoint, nothing else
    # (no superseded checkpoint, none of an interrupted run's trial).
    kept = [p.parent.name for p in sweep_dir.glob("*/checkpoint_*")]
    best = min(rows, key=lambda r: float(r["val_loss"]))
    assert len(kept) == 1 and f"_{best['trial_id']}_" in kept[0], kept
