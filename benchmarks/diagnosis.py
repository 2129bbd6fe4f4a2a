"""Diagnosis scenarios: does `lstmcore.diagnose` name the cause that was planted, and only it?

Each scenario is one training run through `lstmcore.train` (CPU, seed 0) with one cause
planted, or none (a healthy run), on a real public series that statsmodels ships (nothing is
fetched) or a classic synthetic task. After training, `lstmcore.diagnose` is called on the
run as a user would; the benchmark records:

- top-1: whether the first finding's code is the planted cause;
- false alarms: a healthy run with any finding of score >= 0.5;
- the cost: seconds in `diagnose` against the run's training seconds (the goal: under 25%);
- whether `train`'s own list (`history.findings`) has the same codes in the same order, with
  the same confirmed/suspected status, as `diagnose`'s.

Scenarios are data (`SCENARIOS`: name, planted cause, source, builder); `--only` runs some,
`--fast` the subset CI runs (tests/test_diagnosis_scenarios.py).

Usage:
  python -m benchmarks.diagnosis --out benchmarks/results            # all of them
  python -m benchmarks.diagnosis --fast                               # the CI subset
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from benchmarks import common

HEALTHY = None


# --------------------------------------------------------------------------------------------
# Series
# --------------------------------------------------------------------------------------------


def _statsmodels(name: str) -> np.ndarray:
    import importlib

    frame = importlib.import_module(f"statsmodels.datasets.{name}").load_pandas().data
    if name == "sunspots":
        return frame["SUNACTIVITY"].to_numpy(np.float64)
    if name == "co2":
        values = frame["co2"].to_numpy(np.float64)
        index = np.arange(len(values))
        good = np.isfinite(values)
        return np.interp(index, index[good], values[good])
    if name == "elnino":
        return frame.iloc[:, 1:].to_numpy(np.float64).reshape(-1)
    if name == "nile":
        return frame["volume"].to_numpy(np.float64)
    raise ValueError(name)


def sine(rows: int = 1500, *, period: float = 24.0, noise: float = 0.1, seed: int = 0):
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    return np.sin(2 * np.pi * t / period) + noise * rng.normal(size=rows)


def adding_problem(samples: int, length: int, seed: int):
    from benchmarks.vanishing import adding_problem as make

    return make(samples, length, seed)


def _windows(series, *, input_steps, features=None, targets=None, normalize="train"):
    from lstmcore import data

    windowed = data.windows(
        series,
        input_steps=input_steps,
        horizon=1,
        splits=(0.7, 0.3, 0.0) if False else (0.7, 0.15, 0.15),
        features=features,
        targets=targets,
        normalize=normalize,
    )
    return windowed.arrays("train"), windowed.arrays("validation"), windowed.to_dict()


def _cut_then_split(series, input_steps, seed=0):
    # The leak: windows are cut from the whole series first, then split at random.
    values = np.asarray(series, np.float32)
    values = (values - values.mean()) / values.std()
    n = len(values) - input_steps
    x = np.stack([values[i : i + input_steps] for i in range(n)])[..., None]
    y = values[input_steps:][:, None]
    order = np.random.default_rng(seed).permutation(n)
    cut = int(0.8 * n)
    train, val = order[:cut], order[cut:]
    return (x[train], y[train]), (x[val], y[val])


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


def lstm(steps, features, outputs=1, *, units=16, seed=0, **layer):
    import keras

    return keras.Sequential(
        [
            keras.Input((steps, features)),
            keras.layers.LSTM(
                units,
                kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
                recurrent_initializer=keras.initializers.Orthogonal(seed=seed + 1),
                **layer,
            ),
            keras.layers.Dense(
                outputs, kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 2)
            ),
        ]
    )


def seq2seq(steps, *, units=16, bidirectional=False, seed=0):
    import keras

    layer = keras.layers.LSTM(
        units,
        return_sequences=True,
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
        recurrent_initializer=keras.initializers.Orthogonal(seed=seed + 1),
    )
    if bidirectional:
        layer = keras.layers.Bidirectional(layer)
    return keras.Sequential(
        [
            keras.Input((steps, 1)),
            layer,
            keras.layers.Dense(1, kernel_initializer=keras.initializers.GlorotUniform(seed=2)),
        ]
    )


# --------------------------------------------------------------------------------------------
# Scenarios: each returns model, train, validation, data_report and train options
# --------------------------------------------------------------------------------------------


def _run(model, train, validation, report=None, **options):
    return {
        "model": model,
        "train": train,
        "validation": validation,
        "report": report,
        "options": {"steps": 600, "learning_rate": 1e-2, **options},
    }


def healthy_sine():
    train, val, report = _windows(sine(), input_steps=24)
    return _run(lstm(24, 1), train, val, report)


def healthy_sunspots():
    train, val, report = _windows(_statsmodels("sunspots"), input_steps=12)
    return _run(lstm(12, 1), train, val, report, steps=800, learning_rate=5e-3)


def healthy_elnino():
    train, val, report = _windows(_statsmodels("elnino"), input_steps=24)
    return _run(lstm(24, 1), train, val, report)


def healthy_nile_mean():
    # Nile's flow is nearly noise around a level: beating the mean is the honest target.
    train, val, report = _windows(_statsmodels("co2")[::4], input_steps=26)
    return _run(lstm(26, 1), train, val, report, steps=800, learning_rate=5e-3)


def healthy_recall():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 10, 3)).astype(np.float32)
    y = (x[:, 2, 0] + 0.5 * x[:, 7, 1])[:, None].astype(np.float32)
    return _run(lstm(10, 3), (x[:2400], y[:2400]), (x[2400:], y[2400:]), steps=800)


def healthy_adding_short():
    x, y = adding_problem(4000, 10, 0)
    vx, vy = adding_problem(500, 10, 1)
    return _run(lstm(10, 2, units=32), (x, y), (vx, vy), steps=1200, learning_rate=3e-3)


def healthy_seq2seq_causal():
    values = sine(1200).astype(np.float32)
    values = (values - values.mean()) / values.std()
    steps = 24
    starts = np.arange(0, len(values) - steps - 1)
    x = np.stack([values[s : s + steps] for s in starts])[..., None]
    y = np.stack([values[s + 1 : s + steps + 1] for s in starts])[..., None]
    cut = int(0.8 * len(x))
    gap = steps + 1
    return _run(seq2seq(steps), (x[:cut], y[:cut]), (x[cut + gap :], y[cut + gap :]))


def healthy_two_sines():
    t = np.arange(2000)
    rng = np.random.default_rng(1)
    a = np.sin(2 * np.pi * t / 17) + 0.05 * rng.normal(size=len(t))
    b = np.cos(2 * np.pi * t / 40) + 0.05 * rng.normal(size=len(t))
    series = np.stack([a, b, a * b], axis=1)
    train, val, report = _windows(series, input_steps=20, targets=[2])
    return _run(lstm(20, 3), train, val, report)


def raw_inputs_sine():
    series = sine() * 1000 + 5000
    train, val, _report = _windows(series, input_steps=24, normalize=None)
    mu, sd = train[1].mean(), train[1].std()
    train = (train[0], (train[1] - mu) / sd)
    val = (val[0], (val[1] - mu) / sd)
    return _run(lstm(24, 1), train, val, None)


def raw_inputs_sunspots():
    series = _statsmodels("sunspots") * 100
    train, val, _report = _windows(series, input_steps=12, normalize=None)
    mu, sd = train[1].mean(), train[1].std()
    return _run(
        lstm(12, 1),
        (train[0], (train[1] - mu) / sd),
        (val[0], (val[1] - mu) / sd),
        None,
        steps=800,
        learning_rate=5e-3,
    )


def leaked_target_sine():
    values = sine()
    series = np.stack([values, np.roll(values, -1)], axis=1)[:-1]
    train, val, report = _windows(series, input_steps=24, targets=[0])
    return _run(lstm(24, 2), train, val, report)


def leaked_target_sunspots():
    values = _statsmodels("sunspots")
    series = np.stack([values, np.roll(values, -1)], axis=1)[:-1]
    train, val, report = _windows(series, input_steps=12, targets=[0])
    return _run(lstm(12, 2), train, val, report, steps=800, learning_rate=5e-3)


def overlap_sine():
    train, val = _cut_then_split(sine(), 24)
    return _run(lstm(24, 1), train, val)


def overlap_elnino():
    train, val = _cut_then_split(_statsmodels("elnino"), 24)
    return _run(lstm(24, 1), train, val)


def bidirectional_seq2seq():
    scenario = healthy_seq2seq_causal()
    scenario["model"] = seq2seq(24, bidirectional=True)
    return scenario


def rate_too_low():
    train, val, report = _windows(sine(), input_steps=24)
    return _run(lstm(24, 1), train, val, report, learning_rate=1e-7, steps=300)


def rate_too_high_sine():
    train, val, report = _windows(sine(), input_steps=24)
    return _run(lstm(24, 1, units=64), train, val, report, learning_rate=3.0, clip=None)


def rate_too_high_sunspots():
    train, val, report = _windows(_statsmodels("sunspots"), input_steps=12)
    return _run(lstm(12, 1, units=64), train, val, report, learning_rate=3.0, clip=None, steps=800)


def adding_200():
    # The canonical vanishing-gradient case: a stock Keras LSTM(64), Adam 1e-3, no clipping.
    import keras

    x, y = adding_problem(8192, 200, 0)
    vx, vy = adding_problem(512, 200, 1)
    model = keras.Sequential([keras.Input((200, 2)), keras.layers.LSTM(64), keras.layers.Dense(1)])
    return _run(model, (x, y), (vx, vy), steps=4000, learning_rate=1e-3, clip=None)


def _recall_lags(features, lags, units, seed):
    # Targets: the last `lags` values before the final step of every feature; an LSTM needs a
    # unit per value it holds.
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3000, 12, features)).astype(np.float32)
    y = np.concatenate([x[:, -2 - k, :] for k in range(lags)], axis=1)
    return _run(
        lstm(12, features, outputs=y.shape[1], units=units),
        (x[:2400], y[:2400]),
        (x[2400:], y[2400:]),
    )


def tiny_lstm_recall4():
    return _recall_lags(1, 4, units=1, seed=4)


def tiny_lstm_recall8():
    return _recall_lags(2, 4, units=2, seed=5)


def white_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 12, 2)).astype(np.float32)
    y = rng.normal(size=(3000, 1)).astype(np.float32)
    return _run(lstm(12, 2), (x[:2400], y[:2400]), (x[2400:], y[2400:]))


def random_labels():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3000, 12, 3)).astype(np.float32)
    y = rng.integers(0, 2, size=(3000, 1)).astype(np.float32)
    return _run(lstm(12, 3), (x[:2400], y[:2400]), (x[2400:], y[2400:]), loss="mse")


def twenty_windows():
    train, val, report = _windows(sine(400), input_steps=24)
    train = (train[0][:20], train[1][:20])
    return _run(lstm(24, 1), train, val, report, steps=200)


def two_samples():
    x = np.array([[1000, 2000, 3000], [4000, 5000, 6000]], np.float32)[..., None]
    y = np.array([1, 0], np.float32)
    return _run(lstm(3, 1, units=4), (x, y), None, steps=50)


def trend_level():
    t = np.arange(1500)
    rng = np.random.default_rng(2)
    series = 0.004 * t + 0.5 * np.sin(2 * np.pi * t / 30) + 0.05 * rng.normal(size=len(t))
    train, val, report = _windows(series, input_steps=30)
    return _run(lstm(30, 1), train, val, report)


def co2_level():
    train, val, report = _windows(_statsmodels("co2")[::2], input_steps=26)
    return _run(lstm(26, 1), train, val, report, steps=800, learning_rate=5e-3)


def slow_level():
    # A slowly moving series: the last value is an excellent forecast; a level model is not.
    t = np.arange(1500)
    rng = np.random.default_rng(3)
    series = np.sin(2 * np.pi * t / 400) + 0.002 * rng.normal(size=len(t)).cumsum()
    train, val, report = _windows(series, input_steps=20)
    return _run(lstm(20, 1), train, val, report, steps=300, learning_rate=3e-3)


def nile_slow():
    train, val, report = _windows(_statsmodels("nile"), input_steps=5)
    return _run(lstm(5, 1), train, val, report, steps=300)


def raw_targets():
    train, val, _report = _windows(sine(), input_steps=24)
    return _run(
        lstm(24, 1), (train[0], train[1] * 1000 + 20000), (val[0], val[1] * 1000 + 20000), None
    )


# --------------------------------------------------------------------------------------------
# The user's own setup (issue 23): head, cell activation, training length, loss, classes,
# window, reconstruction, per-step targets
# --------------------------------------------------------------------------------------------


def _standardised(series, input_steps, **options):
    train, val, report = _windows(series, input_steps=input_steps, **options)
    return train, val, report


def stacked(steps, features, outputs=1, *, units=32, activation="tanh", cell="LSTM", seed=0):
    import keras

    layer = getattr(keras.layers, cell)
    return keras.Sequential(
        [
            keras.Input((steps, features)),
            layer(
                units,
                activation=activation,
                return_sequences=True,
                kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
                recurrent_initializer=keras.initializers.Orthogonal(seed=seed + 1),
            ),
            layer(
                units,
                activation=activation,
                kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 2),
                recurrent_initializer=keras.initializers.Orthogonal(seed=seed + 3),
            ),
            keras.layers.Dense(
                outputs, kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 4)
            ),
        ]
    )


def relu_cells_elnino():
    train, val, report = _standardised(_statsmodels("elnino"), 24)
    return _run(stacked(24, 1, activation="relu"), train, val, report, steps=600, clip=None)


def relu_cells_sine():
    # relu inside two stacked LSTMs over 64-step windows: the cell state is unbounded and the
    # run ends at the mean's level (held-out MSE 1.0 x the mean's, CPU, seed 0).
    train, val, report = _windows(sine(), input_steps=64)
    return _run(stacked(64, 1, activation="relu"), train, val, report, steps=600, clip=None)


def healthy_stacked_sine():
    train, val, report = _windows(sine(), input_steps=64)
    return _run(stacked(64, 1), train, val, report, steps=600, clip=None)


def healthy_stacked_elnino():
    train, val, report = _standardised(_statsmodels("elnino"), 24)
    return _run(stacked(24, 1), train, val, report, steps=600, learning_rate=3e-3)


def head(steps, features, outputs, activation, *, units=16, seed=0, return_sequences=False):
    import keras

    return keras.Sequential(
        [
            keras.Input((steps, features)),
            keras.layers.LSTM(
                units,
                return_sequences=return_sequences,
                kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
                recurrent_initializer=keras.initializers.Orthogonal(seed=seed + 1),
            ),
            keras.layers.Dense(
                outputs,
                activation=activation,
                kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 2),
            ),
        ]
    )


def relu_head_elnino():
    # Standardised targets (mean 0): a ReLU output clamps every negative target at 0.
    train, val, report = _standardised(_statsmodels("elnino"), 24)
    return _run(head(24, 1, 1, "relu"), train, val, report)


def healthy_sigmoid_head_elnino():
    # The same head family used right: targets scaled to [0, 1] under a sigmoid.
    train, val, _report = _standardised(_statsmodels("elnino"), 24)
    low, high = train[1].min(), train[1].max()

    def scale(pair):
        return pair[0], np.clip((pair[1] - low) / (high - low), 0, 1).astype(np.float32)

    return _run(head(24, 1, 1, "sigmoid"), scale(train), scale(val), None)


def short_run_sine():
    train, val, report = _windows(sine(), input_steps=24)
    return _run(lstm(24, 1), train, val, report, steps=40, learning_rate=1e-3)


def slow_rate_sine():
    # Adam 3e-5 for 600 steps: the weights move (the sum of the rates is 0.018), the loss
    # falls all the way, and ten times the rate does much better over the same steps.
    train, val, report = _windows(sine(), input_steps=24)
    return _run(lstm(24, 1), train, val, report, steps=600, learning_rate=3e-5)


def _classes(samples, steps, features, *, weights, signal, seed):
    # Class c shifts feature c over the window's last third by `signal`.
    rng = np.random.default_rng(seed)
    labels = rng.choice(len(weights), size=samples, p=np.asarray(weights) / np.sum(weights))
    x = rng.normal(size=(samples, steps, features)).astype(np.float32)
    for c in range(len(weights)):
        x[labels == c, -steps // 3 :, c % features] += signal
    return x, labels


def one_column_crossentropy():
    # A classic: categorical cross-entropy on one 0/1 column with Dense(1, softmax); the
    # normalised prediction is always 1, the loss always 0, nothing is learnt.
    x, labels = _classes(3000, 12, 2, weights=[1, 1], signal=1.0, seed=3)
    y = labels[:, None].astype(np.float32)
    return _run(
        head(12, 2, 1, "softmax"),
        (x[:2400], y[:2400]),
        (x[2400:], y[2400:]),
        steps=300,
        loss="categorical_crossentropy",
    )


def healthy_binary_classifier():
    x, labels = _classes(3000, 12, 2, weights=[1, 1], signal=1.0, seed=3)
    y = labels[:, None].astype(np.float32)
    return _run(
        head(12, 2, 1, "sigmoid"),
        (x[:2400], y[:2400]),
        (x[2400:], y[2400:]),
        steps=300,
        loss="binary_crossentropy",
    )


def imbalanced_classes():
    # Three classes at 90/5/5 with a weak signal: the majority class for everything.
    x, labels = _classes(4000, 12, 3, weights=[90, 5, 5], signal=0.6, seed=4)
    y = np.eye(3, dtype=np.float32)[labels]
    return _run(
        head(12, 3, 3, "softmax"),
        (x[:3200], y[:3200]),
        (x[3200:], y[3200:]),
        steps=300,
        learning_rate=3e-3,
        loss="categorical_crossentropy",
    )


def healthy_balanced_classes():
    x, labels = _classes(4000, 12, 3, weights=[1, 1, 1], signal=0.6, seed=4)
    y = np.eye(3, dtype=np.float32)[labels]
    return _run(
        head(12, 3, 3, "softmax"),
        (x[:3200], y[:3200]),
        (x[3200:], y[3200:]),
        steps=300,
        learning_rate=3e-3,
        loss="categorical_crossentropy",
    )


def seasonal_ar(rows=3000, lag=24, phi=0.9, seed=5):
    # s_t = phi * s_{t-lag} + noise: the only dependence is one season back.
    rng = np.random.default_rng(seed)
    s = np.zeros(rows + lag)
    noise = rng.normal(size=rows + lag)
    for t in range(lag, rows + lag):
        s[t] = phi * s[t - lag] + noise[t]
    return s[lag:]


def short_window_seasonal():
    # The value one season (12 steps) back is the whole signal; 4-step windows never see it.
    train, val, report = _windows(seasonal_ar(lag=12), input_steps=4)
    return _run(lstm(4, 1), train, val, report, steps=1000)


def healthy_long_window_seasonal():
    train, val, report = _windows(seasonal_ar(lag=12), input_steps=16)
    return _run(lstm(16, 1), train, val, report, steps=1000)


def autoencoder_sine():
    # The target is the input window, by design: no leak.
    values = sine(1500).astype(np.float32)
    values = (values - values.mean()) / values.std()
    steps = 24
    x = np.stack([values[s : s + steps] for s in range(len(values) - steps)])[..., None]
    cut = int(0.8 * len(x))
    return _run(seq2seq(steps), (x[:cut], x[:cut]), (x[cut + steps :], x[cut + steps :]))


def healthy_seq2seq_channels():
    # Per-step targets with three channels, [N, T, C]: the next value and two transforms.
    values = sine(1200).astype(np.float32)
    values = (values - values.mean()) / values.std()
    steps = 24
    starts = np.arange(len(values) - steps - 2)
    x = np.stack([values[s : s + steps] for s in starts])[..., None]
    nxt = np.stack([values[s + 1 : s + steps + 1] for s in starts])
    after = np.stack([values[s + 2 : s + steps + 2] for s in starts])
    y = np.stack([nxt, after, nxt**2], axis=-1)
    cut = int(0.8 * len(x))
    import keras

    model = keras.Sequential(
        [
            keras.Input((steps, 1)),
            keras.layers.LSTM(
                16,
                return_sequences=True,
                kernel_initializer=keras.initializers.GlorotUniform(seed=0),
                recurrent_initializer=keras.initializers.Orthogonal(seed=1),
            ),
            keras.layers.Dense(3, kernel_initializer=keras.initializers.GlorotUniform(seed=2)),
        ]
    )
    return _run(model, (x[:cut], y[:cut]), (x[cut + steps + 2 :], y[cut + steps + 2 :]))


# (name, planted cause or None, source, builder, fast: in the CI subset)
SCENARIOS = [
    ("healthy_sine", HEALTHY, "synthetic", healthy_sine, False),
    ("healthy_sunspots", HEALTHY, "statsmodels sunspots", healthy_sunspots, False),
    ("healthy_elnino", HEALTHY, "statsmodels elnino", healthy_elnino, False),
    ("healthy_co2_sparse", HEALTHY, "statsmodels co2", healthy_nile_mean, False),
    ("healthy_recall", HEALTHY, "synthetic", healthy_recall, False),
    ("healthy_adding_T10", HEALTHY, "synthetic", healthy_adding_short, False),
    ("healthy_seq2seq_causal", HEALTHY, "synthetic", healthy_seq2seq_causal, True),
    ("healthy_two_sines", HEALTHY, "synthetic", healthy_two_sines, False),
    ("raw_inputs_sine", "unnormalised_inputs", "synthetic", raw_inputs_sine, False),
    (
        "raw_inputs_sunspots",
        "unnormalised_inputs",
        "statsmodels sunspots",
        raw_inputs_sunspots,
        False,
    ),
    ("leaked_target_sine", "target_in_inputs", "synthetic", leaked_target_sine, False),
    (
        "leaked_target_sunspots",
        "target_in_inputs",
        "statsmodels sunspots",
        leaked_target_sunspots,
        False,
    ),
    ("overlap_sine", "window_overlap", "synthetic", overlap_sine, False),
    ("overlap_elnino", "window_overlap", "statsmodels elnino", overlap_elnino, False),
    ("bidirectional_seq2seq", "lookahead_leak", "synthetic", bidirectional_seq2seq, False),
    ("rate_1e-7", "learning_rate_too_low", "synthetic", rate_too_low, False),
    ("rate_3_sine", "learning_rate_too_high", "synthetic", rate_too_high_sine, True),
    (
        "rate_3_sunspots",
        "learning_rate_too_high",
        "statsmodels sunspots",
        rate_too_high_sunspots,
        False,
    ),
    ("adding_T200", "vanishing_gradients", "synthetic", adding_200, False),
    ("lstm1_recall4", "too_little_capacity", "synthetic", tiny_lstm_recall4, False),
    ("lstm2_recall8", "too_little_capacity", "synthetic", tiny_lstm_recall8, False),
    ("white_noise", "no_signal", "synthetic", white_noise, True),
    ("random_labels", "no_signal", "synthetic", random_labels, False),
    ("twenty_windows", "too_little_data", "synthetic", twenty_windows, False),
    ("two_samples", "unnormalised_inputs", "the classic example", two_samples, True),
    ("trend_level", "distribution_shift", "synthetic", trend_level, False),
    ("co2_level", "distribution_shift", "statsmodels co2", co2_level, False),
    ("slow_level", "worse_than_persistence", "synthetic", slow_level, False),
    ("raw_targets", "unnormalised_targets", "synthetic", raw_targets, False),
    # Issue 23: the user's own setup; each planted case has a healthy control.
    ("relu_cells_sine", "unbounded_recurrent_activation", "synthetic", relu_cells_sine, False),
    ("healthy_stacked_sine", HEALTHY, "synthetic", healthy_stacked_sine, False),
    ("healthy_stacked_elnino", HEALTHY, "statsmodels elnino", healthy_stacked_elnino, False),
    (
        "relu_head_elnino",
        "output_cannot_reach_targets",
        "statsmodels elnino",
        relu_head_elnino,
        False,
    ),
    (
        "healthy_sigmoid_head_elnino",
        HEALTHY,
        "statsmodels elnino",
        healthy_sigmoid_head_elnino,
        False,
    ),
    ("short_run_sine", "stopped_too_early", "synthetic", short_run_sine, False),
    ("slow_rate_sine", "learning_rate_too_low", "synthetic", slow_rate_sine, False),
    ("one_column_crossentropy", "loss_mismatch", "synthetic", one_column_crossentropy, False),
    ("healthy_binary_classifier", HEALTHY, "synthetic", healthy_binary_classifier, False),
    ("imbalanced_classes", "class_imbalance", "synthetic", imbalanced_classes, False),
    ("healthy_balanced_classes", HEALTHY, "synthetic", healthy_balanced_classes, False),
    ("short_window_seasonal", "window_too_short", "synthetic", short_window_seasonal, False),
    (
        "healthy_long_window_seasonal",
        HEALTHY,
        "synthetic",
        healthy_long_window_seasonal,
        False,
    ),
    ("autoencoder_sine", HEALTHY, "synthetic", autoencoder_sine, False),
    ("healthy_seq2seq_channels", HEALTHY, "synthetic", healthy_seq2seq_channels, False),
]


# --------------------------------------------------------------------------------------------
# Variants the setup checks were not tuned on: other seeds, sizes, series, GRU cells and
# functional models (`--variants`); reported apart from the scenarios above.
# --------------------------------------------------------------------------------------------


def as_functional(model):
    import keras

    inputs = keras.Input(tuple(model.inputs[0].shape[1:]))
    x = inputs
    for layer in model.layers:
        x = layer(x)
    return keras.Model(inputs, x)


def gru_head(steps, features, outputs, activation, *, units=16, seed=0, return_sequences=False):
    import keras

    return keras.Sequential(
        [
            keras.Input((steps, features)),
            keras.layers.GRU(
                units,
                return_sequences=return_sequences,
                kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
                recurrent_initializer=keras.initializers.Orthogonal(seed=seed + 1),
            ),
            keras.layers.Dense(
                outputs,
                activation=activation,
                kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 2),
            ),
        ]
    )


def v_sigmoid_head_sunspots_gru_functional():
    # Standardised sunspots under a sigmoid: every negative target is out of reach.
    train, val, report = _windows(_statsmodels("sunspots"), input_steps=12)
    model = as_functional(gru_head(12, 1, 1, "sigmoid", seed=7))
    return _run(model, train, val, report, steps=800, learning_rate=5e-3)


def v_healthy_gru_functional_sunspots():
    train, val, report = _windows(_statsmodels("sunspots"), input_steps=12)
    model = as_functional(gru_head(12, 1, 1, None, seed=7))
    return _run(model, train, val, report, steps=800, learning_rate=5e-3)


def v_bce_on_three_classes_gru():
    x, labels = _classes(3000, 10, 3, weights=[1, 1, 1], signal=0.8, seed=8)
    y = np.eye(3, dtype=np.float32)[labels]
    return _run(
        gru_head(10, 3, 3, "softmax", seed=8),
        (x[:2400], y[:2400]),
        (x[2400:], y[2400:]),
        steps=300,
        loss="binary_crossentropy",
    )


def v_mse_on_one_hot():
    x, labels = _classes(3000, 10, 4, weights=[1, 1, 1, 1], signal=0.8, seed=12)
    y = np.eye(4, dtype=np.float32)[labels]
    return _run(head(10, 4, 4, None, seed=12), (x[:2400], y[:2400]), (x[2400:], y[2400:]))


def v_imbalanced_binary_gru():
    x, labels = _classes(5000, 16, 2, weights=[95, 5], signal=0.5, seed=9)
    y = labels[:, None].astype(np.float32)
    return _run(
        gru_head(16, 2, 1, "sigmoid", seed=9),
        (x[:4000], y[:4000]),
        (x[4000:], y[4000:]),
        steps=300,
        learning_rate=3e-3,
        loss="binary_crossentropy",
    )


def v_healthy_balanced_binary_gru():
    x, labels = _classes(5000, 16, 2, weights=[1, 1], signal=0.5, seed=9)
    y = labels[:, None].astype(np.float32)
    return _run(
        gru_head(16, 2, 1, "sigmoid", seed=9),
        (x[:4000], y[:4000]),
        (x[4000:], y[4000:]),
        steps=300,
        learning_rate=3e-3,
        loss="binary_crossentropy",
    )


def v_short_run_elnino_functional():
    train, val, report = _windows(_statsmodels("elnino"), input_steps=24)
    model = as_functional(lstm(24, 1, units=32, seed=3))
    return _run(model, train, val, report, steps=30, learning_rate=1e-3)


def v_short_window_seasonal_gru():
    train, val, report = _windows(seasonal_ar(lag=7, phi=0.85, seed=11), input_steps=3)
    return _run(gru_head(3, 1, 1, None, seed=11), train, val, report, steps=1000)


def v_healthy_window_seasonal_gru():
    train, val, report = _windows(seasonal_ar(lag=7, phi=0.85, seed=11), input_steps=10)
    return _run(gru_head(10, 1, 1, None, seed=11), train, val, report, steps=1000)


def v_encoder_decoder_autoencoder_elnino():
    import keras

    values = _statsmodels("elnino").astype(np.float32)
    values = (values - values.mean()) / values.std()
    steps = 12
    x = np.stack([values[s : s + steps] for s in range(len(values) - steps)])[..., None]
    cut = int(0.8 * len(x))
    inputs = keras.Input((steps, 1))
    code = keras.layers.LSTM(16)(inputs)
    repeated = keras.layers.RepeatVector(steps)(code)
    decoded = keras.layers.LSTM(16, return_sequences=True)(repeated)
    model = keras.Model(inputs, keras.layers.Dense(1)(decoded))
    return _run(model, (x[:cut], x[:cut]), (x[cut + steps :], x[cut + steps :]))


VARIANTS = [
    (
        "v_sigmoid_head_sunspots_gru_functional",
        "output_cannot_reach_targets",
        "statsmodels sunspots",
        v_sigmoid_head_sunspots_gru_functional,
        False,
    ),
    (
        "v_healthy_gru_functional_sunspots",
        HEALTHY,
        "statsmodels sunspots",
        v_healthy_gru_functional_sunspots,
        False,
    ),
    ("v_bce_on_three_classes_gru", "loss_mismatch", "synthetic", v_bce_on_three_classes_gru, False),
    ("v_mse_on_one_hot", "loss_mismatch", "synthetic", v_mse_on_one_hot, False),
    ("v_imbalanced_binary_gru", "class_imbalance", "synthetic", v_imbalanced_binary_gru, False),
    (
        "v_healthy_balanced_binary_gru",
        HEALTHY,
        "synthetic",
        v_healthy_balanced_binary_gru,
        False,
    ),
    (
        "v_short_run_elnino_functional",
        "stopped_too_early",
        "statsmodels elnino",
        v_short_run_elnino_functional,
        False,
    ),
    (
        "v_short_window_seasonal_gru",
        "window_too_short",
        "synthetic",
        v_short_window_seasonal_gru,
        False,
    ),
    (
        "v_healthy_window_seasonal_gru",
        HEALTHY,
        "synthetic",
        v_healthy_window_seasonal_gru,
        False,
    ),
    (
        "v_encoder_decoder_autoencoder_elnino",
        HEALTHY,
        "statsmodels elnino",
        v_encoder_decoder_autoencoder_elnino,
        False,
    ),
]


def run_scenario(name: str, planted, builder, *, budget=None, verbose=False) -> dict:
    """Trains one scenario, diagnoses it, and returns one result row."""
    import keras

    import lstmcore

    keras.utils.set_random_seed(0)
    scenario = builder()
    model = scenario["model"]
    options = dict(scenario["options"])
    started = time.perf_counter()
    history = lstmcore.train(
        model,
        scenario["train"],
        validation_data=scenario["validation"],
        logdir=None,
        progress=verbose,
        data_report=scenario["report"],
        **options,
    )
    train_seconds = float(history.flush_times[-1, 1]) if len(history.flush_times) else float("nan")
    total_train_call = time.perf_counter() - started
    started = time.perf_counter()
    findings = lstmcore.diagnose(
        history,
        model=model,
        data=scenario["train"],
        validation_data=scenario["validation"],
        loss=options.get("loss", "mse"),
        data_report=scenario["report"],
        budget=budget,
    )
    diagnose_seconds = time.perf_counter() - started
    if verbose:
        print(lstmcore.format_findings(findings))
    top = findings[0].code if findings else None
    alarms = [f.code for f in findings if f.score >= 0.5]
    train_list = [(f["code"], f.get("confirmed")) for f in history.findings]
    diagnose_list = [(f.code, f.confirmed) for f in findings]
    return {
        "scenario": name,
        "planted": planted,
        "top1": top,
        "correct": (not alarms) if planted is None else top == planted,
        "false_alarm": bool(alarms) if planted is None else None,
        "findings": [
            {"code": f.code, "score": round(f.score, 3), "confirmed": f.confirmed} for f in findings
        ],
        "evidence_top1": findings[0].evidence if findings else "",
        "train_steps": len(history["loss"]),
        "train_seconds": round(train_seconds, 2),
        "train_call_seconds": round(total_train_call, 2),
        "diagnose_seconds": round(diagnose_seconds, 2),
        "cost_ratio": round(diagnose_seconds / train_seconds, 3) if train_seconds > 0 else None,
        "same_list_as_train": train_list == diagnose_list,
        "train_list": train_list,
    }


def time_diagnosis(name: str, repeats: int) -> dict:
    """Trains scenario `name` once, then times `diagnose` and `check_data` `repeats` times each.

    `diagnose` is called as a user calls it after `train` (the history carries the
    before-training findings); `check_data` is what `train` runs before its first step.
    """
    import keras

    import lstmcore
    from lstmcore import diagnosis

    builder = {s[0]: s[3] for s in SCENARIOS + VARIANTS}[name]
    keras.utils.set_random_seed(0)
    scenario = builder()
    model, options = scenario["model"], dict(scenario["options"])
    history = lstmcore.train(
        model,
        scenario["train"],
        validation_data=scenario["validation"],
        progress=False,
        data_report=scenario["report"],
        **options,
    )
    loss = options.get("loss", "mse")
    diagnose_seconds, check_seconds, codes = [], [], None
    for _ in range(repeats):
        started = time.perf_counter()
        findings = lstmcore.diagnose(
            history,
            model=model,
            data=scenario["train"],
            validation_data=scenario["validation"],
            loss=loss,
            data_report=scenario["report"],
        )
        diagnose_seconds.append(time.perf_counter() - started)
        started = time.perf_counter()
        diagnosis.check_data(
            *scenario["train"],
            validation_inputs=scenario["validation"][0],
            model=model,
            loss=loss,
            overfit_check=False,
        )
        check_seconds.append(time.perf_counter() - started)
        codes = [f.code for f in findings]
    return {
        "scenario": name,
        "lstmcore": os.path.dirname(lstmcore.__file__),
        "diagnose_seconds": [round(v, 4) for v in diagnose_seconds],
        "check_data_seconds": [round(v, 4) for v in check_seconds],
        "findings": codes,
    }


def cost_against(name: str, repeats: int, tree: str | None, out: str | None) -> int:
    """`time_diagnosis` with this checkout's lstmcore and, when given, the one in `tree`.

    Each runs in its own process (the same command), the older first; `tree` holds an
    exported `lstmcore/` (with `kernels/` inside it), e.g. from `git archive <commit>`.
    """
    import subprocess

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rows = []
    for label, cwd in (("before", tree), ("now", here)):
        if cwd is None:
            continue
        command = [sys.executable, "-m", "benchmarks.diagnosis", "--time-one", name]
        command += ["--repeats", str(repeats)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([cwd, here])}
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        row["label"] = label
        rows.append(row)
        print(json.dumps(row), flush=True)
    if out:
        common.write_jsonl(os.path.join(out, "diagnosis_cost_cpu2core.jsonl"), rows)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="scenario names")
    parser.add_argument("--skip", nargs="*", default=[], help="scenario names to leave out")
    parser.add_argument("--fast", action="store_true", help="the CI subset")
    parser.add_argument("--out", default=None, help="folder for diagnosis_cpu2core.{jsonl,md}")
    parser.add_argument("--budget", type=float, default=None)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--note", default="")
    parser.add_argument("--cost", help="time diagnose on this (healthy) scenario")
    parser.add_argument("--against-tree", help="an exported older lstmcore to time as well")
    parser.add_argument("--time-one", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--variants", action="store_true", help="the untuned variants instead of the scenarios"
    )
    args = parser.parse_args(argv)
    common.select_device("cpu")
    if args.time_one:
        print(json.dumps(time_diagnosis(args.time_one, args.repeats)))
        return 0
    if args.cost:
        return cost_against(args.cost, args.repeats, args.against_tree, args.out)
    env = common.environment("python -m benchmarks.diagnosis " + " ".join(argv or sys.argv[1:]))
    chosen = [
        s
        for s in (VARIANTS if args.variants else SCENARIOS)
        if (not args.only or s[0] in args.only)
        and (not args.fast or s[4])
        and s[0] not in args.skip
    ]
    if args.only:
        chosen.sort(key=lambda s: args.only.index(s[0]))
    stem = "diagnosis_variants_cpu2core" if args.variants else "diagnosis_cpu2core"
    rows = []
    wall = time.perf_counter()
    for name, planted, source, builder, _ in chosen:
        budget = (
            None if args.budget is None else (int(args.budget) if args.budget >= 1 else args.budget)
        )
        row = run_scenario(name, planted, builder, budget=budget, verbose=args.verbose)
        row["source"] = source
        rows.append(row)
        print(
            json.dumps(
                {
                    k: row[k]
                    for k in (
                        "scenario",
                        "planted",
                        "top1",
                        "correct",
                        "train_seconds",
                        "diagnose_seconds",
                        "same_list_as_train",
                    )
                }
            ),
            flush=True,
        )
        if args.out:
            common.write_jsonl(os.path.join(args.out, f"{stem}.jsonl"), rows)
    env["wall_seconds"] = round(time.perf_counter() - wall, 1)
    summary = summarise(rows)
    print(json.dumps(summary))
    if args.out:
        write_markdown(os.path.join(args.out, f"{stem}.md"), rows, summary, env, args.note)
    return 0


def summarise(rows: list[dict]) -> dict:
    planted = [r for r in rows if r["planted"] is not None]
    healthy = [r for r in rows if r["planted"] is None]
    ratios = [r["cost_ratio"] for r in rows if r["cost_ratio"] is not None]
    return {
        "scenarios": len(rows),
        "top1_correct": sum(r["correct"] for r in rows),
        "top1_accuracy": round(sum(r["correct"] for r in rows) / max(len(rows), 1), 3),
        "planted_correct": f"{sum(r['correct'] for r in planted)}/{len(planted)}",
        "healthy_false_alarms": f"{sum(bool(r['false_alarm']) for r in healthy)}/{len(healthy)}",
        "cost_ratio_median": round(float(np.median(ratios)), 3) if ratios else None,
        "cost_ratio_max": round(float(np.max(ratios)), 3) if ratios else None,
        "cost_total": round(
            sum(r["diagnose_seconds"] for r in rows)
            / max(sum(r["train_seconds"] for r in rows), 1e-9),
            3,
        ),
        "same_list_as_train": f"{sum(r['same_list_as_train'] for r in rows)}/{len(rows)}",
    }


def write_markdown(path, rows, summary, env, note) -> None:
    lines = ["# Diagnosis scenarios (CPU, 2 cores)", ""]
    lines += common.environment_lines(env)
    if note:
        lines.append(f"- {note}")
    lines += [
        f"- Wall time of the whole run: {env.get('wall_seconds')} s.",
        "",
        "## Summary",
        "",
        (
            f"- Top-1 correct: {summary['top1_correct']} of {summary['scenarios']} "
            f"({summary['top1_accuracy']:.0%}); planted causes {summary['planted_correct']}; "
            f"false alarms on healthy runs {summary['healthy_false_alarms']}."
        ),
        (
            f"- Diagnosis cost / training time: median {summary['cost_ratio_median']}, max "
            f"{summary['cost_ratio_max']}, all scenarios together {summary['cost_total']}."
        ),
        (
            f"- train's after-training list equal to diagnose's (codes, order, confirmed): "
            f"{summary['same_list_as_train']}."
        ),
        "",
        "## Every scenario",
        "",
    ]
    lines += common.markdown_table(
        [
            "scenario",
            "source",
            "planted",
            "top-1",
            "ok",
            "findings",
            "train s",
            "diagnose s",
            "ratio",
            "same as train",
        ],
        [
            [
                r["scenario"],
                r["source"],
                r["planted"] or "(healthy)",
                r["top1"] or "(none)",
                "yes" if r["correct"] else "NO",
                ", ".join(f["code"] + ("*" if f["confirmed"] else "") for f in r["findings"])
                or "-",
                r["train_seconds"],
                r["diagnose_seconds"],
                r["cost_ratio"],
                "yes" if r["same_list_as_train"] else "no",
            ]
            for r in rows
        ],
    )
    lines += ["", "`*`: confirmed by trying its fix on a copy.", ""]
    lines += ["## Evidence of the first finding", ""]
    for r in rows:
        lines.append(f"- **{r['scenario']}** ({r['top1'] or 'none'}): {r['evidence_top1']}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
