"""Progress of beam-search decoding in a trial's log: lines, not in-place updates."""

from __future__ import annotations

import io

from trainables.progress import progress


def test_in_a_log_each_refresh_is_a_line_of_its_own():
    log = io.StringIO()  # not a terminal, as a Ray trial's stderr
    for _ in progress(range(3), desc="beam search", stream=log, interval_s=0):
        pass
    text = log.getvalue()
    assert "\r" not in text and text.endswith("\n") and "\n\n" not in text
    lines = text.splitlines()
    assert lines[0].startswith("beam search:   0%|") and " 0/3 " in lines[0]
    assert [" 1/3 " in ln for ln in lines[1:3]] == [True, False] and " 2/3 " in lines[2]
    assert lines[-1].startswith("beam search: 100%|##########| 3/3 ")


def test_a_fast_loop_in_a_log_writes_its_start_and_end_only():
    log = io.StringIO()
    for _ in progress(range(500), desc="beam search", stream=log):  # 30 s between lines
        pass
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and " 0/500 " in lines[0] and " 500/500 " in lines[1]


def test_generate_reports_each_batch_in_the_log(smoke_assets, capfd, monkeypatch):
    """The real decode of the smoke E2E model: 5 prompts in batches of 2 are 3 batches."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainables.config import EvalConfig
    from trainables.tasks.causal_lm import generate
    import trainables.progress

    tokenizer = AutoTokenizer.from_pretrained(smoke_assets.model_dir)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token  # as the trial sets it
    model = AutoModelForCausalLM.from_pretrained(smoke_assets.model_dir)
    prompts = [tokenizer("name[The Eagle] ", add_special_tokens=False)["input_ids"]] * 5
    cfg = EvalConfig(num_beams=2, max_new_tokens=4, batch_size=2)
    monkeypatch.setattr(trainables.progress, "LOG_INTERVAL_S", 0.0)
    outputs = generate(model, tokenizer, prompts, cfg, device=torch.device("cpu"))
    assert len(outputs) == 5
    lines = [ln for ln in capfd.readouterr().err.splitlines() if ln.startswith("beam search")]
    assert lines[0].startswith("beam search (5 inputs, batches of 2):   0%") and " 0/3 " in lines[0]
    assert " 3/3 " in lines[-1] and "100%" in lines[-1]
