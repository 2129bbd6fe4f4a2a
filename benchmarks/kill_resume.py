"""Kill and resume: SIGKILL a training subprocess at random moments, resume, compare bit for bit.

One try: a child process trains a small LSTM (dropout, shuffling, warmup, cosine decay,
clipping; a checkpoint every 5 steps, every step logged) and is killed with SIGKILL at a
random moment after its first checkpoint; each kill delay after the first kills the resumed
child too (during its start-up, its restore, its rewrite of the event files or its steps).
After every kill the latest checkpoint must load and hold only finite values. A last resume
runs to the end; then the final weights must equal those of a run never interrupted, the loss
trace of the last resume must equal the uninterrupted trace from its first step on (CPU, op
determinism), and TensorBoard must hold every step's loss exactly once.

    python -m benchmarks.kill_resume --tries 30                # the benchmark (tens of minutes)
    python -m benchmarks.kill_resume --tries 2 --max-kills 2   # a quick look

The same :func:`one_try` is the property tested with Hypothesis in tests/test_kill_resume.py
(a few tries there).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np

STEPS = 300
CHECKPOINT_EVERY = 5

CHILD = textwrap.dedent(
    """
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    import numpy as np, tensorflow as tf
    tf.config.experimental.enable_op_determinism()
    import keras, lstmcore
    logdir, run_name, out, resume, steps, every = sys.argv[1:7]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6, 2)), keras.layers.LSTM(8, dropout=0.2, name="lstm"),
                              keras.layers.Dense(1, name="head")])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6, 2)).astype(np.float32)
    y = x[:, -2:, 0].sum(axis=1, keepdims=True)
    history = lstmcore.train(model, (x, y), steps=int(steps), batch_size=8, shuffle=True, seed=1,
                             learning_rate=1e-2, warmup_steps=20, decay="cosine", clip_norm=0.5,
                             logdir=logdir, run_name=run_name, resume=resume == "1",
                             checkpoint_every=int(every), flush_every=1, progress=False,
                             check=False)
    np.savez(out, *model.get_weights(), step=history["step"], loss=history["loss"])
    """
)


class Runner:
    """Starts children in one folder; keeps the uninterrupted reference.

    Args:
      folder: a scratch folder (each try uses its own run name inside it).
      steps: optimizer steps of a run.
    """

    def __init__(self, folder: str, steps: int = STEPS):
        self.folder = folder
        self.steps = steps
        self.script = os.path.join(folder, "child.py")
        with open(self.script, "w", encoding="utf-8") as f:
            f.write(CHILD)
        self._reference = None
        self.train_seconds = None

    def start(self, run_name: str, out: str, resume: bool) -> subprocess.Popen:
        return subprocess.Popen(
            [
                sys.executable,
                self.script,
                os.path.join(self.folder, "logs"),
                run_name,
                os.path.join(self.folder, out),
                "1" if resume else "0",
                str(self.steps),
                str(CHECKPOINT_EVERY),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def finish(self, child: subprocess.Popen) -> None:
        _, err = child.communicate(timeout=900)
        if child.returncode != 0:
            raise AssertionError(f"child failed ({child.returncode}): {err[-3000:]}")

    def reference(self) -> dict:
        """The uninterrupted run's weights and losses; sets ``train_seconds``."""
        if self._reference is None:
            child = self.start("reference", "reference.npz", resume=False)
            _wait_for_checkpoint(self.checkpoints("reference"))
            began = time.perf_counter()
            # From the first checkpoint to the last: the span in which kills are drawn.
            _wait_for_checkpoint(self.checkpoints("reference"), f"ckpt-{self.steps}.index")
            self.train_seconds = time.perf_counter() - began
            self.finish(child)
            self._reference = dict(np.load(os.path.join(self.folder, "reference.npz")))
        return self._reference

    def checkpoints(self, run_name: str) -> str:
        return os.path.join(self.folder, "logs", run_name, "checkpoints")


