"""Shared benchmark helpers: device selection, environment record, synchronised timing, output writers.

Every benchmark records where and with what it ran (:func:`environment`), times after a
warm-up with the device synchronised (:func:`sync`, :func:`median_block_seconds`), and writes
JSON lines, a Markdown table, PNG plots (when matplotlib is importable) and TensorBoard
events through the writers here.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable

# Peak dense throughput in TFLOP/s by device-name fragment (vendor data sheets, no sparsity).
PEAK_TFLOPS = {
    "H100 SXM": {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4},
    "H100 80GB HBM3": {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4},
    "H200": {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4},
    "H100 PCIe": {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0},
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0},
}


def select_device(device: str) -> None:
    """Makes the process see only the requested kind of device, before TensorFlow is imported.

    Keras picks cuDNN from whether any GPU is visible, not from ``tf.device`` scopes, so CPU
    numbers need the GPU hidden from the whole process (``CUDA_VISIBLE_DEVICES=-1``).

    Args:
      device: ``"cpu"`` or ``"gpu"``.

    Raises:
      ValueError: for another value.
      RuntimeError: for ``"cpu"`` when TensorFlow was already imported with a GPU visible
        (the GPU can no longer be hidden), and for ``"gpu"`` when no GPU is visible.
    """
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device must be 'cpu' or 'gpu'; got {device!r}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if device == "cpu":
        if "tensorflow" not in sys.modules:
            os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
        import tensorflow as tf

        if tf.config.list_logical_devices("GPU"):
            raise RuntimeError(
                "device='cpu' but TensorFlow was imported before the GPU could be hidden; run "
                "the benchmark in a fresh process (CUDA_VISIBLE_DEVICES=-1 python -m benchmarks...)"
            )
        return
    import tensorflow as tf

    # Grow TensorFlow's GPU memory on demand, so that the PyTorch child process fits beside it.
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # already initialised by an earlier import in this process
    if not tf.config.list_logical_devices("GPU"):
        raise RuntimeError(
            "device='gpu' but TensorFlow sees no GPU (tf.config.list_logical_devices('GPU') is "
            f"empty; CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})"
        )


def gpu_visible() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))


def device_name() -> str:
    """The GPU's marketing name when one is visible, else ``CPU (N cores, processor)``."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next(
                line.split(":", 1)[1].strip() for line in f if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    return f"CPU, {os.cpu_count()} cores ({model})"


def peak_tflops(name: str) -> dict | None:
    """The :data:`PEAK_TFLOPS` entry whose key occurs in ``name``, or None (CPUs, unknown GPUs)."""
    for fragment, peaks in PEAK_TFLOPS.items():
        if fragment.lower() in name.lower():
            return peaks
    return None


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment(command: str) -> dict:
    """What a result needs beside it: date, device, library versions and the command run.

    Args:
      command: the command line that produced the result.

    Returns:
      A flat dict of strings (torch's version without importing it: importing torch into a
      TensorFlow process makes the two thread pools fight).
    """
    import keras
    import numpy as np
    import tensorflow as tf

    name = device_name()
    tf32 = bool(tf.config.experimental.tensor_float_32_execution_enabled())
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": name,
        "device_kind": "gpu" if gpu_visible() else "cpu",
        "cpu_count": os.cpu_count(),
        "tf32_enabled": tf32,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "torch": _version("torch"),
        "lstmcore": _version("lstmcore"),
        "command": command,
    }


def environment_lines(env: dict) -> list[str]:
    """The environment as Markdown bullet lines."""
    versions = ", ".join(
        f"{key} {env[key]}"
        for key in ("python", "tensorflow", "keras", "numpy", "torch", "lstmcore")
        if env.get(key)
    )
    return [
        f"- Date: {env['date']}",
        f"- Device: {env['device']}"
        + (
            f" (TF32 matmuls {'on' if env['tf32_enabled'] else 'off'})"
            if env["device_kind"] == "gpu"
            else ""
        ),
        f"- Versions: {versions}",
        f"- Command: `{env['command']}`",
    ]


