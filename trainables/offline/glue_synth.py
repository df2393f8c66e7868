"""Synthetic GLUE tasks and AG News in their official files' formats, for ``--preset smoke``.

No machine here reaches a dataset hub, so this module writes look-alikes of the eight GLUE tasks
(Wang et al. 2018) as the GLUE download script (``download_glue_data.py``) lays them out in
``glue_data/<TASK>/``, and of AG News (Zhang et al. 2015) as its ``ag_news_csv`` release: the
same file names, headers, column orders, label spellings and quirks (the UTF-8 byte-order mark
on MRPC's header, SST-2's lower-cased tokenised text with a trailing space, CoLA's header-less
four columns), so the classification task module reads real and synthetic data with one reader.

Each task carries a signal a small model learns in a minute on CPU, but not a trivial one:

* SST-2: sentiment words in ~10 sentence shapes, a quarter of them negated ("is n't funny") or
  contrastive ("dull , but the ending is moving"), where a bag of words is wrong half the time.
* CoLA: grammar templates, ~30% corrupted by realistic errors (agreement across an attractor,
  wrong verb form, filled gaps, missing arguments, swapped or doubled words, dropped articles).
* MRPC, QQP: paraphrases (synonyms, active/passive, moved phrases, another reporting frame)
  against non-paraphrases that share most words but change an entity, number, date or polarity.
* STS-B: captions, headlines and forum opinions scored 0-5 by the slots the two sentences share.
* MNLI, RTE: a premise of one or two facts; the hypothesis restates or generalises a fact
  (entailment), negates or changes it (contradiction), or adds one (neutral). MNLI's matched
  genres (fiction, government, slate, telephone, travel) differ from its mismatched ones
  (facetoface, letters, nineeleven, oup, verbatim) in vocabulary and framing, as in the real set.
* QNLI: a question and a sentence that does, or does not, contain the asked slot (where, when,
  how many, who, what).
* AG News: titles and descriptions from four topic vocabularies sharing generic news words, with
  the real set's Business/Sci-Tech and World/Business overlaps.

Labels carry 5-7% noise so no model reaches 100%. The vocabulary stays at a couple of thousand
words, so a tokenizer trained on it locally stays small. :func:`synonym_table` is an offline
synonym list over the same vocabulary (sentiment synonyms keep their polarity), for synonym-
replacement augmentation. Everything is a pure function of ``seed``: same seed, same bytes.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

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


# --------------------------------------------------------------------------------------------
# Small helpers

def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _article(np: str) -> str:
    # Every word that can follow an article here is pronounced as spelled.
    return "an" if np[:1].lower() in "aeiou" else "a"


_NUM_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight",
              9: "nine"}


def _num(n: int) -> str:
    """News style: numbers under ten in words, the rest in digits."""
    return _NUM_WORDS.get(n, str(n))


def _noisy(rng: random.Random, label, labels: Sequence, rate: float):
    """``label``, or with probability ``rate`` another of ``labels``."""
    if rng.random() < rate:
        return rng.choice([lab for lab in labels if lab != label])
    return label


def _draw_distinct(make: Callable[[], tuple], n: int, seen: set[Hashable],
                   key: Callable[[tuple], Hashable]) -> list[tuple]:
    """``n`` examples from ``make()`` whose ``key`` is not in ``seen`` (updated): no text
    repeats within or across splits."""
    out: list[tuple] = []
    for _ in range(50 * n + 1000):
        if len(out) == n:
            return out
        ex = make()
        k = key(ex)
        if k not in seen:
            seen.add(k)
            out.append(ex)
    if len(out) == n:
        return out
    raise ValueError(f"could not draw {n} distinct examples; ask for fewer")


# --------------------------------------------------------------------------------------------
# SST-2: lower-cased, tokenised movie-review sentences ("it 's a charming and often affecting
# journey . "), label 1 positive / 0 negative. The real train split is mostly phrases cut from
# parse trees; dev and test are whole sentences.

# Synonym clusters, so a synonym of a sentiment word never flips its polarity.
SST_POSITIVE: tuple[tuple[str, ...], ...] = (
    ("good", "fine", "decent", "solid"), ("great", "excellent", "terrific", "superb"),
    ("funny", "hilarious", "amusing", "witty"), ("moving", "touching", "affecting", "poignant"),
    ("beautiful", "gorgeous", "lovely", "stunning"), ("clever", "smart", "inventive", "ingenious"),
    ("engaging", "gripping", "absorbing", "compelling"),
    ("charming", "delightful", "sweet", "likable"), ("fresh", "original", "bold", "daring"),
    ("memorable", "remarkable", "impressive", "striking"),
)
SST_NEGATIVE: tuple[tuple[str, ...], ...] = (
    ("bad", "poor", "weak", "lousy"), ("dull", "boring", "tedious", "tiresome"),
    ("clumsy", "sloppy", "messy", "awkward"), ("predictable", "formulaic", "stale", "tired"),
    ("silly", "ridiculous", "absurd", "inane"), ("flat", "lifeless", "bland", "limp"),
    ("shallow", "empty", "hollow", "thin"), ("awful", "terrible", "dreadful", "painful"),
    ("forgettable", "pointless", "mediocre", "routine"),
    ("confusing", "muddled", "incoherent", "baffling"),
)
# Verbs in the 3rd person and base form; nouns; first-person opinion verbs (past, base).
_SST_VERBS = {1: (("works", "work"), ("succeeds", "succeed"), ("delivers", "deliver"),
                  ("shines", "shine"), ("soars", "soar")),
              0: (("fails", "fail"), ("drags", "drag"), ("falters", "falter"),
                  ("stumbles", "stumble"), ("misfires", "misfire"))}
_SST_NOUNS = {1: ("a triumph", "a gem", "a treat", "a joy", "a winner", "a delight"),
              0: ("a mess", "a disaster", "a chore", "a bore", "a failure", "a slog")}
_SST_OPINION = {1: (("loved", "love"), ("enjoyed", "enjoy"), ("admired", "admire"),
                    ("liked", "like")),
                0: (("hated", "hate"), ("disliked", "dislike"), ("resented", "resent"),
                    ("regretted", "regret"))}
_SST_ASPECTS = ("the film", "the movie", "the picture", "this film", "the story", "the script",
                "the screenplay", "the acting", "the cast", "the performances", "the direction",
                "the dialogue", "the plot", "the ending", "the soundtrack", "the score",
                "the characters", "the camera work", "the pacing", "the humor", "the visuals",
                "the lead performance", "the final act", "the first half", "the premise")
_SST_GENRES = ("comedy", "drama", "thriller", "documentary", "romance", "mystery", "western",
               "musical", "horror film", "family film", "action movie", "period piece", "biopic",
               "satire", "fable", "road movie", "love story", "war film")
_SST_FILLERS = ("about a family in new york", "set in a small town", "based on a true story",
                "about two brothers", "about growing up in the suburbs",
                "from a first-time director", "with a famous cast", "about life after the war",
                "set during one long summer", "about a struggling musician",
                "about an old man and his dog", "shot on a tiny budget", "for the whole family",
                "about a rivalry between two chefs", "set on a fishing boat",
                "adapted from a popular novel")
_SST_TAILS = ("from start to finish", "on every level", "for most of its running time",
              "in the end", "despite its length", "more often than not", "almost every time",
              "in its second half", "as a whole")
_SST_INTENS = ("", "", "", "very ", "really ", "quite ", "truly ", "often ", "surprisingly ",
               "genuinely ", "remarkably ", "so ", "rather ", "oddly ")
_SST_OPENERS = ("", "", "", "", "frankly , ", "ultimately , ", "in the end , ",
                "for the most part , ", "all in all , ", "on the whole , ", "to be fair , ",
                "as a whole , ")


_SST_PLURAL = {"the characters", "the performances", "the visuals"}


def _sst_adj(rng: random.Random, y: int) -> str:
    return rng.choice(rng.choice(SST_POSITIVE if y else SST_NEGATIVE))


def _be(aspect: str) -> str:
    return "are" if aspect in _SST_PLURAL else "is"


def _sst_sentence(rng: random.Random, y: int) -> str:
    """A review sentence with sentiment ``y`` (1 positive); the template decides how the
    sentiment words relate to the label (plain, negated, or contrastive)."""
    a, b = rng.sample(_SST_ASPECTS, 2)
    op, it = rng.choice(_SST_OPENERS), rng.choice(_SST_INTENS)
    kind = rng.choices(("plain", "pair", "np", "neg", "but", "verb", "verb_neg", "noun",
                        "opinion", "opinion_neg"),
                       weights=(22, 10, 14, 10, 9, 12, 4, 9, 12, 4))[0]
    ba, bb = _be(a), _be(b)
    if kind == "plain":
        return f"{op}{a} {ba} {it}{_sst_adj(rng, y)} ."
    if kind == "pair":
        return f"{op}{a} {ba} {_sst_adj(rng, y)} and {b} {bb} {it}{_sst_adj(rng, y)} ."
    if kind == "np":
        adj1, adj2 = _sst_adj(rng, y), _sst_adj(rng, y)
        return f"{_article(it + adj1)} {it}{adj1} , {adj2} {rng.choice(_SST_GENRES)} " \
               f"{rng.choice(_SST_FILLERS)} ."
    if kind == "neg":  # negating the opposite sentiment: "the plot is n't dull" is positive
        adj = _sst_adj(rng, 1 - y)
        return rng.choice((f"{op}{a} {ba} n't {adj} .", f"{op}{a} {ba} not {it}{adj} at all .",
                           f"{a} {ba} never {adj} .", f"there is nothing {adj} about {a} .",
                           f"{op}{a} {ba} hardly {adj} ."))
    if kind == "but":  # the clause after "but" carries the verdict, as annotators read it
        bad, good = _sst_adj(rng, 1 - y), _sst_adj(rng, y)
        return rng.choice((f"{a} {ba} {bad} , but {b} {bb} {it}{good} .",
                           f"{a} may be {bad} , but the film is {good} .",
                           f"although {a} {ba} {bad} , {b} {bb} {it}{good} .",
                           f"{a} {ba} {good} even if {b} {bb} {bad} ."))
    plural = a in _SST_PLURAL
    if kind == "verb":
        third, base = rng.choice(_SST_VERBS[y])
        return f"{op}{a} {base if plural else third} {rng.choice(_SST_TAILS)} ."
    if kind == "verb_neg":  # "the film never drags" is positive
        base = rng.choice(_SST_VERBS[1 - y])[1]
        return rng.choice((f"{a} {'do' if plural else 'does'} n't {base} .",
                           f"{op}{a} never {'seem' if plural else 'seems'} to {base} ."))
    if kind == "noun":
        return f"{op}it 's {rng.choice(_SST_NOUNS[y])} {rng.choice(_SST_TAILS)} ."
    if kind == "opinion":
        return f"i {rng.choice(_SST_OPINION[y])[0]} this {rng.choice(_SST_GENRES)} ."
    base = rng.choice(_SST_OPINION[1 - y])[1]  # opinion_neg: "i did n't hate it"
    return rng.choice((f"i did n't {base} this {rng.choice(_SST_GENRES)} .",
                       f"i could n't {base} {a} ."))


def _sst_phrase(rng: random.Random, y: int) -> str:
    """A parse-tree phrase, as most of the real train split is ("the most charming")."""
    adj = _sst_adj(rng, y)
    return rng.choice((adj, f"{rng.choice(_SST_INTENS)}{adj}", f"{adj} {rng.choice(_SST_GENRES)}",
                       f"the {adj} {rng.choice(_SST_ASPECTS).split()[-1]}",
                       f"{rng.choice(_SST_VERBS[y])[0]} {rng.choice(_SST_TAILS)}",
                       f"is n't {_sst_adj(rng, 1 - y)}", rng.choice(_SST_NOUNS[y]))).strip()


def _sst2_files(rng: random.Random, n_train: int, n_dev: int, n_test: int) -> dict[str, list]:
    seen: set[Hashable] = set()
    noise = LABEL_NOISE["sst2"]

    def make(phrases: bool) -> Callable[[], tuple]:
        def one() -> tuple:
            y = int(rng.random() < 0.56)  # the real train split is 56% positive
            text = (_sst_phrase if phrases and rng.random() < 0.2 else _sst_sentence)(rng, y)
            return text, _noisy(rng, y, (0, 1), noise)
        return one

    train = _draw_distinct(make(True), n_train, seen, key=lambda e: e[0])
    dev = _draw_distinct(make(False), n_dev, seen, key=lambda e: e[0])
    test = _draw_distinct(make(False), n_test, seen, key=lambda e: e[0])
    # Real train/dev sentences end with a space; test sentences do not.
    return {"train.tsv": [(t + " ", str(y)) for t, y in train],
            "dev.tsv": [(t + " ", str(y)) for t, y in dev],
            "test.tsv": [(str(i), t) for i, (t, _) in enumerate(test)]}


# --------------------------------------------------------------------------------------------
# CoLA: sentences from linguistics publications, acceptable (1) or starred (0). About 70% of
# the real set is acceptable; unacceptable ones differ from acceptable ones by one error.

_C_NAMES = ("John", "Mary", "Sue", "Bill", "Kim", "Pat", "Sandy", "Fred", "Chris", "Lee",
            "Tom", "Anna", "Max", "Jean")
# (singular, plural, class): "person", "animal", "text" (can be read/written) or "object".
_C_NOUNS = (("dog", "dogs", "animal"), ("cat", "cats", "animal"), ("horse", "horses", "animal"),
            ("student", "students", "person"), ("teacher", "teachers", "person"),
            ("child", "children", "person"), ("girl", "girls", "person"),
            ("boy", "boys", "person"), ("doctor", "doctors", "person"),
            ("book", "books", "text"), ("letter", "letters", "text"),
            ("story", "stories", "text"), ("poem", "poems", "text"), ("report", "reports", "text"),
            ("car", "cars", "object"), ("box", "boxes", "object"),
            ("painting", "paintings", "object"), ("cake", "cakes", "object"),
            ("picture", "pictures", "object"), ("key", "keys", "object"),
            ("vase", "vases", "object"), ("hat", "hats", "object"))
_C_ANIMATE = ("person", "animal")
# (3rd singular, plural present, past, base, object classes); subjects are animate.
_C_TRANS = (("likes", "like", "liked", "like", ("person", "animal", "text", "object")),
            ("sees", "see", "saw", "see", ("person", "animal", "object")),
            ("reads", "read", "read", "read", ("text",)),
            ("writes", "write", "wrote", "write", ("text",)),
            ("finds", "find", "found", "find", ("animal", "text", "object")),
            ("praises", "praise", "praised", "praise", ("person", "text")),
            ("admires", "admire", "admired", "admire", ("person", "text", "object")),
            ("chases", "chase", "chased", "chase", ("person", "animal")),
            ("buys", "buy", "bought", "buy", ("text", "object")),
            ("hides", "hide", "hid", "hide", ("text", "object")),
            ("forgets", "forget", "forgot", "forget", ("text", "object")),
            ("paints", "paint", "painted", "paint", ("person", "animal", "object")))
_C_INTRANS = (("sleeps", "sleep", "slept", "sleep"), ("laughs", "laugh", "laughed", "laugh"),
              ("arrives", "arrive", "arrived", "arrive"), ("sings", "sing", "sang", "sing"),
              ("waits", "wait", "waited", "wait"), ("smiles", "smile", "smiled", "smile"))
# Adjectives for animate nouns and for things.
_C_ADJ = {"animate": ("happy", "tall", "clever", "quiet", "famous", "young", "tired"),
          "thing": ("old", "new", "red", "heavy", "long", "strange", "expensive", "broken",
                    "small")}
_C_PLACES = ("on the table", "in the box", "near the window", "under the bed",
             "in the garden", "on the shelf", "behind the door")
_C_RAISING = ("seems", "appears", "tends", "happens", "wants", "tries", "hopes", "plans")
_C_ADVERBS = ("quickly", "carefully", "yesterday", "again", "slowly", "twice")
_C_IT_ADJ = ("likely", "clear", "obvious", "strange", "surprising", "true")
_C_SOURCES = ("gj04", "bc01", "ad03", "c-05", "cj99", "clc95", "d_98", "g_81", "j_71", "k_97",
              "l-93", "m_02", "r-67", "sks13", "w_80", "b_73", "e_93", "s_97")


def _cola_item(rng: random.Random) -> tuple[list[str], list[list[str]]]:
    """An acceptable sentence as tokens, and the specific corruptions its shape invites."""
    def noun(classes: Sequence[str], *, but: str = "") -> tuple[str, str, str]:
        return rng.choice([n for n in _C_NOUNS if n[2] in classes and n[0] != but])

    def adj_for(n: tuple[str, str, str]) -> str:
        return rng.choice(_C_ADJ["animate" if n[2] in _C_ANIMATE else "thing"])

    name, name2 = rng.sample(_C_NAMES, 2)
    tv, iv = rng.choice(_C_TRANS), rng.choice(_C_INTRANS)
    obj = noun(tv[4])  # what the transitive verb takes
    n_sg = obj[0]
    thing = noun(("text", "object"))
    shape = rng.randrange(9)
    if shape == 0:  # agreement across an attractor: "The pictures of the girls are old."
        plural = rng.random() < 0.5
        head = noun(("text", "object"))
        subj = ["the", head[1] if plural else head[0]]
        attractor = noun(("person", "animal"))
        pp = rng.choice(_C_PLACES).split() if rng.random() < 0.4 else \
            ["of", "the", attractor[0] if plural else attractor[1]]
        adj = adj_for(head)
        good = [*subj, *pp, "are" if plural else "is", adj, "."]
        bad = [*subj, *pp, "is" if plural else "are", adj, "."]
        return good, [bad]
    if shape == 1:  # present-tense agreement: "The dogs chase the cat."
        plural = rng.random() < 0.5
        agent = noun(_C_ANIMATE, but=n_sg)
        subj = ["the", agent[1] if plural else agent[0]]
        good = [*subj, tv[1] if plural else tv[0], "the", n_sg, "."]
        bad = [*subj, tv[0] if plural else tv[1], "the", n_sg, "."]
        every = ["every", agent[1], tv[1], "the", n_sg, "."]  # "Every dogs chase the cat."
        return good, [bad, every]
    if shape == 2:  # raising/control: "John seems to like the book."
        verb = rng.choice(_C_RAISING)
        good = [name, verb, "to", tv[3], "the", n_sg, "."]
        return good, [[name, verb, "to", tv[2], "the", n_sg, "."],
                      [name, verb, tv[3], "the", n_sg, "."]]
    if shape == 3:  # locative argument: "Sue put the key on the table."
        place = rng.choice(_C_PLACES).split()
        good = [name, "put", "the", thing[0], *place, "."]
        return good, [[name, "put", "the", thing[0], "."], [name, "put", *place, "."]]
    if shape == 4:  # wh-questions: "What did Kim read?"
        # "who" only where the verb takes a person, "what" only where it takes a thing.
        options = [["which", n_sg]] + ([["who"]] if "person" in tv[4] else []) \
            + ([["what"]] if {"text", "object"} & set(tv[4]) else [])
        wh = rng.choice(options)
        good = [*wh, "did", name, tv[3], "?"]
        return good, [[*wh, "did", name, tv[2], "?"], [*wh, name, "did", tv[3], "?"],
                      [*wh, "did", name, tv[3], "the", n_sg, "?"]]
    adj = adj_for(obj)
    if shape == 5:  # relative clause: "The book that Bill wrote was famous."
        good = ["the", n_sg, "that", name, tv[2], "was", adj, "."]
        return good, [["the", n_sg, "that", name, tv[2], "the", n_sg, "was", adj, "."],
                      ["the", n_sg, "that", name, tv[2], "were", adj, "."]]
    if shape == 6:  # adverb placement: "Pat read the long poem carefully."
        adv = rng.choice(_C_ADVERBS)
        good = [name, tv[2], "the", adj, n_sg, adv, "."]
        return good, [[name, tv[2], adv, "the", adj, n_sg, "."],
                      [name, tv[2], "the", n_sg, adj, adv, "."]]
    if shape == 7:  # extraposition: "It is likely that Sue left." / "*Bill is likely that..."
        it_adj = rng.choice(_C_IT_ADJ)
        good = ["it", "is", it_adj, "that", name, tv[2], "the", n_sg, "."]
        return good, [[name2, "is", it_adj, "that", name, tv[2], "the", n_sg, "."]]
    # shape 8, intransitives: "The tired children laughed." / "*The children laughed the cat."
    plural = rng.random() < 0.5
    agent = noun(("person",))
    head = ["the", adj_for(agent), agent[1] if plural else agent[0]]
    return [*head, iv[2], "."], [[*head, iv[2], "the", thing[0], "."]]


def _cola_generic(rng: random.Random, toks: list[str]) -> list[str]:
    """An error any sentence can get: a doubled word, a dropped article, swapped words."""
    words = len(toks) - 1  # the last token is the final punctuation
    kind = rng.randrange(3)
    toks = list(toks)
    dets = [i for i, t in enumerate(toks[:-1]) if t in ("the", "a")]
    if kind == 1 and dets:
        del toks[rng.choice(dets)]
    elif kind == 2 and words >= 3:
        i = rng.randrange(words - 1)
        toks[i], toks[i + 1] = toks[i + 1], toks[i]
    else:
        i = rng.randrange(words)
        toks.insert(i, toks[i])
    return toks


def _cola_text(toks: list[str]) -> str:
    return _cap(" ".join(toks[:-1])) + toks[-1]


def _cola_files(rng: random.Random, n_train: int, n_dev: int, n_test: int) -> dict[str, list]:
    seen: set[Hashable] = set()
    noise = LABEL_NOISE["cola"]

    def one() -> tuple:
        good, bads = _cola_item(rng)
        y = int(rng.random() < 0.7)
        if y:
            toks = good
        else:
            toks = rng.choice(bads) if rng.random() < 0.6 else _cola_generic(rng, good)
        return _cola_text(toks), _noisy(rng, y, (0, 1), noise), rng.choice(_C_SOURCES)

    rows = {name: _draw_distinct(one, n, seen, key=lambda e: e[0])
            for name, n in (("train.tsv", n_train), ("dev.tsv", n_dev), ("test.tsv", n_test))}
    labelled = {name: [(src, str(y), "" if y else "*", text) for text, y, src in rows[name]]
                for name in ("train.tsv", "dev.tsv")}
    return {**labelled, "test.tsv": [(str(i), t) for i, (t, _, _) in enumerate(rows["test.tsv"])]}


# --------------------------------------------------------------------------------------------
# A small world of news facts ("Maria Lopez built a new hospital in Lyon in 2004"), realised
# in several ways, shared by MRPC, MNLI, RTE and QNLI.

@dataclass(frozen=True)
class _Verb:
    forms: tuple[tuple[str, str, str], ...]  # (base, past, participle); [0] plain, then synonyms
    kinds: tuple[str, ...]                   # what it takes as an object (see _THINGS)
    antonym: str | None = None               # key of the verb that undoes it


_VERBS: dict[str, _Verb] = {
    "buy": _Verb((("buy", "bought", "bought"), ("purchase", "purchased", "purchased"),
                  ("acquire", "acquired", "acquired")), ("building", "firm", "vehicle"), "sell"),
    "sell": _Verb((("sell", "sold", "sold"),), ("building", "firm", "vehicle"), "buy"),
    "build": _Verb((("build", "built", "built"), ("construct", "constructed", "constructed")),
                   ("building",), "demolish"),
    "demolish": _Verb((("demolish", "demolished", "demolished"),
                       ("tear down", "tore down", "torn down")), ("building",), "build"),
    "open": _Verb((("open", "opened", "opened"), ("launch", "launched", "launched")),
                  ("site",), "close"),
    "close": _Verb((("close", "closed", "closed"), ("shut", "shut", "shut")), ("site",), "open"),
    "win": _Verb((("win", "won", "won"), ("claim", "claimed", "claimed")), ("prize",), "lose"),
    "lose": _Verb((("lose", "lost", "lost"),), ("prize",), "win"),
    "sign": _Verb((("sign", "signed", "signed"), ("approve", "approved", "approved")),
                  ("document",), "reject"),
    "reject": _Verb((("reject", "rejected", "rejected"), ("turn down", "turned down",
                                                          "turned down")), ("document",), "sign"),
    "hire": _Verb((("hire", "hired", "hired"), ("recruit", "recruited", "recruited"),
                   ("employ", "employed", "employed")), ("staff",), "fire"),
    "fire": _Verb((("fire", "fired", "fired"), ("dismiss", "dismissed", "dismissed"),
                   ("lay off", "laid off", "laid off")), ("staff",), "hire"),
    "visit": _Verb((("visit", "visited", "visited"), ("tour", "toured", "toured")),
                   ("building", "site")),
    "write": _Verb((("write", "wrote", "written"), ("author", "authored", "authored"),
                    ("pen", "penned", "penned")), ("text",)),
    "announce": _Verb((("announce", "announced", "announced"),
                       ("unveil", "unveiled", "unveiled"), ("reveal", "revealed", "revealed")),
                      ("plan",), "cancel"),
    "cancel": _Verb((("cancel", "cancelled", "cancelled"), ("scrap", "scrapped", "scrapped"),
                     ("call off", "called off", "called off")), ("plan",), "announce"),
    "repair": _Verb((("repair", "repaired", "repaired"), ("fix", "fixed", "fixed"),
                     ("restore", "restored", "restored")), ("building", "vehicle"), "damage"),
    "damage": _Verb((("damage", "damaged", "damaged"),), ("building", "vehicle"), "repair"),
    "raise": _Verb((("raise", "raised", "raised"), ("increase", "increased", "increased")),
                   ("amount",), "cut"),
    "cut": _Verb((("cut", "cut", "cut"), ("lower", "lowered", "lowered"),
                  ("reduce", "reduced", "reduced")), ("amount",), "raise"),
}


@dataclass(frozen=True)
class _Thing:
    nouns: tuple[str, ...]  # [0] plain, then synonyms; plural for counted kinds
    hyper: str              # a more general noun that the specific one entails
    kind: str


_THINGS: tuple[_Thing, ...] = (
    _Thing(("hospital", "medical centre"), "building", "building"),
    _Thing(("bridge",), "structure", "building"), _Thing(("stadium", "arena"), "venue", "building"),
    _Thing(("school",), "building", "building"), _Thing(("hotel",), "building", "building"),
    _Thing(("factory", "plant"), "facility", "building"),
    _Thing(("library",), "building", "building"),
    _Thing(("warehouse", "depot"), "building", "building"),
    _Thing(("museum",), "building", "building"), _Thing(("tower",), "structure", "building"),
    _Thing(("bakery",), "business", "firm"), _Thing(("newspaper",), "business", "firm"),
    _Thing(("software firm", "software company"), "company", "firm"),
    _Thing(("airline", "carrier"), "company", "firm"),
    _Thing(("football club", "soccer club"), "club", "firm"),
    _Thing(("brewery",), "business", "firm"),
    _Thing(("ship", "vessel"), "vehicle", "vehicle"),
    _Thing(("truck", "lorry"), "vehicle", "vehicle"),
    _Thing(("car", "automobile"), "vehicle", "vehicle"),
    _Thing(("plane", "aircraft", "jet"), "vehicle", "vehicle"),
    _Thing(("bus",), "vehicle", "vehicle"), _Thing(("ferry",), "vehicle", "vehicle"),
    _Thing(("store", "shop"), "business", "site"), _Thing(("restaurant",), "business", "site"),
    _Thing(("clinic",), "facility", "site"), _Thing(("office",), "facility", "site"),
    _Thing(("market",), "business", "site"), _Thing(("gallery",), "venue", "site"),
    _Thing(("award", "prize"), "honour", "prize"),
    _Thing(("championship", "title"), "competition", "prize"),
    _Thing(("election",), "vote", "prize"), _Thing(("contract",), "deal", "prize"),
    _Thing(("tournament",), "competition", "prize"),
    _Thing(("treaty", "accord"), "agreement", "document"),
    _Thing(("bill",), "document", "document"), _Thing(("budget",), "plan", "document"),
    _Thing(("petition",), "document", "document"),
    _Thing(("trade agreement", "trade deal"), "agreement", "document"),
    _Thing(("engineers",), "workers", "staff"), _Thing(("nurses",), "staff", "staff"),
    _Thing(("teachers",), "staff", "staff"), _Thing(("drivers",), "workers", "staff"),
    _Thing(("pilots",), "staff", "staff"), _Thing(("researchers", "scientists"), "staff", "staff"),
    _Thing(("report", "study"), "document", "text"), _Thing(("novel", "book"), "book", "text"),
    _Thing(("letter",), "message", "text"),
    _Thing(("memoir", "autobiography"), "book", "text"),
    _Thing(("article", "column"), "text", "text"),
    _Thing(("merger",), "deal", "plan"), _Thing(("strike", "walkout"), "protest", "plan"),
    _Thing(("tour",), "trip", "plan"), _Thing(("project", "programme"), "plan", "plan"),
    _Thing(("festival",), "event", "plan"),
    _Thing(("fees",), "fees", "amount"), _Thing(("taxes",), "taxes", "amount"),
    _Thing(("prices",), "prices", "amount"), _Thing(("wages", "salaries"), "pay", "amount"),
    _Thing(("rents",), "rents", "amount"),
)
_BY_KIND: dict[str, tuple[int, ...]] = {
    kind: tuple(i for i, t in enumerate(_THINGS) if t.kind == kind)
    for kind in dict.fromkeys(t.kind for t in _THINGS)}
_COUNTS = {"staff": (3, 4, 5, 6, 8, 12, 15, 20, 25, 30, 40, 45, 60, 75, 80, 120, 150, 200),
           "amount": (2, 3, 4, 5, 6, 8, 10, 12, 15, 20)}  # people; percent
_ADJ_KINDS = ("building", "firm", "vehicle", "site")
_ADJS = ("new", "large", "small", "local", "modern", "second")

_PEOPLE = ("Maria Lopez", "John Carter", "Anna Berg", "David Okafor", "Laura Chen",
           "Peter Novak", "Sofia Rossi", "James Miller", "Elena Petrova", "Omar Haddad",
           "Grace Kim", "Thomas Weber", "Nina Patel", "Lucas Silva", "Hannah Schmidt",
           "Victor Dumas", "Ruth Adams", "Karl Jensen")
_COMPANIES = ("Norland Bank", "Vireo Systems", "Calder Motors", "Brightwater Foods",
              "Harbor Airlines", "Summit Energy", "Oakridge Media", "Tessel Pharma")
_ORGS = (*_COMPANIES, "the city council", "the health ministry", "the state university",
         "the national museum", "the transport authority", "the regional government")
_PLACES = (("Lyon", "France"), ("Marseille", "France"), ("Madrid", "Spain"), ("Seville", "Spain"),
           ("Osaka", "Japan"), ("Nagoya", "Japan"), ("Denver", "Colorado"), ("Austin", "Texas"),
           ("Dallas", "Texas"), ("Porto", "Portugal"), ("Toronto", "Canada"),
           ("Calgary", "Canada"), ("Leeds", "England"), ("Bristol", "England"),
           ("Munich", "Germany"), ("Hamburg", "Germany"), ("Krakow", "Poland"),
           ("Nairobi", "Kenya"), ("Lima", "Peru"), ("Bergen", "Norway"), ("Cork", "Ireland"),
           ("Adelaide", "Australia"))
# (phrase, type); a changed time keeps its type, so "in 2004" contradicts "in 2011".
_TIMES = (("on Monday", "day"), ("on Tuesday", "day"), ("on Wednesday", "day"),
          ("on Thursday", "day"), ("on Friday", "day"), ("in January", "month"),
          ("in March", "month"), ("in April", "month"), ("in June", "month"),
          ("in September", "month"), ("in November", "month"), ("in 1998", "year"),
          ("in 2004", "year"), ("in 2009", "year"), ("in 2011", "year"), ("in 2015", "year"),
          ("last week", "recent"), ("last month", "recent"), ("last year", "recent"))
_OBJ_CASE = {"we": "us", "i": "me"}  # agents that are pronouns, in the passive's by-phrase


@dataclass(frozen=True)
class _Fact:
    agent: str
    verb: str              # key of _VERBS
    thing: int             # index of _THINGS
    adj: str = ""          # "a new hospital"; only for _ADJ_KINDS
    count: int | None = None  # people hired, percent raised; only for counted kinds
    place: int | None = None  # index of _PLACES
    time: int | None = None   # index of _TIMES
    neg: bool = False


@dataclass(frozen=True)
class _Style:
    """How a fact is worded; :func:`_say` is deterministic given the fact and the style."""

    vform: int = 0          # which of the verb's forms (0 plain, others synonyms)
    nform: int = 0          # which of the thing's nouns
    passive: bool = False
    front: str | None = None      # "place" or "time" moved to the front: "In 2004, ..."
    place_first: bool = True      # order of the trailing place and time
    frame: int | None = None      # a reporting frame of _FRAMES
    general: frozenset[str] = frozenset()  # said in general terms: "place" (region), "thing"
    drop: frozenset[str] = frozenset()     # left out: "place", "time", "count", "agent"
    definite: bool = False        # "the hospital" rather than "a hospital"


_FRAMES = ("{s}, officials said", "{s}, a spokesperson said", "According to officials, {s}",
           "{s}, local media reported", "Officials confirmed that {s}", "{s}, the report said",
           "It was reported that {s}", "{s}, according to a statement")


def _object_np(f: _Fact, st: _Style) -> tuple[str, str]:
    """The object's noun phrase, and what follows the verb after it ("by 8 percent")."""
    thing = _THINGS[f.thing]
    general = "thing" in st.general
    noun = thing.hyper if general else thing.nouns[st.nform % len(thing.nouns)]
    if thing.kind in _COUNTS:
        if f.count is None or "count" in st.drop:
            return (f"the {noun}" if st.definite else noun), ""
        if thing.kind == "staff":
            return f"{_num(f.count)} {noun}", ""
        return noun, f"by {f.count} percent"
    words = noun if general or not f.adj else f"{f.adj} {noun}"
    return f"{'the' if st.definite else _article(words)} {words}", ""


