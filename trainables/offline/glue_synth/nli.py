"""Inference tasks: MNLI (3-way, by genre), RTE (2-way, news) and QNLI (does the sentence
answer the question), each as its official files' rows (:func:`mnli_files`, :func:`rte_files`,
:func:`qnli_files`), from the fact world of :mod:`trainables.offline.glue_synth.facts`."""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace

from trainables.offline.glue_synth.common import NUM_WORDS, cap_first, labelled_pairs, noisy
from trainables.offline.glue_synth.facts import (COMPANIES, ORGS, PEOPLE, PLACES, THINGS, TIMES,
                                                 VERBS, Fact, Style, changed, changes,
                                                 draw_fact, object_np, place_phrase,
                                                 random_style, reworded, say_fact)
from trainables.offline.glue_synth.formats import (LABEL_NOISE, MNLI_MATCHED_GENRES,
                                                   MNLI_MISMATCHED_GENRES, NLI_LABELS)

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


def _hypothesis(rng: random.Random, t: Fact, label: str, agents: Sequence[str],
                verbs: Sequence[str]) -> str:
    """A hypothesis that ``label``s the premise fact ``t``."""
    st = replace(random_style(rng, frames=False), front=None, general=frozenset(),
                 drop=frozenset(s for s in ("place", "time") if rng.random() < 0.5))
    if label == "entailment":
        if t.neg:
            # Under negation only a rewording is entailed: "did not build a hospital in Lyon"
            # entails neither "... a building" nor "did not build a hospital".
            return say_fact(t, reworded(rng, replace(st, drop=frozenset()), frames=False))
        ops = ["restate", "thing", "agentless"] + (["place"] if t.place is not None else [])
        if t.agent in ("we", "i"):
            ops.remove("agentless")
        op = rng.choice(ops)
        if op == "restate":  # reworded, and maybe less said
            return say_fact(t, reworded(rng, st, frames=False))
        if op == "place":    # "in Lyon" entails "in France"
            return say_fact(t, replace(st, general=frozenset({"place"}),
                                       drop=st.drop - {"place"}))
        if op == "thing":    # "a hospital" entails "a building"
            return say_fact(t, replace(st, general=frozenset({"thing"})))
        return say_fact(t, replace(st, passive=True, drop=st.drop | {"agent"}))
    if label == "contradiction":
        what = rng.choice(changes(t, nli=True))
        if what in ("place", "time"):  # the changed detail must be said
            st = replace(st, drop=st.drop - {what})
        elif what == "neg" and t.neg:  # "did not build X in Lyon" vs "built X in Lyon"
            st = replace(st, drop=frozenset())
        return say_fact(changed(t, rng, what, agents), st)
    # neutral: says something the premise neither states nor rules out
    ops = ["new_fact", "reason", "attitude"] + (["add_place"] if t.place is None else []) \
        + (["add_time"] if t.time is None else [])
    op = rng.choice(ops)
    if op == "add_place":
        return say_fact(replace(t, place=rng.randrange(len(PLACES))), replace(st, drop=frozenset()))
    if op == "add_time":
        return say_fact(replace(t, time=rng.randrange(len(TIMES))), replace(st, drop=frozenset()))
    if op == "reason":
        return say_fact(t, replace(st, passive=False))[:-1] + f" {rng.choice(_NEUTRAL_REASONS)}."
    if op == "attitude":
        return f"{cap_first(t.agent)} {rng.choice(_ATTITUDES)}."
    # new_fact: the same agent did something else (not the fact's verb or its antonym)
    others = [v for v in verbs if v not in (t.verb, VERBS[t.verb].antonym)]
    new = draw_fact(rng, [t.agent], others, p_place=0.3, p_time=0.3, p_neg=0.3)
    return say_fact(new, replace(st, passive=False))


def _premise(rng: random.Random, genre: _Genre) -> tuple[str, list[Fact]]:
    """One or two facts in the genre's voice; returns the text and its facts."""
    first = draw_fact(rng, genre.agents, genre.verbs, p_place=0.6, p_time=0.5, p_neg=0.12)
    facts = [first]
    body = say_fact(first, random_style(rng, frames=False), cap=False)
    if rng.random() < 0.45:
        second = draw_fact(rng, [a for a in genre.agents if a != first.agent], genre.verbs,
                           p_place=0.5, p_time=0.4, p_neg=0.1)
        facts.append(second)
        s2 = say_fact(second, random_style(rng, frames=False), cap=False)
        joint = rng.choice(("{a} {b}", "{a_}, and {b_}.", "{a_}, while {b_}."))
        body = joint.format(a=body, b=cap_first(s2), a_=body[:-1], b_=s2[:-1])
    frame = rng.choice(genre.frames)
    text = cap_first(frame.format(s=cap_first(body) if frame.startswith("{s}") else body))
    if genre.lower:  # "yeah my husband bought a new car in Dallas you know"
        text = re.sub(r"[.,]", "", text.lower()).strip()
    return text, facts


# Parse columns: MNLI ships parser output; a right-branching bracketing and a flat part-of-
# speech tree of the same tokens keep the columns' shape (readers only use sentence1/2).
_TOKEN = re.compile(r"n't|'s|\w+(?:[-']\w+)*|[^\w\s]")
_PAST = {f for v in VERBS.values() for form in v.forms for f in form[1].split()}
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
    if tok.isdigit() or low in NUM_WORDS.values():
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


