"""The ``lorasweep`` console command, run as pip's launcher runs it: the entry point that
pyproject.toml declares, in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib

import pytest
from conftest import REPO


def lorasweep(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, function = scripts["lorasweep"].split(":")
    launcher = f"import sys; sys.argv[0] = 'lorasweep'; from {module} import {function}; sys.exit({function}())"
    return subprocess.run([sys.executable, "-c", launcher, *args], capture_output=True, text=True, timeout=300,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


@pytest.mark.parametrize("args, words", [
    (["--help"], ["lorasweep run STUDY", "studies: agnews_budget", "rank_e2e", "variants_glue"]),
    (["run", "rank_e2e", "--help"], ["usage: lorasweep run rank_e2e", "--preset", "smoke"]),
    (["run", "--config", str(REPO / "sweeps" / "presets" / "rank_e2e.yaml"), "--help"],
     ["usage: lorasweep run", "--config FILE", "smoke"]),
    (["report", "--help"], ["--experiment", "--sweep RUN_ID"]),
    (["export", "--help"], ["--merge", "--register NAME", "--push-to-hub REPO"]),
    (["settings", "--help"], ["--markdown"]),
    (["score", "--help"], ["usage: lorasweep score", "TASK", "REFS", "SYS", "--no-meteor"]),
    (["cache", "--help"], ["usage: lorasweep cache", "{list,clear}", "--dry-run"]),
])
def test_each_command_answers_help(args, words):
    proc = lorasweep(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for w in words:
        assert w in proc.stdout, (w, proc.stdout[-2000:])


def test_settings_lists_every_setting():
    proc = lorasweep("settings")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for key in ("adapter.r", "train.lr", "search.num_samples", "scheduler.groups"):
        assert key in proc.stdout


@pytest.mark.parametrize("args, message", [
    ([], "error: name a command: 'run', 'report', 'export', 'settings', 'score' or 'cache'"),
    (["rnu"], "error: unknown command 'rnu' (did you mean 'run'?)"),
    (["run", "rank_e2"], "error: unknown study 'rank_e2' (did you mean 'rank_e2e'?)"),
])
def test_a_wrong_command_or_study_is_one_line_exit_2(args, message):
    proc = lorasweep(*args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(message), proc.stderr


# sacrebleu's README example: two reference streams, BLEU = 48.53 (hyp_len 17, ref_len 18).
# Here as three items of two references each (the E2E scorer's grouped plain-text format).
SACREBLEU_REFS = ("The dog bit the man.\nThe dog had bit the man.\n\nIt was not unexpected.\n"
                  "No one was surprised.\n\nThe man bit him first.\nThe man had bitten the dog.\n")
SACREBLEU_SYS = "The dog bit the man.\nIt wasn't surprising.\nThe man had just bitten him.\n"


def _metrics(stdout: str) -> dict[str, str]:
    return dict(line.split() for line in stdout.splitlines())


def test_score_prints_the_trials_metrics_one_line_each(tmp_path):
    """System == references: BLEU 100. sacrebleu's README case: BLEU 48.53. SQuAD on the same
    files, by hand (normalised: lower case, no punctuation or articles): EM 1/3 (only the
    first answer matches); F1 = (1 + 2/7 + 2/3) / 3 = 65.08 ("it wasnt surprising" shares
    "it" with "it was not unexpected": P 1/3, R 1/4; "man had just bitten him" shares three
    tokens with "man had bitten dog": P 3/5, R 3/4)."""
    same = tmp_path / "same.txt"
    same.write_text("There is a cheap pub called The Eagle near the river.\nAromi is a coffee shop.\n")
    proc = lorasweep("score", "e2e", str(same), str(same), "--no-meteor")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _metrics(proc.stdout)["BLEU"] == "100.0000"
    assert list(_metrics(proc.stdout)) == ["BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr"]

    refs, system = tmp_path / "refs.txt", tmp_path / "sys.txt"
    refs.write_text(SACREBLEU_REFS)
    system.write_text(SACREBLEU_SYS)
    proc = lorasweep("score", "squad", str(refs), str(system), "--no-meteor")
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = _metrics(proc.stdout)
    assert float(got["BLEU"]) == pytest.approx(48.53, abs=0.005)
    assert float(got["EM"]) == pytest.approx(100 / 3, abs=1e-3)
    assert float(got["F1"]) == pytest.approx(100 * (1 + 2 / 7 + 2 / 3) / 3, abs=1e-3)
    assert got["METEOR"] == "skipped"
    proc = lorasweep("score", "dart", str(refs), str(system), "--no-meteor")
    assert proc.returncode == 0 and "TER" in _metrics(proc.stdout), proc.stderr[-2000:]


@pytest.mark.parametrize("args, message", [
    (["score", "e2f", "REFS", "SYS"], "error: TASK: unknown task 'e2f' (did you mean 'e2e'?); accepted: "
                                      "'dart', 'e2e', 'squad' or 'webnlg'"),
    (["score", "e2e", "missing-refs.txt", "SYS"], "error: REFS: missing-refs.txt: no such file"),
    (["score", "e2e"], "error: the following arguments are required: REFS, SYS (see --help)"),
    (["cache"], "error: the following arguments are required: {list,clear} (see --help)"),
    (["settings", "--bogus"], "error: unrecognized arguments: --bogus (see --help)"),
])
def test_score_with_a_missing_file_or_unknown_task_is_one_line_exit_2(args, message):
    proc = lorasweep(*args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == message + "\n", proc.stderr


def test_cache_lists_and_clears_the_caches_with_their_sizes(tmp_path):
    """A cache root with known files: data 3,000 + 1,000 bytes in two entries (3.9 KiB),
    smoke 2,048 bytes (2.0 KiB), memo 10 bytes, hub-copies 100 bytes, nothing in adapters; and two entries of the
    user's beside them (the root may be any folder), 12 bytes, which are never removed."""
    root = tmp_path / "cache"
    for rel, n in (("data/e2e-1/train.bin", 3000), ("data/e2e-2/train.bin", 1000),
                   ("smoke/tiny-v1/model.safetensors", 2048), ("memo/tok-abc.json", 10),
                   ("hub-copies/0a1b/c/0.0.0/data.arrow", 100),
                   ("thesis.tex", 7), ("projects/a.py", 5)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x" * n)
    env = {"LORASWEEP_CACHE": str(root)}
    proc = lorasweep("cache", "list", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines()[1:]}
    assert rows["data"][:4] == ["2", "entries", "3.9", "KiB"]
    assert rows["smoke"][:4] == ["1", "entries", "2.0", "KiB"]
    assert rows["memo"][:4] == ["1", "entries", "10", "B"]
    assert rows["hub-copies"][:4] == ["1", "entries", "100", "B"]
    assert rows["adapters"][:3] == ["0", "entries", "0"]
    assert rows["other"][:4] == ["2", "entries", "12", "B"]
    assert rows["total"] == ["6.0", "KiB"]  # 6,170 bytes

    proc = lorasweep("cache", "clear", "--dry-run", env=env)
    assert proc.returncode == 0 and "would remove data: 2 entries, 3.9 KiB" in proc.stdout, proc.stdout
    assert (root / "data" / "e2e-1" / "train.bin").is_file()
    proc = lorasweep("cache", "clear", "data", env=env)
    assert proc.stdout.splitlines()[0].startswith("removed data: 2 entries, 3.9 KiB"), proc.stdout
    assert not any((root / "data").iterdir()) and (root / "smoke" / "tiny-v1").is_dir()
    proc = lorasweep("cache", "clear", env=env)
    assert "removed smoke: 1 entries, 2.0 KiB" in proc.stdout and "removed hub-copies: 1 entries, 100 B" in proc.stdout
    assert "removed 2.1 KiB in all" in proc.stdout  # 2,048 + 10 + 100 bytes
    assert f"kept 2 entries in {root} that are no lorasweep cache (never removed)" in proc.stdout
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == \
        ["projects/a.py", "thesis.tex"]
    proc = lorasweep("cache", "clear", "other", env=env)
    assert proc.returncode == 2 and proc.stderr.startswith("error: cache: unknown cache 'other'"), proc.stderr
    proc = lorasweep("cache", "clear", "smok", env=env)
    assert proc.returncode == 2 and proc.stderr.startswith("error: cache: unknown cache 'smok' (did you mean 'smoke'?)")


def test_the_cli_module_run_as_a_command_names_the_command_and_exits_2():
    """``python -m sweeps.cli`` is the scripts' shared code: it says what to run instead of
    doing nothing."""
    proc = subprocess.run([sys.executable, "-m", "sweeps.cli", "run", "rank_e2e", "--bogus"], capture_output=True,
                          text=True, timeout=300, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "run lorasweep ARGS (or python -m sweeps.command ARGS)" in proc.stderr


def test_cache_with_a_file_for_its_root_is_one_line_exit_2(tmp_path):
    (tmp_path / "afile").write_text("not a folder\n")
    for args in (["list"], ["clear", "--dry-run"]):
        proc = lorasweep("cache", *args, env={"LORASWEEP_CACHE": str(tmp_path / "afile")})
        assert proc.returncode == 2 and proc.stdout == "", proc.stdout
        assert proc.stderr == (f"error: LORASWEEP_CACHE: lorasweep's cache folder {tmp_path / 'afile'} is a file, "
                               "not a folder; point LORASWEEP_CACHE at a writable folder\n"), proc.stderr


def test_a_cache_root_under_home_that_cannot_be_made_names_home(tmp_path, monkeypatch):
    """No LORASWEEP_CACHE or XDG_CACHE_HOME: the root is ~/.cache/lorasweep, so $HOME is named."""
    from trainables.errors import UserError
    from trainables.paths import check_cache_dir

    (tmp_path / "afile").write_text("not a folder\n")
    monkeypatch.delenv("LORASWEEP_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "afile"))
    with pytest.raises(UserError) as err:
        check_cache_dir(create=True)
    assert err.value.field == "HOME" and err.value.message.startswith(
        f"cannot create lorasweep's cache folder {tmp_path / 'afile' / '.cache' / 'lorasweep'} (Not a directory)")


def test_score_names_a_directory_and_the_byte_that_is_not_utf8(tmp_path, capsys):
    from sweeps.score import main

    refs = tmp_path / "refs.txt"
    refs.write_bytes(b"a good reference\nan \xe9 in Latin-1\n")
    (tmp_path / "sys.txt").write_text("one\ntwo\n")
    assert main(["e2e", str(tmp_path), str(tmp_path / "sys.txt")]) == 2
    assert main(["e2e", str(refs), str(tmp_path / "sys.txt")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"error: REFS: {tmp_path}: a directory, not a file",
                   f"error: REFS/SYS: {refs} line 2: not UTF-8 text (byte 0xe9); save it as UTF-8"]
