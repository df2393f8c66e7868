"""The TU Wien reproduction of QLoRA (``sweeps/presets/qlora_guanaco.yaml``, ``tuwien``): its
data (Llama 3 chat texts, a hold-out, a one-fifth cut), the side-by-side judge (the report's
prompt, grades read as GPT-4o wrote them, a real local OpenAI-compatible server and how it
fails), and ``--preset tuwien-smoke`` end to end with the judge's grades in MLflow (real local
Ray, a real MLflow SQLite store, the tiny 4-bit Llama).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from judge_server import JudgeServer, rule

# The verdicts GPT-4o gave in 000_ebca86e218baf75c.txt section 5.4.1 (two of the five), as
# printed there: sections per response, scores 1, 1, 9 and 1, 3, 9.
CAT_VERDICT = """Verdict by ChatGPT 40:

Response A:

Score: 1

Justification: The response appears to be incomplete and nonsensical. It does not provide any information about what a cat is and contains a series of garbled characters. It fails entirely to address the question.

Response B:

Score: 1

Justification: This response is incoherent and unrelated to the question.

Response C:

Score: 9

Justification: This response directly addresses the question by providing a clear, accurate, and detailed description of what a cat is."""
SUM_VERDICT = """Verdict by GPT4-o:

Question: What is 9+3?

Response A: Score: 1

Justification: The response is incomprehensible, containing repetitive and nonsensical text.

Response B: Score: 3

Justification: While the response does eventually state the correct answer ("The answer is: 12"), it is overly cluttered.

Response C: Score: 9

