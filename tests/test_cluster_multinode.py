"""A smoke sweep submitted to a real two-node Ray cluster, as docs/cluster.md says,
and the MLflow UI that shows it.

``ray start --head`` plus a second ``ray start --address`` node on this machine (token
authentication on, each node with its own temp dir), a plain ``mlflow server``, then ``ray job
submit --working-dir . --runtime-env ...`` of ``sweeps/rank_e2e.py --preset smoke`` with the
server as tracking URI, then a second job from a user's own project folder (its study file,
data and task class, ``--working-dir`` the folder). The checks: a submission without the token
and one with a wrong token are refused; every trial ran, is in MLflow with the Ray node it
trained on, the trials used both nodes and both wrote their checkpoints to the shared
``--storage`` path; both nodes imported the user's task class from the uploaded folder; and the
MLflow UI in headless Chromium, opened at the link the summary printed, lists the parent run
and its child runs with no click (the study's runs table, the parent expanded, is saved as
``tests/artifacts/mlflow-runs.png``: the README's ``docs/img/mlflow-runs.png`` is a copy of it).

Isolation on a shared machine: each node gets a private ``--temp-dir``, so Ray writes the
cluster's address to ``<temp dir>/ray_current_cluster`` and not to
``/tmp/ray/ray_current_cluster``, where another process's ``ray.init()`` would find it and
join this cluster. Nothing is stopped with ``ray stop`` (it stops every Ray on the machine):
only the processes of this test's nodes are ended.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from test_cluster import RUNTIME_ENV, wait_healthy
from test_study_file import USER_STUDY, write_tickets

from sweeps.ray_start import free_port
from trainables.mlflow_names import NODE_TAG

SWEEP = "multinode-smoke"
USER_SWEEP = "multinode-user-study"
#: Kept test outputs (gitignored): the MLflow UI screenshot.
ARTIFACTS = REPO / "tests" / "artifacts"


def _end_processes(procs: list[subprocess.Popen], markers: list[str]) -> None:
    """SIGTERM then SIGKILL the `ray start --block` process groups, then any process whose
    command line, working directory or HOME is under one of this test's temp dirs (Ray's
    workers, a job's driver, which runs in the unpacked working dir). Nothing else is touched."""
    import psutil

    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.time() + 5
    while time.time() < deadline and any(p.poll() is None for p in procs):
        time.sleep(0.2)
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    me = os.getpid()
    for p in psutil.process_iter(["pid", "cmdline", "cwd", "environ"]):
        try:
            # Ray renames some processes (`ray::DashboardAgent`): their HOME still names ours.
            text = " ".join([*(p.info["cmdline"] or []), p.info["cwd"] or "",
                             (p.info["environ"] or {}).get("HOME", "")])
            if p.info["pid"] != me and any(m in text for m in markers):
                p.kill()
        except psutil.Error:
            pass
    for proc in procs:
        proc.wait(timeout=10)


def _wait_for_nodes(ray: str, address: str, env: dict[str, str], n: int, timeout: float) -> list[dict]:
    deadline = time.time() + timeout
    while True:
        out = subprocess.run([ray, "list", "nodes", "--address", address, "--format", "json",
                              "--filter", "state=ALIVE"], env=env, capture_output=True, text=True,
                             timeout=60, check=False)
        if out.returncode == 0:
            nodes = json.loads(out.stdout)
            if len(nodes) >= n:
                return nodes
        assert time.time() < deadline, f"{n} nodes not alive in {timeout:g} s: {out.stdout[-800:]}{out.stderr[-800:]}"
        time.sleep(1)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A plain `mlflow server` (SQLite backend store, proxied artifacts) on 127.0.0.1:<free>:
    (tracking URI, server process), started without waiting; `wait_healthy` waits."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts")],
        cwd=root, stdout=(root / "server.log").open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield f"http://127.0.0.1:{port}", proc, root / "server.log"
    finally:
        _end_processes([proc], [str(root)])


def _submit(ray: str, address: str, env: dict, cwd: Path, working_dir: str, runtime_env: Path,
            entrypoint: list[str]) -> str:
    """``ray job submit`` of ``entrypoint`` with ``working_dir`` uploaded, run from ``cwd``; the
    job's output, once it succeeded. The dashboard answers before its job agent is up ("No
    available agent"): a refused submission is retried (a new id each time) until a deadline. A
    job still running when this fails is stopped."""
    deadline, tries, submission = time.time() + 120, [], None
    try:
        while True:
            submission = f"lorasweep-test-{secrets.token_hex(4)}"
            cmd = [ray, "job", "submit", "--address", address, "--submission-id", submission,
                   "--working-dir", working_dir, "--runtime-env", str(runtime_env), "--", *entrypoint]
            job = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=480, check=False)
            tries.append(job.stdout[-4000:] + job.stderr[-2000:])
            if "submitted successfully" in job.stdout + job.stderr or time.time() > deadline:
                break
            time.sleep(2)
        submission = None
    finally:
        if submission is not None:
            subprocess.run([ray, "job", "stop", "--address", address, submission], env=env,
                           capture_output=True, timeout=60, check=False)
    assert job.returncode == 0 and "succeeded" in job.stdout, "\n---\n".join(tries[-2:])
    print(job.stdout[-2500:])
    return job.stdout


