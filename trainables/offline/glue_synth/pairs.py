"""Sentence-pair tasks: MRPC and QQP (paraphrase or not) and STS-B (similarity 0-5), each as
its official files' rows (:func:`mrpc_files`, :func:`qqp_files`, :func:`stsb_files`)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import replace

from trainables.offline.glue_synth.common import cap_first, draw_distinct, labelled_pairs
from trainables.offline.glue_synth.facts import (COUNTS, ORGS, PEOPLE, PLACES, changed, changes,
                                                 draw_fact, random_style, reworded, say_fact)
from trainables.offline.glue_synth.formats import LABEL_NOISE

# --------------------------------------------------------------------------------------------
# MRPC: news sentence pairs, Quality 1 = paraphrase (68% of the real set).


def _mrpc_pair(rng: random.Random, para: bool) -> tuple[str, str]:
    agents = PEOPLE + ORGS
    f = draw_fact(rng, agents, p_neg=0.1)
    st1 = random_style(rng)
    s1 = say_fact(f, st1)
    for _ in range(20):
        if para:
            st2 = reworded(rng, st1, least=1)
            if f.time is not None and rng.random() < 0.15:
                st2 = replace(st2, drop=st2.drop | {"time"})  # a minor detail left out
            s2 = say_fact(f, st2)
        else:
            st2 = st1 if rng.random() < 0.5 else reworded(rng, st1)
            if rng.random() < 0.35:
                # The same fact plus one the first sentence does not have: "..., and hired
                # 40 nurses." (the placeholder agent "@" is cut off the second clause).
                st2 = replace(st2, passive=False, frame=None)
                extra = draw_fact(rng, ["@"], p_place=0, p_time=0)
                s2 = f"{say_fact(f, st2)[:-1]} and {say_fact(extra)[2:]}"
            else:
                # Most differ in two details (a sentence pair from two related stories), the
                # rest in one: another name, number, date, place, object or polarity.
                whats = rng.sample(changes(f), 2 if rng.random() < 0.6 else 1)
                if "neg" in whats and "antonym" in whats:  # the two would cancel out
                    whats.remove("antonym")
                f2 = f
                for what in whats:
                    f2 = changed(f2, rng, what, agents)
                s2 = say_fact(f2, st2)
        if s2 != s1:
            return s1, s2
    raise AssertionError("no distinct second sentence")


def mrpc_files(rng: random.Random, n_train: int, n_dev: int, n_test: int) -> dict[str, list]:
    n = n_train + n_dev + n_test
    pairs = labelled_pairs(rng, _mrpc_pair, n, p_yes=0.68, noise=LABEL_NOISE["mrpc"])
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


def qqp_files(rng: random.Random, n_train: int, n_dev: int, n_test: int) -> dict[str, list]:
    n = n_train + n_dev + n_test
    # A pair and its swap are one pair: the same two questions, in either order.
    pairs = labelled_pairs(rng, _qqp_pair, n, p_yes=0.37, noise=LABEL_NOISE["qqp"],
                           key=lambda e: frozenset(e[:2]))
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
                rng.randrange(3), rng.randrange(len(COUNTS["staff"])),
                rng.randrange(len(PLACES)))

    def say(h: tuple) -> str:
        actor, ev, obj, n, place = h
        verbs, part, objs = _HEAD_EVENTS[ev]
        what = f"{COUNTS['staff'][n]} {objs[obj % len(objs)]}"
        if rng.random() < 0.3:  # headline passive, agent left out: "12 miners rescued in Lima"
            return f"{what} {part} in {PLACES[place][0]}"
        who = rng.choice(_HEAD_ACTORS[actor])
        return f"{who} {rng.choice(verbs)} {what} in {PLACES[place][0]}"

    a = draw()
    b = _mutate(rng, a, (len(_HEAD_ACTORS), len(_HEAD_EVENTS), 3, len(COUNTS["staff"]),
                         len(PLACES)))
    pen = (0.8 * (a[0] != b[0]) + (2.2 if a[1] != b[1] else 0.8 * (a[2] != b[2]))
           + 0.8 * (a[3] != b[3]) + 1.0 * (a[4] != b[4]))
    return say(a), say(b), 5.0 - pen


def _sts_forum(rng: random.Random) -> tuple[str, str, float]:
    def say(topic: int, stance: int, reason: int) -> str:
        claim = rng.choice(_FORUM_STANCES[stance])
        t = _FORUM_TOPICS[topic]
        s = rng.choice(("I think {t} is {c}", "{T} is {c} in my opinion", "Honestly, {t} is {c}",
                        "In my view {t} is {c}")).format(t=t, T=cap_first(t), c=claim)
        why = _FORUM_REASONS[stance][reason]
        return f"{s} {why}." if why else f"{s}."

    a = (rng.randrange(len(_FORUM_TOPICS)), rng.randrange(2), rng.randrange(3))
    b = _mutate(rng, a, (len(_FORUM_TOPICS), 2, 3))
    if a[0] != b[0]:
        score = 0.4
    else:
        score = (4.8 if a[1] == b[1] else 1.8) - 0.6 * (a[2] != b[2])
    return say(*a), say(*b), score


def stsb_files(rng: random.Random, n_train: int, n_dev: int, n_test: int) -> dict[str, list]:
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

    splits = {name: draw_distinct(one, n, seen, key=lambda e: e[:2])
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
