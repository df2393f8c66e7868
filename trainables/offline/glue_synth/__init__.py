"""Synthetic GLUE tasks and AG News in their official files' formats, for ``--preset smoke``.

No machine here reaches a dataset hub, so this package writes look-alikes of the eight GLUE tasks
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
words, so a tokenizer trained on it locally stays small. Everything is a pure function of
``seed``: same seed, same bytes.

Modules, by job (import names from them; this package's ``__init__`` imports nothing):

* :mod:`.formats`: the official layouts (task names, folders, headers), default sizes, label
  noise, and the generator's version;
* :mod:`.common`: helpers every task uses (label noise, drawing distinct examples);
* :mod:`.single`: SST-2 and CoLA (single sentences);
* :mod:`.facts`: the small world of news facts that MRPC, MNLI, RTE and QNLI are written
  from;
* :mod:`.pairs`: MRPC, QQP, STS-B (sentence pairs);
* :mod:`.nli`: MNLI, RTE, QNLI;
* :mod:`.write`: :func:`~.write.write_glue` and :func:`~.write.write_glue_task`, the files;
* :mod:`.news`: AG News and :func:`~.news.write_ag_news`;
* :mod:`.synonyms`: :func:`~.synonyms.synonym_table`, an offline synonym list over the same
  vocabulary (sentiment synonyms keep their polarity), for synonym-replacement augmentation;
* :mod:`.cli`: ``python -m trainables.offline.glue_synth OUT_ROOT [--tasks ...] [--seed N]``.
"""
