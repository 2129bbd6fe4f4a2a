"""Cost of lstmcore.train's per-step logging: its step time over a bare hand-written Keras step.

Both sides train the same model (LSTM + Dense(1), MSE, Adam) on the same in-memory data in the
same process. Each side runs warm-up steps (tracing included), synchronises, then is timed over
the following steps up to a final synchronisation (for lstmcore: between two of its fetches
of the logged values, read from ``History.flush_times``). The runs alternate (bare, lstmcore,
bare, lstmcore, ...) and the median over repeats is reported. lstmcore runs
with everything it logs every step on (loss, global norms before and after clipping, clip flag
and fraction, learning rate, per-layer and per-gate gradient norms, written to TensorBoard in
batches) and global-norm clipping; checkpoints and validation are off, as they are not per step.

    python -m benchmarks.overhead            # the two shapes of the issue
    python -m benchmarks.overhead --smoke    # a tiny shape, for tests
    python -m benchmarks.overhead --against /tmp/old   # this lstmcore against another checkout

Prints one line per shape with the ratio (goal: at most 1.03).

``--against ROOT`` compares two versions of lstmcore side by side instead: each repeat runs
``lstmcore.train`` (all logging on, as above) once with this checkout's lstmcore and once with
the one in ``ROOT`` (e.g. ``git worktree add /tmp/old <commit>``), each in a fresh Python
process that imports lstmcore from its root (checked), alternating, and reports the median
of the paired per-step time ratios (this / other) with their range.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

PROBLEMS = {
    # name: (batch, time steps, input features, hidden units)
    "issue": [(64, 100, 32, 256), (128, 100, 512, 512)],
    "smoke": [(8, 5, 3, 4)],
    "first": [(64, 100, 32, 256)],
    # A small step, where the host loop's own cost weighs most, and the first shape.
    "loop": [(32, 50, 8, 64), (64, 100, 32, 256)],
    "small": [(32, 50, 8, 64)],
}


def _model(time_steps, features, units):
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((time_steps, features)), keras.layers.LSTM(units), keras.layers.Dense(1)]
    )


def _data(batch, time_steps, features, batches=8):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch * batches, time_steps, features)).astype(np.float32)
    return x, x[:, -1, :1].copy()


def _bare_step_seconds(shape, warmup: int, timed: int) -> float:
    import keras
    import tensorflow as tf

    batch, time_steps, features, units = shape
    model = _model(time_steps, features, units)
    optimizer = keras.optimizers.Adam(1e-3)
    x, y = _data(batch, time_steps, features)
    iterator = iter(tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).repeat().prefetch(2))
    loss_fn = keras.losses.MeanSquaredError()

    @tf.function
    def step(iterator):
        inputs, targets = next(iterator)
        with tf.GradientTape() as tape:
            loss = loss_fn(targets, model(inputs, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    for _ in range(warmup):
        loss = step(iterator)
    float(loss)  # synchronise before the clock starts
    start = time.perf_counter()
    for _ in range(timed):
        loss = step(iterator)
    float(loss)
    return (time.perf_counter() - start) / timed


def _lstmcore_step_seconds(
    shape, warmup: int, timed: int, logdir: str, skip_nonfinite=True
) -> float:
    import keras

    import lstmcore

    batch, time_steps, features, units = shape
    model = _model(time_steps, features, units)
    history = lstmcore.train(
        model,
        _data(batch, time_steps, features),
        steps=warmup + timed,
        batch_size=batch,
        shuffle=False,
        # Keras's own Adam, as the bare step uses: the ratio is the cost of what lstmcore adds
        # per step, not of its faster fused optimizer (``optimizer="adam"``).
        optimizer=keras.optimizers.Adam(1e-3),
        clip="global_norm",
        clip_norm=1.0,
        logdir=logdir,
        log_every=1,
        flush_every=warmup,
        checkpoint_every=10**9,
        validate_every=10**9,
        progress=False,
        probe_every=None,  # probes run every k steps, not per step: measured on their own
        check=False,
        skip_nonfinite=skip_nonfinite,
    )
    # Between the fetch after the warm-up steps and the last fetch: every step's work, its
    # logging and the TensorBoard writes, without the first call's tracing.
    steps, seconds = history.flush_times.T
    first = int(np.searchsorted(steps, warmup))
    return (seconds[-1] - seconds[first]) / (steps[-1] - steps[first])


def measure(shape, *, warmup: int, timed: int, repeats: int, logdir: str) -> dict:
    """Returns per-step milliseconds of the three sides and their paired ratios for one shape.

    Sides: the bare Keras step; lstmcore.train as it runs by default (with the non-finite
    guard, a conditional update); lstmcore.train with ``skip_nonfinite=False`` (the logging
    alone).
    """
    bare, guarded, unguarded = [], [], []
    for _ in range(repeats):
        bare.append(_bare_step_seconds(shape, warmup, timed))
        guarded.append(_lstmcore_step_seconds(shape, warmup, timed, logdir))
        unguarded.append(_lstmcore_step_seconds(shape, warmup, timed, logdir, skip_nonfinite=False))

    def paired(side):
        # Each repeat's runs are adjacent in time; the median of their ratios cancels most of
        # the drift of a shared machine.
        ratios = sorted(o / b for o, b in zip(side, bare))
        return round(statistics.median(ratios), 4), round(ratios[0], 4), round(ratios[-1], 4)

    ratio, ratio_min, ratio_max = paired(guarded)
    logging_ratio, logging_min, logging_max = paired(unguarded)
    return {
        "batch": shape[0],
        "time_steps": shape[1],
        "input_features": shape[2],
        "hidden_units": shape[3],
        "bare_keras_step_ms": round(statistics.median(bare) * 1e3, 3),
        "lstmcore_step_ms": round(statistics.median(guarded) * 1e3, 3),
        "lstmcore_unguarded_step_ms": round(statistics.median(unguarded) * 1e3, 3),
        "ratio": ratio,
        "ratio_min": ratio_min,
        "ratio_max": ratio_max,
        "logging_only_ratio": logging_ratio,
        "logging_only_ratio_min": logging_min,
        "logging_only_ratio_max": logging_max,
        "repeats": repeats,
        "steps_timed": timed,
    }


_WORKER = """
import importlib.util, json, os, sys, tempfile
root, bench, shape, warmup, timed = sys.argv[1:6]
sys.path.insert(0, root)
import lstmcore
assert os.path.dirname(os.path.dirname(os.path.abspath(lstmcore.__file__))) == os.path.abspath(root)
spec = importlib.util.spec_from_file_location("overhead_bench", bench)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
with tempfile.TemporaryDirectory() as logdir:
    seconds = module._lstmcore_step_seconds(
        tuple(json.loads(shape)), int(warmup), int(timed), logdir
    )
