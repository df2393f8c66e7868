"""Every shell command in the fenced code blocks of README.md and docs/**/*.md is true (the
commands as tests/doc_commands.py reads them). Each is a test named by its first line,
``file:line``:

* A sweep (``python sweeps/<study>.py``, ``python -m sweeps.run``, ``lorasweep run``, or the
  entrypoint of ``ray job submit``) runs in-process through :func:`sweeps.cli.run_study` with
  ``--dry-run``: every check before launch, no Ray started, nothing written to its Tune
  storage or MLflow store (both in a temporary directory). A source a dry run cannot have
  offline (a hub model or dataset, a path on the author's machine) is replaced, part by part,
  by that of the study's offline preset (``<preset>-smoke``, else ``smoke``): the study,
  preset, parts, flags and ``--set`` values are the command's own. The tiny GPT-2s of 3 and 4
  layers stand in as the 2-layer one (the same modules, two models fewer to build). A
  command shown with an ``error:`` line must exit 2 with that line; a sweep resumed or
  extended by name must have been started earlier on its page. Files the docs define are
  built from their text: a ``# NAME.yaml: {...}`` comment, the page's study file for
  ``--config``, a data file with the columns its ``data.columns`` name.
* The commands of the study docs/extending.md adds run the same way, in one subprocess, on a
  copy of the packages with that page's code applied (as tests/test_extending.py applies it).
* ``python -m analysis.report`` and ``python -m sweeps.export`` (and ``lorasweep report`` /
  ``export``) parse with their own parsers; ``lorasweep --help`` (its output as shown),
  ``settings``, ``score`` and the E2E scorer run (their arguments parse; a missing input file
  is their own one-line error).
* Other programs: the paths they name in the repository exist (a script run by its path is
  executable and knows the flags given), ``pip install`` extras are pyproject's, ``pytest -m``
  markers are registered and ``-k`` selects a test, ``docker compose`` finds its file, and a
  variable set is one the project reads.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import REPO
from doc_commands import COMMANDS, DOCS, SHELL_BLOCKS, Command, fenced_blocks

#: What the project ships: an environment variable a command sets must be named here.
PROJECT_SOURCES = ("sweeps", "trainables", "search_spaces", "analysis", "cluster", "bench")
#: Programs whose commands name nothing of the project but paths and variables.
OTHER_PROGRAMS = {
    "pip", "pytest", "ray", "mlflow", "optuna-dashboard", "kubectl", "docker", "bash", "sh", ".", "cd",
    "mkdir", "chmod", "ls", "cat", "cut", "echo", "kill", "ps", "pgrep", "sleep", "wait", "tail", "grep",
    "head", "[", "python3 -m venv", "python3 -c", "export", "for", "done",
}
#: The module each ``lorasweep`` subcommand runs (sweeps/command.py).
TOOLS = {"report": "analysis.report", "export": "sweeps.export", "settings": "sweeps.settings",
         "score": "sweeps.score", "cache": "sweeps.caches"}
#: Tools whose parser is built in their ``main``: run, as they need no sweep.
RUN_FOR_REAL = ("sweeps.settings", "sweeps.score", "sweeps.caches", "trainables.metrics.e2e")


# --------------------------------------------------------------------------- files the docs define


def defined_files() -> dict[str, str]:
    """``{name: YAML}`` of the files the docs define in a comment, ``# NAME.yaml: {...}``."""
    found = {}
    for path in DOCS:
        for lang, lines in fenced_blocks(path.read_text(encoding="utf-8")):
            for _, line in lines if lang in SHELL_BLOCKS else ():
                if m := re.fullmatch(r"#\s*([\w.-]+\.ya?ml):\s*(.+)", line.strip()):
                    found[m.group(1)] = "{" + m.group(2) + "}\n"
    return found


def yaml_blocks(doc: str) -> list[tuple[str, str]]:
    """(title, text) of a page's YAML blocks."""
    text = (REPO / doc).read_text(encoding="utf-8")
    return re.findall(r'^```yaml(?: title="([^"]+)")?\n(.*?)^```$', text, re.MULTILINE | re.DOTALL)


