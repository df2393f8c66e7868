"""What keeps a sweep's start short: trial processes that start warm, memoised tokenizer
digests and model checks (so an unchanged sweep's driver imports neither torch nor
transformers), and a new SQLite MLflow store created while Ray starts.

The timings live in ``bench/cold_start.py``; these tests check the mechanisms work and stay
correct: real local Ray, real Tune trials, the real smoke assets.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO, sweep_config


def _smoke_config(*flags: str):
    return sweep_config("rank_e2e", "--preset", "smoke", *flags)


def test_tune_actor_runtime_env_matches_the_installed_ray():
    """The warm runtime env must equal what Tune's actors merge into, or they never use the
    warm processes: a Ray upgrade that changes Tune's list fails here, not silently."""
    from ray.tune.execution import class_cache

    from sweeps.ray_start import TUNE_ACTOR_ENV_VARS, TUNE_PROPAGATED_ENV

    assert TUNE_ACTOR_ENV_VARS == class_cache.DEFAULT_ENV_VARS
    assert set(TUNE_PROPAGATED_ENV) == set(class_cache.ENV_VARS_TO_PROPAGATE)


@pytest.mark.parametrize("flags, env, warm", [
    ([], {}, True),
    (["--cpus-per-trial", "2"], {}, False),  # 1 trial at a time, 2 processes prestarted
    (["--set", "resources.gpus_per_trial=1"], {}, False),
    (["--set", "search.max_concurrent=1"], {}, False),
    (["--set", "resources.workers_per_trial=2", "--cpus-per-trial", "1"], {}, False),
    ([], {"RAY_ADDRESS": "127.0.0.1:6379"}, False),  # a running cluster: its workers are its own
    ([], {"LORASWEEP_WARM_WORKERS": "0"}, False),
])
def test_warm_workers_only_where_every_prestarted_process_hosts_a_trial(flags, env, warm, monkeypatch):
    from sweeps.ray_start import warm_runtime_env
    from trainables.trial import WARM_ENV

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    cfg = _smoke_config(*flags)
    got = warm_runtime_env(cfg, bitsandbytes=False, max_trials=6)
    if not warm:
        assert got is None
        return
    assert got["worker_process_setup_hook"] == "trainables.trial.warm_worker"
    assert got["env_vars"] == {"PL_DISABLE_FORK": "1", WARM_ENV: "skip-bitsandbytes"}
    assert warm_runtime_env(cfg, bitsandbytes=True, max_trials=6)["env_vars"][WARM_ENV] == "bitsandbytes"
    assert warm_runtime_env(cfg, bitsandbytes=False, max_trials=1) is None  # 1 trial, 2 processes


_TRIALS_IN_WARM_PROCESSES = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, {repo!r})
    import ray
    from ray import tune
    from sweeps.ray_start import _init_ray, warm_runtime_env
    from sweeps.cli import build_config, build_parser
    from sweeps.study_file import load_study

    study = load_study("rank_e2e")
    cfg = build_config(study, build_parser(study).parse_args(["--preset", "smoke"]))
    n = os.cpu_count()
    env = warm_runtime_env(cfg, bitsandbytes=False, max_trials=n) if {warm} else None
    assert (env is not None) == {warm}, env
    _init_ray(env)

    def trial(config):
        tune.report({{"peft_imported": "peft" in sys.modules,
                      "bitsandbytes_skipped": "bitsandbytes" in sys.modules and sys.modules["bitsandbytes"] is None}})

    results = tune.Tuner(tune.with_resources(trial, {{"cpu": 1}}),
                         param_space={{"i": tune.grid_search(list(range(n)))}},
                         run_config=tune.RunConfig(storage_path={storage!r}, verbose=0)).fit()
    print("RESULT", json.dumps([r.metrics for r in results]))
    ray.shutdown()
