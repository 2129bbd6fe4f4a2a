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
from collections.abc import Callable

import keras
import tensorflow as tf

from lstmcore import config
from lstmcore.config import Registry
from lstmcore.errors import ConfigError

Schedule = Callable[[int | float | tf.Tensor], tf.Tensor]

# What follows warmup: name -> factory(peak, *, decay_steps, warmup_steps, end_value) returning
# a schedule that starts at ``peak`` and is counted from the end of warmup. ``end_value`` is
# None when the user gave none (each factory has its default).
DECAYS = Registry("decay")
# The warmup: name -> factory(init_value or None, peak, warmup_steps) returning a schedule.
WARMUPS = Registry("warmup")


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


@DECAYS.register("constant")
def _constant_decay(peak, *, decay_steps, warmup_steps, end_value):
    return constant(peak)


@DECAYS.register("linear")
def _linear_decay(peak, *, decay_steps, warmup_steps, end_value):
    return linear(peak, end_value or 0.0, decay_steps)


@DECAYS.register("cosine")
def _cosine_decay(peak, *, decay_steps, warmup_steps, end_value):
    return cosine_decay(peak, decay_steps, end_value or 0.0)


@DECAYS.register("exponential")
def _exponential_decay(peak, *, decay_steps, warmup_steps, end_value):
    return exponential(peak, peak / 100.0 if end_value is None else end_value, decay_steps)


@DECAYS.register("inverse_sqrt")
def _inverse_sqrt_decay(peak, *, decay_steps, warmup_steps, end_value):
    return inverse_sqrt(peak, warmup_steps)


@WARMUPS.register("linear")
def _linear_warmup(init_value, peak, warmup_steps):
    return linear(0.0 if init_value is None else init_value, peak, warmup_steps)


@WARMUPS.register("exponential")
def _exponential_warmup(init_value, peak, warmup_steps):
    return exponential(peak / 1000.0 if init_value is None else init_value, peak, warmup_steps)


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
    total_steps = config.integer("total_steps", total_steps)
    if warmup_steps is not None and warmup_fraction is not None:
        raise ConfigError(
            "give warmup_steps or warmup_fraction, not both; "
            f"got warmup_steps={warmup_steps}, warmup_fraction={warmup_fraction}"
        )
    warmup_steps = _warmup_steps(total_steps, warmup_steps, warmup_fraction)
    warmup_factory = WARMUPS.get(warmup, option="warmup")

    if isinstance(peak_value, keras.optimizers.schedules.LearningRateSchedule) or callable(
        peak_value
    ):
        if decay != "constant":
            raise ConfigError(
                "peak_value is already a schedule; pass decay='constant' (the default) or a "
                f"number as peak_value; got decay={decay!r}"
            )
        decay, peak_value = peak_value, None

    if isinstance(decay, str):
        decay_factory = DECAYS.get(decay, option="decay")
        peak = _check_rate("peak_value", peak_value)
        end = None if end_value is None else _check_rate("end_value", end_value)
        after = decay_factory(
            peak, decay_steps=total_steps - warmup_steps, warmup_steps=warmup_steps, end_value=end
        )
    else:
        if isinstance(decay, keras.optimizers.schedules.LearningRateSchedule):
            after = _keras_schedule_as_function(decay)
        elif callable(decay):
            after = decay
        else:
            raise ConfigError(
                f"decay must be one of {_names(DECAYS)}, a keras LearningRateSchedule or a "
                f"callable; got {decay!r}"
            )
        peak = _check_rate("the decay schedule's value at step 0", float(after(0)))

    if warmup_steps == 0:
        return after
    start = None if init_value is None else _check_rate("init_value", init_value)
    return join([warmup_factory(start, peak, warmup_steps), after], [warmup_steps])


def _warmup_steps(total_steps: int, warmup_steps, warmup_fraction) -> int:
    if warmup_fraction is not None:
        fraction = config.number("warmup_fraction", warmup_fraction, minimum=0)
        if fraction >= 1.0:
            raise ConfigError(f"warmup_fraction must be in [0, 1); got {warmup_fraction!r}")
        warmup_steps = round(fraction * total_steps)
    warmup_steps = config.integer(
        "warmup_steps", 0 if warmup_steps is None else warmup_steps, minimum=0
    )
    if warmup_steps > total_steps:
        raise ConfigError(
            f"warmup_steps ({warmup_steps}) is longer than the run (total_steps={total_steps}); "
            "total_steps includes the warmup, so use warmup_steps <= total_steps"
        )
    return warmup_steps


