"""Cost of ``lstmcore.keras.Diagnose``: ``model.fit`` with the callback over the same fit without.

Both sides build the same model (LSTM + Dense(1), MSE, Adam, the same seed), compile it and
call ``fit`` on the same in-memory windows for the same epochs in the same process; the clock
runs from the call to ``fit`` to its return, so both include Keras's tracing of its train
function, and the callback side includes everything the callback does: ``check_data`` before
the first batch, about 20 probes (with their TensorBoard writes into a temporary directory)
and ``diagnose`` after the last batch. One untimed run of each side comes first (imports,
first-use caches); then the sides alternate (without, with, without, with, ...) and the median
and range of the paired ratios are reported, with the callback's own account of where its
time went (``Diagnose.seconds``), so the cost of a longer fit can be worked out: the fixed
part (check and diagnosis) plus the probes, each a fixed cost per call.

    python -m benchmarks.fit_callback                 # the problems below, 3 pairs each
    python -m benchmarks.fit_callback --smoke         # a tiny problem, for tests

Prints one line per problem.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

# name: (windows, batch, time steps, input features, hidden units, epochs, raw)
# raw: values as 3000 + 300 x (standard normal), as a series in megawatts fed unscaled: the
# model collapses, and diagnose tries the suspected causes' fixes on copies (its budget).
PROBLEMS = {
    "demo": (2048, 64, 48, 2, 32, 5, False),  # lstmcore demo's shape: 160 steps, ~20 probes
    "demo_long": (2048, 64, 48, 2, 32, 40, False),  # 1280 steps: fixed costs amortised
    "wide": (2048, 64, 100, 16, 128, 3, False),  # a longer window, a wider layer: 96 steps
    "demo_raw": (2048, 64, 48, 2, 32, 5, True),  # the demo's collapse: fixes tried on copies
    "smoke": (64, 16, 6, 2, 4, 2, False),
}
PRESETS = {
    "all": ["demo", "demo_long", "wide", "demo_raw"],
    "long": ["demo_long"],
    "raw": ["demo_raw"],
    "smoke": ["smoke"],
}


def _model(time_steps, features, units):
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((time_steps, features)), keras.layers.LSTM(units), keras.layers.Dense(1)]
    )
    model.compile(optimizer="adam", loss="mse")
    return model


def _data(windows, time_steps, features, raw):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(windows, time_steps, features))
    y = x[:, -1, :1] + 0.1 * rng.normal(size=(windows, 1))
    if raw:
        x, y = 3000 + 300 * x, 3000 + 300 * y
    return x.astype(np.float32), y.astype(np.float32)


def _fit_seconds(problem, data, with_callback: bool, logdir: str):
    from lstmcore.keras import Diagnose

    _, batch, time_steps, features, units, epochs, _ = problem
    model = _model(time_steps, features, units)
    callbacks = [Diagnose(data, log_dir=logdir, verbose=False)] if with_callback else []
    start = time.perf_counter()
    model.fit(*data, epochs=epochs, batch_size=batch, shuffle=False, verbose=0, callbacks=callbacks)
    seconds = time.perf_counter() - start
    return seconds, (callbacks[0] if callbacks else None)


def measure(problem, *, repeats: int, logdir: str) -> dict:
    """Fits without and with the callback, alternating; returns times and paired ratios."""
    windows, batch, time_steps, features, units, epochs, raw = problem
    data = _data(windows, time_steps, features, raw)
    _fit_seconds(problem, data, False, logdir)
    _fit_seconds(problem, data, True, logdir)
    without, with_, parts = [], [], []
    for _ in range(repeats):
        without.append(_fit_seconds(problem, data, False, logdir)[0])
        seconds, callback = _fit_seconds(problem, data, True, logdir)
        with_.append(seconds)
        computed = callback.probes["seconds"]
        parts.append(
            {
                **callback.seconds,
                "probe_calls": len(computed),
                "first_probe": computed[0],
                "later_probe": statistics.median(computed[1:]),
            }
        )
    # Each pair ran back to back; the median of their ratios cancels most of a shared
    # machine's drift.
    ratios = sorted(w / o for w, o in zip(with_, without))
    part = {key: float(statistics.median(p[key] for p in parts)) for key in parts[0]}
    steps = epochs * -(-windows // batch)
    return {
        "windows": windows,
        "batch": batch,
        "time_steps": time_steps,
        "input_features": features,
        "hidden_units": units,
        "epochs": epochs,
        "raw_inputs": raw,
        "steps": steps,
        "fit_seconds": round(statistics.median(without), 3),
        "fit_seconds_range": [round(min(without), 3), round(max(without), 3)],
        "fit_with_callback_seconds": round(statistics.median(with_), 3),
        "fit_with_callback_seconds_range": [round(min(with_), 3), round(max(with_), 3)],
        "ratio": round(statistics.median(ratios), 3),
        "ratio_min": round(ratios[0], 3),
        "ratio_max": round(ratios[-1], 3),
        "check_data_seconds": round(part["check_data"], 3),
        "diagnose_seconds": round(part["diagnose"], 3),
        "probes_seconds": round(part["probes"], 3),
        "probe_calls": int(part["probe_calls"]),
        "ms_per_probe": round(1e3 * part["probes"] / max(part["probe_calls"], 1), 1),
        # The probes' computation alone (their first call traces it); the rest of
        # probes_seconds is the gradient norms and the TensorBoard writes.
        "first_probe_compute_ms": round(1e3 * part["first_probe"], 1),
        "later_probe_compute_ms": round(1e3 * part["later_probe"], 1),
        "repeats": repeats,
        "findings": [f.code for f in callback.findings],
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one tiny problem, one pair")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="all")
    parser.add_argument("--repeats", type=int, default=None, help="timed pairs (default 3)")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--json", default=None, help="write the results as JSON lines here")
    args = parser.parse_args(argv)
    from . import common

    common.select_device(args.device)
    names = PRESETS["smoke" if args.smoke else args.preset]
    repeats = args.repeats or (1 if args.smoke else 3)
    env = common.environment("python -m benchmarks.fit_callback " + " ".join(argv or sys.argv[1:]))
    results = []
    with tempfile.TemporaryDirectory() as logdir:
        for name in names:
            result = {"problem": name, **measure(PROBLEMS[name], repeats=repeats, logdir=logdir)}
            result.update(env)
            results.append(result)
            print(
                f"{name}: N={result['windows']} B={result['batch']} T={result['time_steps']} "
                f"F={result['input_features']} H={result['hidden_units']}, {result['steps']} "
                f"steps ({env['device']}, median of {repeats} pairs): fit "
                f"{result['fit_seconds']:.2f} s, with Diagnose {result['fit_with_callback_seconds']:.2f} s, "
                f"ratio {result['ratio']:.2f} ({result['ratio_min']:.2f} to {result['ratio_max']:.2f}); "
                f"callback: check_data {result['check_data_seconds']:.2f} s, "
                f"{result['probe_calls']} probes {result['probes_seconds']:.2f} s "
                f"({result['ms_per_probe']:.0f} ms each; computing: first "
                f"{result['first_probe_compute_ms']:.0f} ms, later "
                f"{result['later_probe_compute_ms']:.0f} ms), "
                f"diagnose {result['diagnose_seconds']:.2f} s",
                flush=True,
            )
    if args.json:
        common.write_jsonl(args.json, results)
    return results


if __name__ == "__main__":
    main()
