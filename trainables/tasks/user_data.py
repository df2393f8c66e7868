"""The data users bring to the generic text tasks (``sft``, ``text-classification``).

A source (``data.source``) is one of:

* a file: ``.jsonl`` (JSON Lines), ``.json`` (a JSON array of objects, as LLaMA-Factory's
  ``alpaca_en_demo.json``, or JSON Lines) or ``.csv`` (a header row naming each column once): the
  training split;
* a directory of such files named by split, the names ``datasets`` gives them: ``train.*``,
  ``validation.*`` (or ``valid``, ``val``, ``dev``, ``eval``) and ``test.*``;
* a hub dataset, read by ``datasets.load_dataset(name, revision=...)``, with a ``train``
  split and optionally a validation split (same names) and ``test``; or a local copy of one
  (``hf download --repo-type dataset ID --local-dir DIR``, :func:`trainables.hub.hub_copy`),
  read by the same call with the directory as the name (a copy with ``train.*`` files at its
  top is read as such a directory instead).

Local files are read here, so that a bad line is named with its file and line; a hub dataset
by ``datasets``. Both become :class:`Split` rows of named columns, and the task's column
mapping (``data.columns``: role -> column) is checked against the columns each split has.

Validation (:func:`train_and_val`): the source's own validation split, else a seeded hold-out
of ``data.holdout_size`` training rows (10% of them when it is null), drawn as ``datasets``'
``train_test_split(test_size=k, seed=data.split_seed)`` draws it.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainables.errors import UserError, did_you_mean, one_of
from trainables.tasks.base import jsonl_records

if TYPE_CHECKING:
    from trainables.config import TrialConfig

#: Split role -> the file stems (and hub split names) that hold it, in order of preference.
SPLIT_NAMES = {"train": ("train",), "val": ("validation", "valid", "val", "dev", "eval"), "test": ("test",)}
SUFFIXES = (".jsonl", ".json", ".csv")
#: Share of the training rows held out for validation when the source has no validation split.
DEFAULT_HOLDOUT = 0.1


@dataclass(frozen=True)
class Split:
    """One split's rows (column -> value) and where they came from."""

    where: str
    """The file, or ``<hub name>[<split>]``."""
    rows: list[dict[str, Any]]
    columns: tuple[str, ...]
    lines: list[int] | None = None
    """The line each row starts on (JSON Lines and CSV files); None: rows are numbered."""

    def at(self, i: int) -> str:
        """Where row ``i`` is, for messages: ``train.csv line 7`` or ``train.json item 3``."""
        return f"{self.where} line {self.lines[i]}" if self.lines else f"{self.where} item {i}"


# --------------------------------------------------------------------------- reading


def local_files(source: Path) -> dict[str, Path]:
    """``{"train": path[, "val": path][, "test": path]}`` of a local file or directory."""
    if source.is_file():
        if source.suffix not in SUFFIXES:
            raise UserError("data.source", f"{source}: expected a {one_of(SUFFIXES)} file")
        return {"train": source}
    if not source.is_dir():
        raise UserError("data.source", f"{source} does not exist")
    out: dict[str, Path] = {}
    for role, stems in SPLIT_NAMES.items():
        found = [source / f"{s}{x}" for s in stems for x in SUFFIXES if (source / f"{s}{x}").is_file()]
        if len(found) > 1:
            raise UserError("data.source", f"{source} has {len(found)} {role} files "
                                           f"({', '.join(p.name for p in found)}); keep one")
        if found:
            out[role] = found[0]
    if "train" not in out:
        raise UserError("data.source", f"{source} has no train{{{','.join(SUFFIXES)}}} file (optional beside "
                                       f"it: {'/'.join(SPLIT_NAMES['val'])} and test files) and is not a "
                                       "local copy of a hub dataset (`hf download --repo-type dataset ID "
                                       "--local-dir DIR`)")
    return out


def hub_copy_of(source: str) -> Path | None:
    """``source`` as a local copy of a hub dataset, read as its hub name is; None when it is
    not one, or when it holds a ``train.*`` file (a directory of files by split, read first)."""
    from trainables.hub import hub_copy

    return hub_copy(source, official=[f"train{x}" for x in SUFFIXES])


