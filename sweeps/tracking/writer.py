"""MLflow writes done off Tune's event loop, retried while the store is away, and journaled.

:class:`TrackingWriter` is one thread in the sweep's driver that performs MLflow writes in
order. A tracking server that goes away mid-sweep never stalls the trials (Tune waits for its
callbacks before it takes the next result): while the store is unreachable the writes wait in a
queue bounded by bytes and are retried with backoff (1 s doubling to 5 s); they reach MLflow
once it is back. Whatever is still unwritten when the sweep ends (after ``flush``'s deadline)
is listed per trial in the summary, never dropped silently.

A write about a trial carries its *record*: plain data (JSON) that says what to write, so the
writes still waiting can be saved in a :class:`Journal` beside Tune's experiment state and
performed by the next driver (``--resume``). The recorder saves the journal each time Tune
writes an experiment snapshot: what a snapshot makes Tune forget (a trial ended, a report
made) is then either in MLflow or in the journal. Records are idempotent (a report already in
MLflow is skipped, an end record sets the same tags again), so replaying one twice is harmless.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from trainables.errors import first_line

log = logging.getLogger("lorasweep.mlflow")

#: Bytes of records that wait for an unreachable tracking store at most (a trial's report is
#: a few KB). Past it the oldest waiting report is dropped and counted as lost for its trial;
#: the end of a trial (its status, adapter and final metrics) is never dropped.
MAX_PENDING_BYTES = 256 * 2**20
#: Seconds between attempts while the store is unreachable: doubling from the first to the last.
BACKOFF_S = (1.0, 5.0)
#: MLflow's own HTTP retries (7 tries, backoff factor 2: minutes per call) would hide an outage
#: from the writer's backoff and from the end-of-sweep deadline; while a sweep writes to a
#: tracking server, each call gives up sooner unless these are set in the environment.
HTTP_SETTINGS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
#: What a write without a record (the sweep's own summary) counts against the bound.
_NOMINAL_BYTES = 1024


def transient(error: BaseException) -> bool:
    """Whether a failed MLflow write may succeed later: the store unreachable (MLflow reports a
    connection failure as an internal error, 500), busy (429) or failing (5xx), or a local
    store's I/O. A 4xx (bad value, no such run, no permission) is final."""
    from mlflow.exceptions import MlflowException

    if isinstance(error, MlflowException):
        status = error.get_http_status_code()
        return status >= 500 or status == 429
    return isinstance(error, (OSError, ConnectionError, TimeoutError)) or "sqlite" in type(error).__module__


@dataclass
class _Write:
    label: str
    what: str
    fn: Any
    record: dict[str, Any] | None
    size: int
    end: bool


