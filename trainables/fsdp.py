"""``train.strategy: fsdp``: a worker group's model sharded with PyTorch FSDP2 (``fully_shard``).

Each transformer block (the classes transformers lists in the model's ``_no_split_modules``,
as accelerate's FSDP wrapping does) is sharded as one unit, then the rest of the model with
the root: every parameter, the frozen base weights included, is split over the ranks and
all-gathered block by block for each forward and backward. The adapter's parameters train;
the optimizer is built over their shards (DTensors). FSDP2 averages the gradients over the
ranks as DDP does, so the loop's loss weighting (``Recipe._rank_weight``) is the same.

The root of the sharding is the transformers model inside the peft model, not the peft model
itself: peft's ``generate`` calls the inner model's ``generate``, which calls the inner
model's forward, so the root's hooks (which all-gather the embeddings and the head) run for
training, evaluation and decoding alike.

A checkpoint holds the adapter gathered to full tensors on rank 0 (the files a one-process
trial writes) and the optimizer state gathered likewise (keyed by parameter name,
``torch.distributed.checkpoint.state_dict``); resuming broadcasts both from rank 0 into the
shards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainables.devices import unwrap
from trainables.errors import UserError, one_of

#: Adapter methods whose FSDP trials were checked against one-process trials
#: (``tests/test_ray_train.py``); the others are refused before launch. ``full`` would also
#: train BatchNorm layers (the image task's ResNet), whose running statistics FSDP2 does not
#: broadcast as DDP does: each rank's would drift apart (a LoRA trial keeps them frozen).
FSDP_METHODS = ("lora",)


def check_strategy(cfg: Any, *, quantized: bool) -> None:
    """Refuse what an FSDP trial does not shard, or was not checked with, in the trial config
    ``cfg`` whose base is ``quantized`` or not (the number of workers is the sweep's:
    ``sweeps.checks.check_workers``)."""
    train = cfg.train
    if train.strategy != "fsdp":
        return
    if quantized:
        raise UserError("train.strategy", "fsdp does not shard a 4-bit base (bitsandbytes' quantized "
                                          "weights are not sharded by FSDP2 here); use train.strategy=ddp, "
                                          "or model.quantization=none with adapter.method lora")
    if cfg.adapter.method not in FSDP_METHODS:
        raise UserError("adapter.method", f"{cfg.adapter.method!r} was not checked under train.strategy=fsdp; "
                                          f"accepted there: {one_of(FSDP_METHODS)} (or train.strategy=ddp)")
    unchecked = {"train.precision": (train.precision == "fp16", "fp16 (its gradient scaler would decide "
                                     "to skip a step on each rank's shards alone)", "fp32 or bf16"),
                 "train.optimizer": (train.optimizer != "adamw", train.optimizer, "adamw"),
                 "train.gradient_checkpointing": (train.gradient_checkpointing, "true", "false"),
                 # they keep and put back copies of the trainable parameters
                 "train.keep_best": (train.keep_best, "true", "false"),
                 "train.early_stopping_patience": (train.early_stopping_patience is not None,
                                                   train.early_stopping_patience, "null")}
    for field, (refused, value, accepted) in unchecked.items():
        if refused:
            raise UserError(field, f"{value} was not checked under train.strategy=fsdp; accepted there: "
                                   f"{accepted} (or train.strategy=ddp)")


@dataclass
class GatheredState:
    """What a checkpoint of a sharded model saves, gathered on rank 0 (empty on the others):
    the adapter's parameters as peft names them in the peft model's ``state_dict`` (full
    tensors) and the optimizer state keyed by parameter name."""

    adapter: dict[str, Any]
    optimizer: dict[str, Any]


def _root(model: Any) -> Any:
    """The module the sharding's root is (the transformers model inside the peft model)."""
    inner = unwrap(model)
    return inner.get_base_model() if hasattr(inner, "get_base_model") else inner


def is_sharded(model: Any) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(_root(model), FSDPModule)


def shard(model: Any, device: Any) -> Any:
    """``model`` (a peft model) with its blocks and root sharded over the process group's
    ranks (FSDP2); returns it."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    model = model.to(device)
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    root = _root(model)
    blocks = set(getattr(root, "_no_split_modules", None) or ())
    for module in list(root.modules()):
        if module is not root and type(module).__name__ in blocks:
            fully_shard(module, mesh=mesh)
    fully_shard(root, mesh=mesh)
    return model


def set_gradient_sync(model: Any, sync: bool) -> None:
    """Whether the next backward pass reduce-scatters the gradients (False on the
    micro-batches before the last of an optimizer step: they accumulate unsharded)."""
    _root(model).set_requires_gradient_sync(sync)


def _options(**kwargs: Any) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kwargs)


def gather_state(model: Any, optimizer: Any) -> GatheredState:
    """The adapter and the optimizer state as full tensors on rank 0 (a collective: every
    rank calls it)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    peft_model = unwrap(model)
    adapter = get_model_state_dict(peft_model, options=_options(cpu_offload=True, ignore_frozen_params=True))
    optim = get_optimizer_state_dict(peft_model, optimizer, options=_options(cpu_offload=True))
    return GatheredState(adapter=adapter, optimizer=optim)


def load_state(model: Any, optimizer: Any, adapter: dict[str, Any], optim: dict[str, Any]) -> None:
    """Load a saved adapter (peft's file keys, full tensors) and the optimizer state that
    :func:`gather_state` saved into the sharded model and its optimizer, from rank 0's copy
    (a collective)."""
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    peft_model = unwrap(model)
    chief = dist.get_rank() == 0
    names = {peft_key(n, peft_model.active_adapter): n for n, p in peft_model.named_parameters()
             if p.requires_grad}
    full = {names[k]: v for k, v in adapter.items()} if chief else {}
    set_model_state_dict(peft_model, full, options=_options(broadcast_from_rank0=True, strict=False))
    set_optimizer_state_dict(peft_model, optimizer, optim if chief else {},
                             options=_options(broadcast_from_rank0=True))


def peft_key(name: str, adapter: str) -> str:
    """The key peft's adapter file gives the parameter ``name`` of the peft model, as peft's
    ``get_peft_model_state_dict`` names it: a module trained whole (``modules_to_save``, e.g. a
    classifier head) loses ``modules_to_save.``, and every key loses ``.<adapter>``."""
    return name.replace("modules_to_save.", "").replace(f".{adapter}", "")
