"""SQuAD v1.1 with GPT-2: LoRA rank x target modules x learning rate, EM and F1 on the dev set.

    python sweeps/squad_grid.py                   # GPT-2, 24 configurations (GPUs, the hub)
    python sweeps/squad_grid.py --preset smoke    # offline, 2 CPU cores, a few minutes
    python sweeps/squad_grid.py --set data.format=tags   # the TU Wien <Q> ... <C> ... <A> prompt

Presets: sweeps/presets/squad_grid.yaml; search spaces: search_spaces/squad_grid_*.yaml.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout too

from sweeps.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("squad_grid", doc=__doc__))
