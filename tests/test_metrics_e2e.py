"""E2E NLG metrics (trainables/metrics/e2e.py): hand-computed cases, agreement with the official
E2E scorer's stored numbers (tests/data/e2e_scorer/), the readers, METEOR's Java process, CLI.

METEOR needs Java; its tests are skipped with a reason where there is none. The agreement
tolerances are the issue's: BLEU, NIST, ROUGE-L, CIDEr within 1% relative of the official
numbers, METEOR within 0.01 absolute (1 point on our x100 scale).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trainables.metrics import e2e
from trainables.metrics.e2e import METRIC_NAMES, MeteorError, java_available, main, ptb_tokenize, score_e2e
from trainables.metrics.e2e_files import read_references, read_system_rows

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "e2e_scorer"
OFFICIAL = json.loads((DATA / "official_scores.json").read_text(encoding="utf-8"))
SYSTEMS = sorted(OFFICIAL["systems"])
# Official prints BLEU, METEOR, ROUGE_L in [0, 1]; we report them x100 (the LoRA paper's scale).
SCALE = {"BLEU": 100.0, "NIST": 1.0, "METEOR": 100.0, "ROUGE_L": 100.0, "CIDEr": 1.0}
HAS_JAVA = java_available()
needs_java = pytest.mark.skipif(not HAS_JAVA, reason="METEOR 1.5 needs Java; no working java")


def _no_meteor(refs, hyps):
    return score_e2e(refs, hyps, meteor=False)


# --------------------------------------------------------------------------------------------
# Hand-computed cases


def test_identical_outputs_score_the_maximum():
    refs = [["The Eagle is a pub near the river."], ["Zizzi serves cheap Italian food."],
            ["Blue Spice is a coffee shop in the city centre."]]
    scores = _no_meteor(refs, [group[0] for group in refs])
    assert set(scores) == set(METRIC_NAMES)
    assert scores["BLEU"] == pytest.approx(100.0)
    assert scores["ROUGE_L"] == pytest.approx(100.0)
    # CIDEr-D of a perfect match is 10 (cosine 1 at every n-gram order, times CIDEr-D's 10)
    # when no n-gram occurs in every item's references (those get idf log(3/3) = 0).
    assert scores["CIDEr"] == pytest.approx(10.0)
    assert scores["METEOR"] is None


def test_bleu_by_hand_single_reference():
    # hyp "the cat sat on mat" (5 words), ref "the cat sat on the mat" (6 words).
    # 1-grams: the cat sat on mat all in the ref         -> 5/5
    # 2-grams: the_cat cat_sat sat_on | on_mat missing   -> 3/4
    # 3-grams: the_cat_sat cat_sat_on | sat_on_mat       -> 2/3
    # 4-grams: the_cat_sat_on | cat_sat_on_mat            -> 1/2
    # brevity penalty exp(1 - 6/5); BLEU = BP * (1 * 3/4 * 2/3 * 1/2) ** (1/4)
    expected = 100 * math.exp(1 - 6 / 5) * (1 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25  # 57.89
    scores = _no_meteor([["The cat sat on the mat"]], ["the cat sat on mat"])
    assert scores["BLEU"] == pytest.approx(expected, rel=1e-9)


def test_bleu_by_hand_clipping_closest_reference_and_mteval_smoothing():
    # hyp "the the the cat" (4 words); refs "the cat" (2), "the the dog sat down" (5).
    # Closest reference length to 4 is 5 (|5-4| = 1 < |2-4| = 2): BP = exp(1 - 5/4).
    # 1-grams: "the" x3 clipped to 2 (its max count in one ref), "cat" 1    -> 3/4
    # 2-grams: the_the x2 clipped to 1, the_cat 1                            -> 2/3
    # 3-grams: none of 2 match -> mteval smoothing: 1 / (2^1 * 2)            -> 1/4
    # 4-grams: none of 1 matches -> 1 / (2^2 * 1)                            -> 1/4
    expected = 100 * math.exp(1 - 5 / 4) * (3 / 4 * 2 / 3 * 1 / 4 * 1 / 4) ** 0.25  # 32.74
    scores = _no_meteor([["the cat", "the the dog sat down"]], ["The the THE cat"])
    assert scores["BLEU"] == pytest.approx(expected, rel=1e-9)


def test_nist_by_hand_information_weights():
    # Two items: refs "a b c" and "a b"; hyps "a b c" and "a".
    # Reference counts: words 5; a 2, b 2, c 1; ab 2, bc 1; abc 1.
    # info(w) = log2(5 / count(w)); info(ab) = log2(count(a) / count(ab)) = log2(2/2) = 0;
    # info(bc) = log2(2/1) = 1; info(abc) = log2(count(ab) / count(abc)) = 1.
    # 1-grams: matched info (a + b + c) + a over 4 hypothesis words
    # 2-grams: ab (0) + bc (1) over 2 hypothesis bigrams; 3-grams: abc (1) over 1 trigram
    # 4-, 5-grams: no hypothesis n-grams -> 0.
    unigram = (2 * math.log2(5 / 2) + math.log2(5 / 2) + math.log2(5)) / 4
    precision = unigram + 1 / 2 + 1 / 1
    # Length penalty: 4 hypothesis words / 5 reference words = 0.8 < 1.
    beta = -math.log(0.5) / math.log(1.5) ** 2
    expected = precision * math.exp(-beta * math.log(0.8) ** 2)  # 2.49
    scores = _no_meteor([["a b c"], ["a b"]], ["a b c", "a"])
    assert scores["NIST"] == pytest.approx(expected, rel=1e-9)


def test_nist_reference_length_is_the_sum_of_per_item_mean_lengths():
    # Item 1 has refs of 2 and 4 words, item 2 one ref of 2 words; both hyps are "x y".
    # Counts: words 8; x 3, y 3; xy 3 -> info(x) = info(y) = log2(8/3), info(xy) = 0.
    # The precision part is log2(8/3) (4 matched unigrams over 4 words; bigrams add 0).
    # Reference length as the official scorer's -p path (and the LoRA paper) computes it:
    # (2 + 4)/2 + 2 = 5, so ratio 4/5. (Its Perl path would use 8 words / 1.5 refs per
    # item = 5.33, ratio 0.75.)
    beta = -math.log(0.5) / math.log(1.5) ** 2
    expected = math.log2(8 / 3) * math.exp(-beta * math.log(4 / 5) ** 2)
    scores = _no_meteor([["x y", "x y z w"], ["x y"]], ["x y", "x y"])
    assert scores["NIST"] == pytest.approx(expected, rel=1e-9)


def test_rouge_l_by_hand_takes_max_precision_and_max_recall_over_references():
    # After tokenization (lowercase, "." dropped): hyp "the cat sat on the mat" (6 words).
    # ref 1 "the cat is on the mat today" (7): LCS "the cat on the mat" = 5 -> P 5/6, R 5/7
    # ref 2 "sat" (1): LCS "sat" = 1                                   -> P 1/6, R 1/1
    # coco's ROUGE-L takes max P (5/6) and max R (1) separately, then the F-measure with
    # beta = 1.2: F = (1 + b^2) P R / (R + b^2 P).
    p, r, b2 = 5 / 6, 1.0, 1.2 ** 2
    expected = 100 * (1 + b2) * p * r / (r + b2 * p)  # 92.42
    scores = _no_meteor([["The cat is on the mat today.", "sat"]], ["The cat sat on the mat."])
    assert scores["ROUGE_L"] == pytest.approx(expected, rel=1e-9)


def test_cider_sanity():
    refs = [["the eagle is a pub near the river"], ["zizzi serves cheap italian food"],
            ["blue spice is a coffee shop in the city centre"]]
    perfect = _no_meteor(refs, [g[0] for g in refs])["CIDEr"]
    partial = _no_meteor(refs, ["the eagle is a pub", "zizzi serves food", ""])["CIDEr"]
    assert perfect == pytest.approx(10.0)
    assert 0 < partial < perfect
    # An empty output scores 0 on its own; CIDEr is the mean over items.
    assert _no_meteor(refs, ["", "", ""])["CIDEr"] == 0.0


# Expected strings: Stanford CoreNLP 3.4.1 PTBTokenizer -preserveLines -lowerCase (what the
# official scorer runs), then pycocoevalcap's punctuation filter.
@pytest.mark.parametrize("text, expected", [
    ("The Eagle is a coffee shop. It is located in the city centre near Café Adriatic.",
     "the eagle is a coffee shop it is located in the city centre near café adriatic"),
    ('Prices are £20-25 and it\'s family-friendly; "great" food (Italian) at 5 out of 5!',
     "prices are # 20-25 and it 's family-friendly great food -lrb- italian -rrb- at 5 out of 5"),
    ("Zizzi, a pub... cheap -- near Burger King? Mr. Smith's St. Paul's 3.5 stars, £30.",
     "zizzi a pub cheap near burger king mr. smith 's st. paul 's 3.5 stars # 30"),
    ("cannot won't I'm THE VAULTS [test] {x} & more",
     "can not wo n't i 'm the vaults -lsb- test -rsb- -lcb- x -rcb- & more"),
    ("well... yes.. no....", "well yes no"),
    ("ok!! what?! wow!?", "ok !! what ?! wow !?"),
    ("a-b -- c - d \u2014 e \u2013 f", "a-b c d e f"),
    ("The Vaults' price is high. It's Bob's. They're 'nice'.",
     "the vaults price is high it 's bob 's they 're nice"),
    ("", ""),
])
def test_ptb_tokenize_matches_stanford_on_known_cases(text, expected):
    assert ptb_tokenize(text) == expected


@needs_java
def test_ptb_tokenize_matches_the_stanford_jar_on_the_fixtures():
    # The jar ships with pycocoevalcap; compare on every distinct fixture line.
    from pycocoevalcap.tokenizer import ptbtokenizer

    jar = Path(ptbtokenizer.__file__).with_name(ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR)
    lines = sorted({line.strip() for name in ["refs.txt", *SYSTEMS]
                    for line in (DATA / name).read_text(encoding="utf-8").splitlines()
                    if line.strip()})
    done = subprocess.run(["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer",
                           "-preserveLines", "-lowerCase"], input="\n".join(lines),
                          capture_output=True, text=True, encoding="utf-8", timeout=120,
                          check=True)
    stanford = done.stdout.split("\n")[:len(lines)]
    expected = [" ".join(w for w in out.rstrip().split(" ") if w not in ptbtokenizer.PUNCTUATIONS)
                for out in stanford]
    differ = [(line, exp, ptb_tokenize(line)) for line, exp in zip(lines, expected)
              if ptb_tokenize(line) != exp]
    assert len(lines) > 1000 and not differ, differ[:5]


# --------------------------------------------------------------------------------------------
# Agreement with the official scorer's stored numbers


@pytest.fixture(scope="module")
def fixture_refs():
    mrs, groups = read_references(DATA / "refs.txt")
    assert mrs is None and len(groups) == 200
    return groups


@pytest.fixture(scope="module")
def ours_without_meteor(fixture_refs):
    return {name: _no_meteor(fixture_refs, read_system_rows(DATA / name)[1]) for name in SYSTEMS}


@pytest.mark.parametrize("path", ["python_mteval", "perl_mteval"])
@pytest.mark.parametrize("metric", ["BLEU", "NIST", "ROUGE_L", "CIDEr"])
@pytest.mark.parametrize("system", SYSTEMS)
def test_agrees_with_official_scorer_within_1_percent(ours_without_meteor, system, metric,
                                                      path):
    official = OFFICIAL["systems"][system][path][metric] * SCALE[metric]
    ours = ours_without_meteor[system][metric]
    assert ours == pytest.approx(official, rel=0.01), (system, metric, path, ours, official)


def test_fixture_systems_rank_as_designed(ours_without_meteor):
    strong, mixed, weak = (ours_without_meteor[f"sys_{q}.txt"] for q in ("strong", "mixed", "weak"))
    for metric in ("BLEU", "NIST", "ROUGE_L", "CIDEr"):
        assert strong[metric] > mixed[metric] > weak[metric], metric


def _child_pids() -> set[int]:
    """Live child processes of this test process (Linux /proc)."""
    kids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():
            kids.add(int(stat.parent.name))
    return kids


@needs_java
def test_meteor_agrees_with_official_and_java_is_closed(fixture_refs):
    # One Java start for the whole file's METEOR check: the most varied system.
    system = "sys_mixed.txt"
    before = _child_pids()
    scores = score_e2e(fixture_refs, read_system_rows(DATA / system)[1], meteor=True)
    official = OFFICIAL["systems"][system]["python_mteval"]["METEOR"]
    assert abs(scores["METEOR"] / 100 - official) <= 0.01, (scores["METEOR"], official)
    if Path("/proc").is_dir():
        assert _child_pids() <= before, "METEOR's java process outlived score_e2e"


# --------------------------------------------------------------------------------------------
# METEOR without Java, with a broken Java, with a hanging Java


def test_meteor_is_skipped_without_java(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing called java on PATH
    assert java_available() is False
    scores = score_e2e([["a pub near the river"]], ["a pub by the river"])
    assert scores["METEOR"] is None
    assert scores["BLEU"] > 0 and scores["ROUGE_L"] > 0
    with pytest.raises(MeteorError, match="Java"):
        score_e2e([["a pub"]], ["a pub"], meteor=True)


def _fake_java(tmp_path: Path, run: str) -> str:
    """A `java` that answers -version and does ``run`` otherwise; returns the new PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    java = bin_dir / "java"
    java.write_text("#!/bin/sh\n"
                    'if [ "$1" = "-version" ]; then echo "fake 17" >&2; exit 0; fi\n'
                    f"{run}\n")
    java.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


