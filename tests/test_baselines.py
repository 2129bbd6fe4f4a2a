import json

import keras
import numpy as np
import pytest

import lstmcore
from lstmcore import baselines, data, models
from lstmcore.diagnosis import read_scalars

# Two windows of three steps, one feature that is also the target.
INPUTS = np.array([[[1.0], [2.0], [3.0]], [[2.0], [3.0], [5.0]]], np.float32)
TARGETS = np.array([[4.0], [7.0]], np.float32)
TRAIN_TARGETS = np.array([[1.0], [3.0]], np.float32)
REPORT = {"feature_columns": ["y"], "target_columns": ["y"], "horizon": 1}


class LastValue(keras.layers.Layer):
    def call(self, x):
        return x[:, -1, :]


def test_baselines_match_hand_computed_losses():
    result = baselines.score(
        None, INPUTS, TARGETS, "mse", data_report=REPORT, season=2, train_targets=TRAIN_TARGETS
    )
    # persistence predicts 3 and 5; seasonal naive (m=2) 2 and 3; the training mean 2.
    assert result["persistence"] == pytest.approx((1**2 + 2**2) / 2)
    assert result["seasonal_naive"] == pytest.approx((2**2 + 4**2) / 2)
    assert result["mean"] == pytest.approx((2**2 + 5**2) / 2)
    assert result["model"] is None and result["windows"] == 2


def test_a_model_that_is_persistence_scores_one_against_it():
    model = keras.Sequential([keras.Input((3, 1)), LastValue()])
    result = baselines.score(model, INPUTS, TARGETS, "mse", data_report=REPORT)
    assert result["ratios"]["persistence"] == pytest.approx(1.0)
    assert result["ratios"]["mean"] == pytest.approx(2.5 / 2.25)  # the held-out mean is 5.5
    assert "optimistic" in " ".join(result["notes"])
    line = baselines.skill_line("validation", result)
    assert line.startswith("validation: model 1 x persistence, 1.11 x mean")
    assert baselines.verdict("test", result).startswith(
        "lstmcore: on the test split the model is WORSE than persistence"
    )


def test_seasonal_naive_over_a_horizon_longer_than_the_season():
    x = np.arange(6, dtype=np.float32).reshape(1, 6, 1)
    predictions, _ = baselines.naive_forecasts(
        x, np.zeros((1, 5)), target_features=[0], horizon=5, season=2
    )
    # Steps t+1..t+5 copy t-1, t, t-1, t, t-1 (t = 5).
    np.testing.assert_array_equal(predictions["seasonal_naive"], [[4, 5, 4, 5, 4]])
    np.testing.assert_array_equal(predictions["persistence"], [[5, 5, 5, 5, 5]])


def test_persistence_needs_the_target_among_the_inputs():
    report = {"feature_columns": ["x"], "target_columns": ["y"], "horizon": 1}
    result = baselines.score(None, INPUTS, TARGETS, data_report=report, season=2)
    assert "persistence" not in result and "seasonal_naive" not in result
    assert any(note.startswith("persistence:") for note in result["notes"])


def test_a_season_longer_than_the_window_is_skipped_with_a_reason():
    result = baselines.score(None, INPUTS, TARGETS, data_report=REPORT, season=4)
    assert "seasonal_naive" not in result
    assert "season 4 is longer than the window (3 steps)" in " ".join(result["notes"])


def test_detect_season_finds_the_period_under_a_trend_not_its_multiples():
    t = np.arange(600)
    rng = np.random.default_rng(0)
    assert baselines.detect_season(0.05 * t + np.sin(2 * np.pi * t / 12), max_lag=100) == 12
    noisy = np.sin(2 * np.pi * t / 7) + rng.normal(size=600)
    assert baselines.detect_season(noisy, max_lag=100) == 7
    assert baselines.detect_season(np.arange(5.0), max_lag=100) is None
    assert baselines.detect_season(np.ones(100), max_lag=30) is None


@pytest.mark.parametrize("seed", range(3))
def test_detect_season_finds_none_in_noise_random_walks_and_ar1(seed):
    rng = np.random.default_rng(seed)
    ar1 = np.zeros(600)
    for i in range(1, 600):
        ar1[i] = 0.9 * ar1[i - 1] + rng.normal()
    for series in (rng.normal(size=600), rng.normal(size=600).cumsum(), ar1):
        assert baselines.detect_season(series, max_lag=200) is None


def test_windows_records_a_given_or_detected_season():
    t = np.arange(400)
    series = np.sin(2 * np.pi * t / 7)
    assert data.windows(series, input_steps=10, season="auto").report["season"] == 7
    assert data.windows(series, input_steps=10, season=5).report["season"] == 5
    assert data.windows(series, input_steps=10).report["season"] is None
    with pytest.raises(ValueError, match="season must be an integer >= 2"):
        data.windows(series, input_steps=10, season=1)


