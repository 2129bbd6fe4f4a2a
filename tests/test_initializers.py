import os

import keras
import numpy as np
import pytest

from lstmcore.initializers import Chrono


def chrono_lstm(max_lag=50, units=4, **kwargs):
    return keras.Sequential(
        [
            keras.Input((5, 2)),
            keras.layers.LSTM(
                units,
                unit_forget_bias=False,
                bias_initializer=Chrono(max_lag, **kwargs),
                name="lstm",
            ),
            keras.layers.Dense(1, name="head"),
        ]
    )


def test_forget_bias_is_log_of_a_lag_and_input_bias_its_negative():
    bias = keras.ops.convert_to_numpy(Chrono(50)((16,)))
    input_gate, forget_gate, candidate, output_gate = np.split(bias, 4)
    assert np.all(forget_gate >= 0.0) and np.all(forget_gate <= np.log(49.0))
    np.testing.assert_array_equal(input_gate, -forget_gate)
    np.testing.assert_array_equal(candidate, 0.0)
    np.testing.assert_array_equal(output_gate, 0.0)


def test_the_same_seed_gives_the_same_biases_and_another_seed_others():
    first = keras.ops.convert_to_numpy(Chrono(50, seed=1)((40,)))
    again = keras.ops.convert_to_numpy(Chrono(50, seed=1)((40,)))
    other = keras.ops.convert_to_numpy(Chrono(50, seed=2)((40,)))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_a_lag_of_two_gives_forget_bias_zero():
    bias = keras.ops.convert_to_numpy(Chrono(2)((8,)))
    np.testing.assert_allclose(bias, 0.0, atol=1e-5)


@pytest.mark.parametrize("max_lag", [1, 0, -3, True, "200", None])
def test_max_lag_below_two_or_not_a_number_is_refused(max_lag):
    with pytest.raises(ValueError, match="max_lag"):
        Chrono(max_lag)


def test_a_bias_not_of_four_gates_names_unit_forget_bias():
    with pytest.raises(ValueError, match="unit_forget_bias=False"):
        Chrono(10)((6,))


def test_config_round_trip_and_a_saved_model_loads_back(tmp_path):
    model = chrono_lstm(max_lag=30)
    config = keras.saving.serialize_keras_object(Chrono(30, seed=4))
    restored = keras.saving.deserialize_keras_object(config)
    assert isinstance(restored, Chrono) and restored.max_lag == 30.0 and restored.seed == 4
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.get_layer("lstm").cell.bias_initializer, Chrono)
    np.testing.assert_array_equal(
        loaded.get_layer("lstm").cell.bias.numpy(), model.get_layer("lstm").cell.bias.numpy()
    )


def test_clone_model_rebuilds_the_same_biases():
    model = chrono_lstm()
    clone = keras.models.clone_model(model)
    np.testing.assert_array_equal(
        clone.layers[0].cell.bias.numpy(), model.layers[0].cell.bias.numpy()
    )