def test_meteor_reports_a_broken_java_clearly(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", _fake_java(
        tmp_path, 'echo "Error: Could not create the Java Virtual Machine." >&2; exit 1'))
    before = _child_pids()
    with pytest.raises(MeteorError, match="Could not create the Java Virtual Machine"):
        score_e2e([["a pub near the river"]] * 3, ["a pub"] * 3, meteor=True)
    assert _child_pids() <= before


def test_meteor_hanging_java_is_killed_after_the_time_limit(monkeypatch, tmp_path):
    sleep = shutil.which("sleep") or "/bin/sleep"
    monkeypatch.setenv("PATH", _fake_java(tmp_path, f"exec {sleep} 60"))
    monkeypatch.setattr(e2e, "METEOR_TIMEOUT_S", 1.0)
    monkeypatch.setattr(e2e, "METEOR_TIMEOUT_PER_ITEM_S", 0.0)
    before = _child_pids()
    start = time.monotonic()
    with pytest.raises(MeteorError, match="did not answer within"):
        score_e2e([["a pub near the river"]], ["a pub"], meteor=True)
    assert time.monotonic() - start < 20
    assert _child_pids() <= before


# --------------------------------------------------------------------------------------------
# Input validation


@pytest.mark.parametrize("refs, hyps, message", [
    ([["a"], ["b"]], ["a"], "2 reference groups but 1 hypotheses"),
    ([["a"], []], ["a", "b"], r"references\[1\] is empty"),
    (["a pub"], ["a pub"], r"references\[0\] is a str"),
    ([], [], "no hypotheses"),
    ([["a"]], [None], r"hypotheses\[0\] is NoneType"),
])
def test_bad_inputs_raise_value_error(refs, hyps, message):
    with pytest.raises(ValueError, match=message):
        score_e2e(refs, hyps, meteor=False)


