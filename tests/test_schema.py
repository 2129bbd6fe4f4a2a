import keras
import numpy as np
import pytest
import tensorflow as tf

import lstmcore
from lstmcore import schema
from lstmcore.diagnosis import read_scalars
from lstmcore.step import make_multi_step, make_train_step


def make_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((5, 2)), keras.layers.LSTM(4, name="lstm"), keras.layers.Dense(1)]
    )


def make_data(n=10):
    x = np.linspace(-1, 1, n * 5 * 2, dtype=np.float32).reshape(n, 5, 2)
    return x, x[:, -1, :1].copy()


@pytest.mark.slow
def test_the_step_returns_exactly_the_schema_single_and_multi_step():
    model = make_model()
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
    step, series = make_train_step(
        model, optimizer, keras.losses.mean_squared_error, clip="global_norm", clip_norm=1.0,
        clip_groups=None,
    )  # fmt: skip
    x, y = make_data()
    iterator = iter(tf.data.Dataset.from_tensor_slices((x, y)).batch(4).repeat())
    expected = {m.name: m for m in schema.step_metrics()}
    one = step(iterator)
    assert set(one) == set(expected)
    for name, value in one.items():
        assert value.dtype == tf.as_dtype(expected[name].dtype), name
        assert value.shape == ((len(series),) if expected[name].shape else ()), name
    stacked = make_multi_step(step)(iterator, tf.constant(3))
    assert set(stacked) == set(expected)
    for name, value in stacked.items():
        assert value.dtype == tf.as_dtype(expected[name].dtype), name
        assert value.shape == ((3, len(series)) if expected[name].shape else (3,)), name
    np.testing.assert_array_equal(stacked["step"], [1, 2, 3])
    # History's columns and the TensorBoard tags come from the same list.
    assert {name for name, _ in schema.per_step_tags()} <= set(schema.history_keys())


def test_a_metric_registered_from_outside_reaches_history_and_tensorboard(tmp_path):
    # Batches of 4, 4, 2 (the epoch's last), 4: the step sees each batch's size.
    metric = schema.register(
        schema.Metric(
            "batch_samples",
            tag="train/batch_samples",
            compute=lambda view: tf.shape(view.inputs)[0],
        )
    )
    try:
        history = lstmcore.train(
            make_model(), make_data(), steps=4, batch_size=4, shuffle=False,
            steps_per_execution=2, logdir=str(tmp_path), run_name="r", progress=False,
            check=False, probe_every=None,
        )  # fmt: skip
    finally:
        schema.unregister(metric.name)
    np.testing.assert_array_equal(history["batch_samples"], [4, 4, 2, 4])
    steps, values = read_scalars(str(tmp_path / "r"))["train/batch_samples"]
    np.testing.assert_array_equal(steps, [0, 1, 2, 3])
    np.testing.assert_array_equal(values, [4, 4, 2, 4])
    assert "batch_samples" not in schema.names()


def test_register_refuses_a_taken_name_or_tag_and_a_metric_without_compute():
    with pytest.raises(lstmcore.ConfigError, match="'loss' is already in the schema"):
        schema.register(schema.Metric("loss", compute=lambda v: v.loss))
    with pytest.raises(lstmcore.ConfigError, match="tag 'train/loss' is already used"):
        schema.register(schema.Metric("loss2", tag="train/loss", compute=lambda v: v.loss))
    with pytest.raises(lstmcore.ConfigError, match="compute=callable"):
        schema.register(schema.Metric("loss3"))
    with pytest.raises(lstmcore.ConfigError, match="metric dtype"):
        schema.register(schema.Metric("loss4", dtype="float16", compute=lambda v: v.loss))
    assert schema.names() == tuple(m.name for m in schema.BUILTIN)