@pytest.fixture(scope="module")
def cluster_sweep(mlflow_server, tmp_path_factory):
    """docs/cluster.md's `ray job submit` of the smoke sweep (two trials) to a two-node cluster
    started here, recording into the MLflow server: a dict of what the checks need."""
    tmp_path = tmp_path_factory.mktemp("cluster")
    uri, server, server_log = mlflow_server
    # Ray's socket paths must stay short: private dirs under /tmp, not pytest's tmp_path.
    head_tmp = Path(tempfile.mkdtemp(prefix="lsrayh-", dir="/tmp"))
    worker_tmp = Path(tempfile.mkdtemp(prefix="lsrayw-", dir="/tmp"))
    home = tmp_path / "home"
    home.mkdir()  # no ~/.ray/auth_token of the user's is read
    # PYTHONPATH is dropped: the job and its trials must import the uploaded working dir.
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("RAY_AUTH", "RAY_ADDRESS", "PYTHONPATH"))}
    base["HOME"] = str(home)
    ray = str(Path(sys.executable).with_name("ray"))
    gen = subprocess.run([ray, "get-auth-token", "--generate"], env=base, capture_output=True,
                         text=True, timeout=60, check=False)
    assert gen.returncode == 0, gen.stderr
    token = (home / ".ray" / "auth_token").read_text().strip()
    assert gen.stdout.strip() == token and len(token) >= 32
    env = {**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}

    default_address_file = Path("/tmp/ray/ray_current_cluster")
    before = default_address_file.read_text() if default_address_file.exists() else None
    gcs_port, dash_port = free_port(), free_port()
    common = ["--block", "--node-ip-address=127.0.0.1", "--num-gpus=0", "--disable-usage-stats",
              "--num-cpus=1"]
    procs: list[subprocess.Popen] = []
    address = f"http://127.0.0.1:{dash_port}"
    try:
        procs.append(subprocess.Popen(
            [ray, "start", "--head", f"--port={gcs_port}", "--include-dashboard=true",
             "--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}",
             f"--dashboard-agent-listen-port={free_port()}", f"--temp-dir={head_tmp}", *common],
            env=env, stdout=(tmp_path / "head.log").open("w"), stderr=subprocess.STDOUT,
            start_new_session=True))
        deadline = time.time() + 120
        while not (head_tmp / "ray_current_cluster").exists():
            assert procs[0].poll() is None, (tmp_path / "head.log").read_text()[-3000:]
            assert time.time() < deadline, "head node did not start in 120 s"
            time.sleep(0.5)
        procs.append(subprocess.Popen(
            [ray, "start", f"--address=127.0.0.1:{gcs_port}", f"--temp-dir={worker_tmp}",
             f"--dashboard-agent-listen-port={free_port()}", *common],
            env=env, stdout=(tmp_path / "worker.log").open("w"), stderr=subprocess.STDOUT,
            start_new_session=True))
        nodes = _wait_for_nodes(ray, address, env, 2, timeout=120)

        # The address of this cluster is in its own temp dir, not where ray.init() looks.
        assert (head_tmp / "ray_current_cluster").read_text().strip().endswith(f":{gcs_port}")
        now = default_address_file.read_text() if default_address_file.exists() else None
        assert now == before or str(gcs_port) not in (now or "")

        # The runtime env of the documented command, without its pip list: this machine's nodes
        # have the project installed (as aws-gpu.yaml's nodes do), and building a virtualenv
        # per node would only add minutes. Working dir, excludes and env_vars are the file's.
        runtime_env = yaml.safe_load(RUNTIME_ENV.read_text())
        runtime_env.pop("pip")
        env_file = tmp_path / "runtime_env.yaml"
        env_file.write_text(yaml.safe_dump(runtime_env))
        space = tmp_path / "space.yaml"
        space.write_text("scientific:\n  r: {grid: [2, 8]}\nfixed:\n  alpha: 32\n  targets: qv\n")
        storage = tmp_path / "shared" / "ray_results"
        wait_healthy(uri, server, server_log, timeout=120)
        job = _submit(ray, address, env, REPO, ".", env_file, [
            "python", "sweeps/rank_e2e.py", "--preset", "smoke", "--tracking-uri", uri,
            "--storage", str(storage), "--name", SWEEP, "--search-space", str(space),
            "--scheduler", "fifo", "--set", "train.epochs=1", "--set", "data.train_limit=200",
            "--set", "data.val_limit=40", "--set", "data.test_limit=6",
            # Decoding and scoring are the smoke tests' business; here they would only add time.
            "--set", "eval.generate=false"])
        # Once a job ran, the job agent is up: a refusal now is the token's, not a cluster still starting.
        refused = _refused_submissions(ray, address, base, tmp_path, token_env=env)
        # A user's own project as the working dir: its study file, data and task class
        # (tests/data/user_study); the package comes from the nodes' installation.
        project = tmp_path / "project"
        shutil.copytree(USER_STUDY, project)
        write_tickets(project / "tickets")
        user_job = _submit(ray, address, env, project, str(project), env_file, [
            "python", "-m", "sweeps.run", "--config", "study.yaml", "--preset", "smoke", "--tracking-uri", uri,
            "--storage", str(storage), "--name", USER_SWEEP, "--set", "train.epochs=1"])
    finally:
        _end_processes(procs, [str(head_tmp), str(worker_tmp), str(home)])
        shutil.rmtree(head_tmp, ignore_errors=True)
        shutil.rmtree(worker_tmp, ignore_errors=True)
    return {"uri": uri, "storage": storage, "node_ids": {n["node_id"] for n in nodes}, "output": job,
            "user_output": user_job, "refused": refused}


