"""AG News topic classification (Zhang et al., 2015): four classes, titles and descriptions.

Data: the hub dataset ``ag_news`` (``text``, ``label`` 0-3), a local copy of it (``hf download
--repo-type dataset fancyzhx/ag_news --local-dir DIR``, read by the same ``load_dataset`` call)
or a local directory with the official CSVs (``train.csv``, ``test.csv``: no header,
``"Class Index","Title","Description"``, classes 1-4 = World, Sports, Business, Sci/Tech).
CSV rows become ``title + " " + description`` with label ``class - 1``, the hub's form, and
share everything after that.
The official release has no validation set: the ``holdout`` split policy (default) keeps a
seeded 10% of train for it (``data.holdout_size`` examples instead, when set), and the test set is
the official one. Predictions for an unlabelled competition file (``data.predict_file``) are
written as class ids 0-3, the hub's numbering, which the NYU Deep Learning (Spring 2025)
project 2 Kaggle competition takes (its participants train on the hub's ``ag_news`` and submit
the argmax); ``data.predict_labels: release`` writes the official CSVs' 1-4 instead.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainables.errors import UserError, one_of
from trainables.tasks.base import utf8_text
from trainables.tasks.classification import ClassificationTask, Example

if TYPE_CHECKING:
    from trainables.config import TrialConfig

FILES = {"train": "train.csv", "test": "test.csv"}


def read_csv(path: Path) -> list[Example]:
    if not path.is_file():
        raise UserError("data.source", f"{path} does not exist")
    out = []
    with utf8_text(path, "data.source", newline="") as fh:
        for row in csv.reader(fh):
            n = len(out) + 1
            if not row:
                continue
            if len(row) != 3:
                raise UserError("data.source", f"{path} line {n}: expected 3 fields "
                                               f"(class index, title, description), found {len(row)}")
            if row[0].strip() not in ("1", "2", "3", "4"):
                raise UserError("data.source", f"{path} line {n}: class index {row[0]!r} is not 1-4 "
                                               "(the official AG News CSVs have no header)")
            out.append(Example(f"{row[1].strip()} {row[2].strip()}".strip(), None, int(row[0]) - 1))
    if not out:
        raise UserError("data.source", f"{path} has no rows")
    return out


class AGNews(ClassificationTask):
    name = "ag_news"
    label_names = ("World", "Sports", "Business", "Sci/Tech")
    metric_names = ("accuracy",)
    default_split = "holdout"
    output_labels = ("1", "2", "3", "4")

    def _local(self, cfg: TrialConfig) -> bool:
        """The official CSVs in a local directory (else the hub id or a local copy of it)."""
        from trainables.hub import looks_local

        return looks_local(cfg.data.source) and self._hub_copy(cfg) is None

    def _hub_copy(self, cfg: TrialConfig) -> Path | None:
        """``data.source`` as a local copy of the hub dataset, when it lacks the official CSVs."""
        from trainables.hub import hub_copy

        return hub_copy(cfg.data.source, official=(FILES["train"],))

    def _dir(self, cfg: TrialConfig) -> Path:
        d = Path(cfg.data.source).expanduser()
        if not d.is_dir():
            raise UserError("data.source", f"data directory {cfg.data.source} does not exist")
        if not (d / FILES["train"]).is_file():
            raise UserError("data.source", f"{d} has neither the official CSVs ({', '.join(FILES.values())}) "
                                           "nor a local copy of the hub dataset (`hf download "
                                           "--repo-type dataset fancyzhx/ag_news --local-dir DIR`)")
        return d

    def check_source(self, cfg: TrialConfig) -> None:
        from trainables.hub import check_dataset_source, check_hub_copy

        copy = self._hub_copy(cfg)
        if copy is not None:
            check_hub_copy(copy, None, tuple(FILES))
            return
        if not self._local(cfg):
            check_dataset_source(cfg.data.source, revision=cfg.data.revision)
            return
        d = self._dir(cfg)
        for name in FILES.values():
            read_csv(d / name)

    def data_identity(self, cfg: TrialConfig) -> Any:
        from trainables.cache import source_identity

        return source_identity(cfg.data.source, cfg.data.revision,
                               lambda _: {n: self._dir(cfg) / n for n in FILES.values()}, copy=self._hub_copy(cfg))

    def read_splits(self, cfg: TrialConfig) -> dict[str, list[Example]]:
        if self._local(cfg):
            return {split: read_csv(self._dir(cfg) / name) for split, name in FILES.items()}
        from trainables.hub import read_hub_dataset

        dd = read_hub_dataset(cfg.data.source, revision=cfg.data.revision, copy=self._hub_copy(cfg))
        for split in FILES:
            if split not in dd:
                raise UserError("data.source", f"{cfg.data.source} has no {split!r} split "
                                               f"(it has {one_of(dd.keys())})")
        return {split: [Example(t, None, int(y)) for t, y in zip(dd[split]["text"], dd[split]["label"])]
                for split in FILES}
