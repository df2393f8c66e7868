"""Starting (or joining) Ray for a sweep, overlapped with the driver's own checks."""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from sweeps.config import SweepConfig
from trainables.errors import first_line


class RayStartFailed(Exception):
    """Ray could not be started (or ``$RAY_ADDRESS`` joined): nothing was launched or written."""

    def __init__(self, cause: BaseException) -> None:
        where = f"join the Ray cluster at {os.environ['RAY_ADDRESS']}" if os.environ.get("RAY_ADDRESS") \
            else "start Ray (or join the one started on this machine with ray start)"
        super().__init__(f"cannot {where}: {first_line(cause, limit=300)}; nothing was launched or written")


class RayStarter:
    """Starts Ray in a background thread while the driver goes on validating and preparing.

    A local Ray's start is mostly waiting on the processes it launches. Meanwhile the driver
    imports Ray Tune, checks the model (memoised: :func:`~sweeps.checks.check_model`), prepares
    the data (cached) and creates a new MLflow store
    (:class:`~sweeps.tracking.store.StagedStore`); Ray's new worker processes import what the
    trials need (:func:`warm_runtime_env`). ``bench/cold_start.py`` measures what this saves.

    The thread lives as long as the process (or until :meth:`shutdown`): Ray binds the
    processes it starts to the lifetime of the thread that started them (Linux
    ``PR_SET_PDEATHSIG``), so that thread must not end while Ray runs.
    """

    def __init__(self, *, dashboard: bool = False) -> None:
        import threading

        self._dashboard = dashboard
        self._ready = threading.Event()
        self._release = threading.Event()
        self._thread: Any = None
        self._error: BaseException | None = None
        self.started = False
        """True when this starter initialised Ray (it was not already initialised)."""

    def start(self, runtime_env: dict[str, Any] | None = None) -> None:
        """Start a local Ray in the background (``runtime_env``: its job's, see
        :func:`warm_runtime_env`); nothing when joining ``$RAY_ADDRESS``."""
        import threading

        if os.environ.get("RAY_ADDRESS"):
            # Joining a running cluster (a job on it, or Ray Client) takes about a second and
            # starts no processes: it happens in :meth:`wait`, in the driver's thread.
            return
        if self._thread is None:
            # SIGTERM meanwhile is the runner's (sweeps.stopping.StopSignals): it raises in the
            # main thread, and the atexit handlers stop Ray's processes.
            self._thread = threading.Thread(target=self._run, args=(runtime_env,), name="lorasweep-ray",
                                            daemon=True)
            self._thread.start()

    def _run(self, runtime_env: dict[str, Any] | None) -> None:
        try:
            self.started = _init_ray(runtime_env, dashboard=self._dashboard)
        except BaseException as e:  # re-raised in the driver's thread by wait()
            self._error = e
        finally:
            self._ready.set()
        if self.started:
            self._release.wait()

    def wait(self) -> None:
        """Ray is up (started now if :meth:`start` was never called)."""
        if self._thread is None:
            try:
                self.started = _init_ray(dashboard=self._dashboard)
            except Exception as e:
                raise RayStartFailed(e) from e
            return
        self._ready.wait()
        if isinstance(self._error, Exception):
            raise RayStartFailed(self._error) from self._error
        if self._error is not None:
            raise self._error

    def shutdown(self) -> None:
        """Stop the Ray this starter started (a mistake was found after it started)."""
        if self._thread is not None:
            self._ready.wait()
        if self.started:
            import ray

            ray.shutdown()
            self.started = False
        self._release.set()


TUNE_ACTOR_ENV_VARS = {"PL_DISABLE_FORK": "1"}
"""What Ray Tune puts in its trial actors' runtime env (``ray.tune.execution.class_cache``:
``DEFAULT_ENV_VARS``), plus those of :data:`TUNE_PROPAGATED_ENV` set in the driver's
environment. tests/test_cold_start.py checks both against the installed Ray."""


