"""The generic text tasks on a user's own data: the readers (JSONL, a JSON array, CSV, a
directory of splits), column mappings (Alpaca, messages, ShareGPT), the held-out validation
set, ``sft``'s loss on the answers only, ``text-classification``'s label set and macro-F1,
and the mistakes refused as one line with exit code 2 before anything is written."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from trainables.errors import UserError

ALPACA = [{"instruction": "What is 2 plus 3?", "input": "", "output": "2 plus 3 is 5."},
          {"instruction": "Translate into French.", "input": "water", "output": "eau"},
          {"instruction": "Name a capital.", "input": "", "output": "Paris."}]


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def trial(task, source, model="smoke:llama-tiny", **data):
    from trainables.config import TrialConfig
    from trainables.offline.registry import resolve_smoke
    from trainables.schema import from_dict

    return from_dict(TrialConfig, {"task": task, "model": {"name_or_path": resolve_smoke(model, kind="model")},
                                   "data": {"source": str(source), "max_length": 128, **data}})


@pytest.fixture(scope="module")
def llama(torch_one_thread):
    from trainables.offline.tiny_llama import ensure_assets

    return ensure_assets()["model"]


# ----------------------------------------------------------------------------- readers


def test_json_array_jsonl_and_csv_read_alike_and_a_directory_names_its_splits(tmp_path):
    from trainables.tasks.user_data import local_files, read_file

    (tmp_path / "a.json").write_text(json.dumps(ALPACA), encoding="utf-8")  # LLaMA-Factory's demo form
    write_jsonl(tmp_path / "b.jsonl", ALPACA)
    (tmp_path / "c.json").write_text((tmp_path / "b.jsonl").read_text(), encoding="utf-8")  # JSON Lines in .json
    write_csv(tmp_path / "d.csv", ["instruction", "input", "output"], [list(r.values()) for r in ALPACA])
    for name in ("a.json", "b.jsonl", "c.json", "d.csv"):
        split = read_file(tmp_path / name)
        assert split.rows == ALPACA and split.columns == ("instruction", "input", "output"), name
    assert read_file(tmp_path / "d.csv").at(2) == f"{tmp_path / 'd.csv'} line 4"
    (tmp_path / "e.json").write_text(json.dumps(ALPACA[0]) + "\n", encoding="utf-8")  # one object, one line
    assert read_file(tmp_path / "e.json").rows == ALPACA[:1] and read_file(tmp_path / "e.json").lines == [1]
    d = tmp_path / "dir"
    for name in ("train.jsonl", "dev.csv", "test.json"):
        (d / name).parent.mkdir(exist_ok=True)
        (d / name).write_text("x")
    assert {k: v.name for k, v in local_files(d).items()} == {"train": "train.jsonl", "val": "dev.csv",
                                                             "test": "test.json"}
    (d / "validation.jsonl").write_text("x")
    with pytest.raises(UserError, match="has 2 val files"):
        local_files(d)


@pytest.mark.parametrize("name, text, fragment", [
    ("t.jsonl", '{"a": 1}\n{"a": 2\n', "t.jsonl line 2: not valid JSON"),
    ("t.jsonl", '{"a": 1}\n' + "[" * 100_000 + "\n", "t.jsonl line 2: not readable JSON (nested deeper than Python's "
     "JSON reader goes)"),
    ("t.json", "[" * 100_000, "t.json line 1: not readable JSON (nested deeper than Python's JSON reader goes)"),
    ("t.jsonl", '{"a": 1}\n[1, 2]\n', "t.jsonl line 2: expected an object"),
    ("t.csv", "a,b\n1,2\n3\n", "t.csv line 3: expected 2 fields"),
    ("t.csv", "text,label,text\na,1,b\n", "t.csv: the header repeats column 'text'; name each column once"),
    ("t.csv", "b,a,b,c,a\n1,2,3,4,5\n", "t.csv: the header repeats columns 'b', 'a'; name each column once"),
    ("t.json", '[{"a": 1}, 7]', "t.json item 1: expected an object"),
    ("t.json", '{"version": 1,\n "data": [{"a": 1}]}\n', "t.json holds one JSON object; expected a list of "
     "records (a JSON array of objects) or JSON Lines (one object a line)"),
    ("t.txt", "hello", "expected a '.jsonl', '.json' or '.csv' file"),
])
def test_a_bad_row_is_named_with_its_file_and_line(tmp_path, name, text, fragment):
    from trainables.tasks.user_data import local_files, read_file

    (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(UserError) as err:
        read_file(local_files(tmp_path / name)["train"])
    assert err.value.field == "data.source" and fragment in err.value.message


def test_a_csv_row_is_numbered_by_the_line_it_starts_on(tmp_path):
    from trainables.tasks.user_data import read_file

    # line 1 header; 2-3 one quoted row; 4 blank; 5 a row; 6-7 one quoted row
    path = tmp_path / "t.csv"
    path.write_text('text,label\n"a\nb",x\n\nc,y\n"d\ne",z\n', encoding="utf-8")
    split = read_file(path)
    assert split.rows == [{"text": "a\nb", "label": "x"}, {"text": "c", "label": "y"},
                          {"text": "d\ne", "label": "z"}]
    assert split.lines == [2, 5, 6]
    # lines 2-3 a good row; 4 blank; 5-6 a quoted row of one field, which starts on line 5
    path.write_text('text,label\n"a\nb",x\n\n"c\nd"\n', encoding="utf-8")
    with pytest.raises(UserError) as err:
        read_file(path)
    assert err.value.message == f"{path} line 5: expected 2 fields (text, label)"


def test_a_csv_field_longer_than_the_csv_modules_default_limit_is_read_whole(tmp_path):
    from trainables.tasks.user_data import read_file

    path = tmp_path / "t.csv"
    path.write_text('text,label\n"' + "x" * 200_000 + '",a\nb,c\n', encoding="utf-8")
    split = read_file(path)
    assert [len(r["text"]) for r in split.rows] == [200_000, 1] and split.lines == [2, 3]


def test_unnamed_csv_columns_are_no_repeated_name(tmp_path):
    """A spreadsheet's export may end its header with empty names; the named columns read."""
    from trainables.tasks.user_data import read_file

    path = tmp_path / "t.csv"
    path.write_text("text,label,,\nhello,a,,\nbye,b,,\n", encoding="utf-8")
    split = read_file(path)
    assert [(r["text"], r["label"]) for r in split.rows] == [("hello", "a"), ("bye", "b")]


