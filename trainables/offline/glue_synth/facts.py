"""A small world of news facts ("Maria Lopez built a new hospital in Lyon in 2004"), realised
in several ways, shared by MRPC, MNLI, RTE and QNLI.

A :class:`Fact` is drawn by :func:`draw_fact` and worded by :func:`say_fact` in a
:class:`Style`; :func:`reworded` gives another wording of the same content (a paraphrase),
:func:`changed` a conflicting fact (a non-paraphrase, a contradiction).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

from trainables.offline.glue_synth.common import article, cap_first, num


@dataclass(frozen=True)
class _Verb:
    forms: tuple[tuple[str, str, str], ...]  # (base, past, participle); [0] plain, then synonyms
    kinds: tuple[str, ...]                   # what it takes as an object (see THINGS)
    antonym: str | None = None               # key of the verb that undoes it


VERBS: dict[str, _Verb] = {
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


THINGS: tuple[_Thing, ...] = (
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
    kind: tuple(i for i, t in enumerate(THINGS) if t.kind == kind)
    for kind in dict.fromkeys(t.kind for t in THINGS)}
COUNTS = {"staff": (3, 4, 5, 6, 8, 12, 15, 20, 25, 30, 40, 45, 60, 75, 80, 120, 150, 200),
          "amount": (2, 3, 4, 5, 6, 8, 10, 12, 15, 20)}  # people; percent
_ADJ_KINDS = ("building", "firm", "vehicle", "site")
_ADJS = ("new", "large", "small", "local", "modern", "second")

PEOPLE = ("Maria Lopez", "John Carter", "Anna Berg", "David Okafor", "Laura Chen",
          "Peter Novak", "Sofia Rossi", "James Miller", "Elena Petrova", "Omar Haddad",
          "Grace Kim", "Thomas Weber", "Nina Patel", "Lucas Silva", "Hannah Schmidt",
          "Victor Dumas", "Ruth Adams", "Karl Jensen")
COMPANIES = ("Norland Bank", "Vireo Systems", "Calder Motors", "Brightwater Foods",
             "Harbor Airlines", "Summit Energy", "Oakridge Media", "Tessel Pharma")
ORGS = (*COMPANIES, "the city council", "the health ministry", "the state university",
        "the national museum", "the transport authority", "the regional government")
PLACES = (("Lyon", "France"), ("Marseille", "France"), ("Madrid", "Spain"), ("Seville", "Spain"),
          ("Osaka", "Japan"), ("Nagoya", "Japan"), ("Denver", "Colorado"), ("Austin", "Texas"),
          ("Dallas", "Texas"), ("Porto", "Portugal"), ("Toronto", "Canada"),
          ("Calgary", "Canada"), ("Leeds", "England"), ("Bristol", "England"),
          ("Munich", "Germany"), ("Hamburg", "Germany"), ("Krakow", "Poland"),
          ("Nairobi", "Kenya"), ("Lima", "Peru"), ("Bergen", "Norway"), ("Cork", "Ireland"),
          ("Adelaide", "Australia"))
# (phrase, type); a changed time keeps its type, so "in 2004" contradicts "in 2011".
TIMES = (("on Monday", "day"), ("on Tuesday", "day"), ("on Wednesday", "day"),
         ("on Thursday", "day"), ("on Friday", "day"), ("in January", "month"),
         ("in March", "month"), ("in April", "month"), ("in June", "month"),
         ("in September", "month"), ("in November", "month"), ("in 1998", "year"),
         ("in 2004", "year"), ("in 2009", "year"), ("in 2011", "year"), ("in 2015", "year"),
         ("last week", "recent"), ("last month", "recent"), ("last year", "recent"))
_OBJ_CASE = {"we": "us", "i": "me"}  # agents that are pronouns, in the passive's by-phrase


@dataclass(frozen=True)
class Fact:
    agent: str
    verb: str              # key of VERBS
    thing: int             # index of THINGS
    adj: str = ""          # "a new hospital"; only for _ADJ_KINDS
    count: int | None = None  # people hired, percent raised; only for counted kinds
    place: int | None = None  # index of PLACES
    time: int | None = None   # index of TIMES
    neg: bool = False


@dataclass(frozen=True)
class Style:
    """How a fact is worded; :func:`say_fact` is deterministic given the fact and the style."""

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


def object_np(f: Fact, st: Style) -> tuple[str, str]:
    """The object's noun phrase, and what follows the verb after it ("by 8 percent")."""
    thing = THINGS[f.thing]
    general = "thing" in st.general
    noun = thing.hyper if general else thing.nouns[st.nform % len(thing.nouns)]
    if thing.kind in COUNTS:
        if f.count is None or "count" in st.drop:
            return (f"the {noun}" if st.definite else noun), ""
        if thing.kind == "staff":
            return f"{num(f.count)} {noun}", ""
        return noun, f"by {f.count} percent"
    words = noun if general or not f.adj else f"{f.adj} {noun}"
    return f"{'the' if st.definite else article(words)} {words}", ""


