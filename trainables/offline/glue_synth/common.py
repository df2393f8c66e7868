"""Helpers every synthetic task uses: news-style words, label noise, distinct draws."""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Sequence


def cap_first(s: str) -> str:
    return s[:1].upper() + s[1:]


def article(np: str) -> str:
    # Every word that can follow an article here is pronounced as spelled.
    return "an" if np[:1].lower() in "aeiou" else "a"


NUM_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight",
             9: "nine"}


def num(n: int) -> str:
    """News style: numbers under ten in words, the rest in digits."""
    return NUM_WORDS.get(n, str(n))


def noisy(rng: random.Random, label, labels: Sequence, rate: float):
    """``label``, or with probability ``rate`` another of ``labels``."""
    if rng.random() < rate:
        return rng.choice([lab for lab in labels if lab != label])
    return label


def draw_distinct(make: Callable[[], tuple], n: int, seen: set[Hashable],
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


def labelled_pairs(rng: random.Random, pair: Callable[[random.Random, bool], tuple[str, str]],
                   n: int, *, p_yes: float, noise: float, labels: tuple = (0, 1),
                   yes: object = 1, key: Callable[[tuple], Hashable] = lambda e: e[:2]
                   ) -> list[tuple]:
    """``n`` distinct ``(text1, text2, label)`` of a two-class pair task: ``pair(rng, True)``
    (drawn with probability ``p_yes``) is labelled ``yes``, ``pair(rng, False)`` the other of
    ``labels``, then :func:`noisy` at rate ``noise``. No two share their ``key``."""
    no = next(lab for lab in labels if lab != yes)

    def one() -> tuple:
        flag = rng.random() < p_yes
        a, b = pair(rng, flag)
        return a, b, noisy(rng, yes if flag else no, labels, noise)

    return draw_distinct(one, n, set(), key=key)
