"""Synthetic GLUE and AG News: the official layouts, label sets and balance, determinism, and a
learnable but noisy signal (bag-of-words baselines well above chance, well below 100%)."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from trainables.offline.glue_synth.cli import main
from trainables.offline.glue_synth.formats import (AG_NEWS_DIR, AG_NEWS_SIZES, COLA_COLUMNS,
                                                   DEFAULT_SIZES, GLUE_DIRS, GLUE_TASKS, HEADERS,
                                                   MNLI_MATCHED_GENRES, MNLI_MISMATCHED_GENRES,
                                                   NLI_LABELS, STSB_HEADER)
from trainables.offline.glue_synth.news import write_ag_news
from trainables.offline.glue_synth.single import SST_NEGATIVE, SST_POSITIVE
from trainables.offline.glue_synth.synonyms import synonym_table, write_synonyms
from trainables.offline.glue_synth.write import write_glue, write_glue_task

LABELS = {
    "cola": {"0", "1"}, "sst2": {"0", "1"}, "mrpc": {"0", "1"}, "qqp": {"0", "1"},
    "mnli": set(NLI_LABELS), "qnli": {"entailment", "not_entailment"},
    "rte": {"entailment", "not_entailment"},
}
# (file, label column) of the labelled files.
LABEL_COLUMN = {"cola": 1, "sst2": 1, "mrpc": 0, "qqp": 5, "stsb": 9, "mnli": -1, "qnli": 3,
                "rte": 3}


@pytest.fixture(scope="module")
def glue(tmp_path_factory) -> Path:
    return write_glue(tmp_path_factory.mktemp("glue"), seed=0)


@pytest.fixture(scope="module")
def ag(tmp_path_factory) -> Path:
    return write_ag_news(tmp_path_factory.mktemp("ag") / AG_NEWS_DIR, seed=0)


def read_tsv(path: Path) -> list[list[str]]:
    """How the GLUE task readers read the real files: tab-separated, no quoting."""
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


def labelled(glue: Path, task: str, name: str = "train.tsv") -> list[list[str]]:
    rows = read_tsv(glue / GLUE_DIRS[task] / name)
    return rows if task == "cola" else rows[1:]


# --------------------------------------------------------------------------------------------
# Layout


def test_every_task_has_the_official_files_headers_and_columns(glue):
    assert sorted(p.name for p in glue.iterdir()) == sorted(GLUE_DIRS.values())
    for task in GLUE_TASKS:
        d = glue / GLUE_DIRS[task]
        assert sorted(p.name for p in d.iterdir()) == sorted(HEADERS[task])
        n_train, n_dev, n_test = DEFAULT_SIZES[task]
        for name, header in HEADERS[task].items():
            raw = (d / name).read_bytes()
            assert b"\r" not in raw and b'"' not in raw and raw.endswith(b"\n")
            rows = read_tsv(d / name)
            width = len(header) if header else COLA_COLUMNS
            if header:
                assert tuple(rows.pop(0)) == header, (task, name)
            assert all(len(r) == width for r in rows), (task, name)
            # Text fields are never empty (CoLA's judgement column is empty when acceptable).
            assert all(f for r in rows for i, f in enumerate(r) if not (task == "cola" and i == 2))
            expected = n_train if name == "train.tsv" else n_dev if "dev" in name else n_test
            assert len(rows) == expected, (task, name)


def test_headers_are_those_of_the_glue_download():
    h = HEADERS
    assert h["cola"]["train.tsv"] is None and h["cola"]["test.tsv"] == ("index", "sentence")
    assert h["sst2"]["dev.tsv"] == ("sentence", "label")
    assert h["qqp"]["train.tsv"] == ("id", "qid1", "qid2", "question1", "question2",
                                     "is_duplicate")
    assert h["qqp"]["test.tsv"] == ("id", "question1", "question2")
    assert h["mnli"]["train.tsv"][-2:] == ("label1", "gold_label")
    assert len(h["mnli"]["train.tsv"]) == 12 and len(h["mnli"]["dev_matched.tsv"]) == 16
    assert h["mnli"]["test_matched.tsv"][-1] == "sentence2"
    assert h["stsb"]["test.tsv"] == STSB_HEADER[:-1] and STSB_HEADER[-1] == "score"
    assert h["qnli"]["train.tsv"] == ("index", "question", "sentence", "label")
    assert h["rte"]["test.tsv"] == ("index", "sentence1", "sentence2")


def test_mrpc_header_keeps_the_byte_order_mark_of_the_real_file(glue):
    # The download script copies msr_paraphrase_train.txt's first line, BOM included, into
    # train.tsv and dev.tsv; it writes test.tsv's header itself.
    d = glue / "MRPC"
    assert (d / "train.tsv").read_bytes().startswith("\ufeffQuality\t#1 ID".encode())
    assert (d / "dev.tsv").read_bytes().startswith(b"\xef\xbb\xbfQuality")
    assert (d / "test.tsv").read_bytes().startswith(b"index\t#1 ID\t#2 ID")
    with open(d / "train.tsv", encoding="utf-8-sig", newline="") as fh:
        assert next(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))[0] == "Quality"


def test_text_looks_like_each_dataset(glue):
    sst = labelled(glue, "sst2") + labelled(glue, "sst2", "dev.tsv")
    # SST-2: lower-cased, tokenised ("is n't", "it 's"), a trailing space in train and dev.
    assert all(r[0] == r[0].lower() and r[0].endswith(" ") for r in sst)
    assert any(" n't " in r[0] for r in sst) and any(" 's " in r[0] for r in sst)
    assert not read_tsv(glue / "SST-2" / "test.tsv")[1][1].endswith(" ")
    for src, y, mark, sentence in labelled(glue, "cola"):
        assert re.fullmatch(r"[a-z]+[-_]?\d\d", src) and mark == ("" if y == "1" else "*")
        assert sentence[0].isupper() and sentence[-1] in ".?"
    for row in labelled(glue, "mrpc"):
        assert row[1].isdigit() and row[2].isdigit() and row[1] != row[2]
    qqp = labelled(glue, "qqp")
    qid = {}
    for _, q1, q2, t1, t2, _ in qqp:  # one qid per question text
        assert qid.setdefault(t1, q1) == q1 and qid.setdefault(t2, q2) == q2
    assert len({r[0] for r in qqp}) == len(qqp)


def test_labels_are_allowed_and_balanced_like_the_real_sets(glue):
    # Positive rate ranges around the real sets': CoLA 70% acceptable, SST-2 56% positive,
    # MRPC 68% paraphrases, QQP 37% duplicates, QNLI/RTE about half entailment.
    ranges = {"cola": (0.6, 0.8), "sst2": (0.45, 0.67), "mrpc": (0.58, 0.78),
              "qqp": (0.27, 0.47), "qnli": (0.4, 0.6), "rte": (0.4, 0.6)}
    positive = {"qnli": "entailment", "rte": "entailment"}
    for task, allowed in LABELS.items():
        for name in HEADERS[task]:
            if "test" in name:
                continue
            labels = [r[LABEL_COLUMN[task]] for r in labelled(glue, task, name)]
            assert set(labels) == allowed, (task, name)
            if task == "mnli":
                share = Counter(labels)
                assert all(0.22 < share[lab] / len(labels) < 0.45 for lab in allowed), share
            else:
                rate = labels.count(positive.get(task, "1")) / len(labels)
                lo, hi = ranges[task]
                assert lo < rate < hi, (task, name, rate)


def test_stsb_scores_are_graded_0_to_5(glue):
    scores = [r[9] for r in labelled(glue, "stsb")]
    assert all(re.fullmatch(r"\d\.\d{3}", s) for s in scores)
    values = [float(s) for s in scores]
    assert min(values) >= 0 and max(values) <= 5
    # Spread over the whole range, not two clusters.
    bins = Counter(int(min(v, 4.99)) for v in values)
    assert all(bins[b] >= 0.05 * len(values) for b in range(5)), bins
    rows = labelled(glue, "stsb")
    assert {r[1] for r in rows} == {"main-captions", "main-news", "main-forum"}
    identical = [float(r[9]) for r in rows if r[7] == r[8]]
    assert not identical or min(identical) >= 3.8


def test_mnli_matched_and_mismatched_differ(glue):
    d = glue / "MNLI"
    genres = {name: {r[3] for r in read_tsv(d / name)[1:]}
              for name in HEADERS["mnli"]}
    for name in ("train.tsv", "dev_matched.tsv", "test_matched.tsv"):
        assert genres[name] <= set(MNLI_MATCHED_GENRES)
    assert genres["train.tsv"] == genres["dev_matched.tsv"] == set(MNLI_MATCHED_GENRES)
    assert genres["dev_mismatched.tsv"] == set(MNLI_MISMATCHED_GENRES)
    assert genres["test_mismatched.tsv"] <= set(MNLI_MISMATCHED_GENRES)
    # Their vocabularies differ too (the agents and framings of each genre).
    words = {name: Counter(w.lower() for r in read_tsv(d / name)[1:] for w in r[8].split())
             for name in ("dev_matched.tsv", "dev_mismatched.tsv")}
    only_mm = set(words["dev_mismatched.tsv"]) - set(words["dev_matched.tsv"])
    assert len(only_mm) > 20


def test_mnli_rows_are_consistent(glue):
    d = glue / "MNLI"
    for row in read_tsv(d / "train.tsv")[1:]:
        assert row[-1] == row[-2] and row[2] == row[1] + row[-1][0]  # pairID "31193n"
        assert row[4].startswith("( ") and row[6].startswith("(ROOT (S ")
    for row in read_tsv(d / "dev_mismatched.tsv")[1:]:
        votes, gold = row[10:15], row[15]
        assert Counter(votes).most_common(1)[0] == (gold, max(Counter(votes).values()))
        assert votes.count(gold) >= 3
    # Three hypotheses share a premise (and its promptID), and never across splits.
    train = read_tsv(d / "train.tsv")[1:]
    per_prompt = Counter(r[1] for r in train)
    assert max(per_prompt.values()) == 3
    assert len({r[8] for r in train}) == len(per_prompt)
    dev = {r[8] for r in read_tsv(d / "dev_matched.tsv")[1:]}
    assert not dev & {r[8] for r in train}


def test_splits_share_no_text(glue):
    for task, cols in (("sst2", [0]), ("cola", [3]), ("rte", [1, 2]), ("qnli", [1, 2])):
        d = glue / GLUE_DIRS[task]
        texts = []
        for name in ("train.tsv", "dev.tsv", "test.tsv"):
            rows = read_tsv(d / name)[0 if task == "cola" and name != "test.tsv" else 1:]
            if name == "test.tsv":
                cols_here = [1] if task in ("sst2", "cola") else cols
            else:
                cols_here = cols
            texts.append({tuple(r[c].strip() for c in cols_here) for r in rows})
        assert not texts[0] & texts[1] and not texts[0] & texts[2] and not texts[1] & texts[2]


def test_generation_is_deterministic_by_seed(tmp_path):
    sizes = {t: {"n_train": 60, "n_dev": 20, "n_test": 10} for t in GLUE_TASKS}
    a = write_glue(tmp_path / "a", seed=5, sizes=sizes)
    b = write_glue(tmp_path / "b", seed=5, sizes=sizes)
    c = write_glue(tmp_path / "c", seed=6, sizes=sizes)
    for task in GLUE_TASKS:
        for name in HEADERS[task]:
            rel = Path(GLUE_DIRS[task]) / name
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
        rel = Path(GLUE_DIRS[task]) / "train.tsv"
        assert (a / rel).read_bytes() != (c / rel).read_bytes(), rel
    kw = {"n_train": 40, "n_test": 12, "n_unlabelled": 8}
    x = write_ag_news(tmp_path / "x", seed=5, **kw)
    y = write_ag_news(tmp_path / "y", seed=5, **kw)
    z = write_ag_news(tmp_path / "z", seed=6, **kw)
    for name in ("train.csv", "test.csv", "unlabelled.csv", "classes.txt"):
        assert (x / name).read_bytes() == (y / name).read_bytes()
    assert (x / "train.csv").read_bytes() != (z / "train.csv").read_bytes()
    assert write_synonyms(tmp_path / "s1.json", seed=5).read_bytes() == \
        write_synonyms(tmp_path / "s2.json", seed=5).read_bytes()


def test_a_task_does_not_depend_on_the_others(tmp_path):
    alone = write_glue(tmp_path / "alone", tasks=["rte"], sizes={"rte": {"n_train": 30}})
    full = write_glue(tmp_path / "full", sizes={"rte": {"n_train": 30}})
    assert (alone / "RTE" / "train.tsv").read_bytes() == (full / "RTE" / "train.tsv").read_bytes()
    assert [p.name for p in alone.iterdir()] == ["RTE"]


# --------------------------------------------------------------------------------------------
# AG News


def test_ag_news_has_the_release_format(ag):
    n_train, n_test = AG_NEWS_SIZES["n_train"], AG_NEWS_SIZES["n_test"]
    for name, n in (("train.csv", n_train), ("test.csv", n_test)):
        raw = (ag / name).read_text(encoding="utf-8")
        lines = raw.splitlines()
        # No header; all three fields quoted, as in the release.
        assert len(lines) == n and all(re.match(r'^"[1-4]","[^"]', line) for line in lines)
        with open(ag / name, encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh))
        assert all(len(r) == 3 and r[1] and r[2] for r in rows)
        classes = Counter(r[0] for r in rows)
        assert set(classes) == {"1", "2", "3", "4"}
        assert all(0.18 < k / n < 0.32 for k in classes.values()), classes
    assert (ag / "classes.txt").read_text() == "World\nSports\nBusiness\nSci/Tech\n"
    with open(ag / "unlabelled.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["id", "title", "description"]
    assert [r["id"] for r in rows] == [str(i) for i in range(AG_NEWS_SIZES["n_unlabelled"])]
    with open(ag / "train.csv", encoding="utf-8", newline="") as fh:
        train_titles = {(r[1], r[2]) for r in csv.reader(fh)}
    assert not train_titles & {(r["title"], r["description"]) for r in rows}


# --------------------------------------------------------------------------------------------
# The signal: simple baselines learn each task, but not perfectly


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def _overlap_doc(a: str, b: str) -> str:
    """Word-overlap features of a pair: words only in a, only in b, and shared."""
    x, y = set(_tokens(a)), set(_tokens(b))
    return " ".join([f"L_{w}" for w in sorted(x - y)] + [f"R_{w}" for w in sorted(y - x)]
                    + [f"S_{w}" for w in sorted(x & y)])


def _baseline(train, dev) -> tuple[float, float]:
    """Logistic regression on binary bag-of-words: (dev accuracy, dev majority-class rate)."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = CountVectorizer(token_pattern=r"\S+", binary=True)
    x_train = vec.fit_transform([t for t, _ in train])
    clf = LogisticRegression(max_iter=2000).fit(x_train, [y for _, y in train])
    pred = clf.predict(vec.transform([t for t, _ in dev]))
    gold = [y for _, y in dev]
    acc = sum(p == g for p, g in zip(pred, gold)) / len(gold)
    return acc, max(Counter(gold).values()) / len(gold)