TUNE_PROPAGATED_ENV = frozenset({
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN", "NCCL_RAS_ADDR",
    "RAY_CHDIR_TO_TRIAL_DIR", "RAY_TRAIN_CHECKPOINT_UPLOAD_WARN_INTERVAL_S", "RAY_TRAIN_COLLECTIVE_TIMEOUT_S",
    "RAY_TRAIN_COLLECTIVE_WARN_INTERVAL_S", "RAY_TRAIN_ENABLE_CONTROLLER_STRUCTURED_LOGGING",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "RAY_TRAIN_ENABLE_PRINT_PATCH",
    "RAY_TRAIN_ENABLE_STATE_ACTOR_RECONCILIATION", "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS",
    "RAY_TRAIN_ENABLE_WORKER_STRUCTURED_LOGGING", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S",
    "RAY_TRAIN_PREEMPTION_POLL_INTERVAL_S", "RAY_TRAIN_STATE_ACTOR_RECONCILIATION_INTERVAL_S",
    "RAY_TRAIN_V2_ENABLED", "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "RAY_TRAIN_WORKER_HEALTH_CHECK_TIMEOUT_S",
    "RAY_WARN_BLOCKING_GET_INSIDE_ASYNC", "TORCHFT_LIGHTHOUSE", "TRAIN_COPY_DIRECTORY_CHECKPOINTS_INSTEAD_OF_MOVING",
})


def warm_runtime_env(cfg: SweepConfig, *, bitsandbytes: bool, max_trials: int) -> dict[str, Any] | None:
    """The job runtime env that makes a new local Ray start its worker processes warm, or None.

    A local Ray prestarts one worker process per CPU for its first driver, but Tune's trial
    actors do not use them: a worker serves only its own runtime env, and Tune gives its actors
    one (:data:`TUNE_ACTOR_ENV_VARS`). With the job's runtime env equal to what the actors'
    merges into, they do; and ``worker_process_setup_hook`` (:func:`trainables.trial.warm_worker`)
    has each prestarted process import Ray Tune, torch, transformers and peft while the driver
    is still checking, preparing and writing the MLflow parent run, instead of after Tune hands
    it a trial (``bench/cold_start.py`` measures the first trial's setup with and without).

    Only where every prestarted process will host a trial: a Ray this sweep starts (not
    ``$RAY_ADDRESS``), one-process CPU trials of at most one CPU each, at least as many trials
    as CPUs and no concurrency cap below that. ``LORASWEEP_WARM_WORKERS=0`` turns it off.
    """
    from trainables.trial import WARM_ENV

    res, cpus = cfg.resources, os.cpu_count() or 1
    if (os.environ.get("RAY_ADDRESS") or os.environ.get("LORASWEEP_WARM_WORKERS") == "0"
            or res.uses_train_workers or res.gpus_per_trial or res.cpus_per_trial > 1 or max_trials < cpus
            or (cfg.search.max_concurrent and cfg.search.max_concurrent < cpus)):
        return None
    propagated = {k: os.environ[k] for k in sorted(TUNE_PROPAGATED_ENV) if k in os.environ}
    env_vars = {**TUNE_ACTOR_ENV_VARS, **propagated,
                WARM_ENV: "bitsandbytes" if bitsandbytes else "skip-bitsandbytes"}
    return {"env_vars": env_vars, "worker_process_setup_hook": "trainables.trial.warm_worker"}


_USER_PRESTART = os.environ.get("RAY_prestart_worker_first_driver")


