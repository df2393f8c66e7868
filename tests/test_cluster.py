"""Cluster configs (``cluster/``): every file parses and follows the access policy, and the
PostgreSQL-backed MLflow server of ``cluster/mlflow/start-local.sh`` records a real sweep. Ray's
token authentication is checked on the two-node cluster of ``tests/test_cluster_multinode.py``.

The policy (docs/cluster.md): token authentication on for every Ray
process we configure, the dashboard / job API never on every interface (0.0.0.0), and no
token or password written in a file: they come from Secrets, secret files or the environment.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from conftest import REPO
from sweeps.ray_start import free_port

CLUSTER = REPO / "cluster"
YAML_FILES = sorted(CLUSTER.rglob("*.yaml"))
AWS = CLUSTER / "aws-gpu.yaml"
KUBERAY = [CLUSTER / "kuberay" / "raycluster.yaml", CLUSTER / "kuberay" / "rayjob.yaml"]
RUNTIME_ENV = CLUSTER / "runtime_env.yaml"

# An environment variable or setting that holds a credential (TOKENIZERS_PARALLELISM does not).
SECRET_NAME = re.compile(r"(^|_)(TOKEN|PASSWORD|PASSWD|SECRET|SECRET_KEY|ACCESS_KEY|API_KEY)(_|$)", re.I)
# user:password@ in a URI, where the password is not a reference ($VAR, ${VAR}, $(cmd)).
URI_PASSWORD = re.compile(r"://[^/\s:@]+:(?!\$)[^@\s/]+@")
REFERENCE = re.compile(r"^(\$\{[^}]+\}|\$\([^)]+\)|\$[A-Za-z_]\w*)$")


def _load(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) for every scalar, runtimeEnvYAML strings parsed as YAML too."""
    if isinstance(node, dict):
        for k, v in node.items():
            sub = f"{path}.{k}" if path else str(k)
            yield from _walk(yaml.safe_load(v) if k == "runtimeEnvYAML" else v, sub)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}[{i}]")
    else:
        yield path, node


def _mappings(node: Any) -> Iterator[dict]:
    """Every mapping in a document, runtimeEnvYAML strings parsed as YAML too."""
    if isinstance(node, dict):
        yield node
        for k, v in node.items():
            yield from _mappings(yaml.safe_load(v) if k == "runtimeEnvYAML" else v)
    elif isinstance(node, list):
        for v in node:
            yield from _mappings(v)


# --------------------------------------------------------------------------- parse + policy


def test_cluster_directory_has_the_configs_we_document():
    names = {p.relative_to(CLUSTER).as_posix() for p in YAML_FILES}
    assert {"aws-gpu.yaml", "runtime_env.yaml", "kuberay/raycluster.yaml", "kuberay/rayjob.yaml",
            "mlflow/docker-compose.yaml"} <= names
    assert os.access(CLUSTER / "mlflow" / "start-local.sh", os.X_OK)


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.relative_to(CLUSTER).as_posix())
def test_every_yaml_parses(path):
    docs = _load(path)
    assert docs and all(isinstance(d, dict) for d in docs)
    for doc in docs:
        if "runtimeEnvYAML" in doc.get("spec", {}):
            assert isinstance(yaml.safe_load(doc["spec"]["runtimeEnvYAML"]), dict)


def test_aws_config_passes_rays_own_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(_load(AWS)[0]))


