import keras
import numpy as np
import pytest

import lstmcore
from benchmarks import diagnosis as scenarios
from benchmarks.vanishing import chrono_bias
from lstmcore import diagnosis as dx
from lstmcore import interventions


def small_lstm(steps=5, features=2, units=4, **layer):
    return keras.Sequential(
        [
            keras.Input((steps, features)),
            keras.layers.LSTM(units, name="lstm", **layer),
            keras.layers.Dense(1, name="head"),
        ]
    )


# Copies for trials.


def test_a_model_with_a_plain_function_initializer_is_copied_with_its_own_function():
    model = small_lstm(unit_forget_bias=False, bias_initializer=chrono_bias(5, 0))
    with pytest.raises(TypeError):
        keras.models.clone_model(model)
    copy = interventions.copy_model(model, sample_input=np.zeros((1, 5, 2), np.float32))
    np.testing.assert_array_equal(
        copy.layers[0].cell.bias.numpy(), model.layers[0].cell.bias.numpy()
    )
    assert copy.layers[0].cell.bias is not model.layers[0].cell.bias


def test_a_copy_can_have_four_times_the_units_and_the_original_is_unchanged():
    model = small_lstm(units=3)
    weights = [w.numpy() for w in model.weights]
    copy = interventions.copy_model(model, units_factor=4, sample_input=np.zeros((1, 5, 2)))
    assert copy.layers[0].cell.units == 12 and model.layers[0].cell.units == 3
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(weights, model.weights))


def test_an_lstm_inside_a_wrapper_cannot_be_changed_and_says_so():
    model = keras.Sequential(
        [
            keras.Input((5, 2)),
            keras.layers.Bidirectional(keras.layers.LSTM(2)),
            keras.layers.Dense(1),
        ]
    )
    with pytest.raises(interventions.CopyError, match="wrapper"):
        interventions.copy_model(model, units_factor=4)


def test_a_fix_beats_the_control_only_by_a_clear_margin():
    def trial(loss):
        return interventions.Trial("fix", loss, 100, 1.0, 1.0)

    assert interventions.confirms(trial(0.02), 0.16, mean_loss=0.16)
    assert not interventions.confirms(trial(0.15), 0.16, mean_loss=0.16)
    assert not interventions.confirms(trial(float("inf")), 0.16, mean_loss=0.16)
    assert interventions.confirms(trial(0.5), float("inf"), mean_loss=0.16)
    assert "0.16 -> 0.02 in 100 steps" in interventions.describe(trial(0.02), 0.16, 4000)


# Checks on hand-made histories and arrays.


def test_an_oscillating_loss_is_a_learning_rate_too_high_and_a_descending_one_is_not():
    steps = np.arange(400)
    descending = {"loss": 1.0 / (1 + steps / 50) + 0.01, "learning_rate": np.full(400, 1e-3)}
    assert dx.check_instability(descending) is None
    jumping = {"loss": np.where(steps % 2, 17.6, 2.9), "learning_rate": np.full(400, 0.5)}
    finding = dx.check_instability(jumping)
    assert finding.code == "learning_rate_too_high" and "oscillates" in finding.evidence
    skipped = {**descending, "skipped": (steps == 7).astype(np.float32)}
    assert "1 non-finite step" in dx.check_instability(skipped).evidence


def test_held_out_targets_beyond_the_training_range_are_a_shift():
    train = np.linspace(0.0, 1.0, 100)[:, None]
    assert dx.check_shift(train, np.linspace(0.1, 0.9, 30)[:, None]) is None
    finding = dx.check_shift(train, np.linspace(1.2, 1.6, 30)[:, None])
    assert finding.code == "distribution_shift" and "100% of held-out" in finding.evidence


def test_numbers_in_evidence_are_never_nan():
    assert dx._number(float("nan")) == "n/a"
    assert dx._number(float("inf")) == "inf"
    assert dx._number(0.123456, ".2f") == "0.12"


def test_equal_scores_are_ordered_by_evidence_not_by_order():
    weak = dx.Finding("target_in_inputs", "t", "c", "e", "f", 0.9, strength=0.1)
    strong = dx.Finding("lookahead_leak", "t", "c", "e", "f", 0.9, strength=0.5)
    assert [f.code for f in dx.rank([weak, strong])] == ["lookahead_leak", "target_in_inputs"]
    assert [f.code for f in dx.rank([strong, weak])] == ["lookahead_leak", "target_in_inputs"]


