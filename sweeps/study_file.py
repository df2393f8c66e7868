"""Study files: a study's presets as YAML, read and checked before anything else.

The built-in studies keep theirs in ``sweeps/presets/<study>.yaml``; a user's own is given
with ``--config FILE`` (to any sweep script, or to ``python -m sweeps.run``). Both are read by
:func:`read_study`, with the same schema::

    study: my_study            # the MLflow experiment is lorasweep-<study>; default: the file's
                               # stem (or, with --config on a sweep script, that script's study)
    default: smoke             # the preset run without --preset; default: the first
    part_flag: task            # with parts (here or a preset's): the flag that picks them (--task a,b or all)
    default_parts: [a]
    parts: {a: {...}, b: {...}}   # each a sweep's settings, as a preset's; names of letters, digits, - and _
    report: false              # true: write the analysis report after the sweeps
    presets:
      paper: {...}             # a sweep: description, space, trial, search, scheduler,
                               # resources, seed, seeds, name, ... (sweeps.config.SweepConfig)
      smoke: {extends: paper, ...}   # a preset may extend another and refine parts

Every key, at any depth, is checked against that schema when the file is read (an unknown key
is one line naming it, with a did-you-mean); the values are checked when the chosen preset is
built (:func:`trainables.schema.from_dict`) and before launch.

Relative paths: ``space``, ``trial.model.name_or_path``, ``trial.data.source``,
``trial.data.predict_file`` and ``trial.eval.prompts`` that name a file or directory beside the
study file are read from there; other values are used as written (a search space's name in
``search_spaces/``, a hub name, a path relative to the working directory).
"""

from __future__ import annotations

import copy
import os
import sys
import dataclasses
from pathlib import Path
from dataclasses import dataclass
from typing import Any, get_type_hints

from search_spaces import SPACE_PATHS, space_paths
from sweeps.paths import in_folder
from trainables.errors import UserError, did_you_mean, not_utf8, one_of

PRESETS_DIR = Path(__file__).resolve().parent / "presets"