def _ordered_columns(rows: list[dict[str, Any]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(k for row in rows for k in row))


def read_csv(path: Path) -> Split:
    """A CSV file with a header row that names each column once; each row is numbered by the
    line it starts on (a quoted field may span lines; blank lines are skipped)."""
    csv.field_size_limit(2**31 - 1)  # a long document is one field (the default limit is 128 KiB)
    start = 1
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh)
            header = tuple(next(reader, ()))
            repeated = [c for c in dict.fromkeys(header) if c and header.count(c) > 1]  # '': unnamed, unused
            if repeated:
                raise UserError("data.source", f"{path}: the header repeats column"
                                               f"{'s' * (len(repeated) > 1)} {', '.join(map(repr, repeated))}; "
                                               "name each column once")
            rows, lines = [], []
            start = reader.line_num + 1
            for fields in reader:
                if fields:
                    if len(fields) != len(header):
                        raise UserError("data.source", f"{path} line {start}: expected {len(header)} "
                                                       f"fields ({', '.join(header)})")
                    rows.append(dict(zip(header, fields)))
                    lines.append(start)
                start = reader.line_num + 1
    except UnicodeDecodeError:
        raise UserError("data.source", f"{path}: not UTF-8 text") from None
    except csv.Error as e:
        raise UserError("data.source", f"{path} line {start}: not CSV ({e})") from None
    return Split(str(path), rows, header, lines)


def read_json(path: Path) -> Split:
    """A JSON array of objects, or JSON Lines (in a ``.json`` or ``.jsonl`` file). A ``.json``
    file that is one object over several lines (``{"version": 1, "data": [...]}``) is neither;
    one object on one line is JSON Lines of one record."""
    if path.suffix == ".json":
        try:
            text = path.read_text(encoding="utf-8")
            value = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            value = None  # not one JSON document: read it as JSON Lines
        if isinstance(value, dict) and len(text.strip().splitlines()) > 1:
            raise UserError("data.source", f"{path} holds one JSON object; expected a list of records (a JSON "
                                           "array of objects) or JSON Lines (one object a line)")
        if isinstance(value, list):
            for i, item in enumerate(value):
                if not isinstance(item, dict):
                    raise UserError("data.source", f"{path} item {i}: expected an object, got {item!r:.60}")
            return Split(str(path), value, _ordered_columns(value))
    rows, lines = [], []
    for n, obj in jsonl_records(path, "data.source"):
        if not isinstance(obj, dict):
            raise UserError("data.source", f"{path} line {n}: expected an object, got {obj!r:.60}")
        rows.append(obj)
        lines.append(n)
    return Split(str(path), rows, _ordered_columns(rows), lines)


def read_file(path: Path) -> Split:
    split = read_csv(path) if path.suffix == ".csv" else read_json(path)
    if not split.rows:
        raise UserError("data.source", f"{path} has no rows")
    return split


def load_splits(cfg: TrialConfig) -> dict[str, Split]:
    """``{"train"[, "val"][, "test"]}`` of the source: local files, or a hub dataset."""
    from trainables.hub import looks_local, read_hub_dataset

    copy = hub_copy_of(cfg.data.source)
    if looks_local(cfg.data.source) and copy is None:
        return {role: read_file(path) for role, path in local_files(Path(cfg.data.source).expanduser()).items()}
    dd = read_hub_dataset(cfg.data.source, revision=cfg.data.revision, copy=copy)
    out = {}
    for role, names in SPLIT_NAMES.items():
        name = next((n for n in names if n in dd), None)
        if name is not None:
            out[role] = Split(f"{cfg.data.source}[{name}]", named_classes(dd[name]), tuple(dd[name].column_names))
    if "train" not in out:
        raise UserError("data.source", f"{cfg.data.source} has no 'train' split (it has {one_of(dd.keys())})")
    return out


def named_classes(ds: Any) -> list[dict[str, Any]]:
    """A hub split's rows, with the values of ``ClassLabel`` columns as their class names (a
    negative value, an unlabelled row's, is kept)."""
    from datasets import ClassLabel

    rows = ds.to_list()
    for column, feature in ds.features.items():
        if isinstance(feature, ClassLabel):
            for row in rows:
                if isinstance(row[column], int) and row[column] >= 0:
                    row[column] = feature.int2str(row[column])
    return rows