def write_doc_files(cmd: Command, cwd: Path) -> None:
    """The files ``cmd`` names that the docs define: the ``# NAME.yaml`` comments, and a
    ``--config`` study file that is its page's YAML block with presets (on a page without one,
    the one user's study file, untitled, that the docs show)."""
    import yaml

    for name, text in defined_files().items():
        (cwd / name).write_text(text, encoding="utf-8")
    if "--config" in cmd.argv and not (cwd / cmd.argv[cmd.argv.index("--config") + 1]).exists():
        def studies(doc: str, titled: bool = True) -> list[str]:
            return [text for title, text in yaml_blocks(doc)
                    if (titled or not title) and "presets" in (yaml.safe_load(text) or {})]

        (study,) = studies(cmd.doc) or [s for d in DOCS for s in studies(d.relative_to(REPO).as_posix(), False)]
        (cwd / cmd.argv[cmd.argv.index("--config") + 1]).write_text(study, encoding="utf-8")


def write_data_file(trial, path: Path) -> None:
    """A data file of the trial's task, with the columns its ``data.columns`` name: the
    project's synthetic rows, as many as its held-out split needs and more."""
    from trainables.offline.chat_synth import conversations
    from trainables.offline.user_data_synth import sft_rows, ticket
    from trainables.tasks.sft import ALPACA

    import random

    columns, n = dict(trial.data.columns or {}), (trial.data.holdout_size or 0) + 60
    if trial.task == "sft" and "messages" in columns:
        rows = [{columns["messages"]: turns} for turns in conversations(n, seed=0)]
    elif trial.task == "sft":
        rows = [{columns.get(role, name): row[name] for role, name in ALPACA.items()} for row in sft_rows(n)]
    else:
        assert trial.task == "text-classification", f"no data file of task {trial.task} is written here"
        rng = random.Random(0)
        rows = [{columns.get("text", "text"): t, columns.get("label", "label"): y}
                for t, y in (ticket(rng) for _ in range(n))]
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


# --------------------------------------------------------------------------- sweeps: dry runs

#: Tiny GPT-2s of other depths: the 2-layer one has the same modules (one offline model to build).
CHEAPER = {"smoke:gpt2-m": "smoke:gpt2-s", "smoke:gpt2-l": "smoke:gpt2-s"}


def sweep_call(cmd: Command) -> tuple[str | None, list[str]]:
    """(study, arguments) of a sweep command, as its entry point receives them."""
    a = cmd.argv
    if a[0] == "lorasweep":
        return (None, list(a[2:])) if a[2].startswith("-") else (a[2], list(a[3:]))
    if a[1] == "-m":
        return None, list(a[3:])
    return Path(a[1]).stem, list(a[2:])


def offline(source: str, kind: str) -> bool:
    from trainables.offline.registry import MODEL_ALIASES

    return source.startswith("smoke:") or (kind == "model" and source in MODEL_ALIASES) or \
        Path(source).expanduser().exists()


def stand_ins(spec, cfg) -> tuple[str, ...]:
    """Arguments that replace the sources a dry run cannot have offline (the model, the data,
    the models a judge compares) by those of the study's offline preset for the same part."""
    from sweeps.cli import build_config, build_parser

    trial = cfg.trial
    compared = [m for m in trial.eval.compare_models or [] if m != "tuned"]
    missing = (not offline(trial.model.name_or_path, "model"), not offline(trial.data.source, "data"),
               not all(offline(m, "model") for m in compared))
    ref = trial
    if any(missing):
        preset = f"{cfg.preset}-smoke" if f"{cfg.preset}-smoke" in spec.presets else "smoke"
        argv = ["--preset", preset, *([f"--{spec.part_flag}", cfg.part] if cfg.part else [])]
        ref = build_config(spec, build_parser(spec).parse_args(argv), part=cfg.part).trial
    model = (ref if missing[0] else trial).model.name_or_path
    model = CHEAPER.get(model, model)
    # A stand-in model holds the offline preset's sequences, which may be fewer positions than
    # the model it stands in for (checked before launch).
    shorter = missing[0] and trial.data.max_length > ref.data.max_length
    return (*(["--model", model] if model != trial.model.name_or_path else []),
            *(["--set", f"data.max_length={ref.data.max_length}"] if shorter else []),
            *(["--data", ref.data.source] if missing[1] else []),
            *(["--set", f"eval.compare_models={json.dumps(ref.eval.compare_models)}"] if missing[2] else []))


