"""The SQuAD grid and the two rank studies end to end with ``--preset smoke``, through their
entry point (``run_study``, what ``sweeps/<study>.py`` calls) in the test process: real local
Ray (one for the module's sweeps), a real MLflow SQLite store, real training, and the analysis
report written from that store. Plus their bad-input cases as commands (one line, exit code 2,
nothing written)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from conftest import REPO
from sweep_runs import ONE_AT_A_TIME, run_study_here

pytestmark = pytest.mark.integration


#: Less data than the presets (the same code path, a fraction of the compute): 160 training
#: examples (10 steps an epoch) and 32 validation examples.
TRAIN_LIMIT = 160
LESS_DATA = ("--set", f"data.train_limit={TRAIN_LIMIT}", "--set", "data.val_limit=32")
#: One epoch of the presets' two or three: the sweeps' record and report, not how much they learn.
ONE_EPOCH = ("--set", "train.epochs=1")


def _run(script, root, *flags, timeout=600):
    cmd = [sys.executable, str(REPO / "sweeps" / script), *flags]
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout)


def _smoke(script, tmp_path_factory, *flags):
    root = tmp_path_factory.mktemp(script.removesuffix(".py"))
    uri = f"sqlite:///{root / 'mlruns.db'}"
    code, out = run_study_here(script.removesuffix(".py"), ["--preset", "smoke", "--tracking-uri", uri,
                               "--storage", str(root / "rr"), "--name", "t", *ONE_AT_A_TIME, *flags], cwd=root)
    assert code == 0, out[-3000:]
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    parents = [r for r in runs if r.data.tags.get("lorasweep.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("lorasweep.kind") == "trial"]
    return {"root": root, "out": out, "client": client, "parents": parents,
            "children": children, "report": root / "rr" / "t-report"}


def _rescore(client, run, out):
    """``lorasweep score squad`` on a trial's logged references and predictions: its EM and F1."""
    import contextlib
    import io

    from sweeps.score import main

    local = client.download_artifacts(run.info.run_id, "outputs", str(out))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["squad", f"{local}/references.txt", f"{local}/predictions.txt", "--no-meteor"]) == 0
    got = dict(line.split()[:2] for line in printed.getvalue().splitlines() if line.strip())
    for key in ("EM", "F1"):
        assert float(got[key]) == pytest.approx(run.data.metrics[key], abs=1e-3), (key, got)


def _check_report(s, figures):
    report = s["report"]
    assert (report / "report.html").is_file()
    for fig in figures:
        assert (report / f"{fig}.png").is_file() and (report / f"{fig}.svg").is_file(), fig
    from analysis.mlflow_copy import current_report

    for parent in s["parents"]:  # logged to every sweep of the study
        folder = current_report(s["client"], parent.info.run_id)
        logged = {a.path for a in s["client"].list_artifacts(parent.info.run_id, folder)}
        assert f"{folder}/report.html" in logged


