import math

import keras
import numpy as np
import pytest

from lstmcore import probes


def lstm_model(bias, *, steps=4, features=1, units=1, return_sequences=False):
    model = keras.Sequential(
        [
            keras.Input((steps, features)),
            keras.layers.LSTM(units, return_sequences=return_sequences, name="lstm"),
            keras.layers.Dense(1, name="head"),
        ]
    )
    lstm = model.get_layer("lstm")
    lstm.set_weights(
        [
            np.zeros((features, 4 * units), np.float32),
            np.zeros((units, 4 * units), np.float32),
            np.asarray(bias, np.float32),
        ]
    )
    model.get_layer("head").set_weights([np.ones((units, 1), np.float32), np.zeros(1, np.float32)])
    return model


def last_step_model(steps=5):
    model = keras.Sequential(
        [
            keras.Input((steps, 2)),
            keras.layers.Lambda(lambda x: x[:, -1]),
            keras.layers.Dense(1, name="head"),
        ]
    )
    model.get_layer("head").set_weights(
        [np.array([[2.0], [0.0]], np.float32), np.zeros(1, np.float32)]
    )
    return model


def constant_model(value, steps=3):
    model = keras.Sequential(
        [keras.Input((steps, 1)), keras.layers.Flatten(), keras.layers.Dense(1, name="head")]
    )
    model.get_layer("head").set_weights(
        [np.zeros((steps, 1), np.float32), np.array([value], np.float32)]
    )
    return model


def test_memory_horizon_counts_recent_steps_above_the_fraction():
    assert probes.memory_horizon([0.0, 0.0, 0.0, 1.0]) == 1
    assert probes.memory_horizon([1.0, 1.0, 1.0, 1.0]) == 4
    assert probes.memory_horizon([0.001, 0.02, 0.5, 1.0], fraction=0.01) == 3
    assert probes.memory_horizon([0.02, 0.001, 0.5, 1.0], fraction=0.01) == 2
    assert probes.memory_horizon([0.0, 0.0]) == 0


def test_memory_horizon_rejects_bad_arguments():
    with pytest.raises(ValueError, match="profile must be a non-empty 1-D"):
        probes.memory_horizon(np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]; got 0"):
        probes.memory_horizon([1.0], fraction=0)


def test_memory_time_scale_is_minus_one_over_log_f():
    assert probes.memory_time_scale(0.5) == pytest.approx(1 / math.log(2))
    assert probes.memory_time_scale(math.exp(-1 / 3)) == pytest.approx(3.0)
    assert probes.memory_time_scale(0.0) == 0.0
    assert probes.memory_time_scale(1.0) == math.inf
    with pytest.raises(ValueError, match="forget_mean must be in"):
        probes.memory_time_scale(1.5)


def test_saturation_share_uses_the_flat_parts():
    assert probes.saturation_share([0.995, 0.5, 0.005, 0.98], "sigmoid") == 0.5
    assert probes.saturation_share([-0.995, 0.5, 0.999, 0.0], "tanh") == 0.5
    with pytest.raises(ValueError, match="kind must be 'sigmoid' or 'tanh'"):
        probes.saturation_share([0.5], "relu")


def test_baseline_loss_of_the_mean_is_the_variance():
    assert probes.baseline_loss([1.0, 2.0, 3.0, 4.0]) == pytest.approx(1.25)
    assert probes.baseline_loss([1.0, 2.0, 3.0, 4.0], "mae", constant=0.0) == pytest.approx(2.5)


def test_initial_loss_check_compares_with_the_mean_baseline():
    y = np.array([[101.0], [102.0], [103.0], [104.0]], np.float32)
    report = probes.initial_loss_check(constant_model(0.0), np.zeros((4, 3, 1)), y)
    assert report["expected"] == pytest.approx(1.25)
    assert report["loss"] == pytest.approx(np.mean(y**2), rel=1e-5)
    assert report["ratio"] == pytest.approx(np.mean(y**2) / 1.25, rel=1e-5)


def test_input_gradient_is_zero_before_the_last_step_of_a_last_step_model():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 5, 2)).astype(np.float32)
    y = rng.normal(size=(4, 1)).astype(np.float32)
    values = probes.make_probes(last_step_model(), x, y, "mse")()
    np.testing.assert_array_equal(values["input_grad"][:-1], 0.0)
    residual = 2 * x[:, -1, 0] - y[:, 0]
    expected_last = np.linalg.norm(2 * residual * 2 / len(x))
    assert values["input_grad"][-1] == pytest.approx(expected_last, rel=1e-5)
    assert values["memory_horizon"] == 1


def test_probes_without_an_lstm_say_why_lstm_probes_are_skipped():
    x = np.zeros((2, 5, 2), np.float32)
    fn = probes.make_probes(last_step_model(), x, np.zeros((2, 1)), "mse")
    assert fn.lstm_layer is None
    assert "no LSTM layer" in fn.notes[0]
    assert not any(key.startswith("lstm/") for key in fn())


