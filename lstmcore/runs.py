"""Run directories and checkpoints: one directory per run, never overwritten, resumable.

A run directory holds the TensorBoard events, ``lstmcore_run.json`` (the manifest: the run's
configuration and its hash), ``checkpoints/`` (``tf.train.CheckpointManager``, whose
pointer file is replaced atomically) and ``lstmcore.lock`` (who is writing it). A run can only
be resumed with the configuration it was started with; a different one is refused with the
fields that differ. A resume that finds no checkpoint to restore is an error, never a fresh
start; one run directory has one writer at a time.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import threading

import tensorflow as tf

from lstmcore.errors import ConfigError, DataError

log = logging.getLogger("lstmcore")

MANIFEST = "lstmcore_run.json"
LOCK = "lstmcore.lock"
FRESH_START = (
    "a resume never starts a run again from step 0: to start it again, pass resume=False with "
    "another run_name (or delete the run directory)"
)


def config_hash(config: dict) -> str:
    """Returns a short, stable hash of a JSON-serialisable configuration."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_logdir(logdir: str) -> None:
    """Raises ``ConfigError`` when ``logdir`` cannot hold run directories."""
    if os.path.exists(logdir) and not os.path.isdir(logdir):
        raise ConfigError(f"logdir {logdir!r} is a file; it must be a directory (or not exist yet)")
    parent = logdir
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    parent = parent or "."
    if not os.path.isdir(parent):
        raise ConfigError(
            f"logdir {logdir!r} lies inside {parent!r}, which is a file, not a directory"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"logdir {logdir!r} is not writable (no write permission on {parent!r})")


def read_manifest(run_dir: str) -> dict | None:
    """Returns the run's manifest, None when there is none.

    Raises:
      ConfigError: naming the file, when it is not a JSON object with ``config`` and
        ``config_hash`` (cut short by a kill before lstmcore wrote it atomically, or edited).
    """
    path = os.path.join(run_dir, MANIFEST)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(
            f"run manifest {path!r} is not valid JSON ({error}); it was cut short or edited. "
            "Restore it, or start a new run with another run_name"
        ) from None
    if (
        not isinstance(manifest, dict)
        or not {"config", "config_hash"} <= set(manifest)
        or not isinstance(manifest["config"], dict)
    ):
        got = sorted(manifest) if isinstance(manifest, dict) else type(manifest).__name__
        raise ConfigError(
            f"run manifest {path!r} must be a JSON object with 'config' and 'config_hash'; "
            f"got {got}. Restore it, or start a new run with another run_name"
        )
    return manifest


def write_json(path: str, value) -> None:
    """Writes JSON atomically: a temporary file, flushed to disk, renamed over the target."""
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def write_manifest(run_dir: str, config: dict) -> None:
    """Writes the manifest (the configuration and its hash) atomically."""
    write_json(
        os.path.join(run_dir, MANIFEST), {"config": config, "config_hash": config_hash(config)}
    )


def differing_fields(old: dict, new: dict) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [
        f"{key}: {old.get(key)!r} in the run, {new.get(key)!r} now"
        for key in keys
        if json.dumps(old.get(key), sort_keys=True, default=str)
        != json.dumps(new.get(key), sort_keys=True, default=str)
    ]


def choose_run_dir(
    logdir: str, run_name: str | None, config: dict, resume: bool
) -> tuple[str, bool]:
    """Picks the run directory without touching the disk.

    Args:
      logdir: the parent of all runs.
      run_name: the run's name, or None for a new timestamped name (or, with ``resume``, the
        newest run in ``logdir``).
      config: this run's configuration.
      resume: continue an existing run.

    Returns:
      ``(run_dir, resuming)``.

    Raises:
      ConfigError: for a named run that exists when not resuming, a run to resume that does
        not exist, or a run whose configuration differs.
    """
    if run_name is not None:
        check_run_name(run_name, logdir)
        run_dir = os.path.join(logdir, run_name)
        if os.path.exists(run_dir):
            if not resume:
                raise ConfigError(
                    f"run directory {run_dir!r} already exists; pass resume=True to continue "
                    "that run, or choose another run_name (runs are never overwritten)"
                )
            _check_same_config(run_dir, config)
            return run_dir, True
        if resume:
            raise ConfigError(
                f"resume=True but there is no run {run_name!r} in logdir {logdir!r} to resume; "
                "to start it, pass resume=False"
            )
        return run_dir, False
    if resume:
        candidates = [
            os.path.join(logdir, name)
            for name in (os.listdir(logdir) if os.path.isdir(logdir) else [])
            if os.path.exists(os.path.join(logdir, name, MANIFEST))
        ]
        if not candidates:
            raise ConfigError(
                f"resume=True but logdir {logdir!r} holds no lstmcore run to resume (no "
                f"*/{MANIFEST}); to start a new run, pass resume=False"
            )
        newest = max(candidates, key=lambda d: os.path.getmtime(os.path.join(d, MANIFEST)))
        _check_same_config(newest, config)
        return newest, True
    stamp = datetime.datetime.now().strftime("run-%Y%m%d-%H%M%S")
    run_dir, suffix = os.path.join(logdir, stamp), 1
    while os.path.exists(run_dir):
        suffix += 1
        run_dir = os.path.join(logdir, f"{stamp}-{suffix}")
    return run_dir, False


