"""Every use of a Keras private in lstmcore, in one place.

Keras does not promise these names. Each is used here only, with the public fallback where
one exists, and ``KERAS_TESTED`` bounds the versions the test suite was run against
(``tests/test_keras_compat.py`` checks the installed Keras against it).
"""

from __future__ import annotations


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
