"""Bad input: one line naming the field, exit code 2, no trial launched, nothing written.

A catalogue of mistakes a user can make (sweep descriptions, search spaces, CLI flags, data
files, model paths, tracking stores, resource requests the cluster cannot meet), each given to
the study's command line in a fresh directory against its own MLflow SQLite store and Tune
storage. The catalogue runs in this process (the scripts' ``run_study`` with the file
descriptors captured, and no warning logged); a sample of it, one case from each stage that
refuses (argparse, the settings, a search space, a data file, a multi-part study, a secret in
a URI, the model checks while Ray starts, the resources of the Ray started), runs as the real
command in a subprocess, for the exit code and the one stderr line end to end. Ray starts once
the settings, sources and tracking store are checked, while the model checks run: those cases
and the resource cases start a local Ray and stop it again before the error is printed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO


# ----------------------------------------------------------------------------- bad files


def _corrupt_csv(tmp: Path) -> None:
    path = tmp / "e2e" / "trainset.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines.insert(5, '"name[Broken], eatType[pub]",one ref,another field')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _short_row(tmp: Path) -> None:
    path = tmp / "e2e" / "trainset.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[3] = '"name[Broken], eatType[pub]"'  # line 4: an mr without its ref
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _wrong_header(tmp: Path) -> None:
    path = tmp / "e2e" / "trainset.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[0] = "meaning,text"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _remove_devset(tmp: Path) -> None:
    (tmp / "e2e" / "devset.csv").unlink()


def _mamba_model(tmp: Path) -> None:
    """A tiny Mamba (recurrent: packed examples share its state) with the smoke tokenizer."""
    from transformers import AutoTokenizer, MambaConfig, MambaForCausalLM

    from trainables.offline.tiny_lm import ensure_smoke_assets

    tokenizer = AutoTokenizer.from_pretrained(ensure_smoke_assets(size="s").model_dir)
    MambaForCausalLM(MambaConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1,
                                 state_size=4)).save_pretrained(tmp / "mamba")
    tokenizer.save_pretrained(tmp / "mamba")


def _spaces(tmp: Path) -> None:
    spaces = {
        "space": "scientific:\n  r: {grid: [4, -2]}\n",
        "badyaml": "scientific:\n  r: {grid: [1, 2\n",
        "empty": "",
        "twice": "scientific:\n  r: {grid: [1, 2]}\nscientific:\n  r: {grid: [16]}\n",
        "section": "scientific:\n  r: {grid: [1, 2]}\nnuisanse:\n  lr: {grid: [1.0e-3]}\n",
        "dist": "scientific:\n  r: {gird: [1, 2]}\n",
        "logzero": "scientific:\n  weight_decay: {loguniform: [0, 0.1]}\n",
        "repeat": "scientific:\n  r: {grid: [4, 8, 4]}\n",
        "arity": "scientific:\n  r+targets: {grid: [[4, qv], [8]]}\n",
        "nonuisance": "scientific:\n  r: {grid: [1, 4]}\n",
        "lengths": "scientific:\n  r: {grid: [1, 4]}\nnuisance:\n  data.max_length: {randint: [64, 258]}\n",
        "noscience": "nuisance:\n  lr: {grid: [1.0e-3, 1.0e-2]}\n",
        "rangescience": "scientific:\n  dropout: {uniform: [0.0, 0.2]}\nnuisance:\n  lr: {loguniform: [1.0e-4, 1.0e-2]}\n",
        "alphaoverr": "scientific:\n  r: {grid: [4, 8]}\n  alpha_over_r: {grid: [1, 2]}\n",
        "optunarank": "scientific:\n  r: {choice: [1, 4]}\nnuisance:\n  lr: {loguniform: [1.0e-4, 1.0e-2]}\n",
        "bigseed": "scientific:\n  r: {grid: [1, 4]}\nnuisance:\n  seed: {randint: [0, 99999999999999999999]}\n",
        "epochs": "scientific:\n  r: {grid: [1, 4]}\nnuisance:\n  train.epochs: {uniform: [1, 3]}\n",
        "sampled": "scientific:\n  r: {grid: [1, 4]}\nnuisance:\n  lr: {loguniform: [1.0e-4, 1.0e-2]}\n",
        "augment": "scientific:\n  r: {grid: [1, 4]}\nnuisance:\n  data.augment: {choice: [none, synonyms]}\n",
        "augmentprob": "scientific:\n  r: {grid: [1, 4]}\nnuisance:\n  data.augment_prob: {uniform: [0.1, 0.3]}\n",
    }
    for name, text in spaces.items():
        (tmp / f"{name}.yaml").write_text(text)


def _latin1_csv(tmp: Path) -> None:
    path = tmp / "e2e" / "trainset.csv"
    lines = path.read_bytes().splitlines()
    lines[2] = '"name[Caf\xe9 Rouge], eatType[pub]",A pub.'.encode("latin-1")  # line 3: Latin-1
    path.write_bytes(b"\n".join(lines) + b"\n")


def _latin1_space(tmp: Path) -> None:
    (tmp / "latin1.yaml").write_bytes("description: r\xe9sum\xe9\nscientific:\n  r: {grid: [1, 2]}\n"
                                      .encode("latin-1"))


def _glue_latin1(tmp: Path) -> None:
    from trainables.offline.glue_synth.write import write_glue_task

    d = write_glue_task("rte", tmp / "glue" / "RTE", n_train=20, n_dev=8, n_test=8)
    lines = (d / "train.tsv").read_bytes().splitlines()
    lines[2] = lines[2].replace(b"a", b"\xe0", 1)  # line 3: a Latin-1 byte
    (d / "train.tsv").write_bytes(b"\n".join(lines) + b"\n")


def _old_sweep(tmp: Path) -> None:
    (tmp / "old" / "done").mkdir(parents=True)
    (tmp / "old" / "done" / "lorasweep_sweep.json").write_text("{}")


def _damaged_sweep(text: str):
    def setup(tmp: Path) -> None:
        (tmp / "old" / "done").mkdir(parents=True)
        (tmp / "old" / "done" / "lorasweep_sweep.json").write_text(text)
    return setup


def _stored_smoke_sweep(tmp: Path) -> None:
    """The E2E smoke sweep 'done' as a launch stored it in Tune storage {tmp}/old."""
    from conftest import sweep_config

    from trainables.schema import to_dict

    cfg = sweep_config("rank_e2e", "--preset", "smoke", "--data", str(tmp / "e2e"), "--name", "done")
    (tmp / "old" / "done").mkdir(parents=True)
    (tmp / "old" / "done" / "lorasweep_sweep.json").write_text(json.dumps(to_dict(cfg)))


def _stored_smoke_sweep_and_its_parent_run(tmp: Path) -> None:
    """'done' in Tune storage {tmp}/old, and its parent run in the store {tmp}/mlruns.db."""
    from mlflow import MlflowClient

    _stored_smoke_sweep(tmp)
    client = MlflowClient(f"sqlite:///{tmp / 'mlruns.db'}")
    experiment = client.create_experiment("lorasweep-rank_e2e")
    client.create_run(experiment, run_name="done", tags={"lorasweep.sweep": "done", "lorasweep.kind": "sweep"})


def _old_optuna_sweep(tmp: Path) -> None:
    """An optuna sweep's description in Tune storage, its Optuna study nowhere."""
    (tmp / "old" / "done").mkdir(parents=True)
    (tmp / "old" / "done" / "lorasweep_sweep.json").write_text('{"name": "done", "search": {"algorithm": "optuna"}}')