def studies() -> list[str]:
    """The built-in studies: those with a script and a preset file (``sweeps/presets/<study>.yaml``)."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml") if (PRESETS_DIR.parent / f"{p.stem}.py").is_file())


#: Top-level settings of a trial; ``--set train.lr=1e-4`` means ``trial.train.lr``.
TRIAL_SECTIONS = ("task", "seed", "model", "data", "adapter", "train", "eval")


#: CLI flag -> dotted SweepConfig setting.
FLAG_SETTINGS = {
    "model": "trial.model.name_or_path",
    "data": "trial.data.source",
    "search_space": "space",
    "num_samples": "search.num_samples",
    "max_concurrent": "search.max_concurrent",
    "search_alg": "search.algorithm",
    "scheduler": "scheduler.name",
    "cpus_per_trial": "resources.cpus_per_trial",
    "gpus_per_trial": "resources.gpus_per_trial",
    "workers_per_trial": "resources.workers_per_trial",
    "seed": "seed",
    "tracking_uri": "tracking_uri",
    "experiment": "experiment",
    "storage": "storage",
    "name": "name",
    "keep_best_k": "keep_best_k",
    "max_failures": "max_failures",
    "memory_limit_mb": "resources.memory_limit_mb",
    "seeds": "seeds",
    "max_trainable_params": "max_trainable_params",
}


@dataclass
class Study:
    """A study's preset file: its presets and, for multi-part studies, its parts.

    A *part* is one sweep of a study that runs several (one per GLUE task, one per model
    size): ``parts`` maps part names to settings, and ``part_flag`` names the command-line flag
    that picks them (``--task rte,mrpc`` or ``--task all``). A part's settings are the
    defaults of its sweep; the preset and ``--set`` override them. Parts are given at the top
    of the file and may be refined per preset (``presets.smoke.parts``).
    """

    name: str
    presets: dict[str, dict[str, Any]]
    default: str
    part_flag: str | None = None
    default_parts: tuple[str, ...] = ()
    report: bool = False
    """``report: true`` in the preset file: after its sweeps, write the analysis report of
    them (plots and tables from the MLflow store they wrote; :mod:`sweeps.study_report`)."""

    def parts(self, preset: str) -> dict[str, dict[str, Any]]:
        return self.presets[preset].get("parts") or {}


#: The study files of this process's ``--config``, by study name: how its resume hints run it.
STUDY_FILES: dict[str, Path] = {}


def load_study(study: str) -> Study:
    """A built-in study's presets with ``extends`` resolved (parts included), and its part
    flag: its preset file, read and checked by :func:`read_study`."""
    return read_study(PRESETS_DIR / f"{study}.yaml", name=study)


def load_presets(study: str) -> tuple[dict[str, dict[str, Any]], str]:
    """The study's presets with ``extends`` resolved, and the default preset's name."""
    s = load_study(study)
    return s.presets, s.default


TOP_KEYS = ("study", "default", "presets", "parts", "part_flag", "default_parts", "report")
#: Keys of a preset beside the sweep settings.
PRESET_KEYS = ("extends", "parts", "default_parts")
#: Sweep settings the command line fills in, never a study file.
SET_BY_CLI = ("study", "preset", "part", "overrides")
#: Settings that may name a file beside the study file.
PATH_SETTINGS = (("space",), ("trial", "model", "name_or_path"), ("trial", "data", "source"),
                 *(("trial", *key.split(".")) for key in SPACE_PATHS))
#: Flags every sweep script has, which a part flag cannot be.
RESERVED_FLAGS = ("help", "preset", "set", "config", "resume", "dry-run")


def read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    if path.is_dir():
        raise UserError("--config", f"{path} is a directory; give a study file (YAML)")
    if not path.is_file():
        raise UserError("--config", f"study file {path} does not exist")
    from trainables.schema import load_yaml

    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError("--config", not_utf8(path)) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError("--config", f"{path}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(data, dict):
        raise UserError("--config", f"{path}: expected a mapping with 'presets' (name -> sweep settings)")
    return data


def check_keys(data: Any, cls: type, where: str, path: Path, *, extra: tuple[str, ...] = (),
               leave_out: tuple[str, ...] = ()) -> None:
    """Every key of ``data`` (at any depth) is a field of dataclass ``cls`` (plus ``extra``)."""
    if not isinstance(data, dict):
        raise UserError(where, f"expected a mapping of {cls.__name__} fields in {path}, got {data!r:.60}")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in leave_out] + list(extra)
    for key, value in data.items():
        dotted = f"{where}.{key}"
        if key not in names:
            raise UserError(dotted, f"unknown setting{did_you_mean(str(key), names)} in {path}; "
                                    f"accepted here: {one_of(names)}")
        tp = hints.get(key)
        if tp is not None and dataclasses.is_dataclass(tp):
            check_keys(value, tp, dotted, path)
        elif key == "space" and isinstance(value, dict):
            check_space_sections(value, dotted, path)


def check_space_sections(space: dict[str, Any], where: str, path: Path) -> None:
    from search_spaces import SECTIONS

    accepted = (*SECTIONS, "description")
    for key in space:
        if key not in accepted:
            raise UserError(f"{where}.{key}", f"unknown section{did_you_mean(str(key), accepted)} in {path}; "
                                              f"accepted: {one_of(accepted)}")


def check_sweep(data: Any, where: str, path: Path, *, preset: bool) -> None:
    from sweeps.config import SweepConfig

    check_keys(data, SweepConfig, where, path, extra=PRESET_KEYS if preset else (), leave_out=SET_BY_CLI)
    for name, part in (check_parts(data.get("parts"), f"{where}.parts", path).items() if preset else ()):
        check_sweep(part, f"{where}.parts.{name}", path, preset=False)


def check_parts(parts: Any, where: str, path: Path) -> dict[str, Any]:
    """``parts``: a mapping of part names (words the part flag can list: ``--task a,b``) to
    settings; ``{}`` when not given."""
    if parts is None:
        return {}
    if not isinstance(parts, dict):
        raise UserError(where, f"expected a mapping of part names to sweep settings in {path}, got {parts!r:.60}")
    for name in parts:
        if not isinstance(name, str) or not is_word(name) or name == "all":
            raise UserError(where, f"{name!r} in {path} cannot name a part: use letters, digits, '-' and '_', "
                                   "not all (the part flag lists parts separated by commas, or says all)")
    return parts


def is_word(name: str) -> bool:
    """Letters, digits, ``-`` and ``_`` only (and at least one letter or digit)."""
    return name.replace("-", "").replace("_", "").isalnum()


def check_names(value: Any, accepted: Any, where: str, path: Path, what: str, *, many: bool = False) -> None:
    """``value`` names one of ``accepted`` (a list of them when ``many``)."""
    names = [value] if isinstance(value, str) else value if many and isinstance(value, list) else None
    if names is None or not all(isinstance(n, str) for n in names):
        raise UserError(where, f"expected {'a list of ' + what + ' names' if many else 'a ' + what + ' name'} "
                               f"in {path}, got {value!r:.60}; accepted: {one_of(accepted)}")
    for name in names:
        if name not in accepted:
            raise UserError(where, f"{name!r} is not a {what} of {path}{did_you_mean(str(name), accepted)}; "
                                   f"accepted: {one_of(accepted)}")


def check_study(data: dict[str, Any], path: Path) -> None:
    """The schema of a whole study file (keys and the names that refer to each other)."""
    for key in data:
        if key not in TOP_KEYS:
            raise UserError(str(key), f"unknown study file key{did_you_mean(str(key), TOP_KEYS)} in {path}; "
                                      f"accepted: {one_of(TOP_KEYS)}")
    study = data.get("study")
    if study is not None and (not isinstance(study, str) or not is_word(study)):
        raise UserError("study", f"{study!r} in {path} cannot name a study: use letters, digits, '-' and '_' "
                                 "(it names the sweeps, their directories and the MLflow experiment)")
    presets = data.get("presets")
    if not isinstance(presets, dict) or not presets:
        raise UserError("presets", f"{path} has no presets: expected 'presets' (name -> sweep settings)")
    for name, preset in presets.items():
        if not isinstance(name, str) or not is_word(name):
            raise UserError("presets", f"{name!r} in {path} cannot name a preset: use letters, digits, '-' and '_' "
                                       "(it names the sweeps and their directories)")
        check_sweep(preset, f"presets.{name}", path, preset=True)
        if "extends" in preset:
            check_names(preset["extends"], presets, f"presets.{name}.extends", path, "preset")
    parts = check_parts(data.get("parts"), "parts", path)
    for name, part in parts.items():
        check_sweep(part, f"parts.{name}", path, preset=False)
    if "default" in data:
        check_names(data["default"], presets, "default", path, "preset")
    with_parts = "parts" if parts else next((f"presets.{n}.parts" for n, p in presets.items() if p.get("parts")), None)
    if with_parts and not data.get("part_flag"):
        raise UserError("part_flag", f"{path} lists parts ({with_parts}); name the flag that picks them "
                                     "(e.g. part_flag: task)")
    flag = data.get("part_flag")
    if flag and not with_parts:
        raise UserError("parts", f"part_flag {flag!r} in {path} needs parts to pick from: give 'parts' (part name "
                                 "-> sweep settings) at the top or in a preset, or drop part_flag")
    if flag is not None and (not isinstance(flag, str) or not is_word(flag)
                             or flag in RESERVED_FLAGS or flag.replace("-", "_") in _cli_flags()):
        raise UserError("part_flag", f"{flag!r} in {path} cannot be a flag name: use a word that is not one of "
                                     "the sweep scripts' own flags (e.g. task, size, model_size)")
    if data.get("default_parts") is not None:
        check_names(data["default_parts"], parts, "default_parts", path, "part", many=True)
    if not isinstance(data.get("report", False), bool):
        raise UserError("report", f"expected true or false in {path}, got {data['report']!r}")


def _cli_flags() -> set[str]:

    return set(FLAG_SETTINGS)


def beside(data: dict[str, Any], folder: Path) -> None:
    """Relative paths of :data:`PATH_SETTINGS` that exist in ``folder``, made absolute (in place)."""
    for keys in PATH_SETTINGS:
        node = data
        for k in keys[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
        if isinstance(node, dict) and keys[-1] in node:
            node[keys[-1]] = in_folder(node[keys[-1]], folder)
    if isinstance(data.get("space"), dict):
        space_paths(data["space"], (folder,))


def resolve_presets(data: dict[str, Any], path: Path) -> dict[str, dict[str, Any]]:
    """Every preset with ``extends`` resolved and the top-level parts merged under its own."""
    from trainables.schema import deep_merge

    raw: dict[str, dict[str, Any]] = data["presets"]

    def resolve(name: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
        if name in seen:
            raise UserError(f"presets.{name}.extends", f"presets extend each other in a loop in {path}: "
                                                       f"{' -> '.join(seen + (name,))}")
        entry = copy.deepcopy(raw[name])
        for settings in (entry, *(entry.get("parts") or {}).values()):
            alpha_one_way(settings)
        parent = entry.pop("extends", None)
        return deep_merge(resolve(parent, seen + (name,)), entry) if parent else entry

    top_parts = copy.deepcopy(data.get("parts") or {})
    for settings in top_parts.values():
        alpha_one_way(settings)
    presets = {}
    for name in raw:
        preset = copy.deepcopy(resolve(name))
        if top_parts:
            preset["parts"] = deep_merge(top_parts, preset.get("parts") or {})
        for settings in (preset, *(preset.get("parts") or {}).values()):
            beside(settings, path.resolve().parent)
        presets[name] = preset
    return presets


def alpha_one_way(settings: Any) -> None:
    """A preset or part that gives alpha one way (``alpha``, or ``alpha_over_r``) clears the
    other way, given by the preset it extends or by the defaults, as ``--set`` does."""
    from trainables.schema import clear_other_alpha

    adapter = (settings.get("trial") or {}).get("adapter") if isinstance(settings, dict) else None
    given = [k for k in ("alpha", "alpha_over_r") if k in adapter] if isinstance(adapter, dict) else []
    if len(given) == 1:
        clear_other_alpha(settings["trial"], f"adapter.{given[0]}")


def on_import_path(folder: Path) -> None:
    """``folder`` importable in this process and in the trial processes of the local Ray it
    starts (they inherit ``PYTHONPATH``): a task class in a module beside a study file is named
    ``task: module:Class``. Appended, so it never shadows an installed package."""
    entry = str(folder.resolve())
    if entry not in sys.path:
        sys.path.append(entry)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if entry not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([*paths, entry])


def read_study(path: Path, *, name: str | None = None) -> Study:
    """A study file, checked, as the :class:`Study` the command line runs."""

    data = read_yaml(path)
    check_study(data, path)
    presets = resolve_presets(data, path)
    for preset, settings in presets.items():
        if settings.get("default_parts") is not None:
            check_names(settings["default_parts"], settings.get("parts") or {}, f"presets.{preset}.default_parts",
                        path, "part", many=True)
            if isinstance(settings["default_parts"], str):
                settings["default_parts"] = [settings["default_parts"]]
    parts = data.get("parts") or {}
    defaults = data.get("default_parts") or list(parts)[:1]
    study = Study(str(data.get("study") or name or path.stem), presets, data.get("default", next(iter(presets))),
                  data.get("part_flag"), tuple([defaults] if isinstance(defaults, str) else defaults),
                  report=data.get("report", False))
    if path.resolve().parent != PRESETS_DIR.resolve():
        STUDY_FILES[study.name] = path.resolve()
    return study