def _check_rate(name: str, value) -> float:
    if isinstance(value, (tf.Tensor, tf.Variable)) and value.shape.rank == 0:
        value = float(value)
    return config.number(name, value, minimum=0)


def _names(registry) -> str:
    return ", ".join(repr(name) for name in registry.names())


@keras.saving.register_keras_serializable(package="lstmcore")
class KerasSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A ``step -> lr`` function seen by a Keras optimizer as a ``LearningRateSchedule``.

    The optimizer calls it with its own ``iterations``, so the schedule, the logged learning
    rate and the checkpointed step share one counter. A function cannot be serialised; its
    description (``config``) is. Prefer :func:`for_training`, whose schedules reload exactly.
    """

    def __init__(self, schedule: Schedule, config: dict | None = None):
        self.schedule = schedule
        self.config = dict(config or {})

    def __call__(self, step):
        return self.schedule(step)

    def get_config(self):
        return {"description": self.config}

    @classmethod
    def from_config(cls, config):
        # Earlier versions saved train()'s options as the description; rebuild the schedule
        # from them. Anything else cannot be rebuilt: training with it says so (it used to
        # train silently at rate 0); loading the model for inference still works.
        description = dict(config.get("description") or {})
        try:
            schedule = for_training(
                description["learning_rate"],
                total_steps=description["total_steps"],
                warmup_steps=description.get("warmup_steps"),
                warmup_fraction=description.get("warmup_fraction"),
                warmup=description.get("warmup", "linear"),
                decay=description.get("decay", "constant"),
                end_learning_rate=description.get("end_learning_rate"),
            )
        except (KeyError, ValueError):
            schedule = _unrebuildable(description)
        return cls(schedule, description)


def _unrebuildable(description: dict) -> Schedule:
    def schedule(step):
        raise ConfigError(
            "this optimizer's learning-rate schedule was saved as a plain function and cannot "
            f"be rebuilt (its description: {description}); compile the reloaded model with a "
            "new optimizer, or save schedules made by lstmcore.schedules.for_training"
        )

    return schedule


@keras.saving.register_keras_serializable(package="lstmcore")
class WarmupDecay(KerasSchedule):
    """A warmup joined to a decay, as a serialisable Keras ``LearningRateSchedule``.

    The rates are :func:`warmup_schedule`'s. A Keras optimizer calls it with its own
    ``iterations``, so the schedule, the logged learning rate and the checkpointed step share
    one counter. ``get_config`` records every option (a Keras schedule given as the rate or the
    decay is serialised inside it), so an optimizer reloaded from a saved model continues with
    the same rates. ``scale``, a ``tf.Variable`` multiplied into the rate (the non-finite
    "restore" policy halves it), is state of one run and is not serialised: a reloaded
    schedule has scale 1.

    Build it with :func:`for_training`. It is a :class:`KerasSchedule` (``schedule`` is its
    ``step -> lr`` function), so code that recognised lstmcore's schedules still does.
    """

    def __init__(
        self,
        learning_rate,
        total_steps: int,
        warmup_steps: int = 0,
        warmup: str = "linear",
        decay="constant",
        end_learning_rate: float | None = None,
        init_learning_rate: float | None = None,
        scale: tf.Variable | None = None,
    ):
        if isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
            pass
        else:
            learning_rate = _check_rate("learning_rate", learning_rate)
        if not isinstance(decay, (str, keras.optimizers.schedules.LearningRateSchedule)):
            raise ConfigError(
                f"decay must be one of {_names(DECAYS)} or a keras LearningRateSchedule (a "
                f"plain function cannot be saved with the model); got {decay!r}"
            )
        self.learning_rate = learning_rate
        self.total_steps = config.integer("total_steps", total_steps)
        self.warmup_steps = _warmup_steps(self.total_steps, warmup_steps, None)
        self.warmup = config.choice("warmup", warmup, WARMUPS.names())
        self.decay = decay.lower() if isinstance(decay, str) else decay
        self.end_learning_rate = end_learning_rate
        self.init_learning_rate = init_learning_rate
        self.scale = scale
        self.schedule = warmup_schedule(
            learning_rate,
            total_steps=self.total_steps,
            warmup_steps=self.warmup_steps,
            warmup=self.warmup,
            decay=self.decay,
            init_value=init_learning_rate,
            end_value=end_learning_rate,
        )

    @property
    def config(self) -> dict:
        return self.get_config()

    def __call__(self, step):
        rate = tf.cast(self.schedule(step), tf.float32)
        if self.scale is not None:
            rate = rate * tf.cast(self.scale, tf.float32)
        return rate

    def get_config(self):
        return {
            "learning_rate": _serialised(self.learning_rate),
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "warmup": self.warmup,
            "decay": _serialised(self.decay),
            "end_learning_rate": self.end_learning_rate,
            "init_learning_rate": self.init_learning_rate,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("learning_rate", "decay"):
            if isinstance(config.get(key), dict):
                config[key] = keras.optimizers.schedules.deserialize(config[key])
        return cls(**config)


def _serialised(value):
    if isinstance(value, keras.optimizers.schedules.LearningRateSchedule):
        return keras.optimizers.schedules.serialize(value)
    return value


def for_training(
    learning_rate,
    *,
    total_steps: int,
    warmup_steps: int | None = None,
    warmup_fraction: float | None = None,
    warmup: str = "linear",
    decay="constant",
    end_learning_rate: float | None = None,
    scale: tf.Variable | None = None,
) -> keras.optimizers.schedules.LearningRateSchedule:
    """The learning-rate schedule of a training run, as a serialisable Keras schedule.

    Over steps ``[0, W)`` the rate rises from 0 (linear warmup) or ``peak / 1000``
    (exponential) to ``learning_rate``; from step ``W`` the decay runs over the remaining
    ``total_steps - W`` steps. Warmups and decays are looked up in :data:`WARMUPS` and
    :data:`DECAYS` (users register their own there).

    Args:
      learning_rate: the peak rate (a number >= 0), or a Keras ``LearningRateSchedule``
        (then ``decay`` must be ``"constant"``; a warmup ramps to its value at step 0 and it
        runs from the end of warmup).
      total_steps: the length of the run in optimizer steps, warmup included.
      warmup_steps: warmup length in steps; or ``warmup_fraction`` of ``total_steps``.
      warmup_fraction: warmup length as a fraction of ``total_steps``, in ``[0, 1)``.
      warmup: a name in :data:`WARMUPS` (``"linear"``, ``"exponential"``).
      decay: a name in :data:`DECAYS` (``"constant"``, ``"linear"``, ``"cosine"``,
        ``"exponential"``, ``"inverse_sqrt"``) or a Keras ``LearningRateSchedule``.
      end_learning_rate: the rate at ``total_steps`` for decaying schedules.
      scale: an optional ``tf.Variable`` multiplied into the rate; not serialised.

    Returns:
      A :class:`WarmupDecay`.

    Raises:
      ConfigError: for any option that cannot work, naming it.
    """
    total_steps = config.integer("total_steps", total_steps)
    if warmup_steps is not None and warmup_fraction is not None:
        raise ConfigError(
            "give warmup_steps or warmup_fraction, not both; "
            f"got warmup_steps={warmup_steps}, warmup_fraction={warmup_fraction}"
        )
    if scale is not None and not isinstance(scale, tf.Variable):
        raise ConfigError(f"scale must be None or a tf.Variable; got {scale!r}")
    return WarmupDecay(
        learning_rate,
        total_steps=total_steps,
        warmup_steps=_warmup_steps(total_steps, warmup_steps, warmup_fraction),
        warmup=warmup,
        decay=decay,
        end_learning_rate=end_learning_rate,
        scale=scale,
    )


def as_keras_schedule(schedule: Schedule, config: dict | None = None) -> KerasSchedule:
    """Adapts a ``step -> lr`` function to ``keras.optimizers.schedules.LearningRateSchedule``.

    Args:
      schedule: the function.
      config: a JSON-serialisable description, kept for ``get_config``.

    Returns:
      A ``KerasSchedule``.
    """
    return KerasSchedule(schedule, config)
