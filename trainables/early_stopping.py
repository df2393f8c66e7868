"""Model selection on the validation set: the best report's weights, kept and restored.

``train.early_stopping_patience`` stops a trial after N reports without improvement of the
task's metric; ``train.keep_best`` never stops it. Either way the trial's final evaluation runs
on the weights of its best report.
"""

from __future__ import annotations

import math
from typing import Any

from trainables.devices import unwrap
from trainables.report import LAST_PREFIX


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

    def final(self, val: dict[str, Any], *, model: Any, step: int, epoch: float,
              revalidate: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """The last report's validation metrics and what the final report adds, once the last
        report has been counted: the best report's weights restored (and ``revalidate``-d)
        when the last report was not the best, with the last report's own validation metrics
        as ``last_validation``. ``best_epoch``/``best_step`` say which report's weights the
        final metrics come from."""
        value = val.get(self.metric)
        if value is not None:
            self.update(float(value), model=model, step=step, epoch=epoch)
        if self.best is None:
            return val, {}
        extra: dict[str, Any] = {"best_epoch": self.best_epoch, "best_step": self.best_step}
        if self.best_step != step:
            # The last report's own metrics stay in the record (``last_*``): its point on
            # the learning curve, which the restored weights' metrics replace as the result.
            extra["last_validation"] = {f"{LAST_PREFIX}{k}": v for k, v in val.items()}
            self.restore(model)
            val = revalidate()
            reason = "early stopping" if self.patience is not None else "keep_best"
            extra["final_note"] = (f"{reason}: the last report's {self.metric} was not the best; weights "
                                   f"of the best report (epoch {self.best_epoch:g}) restored for the final "
                                   "evaluation")
        return val, extra
