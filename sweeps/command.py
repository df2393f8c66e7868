"""The ``lorasweep`` command (``[project.scripts]``, installed by ``pip install``): the study
scripts and the tools under one name.

    lorasweep run STUDY [ARGS...]        python sweeps/STUDY.py ARGS...
    lorasweep run --config FILE [ARGS]   python -m sweeps.run --config FILE ARGS... (a study file of your own)
    lorasweep report [ARGS...]           python -m analysis.report ARGS...
    lorasweep export [ARGS...]           python -m sweeps.export ARGS...
    lorasweep settings [ARGS...]         python -m sweeps.settings ARGS...
    lorasweep score TASK REFS SYS        a system-output file's metrics (the trials' scorers)
    lorasweep cache {list,clear}         the project's caches and their sizes

``lorasweep COMMAND --help`` shows each one's options.
"""

from __future__ import annotations

import sys

from sweeps.study_file import studies
from trainables.errors import did_you_mean, one_of

COMMANDS = ("run", "report", "export", "settings", "score", "cache")
EXIT_USAGE = 2


def _usage(message: str | None = None) -> int:
    if message is None:
        print(__doc__.strip() + f"\n\nstudies: {', '.join(studies())}")
        return 0
    print(f"error: {message} (see lorasweep --help)", file=sys.stderr)
    return EXIT_USAGE


def run(args: list[str]) -> int:
    """``lorasweep run STUDY ARGS...``: the study script's own command line."""
    import importlib

    from sweeps.cli import main as sweep_main

    if not args or args[0] in ("-h", "--help"):
        return _usage(None if args else "name a study: lorasweep run STUDY [ARGS...]")
    if args[0].startswith("-"):  # a study file of one's own: --config FILE
        return sweep_main(None, doc=importlib.import_module("sweeps.run").__doc__ or "",
                          prog="lorasweep run", argv=args)
    study, rest = args[0], args[1:]
    known = studies()
    if study not in known:
        return _usage(f"unknown study {study!r}{did_you_mean(study, known)}; accepted: {one_of(known)}")
    doc = importlib.import_module(f"sweeps.{study}").__doc__ or ""
    return sweep_main(study, doc=doc, prog=f"lorasweep run {study}", argv=rest)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        return _usage(None if argv else "name a command: " + one_of(COMMANDS))
    command, rest = argv[0], argv[1:]
    if command == "run":
        return run(rest)
    if command == "report":
        from analysis.report import main as tool
    elif command == "export":
        from sweeps.export import main as tool
    elif command == "settings":
        from sweeps.settings import main as tool
    elif command == "score":
        from sweeps.score import main as tool
    elif command == "cache":
        from sweeps.caches import main as tool
    else:
        return _usage(f"unknown command {command!r}{did_you_mean(command, COMMANDS)}; accepted: {one_of(COMMANDS)}")
    return tool(rest)


if __name__ == "__main__":
    sys.exit(main())
