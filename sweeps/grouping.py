"""Which trials early stopping compares: ``scheduler.groups`` resolved against the search space
(see :mod:`sweeps.schedulers`), and what grouped Optuna searches."""

from __future__ import annotations

from typing import Any

from sweeps.config import SweepConfig
from trainables.errors import UserError, did_you_mean, one_of


def group_keys(cfg: SweepConfig, space: Any) -> tuple[str, ...] | None:
    """The swept settings whose values make ASHA's groups (``scheduler.groups``), as Tune
    ``param_space`` keys; None = sweep-wide (``none``: replicate seeds too). Otherwise replicate
    seeds always separate groups."""
    setting = cfg.scheduler.groups.strip()
    scientific = [p.key for p in space.swept if p.section == "scientific"]
    seed = [k for k in scientific if k == "seed"]
    if setting == "none":
        if seed and cfg.search.algorithm == "optuna":
            raise UserError("seeds", f"--seeds {cfg.seeds} with search.algorithm optuna gives each seed its own "
                                     "Optuna study, one per group; scheduler.groups=none leaves one study that "
                                     "samples every setting and cannot replicate a trial over seeds: use "
                                     "scheduler.groups auto (or named settings), or drop --seeds")
        return None
    if setting in ("auto", "scientific"):
        if setting == "scientific" and scientific == seed:
            raise UserError("scheduler.groups", f"the search space ({space.source}) has no scientific "
                                                "setting to group trials by; use groups=none (sweep-wide "
                                                "ASHA) or name swept settings")
        return tuple(scientific) or None
    known = {name: p.key for p in space.swept for name in (p.key, p.short)}
    keys = []
    for name in (n.strip() for n in setting.split(",")):
        if name not in known:
            raise UserError("scheduler.groups", f"{name!r} is not swept by the search space; accepted: "
                                                f"auto, scientific, none, or swept settings "
                                                f"({one_of(sorted({p.short for p in space.swept})) or 'none'})"
                                                f"{did_you_mean(name, list(known))}")
        keys.append(known[name])
    return tuple(dict.fromkeys(keys + seed))


def leaves_nothing_to_prune(space: Any, groups: tuple[str, ...] | None) -> bool:
    """True when every swept setting makes the groups: each group's trials are copies of one
    configuration, and ASHA has nothing to compare."""
    return groups is not None and all(p.key in groups for p in space.swept)


def grouped_search(cfg: SweepConfig, groups: tuple[str, ...] | None) -> bool:
    return cfg.search.algorithm == "optuna" and groups is not None


def searched_space(space: Any, groups: tuple[str, ...]) -> Any:
    """Grouped Optuna: the part of the space each group's study searches (checked)."""
    from search_spaces import SearchSpace

    for p in space.swept:
        if p.key in groups and p.kind not in ("grid", "choice"):
            raise UserError(f"space.{p.section}.{p.short}",
                            f"trials are grouped by it (scheduler.groups), so with search.algorithm "
                            f"optuna its values must be listed ({{grid: [...]}} or {{choice: [...]}}), "
                            f"one Optuna study each; got {p.kind}")
    rest = tuple(p for p in space.params if p.key not in groups)
    if not any(p.kind != "fixed" for p in rest):
        raise UserError("search.algorithm", "optuna searches the settings trials are not grouped by, and "
                                            "every swept setting makes the groups; sweep nuisance settings "
                                            "(e.g. lr), use search.algorithm grid, or scheduler.groups=none")
    return SearchSpace(description=space.description, params=rest, source=space.source)


def group_points(space: Any, groups: tuple[str, ...] | None) -> list[dict[str, Any]]:
    """Every combination of the grouping settings' listed values (Tune values)."""
    import itertools

    params = [p for p in space.swept if groups and p.key in groups]
    return [dict(zip([p.key for p in params], combo))
            for combo in itertools.product(*[p.tune_values for p in params])]


def sampled_keys(space: Any) -> set[str]:
    """The settings a search-space dimension samples (choice, uniform, ...) rather than grids."""
    return {k for p in space.swept if p.kind != "grid" for k in p.keys}
