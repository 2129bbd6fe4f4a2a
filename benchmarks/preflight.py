"""Cost of lstmcore.train's pre-flight check of array data (NaN/Inf scan) against one epoch.

The scan reads every value once; an epoch runs a training step per batch. Both are measured in
the same process at the CPU shape (B, T, I, H) = (64, 100, 32, 256) with 10,000 windows.
Goal: the scan costs at most 5% of an epoch.

    python -m benchmarks.preflight
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=10_000)
    parser.add_argument(
        "--shape", type=int, nargs=4, default=(64, 100, 32, 256), metavar=("B", "T", "I", "H")
    )
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    import lstmcore
    from lstmcore.inputs import check_array

    from .overhead import environment

    batch, time_steps, features, units = args.shape
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.windows, time_steps, features)).astype(np.float32)
    y = x[:, -1, :1].copy()
    scans = []
    for _ in range(5):
        start = time.perf_counter()
        check_array(x, name="inputs", min_rank=3, max_rank=3)
        check_array(y, name="targets", min_rank=1, max_rank=3)
        scans.append(time.perf_counter() - start)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((time_steps, features)), keras.layers.LSTM(units), keras.layers.Dense(1)]
    )
    history = lstmcore.train(
        model,
        (x[: batch * 40], y[: batch * 40]),
        steps=40,
        batch_size=batch,
        flush_every=10,
        logdir=None,
        progress=False,
        probe_every=None,
        check=False,
    )
    steps, seconds = history.flush_times.T
    step_seconds = (seconds[-1] - seconds[0]) / (steps[-1] - steps[0])
    epoch_seconds = step_seconds * -(-args.windows // batch)
    scan = statistics.median(scans)
    result = {
        **environment(),
        "windows": args.windows,
        "shape_BTIH": list(args.shape),
        "scan_seconds": round(scan, 4),
        "step_ms": round(step_seconds * 1e3, 2),
        "epoch_seconds": round(epoch_seconds, 2),
        "scan_share_of_epoch": round(scan / epoch_seconds, 5),
    }
    print(
        f"pre-flight scan of {args.windows} windows: {scan * 1e3:.1f} ms = "
        f"{100 * scan / epoch_seconds:.2f}% of an epoch ({epoch_seconds:.1f} s at {step_seconds * 1e3:.1f} ms/step)"
    )
    if args.json:
        with open(args.json, "a", encoding="utf-8") as f:
            f.write(json.dumps(result) + "\n")
    return result


if __name__ == "__main__":
    main()
