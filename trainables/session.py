"""Where the one training loop runs, and how it reports.

The loop in :mod:`trainables.loop` only talks to a :class:`Session`:

* :class:`TuneSession` - the loop runs inside the Tune trial's own process (one device).
  Cheapest shape: with Tune's actor reuse the process and its imports survive from one trial
  to the next.
* :class:`TrainSession` - the loop runs on each worker of a Ray Train ``TorchTrainer``
  launched by the trial (DDP, or FSDP2 with ``train.strategy: fsdp``, when it has several
  workers); metrics reach Tune through ``TuneReportCallback``. Starting a worker group costs
  seconds per trial, so it is used only when asked for (``resources.trial_shape``).
* :class:`LocalSession` - no Ray at all: re-running one trial exactly, benchmarks.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class Session:
    world_rank: int = 0
    world_size: int = 1
    trial_id: str = "local"
    resends_restored_reports: bool = False
    """Whether a checkpoint this session restores may be ahead of what Tune recorded, so the
    loop sends every report the checkpoint holds again (:meth:`trainables.loop.Recipe._resend`)."""
    lockstep: bool = False
    """Whether every forward pass is a collective (FSDP all-gathers each block's weights), so
    that every rank must run as many forwards as the others: evaluation evens out the ranks'
    batches and runs the final evaluation on every rank."""

    @property
    def device(self) -> Any:
        import torch

        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() \
            else torch.device("cpu")

    @property
    def is_chief(self) -> bool:
        return self.world_rank == 0

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None = None) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def restored_checkpoint(self) -> Iterator[Path | None]:
        """The directory of the checkpoint to resume from, if the trial is being restored."""
        yield None

    def prepare_model(self, model: Any) -> Any:
        return model.to(self.device)

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        return values

    def all_gather(self, obj: Any) -> list[Any]:
        """``obj`` of every rank, in rank order (picklable objects, e.g. predictions)."""
        return [obj]


class LocalSession(Session):
    """Runs the loop in this process; reports are kept in ``self.reports`` and checkpoints
    copied to ``checkpoint_root/checkpoint_<n>``."""

    def __init__(self, checkpoint_root: str | Path | None = None, *, restore_from: str | Path | None = None):
        self.reports: list[dict[str, Any]] = []
        self.checkpoints: list[Path] = []
        self.checkpoint_root = Path(checkpoint_root) if checkpoint_root else None
        self.restore_from = Path(restore_from) if restore_from else None

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None = None) -> None:
        self.reports.append(dict(metrics))
        if checkpoint_dir is not None and self.checkpoint_root is not None:
            dest = self.checkpoint_root / f"checkpoint_{len(self.reports):06d}"
            shutil.copytree(checkpoint_dir, dest, dirs_exist_ok=True)
            self.checkpoints.append(dest)

    @contextlib.contextmanager
    def restored_checkpoint(self) -> Iterator[Path | None]:
        yield self.restore_from


class TuneSession(Session):
    """The loop inside a Tune function trial."""

    def __init__(self) -> None:
        from ray import tune

        self.trial_id = tune.get_context().get_trial_id()

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None = None) -> None:
        from ray import tune

        checkpoint = tune.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        tune.report({**metrics, "node_id": _node_id()}, checkpoint=checkpoint)

    @contextlib.contextmanager
    def restored_checkpoint(self) -> Iterator[Path | None]:
        from ray import tune

        ckpt = tune.get_checkpoint()
        if ckpt is None:
            yield None
            return
        with ckpt.as_directory() as d:
            yield Path(d)


class TrainSession(Session):
    """The loop on one worker of a Ray Train worker group (DDP across the group, or FSDP2 with
    ``strategy`` ``fsdp``: :mod:`trainables.fsdp`).

    A restored group resumes from the latest checkpoint in Ray Train's storage, which can be
    any number of reports ahead of what Tune recorded (the driver died while the workers
    reported on): it sends again every report of the trial that checkpoint holds."""

    resends_restored_reports = True

    def __init__(self, strategy: str = "ddp") -> None:
        import ray.train

        ctx = ray.train.get_context()
        self.world_rank = ctx.get_world_rank()
        self.world_size = ctx.get_world_size()
        self.trial_id = ctx.get_experiment_name()
        self.strategy = strategy
        self.lockstep = strategy == "fsdp" and self.world_size > 1

    @property
    def device(self) -> Any:
        import ray.train.torch

        return ray.train.torch.get_device()

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None = None) -> None:
        """Every rank reports (rank 0 with the checkpoint); returns on every rank once rank 0
        has stored its checkpoint.

        The ranks wait for each other here through Ray Train's own synchronisation (the
        report's, then a barrier), which has no time limit (unless
        ``RAY_TRAIN_COLLECTIVE_TIMEOUT_S`` sets one), never in a collective of the process
        group, which fails after ``resources.collective_timeout_s``: rank 0 may come
        here after any length of work alone (the final evaluation, writing the checkpoint) and
        stores the checkpoint after the others have reported."""
        import ray.train
        import ray.train.collective

        checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        ray.train.report({**metrics, "node_id": _node_id()}, checkpoint=checkpoint)
        if self.world_size > 1:
            ray.train.collective.barrier()

    @contextlib.contextmanager
    def restored_checkpoint(self) -> Iterator[Path | None]:
        import ray.train

        ckpt = ray.train.get_checkpoint()
        if ckpt is None:
            yield None
            return
        with ckpt.as_directory() as d:
            yield Path(d)

    def prepare_model(self, model: Any) -> Any:
        import ray.train.torch

        if self.lockstep:
            from trainables.fsdp import shard

            return shard(model, self.device)
        plan = batchnorm_plan(model, world_size=self.world_size, cuda=self.device.type == "cuda")
        if plan == "sync":
            import torch

            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        elif plan == "per-worker" and self.is_chief:
            import sys

            # Written, not printed: Ray Train's print on a worker both logs and prints a line.
            sys.stderr.write(BATCHNORM_PER_WORKER + "\n")
            sys.stderr.flush()
        return ray.train.torch.prepare_model(model)

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def all_gather(self, obj: Any) -> list[Any]:
        import torch.distributed as dist

        if not dist.is_initialized():
            return [obj]
        out: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj)
        return out


BATCHNORM_PER_WORKER = ("warning: BatchNorm batch statistics are per worker: on CPU (gloo) PyTorch has no "
                        "SyncBatchNorm, so each worker normalises over its own share of the global batch "
                        "and the running statistics are rank 0's (DDP broadcasts its buffers); this "
                        "trial does not compute what one process does")


def batchnorm_plan(model: Any, *, world_size: int, cuda: bool) -> str | None:
    """How a DDP worker group treats the model's trainable BatchNorm layers (those with a
    parameter that trains: ``adapter.method: full``; an adapter trial's are frozen, in eval
    mode): ``sync``, converted to ``SyncBatchNorm`` (CUDA), whose batch statistics are the
    whole global batch's, as one process computes them; ``per-worker`` on CPU, where PyTorch
    has no SyncBatchNorm: each rank normalises over its own share of the batch, and DDP
    broadcasts rank 0's running statistics; None with one worker or no trainable BatchNorm."""
    from torch import nn

    trainable = any(p.requires_grad for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                    for p in m.parameters(recurse=False))
    if world_size < 2 or not trainable:
        return None
    return "sync" if cuda else "per-worker"


