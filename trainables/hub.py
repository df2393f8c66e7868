"""Hub names and local paths through one door.

Models and datasets are named either by a Hugging Face Hub id (``gpt2-medium``, ``e2e_nlg``)
or by a local path. Both are then loaded by the same ``from_pretrained`` / ``load_dataset``
calls. This module answers, before anything launches, whether the source can be had: a local
path must exist, a hub id must be in the local cache or the hub must answer within seconds.
When it does not, the error names ``--preset smoke`` and the local-path options.

A local copy of a hub dataset repository (``hf download --repo-type dataset ID --local-dir
DIR``) is recognised (:func:`hub_copy`), checked (:func:`check_hub_copy`) and read
(:func:`read_hub_dataset`) here, with the keywords ``datasets`` needs to read such a copy as
it reads the repository on the hub.
"""

from __future__ import annotations

import contextlib
import functools
import os
from copy import deepcopy
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from trainables.cache import hub_copy_files, hub_copy_identity, settled_version
from trainables.errors import UserError, first_line, one_of

HUB_TIMEOUT_S = 10.0

OFFLINE_HINT = ("Offline? Run with --preset smoke (a tiny local model and synthetic data), or "
                "pass local copies: --model PATH (a directory from_pretrained accepts) and "
                "--data DIR (the dataset's official files, or the hub dataset's files as "
                "`hf download --repo-type dataset ID --local-dir DIR` writes them)")


#: Endings of data files, which no hub id has: ``train.jsonl`` is a file that is not there.
FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".arrow", ".txt")


def looks_local(source: str) -> bool:
    """A path rather than a hub id: it exists, or it is written like a path."""
    if Path(source).expanduser().exists():
        return True
    # Hub ids are ``name`` or ``org/name``; anything deeper or anchored is a path, as is a file name.
    return (source.startswith(("/", "./", "../", "~")) or source.count("/") > 1
            or source.lower().endswith(FILE_SUFFIXES))


#: How the hub's parquet conversion names split folders (``validation_matched`` too).
SPLIT_FOLDERS = ("train", "validation", "test", "dev")


def hub_copy(source: str, *, official: Iterable[str] = ()) -> Path | None:
    """``source`` as a local copy of a hub dataset repository (what ``hf download --repo-type
    dataset ID --local-dir DIR`` writes), else None: a directory with a ``README.md`` dataset
    card that lists its ``configs`` or sits beside data files, or with parquet files at its top,
    one folder down (``plain_text/*.parquet``) or in a split's folder two down
    (``default/train/0000.parquet``: the hub's parquet conversion, ``--revision
    refs/convert/parquet``, which has no card). Tasks read such a copy with the same
    ``datasets.load_dataset(source, config)`` call as the hub id. A directory holding any of
    ``official`` (the dataset's own release files, paths in it) is read as those instead."""
    d = Path(source).expanduser()
    if not d.is_dir() or any((d / name).is_file() for name in official):
        return None
    card = _card(d)
    if card is not None and (card.get("configs") or any(
            name.lower().endswith(FILE_SUFFIXES) for name in hub_copy_files(d))):
        return d
    return d if _parquet_roots(d) else None


def _card(d: Path) -> dict | None:
    """The metadata of ``d``'s ``README.md`` dataset card (None without one); a card that
    has not changed for a while is parsed once (:func:`_parsed_card`) and copied for each caller."""
    readme = d / "README.md"
    if not readme.is_file():
        return None
    version = settled_version(readme)
    return deepcopy(_parsed_card(*version)) if version else _parse_card(readme)


@functools.lru_cache(maxsize=16)
def _parsed_card(readme: str, *version: int) -> dict | None:
    """:func:`_parse_card`, cached by the card's :func:`~trainables.cache.settled_version`."""
    return _parse_card(Path(readme))


def _parse_card(readme: Path) -> dict | None:
    from huggingface_hub import metadata_load

    try:
        meta = metadata_load(readme)
    except Exception:  # metadata that is not YAML: not a dataset card
        return None
    return meta if isinstance(meta, dict) else None