def _glue_bad_label(tmp: Path) -> None:
    from trainables.offline.glue_synth.write import write_glue_task

    d = write_glue_task("rte", tmp / "glue" / "RTE", n_train=20, n_dev=8, n_test=8)
    lines = (d / "train.tsv").read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2].rsplit("\t", 1)[0] + "\tmaybe"  # line 3: neither label RTE has
    (d / "train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _agnews_bad_class(tmp: Path) -> None:
    from trainables.offline.glue_synth.news import write_ag_news

    d = write_ag_news(tmp / "ag", n_train=40, n_test=12, n_unlabelled=4)
    lines = (d / "train.csv").read_text(encoding="utf-8").splitlines()
    lines[1] = '"7"' + lines[1][3:]  # line 2: class index 7 (AG News has 1-4)
    (d / "train.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _csv_repeated_column(tmp: Path) -> None:
    (tmp / "reviews.csv").write_text("text,label,text\ngood,pos,fine\nbad,neg,poor\n", encoding="utf-8")


def _squad_bad_json(tmp: Path) -> None:
    from trainables.offline.squad_synth import write_squad_dataset

    d = write_squad_dataset(tmp / "squad", n_train=3, n_dev=2)
    (d / "dev-v1.1.json").write_text('{"version": "1.1", "data": [')


def _webnlg_bad_json(tmp: Path) -> None:
    from trainables.offline.data2text_synth import write_webnlg_dataset

    d = write_webnlg_dataset(tmp / "webnlg", n_train=10, n_dev=4, n_test_seen=3, n_test_unseen=3)
    text = (d / "train.json").read_text(encoding="utf-8")
    (d / "train.json").write_text(text[:300], encoding="utf-8")  # cut inside a string


def _guanaco_without_eval(tmp: Path) -> None:
    (tmp / "guanaco").mkdir()
    (tmp / "guanaco" / "train.jsonl").write_text('{"text": "### Human: hi### Assistant: hello"}\n')


def _space_with_callable_judge(tmp: Path) -> None:
    (tmp / "space.yaml").write_text("fixed:\n  r: 4\n  eval.judge: mypkg.judges:score\n")


def _model_without_config(tmp: Path) -> None:
    (tmp / "model").mkdir()
    (tmp / "model" / "README.md").write_text("weights went elsewhere\n")


def _not_an_adapter(tmp: Path) -> None:
    (tmp / "adapter").mkdir()
    (tmp / "adapter" / "adapter_config.json").write_text(json.dumps({"r": 4}))


def _a_file(tmp: Path) -> None:
    (tmp / "afile").write_text("not a directory\n")


# ----------------------------------------------------------------------------- the catalogue

E2E, GLUE, AGNEWS, SQUAD, TASKS = "rank_e2e.py", "glue_paper.py", "agnews_budget.py", "squad_grid.py", "rank_vs_task.py"
QLORA = "qlora_guanaco.py"
#: A 2-worker FSDP trial.
FSDP = ["--workers-per-trial", "2", "--cpus-per-trial", "2", "--set", "train.strategy=fsdp"]

CASES = [
    # (id, script, flags, field the message starts with, fragment, setup)
    # rank_e2e.py runs with --data {tmp}/e2e (a copy of the smoke E2E data); {tmp} is the test's
    # directory (in flags and fragments). Later flags win, so a case may replace --preset, --data or
    # --tracking-uri.
    # --- sweep description: presets, --set keys, types, ranges, tasks
    ("unknown-preset", E2E, ["--preset", "smok"], "--preset", "unknown preset 'smok' (did you mean 'smoke'?)", None),
    ("unknown-task", E2E, ["--set", "task=e2f"], "task", "unknown task 'e2f'", None),
    ("unknown-key", E2E, ["--set", "train.lrr=1"], "train.lrr", "did you mean 'lr'", None),
    ("unknown-top-level-key", E2E, ["--set", "nosuch=1", "--dry-run"], "nosuch",
     "unknown setting; a key starts with a trial section ('task', 'seed', 'model', 'data', 'adapter', 'train' or "
     "'eval'; seed is the trial seed) or a sweep setting ('description', 'name', 'space', 'trial', 'search', "
     "'scheduler', 'resources', 'max_trainable_params', 'seeds', 'keep_best_k', 'max_failures', 'tracking_uri', "
     "'experiment' or 'storage'; the sweep seed is --seed)", None),
    ("unknown-section-key", E2E, ["--set", "adaptor.r=4"], "adaptor", "did you mean 'adapter'", None),
    ("set-preset", E2E, ["--set", "preset=x"], "preset", "is picked on the command line, not set: use --preset",
     None),
    ("set-part", GLUE, ["--task", "rte", "--set", "part=x"], "part",
     "is picked on the command line, not set: use the study's part flag", None),
    ("set-without-value", E2E, ["--set", "train.lr"], "--set", "expected KEY=VALUE", None),
    ("lr-not-a-number", E2E, ["--set", "train.lr=abc"], "train.lr", "expected a number, got 'abc'", None),
    ("lr-negative", E2E, ["--set", "train.lr=-1e-4"], "train.lr", "> 0", None),
    ("r-zero", E2E, ["--set", "adapter.r=0"], "adapter.r", "positive integer", None),
    ("dropout-1.5", E2E, ["--set", "adapter.dropout=1.5"], "adapter.dropout", "must be in [0, 1), got 1.5", None),
    ("warmup-negative", E2E, ["--set", "train.warmup_steps=-5"], "train.warmup_steps", "integer >= 0, got -5", None),
    ("unknown-method", E2E, ["--set", "adapter.method=dorra"], "adapter.method", "did you mean 'dora'", None),
    ("unknown-targets", E2E, ["--set", "adapter.targets=c_atn"], "adapter.targets", "no module named 'c_atn'", None),
    # MiniLM (BERT) learns 512 positions, the smoke tiny GPT-2 256 (max_position_embeddings, n_positions)
    ("max-length-past-positions", AGNEWS, ["--set", "data.max_length=513"], "data.max_length",
     "513 tokens is more than this model's 512 positions (bert); accepted: 1..512", None),
    ("max-length-range-past-positions", E2E, ["--search-space", "{tmp}/lengths.yaml", "--dry-run"], "data.max_length",
     "257 tokens is more than this model's 256 positions (gpt2)", _spaces),  # randint is [low, high)
    ("max-length-past-positions-gpt2", E2E, ["--set", "data.max_length=300", "--dry-run"], "data.max_length",
     "300 tokens is more than this model's 256 positions (gpt2)", None),
    ("targets-empty-list", E2E, ["--set", "adapter.targets=,"], "adapter.targets",
     "must name a target group or module names, got ','", None),
    ("swept-and-set", E2E, ["--set", "adapter.r=8"], "adapter.r", "the search space sweeps it", None),
    ("swept-and-set-print-config", E2E, ["--set", "adapter.r=8", "--print-config"], "adapter.r",
     "the search space sweeps it", None),
    ("seeds-and-seed-print-config", E2E, ["--seeds", "3", "--set", "seed=1", "--print-config"], "seed",
     "--seeds 3 gives every configuration the seeds 0..2; drop one of the two", None),
    ("grace-period", E2E, ["--set", "train.max_steps=20"], "scheduler.grace_period", "no rung before the end", None),
    ("grace-period-in-epochs-dry-run", E2E, ["--set", "scheduler.grace_period=5", "--dry-run"],
     "scheduler.grace_period", "5 epochs leaves ASHA no rung before the end of a trial (3 epochs)", None),
    ("name-with-slash", E2E, ["--name", "a/b"], "name", "without '/'", None),
    ("name-with-double-quote", E2E, ["--name", 'a"b'], "name", "without '/', '\\', '\"' or control characters", None),
    ("name-dot", E2E, ["--name", "."], "name", "and not '.' or '..', got '.'", None),
    ("name-with-a-newline", E2E, ["--name", "a\nb"], "name", "got 'a\\nb'", None),
    ("name-too-long", E2E, ["--name", "x" * 300], "name", "(300 characters)", None),
    ("seeds-and-a-seed", E2E, ["--seeds", "2", "--set", "seed=3"], "seed",
     "--seeds 2 gives every configuration the seeds 0..1; drop one of the two", None),
    ("seed-negative", E2E, ["--seed", "-1"], "seed", "must be an integer from 0 to 2**32 - 1, got -1", None),
    ("trial-seed-too-large", E2E, ["--set", "seed=99999999999999999999"], "seed",
     "must be an integer from 0 to 2**32 - 1, got 99999999999999999999", None),
    # data settings only some tasks read, given to a task that does not read them
    ("data-split-on-e2e", E2E, ["--set", "data.split=resplit", "--dry-run"], "data.split",
     "task e2e does not read it (got 'resplit'); only 'glue-mnli', 'glue-sst2', 'glue-mrpc', 'glue-cola', "
     "'glue-qnli', 'glue-qqp', 'glue-rte', 'glue-stsb' and 'ag_news' read it: leave it out for e2e", None),
    ("data-synonyms-on-e2e", E2E, ["--set", "data.synonyms={tmp}/syn.json", "--dry-run"], "data.synonyms",
     "task e2e does not read it (got '{tmp}/syn.json'); only 'glue-mnli', 'glue-sst2', 'glue-mrpc', 'glue-cola', "
     "'glue-qnli', 'glue-qqp', 'glue-rte', 'glue-stsb', 'ag_news' and 'text-classification' read it: leave it out "
     "for e2e", None),
    ("data-image-size-on-e2e", E2E, ["--set", "data.image_size=224", "--dry-run"], "data.image_size",
     "task e2e does not read it (got 224); only 'cifar10' reads it: leave it out for e2e", None),
    # sampled by the search space: each value of a choice (the first, 'none', is the default), the
    # ends of a range (its low end, 0.1, is the default)
    ("data-augment-sampled-on-e2e", E2E, ["--search-space", "{tmp}/augment.yaml", "--dry-run"], "data.augment",
     "task e2e does not read it (got 'synonyms'); only 'glue-mnli', 'glue-sst2', 'glue-mrpc', 'glue-cola', "
     "'glue-qnli', 'glue-qqp', 'glue-rte', 'glue-stsb', 'ag_news' and 'text-classification' read it: leave it out "
     "for e2e", _spaces),
    ("data-augment-prob-range-on-e2e", E2E, ["--search-space", "{tmp}/augmentprob.yaml", "--dry-run"],
     "data.augment_prob", "task e2e does not read it (got 0.3); only 'glue-mnli',", _spaces),
    ("data-split-on-text-classification", "text_classification.py", ["--set", "data.split=paper", "--dry-run"],
     "data.split", "task text-classification does not read it (got 'paper'); only 'glue-mnli',", None),
    ("split-seed-negative", E2E, ["--set", "data.split_seed=-1", "--dry-run"], "data.split_seed",
     "must be an integer from 0 to 2**32 - 1, got -1", None),
    ("storage-a-file", E2E, ["--storage", "{tmp}/e2e/trainset.csv"], "storage",
     "{tmp}/e2e/trainset.csv is not a writable folder", None),
    # /proc: no folder can be made there, whatever the permissions say (root's included)
    ("storage-unwritable", E2E, ["--storage", "/proc/lorasweep-storage"], "storage",
     "cannot keep the sweep in /proc/lorasweep-storage: ", None),
    ("tracking-uri-a-folder", E2E, ["--tracking-uri", "bogus"], "tracking_uri",
     "'bogus' is a folder (MLflow's file store), which MLflow no longer writes to", None),
    ("tracking-uri-empty", E2E, ["--tracking-uri", ""], "tracking_uri",
     "is empty; give a value or leave it out for the default ($MLFLOW_TRACKING_URI or sqlite:///mlruns.db)", None),
    ("experiment-empty", E2E, ["--experiment", " "], "experiment", "is empty; give a value or leave it out", None),
    ("storage-empty", E2E, ["--storage", ""], "storage", "is empty; give a value or leave it out for the "
                                                           "default (./ray_results)", None),
    ("tracking-uri-unknown-scheme", E2E, ["--tracking-uri", "ftp://host/x"], "tracking_uri",
     "'ftp://host/x' is not an MLflow tracking store", None),
    ("optuna-storage-unreachable", E2E, ["--search-alg", "optuna", "--set", "search.storage=postgresql://127.0.0.1:1/x"],
     "search.storage", "cannot reach the Optuna study storage postgresql://127.0.0.1:1/x (", None),
    ("name-of-an-existing-sweep", E2E, ["--storage", "{tmp}/old", "--name", "done"], "name",
     "a sweep named 'done' already exists under", _old_sweep),
    ("name-of-an-existing-sweep-dry-run", E2E, ["--storage", "{tmp}/old", "--name", "done", "--dry-run"], "name",
     "a sweep named 'done' already exists under", _old_sweep),
    # --- --extend: a finished optuna sweep's study gets more trials
    ("resume-with-a-changed-setting", E2E, ["--storage", "{tmp}/old", "--name", "done", "--resume", "--set",
                                            "train.lr=5"], "--set",
     "--set train.lr=5 would change the sweep (its space searches train.lr: grid [0.002, 2e-05]); --resume "
     "continues it as it was launched", _stored_smoke_sweep),
    ("resume-with-a-changed-fixed-setting", E2E, ["--storage", "{tmp}/old", "--name", "done", "--resume", "--set",
                                                  "train.epochs=9"], "--set",
     "--set train.epochs=9 would change the sweep (stored train.epochs: 3.0); --resume", _stored_smoke_sweep),
    ("resume-another-studys-sweep", SQUAD, ["--storage", "{tmp}/old", "--name", "done", "--resume"], "name",
     "sweep 'done' under {tmp}/old is a rank_e2e sweep, not squad_grid: --resume it with python "
     "sweeps/rank_e2e.py", _stored_smoke_sweep),
    ("resume-with-another-preset", E2E, ["--storage", "{tmp}/old", "--name", "done", "--resume", "--preset", "paper"],
     "--preset", "--preset paper would change the sweep (stored preset: 'smoke')", _stored_smoke_sweep),
    ("resume-with-more-samples", E2E, ["--storage", "{tmp}/old", "--name", "done", "--resume", "--num-samples", "3",
                                       "--dry-run"], "--num-samples", "--num-samples 3 would change the sweep",
     _stored_smoke_sweep),
    ("resume-a-description-not-json", E2E, ["--storage", "{tmp}/old", "--name", "done", "--resume"], "resume",
     "{tmp}/old/done/lorasweep_sweep.json is damaged (Expecting property name enclosed in double quotes: line 1 "
     "column 2 (char 1)); it is the sweep's description as launched, a JSON object of its settings: restore it, "
     "or start a new sweep", _damaged_sweep("{not json")),
    ("resume-a-description-nested-too-deep", E2E, ["--storage", "{tmp}/old", "--name", "done", "--resume"], "resume",
     "{tmp}/old/done/lorasweep_sweep.json is damaged (maximum recursion depth exceeded while decoding a JSON array "
     "from a unicode string); it is the sweep's description", _damaged_sweep("[" * 100_000)),
    ("resume-a-description-not-an-object", E2E, ["--storage", "{tmp}/old", "--name", "done", "--resume"], "resume",
     "{tmp}/old/done/lorasweep_sweep.json is damaged (a JSON array, not an object)", _damaged_sweep("[1, 2]")),
    ("resume-a-description-with-a-bad-value", E2E, ["--storage", "{tmp}/old", "--name", "done", "--resume",
                                                    "--dry-run"], "resume",
     "{tmp}/old/done/lorasweep_sweep.json is damaged (search: expected a mapping of SearchConfig fields, got 5); "
     "restore it, or start a new sweep", _damaged_sweep('{"search": 5}')),
    ("seeds-past-the-trial-bound", E2E, ["--seeds", "5000000000", "--dry-run"], "seeds",
     "must be an integer from 1 to 100000 (replicates of each configuration; a sweep plans at most 100000 "
     "trials), got 5000000000", None),
    ("seeds-times-the-grid-past-the-bound", E2E, ["--seeds", "50000", "--dry-run"], "seeds",
     "6 grid points x 50000 seeds x 1 samples make 300000 trials, more than the 100000 a sweep plans; accepted "
     "here: --seeds 1..16666, or a smaller grid", None),
    ("num-samples-past-the-trial-bound", E2E, ["--num-samples", "1000000000000", "--dry-run"], "search.num_samples",
     "must be an integer from 1 to 100000 (a sweep plans at most 100000 trials), got 1000000000000", None),
    ("num-samples-times-the-grid-past-the-bound", E2E, ["--search-space", "{tmp}/sampled.yaml", "--search-alg",
                                                        "random", "--num-samples", "60000", "--dry-run"],
     "search.num_samples", "2 grid points x 1 seeds x 60000 samples make 120000 trials, more than the 100000 a "
     "sweep plans; accepted here: --num-samples 1..50000", _spaces),
    ("storage-s3-without-a-bucket", E2E, ["--storage", "s3://", "--dry-run"], "storage",
     "s3:// names no bucket; give s3://BUCKET or s3://BUCKET/PREFIX", None),
    ("storage-gs-without-a-bucket", E2E, ["--storage", "gs://?endpoint_override=localhost:1"], "storage",
     "gs://?endpoint_override=localhost:1 names no bucket; give gs://BUCKET or gs://BUCKET/PREFIX", None),
    ("sampled-epochs-dry-run", E2E, ["--search-space", "{tmp}/epochs.yaml", "--dry-run"], "space.nuisance.epochs",
     "a sampled range of a setting that changes the trial length leaves ASHA's rungs undefined; use grid or "
     "choice", _spaces),
    ("sampled-epochs-print-config", E2E, ["--search-space", "{tmp}/epochs.yaml", "--print-config"],
     "space.nuisance.epochs", "leaves ASHA's rungs undefined; use grid or choice", _spaces),
    ("memory-limit-past-setrlimit", E2E, ["--memory-limit-mb", "1e99", "--dry-run"], "resources.memory_limit_mb",
     "must be a number of MiB from 1 to 1099511627776 (2**40, 1 EiB), got 1e+99", None),
    ("experiment-with-a-newline", E2E, ["--experiment", "a\nb", "--dry-run"], "experiment",
     "must be an MLflow experiment name without control characters (a newline, a tab), got 'a\\nb'", None),
    ("data-empty", E2E, ["--data", "", "--dry-run"], "data.source",
     "is empty (--data ''); give a path or a name, or leave it out for the preset's", None),
    ("model-empty", E2E, ["--model", "", "--dry-run"], "model.name_or_path",
     "is empty (--model ''); give a path or a name, or leave it out for the preset's", None),
    ("search-space-empty", E2E, ["--search-space", " ", "--dry-run"], "space",
     "is empty (--search-space ''); give a path or a name", None),
    ("set-data-source-empty", "sft.py", ["--set", "data.source=", "--dry-run"], "data.source",
     "is empty (--set data.source=); give a path or a name", None),
    ("config-empty", E2E, ["--config", "", "--dry-run"], "--config",
     "is empty; give a study file, or leave it out for the study's own presets", None),
    ("config-a-directory", E2E, ["--config", "{tmp}/e2e", "--dry-run"], "--config",
     "{tmp}/e2e is a directory; give a study file (YAML)", None),
    ("scheduler-by-flag-and-set", E2E, ["--scheduler", "fifo", "--set", "scheduler.name=asha", "--dry-run"],
     "scheduler.name", "given twice, by --scheduler fifo and by --set scheduler.name=asha; give it once", None),
    ("model-by-flag-and-set", E2E, ["--model", "smoke:gpt2", "--set", "model.name_or_path=smoke:gpt2", "--dry-run"],
     "model.name_or_path", "given twice, by --model smoke:gpt2 and by --set model.name_or_path=smoke:gpt2", None),
    ("space-empty", E2E, ["--search-space", "{tmp}/empty.yaml"], "space",
     "{tmp}/empty.yaml: empty; expected a mapping with 'scientific', 'nuisance' or 'fixed'", _spaces),
    ("space-key-twice", E2E, ["--search-space", "{tmp}/twice.yaml"], "space",
     "{tmp}/twice.yaml line 3: not valid YAML ('scientific' is given twice)", _spaces),
    ("extend-zero", E2E, ["--extend", "0"], "--extend", "must be a positive integer (trials to add), got '0'", None),
    ("extend-with-resume", E2E, ["--extend", "2", "--resume"], "--extend", "cannot be combined with --resume", None),
    ("extend-with-dry-run", E2E, ["--extend", "2", "--dry-run"], "--extend",
     "cannot be combined with --dry-run; an extension runs the stored sweep's settings, which --resume --dry-run "
     "shows", None),
    ("extend-a-missing-sweep", E2E, ["--name", "nope", "--extend", "2"], "name",
     "no sweep named 'nope' under {tmp}/ray_results to extend", None),
    ("extend-a-grid-sweep", E2E, ["--storage", "{tmp}/old", "--name", "done", "--extend", "2"], "--extend",
     "sweep 'done' used grid search: no Optuna study to add trials to", _old_sweep),
    ("extend-without-a-stored-study", E2E, ["--storage", "{tmp}/old", "--name", "done", "--extend", "2"], "--extend",
     "sweep 'done' has no Optuna study in sqlite:///{tmp}/optuna.db", _old_optuna_sweep),
    ("optuna-storage-not-a-url", E2E, ["--search-alg", "optuna", "--set", "search.storage=optuna.db"],
     "search.storage", "'optuna.db' is not a SQLAlchemy database URL", None),
    ("optuna-storage-driver-missing", E2E,
     ["--search-alg", "optuna", "--set", "search.storage=postgresql+psycopg2://db.example.org/optuna"],
     "search.storage", "the postgresql driver 'psycopg2' is not installed", None),
    ("optuna-storage-password", E2E, ["--search-alg", "optuna", "--set",
                                      "search.storage=postgresql://alice:planted-secret@db.example.org/optuna"],
     "search.storage", "postgresql://***@db.example.org/optuna) would be recorded", None),
    ("objectives-without-optuna", E2E, ["--set", "search.objectives=metric+params"], "search.objectives",
     "metric+params needs search.algorithm=optuna (a multi-objective sampler), got grid", None),
    ("objectives-within-groups", E2E, ["--search-alg", "optuna", "--search-space", "{tmp}/optunarank.yaml",
                                       "--set", "search.objectives=metric+params"], "search.objectives",
     "trials are grouped by adapter.r (scheduler.groups); set scheduler.groups=none", _spaces),
    ("alpha-set-while-alpha-over-r-swept", E2E, ["--search-space", "{tmp}/alphaoverr.yaml", "--set",
                                                 "adapter.alpha=16"], "adapter.alpha", "the search space sweeps it",
     _spaces),
    ("unknown-promotion", E2E, ["--set", "scheduler.promotion=wait"], "scheduler.promotion", "'pause'", None),
    ("pause-with-max-concurrent", E2E, ["--set", "scheduler.promotion=pause", "--max-concurrent", "2"],
     "search.max_concurrent", "cannot be combined with scheduler.promotion=pause", None),
    ("pause-with-worker-groups", E2E, ["--set", "scheduler.promotion=pause", "--workers-per-trial", "2"],
     "scheduler.promotion", "pause needs one-process trials", None),
    ("groups-unknown-key", E2E, ["--set", "scheduler.groups=r,alpha"], "scheduler.groups",
     "'alpha' is not swept by the search space; accepted: auto, scientific, none", None),
    ("groups-empty", E2E, ["--set", "scheduler.groups="], "scheduler.groups", "must be auto, scientific, none", None),
    ("groups-scientific-none-there", E2E, ["--search-space", "{tmp}/noscience.yaml", "--set",
                                           "scheduler.groups=scientific"], "scheduler.groups",
     "has no scientific setting to group trials by", _spaces),
    ("optuna-groups-nothing-to-search", E2E, ["--search-space", "{tmp}/nonuisance.yaml", "--search-alg", "optuna"],
     "search.algorithm", "every swept setting makes the groups", _spaces),
    ("optuna-groups-by-a-range", E2E, ["--search-space", "{tmp}/rangescience.yaml", "--search-alg", "optuna"],
     "space.scientific.dropout", "its values must be listed", _spaces),
    # --- search spaces
    ("space-bad-value", E2E, ["--search-space", "{tmp}/space.yaml"], "space.scientific.r.grid[1]",
     "positive integer", _spaces),
    ("space-not-utf8", E2E, ["--search-space", "{tmp}/latin1.yaml"], "space",
     "latin1.yaml line 1: not UTF-8 text (byte 0xe9)", _latin1_space),
    ("space-not-found", E2E, ["--search-space", "e2e_rank_smok"], "space", "did you mean 'e2e_rank_smoke'", None),
    ("space-invalid-yaml", E2E, ["--search-space", "{tmp}/badyaml.yaml"], "space", "line 3: not valid YAML", _spaces),
    ("space-unknown-section", E2E, ["--search-space", "{tmp}/section.yaml"], "space.nuisanse",
     "did you mean 'nuisance'", _spaces),
    ("space-unknown-distribution", E2E, ["--search-space", "{tmp}/dist.yaml"], "space.scientific.r",
     "unknown distribution 'gird' (did you mean 'grid'?)", _spaces),
    ("space-loguniform-zero", E2E, ["--search-space", "{tmp}/logzero.yaml"],
     "space.scientific.weight_decay.loguniform", "a log scale needs low > 0", _spaces),
    ("space-seed-range-too-large", E2E, ["--search-space", "{tmp}/bigseed.yaml", "--dry-run"],
     "space.nuisance.seed.randint", "the largest value drawn, high - 1 = 99999999999999999998: must be an integer "
     "from 0 to 2**32 - 1, got 99999999999999999998", _spaces),
    ("space-grid-repeats", E2E, ["--search-space", "{tmp}/repeat.yaml"], "space.scientific.r.grid",
     "values repeat", _spaces),
    ("space-coupled-arity", E2E, ["--search-space", "{tmp}/arity.yaml"], "space.scientific.r+targets.grid[1]",
     "expected a list of 2 values", _spaces),
    ("optuna-with-grid", E2E, ["--search-alg", "optuna"], "space.nuisance.lr", "grid is not supported", None),
    # --- CLI flags
    ("storage-home-of-no-user", E2E, ["--storage", "~nosuchuser-lorasweep/rr"], "--storage",
     "'~nosuchuser-lorasweep/rr' begins with ~nosuchuser-lorasweep, and there is no user", None),
    ("tracking-uri-home-of-no-user", E2E, ["--tracking-uri", "sqlite:///~nosuchuser-lorasweep/m.db"],
     "--tracking-uri", "'~nosuchuser-lorasweep/m.db' begins with ~nosuchuser-lorasweep, and there is no user", None),
    # the same in a --set path: ~user is expanded where the path is read
    ("set-path-home-of-no-user", E2E, ["--set", "adapter.init_from=~nosuchuser-lorasweep/a"], "adapter.init_from",
     "'~nosuchuser-lorasweep/a' begins with ~nosuchuser-lorasweep, and there is no user 'nosuchuser-lorasweep' "
     "with a home directory here; give the path in full", None),
    ("set-path-list-home-of-no-user", E2E, ["--set", "eval.compare_models=[tuned, ~nosuchuser-lorasweep/m]"],
     "eval.compare_models", "'~nosuchuser-lorasweep/m' begins with ~nosuchuser-lorasweep, and there is no user",
     None),
    ("set-sqlite-home-of-no-user", E2E, ["--search-alg", "optuna", "--set",
                                         "search.storage=sqlite:///~nosuchuser-lorasweep/o.db"], "search.storage",
     "'~nosuchuser-lorasweep/o.db' begins with ~nosuchuser-lorasweep, and there is no user", None),
    ("set-synonyms-home-of-no-user", AGNEWS, ["--set", "data.synonyms=~nosuchuser-lorasweep/s.json"],
     "data.synonyms", "'~nosuchuser-lorasweep/s.json' begins with ~nosuchuser-lorasweep, and there is no user",
     None),
    ("data-file-mistyped", "sft.py", ["--data", "trian.jsonl"], "data.source", "trian.jsonl does not exist", None),
    ("data-file-mistyped-in-folder", "sft.py", ["--data", "data/trian.jsonl"], "data.source",
     "data/trian.jsonl does not exist", None),  # not the hub dataset 'data/trian.jsonl'
    ("data-home-of-no-user", E2E, ["--data", "~nosuchuser-lorasweep/e2e"], "--data", "there is no user", None),
    ("model-home-of-no-user", E2E, ["--model", "~nosuchuser-lorasweep/m"], "--model", "there is no user", None),
    ("space-home-of-no-user", E2E, ["--search-space", "~nosuchuser-lorasweep/s.yaml"], "--search-space",
     "there is no user", None),
    ("config-home-of-no-user", E2E, ["--config", "~nosuchuser-lorasweep/s.yaml"], "--config",
     "there is no user", None),
    ("unknown-flag", E2E, ["--unknown-flag"], "unrecognized arguments", "", None),
    ("search-alg-unknown", E2E, ["--search-alg", "bayes"], "search.algorithm", "'grid', 'random' or 'optuna'", None),
    ("num-samples-0", E2E, ["--num-samples", "0"], "search.num_samples", "positive integer", None),
    # The smoke space is a pure grid: repeats would be the same trials (same hyperparameters, same seed).
    ("num-samples-on-a-grid", E2E, ["--num-samples", "3"], "search.num_samples",
     "would run every configuration 3 times with the same seed; use --seeds 3 for replicates", None),
    ("num-samples-random-on-a-grid", E2E, ["--num-samples", "2", "--search-alg", "random"], "search.num_samples",
     "use --seeds 2 for replicates", None),
    ("resume-nothing", E2E, ["--resume"], "resume", "no rank_e2e sweep to resume", None),
    ("resume-in-another-store", E2E, ["--storage", "{tmp}/old", "--name", "done", "--resume"], "tracking_uri",
     "mlruns.db has no parent run of sweep 'done' (experiment 'lorasweep-rank_e2e'); --resume continues a sweep in "
     "the store it was launched with: give that --tracking-uri", _stored_smoke_sweep),
    ("multipart-unknown-task", GLUE, ["--task", "nope"], "--task", "unknown task 'nope'", None),
    # --- data files
    ("data-dir-missing", E2E, ["--data", "{tmp}/no-such-dir"], "data.source", "does not exist", None),
    ("e2e-lacks-devset", E2E, [], "data.source", "lacks devset.csv", _remove_devset),
    ("e2e-wrong-header", E2E, [], "data.source", "line 1: header ['meaning', 'text'] lacks an 'mr'", _wrong_header),
    ("e2e-short-row", E2E, [], "data.source", "trainset.csv line 4: expected 2 fields (mr,ref), found 1", _short_row),
    ("e2e-long-row", E2E, [], "data.source", "trainset.csv line 6: expected 2 fields (mr,ref), found 3", _corrupt_csv),
    ("e2e-not-utf8", E2E, [], "data.source", "trainset.csv line 3: not UTF-8 text (byte 0xe9)", _latin1_csv),
    ("glue-not-utf8", GLUE, ["--task", "rte", "--data", "{tmp}/glue"], "data.source",
     "RTE/train.tsv line 3: not UTF-8 text (byte 0xe0)", _glue_latin1),
    ("glue-bad-label", GLUE, ["--task", "rte", "--data", "{tmp}/glue"], "data.source",
     "RTE/train.tsv line 3: label 'maybe' is not one this task accepts", _glue_bad_label),
    ("agnews-bad-class", AGNEWS, ["--data", "{tmp}/ag"], "data.source",
     "train.csv line 2: class index '7' is not 1-4", _agnews_bad_class),
    ("squad-bad-json", SQUAD, ["--data", "{tmp}/squad"], "data.source", "dev-v1.1.json line 1: not valid JSON",
     _squad_bad_json),
    ("webnlg-bad-json", TASKS, ["--task", "webnlg", "--model", "smoke:gpt2-s", "--data", "{tmp}/webnlg"],
     "data.source", "train.json line 15: not valid JSON", _webnlg_bad_json),
    ("guanaco-lacks-eval-file", QLORA, ["--data", "{tmp}/guanaco"], "data.holdout_size",
     "has no validation split (eval.jsonl or openassistant_best_replies_eval.jsonl", _guanaco_without_eval),
    ("judge-key-missing", QLORA, ["--set", "eval.judge=http://127.0.0.1:9/v1", "--set", "eval.judge_model=m",
                                  "--set", "eval.judge_key_env=LORASWEEP_NO_SUCH_KEY"], "eval.judge",
     "needs its API key in $LORASWEEP_NO_SUCH_KEY", None),
    ("judge-callable-in-space", QLORA, ["--search-space", "{tmp}/space.yaml"], "space.fixed.eval.judge",
     "'mypkg.judges:score' is Python code and a search space is plain data", _space_with_callable_judge),
    ("csv-repeated-column", "text_classification.py", ["--data", "{tmp}/reviews.csv"], "data.source",
     "{tmp}/reviews.csv: the header repeats column 'text'; name each column once", _csv_repeated_column),
    ("smoke-data-unknown", E2E, ["--data", "smoke:nope"], "data.source", "unknown offline data 'smoke:nope'", None),
    # --- models and adapters
    ("model-missing", E2E, ["--model", "{tmp}/no-such-model"], "model.name_or_path", "does not exist", None),
    ("model-a-file", E2E, ["--model", "{tmp}/e2e/trainset.csv"], "model.name_or_path",
     "model directory {tmp}/e2e/trainset.csv is a file, not a directory", None),
    ("model-without-config", E2E, ["--model", "{tmp}/model"], "model.name_or_path", "has no config.json",
     _model_without_config),
    ("model-hub-offline", E2E, ["--preset", "paper", "--model", "gpt2-medium-not-cached"],
     "model.name_or_path", "--preset smoke", None),
    ("smoke-model-unknown", E2E, ["--model", "smoke:nope"], "model.name_or_path", "unknown offline model 'smoke:nope'",
     None),
    ("init-from-not-adapter", E2E, ["--set", "adapter.init_from={tmp}/adapter"], "adapter.init_from",
     "is not an adapter directory", _not_an_adapter),
    ("init-from-run-no-store", E2E, ["--set", "adapter.init_from=runs:/0123456789abcdef"], "adapter.init_from",
     "no MLflow run 0123456789abcdef", None),
    ("quantization-unknown", QLORA, ["--set", "model.quantization=int4"], "model.quantization",
     "expected one of 'none' or 'nf4', got 'int4'", None),
    ("quantization-on-gpt2", E2E, ["--set", "model.quantization=nf4"], "model.quantization",
     "this gpt2 model has none (its layers are Conv1D)", None),
    ("batching-unknown", E2E, ["--set", "train.batching=packed"], "train.batching",
     "expected one of 'random', 'grouped' or 'padding_free' or null, got 'packed'", None),
    ("batching-grouped-on-classification", AGNEWS, ["--set", "train.batching=grouped"], "train.batching",
     "ag_news has no grouped batches; accepted: 'random'", None),
    ("padding-free-mixes-examples", E2E, ["--model", "{tmp}/mamba", "--set", "train.batching=padding_free"],
     "train.batching", "padding_free would mix the examples packed in a row in mamba", _mamba_model),
    ("budget-too-small", E2E, ["--max-trainable-params", "10"], "max_trainable_params",
     "every configuration of the space trains more than 10 parameters", None),
    # --- tracking store
    ("tracking-sqlite-under-file", E2E, ["--tracking-uri", "sqlite:///{tmp}/afile/x.db"], "tracking_uri",
     "not a writable directory", _a_file),
    ("tracking-server-unreachable", E2E, ["--tracking-uri", "http://127.0.0.1:9"], "tracking_uri",
     "cannot use the MLflow tracking store http://127.0.0.1:9", None),
    ("tracking-credentials-in-uri", E2E, ["--tracking-uri", "https://alice:planted-secret@mlflow.example.org"],
     "tracking_uri", "https://***@mlflow.example.org) would be recorded", None),
    ("tracking-database-password", E2E, ["--tracking-uri", "postgresql://alice:planted-secret@db.example.org/mlflow"],
     "tracking_uri", "postgresql://***@db.example.org/mlflow) would be recorded", None),
    ("storage-keys-in-query", E2E, ["--storage", "s3://bucket/x?access_key=AKIA&secret_key=planted-secret"],
     "storage", "credentials ('access_key', 'secret_key') in the URI (s3://bucket/x?access_key=***&secret_key=***)",
     None),
    ("judge-token-in-query", E2E, ["--set", "eval.judge=https://judge.example.org/score?token=planted-secret"],
     "eval.judge", "would be recorded with the", None),
    # --- resources the local (CPU-only) Ray cluster cannot meet: Ray starts, nothing launches
    ("cpus-per-trial-64", E2E, ["--cpus-per-trial", "64"], "resources.cpus_per_trial", "64 CPUs per trial", None),
    ("gpus-per-trial-1", E2E, ["--gpus-per-trial", "1"], "resources.gpus_per_trial",
     "use --gpus-per-trial 0 to train on CPU", None),
    ("memory-limit-on-gpu-trials", E2E, ["--memory-limit-mb", "300", "--gpus-per-trial", "1"],
     "resources.memory_limit_mb", "it is for CPU trials only (gpus_per_trial 0)", None),
    ("worker-group-above-the-cluster", E2E, ["--workers-per-trial", "4", "--cpus-per-trial", "64"],
     "resources.cpus_per_trial", "64 CPUs per trial for its 4 workers, but the Ray cluster has", None),
    # --- worker groups (train.batch_size is the global batch; NCCL runs one rank per GPU)
    ("worker-group-asha-without-a-dashboard", E2E, ["--workers-per-trial", "2", "--cpus-per-trial", "2"],
     "resources.workers_per_trial", "2 workers per trial under the asha scheduler need the Ray cluster's dashboard",
     None),
    ("batch-not-split-by-workers", E2E, ["--workers-per-trial", "3", "--cpus-per-trial", "1"], "train.batch_size",
     "16 examples per batch do not split evenly over 3 workers (resources.workers_per_trial); use a multiple of 3",
     None),
    ("workers-sharing-a-gpu", E2E, ["--workers-per-trial", "2", "--gpus-per-trial", "1"],
     "resources.gpus_per_trial", "1 per trial for 2 workers: each worker needs whole GPUs of its own", None),
    # --- FSDP (train.strategy: fsdp): what it does not shard, or was not checked with
    ("strategy-unknown", E2E, ["--set", "train.strategy=zero3"], "train.strategy",
     "expected one of 'ddp' or 'fsdp', got 'zero3'", None),
    ("fsdp-on-one-worker", E2E, ["--set", "train.strategy=fsdp"], "train.strategy",
     "fsdp shards the model over a trial's workers, and resources.workers_per_trial is 1", None),
    ("fsdp-on-a-4-bit-base", QLORA, [*FSDP, "--set", "model.quantization=nf4", "--set", "adapter.method=lora"],
     "train.strategy", "fsdp does not shard a 4-bit base (bitsandbytes' quantized weights are not sharded", None),
    ("fsdp-with-qlora", QLORA, FSDP, "train.strategy", "fsdp does not shard a 4-bit base", None),
    ("fsdp-with-dora", E2E, [*FSDP, "--set", "adapter.method=dora"], "adapter.method",
     "'dora' was not checked under train.strategy=fsdp; accepted there: 'lora' (or train.strategy=ddp)", None),
    ("fsdp-with-full-fine-tuning-of-batchnorm", "cifar_lora.py", [*FSDP, "--set", "train.early_stopping_patience=null"],
     "space.scientific.method.grid[1]",
     "'full' was not checked under train.strategy=fsdp; accepted there: 'lora' (or train.strategy=ddp)", None),
    ("fsdp-with-fp16", E2E, [*FSDP, "--set", "train.precision=fp16"], "train.precision",
     "fp16 (its gradient scaler would decide to skip a step on each rank's shards alone) was not checked under "
     "train.strategy=fsdp; accepted there: fp32 or bf16", None),
    ("fsdp-with-keep-best", E2E, [*FSDP, "--set", "train.keep_best=true"], "train.keep_best",
     "true was not checked under train.strategy=fsdp; accepted there: false", None),
    ("fsdp-with-a-paged-optimizer", E2E, [*FSDP, "--set", "train.optimizer=paged_adamw_8bit"], "train.optimizer",
     "paged_adamw_8bit was not checked under train.strategy=fsdp; accepted there: adamw", None),
    ("fsdp-with-a-judged-final-evaluation", QLORA,
     [*FSDP, "--set", "model.quantization=none", "--set", "adapter.method=lora", "--set", "train.optimizer=adamw",
      "--set", "train.gradient_checkpointing=false"], "train.strategy",
     "fsdp runs a trial's final evaluation on every worker, and guanaco's", None),
]


@pytest.fixture(scope="module")
def offline_sources(smoke_assets):
    """The smoke sources the presets name beside --data (built once, before any case runs,
    so that no case's stderr carries a first build's progress lines)."""
    from trainables.offline.classification_assets import smoke_ag_news_data
    from trainables.offline.tiny_llama import ensure_assets

    smoke_ag_news_data()  # agnews_budget's smoke predict_file
    ensure_assets()  # qlora_guanaco's tiny Llama
    return smoke_assets


def test_num_samples_repeat_a_space_that_samples(tmp_path, capsys, smoke_assets):
    """Where a setting is sampled, each sample is a new configuration: num_samples is allowed."""
    from sweeps.cli import run_study

    (tmp_path / "space.yaml").write_text("scientific:\n  r: {grid: [1, 4]}\nnuisance:\n  lr: {loguniform: [1.0e-4, 1.0e-2]}\n")
    common = ["--preset", "smoke", "--dry-run", "--search-space", str(tmp_path / "space.yaml"),
              "--storage", str(tmp_path / "rr"), "--tracking-uri", f"sqlite:///{tmp_path / 'mlruns.db'}"]
    assert run_study("rank_e2e", [*common, "--num-samples", "3", "--search-alg", "random"]) == 0
    assert '"n_trials": 6' in capsys.readouterr().out  # 2 ranks x 3 samples


def test_a_sampled_data_setting_a_task_does_not_read_is_accepted_at_its_default_only(tmp_path, capsys,
                                                                                    smoke_assets):
    """E2E does not read data.augment_copies (default 1). An integer range is [low, high), so
    {randint: [1, 2]} samples 1 alone, the default: accepted; [1, 3] samples 2 as well: refused."""
    from sweeps.cli import run_study

    common = ["--preset", "smoke", "--dry-run", "--search-space", str(tmp_path / "space.yaml"),
              "--storage", str(tmp_path / "rr"), "--tracking-uri", f"sqlite:///{tmp_path / 'mlruns.db'}"]
    for high, code in ((2, 0), (3, 2)):
        (tmp_path / "space.yaml").write_text(f"scientific:\n  r: {{grid: [1, 4]}}\n"
                                             f"nuisance:\n  data.augment_copies: {{randint: [1, {high}]}}\n")
        assert run_study("rank_e2e", common) == code
    assert capsys.readouterr().err.strip() == (
        "error: data.augment_copies: task e2e does not read it (got 2); only 'glue-mnli', 'glue-sst2', 'glue-mrpc', "
        "'glue-cola', 'glue-qnli', 'glue-qqp', 'glue-rte', 'glue-stsb', 'ag_news' and 'text-classification' read "
        "it: leave it out for e2e")
    assert sorted(f.name for f in tmp_path.iterdir()) == ["space.yaml"]  # no MLflow store, no Tune storage


def test_a_max_length_the_command_line_sets_wins_over_the_spaces_fixed_one(tmp_path, capsys, smoke_assets):
    """Only the command line's data.max_length reaches the trials, so only it is checked against
    the tiny GPT-2's 256 positions."""
    from sweeps.cli import run_study

    (tmp_path / "space.yaml").write_text("scientific:\n  r: {grid: [1, 4]}\nfixed:\n  data.max_length: 4096\n")
    common = ["--preset", "smoke", "--dry-run", "--search-space", str(tmp_path / "space.yaml"),
              "--storage", str(tmp_path / "rr"), "--tracking-uri", f"sqlite:///{tmp_path / 'mlruns.db'}"]
    assert run_study("rank_e2e", [*common, "--set", "data.max_length=128"]) == 0
    assert '"max_length": 128' in capsys.readouterr().out
    assert run_study("rank_e2e", common) == 2
    assert "4096 tokens is more than this model's 256 positions (gpt2)" in capsys.readouterr().err


def test_position_limit_is_the_positions_a_token_can_take():
    """GPT-2 and BERT take n_positions / max_position_embeddings tokens; RoBERTa's positions
    start after its padding index 1 (514 rows, 512 tokens); OPT's and BART's tables have 2
    rows before the first position; Llama's rotary positions have no table."""
    import torch
    from transformers import (BartConfig, BartModel, BertConfig, BertModel, GPT2Config, GPT2Model, LlamaConfig,
                              LlamaModel, OPTConfig, OPTModel, RobertaConfig, RobertaModel)

    from trainables.models import position_limit

    small = {"num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32, "hidden_size": 16}
    with torch.device("meta"):
        models = {
            "gpt2": GPT2Model(GPT2Config(n_embd=16, n_layer=1, n_head=2, n_positions=1024)),
            "bert": BertModel(BertConfig(**small, max_position_embeddings=512)),
            "roberta": RobertaModel(RobertaConfig(**small, max_position_embeddings=514, pad_token_id=1)),
            "opt": OPTModel(OPTConfig(hidden_size=16, num_hidden_layers=1, ffn_dim=32, num_attention_heads=2,
                                      word_embed_proj_dim=16, max_position_embeddings=2048)),
            "bart": BartModel(BartConfig(d_model=16, encoder_layers=1, decoder_layers=1, encoder_ffn_dim=32,
                                         decoder_ffn_dim=32, encoder_attention_heads=2, decoder_attention_heads=2,
                                         max_position_embeddings=1024)),
            "llama": LlamaModel(LlamaConfig(**small, num_key_value_heads=1)),
        }
    assert {k: position_limit(m) for k, m in models.items()} == {
        "gpt2": 1024, "bert": 512, "roberta": 512, "opt": 2048, "bart": 1024, "llama": None}


def test_a_bundled_models_alias_is_not_a_folder_of_that_name(tmp_path, monkeypatch):
    """--model minilm names the bundled MiniLM even where the working folder has a minilm/."""
    from conftest import sweep_config

    (tmp_path / "minilm").mkdir()
    (tmp_path / "reviews.csv").write_text("text,label\na,x\n")
    monkeypatch.chdir(tmp_path)
    cfg = sweep_config("text_classification", "--preset", "smoke", "--model", "minilm", "--data", "reviews.csv")
    assert (cfg.trial.model.name_or_path, cfg.trial.data.source) == ("minilm", str(tmp_path / "reviews.csv"))


def test_a_mistake_found_while_ray_starts_stops_that_ray(tmp_path, smoke_assets, monkeypatch):
    """Ray starts in the background once the settings are checked; a mistake the model checks
    find after that (a target module the model lacks) stops it again: the error is raised,
    Ray is down, and nothing is written."""
    import ray

    from sweeps.cli import build_configs, build_parser

    from sweeps.study_file import load_study
    from sweeps.runner import run_sweep
    from trainables.errors import UserError

    assert not ray.is_initialized()
    inits = []
    real_init = ray.init
    monkeypatch.setattr(ray, "init", lambda *a, **k: inits.append(k) or real_init(*a, **k))
    spec = load_study("rank_e2e")
    args = build_parser(spec).parse_args([
        "--preset", "smoke", "--set", "adapter.targets=c_atn",
        "--tracking-uri", f"sqlite:///{tmp_path / 'mlruns.db'}", "--storage", str(tmp_path / "ray_results")])
    (cfg,) = build_configs(spec, args)
    with pytest.raises(UserError, match="no module named 'c_atn'"):
        run_sweep(cfg)
    assert len(inits) == 1  # Ray did start (in the background) before the mistake was found
    assert not ray.is_initialized()
    assert list(tmp_path.iterdir()) == []


#: The cases also run as the real command: one from each stage that refuses.
AS_COMMANDS = ["unknown-flag", "lr-not-a-number", "e2e-short-row", "webnlg-bad-json", "tracking-credentials-in-uri",
               "unknown-targets", "cpus-per-trial-64"]


def _argv(script: str, flags: list[str], tmp_path: Path) -> list[str]:
    return ["--preset", "smoke", *(["--data", str(tmp_path / "e2e")] if script == E2E else []),
            "--tracking-uri", f"sqlite:///{tmp_path / 'mlruns.db'}", "--storage", str(tmp_path / "ray_results"),
            *[f.format(tmp=tmp_path) for f in flags]]


def _prepare(tmp_path: Path, sources, setup) -> set[Path]:
    """The case's directory (a copy of the smoke E2E data, then ``setup``); what is in it."""
    shutil.copytree(sources.data_dir, tmp_path / "e2e")
    if setup:
        setup(tmp_path)
    return set(tmp_path.iterdir())


def _check_refused(code: int, out: str, err: str, tmp_path: Path, before: set[Path], field: str,
                   fragment: str) -> None:
    assert code == 2, out[-2000:] + err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {field}"), lines[0]
    assert fragment.format(tmp=tmp_path) in lines[0], lines[0]
    assert "Traceback" not in out + err
    # Nothing written: no MLflow store (nor its artifact folder), no Tune experiment, nothing
    # else in the working directory; no trial launched (the sweep header is printed just
    # before Tune starts, after the parent run exists).
    assert set(tmp_path.iterdir()) == before, sorted(set(tmp_path.iterdir()) - before)
    assert not (tmp_path / "mlruns.db").exists() and not (tmp_path / "mlruns").exists()
    assert not (tmp_path / "ray_results").exists()
    assert "Tune storage:" not in out and "trial" not in out.lower()
    assert "planted-secret" not in out + err


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the in-process cases, started as a sweep of one-process trials starts
    its own (without a dashboard): a sweep run where Ray is up joins it (and leaves it up), and
    checks the resources of the same local cluster. That a sweep stops the Ray it started
    itself is checked by the real commands and by
    ``test_a_mistake_found_while_ray_starts_stops_that_ray``."""
    import ray
    import sweep_runs

    assert not ray.is_initialized()
    with sweep_runs.local_ray():
        yield


def _printed_by_logging(record: logging.LogRecord) -> bool:
    """Whether the real command would print ``record`` on stderr through logging's last resort
    (a warning that no handler of its logger or the loggers above takes). Here pytest's own
    handlers take every record, so the command's stderr would have a line the captured one lacks."""
    logger: logging.Logger | None = logging.getLogger(record.name)
    while logger is not None:
        if any(not type(h).__module__.startswith("_pytest") for h in logger.handlers):
            return False  # a library's own handler: what it writes is in the captured output
        logger = logger.parent if logger.propagate else None
    return record.levelno >= logging.lastResort.level


@pytest.fixture
def in_process(local_ray, caplog):
    """``run(script, argv)``: the script's command line run in this process, in the current
    directory; its exit code."""
    from sweeps.cli import run_study

    caplog.set_level(logging.WARNING)

    def run(script: str, argv: list[str]) -> int:
        try:
            code = run_study(script.removesuffix(".py"), argv)
        except SystemExit as e:  # argparse's usage errors
            code = e.code
        assert not [r.getMessage() for r in caplog.records if _printed_by_logging(r)]
        return code

    return run


@pytest.mark.parametrize("script, flags, field, fragment, setup", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(script, flags, field, fragment, setup, tmp_path,
                                                         offline_sources, in_process, capfd, monkeypatch):
    before = _prepare(tmp_path, offline_sources, setup)
    capfd.readouterr()  # what the setup printed (a model's save progress)
    monkeypatch.chdir(tmp_path)
    code = in_process(script, _argv(script, flags, tmp_path))
    out, err = capfd.readouterr()
    _check_refused(code, out, err, tmp_path, before, field, fragment)


@pytest.mark.parametrize("script, flags, field, fragment, setup", [c[1:] for c in CASES if c[0] in AS_COMMANDS],
                         ids=[c[0] for c in CASES if c[0] in AS_COMMANDS])
def test_the_real_command_refuses_with_one_line_and_exit_2(script, flags, field, fragment, setup, tmp_path,
                                                           offline_sources):
    before = _prepare(tmp_path, offline_sources, setup)
    cmd = [sys.executable, str(REPO / "sweeps" / script), *_argv(script, flags, tmp_path)]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    _check_refused(proc.returncode, proc.stdout, proc.stderr, tmp_path, before, field, fragment)


def test_resume_with_the_flags_the_sweep_was_launched_with_is_accepted(tmp_path, offline_sources):
    """A user resumes with the launch command plus --resume: each flag repeats the stored value."""
    from conftest import sweep_config

    from sweeps.cli import build_parser, given_settings
    from sweeps.storage import check_unchanged
    from sweeps.study_file import load_study

    _prepare(tmp_path, offline_sources, _stored_smoke_sweep)
    argv = ["--preset", "smoke", "--data", str(tmp_path / "e2e"), "--name", "done", "--storage", str(tmp_path / "old"),
            "--set", "train.lr=2e-4", "--num-samples", "1", "--resume"]
    args = build_parser(load_study("rank_e2e")).parse_args(argv)
    given = given_settings(args, argv)
    assert [flag for flag, _ in given] == ["--data " + str(tmp_path / "e2e"), "--num-samples 1",
                                           "--set train.lr=2e-4", "--preset smoke"]
    check_unchanged(sweep_config("rank_e2e", *argv), given)  # raises UserError on a change


NOT_LAUNCHED = "the sweep was not launched (no trial ran); run the command again, without --resume"


@pytest.mark.parametrize("resume, stop, code, said", [
    (False, KeyboardInterrupt(), 130, f"interrupted: {NOT_LAUNCHED}"),
    (False, "SIGTERM", 143, f"stopped by SIGTERM: {NOT_LAUNCHED}"),
    (True, KeyboardInterrupt(), 130, "interrupted: finish it later with --resume"),
])
def test_a_stop_before_launch_says_how_to_go_on(resume, stop, code, said, tmp_path, offline_sources, in_process,
                                                capfd, monkeypatch):
    """Ctrl-C or SIGTERM while Ray starts: a new sweep is not in Tune storage yet, so the hint
    is to run the command again (``--resume`` would find nothing); a resumed sweep still is."""
    import signal

    import sweeps.runner
    from sweeps.stopping import Stopped

    _prepare(tmp_path, offline_sources, _stored_smoke_sweep_and_its_parent_run if resume else None)

    def stopped_while_ray_starts(cfg, **_):
        raise Stopped(signal.SIGTERM) if stop == "SIGTERM" else stop

    monkeypatch.setattr(sweeps.runner, "_launch", stopped_while_ray_starts)
    monkeypatch.chdir(tmp_path)
    flags = ["--name", "done", "--storage", "{tmp}/old", *(["--resume"] if resume else [])]
    assert in_process(E2E, _argv(E2E, flags, tmp_path)) == code
    assert capfd.readouterr().err.strip().splitlines()[-1] == said
    if not resume:  # indeed nothing to resume
        assert in_process(E2E, _argv(E2E, [*flags, "--resume"], tmp_path)) == 2
        assert "error: name: no sweep named 'done' under" in capfd.readouterr().err


def test_a_resumes_dry_run_plans_the_stored_sweep(tmp_path, offline_sources, in_process, capfd, monkeypatch):
    """``--resume --dry-run`` plans what ``--resume`` would run: the sweep as stored at launch
    (the smoke preset on the copied data), not the study's default preset."""
    _prepare(tmp_path, offline_sources, _stored_smoke_sweep_and_its_parent_run)
    monkeypatch.chdir(tmp_path)
    capfd.readouterr()
    assert in_process(E2E, ["--resume", "--name", "done", "--storage", str(tmp_path / "old"), "--dry-run"]) == 0
    plan = json.loads(capfd.readouterr().out)
    assert plan["sweep"]["preset"] == "smoke" and plan["sweep"]["name"] == "done"
    assert plan["base_trial"]["data"]["source"] == str(tmp_path / "e2e"), plan["base_trial"]


def test_a_stored_sweep_with_a_data_setting_its_task_does_not_read_still_resumes(
        tmp_path, offline_sources, in_process, capfd, monkeypatch):
    """A new sweep is refused a data setting its task does not read; a sweep stored with one
    (launched when it was accepted, and ignored) cannot change, so ``--resume`` plans it as
    it was launched instead of refusing what it could no longer drop."""
    _prepare(tmp_path, offline_sources, _stored_smoke_sweep_and_its_parent_run)
    stored = tmp_path / "old" / "done" / "lorasweep_sweep.json"
    launched = json.loads(stored.read_text())
    launched["trial"]["data"]["augment"] = "synonyms"
    stored.write_text(json.dumps(launched))
    monkeypatch.chdir(tmp_path)
    capfd.readouterr()
    assert in_process(E2E, ["--resume", "--name", "done", "--storage", str(tmp_path / "old"), "--dry-run"]) == 0
    assert json.loads(capfd.readouterr().out)["base_trial"]["data"]["augment"] == "synonyms"
    assert in_process(E2E, ["--preset", "smoke", "--data", str(tmp_path / "e2e"), "--set", "data.augment=synonyms",
                            "--dry-run"]) == 2
    assert capfd.readouterr().err.startswith("error: data.augment: task e2e does not read it")


def test_a_stop_after_the_parent_run_but_before_storage_closes_it_and_says_run_again(
        tmp_path, offline_sources, in_process, capfd, monkeypatch):
    """Ctrl-C after the MLflow parent run is made but before Tune stores the sweep: the parent
    run is ended (KILLED, with no resume command: there is nothing to resume), and both the
    sweep's line and the command's say to run it again; doing so replaces that run."""
    import sweeps.runner
    from mlflow import MlflowClient

    _prepare(tmp_path, offline_sources, None)

    def stopped_before_storing(*_, **__):
        raise KeyboardInterrupt  # the user's Ctrl-C as Tune is set up

    monkeypatch.setattr(sweeps.runner, "tuner_for", stopped_before_storing)
    monkeypatch.chdir(tmp_path)
    assert in_process(E2E, _argv(E2E, ["--name", "early"], tmp_path)) == 130
    err = capfd.readouterr().err
    assert "it was not launched: run the command again" in err and "--resume --name" not in err, err
    assert err.strip().splitlines()[-1] == f"interrupted: {NOT_LAUNCHED}"
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns.db'}")
    (parent,) = client.search_runs(["1"], filter_string="tags.`lorasweep.kind` = 'sweep'")
    assert parent.info.status == "KILLED" and "lorasweep.resume_with" not in parent.data.tags
    # Running it again leaves one run of that name: the new one (the first is deleted, not lost).
    assert in_process(E2E, _argv(E2E, ["--name", "early"], tmp_path)) == 130
    (again,) = client.search_runs(["1"], filter_string="tags.`lorasweep.kind` = 'sweep'")
    assert again.info.run_id != parent.info.run_id and again.info.run_name == "early"
    assert client.get_run(parent.info.run_id).info.lifecycle_stage == "deleted"


def test_a_ctrl_c_while_the_settings_are_read_is_one_line(tmp_path, monkeypatch, capfd):
    import sweeps.cli

    def interrupted(*_, **__):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweeps.cli, "build_configs", interrupted)
    assert sweeps.cli.run_study("rank_e2e", ["--preset", "smoke"]) == 130
    assert capfd.readouterr().err == f"interrupted: {NOT_LAUNCHED}\n"


def test_a_missing_data_path_is_refused_before_an_offline_model_is_built(tmp_path, in_process, capfd, monkeypatch):
    """With nothing in the cache, ``--data`` naming no file is refused first: the smoke preset's
    tiny Llama is not built for a sweep that cannot run."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("LORASWEEP_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    assert in_process("sft.py", ["--preset", "smoke", "--data", str(tmp_path / "nope.csv"), "--dry-run"]) == 2
    assert capfd.readouterr().err == f"error: data.source: {tmp_path / 'nope.csv'} does not exist\n"
    assert not cache.exists() or not any(cache.rglob("config.json"))


def test_ray_failing_to_start_is_one_line_and_writes_nothing(tmp_path, offline_sources, in_process, capfd,
                                                             monkeypatch):
    """Ray's own start-up failure (its message on a machine too busy to start the raylet in
    time) ends the command with one line and exit 1, and nothing launched or written."""
    import sweeps.ray_start

    def timed_out(*_, **__):
        raise Exception("The current node timed out during startup. This could happen because some of the raylet "
                        "failed to startup or the GCS has become overloaded.")

    before = _prepare(tmp_path, offline_sources, None)
    capfd.readouterr()
    monkeypatch.setattr(sweeps.ray_start, "_init_ray", timed_out)
    monkeypatch.chdir(tmp_path)
    assert in_process(E2E, _argv(E2E, [], tmp_path)) == 1
    out, err = capfd.readouterr()
    assert err == ("error: cannot start Ray (or join the one started on this machine with ray start): The current "
                   "node timed out during startup. This could happen because some of the raylet failed to startup "
                   "or the GCS has become overloaded.; nothing was launched or written\n"), err
    assert set(tmp_path.iterdir()) == before and "Tune storage:" not in out


def test_a_bad_flush_timeout_is_refused_before_launch(tmp_path, offline_sources, in_process, capfd, monkeypatch):
    """``LORASWEEP_MLFLOW_FLUSH_S`` is read at the sweep's end; a value that is no number is
    refused with the other settings, before anything is launched or written."""
    before = _prepare(tmp_path, offline_sources, None)
    capfd.readouterr()
    monkeypatch.setenv("LORASWEEP_MLFLOW_FLUSH_S", "abc")
    monkeypatch.chdir(tmp_path)
    code = in_process(E2E, _argv(E2E, [], tmp_path))
    out, err = capfd.readouterr()
    _check_refused(code, out, err, tmp_path, before, "LORASWEEP_MLFLOW_FLUSH_S",
                   "must be a number of seconds, got 'abc'")


@pytest.mark.parametrize("uri", ["databricks", "databricks://my-profile"])
def test_a_databricks_tracking_uri_is_accepted_as_the_refusals_list_it(uri):
    """``databricks`` (the default profile's workspace) is no folder: it passes the check
    that names it among the accepted tracking stores."""
    from sweeps.tracking.store import check_tracking_uri

    check_tracking_uri(uri)  # raises UserError when refused


@pytest.mark.parametrize("where, fragment", [("afile", "is a file, not a folder"),
                                             ("afile/cache", "cannot create lorasweep's cache folder")])
def test_a_cache_root_that_cannot_be_a_folder_is_one_line(where, fragment, tmp_path, offline_sources, in_process,
                                                          capfd, monkeypatch):
    """``LORASWEEP_CACHE`` naming a file, or a path that cannot be created, is refused as one
    line naming it, before anything is read, launched or written."""
    before = _prepare(tmp_path, offline_sources, _a_file)
    capfd.readouterr()
    monkeypatch.setenv("LORASWEEP_CACHE", str(tmp_path / where))
    monkeypatch.chdir(tmp_path)
    code = in_process(E2E, _argv(E2E, ["--dry-run"], tmp_path))
    out, err = capfd.readouterr()
    _check_refused(code, out, err, tmp_path, before, "LORASWEEP_CACHE", fragment)


def test_resume_without_a_name_refuses_two_sweeps_stored_in_the_same_second(tmp_path):
    """Stores that keep whole seconds (S3, GCS) can give two sweeps one time: neither is the
    newest, so ``--resume`` without ``--name`` asks for one instead of taking either."""
    from types import SimpleNamespace

    from sweeps.config import SweepConfig
    from sweeps.storage import SWEEP_FILE, store_config, stored_config
    from trainables.errors import UserError

    storage = str(tmp_path / "sweeps")
    for name, seed in (("rank_e2e-smoke-a", 1), ("rank_e2e-smoke-b", 2)):
        store_config(SimpleNamespace(cfg=SweepConfig(study="rank_e2e", preset="smoke", storage=storage, seed=seed),
                                     name=name, storage=storage, prior_samples=0))
        os.utime(tmp_path / "sweeps" / name / SWEEP_FILE, (1_800_000_000, 1_800_000_000))
    with pytest.raises(UserError) as e:
        stored_config(SweepConfig(study="rank_e2e", storage=storage))
    assert str(e.value) == (f"resume: no newest rank_e2e sweep under {storage}: rank_e2e-smoke-a, rank_e2e-smoke-b "
                            "were each stored last in the same second; give the one to resume with --name")
    os.utime(tmp_path / "sweeps" / "rank_e2e-smoke-a" / SWEEP_FILE, (1_800_000_001, 1_800_000_001))
    assert stored_config(SweepConfig(study="rank_e2e", storage=storage)).seed == 1