def _place_phrase(f: _Fact, st: _Style) -> str:
    city, region = _PLACES[f.place]
    return "in " + (region if "place" in st.general else city)


def _say(f: _Fact, st: _Style = _Style(), *, cap: bool = True) -> str:
    """One sentence stating ``f``: "In 2004, Maria Lopez built a new hospital in Lyon.".
    ``cap=False`` keeps the first letter as the lexicon has it, to embed the sentence."""
    base, past, part = _VERBS[f.verb].forms[st.vform % len(_VERBS[f.verb].forms)]
    np, tail = _object_np(f, st)
    mods: list[tuple[str, str]] = []
    if f.place is not None and "place" not in st.drop:
        mods.append(("place", _place_phrase(f, st)))
    if f.time is not None and "time" not in st.drop:
        mods.append(("time", _TIMES[f.time][0]))
    if not st.place_first:
        mods.reverse()
    front = [m for s, m in mods if s == st.front]
    rest = [m for s, m in mods if s != st.front]
    if st.passive and f.agent not in ("we", "i"):
        plural = _THINGS[f.thing].kind in _COUNTS
        be = ("were" if plural else "was") + (" not" if f.neg else "")
        by = "" if "agent" in st.drop else f" by {_OBJ_CASE.get(f.agent, f.agent)}"
        core = f"{np} {be} {part}{' ' + tail if tail else ''}{by}"  # "were raised by 8 percent by"
    else:
        core = f"{f.agent} {'did not ' + base if f.neg else past} {np}{' ' + tail if tail else ''}"
    body = " ".join([core, *rest])
    if front:
        body = f"{front[0]}, {body}"
    if st.frame is not None:
        body = _FRAMES[st.frame].format(s=body)
    return (_cap(body) if cap else body) + "."


