"""Where a trial computes: seeding, mixed precision, moving batches, and peak memory."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast(precision: str, device: torch.device) -> Any:
    """The autocast context of ``train.precision`` (none for fp32)."""
    import contextlib

    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def unwrap(model: Any) -> Any:
    """The peft model inside a DDP wrapper."""
    return getattr(model, "module", model)


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
    threshold after large frees), so a method compared after full fine-tuning in the same
    actor would carry the earlier trial's memory. A process's first trial has nothing to
    release and skips the full collection over the objects its imports created."""
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