def dry_runs(cmd: Command, store: Path) -> tuple[str | None, list[list[str]]]:
    """The study and the argument lists of the command's dry runs: its own arguments (checked
    first with the real parser and config builder) with ``--dry-run``, its store in ``store``,
    and the stand-ins, one run per set of parts that share them."""
    from sweeps.cli import build_configs, build_parser, extend_count, study_for

    study, argv = sweep_call(cmd)
    given = set(argv) if cmd.error else set()  # a documented mistake keeps the flags it names
    base = [*argv, "--dry-run"] if "--dry-run" not in argv else argv
    base += [x for flag, value in (("--storage", store / "rr"), ("--tracking-uri", f"sqlite:///{store / 'm.db'}"))
             if flag not in given for x in (flag, str(value))]
    if cmd.error or study is not None and not (REPO / "sweeps" / f"{study}.py").is_file():
        return study, [base]  # a mistake, or a study this checkout does not have: as written
    spec = study_for(study, argv)
    args = parsed(build_parser(spec), argv)
    extend_count(args)
    groups: dict[tuple[str, ...], list[str | None]] = {}
    for cfg in build_configs(spec, args):
        source = cfg.trial.data.source
        if not offline(source, "data") and Path(source).suffix in (".csv", ".jsonl", ".json") \
                and not source.startswith(("/", "~")):
            write_data_file(cfg.trial, Path(source))
        groups.setdefault(stand_ins(spec, cfg), []).append(cfg.part)
    if "--extend" in base:  # an extension is not dry-run: its count is checked above
        i = base.index("--extend")
        base = base[:i] + base[i + 2:]
    # A resume's dry run needs its stored sweep (check_started_before: the page starts it):
    # its settings are dry-run as the sweep's.
    base = [a for a in base if a != "--resume"]
    runs = []
    for extra, parts in groups.items():
        extra = list(extra)
        if len(groups) > 1:
            extra += [f"--{spec.part_flag}", ",".join(parts)]
        runs.append(base + extra)
    return study, runs


def check_outcome(cmd: Command, code: int, out: str, err: str, store: Path) -> None:
    if cmd.error:  # its one error line (an offline asset built first logs before it)
        assert (code, [line for line in err.splitlines() if line.startswith("error: ")]) == (2, [cmd.error]), err
    else:
        assert code == 0, err[-3000:]
    if cmd.tail:
        assert out.rstrip("\n").splitlines()[-cmd.tail:] == list(cmd.output), out[-2000:]
    assert sorted(p.name for p in store.iterdir()) == [], "the dry run wrote to its store"


def parsed(parser, argv: list[str]):
    """``parser.parse_args(argv)``; a usage error fails the test with argparse's message."""
    with contextlib.redirect_stderr(io.StringIO()) as err:
        try:
            return parser.parse_args(argv)
        except SystemExit as e:
            if e.code:
                pytest.fail(f"{parser.prog} {shlex.join(argv)}: {err.getvalue().strip()}")
            raise


def added_by(cmd: Command) -> bool:
    """A sweep of a study whose script its page writes (docs/extending.md)."""
    titles = re.findall(r'^```\w+ title="([^"]+)"', (REPO / cmd.doc).read_text(), re.MULTILINE)
    return cmd.argv[1] in titles and not (REPO / cmd.argv[1]).exists()


SWEEPS = [c for c in COMMANDS if c.kind == "sweep" and not added_by(c)]
EXTENDING = [c for c in COMMANDS if c.kind == "sweep" and added_by(c)]


def named(cmd: Command) -> str | None:
    return cmd.argv[cmd.argv.index("--name") + 1] if "--name" in cmd.argv else None


def check_started_before(cmd: Command) -> None:
    """A sweep a command resumes or extends by name is one its page started before it."""
    if named(cmd) and ("--resume" in cmd.argv or "--extend" in cmd.argv):
        started = [c.id for c in COMMANDS if c.doc == cmd.doc and c.line < cmd.line and c.kind == "sweep"
                   and named(c) == named(cmd) and "--resume" not in c.argv and "--extend" not in c.argv]
        assert started, f"{cmd.doc} starts no sweep named {named(cmd)!r} before it resumes or extends it"


@pytest.mark.usefixtures("torch_one_thread")  # building an offline model beside other processes
@pytest.mark.parametrize("cmd", SWEEPS, ids=lambda c: c.id)
def test_sweep_command_passes_its_dry_run(cmd, tmp_path, monkeypatch, capsys):
    from sweeps.cli import run_study

    store, cwd = tmp_path / "store", tmp_path / "cwd"
    store.mkdir()
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    for name, value in (*cmd.exported, *cmd.env):
        monkeypatch.setenv(name, value)
    if cmd.argv[1].endswith(".py"):
        assert (REPO / cmd.argv[1]).is_file()
    check_started_before(cmd)
    write_doc_files(cmd, cwd)
    study, runs = dry_runs(cmd, store)
    for argv in runs:
        code = run_study(study, argv)
        out, err = capsys.readouterr()
        check_outcome(cmd, code, out, err, store)
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized(), "a dry run started Ray"


