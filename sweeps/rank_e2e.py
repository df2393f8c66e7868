"""The LoRA paper's E2E rank study (Table 18): which rank does GPT-2 need on E2E NLG?

    python sweeps/rank_e2e.py                   # the paper: GPT-2 medium, ranks 1..1024 (GPUs)
    python sweeps/rank_e2e.py --preset paper-script   # decoded as microsoft/LoRA's command
    python sweeps/rank_e2e.py --preset quick    # GPT-2 small, one GPU-hour
    python sweeps/rank_e2e.py --preset smoke    # offline, 2 CPU cores, a few minutes

Presets: sweeps/presets/rank_e2e.yaml; search spaces: search_spaces/e2e_rank_*.yaml.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout too

from sweeps.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("rank_e2e", doc=__doc__))
