"""``lorasweep score`` on each file format it reads (trainables/metrics/e2e_files.py), run in
process: a header row that names no known column is refused, headerless tables of real data
are read.

Expected numbers come from sacrebleu and pycocoevalcap called here (the libraries the official
E2E scorer's numbers are checked against in test_metrics_e2e.py) and from hand arithmetic.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sweeps.score import main
from trainables.metrics.e2e_files import read_references, read_system_rows


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _scores(out: str) -> dict[str, str]:
    return dict(line.split() for line in out.splitlines())


def _refused(capsys, *argv: str) -> str:
    """The one error line of a run that must exit 2 and print nothing on stdout."""
    assert main([*argv, "--no-meteor"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1, captured
    return captured.err


# --------------------------------------------------------------------------------------------
# A header row that names no known column

GOOD_REFS = "mr,ref\nname[A],A is a pub.\nname[B],B is cheap.\n"
GOOD_SYS = "mr,output\nname[A],A is a pub.\nname[B],B is cheap.\n"


@pytest.mark.parametrize("bad, refs, system, found, accepted", [
    # Both files headed by names the scorer does not know: read as headerless, the header rows
    # would be paired with each other and scored as one more item.
    ("refs.csv", "input,gold\nname[A],A is a pub.\nname[B],B is cheap.\n",
     "input,prediction\nname[A],A is a pub.\nname[B],B is cheap.\n", "input, gold",
     "reference column ref, reference, target"),
    ("sys.csv", GOOD_REFS, "input,prediction\nname[A],A is a pub.\nname[B],B is cheap.\n",
     "input, prediction", "output column output, out, system_output"),
    ("refs.csv", "Model Input,gold_text\nname[A],A is a pub.\n", GOOD_SYS, "Model Input, gold_text",
     "reference column ref"),
    ("sys.csv", GOOD_REFS, "id,input,prediction\n1,name[A],A is a pub.\n2,name[B],B is cheap.\n",
     "id, input, prediction", "output column output"),
])
def test_a_header_of_unknown_columns_is_refused_naming_the_file_and_the_names(
        tmp_path, capsys, bad, refs, system, found, accepted):
    _write(tmp_path / "refs.csv", refs)
    _write(tmp_path / "sys.csv", system)
    err = _refused(capsys, "e2e", str(tmp_path / "refs.csv"), str(tmp_path / "sys.csv"))
    assert err.startswith(f"error: REFS/SYS: {tmp_path / bad}: the first row looks like a header "
                          f"but names no known column (columns found: {found}); accepted: MR column "
                          "mr, src, source, meaning_representation, da or dialogue_act, "), err
    assert accepted in err


def test_every_column_name_the_refusal_offers_is_accepted(tmp_path, capsys):
    for what, reader in (("reference", read_references), ("output", read_system_rows)):
        bad = _write(tmp_path / f"{what}.csv", "input,gold\nname[A],x\n")
        other = _write(tmp_path / "other.txt", "x\n")
        err = _refused(capsys, "e2e", *map(str, (bad, other) if what == "reference" else (other, bad)))
        src, val = (re.split(r", | or ", names) for names in
                    re.search(rf"MR column (.*?), {what} column (.*?) \(", err).groups())
        assert len(src) == 6 and len(val) == 6
        for mr_name in src:
            for val_name in val:
                path = _write(tmp_path / "named.csv", f"{mr_name.upper()},{val_name}\nname[A],x\n")
                assert reader(path)[0] == ["name[A]"], (mr_name, val_name)


@pytest.mark.parametrize("task, refs, system, expected", [
    # E2E MRs (brackets) and DART/WebNLG triples ("|"): BLEU 100 for outputs equal to the
    # references.
    ("e2e", '"name[The Eagle], eatType[pub]",The Eagle is a pub near the river.\n'
            '"name[Zizzi], food[Italian]",Zizzi serves Italian food in the city centre.\n',
     '"name[The Eagle], eatType[pub]",The Eagle is a pub near the river.\n'
     '"name[Zizzi], food[Italian]",Zizzi serves Italian food in the city centre.\n', {"BLEU": 100.0}),
    ("dart", "Alan_Bean | nationality | United_States,Alan Bean was born in the United States.\n",
     "Alan_Bean | nationality | United_States,Alan Bean was born in the United States.\n",
     {"BLEU": 100.0, "TER": 0.0}),
    # SQuAD keyed by its question ids (24 hex digits, first a digit): EM 1/2 by hand
    # ("denver" is not "denver broncos"); F1 (1 + 2/3) / 2 (precision 1, recall 1/2).
    ("squad", "56be4db0acb8001400a502ec,Denver Broncos\n5733be284776f41900661182,Saint Bernadette\n",
     "56be4db0acb8001400a502ec,Denver\n5733be284776f41900661182,Saint Bernadette\n",
     {"EM": 50.0, "F1": 100 * (1 + 2 / 3) / 2}),
])
def test_headerless_tables_of_real_data_are_read(tmp_path, capsys, task, refs, system, expected):
    refs_path, sys_path = _write(tmp_path / "refs.csv", refs), _write(tmp_path / "sys.csv", system)
    assert main([task, str(refs_path), str(sys_path), "--no-meteor"]) == 0
    got = _scores(capsys.readouterr().out)
    for name, value in expected.items():
        assert float(got[name]) == pytest.approx(value, abs=1e-4), (name, got)
