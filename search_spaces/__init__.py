"""Search spaces as plain data, one validator, one converter to Ray Tune.

A space is a YAML file in this folder (or any path, or an inline mapping)::

    description: LoRA paper Table 18 - which rank does GPT-2 medium need on E2E?
    scientific:            # what the study is about
      r: {grid: [1, 2, 4, 8]}
    nuisance:              # tuned so that the comparison is fair
      lr: {loguniform: [1.0e-4, 1.0e-3]}
    fixed:                 # held constant for this study
      alpha: 32

Keys are the short names of :data:`ALIASES` (``r``, ``alpha``, ``lr``, ...) or any dotted
trial setting (``train.max_grad_norm``). Distributions: ``grid``, ``choice``, ``uniform``,
``loguniform``, ``randint``, ``lograndint`` (integer ranges are ``[low, high)``). Every value
is checked against the trial schema before anything launches, so ``r: {grid: [0]}`` fails with
``space.scientific.r.grid[0]: must be a positive integer, got 0``.

Settings that only make sense together are *coupled*: a key joining names with ``+`` takes a
grid or choice of lists, one value per name, e.g. a rank for each target group under a
trainable-parameter budget::

    scientific:
      r+targets: {grid: [[32, qv], [16, qkvo], [8, all-linear]]}
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Collection
from typing import Any

from trainables.errors import UserError, did_you_mean, not_utf8, one_of
from trainables.schema import OTHER_ALPHA, apply_hyperparameters, clear_other_alpha, coerce, field_paths, from_dict

SPACES_DIR = Path(__file__).resolve().parent
SECTIONS = ("scientific", "nuisance", "fixed")
DISTRIBUTIONS = ("grid", "choice", "uniform", "loguniform", "randint", "lograndint")
RANGES = ("uniform", "loguniform", "randint", "lograndint")

ALIASES = {
    "r": "adapter.r",
    "alpha": "adapter.alpha",
    "alpha_over_r": "adapter.alpha_over_r",
    "dropout": "adapter.dropout",
    "targets": "adapter.targets",
    "method": "adapter.method",
    "init_from": "adapter.init_from",
    "lr": "train.lr",
    "weight_decay": "train.weight_decay",
    "warmup_steps": "train.warmup_steps",
    "warmup_ratio": "train.warmup_ratio",
    "batch_size": "train.batch_size",
    "epochs": "train.epochs",
    "label_smoothing": "train.label_smoothing",
    "seed": "seed",
}
"""Short names of the hyperparameters LoRA studies sweep, and the trial setting each sets."""

#: Searchable settings that name files or folders: a relative path in a space is made absolute,
#: read from the space file's folder or else the working folder (trials run in folders of
#: their own, where it would name nothing).
SPACE_PATHS = ("data.predict_file", "eval.prompts", "eval.compare_models", "adapter.init_from")

#: Settings that describe the infrastructure, not the experiment: not searchable.
_NOT_SEARCHABLE = ("task", "model.name_or_path", "model.revision", "data.source", "data.revision")


@dataclass(frozen=True)
class Param:
    key: str
    """Dotted trial setting, e.g. ``adapter.r``."""
    kind: str
    """``fixed`` or one of :data:`DISTRIBUTIONS`."""
    values: tuple[Any, ...]
    """The constant (one value), the grid/choice values, or the range bounds."""
    section: str

    @property
    def tune_values(self) -> tuple[Any, ...]:
        """The values as Tune sees them: a coupled parameter's lists as JSON text (Tune would
        take a list value apart into one setting per element)."""
        if "+" in self.key:
            return tuple(json.dumps(v) for v in self.values)
        return self.values

    @property
    def keys(self) -> tuple[str, ...]:
        """The settings this parameter sets (several for a coupled ``r+targets``)."""
        return tuple(self.key.split("+"))

    def settings(self) -> list[dict[str, Any]] | None:
        """Each value the parameter can give, as the settings it sets (a coupled parameter: all
        of its keys); None for a range, whose values are not listed."""
        if self.kind not in ("fixed", "grid", "choice"):
            return None
        values = self.values[:1] if self.kind == "fixed" else self.values
        return [dict(zip(self.keys, v)) if len(self.keys) > 1 else {self.key: v} for v in values]

    @property
    def short(self) -> str:
        if "+" in self.key:
            return "+".join(short_name(k) for k in self.keys)
        return short_name(self.key)


SHORT_NAMES = {full: alias for alias, full in ALIASES.items()}


def short_name(key: str) -> str:
    """``adapter.r`` -> ``r``, ``train.lr`` -> ``lr``; other settings keep their dotted name."""
    return SHORT_NAMES.get(key, key)


@dataclass(frozen=True)
class SearchSpace:
    description: str
    params: tuple[Param, ...]
    source: str

    @property
    def swept(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.kind != "fixed")

    def fixed(self) -> dict[str, Any]:
        return {p.key: p.values[0] for p in self.params if p.kind == "fixed"}

    def grid_size(self) -> int:
        return math.prod(len(p.values) for p in self.params if p.kind == "grid")

    def values_of(self, key: str) -> list[Any]:
        """Every value the space gives setting ``key`` (coupled parameters included)."""
        return [s[key] for p in self.params if key in p.keys for s in p.settings() or ()]

    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the grid values (the other dimensions left out)."""
        grids = [p for p in self.params if p.kind == "grid"]
        return [dict(zip([p.key for p in grids], combo))
                for combo in itertools.product(*[p.tune_values for p in grids])]

    def as_data(self) -> dict[str, Any]:
        """The space as plain data again (for MLflow and the resolved config)."""
        out: dict[str, Any] = {"description": self.description}
        for p in self.params:
            value = p.values[0] if p.kind == "fixed" else {p.kind: list(p.values)}
            out.setdefault(p.section, {})[p.short] = value
        return out


