"""Every use of a Keras private in lstmcore, in one place.

Keras does not promise these names. Each is used here only, with the public fallback where
one exists, and ``KERAS_TESTED`` bounds the versions the test suite was run against
(``tests/test_keras_compat.py`` checks the installed Keras against it).
"""

from __future__ import annotations

import keras
import tensorflow as tf

# The Keras versions the test suite was run against: ``low <= installed < high``. ``high`` is
# the minor release after the newest tested (3.15.1); setup.py's ``keras`` bound is the same.
KERAS_TESTED = ((3, 13, 2), (3, 16))


def keras_version() -> tuple[int, ...]:
    """The installed Keras's version as integers (``"3.15.1"`` -> ``(3, 15, 1)``)."""
    parts = []
    for part in keras.__version__.split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def keras_is_tested() -> bool:
    """Whether the installed Keras lies inside :data:`KERAS_TESTED`."""
    low, high = KERAS_TESTED
    return low <= keras_version() < high


def flatten_layers(model, *, include_self: bool = False) -> list:
    """Every layer inside ``model`` (nested models and wrappers' inner layers), in order.

    Keras's private ``Layer._flatten_layers`` is the only walk that reaches layers held in
    attributes (a wrapper's inner layer, a cell); ``model.layers`` is the public fallback.
    """
    walk = getattr(model, "_flatten_layers", None)
    if walk is not None:
        return list(walk(include_self=include_self, recursive=True))
    found = [model] if include_self else []
    for layer in getattr(model, "layers", []):
        found.extend(flatten_layers(layer, include_self=True))
    return found


def optimizer_learning_rate(optimizer):
    """The optimizer's learning rate as given: a variable, or a schedule object.

    ``optimizer.learning_rate`` evaluates a schedule at the current step; the schedule object
    itself is only kept in Keras's private ``_learning_rate``.
    """
    return getattr(optimizer, "_learning_rate", None)


def set_untracked(obj, name: str, value) -> None:
    """Sets ``obj.name = value`` past Keras's (and TensorFlow's) attribute tracking.

    ``Layer.__setattr__`` tracks what it is given (a model's ``optimizer`` would join the
    model's checkpoint); lstmcore hands Keras callbacks its optimizer as ``model.optimizer``
    for the length of a run only, so it must not change what the model saves.
    """
    object.__setattr__(obj, name, value)


def adam_slots(optimizer, variable) -> tuple:
    """The first and second moment slot variables Keras's Adam keeps for ``variable``.

    Keras's ``Adam``/``AdamW`` hold them in the private lists ``_momentums`` and
    ``_velocities``, indexed by the private ``_get_variable_index``; the fused update
    (:mod:`lstmcore.optimizers`) reads and assigns them in place of Keras's own update.
    """
    index = optimizer._get_variable_index(variable)
    return optimizer._momentums[index], optimizer._velocities[index]


def keras_cudnn_blockers(layer) -> list[str]:
    """Why Keras's ``LSTM``/``GRU`` layer will not take its cuDNN path (empty: it will, on a GPU).

    Keras decides in private code (``keras/src/layers/rnn/lstm.py``'s ``inner_loop`` and
    ``keras/src/backend/tensorflow/rnn.py``'s ``cudnn_ok``): ``use_cudnn`` not False, no
    recurrent dropout, tanh and sigmoid activations, ``unroll=False``, a bias, and for a GRU
    ``reset_after=True``. This repeats that rule, with reasons a user can act on;
    ``tests/test_keras_compat.py`` checks it against Keras's own private functions.
    """
    cell = layer.cell
    reasons = []
    if layer.use_cudnn is False:
        reasons.append("use_cudnn=False")
    if getattr(cell, "recurrent_dropout", 0):
        reasons.append(f"recurrent_dropout={cell.recurrent_dropout} (cuDNN has none)")
    if not _is(cell.activation, keras.activations.tanh, tf.tanh, keras.ops.tanh):
        name = getattr(cell.activation, "__name__", cell.activation)
        reasons.append(f"activation={name} (needs tanh)")
    if not _is(cell.recurrent_activation, keras.activations.sigmoid, tf.sigmoid, keras.ops.sigmoid):
        name = getattr(cell.recurrent_activation, "__name__", cell.recurrent_activation)
        reasons.append(f"recurrent_activation={name} (needs sigmoid)")
    if layer.unroll:
        reasons.append("unroll=True")
    if not cell.use_bias:
        reasons.append("use_bias=False")
    if isinstance(layer, keras.layers.GRU) and not cell.reset_after:
        reasons.append("reset_after=False")
    return reasons


def _is(function, *candidates) -> bool:
    return any(function is c for c in candidates)