Justification: The response is concise, direct, and correct. It clearly states that "9 + 3 = 12"."""


def test_judge_prompt_is_the_reports():
    """Three answers: the report's prompt word for word (section 5.4), laid out as the group
    sent it (a period after the format; question and lettered answers after blank lines)."""
    from trainables.judge import judge_prompt

    assert judge_prompt("What is 9+3?", ["x", "y z", "9 + 3 = 12."]) == (
        "You will be given three RESPONSES: A,B,C. Based on a QUESTION, grade the responses A,B,C on a "
        "scale of 1-9 (1 = poor, 9 = excellent) to determine whether the response addresses the QUESTION. "
        "For each score, provide a justification in the format <SCORE, JUSTIFICATION>. \n\n"
        "QUESTION: What is 9+3? \n\nA: x \n\nB: y z \n\nC: 9 + 3 = 12.")
    assert judge_prompt("Q?", ["a", "b"]).startswith("You will be given two RESPONSES: A,B. Based on a "
                                                     "QUESTION, grade the responses A,B on")


def test_grades_are_read_in_the_forms_the_judge_writes():
    from trainables.judge import MalformedReply, parse_grades

    cat = parse_grades(CAT_VERDICT, 3)
    assert [s for s, _ in cat] == [1, 1, 9]
    assert cat[0][1].startswith("The response appears to be incomplete") and cat[0][1].endswith("the question.")
    assert [s for s, _ in parse_grades(SUM_VERDICT, 3)] == [1, 3, 9]
    assert parse_grades("<7, on topic>\n<2, off topic>", 2) == [(7, "on topic"), (2, "off topic")]
    assert parse_grades("**A:** <4, meh>\n**B:** <8, good>", 2) == [(4, "meh"), (8, "good")]
    for reply, fragment in [("I cannot grade these.", "0 <SCORE, JUSTIFICATION> grades for 2"),
                            ("Response A: Score: 5\nJustification: ok", "no section for response B"),
                            ("Response A: Score: 12\nResponse B: Score: 3", "score 12 for response A"),
                            ("Response A: fine\nResponse B: Score: 3", "no score for response A")]:
        with pytest.raises(MalformedReply, match=fragment):
            parse_grades(reply, 2)


# ----------------------------------------------------------------------------- the data


def _trial(**data):
    from trainables.config import TrialConfig
    from trainables.schema import from_dict

    return from_dict(TrialConfig, {"task": "guanaco", "data": {"source": "x", **data}})


def test_holdout_is_datasets_train_test_split_and_the_fraction_a_floor():
    """``data.holdout_size`` picks the validation set ``datasets``' train_test_split picks (QLoRA
    splits OASST1 that way); ``data.train_fraction`` keeps floor(n * f) of the rest."""
    import datasets

    from trainables.errors import UserError
    from trainables.tasks.conversations import split_conversations

    rows = list(range(50))
    ref = datasets.Dataset.from_dict({"i": rows}).train_test_split(test_size=7, shuffle=True, seed=42)
    out = split_conversations({"train": rows}, _trial(holdout_size=7, split_seed=42))
    assert sorted(out["val"]) == sorted(ref["test"]["i"]) and sorted(out["train"]) == sorted(ref["train"]["i"])
    assert out["train"] == sorted(out["train"])  # the source's order is kept
    cut = split_conversations({"train": rows}, _trial(holdout_size=7, split_seed=42, train_fraction=0.2))
    assert len(cut["train"]) == 8 and set(cut["train"]) <= set(out["train"]) and cut["val"] == out["val"]
    kept = split_conversations({"train": rows, "val": [99]}, _trial(train_fraction=0.5))
    assert len(kept["train"]) == 25 and kept["val"] == [99]
    with pytest.raises(UserError, match="has no validation split") as e:
        split_conversations({"train": rows}, _trial())
    assert e.value.field == "data.holdout_size"


def test_llama3_chat_text_trains_as_published(smoke_assets):
    """A row of the published mixture: ``chat`` labels each answer and its <|eot_id|>, ``text``
    every token of it (one BOS, EOS after); a tokenizer without Llama 3's tokens is refused."""
    from transformers import AutoTokenizer

    from trainables.errors import UserError
    from trainables.offline.instruct_synth import llama3_text
    from trainables.offline.tiny_llama import ensure_assets
    from trainables.tasks.conversations import to_conversation
    from trainables.tasks.guanaco import check_llama3_tokens, encode_text, training_text

    tok = AutoTokenizer.from_pretrained(ensure_assets()["model"])
    turns = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 plus 3?"},
             {"role": "assistant", "content": "2 plus 3 is 5."}, {"role": "user", "content": "Thanks!"}]
    text = llama3_text(turns, date="31 Dec 2024")
    assert text == ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: "
                    "December 2023\nToday Date: 31 Dec 2024\n\nBe brief.<|eot_id|><|start_header_id|>user"
                    "<|end_header_id|>\n\nWhat is 2 plus 3?<|eot_id|><|start_header_id|>assistant<|end_header_id|>"
                    "\n\n2 plus 3 is 5.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nThanks!<|eot_id|>")
    conv = to_conversation({"text": text}, "row 0")
    assert conv.form == "llama3"
    ids, mask = encode_text(tok, *training_text(tok, conv, "chat")[:2])
    eot = tok.convert_tokens_to_ids("<|eot_id|>")
    assert [i for i, m in zip(ids, mask) if m] == tok("2 plus 3 is 5.", add_special_tokens=False)["input_ids"] + [eot]
    assert tok.decode(ids) == text
    ids, mask = encode_text(tok, *training_text(tok, conv, "text")[:2])
    assert ids == tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] and all(mask)
    assert ids.count(tok.bos_token_id) == 1
    gpt2 = AutoTokenizer.from_pretrained(smoke_assets.model_dir)
    with pytest.raises(UserError, match="has no special token <\\|start_header_id\\|>"):
        check_llama3_tokens(gpt2, {"train": [conv]}, "gpt2-tiny")


