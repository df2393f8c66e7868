"""E2E trials on a Ray Train worker group (the ``train`` shape: DDP over gloo on CPU), end to end
through the study's entry point (``run_study``, what ``sweeps/rank_e2e.py`` calls) in the test
process: real local Ray (one for the module's sweeps), a real MLflow SQLite store, real training
of the tiny GPT-2 with real peft adapters (classification: ``test_ray_train_classification.py``).

The same one-trial sweep runs as a one-process trial and as a 2-worker trial, and the two are
compared: the same MLflow record (parameters, per-step and final metrics, tags, artifacts), the
same per-step train loss (the 2 ranks train on halves of the same global batches), the same
validation loss and the same beam-search outputs (evaluation and generation are sharded over the
ranks and gathered). How a worker group's trial is stopped, fails and resumes:
``test_ray_train_lifecycle.py``.

Both trials run fp32 on one thread per process, without dropout (the tiny GPT-2 is copied with its
dropout probabilities set to 0, and the adapter's dropout is 0): dropout draws different masks for
half a batch than for the whole, which no tolerance could cover.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from conftest import REPO
from sweep_runs import ONE_AT_A_TIME, run_sweep_in_process

pytestmark = pytest.mark.integration

E2E_SCRIPT = str(REPO / "sweeps" / "rank_e2e.py")
STEPS = 6
#: The smoke preset cut to 6 optimizer steps of a 16-example global batch (8 per rank on 2
#: workers), 39 validation examples (batches of 16: the ranks evaluate 2 and 1 batches; a
#: sampler that evened out the ranks would count one example twice) and 6 test inputs decoded
#: 2 at a time (the ranks decode 2 and 1 of the 3 batches).
E2E_FLAGS = ["--preset", "smoke", "--scheduler", "fifo",
             "--set", f"train.max_steps={STEPS}", "--set", "train.eval_every_steps=3",
             "--set", "train.log_every_steps=1", "--set", "train.warmup_steps=2",
             "--set", "adapter.dropout=0", "--set", "data.train_limit=256", "--set", "data.val_limit=39",
             "--set", "data.test_limit=6", "--set", "eval.num_beams=2", "--set", "eval.max_new_tokens=16",
             "--set", "eval.batch_size=2", "--set", "eval.meteor=false"]
ONE_PROCESS = ["--cpus-per-trial", "1", *ONE_AT_A_TIME]
TWO_WORKERS = ["--workers-per-trial", "2", "--cpus-per-trial", "2"]


def _without_dropout(model_dir: Path, out: Path) -> Path:
    """A copy of the tiny GPT-2 whose dropout probabilities are 0 (same weights)."""
    shutil.copytree(model_dir, out)
    config = json.loads((out / "config.json").read_text())
    config.update({k: 0.0 for k in config if k.endswith("pdrop")})
    (out / "config.json").write_text(json.dumps(config))
    return out


def _e2e_sweep(root: Path, name: str, model: Path, space: Path, *flags: str):
    uri = f"sqlite:///{root / (name + '.db')}"
    argv = [*E2E_FLAGS, "--model", str(model), "--search-space", str(space),
            "--tracking-uri", uri, "--storage", str(root / "rr"), "--name", name, *flags]
    sweep = run_sweep_in_process("rank_e2e", argv, cwd=root, uri=uri, experiment="lorasweep-rank_e2e", completed=1)
    sweep.uri = uri
    return sweep


@pytest.fixture(scope="module")
def e2e_one(tmp_path_factory, smoke_assets, one_local_ray):
    """The E2E trial run as one process; its ``root``, ``model`` and ``space`` serve the
    worker-group runs of the same trial."""
    root = tmp_path_factory.mktemp("ray-train-e2e")
    model = _without_dropout(Path(smoke_assets.model_dir), root / "gpt2-no-dropout")
    space = root / "space.yaml"
    space.write_text("scientific:\n  r: {grid: [4]}\nfixed: {alpha: 32, targets: qv, lr: 2.0e-3}\n")
    one = _e2e_sweep(root, "one-process", model, space, *ONE_PROCESS)
    one.root, one.model, one.space = root, model, space
    return one


@pytest.fixture(scope="module")
def e2e_pair(e2e_one):
    """The same E2E trial run as one process and on 2 workers (DDP): (one, two)."""
    return e2e_one, _e2e_sweep(e2e_one.root, "two-workers", e2e_one.model, e2e_one.space, *TWO_WORKERS)


@pytest.fixture(scope="module")
def e2e_fsdp(e2e_one):
    """The same E2E trial run as one process and on 2 workers under FSDP2: (one, fsdp)."""
    return e2e_one, _e2e_sweep(e2e_one.root, "fsdp", e2e_one.model, e2e_one.space, *TWO_WORKERS,
                               "--set", "train.strategy=fsdp")


def _artifacts(client, run_id: str, path: str = "") -> set[str]:
    out = set()
    for a in client.list_artifacts(run_id, path):
        out |= _artifacts(client, run_id, a.path) if a.is_dir else {a.path}
    return out


def _history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def _record(sweep) -> dict:
    (trial,) = sweep.trials
    client, run_id = sweep.client, trial.info.run_id
    return {"params": set(trial.data.params), "metrics": set(trial.data.metrics), "tags": set(trial.data.tags),
            "artifacts": _artifacts(client, run_id), "status": (trial.info.status, trial.data.tags["lorasweep.status"]),
            "steps": {k: [s for s, _ in _history(client, run_id, k)] for k in ("train_loss", "val_loss", "lr")}}


def test_a_two_worker_trial_is_recorded_as_a_one_process_trial_is(e2e_pair):
    one, two = (_record(s) for s in e2e_pair)
    assert one == two
    assert one["status"] == ("FINISHED", "completed")
    assert {"adapter/adapter_model.safetensors", "outputs/predictions.txt", "trial_config.json"} <= one["artifacts"]
    assert {"BLEU", "NIST", "ROUGE_L", "CIDEr", "val_loss", "train_loss"} <= one["metrics"]
    assert one["steps"] == {"train_loss": list(range(1, STEPS + 1)), "val_loss": [3, STEPS],
                            "lr": list(range(1, STEPS + 1))}


def test_two_workers_train_on_the_one_process_loss_step_by_step(e2e_pair):
    """The ranks take halves (8 + 8) of the one-process trial's 16-example batches and weight
    their per-token mean losses by their share of the batch's target tokens, so DDP's average
    of their gradients is the one-process gradient, and each logged loss is the one-process
    loss of that step, up to float32 rounding.

    Tolerance: the rounding of float32 sums (unit roundoff u = 2^-24 = 6e-8) made in another
    order (each rank's batch padded to its own longest example, the two halves' losses and
    gradients added by the all-reduce). torch sums a tensor pairwise, exact to about
    log2(n) u relative (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed.,
    section 4.2): about 1e-6 for the ~1,000 target tokens of a batch or the 847 logits of a
    softmax; a handful of such reductions chained through the 2-layer model: 1e-5. AdamW's
    first steps move every weight by about lr whatever the gradient's size, so a difference
    made at one step does not grow. A trial whose ranks averaged their per-token means
    unweighted (each half's mean counted alike, whatever its number of target tokens) is
    further off at most steps, though grouped batches keep the halves' lengths close."""
    assert_same_train_loss(e2e_pair, STEPS)


def assert_same_train_loss(pair, steps: int) -> None:
    """The one-process and the 2-worker trial of ``pair`` logged train losses at steps
    1..``steps``, equal step by step to 1e-5 relative, from weights that moved."""
    (one,), (two,) = (s.trials for s in pair)
    a = _history(pair[0].client, one.info.run_id, "train_loss")
    b = _history(pair[1].client, two.info.run_id, "train_loss")
    assert [s for s, _ in a] == [s for s, _ in b] == list(range(1, steps + 1))
    for (step, x), (_, y) in zip(a, b):
        assert y == pytest.approx(x, rel=1e-5), (step, x, y)
    assert a[-1][1] != a[0][1]  # the weights moved: the steps compare trained models


def test_two_workers_validate_and_generate_what_one_process_does(e2e_pair, tmp_path):
    """Validation (sharded by batch, summed over the ranks) and beam search (the ranks decode
    their share of the test batches, gathered in order): the same validation loss at every
    report and the same generated texts, hence the same BLEU."""
    assert_same_evaluation(e2e_pair, tmp_path)


def assert_same_evaluation(pair, tmp_path: Path) -> None:
    """The trials of ``pair`` logged the same validation loss (1e-6 relative) at each report,
    the same 6 generated texts and the same BLEU."""
    (one,), (two,) = (s.trials for s in pair)
    a = _history(pair[0].client, one.info.run_id, "val_loss")
    b = _history(pair[1].client, two.info.run_id, "val_loss")
    assert [s for s, _ in a] == [s for s, _ in b] == [3, STEPS]
    for (step, x), (_, y) in zip(a, b):
        assert y == pytest.approx(x, rel=1e-6), step
    texts = [(_download(sweep, run, "outputs", tmp_path) / "predictions.txt").read_text().splitlines()
             for sweep, run in zip(pair, (one, two))]
    assert len(texts[0]) == 6 and texts[0] == texts[1]
    assert two.data.metrics["BLEU"] == pytest.approx(one.data.metrics["BLEU"], abs=1e-9)
    assert math.isfinite(one.data.metrics["BLEU"])


def _download(sweep, run, path: str, tmp_path: Path) -> Path:
    import mlflow

    return Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=path,
                                                    dst_path=str(tmp_path / run.info.run_id), tracking_uri=sweep.uri))


