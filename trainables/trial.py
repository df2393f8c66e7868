"""The Tune trainable: one trial = one fine-tune, in one of two shapes.

Ray Train V2 refuses ``Tuner(TorchTrainer(...))``; the supported composition is a Tune
function trial that launches a ``TorchTrainer`` and forwards its reports with
``TuneReportCallback``. Starting a worker group for every trial costs far more than a plain
function trial, which with actor reuse costs almost nothing, so the shape is chosen, not fixed
(``resources.trial_shape``):

* ``function`` (default for one worker): the loop runs in the trial's own process.
* ``train`` (default for several workers): the trial launches a ``TorchTrainer`` whose
  workers run the same loop under DDP (or FSDP2: ``train.strategy``).

Both shapes run :func:`trainables.loop.run_loop`; only the :class:`~trainables.session.Session`
differs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trainables.config import ResourcesConfig, TrialConfig
from trainables.schema import from_dict

#: CPU the Tune trial actor reserves when it only waits for its Train worker group. Ray
#: refuses a zero-resource trial; the rest of the trial's CPUs go to the workers, so a trial
#: never reserves more than ``cpus_per_trial`` in all (over-reservation hangs silently).
TRAIN_DRIVER_CPU = 0.01


def derive_seed(sweep_seed: int, hyperparameters: dict[str, Any]) -> int:
    """A trial's seed from the sweep seed and its hyperparameters only, so the same trial
    config in the same sweep always gets the same seed (and can be re-run exactly)."""
    blob = json.dumps({"sweep_seed": sweep_seed, "hp": hyperparameters}, sort_keys=True, default=str)
    return int(hashlib.sha256(blob.encode()).hexdigest(), 16) % (2**31 - 1)


def resolve_trial(base: dict[str, Any], hyperparameters: dict[str, Any], sweep_seed: int) -> TrialConfig:
    """The full config of one trial: base (with the space's fixed values) + its sampled
    hyperparameters + its seed. The MLflow record uses the same function."""
    from trainables.schema import apply_hyperparameters

    data = apply_hyperparameters(base, hyperparameters)
    if data.get("seed") is None:
        data["seed"] = derive_seed(sweep_seed, hyperparameters)
    return from_dict(TrialConfig, data)


def trial_resources(resources: dict[str, Any]) -> dict[str, float]:
    """What the Tune trial actor itself reserves (see :data:`TRAIN_DRIVER_CPU`)."""
    if from_dict(ResourcesConfig, resources).uses_train_workers:
        return {"cpu": TRAIN_DRIVER_CPU}
    return {"cpu": resources["cpus_per_trial"], "gpu": resources["gpus_per_trial"]}


def _quiet_libraries() -> None:
    import logging
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    # transformers' "Loading weights" bar (and the hub's download bars) in every trial's log
    # would print between the rows of Tune's status table; read when transformers is imported.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for name in ("transformers", "peft", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # "Checkpoint successfully created at ..." after every report drowns Tune's own table.
    for name in ("ray.train", "ray.tune"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def skip_bitsandbytes() -> bool:
    """Make this process's later imports of peft and transformers skip bitsandbytes, for a
    sweep none of whose trials quantises its base or pages its optimizer.

    Both import bitsandbytes whenever it is installed (peft's helpers, transformers'
    integrations): a noticeable part of every trial process's start, for nothing when no trial
    uses it. A ``None`` in ``sys.modules`` is Python's own "not available":
    ``import bitsandbytes`` raises ImportError and ``importlib.util.find_spec`` returns None,
    which is how both libraries test for it. Only done in a process that has imported none of
    the three yet (a trial process: its sweep's trials all agree); returns whether it was.
    """
    import sys

    if any(name in sys.modules for name in ("bitsandbytes", "peft", "transformers")):
        return False
    sys.modules["bitsandbytes"] = None  # type: ignore[assignment]
    return True


WARM_ENV = "LORASWEEP_WARM_WORKER"
"""Set in the runtime env of a sweep's local Ray when its worker processes start warm (see
``sweeps.ray_start.warm_runtime_env``): ``skip-bitsandbytes`` or ``bitsandbytes``."""


def warm_worker() -> None:
    """Ray ``worker_process_setup_hook`` of a sweep's local Ray: import what every trial
    imports (Ray Tune, torch, transformers, peft, the training loop) as the worker process
    starts, while the driver is still starting the sweep, instead of after Tune has handed
    the process its trial.

    Never raises: a trial imports whatever is missing itself and reports its own errors.
    """
    try:
        _quiet_libraries()
        if os.environ.get(WARM_ENV) == "skip-bitsandbytes":
            skip_bitsandbytes()
        import peft  # noqa: F401  (imports torch and transformers)
        import ray.tune  # noqa: F401  (Tune's function trainable runs in this process)

        import trainables.loop  # noqa: F401
    except Exception:  # noqa: BLE001 - the trial reports it
        pass


def torch_threads(cpus: float) -> int:
    """The torch threads of a process holding ``cpus``: its whole CPUs, at least one. A Train
    worker's share lacks its part of the sliver its trial's driver holds, counted back here."""
    return max(1, int(cpus + TRAIN_DRIVER_CPU))


def _set_threads(cpus: float) -> None:
    import torch

    torch.set_num_threads(torch_threads(cpus))


def _prepared(path: str | None) -> Path | None:
    """The driver's tokenised data, when this node can see it (else the trial builds it)."""
    return Path(path) if path and Path(path).is_dir() else None


@contextlib.contextmanager
def memory_limit(mb: int | None) -> Iterator[None]:
    """Let this process allocate at most ``mb`` MiB more address space than it holds now
    (``resources.memory_limit_mb``), for the duration of the block.

    The limit is the soft ``RLIMIT_AS``, set above the process's current virtual size (a Ray
    worker maps the object store and its libraries: gigabytes before the trial allocates
    anything) and restored afterwards, so a reused trial actor starts its next trial without
    it. Past the limit, malloc/mmap fail: torch raises "DefaultCPUAllocator: can't allocate
    memory", Python raises MemoryError; either is re-raised as :class:`TrialOutOfMemory`.
    """
    if not mb:
        yield
        return
    import resource

    # Imported before measuring: the libraries' own mappings are not the trial's allocations.
    import peft  # noqa: F401
    import psutil
    import torch  # noqa: F401
    import transformers  # noqa: F401

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    vms = psutil.Process().memory_info().vms
    limit = min(vms + mb * 2**20, 2**63 - 1)  # setrlimit takes a signed 64-bit number of bytes
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    except MemoryError as e:
        raise _oom(mb, e) from e
    except RuntimeError as e:
        if "can't allocate memory" not in str(e) and "out of memory" not in str(e).lower():
            raise
        raise _oom(mb, e) from e
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


class TrialOutOfMemory(MemoryError):
    """A trial went past ``resources.memory_limit_mb`` (one message argument, so it pickles
    back to the driver)."""


def _oom(mb: int, cause: BaseException) -> TrialOutOfMemory:
    text = str(cause).strip()
    first = text.splitlines()[-1][:300] if text else type(cause).__name__
    return TrialOutOfMemory(f"out of memory: the trial needed more than resources.memory_limit_mb="
                            f"{mb} MiB ({first})")


def tune_trial(hyperparameters: dict[str, Any], *, base: dict[str, Any], sweep: dict[str, Any]) -> None:
    """Tune function trainable (bound with ``tune.with_parameters``)."""
    _quiet_libraries()
    if not sweep.get("bitsandbytes", True):
        skip_bitsandbytes()
    cfg = resolve_trial(base, hyperparameters, sweep["seed"])
    resources = sweep["resources"]
    if not from_dict(ResourcesConfig, resources).uses_train_workers:
        from trainables.loop import run_loop
        from trainables.session import TuneSession

        _set_threads(resources["cpus_per_trial"])
        with memory_limit(resources.get("memory_limit_mb")):
            run_loop(cfg, TuneSession(), prepared=_prepared(sweep.get("prepared")),
                     adapters=sweep.get("adapters"))
        return
    _launch_train_workers(cfg, sweep)


def _launch_train_workers(cfg: TrialConfig, sweep: dict[str, Any]) -> None:
    from ray import tune
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from trainables.schema import to_dict

    res = sweep["resources"]
    n = res["workers_per_trial"]
    cpu_each = (res["cpus_per_trial"] - TRAIN_DRIVER_CPU) / n
    gpu_each = res["gpus_per_trial"] / n
    per_worker = {"CPU": cpu_each} | ({"GPU": gpu_each} if gpu_each else {})
    ctx = tune.get_context()
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"trial": to_dict(cfg), "prepared": sweep.get("prepared"), "cpus": cpu_each,
                           "adapters": sweep.get("adapters"), "memory_limit_mb": res.get("memory_limit_mb"),
                           "bitsandbytes": sweep.get("bitsandbytes", True)},
        scaling_config=ScalingConfig(num_workers=n, use_gpu=gpu_each > 0, resources_per_worker=per_worker),
        torch_config=TorchConfig(timeout_s=res.get("collective_timeout_s", ResourcesConfig.collective_timeout_s)),
        run_config=RunConfig(
            name=f"{ctx.get_experiment_name()}-{ctx.get_trial_id()}-train",
            storage_path=sweep["storage"],
            callbacks=[TuneReportCallback()],
            checkpoint_config=CheckpointConfig(num_to_keep=1),
        ),
    )
    _drop_superseded_checkpoints(trainer.fit())


