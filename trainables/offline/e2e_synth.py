"""A synthetic E2E NLG dataset in the official release's format, for tests and ``--preset smoke``.

The real E2E NLG Challenge data (Novikova et al. 2017, github.com/tuetschek/e2e-dataset) pairs
a meaning representation (MR) such as::

    name[The Vaults], eatType[pub], priceRange[more than £30], customer rating[5 out of 5], near[Café Adriatic]

with several crowd-sourced references ("The Vaults pub near Café Adriatic has a 5 star rating...").
No machine here reaches a dataset hub, so this module writes look-alike files from the same 8
slots and value vocabularies, realised by a small sentence planner: every reference mentions
every slot value, and references of one MR differ in sentence plan, clause order and wording,
which is what makes multi-reference BLEU/NIST/METEOR behave as on the real data.

The files match the official release: ``trainset.csv``, ``devset.csv``, ``testset_w_refs.csv``,
header ``mr,ref``, one row per (MR, reference) with an MR's references on consecutive rows, so
the same loader reads real and synthetic data. Everything is a pure function of ``seed``.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
from collections.abc import Sequence
from pathlib import Path

# Bump when the generated text changes in any way: smoke-asset caches are keyed on it
# (trainables.offline.tiny_lm.SMOKE_VERSION), so a stale cache is never reused.
GENERATOR_VERSION = "1"

# The 8 slots in the order the official MRs list them.
SLOTS: tuple[str, ...] = ("name", "eatType", "food", "priceRange", "customer rating", "area",
                          "familyFriendly", "near")

# Venue names of the kind E2E uses (Cambridge restaurants, pubs and coffee shops).
NAMES: tuple[str, ...] = (
    "The Eagle", "Blue Spice", "Zizzi", "The Vaults", "Alimentum", "Aromi", "Bibimbap House",
    "Browns Cambridge", "Clowns", "Cocum", "Cotto", "Fitzbillies", "Giraffe", "Green Man",
    "Loch Fyne", "Midsummer House", "Strada", "Taste of Cambridge", "The Cambridge Blue",
    "The Cricketers", "The Dumpling Tree", "The Golden Curry", "The Golden Palace", "The Mill",
    "The Olive Grove", "The Phoenix", "The Plough", "The Punter", "The Rice Boat",
    "The Twenty Two", "The Waterman", "The Wrestlers", "Wildwood", "The Wildflower",
)
# Landmarks for ``near``; as in E2E a few venues also serve as landmarks.
NEAR: tuple[str, ...] = (
    "Café Adriatic", "Café Brazil", "Café Rouge", "Café Sicilia", "Crowne Plaza Hotel",
    "Express by Holiday Inn", "Rainbow Vegetarian Café", "Raja Indian Cuisine", "Ranch",
    "The Bakers", "The Portland Arms", "The Sorrento", "Yippee Noodle Bar", "Burger King",
    "All Bar One", "Avalon", "Clare Hall", "The Six Bells", "The Rice Boat", "The Eagle",
    "Blue Spice",
)

VALUES: dict[str, tuple[str, ...]] = {
    "name": NAMES,
    "eatType": ("coffee shop", "pub", "restaurant"),
    "food": ("English", "French", "Italian", "Chinese", "Indian", "Japanese", "Fast food"),
    "priceRange": ("cheap", "moderate", "high", "less than £20", "£20-25", "more than £30"),
    "customer rating": ("low", "average", "high", "1 out of 5", "3 out of 5", "5 out of 5"),
    "area": ("city centre", "riverside"),
    "familyFriendly": ("yes", "no"),
    "near": NEAR,
}

# How many slots an MR has, name included (E2E MRs have 3 to 8; most have 5 to 7).
_N_SLOTS_WEIGHTS = {3: 5, 4: 15, 5: 25, 6: 25, 7: 20, 8: 10}
_REFS_PER_MR = (2, 6)  # inclusive; the real test set has about 7 refs per MR on average


# --------------------------------------------------------------------------------------------
# MR strings


def format_mr(mr: dict[str, str]) -> str:
    """``{"name": "Zizzi", "area": "riverside"}`` -> ``name[Zizzi], area[riverside]``.

    Slots are written in the official order (:data:`SLOTS`), whatever the dict's order.
    """
    unknown = [s for s in mr if s not in SLOTS]
    if unknown:
        raise ValueError(f"unknown E2E slot(s) {unknown}; slots are {list(SLOTS)}")
    return ", ".join(f"{s}[{mr[s]}]" for s in SLOTS if s in mr)


def parse_mr(text: str) -> dict[str, str]:
    """Inverse of :func:`format_mr` (the E2E task's parser of the official MR syntax)."""
    from trainables.tasks.e2e import parse_mr as parse_pairs

    return dict(parse_pairs(text))


# --------------------------------------------------------------------------------------------
# What counts as mentioning a value (used to check every reference, and by the tests)

_FAMILY_YES = re.compile(r"(?<!not )(?<!non-)\b(family|kid|child)[- ]friendly", re.I)
_FAMILY_NO = re.compile(r"\b(not |non-)(family|kid|child)[- ]friendly", re.I)


def mentions(ref: str, slot: str, value: str) -> bool:
    """Whether ``ref`` realises ``slot[value]`` in one of the ways this generator writes it.

    Literal values must appear verbatim (case-insensitively: "Fast food" is written
    "fast food" mid-sentence); ``familyFriendly`` is a yes/no flag realised as
    "family friendly" / "not kid friendly" and the like.
    """
    if slot == "familyFriendly":
        if value == "yes":
            return bool(_FAMILY_YES.search(ref)) and not _FAMILY_NO.search(ref)
        return bool(_FAMILY_NO.search(ref))
    return value.lower() in ref.lower()


# --------------------------------------------------------------------------------------------
# Lexicon: for each slot value, its realisations as a pre-modifier ("a cheap pub"), a
# post-modifier ("a pub near Zizzi") and a verb phrase ("it serves Italian food").


def _food_nps(food: str) -> list[str]:
    if food == "Fast food":
        return ["fast food"]
    return [f"{food} food", f"{food} cuisine", f"{food} dishes"]


def _premods(slot: str, value: str) -> list[str]:
    if slot == "food":
        return ["fast food" if value == "Fast food" else value]
    if slot == "priceRange":
        return {"cheap": ["cheap"], "moderate": ["moderately priced", "moderate-priced"],
                "high": ["high-priced", "high priced"]}.get(value, [])
    if slot == "customer rating":
        return {"low": ["low rated", "low-rated"], "average": ["average rated", "averagely rated"],
                "high": ["highly rated", "high-rated"]}.get(value, [])
    if slot == "area":
        return [value]  # "a riverside pub", "a city centre coffee shop"
    if slot == "familyFriendly" and value == "yes":
        return ["family friendly", "family-friendly", "kid friendly", "child friendly"]
    return []  # near, familyFriendly[no] and numeric prices/ratings read badly before a noun


_PRICE_POST = {
    "cheap": ["with cheap prices", "with a cheap price range"],
    "moderate": ["with moderate prices", "with a moderate price range"],
    "high": ["with high prices", "with a high price range"],
    "less than £20": ["with prices of less than £20", "where meals cost less than £20",
                      "with a price range of less than £20"],
    "£20-25": ["with prices in the £20-25 range", "with a price range of £20-25",
               "where meals cost £20-25"],
    "more than £30": ["with prices of more than £30", "where meals cost more than £30",
                      "with a price range of more than £30"],
}
_PRICE_VP = {
    "cheap": ["is cheap", "has cheap prices", "offers food at cheap prices"],
    "moderate": ["is moderately priced", "has moderate prices", "has a moderate price range"],
    "high": ["is high-priced", "has high prices", "has a high price range"],
    "less than £20": ["costs less than £20 per person", "has a price range of less than £20",
                      "charges less than £20"],
    "£20-25": ["costs £20-25 per person", "has a price range of £20-25",
               "has prices in the £20-25 range"],
    "more than £30": ["costs more than £30 per person", "has a price range of more than £30",
                      "charges more than £30"],
}
_AREA_POST = {"city centre": ["in the city centre", "located in the city centre"],
              "riverside": ["by the riverside", "in the riverside area", "on the riverside",
                            "located by the riverside"]}
_AREA_VP = {"city centre": ["is in the city centre", "is located in the city centre",
                            "can be found in the city centre"],
            "riverside": ["is by the riverside", "is located in the riverside area",
                          "can be found by the riverside"]}
_AREA_FRONT = {"city centre": ["In the city centre", "Located in the city centre"],
               "riverside": ["By the riverside", "In the riverside area",
                             "Located by the riverside"]}
_FAMILY_WORDS = ["family friendly", "kid friendly", "child friendly", "family-friendly"]


def _postmods(slot: str, value: str) -> list[str]:
    if slot == "food":
        return [f"{lead} {np}" for np in _food_nps(value)
                for lead in ("serving", "that serves", "offering")]
    if slot == "priceRange":
        return _PRICE_POST[value]
    if slot == "customer rating":
        if value in ("low", "average", "high"):
            adv = "highly" if value == "high" else value
            return [f"with a {value} customer rating", f"with {value} customer ratings",
                    f"rated {adv} by customers"]
        return [f"with a customer rating of {value}", f"rated {value} by customers",
                f"with a {value} customer rating"]
    if slot == "area":
        return _AREA_POST[value]
    if slot == "familyFriendly":
        neg = "" if value == "yes" else "not "
        return [f"that is {neg}{w}" for w in _FAMILY_WORDS]
    if slot == "near":
        return [f"{p} {value}" for p in ("near", "close to", "next to", "located near",
                                          "not far from")]
    raise ValueError(slot)


def _vps(slot: str, value: str) -> list[str]:
    if slot == "eatType":
        return [f"is {_article(value)} {value}"]
    if slot == "food":
        return [f"{verb} {np}" for np in _food_nps(value)
                for verb in ("serves", "offers", "provides", "specialises in")]
    if slot == "priceRange":
        return _PRICE_VP[value]
    if slot == "customer rating":
        if value in ("low", "average", "high"):
            adv = "highly" if value == "high" else value
            return [f"has {_article(value)} {value} customer rating",
                    f"is rated {adv} by customers", f"has {value} customer ratings"]
        return [f"has a customer rating of {value}", f"is rated {value} by customers",
                f"has a rating of {value}"]
    if slot == "area":
        return _AREA_VP[value]
    if slot == "familyFriendly":
        neg = "" if value == "yes" else "not "
        return [f"is {neg}{w}" for w in _FAMILY_WORDS]
    if slot == "near":
        return [f"{p} {value}" for p in ("is near", "is located near", "is close to",
                                          "is next to", "can be found near")]
    raise ValueError(slot)


def _fronts(slot: str, value: str) -> list[str]:
    """Sentence-initial place phrases: "Close to Café Brazil, ..."."""
    if slot == "area":
        return _AREA_FRONT[value]
    if slot == "near":
        return [f"{p} {value}" for p in ("Near", "Close to", "Located near", "Next to")]
    return []


def _is_relative(phrase: str) -> bool:
    return phrase.startswith(("that ", "where "))


def _article(word: str) -> str:
    # Every word that can follow an article here is pronounced as spelled: "an Italian",
    # "an average rated", "an eatery" but "a high-priced", "a riverside".
    return "an" if word[:1].lower() in "aeiou" else "a"


def _join_vps(vps: Sequence[str]) -> str:
    if len(vps) == 1:
        return vps[0]
    return ", ".join(vps[:-1]) + " and " + vps[-1]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


# English puts opinion (rating, price) before purpose/origin: "a highly rated cheap family
# friendly riverside Italian pub".
_PREMOD_ORDER = ("customer rating", "priceRange", "familyFriendly", "area", "food")
_GENERIC_HEADS = ("place", "venue", "eatery", "establishment", "spot")


def realise(mr: dict[str, str], rng: random.Random) -> str:
    """One reference text for ``mr``, drawn with ``rng``; mentions every slot value."""
    name = mr["name"]
    others = [s for s in SLOTS if s in mr and s != "name"]
    rng.shuffle(others)
    head = mr.get("eatType") or rng.choice(_GENERIC_HEADS)

    opener = rng.choice(("is_np", "is_np", "there_is", "fronted", "apposition", "vp_first"))
    if opener == "fronted" and not any(s in ("area", "near") for s in others):
        opener = "is_np"
    if opener in ("apposition", "vp_first") and len(others) < 2:
        opener = "is_np"
    pre, post, vps, front = _assign_roles(mr, others, opener, rng)
    if opener == "apposition" and not vps:
        opener = "is_np"
    if "eatType" not in mr and not pre and not post and vps and opener != "vp_first":
        # "Zizzi is a venue." says nothing; move one fact into the noun phrase.
        slot, _ = vps.pop(0)
        post.append((slot, rng.choice(_postmods(slot, mr[slot]))))

    # A relative clause reads best last: "a pub near Zizzi that serves Italian food".
    post.sort(key=lambda p: _is_relative(p[1]))
    if len(post) == 2 and post[0][1].startswith("with ") and post[1][1].startswith("with "):
        # "with cheap prices with a low customer rating" -> "with cheap prices and a low ...".
        post[1] = (post[1][0], "and " + post[1][1][len("with "):])
    if opener == "vp_first":
        # "Zizzi is a pub, serves ..." rather than burying the venue type in the middle.
        vps.sort(key=lambda v: v[0] != "eatType")
    pre_words = [rng.choice(_premods(s, mr[s])) for s in sorted(pre, key=_PREMOD_ORDER.index)]
    core = " ".join([*pre_words, head])
    np_bare = f"{_article(core)} {core}"
    post_text = " ".join(p[1] for p in post)
    np_full = f"{np_bare} {post_text}".strip()

    vp_texts = [v for _, v in vps]
    if opener == "is_np":
        first = f"{name} is {np_full}."
    elif opener == "there_is":
        first = f"There is {np_bare} called {name} {post_text}".strip() + "."
    elif opener == "fronted":
        first = f"{front}, {name} is {np_full}."
    elif opener == "apposition":
        take = rng.randint(1, min(2, len(vp_texts)))
        first = f"{name}, {np_full}, {_join_vps(vp_texts[:take])}."
        vp_texts = vp_texts[take:]
    else:  # vp_first
        take = rng.randint(1, min(3, len(vp_texts)))
        first = f"{name} {_join_vps(vp_texts[:take])}."
        vp_texts = vp_texts[take:]
    return " ".join(_cap(s) for s in [first, *_later_sentences(name, head, vp_texts, rng)])


def _assign_roles(mr: dict[str, str], others: list[str], opener: str, rng: random.Random):
    """Give every non-name slot one role: pre-modifier of the head noun, post-modifier,
    fronted place phrase, or a verb phrase in a later clause. Returns (pre, post, vps, front)."""
    pre: list[str] = []
    post: list[tuple[str, str]] = []
    vps: list[tuple[str, str]] = []
    front: str | None = None
    for slot in others:
        value = mr[slot]
        if slot == "eatType":
            if opener == "vp_first":
                vps.append((slot, rng.choice(_vps(slot, value))))
            continue  # otherwise it is the head noun itself
        if opener == "fronted" and front is None and slot in ("area", "near"):
            front = rng.choice(_fronts(slot, value))
            continue
        if opener == "vp_first":
            vps.append((slot, rng.choice(_vps(slot, value))))
            continue
        r = rng.random()
        if r < 0.35 and len(pre) < 2 and _premods(slot, value):
            pre.append(slot)
            continue
        # At most one relative clause ("that serves ...", "where meals cost ...") per noun
        # phrase: two in a row read badly.
        options = _postmods(slot, value)
        if any(_is_relative(p) for _, p in post):
            options = [p for p in options if not _is_relative(p)]
        if r < 0.7 and len(post) < 2 and options:
            post.append((slot, rng.choice(options)))
        else:
            vps.append((slot, rng.choice(_vps(slot, value))))
    return pre, post, vps, front


def _later_sentences(name: str, head: str, vp_texts: list[str], rng: random.Random) -> list[str]:
    """The remaining facts: 1-3 verb phrases per sentence, each with a fresh subject. Never
    the same subject twice in a row ("Zizzi is ... Zizzi has ..."); the opener's subject is
    the name."""
    subjects = ["It", "It", f"The {head}", name, f"This {head}"]
    previous = name
    sentences = []
    while vp_texts:
        take = rng.randint(1, min(3, len(vp_texts)))
        chunk, vp_texts = vp_texts[:take], vp_texts[take:]
        subject = rng.choice([s for s in subjects if s != previous])
        sentences.append(f"{subject} {_join_vps(chunk)}.")
        previous = subject
    return sentences


def _sample_mr(rng: random.Random) -> dict[str, str]:
    sizes, weights = zip(*_N_SLOTS_WEIGHTS.items())
    n = rng.choices(sizes, weights=weights)[0]
    chosen = set(rng.sample(SLOTS[1:], n - 1))
    mr = {"name": rng.choice(NAMES)}
    for slot in SLOTS[1:]:
        if slot in chosen:
            pool = [v for v in VALUES[slot] if v != mr["name"]]  # nothing is near itself
            mr[slot] = rng.choice(pool)
    return mr


def generate_e2e(n_mrs: int, *, seed: int = 0) -> list[tuple[str, list[str]]]:
    """``n_mrs`` distinct MRs, each with 2-6 distinct references: ``[(mr_string, [ref, ...])]``."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[tuple[str, list[str]]] = []
    attempts = 0
    while len(out) < n_mrs:
        attempts += 1
        if attempts > 50 * n_mrs + 1000:
            raise ValueError(f"could not draw {n_mrs} distinct MRs")
        mr = _sample_mr(rng)
        text = format_mr(mr)
        if text in seen:
            continue
        seen.add(text)
        k = rng.randint(*_REFS_PER_MR)
        refs: list[str] = []
        for _ in range(20 * k):  # a short MR may have fewer than k distinct realisations
            ref = realise(mr, rng)
            if ref not in refs:
                refs.append(ref)
            if len(refs) == k:
                break
        for ref in refs:  # cheap guard: the planner must never drop a fact
            missing = [s for s, v in mr.items() if not mentions(ref, s, v)]
            assert not missing, (text, ref, missing)
        out.append((text, refs))
    return out


# --------------------------------------------------------------------------------------------
# Files

SPLIT_FILES = {
    "csv": {"train": "trainset.csv", "dev": "devset.csv", "test": "testset_w_refs.csv"},
    "jsonl": {"train": "train.jsonl", "dev": "dev.jsonl", "test": "test.jsonl"},
}


def _write_csv(path: Path, groups: list[tuple[str, list[str]]]) -> None:
    # The official files: an unquoted ``mr,ref`` header, then every field quoted (the MRs
    # contain commas), UTF-8 without BOM, ``\n`` line ends.
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write("mr,ref\n")
        writer = csv.writer(fh, quoting=csv.QUOTE_ALL, lineterminator="\n")
        for mr, refs in groups:
            for ref in refs:
                writer.writerow([mr, ref])


def _write_jsonl(path: Path, groups: list[tuple[str, list[str]]]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for mr, refs in groups:
            for ref in refs:
                fh.write(json.dumps({"mr": mr, "ref": ref}, ensure_ascii=False) + "\n")


def write_e2e_dataset(out_dir: str | Path, *, n_train_mrs: int = 300, n_dev_mrs: int = 40,
                      n_test_mrs: int = 30, seed: int = 0, fmt: str = "csv") -> Path:
    """Write a synthetic E2E dataset to ``out_dir`` and return ``out_dir``.

    ``fmt="csv"`` writes ``trainset.csv``, ``devset.csv`` and ``testset_w_refs.csv`` as in the
    official release; ``fmt="jsonl"`` writes ``train.jsonl``, ``dev.jsonl``, ``test.jsonl`` with
    one ``{"mr", "ref"}`` object per line. Either way an MR with k references takes k
    consecutive rows, and no MR appears in two splits (all MRs are drawn as one distinct set,
    then cut into train | dev | test). The defaults give about 1,200 / 160 / 120 rows.
    """
    if fmt not in SPLIT_FILES:
        raise ValueError(f"fmt={fmt!r}; accepted: {sorted(SPLIT_FILES)}")
    for field, n in (("n_train_mrs", n_train_mrs), ("n_dev_mrs", n_dev_mrs),
                     ("n_test_mrs", n_test_mrs)):
        if n < 0:
            raise ValueError(f"{field}={n}; must be >= 0")
    groups = generate_e2e(n_train_mrs + n_dev_mrs + n_test_mrs, seed=seed)
    splits = {"train": groups[:n_train_mrs],
              "dev": groups[n_train_mrs:n_train_mrs + n_dev_mrs],
              "test": groups[n_train_mrs + n_dev_mrs:]}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write = _write_csv if fmt == "csv" else _write_jsonl
    for split, filename in SPLIT_FILES[fmt].items():
        write(out / filename, splits[split])
    return out


def read_e2e_file(path: str | Path) -> list[tuple[str, list[str]]]:
    """Read an official-format CSV (or this module's JSONL) back into ``[(mr, [refs])]``,
    grouping consecutive rows of the same MR."""
    path = Path(path)
    with open(path, encoding="utf-8", newline="") as fh:
        if path.suffix == ".jsonl":
            rows = [(d["mr"], d["ref"]) for d in map(json.loads, filter(str.strip, fh))]
        else:
            rows = [(r["mr"], r["ref"]) for r in csv.DictReader(fh)]
    groups: list[tuple[str, list[str]]] = []
    for mr, ref in rows:
        if groups and groups[-1][0] == mr:
            groups[-1][1].append(ref)
        else:
            groups.append((mr, [ref]))
    return groups


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m trainables.offline.e2e_synth",
        description="Write a synthetic E2E NLG dataset in the official release's format.")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--n-train", type=int, default=300, help="training MRs (default 300)")
    parser.add_argument("--n-dev", type=int, default=40, help="dev MRs (default 40)")
    parser.add_argument("--n-test", type=int, default=30, help="test MRs (default 30)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", choices=sorted(SPLIT_FILES), default="csv")
    args = parser.parse_args(argv)
    out = write_e2e_dataset(args.out_dir, n_train_mrs=args.n_train, n_dev_mrs=args.n_dev,
                            n_test_mrs=args.n_test, seed=args.seed, fmt=args.format)
    for filename in SPLIT_FILES[args.format].values():
        groups = read_e2e_file(out / filename)
        print(f"{out / filename}: {len(groups)} MRs, {sum(len(r) for _, r in groups)} rows")


if __name__ == "__main__":
    main()
