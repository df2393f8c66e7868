"""Where a sweep keeps its Tune state, checkpoints and description (a path or an ``s3://`` /
``gs://`` URI), checked before launch and read back by ``--resume``."""

from __future__ import annotations

import json
import secrets
import shlex
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from sweeps.config import SweepConfig
from trainables.errors import UserError, first_line
from sweeps.tracking.writer import storage_fs
from trainables.schema import from_dict, to_dict
from sweeps.plan import Plan


SWEEP_FILE = "lorasweep_sweep.json"


def default_name(cfg: SweepConfig) -> str:
    """``<study>-<preset>-<timestamp>-<random>``, and ``-<part>`` last in a multi-part study,
    as after a given ``--name`` (so the name a resume command gives selects the same part's
    sweep).

    The local time to the second sorts the names; six random hex digits (2**24 values) tell
    apart sweeps launched in the same second, by a shell loop or two cluster jobs on one
    storage, which would otherwise share the experiment directory (Tune state, checkpoints,
    journal). Drawn rather than checked against the storage: no check-then-create is atomic
    on an ``s3://`` or ``gs://`` storage, and two launches would both pass the check."""
    part = f"-{cfg.part}" if cfg.part else ""
    return f"{cfg.study}-{cfg.preset}-{unique_stamp()}{part}"


def unique_stamp() -> str:
    """The local time to the second and six random hex digits (``20261207-135654-2648c1``): a
    name part that sorts by time and differs between two processes that take it in the same
    second (:func:`default_name`)."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def storage_path(cfg: SweepConfig) -> str:
    if cfg.storage and "://" in cfg.storage:
        return cfg.storage
    return str(Path(cfg.storage or "ray_results").expanduser().resolve())


def snapshot_time(plan: Plan) -> float:
    """When Tune wrote the newest experiment snapshot of the sweep (seconds since the epoch;
    0 without one): a resume starts from it. Trials begun before it that it does not hold
    belong to an earlier Tune run of the sweep (the first run of an extended sweep)."""
    import pyarrow.fs

    fs, root = storage_fs(plan.storage)
    try:
        infos = fs.get_file_info(pyarrow.fs.FileSelector(f"{root.rstrip('/')}/{plan.name}", allow_not_found=True))
    except OSError:
        return 0.0
    return max((i.mtime.timestamp() for i in infos
                if i.base_name.startswith("experiment_state-") and i.mtime is not None), default=0.0)


def drop_unrecorded_checkpoints(plan: Plan, trial_ids: set[str | None], *, since: float = 0.0) -> None:
    """Checkpoints of trials an interrupted driver started after Tune's last experiment
    snapshot (``since``): no Tune trial owns them (they can never be resumed), so keep-best-k
    never sees them; deleted after a resume (local storage). Trial directories older than the
    snapshot are an earlier Tune run's (an extended sweep's first run) and stay."""
    import shutil

    if "://" in plan.storage:
        return
    for ckpt in (Path(plan.storage) / plan.name).glob("*/checkpoint_*"):
        if (ckpt.is_dir() and ckpt.parent.stat().st_mtime >= since
                and not any(f"_{tid}_" in ckpt.parent.name for tid in trial_ids if tid)):
            shutil.rmtree(ckpt, ignore_errors=True)


def store_config(plan: Plan) -> None:
    """The sweep as launched, beside Tune's experiment state, so ``--resume`` can rebuild it
    (on a shared path or in the cloud bucket alike)."""
    fs, root = storage_fs(plan.storage)
    fs.create_dir(f"{root}/{plan.name}", recursive=True)
    with fs.open_output_stream(f"{root}/{plan.name}/{SWEEP_FILE}") as out:
        # An extension records the sweep's samples in all (its plan runs the new ones).
        search = replace(plan.cfg.search, num_samples=plan.cfg.search.num_samples + plan.prior_samples)
        out.write(json.dumps(to_dict(replace(plan.cfg, name=plan.name, search=search)), indent=2).encode())


def is_stored(plan: Plan) -> bool:
    """Whether the sweep is in Tune storage for ``--resume`` (:func:`store_config` ran); True
    when the storage cannot be read."""
    try:
        import pyarrow.fs

        fs, root = storage_fs(plan.storage)
        return fs.get_file_info(f"{root}/{plan.name}/{SWEEP_FILE}").type != pyarrow.fs.FileType.NotFound
    except BaseException:  # noqa: BLE001 - unreadable, or a second Ctrl-C: assume it is
        return True


def check_name_is_new(cfg: SweepConfig) -> None:
    """Refuse a new sweep under the name of one already in Tune storage: the two would share
    the experiment directory (its state, checkpoints and journal), and a later ``--resume``
    of either would restore the other's trials."""
    if not cfg.name:
        return
    import pyarrow.fs

    storage = storage_path(cfg)
    fs, root = storage_fs(storage)
    try:
        found = fs.get_file_info(f"{root.rstrip('/')}/{cfg.name}").type != pyarrow.fs.FileType.NotFound
    except OSError:  # an unreachable store: check_storage names the problem next
        return
    if found:
        raise UserError("name", f"a sweep named {cfg.name!r} already exists under {storage}; finish it "
                                "with --resume, or give this one another --name")


