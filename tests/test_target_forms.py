import keras
import numpy as np
import pytest

from lstmcore import keras as lstmcore_keras
from lstmcore import models, target_forms

WINDOWS = np.random.default_rng(0).normal(3.0, 2.0, size=(5, 6, 2)).astype(np.float32)


def zero_head(model):
    head = model.get_layer("head")
    head.set_weights([np.zeros_like(w) for w in head.get_weights()])
    return model


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["level", "change", "window_norm"])
def test_a_forecaster_in_each_form_saves_and_loads_with_the_same_predictions(tmp_path, mode):
    model = models.forecaster(6, 2, 3, units=4, target_mode=mode, target_features=[1], horizon=3)
    path = tmp_path / f"{mode}.keras"
    model.save(path)
    loaded = lstmcore_keras.load_model(path)
    np.testing.assert_allclose(
        loaded.predict(WINDOWS, verbose=0), model.predict(WINDOWS, verbose=0)
    )


def test_a_zero_head_in_the_change_form_is_persistence():
    model = zero_head(
        models.forecaster(6, 2, 3, units=4, target_mode="change", target_features=[1], horizon=3)
    )
    np.testing.assert_allclose(
        model.predict(WINDOWS, verbose=0), np.repeat(WINDOWS[:, -1, 1:], 3, axis=1)
    )


def test_a_zero_head_in_the_window_norm_form_predicts_the_window_mean():
    model = zero_head(
        models.forecaster(6, 2, 2, units=4, target_mode="window_norm", target_features=[1, 0])
    )
    np.testing.assert_allclose(
        model.predict(WINDOWS, verbose=0), WINDOWS.mean(axis=1)[:, ::-1], rtol=1e-5
    )


def test_forms_round_trip_through_their_inverse():
    targets = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    for mode in target_forms.TARGET_MODES:
        _, form = target_forms.to_target_form(WINDOWS, targets, mode, [0, 1], 2)
        back = target_forms.from_target_form(
            keras.ops.convert_to_tensor(form), WINDOWS, mode, [0, 1], 2
        )
        np.testing.assert_allclose(np.asarray(back), targets, rtol=1e-5, atol=1e-5)


def test_relative_forms_need_the_target_among_the_features():
    with pytest.raises(ValueError, match="needs each target column among the input features"):
        models.forecaster(6, 2, 1, target_mode="change")
    with pytest.raises(ValueError, match="target_mode must be one of"):
        models.forecaster(6, 2, 1, target_mode="delta")
    with pytest.raises(ValueError, match="outputs must be horizon \\* targets = 3 \\* 1"):
        models.forecaster(6, 2, 2, target_mode="change", target_features=[0], horizon=3)
