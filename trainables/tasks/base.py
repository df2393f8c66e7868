"""What a task module provides to the one shared training loop.

A task family (causal-LM data-to-text, sequence classification, ...) subclasses :class:`Task`
and fills in data, model, losses and the final evaluation; the loop in
:mod:`trainables.loop` never asks which task it runs (composition over flags). Metric names
and their directions are declared here once, on the task, and used by the trial's reports,
ASHA, the search algorithm, the MLflow record and the summary table.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    import torch

    from trainables.config import TrialConfig


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


class Task(ABC):
    """One task family's data, model, losses and evaluation."""

    name: ClassVar[str]
    peft_task_type: ClassVar[str] = "causal_lm"
    metric: ClassVar[MetricSpec] = MetricSpec("val_loss", "min", "val loss")
    """The metric ASHA and the search algorithm optimise; reported at every evaluation."""
    report_metrics: ClassVar[tuple[MetricSpec, ...]] = (MetricSpec("val_loss", "min", "val loss"),)
    """Everything :meth:`validate` returns at every evaluation (includes :attr:`metric`);
    logged to MLflow per report and shown in the summary table."""
    final_metrics: ClassVar[tuple[MetricSpec, ...]] = ()
    """Computed once, for trials that reach their last report."""
    formats: ClassVar[tuple[str, ...]] = ()
    """Accepted values of ``data.format`` (the first is the default)."""
    reference: ClassVar[dict[str, float]] = {}
    """Published numbers printed beside results (metric name -> value)."""
    reference_note: ClassVar[str] = ""

    # ----------------------------------------------------------- driver side, before launch
    @abstractmethod
    def check(self, cfg: TrialConfig) -> None:
        """Fast checks of the data source and task options; raise UserError naming the field."""

    def prepare(self, cfg: TrialConfig, *, progress: bool = True) -> Path:
        """Tokenise the data into the cache once, as ``<cache>/data/<task>-<key>`` (the key is
        :meth:`_key`, a hash of everything the content depends on, built by :meth:`_build`);
        return its directory."""
        from trainables.cache import build_once
        from trainables.paths import cache_dir
        from trainables.tasks.causal_lm import load_tokenizer

        tokenizer = load_tokenizer(cfg)
        key = self._key(cfg, tokenizer)
        return build_once(cache_dir() / "data", f"{self.name}-{key}",
                          lambda tmp: self._build(cfg, tokenizer, tmp, key=key, progress=progress))

    @abstractmethod
    def _key(self, cfg: TrialConfig, tokenizer: Any) -> str:
        """The cache key of the prepared data (data identity, tokenizer, preprocessing)."""

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

    @abstractmethod
    def train_loss(self, model: Any, batch: dict[str, torch.Tensor], cfg: TrialConfig) -> torch.Tensor:
        """The training objective for one batch (mean over its targets)."""

    @abstractmethod
    def eval_loss(self, model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Sum of the validation loss over a batch's targets, and how many targets it had."""

    def validate(self, model: Any, loader: Any, *, device: torch.device, session: Any,
                 precision: str) -> dict[str, float]:
        """Metrics on the validation set at every report (ASHA reads :attr:`metric` from it).
        The default is the validation loss; a classifier adds accuracy, F1, ... ."""
        from trainables.loop import evaluate_loss

        return {"val_loss": evaluate_loss(self, model, loader, device, session, precision)}

    @abstractmethod
    def final_eval(self, model: Any, tokenizer: Any, data: Prepared, cfg: TrialConfig, *,
                   device: torch.device, out_dir: Path) -> dict[str, Any]:
        """Task metrics at the end of a full trial; may write outputs into ``out_dir``. A
        metric that could not be computed is None, with the reason in ``final_note``."""

    def reference_for(self, cfg: Any) -> tuple[dict[str, float], str]:
        """Published numbers to print beside a sweep of ``cfg`` (trial config), and their source."""
        return self.reference, self.reference_note

    def default_format(self) -> str | None:
        return self.formats[0] if self.formats else None
