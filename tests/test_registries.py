"""Clippers, schedules and optimizers: the objects, their registries, and extension from outside.

Everything registered here is registered the way a user would, from outside the package,
and then used through ``lstmcore.train`` without editing lstmcore.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import lstmcore
from lstmcore import clipping, optimizers, schedules
from lstmcore.errors import ConfigError


def make_model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((6, 3)), keras.layers.LSTM(4, name="lstm"), keras.layers.Dense(2)]
    )


def make_data(n=32):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 6, 3)).astype(np.float32), rng.normal(size=(n, 2)).astype(np.float32)


def train(model, **kwargs):
    options = {"steps": 4, "batch_size": 8, "logdir": None, "progress": False, "check": False}
    options.update(kwargs)
    return lstmcore.train(model, make_data(), **options)


def variables_3_4():
    return [tf.Variable([1.0], name="kernel"), tf.Variable([1.0], name="recurrent_kernel")]


# --- clippers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "clipper, expected",
    [
        (clipping.GlobalNorm(1.0), [0.6, 0.8]),
        (clipping.PerVariable(1.0), [1.0, 1.0]),
        (clipping.Value(2.0), [2.0, 2.0]),
        (clipping.Adaptive(1.0), [1.0, 1.0]),
    ],
)
def test_each_clipper_clips_three_four_and_reports_the_norms(clipper, expected):
    grads = [tf.constant([3.0]), tf.constant([4.0])]
    clipped, stats = clipper(grads, variables_3_4())
    np.testing.assert_allclose(np.concatenate([g.numpy() for g in clipped]), expected, rtol=1e-6)
    assert float(stats["grad_norm_before_clip"]) == pytest.approx(5.0)
    assert float(stats["grad_norm_after_clip"]) == pytest.approx(np.linalg.norm(expected))
    assert float(stats["clipped"]) == 1.0
    assert {type(v) for v in stats.values()} <= {tf.Tensor, type(tf.constant(0.0))}
    assert all(v.dtype == tf.float32 and v.shape == () for v in stats.values())
    json.dumps(clipper.get_config())


def test_per_group_partitions_by_path_pattern_first_match_wins():
    clipper = clipping.PerGroup(
        {"recurrent": clipping.GlobalNorm(0.5), "kernel": clipping.Value(10.0)},
        default=None,
    )
    grads = [tf.constant([3.0]), tf.constant([4.0])]
    clipped, stats = clipper(grads, variables_3_4())
    # "kernel" takes kernel (value clip at 10: unchanged); "recurrent" took recurrent_kernel.
    np.testing.assert_allclose([float(clipped[0][0]), float(clipped[1][0])], [3.0, 0.5])
    assert float(stats["grad_norm_after_clip"]) == pytest.approx(np.hypot(3.0, 0.5))
    assert float(stats["clipped"]) == 1.0
    assert json.loads(json.dumps(clipper.get_config()))["groups"]["recurrent"] == {
        "name": "global_norm",
        "max_norm": 0.5,
    }


def test_per_group_check_names_a_pattern_that_matches_nothing():
    clipper = clipping.get("global_norm", 1.0, {"no_such_weight": 0.5})
    with pytest.raises(ConfigError, match=r"\['no_such_weight'\] match no trainable variable"):
        clipper.check(variables_3_4())


def test_get_accepts_names_none_and_objects_and_refuses_the_rest():
    own = clipping.Value(0.1)
    assert clipping.get(own) is own
    assert isinstance(clipping.get("GLOBAL_NORM", 2.0), clipping.GlobalNorm)
    assert clipping.get("global_norm", 2.0).max_norm == 2.0
    _, stats = clipping.get(None)([tf.constant([3.0, 4.0])], [tf.Variable([0.0, 0.0])])
    assert float(stats["clipped"]) == 0.0 and float(stats["grad_norm_after_clip"]) == 5.0
    with pytest.raises(ConfigError, match="clip must be one of 'global_norm'"):
        clipping.get("norm")
    with pytest.raises(ConfigError, match="clip_norm must be a finite number > 0; got 0"):
        clipping.get("value", np.float32(0.0))
    with pytest.raises(ConfigError, match="wrap it yourself"):
        clipping.get(own, clip_groups={"kernel": 1.0})
    assert clipping.get("value", np.float64(0.5)).max_value == 0.5  # NumPy scalars accepted


class ZeroRecurrent(clipping.Clipper):
    """A user's clipper: zeroes the recurrent kernel's gradient, keeps the others."""

    name = "zero_recurrent"

    def __init__(self, threshold=1.0):
        self.threshold = threshold

    def clip(self, grads, variables, squared_norms):
        out = [
            tf.zeros_like(g) if "recurrent_kernel" in v.path else g
            for g, v in zip(grads, variables)
        ]
        return out, None, tf.constant(True)


@pytest.fixture
def registered():
    """Registers a user's clipper, decay and optimizer; removes them afterwards."""
    made = []

    def momentum_sgd(learning_rate):
        made.append(keras.optimizers.SGD(learning_rate, momentum=0.5))
        return made[-1]

    def halve_midway(peak, *, decay_steps, warmup_steps, end_value):
        return lambda step: tf.where(tf.cast(step, tf.float32) < decay_steps / 2, peak, peak / 2)

    clipping.CLIPPERS.register("zero_recurrent")(ZeroRecurrent)
    schedules.DECAYS.register("halve_midway")(halve_midway)
    optimizers.OPTIMIZERS.register("momentum_sgd")(momentum_sgd)
    yield made
    del clipping.CLIPPERS._entries["zero_recurrent"]
    del schedules.DECAYS._entries["halve_midway"]
    del optimizers.OPTIMIZERS._entries["momentum_sgd"]