def test_gate_saturation_and_states_on_set_weights():
    units = 1
    # Gate biases (i, f, c, o) = (+10, 0, +10, -10) with zero weights: i, g saturated, f = 0.5,
    # o closed. c_t = 0.5 c_{t-1} + 1 gives 1, 1.5, 1.75, 1.875.
    model = lstm_model([10.0, 0.0, 10.0, -10.0], units=units)
    x = np.random.default_rng(0).normal(size=(3, 4, 1)).astype(np.float32)
    values = probes.make_probes(model, x, np.zeros((3, 1)), "mse")()
    assert values["lstm/saturation/input_gate"] == 1.0
    assert values["lstm/saturation/forget_gate"] == 0.0
    assert values["lstm/saturation/output_gate"] == 1.0
    assert values["lstm/saturation/candidate"] == 1.0
    assert values["lstm/saturation/cell_tanh"] == 0.0
    assert values["lstm/forget_gate_mean"] == pytest.approx(0.5)
    assert values["lstm/memory_time_scale"] == pytest.approx(1 / math.log(2), rel=1e-5)
    assert values["lstm/cell_norm_growth"] == pytest.approx(1.875, rel=1e-4)
    assert values["lstm/dead_units"] == 1.0


def test_an_open_output_gate_leaves_no_dead_unit():
    model = lstm_model([10.0, 0.0, 10.0, 10.0])
    values = probes.make_probes(model, np.zeros((2, 4, 1)), np.zeros((2, 1)), "mse")()
    assert values["lstm/dead_units"] == 0.0
    assert values["lstm/saturation/output_gate"] == 1.0


def test_state_gradient_at_the_last_step_matches_the_head():
    # Head: prediction = h_T (kernel 1, bias 0); dL/dh_T = 2 (h_T - y) / B per sample.
    model = lstm_model([0.0, 0.0, 1.0, 0.0])
    x = np.zeros((2, 4, 1), np.float32)
    y = np.array([[1.0], [-1.0]], np.float32)
    fn = probes.make_probes(model, x, y, "mse")
    values = fn()
    h_last = model.predict(x, verbose=0)[:, 0]
    expected = np.linalg.norm(2 * (h_last - y[:, 0]) / 2)
    assert values["lstm/h_grad"].shape == (4,)
    assert values["lstm/h_grad"][-1] == pytest.approx(expected, rel=1e-5)
    assert values["lstm/c_grad"][-1] == 0.0
    assert values["lstm/c_grad"][-2] > 0.0


def test_probes_are_traced_once():
    rng = np.random.default_rng(0)
    model = lstm_model([0.0, 1.0, 0.0, 0.0])
    fn = probes.make_probes(model, rng.normal(size=(3, 4, 1)), rng.normal(size=(3, 1)), "mse")
    for step in range(3):
        fn(step)
    assert fn.compiled.experimental_get_tracing_count() == 1


def test_collapsed_model_has_no_spread_and_its_baselines_are_exact():
    y = np.array([[1.0], [2.0], [3.0], [4.0]], np.float32)
    x = np.random.default_rng(0).normal(size=(4, 3, 1)).astype(np.float32)
    values = probes.make_probes(
        constant_model(0.3), x, y, "mse", train_targets=np.array([2.0, 3.0]), last_input_values=y
    )()
    assert values["prediction_std_ratio"] == 0.0
    assert values["distinct_predictions"] == 0.0
    assert values["baseline/mean_loss"] == pytest.approx(np.mean((y - 2.5) ** 2))
    assert values["baseline/persistence_loss"] == 0.0
    assert values["loss"] == pytest.approx(np.mean((y - 0.3) ** 2), rel=1e-5)
    assert values["baseline/zero_input_loss"] == pytest.approx(values["loss"])
    assert values["loss_to_mean_baseline"] == pytest.approx(
        values["loss"] / np.mean((y - 2.5) ** 2)
    )


def test_prediction_spread_of_a_perfect_model_is_one():
    spread = probes.prediction_spread(
        np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([np.std([0, 1, 2, 3])])
    )
    assert spread["prediction_std_ratio"] == pytest.approx(1.0)
    assert spread["distinct_predictions"] == 1.0


def test_functional_model_with_layers_before_the_lstm_is_probed():
    inputs = keras.Input((6, 2))
    hidden = keras.layers.Dense(3)(inputs)
    hidden = keras.layers.LSTM(4, return_sequences=True, name="inner")(hidden)
    outputs = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling1D()(hidden))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    values = probes.make_probes(model, rng.normal(size=(3, 6, 2)), rng.normal(size=(3, 1)), "mse")()
    assert values["inner/h_grad"].shape == (6,)
    # Averaging over time: every step's output reaches the loss directly.
    assert np.all(values["inner/h_grad"] > 0)


def test_make_probes_rejects_bad_shapes():
    with pytest.raises(
        ValueError, match=r"inputs must be 3-D \[batch, time, features\]; got shape \(2, 5\)"
    ):
        probes.make_probes(last_step_model(), np.zeros((2, 5)), np.zeros((2, 1)), "mse")
    with pytest.raises(ValueError, match="last_input_values must be shaped like targets"):
        probes.make_probes(
            last_step_model(),
            np.zeros((2, 5, 2)),
            np.zeros((2, 1)),
            "mse",
            last_input_values=np.zeros((3, 1)),
        )
