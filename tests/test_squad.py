"""SQuAD v1.1: the official EM/F1 normalisation on hand-computed cases, the official JSON
reader and its strict check, truncation that never cuts the answer, loss on answer tokens only."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from trainables.errors import UserError
from trainables.metrics.squad import exact_match, f1, normalize_answer, score_squad
from trainables.tasks.causal_lm import IGNORE, pad_collate
from trainables.tasks.squad import (Encoder, Question, check_squad_json, encode_split, fit_context,
                                    local_files)


# --------------------------------------------------------------------------- metric


@pytest.mark.parametrize("text, normalised", [
    ("The  Cat!", "cat"),                  # lowercase, punctuation, article, whitespace
    ("An apple, a day.", "apple day"),      # all three articles are whole words only
    ("theater and anvil", "theater and anvil"),  # ...so words starting with them stay
    ("  A\tb \n ", "b"),                    # tabs and newlines are whitespace too
    ("U.S.A.", "usa"),                      # punctuation removed, not replaced by spaces
    ("the-end", "theend"),                  # punctuation goes first: "theend" is no article
    ("rock'n'roll", "rocknroll"),
    ("Thé Café", "thé café"),               # non-ASCII letters are kept (only ASCII punctuation)
    ("“quoted”", "“quoted”"),               # curly quotes are not in string.punctuation
    ("the", ""),
])
def test_official_normalisation(text, normalised):
    assert normalize_answer(text) == normalised


def test_exact_match_and_f1_by_hand():
    assert exact_match("The Eiffel Tower", "eiffel tower!") == 1.0
    assert exact_match("Eiffel Tower in Paris", "Eiffel Tower") == 0.0
    # "cat sat on mat" vs "cat on mat": 3 common tokens, P = 3/4, R = 3/3, F1 = 6/7
    assert f1("the cat sat on the mat", "a cat on a mat") == pytest.approx(6 / 7)
    # multiset overlap: {red: 2, blue: 1} & {red: 1, blue: 2} = 2 tokens; P = R = 2/3
    assert f1("red red blue", "red blue blue") == pytest.approx(2 / 3)
    # both normalise to "": the official script gives EM 1 but F1 0 (no common token)
    assert exact_match("The", "a") == 1.0 and f1("The", "a") == 0.0
    assert f1("Denver", "Denver Broncos") == pytest.approx(2 / 3)  # P = 1, R = 1/2


def test_corpus_scores_take_the_best_gold_answer_and_average():
    refs = [["Denver Broncos", "The Denver Broncos", "Broncos"], ["a cat on a mat", "a dog"],
            ["Denver Broncos"]]
    preds = ["the broncos", "the cat sat on the mat", "Denver"]
    s = score_squad(refs, preds)
    # EM: 1 (matches "Broncos"), 0, 0 -> 1/3; F1: 1, 6/7, 2/3 -> mean
    assert s["EM"] == pytest.approx(100 / 3)
    assert s["F1"] == pytest.approx(100 * (1 + 6 / 7 + 2 / 3) / 3)
    assert set(s) == {"EM", "F1", "BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr"}
    assert 0 <= s["BLEU"] <= 100 and 0 <= s["ROUGE_L"] <= 100
    perfect = score_squad(refs, ["The Denver Broncos", "a cat on a mat", "Denver Broncos"], meteor=False)
    assert perfect["EM"] == perfect["F1"] == 100.0
    # every prediction is one of its references, of its length: every n-gram precision (up to
    # the 4-grams of "a cat on a mat") is 1 and the brevity penalty 1, so BLEU is 100; ROUGE-L
    # (the best reference's) is 100
    assert perfect["BLEU"] == pytest.approx(100.0) and perfect["ROUGE_L"] == pytest.approx(100.0)
    assert perfect["METEOR"] is None
    with pytest.raises(ValueError):
        score_squad(refs, preds[:2])


# --------------------------------------------------------------------------- files


@pytest.fixture(scope="module")
def squad_dir(tmp_path_factory):
    from trainables.offline.squad_synth import write_squad_dataset

    return write_squad_dataset(tmp_path_factory.mktemp("squad"), n_train=30, n_dev=8)


def test_synthetic_files_are_in_the_official_layout(squad_dir):
    files = local_files(squad_dir)
    assert {p.name for p in files.values()} == {"train-v1.1.json", "dev-v1.1.json"}
    dev = json.loads(files["validation"].read_text())
    assert dev["version"] == "1.1"
    n = 0
    for article in dev["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                n += 1
                assert len(qa["answers"]) >= 2  # the dev set has several gold answers
                for a in qa["answers"]:
                    assert para["context"][a["answer_start"]:][:len(a["text"])] == a["text"]
    assert check_squad_json(files["validation"]) == n


@pytest.mark.parametrize("mutate, fragment", [
    (lambda o: o.pop("data"), "top level: expected an object with a 'data' list"),
    (lambda o: o["data"][1]["paragraphs"][0].pop("context"), "data[1].paragraphs[0].context: missing"),
    (lambda o: o["data"][0]["paragraphs"][2]["qas"][1].update(answers=[]),
     "data[0].paragraphs[2].qas[1].answers: missing or empty"),
    (lambda o: o["data"][0]["paragraphs"][0]["qas"][0]["answers"][0].update(answer_start="7"),
     "data[0].paragraphs[0].qas[0].answers[0].answer_start: expected an offset"),
])
def test_wrong_layout_names_the_field(squad_dir, tmp_path, mutate, fragment):
    obj = json.loads((squad_dir / "train-v1.1.json").read_text())
    mutate(obj)
    bad = tmp_path / "train-v1.1.json"
    bad.write_text(json.dumps(obj))
    with pytest.raises(UserError) as err:
        check_squad_json(bad)
    assert err.value.field == "data.source" and f"{bad}: {fragment}" in err.value.message


def test_missing_file_and_invalid_json(squad_dir, tmp_path):
    data = tmp_path / "sq"
    shutil.copytree(squad_dir, data)
    (data / "dev-v1.1.json").unlink()
    with pytest.raises(UserError, match="lacks dev-v1.1.json"):
        local_files(data)
    bad = tmp_path / "x.json"
    bad.write_text('{"data": [')
    with pytest.raises(UserError, match="line 1: not valid JSON"):
        check_squad_json(bad)
    bad.write_text('{"data": ' + "[" * 100_000)
    with pytest.raises(UserError, match=r"x.json: not readable JSON \(nested deeper than Python's JSON reader goes\)"):
        check_squad_json(bad)


def test_local_json_goes_through_load_dataset(make_trial, squad_dir):
    from trainables.tasks.squad import load_questions

    cfg = make_trial(task="squad", data={"source": str(squad_dir), "format": "cqa"})
    qs = load_questions(cfg)
    raw = json.loads((squad_dir / "dev-v1.1.json").read_text())
    first = raw["data"][0]["paragraphs"][0]
    q = qs["validation"][0]
    assert (q.id, q.context, q.question) == (first["qas"][0]["id"], first["context"],
                                             first["qas"][0]["question"])
    assert q.answers == tuple(a["text"] for a in first["qas"][0]["answers"])
    assert len(qs["train"]) == sum(len(p["qas"]) for a in json.loads(
        (squad_dir / "train-v1.1.json").read_text())["data"] for p in a["paragraphs"])


def _squad_hub_copy(official, out, splits=("train", "validation")):
    """The official files' questions as ``rajpurkar/squad`` lays them out on the hub: config
    ``plain_text``, one flat row per question (id, title, context, question, answers with
    lists of text and answer_start), splits train and validation."""
    import datasets

    from trainables.offline.hub_copy import write_hub_copy

    def rows(name):
        return datasets.Dataset.from_list([
            {"id": qa["id"], "title": article["title"], "context": para["context"], "question": qa["question"],
             "answers": {"text": [a["text"] for a in qa["answers"]],
                         "answer_start": [a["answer_start"] for a in qa["answers"]]}}
            for article in json.loads((official / name).read_text())["data"]
            for para in article["paragraphs"] for qa in para["qas"]])

    names = {"train": "train-v1.1.json", "validation": "dev-v1.1.json"}
    return write_hub_copy(out, {"plain_text": {split: rows(names[split]) for split in splits}})


def test_a_local_copy_of_the_hub_dataset_reads_as_the_official_files(make_trial, squad_dir, tmp_path):
    from trainables.tasks.registry import get_task
    from trainables.tasks.squad import load_questions

    copy = _squad_hub_copy(squad_dir, tmp_path / "hub")
    official = make_trial(task="squad", data={"source": str(squad_dir), "format": "cqa"})
    hub = make_trial(task="squad", data={"source": str(copy), "format": "cqa"})
    task = get_task("squad")
    task.check(hub)
    from_official, from_hub = load_questions(official), load_questions(hub)
    assert len(from_hub["train"]) > 0 and len(from_hub["validation"]) > 0
    assert from_hub == from_official
    key = task._key(hub, "tok")
    assert key != task._key(official, "tok")
    import datasets

    shard = copy / "plain_text" / "validation-00000-of-00001.parquet"  # one dev question left:
    datasets.Dataset.from_parquet(str(shard)).select(range(1)).to_parquet(str(shard))
    assert task._key(hub, "tok") != key
    assert len(load_questions(hub)["validation"]) == 1


def test_a_hub_copy_without_the_validation_split_is_refused_in_one_line(make_trial, squad_dir, tmp_path):
    from trainables.tasks.registry import get_task

    copy = _squad_hub_copy(squad_dir, tmp_path / "hub", splits=("train",))
    with pytest.raises(UserError) as err:
        get_task("squad").check(make_trial(task="squad", data={"source": str(copy), "format": "cqa"}))
    assert err.value.field == "data.source" and "\n" not in str(err.value)
    assert err.value.message == f"{copy} has no 'validation' split (it has 'train')"


def test_a_directory_of_neither_layout_names_both(tmp_path):
    (tmp_path / "train-v1.1.json").write_text("{}")
    with pytest.raises(UserError, match="lacks dev-v1.1.json .*; a folder with none of them is read as a local copy of the hub dataset"):
        local_files(tmp_path)


# --------------------------------------------------------------------------- truncation


def test_fit_context_centres_on_the_answer_or_gives_up():
    offsets = [(i * 2, i * 2 + 1) for i in range(20)]  # token t covers chars [2t, 2t+1)
    assert fit_context(offsets, (20, 23), 30) == (0, 20)   # fits: whole context
    lo, hi = fit_context(offsets, (20, 23), 6)             # answer = tokens 10, 11
    assert hi - lo == 6 and lo <= 10 and hi >= 12 and lo == 8
    assert fit_context(offsets, (0, 1), 6) == (0, 6)       # clamped at the start
    assert fit_context(offsets, (38, 39), 6) == (14, 20)   # and at the end
    assert fit_context(offsets, (20, 31), 4) is None       # the answer alone needs 6 tokens
    assert fit_context(offsets, (20, 23), 0) is None


@pytest.mark.parametrize("fmt, expected", [
    # The GPT-2 SQuAD assignment, section 3: three lines, then the answer and <eos>.
    ("cqa", "Context: Blue Spice is a pub.\nQuestion: What is Blue Spice?\nAnswer:"),
    # The TU Wien slides (001_02f543aa5dd0cc94.txt): "<Q> Is this a test? <C> This is a test
    # context. <A> This is a test text".
    ("tags", "<Q> What is Blue Spice? <C> Blue Spice is a pub. <A>"),
])
def test_prompts_are_laid_out_as_the_sources_show_them(smoke_assets, fmt, expected):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smoke_assets.model_dir)
    q = Question("q1", "Blue Spice is a pub.", "What is Blue Spice?", ("a pub",), (14,))
    prompts, targets, _, _ = encode_split(Encoder(tok, fmt), [q], max_length=128, reserve=None,
                                          progress=False, desc="t")
    assert tok.decode(prompts[0]) == expected
    assert tok.decode(prompts[0] + targets[0]) == expected + " a pub" + tok.eos_token


@pytest.mark.parametrize("fmt", ["cqa", "tags"])
def test_truncation_never_cuts_the_answer(smoke_assets, fmt):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smoke_assets.model_dir)
    context = " ".join(f"Fact {i} is filler." for i in range(40)) + " The answer is Blue Spice. " + \
        " ".join(f"More filler {i}." for i in range(40))
    start = context.index("Blue Spice")
    q = Question("q1", context, "What is the answer?", ("Blue Spice",), (start,))
    huge = Question("q2", "x " * 10 + "Blue Spice", "Q?", ("x " * 300,), (0,))  # answer not in it
    enc = Encoder(tok, fmt)
    full_len = len(tok(" " + context)["input_ids"])
    prompts, targets, kept, counts = encode_split(enc, [q, huge], max_length=64, reserve=None,
                                                  progress=False, desc="t")
    assert kept == [0] and counts["skipped"] == 1 and counts["answer_not_in_context"] == 1
    assert counts["shortened"] == 1 and full_len > 64
    assert len(prompts[0]) + len(targets[0]) <= 64
    prompt = tok.decode(prompts[0])
    assert "Blue Spice" in prompt and "What is the answer?" in prompt
    assert tok.decode(targets[0]) == " Blue Spice" + tok.eos_token
    assert prompt.startswith("Context:" if fmt == "cqa" else "<Q> What is the answer? <C>")
    assert prompt.endswith("\nAnswer:" if fmt == "cqa" else " <A>")
    # a budget too small for even the answer span: skipped and counted, never cut
    _, _, kept, counts = encode_split(enc, [q], max_length=16, reserve=None, progress=False, desc="t")
    assert kept == [] and counts["skipped"] == 1


def test_prepared_data_masks_everything_but_the_answer(make_trial, smoke_assets):
    from transformers import AutoTokenizer

    from trainables.offline.squad_synth import smoke_squad_data
    from trainables.tasks.registry import get_task

    task = get_task("squad")
    cfg = make_trial(task="squad", data={"source": str(smoke_squad_data()), "max_length": 64,
                                         "train_limit": 40, "val_limit": 10, "test_limit": 10})
    task.check(cfg)
    data = task.load_prepared(task.prepare(cfg, progress=False), cfg)
    assert data.stats["train_shortened"] > 0 and data.stats["train_examples"] + \
        data.stats["train_skipped"] == 40
    tok = AutoTokenizer.from_pretrained(smoke_assets.model_dir)
    batch = pad_collate(tok.eos_token_id)([data.train[i] for i in range(8)])
    for row in range(8):
        ids, n_prompt = data.train[row]
        labels = batch["labels"][row]
        labelled = labels[labels != IGNORE].tolist()
        assert labelled == list(np.asarray(ids[n_prompt:]))       # the answer and eos only
        assert (labels[:n_prompt] == IGNORE).all()
        answer = tok.decode(labelled)
        assert answer.endswith(tok.eos_token)
        assert answer[:-len(tok.eos_token)].strip() in tok.decode(ids[:n_prompt])  # never cut
    assert len(data.test["prompts"]) == len(data.test["references"]) == data.stats["test_questions"]