@pytest.mark.parametrize(
    "rows, season, expected", [(309, None, 22), (100, None, 6), (5000, None, 48), (5000, 52, 104)]
)
def test_default_window_rule(rows, season, expected):
    assert data.default_input_steps(rows, season=season) == expected


def test_default_window_refuses_a_series_too_short_for_any_window():
    with pytest.raises(ValueError, match="smallest split holds 4 of the 30 rows"):
        data.default_input_steps(30)


@pytest.mark.slow
def test_train_prints_and_logs_the_skill_against_the_baselines(tmp_path, capsys):
    t = np.arange(300, dtype=np.float32)
    windowed = data.windows(np.sin(t / 4), input_steps=8)
    model = models.forecaster(8, 1, 1, units=4)
    history = lstmcore.train(
        model,
        windowed.arrays("train"),
        validation_data=windowed.arrays("validation"),
        steps=3,
        logdir=str(tmp_path),
        run_name="r",
        data_report=windowed.to_dict(),
        probe_every=None,
        check=False,
    )
    out = capsys.readouterr().out
    assert history.baselines["split"] == "validation"
    assert history.baselines["windows"] == len(windowed.arrays("validation")[0])
    assert set(history.baselines["ratios"]) == {"persistence", "mean"}
    assert (
        f"validation: model {history.baselines['ratios']['persistence']:.3g} x persistence" in out
    )
    scalars = read_scalars(str(tmp_path / "r"))
    steps, values = scalars["val/persistence_loss"]
    assert steps.tolist() == [3]
    assert values[0] == pytest.approx(history.baselines["persistence"], rel=1e-5)
    assert "val/loss_to_mean" in scalars
    json.dumps(history.baselines)


@pytest.mark.parametrize("mode", ["change", "window_norm"])
def test_baselines_score_the_same_in_every_target_form(mode):
    t = np.arange(200, dtype=np.float32)
    series = 0.02 * t + np.sin(2 * np.pi * t / 6)
    level = data.windows(series, input_steps=12, season=6)
    form = data.windows(series, input_steps=12, season=6, target_mode=mode)
    x, y = level.arrays("test")
    fx, fy = form.arrays("test")
    # The naive forecasts, mapped back to levels, are the level ones.
    ours, _ = baselines.naive_forecasts(fx, fy, target_features=[0], season=6, target_mode=mode)
    theirs, _ = baselines.naive_forecasts(x, y, target_features=[0], season=6)
    for name in ("persistence", "seasonal_naive"):
        np.testing.assert_allclose(
            form.inverse_transform_targets(ours[name], split="test"),
            level.inverse_transform_targets(theirs[name]),
            rtol=1e-4,
            atol=1e-4,
        )


def test_a_classifier_gets_no_naive_forecast_but_a_clear_note():
    x = np.random.default_rng(0).normal(size=(16, 5, 2)).astype(np.float32)
    y = (x[:, -1, 0] > 0).astype(np.int64)
    model = keras.Sequential(
        [keras.Input((5, 2)), keras.layers.LSTM(4), keras.layers.Dense(2, activation="softmax")]
    )
    result = baselines.score(model, x, y, "sparse_categorical_crossentropy")
    assert result["model"] is None and result["ratios"] == {}
    assert "need outputs shaped like the targets (1,); the model's are (2,)" in result["notes"][0]
    assert baselines.skill_line("validation", result).startswith("validation: no model score")


def test_per_step_targets_get_the_mean_baseline():
    x = np.random.default_rng(0).normal(size=(8, 4, 3)).astype(np.float32)
    model = keras.Sequential(
        [keras.Input((4, 3)), keras.layers.LSTM(2, return_sequences=True), keras.layers.Dense(3)]
    )
    result = baselines.score(model, x, x, "mse", train_targets=x)
    assert result["mean"] == pytest.approx(float(np.mean((x - x.mean(axis=0)) ** 2)), rel=1e-5)
    assert set(result["ratios"]) == {"mean"}


def test_the_skill_line_goes_through_the_lstmcore_logger(caplog):
    # Not print: the trainer shows the lstmcore logger above its progress bar, and a user's
    # logging configuration (a file, a level) applies to the line too.
    t = np.arange(200, dtype=np.float32)
    windowed = data.windows(np.sin(t / 4), input_steps=8)
    model = models.forecaster(8, 1, 1, units=4)
    with caplog.at_level("INFO", logger="lstmcore"):
        result = baselines.report_after_training(
            model,
            "mse",
            train_arrays=windowed.arrays("train"),
            validation_arrays=windowed.arrays("validation"),
            data_report=windowed.to_dict(),
            run_dir=None,
            step=0,
            progress=True,
        )
    lines = [r.getMessage() for r in caplog.records if r.name == "lstmcore"]
    assert any(line.startswith("validation: model") for line in lines), lines
    assert f"{result['ratios']['persistence']:.3g} x persistence" in lines[0]
