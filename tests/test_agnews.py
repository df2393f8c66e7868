"""AG News settings of the NYU report's setup: a validation set of a given size held out of
train, and the label numbering of the competition's predictions file."""

from __future__ import annotations

import pytest

from trainables.config import TrialConfig
from trainables.errors import UserError
from trainables.schema import from_dict
from trainables.tasks.classification import Example, apply_split_policy


def test_holdout_keeps_val_size_examples_for_validation():
    train = [Example(f"t{i}", None, i % 4) for i in range(1000)]
    test = [Example(f"d{i}", None, i % 4) for i in range(50)]
    a = apply_split_policy("holdout", {"train": train, "test": test}, seed=0, test_names=("test",),
                           holdout_size=640)
    b = apply_split_policy("holdout", {"train": train, "test": test}, seed=0, test_names=("test",),
                           holdout_size=640)
    assert (len(a["train"]), len(a["val"])) == (360, 640) and a["test"] is test
    assert sorted(e.text_a for e in a["train"] + a["val"]) == sorted(e.text_a for e in train)
    assert [e.text_a for e in a["val"]] == [e.text_a for e in b["val"]]  # seeded
    ten_percent = apply_split_policy("holdout", {"train": train, "test": test}, seed=0, test_names=("test",))
    assert len(ten_percent["val"]) == 100


def test_val_size_is_refused_outside_the_holdout_split(tmp_path):
    from trainables.offline.glue_synth.news import write_ag_news
    from trainables.tasks.registry import get_task

    source = write_ag_news(tmp_path / "ag", n_train=40, n_test=12, n_unlabelled=4)
    cfg = from_dict(TrialConfig, {"task": "ag_news", "data": {"source": str(source), "split": "resplit",
                                                              "holdout_size": 640}})
    with pytest.raises(UserError) as err:
        get_task("ag_news").check(cfg)
    assert err.value.field == "data.holdout_size" and "holdout" in err.value.message


@pytest.mark.parametrize("labels, expected", [
    # The hub's ag_news (and the competition's submissions) number World, Sports, Business,
    # Sci/Tech 0-3; the official CSVs 1-4.
    ("index", [0, 1, 2, 3]),
    ("release", ["1", "2", "3", "4"]),
])
def test_predictions_are_written_in_the_chosen_numbering(labels, expected):
    from trainables.tasks.registry import get_task

    task = get_task("ag_news")
    assert [task.output_label(p, labels) for p in range(4)] == expected
    assert TrialConfig().data.predict_labels == "index"


@pytest.mark.parametrize("index", ["7", "²", "01", "0"])
def test_a_class_index_other_than_1_to_4_is_one_line(tmp_path, index):
    from trainables.tasks.agnews import read_csv

    path = tmp_path / "train.csv"
    path.write_text(f'"3","a title","a description"\n"{index}","t","d"\n', encoding="utf-8")
    with pytest.raises(UserError) as err:
        read_csv(path)
    assert err.value.message == f"{path} line 2: class index {index!r} is not 1-4 (the official AG News CSVs have no header)"


def _cfg(source):
    return from_dict(TrialConfig, {"task": "ag_news", "data": {"source": str(source)}})


def _as_hub_copy(official, out, splits=("train", "test")):
    """The official CSVs' rows as ``fancyzhx/ag_news`` holds them (config ``default`` in
    ``data/``): ``text`` = title, a space, description; ``label`` = class index - 1."""
    import csv

    import datasets

    from trainables.offline.hub_copy import write_hub_copy

    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["World", "Sports", "Business", "Sci/Tech"])})
    tables = {}
    for split in splits:
        with open(official / f"{split}.csv", newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        tables[split] = datasets.Dataset.from_dict({"text": [f"{t} {d}" for _, t, d in rows],
                                                    "label": [int(c) - 1 for c, _, _ in rows]}, features=features)
    return write_hub_copy(out, {"default": tables}, folders={"default": "data"})


def test_a_local_copy_of_the_hub_dataset_reads_as_the_official_csvs(tmp_path):
    from trainables.offline.glue_synth.news import write_ag_news
    from trainables.tasks.registry import get_task

    task = get_task("ag_news")
    official = write_ag_news(tmp_path / "csv", n_train=40, n_test=12, n_unlabelled=0)
    hub = _as_hub_copy(official, tmp_path / "hub")
    task.check(_cfg(hub))
    a, b = task.read_splits(_cfg(official)), task.read_splits(_cfg(hub))
    assert (len(a["train"]), len(a["test"])) == (40, 12) and a == b
    key = task._key(_cfg(hub), "tok")
    assert key != task._key(_cfg(official), "tok")
    _as_hub_copy(official, hub)  # the same rows again: the same files
    assert task._key(_cfg(hub), "tok") == key
    (hub / "data" / "test-00000-of-00001.parquet").write_bytes(
        (hub / "data" / "train-00000-of-00001.parquet").read_bytes())
    assert task._key(_cfg(hub), "tok") != key

    # Official CSVs win over a card beside them.
    official_key = task._key(_cfg(official), "tok")
    _as_hub_copy(official, official, splits=("train",))
    task.check(_cfg(official))
    assert task._key(_cfg(official), "tok") == official_key and task.read_splits(_cfg(official)) == a

    partial = _as_hub_copy(official, tmp_path / "partial", splits=("train",))
    with pytest.raises(UserError) as err:
        task.check(_cfg(partial))
    assert err.value.field == "data.source"
    assert err.value.message == f"{partial} has no 'test' split (it has 'train')"
    with pytest.raises(UserError) as err:
        task.check(_cfg(tmp_path))
    assert "nor a local copy of the hub dataset" in err.value.message and "\n" not in err.value.message