# --------------------------------------------------------------------------------------------
# Readers


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_read_references_csv_groups_identical_mrs_in_first_seen_order(tmp_path):
    path = _write(tmp_path / "refs.csv", (
        "mr,ref\n"
        '"name[Zizzi], food[Italian]",Zizzi serves Italian food.\n'
        '"name[Zizzi], food[Italian]","Zizzi, an Italian place."\n'
        "name[Aromi],Aromi is a place.\n"
        '"name[Zizzi], food[Italian]",Italian food at Zizzi.\n'))
    mrs, groups = read_references(path)
    assert mrs == ["name[Zizzi], food[Italian]", "name[Aromi]"]
    assert groups == [["Zizzi serves Italian food.", "Zizzi, an Italian place.",
                       "Italian food at Zizzi."], ["Aromi is a place."]]


def test_read_references_tsv_other_headers_and_mojibake(tmp_path):
    # Header names the official scorer accepts; extra columns are fine; "Â£" is repaired.
    path = _write(tmp_path / "refs.tsv", "id\tMeaning Representation\tHuman Reference\n"
                                         "1\tname[A]\tA costs Â£20.\n2\tname[A]\tA is cheap.\n")
    assert read_references(path) == (["name[A]"], [["A costs £20.", "A is cheap."]])