def test_aws_every_ray_start_has_token_auth_and_a_private_dashboard():
    cfg = _load(AWS)[0]
    starts = [c for key in ("head_start_ray_commands", "worker_start_ray_commands")
              for c in cfg[key] if "ray start" in c]
    assert len(starts) == 2
    for cmd in starts:
        assert "RAY_AUTH_MODE=token ray start" in cmd, cmd
    head = next(c for c in cfg["head_start_ray_commands"] if "ray start" in c)
    assert "--dashboard-host=127.0.0.1" in head
    # The token travels as a file from the launching machine, never as text in the config.
    assert cfg["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert cfg["provider"]["use_internal_ips"] is True


def _ray_containers(spec: dict, where: str) -> Iterator[tuple[str, dict]]:
    """Every container of a RayCluster spec that runs Ray or talks to it (autoscaler too)."""
    yield f"{where}.autoscalerOptions", spec["autoscalerOptions"]
    for c in spec["headGroupSpec"]["template"]["spec"]["containers"]:
        yield f"{where}.head.{c['name']}", c
    for g in spec["workerGroupSpecs"]:
        for c in g["template"]["spec"]["containers"]:
            yield f"{where}.{g['groupName']}.{c['name']}", c


def _kuberay_containers() -> list[tuple[str, dict, dict]]:
    out = []
    for path in KUBERAY:
        for doc in _load(path):
            assert doc["apiVersion"] == "ray.io/v1", path
            if doc["kind"] == "RayCluster":
                spec = doc["spec"]
            else:
                assert doc["kind"] == "RayJob"
                spec = doc["spec"]["rayClusterSpec"]
                for c in doc["spec"]["submitterPodTemplate"]["spec"]["containers"]:
                    out.append((f"{path.name}.submitter.{c['name']}", c, spec))
            out += [(f"{path.name}:{w}", c, spec) for w, c in _ray_containers(spec, doc["kind"])]
    return out


def test_kuberay_token_auth_on_every_ray_container_from_a_secret():
    containers = _kuberay_containers()
    assert len(containers) == 7  # 2 x (autoscaler, head, gpu workers) + the job submitter
    for where, c, _ in containers:
        env = {e["name"]: e for e in c["env"]}
        assert env["RAY_AUTH_MODE"].get("value") == "token", where
        token = env["RAY_AUTH_TOKEN"]
        assert "value" not in token and token["valueFrom"]["secretKeyRef"]["key"] == "auth_token", where


def test_kuberay_dashboard_on_the_pod_ip_and_gpu_limits():
    for path in KUBERAY:
        doc = _load(path)[0]
        spec = doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]
        head = spec["headGroupSpec"]
        assert head["rayStartParams"]["dashboard-host"] == "$POD_IP"
        assert head["serviceType"] == "ClusterIP"
        env = {e["name"]: e for e in head["template"]["spec"]["containers"][0]["env"]}
        assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
        for group in spec["workerGroupSpecs"]:
            limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
            assert int(limits["nvidia.com/gpu"]) >= 1


def test_rayjob_entrypoint_and_runtime_env():
    job = _load(KUBERAY[1])[0]["spec"]
    entry = " ".join(job["entrypoint"].split())
    assert entry.startswith("python sweeps/rank_e2e.py --preset quick --tracking-uri $MLFLOW_TRACKING_URI")
    assert "--storage s3://" in entry
    env = yaml.safe_load(job["runtimeEnvYAML"])
    assert env["working_dir"].startswith("s3://") and env["working_dir"].endswith(".zip")
    assert env["pip"] == _load(RUNTIME_ENV)[0]["pip"]


def _pyproject_dependencies() -> list[str]:
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return [d for d in deps if not re.match(r"ray\b", d)]


def test_runtime_env_matches_pyproject_and_excludes_local_state():
    env = _load(RUNTIME_ENV)[0]
    assert env["working_dir"] == "."
    assert env["pip"] == _pyproject_dependencies()
    assert not any(p.startswith("ray") for p in env["pip"]), "jobs must use the cluster's own Ray"
    for pattern in (".venv/", "ray_results/", "mlruns.db", "mlruns/", "**/__pycache__/", ".git/"):
        assert pattern in env["excludes"]
    assert set(env["env_vars"]) >= {"MLFLOW_TRACKING_URI"}
    assert not any(SECRET_NAME.search(k) for k in env["env_vars"])


def test_mlflow_server_is_protected_and_private():
    compose = _load(CLUSTER / "mlflow" / "docker-compose.yaml")[0]
    pg, server = compose["services"]["postgres"], compose["services"]["mlflow"]
    assert "ports" not in pg  # the database is on the compose network only
    (port,) = server["ports"]
    # Published on a private address that must be given; no default means never 0.0.0.0.
    assert port.startswith("${MLFLOW_BIND_ADDRESS:?") and port.endswith(":5000:5000")
    entry = (CLUSTER / "mlflow" / "entrypoint.sh").read_text()
    local = (CLUSTER / "mlflow" / "start-local.sh").read_text()
    for script in (entry, local):
        assert "--app-name basic-auth" in script and "--serve-artifacts" in script
        assert "MLFLOW_BACKEND_STORE_URI=\"postgresql://" in script
        assert not re.search(r"--host[ =]\"?(0\.0\.0\.0|::)", script)
    ini = (CLUSTER / "mlflow" / "basic_auth.ini").read_text()
    assert not re.search(r"^\s*admin_password\s*=", ini, re.M)
    assert "mlflow[auth]" in (CLUSTER / "mlflow" / "Dockerfile").read_text()


