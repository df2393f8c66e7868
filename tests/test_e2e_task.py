"""The E2E task: official formats, strict checks before launch, formatting and masking."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from trainables.errors import UserError
from trainables.tasks.registry import get_task
from trainables.tasks.causal_lm import IGNORE
from trainables.tasks.e2e import check_csv, format_mr, group_references, local_files, parse_mr

MR = "name[The Vaults], eatType[pub], priceRange[more than £30], customer rating[5 out of 5], near[Café Adriatic]"


def test_mr_parsing_and_the_papers_linearisation():
    assert parse_mr(MR)[:2] == [("name", "The Vaults"), ("eatType", "pub")]
    assert parse_mr(MR)[3] == ("customer rating", "5 out of 5")
    assert format_mr(MR, "paper") == ("name : The Vaults | Type : pub | price : more than £30 | "
                                      "customer rating : 5 out of 5 | near : Café Adriatic")
    assert format_mr(MR, "raw") == MR
    assert format_mr("name[A], familyFriendly[yes]", "paper") == "name : A | family friendly : yes"


def test_references_are_grouped_by_mr_in_first_seen_order():
    rows = [("a", "1"), ("a", "2"), ("b", "3"), ("a", "4")]
    assert group_references(rows) == (["a", "b"], [["1", "2", "4"], ["3"]])


def _copy_data(smoke_assets, tmp_path):
    dest = tmp_path / "e2e"
    shutil.copytree(smoke_assets.data_dir, dest)
    return dest


@pytest.mark.parametrize("bad_row, fragment", [
    ('"name[X], eatType[pub]",a ref,extra', "expected 2 fields (mr,ref), found 3"),
    ('"name[X], eatType[pub]"', "expected 2 fields (mr,ref), found 1"),
    ('"name[X], eatType[pub]",', "empty mr or ref"),
])
def test_malformed_csv_rows_are_named_by_file_and_line(smoke_assets, tmp_path, bad_row, fragment):
    data = _copy_data(smoke_assets, tmp_path)
    path = data / "devset.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines.insert(3, bad_row)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(UserError) as err:
        check_csv(path)
    assert err.value.field == "data.source"
    assert f"{path} line 4: {fragment}" in err.value.message


def test_na_none_and_null_cells_stay_text(make_trial, smoke_assets, tmp_path):
    """The CSV is loaded as it is checked: a reference or MR reading NA, None or null is text
    (pandas would make the first two missing values)."""
    from trainables.tasks.e2e import load_rows

    data = _copy_data(smoke_assets, tmp_path)
    path = data / "trainset.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[1:4] = ['"name[NA], eatType[pub]",NA', 'None,None', '"name[null]",null']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = load_rows(make_trial(data={"source": str(data)}))["train"]
    assert rows[:3] == [("name[NA], eatType[pub]", "NA"), ("None", "None"), ("name[null]", "null")]


def test_missing_files_and_wrong_header(smoke_assets, tmp_path):
    data = _copy_data(smoke_assets, tmp_path)
    (data / "testset_w_refs.csv").unlink()
    with pytest.raises(UserError, match="lacks testset_w_refs.csv"):
        local_files(data)
    with pytest.raises(UserError, match="neither the official E2E CSVs"):
        local_files(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("meaning,text\na,b\n")
    with pytest.raises(UserError, match="lacks an 'mr' and a 'ref' column"):
        check_csv(bad)


def test_csv_and_jsonl_give_the_same_tokenised_data(make_trial, smoke_assets, tmp_path):
    task = get_task("e2e")
    jsonl = tmp_path / "jsonl"
    jsonl.mkdir()
    for src, dst in (("trainset.csv", "train.jsonl"), ("devset.csv", "dev.jsonl"),
                     ("testset_w_refs.csv", "test.jsonl")):
        with open(smoke_assets.data_dir / src, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        (jsonl / dst).write_text("".join(json.dumps({"mr": r["mr"], "ref": r["ref"]}) + "\n" for r in rows))
    a_cfg, b_cfg = make_trial(), make_trial(data={"source": str(jsonl)})
    task.check(b_cfg)
    a = task.load_prepared(task.prepare(a_cfg, progress=False), a_cfg)
    b = task.load_prepared(task.prepare(b_cfg, progress=False), b_cfg)
    assert np.array_equal(a.train.flat, b.train.flat) and np.array_equal(a.val.prompt_len, b.val.prompt_len)
    assert a.test == b.test
    (jsonl / "dev.jsonl").write_text('{"mr": "x"}\n')
    with pytest.raises(UserError, match=r"dev.jsonl line 1: expected an object with 'mr' and 'ref'"):
        task.check(b_cfg)


def test_prepare_is_cached_by_content(make_trial, smoke_assets, tmp_path):
    task = get_task("e2e")
    cfg = make_trial()
    first = task.prepare(cfg, progress=False)
    assert task.prepare(cfg, progress=False) == first
    assert task.prepare(make_trial(data={"max_length": 64}), progress=False) != first
    edited = _copy_data(smoke_assets, tmp_path)
    with open(edited / "trainset.csv", "a", encoding="utf-8") as fh:
        fh.write('"name[New Place]","New Place is new."\n')
    assert task.prepare(make_trial(data={"source": str(edited)}), progress=False) != first


def test_examples_are_mr_sep_text_eos_with_loss_on_the_text_only(make_trial):
    task = get_task("e2e")
    cfg = make_trial()
    data = task.load_prepared(task.prepare(cfg, progress=False), cfg)
    model, tokenizer = task.load_model(cfg)
    eos = tokenizer.eos_token_id
    ids, n_prompt = data.train[0]
    assert ids[n_prompt - 1] == eos and ids[-1] == eos  # <sep> = eos ends the MR; eos ends the text
    prompt = tokenizer.decode(ids[:n_prompt - 1])
    assert prompt.startswith("name : ") and " | " in prompt
    batch = task.collate(tokenizer)([data.train[0], data.train[1]])
    labels, mask = batch["labels"], batch["attention_mask"]
    assert (labels[0, :n_prompt] == IGNORE).all()
    assert (labels[0, n_prompt:len(ids)] == batch["input_ids"][0, n_prompt:len(ids)]).all()
    assert (labels[mask == 0] == IGNORE).all()
    assert data.stats["train_examples"] == cfg.data.train_limit
    assert data.stats["test_mrs"] == cfg.data.test_limit and len(data.test["references"][0]) >= 2


def test_a_hub_name_fails_fast_offline(make_trial, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as err:
        get_task("e2e").check(make_trial(data={"source": "e2e_nlg_not_cached"}))
    assert "--preset smoke" in err.value.message and "--data DIR" in err.value.message


def _as_hub_copy(official, out, splits=("train", "validation", "test")):
    """The official CSVs' rows as the hub's ``e2e_nlg`` holds them (config ``default``, splits
    train/validation/test, one row per reference: ``meaning_representation``, ``human_reference``)."""
    import datasets

    from trainables.offline.hub_copy import write_hub_copy

    files = {"train": "trainset.csv", "validation": "devset.csv", "test": "testset_w_refs.csv"}
    tables = {}
    for split in splits:
        with open(official / files[split], newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        tables[split] = datasets.Dataset.from_dict({"meaning_representation": [r["mr"] for r in rows],
                                                    "human_reference": [r["ref"] for r in rows]})
    return write_hub_copy(out, {"default": tables}, folders={"default": "data"})


def test_a_local_copy_of_the_hub_dataset_reads_as_the_official_csvs(tmp_path):
    from trainables.config import TrialConfig
    from trainables.offline.e2e_synth import write_e2e_dataset
    from trainables.schema import from_dict

    def cfg(source):
        return from_dict(TrialConfig, {"task": "e2e", "data": {"source": str(source)}})

    task = get_task("e2e")
    official = write_e2e_dataset(tmp_path / "csv", n_train_mrs=8, n_dev_mrs=3, n_test_mrs=3)
    hub = _as_hub_copy(official, tmp_path / "hub")
    task.check(cfg(hub))
    a, b = task.read_rows(cfg(official)), task.read_rows(cfg(hub))
    assert len(a["test"]) > 3 and a == b  # several references per test MR
    key = task._key(cfg(hub), "tok")
    assert key != task._key(cfg(official), "tok")
    shard = hub / "data" / "validation-00000-of-00001.parquet"
    shard.write_bytes((hub / "data" / "test-00000-of-00001.parquet").read_bytes())
    assert task._key(cfg(hub), "tok") != key

    # Official CSVs win over a card beside them.
    official_key = task._key(cfg(official), "tok")
    _as_hub_copy(official, official, splits=("train",))
    task.check(cfg(official))
    assert task._key(cfg(official), "tok") == official_key and task.read_rows(cfg(official)) == a

    partial = _as_hub_copy(official, tmp_path / "partial", splits=("train", "validation"))
    with pytest.raises(UserError) as err:
        task.check(cfg(partial))
    assert err.value.field == "data.source"
    assert err.value.message == f"{partial} has no 'test' split (it has 'train' or 'validation')"
