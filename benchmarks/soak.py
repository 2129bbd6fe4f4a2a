"""Soak: many small steps with logging every step; memory, step time and event files stay flat.

Trains a tiny LSTM for ``--steps`` steps (100,000 by default) with lstmcore.train, every
per-step value logged, while a sampler thread records the process's resident memory and the
size of the run's event files once a second. Reports step time, memory and event-file growth
in the first and the last 10% of the run, and their ratios (flat: about 1).

    python -m benchmarks.soak                 # 100,000 steps (several minutes; not in CI)
    python -m benchmarks.soak --steps 2000    # a short run
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import tempfile
import threading
import time

import numpy as np


def resident_megabytes() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def event_bytes(logdir: str) -> int:
    return sum(os.path.getsize(p) for p in glob.glob(os.path.join(logdir, "*", "*tfevents*")))


def run(steps: int) -> dict:
    import keras

    import lstmcore

    from .overhead import environment

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5, 2)), keras.layers.LSTM(4), keras.layers.Dense(1)])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 5, 2)).astype(np.float32)
    samples, stop = [], threading.Event()
    with tempfile.TemporaryDirectory() as logdir:
        started = time.perf_counter()

        def sample():
            while not stop.wait(1.0):
                samples.append(
                    (time.perf_counter() - started, resident_megabytes(), event_bytes(logdir))
                )

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        history = lstmcore.train(
            model,
            (x, x[:, -1, :1]),
            steps=steps,
            batch_size=8,
            logdir=logdir,
            log_every=1,
            checkpoint_every=max(steps // 10, 1),
            flush_every=min(100, max(steps // 100, 1)),
            progress=False,
        )
        stop.set()
        sampler.join()
        final_events = event_bytes(logdir)
    step_at, seconds_at = history.flush_times.T
    tenth = steps // 10

    def seconds_per_step(lo, hi):
        a, b = np.searchsorted(step_at, lo), np.searchsorted(step_at, hi)
        return (seconds_at[b] - seconds_at[a]) / (step_at[b] - step_at[a])

    first_ms = seconds_per_step(tenth // 2, tenth) * 1e3
    last_ms = seconds_per_step(steps - tenth, steps - 1) * 1e3
    times, memory, sizes = (
        (np.array(column) for column in zip(*samples)) if samples else ([], [], [])
    )
    duration = times[-1] if len(times) else 0
    early = (times >= 0.05 * duration) & (times <= 0.15 * duration)
    late = times >= 0.9 * duration
    half = len(sizes) // 2
    rate = lambda a, b: (sizes[b] - sizes[a]) / max(times[b] - times[a], 1e-9)
    return {
        **environment(),
        "steps": steps,
        "seconds": round(float(duration), 1),
        "step_ms_first_10pct": round(first_ms, 3),
        "step_ms_last_10pct": round(last_ms, 3),
        "step_time_ratio_last_to_first": round(last_ms / first_ms, 3),
        "rss_mb_first_10pct": round(float(memory[early].mean()), 1) if early.any() else None,
        "rss_mb_last_10pct": round(float(memory[late].mean()), 1) if late.any() else None,
        "event_bytes_per_second_first_half": round(float(rate(0, half)), 1) if half > 1 else None,
        "event_bytes_per_second_second_half": round(float(rate(half, len(sizes) - 1)), 1)
        if half > 1
        else None,
        "event_bytes_total": final_events,
        "event_bytes_per_step": round(final_events / steps, 1),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--json", default=None, help="append the result as a JSON line here")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    result = run(args.steps)
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "a", encoding="utf-8") as f:
            f.write(json.dumps(result) + "\n")
    return result


if __name__ == "__main__":
    main()
