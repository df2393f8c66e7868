"""Where a trial computes: seeding, mixed precision, moving batches, and peak memory."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trainables.errors import UserError, first_line

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
    return torch.autocast(device_type=device.type, dtype=_dtype(precision))


def _dtype(precision: str) -> Any:
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


def _unsupported(precision: str, device_type: str) -> str | None:
    """Why ``device_type`` cannot autocast to ``precision`` (None when it can): a matrix
    product under its autocast must come out in that dtype."""
    import warnings

    import torch

    dtype = _dtype(precision)
    if precision == "fp32":
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns, then disables, an autocast it lacks
            x = torch.ones(2, 2, device=device_type)
            with torch.autocast(device_type=device_type, dtype=dtype):
                out = (x @ x).dtype
    except Exception as e:  # noqa: BLE001 - a device type this build lacks fails in its own way
        return first_line(e).split(". ")[0][:160] or type(e).__name__
    if out != dtype:
        return f"its autocast computes in {str(out).removeprefix('torch.')}"
    if device_type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported(
            including_emulation=False):
        return "a GPU before Ampere emulates bfloat16 slowly"
    return None


def check_precision(precision: str, device_type: str) -> None:
    """Refuse a ``train.precision`` that ``device_type`` cannot autocast to (a device type this
    build of torch lacks, bf16 on a GPU before Ampere), naming the precisions it can."""
    why = _unsupported(precision, device_type)
    if why is not None:
        accepted = [p for p in ("fp32", "bf16", "fp16") if p == "fp32" or _unsupported(p, device_type) is None]
        raise UserError("train.precision", f"{precision} is not available on {device_type} here ({why}); "
                                           f"accepted here: {', '.join(accepted)}")


class Precision:
    """``train.precision`` for a trial's training steps: autocast around the forward pass and,
    for fp16, torch's gradient scaler. fp16's exponent range (smallest subnormal 6e-8) turns
    small gradients to zero; the scaler multiplies the loss before the backward pass, divides
    the gradients before clipping and the step, skips a step whose gradients overflowed and
    lowers the scale then (raising it again after 2,000 steps without overflow). bf16 has
    float32's range and needs no scaler.

    torch.amp directly rather than accelerate: accelerate's Accelerator would also take over the
    DDP wrapping and the data sharding that Ray Train and :mod:`trainables.batching` do, to
    save four scaler calls.
    """

    def __init__(self, precision: str, device: torch.device):
        import torch

        check_precision(precision, device.type)
        self.precision, self.device = precision, device
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None

    def autocast(self) -> Any:
        return autocast(self.precision, self.device)

    def backward(self, loss: torch.Tensor) -> None:
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def step(self, optimizer: Any, params: list[Any], max_grad_norm: float | None) -> bool:
        """Clip (the unscaled gradients) and step; False when fp16 skipped the step because
        a gradient was inf or NaN."""
        import torch

        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        if self.scaler is None:
            optimizer.step()
            return True
        before = self.scaler.get_scale()
        self.scaler.step(optimizer)
        self.scaler.update()
        return self.scaler.get_scale() >= before  # a skipped step halves the scale

    @property
    def loss_scale(self) -> float | None:
        """The fp16 loss scale (None without a scaler)."""
        return None if self.scaler is None else float(self.scaler.get_scale())

    def state_dict(self) -> dict[str, Any]:
        return {} if self.scaler is None else self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def train_in_float32(model: Any) -> int:
    """Make every trainable weight of ``model`` that is in half precision float32; returns how
    many modules held one. A base loaded in bfloat16 or float16 (``model.dtype``) gives peft's
    trained copy of a head (``modules_to_save``: a classifier) that dtype, where peft keeps its
    own adapter weights in float32: AdamW's small updates would round away in bfloat16 (8
    significant bits), and fp16's gradient scaler refuses to unscale float16 gradients. Each
    such module casts its floating-point inputs to float32 (the half-precision activations of
    the frozen base) and so returns float32; under ``train.precision`` bf16/fp16, autocast
    still computes it in that precision."""
    import torch

    def inputs_in_float32(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        def cast(a: Any) -> Any:
            return a.float() if torch.is_tensor(a) and a.is_floating_point() else a

        return tuple(cast(a) for a in args), {k: cast(v) for k, v in kwargs.items()}

    count = 0
    for module in model.modules():
        half = [p for p in module.parameters(recurse=False)
                if p.requires_grad and p.dtype in (torch.bfloat16, torch.float16)]
        for p in half:
            p.data = p.data.float()
        if half:
            module.register_forward_pre_hook(inputs_in_float32, with_kwargs=True)
            count += 1
    return count


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
