"""Synthetic WebNLG 2017 and DART datasets in their official JSON layouts, for tests and
``--preset smoke``.

Triples about the venues, people and places of the synthetic E2E data
(:mod:`trainables.offline.e2e_synth`), so the smoke GPT-2, whose tokenizer and pretraining
saw that vocabulary, has words for them; each reference realises every triple of its input
with a sentence template, in a shuffled order, sometimes with "It" for a repeated subject.

WebNLG (``train.json``, ``dev.json``, ``test.json``: ``{"entries": [{"<n>": {"category",
"modifiedtripleset", "lexicalisations", ...}}]}``, DBpedia-style values with underscores):
train and dev use 10 "seen" categories named as WebNLG 2017's; the test set holds those and
5 "unseen" categories (WebNLG's names again), whose inputs use mostly relations never seen in
training, which is what makes the seen/unseen split of the scores differ. About one entry in
20 also has a lexicalisation marked ``toFix`` (readers drop it, as the LoRA paper's script
does). The test file lists entries by category, as the release does.

DART (``dart-v1.1.1-full-{train,dev,test}.json``: ``[{"tripleset", "subtree_was_extended",
"annotations": [{"source", "text"}]}]``): E2E-style relations (``eatType``, ``customer
rating``) and WikiSQL-style upper-case ones (``LEADER_NAME``), as in the real DART.

Everything is a pure function of ``seed``.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Sequence
from pathlib import Path

from trainables.offline.e2e_synth import NAMES, NEAR, VALUES

# Bump when the generated files change in any way (the smoke cache is keyed on it).
GENERATOR_VERSION = "1"

WEBNLG_FILES = {"train": "train.json", "dev": "dev.json", "test": "test.json"}
DART_FILES = {"train": "dart-v1.1.1-full-train.json", "dev": "dart-v1.1.1-full-dev.json",
              "test": "dart-v1.1.1-full-test.json"}

_PEOPLE = ("John Smith", "Anna Brown", "Peter Green", "Mary Jones", "David White", "Sarah Black",
           "James Hall", "Emma Wood")
_CITIES = ("Cambridge", "London", "Oxford", "Ely", "Norwich", "York")
_COUNTRIES = ("England", "France", "Italy", "Japan", "India", "China")
_FOOD = tuple(v for v in VALUES["food"] if v != "Fast food")

# relation -> (values, templates); "{s}" and "{o}" are the subject and the object.
_RELATIONS: dict[str, tuple[Sequence[str], tuple[str, ...]]] = {
    "eatType": (VALUES["eatType"], ("{s} is a {o}.", "{s} is a popular {o}.")),
    "food": (_FOOD, ("{s} serves {o} food.", "{s} offers {o} cuisine.")),
    "area": (VALUES["area"], ("{s} is in the {o}.", "{s} is located in the {o}.")),
    "near": (NEAR, ("{s} is near {o}.", "{s} is close to {o}.")),
    "priceRange": (VALUES["priceRange"], ("{s} has a price range of {o}.", "Prices at {s} are {o}.")),
    "customerRating": (VALUES["customer rating"], ("{s} has a customer rating of {o}.",
                                                   "{s} is rated {o} by customers.")),
    "owner": (_PEOPLE, ("{s} is owned by {o}.", "The owner of {s} is {o}.")),
    "city": (_CITIES, ("{s} is in {o}.", "{s} is located in the city of {o}.")),
    "country": (_COUNTRIES, ("{s} is in {o}.", "{s} is located in {o}.")),
    "leaderName": (_PEOPLE, ("The leader of {s} is {o}.", "{s} is led by {o}.")),
    "capacity": (("50", "80", "120", "200"), ("{s} has a capacity of {o}.", "{s} can hold {o} people.")),
    "foundingYear": (("1990", "1995", "2001", "2008"), ("{s} was founded in {o}.", "{s} opened in {o}.")),
    # Relations of the unseen categories only.
    "birthPlace": (_CITIES, ("{s} was born in {o}.", "The birth place of {s} is {o}.")),
    "occupation": (("chef", "pilot", "writer", "teacher"), ("{s} works as a {o}.", "{s} is a {o}.")),
    "party": (("the Green Party", "the Labour Party"), ("{s} is a member of {o}.", "{s} belongs to {o}.")),
    "club": (NAMES[:8], ("{s} plays for {o}.", "{s} is a player of {o}.")),
    "orbitalPeriod": (("88 days", "365 days", "687 days"), ("{s} has an orbital period of {o}.",
                                                             "The orbital period of {s} is {o}.")),
    "manufacturer": (_PEOPLE, ("{s} was made by {o}.", "The manufacturer of {s} is {o}.")),
}
_SEEN_RELATIONS = tuple(list(_RELATIONS)[:12])
_UNSEEN_RELATIONS = tuple(list(_RELATIONS)[12:])

#: WebNLG 2017's 10 training categories and its 5 test-only ones.
SEEN_CATEGORIES = ("Airport", "Astronaut", "Building", "City", "ComicsCharacter", "Food",
                   "Monument", "SportsTeam", "University", "WrittenWork")
UNSEEN_CATEGORIES = ("Artist", "Athlete", "CelestialBody", "MeanOfTransportation", "Politician")


def _category_relations() -> dict[str, tuple[str, ...]]:
    """Each seen category: 4 seen relations (a sliding window); each unseen one: 2 unseen
    relations and 1 seen one."""
    out = {c: tuple(_SEEN_RELATIONS[(3 * i + k) % len(_SEEN_RELATIONS)] for k in range(4))
           for i, c in enumerate(SEEN_CATEGORIES)}
    for i, c in enumerate(UNSEEN_CATEGORIES):
        out[c] = (_UNSEEN_RELATIONS[i % 6], _UNSEEN_RELATIONS[(i + 1) % 6], _SEEN_RELATIONS[i])
    return out


CATEGORY_RELATIONS = _category_relations()


def _subject(category: str, rng: random.Random) -> str:
    return rng.choice(_PEOPLE if category in UNSEEN_CATEGORIES else NAMES)


def realise(triples: Sequence[tuple[str, str, str]], rng: random.Random) -> str:
    """One reference for ``triples`` (plain text values): every triple, shuffled order."""
    order = list(triples)
    rng.shuffle(order)
    sentences, previous = [], None
    for s, rel, o in order:
        template = rng.choice(_RELATIONS[rel][1])
        if s == previous and template.startswith("{s} ") and rng.random() < 0.5:
            template = "It" + template[3:]
        sentences.append(template.format(s=s, o=o))
        previous = s
    return " ".join(sentences)


def _draw(category: str, rng: random.Random) -> tuple[list[tuple[str, str, str]], list[str]]:
    """One input (1-3 triples about one subject) and its 1-3 distinct references."""
    subject = _subject(category, rng)
    rels = rng.sample(CATEGORY_RELATIONS[category], rng.randint(1, 3))
    triples = [(subject, r, rng.choice([v for v in _RELATIONS[r][0] if v != subject])) for r in rels]
    refs: list[str] = []
    want = rng.randint(1, 3)
    for _ in range(10 * want):
        ref = realise(triples, rng)
        if ref not in refs:
            refs.append(ref)
        if len(refs) == want:
            break
    return triples, refs


def _dbpedia(value: str) -> str:
    return value.replace(" ", "_")


def _webnlg_entry(n: int, category: str, triples, refs, rng: random.Random) -> dict:
    mtriples = [{"object": _dbpedia(o), "property": p, "subject": _dbpedia(s)} for s, p, o in triples]
    lexes = [{"comment": "good", "lang": "", "lex": r, "xml_id": f"Id{k + 1}"} for k, r in enumerate(refs)]
    if rng.random() < 0.05:  # the release marks a few lexicalisations as needing a fix
        lexes.append({"comment": "toFix", "lang": "", "lex": refs[0].rsplit(" ", 1)[0],
                      "xml_id": f"Id{len(lexes) + 1}"})
    return {str(n): {"category": category, "dbpedialinks": [], "lexicalisations": lexes,
                     "links": [], "modifiedtripleset": mtriples,
                     "originaltriplesets": {"originaltripleset": [mtriples]},
                     "shape": "NA", "shape_type": "NA", "size": str(len(triples)),
                     "xml_id": f"Id{n}"}}


def generate_webnlg(n: int, categories: Sequence[str], *, seed: int = 0,
                    exclude: set | None = None) -> list[tuple[str, list, list[str]]]:
    """``n`` distinct inputs ``(category, triples, refs)``, categories in rotation; inputs in
    ``exclude`` (frozen triple tuples) are skipped and the new ones added to it."""
    rng = random.Random(seed)
    seen = exclude if exclude is not None else set()
    out: list[tuple[str, list, list[str]]] = []
    for attempt in range(50 * n + 100):
        if len(out) == n:
            break
        category = categories[attempt % len(categories)]
        triples, refs = _draw(category, rng)
        key = tuple(triples)
        if key in seen:
            continue
        seen.add(key)
        out.append((category, triples, refs))
    if len(out) < n:
        raise ValueError(f"could not draw {n} distinct inputs")
    return out


def write_webnlg_dataset(out_dir: str | Path, *, n_train: int = 400, n_dev: int = 40,
                         n_test_seen: int = 30, n_test_unseen: int = 30, seed: int = 0) -> Path:
    """``train.json``, ``dev.json`` (seen categories) and ``test.json`` (seen and unseen,
    listed by category) in ``out_dir``; no input is in two splits."""
    taken: set = set()
    splits = {"train": generate_webnlg(n_train, SEEN_CATEGORIES, seed=seed, exclude=taken),
              "dev": generate_webnlg(n_dev, SEEN_CATEGORIES, seed=seed + 1, exclude=taken)}
    test = (generate_webnlg(n_test_seen, SEEN_CATEGORIES, seed=seed + 2, exclude=taken)
            + generate_webnlg(n_test_unseen, UNSEEN_CATEGORIES, seed=seed + 3, exclude=taken))
    splits["test"] = sorted(test, key=lambda e: e[0])  # stable: by category, as released
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for split, items in splits.items():
        rng = random.Random(f"{seed}-{split}")
        obj = {"entries": [_webnlg_entry(i + 1, c, t, r, rng) for i, (c, t, r) in enumerate(items)]}
        (out / WEBNLG_FILES[split]).write_text(json.dumps(obj, ensure_ascii=False, indent=1),
                                               encoding="utf-8")
    return out


# DART writes E2E relations as E2E does and WikiSQL-derived ones in upper case.
_DART_RELATION = {"customerRating": "customer rating", "owner": "OWNER", "city": "CITY",
                  "country": "COUNTRY", "leaderName": "LEADER_NAME", "capacity": "CAPACITY",
                  "foundingYear": "FOUNDING_YEAR"}
_E2E_RELATIONS = {"eatType", "food", "area", "near", "priceRange", "customerRating"}


def write_dart_dataset(out_dir: str | Path, *, n_train: int = 400, n_dev: int = 40,
                       n_test: int = 40, seed: int = 0) -> Path:
    """The three ``dart-v1.1.1-full-*.json`` files in ``out_dir`` (seen relations only)."""
    taken: set = set()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for k, (split, n) in enumerate((("train", n_train), ("dev", n_dev), ("test", n_test))):
        rng = random.Random(f"{seed}-dart-{split}")
        items = []
        for _, triples, refs in generate_webnlg(n, SEEN_CATEGORIES, seed=seed + 10 + k, exclude=taken):
            e2e = all(r in _E2E_RELATIONS for _, r, _ in triples)
            source = "e2e" if e2e else rng.choice(("webnlg", "WikiSQL_decl_sents"))
            items.append({
                "tripleset": [[s, _DART_RELATION.get(r, r), o] for s, r, o in triples],
                **({"subtree_was_extended": len(triples) > 1} if rng.random() < 0.5 else {}),
                "annotations": [{"source": source, "text": ref} for ref in refs],
            })
        (out / DART_FILES[split]).write_text(json.dumps(items, ensure_ascii=False, indent=1),
                                             encoding="utf-8")
    return out


def smoke_webnlg_data() -> Path:
    """The ``smoke:webnlg`` source: built once into the cache."""
    from trainables.cache import build_once
    from trainables.paths import cache_dir

    return build_once(cache_dir() / "smoke", f"webnlg-v{GENERATOR_VERSION}",
                      lambda d: write_webnlg_dataset(d))


def smoke_dart_data() -> Path:
    """The ``smoke:dart`` source: built once into the cache."""
    from trainables.cache import build_once
    from trainables.paths import cache_dir

    return build_once(cache_dir() / "smoke", f"dart-v{GENERATOR_VERSION}",
                      lambda d: write_dart_dataset(d))


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m trainables.offline.data2text_synth",
                                description="Write synthetic WebNLG 2017 or DART data (official JSON layouts).")
    p.add_argument("dataset", choices=("webnlg", "dart"))
    p.add_argument("out_dir", type=Path)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    write = write_webnlg_dataset if a.dataset == "webnlg" else write_dart_dataset
    out = write(a.out_dir, seed=a.seed)
    for f in sorted(out.glob("*.json")):
        print(f)


if __name__ == "__main__":
    main()