def sync(value=None) -> None:
    """Waits until the device has finished: fetches ``value`` (a tensor or a structure of them)
    to the host and, with a GPU visible, synchronises every device."""
    import tensorflow as tf

    if value is not None:
        for leaf in tf.nest.flatten(value):
            if hasattr(leaf, "numpy"):
                leaf.numpy()
    if gpu_visible():
        tf.test.experimental.sync_devices()


def median_block_seconds(
    steps: dict[str, Callable[[], object]],
    *,
    warmup_steps: int,
    rounds: int,
    min_block_seconds: float,
    finish: Callable[[object], None] = sync,
    external: dict[str, Callable[[], float]] | None = None,
) -> dict[str, dict]:
    """Times several step functions in turns; returns each one's median seconds per step.

    Each step function is called ``warmup_steps`` times (tracing and compiling included) and
    synchronised. Then, ``rounds`` times, every function in turn runs a block of steps and is
    synchronised at the end of the block (``finish`` on the block's outputs); a block holds as
    many steps as make ``min_block_seconds`` by the last warm-up step's time (at least one).
    Taking turns makes drifting machine load hit every function alike.

    Args:
      steps: name -> zero-argument function running one training step and returning what to
        synchronise on.
      warmup_steps: untimed calls per function (at least 1).
      rounds: timed blocks per function.
      min_block_seconds: the least length of a timed block.
      finish: called with the list of a block's outputs; returns when the device is done.
      external: name -> function that runs one already warmed-up block elsewhere (another
        process) and returns its seconds per step; it takes its turn after ``steps`` in
        every round.

    Returns:
      name -> ``{"seconds": median seconds per step, "steps_per_block": k, "rounds": rounds,
      "block_seconds": [per-step seconds of each block]}``.
    """
    block = {}
    for name, step in steps.items():
        outputs = None
        for _ in range(max(warmup_steps, 1)):
            start = time.perf_counter()
            outputs = step()
            finish([outputs])
            elapsed = time.perf_counter() - start
        block[name] = max(1, int(min_block_seconds / max(elapsed, 1e-9)))
    external = external or {}
    per_step = {name: [] for name in [*steps, *external]}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            outputs = [step() for _ in range(block[name])]
            finish(outputs)
            per_step[name].append((time.perf_counter() - start) / block[name])
        for name, run_block in external.items():
            per_step[name].append(run_block())
    return {
        name: {
            "seconds": statistics.median(values),
            "steps_per_block": block.get(name),
            "rounds": rounds,
            "block_seconds": values,
        }
        for name, values in per_step.items()
    }


def write_jsonl(path: str, rows: Iterable[dict]) -> None:
    """Writes ``rows`` as JSON lines (one object a line), replacing the file."""
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, sort_keys=False) + "\n" for row in rows)


def markdown_table(header: list[str], rows: list[list]) -> list[str]:
    """A GitHub Markdown table; floats as given (format them first), None as an empty cell."""
    cells = [[("" if value is None else str(value)) for value in row] for row in rows]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return lines


def pyplot():
    """matplotlib.pyplot with a file-only backend, or None when matplotlib is not installed."""
    if importlib.util.find_spec("matplotlib") is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


class ScalarWriter:
    """TensorBoard scalars and text for one benchmark run (a thin wrapper over tf.summary)."""

    def __init__(self, logdir: str):
        import tensorflow as tf

        os.makedirs(logdir, exist_ok=True)
        self.logdir = logdir
        self._writer = tf.summary.create_file_writer(logdir)

    def scalar(self, tag: str, value: float, step: int) -> None:
        import tensorflow as tf

        with self._writer.as_default():
            tf.summary.scalar(tag, value, step=step)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        import tensorflow as tf

        with self._writer.as_default():
            tf.summary.text(tag, text, step=step)

    def close(self) -> None:
        self._writer.flush()
        self._writer.close()
