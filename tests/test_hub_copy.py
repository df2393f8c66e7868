"""A local copy of a hub dataset repository (``hf download --repo-type dataset ID --local-dir
DIR``) is recognised, checked without loading, and read by ``datasets`` as the repository is."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainables.errors import UserError
from trainables.hub import check_hub_copy, hub_copy, hub_copy_identity, hub_copy_load
from trainables.offline.hub_copy import write_hub_copy


def _glue_like(tmp_path):
    import datasets

    def rows(*sentences):
        return datasets.Dataset.from_dict({"sentence": list(sentences), "label": [i % 2 for i in range(len(sentences))]})

    return write_hub_copy(tmp_path / "glue", {"cola": {"train": rows("a b", "c d", "e"), "validation": rows("f")},
                                              "sst2": {"train": rows("g"), "validation": rows("h", "i")}})


def test_a_written_copy_is_read_by_datasets_as_the_repository_is(tmp_path):
    import datasets

    d = _glue_like(tmp_path)
    assert hub_copy(str(d)) == d
    dd = datasets.load_dataset(str(d), "sst2")
    assert sorted(dd) == ["train", "validation"]
    assert list(dd["validation"]["sentence"]) == ["h", "i"] and list(dd["validation"]["label"]) == [0, 1]
    assert sorted(hub_copy_identity(d)) == ["README.md", "cola/train-00000-of-00001.parquet",
                                            "cola/validation-00000-of-00001.parquet",
                                            "sst2/train-00000-of-00001.parquet",
                                            "sst2/validation-00000-of-00001.parquet"]


def test_only_a_dataset_card_or_parquet_files_make_a_copy(tmp_path):
    official = tmp_path / "e2e"  # the official release: CSVs and a README without card metadata
    official.mkdir()
    (official / "trainset.csv").write_text("mr,ref\n")
    (official / "README.md").write_text("# E2E NLG\nThe dataset.\n")
    assert hub_copy(str(official)) is None
    (official / "README.md").write_text("---\nlicense: cc-by-sa-4.0\n---\n# E2E\n")
    assert hub_copy(str(official)) == official  # a card beside data files (tasks read official files first)
    shards = tmp_path / "shards" / "plain_text"
    shards.mkdir(parents=True)
    (shards / "train-00000-of-00001.parquet").write_bytes(b"")
    assert hub_copy(str(tmp_path / "shards")) == tmp_path / "shards"
    converted = tmp_path / "converted" / "default" / "train"  # the hub's parquet conversion
    converted.mkdir(parents=True)
    (converted / "0000.parquet").write_bytes(b"")
    assert hub_copy(str(tmp_path / "converted")) == tmp_path / "converted"
    assert hub_copy(str(tmp_path)) is None  # a folder of copies is not one
    assert hub_copy(str(tmp_path / "missing")) is None
    assert hub_copy(str(official / "trainset.csv")) is None


def test_the_download_tools_records_are_not_part_of_the_identity(tmp_path):
    d = _glue_like(tmp_path)
    before = hub_copy_identity(d)
    (d / ".cache" / "huggingface").mkdir(parents=True)
    (d / ".cache" / "huggingface" / "download.lock").write_text("x")
    assert hub_copy_identity(d) == before
    (d / "cola" / "train-00000-of-00001.parquet").write_bytes(b"changed")
    assert hub_copy_identity(d) != before


def test_a_card_is_read_again_when_it_changes_after_it_was_kept(tmp_path, monkeypatch):
    """A card unchanged for ``SETTLED_S`` is parsed once; rewritten (here to the same size) it
    is parsed again."""
    import time

    from trainables import cache

    d = _glue_like(tmp_path)
    monkeypatch.setattr(cache, "SETTLED_S", 0.2)
    time.sleep(0.3)
    check_hub_copy(d, "sst2", ("train", "validation"))
    check_hub_copy(d, "sst2", ("train", "validation"))
    card = d / "README.md"
    card.write_text(card.read_text().replace("config_name: sst2", "config_name: sst3"))
    for _ in range(2):  # just rewritten, then settled again
        with pytest.raises(UserError, match="has no config 'sst2'; its card lists cola, sst3"):
            check_hub_copy(d, "sst2", ("train",))
        time.sleep(0.3)


@pytest.mark.parametrize("config, splits, message", [
    ("qqp", ("train",), "has no config 'qqp'; its card lists cola, sst2"),
    (None, ("train",), "has several configs (cola, sst2) and no default one; give the folder of one"),
    ("cola", ("train", "test"), "(cola) has no 'test' split (it has 'train' or 'validation')"),
])
def test_a_config_or_split_the_copy_lacks_is_refused_in_one_line(tmp_path, config, splits, message):
    d = _glue_like(tmp_path)
    check_hub_copy(d, "cola", ("train", "validation"))
    with pytest.raises(UserError) as e:
        check_hub_copy(d, config, splits)
    assert e.value.field == "data.source" and message in str(e.value) and "\n" not in str(e.value)


def test_a_partial_download_reads_its_config_and_refuses_the_others(tmp_path):
    import shutil

    import datasets

    d = _glue_like(tmp_path)
    shutil.rmtree(d / "cola")  # as `hf download ... --include "sst2/*"` leaves it: the card's first config
    check_hub_copy(d, "sst2", ("train", "validation"))
    dd = datasets.load_dataset(str(d), "sst2", **hub_copy_load(d, "sst2"))
    assert list(dd["train"]["sentence"]) == ["g"] and list(dd["validation"]["sentence"]) == ["h", "i"]
    with pytest.raises(UserError) as e:
        check_hub_copy(d, "cola", ("train", "validation"))
    assert str(e.value) == (f"data.source: {d} has no data files for 'cola'; its card names them, but they "
                            "were not downloaded")


def test_copies_of_one_name_and_a_changed_copy_are_each_read_as_they_are(tmp_path):
    """``datasets`` files a local directory's build under its name, config and file patterns:
    without a cache directory per content, the second copy and the changed one would be read
    as the first was."""
    import datasets

    from trainables.hub import hub_copy_load

    def load(d):
        return datasets.load_dataset(str(d), "c", **hub_copy_load(d))["train"]["x"]

    first, second = tmp_path / "a" / "copy", tmp_path / "b" / "copy"
    write_hub_copy(first, {"c": {"train": datasets.Dataset.from_dict({"x": [1, 2, 3]})}})
    write_hub_copy(second, {"c": {"train": datasets.Dataset.from_dict({"y": ["p"], "x": [4]})}})
    assert list(load(first)) == [1, 2, 3] and list(load(second)) == [4]
    datasets.Dataset.from_dict({"x": [5, 6]}).to_parquet(str(first / "c" / "train-00000-of-00001.parquet"))
    assert list(load(first)) == [5, 6]
    # Three contents, three builds, each in lorasweep's hub-copies cache (`lorasweep cache clear`).
    from trainables.paths import cache_dir

    assert {Path(hub_copy_load(d)["cache_dir"]).parent for d in (first, second)} == {cache_dir() / "hub-copies"}
    built = {p.parent.parent for p in (cache_dir() / "hub-copies").glob("*/*/*")}
    assert {Path(hub_copy_load(d)["cache_dir"]) for d in (first, second)} <= built and len(built) >= 3


def _converted(root, configs):
    """The hub's parquet conversion (``--revision refs/convert/parquet``): no card,
    ``<config>/<split>/0000.parquet``."""
    import datasets

    for config, splits in configs.items():
        for split, rows in splits.items():
            (root / config / split).mkdir(parents=True)
            datasets.Dataset.from_dict({"sentence": rows}).to_parquet(str(root / config / split / "0000.parquet"))
    return root


def test_a_conversion_of_several_configs_is_refused_and_one_configs_folder_is_read(tmp_path):
    import datasets

    from trainables.hub import hub_copy_config

    d = _converted(tmp_path / "glue", {"cola": {"train": ["a", "b"], "validation": ["c"]},
                                       "sst2": {"train": ["d"], "validation": ["e"]}})
    assert hub_copy(str(d)) == d
    with pytest.raises(UserError) as e:
        check_hub_copy(d, "sst2", ("train",))
    assert str(e.value) == (f"data.source: {d} holds the files of several configs (cola, sst2) and no card that "
                            f"lists them; give one config's folder: --data {d}/sst2")
    one = d / "cola"
    check_hub_copy(one, "cola", ("train", "validation"))  # one config's files: read without a config name
    assert hub_copy_config(one, "cola") is None and hub_copy_config(_glue_like(tmp_path), "cola") == "cola"
    assert list(datasets.load_dataset(str(one), hub_copy_config(one, "cola"))["train"]["sentence"]) == ["a", "b"]


def test_a_card_of_several_configs_without_a_default_names_them(tmp_path):
    d = _glue_like(tmp_path)
    with pytest.raises(UserError) as e:
        check_hub_copy(d, None, ("train",))
    assert str(e.value) == (f"data.source: {d} has several configs (cola, sst2) and no default one; give the "
                            "folder of one, where each has its own (its card's data_files say which): --data "
                            "DIR/<folder>")
    check_hub_copy(d / "sst2", None, ("train", "validation"))


def test_a_card_beside_json_lines_is_a_copy_that_datasets_reads(tmp_path):
    import datasets

    d = tmp_path / "dolly"
    d.mkdir()
    (d / "README.md").write_text("---\nlicense: cc-by-sa-3.0\ntask_categories:\n- question-answering\n---\n# Dolly\n")
    assert hub_copy(str(d)) is None  # a card alone
    (d / "records.jsonl").write_text('{"instruction": "a", "response": "b"}\n{"instruction": "c", "response": "d"}\n')
    assert hub_copy(str(d)) == d
    check_hub_copy(d, None, ("train",))
    assert list(datasets.load_dataset(str(d), **hub_copy_load(d))["train"]["response"]) == ["b", "d"]


def test_the_cards_default_config_is_read_with_its_features_even_without_the_first_configs_files(tmp_path):
    """A card marks its default config ``default: true`` and declares a class label for it;
    the copy was downloaded without the first config's files (JSON Lines: no features in
    the files themselves)."""
    import datasets

    d = tmp_path / "reviews"
    (d / "small").mkdir(parents=True)
    (d / "small" / "train.jsonl").write_text('{"text": "good", "label": 1}\n{"text": "bad", "label": 0}\n')
    (d / "README.md").write_text(
        "---\nconfigs:\n- config_name: all\n  data_files: all/*.jsonl\n"
        "- config_name: small\n  default: true\n  data_files:\n  - split: train\n    path: small/*.jsonl\n"
        "dataset_info:\n- config_name: small\n  features:\n  - name: text\n    dtype: string\n"
        "  - name: label\n    dtype:\n      class_label:\n        names:\n          '0': neg\n          '1': pos\n---\n")
    check_hub_copy(d, None, ("train",))
    train = datasets.load_dataset(str(d), **hub_copy_load(d))["train"]
    assert list(train["text"]) == ["good", "bad"] and train.features["label"].names == ["neg", "pos"]
    with pytest.raises(UserError, match="has no data files for 'all'; its card names them"):
        check_hub_copy(d, "all", ("train",))


def test_a_conversion_of_another_config_is_refused(tmp_path):
    d = _converted(tmp_path / "glue", {"sst2": {"train": ["d"], "validation": ["e"]}})
    check_hub_copy(d, "sst2", ("train", "validation"))
    with pytest.raises(UserError) as e:
        check_hub_copy(d, "cola", ("train",))
    assert str(e.value) == (f"data.source: {d} holds only the files of config 'sst2', not 'cola', and no card; "
                            f"give the folder of 'cola', or --data {d}/sst2 if those are its files")


def test_a_single_config_conversion_is_read_through_its_folder(tmp_path):
    # The hub's conversion of a one-config dataset (someone's own CoLA repository): default/<split>/.
    d = _converted(tmp_path / "their_cola", {"default": {"train": ["a"], "validation": ["b"]}})
    with pytest.raises(UserError, match=f"or --data {d}/default if those are its files$"):
        check_hub_copy(d, "cola", ("train",))
    check_hub_copy(d / "default", "cola", ("train", "validation"))


def test_another_configs_folder_of_a_conversion_is_refused_and_a_renamed_copy_is_read(tmp_path):
    d = _converted(tmp_path / "glue", {"cola": {"train": ["a"], "validation": ["b"]},
                                       "sst2": {"train": ["c"], "validation": ["d"]}})
    with pytest.raises(UserError) as e:
        check_hub_copy(d / "sst2", "cola", ("train",))
    assert str(e.value) == (f"data.source: {d}/sst2 is the folder of config 'sst2' of the copy in {d}, not of "
                            "'cola'; give the folder of 'cola'")
    check_hub_copy(d / "cola", "cola", ("train", "validation"))
    mine = (d / "cola").rename(tmp_path / "my_cola")  # standing alone, under a name of the user's
    check_hub_copy(mine, "cola", ("train", "validation"))


def test_a_users_own_folder_beside_other_parquet_folders_is_read(tmp_path):
    # /data/mycopies/{cola_dedup,sst2}: the user's own CoLA copy beside another; no folder named
    # 'cola' there, so it is not another config's folder of a conversion that holds CoLA's.
    d = _converted(tmp_path / "mycopies", {"cola_dedup": {"train": ["a"], "validation": ["b"]},
                                           "sst2": {"train": ["c"], "validation": ["d"]}})
    check_hub_copy(d / "cola_dedup", "cola", ("train", "validation"))
    check_hub_copy(d / "sst2", "sst2", ("train", "validation"))
