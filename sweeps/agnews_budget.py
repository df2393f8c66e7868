"""AG News with RoBERTa under a trainable-parameter budget.

    python sweeps/agnews_budget.py                                   # the NYU report's run (hub)
    python sweeps/agnews_budget.py --preset budget                   # rank x targets within 1M
    python sweeps/agnews_budget.py --preset budget --max-trainable-params 500000
    python sweeps/agnews_budget.py --preset smoke                    # offline, 2 CPU cores
    python sweeps/agnews_budget.py --set data.predict_file=test_unlabelled.csv

Configurations over the budget are rejected before launch and counted in the summary. With
data.predict_file, the best trial's predictions (id,label; class ids 0-3, or the release's 1-4
with data.predict_labels=release) are logged to the parent run.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweeps.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("agnews_budget", doc=__doc__))