def mnli_files(rng: random.Random, n_train: int, n_dev: int, n_test: int) -> dict[str, list]:
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
        gold = noisy(rng, ex[3], NLI_LABELS, noise)
        c = cols(i, ex)
        # pairID is the prompt's id and the label's initial letter: "31193n".
        return (*c[:2], f"{c[1]}{gold[0]}", *c[3:], gold, gold)

    def dev_row(i: int, ex: tuple) -> tuple[str, ...]:
        # Five annotations: the writer's label, then four validators, each right most of the
        # time; the gold label is the majority (the real dev files keep only pairs with one).
        writer = noisy(rng, ex[3], NLI_LABELS, noise)
        while True:
            votes = [writer] + [noisy(rng, ex[3], NLI_LABELS, 0.15) for _ in range(4)]
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
    return rng.choice(_ROLES).format(city=rng.choice(PLACES)[0], org=rng.choice(COMPANIES))


def _rte_pair(rng: random.Random, entails: bool) -> tuple[str, str]:
    agents = PEOPLE + ORGS
    f = draw_fact(rng, agents, p_place=0.7, p_time=0.6, p_neg=0.08)
    st = random_style(rng)
    role = None
    if f.agent in PEOPLE and rng.random() < 0.5:
        role = _role(rng)  # "Maria Lopez, the mayor of Lyon, built ..."
        said = say_fact(f, replace(st, passive=False, front=None, frame=None))
        premise = f"{f.agent}, {role},{said[len(f.agent):]}"
    else:
        premise = say_fact(f, st)
    if rng.random() < 0.4:  # a second, unrelated sentence, as in RTE's longer premises
        other = draw_fact(rng, [a for a in agents if a != f.agent], p_neg=0.05)
        premise += " " + say_fact(other, random_style(rng))
    if role is not None and rng.random() < 0.35:  # the hypothesis is about the appositive
        if entails:
            return premise, f"{f.agent} is {role}."
        if rng.random() < 0.5:
            other = rng.choice([p for p in PEOPLE if p != f.agent])
            return premise, f"{other} is {role}."
        wrong = _role(rng)
        while wrong == role:
            wrong = _role(rng)
        return premise, f"{f.agent} is {wrong}."
    label = "entailment" if entails else rng.choice(("contradiction", "neutral"))
    return premise, _hypothesis(rng, f, label, agents, tuple(VERBS))


def rte_files(rng: random.Random, n_train: int, n_dev: int, n_test: int) -> dict[str, list]:
    return _two_way_files(rng, _rte_pair, LABEL_NOISE["rte"], n_train, n_dev, n_test)


def _two_way_files(rng: random.Random, pair: Callable[[random.Random, bool], tuple[str, str]],
                   noise: float, n_train: int, n_dev: int, n_test: int) -> dict[str, list]:
    """``index<TAB>text1<TAB>text2<TAB>label`` files (QNLI, RTE) of ``pair``s, about half of
    them entailed; test without the label."""
    exs = labelled_pairs(rng, pair, n_train + n_dev + n_test, p_yes=0.5,
                         labels=("entailment", "not_entailment"), yes="entailment", noise=noise)
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


def _qnli_question(rng: random.Random, f: Fact, qtype: str) -> str:
    base = VERBS[f.verb].forms[0][0]
    did = "did"
    np, _ = object_np(f, Style(definite=True, drop=frozenset({"count"})))
    if qtype == "where":
        return f"Where {did} {f.agent} {base} {np}?"
    if qtype == "when":
        kind = TIMES[f.time][1]
        lead = {"year": "In what year", "month": "In which month", "day": "On what day"}.get(
            kind, "When")
        return f"{lead} {did} {f.agent} {base} {np}?"
    if qtype == "count":
        noun = THINGS[f.thing].nouns[0]
        if THINGS[f.thing].kind == "staff":
            return f"How many {noun} {did} {f.agent} {base}?"
        return f"By what percentage {did} {f.agent} {base} {noun}?"
    if qtype == "who":
        return f"Who {VERBS[f.verb].forms[0][1]} {np}?"
    where = f" {place_phrase(f, Style())}" if f.place is not None else f" {TIMES[f.time][0]}"
    return f"What {did} {f.agent} {base}{where}?"


def _qnli_pair(rng: random.Random, entails: bool) -> tuple[str, str]:
    agent = rng.choice(PEOPLE + ORGS)
    f = draw_fact(rng, [agent], p_place=0.8, p_time=0.7)
    qtypes = ["who"] + (["where"] if f.place is not None else []) \
        + (["when"] if f.time is not None else []) + (["count"] if f.count is not None else []) \
        + (["what"] if f.place is not None or f.time is not None else [])
    qtype = rng.choice(qtypes)
    question = _qnli_question(rng, f, qtype)
    st = replace(random_style(rng), frame=None, front=None)
    if entails:
        sentence = say_fact(f, st)
    else:
        slot = {"where": "place", "when": "time", "count": "count", "who": "agent"}.get(qtype)
        if slot and rng.random() < 0.5:  # the same event, without the asked detail
            st = replace(st, drop=st.drop | {slot}, passive=st.passive or slot == "agent")
            sentence = say_fact(f, st)
        else:  # another sentence of the paragraph: the same agent, another event
            others = [v for v in VERBS if v not in (f.verb, VERBS[f.verb].antonym)]
            g = draw_fact(rng, [agent], others, p_place=0.8, p_time=0.7)
            sentence = say_fact(g, st)
    if rng.random() < 0.35:
        sentence = sentence[:-1] + rng.choice(_QNLI_EXTRAS) + "."
    return question, sentence


def qnli_files(rng: random.Random, n_train: int, n_dev: int, n_test: int) -> dict[str, list]:
    return _two_way_files(rng, _qnli_pair, LABEL_NOISE["qnli"], n_train, n_dev, n_test)
