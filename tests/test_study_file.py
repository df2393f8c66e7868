"""Study files: the built-in preset files and a user's own (``--config``) read by one checker;
an unknown key anywhere is one line naming it with a did-you-mean (exit code 2, nothing
written); a user's study file (``tests/data/user_study``) runs as a smoke sweep."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from sweep_runs import ONE_AT_A_TIME

USER_STUDY = REPO / "tests" / "data" / "user_study"


def test_every_built_in_preset_file_passes_the_checker_and_resolves():
    from sweeps.study_file import PRESETS_DIR, load_study

    for path in sorted(PRESETS_DIR.glob("*.yaml")):
        study = load_study(path.stem)
        assert study.name == path.stem and study.default in study.presets
        assert all("extends" not in p for p in study.presets.values())


def _with(tmp_path: Path, edit) -> Path:
    """The user study's file with one mistake made by ``edit(data)``."""
    data = yaml.safe_load((USER_STUDY / "study.yaml").read_text())
    edit(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("edit, field, fragment", [
    (lambda d: d.update(presetz=d.pop("presets")), "presetz", "unknown study file key (did you mean 'presets'?)"),
    (lambda d: d.update(defualt="smoke"), "defualt", "(did you mean 'default'?)"),
    (lambda d: d["presets"]["base"].update(trail=d["presets"]["base"].pop("trial")), "presets.base.trail",
     "unknown setting (did you mean 'trial'?)"),
    (lambda d: d["presets"]["base"]["trial"]["adapter"].update(rr=4), "presets.base.trial.adapter.rr",
     "unknown setting (did you mean 'r'?)"),
    (lambda d: d["presets"]["smoke"]["trial"]["data"].update(colums={}), "presets.smoke.trial.data.colums",
     "(did you mean 'columns'?)"),
    (lambda d: d["presets"]["base"]["scheduler"].update(grace_perod=1), "presets.base.scheduler.grace_perod",
     "(did you mean 'grace_period'?)"),
    (lambda d: d["presets"]["smoke"].update(space={"scientific": {"r": {"grid": [2]}}, "nuisanse": {}}),
     "presets.smoke.space.nuisanse", "unknown section (did you mean 'nuisance'?)"),
    (lambda d: d["presets"]["smoke"].update(extends="bsae"), "presets.smoke.extends",
     "'bsae' is not a preset of"),
    (lambda d: d.update(parts={"a": {"trial": {"sede": 1}}}, part_flag="fold"), "parts.a.trial.sede",
     "(did you mean 'seed'?)"),
    (lambda d: d.update(parts={"a": {}}, part_flag="fold") or d["presets"]["smoke"].update(
        parts={"a": {"scheduler": {"nmae": "fifo"}}}), "presets.smoke.parts.a.scheduler.nmae", "(did you mean 'name'?)"),
    (lambda d: d.update(parts={"a": {}}, part_flag="model"), "part_flag", "cannot be a flag name"),
    (lambda d: d.update(parts={"a": {}}), "part_flag", "name the flag that picks them"),
    (lambda d: d.update(study="../evil"), "study", "'../evil' in "),
    (lambda d: d.update(default=5), "default", "expected a preset name in "),
    (lambda d: d.update(parts={"a": {}}, part_flag="fold", default_parts=5), "default_parts",
     "expected a list of part names in "),
    (lambda d: d.update(parts={"a": {}}, part_flag="fold", default_parts=["b"]), "default_parts",
     "'b' is not a part of "),
    (lambda d: d["presets"]["smoke"].update(extends=5), "presets.smoke.extends", "expected a preset name in "),
    (lambda d: d["presets"]["smoke"].update(extends=["base"]), "presets.smoke.extends",
     "expected a preset name in "),
    (lambda d: d.update(parts=["x", "y"], part_flag="fold"), "parts",
     "expected a mapping of part names to sweep settings in "),
    (lambda d: d.update(part_flag="fold") or d["presets"]["smoke"].update(parts=["x"]), "presets.smoke.parts",
     "expected a mapping of part names to sweep settings in "),
    (lambda d: d.update(parts={1: {}, 2: {}}, part_flag="fold"), "parts", "1 in "),
    (lambda d: d.update(parts={"x,y": {}}, part_flag="fold"), "parts", "'x,y' in "),
    (lambda d: d.update(parts={"all": {}, "b": {}}, part_flag="fold"), "parts", "'all' in "),
    (lambda d: d["presets"].update({1: {}}), "presets", "1 in "),
    (lambda d: d["presets"]["smoke"].update(parts={"a": {}}), "part_flag",
     "lists parts (presets.smoke.parts); name the flag that picks them"),
    (lambda d: d.update(parts={"a": {}}, part_flag="fold") or d["presets"]["smoke"].update(default_parts=["b"]),
     "presets.smoke.default_parts", "'b' is not a part of "),
    (lambda d: d.update(report="no"), "report", "expected true or false in "),
    (lambda d: d.update(part_flag="fold"), "parts",
     "part_flag 'fold' in {path} needs parts to pick from: give 'parts' (part name -> sweep settings) at the top or "
     "in a preset, or drop part_flag"),
    (lambda d: d.update(part_flag="fold", default="base") or d["presets"]["smoke"].update(parts={"a": {}}),
     "presets.base.parts", "preset 'base' has no parts for --fold to pick from; give it parts in the study file, "
                           "or run a --preset that has them: 'smoke'"),
])
def test_an_unknown_key_anywhere_is_one_line_exit_2(tmp_path, capsys, edit, field, fragment):
    from sweeps.cli import run_study

    path = _with(tmp_path, edit)
    assert run_study(None, ["--config", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"error: {field}: "), err
    assert fragment.format(path=path) in err, err


def test_a_study_file_that_is_not_utf8_is_one_line_exit_2(tmp_path, capsys):
    from sweeps.cli import run_study

    path = tmp_path / "latin1.yaml"
    path.write_bytes((USER_STUDY / "study.yaml").read_bytes() + "# r\xe9sum\xe9\n".encode("latin-1"))
    assert run_study(None, ["--config", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"error: --config: {path} line "), err
    assert err.endswith("not UTF-8 text (byte 0xe9); save it as UTF-8"), err


def test_the_real_command_refuses_a_bad_study_file_and_writes_nothing(tmp_path):
    path = _with(tmp_path, lambda d: d["presets"]["base"]["trial"]["adapter"].update(rr=4))
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run([sys.executable, "-m", "sweeps.run", "--config", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: presets.base.trial.adapter.rr: unknown setting (did you mean 'r'?) in ")
    assert list(work.iterdir()) == []


def test_config_on_a_study_script_reads_its_paths_beside_the_file(tmp_path, capsys):
    """The user's file given to a study script: its presets replace the script's, its space and
    data paths are read beside the file, the study name comes from the file."""
    from sweeps.cli import run_study

    study = tmp_path / "elsewhere"
    shutil.copytree(USER_STUDY, study)
    write_tickets(study / "tickets")
    code = run_study("text_classification", ["--config", str(study / "study.yaml"), "--preset", "smoke", "--dry-run",
                                             "--storage", str(tmp_path / "rr")])
    out = capsys.readouterr()
    assert code == 0, out.err
    plan = json.loads(out.out)
    assert plan["sweep"]["study"] == "my_tickets" and plan["sweep"]["preset"] == "smoke"
    assert plan["space"]["scientific"] == {"r": {"grid": [2, 8]}} and plan["n_trials"] == 2
    assert plan["base_trial"]["data"]["source"] == str((study / "tickets").resolve())
    assert plan["base_trial"]["data"]["train_limit"] == 160 and plan["base_trial"]["train"]["epochs"] == 2
    assert plan["base_trial"]["train"]["lr"] == 5.0e-3  # from the preset it extends


@pytest.mark.parametrize("where", ["preset", "part"])
def test_alpha_given_one_way_by_a_preset_or_part_clears_the_other_way(tmp_path, where):
    """``alpha_over_r`` in a preset over a preset with ``alpha``, or in a part over the default
    alpha 32: alpha follows r, as ``--set adapter.alpha_over_r=2`` does, not a clash."""
    from sweeps.cli import build_config, build_parser
    from sweeps.study_file import read_study

    def edit(d):
        if where == "preset":
            d["presets"]["smoke"]["trial"]["adapter"] = {"alpha_over_r": 2}
        else:
            del d["presets"]["base"]["trial"]["adapter"]["alpha"]  # a part's settings are the preset's defaults
            d.update(part_flag="fold", parts={"a": {"trial": {"adapter": {"alpha_over_r": 2}}}})

    path = _with(tmp_path, edit)
    shutil.copy(USER_STUDY / "space.yaml", tmp_path / "space.yaml")
    spec = read_study(path)
    args = build_parser(spec).parse_args(["--preset", "smoke"])
    adapter = build_config(spec, args, part="a" if where == "part" else None).trial.adapter
    assert (adapter.alpha, adapter.alpha_over_r, adapter.lora_alpha) == (None, 2, 2 * adapter.r)


def write_tickets(folder: Path) -> None:
    """The user's own data: the synthetic support messages as JSON Lines with integer queue ids."""
    import csv

    from trainables.offline.user_data_synth import smoke_text_classification_data

    queues = {"billing": 0, "shipping": 1, "technical": 2}
    folder.mkdir(parents=True, exist_ok=True)
    for src, dst in (("train.csv", "train.jsonl"), ("test.csv", "validation.jsonl")):
        with open(smoke_text_classification_data() / src, encoding="utf-8") as fh:
            rows = [{"body": r["message"], "queue": queues[r["topic"]]} for r in csv.DictReader(fh)]
        (folder / dst).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.mark.integration
def test_a_user_study_file_runs_as_a_smoke_sweep(tmp_path):
    from sweep_runs import run_sweep_command

    study = tmp_path / "project"
    shutil.copytree(USER_STUDY, study)
    write_tickets(study / "tickets")
    work = tmp_path / "work"  # another directory: the study's paths are read beside it
    work.mkdir()
    uri = f"sqlite:///{work / 'mlruns.db'}"
    # One epoch of the preset's two: what is checked is the record, not how much the trials learn.
    s = run_sweep_command([sys.executable, "-m", "sweeps.run", "--config", str(study / "study.yaml"),
                           "--preset", "smoke", "--tracking-uri", uri, "--storage", str(work / "rr"), "--name", "u",
                           "--set", "train.epochs=1", *ONE_AT_A_TIME],
                          cwd=work, uri=uri, experiment="lorasweep-my_tickets", completed=2)
    p = s.parent.data.params
    # The task is the user's class beside the study file: the trials imported it too (they ran).
    assert (p["preset"], p["task"], p["data.labels"]) == ("smoke", "ticket_task:Tickets", "['0', '1', '2']")
    best = max(s.trials, key=lambda r: r.data.metrics["val_macro_f1"])  # its metric: macro-F1 first
    assert s.parent.data.metrics["best_val_macro_f1"] == best.data.metrics["val_macro_f1"]
    assert (p["data.val_from"], p["data.test_from"], p["data.train_examples"]) == (
        "validation split", "validation set", "160")
    assert sorted(int(r.data.params["adapter.r"]) for r in s.trials) == [2, 8]
    for run in s.trials:
        m = run.data.metrics
        assert run.data.tags["lorasweep.status"] == "completed"
        for key in ("val_accuracy", "val_macro_f1", "accuracy", "macro_f1"):
            assert 0 <= m[key] <= 100, key
        # MiniLM: 6 layers, d = 384; LoRA on W_q, W_v: r x (384 + 384) each; head 384 x 3 + 3
        assert m["trainable_params"] == 6 * 2 * int(run.data.params["adapter.r"]) * 768 + 384 * 3 + 3


@pytest.mark.parametrize("task, fragment", [
    ("no_such_module:Tickets", "error: task: 'no_such_module:Tickets': cannot import 'no_such_module' (No module "
                               "named 'no_such_module'); put its folder beside the study file or on PYTHONPATH"),
    ("ticket_task:Tickest", "error: task: 'ticket_task:Tickest': 'ticket_task' has no task class 'Tickest' (a "
                            "subclass of trainables.tasks.base.Task)"),
    ("json:JSONDecoder", "error: task: 'json:JSONDecoder': 'json' has no task class 'JSONDecoder'"),
])
def test_a_task_class_that_cannot_be_loaded_is_one_line_exit_2(tmp_path, capsys, task, fragment):
    from sweeps.cli import run_study

    study = tmp_path / "project"
    shutil.copytree(USER_STUDY, study)
    write_tickets(study / "tickets")
    code = run_study(None, ["--config", str(study / "study.yaml"), "--preset", "smoke", "--set", f"task={task}",
                            "--dry-run", "--storage", str(tmp_path / "rr")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and err.startswith(fragment), err
    assert not (tmp_path / "rr").exists()



def test_a_study_files_resume_hint_runs_the_study_file():
    """An interrupted sweep of a study file is finished through ``python -m sweeps.run
    --config FILE``; a built-in study's through its script."""
    from types import SimpleNamespace

    from sweeps.stopping import resume_command
    from sweeps.study_file import read_study

    study = read_study(USER_STUDY / "study.yaml")
    cfg = SimpleNamespace(study=study.name, part=None, storage=None)
    path = (USER_STUDY / "study.yaml").resolve()
    assert resume_command(cfg, "s1") == f"python -m sweeps.run --config {path} --resume --name s1"
    builtin = SimpleNamespace(study="rank_e2e", part=None, storage="/tmp/rr")
    assert resume_command(builtin, "s2") == "python sweeps/rank_e2e.py --resume --name s2 --storage /tmp/rr"


def test_a_study_files_parts_are_summed_up_under_its_study_name(tmp_path, monkeypatch, capfd):
    """Two parts of the user study (``python -m sweeps.run --config``), each run replaced by
    its finished outcome: the closing line names the study, not the script's."""
    import types

    import sweeps.runner
    from sweeps.cli import run_study

    folder = shutil.copytree(USER_STUDY, tmp_path / "study")  # the study's task module beside it
    write_tickets(folder / "tickets")
    path = _with(folder, lambda d: d.update(parts={"a": {}, "b": {}}, part_flag="fold", default_parts=["a", "b"]))
    monkeypatch.setattr(sweeps.runner, "run_sweep", lambda cfg, **_: types.SimpleNamespace(exit_code=0,
                                                                                           interrupted=False))
    assert run_study(None, ["--config", str(path), "--preset", "smoke", "--storage", str(tmp_path / "rr")]) == 0
    assert "\nmy_tickets: 2 sweeps (a, b); 2 without failed trials" in capfd.readouterr().out


def test_an_inline_space_reads_its_relative_paths_beside_the_study_file(tmp_path):
    """A space written in the study file names files as the study's other settings do: a
    relative path that is there, beside the study file, is made absolute."""
    from sweeps.study_file import beside

    (tmp_path / "warm-start").mkdir()
    data = {"space": {"scientific": {"init_from": {"grid": ["warm-start", "not-here"]}},
                      "fixed": {"eval.prompts": "warm-start", "r": 8}}}
    beside(data, tmp_path)
    assert data["space"] == {"scientific": {"init_from": {"grid": [str(tmp_path / "warm-start"), "not-here"]}},
                             "fixed": {"eval.prompts": str(tmp_path / "warm-start"), "r": 8}}