# --------------------------------------------------------------------------- docs/extending.md

DRIVER = """
import contextlib, io, json, os, sys
from sweeps.cli import run_study
jobs, out = json.loads(open(sys.argv[1]).read()), {}
for key, (cwd, study, argv) in jobs.items():
    os.chdir(cwd)
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        out[key] = [run_study(study, argv), stdout.getvalue(), stderr.getvalue()]
open(sys.argv[1], "w").write(json.dumps(out))
"""


def write_extending_files(cmd: Command, cwd: Path) -> None:
    """What a command's comment says a file it names holds: ``# line N of its FILE: ROW``
    (the rows before it valid), or ``# KEY: VALUE`` in the page's search space."""
    if m := re.fullmatch(r'line (\d+) of its ([\w.]+): (.+)', cmd.comment):
        folder = cwd / cmd.argv[cmd.argv.index("--data") + 1]
        folder.mkdir()
        (folder / m.group(2)).write_text('"2","Lovely."\n' * (int(m.group(1)) - 1) + m.group(3) + "\n")
    elif "--search-space" in cmd.argv and (key := re.fullmatch(r"(\w+): .+", cmd.comment)):
        (space,) = [text for title, text in yaml_blocks(cmd.doc) if title.startswith("search_spaces/")]
        lines = [f"{line[:len(line) - len(line.lstrip())]}{cmd.comment}" if line.strip().startswith(f"{key[1]}:")
                 else line for line in space.splitlines()]
        (cwd / cmd.argv[cmd.argv.index("--search-space") + 1]).write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def extending_runs(tmp_path_factory) -> dict[str, tuple[int, str, str, Path]]:
    """The dry runs of the commands of the study docs/extending.md adds, in one subprocess on
    a copy of the packages with that page's code applied: ``{id: (code, stdout, stderr, store)}``."""
    from test_extending import apply_doc, doc_blocks

    root = tmp_path_factory.mktemp("extending")
    apply_doc(root / "checkout", doc_blocks())
    jobs = {}
    for i, cmd in enumerate(EXTENDING):
        (cwd := root / "cwd" / str(i)).mkdir(parents=True)
        (store := root / "store" / str(i)).mkdir(parents=True)
        write_extending_files(cmd, cwd)
        study, (argv,) = dry_runs(cmd, store)
        jobs[cmd.id] = (str(cwd), study, argv)
    (root / "jobs.json").write_text(json.dumps(jobs))
    proc = subprocess.run([sys.executable, "-P", "-c", DRIVER, str(root / "jobs.json")], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(root / "checkout")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((root / "jobs.json").read_text())
    return {c.id: (*results[c.id], root / "store" / str(i)) for i, c in enumerate(EXTENDING)}


@pytest.mark.parametrize("cmd", EXTENDING, ids=lambda c: c.id)
def test_extending_command_passes_its_dry_run(cmd, extending_runs):
    code, out, err, store = extending_runs[cmd.id]
    check_outcome(cmd, code, out, err, store)


# --------------------------------------------------------------------------- the project's tools

TOOL_COMMANDS = [c for c in COMMANDS if c.kind == "tool"]


@pytest.mark.parametrize("cmd", TOOL_COMMANDS, ids=lambda c: c.id)
def test_tool_command_parses(cmd, tmp_path, monkeypatch, capsys):
    """Its arguments parse with the tool's own parser; a tool without one apart from its
    ``main`` runs (``cache clear`` with ``--dry-run``): its arguments parse before it reads any
    input, and a missing input is its own one-line error, not argparse's."""
    import importlib

    from sweeps.command import main as lorasweep

    monkeypatch.chdir(tmp_path)
    a = list(cmd.argv)
    if a[0] == "lorasweep" and (len(a) == 1 or a[1].startswith("-")):
        assert lorasweep(a[1:]) == 0
        shown = [line.strip() for line in capsys.readouterr().out.splitlines()]
        assert [line for line in cmd.output if line != "..." and line.strip() not in shown] == []
        return
    module, args = (TOOLS[a[1]], a[2:]) if a[0] == "lorasweep" else (a[2], a[3:])
    tool = importlib.import_module(module)
    if hasattr(tool, "build_parser"):
        parsed(tool.build_parser(), args)
        return
    assert module in RUN_FOR_REAL, f"no check of {module}"
    args += ["--dry-run"] if args[:1] == ["clear"] else []
    try:
        code = tool.main(args)
    except SystemExit as e:
        assert not e.code, capsys.readouterr().err
        return
    err = capsys.readouterr().err
    assert code == 0 or err.startswith("error: ") and "usage:" not in err, err


# --------------------------------------------------------------------------- other programs

OTHERS = [c for c in COMMANDS if c.kind == "other"]


def program(cmd: Command) -> str:
    a = cmd.argv
    if a[0] in ("python", "python3") and a[1:2] in (("-m",), ("-c",)):
        return " ".join(a[:3] if a[1] == "-m" else a[:2])
    return a[0]


@functools.cache
def project_text() -> str:
    """Everything the project ships, as text: its code, presets, cluster configs, benchmarks."""
    files = [REPO / "pyproject.toml", *(p for d in PROJECT_SOURCES for p in (REPO / d).rglob("*") if p.is_file())]
    return "\n".join(p.read_text(encoding="utf-8", errors="ignore") for p in files if "__pycache__" not in p.parts)


def repo_paths(cmd: Command, cwd: Path) -> list[str]:
    """The words (and ``--flag=VALUE`` values) that name a path in the repository: relative,
    and their first component is there."""
    out = []
    for word in cmd.argv[1:]:
        word = word.split("=", 1)[1] if word.startswith("-") and "=" in word else word
        if not word.startswith(("-", "/", "~", "$")) and "://" not in word and "*" not in word \
                and (cwd / word.split("/")[0]).exists():
            out.append(word)
    return out


def check_pip_and_pytest(cmd: Command, cwd: Path) -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    a = list(cmd.argv)
    if a[:2] == ["pip", "install"]:
        for spec in (w for w in a[2:] if not w.startswith("-")):
            path, extras = re.fullmatch(r"([^\[]+)(?:\[([\w,-]+)\])?", spec).groups()
            assert (cwd / path / "pyproject.toml").is_file(), spec
            assert set((extras or "").split(",")) - {""} <= set(pyproject["project"]["optional-dependencies"]), spec
    if a[0] == "pytest" and "-m" in a:
        markers = {m.split(":")[0].strip() for m in pyproject["tool"]["pytest"]["ini_options"]["markers"]}
        assert set(re.findall(r"\w+", a[a.index("-m") + 1])) - {"and", "or", "not"} <= markers
    if a[0] == "pytest" and "-k" in a:
        files = [cwd / w for w in a if w.endswith(".py")] or sorted((REPO / "tests").glob("test_*.py"))
        names = [n for f in files for n in re.findall(r"def (test_\w+)", f.read_text())]
        assert any(a[a.index("-k") + 1] in n for n in names), f"-k selects no test of {files}"


@pytest.mark.parametrize("cmd", OTHERS, ids=lambda c: c.id)
def test_other_command_names_what_exists(cmd):
    """A program this test knows; the variables it sets are read by the project; the paths it
    names in the repository exist; a script run by its path is executable and takes its flags."""
    a = cmd.argv
    assert program(cmd) in OTHER_PROGRAMS or "/" in a[0], f"a command of a program this test does not know: {a}"
    for name, _ in cmd.env:
        assert re.search(rf"\b{name}\b", project_text()), f"{name} is set, and the project never reads it"
    if cmd.cwd is None:  # a directory outside the repository
        return
    cwd = REPO / cmd.cwd
    missing = [w for w in repo_paths(cmd, cwd) if not (cwd / w).exists()]
    assert missing == [], f"not in the repository: {missing}"
    if "/" in a[0]:
        script = cwd / a[0]
        assert script.is_file() and os.access(script, os.X_OK), f"{a[0]} is not an executable file"
        assert [f for f in a[1:] if f.startswith("--") and f not in script.read_text()] == []
    if a[:2] == ("docker", "compose"):
        assert [n for n in ("compose.yaml", "docker-compose.yaml") if (cwd / n).is_file()], f"no compose file in {cwd}"
    check_pip_and_pytest(cmd, cwd)


def test_the_docs_have_commands_of_each_kind():
    """The parsing above finds the commands (an empty list would check nothing)."""
    shell = [p for p in DOCS if re.search(r"^\s*```(bash|console)", p.read_text(), re.MULTILINE)]
    assert {str(p.relative_to(REPO)) for p in shell} <= {c.doc for c in COMMANDS}
    assert SWEEPS and EXTENDING and TOOL_COMMANDS and OTHERS
