"""Writing the synthetic GLUE tasks as the GLUE download script lays them out:
:func:`write_glue` (``<root>/<TASK>/``) and :func:`write_glue_task` (one task's folder)."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from trainables.offline.glue_synth.formats import (COLA_COLUMNS, DEFAULT_SIZES, GLUE_DIRS,
                                                   GLUE_TASKS, HEADERS)
from trainables.offline.glue_synth.nli import mnli_files, qnli_files, rte_files
from trainables.offline.glue_synth.pairs import mrpc_files, qqp_files, stsb_files
from trainables.offline.glue_synth.single import cola_files, sst2_files

# Each task's rows per file name, from its own random stream and (n_train, n_dev, n_test).
_FILES: dict[str, Callable[[random.Random, int, int, int], dict[str, list]]] = {
    "cola": cola_files, "sst2": sst2_files, "mrpc": mrpc_files, "qqp": qqp_files,
    "stsb": stsb_files, "mnli": mnli_files, "qnli": qnli_files, "rte": rte_files,
}
_FORBIDDEN = re.compile(r"[\t\n\r]")


def _write_tsv(path: Path, header: Sequence[str] | None, rows: Sequence[Sequence[str]]) -> None:
    # The real files are read with csv.QUOTE_NONE: a tab or newline inside a field would
    # shift or merge columns, so none is ever written; a double quote is plain text there
    # (the real files have them: MRPC's '" the witness "').
    width = len(header) if header else COLA_COLUMNS
    with open(path, "w", encoding="utf-8", newline="") as fh:
        for row in ([header] if header else []) + list(rows):
            bad = [f for f in row if _FORBIDDEN.search(f)]
            assert len(row) == width and not bad, (path.name, row)
            fh.write("\t".join(row) + "\n")


def _check_task(task: str) -> None:
    if task not in GLUE_TASKS:
        from trainables.errors import did_you_mean

        raise ValueError(f"unknown GLUE task {task!r}{did_you_mean(task, GLUE_TASKS)}; "
                         f"accepted: {', '.join(GLUE_TASKS)}")


def write_glue_task(task: str, out_dir: str | Path, *, n_train: int | None = None,
                    n_dev: int | None = None, n_test: int | None = None, seed: int = 0) -> Path:
    """Write one synthetic GLUE task into ``out_dir`` (the task's own folder, as
    ``glue_data/<TASK>/``) and return it.

    Sizes left ``None`` take :data:`DEFAULT_SIZES`; for MNLI ``n_dev`` and ``n_test`` are per
    file (matched and mismatched each). No text is in two splits; MNLI keeps a premise's
    hypotheses in one split. The task's rows depend only on ``(task, seed)``.
    """
    _check_task(task)
    defaults = DEFAULT_SIZES[task]
    sizes = [d if n is None else n for n, d in zip((n_train, n_dev, n_test), defaults)]
    for name, n in zip(("n_train", "n_dev", "n_test"), sizes):
        if n < 0:
            raise ValueError(f"{name}={n}; must be >= 0")
    # A string seed is hashed with SHA-512 by random.seed: stable across runs and platforms,
    # and each task draws its own stream, so adding a task changes no other task's rows.
    rng = random.Random(f"glue_synth:{task}:{seed}")
    files = _FILES[task](rng, *sizes)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for filename, header in HEADERS[task].items():
        _write_tsv(out / filename, header, files[filename])
    return out


def write_glue(out_root: str | Path, tasks: Sequence[str] = GLUE_TASKS, *,
               sizes: Mapping[str, Mapping[str, int]] | None = None, seed: int = 0) -> Path:
    """Write ``out_root/<DIR>/`` (:data:`GLUE_DIRS`) for each of ``tasks``; return ``out_root``.

    ``sizes`` overrides :data:`DEFAULT_SIZES` per task, e.g. ``{"sst2": {"n_train": 200}}``.
    """
    for task in tasks:
        _check_task(task)
    sizes = dict(sizes or {})
    for task, override in sizes.items():
        _check_task(task)
        unknown = set(override) - {"n_train", "n_dev", "n_test"}
        if unknown:
            raise ValueError(f"sizes[{task!r}] has unknown key(s) {sorted(unknown)}; "
                             f"accepted: n_train, n_dev, n_test")
    root = Path(out_root)
    for task in tasks:
        write_glue_task(task, root / GLUE_DIRS[task], seed=seed, **sizes.get(task, {}))
    return root