# ----------------------------------------------------------------------------- sft


def test_alpaca_messages_and_sharegpt_rows_become_the_same_turns(tmp_path):
    from trainables.tasks.sft import columns_of, conversation
    from trainables.tasks.user_data import read_file

    turns = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Translate into French.\nwater"},
             {"role": "assistant", "content": "eau"}]
    rows = {
        "alpaca": {"instruction": "Translate into French.", "input": "water", "output": "eau", "sys": "Be brief."},
        "messages": {"messages": turns},
        "sharegpt": {"conversations": [{"from": {"system": "system", "user": "human", "assistant": "gpt"}[t["role"]],
                                        "value": t["content"]} for t in turns]},
    }
    expected_columns = {"alpaca": {"prompt": "instruction", "query": "input", "response": "output", "system": "sys"},
                        "messages": {"messages": "messages"}, "sharegpt": {"messages": "conversations"}}
    for form, row in rows.items():
        split = read_file(write_jsonl(tmp_path / f"{form}.jsonl", [row]))
        # Only the system column is named; every other role takes its default column.
        columns = columns_of(trial("sft", split.where, columns={"system": "sys"} if form == "alpaca" else None),
                             {"train": split})
        assert columns == expected_columns[form]
        assert list(conversation(split, 0, columns).turns) == turns, form
    no_input = read_file(write_jsonl(tmp_path / "n.jsonl", [{"instruction": "a", "output": "b"}]))
    assert columns_of(trial("sft", "x"), {"train": no_input}) == {"prompt": "instruction", "response": "output"}
    qa = read_file(write_jsonl(tmp_path / "qa.jsonl", [{"question": "a", "answer": "b"}]))
    with pytest.raises(UserError, match="name the prompt column: .*qa.jsonl has columns 'question' or 'answer'"):
        columns_of(trial("sft", "x"), {"train": qa})
    got = columns_of(trial("sft", "x", columns={"prompt": "question", "response": "answer"}), {"train": qa})
    assert got == {"prompt": "question", "response": "answer"}


