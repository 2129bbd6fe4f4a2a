"""Times a CPU training step (LSTM + Dense(1), MSE, Adam): Keras, lstmcore kernels, PyTorch.

Usage:
  CUDA_VISIBLE_DEVICES=-1 python -m benchmarks.cpu_kernel            # the problems below
  python -m benchmarks.cpu_kernel --smoke                             # tiny, a few steps

Each variant is warmed up (tracing and compiling excluded), then the TensorFlow variants take
turns step by step so that drifting machine load hits all of them alike; the median step time
is reported with ratios to PyTorch and to Keras measured in the same run. PyTorch runs in a
child process, one problem at a time between the TensorFlow ones: in one process the two
libraries' idle worker threads spin against each other and PyTorch slows down several times
(run 1 in ``benchmarks/results/cpu_kernel_cpu2core.md``). Measured figures, with the machine
and the command, are in ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from lstmcore.layers import LSTM

# (batch, time, features, units): the shapes the CPU issue names.
PROBLEMS = [
    {"batch": 64, "time": 100, "features": 32, "units": 256},
    {"batch": 32, "time": 25, "features": 512, "units": 512},
    {"batch": 32, "time": 50, "features": 8, "units": 64},
]
SMOKE_PROBLEMS = [{"batch": 4, "time": 5, "features": 3, "units": 8}]


def make_keras_step(layer, problem):
    """A compiled (tf.function) training step for `layer` + Dense(1), MSE, Adam."""
    model = keras.Sequential(
        [keras.Input((problem["time"], problem["features"])), layer, keras.layers.Dense(1)]
    )
    optimizer = keras.optimizers.Adam(1e-3)

    @tf.function
    def step(inputs, targets):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(inputs, training=True) - targets))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    return lambda inputs, targets: float(step(inputs, targets))


def make_torch_step(problem, inputs, targets):
    """The same step in PyTorch (nn.LSTM + nn.Linear), or None when torch is missing."""
    import torch

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(problem["features"], problem["units"], batch_first=True)
    head = torch.nn.Linear(problem["units"], 1)
    optimizer = torch.optim.Adam(list(lstm.parameters()) + list(head.parameters()), lr=1e-3)
    x, y = torch.from_numpy(inputs), torch.from_numpy(targets)

    def step(_inputs, _targets):
        optimizer.zero_grad()
        outputs, _ = lstm(x)
        loss = torch.mean((head(outputs[:, -1]) - y) ** 2)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def make_data(problem):
    rng = np.random.default_rng(0)
    shape = (problem["batch"], problem["time"], problem["features"])
    inputs = rng.normal(size=shape).astype(np.float32)
    targets = rng.normal(size=(problem["batch"], 1)).astype(np.float32)
    return inputs, targets


def median_ms(steps, inputs, targets, *, warmup_steps: int, timed_steps: int) -> dict:
    """Warms every step function up, then times them in turns; median ms per name."""
    for step in steps.values():
        for _ in range(warmup_steps):
            step(inputs, targets)
    times = {name: [] for name in steps}
    for _ in range(timed_steps):
        for name, step in steps.items():
            start = time.perf_counter()
            step(inputs, targets)
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * float(np.median(values)) for name, values in times.items()}


def time_torch_in_child(problem, *, warmup_steps: int, timed_steps: int) -> float:
    """PyTorch's median step time in ms, measured in a fresh process (see module docstring)."""
    command = [
        sys.executable,
        "-c",
        # The package is "benchmarks" from a checkout, "lstmcore.benchmarks" when installed.
        f"import sys; from {__package__}.cpu_kernel import torch_child; torch_child(sys.argv[1])",
        json.dumps({"problem": problem, "warmup": warmup_steps, "timed": timed_steps}),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def torch_child(spec_json: str) -> None:
    """Entry point of the PyTorch child process: prints the median ms."""
    spec = json.loads(spec_json)
    inputs, targets = make_data(spec["problem"])
    step = make_torch_step(spec["problem"], inputs, targets)
    ms = median_ms(
        {"pytorch": step}, None, None, warmup_steps=spec["warmup"], timed_steps=spec["timed"]
    )
    print(ms["pytorch"])


def time_problem(problem, *, warmup_steps: int, timed_steps: int, with_torch: bool):
    """Median step time in ms of every variant on one problem."""
    inputs, targets = make_data(problem)
    units = problem["units"]
    steps = {
        "keras": make_keras_step(keras.layers.LSTM(units), problem),
        "lstmcore-cpu": make_keras_step(LSTM(units, kernel="cpu"), problem),
        "lstmcore-xla": make_keras_step(LSTM(units, kernel="xla"), problem),
    }
    ms = median_ms(
        steps,
        tf.constant(inputs),
        tf.constant(targets),
        warmup_steps=warmup_steps,
        timed_steps=timed_steps,
    )
    if with_torch:
        ms["pytorch"] = time_torch_in_child(
            problem, warmup_steps=warmup_steps, timed_steps=timed_steps
        )
    return ms


def main(argv=None) -> list[dict]:
    """Runs the benchmark and prints one line per variant and problem.

    Args:
      argv: command-line arguments (`--smoke`, `--warmup-steps`, `--timed-steps`,
        `--no-torch`); None reads `sys.argv`.

    Returns:
      One dict per (problem, variant): `name`, the problem's sizes, `ms`, `vs_torch`,
      `vs_keras` (ratios of step times; < 1 is faster).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny problem, a few steps")
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--timed-steps", type=int, default=30)
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args(argv)
    problems = SMOKE_PROBLEMS if args.smoke else PROBLEMS
    warmup_steps, timed_steps = (1, 2) if args.smoke else (args.warmup_steps, args.timed_steps)
    with_torch = not args.no_torch and importlib.util.find_spec("torch") is not None
    versions = f"tensorflow {tf.__version__}, keras {keras.__version__}"
    if with_torch:
        import torch

        versions += f", torch {torch.__version__} ({torch.get_num_threads()} threads)"
    print(f"# {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; {versions}")
    print(f"# warm-up {warmup_steps} steps, median of {timed_steps} timed steps per variant")
    print(
        f"{'B':>4} {'T':>4} {'F':>4} {'H':>4}  {'variant':<14}"
        f"{'ms/step':>9}{'vs torch':>10}{'vs keras':>10}"
    )
    rows = []
    for problem in problems:
        ms = time_problem(
            problem, warmup_steps=warmup_steps, timed_steps=timed_steps, with_torch=with_torch
        )
        for name, value in ms.items():
            row = dict(problem, name=name, ms=value, vs_keras=value / ms["keras"])
            row["vs_torch"] = value / ms["pytorch"] if "pytorch" in ms else float("nan")
            rows.append(row)
            print(
                f"{problem['batch']:>4} {problem['time']:>4} {problem['features']:>4} "
                f"{problem['units']:>4}  {name:<14}{value:>9.1f}{row['vs_torch']:>10.2f}"
                f"{row['vs_keras']:>10.2f}"
            )
    return rows


if __name__ == "__main__":
    main()
