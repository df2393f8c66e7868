"""``lorasweep score`` on each file format it reads (trainables/metrics/e2e_files.py), run in
process: a header row that names no known column is refused, headerless tables of real data
are read, and one item with several references is one item in every format.

Expected numbers come from sacrebleu and pycocoevalcap called here (the libraries the official
E2E scorer's numbers are checked against in test_metrics_e2e.py) and from hand arithmetic.
"""

from __future__ import annotations

import math
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
    # Keyed by UUIDs whose first part starts with a letter, a later part with a digit.
    ("squad", "a3f1c2d4-5e6f-4a1b-9c2d-123456789abc,Denver Broncos\n",
     "a3f1c2d4-5e6f-4a1b-9c2d-123456789abc,Denver Broncos\n", {"EM": 100.0, "F1": 100.0}),
])
def test_headerless_tables_of_real_data_are_read(tmp_path, capsys, task, refs, system, expected):
    refs_path, sys_path = _write(tmp_path / "refs.csv", refs), _write(tmp_path / "sys.csv", system)
    assert main([task, str(refs_path), str(sys_path), "--no-meteor"]) == 0
    got = _scores(capsys.readouterr().out)
    for name, value in expected.items():
        assert float(got[name]) == pytest.approx(value, abs=1e-4), (name, got)


# --------------------------------------------------------------------------------------------
# One item with several references

MR = "name[The Eagle], eatType[pub], priceRange[cheap]"
REFS = ["the eagle is a cheap pub", "the eagle is a pub"]
HYP = "the eagle is a cheap pub near"

REF_FILES = {
    # Plain text: the references on consecutive lines, as a trial writes references.txt for
    # one test item; with and without a blank line after them.
    "refs.txt": "\n".join(REFS) + "\n",
    "refs_blank_after.txt": "\n".join(REFS) + "\n\n",
    "refs.csv": "mr,ref\n" + "".join(f'"{MR}",{r}\n' for r in REFS),
    "refs_headerless.csv": "".join(f'"{MR}",{r}\n' for r in REFS),
    "refs.tsv": "MR\tHuman Reference\n" + "".join(f"{MR}\t{r}\n" for r in REFS),
}
SYS_FILES = {
    "sys.txt": HYP + "\n",
    "sys.csv": f'mr,output\n"{MR}",{HYP}\n',
    "sys_headerless.csv": f'"{MR}",{HYP}\n',
    "sys.tsv": f"mr\toutput\n{MR}\t{HYP}\n",
}


def _official_one_item() -> dict[str, float]:
    """The metrics of HYP against both REFS as one item: BLEU from sacrebleu with the official
    scorer's settings (lowercased, 13a), ROUGE-L and CIDEr from pycocoevalcap (the texts are
    lower-case words, which PTB tokenization leaves as they are), NIST by hand (mteval-v13a).

    NIST: information weights over the 11 reference words. Unigrams: "cheap" once (log2 11),
    the other five twice (log2 5.5 each), all 6 matched of 7 hypothesis unigrams. Orders 2-5:
    one matched n-gram each carries weight 1 ("a cheap": log2(count "a" 2 / 1), "is a cheap",
    "eagle is a cheap", "the eagle is a cheap" likewise); the rest log2(2/2) = 0 or log2(1/1)
    = 0; 6, 5, 4 and 3 hypothesis n-grams. Hypothesis 7 words >= reference mean 5.5: no
    length penalty.
    """
    import sacrebleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    gts, res = {0: list(REFS)}, {0: [HYP]}
    return {
        "BLEU": sacrebleu.corpus_bleu([HYP], [[r] for r in REFS], lowercase=True, tokenize="13a").score,
        "NIST": (5 * math.log2(5.5) + math.log2(11)) / 7 + 1 / 6 + 1 / 5 + 1 / 4 + 1 / 3,
        "ROUGE_L": 100 * Rouge().compute_score(gts, res)[0],
        # CIDEr's document frequencies come from the scored items: over one item every
        # n-gram's IDF is log(1/1) = 0, so CIDEr is 0 (the official scorer's code gives 0 too).
        "CIDEr": Cider().compute_score(gts, res)[0],
    }


@pytest.mark.parametrize("sys_name", list(SYS_FILES))
@pytest.mark.parametrize("refs_name", list(REF_FILES))
def test_one_item_with_several_references_in_each_format(tmp_path, capsys, refs_name, sys_name):
    refs = _write(tmp_path / refs_name, REF_FILES[refs_name])
    system = _write(tmp_path / sys_name, SYS_FILES[sys_name])
    assert main(["e2e", str(refs), str(system), "--no-meteor"]) == 0
    captured = capsys.readouterr()
    got = _scores(captured.out)
    # Read as one item's references only where the file could also mean one per item: said.
    note = f"note: {refs} has no blank line between references and {system} one output: its 2 lines"
    assert (note in captured.err) == refs_name.endswith(".txt"), captured.err
    official = _official_one_item()
    assert official["BLEU"] == pytest.approx(100 * (6 / 7 * 5 / 6 * 4 / 5 * 3 / 4) ** 0.25)  # by hand
    for name, value in official.items():
        assert float(got[name]) == pytest.approx(value, abs=1e-4), (name, got, official)


@pytest.mark.parametrize("refs_name, refs", [
    ("refs.txt", "Denver Broncos\nthe Broncos\n"),
    ("refs.csv", "mr,ref\nq1,Denver Broncos\nq1,the Broncos\n"),
])
def test_one_question_with_several_gold_answers(tmp_path, capsys, refs_name, refs):
    """By hand: "denver" matches neither normalised answer (EM 0); against "denver broncos"
    precision 1, recall 1/2, F1 2/3; against "broncos" F1 0; the best is 2/3."""
    system = _write(tmp_path / "sys.txt", "Denver\n")
    assert main(["squad", str(_write(tmp_path / refs_name, refs)), str(system), "--no-meteor"]) == 0
    got = _scores(capsys.readouterr().out)
    assert float(got["EM"]) == 0.0 and float(got["F1"]) == pytest.approx(200 / 3, abs=1e-4)


def test_lines_without_blank_lines_are_one_reference_per_item_for_several_outputs(tmp_path, capsys):
    refs = _write(tmp_path / "refs.txt", "a pub\na cheap pub\na pub by the river\n")
    three = _write(tmp_path / "three.txt", "a pub\na cheap pub\na pub by the river\n")
    assert main(["e2e", str(refs), str(three), "--no-meteor"]) == 0
    assert float(_scores(capsys.readouterr().out)["BLEU"]) == pytest.approx(100.0)
    two = _write(tmp_path / "two.txt", "a pub\na cheap pub\n")
    err = _refused(capsys, "e2e", str(refs), str(two))
    assert err == f"error: REFS/SYS: {two}: 2 system outputs, but {refs} has 3 reference groups\n"
