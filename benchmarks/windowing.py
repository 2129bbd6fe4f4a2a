"""Benchmark of lstmcore.data.windows: building splits and streaming training windows.

For each problem it measures, on the CPU:

- `windows()`: splitting, fitting the train-only scaler and building the three datasets;
- one training epoch of `data.train` (shuffled), in windows per second;
- windowing alone, without shuffling (tf.data's shuffle buffer fills before the first
  batch, which would dominate a short prefix): `data.train` built with
  `shuffle_train=False` against the baseline, `keras.utils.timeseries_dataset_from_array`
  on the same scaled training rows with the same window length and batch size, over the
  same number of batches, and the ratio of the two rates;
- `arrays("validation")`, the NumPy copy of the validation windows used by diagnostics;
- `read_csv` of the same series written to a temporary CSV file with a numeric time column.

Each timed pass follows a burn-in pass of a few batches (which traces the dataset functions).

Usage:
    python -m benchmarks.windowing            # the 1,000,000-row problem
    python -m benchmarks.windowing --smoke    # a tiny problem, seconds; what the tests run
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np

# Problems as data: rows, features, input_steps, horizon, batch_size, baseline_batches
# (the baseline is per-window Python-level tf.data work, so it is timed on a prefix).
PROBLEMS = {
    "full": [
        {"rows": 1_000_000, "features": 8, "input_steps": 32, "horizon": 1, "batch_size": 256,
         "baseline_batches": 400},
    ],
    "smoke": [
        {"rows": 2_000, "features": 2, "input_steps": 8, "horizon": 2, "batch_size": 32,
         "baseline_batches": 10},
    ],
}  # fmt: skip
BURN_IN_BATCHES = 5


def synthetic_series(rows: int, features: int, *, seed: int = 0) -> np.ndarray:
    """A `[rows, features]` float32 series: sines of different periods plus noise."""
    rng = np.random.default_rng(seed)
    steps = np.arange(rows, dtype=np.float64)[:, None]
    periods = 24.0 * (1 + np.arange(features))
    values = 10 * np.sin(2 * np.pi * steps / periods) + rng.normal(size=(rows, features))
    return values.astype(np.float32)


def time_batches(dataset, max_batches: int | None) -> tuple[int, float]:
    """Iterates `dataset` after a burn-in; returns (windows seen, seconds)."""
    for _ in zip(range(BURN_IN_BATCHES), dataset):
        pass
    windows_seen = 0
    start = time.perf_counter()
    for index, (inputs, _) in enumerate(dataset):
        windows_seen += int(inputs.shape[0])
        if max_batches is not None and index + 1 >= max_batches:
            break
    return windows_seen, time.perf_counter() - start


def run_problem(problem: dict) -> dict:
    """Runs one problem and returns its measurements."""
    import keras

    from lstmcore import data

    series = synthetic_series(problem["rows"], problem["features"])
    input_steps, horizon = problem["input_steps"], problem["horizon"]
    batch_size = problem["batch_size"]

    start = time.perf_counter()
    windowed = data.windows(
        series, input_steps=input_steps, horizon=horizon, batch_size=batch_size, seed=0
    )
    build_s = time.perf_counter() - start

    epoch_windows, epoch_s = time_batches(windowed.train, None)
    unshuffled = data.windows(
        series, input_steps=input_steps, horizon=horizon, batch_size=batch_size,
        shuffle_train=False,
    )  # fmt: skip
    ours_windows, ours_s = time_batches(unshuffled.train, problem["baseline_batches"])

    train_start, train_end = windowed.report["splits"]["train"]["rows"]
    scaled = windowed.scaler.transform(series[train_start:train_end])
    baseline = keras.utils.timeseries_dataset_from_array(
        scaled[: train_end - train_start - horizon],
        scaled[input_steps:, -1],
        sequence_length=input_steps,
        batch_size=batch_size,
        shuffle=False,
    )
    baseline_windows, baseline_s = time_batches(baseline, problem["baseline_batches"])

    start = time.perf_counter()
    validation_x, _ = windowed.arrays("validation")
    arrays_s = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "series.csv")
        header = ",".join(["t"] + [f"x{i}" for i in range(problem["features"])])
        table = np.concatenate([np.arange(len(series))[:, None], series], axis=1)
        np.savetxt(path, table, fmt="%.6g", delimiter=",", header=header, comments="")
        start = time.perf_counter()
        data.read_csv(path, target=-1, time_column="t")
        csv_s = time.perf_counter() - start

    return {
        "build_s": build_s,
        "csv_s": csv_s,
        "epoch_windows": epoch_windows,
        "epoch_s": epoch_s,
        "ours_rate": ours_windows / ours_s,
        "baseline_rate": baseline_windows / baseline_s,
        "prefix_batches": problem["baseline_batches"],
        "arrays_windows": validation_x.shape[0],
        "arrays_s": arrays_s,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="run the tiny problem only")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    print(
        f"device: CPU ({os.cpu_count()} cores), python {platform.python_version()}, "
        f"tensorflow {tf.__version__}, keras {keras.__version__}, numpy {np.__version__}, "
        f"{time.strftime('%Y-%m-%d')}"
    )
    for problem in PROBLEMS["smoke" if args.smoke else "full"]:
        result = run_problem(problem)
        print(
            "rows={rows} features={features} input_steps={input_steps} horizon={horizon} "
            "batch_size={batch_size}".format(**problem)
        )
        print(f"  windows() build: {result['build_s']:.3f} s")
        print(
            f"  train epoch (shuffled): {result['epoch_windows']} windows in "
            f"{result['epoch_s']:.2f} s = {result['epoch_windows'] / result['epoch_s']:,.0f} "
            f"windows/s"
        )
        print(
            f"  first {result['prefix_batches']} batches, unshuffled: lstmcore {result['ours_rate']:,.0f} "
            f"windows/s, keras.utils.timeseries_dataset_from_array "
            f"{result['baseline_rate']:,.0f} windows/s, ratio "
            f"{result['ours_rate'] / result['baseline_rate']:.1f}x"
        )
        print(
            f"  arrays('validation'): {result['arrays_windows']} windows in "
            f"{result['arrays_s']:.3f} s"
        )
        print(f"  read_csv: {problem['rows']} rows in {result['csv_s']:.2f} s")


if __name__ == "__main__":
    main()