def _draw_fact(rng: random.Random, agents: Sequence[str], verbs: Sequence[str] = tuple(_VERBS),
               *, p_place: float = 0.7, p_time: float = 0.6, p_neg: float = 0.0) -> _Fact:
    verb = rng.choice(verbs)
    kind = rng.choice(_VERBS[verb].kinds)
    adj = rng.choice(_ADJS) if kind in _ADJ_KINDS and rng.random() < 0.5 else ""
    count = rng.choice(_COUNTS[kind]) if kind in _COUNTS and rng.random() < 0.85 else None
    return _Fact(agent=rng.choice(agents), verb=verb, thing=rng.choice(_BY_KIND[kind]), adj=adj,
                 count=count,
                 place=rng.randrange(len(_PLACES)) if rng.random() < p_place else None,
                 time=rng.randrange(len(_TIMES)) if rng.random() < p_time else None,
                 neg=rng.random() < p_neg)


def _random_style(rng: random.Random, *, frames: bool = True) -> _Style:
    return _Style(vform=0 if rng.random() < 0.6 else rng.randrange(1, 4),
                  nform=0 if rng.random() < 0.6 else rng.randrange(1, 3),
                  passive=rng.random() < 0.25,
                  front=rng.choice((None, None, None, "place", "time")),
                  place_first=rng.random() < 0.6,
                  frame=rng.randrange(len(_FRAMES)) if frames and rng.random() < 0.35 else None)


def _reworded(rng: random.Random, st: _Style, *, frames: bool = True, least: int = 2) -> _Style:
    """Another wording of the same content: ``least`` to 4 of the style's choices changed."""
    choices = ["vform", "nform", "passive", "front", "place_first"] + (["frame"] if frames else [])
    out = st
    for what in rng.sample(choices, rng.randint(least, 4)):
        if what == "vform":
            out = replace(out, vform=out.vform + rng.randint(1, 2))
        elif what == "nform":
            out = replace(out, nform=out.nform + 1)
        elif what == "passive":
            out = replace(out, passive=not out.passive)
        elif what == "front":
            out = replace(out, front=rng.choice([x for x in (None, "place", "time")
                                                 if x != out.front]))
        elif what == "place_first":
            out = replace(out, place_first=not out.place_first)
        else:
            out = replace(out, frame=None if out.frame is not None
                          else rng.randrange(len(_FRAMES)))
    return out