@pytest.mark.parametrize("turn, hint", [
    ({"from": "humen", "value": "hi"}, " (did you mean 'human'?)"),
    ({"content": "hi"}, ""),
    ("hi", ""),
])
def test_a_turn_that_is_no_speakers_turn_is_named_with_the_roles_accepted(tmp_path, turn, hint):
    from trainables.tasks.sft import conversation
    from trainables.tasks.user_data import read_file

    split = read_file(write_jsonl(tmp_path / "m.jsonl", [{"messages": [turn, {"role": "assistant", "content": "A"}]}]))
    with pytest.raises(UserError) as err:
        conversation(split, 0, {"messages": "messages"})
    assert err.value.field == "data.columns.messages"
    assert err.value.message == (f"{tmp_path / 'm.jsonl'} line 1: messages[0]: expected {{role, content}} or "
                                 "{from, value} with a role of 'system', 'user', 'human', 'assistant' or 'gpt'" + hint)


def test_a_bad_model_is_refused_as_the_model_before_the_tasks_data_is_read(tmp_path):
    """The model source is checked before any task's own checks, so a missing model is named
    even where the data is also wrong."""
    from conftest import sweep_config

    from sweeps.planning import plan_sweep

    write_jsonl(tmp_path / "chat.jsonl", ALPACA)  # no column 'question'
    (tmp_path / "empty").mkdir()  # no train.jsonl
    for study, data in [("sft", tmp_path / "chat.jsonl"), ("qlora_guanaco", tmp_path / "empty")]:
        cfg = sweep_config(study, "--preset", "smoke", "--model", str(tmp_path / "no-such-model"), "--data", str(data),
                           "--set", "data.columns.prompt=question", "--storage", str(tmp_path / "rr"),
                           "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}")
        with pytest.raises(UserError) as err:
            plan_sweep(cfg, prepare=False)
        assert (err.value.field, err.value.message) == (
            "model.name_or_path", f"model directory {tmp_path / 'no-such-model'} does not exist"), study
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chat.jsonl", "empty"]


@pytest.mark.parametrize("columns, field, fragment", [
    ({"prompt": "instrution", "response": "output"}, "data.columns.prompt",
     "no column 'instrution' in {path} (did you mean 'instruction'?); its columns are 'instruction', 'input' or 'output'"),
    ({"promt": "instruction"}, "data.columns.promt", "sft has no column role 'promt' (did you mean 'prompt'?)"),
    ({"messages": "input", "prompt": "instruction"}, "data.columns", "either a messages column or prompt/response"),
])
def test_a_column_mapping_that_does_not_fit_the_data_is_refused(tmp_path, columns, field, fragment):
    from trainables.tasks.sft import columns_of
    from trainables.tasks.user_data import read_file

    path = write_jsonl(tmp_path / "train.jsonl", ALPACA)
    with pytest.raises(UserError) as err:
        columns_of(trial("sft", path, columns=columns), {"train": read_file(path)})
    assert err.value.field == field and fragment.format(path=path) in err.value.message