def recurrent_kernel(model):
    return next(v for v in model.trainable_variables if "recurrent_kernel" in v.path).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("how", ["name", "object"])
def test_a_users_clipper_works_in_train(registered, how):
    model = make_model()
    before, kernel_before = recurrent_kernel(model), model.layers[1].kernel.numpy()
    clip = "zero_recurrent" if how == "name" else ZeroRecurrent()
    history = train(model, clip=clip, learning_rate=0.1)
    np.testing.assert_array_equal(recurrent_kernel(model), before)
    assert not np.array_equal(model.layers[1].kernel.numpy(), kernel_before)
    assert list(history["clipped"]) == [1.0] * 4


@pytest.mark.slow
def test_a_users_decay_and_optimizer_work_in_train(registered):
    history = train(
        make_model(), optimizer="momentum_sgd", learning_rate=0.2, decay="halve_midway", steps=8
    )
    np.testing.assert_allclose(history["learning_rate"], [0.2] * 4 + [0.1] * 4, rtol=1e-6)
    assert len(registered) == 1 and int(registered[0].iterations.numpy()) == 8


@pytest.mark.slow
def test_train_accepts_a_keras_schedule_as_learning_rate():
    rate = keras.optimizers.schedules.PiecewiseConstantDecay([1], [0.3, 0.03])
    history = train(make_model(), learning_rate=rate, steps=3)
    np.testing.assert_allclose(history["learning_rate"], [0.3, 0.3, 0.03], rtol=1e-6)


# --- schedules --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"warmup_steps": 4, "decay": "cosine", "end_learning_rate": 0.01},
        {"warmup_fraction": 0.25, "warmup": "exponential", "decay": "exponential"},
        {"decay": keras.optimizers.schedules.ExponentialDecay(0.5, 4, 0.5), "warmup_steps": 2},
    ],
)
def test_for_training_round_trips_through_keras_serialisation(options):
    learning_rate = 0.0 if "decay" in options and not isinstance(options["decay"], str) else 0.5
    schedule = schedules.for_training(learning_rate, total_steps=16, **options)
    config = keras.saving.serialize_keras_object(schedule)
    again = keras.saving.deserialize_keras_object(json.loads(json.dumps(config)))
    steps = [0, 1, 2, 4, 8, 15, 16, 40]
    np.testing.assert_allclose(
        [float(again(s)) for s in steps], [float(schedule(s)) for s in steps], rtol=1e-6
    )
    assert float(schedule(8)) > 0


