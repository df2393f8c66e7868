"""Text classification on your own data (``text-classification``), on the classification family.

Data (:mod:`trainables.tasks.user_data`): a CSV, JSONL or JSON file, a directory of them per
split, or a hub dataset, with a text column, an optional second text (a pair, encoded with the
model's separator) and a label column: ``data.columns: {text: ..., text_pair: ..., label:
...}``; a role it leaves out is the column of that name (``text``, ``label``, and ``text_pair``
when the data has one).

Labels are strings or integers (``"positive"``, ``3``; an integer written as text in canonical
decimal form, as a CSV writes it (``3``, ``-1``; not ``03``, ``+3`` or ``²``), is that integer,
other text is a string label; a hub dataset's ``ClassLabel`` column gives its class names). The
label set is the distinct labels of the training data, sorted (integers by value, strings
alphabetically); a label of the validation or test data outside it, or a training set of one
class, is refused before launch. The label set is recorded (``data.labels`` on the sweep's
MLflow run) and becomes the model's ``id2label``; predictions are written with these names.

Splits: validation is the source's validation split, or ``data.holdout_size`` training rows
held out, or a seeded 10% of train (:func:`~trainables.tasks.user_data.train_and_val`); the
test split is the source's test split, else the validation set. ``data.split`` stays null.

Metrics (scikit-learn, in percent): accuracy, which ASHA and the search optimise, and macro-F1
(every class's F1 weighted alike) on the validation set at every evaluation, and on the test
set at the end of a full trial.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainables.errors import UserError, one_of
from trainables.tasks.classification import ClassificationTask, Example
from trainables.tasks.user_data import Split, cell, check_roles, column_mapping, load_splits, train_and_val

if TYPE_CHECKING:
    from trainables.config import TrialConfig

ROLES = ("text", "text_pair", "label")
#: An integer as ``str(int)`` writes it.
CANONICAL_INT = re.compile(r"0|-?[1-9][0-9]*")


def label_value(split: Split, i: int, column: str) -> int | str:
    """Row ``i``'s label: an integer, or a string. A number with no fractional part is that
    integer; text (spaces around it dropped) is an integer when it is one in canonical decimal
    form, as ``str(int)`` writes it and as a CSV column of integers holds it: ``0``, or an
    optional ``-`` and ASCII digits without a leading zero. Other text stays a string, so
    ``"07"`` and ``7`` are two classes and ``"²"`` is a string."""
    value = split.rows[i].get(column)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        value = value.strip()
        if CANONICAL_INT.fullmatch(value):
            value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
        raise UserError("data.columns.label", f"{split.at(i)}: label {value!r} in column {column!r} is "
                                              "not a string or an integer")
    return value


def label_set(values: list[int | str]) -> tuple[int | str, ...]:
    """The distinct labels, integers first by value, then strings alphabetically."""
    return tuple(sorted(set(values), key=lambda v: (isinstance(v, str), v)))


def columns_of(cfg: TrialConfig, splits: dict[str, Split]) -> dict[str, str]:
    """The checked columns: ``data.columns`` over the defaults ``text``, ``label`` (and
    ``text_pair`` when the data has such a column)."""
    given = check_roles(cfg.data.columns, ROLES, "text-classification")
    train = splits["train"].columns
    defaults = {"text": "text", "label": "label", **({"text_pair": "text_pair"} if "text_pair" in train else {})}
    return column_mapping({**defaults, **given}, splits, required=("text", "label"))


def read_labelled(cfg: TrialConfig, splits: dict[str, Split]) -> tuple[dict[str, list[Example]], dict[str, Any]]:
    """Every split's examples (labels as indices into the training label set), and the record:
    ``labels`` (their names), ``columns`` and the ``splits`` the source has."""
    columns = columns_of(cfg, splits)
    raw = {role: [label_value(s, i, columns["label"]) for i in range(len(s.rows))] for role, s in splits.items()}
    labels = label_set(raw["train"])
    if len(labels) < 2:
        raise UserError("data.columns.label", f"column {columns['label']!r} of {splits['train'].where} has one "
                                              f"class ({labels[0]!r}); a classifier needs at least two")
    index = {v: k for k, v in enumerate(labels)}
    out = {}
    for role, s in splits.items():
        for i, v in enumerate(raw[role]):
            if v not in index:
                raise UserError("data.columns.label", f"{s.at(i)}: label {v!r} is not one of the training "
                                                      f"data's labels ({one_of(map(str, labels))})")
        pair = columns.get("text_pair")
        out[role] = [Example(cell(s, i, columns["text"], "text"),
                             cell(s, i, pair, "text_pair", optional=True) if pair else None, index[raw[role][i]])
                     for i in range(len(s.rows))]
    return out, {"labels": [str(v) for v in labels], "columns": columns, "splits": sorted(splits)}


class TextClassification(ClassificationTask):
    """The classification family on a user's columns; the label set comes from the data.

    The family reads ``label_names`` (the head's size and ``id2label``, label counts, the
    labels ``predictions.csv`` and ``test_predictions.csv`` are written with); here each entry
    point that is given the trial config (:meth:`check_source`, :meth:`skeleton`,
    :meth:`load_model`, :meth:`_build`) sets it from :meth:`record`, which is memoised on the
    data, so a trial reads it without reading the data.
    """

    name = "text-classification"
    metric_names = ("accuracy", "macro_f1")
    default_split = "holdout"  # the family's check needs a policy; the splits come from split()
    data_settings = (*(s for s in ClassificationTask.data_settings if s != "split"), "columns")

    @property
    def regression(self) -> bool:
        return False

    def record(self, cfg: TrialConfig, known: dict[str, Any] | None = None) -> dict[str, Any]:
        """``{"labels", "columns", "splits"}`` of the data (:func:`read_labelled`; ``known``
        when it was just read)."""
        from trainables.cache import code_version, memoised
        from trainables.tasks.user_data import source_identity

        def compute() -> dict[str, Any]:
            return known if known is not None else read_labelled(cfg, load_splits(cfg))[1]

        return memoised("text-classification", {"data": source_identity(cfg), "columns": cfg.data.columns,
                                                "code": code_version()}, compute)

    def _use_labels(self, cfg: TrialConfig) -> None:
        self.label_names = tuple(self.record(cfg)["labels"])

    # ----------------------------------------------------------- the family's hooks
    def check(self, cfg: TrialConfig) -> None:
        if cfg.data.split is not None:
            raise UserError("data.split", "text-classification takes its splits from the data (validation "
                                          "split, or data.holdout_size, or 10% of train); leave it null")
        super().check(cfg)

    def check_source(self, cfg: TrialConfig) -> None:
        from trainables.tasks.user_data import check_source

        labelled, known = read_labelled(cfg, check_source(cfg))
        train_and_val(labelled["train"], labelled.get("val"), cfg)
        self.record(cfg, known)
        self._use_labels(cfg)

    def data_identity(self, cfg: TrialConfig) -> Any:
        from trainables.tasks.user_data import source_identity

        d = cfg.data
        return {"data": source_identity(cfg), "columns": d.columns, "split": [d.holdout_size, d.train_fraction]}

    def read_splits(self, cfg: TrialConfig) -> dict[str, list[Example]]:
        return read_labelled(cfg, load_splits(cfg))[0]

    def split(self, cfg: TrialConfig) -> dict[str, list[Example]]:
        labelled = self.read_splits(cfg)
        data, _ = train_and_val(labelled["train"], labelled.get("val"), cfg)
        return {**data, "test": labelled.get("test", data["val"])}

    # ----------------------------------------------------------- where the labels are needed
    def skeleton(self, cfg: TrialConfig) -> Any:
        self._use_labels(cfg)
        return super().skeleton(cfg)

    def load_model(self, cfg: TrialConfig) -> tuple[Any, Any]:
        self._use_labels(cfg)
        return super().load_model(cfg)

    def class_label(self, value: Any) -> str:
        """The data's own label of class id ``value``, as the prediction files write it."""
        return self.label_names[int(value)]

    def output_label(self, pred: Any, labels: str = "index") -> str:
        """The data's own label under either ``data.predict_labels``: its classes have no hub
        or release numbering."""
        return self.class_label(pred)

    def final_eval(self, model: Any, tokenizer: Any, data: Any, cfg: TrialConfig, **kw: Any) -> dict[str, Any]:
        """The test metrics; where the data has no test split they are the validation set's,
        and the trial's note says so."""
        results = super().final_eval(model, tokenizer, data, cfg, **kw)
        stats = json.loads((data.path / "stats.json").read_text())
        if stats.get("test_from") == "validation set":
            results["final_note"] = "the data has no test split: the test metrics are the validation set's"
        return results

    def _build(self, cfg: TrialConfig, tokenizer: Any, out: Path, *, key: str, progress: bool) -> None:
        self._use_labels(cfg)
        super()._build(cfg, tokenizer, out, key=key, progress=progress)
        record = self.record(cfg)
        stats = json.loads((out / "stats.json").read_text())
        source_val = "val" in record["splits"] and cfg.data.holdout_size is None
        stats.update(labels=record["labels"], columns=record["columns"], split_policy="data",
                     val_from="validation split" if source_val else "holdout",
                     test_from="test split" if "test" in record["splits"] else "validation set")
        (out / "stats.json").write_text(json.dumps(stats, indent=2))
