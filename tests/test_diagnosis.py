import keras
import numpy as np
import pytest

import lstmcore
from lstmcore import data as lstm_data
from lstmcore import diagnosis as dx


def lstm_model(
    steps, features, outputs, *, units=16, bias_initializer="zeros", unit_forget_bias=True
):
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((steps, features)),
            keras.layers.LSTM(
                units,
                name="lstm",
                bias_initializer=bias_initializer,
                unit_forget_bias=unit_forget_bias,
            ),
            keras.layers.Dense(outputs, name="head"),
        ]
    )


def sine(rows=600, *, noise=0.1, seed=0):
    t = np.arange(rows)
    return (
        np.sin(2 * np.pi * t / 25) + noise * np.random.default_rng(seed).normal(size=rows)
    ).astype(np.float32)


def fit(model, data, validation=None, *, learning_rate=1e-2, steps=300, logdir=None):
    return lstmcore.train(
        model,
        data,
        validation_data=validation,
        learning_rate=learning_rate,
        steps=steps,
        batch_size=32,
        logdir=logdir,
        progress=False,
    )


def random_windows(seed, samples=400, steps=12, features=1):
    return np.random.default_rng(seed).normal(size=(samples, steps, features)).astype(np.float32)


def codes(findings):
    return [f.code for f in findings]


# Scenarios: one planted cause each; it must be the top finding.


@pytest.mark.slow
def test_healthy_sine_forecast_has_no_finding():
    windows = lstm_data.windows(sine(), input_steps=16, horizon=1)
    model = lstm_model(16, 1, 1)
    history = fit(model, windows.arrays("train"), windows.arrays("validation"))
    findings = dx.diagnose(history, model=model, data=windows)
    assert findings == []
    assert dx.format_findings(findings) == "lstmcore diagnose: no problem found."


@pytest.mark.slow
def test_healthy_multi_feature_recall_has_no_finding():
    x = random_windows(1, features=2)
    y = (x[:, -3, 0] + 0.5 * x[:, -1, 1])[:, None]
    model = lstm_model(12, 2, 1)
    history = fit(model, (x[:300], y[:300]), (x[300:], y[300:]))
    assert (
        dx.diagnose(
            history, model=model, data=(x[:300], y[:300]), validation_data=(x[300:], y[300:])
        )
        == []
    )


@pytest.mark.slow
def test_raw_inputs_in_the_thousands_are_flagged_first():
    windows = lstm_data.windows(5000 + 1000 * sine(), input_steps=16, horizon=1, normalize=None)
    model = lstm_model(16, 1, 1)
    history = fit(model, windows.arrays("train"), steps=100)
    findings = dx.diagnose(history, model=model, data=windows)
    assert findings[0].code == "unnormalised_inputs"
    assert "mean 5000" in findings[0].evidence
    assert "Saturated share in the first LSTM" in findings[0].evidence
    assert "collapsed_predictions" in codes(findings)


@pytest.mark.slow
def test_random_targets_are_reported_as_nothing_to_learn():
    x = random_windows(2)
    y = np.random.default_rng(3).normal(size=(400, 1)).astype(np.float32)
    model = lstm_model(12, 1, 1)
    history = fit(model, (x[:300], y[:300]), (x[300:], y[300:]))
    findings = dx.diagnose(
        history, model=model, data=(x[:300], y[:300]), validation_data=(x[300:], y[300:])
    )
    assert findings[0].code == "no_signal"
    assert "predicting the mean is the correct answer" in findings[0].cause


def test_a_leaked_future_target_column_is_flagged_first():
    series = sine(601)
    leaked = lstm_data.Series(
        np.stack([series[:-1], series[1:]], axis=1), ("y", "y_next"), target_columns=("y",)
    )
    windows = lstm_data.windows(leaked, input_steps=16, horizon=1)
    findings = dx.diagnose(model=lstm_model(16, 2, 1), data=windows)
    assert findings[0].code == "target_in_inputs"
    assert "y_next at input step 15" in findings[0].evidence


def test_a_scaler_fitted_on_all_rows_is_flagged_first():
    series = sine() + np.linspace(0.0, 6.0, 600, dtype=np.float32)
    windows = lstm_data.windows(
        series, input_steps=16, horizon=1, normalize=lstm_data.fit_scaler(series)
    )
    findings = dx.diagnose(model=lstm_model(16, 1, 1), data=windows)
    assert findings[0].code == "scaler_not_train_only"


