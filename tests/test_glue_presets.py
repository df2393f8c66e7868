"""The GLUE presets without training: every value checked against the source it cites (typed
here from those sources), every preset validated, and the ``best:<part>`` warm start ordered
or refused before anything launches.

Sources: the LoRA paper's RoBERTa-base table as 001_02f543aa5dd0cc94.txt prints it ("RoBERTa
Implementation Details"; the same as 000_ebca86e218baf75c.txt Figure 1), the TU Wien report's
changes to it (000 section 3, Table 1), and microsoft/LoRA examples/NLU/roberta_*_<task>.sh
with the transformers Trainer defaults they run on.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

#: 001_02f543aa5dd0cc94.txt: batch size, epochs, learning rate per task (RoBERTa-base).
TABLE_BASE = {"mnli": (16, 30, 5e-4), "sst2": (16, 60, 5e-4), "mrpc": (16, 30, 4e-4),
              "cola": (32, 80, 4e-4), "qnli": (32, 25, 4e-4), "qqp": (16, 25, 5e-4),
              "rte": (32, 80, 5e-4), "stsb": (16, 40, 4e-4)}
#: examples/NLU/roberta_large_<task>.sh: --per_device_train_batch_size, --num_train_epochs,
#: --learning_rate, --max_seq_length (all with --lora_alpha 16).
SCRIPTS_LARGE = {"mnli": (4, 10, 3e-4, 128), "sst2": (8, 10, 4e-4, 512), "mrpc": (4, 20, 3e-4, 512),
                 "cola": (4, 20, 3e-4, 128), "qnli": (4, 10, 2e-4, 512), "qqp": (4, 20, 3e-4, 512),
                 "rte": (8, 20, 4e-4, 512), "stsb": (4, 10, 3e-4, 128)}
#: 000_ebca86e218baf75c.txt Table 1 (and the slides): epochs cut from 30 to 8 and 25 to 12.
TUWIEN_EPOCHS = {"mnli": 8, "qqp": 12}
#: Started from the best MNLI adapter (paper appendix D.1; 000 section 3.5.1; --lora_path).
WARM = {"mrpc", "rte", "stsb"}


def sweep_config(study: str, *argv: str):
    """The validated SweepConfig of the one part ``sweeps/<study>.py *argv`` selects."""
    from sweeps.cli import build_configs, build_parser
    from sweeps.study_file import load_study

    spec = load_study(study)
    (cfg,) = build_configs(spec, build_parser(spec).parse_args(list(argv)))
    return cfg


def _fresh(trial):
    return replace(trial, adapter=replace(trial.adapter, init_from=None))


@pytest.mark.parametrize("task", TABLE_BASE)
def test_paper_presets_follow_the_table_the_scripts_and_the_report(task):
    paper = sweep_config("glue_paper", "--preset", "paper", "--task", task)
    t = paper.trial
    assert (t.train.batch_size, t.train.epochs, t.train.lr) == TABLE_BASE[task]
    assert (t.adapter.r, t.adapter.alpha, t.adapter.targets, t.adapter.dropout) == (8, 8, "qv", 0.0)
    assert (t.train.warmup_ratio, t.train.scheduler, t.data.max_length) == (0.06, "linear", 512)
    assert (t.train.weight_decay, t.train.max_grad_norm, t.train.adam_eps) == (0.1, 1.0, 1e-8)
    assert (t.train.label_smoothing, t.train.precision, t.data.split) == (0.0, "fp32", "paper")
    assert paper.seeds == 5 and t.train.keep_best and not t.data.standardize_targets
    assert t.adapter.init_from is None and paper.scheduler.name == "fifo"

    warm = sweep_config("glue_paper", "--preset", "paper-warm", "--task", task).trial
    assert warm.adapter.init_from == ("best:mnli" if task in WARM else None) and _fresh(warm) == t

    large = sweep_config("glue_paper", "--preset", "paper-large", "--task", task).trial
    assert (large.train.batch_size, large.train.epochs, large.train.lr, large.data.max_length) == \
        SCRIPTS_LARGE[task]
    assert large.adapter.alpha == 16 and large.model.name_or_path == "roberta-large"

    tuwien = sweep_config("glue_paper", "--preset", "tuwien", "--task", task)
    tw = tuwien.trial
    assert tw.train.epochs == TUWIEN_EPOCHS.get(task, TABLE_BASE[task][1])
    assert (tw.train.batch_size, tw.train.lr) == TABLE_BASE[task][::2]
    assert (tw.data.split, tuwien.seeds, tw.train.keep_best, tw.train.weight_decay) == \
        ("resplit", 1, False, 0.0)
    assert tw.adapter.init_from is None and not tw.data.standardize_targets
    assert tw.adapter.init_weights == "gaussian" and t.adapter.init_weights == "default"  # 000 section 3.5.4
    tw_warm = sweep_config("glue_paper", "--preset", "tuwien-warm", "--task", task).trial
    assert tw_warm.adapter.init_from == ("best:mnli" if task in WARM else None) and _fresh(tw_warm) == tw

    rank = sweep_config("glue_rank", "--preset", "paper", "--task", task).trial
    assert (rank.train.batch_size, rank.train.epochs) == TABLE_BASE[task][:2]
    assert (rank.train.warmup_ratio, rank.train.weight_decay, rank.train.max_grad_norm) == (0.06, 0.1, 1.0)
    assert rank.train.keep_best and rank.data.standardize_targets


@pytest.mark.parametrize("study, preset", [
    ("glue_paper", "paper"), ("glue_paper", "paper-warm"), ("glue_paper", "paper-large"),
    ("glue_paper", "tuwien"), ("glue_paper", "tuwien-warm"), ("glue_paper", "smoke"),
    ("glue_paper", "smoke-warm"), ("glue_rank", "paper"), ("glue_rank", "smoke")])
def test_every_preset_validates_for_every_task(study, preset, tmp_path, capsys):
    """Dry runs of all eight parts (hub presets on the offline MiniLM and synthetic GLUE:
    the schema, the space, the targets against the model's modules)."""
    from sweeps.cli import run_study

    hub = [] if preset.startswith("smoke") else ["--model", "minilm", "--data", "smoke:glue"]
    assert run_study(study, ["--preset", preset, "--task", "all", "--dry-run", *hub,
                             "--storage", str(tmp_path / "rr")]) == 0
    plans = _json_documents(capsys.readouterr().out)
    assert [p["sweep"]["part"] for p in plans] == list(TABLE_BASE)  # MNLI first: the others may start from it
    assert not (tmp_path / "rr").exists()


def _json_documents(text: str) -> list[dict]:
    decoder, out, i = json.JSONDecoder(), [], 0
    while (start := text.find("{\n", i)) >= 0:
        doc, i = decoder.raw_decode(text, start)
        out.append(doc)
    return out


# --------------------------------------------------------------------------- best:<part>


def test_the_part_named_by_best_runs_first(tmp_path, capsys):
    from sweeps.cli import run_study

    assert run_study("glue_paper", ["--preset", "smoke-warm", "--task", "rte,sst2,mnli", "--dry-run",
                                    "--storage", str(tmp_path / "rr")]) == 0
    plans = _json_documents(capsys.readouterr().out)
    assert [(p["sweep"]["part"], p["sweep"]["trial"]["adapter"]["init_from"]) for p in plans] == [
        ("mnli", None), ("rte", "best:mnli"), ("sst2", None)]


def test_best_on_the_part_itself_starts_it_fresh():
    from sweeps.chain import order
    from sweeps.study_file import load_study

    spec = load_study("glue_paper")
    cfgs = [sweep_config("glue_paper", "--preset", "smoke", "--task", t,
                         "--set", "adapter.init_from=best:mnli") for t in ("mnli", "rte")]
    mnli, rte = order(cfgs, spec)
    assert mnli.part == "mnli" and mnli.trial.adapter.init_from is None
    assert mnli.overrides["adapter.init_from"] is None  # the command line's value too
    assert (rte.part, rte.trial.adapter.init_from) == ("rte", "best:mnli")


def test_other_warm_starts_pass_through_unchanged():
    from sweeps.chain import order
    from sweeps.cli import build_configs, build_parser
    from sweeps.study_file import load_study

    for study, argv in (("rank_e2e", ["--preset", "smoke"]),
                        ("glue_paper", ["--preset", "smoke", "--task", "rte,mnli"])):
        spec = load_study(study)
        args = build_parser(spec).parse_args([*argv, "--set", "adapter.init_from=runs:/0123456789abcdef"])
        cfgs = build_configs(spec, args)
        assert order(cfgs, spec) == cfgs  # same configs, same order: nothing to resolve


def test_warm_starts_chain_one_step():
    from sweeps.chain import order, with_init_from
    from sweeps.study_file import load_study
    from trainables.errors import UserError

    mnli, rte, mrpc = (sweep_config("glue_paper", "--preset", "smoke-warm", "--task", t)
                       for t in ("mnli", "rte", "mrpc"))
    with pytest.raises(UserError, match="part rte starts from best:mnli itself; warm starts chain one step"):
        order([mnli, rte, with_init_from(mrpc, "best:rte")], load_study("glue_paper"))


@pytest.mark.parametrize("study, argv, fragment", [
    ("glue_paper", ["--preset", "smoke-warm", "--task", "rte"],
     "adapter.init_from: best:mnli: part mnli is not among those selected and sqlite:///"),
    ("glue_paper", ["--preset", "smoke", "--task", "rte", "--set", "adapter.init_from=best:mnlii"],
     "adapter.init_from: best:mnlii: glue_paper has no part 'mnlii'; accepted: best:<part> with a part of"),
    ("rank_e2e", ["--preset", "smoke", "--set", "adapter.init_from=best:mnli"],
     "adapter.init_from: best:mnli: best:<part> starts from another part of a multi-part study; "
     "rank_e2e runs one sweep"),
])
def test_best_that_cannot_be_resolved_is_one_line_and_exit_2(study, argv, fragment, tmp_path, capsys):
    """Refused before anything launches: no MLflow store is created, no Tune storage written."""
    from sweeps.cli import EXIT_USAGE, run_study

    code = run_study(study, [*argv, "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}",
                             "--storage", str(tmp_path / "rr")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_USAGE and len(err) == 1 and err[0].startswith("error: " + fragment), err
    assert not (tmp_path / "m.db").exists() and not (tmp_path / "rr").exists()


@pytest.mark.parametrize("name", [None, "mine"])
def test_the_resume_command_of_a_part_selects_that_parts_sweep(name):
    """An interrupted part's resume command, parsed by the command line, names the same
    sweep: with the default name (the part is its last piece) and with a given one."""
    import shlex

    from sweeps.cli import build_configs, build_parser
    from sweeps.planning import plan_sweep
    from sweeps.stopping import resume_command
    from sweeps.study_file import load_study

    spec = load_study("glue_rank")
    cfg = sweep_config("glue_rank", "--preset", "smoke", "--task", "sst2", *(["--name", name] if name else []))
    sweep = plan_sweep(cfg, prepare=False).name
    assert sweep.endswith("-sst2") and (name is None or sweep == "mine-sst2")
    argv = shlex.split(resume_command(cfg, sweep))
    assert argv[:3] == ["python", "sweeps/glue_rank.py", "--resume"]
    (again,) = build_configs(spec, build_parser(spec).parse_args(argv[2:]))
    assert (again.name, again.part) == (sweep, "sst2")


@pytest.mark.parametrize("study, argv, part", [("rank_e2e", [], None), ("glue_rank", ["--task", "sst2"], "sst2")])
def test_sweeps_launched_in_the_same_second_get_names_of_their_own(study, argv, part):
    """Two launches of one study and preset in the same second (a shell loop, two cluster
    jobs on one storage) name their sweeps apart, or both would keep their Tune state,
    checkpoints and journal in one experiment directory: ``<study>-<preset>-<local time to
    the second>-<6 hex digits>``, the part last."""
    import datetime
    import re

    from sweeps.storage import default_name

    cfg = sweep_config(study, "--preset", "smoke", *argv)
    while True:  # both names within one second of the clock
        before = datetime.datetime.now()
        names = [default_name(cfg), default_name(cfg)]
        if datetime.datetime.now().replace(microsecond=0) == before.replace(microsecond=0):
            break
    assert names[0] != names[1]
    tail = f"-{part}" if part else ""
    for name in names:
        assert re.fullmatch(rf"{study}-smoke-{before:%Y%m%d-%H%M%S}-[0-9a-f]{{6}}{tail}", name), name


def test_studies_reporting_in_the_same_second_get_report_folders_of_their_own(tmp_path):
    """Two studies on one storage whose sweeps end in the same second write their reports into
    folders of their own beside the sweeps' results: ``<study>-<preset>-report-<local time to
    the second>-<6 hex digits>``; with --name, ``<name>-report``."""
    import datetime
    import re

    from sweeps.study_report import report_dir
    from sweeps.summary import Outcome

    outcome = Outcome(rows=[], counts={}, csv_path=tmp_path / "sweep" / "results.csv", parent_run_id="p", exit_code=0)
    while True:  # both folders within one second of the clock
        before = datetime.datetime.now()
        dirs = [report_dir("rank_vs_task", "smoke", [outcome], name=None) for _ in range(2)]
        if datetime.datetime.now().replace(microsecond=0) == before.replace(microsecond=0):
            break
    assert dirs[0] != dirs[1]
    for d in dirs:
        assert d.parent == tmp_path and re.fullmatch(rf"rank_vs_task-smoke-report-{before:%Y%m%d-%H%M%S}-[0-9a-f]{{6}}",
                                                     d.name), d
    assert report_dir("rank_vs_task", "smoke", [outcome], name="mine") == tmp_path / "mine-report"


def test_the_help_of_name_gives_the_default_names_form():
    """--help says what a sweep is named without --name: the time, then the random digits."""
    from sweeps.cli import build_parser
    from sweeps.study_file import load_study

    text = " ".join(build_parser(load_study("rank_e2e")).format_help().split())
    assert "sweep name (default <study>-<preset>-<time>-<6 random hex digits>)" in text


def test_a_multi_part_run_interrupted_in_a_part_names_the_parts_it_did_not_run(monkeypatch, capfd):
    """--resume finishes the interrupted part only: the command says which parts are left
    and how to run them (the run itself is replaced by its interrupted outcome)."""
    import types

    import sweeps.cli
    import sweeps.runner

    ran = []

    def interrupted(cfg, **_):
        ran.append(cfg.part)
        return types.SimpleNamespace(exit_code=130, interrupted=True)

    monkeypatch.setattr(sweeps.runner, "run_sweep", interrupted)
    assert sweeps.cli.run_study("variants_glue", ["--preset", "smoke", "--name", "vg"]) == 130
    assert ran == ["mrpc"]
    assert capfd.readouterr().err.splitlines()[-1] == \
        "variants_glue: not run: stsb; after --resume, run the same command with --task stsb, without --resume"
