"""``python -m trainables.offline.glue_synth OUT_ROOT``: write synthetic GLUE tasks (as
``glue_data/``), AG News (as ``ag_news_csv/``) and a synonym list (``synonyms.json``)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from trainables.offline.glue_synth.formats import AG_NEWS_DIR, GLUE_DIRS, GLUE_TASKS, HEADERS
from trainables.offline.glue_synth.news import write_ag_news
from trainables.offline.glue_synth.synonyms import write_synonyms
from trainables.offline.glue_synth.write import write_glue_task


def main(argv: Sequence[str] | None = None) -> None:
    all_tasks = (*GLUE_TASKS, "ag_news")
    parser = argparse.ArgumentParser(
        prog="python -m trainables.offline.glue_synth",
        description="Write synthetic GLUE tasks (as glue_data/) and AG News (as ag_news_csv/) "
                    "in the official formats, and a synonym list (synonyms.json).")
    parser.add_argument("out_root", type=Path)
    parser.add_argument("--tasks", nargs="+", choices=all_tasks, default=list(all_tasks),
                        metavar="TASK", help=f"any of {', '.join(all_tasks)} (default: all)")
    parser.add_argument("--n-train", type=int, help="train rows of every task (default: per task)")
    parser.add_argument("--n-dev", type=int, help="dev rows (GLUE; per file for MNLI)")
    parser.add_argument("--n-test", type=int, help="test rows (per file for MNLI)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    given = {k: v for k, v in (("n_train", args.n_train), ("n_dev", args.n_dev),
                               ("n_test", args.n_test)) if v is not None}
    written: list[Path] = []
    for task in args.tasks:
        if task == "ag_news":
            sizes = {k: v for k, v in given.items() if k != "n_dev"}
            out = write_ag_news(args.out_root / AG_NEWS_DIR, seed=args.seed, **sizes)
            written += [out / "train.csv", out / "test.csv", out / "unlabelled.csv"]
        else:
            out = write_glue_task(task, args.out_root / GLUE_DIRS[task], seed=args.seed, **given)
            written += [out / name for name in HEADERS[task]]
    written.append(write_synonyms(args.out_root / "synonyms.json", seed=args.seed))
    for path in written:
        if path.suffix == ".json":
            print(f"{path}: {len(json.loads(path.read_text(encoding='utf-8')))} words")
            continue
        lines = path.read_text(encoding="utf-8").count("\n")
        header = path.suffix == ".tsv" and HEADERS[_task_of(path)].get(path.name) is not None
        header = header or path.name == "unlabelled.csv"
        print(f"{path}: {lines - header} rows")


def _task_of(path: Path) -> str:
    return {d: t for t, d in GLUE_DIRS.items()}[path.parent.name]
