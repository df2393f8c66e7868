"""The one training loop every task shares.

``run_loop(cfg, session)`` fine-tunes ``cfg.task``'s model with ``cfg.adapter`` and reports to
``session`` at every evaluation point (each epoch, or every ``train.eval_every_steps``
optimizer steps). Each report carries the validation loss (the ASHA metric), the train loss
and learning rate recorded since the previous report (for MLflow, in one batch), throughput and
memory, and an adapter-only checkpoint. The last report of a full trial also carries the task's
final metrics (E2E: BLEU, NIST, METEOR, ROUGE-L, CIDEr) and its generated outputs.

Task-specific work (data, losses, decoding) lives in the task module; the loop never asks
which task it runs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainables.config import AdapterConfig, TrainConfig, TrialConfig

if TYPE_CHECKING:
    import torch

    from trainables.session import Session

STATE_FILE = "trainer_state.pt"
ADAPTER_DIR = "adapter"
OUTPUTS_DIR = "outputs"
CONFIG_FILE = "trial_config.json"


@dataclass(frozen=True)
class StepPlan:
    """How many optimizer steps a trial takes and where it evaluates (pure arithmetic, so the
    driver can size ASHA's rungs from it before any trial starts)."""

    micro_batches_per_epoch: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    eval_steps: tuple[int, ...]

    def epoch_at(self, step: int) -> float:
        return step / self.steps_per_epoch


def plan_steps(train: TrainConfig, n_train: int, *, world_size: int = 1) -> StepPlan:
    """E.g. E2E: 42,061 examples / batch 8 = 5,258 steps per epoch; 5 epochs = 26,290 steps
    (the paper's checkpoint is ``model.26289.pt``), with 500 warmup steps."""
    per_worker = math.ceil(n_train / world_size)
    micro = max(1, math.ceil(per_worker / train.batch_size))
    per_epoch = max(1, math.ceil(micro / train.grad_accum))
    total = train.max_steps or max(1, math.ceil(train.epochs * per_epoch))
    warmup = (round(train.warmup_ratio * total) if train.warmup_ratio is not None
              else train.warmup_steps)
    every = train.eval_every_steps or per_epoch
    evals = tuple(range(every, total, every)) + (total,)
    return StepPlan(micro, per_epoch, total, warmup, evals)


def seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class MemoryTracker:
    """Peak accelerator memory, or on CPU the peak resident set size sampled at log points
    (the process's own high-water mark would include earlier trials of a reused actor)."""

    def __init__(self, device: torch.device):
        import torch

        self.device = device
        self.cuda = device.type == "cuda"
        self.kind = "cuda_max_allocated" if self.cuda else "process_rss"
        self.peak = 0
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(device)
        else:
            _release_freed_memory()
        self.sample()

    def sample(self) -> None:
        if self.cuda:
            return
        import psutil

        self.peak = max(self.peak, psutil.Process().memory_info().rss)

    def peak_mb(self) -> float:
        import torch

        if self.cuda:
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        self.sample()
        return self.peak / 2**20


_EARLIER_TRIAL_IN_PROCESS = False


def _release_freed_memory() -> None:
    """Hand memory freed by earlier trials of a reused actor back to the OS, so that this
    trial's resident-set peak is its own: glibc keeps freed heap pages (and raises its mmap
    threshold after large frees), and without this a method compared after full fine-tuning in
    the same actor showed a few hundred MB of the earlier trial's memory. A process's first
    trial has nothing to release, and skips the full collection (~0.3 s over the objects
    torch, transformers and peft create at import)."""
    import ctypes
    import gc

    global _EARLIER_TRIAL_IN_PROCESS
    if not _EARLIER_TRIAL_IN_PROCESS:
        _EARLIER_TRIAL_IN_PROCESS = True
        return
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): the RSS includes that memory
        pass


def _autocast(precision: str, device: torch.device):
    import contextlib

    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def build_optimizer(model: Any, train: TrainConfig, adapter: AdapterConfig | None = None) -> Any:
    """AdamW (torch's, or bitsandbytes' paged AdamW: ``train.optimizer``) over the trainable
    parameters, in the parameter groups of the adapter's method (LoRA+: B at
    ``loraplus_lr_ratio`` x A's lr; LoRA-FA: peft's LoRA-FA optimizer)."""
    import torch

    from trainables.methods import build_optimizer as method_optimizer
    from trainables.quantization import optimizer_class

    cls = optimizer_class(train)
    devices = {p.device.type for p in model.parameters() if p.requires_grad}
    fused = devices <= {"cpu", "cuda"} if train.fused_optimizer is None else train.fused_optimizer
    if cls is torch.optim.AdamW and fused:
        class FusedAdamW(torch.optim.AdamW):  # a class, not a partial: peft's LoRA+ reads __name__
            def __init__(self, params: Any, **kwargs: Any):
                super().__init__(params, fused=True, **kwargs)

        cls = FusedAdamW
    return method_optimizer(unwrap(model), adapter or AdapterConfig(), train, optimizer_cls=cls)