def test_sft_prepares_answers_only_and_holds_out_ten_percent(tmp_path, llama):
    """30 rows and no validation file: 3 held out (10%), as datasets' train_test_split picks
    them; the labelled tokens of each example are exactly its answer and <|eot_id|>."""
    import datasets
    from transformers import AutoTokenizer

    from trainables.tasks.registry import get_task

    rows = [{"instruction": f"What is {i} plus 1?", "input": "", "output": f"{i} plus 1 is {i + 1}."}
            for i in range(30)]
    cfg = trial("sft", write_jsonl(tmp_path / "data" / "train.jsonl", rows), test_limit=2)
    task = get_task("sft")
    task.check(cfg)
    prepared = task.load_prepared(task.prepare(cfg, progress=False), cfg)
    stats = prepared.stats
    assert (stats["train_examples"], stats["val_examples"], stats["val_from"]) == (27, 3, "holdout of 3")
    picked = datasets.Dataset.from_dict({"i": list(range(30))}).train_test_split(test_size=3, seed=0)["test"]["i"]
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.name_or_path)
    eot = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    answers = []
    for k in range(len(prepared.val)):
        ids, mask = prepared.val[k]
        answers.append([int(t) for t, m in zip(ids, mask) if m])
    assert answers == [tokenizer(rows[i]["output"], add_special_tokens=False)["input_ids"] + [eot]
                       for i in sorted(picked)]
    assert prepared.test["prompts"] == [rows[i]["instruction"] for i in sorted(picked)[:2]]


# ----------------------------------------------------------------------------- text classification


def test_macro_f1_by_hand():
    from trainables.metrics.glue import compute

    # class 0: P 1, R 1/2, F1 2/3; class 1: P 1/2, R 1, F1 2/3; class 2: F1 1 -> mean 7/9
    got = compute(["accuracy", "macro_f1"], [0, 0, 1, 2], [0, 1, 1, 2])
    assert got["accuracy"] == pytest.approx(75.0) and got["macro_f1"] == pytest.approx(700 / 9)


def test_the_label_set_is_read_from_train_and_sizes_the_head(tmp_path):
    from trainables.tasks.registry import get_task

    d = tmp_path / "data"
    write_csv(d / "train.csv", ["review", "stars"], [["good", "10"], ["bad", "9"], ["fine", "10"], ["ok", "2"]])
    write_csv(d / "validation.csv", ["review", "stars"], [["great", "10"], ["poor", "2"]])
    cfg = trial("text-classification", d, model="minilm", columns={"text": "review", "label": "stars"})
    task = get_task("text-classification")
    task.check(cfg)
    assert task.label_names == ("2", "9", "10")  # integers written as text, sorted by value
    skeleton = task.skeleton(cfg)
    assert skeleton.config.num_labels == 3 and skeleton.config.id2label == {0: "2", 1: "9", 2: "10"}
    splits = task.split(cfg)
    assert [e.label for e in splits["train"]] == [2, 1, 2, 0]
    assert [e.label for e in splits["val"]] == [e.label for e in splits["test"]] == [2, 0]  # no test split
    write_csv(d / "validation.csv", ["review", "stars"], [["great", "10"], ["meh", "5"]])
    with pytest.raises(UserError, match=r"validation.csv line 3: label 5 is not one of the training data's "
                                        r"labels \('2', '9' or '10'\)"):
        task.check(cfg)


@pytest.mark.parametrize("value, expected", [
    # text: an integer only in canonical decimal form (what str(int) writes, as a CSV holds it)
    ("7", 7), (" 7 ", 7), ("-3", -3), ("0", 0), ("10", 10),
    ("07", "07"), ("007", "007"), ("+7", "+7"), ("-0", "-0"), ("1.0", "1.0"), ("\u00b2", "\u00b2"),
    ("\u0663", "\u0663"), ("pos", "pos"),
    # JSON numbers and JSON text read alike
    (7, 7), (7.0, 7), (-3, -3),
])
def test_a_label_is_an_integer_only_when_written_as_one(value, expected):
    from trainables.tasks.text_classification import label_value
    from trainables.tasks.user_data import Split

    got = label_value(Split("t.jsonl", [{"label": value}], ("label",), [1]), 0, "label")
    assert got == expected and type(got) is type(expected)