@pytest.mark.slow
def test_twenty_training_windows_are_too_little_data():
    windows = lstm_data.windows(sine(72), input_steps=16, horizon=1, splits=(0.5, 0.25, 0.25))
    assert windows.report["splits"]["train"]["windows"] == 20
    model = lstm_model(16, 1, 1)
    history = fit(model, windows.arrays("train"), steps=100)
    findings = dx.diagnose(history, model=model, data=windows)
    assert findings[0].code == "too_little_data"
    assert "20 training windows" in findings[0].evidence


@pytest.mark.slow
def test_two_hidden_units_are_too_little_capacity():
    x = random_windows(4)
    y = np.stack([x[:, -1 - k, 0] for k in range(1, 5)], axis=1)
    model = lstm_model(12, 1, 4, units=2)
    history = fit(model, (x[:300], y[:300]), (x[300:], y[300:]))
    findings = dx.diagnose(
        history, model=model, data=(x[:300], y[:300]), validation_data=(x[300:], y[300:])
    )
    assert findings[0].code == "too_little_capacity"
    assert "the smallest LSTM has 2 units" in findings[0].evidence


@pytest.mark.slow
def test_a_learning_rate_of_1e_7_is_flagged_from_history_and_from_the_event_files(tmp_path):
    windows = lstm_data.windows(sine(), input_steps=16, horizon=1)
    model = lstm_model(16, 1, 1)
    history = fit(
        model, windows.arrays("train"), learning_rate=1e-7, steps=100, logdir=str(tmp_path)
    )
    assert dx.diagnose(history, model=model, data=windows)[0].code == "learning_rate_too_low"
    from_files = dx.diagnose(logdir=str(tmp_path))
    assert codes(from_files) == ["learning_rate_too_low"]
    assert "1e-05" in from_files[0].evidence


@pytest.mark.slow
def test_a_closed_forget_gate_on_a_long_lag_is_vanishing_gradients():
    x = random_windows(5, steps=20)
    y = x[:, 0, :].copy()
    bias = np.zeros(64, np.float32)
    bias[16:32] = -4.0  # forget gate ~0.02: memory of a fraction of a step
    model = lstm_model(
        20, 1, 1, bias_initializer=keras.initializers.Constant(bias), unit_forget_bias=False
    )
    history = fit(model, (x[:300], y[:300]), (x[300:], y[300:]), learning_rate=1e-3, steps=150)
    findings = dx.diagnose(
        history, model=model, data=(x[:300], y[:300]), validation_data=(x[300:], y[300:])
    )
    assert findings[0].code == "vanishing_gradients"
    assert "collapsed_predictions" in codes(findings)
    assert "input gradient fades within" in findings[0].evidence


# Single checks on tiny inputs.


def test_bidirectional_sequence_model_leaks_the_future_and_a_causal_one_does_not():
    x = random_windows(6, samples=4, steps=5)
    keras.utils.set_random_seed(0)
    leaky = keras.Sequential(
        [
            keras.Input((5, 1)),
            keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True)),
            keras.layers.Dense(1),
        ]
    )
    causal = keras.Sequential(
        [keras.Input((5, 1)), keras.layers.LSTM(3, return_sequences=True), keras.layers.Dense(1)]
    )
    assert codes(dx.check_lookahead(leaky, x)) == ["lookahead_leak"]
    assert dx.check_lookahead(causal, x) == []


def test_a_model_mixing_the_batch_is_flagged():
    x = random_windows(7, samples=4, steps=5)
    mixing = keras.Sequential(
        [
            keras.Input((5, 1)),
            keras.layers.Lambda(lambda v: v - keras.ops.mean(v, axis=0)),
            keras.layers.LSTM(2),
            keras.layers.Dense(1),
        ]
    )
    assert codes(dx.check_lookahead(mixing, x)) == ["batch_leak"]


def test_windows_cut_before_splitting_share_rows():
    rows = np.random.default_rng(0).normal(size=(60, 1)).astype(np.float32)
    windows = np.stack([rows[s : s + 5] for s in range(56)])
    assert codes(dx.check_shared_rows(windows[:40], windows[38:])) == ["window_overlap"]
    assert dx.check_shared_rows(windows[:40], windows[45:]) == []