def _init_ray(runtime_env: dict[str, Any] | None = None, *, dashboard: bool = False) -> bool:
    """Connect to ``$RAY_ADDRESS`` or start a local Ray (``runtime_env``: its job's, see
    :func:`warm_runtime_env`); True when this call did either (False when Ray was already
    initialised in this process).

    ``dashboard``: a local Ray also starts its dashboard, whose state API Ray Train's
    placement-group cleaner asks whether a trial's Train controller is still alive. When Tune
    stops a worker-group trial (ASHA, or its last epoch reached) it kills the trial's actor,
    the controller dies with it, and only that cleaner frees the group's resources for the
    next trial; without the state API they stay reserved until the sweep ends. That cleaner
    runs in a Ray worker process, which finds the state API through ``RAY_API_SERVER_ADDRESS``
    (inherited from this process) or else by looking for *the* local Ray: with a second local
    Ray on the machine (another sweep) it would find two, so the dashboard gets a free port
    chosen here and the variable names it."""
    import logging

    import ray

    # Trials checkpoint at every report by design (adapters are small); Tune's warning about
    # frequent experiment snapshots is noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # A new local Ray prestarts one idle worker per CPU for the first driver. Tune's trial
    # actors use them only with the warm runtime env (see warm_runtime_env); otherwise, on a
    # small machine, they only take CPU from the sweep's start. Read by the raylet a sweep starts; a running cluster keeps its setting, as does the user's.
    os.environ["RAY_prestart_worker_first_driver"] = _USER_PRESTART or ("1" if runtime_env else "0")

    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS") or None
    if address is None:
        # A local Ray is one machine that no autoscaler drains: Ray Train's preemption watcher
        # (one more actor process per worker group, polling Ray's drain state) has nothing to
        # watch. Its processes read this from the environment they inherit; a cluster keeps its own.
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
        checkout_first_on_pythonpath()
    # A new local cluster has token authentication on by default, as our cluster configs want;
    # Ray's warning saying so would be a second line beside a one-line bad-input error.
    logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(
        lambda record: not record.getMessage().startswith("Token authentication is enabled"))
    # An interrupted sweep's trials that never reported have no results file yet; Tune's
    # warning that it could not read them reads like lost data. Any other failure still shows.
    logging.getLogger("ray.tune.analysis.experiment_analysis").addFilter(_not_only_unreported)
    # An interrupted sweep's summary prints the command that resumes it; Tune's own hint
    # (Tuner.restore in Python) would be a second, different way that loses the MLflow record.
    logging.getLogger("ray.tune.tune").addFilter(lambda record: "Tuner.restore(" not in record.getMessage())
    # Started from RayStarter's thread, Ray cannot install its SIGTERM handler (Python allows
    # that in the main thread only) and warns; RayStarter installs the same one.
    logging.getLogger("ray._private.worker").addFilter(
        lambda record: not record.getMessage().startswith("SIGTERM handler is not set"))
    port = {}
    if dashboard and address is None:
        port = {"dashboard_port": free_port()}
        os.environ["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port['dashboard_port']}"
    ray.init(address=address, include_dashboard=dashboard, logging_level=logging.WARNING, log_to_driver=True,
             runtime_env=runtime_env, **port)
    _print_worker_output_without_sigterm_exits()
    return True


def checkout_first_on_pythonpath() -> None:
    """Have the processes of a local Ray started from a checkout import its code, as the
    driver does (each sweep script puts its checkout first on ``sys.path``), rather than
    another copy of the package installed in the environment: they inherit ``PYTHONPATH``."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file():  # installed (site-packages): workers find it as is
        return
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(root)]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(root), *paths])


def _print_worker_output_without_sigterm_exits() -> None:
    """Have the driver print its workers' output less what a worker ended by SIGTERM prints
    as it dies (:func:`without_sigterm_noise`).

    Ray ends worker processes with SIGTERM (a sweep's idle ones as it ends, every one on
    Ctrl-C). A worker whose SIGTERM comes while Python is in a callback that cannot raise (a
    weakref's) prints Ray's ``SystemExit`` as an ignored exception's traceback; one whose
    SIGTERM comes outside Python (importing, waiting for the GIL) prints Ray's C++ failure
    dump, its stack as addresses. Ray has no setting for either, so the printer it registers
    with its output dispatcher is wrapped in place (without that internal, output prints
    unfiltered)."""
    try:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:
        return
    with dispatcher._lock:
        dispatcher.handlers = [(name, filtering(h) if name == "ray_print_logs" else h)
                               for name, h in dispatcher.handlers]


#: Per worker output stream, a traceback whose end has not come yet: (the batch, its lines,
#: the printer). Held for one batch at most, or until :func:`flush_held_worker_output`.
_HELD: dict[tuple[Any, bool], tuple[dict[str, Any], list[str], Any]] = {}


def filtering(handler: Any) -> Any:
    """``handler`` (Ray's printer of a batch of a worker's output lines) less the lines of
    :func:`without_sigterm_noise`. A traceback a batch ends in the middle of waits for the
    worker's next batch, so that one cut in two is judged whole."""
    if getattr(handler, "drops_sigterm_exits", False):
        return handler
    ended: set[Any] = set()

    def filtered(data: dict[str, Any]) -> None:
        key = (data.get("pid"), bool(data.get("is_err")))
        before = _HELD.pop(key, None)
        lines = (before[1] if before else []) + list(data.get("lines") or [])
        cut = unfinished_traceback(lines)
        if before is None and cut < len(lines):
            _HELD[key] = (data, lines[cut:], handler)
            lines = lines[:cut]
        lines = without_sigterm_noise(lines, key[0], ended)
        if lines:
            handler({**data, "lines": lines})

    filtered.drops_sigterm_exits = True  # type: ignore[attr-defined]
    return filtered


def flush_held_worker_output() -> None:
    """Print what :func:`filtering` holds back (the sweep is ending: no more output comes)."""
    while _HELD:
        _, (data, lines, handler) = _HELD.popitem()
        handler({**data, "lines": lines})


def unfinished_traceback(lines: list[str]) -> int:
    """Where a traceback that ``lines`` end in the middle of starts (its "Exception ignored
    in" line included), or ``len(lines)``: the lines end in its frames, before its exception."""
    end = len(lines)
    while end and lines[end - 1][:1] in (" ", "\t", ""):  # frames, and their blank lines
        end -= 1
    if end and lines[end - 1].startswith("Traceback (most recent call last):"):
        end -= 1
        return end - 1 if end and lines[end - 1].startswith("Exception ignored in") else end
    if end == len(lines) and end and lines[end - 1].startswith("Exception ignored in"):
        return end - 1
    return len(lines)


#: A line of the failure dump Ray's C++ signal handler prints (raw, and again through Ray's log
#: with a ``[time E pid tid] logging.cc:N:`` prefix): its SIGTERM line and the stack's addresses.
_SIGTERM_DUMP = re.compile(r"^(\[[^\]]*\] logging\.cc:\d+: )?"
                           r"(\*\*\* SIGTERM received at time=\d+ on cpu \d+ \*\*\*|PC: @\s+0x|\s+@\s+0x)")


def without_sigterm_noise(lines: list[str], pid: Any, ended: set[Any]) -> list[str]:
    """One batch of worker ``pid``'s output less :func:`without_sigterm_exits` and, once the
    worker printed that it received SIGTERM (``ended`` keeps such workers), the lines of
    that C++ failure dump. A dump of another signal (SIGSEGV) is kept whole."""
    lines = without_sigterm_exits(lines)
    if any("*** SIGTERM received at time=" in line for line in lines):
        ended.add(pid)
    return [line for line in lines if not _SIGTERM_DUMP.match(line)] if pid in ended else lines


def without_sigterm_exits(lines: list[str]) -> list[str]:
    """``lines`` less each traceback of a ``SystemExit`` raised by Ray's SIGTERM handler
    (``sigterm_handler`` in ``ray/_private/worker.py``), with the "Exception ignored in" line
    before it: a worker process being ended. Every other line is kept, in order."""
    out, i = [], 0
    while i < len(lines):
        start = i + 1 if lines[i].startswith("Exception ignored in") else i
        if start < len(lines) and lines[start].startswith("Traceback (most recent call last):"):
            end = start + 1
            while end < len(lines) and _in_frames(lines, end):
                end += 1
            if (end < len(lines) and lines[end].startswith("SystemExit")
                    and any("worker.py" in line and line.rstrip().endswith("in sigterm_handler")
                            for line in lines[start:end])):
                i = end + 1
                continue
        out.append(lines[i])
        i += 1
    return out


def _in_frames(lines: list[str], i: int) -> bool:
    """Line ``i`` belongs to a traceback's frames: indented, or blank between two frames (a
    worker's traceback of a SIGTERM in a weakref callback has one under the callback's ``def``
    line)."""
    return lines[i][:1] in (" ", "\t") or (not lines[i] and i + 1 < len(lines) and lines[i + 1][:1] in (" ", "\t"))


def _not_only_unreported(record: logging.LogRecord) -> bool:
    """False for Tune's "Failed to fetch metrics" warning when every trial it lists lacks its
    results file (it never reported), so the warning is dropped; True for every other record."""
    lines = record.getMessage().splitlines()
    return not (lines[0].startswith("Failed to fetch metrics for") and len(lines) > 1
                and all("FileNotFoundError" in line for line in lines[1:]))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
