"""A new SQLite MLflow store: made by MLflow (its schema migrations run) against lorasweep's
copy of the empty store migrated once per MLflow version (``StagedStore``), each in this
process, one after the other, ``--rounds`` times. Prints the CPU and wall seconds of each and
their ratios (medians). The empty store is made first, in a private cache, and not timed.

    python bench/new_store.py             # the copy: a small fraction of MLflow's own
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def timed(make) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    make()
    return time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="lorasweep-new-store-") as tmp:
        os.environ["LORASWEEP_CACHE"] = str(Path(tmp) / "cache")
        os.chdir(tmp)  # where both put the default experiment's artifacts
        import logging

        from mlflow.tracking._tracking_service.utils import _get_sqlalchemy_store

        from sweeps.tracking.store import StagedStore, empty_store

        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
        empty_store()
        mlflow_s, copy_s = [], []
        for i in range(args.rounds):
            mlflow_s.append(timed(lambda: _get_sqlalchemy_store(f"sqlite:///{tmp}/m{i}.db", None).engine.dispose()))
            copy_s.append(timed(lambda: StagedStore(f"sqlite:///{tmp}/s{i}.db").place()))
    for name, k in (("CPU", 0), ("wall", 1)):
        a, b = statistics.median(t[k] for t in mlflow_s), statistics.median(t[k] for t in copy_s)
        print(f"{name:>4} s, median of {args.rounds}: MLflow's new store {a:.3f}, the copy {b:.3f}, "
              f"ratio {b / a:.3f}")


if __name__ == "__main__":
    main()
