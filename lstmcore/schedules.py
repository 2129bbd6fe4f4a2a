"""Learning-rate schedules as pure functions of the step, with warmup joined to a decay.

A schedule is a callable ``step -> learning rate``. It accepts a Python number or a scalar
tensor (the optimizer's ``iterations``) and returns a float32 tensor, so the same function
works eagerly and inside ``tf.function``. Warmup followed by decay is two schedules joined at
a boundary (as in optax): :func:`join` evaluates the second one at ``step - boundary``.
:func:`as_keras_schedule` adapts any of them to ``keras.optimizers.schedules.LearningRateSchedule``
so that a Keras optimizer reads it from its own ``iterations``, the single step counter.

Convention (the same as optax and the Hugging Face Trainer): the update made at step ``s``
(``s = 0`` for the first update) uses ``schedule(s)``. A linear warmup of ``W`` steps from 0 to
``peak`` therefore gives 0 at step 0 and ``peak`` at step ``W``; a decay ending at
``total_steps`` reaches its end value at step ``total_steps`` and stays there.
"""

from __future__ import annotations

import math
from typing import Callable, Union

import keras
import tensorflow as tf

Schedule = Callable[[Union[int, float, tf.Tensor]], tf.Tensor]

DECAYS = ("constant", "linear", "cosine", "exponential", "inverse_sqrt")
WARMUPS = ("linear", "exponential")


def _as_step(step) -> tf.Tensor:
    return tf.cast(step, tf.float32)


def constant(value: float) -> Schedule:
    """Returns a schedule that is ``value`` at every step.

    Args:
      value: the learning rate.

    Returns:
      A schedule ``step -> value``.
    """

    def schedule(step):
        del step
        return tf.constant(value, tf.float32)

    return schedule


def linear(init_value: float, end_value: float, transition_steps: int) -> Schedule:
    """Returns a linear interpolation from ``init_value`` to ``end_value``, then constant.

    ``lr(s) = init + (end - init) * min(s, N) / N`` with ``N = transition_steps``;
    ``N = 0`` gives ``end_value`` at every step.

    Args:
      init_value: value at step 0.
      end_value: value at step ``transition_steps`` and after.
      transition_steps: number of steps of the transition, ``>= 0``.

    Returns:
      A schedule.
    """

    def schedule(step):
        if transition_steps <= 0:
            return tf.constant(end_value, tf.float32)
        fraction = tf.clip_by_value(_as_step(step) / float(transition_steps), 0.0, 1.0)
        return tf.constant(init_value, tf.float32) + (end_value - init_value) * fraction

    return schedule


def exponential(init_value: float, end_value: float, transition_steps: int) -> Schedule:
    """Returns a geometric interpolation from ``init_value`` to ``end_value``, then constant.

    ``lr(s) = init * (end / init) ** (min(s, N) / N)``; both values must be positive.

    Args:
      init_value: value at step 0, ``> 0``.
      end_value: value at step ``transition_steps`` and after, ``> 0``.
      transition_steps: number of steps of the transition, ``>= 0``.

    Returns:
      A schedule.

    Raises:
      ValueError: if a value is not positive.
    """
    if init_value <= 0 or end_value <= 0:
        raise ValueError(
            "exponential schedules need positive start and end values; "
            f"got init_value={init_value}, end_value={end_value}"
        )

    def schedule(step):
        if transition_steps <= 0:
            return tf.constant(end_value, tf.float32)
        fraction = tf.clip_by_value(_as_step(step) / float(transition_steps), 0.0, 1.0)
        return init_value * tf.pow(tf.constant(end_value / init_value, tf.float32), fraction)

    return schedule


def cosine_decay(init_value: float, decay_steps: int, end_value: float = 0.0) -> Schedule:
    """Returns a half-cosine decay from ``init_value`` to ``end_value`` over ``decay_steps``.

    ``lr(s) = end + (init - end) * (1 + cos(pi * min(s, N) / N)) / 2``.

    Args:
      init_value: value at step 0.
      decay_steps: number of steps of the decay, ``>= 0``.
      end_value: value at step ``decay_steps`` and after.

    Returns:
      A schedule.

    References:
      Loshchilov & Hutter, SGDR: Stochastic Gradient Descent with Warm Restarts, 2017.
    """

    def schedule(step):
        if decay_steps <= 0:
            return tf.constant(end_value, tf.float32)
        fraction = tf.clip_by_value(_as_step(step) / float(decay_steps), 0.0, 1.0)
        cosine = 0.5 * (1.0 + tf.cos(math.pi * fraction))
        return end_value + (init_value - end_value) * cosine

    return schedule


