"""Restoring a trial from a checkpoint that is ahead of what the driver recorded, as a Ray
Train worker group does (its storage keeps going while the driver is gone): every report is
sent again, once, and the resumed trial trains on as the uninterrupted one did, on one process
and on 2 real gloo ranks under DDP with dropout (no Ray here)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import Interrupted

from sweeps.ray_start import free_port
from trainables.loop import run_loop
from trainables.session import LocalSession

KEYS = ("step", "epoch", "val_loss", "train_loss", "is_final")


class Resending(LocalSession):
    """A worker-group session in one process: a restored trial re-sends its reports."""

    resends_restored_reports = True

    def __init__(self, *args, dies_after: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.dies_after, self.with_checkpoint = dies_after, []

    def report(self, metrics, checkpoint_dir=None):
        super().report(metrics, checkpoint_dir)
        self.with_checkpoint.append(checkpoint_dir is not None)
        if self.dies_after is not None and len(self.reports) == self.dies_after:
            raise Interrupted


def _keys(reports):
    return [tuple(r[k] for k in KEYS) for r in reports]


def test_a_checkpoint_reports_ahead_of_the_driver_sends_every_report_again_once(make_trial, torch_one_thread,
                                                                               tmp_path):
    """The driver recorded none of the reports; the workers reported twice before they died,
    and only the second checkpoint is left. The restored trial sends both reports again, in
    order, then the rest: the uninterrupted trial's reports, each once, only the restored
    checkpoint's with a checkpoint."""
    cfg = make_trial(train={"epochs": 1, "eval_every_steps": 4}, eval={"generate": False})
    whole = LocalSession(tmp_path / "whole")
    run_loop(cfg, whole)
    assert [r["step"] for r in whole.reports] == [4, 8, 12, 16]

    dying = Resending(tmp_path / "dying", dies_after=2)
    with pytest.raises(Interrupted):
        run_loop(cfg, dying)
    resumed = Resending(tmp_path / "resumed", restore_from=dying.checkpoints[-1])
    run_loop(cfg, resumed)
    assert [r[:2] + r[4:] for r in _keys(resumed.reports)] == [r[:2] + r[4:] for r in _keys(whole.reports)]
    assert [r[2:4] for r in _keys(resumed.reports)] == [pytest.approx(r[2:4], rel=1e-6) for r in _keys(whole.reports)]
    assert resumed.with_checkpoint == [False, True, True, True]
    # The final checkpoint holds every report: a restore from it sends them all again.
    again = Resending(tmp_path / "again", restore_from=resumed.checkpoints[-1])
    assert run_loop(cfg, again)["is_final"] is True
    assert _keys(again.reports) == _keys(resumed.reports)


def test_a_one_process_restore_sends_nothing_again(make_trial, torch_one_thread, tmp_path):
    """A Tune function trial's checkpoint is Tune's own record: nothing is sent twice."""
    cfg = make_trial(train={"epochs": 1, "eval_every_steps": 8}, eval={"generate": False})
    dying = Resending(tmp_path / "dying", dies_after=1)
    with pytest.raises(Interrupted):
        run_loop(cfg, dying)
    resumed = LocalSession(tmp_path / "resumed", restore_from=dying.checkpoints[-1])
    run_loop(cfg, resumed)
    assert [r["step"] for r in resumed.reports] == [16]


def _ddp_rank(rank: int, port: int, cfg, root: str, results: str) -> None:
    """One rank: the uninterrupted trial, one interrupted after its first report, and that
    one restored from its checkpoint."""
    import os

    import torch
    import torch.distributed as dist

    from trainables.session import TrainSession

    class GlooSession(TrainSession):
        """TrainSession's collectives on this test's process group, DDP without Ray Train;
        rank 0 keeps the reports and copies the checkpoints (``LocalSession``'s layout)."""

        def __init__(self, name: str, *, dies_after: int | None = None, restore_from: Path | None = None):
            self.world_rank, self.world_size, self.strategy, self.lockstep = rank, 2, "ddp", False
            self.local = LocalSession(Path(root) / name, restore_from=restore_from)
            self.dies_after = dies_after

        @property
        def device(self):
            return torch.device("cpu")

        def prepare_model(self, model):
            return torch.nn.parallel.DistributedDataParallel(model)

        def report(self, metrics, checkpoint_dir=None):
            self.local.report(metrics, checkpoint_dir)
            dist.barrier()  # the checkpoint is copied before any rank reads it
            if self.dies_after is not None and len(self.local.reports) == self.dies_after:
                raise Interrupted

        def restored_checkpoint(self):
            return self.local.restored_checkpoint()

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    whole = GlooSession("whole")
    run_loop(cfg, whole)
    dying = GlooSession("dying", dies_after=1)
    try:
        run_loop(cfg, dying)
    except Interrupted:
        pass
    resumed = GlooSession("resumed", restore_from=Path(root) / "dying" / "checkpoint_000001")
    run_loop(cfg, resumed)
    if rank == 0:
        torch.save({"whole": _keys(whole.local.reports), "resumed": _keys(resumed.local.reports),
                    "history": [s.local.reports[-1]["history"]["train_loss"] for s in (whole, resumed)]}, results)
    dist.destroy_process_group()


@pytest.mark.integration
def test_a_ddp_restore_with_dropout_trains_on_as_the_uninterrupted_trial(make_trial, tmp_path):
    """Two gloo ranks, dropout in the model and the adapter: each rank's restored random
    number generator draws the masks that rank drew in the uninterrupted trial, so the resumed
    trial's second epoch (train losses and validation loss) is the uninterrupted trial's. The
    restored group sends its checkpoint's report again."""
    import torch
    import torch.multiprocessing as mp

    cfg = make_trial(train={"epochs": 2}, eval={"generate": False})
    assert cfg.adapter.dropout > 0
    results = tmp_path / "results.pt"
    mp.start_processes(_ddp_rank, args=(free_port(), cfg, str(tmp_path), str(results)), nprocs=2,
                       start_method="spawn")
    got = torch.load(results, weights_only=False)
    assert [k[0] for k in got["whole"]] == [16, 32]
    assert got["resumed"] == got["whole"]  # the first report sent again, the second trained again
    assert got["history"][1] == got["history"][0]
    shutil.rmtree(tmp_path / "dying", ignore_errors=True)