""")


@pytest.mark.integration
@pytest.mark.parametrize("warm", [True, False])
def test_trials_start_in_processes_that_imported_peft_already(warm, tmp_path):
    """With the warm runtime env, Tune's first trial actors run in the processes Ray prestarted
    (which imported peft, torch and transformers, skipping bitsandbytes); without it, in new
    processes that imported nothing."""
    script = _TRIALS_IN_WARM_PROCESSES.format(repo=str(REPO), warm=warm, storage=str(tmp_path / "rr"))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    metrics = json.loads(line.removeprefix("RESULT "))
    assert len(metrics) == (os.cpu_count() or 1)
    assert [m["peft_imported"] for m in metrics] == [warm] * len(metrics)
    assert [m["bitsandbytes_skipped"] for m in metrics] == [warm] * len(metrics)


_PLAN = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {repo!r})
    from sweeps.cli import build_config, build_parser
    from sweeps.study_file import load_study
    from sweeps.planning import plan_sweep

    study = load_study("rank_e2e")
    cfg = build_config(study, build_parser(study).parse_args(["--preset", "smoke", *{flags!r}]))
    plan = plan_sweep(cfg)
    print("RESULT", json.dumps({{"model_type": plan.model_type, "prepared": str(plan.prepared),
                                "torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules}}))
""")


def _plan_in_new_process(tmp_path, *flags: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", _PLAN.format(repo=str(REPO), flags=list(flags))],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT ")).removeprefix("RESULT "))


def test_an_unchanged_sweep_plans_without_importing_torch_or_transformers(smoke_assets, tmp_path, monkeypatch):
    # A cache of its own (the smoke model and data given by path): its memo entries are this
    # test's alone, whatever else runs meanwhile.
    monkeypatch.setenv("LORASWEEP_CACHE", str(tmp_path / "cache"))
    flags = ("--storage", str(tmp_path / "rr"), "--model", str(smoke_assets.model_dir),
             "--data", str(smoke_assets.data_dir))
    first = _plan_in_new_process(tmp_path, *flags)
    again = _plan_in_new_process(tmp_path, *flags)
    assert first["torch"] and first["transformers"]  # computed: the model's module tree was built
    assert not again["torch"] and not again["transformers"]
    assert again["model_type"] == first["model_type"] == "gpt2"
    assert again["prepared"] == first["prepared"]
    kinds = sorted(p.name.split("-")[0] for p in (tmp_path / "cache" / "memo").iterdir())
    assert kinds == ["model", "tokenizer"]


def test_model_checks_are_memoised_on_the_config_and_never_when_they_fail(smoke_assets, tmp_path, monkeypatch):
    from sweeps.planning import plan_sweep
    from trainables.errors import UserError

    model = tmp_path / "model"
    shutil.copytree(smoke_assets.model_dir, model)
    memo = tmp_path / "cache"
    monkeypatch.setenv("LORASWEEP_CACHE", str(memo))
    flags = ("--set", f"trial.model.name_or_path={model}", "--set", f"trial.data.source={smoke_assets.data_dir}",
             "--storage", str(tmp_path / "rr"))

    def entries():
        return sorted(p.name for p in (memo / "memo").glob("model-checks-*"))

    with pytest.raises(UserError, match="no module named 'q_proj'"):
        plan_sweep(_smoke_config(*flags, "--set", "trial.adapter.targets=q_proj"), prepare=False)
    assert entries() == []
    plan_sweep(_smoke_config(*flags), prepare=False)
    assert len(entries()) == 1
    plan_sweep(_smoke_config(*flags), prepare=False)
    assert len(entries()) == 1  # reused
    config = json.loads((model / "config.json").read_text())
    config["n_layer"] += 1
    (model / "config.json").write_text(json.dumps(config))
    plan_sweep(_smoke_config(*flags), prepare=False)
    assert len(entries()) == 2  # another model: checked again


