"""The sources' reported numbers, as data: one YAML file per study in this folder.

Each file holds the tables a study is compared with (``<study>.yaml``: ``study`` and
``tables``); ``models.yaml`` names the models the tables report on. A table is::

    lora-paper-t18:                  # its id, unique over all files
      label: LoRA paper Table 18     # short, for legends and headings
      source: LoRA paper (Hu et al. 2021) Table 18   # how to cite it
      file: 001_02f543aa5dd0cc94.txt ("Evaluation of Best Rank")  # null: not in the sources
      kind: paper                    # paper | reproduction | report
      note: ...                      # what was run, and any correction made while transcribing
      task: e2e                      # lorasweep task; or per row
      model: gpt2-medium             # a models.yaml name; or per row
      match: [adapter.r]             # the settings a row of ours is matched on
      setup: {adapter.targets: qv}   # settings the source ran every row with: a row of ours
                                     # that differs is still compared, with a note saying so
      only: {adapter.method: lora}   # a row of ours with another value is not compared
      units: {BLEU: percent, METEOR: fraction, NIST: value}
      not_comparable: {METEOR: why}  # printed, never turned into a deviation
      over_seeds: mean               # what the table reports over its runs (default: median)
      failed: [{adapter.r: 1}]       # rows whose run failed (the note says how): printed, not
                                     # compared or drawn
      columns: [adapter.r, BLEU, ...]   # then rows are lists; or rows are mappings
      rows: [[1, 68.72, ...], ...]

Metric columns carry lorasweep's metric names (``ROUGE_L``, ``accuracy_m``, ``trainable_pct``;
``printed`` keeps the source's own heading where it differs). Units: ``percent`` (printed
0-100), ``fraction`` (printed 0-1) and ``value`` (NIST, CIDEr, losses, counts: no scale).
lorasweep logs bounded metrics x100 (:mod:`trainables.metrics`), so :func:`to_ours` turns a
fraction into percent and leaves the others as printed.

A match key a row leaves out (or sets to null) matches any value of ours; ``warm_start``
is derived from ``adapter.init_from`` (true when an adapter initialises the trial).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
UNITS = {"percent": 1.0, "fraction": 100.0, "value": 1.0}
KINDS = ("paper", "reproduction", "report")
#: How a table's numbers summarise repeated runs (``over_seeds``), and how ours are compared.
OVER_SEEDS = ("median", "mean")
#: Settings a table may match on that are derived from a trial's settings.
DERIVED = {"warm_start": lambda row: given(row.get("adapter.init_from"))}


@dataclass(frozen=True)
class Model:
    name: str
    label: str
    names: tuple[str, ...]
    stand_ins: tuple[str, ...]


@dataclass(frozen=True)
class RefTable:
    """One table of a source, its rows with ``task`` and ``model`` filled in."""

    id: str
    study: str
    label: str
    source: str
    file: str | None
    """The source report (file name) the numbers were transcribed from; None: not one of them."""
    kind: str
    match: tuple[str, ...]
    units: Mapping[str, str]
    rows: tuple[Mapping[str, Any], ...]
    note: str = ""
    not_comparable: Mapping[str, str] = field(default_factory=dict)
    printed: Mapping[str, str] = field(default_factory=dict)
    setup: Mapping[str, Any] = field(default_factory=dict)
    """Settings the source ran every row with (``adapter.targets``): not matched on, but a row
    of ours run otherwise is said to be."""
    only: Mapping[str, Any] = field(default_factory=dict)
    """Settings without which a row of ours is not compared (``adapter.method: lora``: the
    source ran LoRA only)."""
    failed: tuple[Mapping[str, Any], ...] = ()
    """The match values of rows whose run failed (``adapter.r: 1``: its generation did): their
    task metrics are printed, never turned into a deviation or drawn."""
    over_seeds: str = "median"
    """What the table reports over its seeds, ``median`` or ``mean`` (the note says which),
    and so what ours are compared as; one seed of ours is that seed either way."""

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(self.units)

    def value(self, row: Mapping[str, Any], metric: str) -> float | None:
        """``metric`` of ``row`` on lorasweep's scale (None when the row has none)."""
        v = row.get(metric)
        return None if v is None else to_ours(v, self.units[metric])

    def comparable(self, metric: str) -> bool:
        return metric in self.units and metric not in self.not_comparable

    def ran_with(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The settings ``row`` was run with: its match values, then the table's setup."""
        return {**{k: row[k] for k in self.match if row.get(k) is not None}, **self.setup}

    def is_failed(self, row: Mapping[str, Any]) -> bool:
        """Whether ``row`` is one of the table's ``failed`` runs."""
        return any(all(same(row.get(k), v) for k, v in f.items()) for f in self.failed)

    def rows_for(self, task: str, model: str | None) -> list[Mapping[str, Any]]:
        return [r for r in self.rows if r.get("task") == task and (model is None or r.get("model") == model)]

    def excludes(self, values: Mapping[str, Any]) -> bool:
        """Whether settings ``values`` ran otherwise than the table's ``only`` allows."""
        return bool(differing(self.only, values))

    def find(self, task: str, model: str, values: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The row of ``task`` and ``model`` whose match keys equal ``values`` (a setting the
        row leaves out matches anything); None when no row does, or when ``values`` ran
        otherwise than ``only`` allows."""
        if self.excludes(values):
            return None
        for row in self.rows_for(task, model):
            if all(row.get(k) is None or same(row[k], our_value(values, k)) for k in self.match):
                return row
        return None


def to_ours(value: float, unit: str) -> float:
    """A printed number on lorasweep's scale: ``0.687`` BLEU (fraction) -> ``68.7``."""
    return float(value) * UNITS[unit]


def deviation(ours: float, source: float) -> float | None:
    """How far ours is from the source, in percent of the source: ``(ours - source) / |source|
    * 100`` (positive: ours is higher); None when the source is 0 or a value is missing."""
    if ours is None or source is None or source == 0 or not math.isfinite(ours):
        return None
    return (ours - source) / abs(source) * 100.0


def given(value: Any) -> bool:
    """A setting that is set: not None, NaN (a column other trials have) or empty."""
    return not (value is None or value in ("", "None") or (isinstance(value, float) and math.isnan(value)))


def same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (isinstance(a, bool) and isinstance(b, bool) and a == b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    return a == b


def differing(wanted: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """Each setting of ``wanted`` that ``values`` sets to something else: key -> our value."""
    return {k: v for k, want in wanted.items() if given(v := our_value(values, k)) and not same(v, want)}


def our_value(values: Mapping[str, Any], key: str) -> Any:
    return DERIVED[key](values) if key in DERIVED else values.get(key)


# --------------------------------------------------------------------------- loading


class ReferenceError(ValueError):
    """A reference file that does not follow the format (names the file, table and field)."""


def _fail(path: Path, where: str, message: str) -> ReferenceError:
    return ReferenceError(f"{path.name}: {where}: {message}")


def _table(path: Path, study: str, tid: str, spec: Mapping[str, Any]) -> RefTable:
    where = f"tables.{tid}"
    for key in ("label", "source", "kind", "units", "rows"):
        if not spec.get(key):
            raise _fail(path, where, f"{key} is missing")
    if "file" not in spec:
        raise _fail(path, where, "file is missing (null when the table is not in the sources)")
    if spec["kind"] not in KINDS:
        raise _fail(path, f"{where}.kind", f"{spec['kind']!r}; accepted: {', '.join(KINDS)}")
    units = dict(spec["units"])
    for metric, unit in units.items():
        if unit not in UNITS:
            raise _fail(path, f"{where}.units.{metric}", f"{unit!r}; accepted: {', '.join(UNITS)}")
    columns = spec.get("columns")
    defaults = {k: spec[k] for k in ("task", "model") if spec.get(k) is not None}
    rows = []
    for i, row in enumerate(spec["rows"]):
        if isinstance(row, list):
            if not columns or len(row) != len(columns):
                raise _fail(path, f"{where}.rows[{i}]", f"{len(row)} values for columns {columns}")
            row = dict(zip(columns, row))
        row = {**defaults, **row}
        if "task" not in row or "model" not in row:
            raise _fail(path, f"{where}.rows[{i}]", "no task or model (give them per table or per row)")
        unknown = set(row) - set(units) - set(spec.get("match") or ()) - {"task", "model"}
        if unknown:
            raise _fail(path, f"{where}.rows[{i}]", f"{sorted(unknown)} are neither metrics with a "
                                                     "unit nor match keys")
        rows.append(row)
    setup, only = spec.get("setup") or {}, spec.get("only") or {}
    for key, value in (("setup", setup), ("only", only)):
        if not isinstance(value, dict):
            raise _fail(path, f"{where}.{key}", f"{value!r}; expected a mapping of settings to values")
    failed = spec.get("failed") or []
    if not isinstance(failed, list) or not all(isinstance(f, dict) and f and set(f) <= set(spec.get("match") or ())
                                               for f in failed):
        raise _fail(path, f"{where}.failed", f"{failed!r}; expected a list of mappings of match keys to values")
    over_seeds = spec.get("over_seeds", "median")
    if over_seeds not in OVER_SEEDS:
        raise _fail(path, f"{where}.over_seeds", f"{over_seeds!r}; accepted: {', '.join(OVER_SEEDS)}")
    not_comparable = dict(spec.get("not_comparable") or {})
    if set(not_comparable) - set(units):
        raise _fail(path, f"{where}.not_comparable", f"{sorted(set(not_comparable) - set(units))} have no unit")
    return RefTable(id=tid, study=study, label=spec["label"], source=spec["source"], file=spec["file"],
                    kind=spec["kind"], match=tuple(spec.get("match") or ()), units=units, rows=tuple(rows),
                    note=" ".join(str(spec.get("note") or "").split()), not_comparable=not_comparable,
                    printed=dict(spec.get("printed") or {}), setup=dict(setup), only=dict(only),
                    over_seeds=over_seeds, failed=tuple(dict(f) for f in failed))


@functools.lru_cache(maxsize=4)
def load(folder: Path = HERE) -> dict[str, RefTable]:
    """Every table of every study file in ``folder`` (table id -> table)."""
    tables: dict[str, RefTable] = {}
    models = set(_models(folder))
    for path in sorted(Path(folder).glob("*.yaml")):
        if path.name == "models.yaml":
            continue
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not data.get("study") or not isinstance(data.get("tables"), dict):
            raise _fail(path, "top level", "expected 'study' and a mapping 'tables'")
        for tid, spec in data["tables"].items():
            if tid in tables:
                raise _fail(path, f"tables.{tid}", f"the id is already used in {tables[tid].study}.yaml")
            table = _table(path, data["study"], tid, spec)
            unknown = {r["model"] for r in table.rows} - models
            if unknown:
                raise _fail(path, f"tables.{tid}", f"models {sorted(unknown)} are not in models.yaml")
            tables[tid] = table
    return tables


@functools.lru_cache(maxsize=4)
def _models(folder: Path = HERE) -> dict[str, Model]:
    data = yaml.safe_load((Path(folder) / "models.yaml").read_text(encoding="utf-8"))
    return {name: Model(name, spec["label"], tuple(spec.get("names") or ()), tuple(spec.get("stand_ins") or ()))
            for name, spec in data.items()}


def tables_for(task: str, folder: Path = HERE) -> list[RefTable]:
    """The tables with rows of ``task``, in file order."""
    return [t for t in load(folder).values() if any(r["task"] == task for r in t.rows)]


def resolve_model(name_or_path: str, folder: Path = HERE) -> tuple[str | None, bool]:
    """The models.yaml name a recorded ``model.name_or_path`` is, and whether it is an offline
    stand-in: ``/cache/smoke/.../gpt2-s`` -> ``('gpt2', True)``; ``None`` when unknown."""
    text = str(name_or_path).strip().rstrip("/").lower()
    parts = text.removeprefix("smoke:").split("/")
    models = _models(folder).values()
    for m in models:
        names = {n.lower() for n in m.names}
        if text in names or parts[-1] in names:
            return m.name, False
    for m in models:
        if set(parts) & set(m.stand_ins):
            return m.name, True
    return None, False


def model_label(name: str, folder: Path = HERE) -> str:
    m = _models(folder).get(name)
    return m.label if m else name


def headline(table_id: str, task: str, model: str | None = None, **values: Any) -> tuple[dict[str, float], str]:
    """One row of a table as ``{metric: value on lorasweep's scale}`` and its citation (with
    the row's settings and the table's setup): the published numbers a sweep summary prints
    beside its results."""
    table = load()[table_id]
    rows = table.rows_for(task, model)
    row = next((r for r in rows if all(same(r.get(k), v) for k, v in values.items())), None)
    if row is None:
        return {}, ""
    numbers = {m: table.value(row, m) for m in table.metrics if row.get(m) is not None}
    setting = ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in table.ran_with(row).items())
    return numbers, ", ".join(t for t in (table.source, model_label(row["model"]), setting) if t)


#: The table a sweep's summary quotes beside its results, per task, and the setting that must
#: hold for it to apply (the TU Wien judge grades belong to its five queries only).
SUMMARY_TABLES: dict[str, tuple[str, Any]] = {
    "e2e": ("lora-paper-t3", None),
    "webnlg": ("lora-paper-t14", None),
    "dart": ("lora-paper-t13", None),
    **{f"glue-{t}": ("lora-paper-t2", None)
       for t in ("mnli", "sst2", "mrpc", "cola", "qnli", "qqp", "rte", "stsb")},
    "guanaco": ("tuw-judge", lambda trial: trial.eval.prompts == "tuwien_queries"),
}


def over_seeds_for(task: str) -> str:
    """How a sweep summary of ``task`` summarises seed replicates: as its summary table does
    (``median`` where the task has none)."""
    entry = SUMMARY_TABLES.get(task)
    return load()[entry[0]].over_seeds if entry else "median"


def method_references(study: str, task: str) -> tuple[dict[str, dict[str, float]], str]:
    """A method-comparison study's own numbers for ``task``, per method (``adapter.method`` ->
    ``{metric: value on lorasweep's scale}``), and their citation; ``({}, "")`` where the
    study's references hold no table matched on the method alone."""
    for table in load().values():
        rows = table.rows_for(task, None) if table.study == study and table.match == ("adapter.method",) else []
        if rows:
            per_method = {str(r["adapter.method"]): {m: table.value(r, m) for m in table.metrics
                                                     if r.get(m) is not None} for r in rows}
            return per_method, ", ".join(t for t in (table.source, model_label(rows[0]["model"])) if t)
    return {}, ""


def _setting(trial: Any, key: str) -> Any:
    """A dotted setting of a trial config (``adapter.method``), or None."""
    for part in key.split("."):
        trial = getattr(trial, part, None)
    return trial


def reference_for(trial: Any, space: Any = None) -> tuple[dict[str, float], str]:
    """The published numbers a sweep of the trial config ``trial`` (and search space
    ``space``) is shown beside, on lorasweep's scale, and their citation: the row of its
    task's summary table for its model (the model it stands in for, in a smoke sweep), when
    the sweep runs that row's setup and settings (the table's ``setup`` and the row's
    ``match`` values) in at least one of its configurations. A model the references do not
    know is shown beside the table's only model; a known model the table does not have,
    beside none (another model's numbers are not its reference)."""
    entry = SUMMARY_TABLES.get(trial.task)
    if entry is None or (entry[1] is not None and not entry[1](trial)):
        return {}, ""
    table_id = entry[0]
    table = load()[table_id]
    if table.excludes({k: _setting(trial, k) for k in table.only}):
        return {}, ""  # the source's numbers are another method's (LoRA's, beside full fine-tuning)
    model, _ = resolve_model(str(trial.model.name_or_path))
    rows = table.rows_for(trial.task, None)
    models = {r.get("model") for r in rows}
    if model is None and len(models) == 1:
        model = next(iter(models))
    elif model not in models:
        return {}, ""
    if not _can_run(trial, space, table.ran_with(table.rows_for(trial.task, model)[0])):
        return {}, ""  # no configuration of the sweep ran what the source's row did
    return headline(table_id, trial.task, model)


def _can_run(trial: Any, space: Any, wanted: Mapping[str, Any]) -> bool:
    """Whether a configuration of the sweep (trial config ``trial``, search space ``space``)
    has every setting of ``wanted``: each parameter of the space that sets some of them has a
    value (a coupled parameter: one value for all of its keys) with theirs, and the trial has
    the rest. A range swept over a setting may have it (ranges are not checked)."""
    params = list(getattr(space, "params", ()))
    rest = {k: v for k, v in wanted.items() if not any(k in p.keys for p in params)}
    if differing(rest, {k: _setting(trial, k) for k in rest}):
        return False
    for p in params:
        mine = {k: v for k, v in wanted.items() if k in p.keys}
        settings = p.settings()
        if mine and settings is not None and all(differing(mine, c) for c in settings):
            return False
    return True