def check_source(cfg: TrialConfig) -> dict[str, Split]:
    """The splits, after the checks that fail fast: a local path must exist, a hub dataset
    must be cached or reachable."""
    from trainables.hub import check_dataset_source, check_hub_copy, looks_local

    if looks_local(cfg.data.source):
        if not Path(cfg.data.source).expanduser().exists():
            raise UserError("data.source", f"{cfg.data.source} does not exist")
        copy = hub_copy_of(cfg.data.source)
        if copy is not None:
            check_hub_copy(copy, None, ("train",))
    else:
        check_dataset_source(cfg.data.source, revision=cfg.data.revision)
    return load_splits(cfg)


def source_identity(cfg: TrialConfig) -> Any:
    """What the data is, for cache keys: the local files' digests (a hub copy's: all of its
    files), or the hub name and revision."""
    from trainables.cache import source_identity as identity

    return identity(cfg.data.source, cfg.data.revision, local_files, copy=hub_copy_of(cfg.data.source))


# --------------------------------------------------------------------------- columns


def check_roles(given: Mapping[str, str] | None, roles: tuple[str, ...], task: str) -> dict[str, str]:
    """``data.columns`` as given (empty when null); each role must be one the task reads."""
    for role in given or {}:
        if role not in roles:
            raise UserError(f"data.columns.{role}", f"{task} has no column role {role!r}"
                                                    f"{did_you_mean(role, roles)}; it reads {one_of(roles)}")
    return dict(given or {})


def column_mapping(mapping: dict[str, str], splits: dict[str, Split], *, required: tuple[str, ...]) -> dict[str, str]:
    """The task's role -> column mapping (``data.columns`` over the task's defaults) checked
    against every split: each column is one every split has, no required role is left out."""
    train = splits["train"]
    missing = [r for r in required if r not in mapping]
    if missing:
        raise UserError(f"data.columns.{missing[0]}", f"name the {missing[0]} column: {train.where} has "
                                                      f"columns {one_of(train.columns)}")
    for role, column in mapping.items():
        for split in splits.values():
            if column not in split.columns:
                raise UserError(f"data.columns.{role}", f"no column {column!r} in {split.where}"
                                                        f"{did_you_mean(column, split.columns)}; its columns "
                                                        f"are {one_of(split.columns)}")
    return mapping


def cell(split: Split, i: int, column: str, role: str, *, optional: bool = False) -> str:
    """Row ``i``'s text in ``column`` (numbers as text); missing or empty is an error unless
    ``optional`` (then it is ``""``)."""
    value = split.rows[i].get(column)
    if value is None or value == "":
        if optional:
            return ""
        raise UserError(f"data.columns.{role}", f"{split.at(i)}: column {column!r} is empty")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UserError(f"data.columns.{role}", f"{split.at(i)}: column {column!r} holds {value!r:.60}, "
                                                "not text")
    return str(value)


# --------------------------------------------------------------------------- splits


def train_and_val(train: list[Any], val: list[Any] | None, cfg: TrialConfig) -> tuple[dict[str, list[Any]], str]:
    """Training and validation examples, and where the validation set came from (``source``
    or ``holdout``): the source's validation examples ``val``, unless ``data.holdout_size``
    holds out that many training examples, or, without either, 10% of them (at least one).
    ``data.train_fraction`` then applies (:func:`~trainables.tasks.conversations.split_conversations`)."""
    from trainables.tasks.conversations import split_conversations

    if val is None and cfg.data.holdout_size is None:
        if len(train) < 2:
            raise UserError("data.source", "a validation set is held out of the training data, which "
                                           f"has {len(train)} row; give it more rows or a validation split")
        size = max(1, round(DEFAULT_HOLDOUT * len(train)))
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, holdout_size=size))
    data = {"train": train, **({"val": val} if val is not None else {})}
    origin = "source" if cfg.data.holdout_size is None else f"holdout of {cfg.data.holdout_size}"
    return split_conversations(data, cfg), origin
