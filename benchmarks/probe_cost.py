"""Cost of the diagnosis probes that lstmcore.train runs every k steps, against a training step.

One run of lstmcore.train at each shape with probes every ``--every`` steps; each probe call's
seconds come from ``History.probes["seconds"]`` (the first call, which traces, is left out)
and the step time from ``History.flush_times`` between the first and the last fetch. Reports
the cost of one probe call in training steps and the share of run time it adds at the default
schedule (about 20 calls per run) for a run of ``--run-steps`` steps.

    python -m benchmarks.probe_cost
    python -m benchmarks.probe_cost --smoke
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

import numpy as np

SHAPES = {"cpu": [(64, 100, 32, 256), (32, 50, 8, 64)], "smoke": [(8, 5, 3, 4)]}


def measure(shape, every: int, steps: int, run_steps: int) -> dict:
    import keras

    import lstmcore

    batch, time_steps, features, units = shape
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((time_steps, features)), keras.layers.LSTM(units), keras.layers.Dense(1)]
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch * 8, time_steps, features)).astype(np.float32)
    history = lstmcore.train(
        model,
        (x, x[:, -1, :1]),
        steps=steps,
        batch_size=batch,
        probe_every=every,
        flush_every=every,
        logdir=None,
        progress=False,
        check=False,
    )
    probe_seconds = statistics.median(history.probes["seconds"][1:])
    at, seconds = history.flush_times.T
    step_seconds = (seconds[-1] - seconds[0]) / (at[-1] - at[0]) - probe_seconds / every
    calls = run_steps // max(run_steps // 20, 1) + 1
    return {
        "batch": batch,
        "time_steps": time_steps,
        "input_features": features,
        "hidden_units": units,
        "probe_ms": round(probe_seconds * 1e3, 2),
        "step_ms": round(step_seconds * 1e3, 2),
        "probe_in_steps": round(probe_seconds / step_seconds, 2),
        "default_schedule_share": round(calls * probe_seconds / (run_steps * step_seconds), 4),
        "run_steps": run_steps,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--run-steps", type=int, default=2000)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from .overhead import environment

    env, results = environment(), []
    for shape in SHAPES["smoke" if args.smoke else "cpu"]:
        steps = 4 * args.every if not args.smoke else 3 * args.every
        result = {**measure(shape, args.every, steps, args.run_steps), **env}
        results.append(result)
        print(
            f"B={shape[0]} T={shape[1]} I={shape[2]} H={shape[3]}: one probe call {result['probe_ms']:.1f} ms "
            f"= {result['probe_in_steps']:.2f} training steps ({result['step_ms']:.1f} ms); at the default "
            f"schedule over {args.run_steps} steps: {100 * result['default_schedule_share']:.2f}% of the run",
            flush=True,
        )
    if args.json:
        with open(args.json, "a", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in results)
    return results


if __name__ == "__main__":
    main()