@pytest.fixture
def shared_tmp():
    """A temporary directory every user can enter (pytest's own is private to its user), with
    a copy of entrypoint.sh: the unreadable-secret case runs it as another user."""
    root = Path(tempfile.mkdtemp(prefix="lorasweep-secrets-"))
    root.chmod(0o755)
    shutil.copy(CLUSTER / "mlflow" / "entrypoint.sh", root / "entrypoint.sh")
    (root / "entrypoint.sh").chmod(0o644)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("broken", ["missing", "empty", "unreadable"])
def test_the_server_refuses_to_start_without_each_secret(shared_tmp, broken):
    """entrypoint.sh with a secret file missing, empty (a newline) or unreadable: exit 2 with
    the secret named, and `mlflow` never started (an empty admin password would let anyone
    who guesses it in). With every secret it starts `mlflow server`, passwords in its
    environment only."""
    tmp_path, script = shared_tmp, str(shared_tmp / "entrypoint.sh")
    bin_dir, secrets_dir = tmp_path / "bin", tmp_path / "secrets"
    bin_dir.mkdir()
    secrets_dir.mkdir()
    started = tmp_path / "mlflow-started"
    stub = bin_dir / "mlflow"  # stands in for `mlflow server`: records how it was started
    stub.write_text(f"#!/bin/sh\nenv > {started}\necho \"$@\" >> {started}\n")
    stub.chmod(0o755)
    for name in ("mlflow_admin_password", "mlflow_flask_secret_key", "postgres_password"):
        (secrets_dir / name).write_text(f"{name}-value\n")
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SECRETS_DIR": str(secrets_dir)}
    ok = subprocess.run(["sh", script], env=env, capture_output=True,
                        text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    text = started.read_text()
    assert "MLFLOW_AUTH_ADMIN_PASSWORD=mlflow_admin_password-value" in text
    assert "postgres_password-value" not in text.splitlines()[-1]  # not on the command line
    started.unlink()

    admin = secrets_dir / "mlflow_admin_password"
    if broken == "missing":
        admin.unlink()
    elif broken == "empty":
        admin.write_text("\n")
    else:
        admin.chmod(0)
    cmd = ["sh", script]
    if broken == "unreadable" and os.geteuid() == 0:  # root reads any file: run as nobody
        if shutil.which("runuser") is None:
            pytest.skip("root without runuser")
        for d in (bin_dir, secrets_dir):
            d.chmod(0o755)
        tmp_path.chmod(0o777)  # where the stub would record a start
        cmd = ["runuser", "-u", "nobody", "--", "env", f"PATH={env['PATH']}", f"SECRETS_DIR={secrets_dir}", *cmd]
    refused = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2, refused.stderr
    assert "secret mlflow_admin_password" in refused.stderr and "not starting" in refused.stderr
    assert not started.exists()


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.relative_to(CLUSTER).as_posix())
def test_no_public_bind_and_no_plaintext_secret(path):
    for doc in _load(path):
        assert doc.get("kind") != "Secret", f"{path}: Secrets are created with kubectl, not shipped"
        for where, value in _walk(doc):
            if isinstance(value, str):
                assert "0.0.0.0" not in value, f"{path}: {where} = {value!r}"
                assert not URI_PASSWORD.search(value), f"{path}: {where} has a password in a URI"
                assert not re.search(r"RAY_AUTH_TOKEN=(?!\$)\S", value), f"{path}: {where}"
        for mapping in _mappings(doc):
            # Kubernetes env entries: a credential comes from a Secret, never a value.
            name = mapping.get("name")
            if isinstance(name, str) and SECRET_NAME.search(name) and ("value" in mapping or "valueFrom" in mapping):
                assert "value" not in mapping and "secretKeyRef" in mapping["valueFrom"], f"{path}: {name}"
            # Plain settings (compose environment, runtime env_vars): a reference or a secret file.
            for key, value in mapping.items():
                if key in ("name", "valueFrom") or not isinstance(key, str) or not SECRET_NAME.search(key):
                    continue
                if isinstance(value, str):
                    # A reference, or a file that holds the secret (a Docker secret, a mount).
                    ok = (not value or REFERENCE.match(value) or value.startswith(("/", "~/"))
                          or key.lower().endswith("_file"))
                    assert ok, f"{path}: {key} = {value!r} is a credential written in the file"


