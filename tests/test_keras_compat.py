"""The Keras privates lstmcore relies on, checked against the installed Keras."""

import importlib
import pathlib
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from lstmcore import _keras_compat, schedules

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_the_installed_keras_is_a_tested_version():
    low, high = _keras_compat.KERAS_TESTED
    assert _keras_compat.keras_is_tested(), (
        f"keras {keras.__version__} is outside the tested range {low} <= version < {high}: run "
        "the suite, check lstmcore/_keras_compat.py, then move KERAS_TESTED and setup.py"
    )


def test_setup_py_bounds_keras_as_keras_tested():
    text = (ROOT / "setup.py").read_text()
    low, high = re.search(r'"keras>=([\d.]+),<([\d.]+)"', text).groups()
    assert tuple(map(int, low.split("."))) == _keras_compat.KERAS_TESTED[0]
    assert tuple(map(int, high.split("."))) == _keras_compat.KERAS_TESTED[1]


def _layers():
    yield keras.layers.LSTM(3)
    yield keras.layers.LSTM(3, activation="relu")
    yield keras.layers.LSTM(3, recurrent_activation="hard_sigmoid")
    yield keras.layers.LSTM(3, unroll=True)
    yield keras.layers.LSTM(3, use_bias=False)
    yield keras.layers.GRU(3)
    yield keras.layers.GRU(3, reset_after=False)
    yield keras.layers.GRU(3, activation="sigmoid")


@pytest.mark.parametrize("index", range(8))
def test_the_cudnn_rule_agrees_with_keras_own(index):
    # Keras's own argument check (private, so read here only, to pin our copy to it).
    rnn = importlib.import_module("keras.src.backend.tensorflow.rnn")

    layer = list(_layers())[index]
    cell = layer.cell
    if isinstance(layer, keras.layers.GRU):
        keras_ok = rnn._do_gru_arguments_support_cudnn(
            cell.activation,
            cell.recurrent_activation,
            layer.unroll,
            cell.use_bias,
            cell.reset_after,
        )
    else:
        keras_ok = rnn._do_lstm_arguments_support_cudnn(
            cell.activation, cell.recurrent_activation, layer.unroll, cell.use_bias
        )
    assert (not _keras_compat.keras_cudnn_blockers(layer)) == keras_ok


def test_adam_slots_are_the_moments_keras_updates():
    optimizer = keras.optimizers.Adam(0.1, beta_1=0.9, beta_2=0.99)
    variables = [keras.Variable(np.zeros(2, np.float32)), keras.Variable(np.zeros(3, np.float32))]
    optimizer.build(variables)
    optimizer.apply([tf.fill([2], 2.0), tf.fill([3], 4.0)], variables)
    m, v = _keras_compat.adam_slots(optimizer, variables[1])
    np.testing.assert_allclose(m.numpy(), [0.4] * 3, rtol=1e-6)  # (1 - 0.9) * 4
    np.testing.assert_allclose(v.numpy(), [0.16] * 3, rtol=1e-5)  # (1 - 0.99) * 16


def test_the_optimizers_own_schedule_and_every_nested_layer_are_found():
    schedule = schedules.for_training(0.1, total_steps=10, warmup_steps=2)
    assert _keras_compat.optimizer_learning_rate(keras.optimizers.SGD(schedule)) is schedule
    model = keras.Sequential(
        [keras.Input((4, 1)), keras.layers.Bidirectional(keras.layers.LSTM(2))]
    )
    found = _keras_compat.flatten_layers(model)
    # The wrapper's inner layers, which model.layers does not list.
    assert any(layer is model.layers[0].backward_layer for layer in found)
