"""The shared training loop on the real tiny GPT-2 with real peft adapters (no Ray here:
``LocalSession`` is the shipped in-process session)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import DiesAfterFirstReport, Interrupted

from trainables.checkpointing import ADAPTER_DIR, CONFIG_FILE, STATE_FILE
from trainables.config import TrainConfig
from trainables.loop import run_loop
from trainables.optim import plan_steps
from trainables.session import LocalSession
from trainables.tasks.base import evaluate_loss
from trainables.tasks.registry import get_task


def test_plan_steps_arithmetic():
    # The paper's E2E run: 42,061 examples, batch 8 -> 5,258 steps/epoch, 26,290 in 5 epochs.
    plan = plan_steps(TrainConfig(), 42_061)
    assert (plan.steps_per_epoch, plan.total_steps, plan.warmup_steps) == (5_258, 26_290, 500)
    assert plan.eval_steps == (5_258, 10_516, 15_774, 21_032, 26_290)
    assert plan.epoch_at(plan.total_steps) == 5.0
    every = plan_steps(TrainConfig(batch_size=10, epochs=2, eval_every_steps=4), 100)
    assert every.steps_per_epoch == 10 and every.eval_steps == (4, 8, 12, 16, 20)
    # train.batch_size is the global batch: 10 per rank, 50 examples per rank
    ddp = plan_steps(TrainConfig(batch_size=20, grad_accum=2, epochs=1, warmup_ratio=0.1), 100, world_size=2)
    assert (ddp.micro_batches_per_epoch, ddp.steps_per_epoch, ddp.warmup_steps) == (5, 3, 0)
    capped = plan_steps(TrainConfig(batch_size=10, max_steps=7), 100)
    assert capped.total_steps == 7 and capped.eval_steps == (7,)


@pytest.fixture
def run(make_trial, torch_one_thread, tmp_path):
    def _run(**overrides):
        cfg = make_trial(**overrides)
        session = LocalSession(tmp_path / f"ckpt-{len(list(tmp_path.iterdir()))}")
        run_loop(cfg, session)
        return cfg, session
    return _run


def test_reports_each_epoch_with_losses_history_and_costs(run):
    cfg, s = run(train={"epochs": 2}, eval={"generate": False})
    assert [r["epoch"] for r in s.reports] == [1.0, 2.0]
    assert [r["is_final"] for r in s.reports] == [False, True]
    first, last = s.reports
    assert last["val_loss"] < first["val_loss"]  # it learns
    assert all(math.isfinite(r[k]) for r in s.reports for k in ("val_loss", "train_loss", "lr"))
    assert first["history"]["step"] == [4, 8, 12, 16] and len(first["history"]["train_loss"]) == 4
    assert last["lr"] == 0.0  # linear schedule decays to zero at the last step
    assert first["trainable_params"] == 2 * 4 * (64 + 64) * 2  # qv, r=4, d=64, 2 layers
    assert first["samples_per_s"] > 0 and first["peak_mem_mb"] > 0 and first["peak_mem_kind"] == "process_rss"


def test_checkpoints_hold_the_adapter_only_and_reproduce_the_val_loss(run, smoke_assets):
    cfg, s = run(eval={"generate": False})
    ckpt = s.checkpoints[-1]
    assert (ckpt / STATE_FILE).is_file() and json.loads((ckpt / CONFIG_FILE).read_text())["seed"] == cfg.seed
    files = {p.name for p in (ckpt / ADAPTER_DIR).iterdir()}
    assert "adapter_model.safetensors" in files and "model.safetensors" not in files
    size = (ckpt / ADAPTER_DIR / "adapter_model.safetensors").stat().st_size
    assert size < 64_000  # 2,048 float32 adapter weights, not the 170k-parameter base

    from peft import PeftModel
    from torch.utils.data import DataLoader

    from trainables.checkpointing import TRIAL_ADAPTER_DIR
    from trainables.session import Session

    # The qv views' own layout is kept for resuming; adapter/ is plain peft on the unmodified base.
    assert (ckpt / TRIAL_ADAPTER_DIR / "adapter_model.safetensors").is_file()
    task = get_task("e2e")
    base, tokenizer = task.load_model(cfg)
    model = PeftModel.from_pretrained(base, str(ckpt / ADAPTER_DIR))
    data = task.load_prepared(task.prepare(cfg, progress=False), cfg)
    loader = DataLoader(data.val, batch_size=cfg.train.eval_batch_size, collate_fn=task.collate(tokenizer))
    val = evaluate_loss(task, model, loader, torch.device("cpu"), Session(), "fp32")
    assert val == pytest.approx(s.reports[-1]["val_loss"], rel=1e-6)


def test_a_checkpoint_state_that_would_run_code_is_refused_unrun(run, tmp_path):
    """The optimizer state comes from Tune storage (a shared path, a bucket): restoring reads
    tensors and plain containers only, so a state file naming a callable is refused before
    anything runs."""
    import pickle
    import shutil

    from trainables.checkpointing import restore_checkpoint
    from trainables.optim import build_optimizer, build_scheduler

    cfg, s = run(eval={"generate": False})
    ckpt = tmp_path / "tampered"
    shutil.copytree(s.checkpoints[-1], ckpt)
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (shutil.copyfile, (str(ckpt / CONFIG_FILE), str(marker)))

    torch.save({"step": 1, "optimizer": Payload()}, ckpt / STATE_FILE)
    from trainables.adapters import build_adapter_model
    from trainables.optim import plan_steps

    task = get_task(cfg.task)
    model = build_adapter_model(task.load_model(cfg)[0], cfg.adapter, task_type=task.peft_task_type)
    optimizer = build_optimizer(model, cfg.train, cfg.adapter)
    scheduler = build_scheduler(optimizer, cfg.train, plan_steps(cfg.train, 256))
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        restore_checkpoint(ckpt, model=model, optimizer=optimizer, scheduler=scheduler)
    assert not marker.exists()


def test_same_config_and_seed_give_the_same_metrics(run):
    _, a = run(eval={"generate": False})
    _, b = run(eval={"generate": False})
    keys = ("val_loss", "train_loss", "trainable_params")
    assert [tuple(r[k] for k in keys) for r in a.reports] == [tuple(r[k] for k in keys) for r in b.reports]
    assert a.reports[-1]["history"]["train_loss"] == b.reports[-1]["history"]["train_loss"]


@pytest.mark.parametrize("batching", ["random", "grouped"])
def test_restoring_from_a_checkpoint_finishes_like_an_uninterrupted_trial(batching, make_trial, torch_one_thread,
                                                                          tmp_path):
    cfg = make_trial(train={"epochs": 2, "batching": batching}, eval={"generate": False})
    whole = LocalSession(tmp_path / "whole")
    run_loop(cfg, whole)

    dying = DiesAfterFirstReport(tmp_path / "dying")
    with pytest.raises(Interrupted):
        run_loop(cfg, dying)
    resumed = LocalSession(tmp_path / "resumed", restore_from=dying.checkpoints[0])
    run_loop(cfg, resumed)
    assert [r["epoch"] for r in resumed.reports] == [2.0]
    assert resumed.reports[-1]["val_loss"] == pytest.approx(whole.reports[-1]["val_loss"], rel=1e-6)
    assert resumed.reports[-1]["history"]["train_loss"] == pytest.approx(
        whole.reports[-1]["history"]["train_loss"], rel=1e-6)


def test_the_logged_train_loss_is_the_mean_over_the_micro_batches_whatever_the_accumulation(make_trial, smoke_assets,
                                                                                            torch_one_thread, tmp_path):
    """With no dropout and the first step's learning rate 0 (linear warm-up), one step
    accumulating two micro-batches logs the mean of the losses that two steps of one
    micro-batch each log on the same batches (the second at unchanged weights)."""
    import shutil

    model = shutil.copytree(smoke_assets.model_dir, tmp_path / "no-dropout")
    config = json.loads((model / "config.json").read_text())
    config.update({k: 0.0 for k in config if k.endswith("pdrop")})
    (model / "config.json").write_text(json.dumps(config))
    losses = []
    for steps, accumulate in ((2, 1), (1, 2)):
        cfg = make_trial(model={"name_or_path": str(model)}, adapter={"dropout": 0.0}, eval={"generate": False},
                         train={"warmup_steps": 4, "log_every_steps": 1, "eval_every_steps": 1, "max_steps": steps,
                                "grad_accum": accumulate})
        session = LocalSession(tmp_path / f"ga{accumulate}")
        run_loop(cfg, session)
        losses.append([loss for r in session.reports for loss in r["history"]["train_loss"]])
    one, two = losses
    assert len(one) == 2 and two == [pytest.approx((one[0] + one[1]) / 2, rel=1e-6)]


def test_a_nan_loss_fails_the_trial_with_its_step(make_trial, torch_one_thread, tmp_path):
    cfg = make_trial(train={"lr": 1e6, "epochs": 1, "log_every_steps": 1}, eval={"generate": False})
    with pytest.raises(FloatingPointError, match=r"train loss is nan at step \d+"):
        run_loop(cfg, LocalSession(tmp_path))


def test_final_report_carries_generation_metrics_and_outputs(run):
    cfg, s = run()
    last = s.reports[-1]
    for k in ("BLEU", "NIST", "ROUGE_L", "CIDEr"):
        assert isinstance(last[k], float) and math.isfinite(last[k]), k
    assert last["METEOR"] is None  # eval.meteor = False in these tests: skipped, never invented
    outputs = s.checkpoints[-1] / "outputs"
    preds = (outputs / "predictions.txt").read_text().splitlines()
    assert len(preds) == cfg.data.test_limit
    assert (outputs / "references.txt").read_text().count("\n\n") == cfg.data.test_limit - 1


def test_adamw_is_fused_where_torch_has_the_kernel_and_same_steps_either_way():
    from trainables.optim import build_optimizer

    def step(fused: bool | None) -> tuple[object, torch.Tensor]:
        torch.manual_seed(0)
        model = torch.nn.Linear(8, 4)
        opt = build_optimizer(model, TrainConfig(lr=1e-2, fused_optimizer=fused))
        model(torch.randn(16, 8)).pow(2).mean().backward()
        opt.step()
        return opt, model.weight.detach().clone()

    auto, w_auto = step(None)
    off, w_off = step(False)
    assert auto.param_groups[0]["fused"] is True  # CPU: torch's fused AdamW kernel
    assert not off.param_groups[0]["fused"]
    torch.testing.assert_close(w_auto, w_off)  # the same update, computed in one kernel


def test_a_scratch_directory_of_an_ended_process_is_removed_by_the_next(tmp_path, monkeypatch):
    """A trial killed while it reports leaves its checkpoint scratch directory; the next one
    made on that host removes it, and only directories of ended processes of this host."""
    import os
    import socket
    import subprocess
    import sys

    from trainables.session import scratch_dir

    ended = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                               capture_output=True, text=True, check=True).stdout)
    host = socket.gethostname()
    orphan = tmp_path / f"lorasweep-ckpt-{ended}@{host}@x1"
    (orphan / "adapter").mkdir(parents=True)
    keep = [tmp_path / f"lorasweep-ckpt-{os.getppid()}@{host}@x2",  # its process still runs
            tmp_path / f"lorasweep-ckpt-{ended}@{host}.elsewhere@x3",  # another host's
            tmp_path / f"other-{ended}@{host}@x4"]  # not a scratch directory
    for d in keep:
        d.mkdir()
    monkeypatch.setenv("LORASWEEP_TMP", str(tmp_path))
    with scratch_dir("lorasweep-ckpt-") as d:
        assert d.parent == tmp_path and d.name.startswith(f"lorasweep-ckpt-{os.getpid()}@{host}@")
        assert sorted(tmp_path.iterdir()) == sorted([d, *keep])
    assert sorted(tmp_path.iterdir()) == sorted(keep)


def test_a_checkpoint_keeps_each_ranks_own_gpu_generator_when_it_trains_on_a_gpu(run, tmp_path):
    """Each rank saves its CPU generator's state and, when it trains on a GPU, that GPU's
    generator state (not its neighbours'); a restored rank takes back its own, onto the GPU it
    trains on then. A trial on the CPU saves no GPU state and does not start CUDA. This machine
    may have no GPU: the GPU states of two ranks are written here by hand (a CUDA generator's
    state is its seed and offset, 8 bytes each) and read back; setting them needs CUDA."""
    from trainables.adapters import build_adapter_model
    from trainables.checkpointing import restore_checkpoint, rng_state, save_checkpoint, saved_rng_state
    from trainables.optim import build_optimizer, build_scheduler

    assert set(rng_state()) == set(rng_state(torch.device("cpu"))) == {"cpu"}
    if torch.cuda.is_available():
        assert torch.equal(rng_state(torch.device("cuda", 0))["cuda"], torch.cuda.get_rng_state(0))
    cfg, s = run(eval={"generate": False})
    saved = torch.load(s.checkpoints[-1] / STATE_FILE, weights_only=True)
    assert "cuda_rng_ranks" not in saved  # a CPU trial

    def philox(seed: int, offset: int) -> torch.Tensor:
        return torch.tensor(list(seed.to_bytes(8, "little") + offset.to_bytes(8, "little")), dtype=torch.uint8)

    ranks = [{"cpu": torch.Generator().manual_seed(10 + r).get_state(), "cuda": philox(100 + r, 4 * r)}
             for r in range(2)]
    task = get_task(cfg.task)
    model = build_adapter_model(task.load_model(cfg)[0], cfg.adapter, task_type=task.peft_task_type)
    optimizer = build_optimizer(model, cfg.train, cfg.adapter)
    scheduler = build_scheduler(optimizer, cfg.train, plan_steps(cfg.train, 256))
    save_checkpoint(tmp_path / "ckpt", model=model, optimizer=optimizer, scheduler=scheduler, step=3, cfg=cfg,
                    rng_states=ranks)
    state = torch.load(tmp_path / "ckpt" / STATE_FILE, weights_only=True)
    for r in range(2):
        own = saved_rng_state(state, r)
        assert set(own) == {"cpu", "cuda"} and torch.equal(own["cpu"], ranks[r]["cpu"])
        assert own["cuda"].tolist() == ranks[r]["cuda"].tolist()
    assert set(saved_rng_state(state, 2)) == {"cpu"}  # a rank the checkpoint lacks: rank 0's CPU state
    # Rank 1 restored on the CPU: its CPU generator; its GPU state is left alone.
    restore_checkpoint(tmp_path / "ckpt", model=model, optimizer=optimizer, scheduler=scheduler, rank=1,
                       device=torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), ranks[1]["cpu"])
    if torch.cuda.is_available():  # onto the GPU it trains on now
        restore_checkpoint(tmp_path / "ckpt", model=model, optimizer=optimizer, scheduler=scheduler, rank=1,
                           device=torch.device("cuda", 0))
        assert torch.cuda.get_rng_state(0).tolist() == ranks[1]["cuda"].tolist()