def test_read_references_headerless_two_column_csv(tmp_path):
    path = _write(tmp_path / "refs.csv", "name[A],A one.\nname[A],A two.\nname[B],B.\n")
    assert read_references(path) == (["name[A]", "name[B]"], [["A one.", "A two."], ["B."]])


def test_read_references_text_groups_by_blank_lines(tmp_path):
    path = _write(tmp_path / "refs.txt", "a one\na two\n\n\nb one\n\nc one\nc two\n\n")
    assert read_references(path) == (None, [["a one", "a two"], ["b one"], ["c one", "c two"]])
    # No blank line at all: one reference per item (as the official scorer reads it).
    single = _write(tmp_path / "single.txt", "a\nb\nc\n")
    assert read_references(single) == (None, [["a"], ["b"], ["c"]])


@pytest.mark.parametrize("name, text, message", [
    ("bad.csv", "mr,ref\nname[A],one\nname[B],two,extra\n", "wrong number on line"),
    ("bad.csv", "mr,source,ref\nx,y,z\n", "cannot tell the MR column"),
    ("bad.csv", "", "empty file"),
    ("bad.txt", "\n\n", "no references"),
])
def test_read_references_rejects_malformed_files(tmp_path, name, text, message):
    path = _write(tmp_path / name, text)
    with pytest.raises(ValueError, match=message) as err:
        read_references(path)
    assert str(path) in str(err.value)


