"""Score a system-output file against references with the metric code the trials use.

    lorasweep score e2e REFS SYS            BLEU, NIST, METEOR, ROUGE_L, CIDEr (the E2E scorer's
                                            numbers, with BLEU, METEOR and ROUGE_L x100)
    lorasweep score dart REFS SYS           the same and TER
    lorasweep score webnlg REFS SYS         the same over the whole file (no seen/unseen split)
    lorasweep score squad REFS SYS          EM, F1 and the E2E metrics of the answers

REFS: ``.csv``/``.tsv`` with an MR (or source) column and a reference column, or plain text
with each item's references on consecutive lines and items separated by blank lines (a file
without blank lines holds one reference per item, or, scored against a single output, that
output's references); SQuAD's references are each question's gold answers. SYS: one output
per line, or ``.csv``/``.tsv`` with an MR and an output column. A table's first row names its
columns (MR: mr, src, source, ...; reference: ref, reference, target, ...; output: output,
sys, ...) or is data, MR then text, in a file of two columns; a first row of other names
(input,prediction) is refused. The formats are those of the official E2E scorer
(tuetschek/e2e-metrics, ``measure_scores.py``).
Prints one line per metric; METEOR needs Java (skipped without it, or with ``--no-meteor``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from trainables.errors import UserError, did_you_mean, one_of


def _e2e(refs: list[list[str]], hyps: list[str], meteor: bool | None) -> dict[str, Any]:
    from trainables.metrics.e2e import score_e2e

    return dict(score_e2e(refs, hyps, meteor=meteor))


def _data2text(refs: list[list[str]], hyps: list[str], meteor: bool | None) -> dict[str, Any]:
    from trainables.metrics.data2text import score_data2text

    return dict(score_data2text(refs, hyps, meteor=meteor))


def _squad(refs: list[list[str]], hyps: list[str], meteor: bool | None) -> dict[str, Any]:
    from trainables.metrics.squad import score_squad

    return dict(score_squad(refs, hyps, meteor=meteor))


#: Each task with generated outputs -> the scoring function its trials call (``Task.score`` /
#: ``final_eval``), on a reference list per item and one output per item.
SCORERS: dict[str, Callable[[list[list[str]], list[str], bool | None], dict[str, Any]]] = {
    "e2e": _e2e, "dart": _data2text, "webnlg": _data2text, "squad": _squad,
}


def read_files(refs: Path, system: Path) -> tuple[list[list[str]], list[str]]:
    """The reference groups and system outputs, paired; a missing or malformed file is a
    :class:`UserError` naming it."""
    from trainables.metrics.e2e_files import load_pair

    for field, path in (("REFS", refs), ("SYS", system)):
        if not path.is_file():
            raise UserError(field, f"{path}: {'a directory, not a file' if path.is_dir() else 'no such file'}")
    try:
        return load_pair(refs, system)
    except OSError as exc:
        raise UserError("REFS/SYS", f"{exc.filename or ''}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UserError("REFS/SYS", str(exc)) from None


def score_files(task: str, refs: Path, system: Path, *, meteor: bool | None = None) -> dict[str, Any]:
    """The task's metrics of the system outputs in ``system`` against ``refs``."""
    if task not in SCORERS:
        raise UserError("TASK", f"unknown task {task!r}{did_you_mean(task, SCORERS)}; accepted: "
                                f"{one_of(sorted(SCORERS))}")
    groups, outputs = read_files(refs, system)
    try:
        return SCORERS[task](groups, outputs, meteor)
    except ValueError as exc:
        raise UserError("REFS/SYS", str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    from sweeps.cli import _Parser

    parser = _Parser(prog="lorasweep score", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", metavar="TASK", help=f"one of {', '.join(sorted(SCORERS))}")
    parser.add_argument("refs", metavar="REFS", type=Path, help="the references")
    parser.add_argument("system", metavar="SYS", type=Path, help="the system outputs, one per item")
    parser.add_argument("--no-meteor", action="store_true", help="skip METEOR (it needs Java)")
    args = parser.parse_args(argv)
    from trainables.metrics.e2e import MeteorError

    try:
        scores = score_files(args.task, args.refs, args.system, meteor=False if args.no_meteor else None)
    except (UserError, MeteorError) as exc:  # a mistake in the input (2), or METEOR's Java failed (1)
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UserError) else 1
    width = max(len(k) for k in scores)
    for name, value in scores.items():
        print(f"{name:<{width}}  {'skipped' if value is None else f'{value:.4f}'}")
    if scores.get("METEOR", 0) is None and not args.no_meteor:
        print("note: METEOR skipped: Java was not found (METEOR 1.5 is a Java program)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
