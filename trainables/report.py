"""What a trial reports at each evaluation point: one typed record.

The loop builds a :class:`Report`; Tune receives it flat (:meth:`Report.to_result`, the
trial's validation metrics and final scores at the top level beside the fields below); the
MLflow recorder, the sweep summary and ``analysis/`` read the same names through :data:`K`
(``K.trainable_pct`` is ``"trainable_pct"``), so no key is a loose string in each of them.
Importing this module imports nothing heavy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any


@dataclass
class Report:
    epoch: float
    """Data passes done (optimizer steps / steps per epoch): ASHA's time unit."""
    step: int
    """Optimizer steps done: the MLflow step of everything this report logs."""
    validation: dict[str, float]
    """The task's validation metrics (``val_loss``, ``val_accuracy``, ...), flattened into the
    result: ASHA and the search read the task's ``metric`` among them."""
    train_loss: float
    """Mean train loss since the previous report."""
    lr: float
    trainable_params: int
    total_params: int
    trainable_pct: float
    seed: int
    samples_per_s: float
    tokens_per_s: float | None
    """None for batches without tokens (images)."""
    peak_mem_mb: float
    peak_mem_kind: str
    """``cuda_max_allocated`` or ``process_rss``."""
    setup_s: float
    data_s: float
    wall_s: float
    history: dict[str, list[float]]
    """``step``, ``train_loss``, ``lr`` (and with fp16 ``loss_scale``, the gradient scaler's
    factor: it halves at each step skipped for overflowing gradients) at every log step since
    the previous report."""
    is_final: bool = False
    """The trial's last report: it carries the final scores."""
    trial_params: dict[str, Any] = field(default_factory=dict)
    """Settings the trial derived from its data (a regression task's target mean and std)."""
    scores: dict[str, Any] = field(default_factory=dict)
    """The task's final metrics (BLEU, ...; ``<metric>/<model>`` per compared model), a
    ``final_note`` and ``tables`` (artifacts in MLflow's table format), flattened into the
    result."""
    generate_s: float | None = None
    stopped_early_at: float | None = None
    """The epoch early stopping ended the trial at."""
    best_epoch: float | None = None
    """The report whose weights the final metrics come from (early stopping, keep_best)."""
    best_step: int | None = None
    last_validation: dict[str, float] = field(default_factory=dict)
    """The last report's own validation metrics (``last_val_loss``, ...) when the final
    metrics come from restored weights: that report's point on the learning curve."""
    final_note: str | None = None

    def to_result(self) -> dict[str, Any]:
        """The flat result Tune receives: the fields in their order (the unset final extras
        left out) with the validation metrics in place of ``validation``, then the final
        scores. Tune's progress table shows the first few numeric keys: epoch, step and the
        validation metrics lead. The trial's note and the task's (``scores``' ``final_note``)
        are joined."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("validation", "last_validation"):
                out.update(value)
            elif f.name != "scores" and not (f.name in FINAL_EXTRAS + ("final_note",) and value is None):
                out[f.name] = value
        notes = [n for n in (self.final_note, self.scores.get("final_note")) if n]
        return {**out, **self.scores, **({"final_note": "; ".join(notes)} if notes else {})}


#: Every field's name: ``K.trainable_pct == "trainable_pct"``.
K = SimpleNamespace(**{f.name: f.name for f in dataclasses.fields(Report)})
#: The validation loss, which every task reports (the default metric to optimise).
VAL_LOSS = "val_loss"
#: Logged at every report's step (with the task's validation metrics).
PER_REPORT = (VAL_LOSS, K.epoch, K.samples_per_s, K.tokens_per_s, K.peak_mem_mb, K.wall_s)
#: Logged once per trial.
ONCE = (K.trainable_params, K.total_params, K.trainable_pct, K.setup_s, K.data_s)
#: Logged with the final report, when set.
FINAL_EXTRAS = (K.generate_s, K.stopped_early_at, K.best_epoch, K.best_step)
#: Before a validation metric's name: the last report's own value, where the final report's
#: comes from restored weights (``last_val_loss``).
LAST_PREFIX = "last_"