def test_system_output_text_keeps_empty_outputs(tmp_path):
    path = _write(tmp_path / "out.txt", "first output\n\nthird output\n")
    assert read_system_rows(path)[1] == ["first output", "", "third output"]


def test_system_output_csv(tmp_path):
    path = _write(tmp_path / "out.csv", 'mr,output\nname[A],"A, a pub."\nname[B],\n')
    assert read_system_rows(path)[1] == ["A, a pub.", ""]


# --------------------------------------------------------------------------------------------
# CLI


def test_main_prints_json_and_aligns_csv_by_mr(tmp_path, capsys):
    refs = _write(tmp_path / "refs.csv", "mr,ref\nname[A],A is a pub near the river.\n"
                                         "name[B],B serves cheap food.\nname[A],A is a pub.\n")
    # The system file lists the MRs in the other order: references follow the MR.
    out = _write(tmp_path / "out.csv", "mr,output\nname[B],B serves cheap food.\n"
                                       "name[A],A is a pub near the river.\n")
    assert main([str(refs), str(out), "--no-meteor"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert list(scores) == list(METRIC_NAMES)
    assert scores["BLEU"] == pytest.approx(100.0) and scores["METEOR"] is None


@pytest.mark.parametrize("files, message", [
    (("missing.txt", "out.txt"), "missing.txt"),
    (("refs.txt", "short.txt"), "1 system outputs, but"),
    (("bad.csv", "out.txt"), "bad.csv: malformed CSV"),
    (("refs.csv", "other.csv"), "have no references in"),
])
def test_main_bad_input_exits_2_with_one_line(tmp_path, capsys, files, message):
    _write(tmp_path / "refs.txt", "a one\na two\n\nb one\n")
    _write(tmp_path / "out.txt", "a\nb\n")
    _write(tmp_path / "short.txt", "a\n")
    _write(tmp_path / "bad.csv", "mr,ref\nx,y,z\n")
    _write(tmp_path / "refs.csv", "mr,ref\nname[A],a\n")
    _write(tmp_path / "other.csv", "mr,output\nname[Z],z\n")
    assert main([str(tmp_path / f) for f in files] + ["--no-meteor"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: ")
    assert message in captured.err


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainables.metrics.e2e", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120, env=env)


def test_cli_module_prints_json_for_the_fixtures():
    done = _cli(str(DATA / "refs.txt"), str(DATA / "sys_strong.txt"), "--no-meteor")
    assert done.returncode == 0, done.stderr
    scores = json.loads(done.stdout)
    official = OFFICIAL["systems"]["sys_strong.txt"]["python_mteval"]
    assert scores["BLEU"] == pytest.approx(official["BLEU"] * 100, rel=0.01)
    assert scores["METEOR"] is None and done.stderr == ""


def test_cli_bad_input_exits_2_without_traceback(tmp_path):
    done = _cli(str(tmp_path / "nope.txt"), str(DATA / "sys_strong.txt"))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "nope.txt" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_without_java_notes_that_meteor_was_skipped(tmp_path):
    refs = _write(tmp_path / "refs.txt", "a pub near the river\na riverside pub\n\nzizzi\n")
    out = _write(tmp_path / "out.txt", "a pub by the river\nzizzi\n")
    done = _cli(str(refs), str(out), env={**os.environ, "PATH": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["METEOR"] is None
    assert "Java was not found" in done.stderr and done.stderr.count("\n") == 1


def test_import_is_cheap():
    code = ("import sys, trainables.metrics.e2e; "
            "print([m for m in ('pycocoevalcap', 'nltk', 'sacrebleu') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