def _parquet_roots(d: Path) -> set[str]:
    """The folders of ``d`` whose parquet files make one config each, as a card-less copy lays
    them out (``''``: ``d`` itself): files at the top or in split folders are ``d``'s own,
    ``<config>/*.parquet`` and ``<config>/<split>/*.parquet`` that config's."""
    roots = {""} if any(d.glob("*.parquet")) else set()
    for f in d.glob("*/*.parquet"):
        roots.add("" if f.parent.name.startswith(SPLIT_FOLDERS) else f.parent.name)
    roots |= {f.parent.parent.name for f in d.glob("*/*/*.parquet") if f.parent.name.startswith(SPLIT_FOLDERS)}
    return roots


def hub_copy_config(d: Path, config: str | None) -> str | None:
    """The config to ask ``datasets`` for in the hub copy ``d``: ``config`` when its card lists
    configs; None in a copy without them, which holds one config's files (the hub's parquet
    conversion of one config: ``--data DIR/<config>``)."""
    return config if (_card(d) or {}).get("configs") else None


def read_hub_dataset(source: str, config: str | None = None, *, revision: str | None = None,
                     copy: Path | None = None) -> Any:
    """``datasets.load_dataset`` of the hub dataset ``source`` (``config``), or of its local
    copy ``copy`` (:func:`hub_copy`): the same call on the copy's folder, with the config as
    :func:`hub_copy_config` gives it (none for a copy without a card), the copy's own cache
    directory and card keywords (:func:`hub_copy_load`), and no progress bars, as other local
    files are read."""
    import datasets

    datasets.logging.set_verbosity_error()
    if copy is None:
        return datasets.load_dataset(source, config, revision=revision)
    with no_progress_bars():
        return datasets.load_dataset(str(copy), hub_copy_config(copy, config), revision=revision,
                                     **hub_copy_load(copy, config))


@contextlib.contextmanager
def no_progress_bars() -> Iterator[None]:
    """``datasets`` reading local files: no "Generating split" bars (it takes a moment; the
    tokenisation that follows shows its own progress when it takes long)."""
    import datasets

    shown = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if shown:
            datasets.enable_progress_bars()


def hub_copy_load(d: Path, config: str | None = None) -> dict[str, Any]:
    """``load_dataset`` keywords for ``config`` of the hub copy ``d``: a cache directory of its
    own per content (:func:`hub_copy_identity`) in lorasweep's ``hub-copies`` cache, and
    :func:`_card_kwargs`. ``datasets`` files what it builds from a local directory under the
    directory's name, config and file patterns, not under its path or its files' content, so
    two copies of the same name, or a copy whose files changed, would otherwise be read from
    one earlier build; ``lorasweep cache clear hub-copies`` removes these builds (those of
    contents still in use are built again when next read)."""
    from trainables.cache import fingerprint
    from trainables.paths import cache_dir

    return {"cache_dir": str(cache_dir() / "hub-copies" / fingerprint(hub_copy_identity(d))),
            **_card_kwargs(d, config)}


def _card_kwargs(d: Path, config: str | None) -> dict[str, Any]:
    """``datasets`` picks a local copy's file format from the files of its card's first
    config, so a copy downloaded without them (``--include``) is unreadable as it is: for
    such a copy, ``config``'s data files and features as the card gives them."""
    configs = _card_configs(d)
    first = next(iter(configs.values()), {})
    if not configs or any(_matches(d, p) for p in _patterns(first.get("data_files"))):
        return {}
    files = card_data_files(d, config)
    if files is None:
        return {}
    from datasets.info import DatasetInfosDict

    name = config or _default_config(configs)
    info = DatasetInfosDict.from_dataset_card_data(_card_data(d)).get(name)
    return {"data_files": files, **({"features": info.features} if info and info.features else {})}


