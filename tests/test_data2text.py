"""WebNLG 2017 and DART: official-format readers, the paper's linearisation, seen/unseen
subsets and their scores, strict checks of bad files. The smoke sweep end to end is
``test_study_smoke.py``'s rank_vs_task run; a bad file given to the command line is in
``test_cli_bad_input.py``."""

from __future__ import annotations

import json
import math

import pytest

from trainables.errors import UserError
from trainables.metrics.data2text import corpus_ter, score_data2text
from trainables.tasks.registry import get_task
from trainables.tasks.data2text import _dart_hub_rows, _webnlg_hub_rows, linearise


def _webnlg_entry(n, category, triples, lexes):
    return {str(n): {
        "category": category, "size": str(len(triples)), "xml_id": f"Id{n}", "shape": "NA",
        "modifiedtripleset": [{"subject": s, "property": p, "object": o} for s, p, o in triples],
        "lexicalisations": [{"comment": c, "lang": "", "lex": t, "xml_id": f"Id{k}"}
                            for k, (t, c) in enumerate(lexes, 1)]}}


def _write_webnlg(root, test_entries=None):
    root.mkdir(parents=True, exist_ok=True)
    train = [_webnlg_entry(1, "Airport", [("Aarhus", "leaderName", "Jacob_Bundsgaard")],
                           [("The leader of Aarhus is Jacob Bundsgaard.", "good"),
                            ("Aarhus leader Jacob.", "toFix")]),
             _webnlg_entry(2, "Food", [("Bakso", "country", "Indonesia"), ("Bakso", "course", "Main")],
                           [("Bakso is a main course from Indonesia.", "good"),
                            ("Bakso, from Indonesia, is a main course.", "good")])]
    test = test_entries or [
        _webnlg_entry(1, "Politician", [("Abdul_Taib", "party", "Barisan")], [("Abdul Taib is in Barisan.", "good")]),
        _webnlg_entry(2, "Airport", [("Aarhus", "runwayLength", "2702.0")],
                      [("Aarhus's runway is 2702.0 long.", "good"), ("The runway of Aarhus is 2702.0.", "good")]),
    ]
    for name, entries in (("train.json", train), ("dev.json", train[:1]), ("test.json", test)):
        (root / name).write_text(json.dumps({"entries": entries}), encoding="utf-8")
    return root


def _write_dart(root, test=None):
    root.mkdir(parents=True, exist_ok=True)
    items = [{"tripleset": [["Mars Hill College", "JOINED", "1973"], ["Mars Hill College", "LOCATION", "Mars Hill"]],
              "subtree_was_extended": True,
              "annotations": [{"source": "WikiSQL_decl_sents", "text": "A school from Mars Hill joined in 1973."},
                              {"source": "WikiSQL_decl_sents", "text": "Mars Hill College joined in 1973."}]},
             {"tripleset": [["Aromi", "eatType", "coffee shop"]],
              "annotations": [{"source": "e2e", "text": "Aromi is a coffee shop."}]}]
    for split in ("train", "dev", "test"):
        data = test if (split == "test" and test is not None) else items
        (root / f"dart-v1.1.1-full-{split}.json").write_text(json.dumps(data), encoding="utf-8")
    return root


def test_the_papers_linearisation():
    triples = [("Aarhus", "leaderName", "Jacob_Bundsgaard"), ("Aarhus", "COUNTRY", "Denmark")]
    assert linearise(triples) == "Aarhus : leaderName : Jacob_Bundsgaard | Aarhus : COUNTRY : Denmark"
    assert linearise(triples, lower_relation=True).endswith("Aarhus : country : Denmark")


def test_webnlg_json_rows_categories_and_seen_unseen(make_trial, tmp_path):
    task = get_task("webnlg")
    cfg = make_trial(task="webnlg", data={"source": str(_write_webnlg(tmp_path / "w"))})
    task.check(cfg)
    rows = task.read_rows(cfg)
    # One row per good lexicalisation; 'toFix' is dropped as the paper's script drops it.
    assert rows["train"] == [
        ("Aarhus : leaderName : Jacob_Bundsgaard", "The leader of Aarhus is Jacob Bundsgaard."),
        ("Bakso : country : Indonesia | Bakso : course : Main", "Bakso is a main course from Indonesia."),
        ("Bakso : country : Indonesia | Bakso : course : Main", "Bakso, from Indonesia, is a main course.")]
    assert rows["test_subset"] == {"Abdul_Taib : party : Barisan": "unseen",
                                   "Aarhus : runwayLength : 2702.0": "seen"}
    inputs = ["Aarhus : runwayLength : 2702.0", "Abdul_Taib : party : Barisan"]
    assert task.test_extras(rows, inputs) == {"subsets": {"seen": [0], "unseen": [1]}}


