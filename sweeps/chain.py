"""Warm starts across the parts of one study: ``adapter.init_from=best:<part>``.

The LoRA paper started MRPC, RTE and STS-B from its best MNLI adapter. In a multi-part study
(one sweep per GLUE task) ``best:mnli`` says the same: the part named runs first, and when
its sweep has finished, ``best:mnli`` becomes ``runs:/<run id>`` of its best completed trial
(by the task's metric) in the configs of the parts that start from it, so their trials'
MLflow params (``adapter.init_from``) name the run whose adapter they started from.

* A part named but not selected (``--task rte`` alone): its latest finished sweep of the same
  study and model in the MLflow experiment is used; with none there, the command is refused
  before anything launches.
* A part that names itself (``--task mnli,rte --set adapter.init_from=best:mnli`` sets it
  on MNLI too) starts fresh.
* One step only: the part named must not start from another part itself.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from trainables.errors import UserError, one_of
from trainables.warmstart import BEST_PREFIX, FIELD


def source_part(cfg: Any) -> str | None:
    """The part ``cfg`` starts from (``best:<part>``), or None."""
    value = cfg.trial.adapter.init_from
    return value[len(BEST_PREFIX):].strip() if value and value.startswith(BEST_PREFIX) else None


def with_init_from(cfg: Any, value: str | None) -> Any:
    """``cfg`` with ``adapter.init_from`` set to ``value`` (also where the command line set it,
    which wins over the search space's fixed values)."""
    overrides = dict(cfg.overrides)
    if "adapter.init_from" in overrides:
        overrides["adapter.init_from"] = value
    adapter = replace(cfg.trial.adapter, init_from=value)
    return replace(cfg, trial=replace(cfg.trial, adapter=adapter), overrides=overrides)


def for_planning(cfg: Any) -> Any:
    """The config to validate before its source part has run (the warm start left out: its
    adapter does not exist yet; the runner checks it once resolved)."""
    return with_init_from(cfg, None) if source_part(cfg) else cfg


def order(cfgs: list[Any], study: Any) -> list[Any]:
    """The selected parts' configs of ``study`` (a :class:`~sweeps.study_file.Study`), checked and
    ordered: every part named by ``best:`` runs before the parts that start from it; one not
    selected is resolved now from an earlier sweep (see the module docstring)."""
    parts = list(study.parts(cfgs[0].preset)) if study.part_flag else []
    if not parts and any(source_part(cfg) for cfg in cfgs):
        raise UserError(FIELD, f"{cfgs[0].trial.adapter.init_from}: best:<part> starts from another "
                               f"part of a multi-part study; {study.name} runs one sweep (use a "
                               "directory or runs:/<run_id>)")
    selected = {cfg.part: cfg for cfg in cfgs}
    out = []
    for cfg in cfgs:
        src = source_part(cfg)
        if src is None:
            out.append(cfg)
            continue
        if src not in parts:
            raise UserError(FIELD, f"{BEST_PREFIX}{src}: {cfg.study} has no part {src!r}; accepted: "
                                   f"{BEST_PREFIX}<part> with a part of {one_of(parts)}")
        if src == cfg.part:
            cfg = with_init_from(cfg, None)
        elif src in selected and source_part(selected[src]) not in (None, src):
            raise UserError(FIELD, f"{BEST_PREFIX}{src}: part {src} starts from "
                                   f"{selected[src].trial.adapter.init_from} itself; warm starts chain "
                                   "one step (start it fresh or from a directory or runs:/<run_id>)")
        elif src not in selected:
            cfg = with_init_from(cfg, _earlier_sweep(cfg, src, flag=study.part_flag))
        out.append(cfg)
    sources = {source_part(cfg) for cfg in out} - {None}
    return [c for c in out if c.part in sources] + [c for c in out if c.part not in sources]


def resolved(cfg: Any, outcomes: dict[str, Any]) -> Any:
    """``cfg`` with ``best:<part>`` replaced by ``runs:/<run id>`` of that part's best completed
    trial, once the part's sweep (its :class:`~sweeps.summary.Outcome` in ``outcomes``) has run."""
    src = source_part(cfg)
    if src is None:
        return cfg
    from mlflow import MlflowClient

    from trainables.warmstart import best_trial

    from trainables.mlflow_names import default_tracking_uri

    client = MlflowClient(tracking_uri=cfg.tracking_uri or default_tracking_uri())
    run_id, value = best_trial(client, client.get_run(outcomes[src].parent_run_id))
    print(f"\n{cfg.study} {cfg.part}: adapter.init_from={BEST_PREFIX}{src} -> runs:/{run_id} "
          f"(the best completed trial of this command's {src} sweep, {value:.4g})", flush=True)
    return with_init_from(cfg, f"runs:/{run_id}")


def _earlier_sweep(cfg: Any, src: str, *, flag: str) -> str:
    """``runs:/<run id>`` of the best completed trial of the latest finished ``src`` sweep of
    the study on the same model, in the MLflow experiment ``cfg`` writes to."""
    from sweeps.planning import resolve_smoke_sources
    from trainables.mlflow_names import default_tracking_uri
    from trainables.schema import to_dict
    from trainables.warmstart import latest_sweep

    uri = cfg.tracking_uri or default_tracking_uri()
    experiment = cfg.experiment_name
    model = resolve_smoke_sources(to_dict(cfg.trial))["model"]["name_or_path"]
    found = latest_sweep(uri, experiment, study=cfg.study, part=src, model=model)
    if found is None:
        raise UserError(FIELD, f"{BEST_PREFIX}{src}: part {src} is not among those selected and "
                               f"{uri} (experiment {experiment!r}) has no finished {src} sweep of "
                               f"{cfg.study} on {cfg.trial.model.name_or_path} with a completed trial; "
                               f"select it too (e.g. --{flag} {src},{cfg.part}) or name an adapter "
                               "(a directory or runs:/<run_id>)")
    parent, run_id, value = found
    print(f"{cfg.study} {cfg.part}: adapter.init_from={BEST_PREFIX}{src} -> runs:/{run_id} (the best "
          f"completed trial of the earlier {src} sweep {parent.info.run_name}, {value:.4g})", flush=True)
    return f"runs:/{run_id}"