# --------------------------------------------------------------------------- FSDP2 (train.strategy: fsdp)


def test_an_fsdp_trial_trains_and_evaluates_as_one_process_does(e2e_fsdp, tmp_path):
    """The 2 ranks shard every weight (FSDP2, gloo) and train on halves of the one-process
    trial's batches, weighted as under DDP (FSDP2 averages the gradients likewise): the same
    MLflow record, the train loss step by step within the DDP pair's tolerance (the same sums
    in another order: see test_two_workers_train_on_the_one_process_loss_step_by_step), the
    same validation losses (the rank with one validation batch runs a second, not counted,
    to keep the all-gathers in step) and the same beam-search texts (a rank that decodes
    fewer batches decodes one more, dropped; ``synced_gpus`` keeps finished beams stepping)."""
    one, fsdp = (_record(s) for s in e2e_fsdp)
    assert one == fsdp
    assert_same_train_loss(e2e_fsdp, STEPS)
    assert_same_evaluation(e2e_fsdp, tmp_path)


def test_an_fsdp_trials_adapter_loads_with_plain_peft_and_gives_the_trials_logits(e2e_fsdp, tmp_path):
    """The FSDP trial's logged ``adapter/`` (gathered from the shards on rank 0) is a plain peft
    adapter: ``PeftModel.from_pretrained`` on the unmodified base loads it, with the same files
    and config as the one-process trial's, and it computes the one-process trial's logits (its
    adapter saved from an unsharded model). Tolerance: the two adapters took 6 AdamW steps from
    gradients summed in another order (see the train-loss test), so their weights differ in the
    last float32 bits; logits of magnitude up to about 10 then differ by a few 1e-6: 1e-5
    absolute (or 1e-4 relative)."""
    import json as json_

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    (one,), (fsdp,) = (s.trials for s in e2e_fsdp)
    dirs = [_download(sweep, run, "adapter", tmp_path) for sweep, run in zip(e2e_fsdp, (one, fsdp))]
    assert sorted(p.name for p in dirs[0].iterdir()) == sorted(p.name for p in dirs[1].iterdir())
    assert json_.loads((dirs[0] / "adapter_config.json").read_text()) == \
        json_.loads((dirs[1] / "adapter_config.json").read_text())
    x = torch.arange(3, 40).reshape(1, -1)

    def logits(adapter: Path | None):
        base = AutoModelForCausalLM.from_pretrained(str(e2e_fsdp[0].model))
        model = PeftModel.from_pretrained(base, str(adapter)) if adapter else base
        with torch.no_grad():
            return model.eval()(input_ids=x).logits

    want, got = logits(dirs[0]), logits(dirs[1])
    assert (logits(None) - want).abs().max() > 1e-3  # the adapter changed the model
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