def _changes(f: _Fact, *, nli: bool = False) -> list[str]:
    """What :func:`_changed` can alter in ``f`` to make a conflicting fact.

    For NLI (``nli``), only what rules the premise's event out: the same event with another
    place, date, number, the opposite verb, or denied. Another agent or object does not
    contradict ("critics signed a bill" leaves "the columnist signed a petition" open), and
    a denied fact is only contradicted by asserting it.
    """
    if nli:
        if f.neg:
            return ["neg"]
        out = ["neg"]
    else:
        out = ["agent", "thing", "neg"]
    out += ["place"] if f.place is not None else []
    out += ["time"] if f.time is not None else []
    out += ["count"] if f.count is not None else []
    out += ["antonym"] if _VERBS[f.verb].antonym and not f.neg else []
    return out


def _changed(f: _Fact, rng: random.Random, what: str, agents: Sequence[str]) -> _Fact:
    """``f`` with one detail changed: another agent, object, place, date, number or polarity."""
    if what == "agent":
        return replace(f, agent=rng.choice([a for a in agents if a != f.agent]))
    if what == "thing":
        pool = [i for i in _BY_KIND[_THINGS[f.thing].kind] if i != f.thing]
        return replace(f, thing=rng.choice(pool))
    if what == "neg":
        return replace(f, neg=not f.neg)
    if what == "place":
        region = _PLACES[f.place][1]
        return replace(f, place=rng.choice([i for i, (_, r) in enumerate(_PLACES) if r != region]))
    if what == "time":
        kind = _TIMES[f.time][1]
        return replace(f, time=rng.choice([i for i, (_, k) in enumerate(_TIMES)
                                           if k == kind and i != f.time]))
    if what == "count":
        return replace(f, count=rng.choice([c for c in _COUNTS[_THINGS[f.thing].kind]
                                            if c != f.count]))
    if what == "antonym":
        return replace(f, verb=_VERBS[f.verb].antonym)
    raise ValueError(what)


# --------------------------------------------------------------------------------------------
# MRPC: news sentence pairs, Quality 1 = paraphrase (68% of the real set).

def _mrpc_pair(rng: random.Random, para: bool) -> tuple[str, str]:
    agents = _PEOPLE + _ORGS
    f = _draw_fact(rng, agents, p_neg=0.1)
    st1 = _random_style(rng)
    s1 = _say(f, st1)
    for _ in range(20):
        if para:
            st2 = _reworded(rng, st1, least=1)
            if f.time is not None and rng.random() < 0.15:
                st2 = replace(st2, drop=st2.drop | {"time"})  # a minor detail left out
            s2 = _say(f, st2)
        else:
            st2 = st1 if rng.random() < 0.5 else _reworded(rng, st1)
            if rng.random() < 0.35:
                # The same fact plus one the first sentence does not have: "..., and hired
                # 40 nurses." (the placeholder agent "@" is cut off the second clause).
                st2 = replace(st2, passive=False, frame=None)
                extra = _draw_fact(rng, ["@"], p_place=0, p_time=0)
                s2 = f"{_say(f, st2)[:-1]} and {_say(extra)[2:]}"
            else:
                # Most differ in two details (a sentence pair from two related stories), the
                # rest in one: another name, number, date, place, object or polarity.
                whats = rng.sample(_changes(f), 2 if rng.random() < 0.6 else 1)
                if "neg" in whats and "antonym" in whats:  # the two would cancel out
                    whats.remove("antonym")
                f2 = f
                for what in whats:
                    f2 = _changed(f2, rng, what, agents)
                s2 = _say(f2, st2)
        if s2 != s1:
            return s1, s2
    raise AssertionError("no distinct second sentence")


def _mrpc_files(rng: random.Random, n_train: int, n_dev: int, n_test: int) -> dict[str, list]:
    seen: set[Hashable] = set()
    noise = LABEL_NOISE["mrpc"]

    def one() -> tuple:
        para = rng.random() < 0.68
        s1, s2 = _mrpc_pair(rng, para)
        return s1, s2, _noisy(rng, int(para), (0, 1), noise)

    n = n_train + n_dev + n_test
    pairs = _draw_distinct(one, n, seen, key=lambda e: e[:2])
    # Sentence ids as in the MSR corpus: distinct 6-7 digit numbers.
    ids = rng.sample(range(100_000, 3_500_000), 2 * n)
    rows = [(str(y), str(ids[2 * i]), str(ids[2 * i + 1]), s1, s2)
            for i, (s1, s2, y) in enumerate(pairs)]
    test = rows[n_train + n_dev:]
    return {"train.tsv": rows[:n_train], "dev.tsv": rows[n_train:n_train + n_dev],
            "test.tsv": [(str(i), *r[1:]) for i, r in enumerate(test)]}


# --------------------------------------------------------------------------------------------
# QQP: Quora question pairs, is_duplicate 1 for the same question (37% of the real set).

_QQP_TOPICS = ("Python", "Java", "JavaScript", "machine learning", "data science", "guitar",
               "piano", "chess", "French", "Spanish", "German", "Japanese", "photography",
               "cooking", "drawing", "swimming", "public speaking", "stock trading",
               "web design", "video editing", "yoga", "calculus", "painting", "statistics")
_QQP_INTENTS: dict[str, tuple[str, ...]] = {
    "learn": ("How do I learn {t}?", "What is the best way to learn {t}?",
              "How can I start learning {t}?", "What are some good ways to learn {t}?",
              "How should I begin learning {t}?"),
    "fast": ("How can I learn {t} quickly?", "What is the fastest way to learn {t}?",
             "How do I learn {t} fast?", "Is there a quick way to learn {t}?"),
    "improve": ("How can I improve my {t} skills?", "How do I get better at {t}?",
                "What can I do to improve at {t}?", "How can I become good at {t}?"),
    "books": ("What are the best books on {t}?", "Which books should I read to learn {t}?",
              "What are some good books about {t}?", "Which book is best for {t}?"),
    "career": ("Is {t} a good career choice?", "Should I choose a career in {t}?",
               "Is it worth making a career out of {t}?", "What jobs can I get with {t}?"),
    "hard": ("Is {t} hard to learn?", "How difficult is it to learn {t}?",
             "Is learning {t} difficult?", "Why is {t} so hard?"),
    "time": ("How long does it take to learn {t}?", "How many months does it take to learn {t}?",
             "How much time is needed to learn {t}?", "How long will it take me to master {t}?"),
    "money": ("How can I make money with {t}?", "What are some ways to earn money from {t}?",
              "Can I make a living from {t}?", "How do people make money from {t}?"),
    "online": ("What are the best websites to learn {t}?", "Which online courses are good for {t}?",
               "Where can I learn {t} online?", "What is the best online course for {t}?"),
    "age": ("Am I too old to learn {t}?", "Is it too late to start learning {t} at 30?",
            "Can adults learn {t}?", "Is 40 too old to start {t}?"),
}
_QQP_CONTEXT = ("I am a beginner.", "I have no experience.", "I am a student.",
                "I am 25 years old.", "I work full time.", "I tried before and gave up.")


def _qqp_question(rng: random.Random, intent: str, topic: str) -> str:
    q = rng.choice(_QQP_INTENTS[intent]).format(t=topic)
    if rng.random() < 0.12:
        q = f"{rng.choice(_QQP_CONTEXT)} {q}"
    if rng.random() < 0.08:  # Quora's users are not careful typists
        q = q[:1].lower() + q[1:]
    if rng.random() < 0.05:
        q = q.rstrip("?")
    return q


def _qqp_pair(rng: random.Random, dup: bool) -> tuple[str, str]:
    intent, topic = rng.choice(tuple(_QQP_INTENTS)), rng.choice(_QQP_TOPICS)
    for _ in range(20):
        if dup:
            i2, t2 = intent, topic
        else:
            r = rng.random()
            i2 = intent if r < 0.5 else rng.choice([i for i in _QQP_INTENTS if i != intent])
            t2 = topic if 0.5 <= r < 0.9 else rng.choice([t for t in _QQP_TOPICS if t != topic])
        q1, q2 = _qqp_question(rng, intent, topic), _qqp_question(rng, i2, t2)
        if q1 != q2:
            return q1, q2
    raise AssertionError("no distinct second question")


def _qqp_files(rng: random.Random, n_train: int, n_dev: int, n_test: int) -> dict[str, list]:
    seen: set[Hashable] = set()
    noise = LABEL_NOISE["qqp"]

    def one() -> tuple:
        dup = rng.random() < 0.37
        q1, q2 = _qqp_pair(rng, dup)
        return q1, q2, _noisy(rng, int(dup), (0, 1), noise)

    n = n_train + n_dev + n_test
    pairs = _draw_distinct(one, n, seen, key=lambda e: frozenset(e[:2]))
    qids: dict[str, int] = {}  # a question keeps its qid wherever it appears, as in the real set
    pair_ids = rng.sample(range(1, 20 * n + 1), n)
    rows = []
    for pid, (q1, q2, y) in zip(pair_ids, pairs):
        id1, id2 = qids.setdefault(q1, len(qids) + 1), qids.setdefault(q2, len(qids) + 1)
        rows.append((str(pid), str(id1), str(id2), q1, q2, str(y)))
    test = pairs[n_train + n_dev:]
    return {"train.tsv": rows[:n_train], "dev.tsv": rows[n_train:n_train + n_dev],
            "test.tsv": [(str(i), q1, q2) for i, (q1, q2, _) in enumerate(test)]}


# --------------------------------------------------------------------------------------------
# STS-B: sentence pairs scored 0 (unrelated) to 5 (same meaning), from captions, news
# headlines and forums. The score here is 5 minus a penalty per slot the sentences do not
# share, plus annotator-like noise, on the real set's grid (a mean of 5 ratings: steps of 0.2).

_CAP_AGENTS = ((("A man", "A guy"), "person"), (("A woman", "A lady"), "person"),
               (("A boy", "A young boy"), "person"), (("A girl", "A little girl"), "person"),
               (("A chef", "A cook"), "person"), (("A dog", "A puppy"), "animal"),
               (("A cat", "A kitten"), "animal"), (("A monkey",), "animal"))
_CAP_ACTIONS = ((("playing",), ("a guitar", "a piano", "a flute", "the drums", "a violin")),
                (("slicing", "cutting"), ("an onion", "a tomato", "a potato", "a carrot",
                                          "some bread")),
                (("riding",), ("a horse", "a bike", "a motorcycle", "a skateboard")),
                (("eating",), ("an apple", "a sandwich", "some pasta", "a banana")),
                (("reading", "looking at"), ("a book", "a newspaper", "a map", "a letter")),
                (("throwing", "tossing"), ("a ball", "a frisbee", "a stick")),
                (("climbing",), ("a tree", "a wall", "a rock", "a ladder")),
                (("washing", "cleaning"), ("a car", "a window", "a bowl")))
_CAP_PLACES = ("on the beach", "in a kitchen", "in a park", "on a stage", "in the snow",
               "on the street", "in a field", "in a room")
_HEAD_ACTORS = (("Police", "Officers"), ("Rescuers", "Emergency crews"),
                ("Protesters", "Demonstrators"), ("Soldiers", "Troops"), ("Firefighters",),
                ("Volunteers",))
_HEAD_EVENTS = ((("arrest", "detain"), "arrested", ("suspects", "men", "teenagers")),
                (("rescue", "save"), "rescued", ("miners", "hikers", "sailors")),
                (("evacuate",), "evacuated", ("residents", "families", "students")),
                (("free", "release"), "freed", ("hostages", "prisoners")),
                (("find", "locate"), "found", ("survivors", "children", "climbers")))
_FORUM_TOPICS = ("the new tax plan", "online schooling", "nuclear power", "the minimum wage rise",
                 "working from home", "the new stadium", "electric cars", "the bike lanes",
                 "the four-day week", "the school uniform rule")
_FORUM_STANCES = {1: ("a good idea", "worth it", "a smart move", "helpful", "long overdue"),
                  0: ("a bad idea", "a waste of money", "a mistake", "harmful", "pointless")}
_FORUM_REASONS = {1: ("because it saves money", "because people need it", ""),
                  0: ("because it costs too much", "because nobody asked for it", "")}
# (genre, filename, year) of the real set's sources.
_STS_SOURCES = {"captions": (("main-captions", "MSRvid", "2012test"),
                             ("main-captions", "MSRvid", "2012train"),
                             ("main-captions", "images", "2014"),
                             ("main-captions", "images", "2015")),
                "news": (("main-news", "headlines", "2013"), ("main-news", "headlines", "2014"),
                         ("main-news", "headlines", "2015")),
                "forum": (("main-forum", "deft-forum", "2014"),
                          ("main-forum", "answers-forums", "2015"))}


def _mutate(rng: random.Random, slots: tuple, sizes: Sequence[int], *,
            optional: Sequence[int] = ()) -> tuple:
    """``slots`` (value indices) with each changed with one probability drawn per pair, so
    pairs spread from identical to unrelated. ``sizes[i]`` is how many values slot i has; the
    slots in ``optional`` may also be absent (None)."""
    p = rng.choice((0.0, 0.2, 0.4, 0.6, 0.8, 1.0))
    out = list(slots)
    for i, size in enumerate(sizes):
        if rng.random() < p:
            options = [*range(size), *([None] if i in optional else [])]
            out[i] = rng.choice([o for o in options if o != slots[i]])
    return tuple(out)