def _card_data(d: Path) -> Any:
    from huggingface_hub import DatasetCardData

    return DatasetCardData(**(_card(d) or {}))


def _card_configs(d: Path) -> dict[str, dict[str, Any]]:
    """The configs the card of ``d`` lists, by name, as ``datasets`` reads them."""
    from datasets.utils.metadata import MetadataConfigs

    try:
        return MetadataConfigs.from_dataset_card_data(_card_data(d))
    except Exception:  # a card whose configs datasets cannot read: it reports that itself
        return {}


def _default_config(configs: Any) -> str | None:
    """The config ``datasets`` reads when none is named: the one marked ``default: true``, the
    one named ``default`` or the only one (None: none, or several)."""
    try:
        return configs.get_default_config_name() if configs else None
    except ValueError:
        return None


def card_data_files(d: Path, config: str | None) -> Any:
    """The ``data_files`` the card of ``d`` lists for ``config`` (None: the default config),
    in ``load_dataset``'s form; None when the card lists no files for it."""
    configs = _card_configs(d)
    files = configs.get(config or _default_config(configs) or "", {}).get("data_files")
    if isinstance(files, list) and files and all(isinstance(f, dict) for f in files):
        return {f.get("split", "train"): f.get("path") for f in files}
    return files


def _patterns(files: Any) -> list[str]:
    values = files.values() if isinstance(files, dict) else [files]
    return [p for v in values for p in ([v] if isinstance(v, str) else v or []) if isinstance(p, str)]


def _matches(d: Path, pattern: str) -> bool:
    """Whether a card's file pattern finds a file in ``d`` (a pattern ``Path.glob`` cannot take
    counts as found: ``datasets`` judges it)."""
    try:
        return any(d.glob(pattern))
    except (ValueError, NotImplementedError):
        return True


def check_hub_copy(d: Path, config: str | None, splits: tuple[str, ...], *, field: str = "data.source") -> None:
    """Raise UserError unless ``datasets`` finds ``config`` and each of ``splits`` in the hub
    copy ``d`` (read from its card and file names; no data is loaded)."""
    import datasets

    configs = _card_configs(d)
    listed = list(configs)
    roots = _parquet_roots(d)
    if not listed and len(roots) > 1:
        pick = config if config in roots else sorted(roots - {""})[0]
        raise UserError(field, f"{d} holds the files of several configs ({', '.join(sorted(r or '.' for r in roots))}) "
                               f"and no card that lists them; give one config's folder: --data {d / pick}")
    named = sorted(roots - {""})
    if not listed and config is not None and named and config not in named:
        # One config's folder (several were refused above), not the one asked for.
        raise UserError(field, f"{d} holds only the files of config {named[0]!r}, not {config!r}, and no card; "
                               f"give the folder of {config!r}, or --data {d / named[0]} if those are its files")
    if not listed and config is not None and not named and d.name != config and config in _parquet_roots(d.parent):
        # Another config's folder of a conversion that holds the one asked for beside it; a
        # folder of another name without that one beside it is the user's own copy, read as given.
        raise UserError(field, f"{d} is the folder of config {d.name!r} of the copy in {d.parent}, not of "
                               f"{config!r}; give the folder of {config!r}")
    if listed and config is None and _default_config(configs) is None:
        raise UserError(field, f"{d} has several configs ({', '.join(listed)}) and no default one; give the "
                               "folder of one, where each has its own (its card's data_files say which): "
                               "--data DIR/<folder>")
    if listed and config is not None and config not in configs:
        raise UserError(field, f"{d} has no config {config!r}; its card lists {', '.join(listed)}")
    config = hub_copy_config(d, config)
    files = card_data_files(d, config)
    # The card lists every config whether or not its files were downloaded (``--include``).
    if files is not None and not any(_matches(d, p) for p in _patterns(files)):
        raise UserError(field, f"{d} has no data files{f' for {config!r}' if config else ''}; its card names "
                               "them, but they were not downloaded")
    datasets.logging.set_verbosity_error()
    try:
        builder = datasets.load_dataset_builder(str(d), config, **_card_kwargs(d, config))
    except Exception as e:  # an unknown config, a file the card names that is not there
        raise UserError(field, f"{d} is a hub dataset copy that `datasets` cannot read"
                               f"{f' as {config!r}' if config else ''} ({first_line(e)})") from None
    have = [split for split, found in (builder.config.data_files or {}).items() if found]
    missing = [s for s in splits if copy_split(have, s) is None]
    if missing:
        raise UserError(field, f"{d}{f' ({config})' if config else ''} has no {missing[0]!r} split "
                               f"(it has {one_of(have)})")