def test_labels_written_with_leading_zeros_are_classes_of_their_own(tmp_path):
    from trainables.tasks.text_classification import read_labelled
    from trainables.tasks.user_data import read_file

    path = write_csv(tmp_path / "t.csv", ["text", "label"],
                     [["a", "1"], ["b", "01"], ["c", "\u00b2"], ["d", "1"], ["e", "7"], ["f", "007"]])
    examples, record = read_labelled(trial("text-classification", path), {"train": read_file(path)})
    # integers by value (1, 7), then strings by code point: "007" < "01" < "\u00b2"
    assert record["labels"] == ["1", "7", "007", "01", "\u00b2"]
    assert [e.label for e in examples["train"]] == [0, 3, 4, 0, 1, 2]


def test_without_a_test_split_the_trial_notes_that_its_test_metrics_are_the_validation_sets(tmp_path):
    """One CSV: validation is held out of it and the test metrics repeat it; the final
    report's note says so (the summary and the MLflow run show it beside the metrics). The
    prediction files write the data's own labels (3 and 7), not the class ids (0 and 1)."""
    from dataclasses import replace

    from trainables.checkpointing import OUTPUTS_DIR
    from trainables.loop import run_loop
    from trainables.session import LocalSession
    from trainables.tasks.registry import get_task

    rows = [[f"review {i} {'good' if i % 2 else 'bad'}", "7" if i % 2 else "3"] for i in range(40)]
    unlabelled = write_csv(tmp_path / "unlabelled.csv", ["id", "text"], [["a", "so good"], ["b", "so bad"]])
    cfg = trial("text-classification", write_csv(tmp_path / "one.csv", ["text", "label"], rows), model="minilm",
                holdout_size=8, predict_file=str(unlabelled))
    cfg = replace(cfg, seed=1, train=replace(cfg.train, max_steps=1))
    session = LocalSession(tmp_path / "checkpoints")
    run_loop(cfg, session)
    final = session.reports[-1]
    assert final["final_note"] == "the data has no test split: the test metrics are the validation set's"
    assert final["accuracy"] == final["val_accuracy"]

    outputs = session.checkpoints[-1] / OUTPUTS_DIR
    with open(outputs / "test_predictions.csv", newline="") as fh:
        tested = list(csv.DictReader(fh))
    label_of = dict((text, label) for text, label in rows)
    held_out = get_task("text-classification").split(cfg)["test"]
    assert [r["label"] for r in tested] == [label_of[e.text_a] for e in held_out]
    assert {r["prediction"] for r in tested} <= {"3", "7"}
    assert final["accuracy"] == pytest.approx(100 * sum(r["label"] == r["prediction"] for r in tested) / 8)
    with open(outputs / "predictions.csv", newline="") as fh:
        predicted = list(csv.DictReader(fh))
    assert [r["id"] for r in predicted] == ["a", "b"] and {r["label"] for r in predicted} <= {"3", "7"}


def test_predictions_of_ones_own_data_are_its_labels_under_either_numbering(tmp_path):
    from trainables.tasks.registry import get_task

    rows = [["a", "1"], ["b", "2"], ["c", "5"], ["d", "2"]]
    cfg = trial("text-classification", write_csv(tmp_path / "t.csv", ["text", "label"], rows), model="minilm",
                holdout_size=1)
    task = get_task("text-classification")
    task.check(cfg)
    for numbering in ("index", "release"):
        assert [task.output_label(k, numbering) for k in range(3)] == ["1", "2", "5"]
    assert [task.class_label(k) for k in range(3)] == ["1", "2", "5"]