# ----------------------------------------------------------------------------- judge outcomes


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_judge_endpoint_grades_and_every_failure_is_one_line(monkeypatch):
    """The local OpenAI-compatible judge grades by its stated rule; a reply without scores, a
    refused key, an unreachable endpoint and a missing key each leave no score and a note."""
    from trainables.config import EvalConfig
    from trainables.errors import UserError
    from trainables.judge import check_judge_ready, judge_all

    key_env, key = "LORASWEEP_TEST_JUDGE_KEY", "sk-not-to-be-seen"
    prompts, answers = ["What is 9+3?", "What time is it?"], [["x y", "12", "9 + 3 = 12."], ["", "noon", "a b c"]]
    monkeypatch.setenv(key_env, key)
    with JudgeServer() as server:
        e = EvalConfig(judge=server.url, judge_model="judge-m", judge_key_env=key_env,
                       compare_models=("base", "tuned", "instruct"))
        judged = judge_all(e, prompts, answers)
        assert judged.scores == [[3.0, 2.0, 6.0], [1.0, 2.0, 4.0]]  # min(9, 1 + words)
        assert judged.justifications[0] == ["2 words.", "1 words.", "5 words."]
        assert judged.note == f"judged by judge-m at {server.url}/chat/completions (2 of 2 prompts)"
        sent = server.requests[0]
        assert (sent["path"], sent["auth"], sent["model"], sent["temperature"]) == (
            "/v1/chat/completions", f"Bearer {key}", "judge-m", 0.0)
        assert sent["messages"][0]["content"].endswith("QUESTION: What is 9+3? \n\nA: x y \n\nB: 12 \n\nC: 9 + 3 = 12.")
        server.mode = "malformed"
        judged = judge_all(e, prompts, answers)
        assert judged.scores == [[None] * 3] * 2 and judged.justifications == [[None] * 3] * 2
        assert judged.note == ("not judged: 2 judge replies without a 1-9 score for every answer "
                               "(prompt 1: 0 <SCORE, JUSTIFICATION> grades for 3 responses)")
        server.mode = "unauthorized"
        judged = judge_all(e, prompts, answers)
        assert judged.note == (f"not judged: the judge judge-m at {server.url}/chat/completions could not "
                               "be used (HTTP 401: Incorrect API key provided)")
        assert judged.scores == [[None] * 3] * 2
    down = EvalConfig(judge=f"http://127.0.0.1:{_closed_port()}/v1", judge_model="judge-m", judge_key_env=key_env)
    judged = judge_all(down, prompts[:1], [["a"]])
    assert judged.scores == [[None]] and judged.note.startswith(f"not judged: the judge judge-m at {down.judge}")
    assert "could not be used (" in judged.note and "\n" not in judged.note and key not in judged.note
    monkeypatch.delenv(key_env)
    judged = judge_all(e, prompts, answers)
    assert judged.scores == [[None] * 3] * 2
    assert judged.note == f"not judged: ${key_env} (the judge's API key) is not set where the trial runs"
    with pytest.raises(UserError, match=f"needs its API key in \\${key_env}"):
        check_judge_ready(e)