def _sts_captions(rng: random.Random) -> tuple[str, str, float]:
    def draw() -> tuple:
        act = rng.randrange(len(_CAP_ACTIONS))
        return (rng.randrange(len(_CAP_AGENTS)), act,
                rng.randrange(len(_CAP_ACTIONS[act][1])),
                rng.randrange(len(_CAP_PLACES)) if rng.random() < 0.6 else None)

    def say(c: tuple) -> str:
        agent, act, obj, place = c
        verbs, objs = _CAP_ACTIONS[act]
        where = f" {_CAP_PLACES[place]}" if place is not None else ""
        return f"{rng.choice(_CAP_AGENTS[agent][0])} is {rng.choice(verbs)} " \
               f"{objs[obj % len(objs)]}{where}."

    a = draw()
    # Objects are indices into the action's own list (3 to 5 long), taken modulo its length.
    b = _mutate(rng, a, (len(_CAP_AGENTS), len(_CAP_ACTIONS), 5, len(_CAP_PLACES)), optional=(3,))
    b = (b[0], b[1], b[2] % len(_CAP_ACTIONS[b[1]][1]), b[3])
    pen = 0.0
    if a[0] != b[0]:
        pen += 1.0 if _CAP_AGENTS[a[0]][1] == _CAP_AGENTS[b[0]][1] else 1.6
    if a[1] != b[1]:
        pen += 2.6  # another action, hence another object
    elif a[2] != b[2]:
        pen += 1.2
    if a[3] != b[3]:
        pen += 0.4 if None in (a[3], b[3]) else 0.8
    return say(a), say(b), 5.0 - pen


def _sts_news(rng: random.Random) -> tuple[str, str, float]:
    def draw() -> tuple:
        return (rng.randrange(len(_HEAD_ACTORS)), rng.randrange(len(_HEAD_EVENTS)),
                rng.randrange(3), rng.randrange(len(_COUNTS["staff"])),
                rng.randrange(len(_PLACES)))

    def say(h: tuple) -> str:
        actor, ev, obj, n, place = h
        verbs, part, objs = _HEAD_EVENTS[ev]
        what = f"{_COUNTS['staff'][n]} {objs[obj % len(objs)]}"
        if rng.random() < 0.3:  # headline passive, agent left out: "12 miners rescued in Lima"
            return f"{what} {part} in {_PLACES[place][0]}"
        who = rng.choice(_HEAD_ACTORS[actor])
        return f"{who} {rng.choice(verbs)} {what} in {_PLACES[place][0]}"

    a = draw()
    b = _mutate(rng, a, (len(_HEAD_ACTORS), len(_HEAD_EVENTS), 3, len(_COUNTS["staff"]),
                         len(_PLACES)))
    pen = (0.8 * (a[0] != b[0]) + (2.2 if a[1] != b[1] else 0.8 * (a[2] != b[2]))
           + 0.8 * (a[3] != b[3]) + 1.0 * (a[4] != b[4]))
    return say(a), say(b), 5.0 - pen


def _sts_forum(rng: random.Random) -> tuple[str, str, float]:
    def say(topic: int, stance: int, reason: int) -> str:
        claim = rng.choice(_FORUM_STANCES[stance])
        s = rng.choice(("I think {t} is {c}", "{T} is {c} in my opinion", "Honestly, {t} is {c}",
                        "In my view {t} is {c}")).format(t=_FORUM_TOPICS[topic],
                                                         T=_cap(_FORUM_TOPICS[topic]), c=claim)
        why = _FORUM_REASONS[stance][reason]
        return f"{s} {why}." if why else f"{s}."

    a = (rng.randrange(len(_FORUM_TOPICS)), rng.randrange(2), rng.randrange(3))
    b = _mutate(rng, a, (len(_FORUM_TOPICS), 2, 3))
    if a[0] != b[0]:
        score = 0.4
    else:
        score = (4.8 if a[1] == b[1] else 1.8) - 0.6 * (a[2] != b[2])
    return say(*a), say(*b), score


def _stsb_files(rng: random.Random, n_train: int, n_dev: int, n_test: int) -> dict[str, list]:
    seen: set[Hashable] = set()
    makers = {"captions": _sts_captions, "news": _sts_news, "forum": _sts_forum}
    old_index: Counter[tuple] = Counter()

    def one() -> tuple:
        kind = rng.choices(tuple(makers), weights=(50, 35, 15))[0]
        s1, s2, score = makers[kind](rng)
        if rng.random() < 0.5:
            s1, s2 = s2, s1
        # Raters disagree: noise, then the 0.2 grid of a mean of five integer ratings.
        score = min(5.0, max(0.0, score + rng.gauss(0.0, 0.25)))
        return s1, s2, round(round(score * 5) / 5, 1), rng.choice(_STS_SOURCES[kind])

    splits = {name: _draw_distinct(one, n, seen, key=lambda e: e[:2])
              for name, n in (("train.tsv", n_train), ("dev.tsv", n_dev), ("test.tsv", n_test))}
    out: dict[str, list] = {}
    for name, exs in splits.items():
        rows = []
        for i, (s1, s2, score, (genre, filename, year)) in enumerate(exs):
            old_index[filename, year] += 1
            row = (str(i), genre, filename, year, f"{old_index[filename, year]:04d}", "none",
                   "none", s1, s2, f"{score:.3f}")
            rows.append(row if name != "test.tsv" else row[:-1])
        out[name] = rows
    return out


# --------------------------------------------------------------------------------------------
# NLI: a premise of one or two facts and a hypothesis about one of them. Shared by MNLI
# (3-way, by genre) and RTE (2-way, news).

@dataclass(frozen=True)
class _Genre:
    agents: tuple[str, ...]
    verbs: tuple[str, ...]
    frames: tuple[str, ...]   # wrappers of the premise; "{s}" is the premise's facts
    lower: bool = False       # the telephone transcripts are lower-cased, unpunctuated speech


_GENRES: dict[str, _Genre] = {
    "fiction": _Genre(("Tuppence", "Jon", "Adrin", "Susan", "the old man", "the captain",
                       "the stranger", "Thorn", "Mrs Vandemeyer", "the boy"),
                      ("buy", "sell", "repair", "write", "visit", "damage", "build"),
                      ("{s}", "{s} He did not say a word.", "For a moment nobody spoke. {s}",
                       "{s} It was almost dark.")),
    "government": _Genre(("the agency", "the department", "the commission", "the postal service",
                          "state officials", "the board", "the program office", "LSC grantees"),
                         ("announce", "cancel", "sign", "reject", "hire", "fire", "open", "close",
                          "raise", "cut"),
                         ("{s}", "According to the report, {s}", "{s} The figures are preliminary.",
                          "As required by law, {s}")),
    "slate": _Genre(("the columnist", "the studio", "Clinton", "the magazine", "critics",
                     "the network", "the publisher", "Gingrich"),
                    ("buy", "sell", "sign", "reject", "write", "announce", "cancel", "win", "lose"),
                    ("{s}", "Of course, {s}", "{s} Nobody seems to mind.",
                     "It is worth remembering that {s}")),
    "telephone": _Genre(("my husband", "my sister", "we", "my dad", "our neighbors", "my brother",
                         "the kids", "my wife"),
                        ("buy", "sell", "repair", "visit", "damage"),
                        ("yeah {s}", "uh-huh well {s}", "{s} you know", "i think {s}", "um {s}"),
                        lower=True),
    "travel": _Genre(("the Romans", "the Moors", "visitors", "the monks", "the town",
                      "the Venetians", "local fishermen", "the British"),
                     ("build", "demolish", "visit", "open", "close", "repair", "sell"),
                     ("{s}", "{s} The views from the top are superb.", "Legend has it that {s}",
                      "{s} Allow at least an hour for a visit.")),
    "facetoface": _Genre(("my mother", "my uncle", "the family", "my friend", "we", "my cousin"),
                         ("buy", "visit", "repair", "sell", "build"),
                         ("Well, {s}", "I mean, {s}", "{s} And that was that.", "So, {s}")),
    "letters": _Genre(("your gift", "our volunteers", "the foundation", "the chapter",
                       "our members", "the campaign"),
                      ("open", "hire", "build", "raise", "repair", "announce"),
                      ("Dear Friend, {s}", "{s} Thank you for your support.",
                       "Thanks to donors like you, {s}", "{s} Please give again this year.")),
    "nineeleven": _Genre(("the FAA", "NORAD", "the command center", "the controllers",
                          "the airline", "the task force"),
                         ("announce", "cancel", "sign", "hire", "open", "close", "repair"),
                         ("{s}", "{s} The exact time is not known.",
                          "According to the record, {s}", "Shortly afterward, {s}")),
    "oup": _Genre(("the weavers", "the craftsmen", "scholars", "the guild", "the workshop",
                   "the tribe"),
                  ("build", "write", "sell", "buy", "repair", "demolish"),
                  ("{s}", "In this period, {s}", "{s} Few examples survive.",
                   "It is generally agreed that {s}")),
    "verbatim": _Genre(("the editor", "the dictionary", "the author", "readers", "the columnist",
                        "the publisher"),
                       ("write", "announce", "cancel", "win", "lose", "sign"),
                       ("{s}", "Curiously, {s}", "{s} The usage is still common.",
                        "As one reader noted, {s}")),
}
_NEUTRAL_REASONS = ("because it was cheap", "because demand was high", "after a long debate",
                    "because the old one had failed", "to save money", "under pressure",
                    "without telling anyone", "for the second time")
# Past-tense verb phrases: no agreement with singular or plural agents.
_ATTITUDES = ("later regretted the decision", "defended the decision", "celebrated afterwards",
              "faced criticism for it", "kept it quiet", "had planned it for years",
              "changed their mind the next day")


def _hypothesis(rng: random.Random, t: _Fact, label: str, agents: Sequence[str],
                verbs: Sequence[str]) -> str:
    """A hypothesis that ``label``s the premise fact ``t``."""
    st = replace(_random_style(rng, frames=False), front=None, general=frozenset(),
                 drop=frozenset(s for s in ("place", "time") if rng.random() < 0.5))
    if label == "entailment":
        if t.neg:
            # Under negation only a rewording is entailed: "did not build a hospital in Lyon"
            # entails neither "... a building" nor "did not build a hospital".
            return _say(t, _reworded(rng, replace(st, drop=frozenset()), frames=False))
        ops = ["restate", "thing", "agentless"] + (["place"] if t.place is not None else [])
        if t.agent in ("we", "i"):
            ops.remove("agentless")
        op = rng.choice(ops)
        if op == "restate":  # reworded, and maybe less said
            return _say(t, _reworded(rng, st, frames=False))
        if op == "place":    # "in Lyon" entails "in France"
            return _say(t, replace(st, general=frozenset({"place"}),
                                   drop=st.drop - {"place"}))
        if op == "thing":    # "a hospital" entails "a building"
            return _say(t, replace(st, general=frozenset({"thing"})))
        return _say(t, replace(st, passive=True, drop=st.drop | {"agent"}))
    if label == "contradiction":
        what = rng.choice(_changes(t, nli=True))
        if what in ("place", "time"):  # the changed detail must be said
            st = replace(st, drop=st.drop - {what})
        elif what == "neg" and t.neg:  # "did not build X in Lyon" vs "built X in Lyon"
            st = replace(st, drop=frozenset())
        return _say(_changed(t, rng, what, agents), st)
    # neutral: says something the premise neither states nor rules out
    ops = ["new_fact", "reason", "attitude"] + (["add_place"] if t.place is None else []) \
        + (["add_time"] if t.time is None else [])
    op = rng.choice(ops)
    if op == "add_place":
        return _say(replace(t, place=rng.randrange(len(_PLACES))), replace(st, drop=frozenset()))
    if op == "add_time":
        return _say(replace(t, time=rng.randrange(len(_TIMES))), replace(st, drop=frozenset()))
    if op == "reason":
        return _say(t, replace(st, passive=False))[:-1] + f" {rng.choice(_NEUTRAL_REASONS)}."
    if op == "attitude":
        return f"{_cap(t.agent)} {rng.choice(_ATTITUDES)}."
    # new_fact: the same agent did something else (not the fact's verb or its antonym)
    others = [v for v in verbs if v not in (t.verb, _VERBS[t.verb].antonym)]
    new = _draw_fact(rng, [t.agent], others, p_place=0.3, p_time=0.3, p_neg=0.3)
    return _say(new, replace(st, passive=False))