def _node_id() -> str:
    """The Ray node this process runs on: recorded per trial, so a multi-node sweep shows
    where each trial trained (Tune's own ``node_ip`` is the same for two nodes of one host)."""
    import ray

    return ray.get_runtime_context().get_node_id()


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory for one checkpoint before Tune/Train takes it over, in
    ``$LORASWEEP_TMP`` or the system's temporary directory, named ``{prefix}{pid}@{host}@...``.

    A trial killed while it reports (Tune stopping it, its driver killed) never reaches the
    ``finally``; its directory is removed by the next scratch directory made on its host once
    its process is gone."""
    parent = os.environ.get("LORASWEEP_TMP") or tempfile.gettempdir()
    host = socket.gethostname()
    _remove_orphans(Path(parent), prefix, host)
    d = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}@{host}@", dir=parent))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _remove_orphans(parent: Path, prefix: str, host: str) -> None:
    """Remove ``parent``'s scratch directories of ended processes of this host (``@`` never
    appears in a host name, so another host's are never taken for this one's)."""
    import psutil

    try:
        names = [p.name for p in parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return
    for name in names:
        pid, _, rest = name[len(prefix):].partition("@")
        if pid.isdigit() and rest.startswith(f"{host}@") and not psutil.pid_exists(int(pid)):
            shutil.rmtree(parent / name, ignore_errors=True)
