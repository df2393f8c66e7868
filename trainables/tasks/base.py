"""What a task module provides to the one shared training loop.

A task family (causal-LM data-to-text, sequence classification, ...) subclasses :class:`Task`
and fills in data, model, losses and the final evaluation; the loop in
:mod:`trainables.loop` never asks which task it runs (composition over flags). Metric names
and their directions are declared here once, on the task, and used by the trial's reports,
ASHA, the search algorithm, the MLflow record and the summary table.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from trainables.errors import JSON_TOO_DEEP, UserError, not_utf8, one_of
from trainables.report import VAL_LOSS

if TYPE_CHECKING:
    import torch

    from trainables.config import TrialConfig


#: Data settings (of ``DataConfig``) that only some tasks read; each task lists those it reads
#: in :attr:`Task.data_settings`, and a sweep that gives one to a task that does not read it
#: (a value other than the default) is refused before launch.
TASK_DATA_SETTINGS = ("split", "augment", "augment_prob", "augment_copies", "synonyms", "predict_file",
                      "predict_labels", "columns", "image_size")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    mode: Literal["min", "max"]
    label: str = ""
    """Column heading in tables (defaults to the name)."""
    fmt: str = "{:.4f}"

    @property
    def heading(self) -> str:
        return self.label or self.name


@dataclass
class Prepared:
    """A task's data as a trial uses it (built once per sweep, opened by every trial)."""

    train: Any
    """A ``torch.utils.data.Dataset`` of training examples."""
    val: Any
    """A ``torch.utils.data.Dataset`` for the validation loss."""
    test: Any
    """Whatever :meth:`Task.final_eval` needs (E2E: prompts grouped with their references)."""
    stats: dict[str, Any] = field(default_factory=dict)
    """Counts and hashes recorded in MLflow (examples, truncations, data fingerprint)."""
    path: Path | None = None
    params: dict[str, Any] = field(default_factory=dict)
    """Settings a trial derives from its own training data (the regression targets' mean and
    standard deviation), recorded as MLflow params of the trial."""


