import keras
import numpy as np
import pytest
import tensorflow as tf

import lstmcore
from lstmcore import optimizers


def make_model(seed=0):
    # Two Dense layers of one shape: each variable must get its own update.
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((6, 3)),
            keras.layers.LSTM(8),
            keras.layers.Dense(8, activation="tanh"),
            keras.layers.Dense(8, activation="tanh"),
            keras.layers.Dense(2),
        ]
    )


def train_steps(model, optimizer, steps=6):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(16, 6, 3)).astype(np.float32))
    y = tf.constant(rng.normal(size=(16, 2)).astype(np.float32))
    variables = model.trainable_variables

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x, training=True) - y))
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    return [float(step()) for _ in range(steps)]


@pytest.mark.slow
@pytest.mark.parametrize(
    "fused, stock",
    [
        (optimizers.Adam, keras.optimizers.Adam),
        (optimizers.AdamW, keras.optimizers.AdamW),
    ],
)
def test_fused_update_matches_keras(fused, stock):
    options = {"learning_rate": 3e-2, "beta_1": 0.8, "epsilon": 1e-6}
    if stock is keras.optimizers.AdamW:
        options["weight_decay"] = 0.1
    reference, model = make_model(), make_model()
    reference_optimizer, optimizer = stock(**options), fused(**options)
    expected = train_steps(reference, reference_optimizer)
    got = train_steps(model, optimizer)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # Float32 rounding only: XLA fuses the arithmetic (one step moves a weight by ~3e-2).
    for a, b in zip(reference.get_weights(), model.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    for a, b in zip(reference_optimizer.variables, optimizer.variables):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-6)
    # Something moved: the comparison is not between two untouched models.
    assert not np.allclose(make_model().get_weights()[0], model.get_weights()[0])


@pytest.mark.slow
def test_amsgrad_falls_back_to_keras_and_still_matches():
    reference, model = make_model(), make_model()
    expected = train_steps(reference, keras.optimizers.Adam(1e-2, amsgrad=True))
    got = train_steps(model, optimizers.Adam(1e-2, amsgrad=True))
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_checkpoints_are_interchangeable_with_keras_adam(tmp_path):
    model = make_model()
    optimizer = optimizers.Adam(1e-2)
    train_steps(model, optimizer, steps=3)
    path = tf.train.Checkpoint(model=model, optimizer=optimizer).save(str(tmp_path / "ckpt"))
    restored_model, restored_optimizer = make_model(seed=1), keras.optimizers.Adam(1e-2)
    restored_optimizer.build(restored_model.trainable_variables)
    status = tf.train.Checkpoint(model=restored_model, optimizer=restored_optimizer).restore(path)
    status.assert_existing_objects_matched()
    assert int(restored_optimizer.iterations) == 3
    for a, b in zip(optimizer.variables, restored_optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_optimizer_round_trips_through_keras_serialisation():
    optimizer = optimizers.AdamW(learning_rate=2e-3, weight_decay=0.05)
    config = keras.optimizers.serialize(optimizer)
    again = keras.optimizers.deserialize(config)
    assert type(again) is optimizers.AdamW
    assert again.get_config()["weight_decay"] == pytest.approx(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("name, fused", [("fused_adam", True), ("adam", False)])
def test_train_uses_the_fused_adam_only_when_named(monkeypatch, name, fused):
    traced = []
    original = optimizers._adam_values

    def counting(*args):
        traced.append(1)
        return original(*args)

    monkeypatch.setattr(optimizers, "_adam_values", counting)
    history = lstmcore.train(
        make_model(),
        (np.zeros((8, 6, 3), np.float32), np.zeros((8, 2), np.float32)),
        steps=1,
        optimizer=name,
        logdir=None,
        progress=False,
        check=False,
    )
    assert len(history["loss"]) == 1
    assert bool(traced) == fused