# --------------------------------------------------------------------------- token auth


def wait_healthy(uri: str, proc: subprocess.Popen, log: Path, timeout: float, interval: float = 0.5) -> None:
    """Until the MLflow server at ``uri`` answers /health (its log if ``proc`` dies first)."""
    deadline = time.time() + timeout
    while True:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        assert time.time() < deadline, f"MLflow server did not come up in {timeout:g} s"
        time.sleep(interval)


# --------------------------------------------------------------------------- MLflow on PostgreSQL


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.fixture
def mlflow_postgres_server(tmp_path):
    """cluster/mlflow/start-local.sh on free ports: (tracking URI, server dir)."""
    pg_bin = _postgres_bin()
    if pg_bin is None:
        pytest.skip("PostgreSQL server binaries absent (apt-get install postgresql; .ci/run does)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: PostgreSQL refuses to run as root")
    # As root PostgreSQL runs as `postgres`, which cannot enter pytest's private tmp_path.
    root = Path(tempfile.mkdtemp(prefix="lsmlflow-", dir="/tmp"))
    root.chmod(0o755)
    server_dir = root / "srv"
    mlflow_port, pg_port = free_port(), free_port()
    env = {**os.environ, "MLFLOW_PORT": str(mlflow_port), "PG_PORT": str(pg_port), "PG_BIN": str(pg_bin),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    log = (tmp_path / "mlflow-server.log").open("w")
    proc = subprocess.Popen(["bash", str(CLUSTER / "mlflow" / "start-local.sh"), str(server_dir)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{mlflow_port}"
    try:
        wait_healthy(uri, proc, tmp_path / "mlflow-server.log", timeout=180, interval=1.0)
        yield uri, server_dir, pg_port
    finally:
        proc.send_signal(signal.SIGTERM)  # the script's trap stops mlflow, then PostgreSQL
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        pg_ctl = [str(pg_bin / "pg_ctl"), "-D", str(server_dir / "pgdata"), "-m", "immediate", "stop"]
        if (server_dir / "pgdata" / "postmaster.pid").exists():  # only if the trap did not run
            subprocess.run((["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []) + pg_ctl,
                           capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.integration
def test_sweep_records_into_the_postgres_backed_server(mlflow_postgres_server, smoke_assets, tmp_path,
                                                       monkeypatch):
    """The smoke sweep (an Optuna search, one trial per rank, small data) against `mlflow
    server` with a PostgreSQL backend store, proxied artifacts and basic auth: anonymous
    requests are refused, the parent and child runs are in PostgreSQL, the artifacts in the
    server's artifact store. Its Optuna studies are in PostgreSQL too (``search.storage``, a
    schema of their own in the same database, the password from ``PGPASSWORD``): each rank's
    study holds its trial, complete with its value."""
    import optuna
    import psycopg

    uri, server_dir, pg_port = mlflow_postgres_server
    password = (server_dir / "secrets" / "admin_password").read_text().strip()
    pg_password = (server_dir / "secrets" / "pg_password").read_text().strip()
    with psycopg.connect(host="127.0.0.1", port=pg_port, user="mlflow", password=pg_password, dbname="mlflow",
                         autocommit=True) as conn:
        conn.execute("CREATE SCHEMA optuna")
    studies = f"postgresql://mlflow@127.0.0.1:{pg_port}/mlflow?options=-csearch_path%3Doptuna"

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{uri}/api/2.0/mlflow/experiments/search?max_results=1", timeout=30)
    assert refused.value.code == 401

    space = tmp_path / "space.yaml"
    space.write_text("scientific:\n  r: {grid: [2, 8]}\nnuisance:\n  lr: {loguniform: [1.0e-3, 3.0e-3]}\n"
                     "fixed:\n  alpha: 32\n  targets: qv\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=password, PGPASSWORD=pg_password)
    cmd = [sys.executable, str(REPO / "sweeps" / "rank_e2e.py"), "--preset", "smoke", "--tracking-uri", uri,
           "--storage", str(tmp_path / "ray_results"), "--name", "pg-smoke", "--search-space", str(space),
           "--search-alg", "optuna", "--num-samples", "1", "--set", f"search.storage={studies}",
           "--scheduler", "fifo", "--set", "train.epochs=1", "--set", "data.train_limit=200",
           "--set", "data.val_limit=40", "--set", "data.test_limit=6", "--set", "eval.meteor=false"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("lorasweep-rank_e2e")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("lorasweep.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("lorasweep.kind") == "trial"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 2
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert sorted(int(c.data.params["adapter.r"]) for c in children) == [2, 8]
    assert all(c.info.status == "FINISHED" for c in children)
    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert "results.csv" in artifacts
    # Proxied artifacts land in the server's artifact store, not on the client.
    assert list((server_dir / "artifacts").rglob("results.csv"))

    _check_private(server_dir, pg_port)

    monkeypatch.setenv("PGPASSWORD", pg_password)
    stored = optuna.load_study(study_name="pg-smoke/group-0", storage=studies), \
        optuna.load_study(study_name="pg-smoke/group-1", storage=studies)
    by_rank = {study.user_attrs["group"]["adapter.r"]: study.trials for study in stored}
    assert sorted(by_rank) == [2, 8]
    for r, trials in by_rank.items():
        (trial,) = trials
        child = next(c for c in children if int(c.data.params["adapter.r"]) == r)
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert trial.value == pytest.approx(child.data.metrics["val_loss"], rel=1e-6)
    with psycopg.connect(host="127.0.0.1", port=pg_port, user="mlflow", password=pg_password,
                         dbname="mlflow") as conn:
        (n,) = conn.execute("SELECT count(*) FROM runs WHERE experiment_id = %s",
                            (int(exp.experiment_id),)).fetchone()
    assert n == 3


def _check_private(server_dir: Path, pg_port: int) -> None:
    """start-local.sh keeps its server to the user who ran it: its files private, PostgreSQL's
    socket in a directory other users cannot enter, peer (never trust) authentication on it."""
    assert server_dir.stat().st_mode & 0o077 in ((0o011,) if os.geteuid() == 0 else (0,))
    mine = [p for p in server_dir.rglob("*") if "pgdata" not in p.relative_to(server_dir).parts]
    assert mine and not [p for p in mine if p.stat().st_mode & 0o077 and not p.is_socket()], \
        [oct(p.stat().st_mode) for p in mine if p.stat().st_mode & 0o077]
    hba = (server_dir / "pgdata" / "pg_hba.conf").read_text()
    rules = [ln.split() for ln in hba.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert rules and not [r for r in rules if "trust" in r], rules
    assert [r[-1] for r in rules if r[0] == "local"] == ["peer"] * len([r for r in rules if r[0] == "local"])
    if os.geteuid() == 0 and shutil.which("runuser"):  # another local user, through the socket
        psql = _postgres_bin() / "psql"
        other = subprocess.run(["runuser", "-u", "nobody", "--", str(psql), "-X", "-h", str(server_dir / "pgrun"),
                                "-p", str(pg_port), "-U", "postgres", "-d", "postgres", "-c", "select 1"],
                               capture_output=True, text=True, timeout=60)
        assert other.returncode != 0, other.stdout


# --------------------------------------------------------------------------- shared storage


@pytest.mark.parametrize("storage, fragment", [
    ("hdfs://namenode/lorasweep", "hdfs:// is not a storage Tune can write to here"),
    # A real S3 client against an endpoint that refuses connections (pyarrow's own URI option,
    # as Tune would get it): the store's reason, within seconds.
    (f"s3://lorasweep-test/results?endpoint_override=127.0.0.1:{free_port()}&scheme=http&region=us-east-1",
     "cannot use s3://lorasweep-test/results"),
], ids=["hdfs", "s3-unreachable"])
def test_storage_that_cannot_be_written_is_refused_before_launch(storage, fragment, tmp_path):
    db = tmp_path / "mlruns.db"
    cmd = [sys.executable, str(REPO / "sweeps" / "rank_e2e.py"), "--preset", "smoke",
           "--tracking-uri", f"sqlite:///{db}", "--storage", storage]
    started = time.time()
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert lines[0].startswith("error: storage") and fragment in lines[0], lines[0]
    assert time.time() - started < 60
    assert list(tmp_path.iterdir()) == [] and "Tune storage:" not in proc.stdout


def test_unreachable_cloud_storage_answers_within_the_timeout():
    """pyarrow's GCS client retries for minutes; the check gives up after its timeout."""
    from sweeps.storage import check_storage
    from trainables.errors import UserError

    started = time.time()
    with pytest.raises(UserError) as refused:
        check_storage("gs://lorasweep-test-no-such-bucket/results", timeout_s=2)
    assert time.time() - started < 10
    assert str(refused.value).startswith("storage: cannot ")


def test_local_storage_is_probed_and_left_as_it_was(tmp_path):
    from sweeps.storage import check_storage

    """A local folder is checked by writing a file in it; the folders made for that are removed."""
    check_storage(str(tmp_path / "not-yet" / "ray_results"))
    assert not (tmp_path / "not-yet").exists()


def test_the_cluster_doc_submits_with_the_runtime_env_and_a_shared_storage():
    """docs/cluster.md's `ray job submit` command is the one the multi-node test runs: from the
    repository root, with cluster/runtime_env.yaml (its excludes keep .venv, Tune results,
    MLflow stores and caches out of the upload)."""
    doc = (REPO / "docs" / "cluster.md").read_text()
    section = doc[doc.index("## Submitting a sweep"):doc.index("## Trying it on one machine")]
    command = " ".join(section.split("```bash", 1)[1].split("```", 1)[0].replace("\\\n", " ").split())
    assert command.startswith("ray job submit --address http://127.0.0.1:8265 --working-dir . "
                              "--runtime-env cluster/runtime_env.yaml -- python sweeps/rank_e2e.py")
    assert "--storage " in command and "--tracking-uri " in command
    excludes = _load(RUNTIME_ENV)[0]["excludes"]
    for pattern in (".venv/", "ray_results/", "mlruns/", "mlruns.db", ".cache/", "tests/artifacts/"):
        assert pattern in excludes, pattern


@pytest.fixture
def s3_endpoint(tmp_path):
    """A real S3 protocol server on this machine (moto's, as S3 client code is tested in the
    field), with AWS credentials that only it accepts."""
    port = free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        else:
            pytest.fail("moto's S3 server did not start")
        old = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
        os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
        yield port
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        proc.terminate()
        proc.wait(timeout=30)


def test_resume_finds_a_sweep_stored_in_an_s3_bucket(s3_endpoint):
    """``--resume`` rebuilds the sweep from the description stored beside Tune's state, in the
    bucket as on a shared path; a missing bucket is refused before launch."""
    from types import SimpleNamespace

    import pyarrow.fs

    from sweeps.storage import check_storage, store_config, stored_config
    from sweeps.config import SweepConfig
    from trainables.errors import UserError

    fs = pyarrow.fs.S3FileSystem(endpoint_override=f"127.0.0.1:{s3_endpoint}", scheme="http",
                                 region="us-east-1", allow_bucket_creation=True)
    fs.create_dir("lorasweep-results")
    query = f"endpoint_override=127.0.0.1:{s3_endpoint}&scheme=http&region=us-east-1"
    storage = f"s3://lorasweep-results/sweeps?{query}"
    check_storage(storage)
    with pytest.raises(UserError, match="storage: cannot use s3://no-such-bucket"):
        check_storage(f"s3://no-such-bucket/sweeps?{query}", timeout_s=10)

    launched = SimpleNamespace(  # what store_config reads of a Plan
        cfg=SweepConfig(study="rank_e2e", preset="smoke", storage=storage, seed=7),
        name="rank_e2e-smoke-20261128-120000", storage=storage, prior_samples=0)
    store_config(launched)
    assert fs.get_file_info("lorasweep-results/sweeps/rank_e2e-smoke-20261128-120000/"
                            "lorasweep_sweep.json").size > 0

    latest = stored_config(SweepConfig(study="rank_e2e", storage=storage))
    assert (latest.name, latest.seed, latest.preset) == ("rank_e2e-smoke-20261128-120000", 7, "smoke")
    named = stored_config(SweepConfig(study="rank_e2e", storage=storage, name=latest.name))
    assert named == latest
    with pytest.raises(UserError, match="no glue_rank sweep to resume"):
        stored_config(SweepConfig(study="glue_rank", storage=storage))