def build_scheduler(optimizer: Any, train: TrainConfig, plan: StepPlan) -> Any:
    from transformers import get_scheduler

    name = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}[train.scheduler]
    return get_scheduler(name, optimizer, num_warmup_steps=plan.warmup_steps,
                         num_training_steps=plan.total_steps)


def unwrap(model: Any) -> Any:
    """The peft model inside a DDP wrapper."""
    return getattr(model, "module", model)


def save_checkpoint(out: Path, *, model: Any, optimizer: Any, scheduler: Any, step: int,
                    cfg: TrialConfig, final: bool = False) -> None:
    """Adapter weights (peft ``save_pretrained``) + optimizer/scheduler state for resuming;
    ``final``: the checkpoint of the trial's final report (a trial restored from it is done)."""
    import json

    import torch

    from trainables.adapters import save_adapter
    from trainables.schema import to_dict

    save_adapter(unwrap(model), out / ADAPTER_DIR,
                 meta={"task": cfg.task, "base_model": cfg.model.name_or_path,
                       "method": cfg.adapter.method, "targets": cfg.adapter.targets, "step": step})
    torch.save({"step": step, "final": final, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state()},
               out / STATE_FILE)
    (out / CONFIG_FILE).write_text(json.dumps(to_dict(cfg), indent=2, sort_keys=True))


def restore_checkpoint(src: Path, *, model: Any, optimizer: Any, scheduler: Any) -> tuple[int, bool]:
    """Load what :func:`save_checkpoint` wrote; returns the optimizer step to resume after and
    whether it was the trial's final checkpoint.

    The state file comes from Tune storage (a shared path or a bucket that others may write),
    so it is read as tensors and plain containers only (``weights_only``): a file holding
    anything else is refused instead of running code."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    adapter_file = src / ADAPTER_DIR / "adapter_model.safetensors"
    if adapter_file.is_file():
        set_peft_model_state_dict(unwrap(model), load_file(str(adapter_file)))
    else:  # method 'full': save_pretrained wrote the whole model
        unwrap(model).load_state_dict(load_file(str(src / ADAPTER_DIR / "model.safetensors")), strict=False)
    state = torch.load(src / STATE_FILE, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"]), bool(state.get("final", False))


class EarlyStopping:
    """Tracks the task's metric over reports; keeps a copy of the weights at the best one.

    The copy holds what training changes: the parameters that require grad (the adapter and
    any trained head, or every parameter for ``method: full``) and the buffers (BatchNorm
    running statistics), on the device they live on. ``patience`` None never stops the trial
    (``train.keep_best``: only the best weights are kept).
    """

    def __init__(self, patience: int | None, metric: str, mode: str):
        self.patience, self.metric, self.mode = patience, metric, mode
        self.best: float | None = None
        self.best_step = 0
        self.best_epoch = 0.0
        self.bad = 0
        self._weights: dict[str, Any] = {}

    def update(self, value: float, *, model: Any, step: int, epoch: float) -> bool:
        """Record a report's metric; True when the trial should stop (no improvement for
        ``patience`` reports in a row)."""
        better = self.best is None or (value > self.best if self.mode == "max" else value < self.best)
        if better and math.isfinite(value):
            self.best, self.best_step, self.best_epoch, self.bad = value, step, epoch, 0
            m = unwrap(model)
            self._weights = {**{k: p.detach().clone() for k, p in m.named_parameters() if p.requires_grad},
                             **{f"buffer:{k}": b.detach().clone() for k, b in m.named_buffers()}}
            return False
        self.bad += 1
        return self.patience is not None and self.bad >= self.patience

    def restore(self, model: Any) -> None:
        import torch

        m = unwrap(model)
        live = {**dict(m.named_parameters()), **{f"buffer:{k}": b for k, b in m.named_buffers()}}
        with torch.no_grad():
            for k, v in self._weights.items():
                live[k].copy_(v)


def _final_on_best(stopper: EarlyStopping, val: dict[str, Any], *, model: Any, step: int, epoch: float,
                   revalidate: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The last report's validation metrics and what the final report adds, once the last
    report has been counted: the best report's weights restored (and validated again) when
    the last report was not the best. ``best_epoch``/``best_step`` say which report's weights
    the final metrics come from."""
    value = val.get(stopper.metric)
    if value is not None:
        stopper.update(float(value), model=model, step=step, epoch=epoch)
    if stopper.best is None:
        return val, {}
    extra: dict[str, Any] = {"best_epoch": stopper.best_epoch, "best_step": stopper.best_step}
    if stopper.best_step != step:
        stopper.restore(model)
        val = revalidate()
        reason = "early stopping" if stopper.patience is not None else "keep_best"
        extra["final_note"] = (f"{reason}: the last report's {stopper.metric} was not the best; weights "
                               f"of the best report (epoch {stopper.best_epoch:g}) restored for the final "
                               "evaluation")
    return val, extra