def _premise(rng: random.Random, genre: _Genre) -> tuple[str, list[_Fact]]:
    """One or two facts in the genre's voice; returns the text and its facts."""
    first = _draw_fact(rng, genre.agents, genre.verbs, p_place=0.6, p_time=0.5, p_neg=0.12)
    facts = [first]
    body = _say(first, _random_style(rng, frames=False), cap=False)
    if rng.random() < 0.45:
        second = _draw_fact(rng, [a for a in genre.agents if a != first.agent], genre.verbs,
                            p_place=0.5, p_time=0.4, p_neg=0.1)
        facts.append(second)
        s2 = _say(second, _random_style(rng, frames=False), cap=False)
        joint = rng.choice(("{a} {b}", "{a_}, and {b_}.", "{a_}, while {b_}."))
        body = joint.format(a=body, b=_cap(s2), a_=body[:-1], b_=s2[:-1])
    frame = rng.choice(genre.frames)
    text = _cap(frame.format(s=_cap(body) if frame.startswith("{s}") else body))
    if genre.lower:  # "yeah my husband bought a new car in Dallas you know"
        text = re.sub(r"[.,]", "", text.lower()).strip()
    return text, facts


# Parse columns: MNLI ships parser output; a right-branching bracketing and a flat part-of-
# speech tree of the same tokens keep the columns' shape (readers only use sentence1/2).
_TOKEN = re.compile(r"n't|'s|\w+(?:[-']\w+)*|[^\w\s]")
_PAST = {f for v in _VERBS.values() for form in v.forms for f in form[1].split()}
_DT = {"the", "a", "an", "some", "every", "this", "our", "my", "your"}
_IN = {"in", "on", "by", "at", "of", "after", "for", "with", "from", "because", "that", "to",
       "while", "under", "without", "about"}


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _binary_parse(text: str) -> str:
    toks = _tokens(text)
    punct = toks.pop() if toks and toks[-1] in ".?!" else None
    if not toks:
        return punct or ""
    tree = toks[-1]
    for tok in reversed(toks[:-1]):
        tree = f"( {tok} {tree} )"
    return f"( {tree} {punct} )" if punct else tree


def _pos(tok: str, first: bool) -> str:
    low = tok.lower()
    if not tok[0].isalnum():
        return tok if tok in ".,?!" else ":"
    if low in _DT:
        return "DT"
    if low in _IN:
        return "IN"
    if low in ("not", "n't", "never"):
        return "RB"
    if low in ("did", "was", "were") or low in _PAST:
        return "VBD"
    if low in ("and", "or", "but"):
        return "CC"
    if tok.isdigit() or low in _NUM_WORDS.values():
        return "CD"
    if tok[0].isupper() and not first:
        return "NNP"
    return "NNS" if low.endswith("s") and not low.endswith("ss") else "NN"


def _parse(text: str) -> str:
    toks = _tokens(text)
    leaves = " ".join(f"({_pos(t, i == 0)} {t})" for i, t in enumerate(toks))
    return f"(ROOT (S {leaves}))"


def _mnli_groups(rng: random.Random, genres: Sequence[str], n: int, seen: set[Hashable]
                 ) -> list[list[tuple]]:
    """Premises with up to three hypotheses each (one per label, as MNLI's writers were asked
    for), ``(genre, premise, hypothesis, label)``; at least ``n`` pairs in all."""
    groups: list[list[tuple]] = []
    total = 0
    for _ in range(50 * n + 1000):
        if total >= n:
            break
        name = rng.choice(genres)
        genre = _GENRES[name]
        premise, facts = _premise(rng, genre)
        if premise in seen:
            continue
        seen.add(premise)
        labels = rng.sample(NLI_LABELS, rng.choice((1, 2, 3, 3)))
        group = []
        for label in labels:
            hyp = _hypothesis(rng, rng.choice(facts), label, genre.agents, genre.verbs)
            if hyp not in seen and hyp[:-1].lower() not in premise.lower():
                seen.add(hyp)
                group.append((name, premise, hyp, label))
        if group:
            groups.append(group)
            total += len(group)
    if total < n:
        raise ValueError(f"could not draw {n} distinct MNLI pairs; ask for fewer")
    return groups


def _take(rng: random.Random, groups: list[list[tuple]], n: int) -> tuple[list, list]:
    """The first ``n`` pairs of whole premise groups (so no premise is in two splits),
    shuffled, and the remaining groups."""
    out, rest = [], list(groups)
    while len(out) < n and rest:
        out.extend(rest.pop(0))
    out = out[:n]
    rng.shuffle(out)
    return out, rest


def _mnli_files(rng: random.Random, n_train: int, n_dev: int, n_test: int) -> dict[str, list]:
    seen: set[Hashable] = set()
    noise = LABEL_NOISE["mnli"]
    # Cutting a split may leave up to 2 pairs of its last premise unused: 2 spare per split.
    matched = _mnli_groups(rng, MNLI_MATCHED_GENRES, n_train + n_dev + n_test + 6, seen)
    mismatched = _mnli_groups(rng, MNLI_MISMATCHED_GENRES, n_dev + n_test + 4, seen)
    # One promptID per premise, shared by its hypotheses.
    groups = matched + mismatched
    pid_of = dict(zip((g[0][1] for g in groups), rng.sample(range(1, 150_000), len(groups))))

    def cols(i: int, ex: tuple) -> tuple[str, ...]:
        genre, p, h, _ = ex
        pid = pid_of[p]
        return (str(i), str(pid), "", genre, _binary_parse(p), _binary_parse(h), _parse(p),
                _parse(h), p, h)

    def train_row(i: int, ex: tuple) -> tuple[str, ...]:
        gold = _noisy(rng, ex[3], NLI_LABELS, noise)
        c = cols(i, ex)
        # pairID is the prompt's id and the label's initial letter: "31193n".
        return (*c[:2], f"{c[1]}{gold[0]}", *c[3:], gold, gold)

    def dev_row(i: int, ex: tuple) -> tuple[str, ...]:
        # Five annotations: the writer's label, then four validators, each right most of the
        # time; the gold label is the majority (the real dev files keep only pairs with one).
        writer = _noisy(rng, ex[3], NLI_LABELS, noise)
        while True:
            votes = [writer] + [_noisy(rng, ex[3], NLI_LABELS, 0.15) for _ in range(4)]
            gold, k = Counter(votes).most_common(1)[0]
            if k >= 3:
                break
        c = cols(i, ex)
        return (*c[:2], f"{c[1]}{gold[0]}", *c[3:], *votes, gold)

    def test_row(i: int, ex: tuple) -> tuple[str, ...]:
        c = cols(i, ex)
        return (*c[:2], c[1], *c[3:])  # no label letter in the test files' pairIDs

    train, rest = _take(rng, matched, n_train)
    dev_m, rest = _take(rng, rest, n_dev)
    test_m, _ = _take(rng, rest, n_test)
    dev_mm, rest = _take(rng, mismatched, n_dev)
    test_mm, _ = _take(rng, rest, n_test)
    return {"train.tsv": [train_row(i, e) for i, e in enumerate(train)],
            "dev_matched.tsv": [dev_row(i, e) for i, e in enumerate(dev_m)],
            "dev_mismatched.tsv": [dev_row(i, e) for i, e in enumerate(dev_mm)],
            "test_matched.tsv": [test_row(i, e) for i, e in enumerate(test_m)],
            "test_mismatched.tsv": [test_row(i, e) for i, e in enumerate(test_mm)]}


# --------------------------------------------------------------------------------------------
# RTE: news premises, often with an appositive ("Maria Lopez, the mayor of Lyon, ..."), and a
# short hypothesis; entailment / not_entailment, about half each.

_ROLES = ("the mayor of {city}", "a lawyer from {city}", "the chief executive of {org}",
          "the head of {org}", "a spokesperson for {org}", "the founder of {org}")


def _role(rng: random.Random) -> str:
    return rng.choice(_ROLES).format(city=rng.choice(_PLACES)[0], org=rng.choice(_COMPANIES))


def _rte_pair(rng: random.Random, entails: bool) -> tuple[str, str]:
    agents = _PEOPLE + _ORGS
    f = _draw_fact(rng, agents, p_place=0.7, p_time=0.6, p_neg=0.08)
    st = _random_style(rng)
    role = None
    if f.agent in _PEOPLE and rng.random() < 0.5:
        role = _role(rng)  # "Maria Lopez, the mayor of Lyon, built ..."
        said = _say(f, replace(st, passive=False, front=None, frame=None))
        premise = f"{f.agent}, {role},{said[len(f.agent):]}"
    else:
        premise = _say(f, st)
    if rng.random() < 0.4:  # a second, unrelated sentence, as in RTE's longer premises
        other = _draw_fact(rng, [a for a in agents if a != f.agent], p_neg=0.05)
        premise += " " + _say(other, _random_style(rng))
    if role is not None and rng.random() < 0.35:  # the hypothesis is about the appositive
        if entails:
            return premise, f"{f.agent} is {role}."
        if rng.random() < 0.5:
            other = rng.choice([p for p in _PEOPLE if p != f.agent])
            return premise, f"{other} is {role}."
        wrong = _role(rng)
        while wrong == role:
            wrong = _role(rng)
        return premise, f"{f.agent} is {wrong}."
    label = "entailment" if entails else rng.choice(("contradiction", "neutral"))
    return premise, _hypothesis(rng, f, label, agents, tuple(_VERBS))


def _rte_files(rng: random.Random, n_train: int, n_dev: int, n_test: int) -> dict[str, list]:
    seen: set[Hashable] = set()
    labels = ("entailment", "not_entailment")
    noise = LABEL_NOISE["rte"]

    def one() -> tuple:
        entails = rng.random() < 0.5
        p, h = _rte_pair(rng, entails)
        return p, h, _noisy(rng, labels[not entails], labels, noise)

    return _index_files(_draw_distinct(one, n_train + n_dev + n_test, seen, key=lambda e: e[:2]),
                        n_train, n_dev)


def _index_files(exs: list[tuple], n_train: int, n_dev: int) -> dict[str, list]:
    """``index<TAB>text1<TAB>text2<TAB>label`` files (QNLI, RTE); test without the label."""
    cut = {"train.tsv": exs[:n_train], "dev.tsv": exs[n_train:n_train + n_dev],
           "test.tsv": exs[n_train + n_dev:]}
    return {name: [(str(i), *(ex if name != "test.tsv" else ex[:-1])) for i, ex in enumerate(part)]
            for name, part in cut.items()}


# --------------------------------------------------------------------------------------------
# QNLI: a question and a sentence from the same (Wikipedia-like) paragraph; entailment when
# the sentence contains the answer.

_QNLI_EXTRAS = (", the first such move in the region", ", a decision that surprised many",
                ", according to local reports", ", after years of planning",
                ", despite strong opposition", ", which drew wide attention")


def _qnli_question(rng: random.Random, f: _Fact, qtype: str) -> str:
    base = _VERBS[f.verb].forms[0][0]
    did = "did"
    np, _ = _object_np(f, _Style(definite=True, drop=frozenset({"count"})))
    if qtype == "where":
        return f"Where {did} {f.agent} {base} {np}?"
    if qtype == "when":
        kind = _TIMES[f.time][1]
        lead = {"year": "In what year", "month": "In which month", "day": "On what day"}.get(
            kind, "When")
        return f"{lead} {did} {f.agent} {base} {np}?"
    if qtype == "count":
        noun = _THINGS[f.thing].nouns[0]
        if _THINGS[f.thing].kind == "staff":
            return f"How many {noun} {did} {f.agent} {base}?"
        return f"By what percentage {did} {f.agent} {base} {noun}?"
    if qtype == "who":
        return f"Who {_VERBS[f.verb].forms[0][1]} {np}?"
    where = f" {_place_phrase(f, _Style())}" if f.place is not None else f" {_TIMES[f.time][0]}"
    return f"What {did} {f.agent} {base}{where}?"


def _qnli_pair(rng: random.Random, entails: bool) -> tuple[str, str]:
    agent = rng.choice(_PEOPLE + _ORGS)
    f = _draw_fact(rng, [agent], p_place=0.8, p_time=0.7)
    qtypes = ["who"] + (["where"] if f.place is not None else []) \
        + (["when"] if f.time is not None else []) + (["count"] if f.count is not None else []) \
        + (["what"] if f.place is not None or f.time is not None else [])
    qtype = rng.choice(qtypes)
    question = _qnli_question(rng, f, qtype)
    st = replace(_random_style(rng), frame=None, front=None)
    if entails:
        sentence = _say(f, st)
    else:
        slot = {"where": "place", "when": "time", "count": "count", "who": "agent"}.get(qtype)
        if slot and rng.random() < 0.5:  # the same event, without the asked detail
            st = replace(st, drop=st.drop | {slot}, passive=st.passive or slot == "agent")
            sentence = _say(f, st)
        else:  # another sentence of the paragraph: the same agent, another event
            others = [v for v in _VERBS if v not in (f.verb, _VERBS[f.verb].antonym)]
            g = _draw_fact(rng, [agent], others, p_place=0.8, p_time=0.7)
            sentence = _say(g, st)
    if rng.random() < 0.35:
        sentence = sentence[:-1] + rng.choice(_QNLI_EXTRAS) + "."
    return question, sentence