def check_run_name(run_name, logdir: str) -> None:
    """Raises ``ConfigError`` unless ``run_name`` can be one directory's name inside ``logdir``."""
    if not isinstance(run_name, str):
        raise ConfigError(f"run_name must be a string or None; got {run_name!r}")
    separators = [sep for sep in (os.sep, os.altsep, "\0") if sep and sep in run_name]
    if not run_name or separators or run_name in (".", ".."):
        raise ConfigError(
            f"run_name must be a plain directory name (no {os.sep!r}, not '.' or '..'); "
            f"got {run_name!r}"
        )
    existing = logdir
    while existing and not os.path.exists(existing):
        existing = os.path.dirname(existing)
    try:
        limit = os.pathconf(existing or ".", "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    length = len(os.fsencode(run_name))
    if length > limit:
        raise ConfigError(
            f"run_name is {length} bytes long; a directory name here can be at most {limit} "
            f"bytes; got {run_name[:40]!r}..."
        )


def _check_same_config(run_dir: str, config: dict) -> None:
    manifest = read_manifest(run_dir)
    if manifest is None:
        raise ConfigError(
            f"{run_dir!r} exists but is not an lstmcore run (no {MANIFEST}); "
            "choose another run_name"
        )
    if manifest["config_hash"] != config_hash(config):
        fields = differing_fields(manifest["config"], config)
        raise ConfigError(
            f"cannot resume {run_dir!r}: it was started with a different configuration ("
            + "; ".join(fields)
            + "). Start a new run instead"
        )


class Checkpoints:
    """Saves and restores everything a continuation needs, through ``tf.train.CheckpointManager``.

    Args:
      directory: where checkpoints go.
      max_to_keep: how many to keep.
      write_directory: where saves go when not ``directory``: a non-chief worker of a
        multi-worker job saves to its own temporary directory
        (:func:`lstmcore.distributed.checkpoint_directory`) and restores from ``directory``.
      on_restore: called after every restore (what the checkpoint cannot hold, such as the
        position of a ``tf.distribute`` data iterator, is set again there).
      **objects: the trackable objects (model, optimizer, data iterator, ...).
    """

    def __init__(
        self,
        directory: str,
        max_to_keep: int = 3,
        *,
        write_directory: str | None = None,
        on_restore=None,
        **objects,
    ):
        self.directory = directory
        self.on_restore = on_restore
        self.checkpoint = tf.train.Checkpoint(**objects)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep)
        self.write_manager = (
            self.manager
            if write_directory in (None, directory)
            else tf.train.CheckpointManager(self.checkpoint, write_directory, 1)
        )

    def remove_stale_temporaries(self) -> list[str]:
        """Removes what a save killed half-way left behind (TensorFlow's ``*_temp`` folders).

        Only names TensorFlow's checkpoint writer creates are touched.
        """
        removed = []
        if not os.path.isdir(self.directory):
            return removed
        for name in os.listdir(self.directory):
            path = os.path.join(self.directory, name)
            if name.startswith("ckpt-") and "_temp" in name:
                if os.path.isdir(path):
                    shutil.rmtree(path)
                else:
                    os.remove(path)
                removed.append(path)
        return removed

    @property
    def latest(self) -> str | None:
        if self.write_manager is not self.manager:  # the chief's, as it is on disk now
            return tf.train.latest_checkpoint(self.directory)
        return self.manager.latest_checkpoint

    def save(self, step: int) -> str:
        return self.write_manager.save(checkpoint_number=int(step))

    def named(self) -> list[str]:
        """The checkpoints the pointer file names, newest first.

        Read with ``tf.train.get_checkpoint_state``, so a pointer file rewritten by hand
        without timestamps counts too (``CheckpointManager`` then lists none).
        """
        state = tf.train.get_checkpoint_state(self.directory)
        if state is None:
            return []
        paths = [*state.all_model_checkpoint_paths, state.model_checkpoint_path]
        paths = [os.path.join(self.directory, p) for p in paths if p]
        return sorted(set(paths), key=_checkpoint_number, reverse=True)

    def resume(self) -> str:
        """Restores the newest readable checkpoint for ``resume=True``; never starts afresh.

        Returns:
          The path of the checkpoint restored.

        Raises:
          ConfigError: naming what is missing when there is no checkpoint to restore: no
            ``checkpoints/`` folder, an empty one, a pointer file that is gone while
            checkpoint files remain, a pointer naming files that do not exist, or only
            unreadable files.
        """
        if not os.path.isdir(self.directory):
            raise ConfigError(
                f"cannot resume: the run has no checkpoints folder {self.directory!r} (deleted, "
                f"or the run was stopped before its first checkpoint); {FRESH_START}"
            )
        found = sorted(n for n in os.listdir(self.directory) if n.endswith(".index"))
        named = self.named()
        if not named and found:
            raise ConfigError(
                f"{self.directory!r} holds checkpoints ({', '.join(found)}) but its "
                "'checkpoint' pointer file is missing or unreadable; refusing to start from "
                "scratch. Restore the pointer file or move the checkpoints away"
            )
        if not named:
            raise ConfigError(
                f"cannot resume: {self.directory!r} holds no checkpoint (no 'checkpoint' pointer "
                f"file, no ckpt-*.index); {FRESH_START}"
            )
        if not any(tf.io.gfile.exists(path + ".index") for path in named):
            names = ", ".join(os.path.basename(p) for p in named)
            raise ConfigError(
                f"cannot resume: the pointer file {os.path.join(self.directory, 'checkpoint')!r} "
                f"names {names}, but none of their files exist (the folder holds "
                f"{', '.join(found) or 'no ckpt-*.index'}); {FRESH_START}"
            )
        return self.restore_latest()

    def restore_latest(self) -> str | None:
        """Restores the newest checkpoint the pointer names, asserting that every object matched.

        Falls back to an older checkpoint, with a warning (the ``lstmcore`` logger) naming the file, when the newest
        cannot be read; raises when none can.
        """
        errors = []
        for path in self.named():
            try:
                status = self.checkpoint.restore(path)
                status.assert_existing_objects_matched()
                if self.on_restore is not None:
                    self.on_restore()
                if errors:
                    log.warning(
                        f"lstmcore: could not read checkpoint {errors[0][0]} ({errors[0][1]}); "
                        f"restored {path} instead"
                    )
                return path
            except Exception as error:  # noqa: BLE001 - a damaged file raises OpError, IndexError, ...
                errors.append((path, str(error).splitlines()[0] if str(error) else repr(error)))
        if errors:
            raise ConfigError(
                "no checkpoint could be restored: " + "; ".join(f"{p}: {e}" for p, e in errors)
            )
        return None


