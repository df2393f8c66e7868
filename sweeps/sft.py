"""Supervised fine-tuning (instruction / chat SFT) on your own data.

    python sweeps/sft.py                                    # Qwen2.5 0.5B Instruct on Alpaca (hub, GPU)
    python sweeps/sft.py --preset smoke                     # offline, 2 CPU cores, about a minute
    python sweeps/sft.py --model /models/Llama-3.2-1B-Instruct --data ./my_data/train.jsonl
    python sweeps/sft.py --data ./chats.jsonl --set data.columns.messages=conversations
    python sweeps/sft.py --data ./qa.csv --set data.columns.prompt=question --set data.columns.response=answer
    python sweeps/sft.py --config my_study.yaml             # your own presets, same schema

Data: a .jsonl, .json or .csv file (the training split; 10% is held out for validation, or
data.holdout_size rows), a directory with train.* and optionally validation.* (or valid, val,
dev, eval) and test.* files, or a hub dataset (its name, or a local copy from `hf download
--repo-type dataset ID --local-dir DIR`). Columns (data.columns): Alpaca's {prompt:
instruction, query: input, response: output} by default, or a messages column of {role,
content} / ShareGPT {from, value} turns (the default when the data has a 'messages' or
'conversations' column), and an optional system column (one named 'system' by default). Each
conversation is rendered with the model's chat template; the loss is on the answers only.
Each trial records the validation loss (ASHA's metric) and, when complete, its answers to
held-out prompts (outputs/generations.jsonl).
Presets: sweeps/presets/sft.yaml; search spaces: search_spaces/sft_*.yaml.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout too

from sweeps.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("sft", doc=__doc__))
