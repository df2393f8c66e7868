"""Rank vs task: GPT-2 medium x LoRA rank on E2E NLG and SQuAD v1.1 (TU Wien report).

    python sweeps/rank_vs_task.py                      # GPT-2 medium from the hub (GPUs)
    python sweeps/rank_vs_task.py --task squad         # one task only
    python sweeps/rank_vs_task.py --preset smoke       # offline: tiny GPT-2, synthetic data
    python sweeps/rank_vs_task.py --preset smoke --seeds 3   # 3 replicates per config

One sweep per task, in turn, each its own MLflow parent run (experiment lorasweep-rank_vs_task);
then the analysis report of those sweeps (<storage>/...-report/): per task, metric-vs-rank
plots and the paper-style table; BLEU, NIST, METEOR, ROUGE-L and CIDEr are computed for both
tasks. Presets: sweeps/presets/rank_vs_task.yaml; spaces: search_spaces/rank_study_*.yaml.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout too

from sweeps.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("rank_vs_task", doc=__doc__))
