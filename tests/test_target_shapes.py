import keras
import numpy as np
import pytest
import tensorflow as tf

import lstmcore
from lstmcore import probes

STEPS, FEATURES = 10, 2


def windows(samples=160, seed=0):
    return np.random.default_rng(seed).normal(size=(samples, STEPS, FEATURES)).astype(np.float32)


def running_mean(x):
    # Per-step target: the mean of the inputs so far (causal, predictable, not a copy).
    return np.cumsum(x, axis=1) / np.arange(1, x.shape[1] + 1)[None, :, None]


def case(shape):
    keras.utils.set_random_seed(0)
    x = windows()
    inputs = keras.Input((STEPS, FEATURES))
    if shape == "[N]":
        y = x.sum(axis=(1, 2)) / 4
        out = keras.layers.Dense(1)(keras.layers.LSTM(8)(inputs))
    elif shape == "[N, K]":
        y = x.sum(axis=1) / 3
        out = keras.layers.Dense(FEATURES)(keras.layers.LSTM(8)(inputs))
    elif shape == "[N, H, K]":
        y = np.stack([x[:, :4].sum(axis=1), x[:, 4:].sum(axis=1), x.mean(axis=1)], axis=1) / 2
        out = keras.layers.Reshape((3, FEATURES))(
            keras.layers.Dense(3 * FEATURES)(keras.layers.LSTM(8)(inputs))
        )
    else:  # "[N, T, C]": return_sequences=True and Dense(C), C = 3
        mean = running_mean(x)
        first = mean[..., :1] + 0.5 * mean[..., 1:]  # never one input's copy, even at step 0
        y = np.concatenate([first, mean[..., :1] - mean[..., 1:], first**2], axis=-1)
        out = keras.layers.Dense(3)(keras.layers.LSTM(8, return_sequences=True)(inputs))
    return keras.Model(inputs, out), x, y.astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["[N]", "[N, K]", "[N, H, K]", "[N, T, C]"])
def test_train_and_diagnose_accept_the_target_shape(shape):
    model, x, y = case(shape)
    history = lstmcore.train(
        model,
        (x[:120], y[:120]),
        validation_data=(x[120:], y[120:]),
        steps=80,
        learning_rate=1e-2,
        probe_every=40,
        progress=False,
    )
    assert [f["code"] for f in history.findings] == [], history.findings
    assert np.isfinite(history.probes["loss"]).all()
    assert history.baselines["model"] is not None
    findings = lstmcore.diagnose(
        history, model=model, data=(x[:120], y[:120]), validation_data=(x[120:], y[120:])
    )
    assert [f.code for f in findings] == [f["code"] for f in history.findings]


def test_probe_loss_keeps_the_per_step_layout_of_flattened_targets():
    keras.utils.set_random_seed(1)
    x = windows(32)
    labels = np.random.default_rng(1).integers(0, 3, size=(32, STEPS))
    one_hot = np.eye(3, dtype=np.float32)[labels]
    model = keras.Sequential(
        [
            keras.Input((STEPS, FEATURES)),
            keras.layers.LSTM(4, return_sequences=True),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    expected = float(
        tf.reduce_mean(keras.losses.categorical_crossentropy(one_hot, model(x, training=False)))
    )
    values = probes.make_probes(model, x, one_hot.reshape(32, -1), "categorical_crossentropy")()
    assert values["loss"] == pytest.approx(expected, rel=1e-5)
    assert values["baseline/mean_loss"] < 1.2  # per step: about ln 3 = 1.10, not T times it


def test_match_shape_leaves_sparse_labels_alone():
    labels = tf.zeros([4, 1])
    scores = tf.zeros([4, 3])
    assert probes.match_shape(labels, scores) is labels
    flat = tf.zeros([4, 6])
    assert probes.match_shape(flat, tf.zeros([4, 2, 3])).shape == (4, 2, 3)


def test_baselines_score_a_per_step_cross_entropy_per_step():
    from lstmcore import baselines

    keras.utils.set_random_seed(2)
    x = windows(32)
    one_hot = np.eye(3, dtype=np.float32)[np.random.default_rng(2).integers(0, 3, (32, STEPS))]
    model = keras.Sequential(
        [
            keras.Input((STEPS, FEATURES)),
            keras.layers.LSTM(4, return_sequences=True),
            keras.layers.Dense(3, activation="sigmoid"),
        ]
    )
    expected = float(
        tf.reduce_mean(keras.losses.categorical_crossentropy(one_hot, model(x, training=False)))
    )
    result = baselines.score(model, x, one_hot, "categorical_crossentropy", data_report=None)
    assert result["model"] == pytest.approx(expected, rel=1e-2)  # not T = 10 times it
    assert result["mean"] < 1.2  # about ln 3 per step, not T times it