def inverse_sqrt(init_value: float, offset_steps: int) -> Schedule:
    """Returns ``init * sqrt(K / (s + K))`` with ``K = max(offset_steps, 1)``.

    Joined after a warmup of ``W`` steps with ``offset_steps = W`` this is the schedule of
    Vaswani et al.: ``peak * sqrt(W / step)`` counted from the start of the run.

    Args:
      init_value: value at step 0.
      offset_steps: the ``K`` above, usually the warmup length.

    Returns:
      A schedule.

    References:
      Vaswani et al., Attention Is All You Need, 2017, section 5.3.
    """
    offset = float(max(offset_steps, 1))

    def schedule(step):
        return init_value * tf.sqrt(offset / (tf.maximum(_as_step(step), 0.0) + offset))

    return schedule


def join(schedules: list[Schedule], boundaries: list[int]) -> Schedule:
    """Joins schedules at step boundaries; each restarts its count at its boundary.

    ``join([a, b], [W])(s)`` is ``a(s)`` for ``s < W`` and ``b(s - W)`` for ``s >= W``,
    as ``optax.join_schedules``.

    Args:
      schedules: ``n`` schedules.
      boundaries: ``n - 1`` increasing steps.

    Returns:
      A schedule.
    """
    if len(boundaries) != len(schedules) - 1:
        raise ValueError(
            f"join needs one boundary fewer than schedules; got {len(schedules)} schedules "
            f"and {len(boundaries)} boundaries"
        )

    def schedule(step):
        step = _as_step(step)
        value = schedules[0](step)
        for boundary, later in zip(boundaries, schedules[1:]):
            value = tf.where(step < float(boundary), value, later(step - float(boundary)))
        return value

    return schedule


def _keras_schedule_as_function(schedule) -> Schedule:
    def function(step):
        return tf.cast(schedule(tf.cast(step, tf.float32)), tf.float32)

    return function