class TrackingWriter:
    """MLflow writes performed in order by one background thread, retried with backoff while
    the tracking store is unreachable (see the module docstring)."""

    def __init__(self, tracking_uri: str, *, max_pending_bytes: int = MAX_PENDING_BYTES,
                 backoff_s: tuple[float, float] = BACKOFF_S):
        self.tracking_uri = tracking_uri
        self.max_pending_bytes = max_pending_bytes
        self.backoff_s = backoff_s
        self._queue: collections.deque[_Write] = collections.deque()
        self._bytes = 0
        self._cv = threading.Condition()
        self._busy = False
        self._abandoned = False
        self._thread: threading.Thread | None = None
        self._client: Any = None
        #: Label (a trial id, or "sweep") -> what could not be written, and why.
        self.lost: dict[str, list[str]] = {}
        #: The records given up at the deadline (kept for the journal).
        self.unwritten: list[dict[str, Any]] = []
        #: Seconds the store was unreachable, how many outages there were, and whether it is now.
        self.outage_s = 0.0
        self.outages = 0
        self.down = False

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def submit(self, label: str, what: str, fn: Any, *, record: dict[str, Any] | None = None,
               end: bool = False) -> None:
        """Queue ``fn(client)``; returns at once. ``record``: the write as plain data (what a
        journal keeps); ``end``: a trial's end record, never dropped to make room."""
        size = len(json.dumps(record)) if record is not None else _NOMINAL_BYTES
        item = _Write(label, what, fn, record, size, end)
        with self._cv:
            if self._abandoned:
                self.lost.setdefault(label, []).append(f"{what} (after the sweep's deadline)")
                if record is not None:
                    self.unwritten.append(record)
                return
            self._make_room(size)
            self._queue.append(item)
            self._bytes += size
            self._cv.notify_all()
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="lorasweep-mlflow", daemon=True)
                self._thread.start()

    def _make_room(self, size: int) -> None:
        """Drop the oldest waiting reports (never the write in progress, never an end record)
        until ``size`` more bytes fit."""
        waiting = list(self._queue)[1:] if self._busy else list(self._queue)
        for old in waiting:
            if self._bytes + size <= self.max_pending_bytes:
                return
            if old.end:
                continue
            self._queue.remove(old)
            self._bytes -= old.size
            self.lost.setdefault(old.label, []).append(f"{old.what} (queue full)")

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._queue:
                    self._cv.wait()
                item = self._queue[0]
                self._busy = True
            self._perform(item)
            with self._cv:
                if self._queue and self._queue[0] is item:
                    self._queue.popleft()
                    self._bytes -= item.size
                self._busy = False
                self._cv.notify_all()

    def _perform(self, item: _Write) -> None:
        delay, down_since = self.backoff_s[0], None
        while True:
            try:
                item.fn(self.client)
                break
            except Exception as e:  # noqa: BLE001 - every failure is either retried or recorded
                if self._abandoned:  # flush gave up on it and listed it already
                    break
                if not transient(e):
                    with self._cv:
                        self.lost.setdefault(item.label, []).append(f"{item.what} ({first_line(e)})")
                    break
                if down_since is None:
                    down_since = time.monotonic()
                    self.outages += 1
                    self.down = True
                    log.warning("MLflow store %s unreachable (%s); trials go on, their records "
                                "wait and are retried", self.tracking_uri, first_line(e))
                with self._cv:
                    self._cv.wait_for(lambda: self._abandoned, timeout=delay)
                delay = min(delay * 2, self.backoff_s[1])
        if down_since is not None:
            self.down = False
            self.outage_s += time.monotonic() - down_since
            if not self._abandoned:
                log.warning("MLflow store %s reachable again after %.0f s", self.tracking_uri,
                            time.monotonic() - down_since)

    def note_lost(self, label: str, what: str) -> None:
        """Record something that cannot be written (a write found it gone)."""
        with self._cv:
            self.lost.setdefault(label, []).append(what)

    def pending(self) -> int:
        with self._cv:
            return len(self._queue)

    def pending_records(self) -> list[dict[str, Any]]:
        """The records of the writes not yet done (the one in progress first), then those
        given up at the deadline: what a journal must keep."""
        with self._cv:
            return [w.record for w in self._queue if w.record is not None] + list(self.unwritten)

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every queued write; what is still unwritten then
        is given up and listed in :attr:`lost` (its records in :attr:`unwritten`). True when
        everything was written."""
        with self._cv:
            done = self._cv.wait_for(lambda: not self._queue and not self._busy, timeout=timeout)
            if done:
                return True
            self._abandoned = True
            for w in self._queue:
                self.lost.setdefault(w.label, []).append(f"{w.what} (store unreachable until the deadline)")
                if w.record is not None:
                    self.unwritten.append(w.record)
            self._queue.clear()
            self._bytes = 0
            self._cv.notify_all()
            return False


JOURNAL_FILE = "lorasweep_mlflow_journal.json"


def storage_fs(storage: str) -> tuple[Any, str]:
    """(pyarrow filesystem, path in it) of a sweep's Tune storage: a local or shared path, or
    an ``s3://``/``gs://`` URI, opened the way Tune opens it."""
    import pyarrow.fs

    if "://" in storage:
        return pyarrow.fs.FileSystem.from_uri(storage)
    return pyarrow.fs.LocalFileSystem(), storage


class Journal:
    """The MLflow records a driver had not written yet, in one JSON file beside Tune's
    experiment state (``<storage>/<sweep>/lorasweep_mlflow_journal.json``, on a shared path or
    in the bucket). Each save replaces the whole file (a new file, then a rename where the
    store has one); an empty journal is no file."""

    def __init__(self, storage: str, name: str):
        self.storage, self.name = storage, name

    def _fs(self) -> tuple[Any, str]:
        fs, root = storage_fs(self.storage)
        return fs, f"{root.rstrip('/')}/{self.name}/{JOURNAL_FILE}"

    def load(self) -> list[dict[str, Any]]:
        import pyarrow.fs

        fs, path = self._fs()
        if fs.get_file_info(path).type == pyarrow.fs.FileType.NotFound:
            return []
        with fs.open_input_stream(path) as fh:
            data = json.loads(fh.read().decode())
        records = data.get("records") if isinstance(data, dict) else None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise ValueError(f"{path} is not a lorasweep MLflow journal")
        return records

    def save(self, records: list[dict[str, Any]]) -> None:
        import pyarrow.fs

        fs, path = self._fs()
        if not records:
            if fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound:
                fs.delete_file(path)
            return
        blob = json.dumps({"records": records}).encode()
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        if isinstance(fs, pyarrow.fs.LocalFileSystem):
            tmp = f"{path}.tmp"
            with fs.open_output_stream(tmp) as out:
                out.write(blob)
            fs.move(tmp, path)
        else:  # an object store replaces an object whole
            with fs.open_output_stream(path) as out:
                out.write(blob)