def available_spaces() -> list[str]:
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


def _read(spec: str | dict[str, Any], field: str) -> tuple[dict[str, Any], str]:
    if isinstance(spec, dict):
        return spec, "<inline>"
    import yaml

    path = Path(spec).expanduser()
    if not path.suffix and not path.exists():
        path = SPACES_DIR / f"{spec}.yaml"
    if not path.is_file():
        raise UserError(field, f"no search space {spec!r}: not a file, and not one of "
                               f"{one_of(available_spaces())}{did_you_mean(str(spec), available_spaces())}")
    from trainables.schema import load_yaml

    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(field, not_utf8(path)) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(field, f"{path}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(data, dict) or not data:
        raise UserError(field, f"{path}: {'empty' if not data else 'not a mapping'}; expected a mapping with "
                               f"{one_of(SECTIONS)}")
    return data, str(path)


def resolve_key(name: str, field: str) -> str:
    """A short name or dotted trial setting -> the dotted trial setting."""
    from trainables.config import TrialConfig

    if name in ALIASES:
        return ALIASES[name]
    paths = field_paths(TrialConfig)
    if name in paths and name not in _NOT_SEARCHABLE:
        return name
    if name in _NOT_SEARCHABLE:
        raise UserError(field, f"{name!r} is part of the set-up, not a hyperparameter; "
                               "set it with --set or the preset")
    known = sorted(ALIASES) + sorted(k for k in paths if k not in _NOT_SEARCHABLE)
    raise UserError(field, f"unknown hyperparameter{did_you_mean(name, known)}; short names: "
                           f"{one_of(sorted(ALIASES))}, or a dotted trial "
                           "setting such as 'train.label_smoothing'")


def _check_value(base: dict[str, Any], key: str, value: Any, field: str) -> Any:
    """Coerce ``value`` to ``key``'s type and validate it in the context of ``base``."""
    from trainables.config import TrialConfig

    tp = field_paths(TrialConfig)[key]
    value = coerce(value, tp, field)
    if key == "eval.judge":
        from trainables.judge import is_callable_spec

        if is_callable_spec(value):
            raise UserError(field, f"{value!r} is Python code and a search space is plain data; give a "
                                   "callable judge with --set eval.judge=... or in the preset")
    trial = apply_hyperparameters(base, {key: value})
    try:
        from_dict(TrialConfig, trial)
    except UserError as e:
        if e.field == key:
            raise UserError(field, e.message) from None
        raise UserError(field, f"value {value!r} gives an invalid trial: {e}") from None
    return value


def _numeric_kind(key: str) -> type | None:
    """``int`` or ``float`` when the setting ``key`` is numeric (possibly optional), else None."""
    import typing

    from trainables.config import TrialConfig

    tp = field_paths(TrialConfig)[key]
    kinds = {a for a in (typing.get_args(tp) or (tp,)) if a is not type(None)}
    if kinds == {int}:
        return int
    if kinds <= {int, float} and float in kinds:
        return float
    return None


def _range_bounds(base: dict[str, Any], key: str, kind: str, values: list[Any], field: str) -> tuple[Any, Any]:
    """A range's [low, high], checked: an integer range ``[low, high)`` draws high - 1 at most,
    so that is the value checked against the setting (high itself is never drawn)."""
    numeric = _numeric_kind(key)
    if numeric is None:
        raise UserError(field, f"{kind} needs a numeric setting; {key} is not (use grid or choice)")
    if numeric is int and kind in ("uniform", "loguniform"):
        raise UserError(field, f"{key} is an integer setting; use randint or lograndint")
    if kind in ("uniform", "loguniform"):
        lo, hi = (_check_value(base, key, v, field) for v in values)
    else:
        lo, hi = (coerce(v, int, field) for v in values)
    if not lo < hi:
        raise UserError(field, f"low must be below high, got [{lo}, {hi}]")
    if kind in ("randint", "lograndint"):
        _check_value(base, key, lo, field)
        try:
            _check_value(base, key, hi - 1, field)
        except UserError as e:
            raise UserError(field, f"the largest value drawn, high - 1 = {hi - 1}: {e.message}") from None
    return lo, hi


def _parse_coupled(section: str, name: str, spec: Any, base: dict[str, Any]) -> Param:
    field = f"space.{section}.{name}"
    keys = [resolve_key(n.strip(), field) for n in name.split("+")]
    if len(set(keys)) != len(keys):
        raise UserError(field, "a coupled parameter names each setting once")
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in ("grid", "choice"):
        raise UserError(field, f"coupled settings take {{grid: [[...], ...]}} or {{choice: [[...], ...]}}, "
                               f"one value per name ({' + '.join(keys)})")
    (kind, values), = spec.items()
    if not isinstance(values, list) or not values:
        raise UserError(f"{field}.{kind}", f"expected a non-empty list, got {values!r}")
    checked = []
    for i, combo in enumerate(values):
        if not isinstance(combo, list) or len(combo) != len(keys):
            raise UserError(f"{field}.{kind}[{i}]", f"expected a list of {len(keys)} values "
                                                    f"({', '.join(keys)}), got {combo!r}")
        trial = dict(zip(keys, combo))
        checked.append(tuple(_check_value(apply_hyperparameters(base, trial), k, v, f"{field}.{kind}[{i}]")
                             for k, v in trial.items()))
    if any(combo in checked[:i] for i, combo in enumerate(checked)):  # by equality: a value may be a mapping
        raise UserError(f"{field}.{kind}", f"values repeat: {[list(c) for c in checked]}")
    return Param("+".join(keys), kind, tuple(list(c) for c in checked), section)


def _parse_param(section: str, name: str, spec: Any, base: dict[str, Any]) -> Param:
    if "+" in name and section != "fixed":
        return _parse_coupled(section, name, spec, base)
    field = f"space.{section}.{name}"
    key = resolve_key(name, field)
    if section == "fixed":
        if isinstance(spec, dict):
            raise UserError(field, "fixed values are plain values; distributions belong under "
                                   "'scientific' or 'nuisance'")
        return Param(key, "fixed", (_check_value(base, key, spec, field),), section)
    if not isinstance(spec, dict) or len(spec) != 1:
        raise UserError(field, f"expected one distribution such as {{grid: [1, 2, 4]}}; "
                               f"accepted: {one_of(DISTRIBUTIONS)} (constants go under 'fixed')")
    (kind, values), = spec.items()
    if kind not in DISTRIBUTIONS:
        raise UserError(field, f"unknown distribution {kind!r}{did_you_mean(str(kind), DISTRIBUTIONS)}; "
                               f"accepted: {one_of(DISTRIBUTIONS)}")
    if not isinstance(values, list) or not values:
        raise UserError(f"{field}.{kind}", f"expected a non-empty list, got {values!r}")
    if kind in RANGES:
        if len(values) != 2:
            raise UserError(f"{field}.{kind}", f"expected [low, high], got {values!r}")
        lo, hi = _range_bounds(base, key, kind, values, f"{field}.{kind}")
        if kind.startswith("log") and lo <= 0:
            raise UserError(f"{field}.{kind}", f"a log scale needs low > 0, got {lo}")
        return Param(key, kind, (lo, hi), section)
    checked = tuple(_check_value(base, key, v, f"{field}.{kind}[{i}]") for i, v in enumerate(values))
    if len(set(map(repr, checked))) != len(checked):
        raise UserError(f"{field}.{kind}", f"values repeat: {list(checked)}")
    return Param(key, kind, checked, section)


def space_paths(data: dict[str, Any], folders: tuple[Path, ...]) -> None:
    """The relative paths of :data:`SPACE_PATHS` in a space's sections (plain data) made
    absolute (in place) against the first of ``folders`` that has them."""
    from sweeps.paths import in_folder

    for entries in (data.get(s) for s in SECTIONS):
        for name, spec in entries.items() if isinstance(entries, dict) else ():
            keys = [ALIASES.get(n.strip(), n.strip()) for n in str(name).split("+")]
            at = [i for i, k in enumerate(keys) if k in SPACE_PATHS]
            if not at:
                continue
            if not isinstance(spec, dict):
                entries[name] = in_folder(spec, *folders)
            elif len(spec) == 1 and isinstance(values := next(iter(spec.values())), list):
                for i, v in enumerate(values):
                    if len(keys) == 1:
                        values[i] = in_folder(v, *folders)
                    elif isinstance(v, list) and len(v) == len(keys):
                        values[i] = [in_folder(x, *folders) if j in at else x for j, x in enumerate(v)]


def load_space(spec: str | dict[str, Any], *, base: dict[str, Any], field: str = "space") -> SearchSpace:
    """Read and validate a search space against the base trial config (plain data)."""
    data, source = _read(spec, field)
    data = copy.deepcopy(data)
    space_paths(data, (Path(source).parent, Path.cwd()) if source != "<inline>" else (Path.cwd(),))
    unknown = set(data) - set(SECTIONS) - {"description"}
    if unknown:
        bad = sorted(unknown)[0]
        raise UserError(f"{field}.{bad}", f"unknown section{did_you_mean(bad, SECTIONS)}; "
                                          f"accepted: 'description', {one_of(SECTIONS)}")
    params: list[Param] = []
    seen: dict[str, str] = {}
    for section in SECTIONS:
        entries = data.get(section) or {}
        if not isinstance(entries, dict):
            raise UserError(f"{field}.{section}", "expected a mapping of hyperparameters")
        for name, spec_ in entries.items():
            p = _parse_param(section, str(name), spec_, base)
            for k in p.keys:
                if k in seen:
                    raise UserError(f"{field}.{section}.{name}", f"{k} is already given under '{seen[k]}'")
                seen[k] = section
            params.append(p)
    alpha_keys = [p for p in params for k in p.keys if k in ("adapter.alpha", "adapter.alpha_over_r")]
    if len(alpha_keys) > 1:
        raise UserError(f"{field}.{alpha_keys[1].section}.{alpha_keys[1].short}",
                        "give alpha or alpha_over_r, not both")
    return SearchSpace(description=str(data.get("description", "")), params=tuple(params),
                       source=source)


def base_with_fixed(base: dict[str, Any], space: SearchSpace, *, keep: Collection[str] = ()) -> dict[str, Any]:
    """The base trial config with the space's fixed values, and alpha cleared when the space
    sweeps it the other way. Settings in ``keep`` (given on the command line) keep their value,
    and so does alpha given the other way."""
    out = copy.deepcopy(base)
    for p in space.swept:
        for k in p.keys:
            clear_other_alpha(out, k)
    held = set(keep) | {OTHER_ALPHA[k] for k in keep if k in OTHER_ALPHA}
    return apply_hyperparameters(out, {k: v for k, v in space.fixed().items() if k not in held})


def to_tune(space: SearchSpace, *, algorithm: str) -> dict[str, Any]:
    """Tune ``param_space`` for the swept dimensions: ``{'adapter.r': tune.grid_search(...)}``.

    Fixed values are not in it (they live in the base config), so Tune's status table shows
    only what varies. Optuna cannot take a grid: that is refused here, before launch.
    """
    from ray import tune

    out: dict[str, Any] = {}
    for p in space.swept:
        if p.kind == "grid":
            if algorithm == "optuna":
                raise UserError(f"space.{p.section}.{p.short}",
                                "grid is not supported with search.algorithm 'optuna'; use "
                                "{choice: [...]} or search.algorithm 'grid'")
            out[p.key] = tune.grid_search(list(p.tune_values))
        elif p.kind == "choice":
            out[p.key] = tune.choice(list(p.tune_values))
        else:
            make = {"uniform": tune.uniform, "loguniform": tune.loguniform,
                    "randint": tune.randint, "lograndint": tune.lograndint}[p.kind]
            out[p.key] = make(*p.values)
    return out
