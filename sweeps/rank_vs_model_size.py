"""Rank vs model size: GPT-2 small, medium and large x LoRA rank on E2E NLG (TU Wien report).

    python sweeps/rank_vs_model_size.py                       # the hub's GPT-2 S/M/L (GPUs)
    python sweeps/rank_vs_model_size.py --size medium,large   # some sizes only
    python sweeps/rank_vs_model_size.py --preset smoke        # offline: tiny GPT-2s of 3 sizes
    python sweeps/rank_vs_model_size.py --preset smoke --seeds 3   # 3 replicates per config

One sweep per size, in turn, each its own MLflow parent run (experiment
lorasweep-rank_vs_model_size); then the analysis report of those sweeps: metric-vs-rank plots
with a line per model, the paper-style table, learning curves (<storage>/...-report/).
Presets: sweeps/presets/rank_vs_model_size.yaml; spaces: search_spaces/rank_study_*.yaml.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout too

from sweeps.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("rank_vs_model_size", doc=__doc__))