def _wait_for_checkpoint(directory: str, name: str = "ckpt-*.index", timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if glob.glob(os.path.join(directory, name)):
            return
        time.sleep(0.01)
    raise AssertionError(f"no checkpoint appeared in {directory}")


def _latest_checkpoint_is_loadable(directory: str) -> str:
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(directory)
    assert latest is not None, f"no checkpoint in {directory} after a kill"
    reader = tf.train.load_checkpoint(latest)
    for name, dtype in reader.get_variable_to_dtype_map().items():
        if dtype.is_floating:
            assert np.isfinite(reader.get_tensor(name)).all(), f"{latest}: {name} not finite"
    return latest


def _wait_for_lock(run_dir: str, pid: int, child, timeout: float = 300) -> None:
    """Waits until ``pid`` holds the run's lock (it has checked everything and is restoring)."""
    path = os.path.join(run_dir, "lstmcore.lock")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and child.poll() is None:
        try:
            with open(path, encoding="utf-8") as f:
                if f.read().startswith(f"pid {pid} "):
                    return
        except FileNotFoundError:
            pass
        time.sleep(0.01)


def loss_steps(run_dir: str) -> list[int]:
    """The steps of every ``train/loss`` event in the run's event files, sorted."""
    import tensorflow as tf

    steps = []
    for path in glob.glob(os.path.join(glob.escape(run_dir), "*tfevents*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            steps += [event.step for v in event.summary.value if v.tag == "train/loss"]
    return sorted(steps)


def one_try(runner: Runner, run_name: str, kill_fractions: list[float]) -> dict:
    """Kills a run at the given moments, resumes it to the end and checks it.

    Args:
      runner: the :class:`Runner`.
      run_name: a run name not used before in ``runner``'s folder.
      kill_fractions: each in [0, 1]. The first kill comes ``fraction * train_seconds`` after
        the first checkpoint; each later one that long after the resumed child took the run's
        lock (after its checks, before its restore), so kills land in restores, in the rewrite
        of the event files, in steps and in checkpoint saves.

    Returns:
      What happened: the delays (None where the child had already finished), the latest
      checkpoint after each kill, the first step of the last resume, and the checks, all
      true (an ``AssertionError`` is raised otherwise).
    """
    reference = runner.reference()
    seconds = runner.train_seconds
    record = {"run": run_name, "kill_seconds": [], "latest_after_kill": []}
    run_dir = os.path.join(runner.folder, "logs", run_name)
    child = runner.start(run_name, f"{run_name}-0.npz", resume=False)
    _wait_for_checkpoint(runner.checkpoints(run_name))
    out = f"{run_name}-0.npz"
    for index, fraction in enumerate(kill_fractions):
        if index:
            _wait_for_lock(run_dir, child.pid, child)
        delay = fraction * seconds
        time.sleep(delay)
        finished = child.poll() is not None
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=120)
        record["kill_seconds"].append(None if finished else round(delay, 2))
        latest = _latest_checkpoint_is_loadable(runner.checkpoints(run_name))
        record["latest_after_kill"].append(os.path.basename(latest))
        out = f"{run_name}-{index + 1}.npz"
        child = runner.start(run_name, out, resume=True)
    runner.finish(child)
    saved = dict(np.load(os.path.join(runner.folder, out)))
    weights = sorted(k for k in saved if k.startswith("arr_"))
    for key in weights:
        np.testing.assert_array_equal(saved[key], reference[key], err_msg=f"weight {key}")
    first = int(saved["step"][0]) if len(saved["step"]) else runner.steps
    np.testing.assert_array_equal(saved["loss"], reference["loss"][first:])
    steps = loss_steps(os.path.join(runner.folder, "logs", run_name))
    assert steps == list(range(runner.steps)), (
        f"TensorBoard steps: {len(steps)} events, "
        f"{len(steps) - len(set(steps))} repeated, {runner.steps - len(set(steps))} missing"
    )
    _latest_checkpoint_is_loadable(runner.checkpoints(run_name))
    record.update(last_resume_first_step=first, identical=True, each_step_once=True)
    return record


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=30)
    parser.add_argument("--max-kills", type=int, default=3, help="kills per try (1 to this)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folder", default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--json", default=None, help="append one JSON line per try here")
    args = parser.parse_args(argv)
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tempfile

    from .common import environment

    draw = random.Random(args.seed)
    folder = args.folder or tempfile.mkdtemp(prefix="lstmcore-kill-resume-")
    os.makedirs(folder, exist_ok=True)
    runner = Runner(folder)
    runner.reference()
    results, passed = [], 0
    command = "python -m benchmarks.kill_resume " + " ".join(sys.argv[1:] if argv is None else argv)
    env = environment(command)
    for number in range(args.tries):
        kills = [draw.random() for _ in range(draw.randint(1, args.max_kills))]
        began = time.perf_counter()
        try:
            result = one_try(runner, f"try{number}", kills)
            passed += 1
        except AssertionError as error:
            result = {"run": f"try{number}", "kill_fractions": kills, "failed": str(error)[:2000]}
        result.update(seconds=round(time.perf_counter() - began, 1), **env)
        results.append(result)
        print(json.dumps(result), flush=True)
        if args.json:
            with open(args.json, "a", encoding="utf-8") as f:
                f.write(json.dumps(result) + "\n")
    kills = sum(
        sum(delay is not None for delay in r.get("kill_seconds", r.get("kill_fractions", [])))
        for r in results
    )
    print(
        f"kill_resume: {passed} of {args.tries} tries identical ({kills} SIGKILLs; "
        f"kills drawn over {runner.train_seconds:.1f} s of training; {env['device']}, "
        f"TensorFlow {env['tensorflow']})"
    )
    return results


if __name__ == "__main__":
    main()
