import dataclasses

import keras
import numpy as np
import pytest

import lstmcore
from lstmcore import diagnosis as dx
from lstmcore import setup_checks as sc


def model_with_head(
    activation, outputs=1, *, steps=6, features=2, cell="LSTM", cell_activation="tanh"
):
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((steps, features)),
            getattr(keras.layers, cell)(4, activation=cell_activation, name="rnn"),
            keras.layers.Dense(outputs, activation=activation, name="head"),
        ]
    )


def windows(samples=64, steps=6, features=2, seed=0):
    return np.random.default_rng(seed).normal(size=(samples, steps, features)).astype(np.float32)


def codes(findings):
    return [f.code for f in findings]


def test_a_relu_head_on_zero_mean_targets_cannot_reach_half_of_them():
    x = windows()
    y = np.random.default_rng(1).normal(size=(64, 1)).astype(np.float32)
    found = sc.check_output_range(model_with_head("relu"), x, y, "mse")
    assert codes(found) == ["output_cannot_reach_targets"]
    assert "relu" in found[0].evidence


@pytest.mark.parametrize(
    "activation, low, high", [(None, -3.0, 3.0), ("sigmoid", 0.0, 1.0), ("relu", 0.0, 5.0)]
)
def test_a_head_whose_range_covers_the_targets_is_not_flagged(activation, low, high):
    y = np.random.default_rng(2).uniform(low, high, size=(64, 1)).astype(np.float32)
    assert sc.check_output_range(model_with_head(activation), windows(), y, "mse") == []


def test_one_softmax_unit_is_always_one():
    y = (np.arange(64) % 2).astype(np.float32)[:, None]
    found = sc.check_output_range(model_with_head("softmax"), windows(), y, "binary_crossentropy")
    assert codes(found) == ["output_cannot_reach_targets"]
    assert "always" in found[0].evidence or "1.0 for every input" in found[0].evidence


def test_a_tanh_head_on_standardised_targets_loses_a_known_share():
    # E[(|Z| - 1)^2; |Z| > 1] = 2 (2 Q(1) - phi(1)) = 0.151 of the variance for a normal Z.
    y = np.random.default_rng(3).normal(size=(20000, 1)).astype(np.float32)
    x = windows(20000)
    found = sc.check_output_range(model_with_head("tanh"), x, y, "mse")
    assert codes(found) == ["output_cannot_reach_targets"]
    assert "costs 0.15 x" in found[0].evidence


def one_hot(labels, classes):
    return np.eye(classes, dtype=np.float32)[labels]


@pytest.mark.parametrize(
    "loss, targets, outputs",
    [
        ("binary_crossentropy", one_hot(np.arange(64) % 3, 3), 3),
        ("categorical_crossentropy", (np.arange(64) % 2).astype(np.float32)[:, None], 1),
        ("mse", one_hot(np.arange(64) % 4, 4), 4),
        ("binary_crossentropy", np.linspace(-2, 2, 64, dtype=np.float32)[:, None], 1),
    ],
)
def test_a_loss_that_does_not_fit_the_targets_is_named(loss, targets, outputs):
    found = sc.check_loss(model_with_head("sigmoid", outputs), windows(), targets, loss)
    assert codes(found) == ["loss_mismatch"]


@pytest.mark.parametrize(
    "loss, targets, outputs",
    [
        ("categorical_crossentropy", one_hot(np.arange(64) % 3, 3), 3),
        ("binary_crossentropy", (np.arange(64) % 2).astype(np.float32)[:, None], 1),
        (
            "binary_crossentropy",
            np.stack([np.arange(64) % 2, np.arange(64) % 3 == 0], 1).astype(np.float32),
            2,
        ),
        ("mse", np.linspace(-2, 2, 64, dtype=np.float32)[:, None], 1),
    ],
)
def test_a_loss_that_fits_the_targets_is_not_flagged(loss, targets, outputs):
    assert sc.check_loss(model_with_head("sigmoid", outputs), windows(), targets, loss) == []