def test_squad_grid_smoke(tmp_path_factory, smoke_assets, one_local_ray):
    # METEOR off (no JVM start): test_sweep_smoke.py and test_metrics_e2e.py check it.
    # 160 questions, 1 epoch, 16 dev questions: the grid's code path on less compute.
    s = _smoke("squad_grid.py", tmp_path_factory, "--set", "eval.meteor=false", *LESS_DATA,
               "--set", "data.test_limit=16", *ONE_EPOCH)
    assert len(s["parents"]) == 1 and len(s["children"]) == 4
    seen = set()
    for c in s["children"]:
        p, m = c.data.params, c.data.metrics
        seen.add((int(p["adapter.r"]), p["adapter.targets"]))
        assert c.data.tags["lorasweep.status"] == "completed"
        for key in ("EM", "F1", "BLEU", "ROUGE_L", "trainable_params"):
            assert math.isfinite(m[key]), key
        assert 0 <= m["EM"] <= m["F1"] <= 100
        # attn on the tiny GPT-2 (d=64, 2 layers): r x (64 + 192) per layer; +proj adds both
        # c_proj, attn's r x (64 + 64) and the MLP's r x (256 + 64)
        per_layer = int(p["adapter.r"]) * ((64 + 192) + (448 if p["adapter.targets"] == "attn+proj" else 0))
        assert m["trainable_params"] == 2 * per_layer
        outputs = {a.path for a in s["client"].list_artifacts(c.info.run_id, "outputs")}
        assert {"outputs/predictions.json", "outputs/predictions.txt", "outputs/references.txt"} <= outputs
    # A trial's own outputs give back the EM and F1 it logged (lorasweep score, as docs/metrics.md says).
    _rescore(s["client"], s["children"][0], tmp_path_factory.mktemp("rescore"))
    assert seen == {(4, "attn"), (4, "attn+proj"), (16, "attn"), (16, "attn+proj")}
    assert "EM" in s["out"] and "F1" in s["out"] and "targets" in s["out"]
    from trainables.offline.squad_synth import count_questions, smoke_squad_data

    stats = s["parents"][0].data.params  # every question trained on, or skipped and counted
    total = count_questions(smoke_squad_data() / "train-v1.1.json")
    assert int(stats["data.train_examples"]) + int(stats["data.train_skipped"]) == min(TRAIN_LIMIT, total)
    _check_report(s, ["rank_squad", "curves_t"])
    # Resumed (finished: nothing left to run) from another folder, as the command the sweep
    # prints on an interruption names it: the report reads the sweep's stored MLflow store
    # and goes beside its stored Tune storage, not where the command ran.
    import shutil

    shutil.rmtree(s["report"])
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    code, out = run_study_here("squad_grid", ["--resume", "--name", "t", "--storage", str(s["root"] / "rr")],
                               cwd=elsewhere)
    assert code == 0, out[-3000:]
    assert (s["report"] / "report.html").is_file() and not list(elsewhere.iterdir())


def test_rank_vs_task_smoke(tmp_path_factory, smoke_assets, one_local_ray):
    """SQuAD and WebNLG (E2E's sweep is test_sweep_smoke's, and in rank_vs_model_size's report
    below); less data than the preset (the same code path), METEOR off (no JVM start) and
    greedy decoding (beam search: test_sweep_smoke's sweep)."""
    s = _smoke("rank_vs_task.py", tmp_path_factory, "--task", "squad,webnlg", *LESS_DATA, *ONE_EPOCH,
               "--set", "data.test_limit=8", "--set", "eval.meteor=false", "--set", "eval.max_new_tokens=16",
               "--set", "eval.num_beams=1")
    assert sorted(p.data.tags["lorasweep.part"] for p in s["parents"]) == ["squad", "webnlg"]
    assert len(s["children"]) == 4
    by_task = {}
    for c in s["children"]:
        by_task.setdefault(c.data.params["task"], []).append(c)
        assert math.isfinite(c.data.metrics["BLEU"]) and math.isfinite(c.data.metrics["ROUGE_L"])
    assert {int(c.data.params["adapter.r"]) for c in by_task["squad"]} == {2, 16}
    assert all("EM" in c.data.metrics for c in by_task["squad"])
    assert len(by_task["webnlg"]) == 2
    for c in by_task["webnlg"]:  # the whole test set, and its seen and unseen categories
        for key in ("BLEU", "BLEU_seen", "BLEU_unseen", "TER", "TER_seen", "TER_unseen", "CIDEr"):
            assert math.isfinite(c.data.metrics[key]), key
    assert "BLEU-S" in s["out"] and "BLEU-U" in s["out"]
    _check_report(s, ["rank_squad", "rank_webnlg", "rank_by_task", "curves_t-squad", "curves_t-webnlg"])
    assert "analysis report of 2 sweep(s)" in s["out"]


