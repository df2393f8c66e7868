"""Synonyms for augmentation: one-word synonyms of the generators' content words
(:func:`synonym_table`, :func:`write_synonyms`). Sentiment words only map within their
polarity cluster, so replacement never flips an SST-2 label."""

from __future__ import annotations

import json
import random
from pathlib import Path

from trainables.offline.glue_synth.facts import THINGS, VERBS
from trainables.offline.glue_synth.single import SST_NEGATIVE, SST_POSITIVE

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
    for verb in VERBS.values():
        for i in range(3):  # bases together, pasts together, participles together
            groups.append(tuple(dict.fromkeys(form[i] for form in verb.forms)))
    groups += [t.nouns for t in THINGS]
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
