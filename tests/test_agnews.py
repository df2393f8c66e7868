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
