"""The GLUE benchmark (Wang et al., 2019) as the LoRA paper ran it with RoBERTa (Table 2).

Data: the hub dataset ``nyu-mll/glue`` (one config per task), a local copy of it (``hf download
--repo-type dataset nyu-mll/glue --local-dir DIR``, read by the same ``load_dataset`` call), or a
local directory in the layout of the GLUE download script (``glue_data/<TASK>/train.tsv``,
``dev.tsv``; MNLI has ``dev_matched.tsv`` and ``dev_mismatched.tsv``), either the ``glue_data``
root or the task's own folder. All are turned into the same :class:`~trainables.tasks.classification.Example`
rows, with the hub's label ids, and from there share every line of code.

Metrics as the paper reports them: accuracy (MNLI: matched, mismatched and both pooled, SST-2, QNLI, RTE),
accuracy and F1 (MRPC, QQP), Matthews correlation (CoLA), Pearson and Spearman (STS-B, a
regression head). Each task is registered as ``glue-<task>`` (``glue-rte``, ...).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from trainables.errors import UserError, one_of
from trainables.tasks.base import utf8_text
from trainables.tasks.classification import ClassificationTask, Example

if TYPE_CHECKING:
    from trainables.config import TrialConfig

HUB_NAME = "nyu-mll/glue"
MALFORMED_TOLERANCE = 0.01
"""Share of rows with a wrong field count that is skipped (and counted) rather than refused:
some GLUE releases have a handful of broken QQP lines."""


@dataclass(frozen=True)
class TsvLayout:
    """Where one task's fields are in its GLUE TSV files."""

    text_a: str | int
    text_b: str | int | None
    label: str | int
    header: bool = True
    """CoLA's train/dev files have no header (columns by position)."""
    n_fields: int | None = None


# ----------------------------------------------------------------------------- reading TSVs


