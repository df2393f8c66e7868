"""Synthetic AG News as its ``ag_news_csv`` release (:func:`write_ag_news`).

"Class Index","Title","Description", no header, every field quoted; 1 World, 2 Sports,
3 Business, 4 Sci/Tech. Titles are headline-cased and often end in "(Reuters)"; descriptions
start with a source ("LONDON (Reuters) - ") and, as in the real release, sometimes carry the
HTML-damaged apostrophe " #39;s".
"""

from __future__ import annotations

import csv
import random
from collections.abc import Hashable
from pathlib import Path

from trainables.offline.glue_synth.common import cap_first, draw_distinct, noisy
from trainables.offline.glue_synth.formats import AG_NEWS_CLASSES, AG_NEWS_SIZES, LABEL_NOISE

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
    return " ".join(w if i and w.lower() in _AG_SMALL else cap_first(w)
                    for i, w in enumerate(words))


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
            lead = f"{cap_first(the_a)} {vp} {the_b} {score} {day} " \
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
    body = [cap_first(lead)] + ([detail] if rng.random() < 0.6 else []) + \
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
            [(title, desc)] = draw_distinct(lambda c=cls: _ag_item(rng, c), 1, seen,
                                            key=lambda e: e)
            rows.append((noisy(rng, cls, (1, 2, 3, 4), noise), title, desc))
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