def _checkpoint_number(path: str) -> int:
    try:
        return int(os.path.basename(path).rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def check_iterator_checkpointable(iterator, *, name: str) -> None:
    """Raises ``DataError`` before the first step when the data iterator cannot be checkpointed.

    A ``tf.data`` pipeline that holds Python state (``Dataset.from_generator``,
    ``py_function``, ``numpy_function``) cannot save its position
    (TensorFlow: "PyFunc is stateful"), so a resumed run could not continue exactly. The
    iterator is saved once to TensorFlow's in-memory file system, exactly as a checkpoint
    would save it; nothing is written to disk.
    """
    folder = f"ram://lstmcore-iterator-check-{os.getpid()}-{id(iterator)}"
    try:
        tf.train.Checkpoint(iterator=iterator).write(f"{folder}/check")
    except (tf.errors.FailedPreconditionError, tf.errors.UnimplementedError) as error:
        reason = re.sub(r"\{\{.*?\}\}\s*", "", error.message).split(" [Op:")[0].strip()
        raise DataError(
            f"{name} is a tf.data pipeline whose position cannot be saved in a checkpoint "
            f"(TensorFlow: {reason!r}; Dataset.from_generator, py_function and "
            "numpy_function hold Python state), so the run could not be resumed exactly. "
            "Pass the data as (inputs, targets) NumPy arrays (e.g. x, y = map(np.concatenate, "
            "zip(*dataset.as_numpy_iterator()))) or a dataset built from tensors "
            "(Dataset.from_tensor_slices), or pass logdir=None to train without checkpoints"
        ) from None
    finally:
        if tf.io.gfile.exists(folder):
            tf.io.gfile.rmtree(folder)


def open_run_dir(
    logdir: str, run_dir: str, *, resuming: bool, next_free: bool = False
) -> tuple[str, str | None]:
    """Creates a new run directory (atomically) or reopens one to resume, and takes its lock.

    Args:
      logdir: the parent directory.
      run_dir: the directory chosen by :func:`choose_run_dir`.
      resuming: reopen ``run_dir`` instead of creating it.
      next_free: ``run_dir`` is a generated (timestamped) name: when another process created
        it first (two runs started in the same second), take the next free suffix instead.

    Returns:
      ``(run_dir, note)``: the directory really opened, and None or a note naming the dead
      process whose lock was taken over.

    Raises:
      ConfigError: when another process just created a directory the user named, or holds
        its lock.
    """
    if not resuming:
        os.makedirs(logdir, exist_ok=True)
        stem, suffix = run_dir, 1
        while True:
            try:
                os.mkdir(run_dir)  # atomic: of two runs starting under one name, one gets it
                break
            except FileExistsError:
                if not next_free:
                    raise ConfigError(
                        f"run directory {run_dir!r} was just created by another process; "
                        "choose another run_name"
                    ) from None
                suffix += 1
                run_dir = f"{stem}-{suffix}"
    return run_dir, RunLock(run_dir).acquire()


def install_sigterm(handler):
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return None


def restore_sigterm(previous) -> None:
    if previous is not None:
        try:
            signal.signal(signal.SIGTERM, previous)
        except ValueError:
            pass


class RunLock:
    """An exclusive lock on a run directory: one writer at a time.

    ``fcntl.flock`` on ``<run_dir>/lstmcore.lock``. The kernel drops the lock when its holder
    exits in any way, SIGKILL included, so a lock left by a killed process is taken over by
    the next ``train``; the file names the holder (pid, host, start time) for the error a
    second writer gets, and is emptied on release, so a name found in it on acquiring is a
    holder that died (reported as taken over).

    Args:
      run_dir: the run directory (it must exist).
    """

    def __init__(self, run_dir: str):
        self.run_dir = run_dir
        self.path = os.path.join(run_dir, LOCK)
        self._file = None

    def acquire(self) -> str | None:
        """Takes the lock.

        Returns:
          None, or a note naming the dead process whose lock was taken over.

        Raises:
          ConfigError: naming the holder when another process (or another ``train`` in this
            one) holds the lock.
        """
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the run
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise ConfigError(
                f"run directory {self.run_dir!r} is in use by {holder} (lock file {self.path!r}); "
                "one run directory has one writer at a time. Wait for it to finish, or choose "
                "another run_name"
            ) from None
        handle.seek(0)
        previous = handle.read().strip()
        handle.seek(0)
        handle.truncate()
        handle.write(
            f"pid {os.getpid()} on host {socket.gethostname()} since "
            f"{datetime.datetime.now().isoformat(timespec='seconds')}\n"
        )
        handle.flush()
        self._file = handle
        _held_locks().append(self)
        if previous:
            return f"took over the lock of {previous}, which is no longer running"
        return None

    def release(self) -> None:
        """Empties the lock file and drops the lock (the file stays: removing it would race)."""
        if self._file is None:
            return
        try:
            self._file.seek(0)
            self._file.truncate()
            self._file.flush()
        except OSError:
            pass  # a full disk must not keep the lock: closing releases it
        finally:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


_scopes = threading.local()


def _held_locks() -> list:
    stack = getattr(_scopes, "stack", None)
    return stack[-1] if stack else []


def releases_run_locks(function):
    """Decorates ``train``: the run locks taken during a call are released however it ends.

    Also turns a full disk, wherever it is hit (an event file, a checkpoint, the manifest),
    into one ``OSError`` (ENOSPC) naming the run directory and what to do, instead of a
    TensorFlow traceback.
    """

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        stack = _scopes.__dict__.setdefault("stack", [])
        stack.append([])
        try:
            return function(*args, **kwargs)
        except Exception as error:
            if not _is_disk_full(error):
                raise
            where = ", ".join(lock.run_dir for lock in stack[-1]) or "the run directory"
            first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise OSError(
                errno.ENOSPC,
                f"no space left on the device holding {where} ({type(error).__name__}: "
                f"{first[:300]}). Checkpoints already written are complete (a save is atomic); "
                "free some space and continue with resume=True",
            ) from None
        finally:
            for lock in stack.pop():
                lock.release()

    return wrapper


def _is_disk_full(error: BaseException | None) -> bool:
    seen = 0
    while error is not None and seen < 5:
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return True
        if "No space left on device" in str(error):
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False