def test_for_training_scale_multiplies_and_is_not_saved():
    scale = tf.Variable(0.5)
    schedule = schedules.for_training(0.4, total_steps=10, scale=scale)
    assert float(schedule(3)) == pytest.approx(0.2)
    again = schedules.WarmupDecay.from_config(schedule.get_config())
    assert float(again(3)) == pytest.approx(0.4)


def test_for_training_accepts_numpy_scalars_and_refuses_bad_options():
    schedule = schedules.for_training(
        np.float32(0.5), total_steps=np.int64(10), warmup_steps=np.int64(5)
    )
    assert float(schedule(5)) == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="decay must be one of 'constant'"):
        schedules.for_training(0.1, total_steps=10, decay="cosinus")
    with pytest.raises(ConfigError, match="plain function cannot be saved"):
        schedules.for_training(0.1, total_steps=10, decay=lambda s: 0.1)


@pytest.mark.slow
def test_a_reloaded_model_trains_on_at_the_scheduled_rate(tmp_path):
    # The bug this guards: the schedule reloaded from a saved model was a constant 0.0.
    model = make_model()
    schedule = schedules.for_training(0.1, total_steps=20, warmup_steps=4, decay="linear")
    model.compile(optimizer=optimizers.make("fused_adam", schedule), loss="mse")
    x, y = make_data(16)
    model.fit(x, y, batch_size=8, epochs=3, verbose=0)  # 6 steps
    path = str(tmp_path / "model.keras")
    model.save(path)
    again = keras.saving.load_model(path)
    assert int(again.optimizer.iterations.numpy()) == 6
    assert float(again.optimizer.learning_rate) == pytest.approx(float(schedule(6)))
    assert float(again.optimizer.learning_rate) > 0
    before = again.get_weights()
    again.fit(x, y, batch_size=8, epochs=1, verbose=0)  # steps 6 and 7
    assert int(again.optimizer.iterations.numpy()) == 8
    assert float(again.optimizer.learning_rate) == pytest.approx(float(schedule(8)))
    assert any(not np.array_equal(a, b) for a, b in zip(before, again.get_weights()))


def test_an_earlier_keras_schedule_reloads_from_its_description():
    description = {"learning_rate": 0.1, "total_steps": 10, "warmup_steps": 2, "decay": "linear"}
    old = schedules.KerasSchedule(schedules.constant(0.1), description)
    again = schedules.KerasSchedule.from_config(old.get_config())
    assert float(again(2)) == pytest.approx(0.1)
    assert float(again(6)) == pytest.approx(0.05)
    unknown = schedules.KerasSchedule.from_config({"description": {"note": "a function"}})
    with pytest.raises(ConfigError, match="cannot be rebuilt"):
        unknown(0)


# --- optimizers -------------------------------------------------------------------------


def test_make_looks_up_names_and_refuses_keras_clipping():
    assert type(optimizers.make("fused_adamw", 0.1)) is optimizers.AdamW
    assert type(optimizers.make("SGD", 0.1)) is keras.optimizers.SGD
    own = keras.optimizers.RMSprop(0.1)
    assert optimizers.make(own, None) is own
    with pytest.raises(ConfigError, match="optimizer must be one of 'adam'"):
        optimizers.make("adagrad_typo", 0.1)
    with pytest.raises(ConfigError, match="clipnorm=1.0"):
        optimizers.make(keras.optimizers.Adam(clipnorm=1.0), None)
    assert set(optimizers.OPTIMIZERS.names()) >= {
        "adam",
        "adamw",
        "sgd",
        "rmsprop",
        "nadam",
        "fused_adam",
        "fused_adamw",
    }
