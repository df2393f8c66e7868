"""Data preparation happens once per sweep, not once per trial.

A synthetic E2E dataset about the size of the real one (4,000 training MRs, ~14,000 rows) is
written to a temporary directory, with an empty lorasweep cache. Then, in one run:

  1. the tokenisation a sweep's driver does before launch (the cache is empty: a miss);
  2. the same call again (a hit: what every later sweep with this tokenizer, data and
     preprocessing pays);
  3. a two-trial sweep on that data (FIFO, a few steps each), reading each trial's data
     time from MLflow: trials only memory-map the prepared arrays.

    python bench/data_cache.py        # target: second trial's data time / first preparation <= 0.1
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import run_smoke_sweep, smoke_sweep_cmd  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="lorasweep-data-") as tmp:
        work = Path(tmp)
        os.environ["LORASWEEP_CACHE"] = str(work / "cache")  # empty: the first prepare misses

        from sweeps.cli import build_config, build_parser

        from sweeps.study_file import load_presets
        from sweeps.planning import plan_sweep
        from trainables.config import TrialConfig
        from trainables.offline.e2e_synth import write_e2e_dataset
        from trainables.schema import from_dict
        from trainables.tasks.registry import get_task

        data = write_e2e_dataset(work / "e2e", n_train_mrs=4000, n_dev_mrs=300, n_test_mrs=30)
        flags = ["--data", str(data), "--search-space", str(work / "space.yaml"), "--scheduler", "fifo",
                 "--set", "train.max_steps=5", "--set", "eval.generate=false", "--max-concurrent", "1",
                 "--cpus-per-trial", "2", "--set", "data.val_limit=null"]
        (work / "space.yaml").write_text("scientific:\n  seed: {grid: [1, 2]}\nfixed:\n  r: 4\n")

        presets, default = load_presets("rank_e2e")
        cfg = build_config("rank_e2e", build_parser("rank_e2e", presets, default, "").parse_args(
            smoke_sweep_cmd(work, "data-bench", *flags)[2:]), presets)
        plan = plan_sweep(cfg, prepare=False)
        trial0 = from_dict(TrialConfig, plan.base)
        task = get_task(trial0.task)

        t = time.perf_counter()
        prepared = task.prepare(trial0, progress=True)
        miss_s = time.perf_counter() - t
        t = time.perf_counter()
        assert task.prepare(trial0, progress=False) == prepared
        hit_s = time.perf_counter() - t
        stats = (prepared / "stats.json").read_text()

        run_smoke_sweep(work, "data-bench", *flags, env=dict(os.environ))

        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlruns.db'}")
        runs = client.search_runs(
            [e.experiment_id for e in client.search_experiments()],
            filter_string="tags.`lorasweep.kind` = 'trial'", order_by=["attributes.start_time ASC"])
        data_s = [r.data.metrics["data_s"] for r in runs]

    import json

    st = json.loads(stats)
    print(f"\ndata: {st['train_examples']} training / {st['val_examples']} validation examples")
    print(f"  driver, empty cache (tokenise and write): {miss_s:7.3f} s")
    print(f"  driver, cache hit (later sweeps)        : {hit_s:7.3f} s")
    for i, s in enumerate(data_s, 1):
        print(f"  trial {i} data time (memory-map)        : {s:7.3f} s")
    print(f"  second trial / first preparation = {data_s[1] / miss_s:.4f}  (target <= 0.1)")


if __name__ == "__main__":
    main()
