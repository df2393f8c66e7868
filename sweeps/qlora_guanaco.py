"""QLoRA instruction tuning: Llama 3.2 1B in 4-bit NF4 + LoRA on OASST1 (guanaco form).

    python sweeps/qlora_guanaco.py                      # Llama 3.2 1B, the hub, one GPU
    python sweeps/qlora_guanaco.py --preset smoke       # offline, 2 CPU cores, a few minutes
    python sweeps/qlora_guanaco.py --model /models/Llama-3.2-1B --data /data/guanaco
    python sweeps/qlora_guanaco.py --set eval.judge=mypkg.judges:score      # or an http(s):// URL

Each trial records peak memory (CUDA max allocated, or process RSS on CPU), tokens/s, the
validation loss, and its generations for the fixed prompt list (outputs/generations.jsonl).
Presets: sweeps/presets/qlora_guanaco.yaml; search spaces: search_spaces/qlora_guanaco_*.yaml.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout too

from sweeps.cli import main

if __name__ == "__main__":
    sys.exit(main("qlora_guanaco", doc=__doc__))
