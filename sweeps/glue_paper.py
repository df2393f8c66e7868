"""GLUE with RoBERTa + LoRA, the LoRA paper's Table 2 setting, over seeds.

    python sweeps/glue_paper.py --task rte            # RoBERTa-base, 5 seeds (hub)
    python sweeps/glue_paper.py --task all --preset smoke
    python sweeps/glue_paper.py --task mrpc --set adapter.init_from=runs:/<MNLI sweep run id>

Each task is its own sweep (MLflow parent run); the summary prints the median over seeds
next to the paper's number.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweeps.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("glue_paper", doc=__doc__))
