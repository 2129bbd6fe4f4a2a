"""``lstmcore demo``: an LSTM that predicts the same value, why, and the same model cured.

The embedded series is generated (no download): an hourly electricity load in megawatts with
a daily and a weekly cycle, a slow trend and autocorrelated noise, plus the temperature that
drives part of it. Two runs train the same forecaster for the same number of steps:

1. ``raw``: the windows are fed as they are, in the thousands, as users often do. The LSTM's
   gates saturate, its output barely depends on the input and the model predicts (nearly) one
   value.
2. ``normalized``: the same windows scaled with statistics of the training split only.

Both runs land side by side in TensorBoard; the demo ends with a short comparison against
the baselines a forecaster has to beat (the training mean and "tomorrow = today").
"""

from __future__ import annotations

import os

import numpy as np

import lstmcore
from lstmcore import data, models

INPUT_STEPS = 48  # two days of hourly values
UNITS = 32
BATCH_SIZE = 64
DEFAULT_STEPS = (
    400  # per run; 39 s for both runs and their diagnosis (one timed run, 2 idle CPU cores)
)


def load_series(num_hours: int = 4000, seed: int = 7) -> data.Series:
    """Returns the embedded series: ``load_mw`` (the target) and ``temperature_c``.

    Args:
      num_hours: length of the series.
      seed: noise seed.

    Returns:
      A :class:`lstmcore.data.Series` with a time column in hours.
    """
    rng = np.random.default_rng(seed)
    hours = np.arange(num_hours, dtype=np.float64)
    daily = np.sin(2 * np.pi * (hours % 24) / 24 - np.pi / 2)
    weekly = np.sin(2 * np.pi * hours / (24 * 7))
    temperature = (
        12 + 8 * np.sin(2 * np.pi * hours / (24 * 365)) + 4 * daily + rng.normal(0, 1, num_hours)
    )
    noise = np.zeros(num_hours)
    for t in range(1, num_hours):
        noise[t] = 0.8 * noise[t - 1] + rng.normal(0, 25)
    load = 2500 + 0.05 * hours + 400 * daily + 150 * weekly + 15 * np.abs(temperature - 15) + noise
    values = np.stack([temperature, load], axis=1).astype(np.float32)
    return data.Series(
        values,
        ("temperature_c", "load_mw"),
        target_columns=("load_mw",),
        time=hours,
        report={"source": "lstmcore.demo.load_series", "seed": seed},
    )


def _rmse(a, b) -> float:
    return float(np.sqrt(np.mean(np.square(np.asarray(a) - np.asarray(b)))))


def _evaluate(model, windowed, raw_test_targets, raw_last_load) -> dict:
    inputs, _ = windowed.arrays("test")
    predictions = model.predict(inputs, verbose=0, batch_size=256)
    if windowed.scaler is not None:
        predictions = windowed.inverse_transform_targets(predictions)
    predictions = predictions.reshape(raw_test_targets.shape)
    return {
        "rmse_mw": _rmse(predictions, raw_test_targets),
        "persistence_rmse_mw": _rmse(raw_last_load, raw_test_targets),
        "spread_ratio": float(np.std(predictions) / np.std(raw_test_targets)),
    }


def run(
    *, logdir: str = os.path.join("runs", "demo"), steps: int | None = None, progress: bool = True
) -> int:
    """Trains the two demo runs and prints the comparison; returns the exit code (0)."""
    steps = steps or DEFAULT_STEPS
    series = load_series()
    raw = data.windows(series, input_steps=INPUT_STEPS, normalize=None, batch_size=BATCH_SIZE)
    scaled = data.windows(series, input_steps=INPUT_STEPS, normalize="train", batch_size=BATCH_SIZE)
    raw_test_inputs, raw_test_targets = raw.arrays("test")
    raw_train_targets = raw.arrays("train")[1]
    raw_last_load = raw_test_inputs[:, -1, 1:2]
    mean_rmse = _rmse(np.full_like(raw_test_targets, raw_train_targets.mean()), raw_test_targets)

    results = {}
    names = _free_run_names(logdir, ("raw-inputs", "normalised-inputs"))
    for name, windowed in zip(names, (raw, scaled)):
        if progress:
            what = (
                "unscaled inputs in megawatts"
                if windowed is raw
                else "inputs scaled with training-split statistics"
            )
            print(f"\n== run '{name}': {what}")
        model = models.forecaster(INPUT_STEPS, 2, 1, units=UNITS, seed=0)
        history = lstmcore.train(
            model,
            windowed.arrays("train"),
            validation_data=windowed.arrays("validation"),
            steps=steps,
            batch_size=BATCH_SIZE,
            learning_rate=3e-3,
            warmup_steps=steps // 10,
            decay="cosine",
            logdir=logdir,
            run_name=name,
            progress=progress,
            hparams={"demo_run": name},
        )
        results[name] = {
            **_evaluate(model, windowed, raw_test_targets, raw_last_load),
            "run_dir": history.run_dir,
            "findings": history.findings,
        }

    print("\n== lstmcore demo: the same LSTM, the same steps, two ways of feeding it")
    print(f"   test RMSE of predicting the training mean: {mean_rmse:8.1f} MW")
    print(
        f"   test RMSE of 'next hour = this hour':      "
        f"{results[names[0]]['persistence_rmse_mw']:8.1f} MW"
    )
    for name, result in results.items():
        verdict = (
            "collapsed: predicts nearly one value"
            if result["spread_ratio"] < 0.2
            else "learns the series"
        )
        print(
            f"   run {name:<17} test RMSE {result['rmse_mw']:8.1f} MW, prediction spread "
            f"{result['spread_ratio']:.2f} x the targets' -> {verdict}"
        )
    for name, result in results.items():
        findings = result["findings"]
        if not findings:
            print(f"\n   lstmcore's diagnosis of run '{name}': no problem found.")
            continue
        top = findings[0]
        print(
            f"\n   lstmcore's diagnosis of run '{name}' (top of {len(findings)} finding(s)): {top['title']}"
        )
        print(f"     evidence: {top['evidence']}")
        print(f"     fix: {top['fix']}")
    print(f"\nSee both runs side by side: tensorboard --logdir {logdir}")
    print(
        "Training with model.fit? The same checks, probes and diagnosis are one callback:\n"
        "    model.fit(x, y, callbacks=[lstmcore.keras.Diagnose(data=(x, y))])"
    )
    return 0


def _free_run_names(logdir: str, names: tuple[str, ...]) -> list[str]:
    """`names`, with the first suffix `-2`, `-3`, ... that no existing run in `logdir` uses."""
    suffix, number = "", 1
    while any(os.path.exists(os.path.join(logdir, name + suffix)) for name in names):
        number += 1
        suffix = f"-{number}"
    return [name + suffix for name in names]