def test_dart_json_rows_lowercase_relations(make_trial, tmp_path):
    task = get_task("dart")
    cfg = make_trial(task="dart", data={"source": str(_write_dart(tmp_path / "d"))})
    task.check(cfg)
    rows = task.read_rows(cfg)
    assert rows["test"][:2] == [
        ("Mars Hill College : joined : 1973 | Mars Hill College : location : Mars Hill",
         "A school from Mars Hill joined in 1973."),
        ("Mars Hill College : joined : 1973 | Mars Hill College : location : Mars Hill",
         "Mars Hill College joined in 1973.")]
    assert "test_subset" not in rows and rows["train"][2] == ("Aromi : eattype : coffee shop", "Aromi is a coffee shop.")


def test_hub_layouts_give_the_same_entries():
    import datasets

    web = datasets.Dataset.from_list([
        {"category": "Airport", "modified_triple_sets": {"mtriple_set": [["Aarhus | leaderName | Jacob_Bundsgaard"]]},
         "lex": {"comment": ["good", "toFix"], "lid": ["Id1", "Id2"], "text": ["A.", "B."], "lang": ["", ""]},
         "test_category": "testdata_with_lex"},
        {"category": "Airport", "modified_triple_sets": {"mtriple_set": [["Aarhus | leaderName | Jacob_Bundsgaard"]]},
         "lex": {"comment": [], "lid": [], "text": [], "lang": []}, "test_category": "testdata_no_lex"}])
    (entry,) = _webnlg_hub_rows(web, test=True)
    assert entry.triples == (("Aarhus", "leaderName", "Jacob_Bundsgaard"),)
    assert entry.references == ("A.",) and entry.category == "Airport"
    dart = datasets.Dataset.from_list([{"tripleset": [["A", "NICKNAME", "B"]], "subtree_was_extended": False,
                                        "annotations": {"source": ["x", "y"], "text": ["r1", "r2"]}}])
    (d,) = _dart_hub_rows(dart, test=False)
    assert d.triples == (("A", "NICKNAME", "B"),) and d.references == ("r1", "r2")


def _webnlg_hub_row(entry, *, test):
    """An official WebNLG entry as a row of the hub's ``web_nlg``: triples as ``"s | p | o"``
    strings, the lexicalisations as columns, the test split's rows marked as the challenge's."""
    (e,) = entry.values()
    lexes = e["lexicalisations"]
    return {"category": e["category"],
            "modified_triple_sets": {"mtriple_set": [[" | ".join((t["subject"], t["property"], t["object"]))
                                                      for t in e["modifiedtripleset"]]]},
            "lex": {"comment": [x.get("comment", "good") for x in lexes], "lid": [f"Id{k}" for k in range(len(lexes))],
                    "text": [x["lex"] for x in lexes], "lang": ["" for _ in lexes]},
            "test_category": "testdata_with_lex" if test else ""}


def _dart_hub_row(item):
    """An official DART item as a row of the hub's ``dart``: annotations as columns."""
    return {"tripleset": item["tripleset"], "subtree_was_extended": item.get("subtree_was_extended", False),
            "annotations": {"source": [a["source"] for a in item["annotations"]],
                            "text": [a["text"] for a in item["annotations"]]}}


def _data2text_hub_copy(task_name, official, out, splits=("train", "validation", "test")):
    """The official files' rows as a local copy of the hub dataset: WebNLG's config
    ``webnlg_challenge_2017`` with splits train, dev and test; DART's one config (``data/``)."""
    import datasets

    from trainables.offline.hub_copy import write_hub_copy

    if task_name == "webnlg":
        files = {"train": ("train", "train.json"), "validation": ("dev", "dev.json"), "test": ("test", "test.json")}
        config = {hub: datasets.Dataset.from_list(
            [_webnlg_hub_row(e, test=hub == "test") for e in json.loads((official / name).read_text())["entries"]])
            for split, (hub, name) in files.items() if split in splits}
        return write_hub_copy(out, {"webnlg_challenge_2017": config})
    config = {split: datasets.Dataset.from_list(
        [_dart_hub_row(i) for i in json.loads((official / f"dart-v1.1.1-full-{name}.json").read_text())])
        for split, name in (("train", "train"), ("validation", "dev"), ("test", "test")) if split in splits}
    return write_hub_copy(out, {"default": config}, folders={"default": "data"})