def test_tokenizer_digest_is_memoised_on_the_tokenizer_files(smoke_assets, tmp_path, monkeypatch, make_trial):
    from trainables.cache import tokenizer_digest
    from trainables.models import load_tokenizer, tokenizer_identity

    monkeypatch.setenv("LORASWEEP_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "model"
    shutil.copytree(smoke_assets.model_dir, model)
    cfg = make_trial(model={"name_or_path": str(model)})
    first = tokenizer_identity(cfg)
    assert first == tokenizer_digest(load_tokenizer(cfg)) == tokenizer_identity(cfg)
    tok_config = json.loads((model / "tokenizer_config.json").read_text())
    tok_config["chat_template"] = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    (model / "tokenizer_config.json").write_text(json.dumps(tok_config))
    changed = tokenizer_identity(cfg)
    assert changed != first and changed == tokenizer_digest(load_tokenizer(cfg))
    assert len(list((tmp_path / "cache" / "memo").glob("tokenizer-*"))) == 2


def test_a_new_sqlite_store_is_staged_beside_it_and_put_in_place(tmp_path):
    from mlflow import MlflowClient

    from sweeps.tracking.store import StagedStore

    db = tmp_path / "sub" / "mlruns.db"
    db.parent.mkdir()
    staged = StagedStore(f"sqlite:///{db}")
    assert not db.exists() and staged.staged is not None and staged.staged.exists()
    staged.place()
    assert db.exists() and [p.name for p in db.parent.iterdir()] == ["mlruns.db"]
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    exp = client.create_experiment("x")
    run = client.create_run(exp)
    client.log_metric(run.info.run_id, "m", 1.0)
    assert client.get_run(run.info.run_id).data.metrics == {"m": 1.0}

    refused = StagedStore(f"sqlite:///{tmp_path / 'other.db'}")
    refused.discard()  # what run_sweep does when a check after Ray's start refuses the sweep
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]
    # An existing store, or a server, is left to MLflow.
    assert StagedStore(f"sqlite:///{db}").staged is None
    assert StagedStore("http://127.0.0.1:5000").staged is None


def test_a_staged_store_is_what_mlflow_makes_for_a_new_store(tmp_path, monkeypatch):
    """A new store is a copy of the empty one migrated once per MLflow version, opened by
    MLflow: the same schema and rows as MLflow's own new store in the same directory, its
    default experiment's artifact location included (only its creation time differs); and
    the same where the cache cannot be written."""
    import contextlib
    import sqlite3

    from mlflow import MlflowClient

    from sweeps.tracking.store import StagedStore

    monkeypatch.chdir(tmp_path)  # where both put the default experiment's artifacts
    StagedStore(f"sqlite:///{tmp_path / 'staged.db'}").place()
    MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").search_experiments()

    def contents(db_file):
        with contextlib.closing(sqlite3.connect(db_file)) as db:
            tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            rows = {t: sorted(db.execute(f"SELECT * FROM {t}"), key=repr) for t in tables if t != "experiments"}
            rows["experiments"] = db.execute("SELECT experiment_id, name, artifact_location, lifecycle_stage, "
                                             "workspace FROM experiments").fetchall()
            # MLflow's migrations order a table's constraints differently from run to run.
            schema = {(kind, name, table, tuple(sorted(line.strip().rstrip(",") for line in (sql or "").splitlines())))
                      for kind, name, table, sql in db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master")}
            return schema, rows

    staged, fresh = contents(tmp_path / "staged.db"), contents(tmp_path / "mlflow.db")
    assert staged == fresh
    assert fresh[1]["experiments"] == [(0, "Default", str(tmp_path / "mlruns" / "0"), "active", "default")]
    # Where no cache can be written, MLflow makes the store as it would have.
    monkeypatch.setenv("LORASWEEP_CACHE", str(tmp_path / "staged.db"))  # a file, not a directory
    StagedStore(f"sqlite:///{tmp_path / 'uncached.db'}").place()
    assert contents(tmp_path / "uncached.db") == fresh


@pytest.mark.integration
def test_a_checkouts_local_ray_runs_its_own_code_not_the_installed_copy(tmp_path):
    """A second checkout run with an environment where the package is installed from another:
    the driver imports the checkout (the sweep scripts put it first on sys.path), and so do
    the worker processes of the local Ray it starts."""
    checkout = tmp_path / "checkout"
    for package in ("sweeps", "trainables", "search_spaces", "analysis"):
        shutil.copytree(REPO / package, checkout / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", checkout)
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(checkout)!r})
        import ray
        from sweeps.ray_start import _init_ray

        _init_ray()

        @ray.remote(num_cpus=0)
        def where():
            import trainables
            return trainables.__file__

        print(ray.get(where.remote()))
        ray.shutdown()
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS")}
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == str(checkout / "trainables" / "__init__.py"), proc.stdout
