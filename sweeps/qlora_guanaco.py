"""QLoRA instruction tuning of Llama 3.2 1B: 4-bit NF4 base + LoRA, two recipes.

    python sweeps/qlora_guanaco.py                      # QLoRA's Guanaco/OASST1 recipe (artidoro/qlora)
    python sweeps/qlora_guanaco.py --preset tuwien      # the TU Wien reproduction, judged by GPT-4o
    python sweeps/qlora_guanaco.py --preset smoke       # offline, 2 CPU cores, a few minutes
    python sweeps/qlora_guanaco.py --preset tuwien-smoke
    python sweeps/qlora_guanaco.py --model /models/Llama-3.2-1B --data /data/guanaco
    python sweeps/qlora_guanaco.py --set eval.judge=mypkg.judges:score      # a callable per answer
    export OPENAI_API_KEY=...          # an http(s):// judge: any OpenAI-compatible chat API
    python sweeps/qlora_guanaco.py --preset tuwien-smoke --set eval.judge=http://127.0.0.1:8000/v1 \\
        --set eval.judge_model=my-judge

Each trial records peak memory (CUDA max allocated, or process RSS on CPU), tokens/s, the
validation loss, and the answers of every eval.compare_models model to the fixed prompts
(outputs/generations.jsonl, outputs/judge_table.json); with a judge, each model's mean grade
(judge_score, judge_score/<model>). An http(s):// judge is any OpenAI-compatible
chat-completions API; its key comes from $OPENAI_API_KEY (eval.judge_key_env) only.
Presets: sweeps/presets/qlora_guanaco.yaml; search spaces: search_spaces/qlora_guanaco_*.yaml.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout too

from sweeps.cli import main

if __name__ == "__main__":
    sys.exit(main("qlora_guanaco", doc=__doc__))