def _qnli_files(rng: random.Random, n_train: int, n_dev: int, n_test: int) -> dict[str, list]:
    seen: set[Hashable] = set()
    labels = ("entailment", "not_entailment")
    noise = LABEL_NOISE["qnli"]

    def one() -> tuple:
        entails = rng.random() < 0.5
        q, s = _qnli_pair(rng, entails)
        return q, s, _noisy(rng, labels[not entails], labels, noise)

    return _index_files(_draw_distinct(one, n_train + n_dev + n_test, seen, key=lambda e: e[:2]),
                        n_train, n_dev)


# --------------------------------------------------------------------------------------------
# Writing GLUE

_FILES: dict[str, Callable[[random.Random, int, int, int], dict[str, list]]] = {
    "cola": _cola_files, "sst2": _sst2_files, "mrpc": _mrpc_files, "qqp": _qqp_files,
    "stsb": _stsb_files, "mnli": _mnli_files, "qnli": _qnli_files, "rte": _rte_files,
}
_FORBIDDEN = re.compile(r'[\t\n\r"]')


def _write_tsv(path: Path, header: Sequence[str] | None, rows: Sequence[Sequence[str]]) -> None:
    # The real files are read with csv.QUOTE_NONE: a tab, newline or quote inside a field
    # would shift or merge columns, so none is ever written.
    width = len(header) if header else COLA_COLUMNS
    with open(path, "w", encoding="utf-8", newline="") as fh:
        for row in ([header] if header else []) + list(rows):
            bad = [f for f in row if _FORBIDDEN.search(f)]
            assert len(row) == width and not bad, (path.name, row)
            fh.write("\t".join(row) + "\n")


def _check_task(task: str) -> None:
    if task not in GLUE_TASKS:
        from trainables.errors import did_you_mean

        raise ValueError(f"unknown GLUE task {task!r}{did_you_mean(task, GLUE_TASKS)}; "
                         f"accepted: {', '.join(GLUE_TASKS)}")


def write_glue_task(task: str, out_dir: str | Path, *, n_train: int | None = None,
                    n_dev: int | None = None, n_test: int | None = None, seed: int = 0) -> Path:
    """Write one synthetic GLUE task into ``out_dir`` (the task's own folder, as
    ``glue_data/<TASK>/``) and return it.

    Sizes left ``None`` take :data:`DEFAULT_SIZES`; for MNLI ``n_dev`` and ``n_test`` are per
    file (matched and mismatched each). No text is in two splits; MNLI keeps a premise's
    hypotheses in one split. The task's rows depend only on ``(task, seed)``.
    """
    _check_task(task)
    defaults = DEFAULT_SIZES[task]
    sizes = [d if n is None else n for n, d in zip((n_train, n_dev, n_test), defaults)]
    for name, n in zip(("n_train", "n_dev", "n_test"), sizes):
        if n < 0:
            raise ValueError(f"{name}={n}; must be >= 0")
    # A string seed is hashed with SHA-512 by random.seed: stable across runs and platforms,
    # and each task draws its own stream, so adding a task changes no other task's rows.
    rng = random.Random(f"glue_synth:{task}:{seed}")
    files = _FILES[task](rng, *sizes)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for filename, header in HEADERS[task].items():
        _write_tsv(out / filename, header, files[filename])
    return out


def write_glue(out_root: str | Path, tasks: Sequence[str] = GLUE_TASKS, *,
               sizes: Mapping[str, Mapping[str, int]] | None = None, seed: int = 0) -> Path:
    """Write ``out_root/<DIR>/`` (:data:`GLUE_DIRS`) for each of ``tasks``; return ``out_root``.

    ``sizes`` overrides :data:`DEFAULT_SIZES` per task, e.g. ``{"sst2": {"n_train": 200}}``.
    """
    for task in tasks:
        _check_task(task)
    sizes = dict(sizes or {})
    for task, override in sizes.items():
        _check_task(task)
        unknown = set(override) - {"n_train", "n_dev", "n_test"}
        if unknown:
            raise ValueError(f"sizes[{task!r}] has unknown key(s) {sorted(unknown)}; "
                             f"accepted: n_train, n_dev, n_test")
    root = Path(out_root)
    for task in tasks:
        write_glue_task(task, root / GLUE_DIRS[task], seed=seed, **sizes.get(task, {}))
    return root


# --------------------------------------------------------------------------------------------
# AG News: "Class Index","Title","Description", no header, every field quoted; 1 World,
# 2 Sports, 3 Business, 4 Sci/Tech. Titles are headline-cased and often end in "(Reuters)";
# descriptions start with a source ("LONDON (Reuters) - ") and, as in the real release,
# sometimes carry the HTML-damaged apostrophe " #39;s".

_AG_SMALL = {"a", "an", "the", "of", "in", "on", "at", "to", "for", "and", "by", "with", "from",
             "as", "after", "over", "into"}
_AG_SOURCES = ("Reuters", "AP", "AFP")
_AG_CITIES = ("LONDON", "NEW YORK", "WASHINGTON", "PARIS", "TOKYO", "BERLIN", "SYDNEY",
              "TORONTO", "SAN FRANCISCO", "MADRID")
_AG_DAYS = ("on Monday", "on Tuesday", "on Wednesday", "on Thursday", "on Friday", "this week",
            "on Sunday", "late on Tuesday")
_AG_SAID = ("officials said", "a spokesman said", "according to a report",
            "sources said", "analysts said", "the statement said")
_AG_GENERIC = ("The move comes after weeks of speculation.",
               "Officials are expected to release more details next week.",
               "The news was first reported by local media.",
               "It was the first such announcement this year.",
               "Critics said the plan does not go far enough.",
               "The decision could affect thousands of people.")
_AG_WORLD = {
    "subj": ("Rebels", "The prime minister", "Troops", "Diplomats", "Protesters", "UN envoys",
             "Election officials", "The president", "Militants", "Aid workers", "Peacekeepers",
             "Opposition leaders", "Foreign ministers", "Police"),
    "vp": ("hold talks in", "call for elections in", "agree to ceasefire in", "pull out of",
           "condemn violence in", "meet leaders in", "send aid to", "seal border with",
           "free hostages in", "warn of unrest in", "seek peace deal in", "arrest suspects in"),
    "where": ("Sudan", "Ukraine", "Haiti", "Nepal", "Lebanon", "Indonesia", "Iraq", "Afghanistan",
              "Chechnya", "Darfur", "Gaza", "Kashmir", "Venezuela", "Congo", "Georgia"),
    "detail": ("The ceasefire has been broken several times since it was signed.",
               "Thousands of refugees have fled across the border.",
               "Parliament is due to vote on the new constitution next month.",
               "The embassy urged its citizens to leave the country.",
               "Sanctions could be imposed if the talks fail.",
               "The opposition has rejected the results of the election."),
}
_AG_SPORTS = {
    # Teams by sport, with how a score reads; nicknames take "the" in running text.
    "teams": ((("Red Sox", "Yankees", "Astros", "Cardinals", "Cubs", "Mets"), "baseball"),
              (("Arsenal", "Chelsea", "Manchester United", "Real Madrid", "Liverpool",
                "Celtic"), "soccer"),
              (("Lakers", "Pistons", "Knicks", "Spurs", "Bulls"), "basketball"),
              (("Patriots", "Eagles", "Steelers", "Colts", "Packers"), "football")),
    "vp": ("beat", "edge", "rout", "hold off", "rally past", "stun", "top", "down"),
    "detail": ("extending their winning streak to {n} games", "to clinch a playoff spot",
               "in the season opener", "to reach the final", "behind a fast start",
               "in front of a record crowd", "to stay top of the league",
               "despite an injury to their star striker"),
    "people": ("Coach Signs Contract Extension", "Striker Ruled Out With Knee Injury",
               "Quarterback Leads Late Comeback", "Champion Withdraws From Tournament",
               "Olympic Sprinter Wins Gold Medal", "Captain Retires After Final Season"),
}
_AG_BUSINESS = {
    "subj": ("Norland Bank", "Calder Motors", "Brightwater Foods", "Summit Energy",
             "Harbor Airlines", "Vireo Retail", "Oakridge Media", "Tessel Pharma", "Wal-Mart",
             "General Motors"),
    "vp": ("posts higher quarterly profit", "cuts {n}00 jobs", "raises earnings forecast",
           "agrees to buy rival", "files for bankruptcy protection", "beats analyst estimates",
           "sees sales slip", "plans stock offering", "settles lawsuit with investors",
           "shares fall after earnings warning"),
    "markets": ("Oil prices", "Stocks", "The dollar", "Treasuries", "Crude futures",
                "Gold prices"),
    "move": ("rise", "fall", "climb", "slip", "edge higher", "tumble"),
    "why": ("jobs data", "supply worries", "rate fears", "strong earnings", "unrest in the Gulf",
            "weak retail sales"),
    "detail": ("Shares of the company rose {n} percent in early trading.",
               "Analysts had expected a smaller profit for the quarter.",
               "Investors worry that higher interest rates will slow growth.",
               "The deal is expected to close by the end of the year.",
               "Revenue rose {n} percent from a year earlier."),
}
_AG_SCITECH = {
    "subj": ("Microsoft", "Google", "IBM", "Apple", "Intel", "Yahoo", "Sony", "Nokia",
             "Sun Microsystems", "Oracle"),
    "vp": ("releases new {t}", "unveils {t}", "patches {t} flaw", "launches {t} service",
           "tests new {t}", "delays {t}", "updates {t}", "sues over {t} patent"),
    "tech": ("browser", "search engine", "chip", "operating system", "music service", "phone",
             "software", "wireless network", "server", "spam filter", "media player"),
    "science": ("Scientists", "Researchers", "Astronomers", "Space scientists"),
    "find": ("discover new planet", "map ancient fossil site", "spot comet near {p}",
             "find water on {p}", "study ice on {p}", "launch probe to {p}"),
    "planets": ("Mars", "Saturn", "Titan", "Jupiter", "the Moon", "Venus"),
    "detail": ("The company said users should install the update as soon as possible.",
               "The software will be available for download next month.",
               "Security experts warned that the virus is spreading quickly by e-mail.",
               "The chip is expected to double the speed of desktop computers.",
               "Analysts said the service will compete with rivals on price."),
    "science_detail": ("The findings were published in the journal Nature.",
                       "The spacecraft is expected to reach its target next year.",
                       "The team used a telescope in Chile to make the observations.",
                       "Researchers say the discovery could change how planets form."),
}


def _headline(text: str) -> str:
    words = text.split()
    return " ".join(w if i and w.lower() in _AG_SMALL else _cap(w) for i, w in enumerate(words))


def _ag_item(rng: random.Random, cls: int) -> tuple[str, str]:
    """A (title, description) of class ``cls`` (1-4)."""
    n = rng.randint(2, 9)
    day, said = rng.choice(_AG_DAYS), rng.choice(_AG_SAID)
    if cls == 1:
        v = _AG_WORLD
        subj, vp, where = rng.choice(v["subj"]), rng.choice(v["vp"]), rng.choice(v["where"])
        detail = rng.choice(v["detail"])
        if rng.random() < 0.3:  # diplomacy about money reads like Business
            vp = f"discuss {rng.choice(('trade', 'oil supplies', 'debt relief', 'aid'))} in"
            detail = rng.choice((detail, *_AG_BUSINESS["detail"]))
        title = f"{subj} {vp} {where}"
        lead = f"{subj} {vp} {where} {day}, {said}."
    elif cls == 2:
        v = _AG_SPORTS
        r = rng.random()
        if r < 0.15:
            title = rng.choice(v["people"])
            lead = f"{title.capitalize()} {day}, the club said."
        elif r < 0.3:  # the money side of sport, still Sports in AG News
            team = rng.choice(rng.choice(v["teams"])[0])
            title = f"{team} {rng.choice(('agree TV deal', 'post record revenue', 'sell stake'))}"
            lead = f"{title} worth {n}00 million dollars {day}, {said}."
        else:
            teams, sport = rng.choice(v["teams"])
            a, b = rng.sample(teams, 2)
            low, high = {"baseball": (0, 12), "soccer": (0, 4), "basketball": (78, 121),
                         "football": (3, 42)}[sport]
            won = rng.randint(low + 1, high)
            score = f"{won}-{rng.randint(low, won - 1)}"
            vp = rng.choice(v["vp"])
            title = f"{a} {vp} {b}"
            the_a, the_b = (("the " + t if sport != "soccer" else t) for t in (a, b))
            lead = f"{_cap(the_a)} {vp} {the_b} {score} {day} " \
                   f"{rng.choice(v['detail']).format(n=n)}."
        detail = rng.choice(("The coach praised his team after the game.",
                             "It was their first win of the season on the road.",
                             "The victory moves them within {n} points of first place.",
                             "The injured captain is expected to miss the rest of the season."))
    elif cls == 3:
        v = _AG_BUSINESS
        if rng.random() < 0.3:  # markets, often moved by world news
            subj = rng.choice(v["markets"])
            why = rng.choice(v["why"]) if rng.random() < 0.6 else \
                f"unrest in {rng.choice(_AG_WORLD['where'])}"
            title = f"{subj} {rng.choice(v['move'])} on {why}"
            lead = f"{title} {day}, {said}."
        else:
            # The real set's Business/Sci-Tech overlap: tech companies' earnings are Business.
            # So are football clubs' results.
            r = rng.random()
            pool = v["subj"] + (_AG_SCITECH["subj"] if r < 0.3 else
                                _AG_SPORTS["teams"][1][0] if r < 0.45 else ())
            subj = rng.choice(pool)
            title = f"{subj} {rng.choice(v['vp']).format(n=n)}"
            lead = f"{title} {day}, {said}."
        detail = rng.choice(v["detail"])
    else:
        v = _AG_SCITECH
        if rng.random() < 0.35:
            subj = rng.choice(v["science"])
            title = f"{subj} {rng.choice(v['find']).format(p=rng.choice(v['planets']))}"
            detail = rng.choice(v["science_detail"])
        else:
            subj = rng.choice(v["subj"])
            title = f"{subj} {rng.choice(v['vp']).format(t=rng.choice(v['tech']))}"
            detail = rng.choice(v["detail"])
            if rng.random() < 0.35:  # a product story told in market terms
                detail = rng.choice(_AG_BUSINESS["detail"])
        lead = f"{title} {day}, {said}."
    detail = detail.format(n=n)
    if rng.random() < 0.15:  # the release's mangled apostrophes: "the company #39;s"
        detail = f"The company #39;s statement gave no details. {detail}"
    src = rng.choice(_AG_SOURCES)
    title = _headline(title) + (f" ({src})" if rng.random() < 0.4 else "")
    prefix = rng.choice((f"{src} - ", f"{rng.choice(_AG_CITIES)} ({src}) - ", ""))
    body = [_cap(lead)] + ([detail] if rng.random() < 0.6 else []) + \
        ([rng.choice(_AG_GENERIC)] if rng.random() < 0.45 else [])
    return title, prefix + " ".join(body)