def _refused_submissions(ray: str, address: str, base: dict, tmp_path: Path, token_env: dict) -> dict[str, str]:
    """``ray job submit`` to the cluster without the token (from a home with no
    ``~/.ray/auth_token``) and with a wrong one: each one's exit code and output."""
    client_home = tmp_path / "client-home"
    client_home.mkdir()
    out = {}
    for name, env in {"none": {**base, "HOME": str(client_home)},
                      "wrong": {**token_env, "HOME": str(client_home), "RAY_AUTH_TOKEN": secrets.token_hex(32)}}.items():
        job = subprocess.run([ray, "job", "submit", "--address", address, "--", "python", "-c", "print(6 * 7)"],
                             env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        out[name] = (job.returncode, job.stdout + job.stderr)
    return out


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_smoke_sweep_as_a_job_on_a_two_node_cluster(cluster_sweep):
    """Every trial ran and is in MLflow under the sweep's parent run; the trials trained on
    both nodes and both wrote their checkpoints to the shared storage path."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=cluster_sweep["uri"])
    exp = client.get_experiment_by_name("lorasweep-rank_e2e")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("lorasweep.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("lorasweep.kind") == "trial"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(int(c.data.params["adapter.r"]) for c in children) == [2, 8]
    assert all(c.info.status == "FINISHED" and c.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id
               for c in children)
    assert all("val_loss" in c.data.metrics for c in children)
    # Each trial names the node it trained on; with one CPU per node, the two trials ran side
    # by side, one on each node.
    trained_on = {c.data.tags[NODE_TAG] for c in children}
    assert trained_on <= cluster_sweep["node_ids"], (trained_on, cluster_sweep["node_ids"])
    assert len(trained_on) == 2, trained_on
    # Both nodes wrote their trial's checkpoints to the shared storage path.
    storage = cluster_sweep["storage"] / SWEEP
    for c in children:
        trial_dirs = list(storage.glob(f"*{c.data.tags['lorasweep.trial_id']}*"))
        assert len(trial_dirs) == 1, c.data.tags["lorasweep.trial_id"]
        assert list(trial_dirs[0].glob("checkpoint_*/adapter")), trial_dirs[0]
    assert (storage / "results.csv").is_file()
    # The server's proxied artifact store got the trials' adapters.
    assert {a.path for a in client.list_artifacts(children[0].info.run_id)} >= {"adapter"}


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_job_submission_needs_the_token(cluster_sweep):
    """The head node runs as docs/cluster.md says (a token from `ray get-auth-token
    --generate`, RAY_AUTH_MODE=token, the dashboard on 127.0.0.1): a submission without the
    token and one with a wrong token are refused; the jobs submitted with it ran (above)."""
    (none, none_out), (wrong, wrong_out) = cluster_sweep["refused"]["none"], cluster_sweep["refused"]["wrong"]
    assert none != 0 and "Missing authentication token" in none_out, none_out[-2000:]
    assert wrong != 0 and "Invalid authentication token" in wrong_out, wrong_out[-2000:]
    assert "42" not in none_out.split() and "42" not in wrong_out.split()  # neither job ran


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_a_users_own_project_runs_as_a_job_with_its_task_class_on_both_nodes(cluster_sweep):
    """The study file, its data and its task class (``task: ticket_task:Tickets``) exist only in
    the uploaded working dir; the trials on both nodes imported the class from there and were
    scored by its metric (macro-F1 first)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=cluster_sweep["uri"])
    exp = client.get_experiment_by_name("lorasweep-my_tickets")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("lorasweep.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("lorasweep.kind") == "trial"]
    assert [(p.data.tags["lorasweep.sweep"], p.data.params["task"], p.info.status) for p in parents] == [
        (USER_SWEEP, "ticket_task:Tickets", "FINISHED")]
    assert sorted(int(c.data.params["adapter.r"]) for c in children) == [2, 8]
    assert all(c.data.tags["lorasweep.status"] == "completed" and "val_macro_f1" in c.data.metrics
               for c in children)
    trained_on = {c.data.tags[NODE_TAG] for c in children}
    assert trained_on <= cluster_sweep["node_ids"] and len(trained_on) == 2, trained_on
    assert "2 completed" in cluster_sweep["user_output"]


@pytest.mark.integration
@pytest.mark.timeout(600)  # the module's sweep included, when this test runs alone
def test_mlflow_ui_lists_the_sweep_and_its_trials(cluster_sweep):
    """The MLflow UI in headless Chromium (the system browser, driven by Selenium with Debian's
    chromedriver), opened at the link the sweep's summary printed: the parent run and every
    trial's child run are listed by name with no click. The study's runs table lists the parent
    run, and expanding it shows the trials: that view is saved as tests/artifacts/mlflow-runs.png
    (copied by hand to docs/img/ when the UI changes; a test run never writes the docs)."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium "
                    "chromium-driver; .ci/run does)")
    from mlflow import MlflowClient
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    uri = cluster_sweep["uri"]
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("lorasweep-rank_e2e")
    assert exp.tags["mlflow.note.content"].startswith("The LoRA paper's E2E rank study")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    (parent,) = [r for r in runs if r.data.tags.get("lorasweep.kind") == "sweep"]
    children = {r.info.run_id: r.info.run_name for r in runs if r.data.tags.get("lorasweep.kind") == "trial"}
    assert parent.info.run_name == SWEEP and sorted(children.values()) == ["r=2", "r=8"]
    printed = {key: url.strip() for key, _, url in (line.strip().partition(":") for line in
                                                     cluster_sweep["output"].splitlines())
               if key in ("this sweep's runs", "its parent run", "the study's runs")}
    prefix = f"{uri}/#/experiments/{exp.experiment_id}/runs"
    assert printed["its parent run"].startswith(f"{prefix}/{parent.info.run_id}?"), printed
    assert printed["this sweep's runs"].startswith(f"{prefix}?"), printed

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,900"):  # the table renders only the rows in view
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service(driver), options=options)
    shot = ARTIFACTS / "mlflow_ui.png"
    try:
        wait = WebDriverWait(browser, 60)

        def listed() -> dict[str, str]:
            """run id -> the name of its link in the runs table."""
            out = {}
            for a in browser.find_elements(By.CSS_SELECTOR, "a[href*='/runs/']"):
                run_id = (a.get_attribute("href") or "").split("?")[0].rstrip("/").rsplit("/runs/", 1)[-1]
                out[run_id] = a.text.strip()
            return out

        everything = {parent.info.run_id: SWEEP, **children}
        browser.get(printed["this sweep's runs"])
        wait.until(lambda _: all(listed().get(i) == name for i, name in everything.items()))
        # The study's runs table nests the trials under their sweep: expanding it (the +/-
        # button of the run-name cell) shows them.
        browser.get("about:blank")  # a fresh page load, not a change of the URL's fragment
        browser.get(printed["the study's runs"])
        wait.until(lambda _: listed().get(parent.info.run_id) == SWEEP and not set(children) & set(listed()))
        row = browser.find_element(By.XPATH, f"//a[contains(@href, '/runs/{parent.info.run_id}')]"
                                             "/ancestor::div[@role='row']")
        row.find_element(By.CSS_SELECTOR, "button[data-component-id*='runnamecellrenderer']").click()
        wait.until(lambda _: all(listed().get(i) == name for i, name in everything.items()))
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(shot))
        print(f"MLflow UI screenshot: {shot}")
        browser.quit()
    assert shot.stat().st_size > 10_000
    _keep_small(shot, ARTIFACTS / "mlflow-runs.png")


def _keep_small(png: Path, target: Path) -> None:
    """The screenshot as a 64-colour PNG (the UI's flat colours survive; the file stays small)."""
    from PIL import Image

    target.parent.mkdir(parents=True, exist_ok=True)
    Image.open(png).convert("RGB").quantize(colors=64).save(target, optimize=True)