def stored_config(cfg: SweepConfig, *, verb: str = "resume") -> SweepConfig:
    """On ``--resume`` (and ``--extend``: ``verb``), the sweep exactly as it was launched (only
    where it logs may change)."""
    import pyarrow.fs

    storage = storage_path(cfg)
    fs, root = storage_fs(storage)

    def read(path: str) -> dict[str, Any] | None:
        try:
            with fs.open_input_stream(path) as fh:
                text = fh.read()
        except OSError:  # missing too
            return None
        return _sweep_description(text, path, verb)

    if cfg.name:
        where = f"{root}/{cfg.name}/{SWEEP_FILE}"
        data = read(where)
        if data is None:
            raise UserError("name", f"no sweep named {cfg.name!r} under {storage} to {verb}")
    else:
        try:
            dirs = fs.get_file_info(pyarrow.fs.FileSelector(root, allow_not_found=True))
        except OSError:
            dirs = []
        found = []
        for info in dirs:
            if info.type == pyarrow.fs.FileType.Directory and info.base_name.startswith(f"{cfg.study}-"):
                data = read(f"{info.path}/{SWEEP_FILE}")
                if data is not None and data.get("part") == cfg.part:
                    path = f"{info.path}/{SWEEP_FILE}"
                    found.append((fs.get_file_info(path).mtime, data, path, info.base_name))
        if not found:
            raise UserError(verb, f"no {cfg.study} sweep to {verb} under {storage}")
        newest = max((when for when, *_ in found if when is not None), default=None)
        tied = sorted(name for when, _, _, name in found if when == newest)
        if len(tied) > 1:  # stores that keep whole seconds (S3, GCS), or no times at all
            why = "were each stored last in the same second" if newest is not None else "have no time there"
            raise UserError(verb, f"no newest {cfg.study} sweep under {storage}: {', '.join(tied)} {why}; give "
                                  f"the one to {verb} with --name")
        _, data, where, _ = next(f for f in found if f[0] == newest)
    try:
        stored = from_dict(SweepConfig, data)
    except UserError as e:
        raise UserError(verb, f"{where} is damaged ({e.field}: {e.message}); restore it, or start "
                              "a new sweep") from None
    if cfg.name and data.get("study") not in (None, cfg.study):
        raise UserError("name", f"sweep {cfg.name!r} under {storage} is a {stored.study} sweep, not "
                                f"{cfg.study}: --{verb} it with {_study_command(stored.study)}")
    return replace(stored, tracking_uri=cfg.tracking_uri or stored.tracking_uri,
                   storage=cfg.storage or stored.storage)


_JSON_KINDS = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def _sweep_description(text: bytes, path: str, verb: str) -> dict[str, Any]:
    """A stored sweep description (:func:`store_config`'s JSON object), refused in one line
    naming the file when it is damaged."""
    try:
        data = json.loads(text.decode())
    except (UnicodeDecodeError, ValueError, RecursionError) as e:  # RecursionError: nested too deep
        raise UserError(verb, f"{path} is damaged ({first_line(e, limit=120)}); it is the sweep's "
                              "description as launched, a JSON object of its settings: restore it, or start "
                              "a new sweep") from None
    if not isinstance(data, dict):
        kind = _JSON_KINDS.get(type(data), "value")
        raise UserError(verb, f"{path} is damaged (a JSON {kind}, not an object); it is the sweep's description "
                              "as launched, a JSON object of its settings: restore it, or start a new sweep")
    return data


def _study_command(study: str) -> str:
    """How to run the stored sweep's study: :func:`~sweeps.stopping.study_script`, or for a
    study neither built in nor loaded here, a pointer to its own launch command."""
    from sweeps.stopping import study_script
    from sweeps.study_file import STUDY_FILES

    if study in STUDY_FILES or (Path(__file__).parent / f"{study}.py").is_file():
        return shlex.join(study_script(study))
    return "the command that launched it"


def check_unchanged(cfg: SweepConfig, given: list[tuple[str, str]], *, verb: str = "resume") -> None:
    """Refuse flags that would change a sweep ``--resume`` (or ``--extend``) continues as it
    was launched: ``given`` holds each flag as typed with the setting it sets (``('--set
    train.lr=5', 'trial.train.lr')``); a flag that repeats the stored value is fine."""
    launched = stored_config(cfg, verb=verb)
    stored, mine = to_dict(launched), to_dict(cfg)
    for flag, dotted in given:
        ours, theirs = _get(mine, dotted), _get(stored, dotted)
        if ours != theirs:
            key = dotted.removeprefix("trial.")
            was = _searched(launched, key) or f"stored {key}: {theirs!r}"
            raise UserError(flag.split()[0], f"{flag} would change the sweep ({was}); --{verb} continues it as it "
                                             "was launched, changing only --tracking-uri and --storage: drop the "
                                             "flag, or start a new sweep")


