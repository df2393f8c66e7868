"""The one training loop every task shares, as a recipe (torchtune's recipes are the model).

``Recipe(cfg, session).run()`` fine-tunes ``cfg.task``'s model with ``cfg.adapter``:
:meth:`~Recipe.setup` builds everything (data, model, adapter, warm start, loaders, optimizer,
schedule, a restored checkpoint), :meth:`~Recipe.train_epoch` trains one pass over the data and
reports at every evaluation point (each epoch, or every ``train.eval_every_steps`` optimizer
steps), :meth:`~Recipe.evaluate` computes the task's validation metrics,
:meth:`~Recipe.report` sends a :class:`~trainables.report.Report` and an adapter-only
checkpoint to the session, and :meth:`~Recipe.finish` makes the last report: the final
evaluation (E2E: beam search and BLEU, NIST, METEOR, ROUGE-L, CIDEr) on the best report's
weights where model selection is on.

Task-specific work (data, losses, decoding) lives in the task module; the loop never asks
which task it runs.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainables.report import Report

if TYPE_CHECKING:
    from trainables.config import TrialConfig
    from trainables.session import Session


class Recipe:
    """One trial, its state on the object (see the module docstring)."""

    def __init__(self, cfg: TrialConfig, session: Session, *, prepared: Path | None = None,
                 adapters: dict[str, str] | None = None):
        """``adapters`` maps ``adapter.init_from`` values to the local directories the driver
        resolved (a trial resolves a value itself when it is missing)."""
        if cfg.seed is None:
            raise ValueError("the loop needs a resolved seed (the runner derives one per trial)")
        self.cfg, self.session = cfg, session
        self._prepared, self._adapters = prepared, adapters or {}
        self.t0 = time.perf_counter()
        self.step = 0
        self.last: dict[str, Any] = {}
        self.samples = self.tokens = 0
        self.train_s = 0.0
        self.history: dict[str, list[float]] = {}
        self.since_report: list[float] = []
        self.reports: list[dict[str, Any]] = []
        """Every report sent so far (a restored trial's from its checkpoint on), kept in each
        checkpoint."""

    # ----------------------------------------------------------------------------- setup
    def setup(self) -> bool:
        """Build the trial; False when it is already over (restored from its final checkpoint:
        the driver stopped before Tune recorded the end, and a trial that stopped early must
        not train on past the step it stopped at)."""
        import torch

        from trainables.adapters import build_adapter_model, count_parameters
        from trainables.batching import batching_mode, train_batches, val_batches
        from trainables.devices import MemoryTracker, Precision, seed_everything
        from trainables.early_stopping import EarlyStopping
        from trainables.optim import build_optimizer, build_scheduler, plan_steps
        from trainables.tasks.registry import get_task

        cfg, session = self.cfg, self.session
        self.task = task = get_task(cfg.task)
        seed_everything(cfg.seed)
        t_data = time.perf_counter()
        self.data = task.load_prepared(self._prepared or task.prepare(cfg, progress=False), cfg)
        self.data_s = time.perf_counter() - t_data

        model, self.tokenizer = task.load_model(cfg)
        mode = batching_mode(task, cfg, model)
        model = build_adapter_model(model, cfg.adapter, task_type=task.peft_task_type)
        if cfg.adapter.init_from:
            self._warm_start(model)
        self.params = count_parameters(model)
        self.device = session.device
        self.precision = Precision(cfg.train.precision, self.device)
        self.history = self._new_history()
        self.model = session.prepare_model(model)
        self.setup_s = time.perf_counter() - self.t0

        self.train_loader = train_batches(task, self.data, cfg, self.tokenizer, mode=mode, session=session)
        self.val_loader = val_batches(task, self.data, cfg, self.tokenizer, mode=mode, session=session)
        self.plan = plan_steps(cfg.train, len(self.data.train), world_size=session.world_size)
        self.optimizer = build_optimizer(self.model, cfg.train, cfg.adapter)
        self.scheduler = build_scheduler(self.optimizer, cfg.train, self.plan)
        done = self._restore()
        self.start_step = self.step
        self.eval_steps = set(self.plan.eval_steps)
        self.memory = MemoryTracker(self.device)
        train = cfg.train
        self.stopper = (EarlyStopping(train.early_stopping_patience, task.metric.name, task.metric.mode)
                        if train.early_stopping_patience or train.keep_best else None)
        self.running, self.running_micro = torch.zeros((), device=self.device), 0
        return not done

    def _restore(self) -> bool:
        """Load the checkpoint the trial is restored from, if any; whether it was the trial's
        final one. Each rank takes back its own random number generator state."""
        from trainables.checkpointing import restore_checkpoint, saved_reports

        session = self.session
        with session.restored_checkpoint() as ckpt:
            if ckpt is None:
                return False
            self.step, done = restore_checkpoint(ckpt, model=self.model, optimizer=self.optimizer,
                                                 scheduler=self.scheduler, scaler=self.precision,
                                                 rank=session.world_rank, device=self.device)
            self.reports = saved_reports(ckpt)
            if session.resends_restored_reports and self.reports:
                self._resend(ckpt)
        return done

    def _resend(self, ckpt: Path) -> None:
        """Send again every report the restored checkpoint holds, in order, the last with a
        copy of the checkpoint.

        Ray Train's storage may be any number of reports ahead of what Tune recorded: the
        driver died while the workers reported on (the checkpoints of the reports it never
        received deleted after them, ``num_to_keep``), and the Tune trial, which holds no
        checkpoint of its own, restarts without knowing which reports it has. The driver's
        consumers keep each report once: MLflow skips a step already recorded, ASHA a rung
        the trial already reached, Optuna a step already told."""
        import shutil

        from trainables.session import scratch_dir

        session = self.session
        *earlier, last = self.reports
        for result in earlier:
            session.report(result, None)
        with scratch_dir("lorasweep-ckpt-") as out:  # reporting a directory may move it
            if session.is_chief:
                shutil.copytree(ckpt, out, dirs_exist_ok=True)
            session.report(last, out if session.is_chief else None)
        self.last = last

    def _warm_start(self, model: Any) -> None:
        from trainables.adapters import warm_start

        source = self._adapters.get(self.cfg.adapter.init_from)
        if source is None or not Path(source).is_dir():
            from trainables.mlflow_names import default_tracking_uri
            from trainables.warmstart import resolve_init_from

            source = resolve_init_from(self.cfg.adapter.init_from, default_tracking_uri())
        warm_start(model, source)

    # ----------------------------------------------------------------------------- run
    def run(self) -> dict[str, Any]:
        """Train to the end (or until early stopping ends the trial, or the scheduler stops
        it); the last report, as Tune received it."""
        if not self.setup():
            return self.last
        self.model.train()
        first = self.start_step // self.plan.steps_per_epoch
        for epoch in range(first, math.ceil(self.plan.total_steps / self.plan.steps_per_epoch)):
            if self.train_epoch(epoch):
                break
        return self.last

    def train_epoch(self, epoch: int) -> bool:
        """One pass over the training data (the rest of it, after a restore); True when the
        trial is over."""
        from trainables.batching import batch_counts
        from trainables.devices import to_device

        cfg, plan = self.cfg, self.plan
        skip = max((self.start_step - epoch * plan.steps_per_epoch) * cfg.train.grad_accum, 0)
        t_step, micro = time.perf_counter(), 0
        for i, batch in _batches_for_epoch(self.train_loader, epoch, skip):
            batch = to_device(batch, self.device)
            micro += 1
            last = not micro % cfg.train.grad_accum or i == plan.micro_batches_per_epoch - 1
            with _gradient_sync(self.model, last):
                with self.precision.autocast():
                    loss = self.task.train_loss(self.model, batch, cfg)
                loss = loss * self._rank_weight(batch) / cfg.train.grad_accum
                self.precision.backward(loss)
            self.running += loss.detach()
            self.running_micro += 1
            n_examples, n_tokens = batch_counts(batch)
            self.samples += n_examples
            self.tokens += n_tokens
            if not last:
                continue
            self._optimizer_step()
            if self.step in self.eval_steps:
                self.train_s += time.perf_counter() - t_step
                if self._evaluation_point():
                    return True
                t_step = time.perf_counter()
            if self.step >= plan.total_steps:
                return True
        self.train_s += time.perf_counter() - t_step
        return False

    def _rank_weight(self, batch: dict[str, Any]) -> float:
        """The factor on this rank's mean loss under DDP, which averages the ranks' gradients:
        its share of the global batch's targets times the number of ranks, so that the average
        is the gradient of the mean over all the targets, as one process computes it on the
        whole batch (1 in a one-process trial)."""
        world = self.session.world_size
        if world == 1:
            return 1.0
        n = self.task.train_targets(batch)
        total = self.session.all_reduce_sum([float(n)])[0]
        return n * world / total if total else 1.0

    def _optimizer_step(self) -> None:
        train = self.cfg.train
        params = [p for p in self.model.parameters() if p.requires_grad]
        # An fp16 step skipped for overflowing gradients leaves the schedule where it was
        # (as transformers' Trainer does): the learning rate follows the updates made.
        if self.precision.step(self.optimizer, params, train.max_grad_norm):
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        if self.step % train.log_every_steps == 0 or self.step in self.eval_steps:
            self._log_train_loss()

    def _log_train_loss(self) -> None:
        import torch

        # Every rank's weighted loss summed over the ranks is the global batch's mean loss
        # times the number of ranks (see _rank_weight); each micro-batch's was divided by
        # grad_accum, so the mean over the micro-batches since the last log is:
        total = self.session.all_reduce_sum([float(self.running)])[0] / self.session.world_size
        value = total * self.cfg.train.grad_accum / self.running_micro
        lr = self.scheduler.get_last_lr()[0]
        if not math.isfinite(value):
            raise FloatingPointError(f"train loss is {value} at step {self.step} (lr {lr:.3g})")
        self.history["step"].append(self.step)
        self.history["train_loss"].append(value)
        self.history["lr"].append(lr)
        if self.precision.loss_scale is not None:
            self.history["loss_scale"].append(self.precision.loss_scale)
        self.since_report.append(value)
        self.running, self.running_micro = torch.zeros((), device=self.device), 0
        self.memory.sample()

    def _evaluation_point(self) -> bool:
        """Report (the last step's report is the final one); True when the trial is over, which
        early stopping decides after a report without improvement."""
        if self.step == self.plan.total_steps:
            self.finish()
            return True
        self.last = self.report(final=False)
        value = self.last.get(self.task.metric.name)
        if self.stopper is not None and value is not None and self.stopper.update(
                float(value), model=self.model, step=self.step, epoch=self.plan.epoch_at(self.step)):
            self.finish(stopped=True)
            return True
        return False

    # ----------------------------------------------------------------------------- reports
    def evaluate(self) -> dict[str, float]:
        """The task's validation metrics (every rank takes part under DDP)."""
        from trainables.devices import unwrap

        # The model without its DDP wrapper: the ranks evaluate different numbers of batches,
        # and a DDP forward may synchronise buffers across them (under FSDP, which has no
        # wrapper, the ranks' batches are evened out: trainables.batching.RankBatches).
        return self.task.validate(unwrap(self.model), self.val_loader, device=self.device,
                                  session=self.session, precision=self.cfg.train.precision)

    def finish(self, *, stopped: bool = False) -> None:
        """The trial's last report, on its best report's weights where model selection is on:
        restored now when early stopping ended it (``stopped``), else once the last report's
        own metrics are counted (a trial that trained to its last step is evaluated, like one
        stopped early, on the weights of its best report)."""
        stopper, epoch = self.stopper, self.plan.epoch_at(self.step)
        if stopped:
            stopper.restore(self.model)
            self.last = self.report(final=True, extra={
                "stopped_early_at": epoch, "best_epoch": stopper.best_epoch, "best_step": stopper.best_step,
                "final_note": f"early stopping: no {self.task.metric.name} improvement in "
                              f"{stopper.patience} report(s); weights of the best report restored for "
                              "the final evaluation"})
            return
        val = self.evaluate()
        extra: dict[str, Any] = {}
        if stopper is not None:
            val, extra = stopper.final(val, model=self.model, step=self.step, epoch=epoch,
                                       revalidate=self.evaluate)
        self.last = self.report(final=True, extra=extra, val=val)

    def report(self, *, final: bool, extra: dict[str, Any] | None = None,
               val: dict[str, float] | None = None) -> dict[str, Any]:
        """Validate (unless ``val`` is given), and send the report and a checkpoint; the final
        report first runs the task's final evaluation. Returns the result Tune received."""
        from trainables.checkpointing import OUTPUTS_DIR, rng_state, save_checkpoint
        from trainables.devices import unwrap
        from trainables.fsdp import gather_state, is_sharded
        from trainables.session import scratch_dir

        session = self.session
        report = self._report(val if val is not None else self.evaluate(), final, extra or {})
        # The collectives of the checkpoint come before any work rank 0 does alone (the final
        # evaluation, scoring, a judge, writing the checkpoint): a rank that waited in one of the
        # process group's collectives for rank 0 would fail once it had waited the group's
        # timeout (Ray Train's TorchConfig.timeout_s), however long the work takes. The ranks
        # meet again in the session's report, which does not time out.
        # A sharded model's adapter and optimizer state, gathered on rank 0:
        gathered = gather_state(self.model, self.optimizer) if is_sharded(self.model) else None
        rng_states = session.all_gather(rng_state(self.device))  # every rank's dropout generators
        # Under FSDP every forward is a collective: a final evaluation that does not split
        # over the ranks runs on all of them (rank 0's outputs are kept).
        everywhere = self.task.shards_final_eval or session.lockstep
        with scratch_dir("lorasweep-ckpt-") as out:
            if final and self.cfg.eval.generate and (session.is_chief or everywhere):
                t_gen = time.perf_counter()
                report.scores = self.task.final_eval(unwrap(self.model), self.tokenizer, self.data, self.cfg,
                                                     device=self.device, out_dir=out / OUTPUTS_DIR,
                                                     session=session)
                report.generate_s = time.perf_counter() - t_gen
                self.model.train()
            report.wall_s = time.perf_counter() - self.t0
            result = report.to_result()
            self.reports.append(result)
            if session.is_chief:
                save_checkpoint(out, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                                step=self.step, cfg=self.cfg, final=final, scaler=self.precision, result=result,
                                gathered=gathered, reports=self.reports, rng_states=rng_states)
            session.report(result, out if session.is_chief else None)
        self.history, self.since_report = self._new_history(), []
        return result

    def _new_history(self) -> dict[str, list[float]]:
        """The per-log-step values of the next report (the fp16 loss scale too)."""
        keys = ("step", "train_loss", "lr") + (("loss_scale",) if self.precision.loss_scale is not None else ())
        return {k: [] for k in keys}

    def _report(self, val: dict[str, float], final: bool, extra: dict[str, Any]) -> Report:
        world, train_s = self.session.world_size, self.train_s
        image_batches = self.samples and not self.tokens
        return Report(
            epoch=self.plan.epoch_at(self.step), step=self.step, validation=val,
            train_loss=sum(self.since_report) / len(self.since_report) if self.since_report else float("nan"),
            lr=self.scheduler.get_last_lr()[0], trainable_params=self.params.trainable,
            total_params=self.params.total, trainable_pct=self.params.percent, seed=self.cfg.seed,
            samples_per_s=self.samples * world / train_s if train_s else 0.0,
            tokens_per_s=None if image_batches else (self.tokens * world / train_s if train_s else 0.0),
            peak_mem_mb=self.memory.peak_mb(), peak_mem_kind=self.memory.kind, setup_s=self.setup_s,
            data_s=self.data_s, wall_s=time.perf_counter() - self.t0, history=self.history,
            is_final=final, trial_params=self.data.params, **extra)


def _batches_for_epoch(loader: Any, epoch: int, skip: int):
    """(index, batch) of one epoch; the first ``skip`` micro-batches (already trained on
    before a restore) are passed over.

    A DataLoader's iterator draws its base seed from torch's global generator as it starts:
    the uninterrupted trial drew it at the epoch's start, before the checkpoint's generator
    state was saved, so an epoch resumed part-way undoes that draw (its dropout masks go on
    from the saved state)."""
    import torch

    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):  # DistributedSampler under DDP
        sampler.set_epoch(epoch)
    state = torch.get_rng_state()
    batches = iter(loader)
    if skip:
        torch.set_rng_state(state)
    for i, batch in enumerate(batches):
        if i >= skip:
            yield i, batch


def _gradient_sync(model: Any, sync: bool) -> Any:
    """DDP's ``no_sync`` on the micro-batches before the last of an optimizer step (their
    gradients are summed locally and all-reduced once, with the last one's); FSDP2's
    ``set_requires_gradient_sync`` likewise (reduce-scattered once)."""
    import contextlib

    from trainables.fsdp import is_sharded, set_gradient_sync

    if is_sharded(model):
        set_gradient_sync(model, sync)
        return contextlib.nullcontext()
    if sync or not hasattr(model, "no_sync"):
        return contextlib.nullcontext()
    return model.no_sync()


def run_loop(cfg: TrialConfig, session: Session, *, prepared: Path | None = None,
             adapters: dict[str, str] | None = None) -> dict[str, Any]:
    """Train one trial (:class:`Recipe`); returns its last report as Tune received it."""
    return Recipe(cfg, session, prepared=prepared, adapters=adapters).run()