def test_rank_vs_model_size_smoke(tmp_path_factory, smoke_assets, one_local_ray):
    # Two of the three sizes, less data, METEOR off and greedy decoding (CI time: the 4-layer
    # model's build, a JVM start per trial; beam search: test_sweep_smoke's sweep).
    s = _smoke("rank_vs_model_size.py", tmp_path_factory, "--size", "small,medium", *LESS_DATA, *ONE_EPOCH,
               "--set", "data.test_limit=8", "--set", "eval.meteor=false", "--set", "eval.max_new_tokens=16",
               "--set", "eval.num_beams=1")
    assert sorted(p.data.tags["lorasweep.part"] for p in s["parents"]) == ["medium", "small"]
    assert len(s["children"]) == 4
    totals = {}
    for c in s["children"]:
        totals.setdefault(c.data.params["model.name_or_path"].rsplit("/", 1)[-1], set()).add(
            c.data.metrics["total_params"] - c.data.metrics["trainable_params"])
    assert sorted(totals) == ["gpt2-m", "gpt2-s"]
    assert min(totals["gpt2-s"]) < min(totals["gpt2-m"])
    _check_report(s, ["rank_e2e", "rank_e2e_gpt2-s", "rank_e2e_gpt2-m"])


def test_the_summary_waits_for_what_the_trials_printed_last(one_local_ray, capsys, monkeypatch):
    """Ray forwards a worker's output to the driver behind the worker's results, and holds
    back a line that repeats another process's; the sweep waits for the first and prints the
    second before it prints its summary, so no trial's last line comes under it."""
    import ray

    from ray._private import ray_logging

    from sweeps.runner import _settle_worker_output

    monkeypatch.setattr(ray_logging, "RAY_DEDUP_LOGS", True)  # Ray's default (the suite turns it off)

    @ray.remote
    class Trial:
        def finish(self, i: int) -> None:  # returns before its process has printed its last line
            import threading

            threading.Timer(0.2, lambda: print(f"trial {i}: last line", flush=True)).start()

    trials = [Trial.remote() for _ in range(2)]
    ray.get([t.finish.remote(i) for i, t in enumerate(trials)])
    _settle_worker_output()
    out = capsys.readouterr().out
    assert out.count(": last line") == 2, out  # the second with Ray's "[repeated ...]"
    for t in trials:
        ray.kill(t)


def test_a_worker_ended_by_sigterm_prints_no_traceback_to_the_driver(one_local_ray, capsys, tmp_path):
    """Ray ends worker processes with SIGTERM; one whose SIGTERM comes while Python runs a
    weakref callback writes Ray's SystemExit as an ignored exception's traceback. The worker's
    own log keeps it; the driver prints the worker's other lines, not that traceback."""
    import glob
    import signal
    import time

    import ray

    from sweeps.runner import _settle_worker_output

    waiting = tmp_path / "in the callback"

    @ray.remote(num_cpus=0)
    class Worker:
        def pid(self) -> int:
            return os.getpid()

        def collect_while_signalled(self, marker: str) -> str:
            import sys
            import weakref

            class Held:
                pass

            def callback(_ref):
                open(marker, "w").close()
                time.sleep(60)  # until the SIGTERM

            held = Held()
            ref = weakref.ref(held, callback)  # noqa: F841  (alive while the callback runs)
            print("before the signal", file=sys.stderr, flush=True)
            del held
            print("after the signal", file=sys.stderr, flush=True)
            return "returned"

    worker = Worker.remote()
    pid = ray.get(worker.pid.remote())
    result = worker.collect_while_signalled.remote(str(waiting))
    deadline = time.monotonic() + 60
    while not waiting.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    os.kill(pid, signal.SIGTERM)
    assert ray.get(result, timeout=60) == "returned"
    _settle_worker_output()
    err = capsys.readouterr().err
    logs = ray._private.worker._global_node.get_logs_dir_path()
    own = "".join(open(f).read() for f in glob.glob(f"{logs}/worker-*-{pid}.err"))
    assert "in sigterm_handler" in own and "SystemExit: 1" in own, own  # it was written
    assert "before the signal" in err and "after the signal" in err, err
    assert "SystemExit" not in err and "sigterm_handler" not in err and "Exception ignored" not in err, err
    ray.kill(worker)