def read_tsv(path: Path, layout: TsvLayout, label_of: Any) -> tuple[list[Example], int]:
    """Examples of a GLUE TSV (read as GLUE's own code does: tab-separated, no quoting);
    returns them and the number of malformed rows skipped."""
    if not path.is_file():
        raise UserError("data.source", f"{path} does not exist")
    with utf8_text(path, "data.source", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows:
        raise UserError("data.source", f"{path} is empty")
    if layout.header:
        header = [c.strip() for c in rows[0]]
        wanted = [c for c in (layout.text_a, layout.text_b, layout.label) if c is not None]
        missing = [c for c in wanted if c not in header]
        if missing:
            raise UserError("data.source", f"{path} line 1: header lacks {', '.join(map(repr, missing))} "
                                           f"(has {', '.join(header)})")
        pos = {c: header.index(c) for c in wanted}
        width, body, first_line = len(header), rows[1:], 2
    else:
        pos = {c: c for c in (layout.text_a, layout.text_b, layout.label) if c is not None}
        width, body, first_line = layout.n_fields, rows, 1
    out, bad = [], 0
    for n, row in enumerate(body, first_line):
        if not row or row == [""]:
            continue
        if len(row) != width:
            bad += 1
            continue
        try:
            label = label_of(row[pos[layout.label]].strip())
        except (KeyError, ValueError):
            raise UserError("data.source", f"{path} line {n}: label {row[pos[layout.label]]!r} is not "
                                           "one this task accepts") from None
        if label is None:  # no gold label (MNLI's '-')
            continue
        b = row[pos[layout.text_b]] if layout.text_b is not None else None
        out.append(Example(row[pos[layout.text_a]], b, label))
    if not out:
        raise UserError("data.source", f"{path} has no examples")
    if bad > MALFORMED_TOLERANCE * (len(out) + bad):
        raise UserError("data.source", f"{path}: {bad} of {len(out) + bad} rows do not have "
                                       f"{width} tab-separated fields; is this the task's GLUE file?")
    return out, bad


# ----------------------------------------------------------------------------- tasks


class GlueTask(ClassificationTask):
    """One GLUE task; subclasses give the names, files, columns and metrics."""

    glue_name: ClassVar[str]
    glue_dir: ClassVar[str]
    layout: ClassVar[TsvLayout]
    hub_columns: ClassVar[tuple[str, str | None]]
    dev_files: ClassVar[dict[str, str]] = {"test": "dev.tsv"}
    hub_splits: ClassVar[dict[str, str]] = {"test": "validation"}
    label_strings: ClassVar[tuple[str, ...] | None] = None
    """Label names as the TSV writes them (MNLI, QNLI, RTE); else integer ids (or a float)."""

    def task_dir(self, cfg: TrialConfig) -> Path:
        root = Path(cfg.data.source).expanduser()
        for d in (root / self.glue_dir, root):
            if (d / "train.tsv").is_file():
                return d
        raise UserError("data.source", f"{root} has neither {self.glue_dir}/train.tsv nor train.tsv; "
                                       "expected the GLUE download layout (glue_data/ or its task folder) "
                                       f"or a local copy of the hub dataset (`hf download --repo-type "
                                       f"dataset {HUB_NAME} --local-dir DIR`)")

    def _label(self, text: str) -> Any:
        if self.regression:
            return float(text)
        if self.label_strings:
            return self.label_strings.index(text)
        value = int(text)
        if not 0 <= value < self.num_labels:
            raise ValueError(text)
        return value

    def _local(self, cfg: TrialConfig) -> bool:
        """GLUE TSVs in a local directory (else the hub id or a local copy of it)."""
        from trainables.hub import looks_local

        return looks_local(cfg.data.source) and self._hub_copy(cfg) is None

    def _hub_copy(self, cfg: TrialConfig) -> Path | None:
        """``data.source`` as a local copy of the hub dataset, when it lacks the task's TSVs."""
        from trainables.hub import hub_copy

        return hub_copy(cfg.data.source, official=(f"{self.glue_dir}/train.tsv", "train.tsv"))

    def check_source(self, cfg: TrialConfig) -> None:
        from trainables.hub import check_dataset_source, check_hub_copy

        copy = self._hub_copy(cfg)
        if copy is not None:
            check_hub_copy(copy, self.glue_name, ("train", *self.hub_splits.values()))
            return
        if not self._local(cfg):
            check_dataset_source(cfg.data.source, revision=cfg.data.revision)
            return
        if not Path(cfg.data.source).expanduser().exists():
            raise UserError("data.source", f"data directory {cfg.data.source} does not exist")
        d = self.task_dir(cfg)
        for name in ("train.tsv", *self.dev_files.values()):
            read_tsv(d / name, self.layout, self._label)

    def data_identity(self, cfg: TrialConfig) -> Any:
        from trainables.cache import source_identity

        files = ("train.tsv", *self.dev_files.values())
        return {**source_identity(cfg.data.source, cfg.data.revision,
                                  lambda _: {n: self.task_dir(cfg) / n for n in files}, copy=self._hub_copy(cfg)),
                "config": self.glue_name}

    def read_splits(self, cfg: TrialConfig) -> dict[str, list[Example]]:
        if self._local(cfg):
            d = self.task_dir(cfg)
            files = {"train": "train.tsv", **self.dev_files}
            return {split: read_tsv(d / name, self.layout, self._label)[0] for split, name in files.items()}
        from trainables.hub import read_hub_dataset

        dd = read_hub_dataset(cfg.data.source, self.glue_name, revision=cfg.data.revision, copy=self._hub_copy(cfg))
        a_col, b_col = self.hub_columns
        out = {}
        for split, hub_split in {"train": "train", **self.hub_splits}.items():
            if hub_split not in dd:
                raise UserError("data.source", f"{cfg.data.source}/{self.glue_name} has no {hub_split!r} "
                                               f"split (it has {one_of(dd.keys())})")
            ds = dd[hub_split]
            b = ds[b_col] if b_col else [None] * len(ds)
            out[split] = [Example(x, y, lab) for x, y, lab in zip(ds[a_col], b, ds["label"])]
        return out


class CoLA(GlueTask):
    name, glue_name, glue_dir = "glue-cola", "cola", "CoLA"
    label_names = ("unacceptable", "acceptable")
    metric_names = ("mcc", "accuracy")
    layout = TsvLayout(text_a=3, text_b=None, label=1, header=False, n_fields=4)
    hub_columns = ("sentence", None)


class SST2(GlueTask):
    name, glue_name, glue_dir = "glue-sst2", "sst2", "SST-2"
    label_names = ("negative", "positive")
    metric_names = ("accuracy",)
    layout = TsvLayout("sentence", None, "label")
    hub_columns = ("sentence", None)


class MRPC(GlueTask):
    name, glue_name, glue_dir = "glue-mrpc", "mrpc", "MRPC"
    label_names = ("not_equivalent", "equivalent")
    metric_names = ("accuracy", "f1")
    layout = TsvLayout("#1 String", "#2 String", "Quality")
    hub_columns = ("sentence1", "sentence2")


class QQP(GlueTask):
    name, glue_name, glue_dir = "glue-qqp", "qqp", "QQP"
    label_names = ("not_duplicate", "duplicate")
    metric_names = ("accuracy", "f1")
    layout = TsvLayout("question1", "question2", "is_duplicate")
    hub_columns = ("question1", "question2")


class STSB(GlueTask):
    name, glue_name, glue_dir = "glue-stsb", "stsb", "STS-B"
    label_names = ()  # regression: one output, MSE
    metric_names = ("pearson", "spearman")
    layout = TsvLayout("sentence1", "sentence2", "score")
    hub_columns = ("sentence1", "sentence2")


class MNLI(GlueTask):
    name, glue_name, glue_dir = "glue-mnli", "mnli", "MNLI"
    label_names = ("entailment", "neutral", "contradiction")
    label_strings = label_names
    metric_names = ("accuracy",)
    test_names = ("m", "mm")
    layout = TsvLayout("sentence1", "sentence2", "gold_label")
    hub_columns = ("premise", "hypothesis")
    dev_files = {"m": "dev_matched.tsv", "mm": "dev_mismatched.tsv"}
    hub_splits = {"m": "validation_matched", "mm": "validation_mismatched"}

    def _label(self, text: str) -> Any:
        # The gold label is '-' where the annotators had no majority: such pairs are skipped.
        return None if text == "-" else super()._label(text)


class QNLI(GlueTask):
    name, glue_name, glue_dir = "glue-qnli", "qnli", "QNLI"
    label_names = ("entailment", "not_entailment")
    label_strings = label_names
    metric_names = ("accuracy",)
    layout = TsvLayout("question", "sentence", "label")
    hub_columns = ("question", "sentence")


class RTE(GlueTask):
    name, glue_name, glue_dir = "glue-rte", "rte", "RTE"
    label_names = ("entailment", "not_entailment")
    label_strings = label_names
    metric_names = ("accuracy",)
    layout = TsvLayout("sentence1", "sentence2", "label")
    hub_columns = ("sentence1", "sentence2")


GLUE_TASKS = {cls.glue_name: cls for cls in (MNLI, SST2, MRPC, CoLA, QNLI, QQP, RTE, STSB)}
