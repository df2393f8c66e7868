"""E2E reference and system-output files in the formats the official scorer reads.

References: ``.csv``/``.tsv`` with an MR column and a reference column (rows sharing an MR
form one group), or plain text with groups separated by blank lines. System outputs: plain
text, one output per line, or ``.csv``/``.tsv`` with an MR column and an output column.
Header names are matched as ``measure_scores.py`` (tuetschek/e2e-metrics) matches them. A
table without a header has two columns, MR then text; a first row that looks like a header
(every field a name such as ``input`` or ``gold_text``) but names no known column is refused,
not scored as data.
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path


def one_line(text: str) -> str:
    """Line breaks inside one reference or output become spaces."""
    return re.sub(r"[\r\n]+", " ", text).strip()


def read_references(path: str | Path,
                    items: int | None = None) -> tuple[list[str] | None, list[list[str]]]:
    """Read an E2E reference file in one of the official scorer's formats.

    * ``.csv`` / ``.tsv``: a header naming an MR column (``mr``, ``src``, ``source``,
      ``meaning_representation``, ...) and a reference column (``ref``, ``reference``,
      ``target``, ``human_reference``, ...), or no header and exactly two columns (MR, ref)
      with a first row that is data, not a row of column names.
      Rows with the same MR form one reference group; groups keep the order in which their
      MR first appears (the official release lists an MR's references on consecutive rows).
    * anything else: plain text, one reference per line, groups separated by blank lines. A
      file without any blank line holds one reference per item (as the official scorer reads
      it), except when ``items`` is 1: then its lines are the references of that one item
      (one output scored against a file of several single references could not be paired).

    Args:
        items: the number of system outputs these references are paired with, if known.

    Returns:
        ``(mrs, groups)``: the MR of each group (``None`` for plain text) and the groups.

    Raises:
        OSError: the file cannot be read.
        ValueError: the file is not UTF-8 or not in one of these formats (message names it).
    """
    path = Path(path)
    if _is_table(path):
        mrs, texts = _read_table(path, _HEADER_REF, "reference")
        groups: dict[str, list[str]] = {}
        for mr, text in zip(mrs, texts):
            groups.setdefault(mr, []).append(text)
        return list(groups), list(groups.values())
    lines = [line.strip() for line in _read_text(path).splitlines()]
    groups_list: list[list[str]] = [[]]
    for line in lines:
        if line:
            groups_list[-1].append(line)
        elif groups_list[-1]:
            # Runs of blank lines count as one separator (the official scorer would make an
            # empty group of them and then fail).
            groups_list.append([])
    if not groups_list[-1]:
        groups_list.pop()
    if not groups_list:
        raise ValueError(f"{path}: no references in the file")
    if len(groups_list) == 1 and items != 1:
        groups_list = [[line] for line in groups_list[0]]
    return None, groups_list



# The official scorer's header patterns (measure_scores.py), matched the same way (re.match,
# case-insensitive) so that every file it accepts is accepted here.
_HEADER_SRC = r"(mr|src|source|meaning(?:[_ .-]rep(?:resentation)?)?|da|dial(?:ogue)?[_ .-]act)s?"
_HEADER_SYS = (r"(out(?:put)?|ref(?:erence)?|sys(?:tem)?(?:[_ .-](?:out(?:put)?|"
               r"ref(?:erence)?))?)s?")
_HEADER_REF = r"(trg|tgt|target|ref(?:erence)?|human(?:[_ .-](?:ref(?:erence)?))?)s?"
# Names each pattern accepts, spelled out for error messages.
_NAMES_SRC = "mr, src, source, meaning_representation, da or dialogue_act"
_NAMES = {"reference": "ref, reference, target, tgt, trg or human_reference",
          "output": "output, out, system_output, sys, system or ref"}
# A column name: a word of letters, digits and underscores not starting with a digit, or a few
# such words joined by single spaces, dots or hyphens ("input", "gold_text", "Model Output");
# an id with a part that starts with a digit (a UUID's "a3f1c2d4-5e6f-...") is data.
# E2E, DART and WebNLG data rows never look like this (their MRs have brackets or "|", their
# texts punctuation); SQuAD answers keyed by a plain name ("q1,Denver") do, and need a header.
_COLUMN_NAME = re.compile(r"[^\W\d]\w*(?:[ .-][^\W\d]\w*)*")
# Mis-decoded characters the official scorer repairs in CSV/TSV input (the E2E release has
# files where "£" and "é" went through a wrong encoding); repaired here too so that scores on
# those files match.
_MOJIBAKE = (("Ł", "£"), ("Â£", "£"), ("Ã©", "é"), ("ã©", "é"))


def _is_table(path: Path) -> bool:
    return path.suffix.lower() in (".csv", ".tsv")


def _read_text(path: Path) -> str:
    try:
        # utf-8-sig: drop the byte-order mark some spreadsheet exports start with.
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        from trainables.errors import not_utf8

        raise ValueError(not_utf8(path)) from None


def _read_table(path: Path, value_header: str, what: str) -> tuple[list[str], list[str]]:
    text = _read_text(path)
    for bad, good in _MOJIBAKE:
        text = text.replace(bad, good)
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), None)
    if first is None:
        raise ValueError(f"{path}: empty file")
    delimiter = "\t" if path.suffix.lower() == ".tsv" or "\t" in first else ","
    try:
        rows = [(no, row) for no, row in enumerate(csv.reader(lines, delimiter=delimiter),
                                                   start=1) if row]
    except csv.Error as exc:
        raise ValueError(f"{path}: malformed CSV: {exc}") from None
    if not rows:
        raise ValueError(f"{path}: empty file")
    header = [field.strip() for field in rows[0][1]]
    width = len(header)  # every row must have as many columns as the first
    src_cols = [i for i, f in enumerate(header) if re.match(_HEADER_SRC, f, re.I)]
    val_cols = [i for i, f in enumerate(header) if re.match(value_header, f, re.I)]
    if len(src_cols) == 1 and len(val_cols) == 1 and src_cols != val_cols:
        src_col, val_col = src_cols[0], val_cols[0]
        rows = rows[1:]
    elif not src_cols and not val_cols and all(_COLUMN_NAME.fullmatch(f) for f in header):
        raise ValueError(_bad_header(path, header, what, "the first row looks like a header but "
                                                         "names no known column"))
    elif not src_cols and not val_cols and len(header) == 2:
        src_col, val_col = 0, 1  # no header: MR, then the text
    else:
        raise ValueError(_bad_header(path, header, what, f"malformed CSV: cannot tell the MR "
                                                         f"column and the {what} column apart"))
    bad = [no for no, row in rows if len(row) != width]
    if bad:
        shown = ", ".join(map(str, bad[:5])) + (" ..." if len(bad) > 5 else "")
        raise ValueError(f"{path}: malformed CSV: expected {width} columns, wrong number on "
                         f"line(s) {shown}")
    if not rows:
        raise ValueError(f"{path}: no data rows")
    return ([row[src_col].strip() for _, row in rows],
            [one_line(row[val_col]) for _, row in rows])


def _bad_header(path: Path, header: list[str], what: str, problem: str) -> str:
    return (f"{path}: {problem} (columns found: {', '.join(header)}); accepted: MR column "
            f"{_NAMES_SRC}, {what} column {_NAMES[what]} (any case, an 's' may follow), e.g. a "
            f"first row {'mr,ref' if what == 'reference' else 'mr,output'}")


def read_system_rows(path: Path) -> tuple[list[str] | None, list[str]]:
    """System outputs and their MRs: plain text with one output per line (empty lines are empty
    outputs; no MRs), or ``.csv`` / ``.tsv`` with an MR column and an output column
    (``output``, ``system_output``, ``ref``, ...; as the official scorer accepts).

    Raises:
        OSError: the file cannot be read.
        ValueError: the file is not UTF-8 or a malformed table (message names the file).
    """
    path = Path(path)
    if _is_table(path):
        return _read_table(path, _HEADER_SYS, "output")
    outputs = [line.strip() for line in _read_text(path).splitlines()]
    if not outputs:
        raise ValueError(f"{path}: no system outputs in the file")
    return None, outputs


def load_pair(refs_path: Path, sys_path: Path) -> tuple[list[list[str]], list[str]]:
    ref_mrs, groups = read_references(refs_path)
    sys_mrs, outputs = read_system_rows(sys_path)
    if ref_mrs is None and len(outputs) == 1 and len(groups) > 1:
        # Plain-text references scored against one output: lines without a blank line between
        # them are that output's references.
        _, one = read_references(refs_path, items=1)
        if len(one) == 1:
            groups = one
            print(f"note: {refs_path} has no blank line between references and {sys_path} one output: its "
                  f"{len(one[0])} lines are read as that output's references", file=sys.stderr)
    if ref_mrs is not None and sys_mrs is not None:
        # Both name their MRs: take each output's references by MR, as the official scorer
        # does, so the two files may list MRs in different orders.
        by_mr = dict(zip(ref_mrs, groups))
        missing = [mr for mr in sys_mrs if mr not in by_mr]
        if missing:
            raise ValueError(f"{sys_path}: {len(missing)} MR(s) have no references in "
                             f"{refs_path}, e.g. {missing[0]!r}")
        return [by_mr[mr] for mr in sys_mrs], outputs
    if len(groups) != len(outputs):
        raise ValueError(f"{sys_path}: {len(outputs)} system outputs, but {refs_path} has "
                         f"{len(groups)} reference groups")
    return groups, outputs