def test_a_next_step_target_per_step_is_not_a_leak_but_the_same_step_is():
    values = np.random.default_rng(0).normal(size=400).astype(np.float32)
    x = np.stack([values[s : s + 10] for s in range(300)])[..., None]
    next_step = np.stack([values[s + 1 : s + 11] for s in range(300)])[..., None]
    assert dx.check_target_in_inputs(x, next_step) == []
    assert dx.check_target_in_inputs(x, x.copy())[0].code == "target_in_inputs"


def test_the_target_column_is_found_in_stride_one_windows():
    values = np.arange(50, dtype=np.float32)
    x = np.stack([np.stack([values[s : s + 4], -values[s : s + 4]], -1) for s in range(40)])
    y = values[4:44][:, None]
    assert dx.infer_target_features(x, y) == ([0], 1)
    assert dx.infer_target_features(x, y[::-1].copy()) == (None, 1)


@pytest.mark.parametrize("budget", [-1, 1.5, True, "auto"])
def test_a_budget_that_is_no_fraction_and_no_step_count_is_refused(budget):
    with pytest.raises(ValueError, match="budget"):
        dx.diagnose(data=(np.zeros((4, 3, 1)), np.zeros(4)), budget=budget)


# The classic failing cases, end to end.


@pytest.mark.slow
def test_the_classic_two_sample_example_trains_and_is_diagnosed_without_a_crash():
    x = np.array([[1000, 2000, 3000], [4000, 5000, 6000]], np.float32)[..., None]
    y = np.array([1, 0], np.float32)
    model = small_lstm(3, 1)
    history = lstmcore.train(model, (x, y), steps=5, logdir=None, progress=False)
    assert [f["code"] for f in history.findings][:2] == ["unnormalised_inputs", "too_little_data"]
    one = lstmcore.diagnose(history, model=model, data=(x[:1], y[:1]))
    assert [f.code for f in one][:2] == ["unnormalised_inputs", "too_little_data"]
    assert all("nan" not in f.evidence for f in one)


def test_targets_shaped_unlike_the_model_output_get_trains_message():
    x = np.zeros((8, 3, 1), np.float32)
    model = small_lstm(3, 1)
    with pytest.raises(ValueError, match=r"targets have shape \(3,\) per sample but the model"):
        dx.check_data(x, np.zeros((8, 3)), model=model)
    with pytest.raises(ValueError, match="the model predicts"):
        lstmcore.diagnose(model=model, data=(x, np.zeros((8, 3))))


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", [s[0] for s in scenarios.SCENARIOS if s[4] and s[0] not in ("two_samples",)]
)
def test_fast_scenarios_name_the_planted_cause_and_train_lists_the_same(name):
    _, planted, _, builder, _ = next(s for s in scenarios.SCENARIOS if s[0] == name)
    row = scenarios.run_scenario(name, planted, builder)
    assert row["correct"], row
    assert [code for code, _ in row["train_list"]] == [f["code"] for f in row["findings"]]


def test_the_input_gradient_image_draws_no_gradient_black_and_a_short_memory_as_a_right_edge():
    from lstmcore.monitor import _heatmap

    profiles = np.array([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [1e-4, 1e-3, 1e-2, 1.0]])
    red = _heatmap(profiles)[0, :: 128 // 3 + 1, ::64, 0]
    np.testing.assert_array_equal(red[0], [0, 0, 0, 0])
    np.testing.assert_array_equal(red[1], [255, 255, 255, 255])
    np.testing.assert_array_equal(red[2], [0, 0, 0, 255])


def test_a_diagnosis_that_fails_becomes_a_finding_and_train_returns_its_history(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("planted failure")

    monkeypatch.setattr(dx, "diagnose", broken)
    x = np.random.default_rng(0).normal(size=(40, 3, 1)).astype(np.float32)
    history = lstmcore.train(small_lstm(3, 1), (x, x[:, -1]), steps=3, logdir=None, progress=False)
    failed = [f for f in history.findings if f["code"] == "check_failed"]
    assert failed and "planted failure" in failed[0]["evidence"]
    assert len(history["loss"]) == 3