class Task(ABC):
    """One task family's data, model, losses and evaluation."""

    name: ClassVar[str]
    peft_task_type: ClassVar[str] = "causal_lm"
    metric: ClassVar[MetricSpec] = MetricSpec(VAL_LOSS, "min", "val loss")
    """The metric ASHA and the search algorithm optimise; reported at every evaluation."""
    report_metrics: ClassVar[tuple[MetricSpec, ...]] = (MetricSpec(VAL_LOSS, "min", "val loss"),)
    """Everything :meth:`validate` returns at every evaluation (includes :attr:`metric`);
    logged to MLflow per report and shown in the summary table."""
    final_metrics: ClassVar[tuple[MetricSpec, ...]] = ()
    """Computed once, for trials that reach their last report."""
    formats: ClassVar[tuple[str, ...]] = ()
    """Accepted values of ``data.format`` (the first is the default)."""
    batchings: ClassVar[tuple[str, ...]] = ("random",)
    """Accepted values of ``train.batching`` (the first is the default). ``grouped`` needs a
    training set with ``lengths()``; ``padding_free`` needs :meth:`packed_collate`."""
    data_settings: ClassVar[tuple[str, ...]] = ()
    """Which of :data:`TASK_DATA_SETTINGS` the task reads (the others it leaves at their defaults)."""

    # ----------------------------------------------------------- driver side, before launch
    @abstractmethod
    def check(self, cfg: TrialConfig) -> None:
        """Fast checks of the data source and task options; raise UserError naming the field."""

    def prepare(self, cfg: TrialConfig, *, progress: bool = True) -> Path:
        """Tokenise the data into the cache once, as ``<cache>/data/<task>-<key>`` (the key is
        :meth:`_key`, a hash of everything the content depends on, built by :meth:`_build`);
        return its directory. When it is built already, the tokenizer is not loaded (its
        digest is memoised for a local model directory), so transformers is not imported."""
        from trainables.cache import build_once, is_built
        from trainables.paths import cache_dir
        from trainables.models import load_tokenizer, tokenizer_identity

        key = self._key(cfg, tokenizer_identity(cfg))
        final = cache_dir() / "data" / f"{self.name}-{key}"
        if is_built(final):
            return final
        tokenizer = load_tokenizer(cfg)
        return build_once(final.parent, final.name,
                          lambda tmp: self._build(cfg, tokenizer, tmp, key=key, progress=progress))

    @abstractmethod
    def _key(self, cfg: TrialConfig, tokenizer_id: str | None) -> str:
        """The cache key of the prepared data (data identity, the tokenizer's digest
        ``tokenizer_id``, preprocessing)."""

    @abstractmethod
    def _build(self, cfg: TrialConfig, tokenizer: Any, out: Path, *, key: str, progress: bool) -> None:
        """Write the prepared data into ``out`` (renamed into place when complete)."""

    @abstractmethod
    def skeleton(self, cfg: TrialConfig) -> Any:
        """The model built from its config on the meta device (no weights), to check adapter
        targets against its module tree before launch."""

    # ----------------------------------------------------------- trial side
    @abstractmethod
    def load_prepared(self, path: Path, cfg: TrialConfig) -> Prepared:
        """Open what :meth:`prepare` wrote (cheap: memory-mapped arrays)."""

    @abstractmethod
    def load_model(self, cfg: TrialConfig) -> tuple[Any, Any]:
        """The frozen-to-be base model and its tokenizer/processor."""

    @abstractmethod
    def collate(self, tokenizer: Any) -> Callable[[list[Any]], dict[str, torch.Tensor]]:
        """Batch builder for the train and validation datasets."""

    def packed_collate(self, tokenizer: Any) -> Callable[[list[Any]], dict[str, torch.Tensor]]:
        """Batch builder for ``train.batching: padding_free``: the examples concatenated into
        one row with ``position_ids`` restarting at each, no padding and no attention mask."""
        raise NotImplementedError(f"{self.name} has no padding-free batches")

    @abstractmethod
    def train_loss(self, model: Any, batch: dict[str, torch.Tensor], cfg: TrialConfig) -> torch.Tensor:
        """The training objective for one batch (mean over its targets)."""

    def train_targets(self, batch: dict[str, torch.Tensor]) -> int:
        """How many targets :meth:`train_loss` averages over (by default the batch's examples),
        so that the ranks of a DDP trial weight their losses as one batch of all their targets."""
        return int(batch["labels"].shape[0])

    @abstractmethod
    def eval_loss(self, model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Sum of the validation loss over a batch's targets, and how many targets it had."""

    def validate(self, model: Any, loader: Any, *, device: torch.device, session: Any,
                 precision: str) -> dict[str, float]:
        """Metrics on the validation set at every report (ASHA reads :attr:`metric` from it).
        The default is the validation loss; a classifier adds accuracy, F1, ... ."""
        return {VAL_LOSS: evaluate_loss(self, model, loader, device, session, precision)}

    shards_final_eval: ClassVar[bool] = False
    """Whether :meth:`final_eval` runs on every rank of a worker group, sharing its work through
    ``session`` (beam search), rather than on rank 0 alone while the others wait."""
    final_eval_on_every_rank: ClassVar[bool] = True
    """Whether :meth:`final_eval` may run on every rank of an FSDP trial (whose every forward is
    a collective: a final evaluation that does not split runs whole on each rank, rank 0's
    result kept). False where it calls out (a judge) or loads other models: refused under
    FSDP."""

    @abstractmethod
    def final_eval(self, model: Any, tokenizer: Any, data: Prepared, cfg: TrialConfig, *,
                   device: torch.device, out_dir: Path, session: Any = None) -> dict[str, Any]:
        """Task metrics at the end of a full trial; may write outputs into ``out_dir``. A
        metric that could not be computed is None, with the reason in ``final_note``. Where
        :attr:`shards_final_eval`, every rank calls it with its ``session`` and rank 0's
        result is the trial's."""

    def decoding(self, cfg: TrialConfig, tokenizer: Any) -> dict[str, Any] | None:
        """The ``generate`` arguments :meth:`final_eval` decodes with (greedy or beam search,
        the ``eval`` settings, the stop and pad tokens), which an export writes to its
        ``generation_config.json`` so that ``generate`` with its defaults decodes as the trial
        did; None where the task does not generate text."""
        return None

    def default_format(self) -> str | None:
        return self.formats[0] if self.formats else None

    def batching(self, cfg: TrialConfig) -> str:
        """The trial's ``train.batching``, or the task's default; a mode the task has no
        batches for is a UserError."""
        mode = cfg.train.batching or self.batchings[0]
        if mode not in self.batchings:
            raise UserError("train.batching", f"{self.name} has no {mode} batches; accepted: "
                                              f"{one_of(self.batchings)} (null: {self.batchings[0]})")
        return mode


def packed(seqs: Sequence[Sequence[int]], dtype: Any = "int32") -> tuple[Any, Any]:
    """Variable-length sequences as one flat array and their offsets (``offsets[i]`` to
    ``offsets[i + 1]`` is sequence ``i``): how tokenised datasets are stored, so that a trial
    memory-maps them instead of unpickling lists."""
    import numpy as np

    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter((t for s in seqs for t in s), dtype=dtype, count=int(offsets[-1]))
    return flat, offsets


@contextlib.contextmanager
def utf8_text(path: Path, field: str, *, newline: str | None = None) -> Iterator[Any]:
    """``open(path)`` as UTF-8 text (a byte-order mark is skipped). Bytes that are not UTF-8,
    wherever the reading meets them, are a UserError on ``field`` naming the file, the line and
    the byte."""
    try:
        with open(path, encoding="utf-8-sig", newline=newline) as fh:
            yield fh
    except UnicodeDecodeError:
        raise UserError(field, not_utf8(path)) from None


def jsonl_records(path: Path, field: str) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed value)`` for each non-blank line of a JSON Lines file. Text that
    is not UTF-8, or a line that is not JSON, is a UserError on ``field`` naming the file and
    the line."""
    import json

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserError(field, not_utf8(path)) from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(field, f"{path} line {n}: not valid JSON ({e.msg})") from None
        except RecursionError:
            raise UserError(field, f"{path} line {n}: {JSON_TOO_DEEP}") from None
        yield n, value


@dataclass(frozen=True)
class TargetScale:
    """Regression targets standardised for training (``data.standardize_targets``): the model
    learns z = (y - mean) / std, and its outputs are mapped back, y = mean + std * z, before
    they are compared with labels. ``std`` is the population standard deviation of the
    training labels (1 when they are all equal)."""

    mean: float
    std: float

    @classmethod
    def of(cls, labels: Any) -> TargetScale:
        import numpy as np

        y = np.asarray(labels, dtype=np.float64)
        std = float(y.std())
        return cls(float(y.mean()), std if std > 0 else 1.0)

    def standardize(self, y: Any) -> Any:
        return (y - self.mean) / self.std

    def restore(self, z: Any) -> Any:
        return self.mean + self.std * z


def evaluation_batches(loader: Any) -> Iterator[tuple[dict[str, Any], bool]]:
    """``(batch, counted)`` of an evaluation loader: a batch that only keeps an FSDP rank in
    step with the others (:class:`trainables.batching.RankBatches` ``even``) is run and not
    counted."""
    counted = getattr(loader.batch_sampler, "counted", None)
    for i, batch in enumerate(loader):
        yield batch, counted is None or i < counted


def evaluate_loss(task: Task, model: Any, loader: Any, device: torch.device, session: Any,
                  precision: str) -> float:
    """The mean validation loss over ``loader``'s targets (summed over ranks under DDP)."""
    import torch

    from trainables.devices import autocast, to_device

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad(), autocast(precision, device):
        for batch, counted in evaluation_batches(loader):
            s, n = task.eval_loss(model, to_device(batch, device))
            if counted:
                total += float(s)
                count += n
    model.train()
    total, count = session.all_reduce_sum([total, float(count)])
    return total / max(count, 1.0)