def test_bag_of_words_learns_sst2_but_not_perfectly(glue):
    pytest.importorskip("sklearn")
    train = [(r[0], r[1]) for r in labelled(glue, "sst2")]
    dev = [(r[0], r[1]) for r in labelled(glue, "sst2", "dev.tsv")]
    acc, majority = _baseline(train, dev)
    print(f"sst2 bag-of-words dev accuracy {acc:.3f} (majority {majority:.3f})")
    # Negations and contrasts defeat a bag of words on a quarter of the sentences; 5% noise.
    assert majority + 0.15 < acc < 0.9


def test_bag_of_words_learns_ag_news(ag):
    pytest.importorskip("sklearn")

    def rows(name):
        with open(ag / name, encoding="utf-8", newline="") as fh:
            return [(f"{t} {d}", c) for c, t, d in csv.reader(fh)]

    acc, majority = _baseline(rows("train.csv"), rows("test.csv"))
    print(f"ag_news bag-of-words test accuracy {acc:.3f} (majority {majority:.3f})")
    assert 0.75 < acc < 0.97 and majority < 0.32


@pytest.mark.parametrize("task,a,b", [("mrpc", 3, 4), ("qqp", 3, 4), ("rte", 1, 2),
                                      ("qnli", 1, 2), ("mnli", 8, 9)])