def test_reconstruction_targets_are_recognised_and_are_not_a_leak():
    x = windows(200, steps=8, features=2)
    assert sc.is_reconstruction(x, x)
    assert sc.is_reconstruction(x, x[..., :1])
    assert sc.is_reconstruction(x, x[:, ::-1])
    assert not sc.is_reconstruction(x, x[:, -1:, :1] * 2 + x[:, :1, 1:])
    shifted = np.concatenate([x[:, 1:], x[:, :1]], axis=1)
    assert not sc.is_reconstruction(x, shifted)
    assert "target_in_inputs" not in codes(dx.check_data(x, x))


@pytest.mark.parametrize("seed", range(5))
def test_a_flat_noisy_loss_curve_is_not_still_falling(seed):
    losses = 1.0 + 0.1 * np.random.default_rng(seed).normal(size=300)
    assert sc.still_falling(losses) is None


@pytest.mark.parametrize("seed", range(5))
def test_a_loss_falling_through_its_noise_is_still_falling(seed):
    steps = np.arange(300)
    losses = np.exp(-steps / 400) + 0.05 * np.random.default_rng(seed).normal(size=300)
    found = sc.still_falling(losses)
    assert found is not None and found["slope"] < 0 and found["t"] < -2.5


def test_balanced_accuracy_by_hand():
    truth = np.array([0, 0, 0, 0, 1, 1])
    predicted = np.array([0, 0, 0, 1, 1, 0])
    ba, _se, se0 = sc.balanced_accuracy(truth, predicted, 2)
    assert ba == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert se0 == pytest.approx(np.sqrt(0.25 / 4 + 0.25 / 2) / 2)


def test_a_classifier_that_predicts_one_class_has_collapsed():
    x = windows(300)
    labels = np.where(np.arange(300) % 10 == 0, 1, 0)
    model = model_with_head("sigmoid")
    model.layers[-1].bias.assign([-20.0])  # always class 0
    scores = sc.classification_scores(
        model, x, labels[:, None].astype(np.float32), "binary_crossentropy"
    )
    assert scores["collapsed"] and scores["predicted_share"] == 1.0
    assert scores["accuracy"] == pytest.approx(0.9) == scores["majority_accuracy"]
    assert scores["balanced_accuracy"] == pytest.approx(0.5)


def test_regression_targets_have_no_classes():
    y = np.random.default_rng(0).normal(size=(64, 1)).astype(np.float32)
    assert sc.classification_scores(model_with_head(None), windows(), y, "mse") is None


def test_stitched_windows_give_back_their_series():
    series = np.random.default_rng(0).normal(size=(50, 2))
    x = np.stack([series[i : i + 7] for i in range(44)])
    np.testing.assert_allclose(sc.stitched_series(x), series)
    assert sc.stitched_series(x[::2]) is None


def test_a_seasonal_dependence_beyond_the_window_is_found_and_noise_has_none():
    from benchmarks.diagnosis import seasonal_ar

    lags, _ = sc.significant_lags(seasonal_ar(3000, lag=24), beyond=8, max_lag=40)
    assert 24 in lags
    noise = np.random.default_rng(0).normal(size=3000)
    assert sc.significant_lags(noise, beyond=8, max_lag=40)[0] == []


def test_a_short_sine_has_no_dependence_beyond_a_short_window():
    # A sine is an exact AR(2); on 55 rows the adjusted Yule-Walker estimate gave partial
    # autocorrelations of -24.5, a false window_too_short on lstmcore train --csv.
    lags, partial = sc.significant_lags(np.sin(np.arange(55) / 3.0), beyond=5, max_lag=15)
    assert lags == []
    assert np.all(np.abs(partial) <= 1.0)


@pytest.mark.parametrize("cell", ["LSTM", "GRU", "SimpleRNN"])
def test_relu_inside_a_recurrent_cell_is_reported_with_its_measured_state(cell):
    model = model_with_head(None, cell=cell, cell_activation="relu")
    text, layer = sc.recurrent_activation_evidence(model, windows())
    assert layer == cell and "activation='relu'" in text and "dead" in text
    assert sc.recurrent_activation_evidence(model_with_head(None, cell=cell), windows()) is None


def test_the_tanh_copy_changes_only_the_cell_activation():
    model = model_with_head("relu", cell="GRU", cell_activation="relu")
    replica = sc.with_cell_activation(model, "tanh", windows())
    assert replica.get_layer("rnn").get_config()["activation"] == "tanh"
    assert replica.get_layer("head").get_config()["activation"] == "relu"
    assert model.get_layer("rnn").get_config()["activation"] == "relu"