def test_a_local_copy_of_a_hub_dataset_reads_as_the_same_rows_in_files(tmp_path):
    import datasets

    from trainables.offline.hub_copy import write_hub_copy
    from trainables.tasks.user_data import check_source, load_splits, source_identity

    files = tmp_path / "files"
    write_jsonl(files / "train.jsonl", ALPACA[:2])
    write_jsonl(files / "validation.jsonl", ALPACA[2:])
    copy = write_hub_copy(tmp_path / "hub", {"default": {"train": datasets.Dataset.from_list(ALPACA[:2]),
                                                         "validation": datasets.Dataset.from_list(ALPACA[2:])}},
                          folders={"default": "data"})
    from_files, from_hub = trial("sft", files), trial("sft", copy)
    hub = check_source(from_hub)
    assert {role: (split.rows, split.columns) for role, split in hub.items()} == \
        {role: (split.rows, split.columns) for role, split in load_splits(from_files).items()} == \
        {"train": (ALPACA[:2], ("instruction", "input", "output")), "val": (ALPACA[2:], ("instruction", "input", "output"))}
    assert hub["train"].where == f"{copy}[train]"
    key = source_identity(from_hub)
    assert key != source_identity(from_files)
    datasets.Dataset.from_list(ALPACA[:1]).to_parquet(str(copy / "data" / "train-00000-of-00001.parquet"))
    assert source_identity(from_hub) != key and load_splits(from_hub)["train"].rows == ALPACA[:1]


def test_a_hub_copys_cache_key_follows_its_files_whether_or_not_they_have_settled(tmp_path, monkeypatch):
    """The SFT task's data key of a hub copy is the sha256 of each of its files: the same while
    nothing changes, another when a data file does, also after its digests were kept for files
    unchanged for ``SETTLED_S`` (a rewrite of the same size included)."""
    import hashlib
    import time

    import datasets

    from trainables import cache
    from trainables.offline.hub_copy import write_hub_copy
    from trainables.tasks.registry import get_task
    from trainables.tasks.user_data import source_identity

    copy = write_hub_copy(tmp_path / "hub", {"default": {"train": datasets.Dataset.from_list(ALPACA[:2]),
                                                         "validation": datasets.Dataset.from_list(ALPACA[2:])}},
                          folders={"default": "data"})
    cfg, task = trial("sft", copy), get_task("sft")
    shard = copy / "data" / "train-00000-of-00001.parquet"
    files = ["README.md", "data/train-00000-of-00001.parquet", "data/validation-00000-of-00001.parquet"]
    assert source_identity(cfg) == {"hub_copy": {f: hashlib.sha256((copy / f).read_bytes()).hexdigest() for f in files}}
    key = task._key(cfg, "tok")
    assert task._key(cfg, "tok") == key
    datasets.Dataset.from_list(ALPACA[:1]).to_parquet(str(shard))
    changed = task._key(cfg, "tok")
    assert changed != key

    monkeypatch.setattr(cache, "SETTLED_S", 0.2)
    time.sleep(0.3)
    assert task._key(cfg, "tok") == task._key(cfg, "tok") == changed
    assert cache.settled_version(shard) in cache._SETTLED_DIGESTS  # read once, then kept
    shard.write_bytes(shard.read_bytes()[::-1])  # the same size, other bytes
    rewritten = task._key(cfg, "tok")
    assert rewritten not in (key, changed)
    time.sleep(0.3)  # settled again: kept by its new version, not read as the old one
    assert task._key(cfg, "tok") == rewritten


def test_a_hub_copy_without_a_train_split_is_refused_in_one_line(tmp_path):
    import datasets

    from trainables.offline.hub_copy import write_hub_copy
    from trainables.tasks.user_data import check_source

    copy = write_hub_copy(tmp_path / "hub", {"default": {"test": datasets.Dataset.from_list(ALPACA)}},
                          folders={"default": "data"})
    with pytest.raises(UserError) as err:
        check_source(trial("sft", copy))
    assert err.value.field == "data.source" and err.value.message == f"{copy} has no 'train' split (it has 'test')"


