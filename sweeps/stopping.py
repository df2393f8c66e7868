"""How a sweep's driver stops when it is told to, or fails, without losing records.

* **Ctrl-C (SIGINT) while Tune runs:** Tune's own handler ends its loop after one last
  experiment snapshot, and ``fit()`` returns. The runner then shows the trials that did not
  end as ``unfinished``, closes their child runs as ``KILLED``, ends the parent run ``KILLED``
  with a tag that says how to resume, and exits with 130.
* **SIGTERM** (``ray job stop``, Kubernetes, ``kill``) is handled the same way while Tune runs
  (exit code 143); anywhere else it raises :class:`Stopped`, as a second Ctrl-C raises
  ``KeyboardInterrupt``.
* **Any other way out** (an exception from ``fit()``, a results CSV or plot that cannot be
  written, a second signal): :func:`abort` ends the parent run (``KILLED`` for a signal,
  ``FAILED`` for an error) and the open child runs, waits a bounded time for the MLflow
  writes, saves what is still unwritten in the sweep's journal and lists it.

A SIGKILL leaves no chance for any of this: ``--resume`` then closes what the killed driver
left open (``MlflowRecorder.close_stale_runs``) and replays its journal.
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from trainables.errors import UserError

#: Tags of a parent run whose sweep was interrupted (removed when it is resumed).
INTERRUPTED_TAG = "lorasweep.interrupted"
RESUME_TAG = "lorasweep.resume_with"
#: Seconds an aborted sweep waits for MLflow writes at most (what is left goes to the journal).
ABORT_FLUSH_S = 30.0


class Stopped(BaseException):
    """The driver received SIGTERM outside Tune's loop."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def exit_code(signal_name: str) -> int:
    """The shell's exit code of a process ended by ``signal_name``: 130 for SIGINT, 143 for
    SIGTERM."""
    return 128 + int(signal.Signals[signal_name])


class StopSignals:
    """SIGINT and SIGTERM handlers for the time a sweep runs (main thread only; elsewhere
    nothing changes). :meth:`fit` marks the time Tune's loop runs, during which SIGTERM goes
    to Tune's SIGINT handler; :attr:`received` names the first signal handled here."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._in_fit = False
        self._saved: dict[int, Any] = {}
        self._main = threading.current_thread() is threading.main_thread()

    def __enter__(self) -> StopSignals:
        if self._main:
            self._saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
            self.install()
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)

    def install(self) -> None:
        if self._main:
            signal.signal(signal.SIGINT, self._on_sigint)
            signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self.received = self.received or "SIGINT"
        raise KeyboardInterrupt

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self.received = self.received or "SIGTERM"
        handler = signal.getsignal(signal.SIGINT)
        if self._in_fit and callable(handler) and handler != self._on_sigint:
            handler(signal.SIGINT, frame)  # Tune's: stop after its last snapshot
            return
        raise Stopped(signum)

    @contextlib.contextmanager
    def fit(self) -> Iterator[None]:
        """Around ``Tuner.fit()``. Tune installs its SIGINT handler inside and leaves it there;
        ours comes back afterwards, so a Ctrl-C during the summary is not swallowed."""
        self._in_fit = True
        try:
            yield
        finally:
            self._in_fit = False
            if self._main:
                signal.signal(signal.SIGINT, self._on_sigint)


def study_script(study: str) -> list[str]:
    """The command that runs ``study``: ``python -m sweeps.run --config FILE`` for the study
    file this process loaded, otherwise its script in ``sweeps/``."""
    from sweeps.study_file import STUDY_FILES

    file = STUDY_FILES.get(study)
    return ["python", *(["-m", "sweeps.run", "--config", str(file)] if file else [f"sweeps/{study}.py"])]


def resume_command(cfg: Any, name: str) -> str:
    """The command that finishes an interrupted sweep (a study file's: ``python -m sweeps.run
    --config FILE``)."""
    from sweeps.study_file import STUDY_FILES, load_study, read_study

    file = STUDY_FILES.get(cfg.study)
    parts = [*study_script(cfg.study), "--resume", "--name", name]
    if cfg.part:
        try:
            flag = (read_study(file) if file else load_study(cfg.study)).part_flag
        except (OSError, KeyError, ValueError, UserError):
            flag = None
        if flag:
            parts += [f"--{flag}", cfg.part]
    if cfg.storage:
        parts += ["--storage", cfg.storage]
    return shlex.join(parts)


def interruption_tags(plan: Any, why: str) -> dict[str, str]:
    return {INTERRUPTED_TAG: why, RESUME_TAG: resume_command(plan.cfg, plan.name)}


def abort(plan: Any, recorder: Any, parent: str, error: BaseException, signals: StopSignals, *,
          resumable: bool = True) -> None:
    """The sweep ends by an exception: close the open child runs and the parent run, wait at
    most :data:`ABORT_FLUSH_S` for the MLflow writes, keep what is left in the journal, and say
    so on stderr. ``resumable``: the sweep is in Tune storage, so ``--resume`` finishes it (the
    parent run is tagged with that command); otherwise it is run again."""
    from sweeps.tracking.mlflow_calls import now_ms

    signalled = isinstance(error, (KeyboardInterrupt, Stopped))
    why = (signals.received or "SIGINT") if signalled else _error_line(error)
    recorder.close_unfinished(f"the sweep stopped ({why})")
    tags = interruption_tags(plan, why) if resumable else {INTERRUPTED_TAG: why}

    def record(client: Any) -> None:
        from sweeps.tracking.mlflow_calls import log_batch

        log_batch(client, parent, tags=tags)
        client.set_terminated(parent, status="KILLED" if signalled else "FAILED", end_time=now_ms())

    recorder.writer.submit("sweep", "the parent run's end", record)
    recorder.save_journal()  # first: a second Ctrl-C during the wait below loses nothing
    lost = recorder.flush(ABORT_FLUSH_S)
    recorder.save_journal()
    then = f"finish it with\n  {tags[RESUME_TAG]}" if resumable else "it was not launched: run the command again"
    print(f"\nsweep {plan.name} stopped ({why}); parent run {parent} "
          f"{'KILLED' if signalled else 'FAILED'}; {then}", file=sys.stderr)
    for label, what in lost.items():
        print(f"  MLflow records NOT written for {label}: " + "; ".join(what[:3])
              + (" ..." if len(what) > 3 else ""), file=sys.stderr)


def _error_line(error: BaseException) -> str:
    text = str(error).strip()
    first = text.splitlines()[-1][:200] if text else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__