def copy_split(have: Iterable[str], split: str) -> str | None:
    """The name of the hub's split ``split`` among a local copy's splits ``have``: ``split``
    itself, else the standard split that ``datasets`` names it by where it infers splits from
    folder and file names (a copy without a card: the folder ``dev/`` is read as
    ``validation``); None when the copy lacks it."""
    from datasets.data_files import SPLIT_KEYWORDS

    have = list(have)
    if split in have:
        return split
    return next((str(std) for std, words in SPLIT_KEYWORDS.items() if split in words and str(std) in have), None)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def _cached(repo_id: str, filename: str, *, repo_type: str, revision: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, filename, revision=revision, repo_type=repo_type)
    except Exception:  # an id that is not a valid repo id at all
        return False
    return isinstance(found, str)


def _dataset_cached(repo_id: str) -> bool:
    from huggingface_hub import scan_cache_dir

    try:
        info = scan_cache_dir()
    except Exception:
        return False
    return any(r.repo_id == repo_id and r.repo_type == "dataset" for r in info.repos)


def check_model_source(source: str, *, revision: str | None = None,
                       field: str = "model.name_or_path") -> None:
    """Raise UserError unless the model can be loaded: a local directory with a
    ``config.json``, or a hub id that is cached or reachable."""
    if looks_local(source):
        path = Path(source).expanduser()
        if not path.is_dir():
            raise UserError(field, f"model directory {source} " + ("is a file, not a directory" if path.exists()
                                                                   else "does not exist"))
        if not (path / "config.json").is_file():
            raise UserError(field, f"{source} has no config.json; expected a directory written "
                                   "by save_pretrained")
        return
    if _cached(source, "config.json", repo_type="model", revision=revision):
        return
    _ask_hub(source, repo_type="model", revision=revision, field=field)


def check_dataset_source(source: str, *, revision: str | None = None,
                         field: str = "data.source") -> None:
    """Raise UserError unless a hub dataset is cached or reachable (local paths are checked by
    the task, which knows its file layout)."""
    if _dataset_cached(source):
        return
    _ask_hub(source, repo_type="dataset", revision=revision, field=field)


def _ask_hub(repo_id: str, *, repo_type: str, revision: str | None, field: str) -> None:
    kind = "model" if repo_type == "model" else "dataset"
    if _offline():
        raise UserError(field, f"{kind} {repo_id!r} is not in the local Hugging Face cache and "
                               f"HF_HUB_OFFLINE is set. {OFFLINE_HINT}")
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    api = HfApi()
    try:
        if repo_type == "model":
            api.model_info(repo_id, revision=revision, timeout=HUB_TIMEOUT_S)
        else:
            api.dataset_info(repo_id, revision=revision, timeout=HUB_TIMEOUT_S)
    except RepositoryNotFoundError:
        raise UserError(field, f"no {kind} {repo_id!r} on the Hugging Face Hub and no local "
                               f"path of that name") from None
    except RevisionNotFoundError:
        raise UserError(field, f"{kind} {repo_id!r} has no revision {revision!r}") from None
    except Exception as e:  # DNS failure, refused connection, timeout, proxy error...
        raise UserError(field, f"cannot reach the Hugging Face Hub for {kind} {repo_id!r} "
                               f"({first_line(e, limit=160)}). {OFFLINE_HINT}") from None