def test_word_overlap_features_learn_the_pair_tasks(glue, task, a, b):
    pytest.importorskip("sklearn")
    col = LABEL_COLUMN[task]
    dev_name = "dev_matched.tsv" if task == "mnli" else "dev.tsv"
    train = [(_overlap_doc(r[a], r[b]), r[col]) for r in labelled(glue, task)]
    dev = [(_overlap_doc(r[a], r[b]), r[col]) for r in labelled(glue, task, dev_name)]
    acc, majority = _baseline(train, dev)
    print(f"{task} word-overlap dev accuracy {acc:.3f} (majority {majority:.3f})")
    assert majority + 0.05 < acc < 0.95


def test_stsb_score_follows_word_overlap(glue):
    rows = labelled(glue, "stsb", "dev.tsv")
    pairs = [(set(_tokens(r[7])), set(_tokens(r[8]))) for r in rows]
    jac = [len(x & y) / len(x | y) for x, y in pairs]
    score = [float(r[9]) for r in rows]
    n = len(rows)
    mj, ms = sum(jac) / n, sum(score) / n
    cov = sum((j - mj) * (s - ms) for j, s in zip(jac, score))
    corr = cov / (sum((j - mj) ** 2 for j in jac) * sum((s - ms) ** 2 for s in score)) ** 0.5
    assert 0.5 < corr < 0.97