def test_a_report_with_touching_splits_is_an_overlap():
    split = {"first_window_start": 0, "last_window_start": 10}
    report = {
        "input_steps": 4,
        "horizon": 2,
        "splits": {
            "train": split,
            "validation": {"first_window_start": 14, "last_window_start": 20},
            "test": {"first_window_start": 26, "last_window_start": 30},
        },
    }
    assert codes(dx.check_window_report(report)) == ["window_overlap"]
    report["splits"]["validation"]["first_window_start"] = 16
    assert dx.check_window_report(report) == []


def test_non_finite_data_stops_the_other_checks():
    x = np.zeros((4, 3, 1), np.float32)
    x[2, 1, 0] = np.nan
    findings = dx.check_data(x, np.zeros((4, 1)))
    assert codes(findings) == ["nonfinite_data"]
    assert "index (2, 1, 0)" in findings[0].evidence


def test_a_constant_feature_is_low_severity_unless_every_feature_is_constant():
    x = random_windows(8, samples=200, steps=3, features=2)
    x[:, :, 1] = 7.0
    found = dx.check_scale(x)
    assert codes(found) == ["constant_feature"] and found[0].severity == "low"
    assert dx.check_scale(np.full((4, 3, 1), 7.0))[0].score == 1.0


def test_a_recall_target_from_earlier_steps_is_not_leakage_for_plain_arrays():
    x = random_windows(9, steps=6)
    y = x[:, 2, :]
    assert dx.check_target_in_inputs(x, y) == []
    assert codes(dx.check_target_in_inputs(x, y, last_steps=None)) == ["target_in_inputs"]
    assert codes(dx.check_target_in_inputs(x, 3 * x[:, -1, :] + 1)) == ["target_in_inputs"]


def test_scaler_check_accepts_train_statistics_and_flags_others():
    train_rows = np.arange(10.0)[:, None]
    assert dx.check_scaler((train_rows - 4.5) / train_rows.std()) == []
    all_rows = np.arange(20.0)
    scaler = lstm_data.Scaler(("y",), [all_rows.mean()], [all_rows.std()])
    found = dx.check_data(
        random_windows(10, samples=200, steps=3), scaler=scaler, train_rows=train_rows
    )
    assert codes(found) == ["scaler_not_train_only"]


def test_sgd_update_budget_uses_the_gradient_norm():
    history = {
        "learning_rate": np.full(10, 1e-3),
        "grad_norm_after_clip": np.full(10, 0.01),
        "loss": np.ones(10),
    }
    assert codes(dx.check_updates(history, {"optimizer": "SGD"})) == ["learning_rate_too_low"]
    assert dx.check_updates(history, {"optimizer": "Adam"}) == []
    history["loss"] = np.linspace(1.0, 0.5, 10)
    assert dx.check_updates(history, {"optimizer": "SGD"}) == []


def _registered_adam(learning_rate):
    return keras.optimizers.Adam(learning_rate)


def test_update_budget_treats_fused_and_registered_adam_as_adaptive():
    # An SGD-style budget (rate x gradient norm) flags these; the Adam budget (sum of rates,
    # 1e-2 here) does not: fused Adam/AdamW and a user's registered Adam are Adam.
    from lstmcore import optimizers

    optimizers.OPTIMIZERS.register("diagnosis_test_adam")(_registered_adam)
    history = {
        "learning_rate": np.full(10, 1e-3),
        "grad_norm_after_clip": np.full(10, 0.01),
        "loss": np.ones(10),
    }
    for name in ("fused_adam", "fused_adamw", "diagnosis_test_adam", "AdamW"):
        assert dx.check_updates(history, {"optimizer": name}) == [], name
    assert dx.is_adaptive(optimizers.AdamW(1e-3))
    assert not dx.is_adaptive(keras.optimizers.SGD(1e-3))
    assert codes(dx.check_updates(history, {"optimizer": "sgd"})) == ["learning_rate_too_low"]


def test_findings_are_ranked_and_deduplicated():
    low = dx.Finding("a", "t", "c", "e", "f", 0.3)
    high = dx.Finding("b", "t", "c", "e", "f", 0.9)
    again = dx.Finding("a", "t", "c", "e2", "f", 0.5)
    assert dx.rank([low, high, again]) == [high, again]
    text = dx.format_findings([high])
    assert "1. [high] t (b, score 0.90)" in text and "Evidence: e" in text


def test_diagnose_needs_something_and_logdir_needs_events(tmp_path):
    with pytest.raises(ValueError, match="diagnose needs a history, a logdir or data"):
        dx.diagnose()
    with pytest.raises(ValueError, match="holds no TensorBoard event files"):
        dx.diagnose(logdir=str(tmp_path))