def test_only_tracebacks_of_ray_s_sigterm_exit_are_dropped_from_worker_output():
    from sweeps.ray_start import without_sigterm_exits

    def tb(last_frame: str, exc: str) -> list[str]:
        return ["Exception ignored in: <function WeakSet.__init__.<locals>._remove at 0x7f4eb190f420>",
                "Traceback (most recent call last):",
                '  File "/usr/lib/python3.11/_weakrefset.py", line 39, in _remove',
                "    def _remove(item, selfref=ref(self)):",
                last_frame, "    raise_sys_exit_with_custom_error_message(", exc]

    ray_frame = '  File "/v/site-packages/ray/_private/worker.py", line 1063, in sigterm_handler'
    user_frame = '  File "/home/me/task.py", line 7, in sigterm_handler'
    lines = ["epoch 1", *tb(ray_frame, "SystemExit: 1"), "epoch 2"]
    assert without_sigterm_exits(lines) == ["epoch 1", "epoch 2"]
    kept = [*tb(ray_frame, "ValueError: bad"), *tb(user_frame, "SystemExit: 1"), "SystemExit: 1"]
    assert without_sigterm_exits(kept) == kept
    assert without_sigterm_exits(tb(ray_frame, "SystemExit: 1")[1:]) == []  # no "ignored" line
    assert without_sigterm_exits(tb(ray_frame, "SystemExit: 1")[:-1]) == tb(ray_frame, "")[:-1]  # cut short


def test_a_sigterm_traceback_with_a_blank_line_between_its_frames_is_dropped():
    """As a trial process Ray ended printed it (Python 3.11): an empty line under the weakref
    callback's ``def`` line, between two frames. A blank line that ends a traceback does not
    join the next one to it."""
    from sweeps.ray_start import filtering, without_sigterm_exits

    sigterm = ["Exception ignored in: <function WeakSet.__init__.<locals>._remove at 0x7fa88a576520>",
               "Traceback (most recent call last):",
               '  File "/usr/lib/python3.11/_weakrefset.py", line 39, in _remove',
               "    def _remove(item, selfref=ref(self)):",
               "",
               '  File "/v/site-packages/ray/_private/worker.py", line 1063, in sigterm_handler',
               "    raise_sys_exit_with_custom_error_message(",
               '  File "python/ray/_raylet.pyx", line 712, in ray._raylet.raise_sys_exit_with_custom_error_message',
               "SystemExit: 1"]
    assert without_sigterm_exits(["beam search 1/1", *sigterm, "done"]) == ["beam search 1/1", "done"]
    error = ["Traceback (most recent call last):", '  File "/me/task.py", line 3, in f', "ValueError: bad", ""]
    assert without_sigterm_exits([*error, *sigterm]) == error
    printed: list[list[str]] = []
    printer = filtering(lambda data: printed.append(data["lines"]))
    batch = {"pid": 8, "is_err": True}
    printer({**batch, "lines": ["epoch 1", *sigterm[:5]]})  # cut right after the blank line
    printer({**batch, "lines": [*sigterm[5:], "epoch 2"]})
    assert printed == [["epoch 1"], ["epoch 2"]]


def test_ray_s_failure_dump_of_a_worker_ended_by_sigterm_is_dropped_and_another_signal_s_kept():
    """Lines as a worker killed by Ctrl-C printed them (Ray's C++ handler: raw, then again
    through Ray's log), split over two batches; a SIGSEGV dump of another worker is kept."""
    from sweeps.ray_start import without_sigterm_noise

    log = "[2026-12-06 16:56:08,489 E 15957 16048] logging.cc:474: "
    dump = ["*** SIGTERM received at time=1796576168 on cpu 0 ***",
            "PC: @     0x7fdb00aa7907  (unknown)  pthread_create",
            "    @     0x7fdb00a5a050  (unknown)  (unknown)"]
    ended: set = set()
    assert without_sigterm_noise(["decoding 4/8", *dump, log + dump[0]], 15957, ended) == ["decoding 4/8"]
    assert without_sigterm_noise([log + dump[1], log + dump[2], "closing"], 15957, ended) == ["closing"]
    segv = ["*** SIGSEGV received at time=1796576168 on cpu 1 ***", *dump[1:]]
    assert without_sigterm_noise(segv, 15958, ended) == segv and ended == {15957}


