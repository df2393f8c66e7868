"""The optimizer and the learning-rate schedule of a trial, and its step arithmetic.

:func:`build_optimizer` is AdamW (torch's, fused where torch has the kernel, or bitsandbytes'
paged AdamW: ``train.optimizer``) over the trainable parameters, in the parameter groups of
the adapter's method (LoRA+: B at ``loraplus_lr_ratio`` x A's learning rate; LoRA-FA: peft's
LoRA-FA optimizer). :func:`plan_steps` is pure arithmetic, so the driver sizes ASHA's rungs
from it before any trial starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainables.config import AdapterConfig, TrainConfig


@dataclass(frozen=True)
class StepPlan:
    """How many optimizer steps a trial takes and where it evaluates."""

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
    micro = max(1, math.ceil(per_worker / rank_batch_size(train.batch_size, world_size)))
    per_epoch = max(1, math.ceil(micro / train.grad_accum))
    total = train.max_steps or max(1, math.ceil(train.epochs * per_epoch))
    warmup = (round(train.warmup_ratio * total) if train.warmup_ratio is not None
              else train.warmup_steps)
    every = train.eval_every_steps or per_epoch
    evals = tuple(range(every, total, every)) + (total,)
    return StepPlan(micro, per_epoch, total, warmup, evals)


def rank_batch_size(batch_size: int, world_size: int) -> int:
    """Examples per batch on each of ``world_size`` ranks: ``train.batch_size`` is the global
    batch (DDP averages the ranks' gradients), so a study's batch size means the same whatever
    ``resources.workers_per_trial``; a UserError when the ranks cannot share it evenly."""
    if batch_size % world_size:
        from trainables.errors import UserError

        raise UserError("train.batch_size", f"{batch_size} examples per batch do not split evenly over "
                                            f"{world_size} workers (resources.workers_per_trial); use a "
                                            f"multiple of {world_size}")
    return batch_size // world_size


def optimizer_class(train: TrainConfig) -> Any:
    """The optimizer class ``train.optimizer`` names (constructed like torch's AdamW)."""
    import torch

    if train.optimizer == "adamw":
        return torch.optim.AdamW
    from trainables.quantization import require_bitsandbytes

    bnb = require_bitsandbytes("train.optimizer")
    return {"paged_adamw_32bit": bnb.optim.PagedAdamW32bit,
            "paged_adamw_8bit": bnb.optim.PagedAdamW8bit}[train.optimizer]


def _optimizer_class(train: TrainConfig, model: Any) -> Any:
    """``train.optimizer``'s class; torch's AdamW fused where torch has the kernel (CPU, CUDA)
    unless ``train.fused_optimizer`` says otherwise."""
    import torch

    cls = optimizer_class(train)
    devices = {p.device.type for p in model.parameters() if p.requires_grad}
    fused = devices <= {"cpu", "cuda"} if train.fused_optimizer is None else train.fused_optimizer
    if cls is torch.optim.AdamW and fused:
        class FusedAdamW(torch.optim.AdamW):  # a class, not a partial: peft's LoRA+ reads __name__
            def __init__(self, params: Any, **kwargs: Any):
                super().__init__(params, fused=True, **kwargs)

        cls = FusedAdamW
    return cls


def build_optimizer(model: Any, train: TrainConfig, adapter: AdapterConfig | None = None) -> Any:
    """The optimizer of ``adapter.method`` over ``model``'s trainable parameters (``model``: the
    peft model, or a DDP wrapper around it)."""
    from trainables.config import AdapterConfig
    from trainables.devices import unwrap
    from trainables.methods import get_method

    model = unwrap(model)
    cfg = adapter or AdapterConfig()
    method = get_method(cfg.method)
    optimizer_cls = _optimizer_class(train, model)
    kwargs = {"betas": (train.adam_beta1, train.adam_beta2), "eps": train.adam_eps}
    if method.optimizer == "loraplus":
        from peft.optimizers import create_loraplus_optimizer

        # Groups: A (and other matrices, e.g. the head) at lr; B and 1-D parameters at
        # lr x ratio; LoRA on embeddings at peft's loraplus_lr_embedding.
        return create_loraplus_optimizer(model, optimizer_cls, lr=train.lr,
                                         loraplus_lr_ratio=cfg.loraplus_lr_ratio,
                                         loraplus_weight_decay=train.weight_decay, **kwargs)
    if method.optimizer == "lorafa":
        from peft.optimizers import create_lorafa_optimizer

        optimizer = create_lorafa_optimizer(model, r=cfg.r, lora_alpha=cfg.lora_alpha, lr=train.lr,
                                            weight_decay=train.weight_decay)
        for group in optimizer.param_groups:  # peft fixes betas (0.9, 0.999) and eps 1e-6
            group.update(kwargs)
        return optimizer
    params = [p for p in model.parameters() if p.requires_grad]
    return optimizer_cls(params, lr=train.lr, weight_decay=train.weight_decay, **kwargs)


def build_scheduler(optimizer: Any, train: TrainConfig, plan: StepPlan) -> Any:
    from transformers import get_scheduler

    name = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}[train.scheduler]
    return get_scheduler(name, optimizer, num_warmup_steps=plan.warmup_steps,
                         num_training_steps=plan.total_steps)