print(json.dumps(seconds))
"""


def _step_seconds_in(root: str, shape, warmup: int, timed: int) -> float:
    """Per-step seconds of lstmcore.train (all logging) with the lstmcore found in ``root``."""
    result = subprocess.run(
        [sys.executable, "-c", _WORKER, root, __file__, json.dumps(shape), str(warmup), str(timed)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": root, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    return float(json.loads(result.stdout.strip().splitlines()[-1]))


def compare(shape, other_root: str, *, warmup: int, timed: int, repeats: int) -> dict:
    """This checkout's lstmcore against ``other_root``'s, alternating, paired per repeat."""
    this_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    this, other = [], []
    for _ in range(repeats):
        other.append(_step_seconds_in(other_root, shape, warmup, timed))
        this.append(_step_seconds_in(this_root, shape, warmup, timed))
    ratios = sorted(t / o for t, o in zip(this, other))
    return {
        "batch": shape[0],
        "time_steps": shape[1],
        "input_features": shape[2],
        "hidden_units": shape[3],
        "this_step_ms": [round(t * 1e3, 3) for t in this],
        "other_step_ms": [round(o * 1e3, 3) for o in other],
        "ratio_this_over_other": round(statistics.median(ratios), 4),
        "ratio_min": round(ratios[0], 4),
        "ratio_max": round(ratios[-1], 4),
        "repeats": repeats,
        "steps_timed": timed,
        "this_root": this_root,
        "other_root": os.path.abspath(other_root),
    }


def environment() -> dict:
    import keras
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": (
            tf.config.experimental.get_device_details(
                tf.config.list_physical_devices("GPU")[0]
            ).get("device_name", "GPU")
            if gpus
            else f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"
        ),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one tiny shape, few steps")
    parser.add_argument("--preset", choices=sorted(PROBLEMS), default="issue")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--json", default=None, help="append the results as JSON lines here")
    parser.add_argument(
        "--against", default=None, help="another lstmcore checkout's root to compare with"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    problems = PROBLEMS["smoke" if args.smoke else args.preset]
    warmup, timed = (2, 4) if args.smoke else (10, 40)
    repeats = args.repeats or (1 if args.smoke else 3)
    env = environment()
    results = []
    if args.against:
        for shape in problems:
            result = {
                **compare(shape, args.against, warmup=warmup, timed=timed, repeats=repeats),
                **env,
            }
            results.append(result)
            print(
                f"B={shape[0]} T={shape[1]} I={shape[2]} H={shape[3]} ({env['device']}, "
                f"{repeats} paired runs): lstmcore.train per step, this checkout "
                f"{statistics.median(result['this_step_ms']):.2f} ms, {args.against} "
                f"{statistics.median(result['other_step_ms']):.2f} ms; ratio "
                f"{result['ratio_this_over_other']:.3f} ({result['ratio_min']:.3f} to "
                f"{result['ratio_max']:.3f})",
                flush=True,
            )
    with tempfile.TemporaryDirectory() as logdir:
        for shape in [] if args.against else problems:
            result = {
                **measure(shape, warmup=warmup, timed=timed, repeats=repeats, logdir=logdir),
                **env,
            }
            results.append(result)
            print(
                f"B={shape[0]} T={shape[1]} I={shape[2]} H={shape[3]} ({env['device']}, median of "
                f"{repeats} paired runs): bare Keras step {result['bare_keras_step_ms']:.2f} ms; "
                f"lstmcore.train with all logging {result['lstmcore_step_ms']:.2f} ms, ratio "
                f"{result['ratio']:.3f} ({result['ratio_min']:.3f} to {result['ratio_max']:.3f}); "
                f"the same without the non-finite guard {result['lstmcore_unguarded_step_ms']:.2f} ms, "
                f"ratio {result['logging_only_ratio']:.3f} ({result['logging_only_ratio_min']:.3f} "
                f"to {result['logging_only_ratio_max']:.3f})",
                flush=True,
            )
    if args.json:
        with open(args.json, "a", encoding="utf-8") as f:
            for result in results:
                f.write(json.dumps(result) + "\n")
    return results


if __name__ == "__main__":
    main()
