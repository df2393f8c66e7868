"""A trial's checkpoint: the adapter, the optimizer and scheduler state to resume from, and
the trial's config.

``adapter/`` is the adapter in peft's standard layout (:mod:`trainables.standard_adapter`):
what MLflow records and ``python -m sweeps.export`` exports, loaded by plain
``PeftModel.from_pretrained`` on the unmodified base. Where the trial trains in another layout
(GPT-2's q/k/v split, PiSSA and OLoRA's mutated base), ``trial_adapter/`` holds its own
``save_pretrained`` too: resuming and warm starts read that one.

``reports.json`` holds every report the trial sent up to and including this checkpoint's, in
order: a restored worker group sends Tune again the reports that the driver may never have
recorded (:meth:`trainables.loop.Recipe._resend`). The state file keeps every rank's torch
random number generator states (the CPU generator's, and the generator of the GPU the rank
trains on: :func:`rng_state`), and each rank restores its own onto the GPU it trains on then
(its dropout masks go on as in the uninterrupted trial).

The state file comes back from Tune storage (a shared path or a bucket others may write), so
it is read as tensors and plain containers only (``weights_only``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainables.devices import unwrap

if TYPE_CHECKING:
    from trainables.config import TrialConfig
    from trainables.fsdp import GatheredState

STATE_FILE = "trainer_state.pt"
ADAPTER_DIR = "adapter"
TRIAL_ADAPTER_DIR = "trial_adapter"
OUTPUTS_DIR = "outputs"
CONFIG_FILE = "trial_config.json"
RESULT_FILE = "result.json"
REPORTS_FILE = "reports.json"


def _is_cuda(device: Any) -> bool:
    return device is not None and getattr(device, "type", str(device).split(":")[0]) == "cuda"


def rng_state(device: Any = None) -> dict[str, Any]:
    """This process's torch generator states: ``cpu``, and ``cuda``, the generator of
    ``device`` when the trial trains on a GPU (dropout there draws from it). Only that GPU's:
    a worker may see its neighbours' GPUs, and a trial on the CPU does not start CUDA."""
    import torch

    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if _is_cuda(device):
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: Any = None) -> None:
    """Restore what :func:`rng_state` returned, the GPU state onto ``device`` (the GPU this
    process trains on now, wherever the saving one was) when both have one."""
    import torch

    torch.set_rng_state(state["cpu"])
    if state.get("cuda") is not None and _is_cuda(device):
        torch.cuda.set_rng_state(state["cuda"], device)


def save_checkpoint(out: Path, *, model: Any, optimizer: Any, scheduler: Any, step: int,
                    cfg: TrialConfig, final: bool = False, scaler: Any = None,
                    result: dict[str, Any] | None = None, gathered: GatheredState | None = None,
                    reports: list[dict[str, Any]] | None = None, rng_states: list[Any] | None = None) -> None:
    """Adapter weights (see the module docstring) + optimizer/scheduler state (and the fp16 loss
    scaler's, ``scaler``: a :class:`~trainables.devices.Precision`) for resuming; ``final``: the
    checkpoint of the trial's final report (a trial restored from it is done); ``result``: the
    report this checkpoint goes with (:func:`saved_result`); ``reports``: every report of the
    trial so far, this one last (:func:`saved_reports`); ``gathered``: a sharded model's
    adapter and optimizer state as full tensors (:func:`trainables.fsdp.gather_state`), saved
    instead of the model's and the optimizer's own (their shards); ``rng_states``: every rank's
    :func:`rng_state` in rank order (this process's alone when not given)."""
    import torch

    from trainables.adapters import save_adapter
    from trainables.schema import to_dict
    from trainables.standard_adapter import is_standard, save_standard

    # The step the saved weights were trained to: a final report on restored best weights
    # (keep_best, early stopping) saves that report's weights, not the last step's.
    trained_to = (result or {}).get("best_step") if final else None
    meta = {"task": cfg.task, "base_model": cfg.model.name_or_path, "method": cfg.adapter.method,
            "targets": cfg.adapter.targets, "dtype": cfg.model.dtype,
            "step": int(trained_to) if trained_to is not None else step}
    adapter = gathered.adapter if gathered is not None else None
    save_standard(unwrap(model), out / ADAPTER_DIR, meta=meta, state_dict=adapter)
    if not is_standard(unwrap(model)):
        save_adapter(unwrap(model), out / TRIAL_ADAPTER_DIR, meta={**meta, "layout": "trial"}, state_dict=adapter)
    optim = gathered.optimizer if gathered is not None else optimizer.state_dict()
    rng_states = list(rng_states) if rng_states else [rng_state()]
    cpu = [r["cpu"] for r in rng_states]
    cuda = {"cuda_rng_ranks": [r.get("cuda") for r in rng_states]} if any("cuda" in r for r in rng_states) else {}
    torch.save({"step": step, "final": final, "optimizer": optim,
                "scheduler": scheduler.state_dict(), "torch_rng": cpu[0], "torch_rng_ranks": cpu, **cuda,
                "scaler": scaler.state_dict() if scaler is not None else {}},
               out / STATE_FILE)
    (out / CONFIG_FILE).write_text(json.dumps(to_dict(cfg), indent=2, sort_keys=True))
    if result is not None:
        (out / RESULT_FILE).write_text(json.dumps(result))
    if reports is not None:
        (out / REPORTS_FILE).write_text(json.dumps(reports))