def test_judge_settings_are_refused_with_one_line(capsys, tmp_path):
    """Before anything launches: a callable judge from a search space, an endpoint without a
    model or a key; a callable from the command line is accepted."""
    from conftest import sweep_config

    from search_spaces import load_space
    from sweeps.cli import run_study
    from trainables.errors import UserError
    from trainables.offline.tiny_llama import ensure_instruct_assets
    from trainables.schema import to_dict

    ensure_instruct_assets()
    capsys.readouterr()  # what building the assets printed

    base = to_dict(sweep_config("qlora_guanaco", "--preset", "tuwien-smoke").trial)
    with pytest.raises(UserError, match="is Python code and a search space is plain data") as e:
        load_space({"fixed": {"eval.judge": "test_qlora:word_count_judge"}}, base=base)
    assert e.value.field == "space.fixed.eval.judge"
    load_space({"fixed": {"eval.judge": "http://127.0.0.1:1/v1"}}, base={**base, "eval": {
        **base["eval"], "judge_model": "m"}})  # an endpoint is data
    cfg = sweep_config("qlora_guanaco", "--preset", "tuwien-smoke", "--set", "eval.judge=test_qlora:word_count_judge")
    assert cfg.trial.eval.judge == "test_qlora:word_count_judge"
    for sets, line in [
        (["eval.judge=http://127.0.0.1:1/v1"], "error: eval.judge_model: an http(s):// judge is a "
                                               "chat-completions API and needs the model to ask"),
        (["eval.judge=http://127.0.0.1:1/v1", "eval.judge_model=m", "eval.judge_key_env=LORASWEEP_UNSET_KEY"],
         "error: eval.judge: the judge at http://127.0.0.1:1/v1 needs its API key in $LORASWEEP_UNSET_KEY"),
        (["eval.compare_models=smoke:llama-tiny"], "error: eval.compare_models: must name the trial's model"),
    ]:
        argv = ["--preset", "tuwien-smoke", "--dry-run", "--storage", str(tmp_path / "ray_results"),
                "--tracking-uri", f"sqlite:///{tmp_path / 'mlruns.db'}"] + [a for s in sets for a in ("--set", s)]
        assert run_study("qlora_guanaco", argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(line) and "\n" not in err


# ----------------------------------------------------------------------------- end to end


@pytest.mark.integration
def test_tuwien_smoke_end_to_end_with_the_local_judge(tmp_path):
    """``--preset tuwien-smoke`` with the local judge: the tiny 4-bit Llama trains on the
    synthetic mixture (32 held out, one fifth of the rest), three models answer the report's
    five queries, the judge grades them side by side, and MLflow holds each model's mean and
    the table of every prompt, answer, grade and justification; the API key is nowhere."""
    from mlflow import MlflowClient

    key = "sk-local-judge-secret-7"
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    with JudgeServer() as server:
        cmd = [sys.executable, str(REPO / "sweeps" / "qlora_guanaco.py"), "--preset", "tuwien-smoke",
               "--name", "tw", "--tracking-uri", uri, "--storage", str(tmp_path / "ray_results"),
               "--set", f"eval.judge={server.url}", "--set", "eval.judge_model=local-judge"]
        env = {**os.environ, "OPENAI_API_KEY": key}
        proc = subprocess.run(cmd, check=False, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "1 completed, 0 stopped early, 0 failed" in proc.stdout
    assert key not in proc.stdout + proc.stderr
    # The report's mean grade of its own model, (1 + 3 + 2 + 1 + 1) / 5, printed beside the results.
    assert "reference (TU Wien LoRA reproduction, section 5.4.1, Llama 3.2 1B): judge 1.6\n" in proc.stdout
    assert "): judge 1.6\n" in proc.stdout
    assert len(server.requests) == 5 and {r["auth"] for r in server.requests} == {f"Bearer {key}"}

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("lorasweep-qlora_guanaco")
    runs = client.search_runs([exp.experiment_id])
    parent = next(r for r in runs if r.data.tags.get("lorasweep.kind") == "sweep")
    # 7 sources x 40 synthetic rows; 32 held out; floor(248 * 0.2) = 49 trained on.
    assert (parent.data.params["data.train_examples"], parent.data.params["data.val_examples"]) == ("49", "32")
    run = next(r for r in runs if r.data.tags.get("lorasweep.kind") == "trial")
    m, p, tags = run.data.metrics, run.data.params, run.data.tags
    assert (p["data.format"], p["data.train_fraction"], p["eval.prompts"]) == ("text", "0.2", "tuwien_queries")
    assert tags["lorasweep.note"] == f"judged by local-judge at {server.url}/chat/completions (5 of 5 prompts)"
    import mlflow

    mlflow.set_tracking_uri(uri)  # MlflowClient.load_table searches runs through the fluent API
    table = client.load_table(exp.experiment_id, "outputs/judge_table.json", run_ids=[run.info.run_id])
    assert list(table.columns) == ["id", "prompt", "model", "letter", "answer", "score", "justification"]
    assert list(table["id"].unique()) == ["cat", "sum", "secret", "time", "reverse"]
    assert table.loc[4, "prompt"] == "What is 9+3?"
    assert list(table["letter"]) == ["A", "B", "C"] * 5
    assert [s.rsplit("/", 1)[-1] for s in table["model"][:3]] == ["llama-tiny", "tuned", "llama-tiny-instruct"]
    assert list(table["score"]) == [rule(a) for a in table["answer"]]
    assert list(table["justification"]) == [f"{len(a.split())} words." for a in table["answer"]]
    for letter, label in zip("ABC", ["llama-tiny", "tuned", "llama-tiny-instruct"]):
        assert m[f"judge_score/{label}"] == pytest.approx(table[table["letter"] == letter]["score"].mean())
    assert m["judge_score"] == m["judge_score/tuned"]
    gens = client.download_artifacts(run.info.run_id, "outputs/generations.jsonl", str(tmp_path / "dl"))
    rows = [json.loads(line) for line in open(gens, encoding="utf-8")]
    assert [r["answer"] for r in rows] == list(table[table["letter"] == "B"]["answer"])
    # The analysis report's table of the grades, models in the judge's order.
    from analysis.judge import judge_grades
    from analysis.load import load

    grades = judge_grades(load(uri, experiment="lorasweep-qlora_guanaco").trials)
    assert grades.headers == ["sweep", "trial", "llama-tiny", "tuned", "llama-tiny-instruct"]
    assert grades.rows == [["tw", run.info.run_name, *(f"{m[f'judge_score/{label}']:.2f}" for label in
                                                       ("llama-tiny", "tuned", "llama-tiny-instruct"))]]
    written = [f for f in Path(tmp_path).rglob("*") if f.is_file()]  # the store, artifacts, Tune's files
    assert len(written) > 10 and not [f for f in written if key.encode() in f.read_bytes()]