def write_ag_news(out_dir: str | Path, *, n_train: int = AG_NEWS_SIZES["n_train"],
                  n_test: int = AG_NEWS_SIZES["n_test"],
                  n_unlabelled: int = AG_NEWS_SIZES["n_unlabelled"], seed: int = 0) -> Path:
    """Write a synthetic AG News into ``out_dir`` as the ``ag_news_csv`` release, and return it.

    ``train.csv``, ``test.csv``: no header, every field quoted, class index 1-4, the classes
    balanced as in the real splits; ``classes.txt`` as released; and ``unlabelled.csv``, a
    Kaggle-style competition file (header ``id,title,description``, ids 0..n-1) for prediction
    tests, from the same distribution but no row of the other files.
    """
    for name, n in (("n_train", n_train), ("n_test", n_test), ("n_unlabelled", n_unlabelled)):
        if n < 0:
            raise ValueError(f"{name}={n}; must be >= 0")
    rng = random.Random(f"glue_synth:ag_news:{seed}")
    seen: set[Hashable] = set()
    noise = LABEL_NOISE["ag_news"]

    def split(n: int) -> list[tuple]:
        classes = [1 + i % 4 for i in range(n)]  # balanced, then shuffled
        rng.shuffle(classes)
        rows = []
        for cls in classes:
            [(title, desc)] = _draw_distinct(lambda c=cls: _ag_item(rng, c), 1, seen,
                                             key=lambda e: e)
            rows.append((_noisy(rng, cls, (1, 2, 3, 4), noise), title, desc))
        return rows

    train, test, unlabelled = split(n_train), split(n_test), split(n_unlabelled)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.csv", train), ("test.csv", test)):
        with open(out / name, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, quoting=csv.QUOTE_ALL, lineterminator="\n")
            writer.writerows([(str(c), t, d) for c, t, d in rows])
    (out / "classes.txt").write_text("".join(c + "\n" for c in AG_NEWS_CLASSES), encoding="utf-8")
    with open(out / "unlabelled.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(("id", "title", "description"))
        writer.writerows([(str(i), t, d) for i, (_, t, d) in enumerate(unlabelled)])
    return out


# --------------------------------------------------------------------------------------------
# Synonyms for augmentation: one-word synonyms of the generators' content words. Sentiment
# words only map within their polarity cluster, so replacement never flips an SST-2 label.

_EXTRA_SYNONYMS: tuple[tuple[str, ...], ...] = (
    # SST-2 (polarity-neutral words, and the polarity-bearing verbs and nouns by polarity)
    ("film", "movie", "picture"), ("story", "tale"), ("script", "screenplay"),
    ("plot", "storyline"),
    ("ending", "finale"), ("humor", "wit"), ("acting", "performances"), ("cast", "ensemble"),
    ("director", "filmmaker"), ("characters", "roles"), ("visuals", "imagery"),
    ("premise", "concept"), ("pacing", "rhythm"), ("soundtrack", "music"), ("town", "village"),
    ("brothers", "siblings"), ("really", "truly", "genuinely"), ("oddly", "strangely"),
    ("surprisingly", "unexpectedly"), ("remarkably", "notably"), ("often", "frequently"),
    ("frankly", "honestly"), ("ultimately", "finally"), ("works", "succeeds", "delivers"),
    ("shines", "soars"), ("fails", "misfires", "falters", "stumbles"), ("drags", "plods"),
    ("triumph", "success", "winner"), ("gem", "treasure"), ("treat", "pleasure"),
    ("joy", "delight"), ("mess", "shambles"), ("disaster", "fiasco", "failure"),
    ("chore", "slog"), ("loved", "adored"), ("enjoyed", "relished"), ("admired", "respected"),
    ("liked", "appreciated"), ("hated", "loathed", "despised"), ("disliked", "resented"),
    # the fact world (MRPC, MNLI, RTE, QNLI) beyond its verbs' and nouns' own synonyms
    ("large", "big"), ("small", "little"), ("local", "regional"), ("modern", "contemporary"),
    ("officials", "authorities"), ("spokesperson", "spokesman"), ("statement", "announcement"),
    ("media", "press"), ("confirmed", "verified"), ("husband", "spouse"), ("wife", "spouse"),
    ("dad", "father"), ("mother", "mom"), ("kids", "children"), ("friend", "pal"),
    ("visitors", "tourists"), ("fishermen", "anglers"), ("critics", "reviewers"),
    ("columnist", "writer"), ("magazine", "publication"), ("agency", "bureau"),
    ("commission", "committee"), ("decision", "choice"), ("cheap", "inexpensive"),
    ("debate", "discussion"), ("afterwards", "later"), ("founder", "creator"),
    ("lawyer", "attorney"), ("head", "chief"),
    # STS-B
    ("man", "guy"), ("woman", "lady"), ("boy", "kid"), ("chef", "cook"), ("dog", "puppy"),
    ("cat", "kitten"), ("slicing", "cutting"), ("throwing", "tossing"), ("washing", "cleaning"),
    ("climbing", "scaling"), ("bike", "bicycle"), ("motorcycle", "motorbike"),
    ("beach", "shore"), ("field", "meadow"), ("street", "road"), ("police", "officers"),
    ("rescuers", "crews"), ("protesters", "demonstrators"), ("soldiers", "troops"),
    ("arrest", "detain"), ("rescue", "save"), ("free", "release"), ("find", "locate"),
    ("residents", "locals"), ("hostages", "captives"), ("prisoners", "inmates"),
    ("opinion", "view"), ("think", "believe"), ("mistake", "error"), ("helpful", "useful"),
    ("harmful", "damaging"),
    # QQP
    ("quickly", "fast"), ("difficult", "hard"), ("best", "top"), ("ways", "methods"),
    ("begin", "start"), ("career", "profession"), ("jobs", "positions"), ("websites", "sites"),
    ("courses", "classes"), ("skills", "abilities"), ("beginner", "novice"),
    ("student", "learner"),
    # AG News
    ("rebels", "insurgents"), ("militants", "fighters"), ("envoys", "diplomats"),
    ("talks", "negotiations"), ("ceasefire", "truce"), ("unrest", "turmoil"),
    ("violence", "bloodshed"), ("aid", "assistance"), ("border", "frontier"),
    ("sanctions", "penalties"), ("coach", "manager"), ("captain", "skipper"), ("game", "match"),
    ("victory", "win"), ("stun", "shock"), ("rout", "crush"), ("beat", "top", "defeat"),
    ("injured", "hurt"), ("profit", "earnings"), ("shares", "stocks"), ("forecast", "outlook"),
    ("rival", "competitor"), ("bankruptcy", "insolvency"), ("lawsuit", "suit"),
    ("investors", "shareholders"), ("rise", "climb", "gain"), ("fall", "slip", "drop"),
    ("tumble", "plunge"), ("releases", "launches", "unveils"), ("flaw", "bug"),
    ("phone", "handset"), ("users", "customers"), ("chip", "processor"),
    ("scientists", "researchers"), ("probe", "spacecraft"), ("company", "firm"),
    ("book", "novel"), ("letter", "note"), ("quiet", "silent"), ("strange", "odd"),
    ("famous", "renowned"),
)


def synonym_table(seed: int = 0) -> dict[str, list[str]]:
    """``{word: [synonyms]}`` over the generators' vocabulary, one-word entries only.

    Built from the SST-2 sentiment clusters, the fact world's verb forms and nouns (a synonym
    of "bought" is another past form, "purchased"), and a few other groups. ``seed`` orders
    each word's list (deterministically), so augmentation that takes the first synonym varies
    with it; keys are sorted.
    """
    groups: list[tuple[str, ...]] = [*SST_POSITIVE, *SST_NEGATIVE, *_EXTRA_SYNONYMS]
    for verb in _VERBS.values():
        for i in range(3):  # bases together, pasts together, participles together
            groups.append(tuple(dict.fromkeys(form[i] for form in verb.forms)))
    groups += [t.nouns for t in _THINGS]
    table: dict[str, list[str]] = {}
    for group in groups:
        words = [w for w in group if " " not in w]
        for w in words:
            table.setdefault(w, [])
            table[w] += [o for o in words if o != w and o not in table[w]]
    rng = random.Random(f"glue_synth:synonyms:{seed}")
    out = {}
    for word in sorted(table):
        if table[word]:
            syns = sorted(table[word])
            rng.shuffle(syns)
            out[word] = syns
    return out


def write_synonyms(path: str | Path, seed: int = 0) -> Path:
    """Write :func:`synonym_table` as JSON (``{word: [synonyms]}``) to ``path``; return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(synonym_table(seed), indent=1, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# CLI

def main(argv: Sequence[str] | None = None) -> None:
    all_tasks = (*GLUE_TASKS, "ag_news")
    parser = argparse.ArgumentParser(
        prog="python -m trainables.offline.glue_synth",
        description="Write synthetic GLUE tasks (as glue_data/) and AG News (as ag_news_csv/) "
                    "in the official formats, and a synonym list (synonyms.json).")
    parser.add_argument("out_root", type=Path)
    parser.add_argument("--tasks", nargs="+", choices=all_tasks, default=list(all_tasks),
                        metavar="TASK", help=f"any of {', '.join(all_tasks)} (default: all)")
    parser.add_argument("--n-train", type=int, help="train rows of every task (default: per task)")
    parser.add_argument("--n-dev", type=int, help="dev rows (GLUE; per file for MNLI)")
    parser.add_argument("--n-test", type=int, help="test rows (per file for MNLI)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    given = {k: v for k, v in (("n_train", args.n_train), ("n_dev", args.n_dev),
                               ("n_test", args.n_test)) if v is not None}
    written: list[Path] = []
    for task in args.tasks:
        if task == "ag_news":
            sizes = {k: v for k, v in given.items() if k != "n_dev"}
            out = write_ag_news(args.out_root / AG_NEWS_DIR, seed=args.seed, **sizes)
            written += [out / "train.csv", out / "test.csv", out / "unlabelled.csv"]
        else:
            out = write_glue_task(task, args.out_root / GLUE_DIRS[task], seed=args.seed, **given)
            written += [out / name for name in HEADERS[task]]
    written.append(write_synonyms(args.out_root / "synonyms.json", seed=args.seed))
    for path in written:
        if path.suffix == ".json":
            print(f"{path}: {len(json.loads(path.read_text(encoding='utf-8')))} words")
            continue
        lines = path.read_text(encoding="utf-8").count("\n")
        header = path.suffix == ".tsv" and HEADERS[_task_of(path)].get(path.name) is not None
        header = header or path.name == "unlabelled.csv"
        print(f"{path}: {lines - header} rows")


def _task_of(path: Path) -> str:
    return {d: t for t, d in GLUE_DIRS.items()}[path.parent.name]


if __name__ == "__main__":
    main()
