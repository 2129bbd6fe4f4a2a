"""Benchmark problems as data: throughput shapes (DeepBench and CPU-sized) and vanishing-gradient presets.

Throughput problems are ``(batch, time, input, hidden)`` rows, as DeepBench's
``rnn_bench`` tables are (baidu-research/DeepBench, ``code/kernels/rnn_problems.h``: the LSTM
training shapes). Vanishing-gradient presets say which sequence lengths, seeds and step
budgets a run uses, so that a preset name is enough to reproduce a run.
"""

from __future__ import annotations

# DeepBench LSTM training problems: (hidden = input, batches, time steps).
_DEEPBENCH_LSTM_TRAIN = (
    (512, (16, 32, 64, 128), 25),
    (1024, (16, 32, 64, 128), 25),
    (2048, (16, 32, 64, 128), 25),
    (4096, (16, 32, 64, 128), 25),
    (1536, (8, 16, 32), 50),
    (256, (16, 32, 64), 150),
)


def _problem(batch: int, time: int, input_size: int, hidden: int, origin: str) -> dict:
    return {"batch": batch, "time": time, "input": input_size, "hidden": hidden, "origin": origin}


DEEPBENCH = [
    _problem(batch, time, hidden, hidden, "deepbench")
    for hidden, batches, time in _DEEPBENCH_LSTM_TRAIN
    for batch in batches
]

# Shapes a 2-core CPU finishes in seconds: the lstmcore CPU and overhead issues' shapes.
SMALL = [
    _problem(64, 100, 32, 256, "small"),
    _problem(32, 25, 512, 512, "small"),
    _problem(32, 50, 8, 64, "small"),
]

SMOKE = [_problem(4, 5, 3, 8, "smoke")]

THROUGHPUT_PRESETS = {
    "smoke": SMOKE,
    # The CPU run: the small shapes plus DeepBench's smallest (H=512, B=16 and H=256, B=16).
    "cpu": SMALL + [DEEPBENCH[0], DEEPBENCH[19]],
    "deepbench": DEEPBENCH,
    "gpu": DEEPBENCH + SMALL,
}

# Vanishing gradients. profile_lengths: T at which input-gradient profiles are taken at
# initialisation; task_lengths: T tried, in increasing order, for each long-memory task
# (a model stops at the first T it does not solve); train_steps: the fixed step budget.
VANISHING_PRESETS = {
    "smoke": {
        "profile_lengths": [8, 12],
        "task_lengths": [6],
        "tasks": ["adding", "copy"],
        "settings": ["clip+warmup"],
        "task_models": ["gru", "lstm_chrono"],
        "seeds": [0],
        "units": 8,
        "batch": 8,
        "train_steps": 6,
        "learning_rate": 1e-2,
        "eval_samples": 64,
        "train_samples": 64,
    },
    "cpu": {
        "profile_lengths": [50, 100, 200, 500, 1000],
        "task_lengths": [25, 50, 100, 200],
        "tasks": ["adding", "copy"],
        "seeds": [0, 1, 2],
        "units": 64,
        "batch": 32,
        "train_steps": 1200,
        "learning_rate": 3e-3,
        "eval_samples": 1024,
        "train_samples": 8192,
    },
    "gpu": {
        "profile_lengths": [50, 100, 200, 500, 1000],
        "task_lengths": [50, 100, 200, 500, 1000],
        "tasks": ["adding", "copy"],
        "seeds": [0, 1, 2, 3, 4],
        "units": 128,
        "batch": 64,
        "train_steps": 5000,
        "learning_rate": 1e-3,
        "eval_samples": 2048,
        "train_samples": 32768,
    },
}


def flops_per_training_step(problem: dict) -> int:
    """Floating-point operations of one LSTM training step, as DeepBench counts them.

    Forward: ``2 * 4H(I + H)`` per sequence element for the two matrix products of the four
    gates; backward costs twice the forward. Element-wise work, the head and the optimizer
    are not counted.

    Args:
      problem: a dict with ``batch``, ``time``, ``input``, ``hidden``.

    Returns:
      ``3 * 2 * 4H(I + H) * B * T``.
    """
    b, t, i, h = problem["batch"], problem["time"], problem["input"], problem["hidden"]
    return 3 * 2 * 4 * h * (i + h) * b * t


def label(problem: dict) -> str:
    """``B=64 T=100 I=32 H=256``."""
    return f"B={problem['batch']} T={problem['time']} I={problem['input']} H={problem['hidden']}"
