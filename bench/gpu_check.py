"""The Python half of ``bench/gpu_check.sh``: what a step's sweep recorded, and the one JSON
summary of every step.

    python bench/gpu_check.py sweep WORK NAME     # WORK/NAME.json from the sweep's CSV and MLflow
    python bench/gpu_check.py summary WORK MODE   # the summary of WORK/*.status and WORK/*.json
                                                  # (exit code 1 unless every step passed)
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: The steps of bench/gpu_check.sh, in order.
STEPS = ("e2e_packed", "qlora", "throughput", "packing")


def sweep_result(work: Path, name: str) -> dict:
    """A sweep's trials by status, its best completed row, and what its MLflow record says
    about where the trials trained (``peak_mem_kind``: ``cuda_max_allocated`` on a GPU) and
    their fp16 loss scale."""
    from mlflow import MlflowClient

    with open(work / "rr" / name / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    statuses: dict[str, int] = {}
    for row in rows:
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    done = [r for r in rows if r["status"] == "completed"]
    best = min(done, key=lambda r: float(r["val_loss"])) if done else {}
    client = MlflowClient(tracking_uri=f"sqlite:///{work / (name + '.db')}")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])
            if r.data.tags.get("lorasweep.kind") == "trial"]
    kinds = sorted({r.data.tags.get("lorasweep.peak_mem_kind", "") for r in runs})
    scales = [r.data.metrics["loss_scale"] for r in runs if "loss_scale" in r.data.metrics]
    keep = ("val_loss", "BLEU", "ROUGE_L", "judge_score", "peak_mem_mb", "samples_per_s", "wall_s")
    return {"trials": statuses, "peak_mem_kind": kinds, "last_loss_scales": scales,
            "best": {k: float(best[k]) for k in keep if best.get(k) not in (None, "")},
            "errors": sorted({r["error"].splitlines()[0] for r in rows if r.get("error")})}


def summary(work: Path, mode: str) -> dict:
    """Every step's exit code, seconds and numbers (``WORK/<step>.status``: ``rc milliseconds``;
    ``WORK/<step>.json``: its numbers), the log's last lines where it failed."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    out: dict = {"mode": mode, "ok": True,
                 "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                 "versions": {"torch": torch.__version__, "cuda": torch.version.cuda}, "steps": {}}
    try:  # its version only: importing it prints its backends' notes
        out["versions"]["bitsandbytes"] = version("bitsandbytes")
    except PackageNotFoundError:
        out["versions"]["bitsandbytes"] = None
    for step in STEPS:
        out["steps"][step] = entry = step_result(work, step)
        out["ok"] = out["ok"] and entry["ok"]
    return out


def step_result(work: Path, step: str) -> dict:
    status = work / f"{step}.status"
    if not status.is_file():
        return {"ok": False, "note": "not run"}
    rc, millis = status.read_text().split()
    entry: dict = {"ok": rc == "0", "exit_code": int(rc), "seconds": round(int(millis) / 1000, 1)}
    if rc == "124":
        entry["note"] = "stopped at its time limit"
    numbers = work / f"{step}.json"
    if numbers.is_file():
        entry["result"] = json.loads(numbers.read_text())
    if rc != "0":
        log = work / f"{step}.log"
        entry["log_tail"] = log.read_text(errors="replace").splitlines()[-15:] if log.is_file() else []
    return entry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sweep")
    s.add_argument("work", type=Path)
    s.add_argument("name")
    m = sub.add_parser("summary")
    m.add_argument("work", type=Path)
    m.add_argument("mode")
    args = ap.parse_args()
    if args.command == "sweep":
        (args.work / f"{args.name}.json").write_text(json.dumps(sweep_result(args.work, args.name), indent=2))
    else:
        result = summary(args.work, args.mode)
        print(json.dumps(result, indent=2))
        sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