def warmup_schedule(
    peak_value: float | keras.optimizers.schedules.LearningRateSchedule,
    *,
    total_steps: int,
    warmup_steps: int | None = None,
    warmup_fraction: float | None = None,
    warmup: str = "linear",
    decay: str | keras.optimizers.schedules.LearningRateSchedule | Callable = "constant",
    init_value: float | None = None,
    end_value: float | None = None,
) -> Schedule:
    """Returns a warmup from ``init_value`` to the peak joined to a decay to ``end_value``.

    Over steps ``[0, W)`` the rate rises from ``init_value`` to ``peak`` (linearly or
    geometrically); at step ``W`` it is exactly ``peak``; from there the decay runs over the
    remaining ``total_steps - W`` steps (``total_steps`` includes the warmup) and reaches
    ``end_value`` at ``total_steps``. A Keras ``LearningRateSchedule`` or any ``step -> lr``
    callable may be given as ``decay`` (it is evaluated at ``step - W``; the peak is then its
    value at 0) or as ``peak_value`` with ``decay="constant"`` (same meaning).

    Args:
      peak_value: the learning rate reached at the end of warmup, or a schedule.
      total_steps: the length of the run in optimizer steps, warmup included.
      warmup_steps: warmup length in steps; give this or ``warmup_fraction``, or neither
        for no warmup.
      warmup_fraction: warmup length as a fraction of ``total_steps``, in ``[0, 1)``.
      warmup: ``"linear"`` or ``"exponential"``.
      decay: one of ``"constant"``, ``"linear"``, ``"cosine"``, ``"exponential"``,
        ``"inverse_sqrt"``, a Keras ``LearningRateSchedule`` or a callable.
      init_value: the rate at step 0; default 0 for a linear warmup, ``peak / 1000`` for an
        exponential one.
      end_value: the rate at ``total_steps``; default 0 for linear and cosine decay,
        ``peak / 100`` for exponential decay.

    Returns:
      A schedule ``step -> learning rate``.

    Raises:
      ValueError: for a warmup longer than the run, an unknown warmup or decay, negative or
        non-finite values, or both ``warmup_steps`` and ``warmup_fraction``.
    """
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps <= 0:
        raise ValueError(f"total_steps must be a positive integer; got {total_steps!r}")
    if warmup_steps is not None and warmup_fraction is not None:
        raise ValueError(
            "give warmup_steps or warmup_fraction, not both; "
            f"got warmup_steps={warmup_steps}, warmup_fraction={warmup_fraction}"
        )
    if warmup_fraction is not None:
        if not 0.0 <= float(warmup_fraction) < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1); got {warmup_fraction!r}")
        warmup_steps = int(round(float(warmup_fraction) * total_steps))
    warmup_steps = 0 if warmup_steps is None else warmup_steps
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be a non-negative integer; got {warmup_steps!r}")
    if warmup_steps > total_steps:
        raise ValueError(
            f"warmup_steps ({warmup_steps}) is longer than the run (total_steps={total_steps}); "
            "total_steps includes the warmup, so use warmup_steps <= total_steps"
        )
    if warmup not in WARMUPS:
        raise ValueError(f"warmup must be one of {WARMUPS}; got {warmup!r}")

    if isinstance(peak_value, keras.optimizers.schedules.LearningRateSchedule) or callable(
        peak_value
    ):
        if decay != "constant":
            raise ValueError(
                "peak_value is already a schedule; pass decay='constant' (the default) or a "
                f"number as peak_value; got decay={decay!r}"
            )
        decay, peak_value = peak_value, None

    decay_steps = total_steps - warmup_steps
    if isinstance(decay, str):
        if decay not in DECAYS:
            raise ValueError(
                f"decay must be one of {DECAYS}, a keras LearningRateSchedule or a callable; "
                f"got {decay!r}"
            )
        peak = _check_rate("peak_value", peak_value)
        if decay == "constant":
            after = constant(peak)
        elif decay == "linear":
            after = linear(peak, _check_rate("end_value", end_value or 0.0), decay_steps)
        elif decay == "cosine":
            after = cosine_decay(peak, decay_steps, _check_rate("end_value", end_value or 0.0))
        elif decay == "exponential":
            end = peak / 100.0 if end_value is None else _check_rate("end_value", end_value)
            after = exponential(peak, end, decay_steps)
        else:
            after = inverse_sqrt(peak, warmup_steps)
    else:
        if isinstance(decay, keras.optimizers.schedules.LearningRateSchedule):
            after = _keras_schedule_as_function(decay)
        elif callable(decay):
            after = decay
        else:
            raise ValueError(
                f"decay must be one of {DECAYS}, a keras LearningRateSchedule or a callable; "
                f"got {decay!r}"
            )
        peak = _check_rate("the decay schedule's value at step 0", float(after(0)))

    if warmup_steps == 0:
        return after
    if warmup == "linear":
        start = 0.0 if init_value is None else _check_rate("init_value", init_value)
        ramp = linear(start, peak, warmup_steps)
    else:
        start = peak / 1000.0 if init_value is None else _check_rate("init_value", init_value)
        ramp = exponential(start, peak, warmup_steps)
    return join([ramp, after], [warmup_steps])


def _check_rate(name: str, value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number >= 0; got {value!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
    return value


@keras.saving.register_keras_serializable(package="lstmcore")
class KerasSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A ``step -> lr`` function seen by a Keras optimizer as a ``LearningRateSchedule``.

    The optimizer calls it with its own ``iterations``, so the schedule, the logged learning
    rate and the checkpointed step share one counter.
    """

    def __init__(self, schedule: Schedule, config: dict | None = None):
        self.schedule = schedule
        self.config = dict(config or {})

    def __call__(self, step):
        return self.schedule(step)

    def get_config(self):
        # A function cannot be serialised; the description of it can, and is what a saved
        # model records. Reloading a model for inference needs no schedule.
        return {"description": self.config}

    @classmethod
    def from_config(cls, config):
        return cls(constant(0.0), config.get("description"))


def as_keras_schedule(schedule: Schedule, config: dict | None = None) -> KerasSchedule:
    """Adapts a ``step -> lr`` function to ``keras.optimizers.schedules.LearningRateSchedule``.

    Args:
      schedule: the function.
      config: a JSON-serialisable description, kept for ``get_config``.

    Returns:
      A ``KerasSchedule``.
    """
    return KerasSchedule(schedule, config)
