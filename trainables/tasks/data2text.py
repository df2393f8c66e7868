"""WebNLG 2017 and DART: RDF-style triples -> English text, the E2E family's other two tasks.

Both run through E2E's machinery (:class:`~trainables.tasks.e2e.E2ETask`: the content-keyed
tokenisation cache, ``input <sep> text <eos>`` with the loss on the text, beam search,
grouping the test set by input with all of its references). Only reading the data, the
input linearisation and the scoring differ.

Linearisation, as the LoRA paper's data prep (microsoft/LoRA ``examples/NLG/src/
format_converting_webnlg.py`` / ``format_converting_dart.py``): the triples in their given
order joined as ``subject : relation : object | subject : relation : object``, the values as
the files write them (WebNLG keeps DBpedia's underscores: ``Aarhus : leaderName :
Jacob_Bundsgaard``); DART's relations are lowercased. Every reference is one training row.

Data (``data.source``), the hub, a local directory of the official JSON files, or a local copy
of the hub dataset (``hf download --repo-type dataset ID --local-dir DIR``, read as the hub
name is, with the default config):

* WebNLG 2017 (the challenge release in the JSON the LoRA paper reads, its
  ``data/webnlg_challenge_2017/{train,dev,test}.json``): ``{"entries": [{"<n>": {"category",
  "modifiedtripleset": [{"subject", "property", "object"}], "lexicalisations": [{"lex",
  "comment"}], ...}}]}``. Only lexicalisations whose comment is ``good`` (or absent) are used,
  as the paper's script does (the release marks a few ``toFix``). Hub: ``web_nlg``, config
  ``webnlg_challenge_2017`` unless the source names one (``web_nlg:release_v2``), fields
  ``category``, ``modified_triple_sets.mtriple_set`` (``"s | p | o"`` strings), ``lex.text``
  and ``lex.comment``; its ``test`` split also holds the challenge's no-reference and
  subset files (``test_category``), so when ``testdata_with_lex`` is there only it is kept.
* DART (``dart-v1.1.1-full-{train,dev,test}.json``): ``[{"tripleset": [[s, r, o], ...],
  "subtree_was_extended": ..., "annotations": [{"source", "text"}]}]``. Hub: ``dart``
  (``tripleset``, ``annotations.text``; splits ``train``, ``validation``, ``test``).

Evaluation: E2E's five metrics and TER (:mod:`trainables.metrics.data2text`). WebNLG is also
scored on its ``seen`` test inputs (the 10 categories of the training set) and its ``unseen``
ones (5 new categories), as the LoRA paper reports it (BLEU-U/S/A): ``BLEU`` is all of the
test set, ``BLEU_seen`` and ``BLEU_unseen`` the two parts; the same for METEOR and TER.
Local files and the smoke data take ``seen`` to mean categories present in the training
split; that is the paper's list of 10 on the real release.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from trainables.errors import JSON_TOO_DEEP, UserError, one_of
from trainables.tasks.base import MetricSpec
from trainables.tasks.e2e import E2ETask

if TYPE_CHECKING:
    from trainables.config import TrialConfig

#: The 10 categories of WebNLG 2017's training set (format_converting_webnlg.py's ``seen``);
#: the test set adds Artist, Athlete, CelestialBody, MeanOfTransportation and Politician.
WEBNLG_SEEN = ("Airport", "Astronaut", "Building", "City", "ComicsCharacter", "Food",
               "Monument", "SportsTeam", "University", "WrittenWork")

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Entry:
    """One input: its triples and every usable reference."""

    triples: tuple[tuple[str, str, str], ...]
    references: tuple[str, ...]
    category: str = ""


def linearise(triples: Any, *, lower_relation: bool = False) -> str:
    """``[(s, r, o), ...]`` -> ``'s : r : o | s : r : o'`` (the LoRA paper's data prep)."""
    return " | ".join(f"{s} : {r.lower() if lower_relation else r} : {o}" for s, r, o in triples)


def _fail(path: Any, where: str, what: str) -> UserError:
    return UserError("data.source", f"{path}: {where}: {what}")


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        raise UserError("data.source", f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise UserError("data.source", f"{path} line {e.lineno}: not valid JSON ({e.msg})") from None
    except RecursionError:
        raise UserError("data.source", f"{path}: {JSON_TOO_DEEP}") from None


def _text(value: Any, path: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, where, "missing, empty or not a string")
    return value


# --------------------------------------------------------------------------- WebNLG


def parse_webnlg(obj: Any, path: Any = "WebNLG JSON") -> list[Entry]:
    """Entries of a WebNLG 2017 JSON file (the LoRA paper's layout), strictly checked: the
    first problem is named by its JSON path (``entries[3]["4"].modifiedtripleset[0].property``)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("entries"), list):
        raise _fail(path, "top level", "expected an object with an 'entries' list (the WebNLG "
                                       "2017 JSON layout)")
    out = []
    for i, wrapped in enumerate(obj["entries"]):
        if not isinstance(wrapped, dict) or len(wrapped) != 1:
            raise _fail(path, f"entries[{i}]", "expected an object with one key, the entry's "
                                               'id ({"1": {...}})')
        (key, entry), = wrapped.items()
        where = f'entries[{i}]["{key}"]'
        if not isinstance(entry, dict):
            raise _fail(path, where, "expected an object")
        category = _text(entry.get("category"), path, f"{where}.category")
        tripleset = entry.get("modifiedtripleset")
        if not isinstance(tripleset, list) or not tripleset:
            raise _fail(path, f"{where}.modifiedtripleset", "missing, empty or not a list")
        triples = []
        for j, t in enumerate(tripleset):
            tw = f"{where}.modifiedtripleset[{j}]"
            if not isinstance(t, dict):
                raise _fail(path, tw, "expected an object with subject, property, object")
            triples.append(tuple(_text(t.get(k), path, f"{tw}.{k}")
                                 for k in ("subject", "property", "object")))
        lexes = entry.get("lexicalisations")
        if not isinstance(lexes, list):
            raise _fail(path, f"{where}.lexicalisations", "missing or not a list")
        refs = []
        for j, lex in enumerate(lexes):
            lw = f"{where}.lexicalisations[{j}]"
            if not isinstance(lex, dict):
                raise _fail(path, lw, "expected an object with 'lex' and 'comment'")
            text = lex.get("lex")
            if not isinstance(text, str):
                raise _fail(path, f"{lw}.lex", "missing or not a string")
            if text.strip() and lex.get("comment", "good") in ("good", ""):
                refs.append(text.strip())
        out.append(Entry(tuple(triples), tuple(refs), category))
    if not out:
        raise _fail(path, "entries", "no entries")
    return out


def _webnlg_hub_rows(ds: Any, *, test: bool) -> list[Entry]:
    """Rows of the hub's ``web_nlg`` -> entries (``"s | p | o"`` triple strings)."""
    missing = [c for c in ("category", "modified_triple_sets", "lex") if c not in ds.column_names]
    if missing:
        raise UserError("data.source", f"web_nlg rows lack {', '.join(missing)} (columns: "
                                       f"{ds.column_names})")
    if test and "test_category" in ds.column_names and "testdata_with_lex" in set(ds["test_category"]):
        ds = ds.filter(lambda r: r["test_category"] == "testdata_with_lex")
    out = []
    for row in ds:
        sets = row["modified_triple_sets"]["mtriple_set"]
        triples = tuple(tuple(part.strip() for part in t.split(" | ", 2)) for t in (sets[0] if sets else []))
        lex = row["lex"]
        comments = lex.get("comment") or [""] * len(lex["text"])
        refs = tuple(t.strip() for t, c in zip(lex["text"], comments) if c in ("good", ""))
        out.append(Entry(triples, refs, row["category"]))
    return out


# --------------------------------------------------------------------------- DART


def parse_dart(obj: Any, path: Any = "DART JSON") -> list[Entry]:
    """Entries of a DART JSON file, strictly checked (``[5].tripleset[1]`` names a problem)."""
    if not isinstance(obj, list):
        raise _fail(path, "top level", "expected a list of {tripleset, annotations} objects "
                                       "(the DART JSON layout)")
    out = []
    for i, item in enumerate(obj):
        if not isinstance(item, dict):
            raise _fail(path, f"[{i}]", "expected an object with 'tripleset' and 'annotations'")
        tripleset = item.get("tripleset")
        if not isinstance(tripleset, list) or not tripleset:
            raise _fail(path, f"[{i}].tripleset", "missing, empty or not a list")
        triples = []
        for j, t in enumerate(tripleset):
            if not (isinstance(t, list) and len(t) == 3 and all(isinstance(x, str) for x in t)):
                raise _fail(path, f"[{i}].tripleset[{j}]", "expected [subject, relation, object] strings")
            triples.append(tuple(t))
        annotations = item.get("annotations")
        if not isinstance(annotations, list) or not annotations:
            raise _fail(path, f"[{i}].annotations", "missing, empty or not a list")
        refs = []
        for j, a in enumerate(annotations):
            text = a.get("text") if isinstance(a, dict) else None
            if not isinstance(text, str):
                raise _fail(path, f"[{i}].annotations[{j}].text", "missing or not a string")
            if text.strip():
                refs.append(text.strip())
        out.append(Entry(tuple(triples), tuple(refs)))
    if not out:
        raise _fail(path, "top level", "no entries")
    return out


def _dart_hub_rows(ds: Any, *, test: bool) -> list[Entry]:
    missing = [c for c in ("tripleset", "annotations") if c not in ds.column_names]
    if missing:
        raise UserError("data.source", f"dart rows lack {', '.join(missing)} (columns: "
                                       f"{ds.column_names})")
    return [Entry(tuple(tuple(t) for t in row["tripleset"]),
                  tuple(t.strip() for t in row["annotations"]["text"])) for row in ds]


# --------------------------------------------------------------------------- the tasks


class Data2TextTask(E2ETask):
    """E2E's task with triple inputs read from WebNLG- or DART-style files."""

    formats = ("paper",)
    #: split -> the official file name in a local directory
    files: ClassVar[dict[str, str]]
    #: split -> the hub dataset's split name
    hub_splits: ClassVar[dict[str, str]]
    hub_config: ClassVar[str | None] = None
    #: the hub dataset's name, for messages
    hub_name: ClassVar[str]
    lower_relation: ClassVar[bool] = False
    subsets: ClassVar[tuple[str, ...]] = ()

    final_metrics = (*E2ETask.final_metrics, MetricSpec("TER", "min", "TER", "{:.2f}"))

    # ----------------------------------------------------------- reading
    def check(self, cfg: TrialConfig) -> None:
        from trainables.hub import check_dataset_source, check_hub_copy, looks_local

        fmt = cfg.data.format or self.default_format()
        if fmt not in self.formats:
            raise UserError("data.format", f"{self.title} accepts {one_of(self.formats)}, got {fmt!r}")
        if looks_local(cfg.data.source):
            source = Path(cfg.data.source).expanduser()
            if not source.exists():
                raise UserError("data.source", f"data directory {cfg.data.source} does not exist")
            copy = self.hub_copy(cfg.data.source)
            if copy is not None:
                check_hub_copy(copy, self.hub_config, tuple(self.hub_splits.values()))
            else:
                self.check_local(source)
        else:  # a hub name, with an optional config: web_nlg:release_v2
            check_dataset_source(cfg.data.source.partition(":")[0], revision=cfg.data.revision)

    def parse(self, obj: Any, path: Any) -> list[Entry]:
        raise NotImplementedError

    def hub_rows(self, ds: Any, *, test: bool) -> list[Entry]:
        raise NotImplementedError

    def hub_copy(self, source: str) -> Path | None:
        """``source`` as a local copy of the hub dataset, read as the hub name is (with
        ``hub_config``); None when it is not one, or when it holds any of the official files
        (which are read first)."""
        from trainables.hub import hub_copy

        return hub_copy(source, official=self.files.values())

    def data_files(self, source: Path) -> dict[str, Path]:
        if not source.is_dir():
            raise UserError("data.source", f"{source} is not a directory; expected one with the "
                                           f"official {self.title} files ({', '.join(self.files.values())})")
        missing = [n for n in self.files.values() if not (source / n).is_file()]
        if missing:
            raise UserError("data.source", f"{source} lacks {', '.join(missing)} (the official "
                                           f"{self.title} files; a folder with none of them is read as a "
                                           "local copy of the hub dataset: `hf download --repo-type dataset "
                                           f"{self.hub_name} --local-dir DIR`)")
        return {split: source / n for split, n in self.files.items()}

    def check_local(self, source: Path) -> None:
        for path in self.data_files(source).values():
            entries = self.parse(_load_json(path), path)
            if not any(e.references for e in entries):
                raise _fail(path, "entries", "no usable references (lexicalisations with "
                                             "comment 'good')")

    def read_entries(self, cfg: TrialConfig) -> dict[str, list[Entry]]:
        from trainables.hub import copy_split, read_hub_dataset

        source = Path(cfg.data.source).expanduser()
        copy = self.hub_copy(cfg.data.source)
        if source.exists() and copy is None:
            return {split: self.parse(_load_json(p), p) for split, p in self.data_files(source).items()}
        name, _, config = ("", "", "") if copy else cfg.data.source.partition(":")
        dd = read_hub_dataset(name, config or self.hub_config, revision=cfg.data.revision, copy=copy)
        out = {}
        for split, hub_split in self.hub_splits.items():
            found = copy_split(dd, hub_split) if copy else hub_split if hub_split in dd else None
            if found is None:
                raise UserError("data.source", f"{cfg.data.source} has no {hub_split!r} split "
                                               f"(it has {one_of(dd.keys())})")
            out[split] = self.hub_rows(dd[found], test=split == "test")
        return out

    def read_rows(self, cfg: TrialConfig) -> dict[str, Any]:
        entries = self.read_entries(cfg)
        rows: dict[str, Any] = {}
        for split in SPLITS:
            rows[split] = [(linearise(e.triples, lower_relation=self.lower_relation), ref)
                           for e in entries[split] for ref in dict.fromkeys(e.references)]
        if self.subsets:
            train_categories = {e.category for e in entries["train"]}
            rows["test_subset"] = {
                linearise(e.triples, lower_relation=self.lower_relation):
                    "seen" if e.category in train_categories else "unseen"
                for e in entries["test"]}
        return rows

    def format_input(self, text: str, fmt: str) -> str:
        return text  # linearised when read (one format, the paper's)

    # ----------------------------------------------------------- test set and scoring
    def limit_test(self, n_inputs: int, limit: int | None) -> list[int]:
        # A fixed random subset (seed 0): the official test files are ordered by category,
        # so the first N inputs would hold no unseen ones.
        if limit is None or limit >= n_inputs:
            return list(range(n_inputs))
        return sorted(random.Random(0).sample(range(n_inputs), limit))

    def test_extras(self, rows: dict[str, Any], inputs: list[str]) -> dict[str, Any]:
        if not self.subsets:
            return {}
        labels = [rows["test_subset"][x] for x in inputs]
        return {"subsets": {name: [i for i, s in enumerate(labels) if s == name]
                            for name in self.subsets}}

    def score(self, test: dict[str, Any], hyps: list[str], cfg: TrialConfig) -> dict[str, Any]:
        from trainables.metrics.data2text import score_data2text

        return dict(score_data2text(test["references"], hyps, subsets=test.get("subsets"),
                                    meteor=cfg.eval.meteor))

    @property
    def title(self) -> str:
        return type(self).__name__.removesuffix("Task")


class WebNLGTask(Data2TextTask):
    name = "webnlg"
    files = {"train": "train.json", "validation": "dev.json", "test": "test.json"}
    hub_splits = {"train": "train", "validation": "dev", "test": "test"}
    hub_config = "webnlg_challenge_2017"
    hub_name = "web_nlg"
    subsets = ("seen", "unseen")
    final_metrics = (
        MetricSpec("BLEU", "max", "BLEU", "{:.2f}"),
        MetricSpec("BLEU_seen", "max", "BLEU-S", "{:.2f}"),
        MetricSpec("BLEU_unseen", "max", "BLEU-U", "{:.2f}"),
        MetricSpec("METEOR", "max", "METEOR", "{:.2f}"),
        MetricSpec("METEOR_seen", "max", "MET-S", "{:.2f}"),
        MetricSpec("METEOR_unseen", "max", "MET-U", "{:.2f}"),
        MetricSpec("TER", "min", "TER", "{:.2f}"),
        MetricSpec("TER_seen", "min", "TER-S", "{:.2f}"),
        MetricSpec("TER_unseen", "min", "TER-U", "{:.2f}"),
        MetricSpec("NIST", "max", "NIST", "{:.3f}"),
        MetricSpec("ROUGE_L", "max", "ROUGE-L", "{:.2f}"),
        MetricSpec("CIDEr", "max", "CIDEr", "{:.3f}"),
    )

    def parse(self, obj: Any, path: Any) -> list[Entry]:
        return parse_webnlg(obj, path)

    def hub_rows(self, ds: Any, *, test: bool) -> list[Entry]:
        return _webnlg_hub_rows(ds, test=test)


class DARTTask(Data2TextTask):
    name = "dart"
    files = {"train": "dart-v1.1.1-full-train.json", "validation": "dart-v1.1.1-full-dev.json",
             "test": "dart-v1.1.1-full-test.json"}
    hub_splits = {"train": "train", "validation": "validation", "test": "test"}
    hub_name = "dart"
    lower_relation = True

    def parse(self, obj: Any, path: Any) -> list[Entry]:
        return parse_dart(obj, path)

    def hub_rows(self, ds: Any, *, test: bool) -> list[Entry]:
        return _dart_hub_rows(ds, test=test)
