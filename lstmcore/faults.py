"""Non-finite steps: stop, restore or skip past when they keep coming; never checkpoint them.

The compiled step already refuses to apply a step whose loss or gradient norm is not finite
(:mod:`lstmcore.step`); this module is the host side of that policy.
"""

from __future__ import annotations

import os

import tensorflow as tf

FAULT_NAMES = ((1, "loss"), (2, "gradients"), (4, "inputs"), (8, "targets"))
DATA_FAULTS = 4 | 8
MAX_RECOVERIES = 3


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


def check_consecutive_skips(values, state, limit, policy=None) -> None:
    """Raises ``NonFiniteError`` after ``limit`` skipped steps in a row, unless ``policy`` skips past.

    Args:
      values: fetched per-step values (``step``, ``skipped``, ``fault``).
      state: the loop's running count (``consecutive``, ``first_skip``), updated.
      limit: ``max_consecutive_skips``.
      policy: a :class:`NonFinitePolicy`, or None to always raise.
    """
    for step, skipped, fault in zip(values["step"], values["skipped"], values["fault"]):
        if skipped:
            state["consecutive"] += 1
            if state["first_skip"] is None:
                state["first_skip"] = (int(step), int(fault))
            if state["consecutive"] >= limit:
                first_step, first_fault = state["first_skip"]
                what = ", ".join(name for bit, name in FAULT_NAMES if first_fault & bit) or "loss"
                state["consecutive"], state["first_skip"] = 0, None
                error = NonFiniteError(
                    f"{limit} consecutive steps were not finite, from step "
                    f"{first_step} (batch number {first_step} of this run's data) to step {int(step)}; "
                    f"not finite: {what}. No update was applied on those steps. Check the data "
                    "for NaN/Inf, lower the learning rate, or clip gradients",
                    steps=(first_step, int(step)),
                    fault=first_fault,
                )
                if policy is None:
                    raise error
                policy.skip_past(error)
        else:
            state["consecutive"], state["first_skip"] = 0, None


class NonFinitePolicy:
    """What ``on_nonfinite`` does when non-finite steps keep coming: stop, restore or skip past.

    ``"restore"`` reloads the last checkpoint and halves the learning rate. It skips past the
    batches instead (training goes on from the step after them; nothing was applied on them,
    so the weights are those of the last finite step) when restoring cannot help: when the
    data of those steps holds NaN or Inf, or when the same steps come out non-finite again
    right after a restore (the batches, not the learning rate, are the cause). Skipping past
    needs ``skip_nonfinite=True``. At most ``MAX_RECOVERIES`` restores and skips in all; then
    the error says what was tried.

    Args:
      on_nonfinite: ``"stop"`` or ``"restore"``.
      skip_nonfinite: whether the step holds back non-finite updates.
      progress: print each recovery.
    """

    def __init__(self, on_nonfinite: str, *, skip_nonfinite: bool, progress: bool):
        self.on_nonfinite = on_nonfinite
        self.skip_nonfinite = skip_nonfinite
        self.progress = progress
        self.tried: list[str] = []
        self._restored_after: tuple[int, int] | None = None

    def skip_past(self, error: NonFiniteError) -> None:
        """Returns when the steps of ``error`` are to be skipped past; raises it otherwise."""
        if self.on_nonfinite != "restore" or not self.skip_nonfinite or error.steps is None:
            raise error
        data_fault = bool(error.fault & DATA_FAULTS)
        if not data_fault and error.steps != self._restored_after:
            raise error
        self._give_up_if_spent(error)
        first, last = error.steps
        why = "their data holds NaN or Inf" if data_fault else "they failed again after a restore"
        self.tried.append(f"skipped past steps {first} to {last} ({why})")
        self._restored_after = None
        if self.progress:
            print(f"\nlstmcore: non-finite steps {first} to {last}; {why}: skipped past them")

    def restore(self, error: NonFiniteError, checkpoints, restore_and_halve) -> None:
        """Restores the last checkpoint through ``restore_and_halve()``; raises when it cannot."""
        if self.on_nonfinite != "restore":
            raise error
        self._give_up_if_spent(error)
        if checkpoints is None or checkpoints.latest is None:
            raise NonFiniteError(
                f"{error}. on_nonfinite='restore' had no checkpoint to restore yet"
                + self._history(),
                steps=error.steps,
                fault=error.fault,
            ) from None
        path = restore_and_halve()
        after = (
            f" after non-finite steps {error.steps[0]} to {error.steps[1]}" if error.steps else ""
        )
        self.tried.append(f"restored {os.path.basename(path)}{after}, learning rate halved")
        self._restored_after = error.steps
        if self.progress:
            print(f"\nlstmcore: {self.tried[-1]}")

    def _give_up_if_spent(self, error: NonFiniteError) -> None:
        if len(self.tried) >= MAX_RECOVERIES:
            raise NonFiniteError(
                f"{error}. on_nonfinite='restore' gave up after {len(self.tried)} recoveries"
                + self._history(),
                steps=error.steps,
                fault=error.fault,
            ) from None

    def _history(self) -> str:
        return (": " + "; ".join(self.tried)) if self.tried else ""
