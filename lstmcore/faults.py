"""Non-finite steps: what to tell the user when they keep coming, and never checkpointing them.

The compiled step already refuses to apply a step whose loss or gradient norm is not finite
(:mod:`lstmcore.step`); this module is the host side of that policy.
"""

from __future__ import annotations

import tensorflow as tf

FAULT_NAMES = ((1, "loss"), (2, "gradients"), (4, "inputs"), (8, "targets"))


class NonFiniteError(RuntimeError):
    """Training stopped because steps kept producing non-finite values."""


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


def check_consecutive_skips(values, state, limit) -> None:
    for step, skipped, fault in zip(values["step"], values["skipped"], values["fault"]):
        if skipped:
            state["consecutive"] += 1
            if state["first_skip"] is None:
                state["first_skip"] = (int(step), int(fault))
            if state["consecutive"] >= limit:
                first_step, first_fault = state["first_skip"]
                what = ", ".join(name for bit, name in FAULT_NAMES if first_fault & bit) or "loss"
                raise NonFiniteError(
                    f"{state['consecutive']} consecutive steps were not finite, from step "
                    f"{first_step} (batch number {first_step} of this run's data) to step {int(step)}; "
                    f"not finite: {what}. No update was applied on those steps. Check the data "
                    "for NaN/Inf, lower the learning rate, or clip gradients"
                )
        else:
            state["consecutive"], state["first_skip"] = 0, None