def test_a_directory_of_neither_files_nor_a_hub_copy_names_both(tmp_path):
    from trainables.tasks.user_data import local_files

    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="has no train.* file .* and is not a local copy of a hub dataset"):
        local_files(tmp_path)


def test_a_hub_class_label_column_gives_its_class_names():
    import datasets

    from trainables.tasks.user_data import named_classes

    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["sadness", "joy", "love"])})
    ds = datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": [2, 0, -1]}, features=features)
    assert named_classes(ds) == [{"text": "a", "label": "love"}, {"text": "b", "label": "sadness"},
                                 {"text": "c", "label": -1}]


def test_string_labels_a_pair_and_a_held_out_validation_set(tmp_path):
    from trainables.tasks.registry import get_task

    rows = [{"premise": f"p{i}", "hypothesis": f"h{i}", "label": ["yes", "no", "maybe"][i % 3]} for i in range(20)]
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    cfg = trial("text-classification", path, model="minilm",
                columns={"text": "premise", "text_pair": "hypothesis", "label": "label"})
    task = get_task("text-classification")
    task.check(cfg)
    assert task.label_names == ("maybe", "no", "yes")
    splits = task.split(cfg)
    assert (len(splits["train"]), len(splits["val"])) == (18, 2) and splits["test"] == splits["val"]
    assert all(e.text_b == f"h{e.text_a[1:]}" for e in splits["train"])