def _drop_superseded_checkpoints(result: Any) -> None:
    """Delete the worker group's checkpoints other than those its finished run keeps
    (``num_to_keep``). A group resumed after an interruption starts from a checkpoint that its
    new run does not count among its own (nor one written after the sweep's last snapshot), so
    that one would stay beside the final one."""
    import pyarrow.fs

    kept = {c.path.rstrip("/") for c, _ in result.best_checkpoints or ()}
    kept |= {result.checkpoint.path.rstrip("/")} if result.checkpoint else set()
    fs = result.filesystem
    try:  # never fails the trial, which trained to its end: what stays only takes space
        for info in fs.get_file_info(pyarrow.fs.FileSelector(result.path, allow_not_found=True)):
            if (info.type == pyarrow.fs.FileType.Directory and info.base_name.startswith("checkpoint_")
                    and info.path.rstrip("/") not in kept):
                fs.delete_dir(info.path)
    except Exception:  # noqa: BLE001 - a denied delete, storage out of reach
        pass


def _quiet_train_reports() -> None:
    """Ray Train logs every report's whole metrics dict (the per-step history included) from
    every rank, at INFO, under its module's file name; Tune's table shows the same results."""
    import logging

    with contextlib.suppress(ImportError):
        from ray.train.v2._internal.execution import context

        logging.getLogger(context.__file__).setLevel(logging.WARNING)


def train_worker(config: dict[str, Any]) -> None:
    """``train_loop_per_worker`` of the ``train`` shape: the same loop on every rank (DDP or
    FSDP2, ``train.strategy``)."""
    from trainables.loop import run_loop
    from trainables.session import TrainSession

    _quiet_libraries()
    _quiet_train_reports()
    if not config.get("bitsandbytes", True):
        skip_bitsandbytes()
    _set_threads(config["cpus"])
    cfg = from_dict(TrialConfig, config["trial"])
    with memory_limit(config.get("memory_limit_mb")):
        run_loop(cfg, TrainSession(cfg.train.strategy), prepared=_prepared(config.get("prepared")),
                 adapters=config.get("adapters"))