class PerExampleLogits:
    """Evaluation for tasks whose model gives one row of logits per example and whose batches
    carry each example's ``index`` and ``labels`` (text and image classification). A task
    defines ``_logits(model, batch)``, ``_loss(logits, labels, reduction)`` and, if it is not
    the argmax, ``_prediction(logits)``."""

    def _logits(self, model: Any, batch: dict[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor, reduction: str) -> torch.Tensor:
        raise NotImplementedError

    def _prediction(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(-1)

    def eval_loss(self, model: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
        return self._loss(self._logits(model, batch), batch["labels"], "sum"), len(batch["labels"])

    def _predict(self, model: Any, loader: Any, device: Any,
                 precision: str = "fp32") -> tuple[list[int], list[Any], list[Any], float]:
        """(indices, predictions, labels, loss sum) over a loader, in eval mode. A dataset with
        a ``target_scale`` (:class:`TargetScale`) holds labels in the task's units for a model
        trained on standardised targets: its outputs are mapped back before the loss and the
        predictions."""
        import torch

        from trainables.devices import autocast

        scale: TargetScale | None = getattr(loader.dataset, "target_scale", None)
        model.eval()
        idx, preds, labels, loss = [], [], [], 0.0
        with torch.no_grad(), autocast(precision, device):
            for batch, counted in evaluation_batches(loader):
                batch = {k: v.to(device) for k, v in batch.items()}
                logits = self._logits(model, batch)
                if not counted:
                    continue
                if scale is not None:
                    logits = scale.restore(logits.float())
                loss += float(self._loss(logits, batch["labels"], "sum"))
                idx += batch["index"].tolist()
                preds += self._prediction(logits).tolist()
                labels += batch["labels"].tolist()
        model.train()
        return idx, preds, labels, loss

    def _gathered(self, model: Any, loader: Any, device: Any, session: Any,
                  precision: str) -> tuple[list[Any], list[Any], float]:
        """:meth:`_predict` on every rank, merged: (predictions, labels) in index order, each
        example once (under DDP each rank saw a shard, padded to equal size), and the mean
        loss."""
        merged: dict[int, tuple[Any, Any]] = {}
        total = 0.0
        for r_idx, r_preds, r_labels, r_loss in session.all_gather(
                self._predict(model, loader, device, precision)):
            total += r_loss
            merged.update({i: (p, y) for i, p, y in zip(r_idx, r_preds, r_labels)})
        order = sorted(merged)
        return ([merged[i][0] for i in order], [merged[i][1] for i in order],
                total / max(len(merged), 1))