def _batches_for_epoch(loader: Any, epoch: int, skip: int):
    """(index, batch) of one epoch; the first ``skip`` micro-batches (already trained on
    before a restore) are passed over."""
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):  # DistributedSampler under DDP
        sampler.set_epoch(epoch)
    for i, batch in enumerate(loader):
        if i >= skip:
            yield i, batch


def _to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def evaluate_loss(task: Any, model: Any, loader: Any, device: torch.device, session: Session,
                  precision: str) -> float:
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad(), _autocast(precision, device):
        for batch in loader:
            s, n = task.eval_loss(model, _to(batch, device))
            total += float(s)
            count += n
    model.train()
    total, count = session.all_reduce_sum([total, float(count)])
    return total / max(count, 1.0)


def run_loop(cfg: TrialConfig, session: Session, *, prepared: Path | None = None,
             adapters: dict[str, str] | None = None) -> dict[str, Any]:
    """Train one trial to the end (or until the scheduler stops it); returns the last report.
    ``adapters`` maps ``adapter.init_from`` values to the local directories the driver
    resolved (a trial resolves a value itself when it is missing)."""
    import torch

    from trainables.adapters import build_adapter_model, count_parameters
    from trainables.batching import batch_counts, batching_mode, epoch_seed, train_batches, val_batches
    from trainables.session import scratch_dir
    from trainables.tasks.registry import get_task

    if cfg.seed is None:
        raise ValueError("run_loop needs a resolved seed (the runner derives one per trial)")
    t0 = time.perf_counter()
    task = get_task(cfg.task)
    seed_everything(cfg.seed)

    t_data = time.perf_counter()
    data = task.load_prepared(prepared or task.prepare(cfg, progress=False), cfg)
    data_s = time.perf_counter() - t_data

    model, tokenizer = task.load_model(cfg)
    mode = batching_mode(task, cfg, model)
    model = build_adapter_model(model, cfg.adapter, task_type=task.peft_task_type)
    if cfg.adapter.init_from:
        from trainables.adapters import warm_start

        source = (adapters or {}).get(cfg.adapter.init_from)
        if source is None or not Path(source).is_dir():
            from trainables.mlflow_names import default_tracking_uri
            from trainables.warmstart import resolve_init_from

            source = resolve_init_from(cfg.adapter.init_from, default_tracking_uri())
        warm_start(model, source)
    params = count_parameters(model)
    device = session.device
    model = session.prepare_model(model)
    setup_s = time.perf_counter() - t0

    generator = torch.Generator()  # reseeded per epoch: the data order depends only on (seed, epoch)
    train_loader = train_batches(task, data, cfg, tokenizer, mode=mode, session=session,
                                 generator=generator)
    val_loader = val_batches(task, data, cfg, tokenizer, mode=mode, session=session)

    plan = plan_steps(cfg.train, len(data.train), world_size=session.world_size)
    optimizer = build_optimizer(model, cfg.train, cfg.adapter)
    scheduler = build_scheduler(optimizer, cfg.train, plan)
    start_step, done = 0, False
    with session.restored_checkpoint() as ckpt:
        if ckpt is not None:
            start_step, done = restore_checkpoint(ckpt, model=model, optimizer=optimizer, scheduler=scheduler)
    if done:
        # Restored from its final checkpoint (the driver stopped before Tune recorded the end):
        # the trial is over, and its last report is the one Tune restored with it. (A trial
        # that stopped early must not train on past the step it stopped at.)
        return {}

    memory = MemoryTracker(device)
    stopper = (EarlyStopping(cfg.train.early_stopping_patience, task.metric.name, task.metric.mode)
               if cfg.train.early_stopping_patience or cfg.train.keep_best else None)
    eval_steps = set(plan.eval_steps)
    step = start_step
    history: dict[str, list[float]] = {"step": [], "train_loss": [], "lr": []}
    since_report: list[float] = []
    running, running_n = torch.zeros((), device=device), 0
    samples = tokens = 0
    train_s = 0.0
    last: dict[str, Any] = {}

    def report(final: bool, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        nonlocal history, since_report
        val = task.validate(model, val_loader, device=device, session=session,
                            precision=cfg.train.precision)
        if final and stopper is not None and extra is None:
            # A trial that trains to its last step with keep_best or early stopping on is
            # evaluated, like one stopped early, on the weights of its best report (model
            # selection on the validation set), not on whatever the last step left.
            val, extra = _final_on_best(stopper, val, model=model, step=step,
                                        epoch=plan.epoch_at(step),
                                        revalidate=lambda: task.validate(
                                            model, val_loader, device=device, session=session,
                                            precision=cfg.train.precision))
        metrics: dict[str, Any] = {**(extra or {}),
            "epoch": plan.epoch_at(step), "step": step, **val,
            "train_loss": sum(since_report) / len(since_report) if since_report else float("nan"),
            "lr": scheduler.get_last_lr()[0],
            "trainable_params": params.trainable, "total_params": params.total,
            "trainable_pct": params.percent, "seed": cfg.seed,
            "samples_per_s": samples * session.world_size / train_s if train_s else 0.0,
            "tokens_per_s": (None if samples and not tokens  # image batches have no tokens
                             else tokens * session.world_size / train_s if train_s else 0.0),
            "peak_mem_mb": memory.peak_mb(), "peak_mem_kind": memory.kind,
            "setup_s": setup_s, "data_s": data_s, "wall_s": time.perf_counter() - t0,
            "history": history, "is_final": final, "trial_params": data.params,
        }
        with scratch_dir("lorasweep-ckpt-") as out:
            if final and cfg.eval.generate and session.is_chief:
                t_gen = time.perf_counter()
                scores = task.final_eval(unwrap(model), tokenizer, data, cfg, device=device,
                                         out_dir=out / OUTPUTS_DIR)
                metrics.update(scores)
                metrics["generate_s"] = time.perf_counter() - t_gen
                model.train()
            if session.is_chief:
                save_checkpoint(out, model=model, optimizer=optimizer, scheduler=scheduler,
                                step=step, cfg=cfg, final=final)
            session.barrier()
            metrics["wall_s"] = time.perf_counter() - t0
            session.report(metrics, out if session.is_chief else None)
        history = {"step": [], "train_loss": [], "lr": []}
        since_report = []
        return metrics

    model.train()
    first_epoch = start_step // plan.steps_per_epoch
    n_epochs = math.ceil(plan.total_steps / plan.steps_per_epoch)
    for epoch in range(first_epoch, n_epochs):
        generator.manual_seed(epoch_seed(cfg.seed, epoch))
        skip = (start_step - epoch * plan.steps_per_epoch) * cfg.train.grad_accum if epoch == first_epoch else 0
        t_step = time.perf_counter()
        micro = 0
        for i, batch in _batches_for_epoch(train_loader, epoch, max(skip, 0)):
            batch = _to(batch, device)
            with _autocast(cfg.train.precision, device):
                loss = task.train_loss(model, batch, cfg) / cfg.train.grad_accum
            loss.backward()
            running += loss.detach()
            micro += 1
            n_examples, n_tokens = batch_counts(batch)
            samples += n_examples
            tokens += n_tokens
            last_micro = i == plan.micro_batches_per_epoch - 1
            if micro % cfg.train.grad_accum and not last_micro:
                continue
            if cfg.train.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad],
                                               cfg.train.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            running_n += 1
            if step % cfg.train.log_every_steps == 0 or step in eval_steps:
                value = float(running) * cfg.train.grad_accum / running_n
                if not math.isfinite(value):
                    raise FloatingPointError(f"train loss is {value} at step {step} "
                                             f"(lr {scheduler.get_last_lr()[0]:.3g})")
                history["step"].append(step)
                history["train_loss"].append(value)
                history["lr"].append(scheduler.get_last_lr()[0])
                since_report.append(value)
                running, running_n = torch.zeros((), device=device), 0
                memory.sample()
            if step in eval_steps:
                train_s += time.perf_counter() - t_step
                last = report(final=step == plan.total_steps)
                t_step = time.perf_counter()
                if stopper is not None and not last.get("is_final"):
                    value = last.get(task.metric.name)
                    if value is not None and stopper.update(float(value), model=model, step=step,
                                                            epoch=plan.epoch_at(step)):
                        # The trial ends here (its function returns; Tune and ASHA count it as
                        # finished): the best weights come back and the final evaluation runs
                        # on them, as the last report.
                        stopper.restore(model)
                        return report(final=True, extra={
                            "stopped_early_at": plan.epoch_at(step), "best_epoch": stopper.best_epoch,
                            "best_step": stopper.best_step,
                            "final_note": f"early stopping: no {task.metric.name} improvement in "
                                          f"{stopper.patience} report(s); weights of the best report "
                                          "restored for the final evaluation"})
            if step >= plan.total_steps:
                return last
        train_s += time.perf_counter() - t_step
    return last