def test_a_copy_on_longer_windows_keeps_the_architecture():
    model = model_with_head(None)
    replica = sc.copy_with(model, steps=15, sample_input=windows(steps=15))
    assert replica.input_shape == (None, 15, 2)
    assert replica.count_params() == model.count_params()


def test_a_longer_window_that_the_held_out_rows_cannot_hold_is_a_note_not_a_failure():
    # As lstmcore train --csv on a short series: 7 validation windows of 5 steps span 11 rows,
    # too few for 15-step windows. The suspect keeps its evidence with a plain "Not tried"
    # note, and no "check could not run" finding (it used to be a CopyError).
    from lstmcore import interventions

    series = np.sin(np.arange(80) / 3.0).astype(np.float32)[:, None]
    x = np.stack([series[i : i + 5] for i in range(75)])
    y = series[5:80]
    model = model_with_head(None, steps=5, features=1)
    context = interventions.Context(
        model=model,
        train=(x[:60], y[:60]),
        held_out=(x[68:], y[68:]),
        setting=interventions.Setting(),
        steps=4,
    )
    kind = sc.KINDS.get("window_too_short")()
    suspect = sc.Suspect(kind, "lag 14 matters.", {"steps_needed": 15, "lag": 14})
    with pytest.raises(sc.FixNotTried, match="7 held-out windows span 11 rows, too few"):
        sc.try_fix(suspect, context, "mse", control_loss=1.0, mean_loss=1.0, run_steps=50, steps=4)
    finding, failure = dx._try_setup_fix(suspect, context, "mse", 1.0, 1.0, 50, 4)
    assert failure is None
    assert finding.code == "window_too_short" and finding.confirmed is None
    assert finding.evidence.endswith(
        "Not tried: the 7 held-out windows span 11 rows, too few "
        "for 15-step windows (the trial needs at least 25)."
    )
    sample = (x[:60:2], y[:60:2])  # not consecutive, as a trial's sample of many windows
    with pytest.raises(sc.FixNotTried, match="30 training windows are not consecutive"):
        sc.try_fix(
            suspect,
            dataclasses.replace(context, train=sample),
            "mse",
            control_loss=1.0,
            mean_loss=1.0,
            run_steps=50,
            steps=4,
        )


def test_every_setup_kind_is_a_registry_entry_with_its_wording():
    for code in sc.KINDS.names():
        kind = sc.KINDS.get(code)()
        assert kind.code == code and kind.title and kind.cause and kind.fix
        assert code in dx.CAUSES


@pytest.mark.slow
def test_an_imbalanced_classifier_is_named_and_confirmed_by_class_weights():
    from benchmarks.diagnosis import imbalanced_classes

    keras.utils.set_random_seed(0)
    scenario = imbalanced_classes()
    history = lstmcore.train(
        scenario["model"],
        scenario["train"],
        validation_data=scenario["validation"],
        progress=False,
        **scenario["options"],
    )
    assert history.findings[0]["code"] == "class_imbalance"
    assert history.findings[0]["confirmed"] is True
    assert history.baselines["classification"]["collapsed"]


@pytest.mark.slow
def test_an_autoencoder_is_healthy_not_a_leak():
    from benchmarks.diagnosis import autoencoder_sine

    keras.utils.set_random_seed(0)
    scenario = autoencoder_sine()
    history = lstmcore.train(
        scenario["model"],
        scenario["train"],
        validation_data=scenario["validation"],
        progress=False,
        **{**scenario["options"], "steps": 300},
    )
    assert history.findings == []


def test_an_encoder_decoder_autoencoder_reads_the_whole_window_by_design():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 1))
    repeated = keras.layers.RepeatVector(8)(keras.layers.LSTM(4)(inputs))
    outputs = keras.layers.Dense(1)(keras.layers.LSTM(4, return_sequences=True)(repeated))
    model = keras.Model(inputs, outputs)
    x = windows(200, steps=8, features=1)
    assert codes(dx.check_data(x, x, model=model, overfit_check=False)) == []
    forecast = np.concatenate([x[:, 1:], x[:, :1]], axis=1)  # not the input: a look-ahead
    assert "lookahead_leak" in codes(dx.check_data(x, forecast, model=model, overfit_check=False))
