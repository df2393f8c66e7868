"""The command line every sweep script shares.

``python sweeps/<study>.py [--preset NAME] [--set KEY=VALUE ...] [flags]`` builds one
:class:`~sweeps.config.SweepConfig` from the study's preset file
(``sweeps/presets/<study>.yaml``, or a study file of the user's own given with ``--config``;
:mod:`sweeps.study_file`) plus the overrides, and hands it to the runner. A mistake in
any of it is reported as one line on stderr with exit code 2, before anything is launched or
written.
"""

from __future__ import annotations

import argparse
import copy
import gc
import sys
import textwrap
from pathlib import Path
from typing import Any

from sweeps.paths import check_home, check_homes, in_folder
from sweeps.ray_start import RayStartFailed
from sweeps.stopping import Stopped
from sweeps.study_file import (FLAG_SETTINGS, PATH_SETTINGS, SET_BY_CLI, TRIAL_SECTIONS, Study, load_study,
                               on_import_path, read_study)
from trainables.errors import UserError, did_you_mean, one_of

EXIT_USAGE = 2


def study_for(study: str | None, argv: list[str] | None, *, doc: str = "", prog: str | None = None) -> Study:
    """The study file ``--config`` names (a user's own, same schema), else the study's own;
    without a study (``python -m sweeps.run``) ``--config`` is required."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    config = pre.parse_known_args(argv)[0].config
    if config is not None:
        if not config.strip():
            raise UserError("--config", "is empty; give a study file, or leave it out for the study's own presets")
        check_home("--config", config)
        path = Path(config).expanduser()
        loaded = read_study(path, name=study)
        on_import_path(path.parent)  # a task module beside the file (task: module:Class)
        return loaded
    if study is None:  # --help, or the missing --config as one line (exit 2)
        entry = _Parser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
        entry.add_argument("--config", metavar="FILE", required=True, help="the study file")
        entry.parse_known_args(argv)
    return load_study(study)


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
    head = key.split(".")[0]
    if head in TRIAL_SECTIONS:
        key = "trial." + key
    else:
        import dataclasses

        from sweeps.config import SweepConfig

        if head in ("preset", "part"):  # recorded with the sweep as the command line picked them
            raise UserError(key, "is picked on the command line, not set: use --preset" if head == "preset" else
                            "is picked on the command line, not set: use the study's part flag (e.g. --task)")
        # The sweep's own seed is --seed: ``seed=`` here is the trial section above.
        sweep = [f.name for f in dataclasses.fields(SweepConfig)
                 if f.name not in SET_BY_CLI and f.name not in TRIAL_SECTIONS]
        if head not in sweep:  # 'adaptor.r' would otherwise be reported as a SweepConfig field
            raise UserError(key, f"unknown setting{did_you_mean(head, [*TRIAL_SECTIONS, *sweep])}; "
                                 f"a key starts with a trial section ({one_of(TRIAL_SECTIONS)}; seed is "
                                 f"the trial seed) or a sweep setting ({one_of(sweep)}; the sweep seed "
                                 "is --seed)")
    return key, parsed


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (``error: ...``) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"error: {message} (see --help)\n")


def build_parser(study: str | Study, presets: dict[str, Any] | None = None, default: str | None = None,
                 doc: str = "", prog: str | None = None) -> argparse.ArgumentParser:
    if not isinstance(study, Study):
        study = Study(study, presets or {}, default or "")
    presets, default = study.presets, study.default
    p = _Parser(
        prog=prog or f"python sweeps/{study.name}.py", description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="presets:\n" + "\n".join(f"  {n:8s} {textwrap.shorten(str(v.get('description', '')), 150)}"
                                       for n, v in presets.items()))
    p.add_argument("--config", metavar="FILE", help="a study file of your own (the schema of "
                                                    "sweeps/presets/*.yaml), instead of this study's presets")
    p.add_argument("--preset", default=default, help=f"one of {', '.join(presets)} (default {default})")
    if study.part_flag:
        names = sorted({n for preset in presets.values() for n in preset.get("parts") or {}})
        p.add_argument(f"--{study.part_flag}", dest="parts", default=None,
                       metavar="NAME[,NAME...]",
                       help=f"one sweep each, in turn: {', '.join(names)}, or all "
                            f"(default {','.join(study.default_parts)}"
                            + "".join(f"; {n}: {','.join(v['default_parts'])}" for n, v in presets.items()
                                      if v.get("default_parts")) + ")")
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
    p.add_argument("--seeds", help="replicates: run every configuration with trial seeds 0..N-1 "
                                   "(a 'seed' grid dimension; plots show their spread)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI "
                                          "or sqlite:///mlruns.db)")
    p.add_argument("--experiment", help="MLflow experiment name")
    p.add_argument("--storage", help="Tune storage: path or s3:// / gs:// URI (default ./ray_results)")
    p.add_argument("--name", help="sweep name (default <study>-<preset>-<time>-<6 random hex digits>)")
    p.add_argument("--max-trainable-params", help="budget: grid configurations training more "
                                                   "parameters are rejected before launch")
    p.add_argument("--keep-best-k", help="adapter checkpoints kept across the sweep")
    p.add_argument("--max-failures", help="retries of a failed trial, each from its last "
                                          "checkpoint (default 0: a failed trial fails at once)")
    p.add_argument("--memory-limit-mb", help="host memory a trial may allocate beyond its process "
                                             "at start; past it the trial fails as out of memory")
    p.add_argument("--resume", action="store_true",
                   help="finish an interrupted sweep (--name, or the study's latest)")
    p.add_argument("--extend", metavar="N", help="add N trials (per group with groups) to a finished "
                                                  "optuna sweep (--name, or the study's latest): its "
                                                  "study and MLflow parent run go on")
    p.add_argument("--dry-run", action="store_true",
                   help="validate, print the resolved config and trial count, launch nothing")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved settings and search space of each sweep and exit, "
                        "reading no model or data (a paper preset offline)")
    return p


def selected_parts(study: Study, preset: str, text: str | None) -> list[str | None]:
    """The parts named by the part flag (``a,b`` or ``all``); ``[None]`` for a one-sweep study."""
    if not study.part_flag:
        return [None]
    parts = study.parts(preset)
    flag = f"--{study.part_flag}"
    if text is None:  # a preset may name its own default parts (a smoke run does fewer)
        text = ",".join(study.presets[preset].get("default_parts") or study.default_parts)
    if not parts:
        with_parts = [n for n in study.presets if study.parts(n)]
        raise UserError(f"presets.{preset}.parts", f"preset {preset!r} has no parts for {flag} to pick from; give "
                                                   f"it parts in the study file, or run a --preset that has "
                                                   f"them: {one_of(with_parts)}")
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UserError(flag, f"name at least one: {one_of(parts)} or all")
    if names == ["all"]:
        return list(parts)
    for n in names:
        if n not in parts:
            raise UserError(flag, f"unknown {study.part_flag} {n!r}{did_you_mean(n, parts)}; "
                                  f"accepted: {one_of(parts)} or all")
    return list(dict.fromkeys(names))


def build_config(study: str | Study, args: argparse.Namespace, presets: dict[str, Any] | None = None,
                 *, part: str | None = None) -> Any:
    from sweeps.config import SweepConfig
    from trainables.schema import clear_other_alpha, deep_merge, from_dict, set_path

    if not isinstance(study, Study):
        study = Study(study, presets or {}, "")
    presets = study.presets
    if args.preset not in presets:
        raise UserError("--preset", f"unknown preset {args.preset!r}{did_you_mean(args.preset, presets)}; "
                                    f"accepted: {one_of(presets)}")
    data = copy.deepcopy(presets[args.preset])
    part_settings = data.pop("parts", None) or {}
    data.pop("default_parts", None)
    if part is not None:
        # The part's settings are defaults; the preset (and then the command line) wins.
        data = deep_merge(part_settings[part], data)
    data["study"], data["preset"], data["part"] = study.name, args.preset, part
    if getattr(args, "data", None) is not None:
        # The preset's column names are its own data's: --data's are the defaults, or those
        # --set data.columns.<role>=... names.
        data.get("trial", {}).get("data", {}).pop("columns", None)
    for flag in ("model", "data", "search_space", "storage", "tracking_uri"):
        check_home(f"--{flag.replace('_', '-')}", getattr(args, flag, None))
    given = command_settings(args)
    check_given_once(args, given[len(given) - len(args.sets):])
    for key, value in given:
        if key in PATH_KEYS and isinstance(value, str) and not value.strip():
            typed = f"{flag} ''" if (flag := _flag_of(args, key)) else f"--set {key.removeprefix('trial.')}="
            raise UserError(key, f"is empty ({typed}); give a path or a name, or leave it out for the preset's")
    # A relative path given here is the user's working folder's.
    assignments = [(k, in_folder(v, Path.cwd()) if k in PATH_KEYS else v) for k, v in given]
    overrides: dict[str, Any] = {}
    for key, value in assignments:
        if key.startswith("trial."):
            clear_other_alpha(data.setdefault("trial", {}), key.removeprefix("trial."))
            overrides[key.removeprefix("trial.")] = value
        set_path(data, key, value)
    check_homes(data, (*PATH_SETTINGS, *HOME_SETTINGS))
    # Trial settings given on the command line also win over the search space's fixed values.
    data["overrides"] = overrides
    if part is not None and data.get("name") and not str(data["name"]).endswith(f"-{part}"):
        data["name"] = f"{data['name']}-{part}"  # --name X --task rte -> X-rte (as does --name X-rte)
    return from_dict(SweepConfig, data)


#: Settings that name a file or folder, as the command line sets them.
PATH_KEYS = {".".join(keys) for keys in PATH_SETTINGS}
#: Settings beside :data:`PATH_KEYS` whose ``~`` is expanded where they are read (the URIs: the
#: path of a ``sqlite:///`` one).
HOME_SETTINGS = (("storage",), ("trial", "data", "synonyms"), ("tracking_uri",), ("search", "storage"))


def command_settings(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """The settings the command line gives (its flags', then each ``--set``), as given."""
    given = [(dotted, getattr(args, flag)) for flag, dotted in FLAG_SETTINGS.items()
             if getattr(args, flag, None) is not None]
    return given + [parse_assignment(text) for text in args.sets]


def _flag_of(args: argparse.Namespace, dotted: str) -> str | None:
    """The flag (``--search-space``) that gave setting ``dotted``, or None where a ``--set`` did."""
    return next((f"--{flag.replace('_', '-')}" for flag, key in FLAG_SETTINGS.items()
                 if key == dotted and getattr(args, flag, None) is not None), None)


def check_given_once(args: argparse.Namespace, sets: list[tuple[str, Any]]) -> None:
    """Refuse a setting that a flag and a ``--set`` both give (``--scheduler fifo --set
    scheduler.name=asha``): the command line would say two things, and one would be dropped.
    ``sets``: each of ``args.sets`` as :func:`parse_assignment` parsed it, in order."""
    flags = {key: flag for flag, key in FLAG_SETTINGS.items() if getattr(args, flag, None) is not None}
    for text, (key, _) in zip(args.sets, sets, strict=True):
        for dotted, flag in flags.items():
            if dotted == key or dotted.startswith(key + ".") or key.startswith(dotted + "."):
                raise UserError(key.removeprefix("trial."), f"given twice, by --{flag.replace('_', '-')} "
                                f"{getattr(args, flag)} and by --set {text}; give it once")


def as_given(message: str, args: argparse.Namespace) -> str:
    """``message`` with the relative paths of the command line (read made absolute) written
    as the user gave them."""
    import re

    try:
        given = [(k, v) for k, v in command_settings(args) if k in PATH_KEYS]
    except UserError:  # the command line's own mistake: no path was read
        return message
    pairs = {}
    for _, value in given:
        for v in value if isinstance(value, list) else [value]:
            absolute = in_folder(v, Path.cwd()) if isinstance(v, str) else v
            if absolute != v:
                pairs[absolute] = str(Path(v))
    for absolute in sorted(pairs, key=len, reverse=True):
        message = re.sub(rf"(?<![\w/.~-]){re.escape(absolute)}(?=$|[/\s'\"),;:])", lambda _: pairs[absolute], message)
    return message


def build_configs(study: Study, args: argparse.Namespace) -> list[Any]:
    """One SweepConfig per selected part (one for a single-sweep study), all validated."""
    if args.preset not in study.presets:
        return [build_config(study, args)]  # raises the unknown-preset error
    parts = selected_parts(study, args.preset, getattr(args, "parts", None))
    return [build_config(study, args, part=p) for p in parts]


def run_study(study: str | None, argv: list[str] | None = None, *, doc: str = "", prog: str | None = None) -> int:
    """Entry point of ``sweeps/<study>.py`` (and, with ``study`` None, of ``python -m
    sweeps.run --config FILE``); returns the process exit code.

    A multi-part study validates every part before it launches the first, then runs them one
    after the other (each its own sweep, MLflow parent run and ASHA), in one Ray session; a
    part warm-started from another (``adapter.init_from=best:<part>``) runs after it
    (:mod:`sweeps.chain`).
    """
    from sweeps import chain

    try:
        spec = study_for(study, argv, doc=doc, prog=prog)
    except UserError as e:
        print(f"error: {e.field}: {e.message}", file=sys.stderr)
        return EXIT_USAGE
    parser = build_parser(spec, doc=doc, prog=prog)
    args = parser.parse_args(argv)
    cfgs: list[Any] = []
    outcomes: list[Any] = []
    try:
        from trainables.paths import check_cache_dir

        check_cache_dir(create=True)  # every sweep reads or builds something there (data, assets, memos)
        extend = extend_count(args)
        cfgs = chain.order(build_configs(spec, args), spec)
        if args.resume or extend:
            from sweeps.optuna_store import extension
            from sweeps.storage import check_unchanged

            given = given_settings(args, argv)
            for cfg in cfgs:
                if extend:
                    extension(cfg, extend)  # what it refuses first (it reads, and writes nothing)
                check_unchanged(cfg, given, verb="resume" if args.resume else "extend")
        if args.print_config or args.dry_run:
            return _inspect(args, cfgs)
        from sweeps.planning import plan_sweep
        from sweeps.runner import run_sweep
        from sweeps.storage import check_name_is_new

        if len(cfgs) > 1 and not args.resume and not extend:
            for cfg in cfgs:
                check_name_is_new(cfg)
                plan_sweep(chain.for_planning(cfg), prepare=False)
        codes, by_part = [], {}
        for cfg in cfgs:
            cfg = chain.resolved(cfg, by_part)
            outcome = run_sweep(cfg, resume=args.resume, extend=extend, warm_workers=len(cfgs) == 1)
            codes.append(outcome.exit_code)
            outcomes.append(outcome)
            by_part[cfg.part] = outcome
            if outcome.interrupted:  # --resume finishes this part; the later ones are run anew
                if left := [c.part for c in cfgs[len(outcomes):]]:
                    print(f"{spec.name}: not run: {', '.join(left)}; after --resume, run the same command with "
                          f"--{spec.part_flag} {','.join(left)}, without --resume", file=sys.stderr)
                return outcome.exit_code
        if len(cfgs) > 1:
            print(f"\n{spec.name}: {len(cfgs)} sweeps ({', '.join(c.part for c in cfgs)}); "
                  f"{sum(c == 0 for c in codes)} without failed trials")
        if spec.report:
            from sweeps.study_report import report_study

            codes.append(report_study(spec.name, cfgs, outcomes, name=args.name))
    except UserError as e:
        # Name trial settings the way --set takes them (train.lr, not trial.train.lr).
        field = e.field.removeprefix("trial.")
        message = as_given(e.message, args)
        print(f"error: {field}: {message}" if field else f"error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except RayStartFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Stopped) as e:
        print(f"{e if isinstance(e, Stopped) else 'interrupted'}: {_how_to_go_on(e, args, spec, cfgs, outcomes)}",
              file=sys.stderr)
        return 128 + e.signum if isinstance(e, Stopped) else 130
    return max(codes)


def _how_to_go_on(stop: BaseException, args: argparse.Namespace, spec: Study, cfgs: list[Any],
                  outcomes: list[Any]) -> str:
    """What to run after a Ctrl-C or SIGTERM outside Tune's loop. ``--resume`` finds a sweep
    only once it is in Tune storage (the runner says so on ``stop.resumable``; a resumed one
    always is); a sweep stopped before that is run again, and with it the parts after it."""
    if getattr(stop, "resumable", bool(args.resume)):
        return "finish it later with --resume"
    if not outcomes or not spec.part_flag:
        return "the sweep was not launched (no trial ran); run the command again, without --resume"
    left = [c.part for c in cfgs[len(outcomes):]]
    return (f"part {left[0]} was not launched; run the command again for it and the parts after it, "
            f"without --resume: --{spec.part_flag} {','.join(left)}")


def _inspect(args: argparse.Namespace, cfgs: list[Any]) -> int:
    """``--print-config`` and ``--dry-run``: each sweep as the command would run it (with
    ``--resume``, as stored at launch), launching nothing."""
    from sweeps.storage import check_name_is_new, stored_config

    if args.resume:
        from sweeps.tracking.store import check_sweep_in_store

        cfgs = [stored_config(cfg) for cfg in cfgs]
        for cfg in cfgs:
            check_sweep_in_store(cfg)
    if args.print_config:
        return _print_config(cfgs)
    if not args.resume:  # a name the run would refuse
        for cfg in cfgs:
            check_name_is_new(cfg)
    return max(_dry_run(cfg, stored=args.resume) for cfg in cfgs)


def given_settings(args: argparse.Namespace, argv: list[str] | None) -> list[tuple[str, str]]:
    """The flags on the command line that set a sweep setting, each as typed with the setting
    it sets (where the sweep logs, ``--tracking-uri`` and ``--storage``, and ``--name`` left out)."""
    argv = sys.argv[1:] if argv is None else argv
    given = [(f"--{flag.replace('_', '-')} {getattr(args, flag)}", dotted) for flag, dotted in FLAG_SETTINGS.items()
             if getattr(args, flag, None) is not None and dotted not in ("tracking_uri", "storage", "name")]
    given += [(f"--set {text}", parse_assignment(text)[0]) for text in args.sets]
    if any(a == "--preset" or a.startswith("--preset=") for a in argv):
        given.append((f"--preset {args.preset}", "preset"))
    return given


def extend_count(args: argparse.Namespace) -> int | None:
    """``--extend N``: N, checked (a positive integer, not with --resume or --dry-run)."""
    if args.extend is None:
        return None
    try:
        n = int(args.extend)
    except ValueError:
        n = 0
    if n < 1:
        raise UserError("--extend", f"must be a positive integer (trials to add), got {args.extend!r}")
    if args.resume or args.dry_run:
        raise UserError("--extend", "cannot be combined with --resume; an interrupted extension is finished "
                                    "with --resume alone" if args.resume else
                        "cannot be combined with --dry-run; an extension runs the stored sweep's settings, "
                        "which --resume --dry-run shows")
    return n


def main(study: str | None, *, doc: str = "", prog: str | None = None, argv: list[str] | None = None) -> int:
    """``sys.exit(main(...))`` from a sweep script (``argv``: its arguments, default the
    command line's): :func:`run_study`, then a fast exit.

    The driver has imported torch, transformers, Ray and MLflow; the interpreter's last garbage
    collection over all of that takes seconds. Everything is shut down and recorded by then,
    so the objects are frozen out of that collection (gc.freeze) instead.
    """
    code = run_study(study, argv, doc=doc, prog=prog)
    sys.stdout.flush()
    sys.stderr.flush()
    gc.freeze()
    return code


def _print_config(cfgs: list[Any]) -> int:
    """Each sweep's settings as the command resolved them, and its search space (no model,
    data or store is read, so a preset whose sources are out of reach prints too)."""
    import json

    from sweeps.planning import sweep_space
    from trainables.schema import to_dict

    for cfg in cfgs:
        space = sweep_space(cfg)  # refuses what the run and --dry-run refuse in the settings alone
        print(json.dumps({"sweep": to_dict(cfg), "space": space.as_data()}, indent=2))
    return 0


def _dry_run(cfg: Any, *, stored: bool) -> int:
    import json

    from sweeps.planning import plan_sweep
    from trainables.schema import to_dict

    from sweeps.chain import for_planning

    plan = plan_sweep(for_planning(cfg), prepare=False, stored=stored)
    print(json.dumps({"sweep": to_dict(cfg), "base_trial": plan.base,
                      "space": plan.space.as_data(), "n_trials": plan.n_trials}, indent=2))
    return 0


if __name__ == "__main__":  # the sweep scripts' shared command line, not a command itself
    print("error: sweeps.cli is the sweep scripts' shared code, not a command; run lorasweep ARGS (or "
          "python -m sweeps.command ARGS), python sweeps/STUDY.py ARGS or python -m sweeps.run --config FILE ARGS",
          file=sys.stderr)
    sys.exit(EXIT_USAGE)