@pytest.mark.parametrize("task_name", ["webnlg", "dart"])
def test_a_local_copy_of_the_hub_dataset_reads_as_the_official_files(make_trial, tmp_path, task_name):
    import datasets

    from trainables.offline import data2text_synth

    write = data2text_synth.write_webnlg_dataset if task_name == "webnlg" else data2text_synth.write_dart_dataset
    official = write(tmp_path / "official", n_train=12, n_dev=4, **({"n_test_seen": 3, "n_test_unseen": 3}
                                                                    if task_name == "webnlg" else {"n_test": 4}))
    copy = _data2text_hub_copy(task_name, official, tmp_path / "hub")
    task = get_task(task_name)
    from_official = make_trial(task=task_name, data={"source": str(official)})
    from_hub = make_trial(task=task_name, data={"source": str(copy)})
    task.check(from_hub)
    entries = task.read_entries(from_hub)
    assert [len(entries[s]) for s in ("train", "validation", "test")] == [12, 4, 6 if task_name == "webnlg" else 4]
    assert entries == task.read_entries(from_official)
    assert task.read_rows(from_hub) == task.read_rows(from_official)  # with WebNLG's seen/unseen test inputs
    key = task._key(from_hub, "tok")
    assert key != task._key(from_official, "tok")
    shard = next(copy.glob("*/train-00000-of-00001.parquet"))  # two training inputs left:
    datasets.Dataset.from_parquet(str(shard)).select(range(2)).to_parquet(str(shard))
    assert task._key(from_hub, "tok") != key
    assert len(task.read_entries(from_hub)["train"]) == 2


def test_the_hubs_parquet_conversion_of_webnlg_reads_its_dev_folder_as_the_dev_split(make_trial, tmp_path):
    """The hub's card-less parquet conversion of ``web_nlg`` (``--revision refs/convert/parquet``:
    ``<config>/<split>/0000.parquet`` for every config): the whole download is refused naming
    the config's folder, and that folder, whose ``dev/`` ``datasets`` reads as ``validation``,
    reads as the official files."""
    import datasets

    from trainables.offline import data2text_synth

    official = data2text_synth.write_webnlg_dataset(tmp_path / "official", n_train=6, n_dev=3,
                                                    n_test_seen=2, n_test_unseen=2)
    root = tmp_path / "web_nlg"
    for config in ("release_v3.0_en", "webnlg_challenge_2017"):
        for split in ("train", "dev", "test"):
            rows = [_webnlg_hub_row(e, test=split == "test")
                    for e in json.loads((official / f"{split}.json").read_text())["entries"]]
            (root / config / split).mkdir(parents=True)
            datasets.Dataset.from_list(rows).to_parquet(str(root / config / split / "0000.parquet"))
    task = get_task("webnlg")
    with pytest.raises(UserError) as err:
        task.check(make_trial(task="webnlg", data={"source": str(root)}))
    assert err.value.message.endswith(f"give one config's folder: --data {root / 'webnlg_challenge_2017'}")
    one = make_trial(task="webnlg", data={"source": str(root / "webnlg_challenge_2017")})
    task.check(one)
    assert task.read_entries(one) == task.read_entries(make_trial(task="webnlg", data={"source": str(official)}))


@pytest.mark.parametrize("task_name, hub_split", [("webnlg", "dev"), ("dart", "test")])
def test_a_hub_copy_without_a_split_is_refused_in_one_line(make_trial, tmp_path, task_name, hub_split):
    from trainables.offline import data2text_synth

    write = data2text_synth.write_webnlg_dataset if task_name == "webnlg" else data2text_synth.write_dart_dataset
    official = write(tmp_path / "official", n_train=4, n_dev=2)
    copy = _data2text_hub_copy(task_name, official, tmp_path / "hub", splits=("train", "validation", "test")[:2]
                               if hub_split == "test" else ("train", "test"))
    with pytest.raises(UserError) as err:
        get_task(task_name).check(make_trial(task=task_name, data={"source": str(copy)}))
    config = " (webnlg_challenge_2017)" if task_name == "webnlg" else ""
    have = "'train' or 'test'" if task_name == "webnlg" else "'train' or 'validation'"
    assert err.value.field == "data.source" and "\n" not in err.value.message
    assert err.value.message == f"{copy}{config} has no {hub_split!r} split (it has {have})"