def test_a_traceback_cut_between_two_batches_is_judged_whole():
    """Ray forwards a worker's output in batches; a SIGTERM traceback cut in two goes whole,
    another one prints whole, and one whose end never comes prints when the sweep ends."""
    from sweeps.ray_start import filtering, flush_held_worker_output

    printed: list[list[str]] = []
    printer = filtering(lambda data: printed.append(data["lines"]))
    sigterm = ["Exception ignored in: <function WeakSet.__init__.<locals>._remove at 0x7f4eb190f420>",
               "Traceback (most recent call last):",
               '  File "/v/site-packages/ray/_private/worker.py", line 1063, in sigterm_handler',
               "    raise_sys_exit_with_custom_error_message(", "SystemExit: 1"]
    batch = {"pid": 7, "is_err": True}
    printer({**batch, "lines": ["epoch 1", *sigterm[:1]]})
    printer({**batch, "lines": [*sigterm[1:], "epoch 2"]})
    assert printed == [["epoch 1"], ["epoch 2"]]
    error = ["Traceback (most recent call last):", '  File "/me/task.py", line 3, in f', "ValueError: bad"]
    printer({**batch, "lines": error[:2]})
    printer({**batch, "lines": error[2:]})
    assert printed[-1] == error
    printer({**batch, "lines": ["last words", *error[:2]]})  # its worker never prints again
    assert printed[-1] == ["last words"]
    flush_held_worker_output()
    assert printed[-1] == error[:2]


def test_seeds_add_replicates_to_every_part(tmp_path):
    proc = _run("rank_vs_task.py", tmp_path, "--preset", "smoke", "--seeds", "3", "--dry-run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    dec, text, plans = json.JSONDecoder(), proc.stdout, []
    while text.strip():
        obj, end = dec.raw_decode(text.lstrip())
        plans.append(obj)
        text = text.lstrip()[end:]
    assert [p["n_trials"] for p in plans] == [6, 6]
    assert [p["base_trial"]["task"] for p in plans] == ["e2e", "squad"]


@pytest.mark.parametrize("script, flags, fragment", [
    ("squad_grid.py", ["--data", "{tmp}/no-such-dir"], "no-such-dir does not exist"),
    ("squad_grid.py", ["--data", "{missing}"], "lacks dev-v1.1.json"),
    ("squad_grid.py", ["--data", "{badjson}"], "train-v1.1.json: data[0].paragraphs[0].qas[0].answers: missing"),
    ("squad_grid.py", ["--set", "data.format=qca"], "error: data.format: SQuAD accepts 'cqa' or 'tags'"),
    ("rank_vs_model_size.py", ["--size", "huge"], "error: --size: unknown size 'huge'"),
    ("rank_vs_task.py", ["--task", "squad,glue"], "error: --task: unknown task 'glue'"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, smoke_assets, script, flags, fragment):
    from trainables.offline.squad_synth import write_squad_dataset

    missing = write_squad_dataset(tmp_path / "missing", n_train=3, n_dev=2)
    (missing / "dev-v1.1.json").unlink()
    badjson = write_squad_dataset(tmp_path / "badjson", n_train=3, n_dev=2)
    obj = json.loads((badjson / "train-v1.1.json").read_text())
    del obj["data"][0]["paragraphs"][0]["qas"][0]["answers"]
    (badjson / "train-v1.1.json").write_text(json.dumps(obj))
    subs = {"{tmp}": str(tmp_path), "{missing}": str(missing), "{badjson}": str(badjson)}
    flags = [subs.get(f, f.replace("{tmp}", str(tmp_path))) for f in flags]
    proc = _run(script, tmp_path, "--preset", "smoke", "--tracking-uri",
                f"sqlite:///{tmp_path / 'm.db'}", "--storage", str(tmp_path / "rr"), *flags)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], proc.stderr
    assert not (tmp_path / "m.db").exists() and not (tmp_path / "rr").exists()