def _searched(cfg: SweepConfig, key: str) -> str | None:
    """How the sweep's search space draws ``key`` (``its space searches train.lr: grid [0.002,
    2e-05]``), or None where it does not (or the space cannot be read)."""
    from search_spaces import load_space

    try:
        space = load_space(cfg.space, base=to_dict(cfg.trial))
    except (UserError, OSError, ValueError):
        return None
    for p in space.swept:
        if p.key == key:
            return f"its space searches {key}: {p.kind} {list(p.values)}"
    return None


def _get(data: dict[str, Any], dotted: str) -> Any:
    for key in dotted.split("."):
        data = data.get(key) if isinstance(data, dict) else None
    return data


#: ``--storage`` URI schemes: the cloud stores Tune writes through pyarrow's filesystems.


STORAGE_SCHEMES = ("s3", "gs")


def _cannot_write_in(folder: Path) -> str | None:
    """Why a file cannot be written in ``folder`` (creating its missing folders first), or None
    where it can; the probe file and the folders created for it are removed again."""
    import os
    import tempfile

    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    created: list[Path] = []
    try:
        for path in reversed(missing):
            path.mkdir()
            created.append(path)
        fd, probe = tempfile.mkstemp(dir=missing[0] if missing else folder, prefix=".lorasweep-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return e.strerror or str(e)
    finally:
        for path in reversed(created):
            try:
                path.rmdir()
            except OSError:  # something else wrote there meanwhile: it stays
                pass
    return None


def check_storage(storage: str, *, timeout_s: float = 20.0) -> None:
    """Refuse a ``--storage`` URI the sweep could not write to, before anything starts.

    A local or shared-filesystem path is created (with its missing folders) and a probe file
    written in it and removed, then the folders it created are removed again (Tune creates
    them when it starts): permissions alone do not say whether root can write there. An ``s3://`` or
    ``gs://`` URI is opened with pyarrow, as Tune and Ray Train open it, and its prefix is
    looked up once: a missing bucket, missing credentials or an unreachable endpoint is one
    line within ``timeout_s`` seconds rather than a failure of every trial at its first
    checkpoint. pyarrow's own query options (``?endpoint_override=...&region=...``) pass
    through, as they do to Tune.
    """
    import threading
    from urllib.parse import urlsplit

    if "://" not in storage:
        from trainables.paths import unwritable_folder

        if (path := unwritable_folder(Path(storage).expanduser())) is not None:  # Tune creates missing folders
            raise UserError("storage", f"cannot keep the sweep in {storage}: {path} is not a writable "
                                       "folder; give a folder (created if missing)")
        if (why := _cannot_write_in(Path(storage).expanduser())) is not None:
            raise UserError("storage", f"cannot keep the sweep in {storage}: cannot create a file there ({why}); "
                                       "give a writable folder (created if missing)")
        return
    from trainables.credentials import refuse_secrets

    scheme = urlsplit(storage).scheme
    refuse_secrets("storage", storage, f"give them through the environment instead ({_credentials_hint(scheme)})")
    if scheme not in STORAGE_SCHEMES:
        raise UserError("storage", f"{scheme}:// is not a storage Tune can write to here; give a "
                                   "path (a shared filesystem on a cluster) or an s3:// or gs:// URI")
    if not urlsplit(storage).netloc:
        raise UserError("storage", f"{storage} names no bucket; give {scheme}://BUCKET or {scheme}://BUCKET/PREFIX")
    outcome: list[BaseException | None] = []

    def probe() -> None:
        try:
            import pyarrow.fs

            fs, path = pyarrow.fs.FileSystem.from_uri(storage)
            fs.get_file_info(path)  # credentials and reachability; a missing prefix is fine
            bucket = path.split("/", 1)[0]
            if fs.get_file_info(bucket).type == pyarrow.fs.FileType.NotFound:
                raise FileNotFoundError(f"bucket {bucket!r} does not exist")
            outcome.append(None)
        except Exception as e:  # noqa: BLE001 - pyarrow raises OSError, ArrowInvalid, ... with the reason
            outcome.append(e)

    # A daemon thread: pyarrow's GCS client retries for minutes and cannot be cancelled, and
    # must not keep the process alive after the error.
    thread = threading.Thread(target=probe, name="lorasweep-storage-check", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if not outcome:
        raise UserError("storage", f"cannot reach {storage} (no answer in {timeout_s:g} s); check the "
                                   "network and the credentials of this machine and the nodes")
    if outcome[0] is not None:
        e = outcome[0]
        raise UserError("storage", f"cannot use {storage} ({first_line(e)}); {_credentials_hint(scheme)}")


def _credentials_hint(scheme: str) -> str:
    if scheme == "s3":
        return ("the nodes need write access: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, "
                "or an instance role")
    return "the nodes need write access: GOOGLE_APPLICATION_CREDENTIALS or Workload Identity"
