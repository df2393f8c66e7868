"""Text classification on your own data (a text or a text pair, and a label).

    python sweeps/text_classification.py                          # roberta-base on dair-ai/emotion (hub, GPU)
    python sweeps/text_classification.py --preset smoke           # offline, 2 CPU cores, about a minute
    python sweeps/text_classification.py --data ./reviews.csv --set data.columns.text=review \\
        --set data.columns.label=sentiment
    python sweeps/text_classification.py --model /models/deberta-v3-base --data ./my_data/
    python sweeps/text_classification.py --config my_study.yaml   # your own presets, same schema

Data: a .csv, .jsonl or .json file (the training split; 10% is held out for validation, or
data.holdout_size rows), a directory with train.* and optionally validation.* (or valid, val,
dev, eval) and test.* files, or a hub dataset (its name, or a local copy from `hf download
--repo-type dataset ID --local-dir DIR`). Columns (data.columns): text, an optional text_pair
and label; default {text: text, label: label}. Labels are strings or integers; the label set
is read from the training data and recorded (data.labels on the sweep's MLflow run). Metrics:
accuracy (ASHA's) and macro-F1, on validation at every report and on the test split (else the
validation set) when a trial completes.
Presets: sweeps/presets/text_classification.yaml; search spaces: search_spaces/text_classification_*.yaml.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout too

from sweeps.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("text_classification", doc=__doc__))
