"""Single-sentence tasks: SST-2 (sentiment) and CoLA (acceptability), each as its official
files' rows (:func:`sst2_files`, :func:`cola_files`)."""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Sequence

from trainables.offline.glue_synth.common import article, cap_first, draw_distinct, noisy
from trainables.offline.glue_synth.formats import LABEL_NOISE

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
        return f"{article(it + adj1)} {it}{adj1} , {adj2} {rng.choice(_SST_GENRES)} " \
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


def sst2_files(rng: random.Random, n_train: int, n_dev: int, n_test: int) -> dict[str, list]:
    seen: set[Hashable] = set()
    noise = LABEL_NOISE["sst2"]

    def make(phrases: bool) -> Callable[[], tuple]:
        def one() -> tuple:
            y = int(rng.random() < 0.56)  # the real train split is 56% positive
            text = (_sst_phrase if phrases and rng.random() < 0.2 else _sst_sentence)(rng, y)
            return text, noisy(rng, y, (0, 1), noise)
        return one

    train = draw_distinct(make(True), n_train, seen, key=lambda e: e[0])
    dev = draw_distinct(make(False), n_dev, seen, key=lambda e: e[0])
    test = draw_distinct(make(False), n_test, seen, key=lambda e: e[0])
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
    return cap_first(" ".join(toks[:-1])) + toks[-1]


def cola_files(rng: random.Random, n_train: int, n_dev: int, n_test: int) -> dict[str, list]:
    seen: set[Hashable] = set()
    noise = LABEL_NOISE["cola"]

    def one() -> tuple:
        good, bads = _cola_item(rng)
        y = int(rng.random() < 0.7)
        if y:
            toks = good
        else:
            toks = rng.choice(bads) if rng.random() < 0.6 else _cola_generic(rng, good)
        return _cola_text(toks), noisy(rng, y, (0, 1), noise), rng.choice(_C_SOURCES)

    rows = {name: draw_distinct(one, n, seen, key=lambda e: e[0])
            for name, n in (("train.tsv", n_train), ("dev.tsv", n_dev), ("test.tsv", n_test))}
    labelled = {name: [(src, str(y), "" if y else "*", text) for text, y, src in rows[name]]
                for name in ("train.tsv", "dev.tsv")}
    return {**labelled, "test.tsv": [(str(i), t) for i, (t, _, _) in enumerate(rows["test.tsv"])]}
