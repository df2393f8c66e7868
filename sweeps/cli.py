"""The command line every sweep script shares.

``python sweeps/<study>.py [--preset NAME] [--set KEY=VALUE ...] [flags]`` builds one
:class:`~trainables.config.SweepConfig` from the study's preset file
(``sweeps/presets/<study>.yaml``) plus the overrides, and hands it to the runner. A mistake in
any of it is reported as one line on stderr with exit code 2, before anything is launched or
written.
"""

from __future__ import annotations

import argparse
import copy
import gc
import sys
from pathlib import Path
from typing import Any

from trainables.errors import UserError, did_you_mean, one_of

PRESETS_DIR = Path(__file__).resolve().parent / "presets"
EXIT_USAGE = 2

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
}


def load_presets(study: str) -> tuple[dict[str, dict[str, Any]], str]:
    """The study's presets with ``extends`` resolved, and the default preset's name."""
    import yaml

    from trainables.schema import deep_merge

    path = PRESETS_DIR / f"{study}.yaml"
    data = yaml.safe_load(path.read_text())
    raw: dict[str, dict[str, Any]] = data["presets"]

    def resolve(name: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
        if name in seen:
            raise ValueError(f"{path}: presets extend each other in a loop: {' -> '.join(seen + (name,))}")
        entry = dict(raw[name])
        parent = entry.pop("extends", None)
        return deep_merge(resolve(parent, seen + (name,)), entry) if parent else entry

    return {name: resolve(name) for name in raw}, data.get("default", next(iter(raw)))


def parse_assignment(text: str) -> tuple[str, Any]:
    """``train.lr=1e-4`` -> ``('trial.train.lr', '1e-4')`` (values parsed as YAML scalars/lists;
    the schema then coerces them to the setting's type)."""
    import yaml

    if "=" not in text:
        raise UserError("--set", f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    key = key.strip()
    if not key:
        raise UserError("--set", f"expected KEY=VALUE, got {text!r}")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    if key.split(".")[0] in TRIAL_SECTIONS:
        key = "trial." + key
    return key, parsed


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (``error: ...``) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"error: {message} (see --help)\n")


def build_parser(study: str, presets: dict[str, Any], default: str, doc: str) -> argparse.ArgumentParser:
    p = _Parser(
        prog=f"python sweeps/{study}.py", description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="presets:\n" + "\n".join(f"  {n:8s} {' '.join(str(v.get('description', '')).split())[:150]}"
                                       for n, v in presets.items()))
    p.add_argument("--preset", default=default, help=f"one of {', '.join(presets)} (default {default})")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override any setting, e.g. train.lr=1e-4, adapter.targets=attn+proj, "
                        "scheduler.grace_period=2 (repeatable)")
    p.add_argument("--model", help="hub model name or local directory (from_pretrained)")
    p.add_argument("--data", help="hub dataset name or local directory in the official format")
    p.add_argument("--search-space", help="search space: a name in search_spaces/ or a YAML path")
    p.add_argument("--search-alg", help="grid, random or optuna")
    p.add_argument("--scheduler", help="asha or fifo")
    p.add_argument("--num-samples", help="samples of the space (repeats of a grid)")
    p.add_argument("--max-concurrent", help="trials running at once")
    p.add_argument("--cpus-per-trial", help="CPUs per trial")
    p.add_argument("--gpus-per-trial", help="GPUs per trial (0.5 packs two trials per GPU)")
    p.add_argument("--workers-per-trial", help="Ray Train workers per trial (>1: DDP)")
    p.add_argument("--seed", help="sweep seed")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI "
                                          "or sqlite:///mlruns.db)")
    p.add_argument("--experiment", help="MLflow experiment name")
    p.add_argument("--storage", help="Tune storage: path or s3:// / gs:// URI (default ./ray_results)")
    p.add_argument("--name", help="sweep name (default <study>-<preset>-<time>)")
    p.add_argument("--keep-best-k", help="adapter checkpoints kept across the sweep")
    p.add_argument("--resume", action="store_true",
                   help="finish an interrupted sweep (--name, or the study's latest)")
    p.add_argument("--dry-run", action="store_true",
                   help="validate, print the resolved config and trial count, launch nothing")
    return p


def build_config(study: str, args: argparse.Namespace, presets: dict[str, Any]) -> Any:
    from trainables.config import SweepConfig
    from trainables.schema import from_dict, set_path

    if args.preset not in presets:
        raise UserError("--preset", f"unknown preset {args.preset!r}{did_you_mean(args.preset, presets)}; "
                                    f"accepted: {one_of(presets)}")
    data = copy.deepcopy(presets[args.preset])
    data["study"], data["preset"] = study, args.preset
    assignments = [(dotted, getattr(args, flag)) for flag, dotted in FLAG_SETTINGS.items()
                   if getattr(args, flag, None) is not None]
    assignments += [parse_assignment(text) for text in args.sets]
    overrides: dict[str, Any] = {}
    for key, value in assignments:
        set_path(data, key, value)
        if key.startswith("trial."):
            overrides[key.removeprefix("trial.")] = value
    # Trial settings given on the command line also win over the search space's fixed values.
    data["overrides"] = overrides
    return from_dict(SweepConfig, data)


def run_study(study: str, argv: list[str] | None = None, *, doc: str = "") -> int:
    """Entry point of ``sweeps/<study>.py``; returns the process exit code."""
    presets, default = load_presets(study)
    parser = build_parser(study, presets, default, doc)
    args = parser.parse_args(argv)
    try:
        cfg = build_config(study, args, presets)
        if args.dry_run:
            return _dry_run(cfg)
        from sweeps.runner import run_sweep

        outcome = run_sweep(cfg, resume=args.resume)
    except UserError as e:
        # Name trial settings the way --set takes them (train.lr, not trial.train.lr).
        field = e.field.removeprefix("trial.")
        print(f"error: {field}: {e.message}" if field else f"error: {e.message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted: finish it later with --resume", file=sys.stderr)
        return 130
    return outcome.exit_code


def main(study: str, *, doc: str = "") -> int:
    """``sys.exit(main(...))`` from a sweep script: :func:`run_study`, then a fast exit.

    The driver has imported torch, transformers, Ray and MLflow; the interpreter's last garbage
    collection over all of that takes seconds. Everything is shut down and recorded by then,
    so the objects are frozen out of that collection (gc.freeze) instead.
    """
    code = run_study(study, doc=doc)
    sys.stdout.flush()
    sys.stderr.flush()
    gc.freeze()
    return code


def _dry_run(cfg: Any) -> int:
    import json

    from sweeps.runner import plan_sweep
    from trainables.schema import to_dict

    plan = plan_sweep(cfg, prepare=False)
    print(json.dumps({"sweep": to_dict(cfg), "base_trial": plan.base,
                      "space": plan.space.as_data(), "n_trials": plan.n_trials}, indent=2))
    return 0