# --------------------------------------------------------------------------------------------
# Synonyms, arguments, CLI


def test_synonyms_cover_the_vocabulary_and_keep_sentiment(tmp_path):
    table = json.loads(write_synonyms(tmp_path / "syn.json").read_text(encoding="utf-8"))
    assert list(table) == sorted(table) and all(table.values())
    assert all(word not in syns and not any(" " in s for s in syns)
               for word, syns in table.items())
    positive = {w for group in SST_POSITIVE for w in group}
    negative = {w for group in SST_NEGATIVE for w in group}
    for word in positive | negative:
        same = positive if word in positive else negative
        assert table[word] and set(table[word]) <= same, word  # never flips a label
    assert {"purchased", "acquired"} <= set(table["bought"])
    assert "automobile" in table["car"]
    # Most content words of the SST-2 sentences have a synonym.
    train = Path(tmp_path / "sst")
    write_glue_task("sst2", train, n_train=200, n_dev=0, n_test=0)
    words = Counter(w for r in read_tsv(train / "train.tsv")[1:] for w in r[0].split())
    covered = sum(k for w, k in words.items() if w in table)
    assert covered > 0.25 * sum(words.values())
    assert synonym_table(seed=1) != synonym_table(seed=2)
    assert synonym_table(seed=1).keys() == synonym_table(seed=2).keys()


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="did you mean 'sst2'"):
        write_glue_task("sst-2", tmp_path)
    with pytest.raises(ValueError, match="n_dev"):
        write_glue_task("rte", tmp_path, n_dev=-1)
    with pytest.raises(ValueError, match="n_valid"):
        write_glue(tmp_path, sizes={"rte": {"n_valid": 3}})
    with pytest.raises(ValueError, match="n_unlabelled"):
        write_ag_news(tmp_path, n_unlabelled=-2)


def test_cli(tmp_path, capsys):
    main([str(tmp_path), "--tasks", "rte", "mnli", "ag_news", "--n-train", "30",
          "--n-dev", "10", "--n-test", "5", "--seed", "2"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MNLI", "RTE", "ag_news_csv",
                                                          "synonyms.json"]
    out = capsys.readouterr().out
    assert "RTE/train.tsv: 30 rows" in out and "MNLI/dev_mismatched.tsv: 10 rows" in out
    assert "ag_news_csv/test.csv: 5 rows" in out
    assert len(read_tsv(tmp_path / "RTE" / "test.tsv")) == 6
