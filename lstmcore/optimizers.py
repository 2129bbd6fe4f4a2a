"""Optimizers by name (the registry and ``make``), and Adam/AdamW with a fused update.

Keras's Adam updates each variable with about a dozen separate element-wise operations, each
one a full pass over the variable in memory. Here the same arithmetic, term for term (Kingma
& Ba's algorithm 1 with the "epsilon hat" form Keras uses), is one XLA-compiled function per
update: it reads the gradient, the two moments and the variable once and returns the three
new values, which are assigned (its time against Keras's update, and inside a whole step,
is in ``benchmarks/results/throughput_cpu2core.md``).

They are drop-in subclasses: same constructor, same slot variables (checkpoints are
interchangeable with Keras's Adam and AdamW), same serialisation. AMSGrad and sparse
(``IndexedSlices``) gradients go through Keras's own update. ``lstmcore.train`` uses them for
``optimizer="fused_adam"`` and ``"fused_adamw"``; ``"adam"`` (the default) is Keras's own.
Inside a whole training step the gain was within noise for a large model and a loss for a
tiny one (one compiled launch per variable), so they are not the default; they are meant
for large models.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from lstmcore import _keras_compat
from lstmcore.config import Registry
from lstmcore.errors import ConfigError


@tf.function(jit_compile=True)
def _adam_values(variable, m, v, gradient, alpha, beta_1, beta_2, epsilon):
    gradient = tf.cast(gradient, variable.dtype)
    m = m + (gradient - m) * (1 - beta_1)
    v = v + (tf.square(gradient) - v) * (1 - beta_2)
    return variable - m * alpha / (tf.sqrt(v) + epsilon), m, v


def _read(variable) -> tf.Tensor:
    if isinstance(variable, keras.Variable):
        variable = variable.value
    return tf.convert_to_tensor(variable)


class _FusedAdamUpdate:
    """The fused ``update_step`` shared by :class:`Adam` and :class:`AdamW`."""

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        alpha = (
            tf.cast(learning_rate, dtype)
            * tf.sqrt(1 - tf.pow(beta_2, step))
            / (1 - tf.pow(beta_1, step))
        )
        epsilon = tf.cast(self.epsilon, dtype)
        m, v = _keras_compat.adam_slots(self, variable)
        # The new values come from one fused kernel and Keras assigns them (on every device
        # under a distribution strategy). The kernel takes values, not variables: a compiled
        # function traced with variable arguments keeps references to them across models.
        new_variable, new_m, new_v = _adam_values(
            _read(variable),
            _read(m),
            _read(v),
            gradient,
            alpha,
            beta_1,
            beta_2,
            epsilon,
        )
        self.assign(m, new_m)
        self.assign(v, new_v)
        self.assign(variable, new_variable)
        return None


@keras.saving.register_keras_serializable(package="lstmcore")
class Adam(_FusedAdamUpdate, keras.optimizers.Adam):
    """``keras.optimizers.Adam`` with a fused update (same arguments, same results)."""


@keras.saving.register_keras_serializable(package="lstmcore")
class AdamW(_FusedAdamUpdate, keras.optimizers.AdamW):
    """``keras.optimizers.AdamW`` with a fused update (weight decay is Keras's own step)."""


# Optimizer names -> factory(learning_rate) -> a Keras optimizer. Users register their own.
OPTIMIZERS = Registry("optimizer")


def _keras_optimizer(name: str):
    def factory(learning_rate):
        return keras.optimizers.get(
            {"class_name": name, "config": {"learning_rate": learning_rate}}
        )

    factory.__name__ = name
    return factory


for _name in ("adam", "adamw", "sgd", "rmsprop", "nadam"):
    OPTIMIZERS.register(_name)(_keras_optimizer(_name))
OPTIMIZERS.register("fused_adam")(Adam)
OPTIMIZERS.register("fused_adamw")(AdamW)

_KERAS_CLIPPING = ("clipnorm", "clipvalue", "global_clipnorm")


def make(optimizer, learning_rate) -> keras.optimizers.Optimizer:
    """The optimizer for ``train``'s ``optimizer`` option.

    Args:
      optimizer: a name in :data:`OPTIMIZERS` (``"adam"``, ``"adamw"``, ``"sgd"``,
        ``"rmsprop"``, ``"nadam"``, ``"fused_adam"``, ``"fused_adamw"``, or one registered by
        the user: ``OPTIMIZERS.register("name")(factory)``, ``factory(learning_rate)``), or a
        Keras optimizer (returned as is).
      learning_rate: a number or a ``LearningRateSchedule``, given to a named optimizer.

    Returns:
      A Keras optimizer.

    Raises:
      ConfigError: for an unknown name, or a Keras optimizer with its own ``clipnorm``,
        ``clipvalue`` or ``global_clipnorm`` (Keras clips each replica's gradients before
        they are aggregated and does not report the norm; lstmcore's ``clip`` does both).
    """
    if isinstance(optimizer, keras.optimizers.Optimizer):
        for option in _KERAS_CLIPPING:
            if getattr(optimizer, option, None) is not None:
                raise ConfigError(
                    f"optimizer has {option}={getattr(optimizer, option)}; use train(clip=..., "
                    "clip_norm=...) instead (Keras clips before cross-replica aggregation and "
                    "does not report the norm)"
                )
        return optimizer
    if not isinstance(optimizer, str):
        names = ", ".join(repr(name) for name in OPTIMIZERS.names())
        raise ConfigError(
            f"optimizer must be one of {names} or a Keras optimizer; got {optimizer!r}"
        )
    made = OPTIMIZERS.get(optimizer, option="optimizer")(learning_rate)
    if not isinstance(made, keras.optimizers.Optimizer):
        raise ConfigError(
            f"the factory registered as optimizer={optimizer!r} returned {made!r}, not a Keras "
            "optimizer"
        )
    return make(made, learning_rate)
