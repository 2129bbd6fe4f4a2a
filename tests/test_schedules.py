import keras
import numpy as np
import pytest
import tensorflow as tf

from lstmcore import schedules


def values(schedule, steps, compiled):
    if compiled:
        function = tf.function(lambda s: schedule(s))
        return [float(function(tf.constant(s, tf.int64))) for s in steps]
    return [float(schedule(s)) for s in steps]


@pytest.mark.parametrize("compiled", [False, True])
def test_linear_warmup_is_exact_at_the_boundaries(compiled):
    schedule = schedules.warmup_schedule(0.1, total_steps=100, warmup_steps=10)
    assert values(schedule, [0, 5, 10, 11, 100, 150], compiled) == pytest.approx(
        [0.0, 0.05, 0.1, 0.1, 0.1, 0.1], abs=1e-7
    )


@pytest.mark.parametrize("compiled", [False, True])
def test_cosine_decay_reaches_peak_at_warmup_end_and_end_value_at_total(compiled):
    schedule = schedules.warmup_schedule(
        1.0, total_steps=110, warmup_steps=10, decay="cosine", end_value=0.2
    )
    got = values(schedule, [10, 60, 110, 200], compiled)
    assert got == pytest.approx([1.0, 0.6, 0.2, 0.2], abs=1e-6)


@pytest.mark.parametrize("compiled", [False, True])
def test_linear_decay_counts_warmup_inside_total_steps(compiled):
    schedule = schedules.warmup_schedule(2.0, total_steps=30, warmup_steps=10, decay="linear")
    assert values(schedule, [10, 20, 30], compiled) == pytest.approx([2.0, 1.0, 0.0], abs=1e-6)


@pytest.mark.parametrize("compiled", [False, True])
def test_exponential_warmup_and_decay_are_geometric(compiled):
    schedule = schedules.warmup_schedule(
        1.0,
        total_steps=20,
        warmup_steps=10,
        warmup="exponential",
        init_value=0.01,
        decay="exponential",
        end_value=0.01,
    )
    assert values(schedule, [0, 5, 10, 15, 20], compiled) == pytest.approx(
        [0.01, 0.1, 1.0, 0.1, 0.01], rel=1e-5
    )


def test_inverse_sqrt_halves_at_four_times_the_warmup():
    schedule = schedules.warmup_schedule(
        1.0, total_steps=1000, warmup_steps=100, decay="inverse_sqrt"
    )
    assert values(schedule, [100, 400], False) == pytest.approx([1.0, 0.5], rel=1e-6)


def test_warmup_fraction_is_a_share_of_total_steps():
    schedule = schedules.warmup_schedule(1.0, total_steps=200, warmup_fraction=0.1)
    assert values(schedule, [10, 20], False) == pytest.approx([0.5, 1.0])


def test_keras_schedule_as_decay_starts_after_warmup():
    decay = keras.optimizers.schedules.ExponentialDecay(0.5, decay_steps=10, decay_rate=0.5)
    schedule = schedules.warmup_schedule(0.0, total_steps=100, warmup_steps=4, decay=decay)
    assert values(schedule, [0, 2, 4, 14], False) == pytest.approx([0.0, 0.25, 0.5, 0.25])


def test_keras_optimizer_reads_the_schedule_from_its_iterations():
    schedule = schedules.warmup_schedule(1.0, total_steps=10, warmup_steps=4)
    optimizer = keras.optimizers.SGD(schedules.as_keras_schedule(schedule))
    variable = keras.Variable(np.zeros(2, np.float32))
    seen = []
    for _ in range(5):
        seen.append(float(optimizer.learning_rate))
        optimizer.apply([tf.ones(2)], [variable])
    assert seen == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert variable.numpy() == pytest.approx([-2.5, -2.5])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"total_steps": 10, "warmup_steps": 11}, "longer than the run"),
        ({"total_steps": 0}, "total_steps must be a positive integer"),
        ({"total_steps": 10, "warmup_steps": -1}, "warmup_steps must be an integer >= 0"),
        ({"total_steps": 10, "warmup_fraction": 1.5}, r"warmup_fraction must be in \[0, 1\)"),
        ({"total_steps": 10, "warmup_steps": 2, "warmup_fraction": 0.1}, "not both"),
        ({"total_steps": 10, "decay": "cosinus"}, "decay must be one of"),
        ({"total_steps": 10, "warmup": "quadratic"}, "warmup must be one of"),
    ],
)
def test_bad_schedule_options_raise_naming_the_option(kwargs, message):
    with pytest.raises(ValueError, match=message):
        schedules.warmup_schedule(0.1, **kwargs)


def test_negative_peak_is_refused():
    with pytest.raises(ValueError, match="peak_value must be a finite number >= 0; got -1"):
        schedules.warmup_schedule(-1.0, total_steps=10)