def test_scores_per_subset_on_a_hand_made_example():
    refs = [["the cat sat on the mat", "a cat sat on the mat"], ["john was born in york"],
            ["the airport is in aarhus"]]
    hyps = ["the cat sat on the mat", "john was born in york", "the city has a river"]
    s = score_data2text(refs, hyps, subsets={"seen": [0, 1], "unseen": [2], "none": []}, meteor=False)
    assert s["BLEU_seen"] == pytest.approx(100.0) and s["TER_seen"] == pytest.approx(0.0)
    assert s["BLEU_unseen"] < s["BLEU"] < s["BLEU_seen"]
    # "the city has a river" vs "the airport is in aarhus": 4 substitutions of 5 words.
    assert s["TER_unseen"] == pytest.approx(80.0)
    assert s["TER"] == pytest.approx(80.0 / 3)
    assert s["BLEU_none"] is None and s["METEOR_seen"] is None  # empty subset; METEOR off
    # The lowest TER over the references, each normalised by its own length (GenerationEval).
    assert corpus_ter([["a b d", "a x y z"]], ["a b c"]) == pytest.approx(100 / 3)


@pytest.mark.parametrize("task_name, edit, fragment", [
    ("webnlg", lambda d: (d / "test.json").unlink(), "lacks test.json (the official WebNLG files; a folder with none of them is read as a local copy"),
    ("webnlg", lambda d: (d / "dev.json").write_text("[]"), "dev.json: top level: expected an object with an 'entries' list"),
    ("webnlg", lambda d: (d / "train.json").write_text('{"entries": [{"1": {"category": "A", '
                                                       '"modifiedtripleset": [{"subject": "x", "object": "y"}], '
                                                       '"lexicalisations": []}}]}'),
     'train.json: entries[0]["1"].modifiedtripleset[0].property: missing'),
    ("webnlg", lambda d: (d / "train.json").write_text('{"entries": [}'), "train.json line 1: not valid JSON"),
    ("dart", lambda d: (d / "dart-v1.1.1-full-train.json").write_text("[" * 100_000),
     "dart-v1.1.1-full-train.json: not readable JSON (nested deeper than Python's JSON reader goes)"),
    ("dart", lambda d: (d / "dart-v1.1.1-full-dev.json").write_text('[{"tripleset": [["a", "b"]], "annotations": []}]'),
     "dart-v1.1.1-full-dev.json: [0].tripleset[0]: expected [subject, relation, object] strings"),
    ("dart", lambda d: (d / "dart-v1.1.1-full-test.json").write_text('[{"tripleset": [["a", "b", "c"]]}]'),
     "dart-v1.1.1-full-test.json: [0].annotations: missing"),
])
def test_bad_files_are_one_userError_naming_file_and_field(make_trial, tmp_path, task_name, edit, fragment):
    root = (_write_webnlg if task_name == "webnlg" else _write_dart)(tmp_path / task_name)
    edit(root)
    with pytest.raises(UserError) as err:
        get_task(task_name).check(make_trial(task=task_name, data={"source": str(root)}))
    assert err.value.field == "data.source" and fragment in err.value.message
    assert "\n" not in err.value.message


def test_smoke_webnlg_prepared_and_scored_with_subsets(make_trial, tmp_path):
    from trainables.offline.registry import resolve_smoke

    task = get_task("webnlg")
    cfg = make_trial(task="webnlg", data={"source": resolve_smoke("smoke:webnlg", kind="data"),
                                          "train_limit": 64, "val_limit": 16, "test_limit": 8},
                     eval={"num_beams": 1, "max_new_tokens": 16})
    task.check(cfg)
    data = task.load_prepared(task.prepare(cfg, progress=False), cfg)
    test = data.test
    assert len(test["mrs"]) == 8 and all(len(r) >= 1 for r in test["references"])
    # The synthetic test file lists entries by category; the seeded subset keeps both parts.
    seen, unseen = test["subsets"]["seen"], test["subsets"]["unseen"]
    assert seen and unseen and sorted(seen + unseen) == list(range(8))
    model, tokenizer = task.load_model(cfg)
    ids, n_prompt = data.train[0]
    assert " : " in tokenizer.decode(ids[:n_prompt - 1]) and ids[n_prompt - 1] == tokenizer.eos_token_id
    import torch

    scores = task.final_eval(model, tokenizer, data, cfg, device=torch.device("cpu"), out_dir=tmp_path / "out")
    for spec in task.final_metrics:
        if not spec.name.startswith("METEOR"):  # METEOR is off in these tests (no JVM start)
            assert math.isfinite(scores[spec.name]), spec.name
    assert (tmp_path / "out" / "predictions.txt").read_text().count("\n") == 8
