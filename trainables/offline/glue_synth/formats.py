"""The official layouts of GLUE (``glue_data/<TASK>/``) and AG News (``ag_news_csv/``): task
names, folders, file headers, label sets; and the synthetic sets' default sizes and label noise."""

from __future__ import annotations

# Bump when the generated text changes in any way: caches of built smoke assets are keyed on
# it, so a stale cache is never reused.
GENERATOR_VERSION = "1"

GLUE_TASKS: tuple[str, ...] = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte")
GLUE_DIRS: dict[str, str] = {"cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "qqp": "QQP",
                             "stsb": "STS-B", "mnli": "MNLI", "qnli": "QNLI", "rte": "RTE"}
AG_NEWS_DIR = "ag_news_csv"  # the official archive's folder name
AG_NEWS_CLASSES: tuple[str, ...] = ("World", "Sports", "Business", "Sci/Tech")  # class 1..4

# (n_train, n_dev, n_test) per task, sized for smoke sweeps of tiny models on 2 CPU cores: at
# batch 16 an 800-row train split is 50 steps an epoch, a few seconds for a 2-layer encoder.
# MNLI's n_dev and n_test are per file (matched and mismatched each); it gets more rows as it
# has 3 classes. RTE stays small as the real one is (2,490 train rows against MNLI's 393k).
DEFAULT_SIZES: dict[str, tuple[int, int, int]] = {
    "cola": (700, 180, 50), "sst2": (800, 200, 50), "mrpc": (600, 150, 50),
    "qqp": (800, 200, 50), "stsb": (600, 150, 50), "mnli": (900, 200, 50),
    "qnli": (700, 180, 50), "rte": (400, 100, 50),
}
AG_NEWS_SIZES = {"n_train": 800, "n_test": 200, "n_unlabelled": 50}

# Share of labels flipped to another class. Real GLUE labels are noisy too (MRPC and QQP
# annotators disagree on ~10-20% of pairs); this keeps a ceiling under every baseline.
LABEL_NOISE: dict[str, float] = {"cola": 0.05, "sst2": 0.05, "mrpc": 0.07, "qqp": 0.07,
                                 "mnli": 0.06, "qnli": 0.05, "rte": 0.06, "ag_news": 0.07}

NLI_LABELS = ("entailment", "neutral", "contradiction")
MNLI_MATCHED_GENRES = ("fiction", "government", "slate", "telephone", "travel")
MNLI_MISMATCHED_GENRES = ("facetoface", "letters", "nineeleven", "oup", "verbatim")

# The header of each file, or None for CoLA's header-less train/dev.
MNLI_TRAIN_HEADER = ("index", "promptID", "pairID", "genre", "sentence1_binary_parse",
                     "sentence2_binary_parse", "sentence1_parse", "sentence2_parse",
                     "sentence1", "sentence2", "label1", "gold_label")
MNLI_DEV_HEADER = (*MNLI_TRAIN_HEADER[:-2], "label1", "label2", "label3", "label4", "label5",
                   "gold_label")
STSB_HEADER = ("index", "genre", "filename", "year", "old_index", "source1", "source2",
               "sentence1", "sentence2", "score")
# The download script copies MRPC's train/dev header from msr_paraphrase_train.txt, which
# starts with a UTF-8 byte-order mark, so the real header's first field reads "\ufeffQuality";
# test.tsv's header is written by the script itself, without one.
MRPC_HEADER = ("\ufeffQuality", "#1 ID", "#2 ID", "#1 String", "#2 String")
HEADERS: dict[str, dict[str, tuple[str, ...] | None]] = {
    "cola": {"train.tsv": None, "dev.tsv": None, "test.tsv": ("index", "sentence")},
    "sst2": {"train.tsv": ("sentence", "label"), "dev.tsv": ("sentence", "label"),
             "test.tsv": ("index", "sentence")},
    "mrpc": {"train.tsv": MRPC_HEADER, "dev.tsv": MRPC_HEADER,
             "test.tsv": ("index", "#1 ID", "#2 ID", "#1 String", "#2 String")},
    "qqp": {"train.tsv": ("id", "qid1", "qid2", "question1", "question2", "is_duplicate"),
            "dev.tsv": ("id", "qid1", "qid2", "question1", "question2", "is_duplicate"),
            "test.tsv": ("id", "question1", "question2")},
    "stsb": {"train.tsv": STSB_HEADER, "dev.tsv": STSB_HEADER, "test.tsv": STSB_HEADER[:-1]},
    "mnli": {"train.tsv": MNLI_TRAIN_HEADER, "dev_matched.tsv": MNLI_DEV_HEADER,
             "dev_mismatched.tsv": MNLI_DEV_HEADER, "test_matched.tsv": MNLI_TRAIN_HEADER[:10],
             "test_mismatched.tsv": MNLI_TRAIN_HEADER[:10]},
    "qnli": {"train.tsv": ("index", "question", "sentence", "label"),
             "dev.tsv": ("index", "question", "sentence", "label"),
             "test.tsv": ("index", "question", "sentence")},
    "rte": {"train.tsv": ("index", "sentence1", "sentence2", "label"),
            "dev.tsv": ("index", "sentence1", "sentence2", "label"),
            "test.tsv": ("index", "sentence1", "sentence2")},
}
COLA_COLUMNS = 4  # source, label, original judgement ("*" or empty), sentence
