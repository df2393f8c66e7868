"""Fine-tuning methods compared on GLUE: quality, trainable parameters, speed and memory.

    python sweeps/variants_glue.py                          # RoBERTa-base, CoLA MRPC RTE STS-B (hub, GPU)
    python sweeps/variants_glue.py --task rte --seeds 3
    python sweeps/variants_glue.py --preset all-methods     # every method, the same protocol
    python sweeps/variants_glue.py --preset smoke           # offline, 2 CPU cores, MRPC and STS-B

Methods (adapter.method): full, lora, rslora, dora, loraplus, vera, lora-fa, pissa, olora,
qlora (trainables/methods.py). Each task is its own sweep (MLflow parent run); the summary of
each ends with a table of the methods (metric, trainable parameters, samples/s, peak memory),
also written as methods.csv and methods.png beside results.csv and on the parent run.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweeps.cli import main

if __name__ == "__main__":
    sys.exit(main("variants_glue", doc=__doc__))