def place_phrase(f: Fact, st: Style) -> str:
    city, region = PLACES[f.place]
    return "in " + (region if "place" in st.general else city)


def say_fact(f: Fact, st: Style = Style(), *, cap: bool = True) -> str:
    """One sentence stating ``f``: "In 2004, Maria Lopez built a new hospital in Lyon.".
    ``cap=False`` keeps the first letter as the lexicon has it, to embed the sentence."""
    base, past, part = VERBS[f.verb].forms[st.vform % len(VERBS[f.verb].forms)]
    np, tail = object_np(f, st)
    mods: list[tuple[str, str]] = []
    if f.place is not None and "place" not in st.drop:
        mods.append(("place", place_phrase(f, st)))
    if f.time is not None and "time" not in st.drop:
        mods.append(("time", TIMES[f.time][0]))
    if not st.place_first:
        mods.reverse()
    front = [m for s, m in mods if s == st.front]
    rest = [m for s, m in mods if s != st.front]
    if st.passive and f.agent not in ("we", "i"):
        plural = THINGS[f.thing].kind in COUNTS
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
    return (cap_first(body) if cap else body) + "."


def draw_fact(rng: random.Random, agents: Sequence[str], verbs: Sequence[str] = tuple(VERBS),
              *, p_place: float = 0.7, p_time: float = 0.6, p_neg: float = 0.0) -> Fact:
    verb = rng.choice(verbs)
    kind = rng.choice(VERBS[verb].kinds)
    adj = rng.choice(_ADJS) if kind in _ADJ_KINDS and rng.random() < 0.5 else ""
    count = rng.choice(COUNTS[kind]) if kind in COUNTS and rng.random() < 0.85 else None
    return Fact(agent=rng.choice(agents), verb=verb, thing=rng.choice(_BY_KIND[kind]), adj=adj,
                count=count,
                place=rng.randrange(len(PLACES)) if rng.random() < p_place else None,
                time=rng.randrange(len(TIMES)) if rng.random() < p_time else None,
                neg=rng.random() < p_neg)


def random_style(rng: random.Random, *, frames: bool = True) -> Style:
    return Style(vform=0 if rng.random() < 0.6 else rng.randrange(1, 4),
                 nform=0 if rng.random() < 0.6 else rng.randrange(1, 3),
                 passive=rng.random() < 0.25,
                 front=rng.choice((None, None, None, "place", "time")),
                 place_first=rng.random() < 0.6,
                 frame=rng.randrange(len(_FRAMES)) if frames and rng.random() < 0.35 else None)


def reworded(rng: random.Random, st: Style, *, frames: bool = True, least: int = 2) -> Style:
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


def changes(f: Fact, *, nli: bool = False) -> list[str]:
    """What :func:`changed` can alter in ``f`` to make a conflicting fact.

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
    out += ["antonym"] if VERBS[f.verb].antonym and not f.neg else []
    return out


def changed(f: Fact, rng: random.Random, what: str, agents: Sequence[str]) -> Fact:
    """``f`` with one detail changed: another agent, object, place, date, number or polarity."""
    if what == "agent":
        return replace(f, agent=rng.choice([a for a in agents if a != f.agent]))
    if what == "thing":
        pool = [i for i in _BY_KIND[THINGS[f.thing].kind] if i != f.thing]
        return replace(f, thing=rng.choice(pool))
    if what == "neg":
        return replace(f, neg=not f.neg)
    if what == "place":
        region = PLACES[f.place][1]
        return replace(f, place=rng.choice([i for i, (_, r) in enumerate(PLACES) if r != region]))
    if what == "time":
        kind = TIMES[f.time][1]
        return replace(f, time=rng.choice([i for i, (_, k) in enumerate(TIMES)
                                           if k == kind and i != f.time]))
    if what == "count":
        return replace(f, count=rng.choice([c for c in COUNTS[THINGS[f.thing].kind]
                                            if c != f.count]))
    if what == "antonym":
        return replace(f, verb=VERBS[f.verb].antonym)
    raise ValueError(what)
