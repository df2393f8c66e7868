"""The task registry: one module per task family, looked up by name.

Like LitGPT's ``PARSER_DATA`` and PEFT's ``register_peft_method``: an explicit dict, filled at
import time with ``module:Class`` strings so that importing the registry imports no task code
(and no torch). ``get_task`` imports the one a trial needs. Adding a task: write its module
(see :mod:`trainables.tasks.base`), add one line here, add a preset and a sweep script.
The registry lives apart from the package's ``__init__`` so that a task module importing
its package (``trainables.tasks.base``) never runs the registry.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from trainables.errors import UserError, did_you_mean, one_of

if TYPE_CHECKING:
    from trainables.config import TrialConfig
    from trainables.tasks.base import Task

TASKS: dict[str, str] = {}


def register_task(name: str, target: str) -> None:
    """Register ``name`` -> ``'package.module:Class'``; a second registration is an error."""
    if name in TASKS:
        raise ValueError(f"task {name!r} is already registered as {TASKS[name]}")
    TASKS[name] = target


register_task("e2e", "trainables.tasks.e2e:E2ETask")
for _name, _cls in (("mnli", "MNLI"), ("sst2", "SST2"), ("mrpc", "MRPC"), ("cola", "CoLA"),
                    ("qnli", "QNLI"), ("qqp", "QQP"), ("rte", "RTE"), ("stsb", "STSB")):
    register_task(f"glue-{_name}", f"trainables.tasks.glue:{_cls}")
register_task("ag_news", "trainables.tasks.agnews:AGNews")
register_task("squad", "trainables.tasks.squad:SquadTask")
register_task("webnlg", "trainables.tasks.data2text:WebNLGTask")
register_task("dart", "trainables.tasks.data2text:DARTTask")
register_task("guanaco", "trainables.tasks.guanaco:GuanacoTask")
register_task("sft", "trainables.tasks.sft:SFTTask")
register_task("text-classification", "trainables.tasks.text_classification:TextClassification")
register_task("cifar10", "trainables.tasks.vision:VisionTask")

_instances: dict[str, Task] = {}


def get_task(name: str) -> Task:
    """The task object for ``name`` (imported on first use, then shared in this process): a
    registered name, or ``module:Class`` for a task class of the user's own in a module on the
    import path (a study file's folder is: :func:`sweeps.study_file.on_import_path`)."""
    if name not in _instances:
        _instances[name] = _load(name)
    return _instances[name]


def _load(name: str) -> Task:
    from trainables.tasks.base import Task

    if name not in TASKS and ":" not in name:
        raise UserError("task", f"unknown task {name!r}{did_you_mean(name, TASKS)}; "
                                f"accepted: {one_of(sorted(TASKS))}, or 'module:Class' for a task class of your own")
    module, _, cls = TASKS.get(name, name).partition(":")
    try:
        found = getattr(importlib.import_module(module), cls, None)
    except ImportError as e:
        raise UserError("task", f"{name!r}: cannot import {module!r} ({e}); put its folder beside the study "
                                "file or on PYTHONPATH") from None
    if not (isinstance(found, type) and issubclass(found, Task)):
        raise UserError("task", f"{name!r}: {module!r} has no task class {cls!r} (a subclass of "
                                "trainables.tasks.base.Task)")
    return found()


def check_data_settings(cfg: TrialConfig) -> None:
    """Refuse a data setting that only some tasks read (:data:`~trainables.tasks.base.TASK_DATA_SETTINGS`)
    given to a task that does not read it: it would be ignored without a word. Given means set
    to a value other than its default."""
    import dataclasses

    from trainables.config import DataConfig
    from trainables.tasks.base import TASK_DATA_SETTINGS

    task = get_task(cfg.task)
    defaults = {f.name: f.default for f in dataclasses.fields(DataConfig)}
    for name in TASK_DATA_SETTINGS:
        value = getattr(cfg.data, name)
        if name not in task.data_settings and value != defaults[name]:
            readers = [f"'{n}'" for n in TASKS if name in get_task(n).data_settings]
            which = readers[0] + " reads" if len(readers) == 1 else f"{', '.join(readers[:-1])} and {readers[-1]} read"
            raise UserError(f"data.{name}", f"task {cfg.task} does not read it (got {value!r}); only {which} it: "
                                            f"leave it out for {cfg.task}")
