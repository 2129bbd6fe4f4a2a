"""What a forecaster predicts: the level, the change from the last value, or a per-window scale.

A trending series scaled with training statistics runs out of the training range in
validation; the tanh gates saturate and the output sticks near the largest value seen. Two
target forms from the forecasting literature avoid that, each as a pair of Keras layers
inside the model, so the saved model maps input windows to levels and nothing else has to
remember how to undo it:

- "level": the model predicts the target itself (no layers added).
- "change": the model predicts the change from the last observed value of each target
  column; `AddLastValue` adds that value back (a model that outputs 0 is persistence).
- "window_norm": reversible instance normalisation (Kim et al. 2022): `WindowNormalize`
  scales each window's inputs by the window's own mean and standard deviation per feature,
  and `WindowDenormalize` maps the outputs back with the statistics of the target column.

The loss is computed on the level in every form: for "change" it equals the loss on the
change, and the losses of every form compare directly with the naive baselines.

References:
  Kim, Kim, Tae, Park, Choi and Choo, "Reversible Instance Normalization for Accurate
  Time-Series Forecasting against Distribution Shift", ICLR 2022.
"""

from __future__ import annotations

import keras
from keras import ops

TARGET_MODES = ("level", "change", "window_norm")
EPSILON = 1e-5  # added to the window variance, as in RevIN


def check_target_mode(target_mode: str, *, flag: str = "target_mode") -> str:
    """Returns `target_mode` if it is one of `TARGET_MODES`; ValueError naming `flag` if not."""
    if not isinstance(target_mode, str) or target_mode not in TARGET_MODES:
        raise ValueError(f"{flag} must be one of {TARGET_MODES}; got {target_mode!r}")
    return target_mode


def window_statistics(inputs, features: list[int]):
    """Per-window mean and standard deviation over time of the chosen input features.

    Args:
      inputs: `[B, T, F]` windows.
      features: indices of the features to describe.

    Returns:
      `(mean, std)`, each `[B, len(features)]`, `std = sqrt(var + EPSILON)`.
    """
    chosen = ops.take(inputs, features, axis=2)
    mean = ops.mean(chosen, axis=1)
    std = ops.sqrt(ops.var(chosen, axis=1) + EPSILON)
    return mean, std


def normalize_windows(inputs):
    """Each window `[B, T, F]` scaled by its own per-feature mean and std over time."""
    mean = ops.mean(inputs, axis=1, keepdims=True)
    std = ops.sqrt(ops.var(inputs, axis=1, keepdims=True) + EPSILON)
    return (inputs - mean) / std


def _per_step(values, horizon: int):
    # Target element k * C + c belongs to column c: repeat the C values once per step.
    return ops.tile(values, [1, horizon])


def to_target_form(inputs, targets, target_mode: str, target_features: list[int], horizon: int):
    """Maps level windows to what the network sees and predicts in a target form.

    Args:
      inputs: `[B, T, F]` input windows (levels).
      targets: `[B, horizon * C]` level targets.
      target_mode: one of `TARGET_MODES`.
      target_features: the input feature index of each of the C target columns.
      horizon: steps per window.

    Returns:
      `(inputs, targets)` in the form: unchanged for "level"; targets minus the last value
      for "change"; both scaled by the window's statistics for "window_norm".
    """
    if target_mode == "level":
        return inputs, targets
    if target_mode == "change":
        last = ops.take(inputs[:, -1, :], target_features, axis=1)
        return inputs, targets - _per_step(last, horizon)
    mean, std = window_statistics(inputs, target_features)
    scaled = (targets - _per_step(mean, horizon)) / _per_step(std, horizon)
    return normalize_windows(inputs), scaled


def from_target_form(outputs, inputs, target_mode: str, target_features: list[int], horizon: int):
    """Maps predictions in a target form back to levels, with the level input windows.

    Args:
      outputs: `[B, horizon * C]` predictions in the form.
      inputs: `[B, T, F]` the level input windows they were made from.
      target_mode, target_features, horizon: as in `to_target_form`.

    Returns:
      `[B, horizon * C]` levels.
    """
    if target_mode == "level":
        return outputs
    if target_mode == "change":
        last = ops.take(inputs[:, -1, :], target_features, axis=1)
        return outputs + ops.cast(_per_step(last, horizon), outputs.dtype)
    mean, std = window_statistics(inputs, target_features)
    mean = ops.cast(_per_step(mean, horizon), outputs.dtype)
    return outputs * ops.cast(_per_step(std, horizon), outputs.dtype) + mean


@keras.saving.register_keras_serializable(package="lstmcore")
class WindowNormalize(keras.layers.Layer):
    """Scales each window `[B, T, F]` by its own per-feature mean and std over time."""

    def call(self, inputs):
        return normalize_windows(inputs)


class _TargetLayer(keras.layers.Layer):
    """Maps outputs `[B, horizon * C]` back to levels with statistics of the input window."""

    target_mode = "level"

    def __init__(self, target_features: list[int], horizon: int, **kwargs):
        super().__init__(**kwargs)
        self.target_features = [int(i) for i in target_features]
        self.horizon = int(horizon)

    def get_config(self):
        return {
            **super().get_config(),
            "target_features": self.target_features,
            "horizon": self.horizon,
        }

    def call(self, outputs, inputs):
        return from_target_form(
            outputs, inputs, self.target_mode, self.target_features, self.horizon
        )


@keras.saving.register_keras_serializable(package="lstmcore")
class AddLastValue(_TargetLayer):
    """`outputs + last observed value` of each target column: the "change" target form."""

    target_mode = "change"


@keras.saving.register_keras_serializable(package="lstmcore")
class WindowDenormalize(_TargetLayer):
    """`outputs * std + mean` with the window statistics of each target column."""

    target_mode = "window_norm"


def wrap(body, inputs, target_mode: str, target_features: list[int] | None, horizon: int):
    """Applies a target form around `body` (a function from input tensor to output tensor).

    Args:
      body: builds the network, `[B, T, F] -> [B, horizon * C]`.
      inputs: the `keras.Input` tensor.
      target_mode: one of `TARGET_MODES`.
      target_features: input feature index of each target column (needed unless "level").
      horizon: steps predicted per window.

    Returns:
      The output tensor, in levels.
    """
    check_target_mode(target_mode)
    if target_mode == "level":
        return body(inputs)
    if not target_features:
        raise ValueError(
            f"target_mode={target_mode!r} needs each target column among the input features "
            f"(it reads the target's past from the window); include the target in the features "
            f"or use target_mode='level'"
        )
    if target_mode == "change":
        return AddLastValue(target_features, horizon, name="add_last_value")(body(inputs), inputs)
    normalized = WindowNormalize(name="window_normalize")(inputs)
    return WindowDenormalize(target_features, horizon, name="window_denormalize")(
        body(normalized), inputs
    )