def test_the_presets_build_and_the_classification_smoke_plans(tmp_path, capsys):
    from conftest import sweep_config
    from sweeps.cli import run_study

    for study in ("sft", "text_classification"):
        for preset in ("paper", "smoke"):
            assert sweep_config(study, "--preset", preset).trial.task in ("sft", "text-classification")
    cfg = sweep_config("sft", "--preset", "smoke", "--set", "data.columns.system=sys")
    assert cfg.trial.data.columns == {"system": "sys"}
    assert run_study("text_classification", ["--preset", "smoke", "--dry-run", "--storage", str(tmp_path)]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["n_trials"] == 4 and plan["base_trial"]["data"]["columns"] == {"text": "message", "label": "topic"}


# ----------------------------------------------------------------------------- refused before launch


def _refused(tmp_path, script, *flags):
    """The real command in a fresh directory: exit 2, one line on stderr, nothing written."""
    work = tmp_path / "work"
    work.mkdir()
    cmd = [sys.executable, str(REPO / "sweeps" / script), "--preset", "smoke", "--tracking-uri",
           f"sqlite:///{work / 'mlruns.db'}", "--storage", str(work / "rr"), *flags]
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert list(work.iterdir()) == [] and "trial" not in proc.stdout.lower()
    return lines[0]


def test_a_missing_column_and_a_single_class_are_one_line_and_write_nothing(tmp_path):
    write_jsonl(tmp_path / "chat.jsonl", ALPACA)
    line = _refused(tmp_path, "sft.py", "--data", str(tmp_path / "chat.jsonl"), "--set", "data.columns.prompt=question",
                    "--set", "data.columns.response=output")
    assert line == (f"error: data.columns.prompt: no column 'question' in {tmp_path / 'chat.jsonl'}; its columns "
                    "are 'instruction', 'input' or 'output'")
    write_csv(tmp_path / "one.csv", ["message", "topic"], [["a", "billing"], ["b", "billing"], ["c", "billing"]])
    (tmp_path / "work").rmdir()
    line = _refused(tmp_path, "text_classification.py", "--data", str(tmp_path / "one.csv"),
                    "--set", "data.columns.text=message", "--set", "data.columns.label=topic")
    assert line == (f"error: data.columns.label: column 'topic' of {tmp_path / 'one.csv'} has one class "
                    "('billing'); a classifier needs at least two")


# ----------------------------------------------------------------------------- the sft smoke sweep


@pytest.mark.integration
def test_sft_smoke_end_to_end(tmp_path, llama):
    """The smoke sweep on the smoke data and model given as paths relative to the folder the
    command runs in (trials run in folders of their own)."""
    import shutil

    from sweep_runs import run_sweep_command

    from trainables.offline.registry import resolve_smoke

    shutil.copytree(resolve_smoke("smoke:sft", kind="data"), tmp_path / "mine")
    (tmp_path / "llama").symlink_to(llama)
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    s = run_sweep_command([sys.executable, str(REPO / "sweeps" / "sft.py"), "--preset", "smoke", "--name", "s",
                           "--tracking-uri", uri, "--storage", str(tmp_path / "rr"),
                           "--search-space", str(REPO / "tests" / "data" / "sft_two_ranks.yaml"),
                           "--data", "./mine", "--model", "llama", "--set", "data.columns.prompt=instruction",
                           "--set", "data.columns.query=input", "--set", "data.columns.response=output"],
                          cwd=tmp_path, uri=uri, experiment="lorasweep-sft", completed=2)
    p = s.parent.data.params
    t = s.trials[0].data.params
    assert (t["data.source"], t["model.name_or_path"]) == (str(tmp_path / "mine"), str(Path(llama).resolve()))
    # smoke:sft has 240 rows in one train.jsonl: 24 (10%) held out for validation.
    assert (p["task"], p["data.val_from"], p["data.train_examples"], p["data.val_examples"]) == (
        "sft", "holdout of 24", "216", "24")
    assert json.loads(p["data.columns"].replace("'", '"')) == {"prompt": "instruction", "query": "input",
                                                                "response": "output"}
    for run in s.trials:
        m, r = run.data.metrics, int(run.data.params["adapter.r"])
        assert run.data.tags["lorasweep.status"] == "completed" and 0 < m["val_loss"] < 10
        # tiny Llama (d 64, kv 32, MLP 128, 2 layers), all-linear: r x (128 + 96 + 96 + 128 + 3 x 192) per layer
        assert m["trainable_params"] == 2 * r * (128 + 96 + 96 + 128 + 3 * 192)
        local = s.client.download_artifacts(run.info.run_id, "outputs/generations.jsonl", str(tmp_path / run.info.run_id))
        rows = [json.loads(line) for line in open(local, encoding="utf-8")]
        assert len(rows) == 4 and all(row["id"].startswith("val-") and row["answer"] is not None for row in rows)
    # Exported, adapter and merged model end an answer where the trials' did: at eos or at the
    # chat template's end-of-turn token.
    from transformers import AutoTokenizer, GenerationConfig

    from sweeps.export import main as export

    tok = AutoTokenizer.from_pretrained(llama)
    stops = [tok.eos_token_id, tok.convert_tokens_to_ids("<|eot_id|>")]
    assert stops[1] != tok.unk_token_id
    for out, flags in (("ex", []), ("ex-merged", ["--merge"])):
        assert export(["--sweep", "s", "--tracking-uri", uri, "--out", str(tmp_path / out), *flags]) == 0
        assert GenerationConfig.from_pretrained(tmp_path / out).eos_token_id == stops
    assert "model.generation_config = GenerationConfig.from_pretrained('<this directory>')" in \
        (tmp_path / "ex" / "README.md").read_text()


def test_data_of_ones_own_does_not_take_the_presets_column_names():
    """The smoke preset maps its own synthetic columns (message, topic); --data's file is read
    with the default columns, or those --set names."""
    from conftest import sweep_config

    smoke = sweep_config("text_classification", "--preset", "smoke")
    assert smoke.trial.data.columns == {"text": "message", "label": "topic"}
    mine = sweep_config("text_classification", "--preset", "smoke", "--data", "reviews.csv")
    assert mine.trial.data.columns is None
    named = sweep_config("text_classification", "--preset", "smoke", "--data", "reviews.csv",
                         "--set", "data.columns.text=review")
    assert named.trial.data.columns == {"text": "review"}
