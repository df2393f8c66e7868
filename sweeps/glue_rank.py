"""Which rank, alpha, learning rate and target group does RoBERTa need on a GLUE task?

    python sweeps/glue_rank.py --task cola                  # Optuna + ASHA, RoBERTa-base (hub)
    python sweeps/glue_rank.py --task cola --preset smoke   # offline, 2 CPU cores

Target groups: qv (W_q, W_v), qkvo (all attention projections), all-linear.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweeps.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("glue_rank", doc=__doc__))