def saved_result(src: Path) -> dict[str, Any] | None:
    """The report a checkpoint was saved with (None for a checkpoint without one)."""
    path = src / RESULT_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def saved_reports(src: Path) -> list[dict[str, Any]]:
    """Every report of the trial up to and including the one checkpoint ``src`` was saved
    with, in order (its own report alone for a checkpoint saved without the list; none for
    one without a report)."""
    path = src / REPORTS_FILE
    if path.is_file():
        return json.loads(path.read_text())
    result = saved_result(src)
    return [result] if result is not None else []


def restore_checkpoint(src: Path, *, model: Any, optimizer: Any, scheduler: Any,
                       scaler: Any = None, rank: int = 0, device: Any = None) -> tuple[int, bool]:
    """Load what :func:`save_checkpoint` wrote; returns the optimizer step to resume after and
    whether it was the trial's final checkpoint. ``rank``: this process's rank, whose own random
    number generator state is restored (rank 0's where the checkpoint has none for it), its GPU
    generator's onto ``device`` when it trains on a GPU. A state
    file holding anything but tensors and plain containers is refused instead of running code."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from trainables.fsdp import is_sharded, load_state

    adapter_dir = trial_layout(src)
    adapter_file = adapter_dir / "adapter_model.safetensors"
    state = torch.load(src / STATE_FILE, map_location="cpu", weights_only=True)
    if is_sharded(model):  # a collective: rank 0's copy is broadcast into the shards
        load_state(model, optimizer, load_file(str(adapter_file)), state["optimizer"])
    elif adapter_file.is_file():
        set_peft_model_state_dict(unwrap(model), load_file(str(adapter_file)))
        optimizer.load_state_dict(state["optimizer"])
    else:  # method 'full': save_pretrained wrote the whole model
        unwrap(model).load_state_dict(load_file(str(adapter_dir / "model.safetensors")), strict=False)
        optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(saved_rng_state(state, rank), device)
    if scaler is not None:
        scaler.load_state_dict(state.get("scaler") or {})
    return int(state["step"]), bool(state.get("final", False))


def saved_rng_state(state: dict[str, Any], rank: int) -> dict[str, Any]:
    """Rank ``rank``'s generator states in a loaded state file, as :func:`rng_state` returns
    them (rank 0's CPU state where the file has none for that rank; no GPU states in a file
    saved without CUDA)."""
    cpu = state.get("torch_rng_ranks") or []
    cuda = state.get("cuda_rng_ranks") or []
    out = {"cpu": cpu[rank] if rank < len(cpu) else state["torch_rng"]}
    if rank < len(cuda) and cuda[rank] is not None:
        out["cuda"] = cuda[rank]
    return out


def trial_layout(src: Path) -> Path:
    """The adapter directory of checkpoint ``src`` in the layout the trial trains in."""
    own = src / TRIAL_ADAPTER_DIR
    return own if own.is_dir() else src / ADAPTER_DIR
