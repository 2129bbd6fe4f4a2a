"""Non-finite steps: the error that stops training, and the check that keeps them out of checkpoints.

The compiled step refuses to apply a step whose loss or gradient norm is not finite
(:mod:`lstmcore.step`); :class:`lstmcore.actions.NonFinitePolicy` decides what happens when
such steps keep coming (stop, restore or skip past).
"""

from __future__ import annotations

import tensorflow as tf

FAULT_NAMES = ((1, "loss"), (2, "gradients"), (4, "inputs"), (8, "targets"))
DATA_FAULTS = 4 | 8


class NonFiniteError(RuntimeError):
    """Training stopped because steps kept producing non-finite values.

    Attributes:
      steps: ``(first, last)`` step of the run of non-finite steps, or None when the weights
        themselves were found non-finite.
      fault: the fault bits of the first of those steps (:data:`FAULT_NAMES`).
    """

    def __init__(self, message: str, *, steps: tuple[int, int] | None = None, fault: int = 0):
        super().__init__(message)
        self.steps = steps
        self.fault = fault


def save_if_finite(checkpoints, step, model, optimizer) -> None:
    """Saves a checkpoint unless a weight or optimizer slot is not finite (then raises)."""
    bad = [
        v.path
        for v in [*model.weights, *optimizer.variables]
        if v.value.dtype.is_floating and not bool(tf.reduce_all(tf.math.is_finite(v.value)))
    ]
    if bad:
        raise NonFiniteError(
            f"at step {step} these variables hold NaN or Inf: {', '.join(bad[:5])}"
            f"{' ...' if len(bad) > 5 else ''}; no checkpoint was written (the last one, "
            f"{checkpoints.latest}, is finite). Lower the learning rate or clip gradients"
        )
    checkpoints.save(step)
