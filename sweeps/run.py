"""Run a study file of your own: the schema of ``sweeps/presets/*.yaml``, any task.

    python -m sweeps.run --config my_study.yaml                  # its default preset
    python -m sweeps.run --config my_study.yaml --preset smoke --dry-run
    python -m sweeps.run --config my_study.yaml --set train.lr=1e-4 --data ./data/train.jsonl

Every flag of the sweep scripts works here too (``--preset``, ``--set``, ``--model``,
``--data``, ``--search-space``, ``--resume``, ...); ``--config FILE`` is required. The study
file names its presets (``extends`` one another), optional parts with their flag, and per
preset the trial, the search space (a name in ``search_spaces/``, a path relative to the study
file, or inline), the search, the scheduler and the resources; see :mod:`sweeps.study_file`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout too

from sweeps.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(None, doc=__doc__, prog="python -m sweeps.run"))
