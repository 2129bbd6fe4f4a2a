"""Run directories and checkpoints: one directory per run, never overwritten, resumable.

A run directory holds the TensorBoard events, ``lstmcore_run.json`` (the manifest: the run's
configuration and its hash) and ``checkpoints/`` (``tf.train.CheckpointManager``, whose
pointer file is replaced atomically). A run can only be resumed with the configuration it was
started with; a different one is refused with the fields that differ.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import signal
import warnings

import tensorflow as tf

MANIFEST = "lstmcore_run.json"


def config_hash(config: dict) -> str:
    """Returns a short, stable hash of a JSON-serialisable configuration."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_logdir(logdir: str) -> None:
    """Raises ``ValueError`` when ``logdir`` cannot hold run directories."""
    if os.path.exists(logdir) and not os.path.isdir(logdir):
        raise ValueError(f"logdir {logdir!r} is a file; it must be a directory (or not exist yet)")
    parent = logdir
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    parent = parent or "."
    if not os.path.isdir(parent):
        raise ValueError(
            f"logdir {logdir!r} lies inside {parent!r}, which is a file, not a directory"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"logdir {logdir!r} is not writable (no write permission on {parent!r})")


def read_manifest(run_dir: str) -> dict | None:
    path = os.path.join(run_dir, MANIFEST)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


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
      ValueError: for a named run that exists when not resuming, or a run whose configuration
        differs.
    """
    if run_name is not None:
        if not run_name or os.sep in run_name or run_name in (".", ".."):
            raise ValueError(f"run_name must be a plain directory name; got {run_name!r}")
        run_dir = os.path.join(logdir, run_name)
        if os.path.exists(run_dir):
            if not resume:
                raise ValueError(
                    f"run directory {run_dir!r} already exists; pass resume=True to continue "
                    "that run, or choose another run_name (runs are never overwritten)"
                )
            _check_same_config(run_dir, config)
            return run_dir, True
        return run_dir, False
    if resume and os.path.isdir(logdir):
        candidates = [
            os.path.join(logdir, name)
            for name in os.listdir(logdir)
            if os.path.exists(os.path.join(logdir, name, MANIFEST))
        ]
        if candidates:
            newest = max(candidates, key=lambda d: os.path.getmtime(os.path.join(d, MANIFEST)))
            _check_same_config(newest, config)
            return newest, True
    stamp = datetime.datetime.now().strftime("run-%Y%m%d-%H%M%S")
    run_dir, suffix = os.path.join(logdir, stamp), 1
    while os.path.exists(run_dir):
        suffix += 1
        run_dir = os.path.join(logdir, f"{stamp}-{suffix}")
    return run_dir, False


def _check_same_config(run_dir: str, config: dict) -> None:
    manifest = read_manifest(run_dir)
    if manifest is None:
        raise ValueError(
            f"{run_dir!r} exists but is not an lstmcore run (no {MANIFEST}); "
            "choose another run_name"
        )
    if manifest.get("config_hash") != config_hash(config):
        fields = differing_fields(manifest.get("config", {}), config)
        raise ValueError(
            f"cannot resume {run_dir!r}: it was started with a different configuration ("
            + "; ".join(fields)
            + "). Start a new run instead"
        )


class Checkpoints:
    """Saves and restores everything a continuation needs, through ``tf.train.CheckpointManager``.

    Args:
      directory: where checkpoints go.
      max_to_keep: how many to keep.
      **objects: the trackable objects (model, optimizer, data iterator, ...).
    """

    def __init__(self, directory: str, max_to_keep: int = 3, **objects):
        self.directory = directory
        self.checkpoint = tf.train.Checkpoint(**objects)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep)

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

    def check_pointer(self) -> None:
        """Raises if checkpoint files exist but the pointer file names none of them."""
        if self.latest is None and os.path.isdir(self.directory):
            found = sorted(n for n in os.listdir(self.directory) if n.endswith(".index"))
            if found:
                raise ValueError(
                    f"{self.directory!r} holds checkpoints ({', '.join(found)}) but its "
                    "'checkpoint' pointer file is missing or unreadable; refusing to start from "
                    "scratch. Restore the pointer file or move the checkpoints away"
                )

    @property
    def latest(self) -> str | None:
        return self.manager.latest_checkpoint

    def save(self, step: int) -> str:
        return self.manager.save(checkpoint_number=int(step))

    def restore_latest(self) -> str | None:
        """Restores the newest checkpoint, asserting that every object matched.

        Falls back to an older checkpoint, with a warning naming the file, when the newest
        cannot be read; raises when none can.
        """
        paths = list(reversed(self.manager.checkpoints))
        errors = []
        for path in paths:
            try:
                status = self.checkpoint.restore(path)
                status.assert_existing_objects_matched()
                if errors:
                    warnings.warn(
                        f"lstmcore: could not read checkpoint {errors[0][0]} ({errors[0][1]}); "
                        f"restored {path} instead",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                return path
            except Exception as error:  # noqa: BLE001 - a damaged file raises OpError, IndexError, ...
                errors.append((path, str(error).splitlines()[0] if str(error) else repr(error)))
        if errors:
            raise ValueError(
                "no checkpoint could be restored: " + "; ".join(f"{p}: {e}" for p, e in errors)
            )
        return None


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
