"""Probes: cheap measurements of a model on a small fixed batch, for logging and diagnosis.

`make_probes(model, inputs, targets, loss_fn)` returns a callable `probes(step)` that runs
one compiled computation (traced once) on the probe batch and returns
`{name: float | 1-D np.ndarray}`: floats are meant for TensorBoard scalars under
`probe/<name>`, 1-D arrays are profiles over the time steps of the input window.

What is measured:

- Gradient flow over time: `input_grad` ([T]) is ||dL/dx_t|| over batch and features, taken
  with a `GradientTape` on the inputs, so it works through every kernel (cuDNN included).
  `memory_horizon` is how many of the most recent steps keep that gradient above
  `horizon_fraction` of its value at the last step.
- Inside the first LSTM layer (`keras.layers.LSTM` or `lstmcore.layers.LSTM`), through the
  reference unroll (`lstmcore.kernels.reference_lstm`) with the layer's current weights:
  gate and tanh saturation, mean forget gate and its memory time scale, dead units, cell-state
  norm growth, and ||dL/dh_t||, ||dL/dc_t|| ([T] each, from zero probe tensors added to the
  states).
- Output collapse: prediction spread relative to the targets', the share of distinct
  predictions, and baseline losses (the training-target mean, persistence, zeroed inputs).

Also here: `memory_horizon`, `memory_time_scale`, `saturation_share`, `baseline_loss` and
`initial_loss_check`, small pure functions usable on their own (the last before training).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from lstmcore.kernels import reference_lstm

SIGMOID_SATURATION = 0.99  # a sigmoid above 0.99 or below 0.01 passes ~1% of its gradient
TANH_SATURATION = 0.99  # |tanh| above 0.99 passes < 2% of its gradient
DEAD_UNIT_LEVEL = 1e-3  # |h| below this for every sample and step: the unit carries nothing
HORIZON_FRACTION = 0.01
DISTINCT_RESOLUTION = 0.01  # predictions closer than 1% of the target std count as one value


# --------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------


def memory_horizon(profile, fraction: float = HORIZON_FRACTION) -> int:
    """The number of most recent steps over which a gradient profile stays above `fraction`.

    With `g = profile` (`g[T-1]` the last step), the horizon is the largest `k` such that
    `g[T-j] >= fraction * g[T-1]` for every `j = 1 .. k`. A model reading only the last step
    has horizon 1; one whose gradient never falls below `fraction` of its last-step value has
    horizon `T`. An all-zero profile (no gradient reaches the inputs) has horizon 0.

    Args:
      profile: `[T]` non-negative gradient norms per time step.
      fraction: the threshold relative to the last step's value, in (0, 1].

    Returns:
      The horizon, an int in `0 .. T`.

    Raises:
      ValueError: for a profile that is not 1-D and non-empty, or a fraction outside (0, 1].
    """
    g = np.asarray(profile, dtype=np.float64)
    if g.ndim != 1 or g.size == 0:
        raise ValueError(f"profile must be a non-empty 1-D array [time]; got shape {g.shape}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1]; got {fraction!r}")
    if not np.any(g > 0):
        return 0
    below = g[::-1] < fraction * g[-1]
    return int(np.argmax(below)) if below.any() else int(g.size)


def memory_time_scale(forget_mean: float) -> float:
    """The time scale implied by a mean forget gate: `tau = -1 / ln(f)`.

    A cell state multiplied by `f` every step decays as `f**t = exp(-t / tau)`, so information
    halves every `tau * ln 2` steps. `f = 0.5` gives 1.44 steps, `f = 0.99` about 99.5.

    Args:
      forget_mean: the mean forget-gate activation, in [0, 1].

    Returns:
      `tau` in steps: 0 for `f = 0`, infinity for `f = 1`.

    Raises:
      ValueError: for `forget_mean` outside [0, 1].

    References:
      Tallec & Ollivier, "Can recurrent neural networks warp time?", ICLR 2018 (chrono init).
    """
    f = float(forget_mean)
    if not 0.0 <= f <= 1.0:
        raise ValueError(f"forget_mean must be in [0, 1]; got {forget_mean!r}")
    if f == 0.0:
        return 0.0
    if f == 1.0:
        return math.inf
    return -1.0 / math.log(f)


def saturation_share(values, kind: str) -> float:
    """The share of activations in the flat part of a sigmoid or tanh.

    Sigmoid: `v > 0.99` or `v < 0.01`. Tanh: `|v| > 0.99`.

    Args:
      values: activations (any shape), already passed through the nonlinearity.
      kind: "sigmoid" or "tanh".

    Returns:
      The share in [0, 1] (0 for an empty array).

    Raises:
      ValueError: for an unknown kind.
    """
    v = np.asarray(values, dtype=np.float64)
    if kind == "sigmoid":
        flat = (v > SIGMOID_SATURATION) | (v < 1.0 - SIGMOID_SATURATION)
    elif kind == "tanh":
        flat = np.abs(v) > TANH_SATURATION
    else:
        raise ValueError(f"kind must be 'sigmoid' or 'tanh'; got {kind!r}")
    return float(flat.mean()) if flat.size else 0.0


def as_loss_fn(loss, *, name: str = "loss_fn") -> Callable:
    """A Keras loss name or callable, as a callable; ValueError names ``name`` and what is accepted."""
    if callable(loss):
        return loss
    try:
        return keras.losses.get(loss)
    except (ValueError, TypeError):
        raise ValueError(
            f"{name} must be a Keras loss name (e.g. 'mse', 'mae', 'huber') or a callable "
            f"(targets, predictions) -> per-sample losses; got {loss!r}"
        ) from None


def mean_loss(loss_fn, targets, predictions) -> tf.Tensor:
    """The batch mean of `loss_fn(targets, predictions)`, as float32.

    Targets flattened to `[B, K]` (as the diagnosis keeps them) are given back the
    predictions' per-sample shape when the sizes agree (`[B, T * C]` -> `[B, T, C]`), so that
    a loss over the last axis (cross-entropy per step) sees the model's own layout.
    """
    targets = match_shape(targets, predictions)
    return tf.reduce_mean(tf.cast(loss_fn(targets, predictions), tf.float32))


def match_shape(targets, predictions):
    """`targets` reshaped to `predictions`' per-sample shape when both hold as many values.

    Args:
      targets: `[B, ...]` a tensor or array.
      predictions: `[B, ...]` a tensor or array with a fully known per-sample shape.

    Returns:
      `targets` as it was when the per-sample shapes already agree, when their sizes differ
      (sparse labels `[B]` against class scores `[B, C]`), or when a shape is unknown;
      otherwise a `tf.Tensor` `[B, *predictions.shape[1:]]`.
    """
    t_shape = tuple(getattr(targets, "shape", np.shape(targets)))
    p_shape = tuple(getattr(predictions, "shape", np.shape(predictions)))
    if len(t_shape) < 1 or len(p_shape) < 1 or t_shape[1:] == p_shape[1:]:
        return targets
    tail = p_shape[1:]
    if any(d is None for d in tail) or any(d is None for d in t_shape[1:]):
        return targets
    if int(np.prod(t_shape[1:], dtype=np.int64)) != int(np.prod(tail, dtype=np.int64)):
        return targets
    return tf.reshape(targets, [-1, *[int(d) for d in tail]])


def targets_like(targets, output_shape) -> np.ndarray:
    """NumPy `targets` `[N, ...]` in the model's per-sample output shape when the sizes agree.

    Args:
      targets: `[N, ...]` targets (e.g. flattened to `[N, K]`).
      output_shape: the model's output shape `[B, ...]` (the batch entry is ignored).

    Returns:
      `[N, *output_shape[1:]]`, or the targets unchanged (with `[N]` as `[N, 1]`) when the
      sizes differ (sparse labels) or the shape is not fully known.
    """
    y = np.asarray(targets)
    if y.ndim == 1:
        y = y[:, None]
    tail = tuple(output_shape)[1:]
    if (
        not tail
        or any(d is None for d in tail)
        or int(np.prod(tail, dtype=np.int64)) != int(np.prod(y.shape[1:], dtype=np.int64))
    ):
        return y
    return y.reshape((len(y), *[int(d) for d in tail]))


def baseline_loss(targets, loss_fn="mse", *, constant=None) -> float:
    """The loss of predicting one constant for every sample: the "collapsed model" level.

    For MSE with `constant = mean(targets)` this is the target variance, the loss a model that
    outputs the mean gets, and roughly what a well-initialised model should start near.

    Args:
      targets: `[N, ...]` targets.
      loss_fn: a Keras loss name or callable `(targets, predictions) -> per-sample losses`.
      constant: the prediction, broadcast to `targets[0]`'s shape; None uses the per-element
        mean of `targets`.

    Returns:
      The mean loss, a float.
    """
    y = np.asarray(targets, dtype=np.float32)
    if y.ndim == 1:
        y = y[:, None]
    value = y.mean(axis=0) if constant is None else np.asarray(constant, np.float32)
    predictions = np.broadcast_to(value, y.shape).astype(np.float32)
    return float(mean_loss(as_loss_fn(loss_fn), tf.constant(y), tf.constant(predictions)))


def initial_loss_check(model, inputs, targets, loss_fn="mse") -> dict[str, float]:
    """Compares the model's loss before training with the loss it should start near.

    A well-initialised regression model predicts values near the targets' mean, so its first
    loss is close to `baseline_loss(targets)` (the target variance for MSE). A first loss many
    times larger means unnormalised targets or inputs, or an output scale that is off.

    Args:
      model: a Keras model mapping `[N, T, F]` to predictions shaped like `targets`.
      inputs: `[N, T, F]` inputs.
      targets: `[N, ...]` targets.
      loss_fn: a Keras loss name or callable.

    Returns:
      `{"loss": the model's loss, "expected": baseline_loss(targets), "ratio": loss/expected}`
      (`ratio` is infinite when `expected` is 0).
    """
    fn = as_loss_fn(loss_fn)
    x = np.asarray(inputs, dtype=np.float32)
    predictions = model(x, training=False)
    y = targets_like(np.asarray(targets, dtype=np.float32), predictions.shape)
    loss = float(mean_loss(fn, tf.constant(y), predictions))
    expected = baseline_loss(y, fn)
    return {
        "loss": loss,
        "expected": expected,
        "ratio": loss / expected if expected > 0 else math.inf,
    }


# --------------------------------------------------------------------------------------------
# The model's first LSTM, its input and what follows it
# --------------------------------------------------------------------------------------------


def find_lstm(model) -> keras.layers.Layer | None:
    """The first top-level LSTM layer of `model` (Keras's or lstmcore's), or None."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.LSTM) or (
            type(layer).__name__ == "LSTM" and type(layer).__module__.startswith("lstmcore")
        ):
            return layer
    return None


def lstm_weights(layer) -> tuple:
    """`(kernel [F, 4H], recurrent_kernel [H, 4H], bias [4H] | None)` variables of an LSTM."""
    by_name = {v.name.split("/")[-1].split(":")[0]: v for v in layer.weights}
    return by_name["kernel"], by_name["recurrent_kernel"], by_name.get("bias")


def unsupported_reason(layer) -> str | None:
    """Why the reference unroll cannot reproduce `layer` (None when it can)."""
    config = layer.get_config()
    for key, expected in (("activation", "tanh"), ("recurrent_activation", "sigmoid")):
        value = config.get(key, expected)
        if value != expected:
            return f"{key}={value!r} (the reference unroll uses {expected})"
    for key in ("go_backwards", "stateful", "return_state"):
        if config.get(key):
            return f"{key}=True"
    return None


def split_at(model, layer):
    """Returns `(before, after)`: callables for the part of `model` up to and after `layer`.

    Sequential models are split by their layer list; functional models by sub-models from
    the model's inputs to `layer.input` and from `layer.output` to the outputs.

    Raises:
      ValueError: when the model cannot be split there (a layer used twice, a branch that
        bypasses `layer`).
    """
    if isinstance(model, keras.Sequential):
        layers = list(model.layers)
        index = layers.index(layer)

        def run(part, x):
            for item in part:
                x = item(x, training=False)
            return x

        return (lambda x: run(layers[:index], x)), (lambda h: run(layers[index + 1 :], h))
    try:
        before = keras.Model(model.inputs, layer.input)
        after = keras.Model(layer.output, model.outputs)
    except Exception as error:  # noqa: BLE001 - Keras's message says what is in the way
        raise ValueError(f"model cannot be split at layer {layer.name!r}: {error}") from None
    return (lambda x: before(x, training=False)), (lambda h: after(h, training=False))


# --------------------------------------------------------------------------------------------
# make_probes
# --------------------------------------------------------------------------------------------


def _check_batch(inputs, targets):
    x = np.asarray(inputs, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"inputs must be 3-D [batch, time, features]; got shape {x.shape}")
    y = np.asarray(targets, dtype=np.float32)
    if y.ndim == 1:
        y = y[:, None]
    if y.shape[0] != x.shape[0]:
        raise ValueError(
            f"targets must have one row per input sample ({x.shape[0]}); got shape {y.shape}"
        )
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("inputs and targets of the probe batch must be finite; got NaN or Inf")
    return x, y


def make_probes(
    model: keras.Model,
    inputs,
    targets,
    loss_fn,
    *,
    train_targets=None,
    last_input_values=None,
    horizon_fraction: float = HORIZON_FRACTION,
) -> Callable[[int | None], dict]:
    """Builds the probes of `model` on a fixed batch; call the result every k training steps.

    The returned `probes(step=None)` runs one compiled function (traced on the first call
    only: it takes no arguments, the batch is a constant) doing a forward and backward pass
    through the model, one through the reference unroll of the first LSTM and one forward
    pass with zeroed inputs, and returns:

    - `loss`: the model's loss on the probe batch.
    - `input_grad` `[T]`: `||dL/dx_t||` (norm over batch and features) per input step.
    - `memory_horizon`: `memory_horizon(input_grad, horizon_fraction)`, in steps.
    - `prediction_std_ratio`: mean over outputs of std(predictions) / mean of std(targets)
      (std over the batch); near 0 when the model predicts the same value for every input.
    - `distinct_predictions`: share of probe samples whose predictions, rounded to 1% of the
      target std, differ from every other sample's.
    - `baseline/mean_loss`: loss of predicting the training-target mean (the probe targets'
      mean without `train_targets`, an optimistic baseline); `loss_to_mean_baseline`: `loss`
      divided by it.
    - `baseline/persistence_loss`: loss of predicting `last_input_values` (only when given).
    - `baseline/zero_input_loss`: the model's loss with every input set to 0.
    - For the first LSTM layer `L` (when there is one the reference unroll reproduces):
      `L/saturation/{input_gate, forget_gate, output_gate, candidate, cell_tanh}` (shares, see
      `saturation_share`), `L/forget_gate_mean`, `L/memory_time_scale` (`memory_time_scale`
      of it), `L/dead_units` (share of units with `|h| < 1e-3` at every sample and step),
      `L/cell_norm_growth` (`||c_T|| / ||c_1||`), and profiles `L/h_grad`, `L/c_grad` `[T]`
      (`||dL/dh_t||`, `||dL/dc_t||`).

    The callable has attributes `lstm_layer` (the probed layer's name or None) and `notes`
    (why LSTM probes were skipped, if they were).

    Args:
      model: a built Keras model mapping `[B, T, F]` to predictions shaped like `targets`.
      inputs: `[B, T, F]` probe inputs (a few dozen samples is plenty).
      targets: `[B, K]` (or `[B]`, or any `[B, ...]` the model predicts) probe targets.
      loss_fn: a Keras loss name or callable `(targets, predictions) -> per-sample losses`.
      train_targets: training targets `[N, ...]`, for the mean baseline.
      last_input_values: `[B, ...]` the last observed value of each target (persistence
        forecast), shaped like `targets`; None skips the persistence baseline.
      horizon_fraction: the threshold of `memory_horizon`.

    Returns:
      `probes(step=None) -> dict[str, float | np.ndarray]`.

    Raises:
      ValueError: for a batch of the wrong shape or non-finite values, or
        `last_input_values` not shaped like `targets`.
    """
    fn = as_loss_fn(loss_fn)
    x, y = _check_batch(inputs, targets)
    # Targets in the model's own per-step layout ([B, T * C] -> [B, T, C]), so that the
    # baselines and the loss see what training saw.
    y = targets_like(y, model(x[:1], training=False).shape).astype(np.float32)
    if train_targets is not None:
        mean_target = (
            np.asarray(train_targets, np.float32).reshape((-1,) + y.shape[1:]).mean(axis=0)
        )
    else:
        mean_target = y.mean(axis=0)
    persistence = None
    if last_input_values is not None:
        persistence = np.asarray(last_input_values, np.float32)
        if persistence.ndim == 1:
            persistence = persistence[:, None]
        if persistence.size == y.size:
            persistence = persistence.reshape(y.shape)
        if persistence.shape != y.shape:
            raise ValueError(
                f"last_input_values must be shaped like targets {y.shape}; got {persistence.shape}"
            )
    target_std = y.std(axis=0)

    layer = find_lstm(model)
    notes = []
    parts = None
    if layer is None:
        notes.append("no LSTM layer at the top level of the model; LSTM probes skipped")
    elif unsupported_reason(layer):
        notes.append(f"layer {layer.name!r}: {unsupported_reason(layer)}; LSTM probes skipped")
    else:
        try:
            parts = split_at(model, layer)
        except ValueError as error:
            notes.append(f"{error}; LSTM probes skipped")

    x_const = tf.constant(x)
    y_const = tf.constant(y)
    mean_const = tf.constant(np.broadcast_to(mean_target, y.shape).astype(np.float32))

    @tf.function
    def compute():
        with tf.GradientTape() as tape:
            tape.watch(x_const)
            predictions = model(x_const, training=False)
            loss = mean_loss(fn, y_const, predictions)
        input_grad = tape.gradient(loss, x_const)
        out = {
            "loss": loss,
            "predictions": predictions,
            "input_grad": tf.sqrt(tf.reduce_sum(tf.square(input_grad), axis=[0, 2])),
            "baseline/mean_loss": mean_loss(fn, y_const, mean_const),
            "baseline/zero_input_loss": mean_loss(
                fn, y_const, model(tf.zeros_like(x_const), training=False)
            ),
        }
        if persistence is not None:
            out["baseline/persistence_loss"] = mean_loss(fn, y_const, tf.constant(persistence))
        if parts is not None:
            out.update(_lstm_internals(layer, parts, x_const, y_const, fn))
        return out

    name = None if parts is None else layer.name

    def probes(step: int | None = None) -> dict:
        del step  # the values do not depend on it; the caller logs them at that step
        values = {key: value.numpy() for key, value in compute().items()}
        return _summarise(values, name, target_std, horizon_fraction)

    probes.lstm_layer = name
    probes.notes = notes
    probes.compiled = compute
    return probes


def _lstm_internals(layer, parts, x, y, fn) -> dict:
    before, after = parts
    kernel, recurrent_kernel, bias = lstm_weights(layer)
    lstm_inputs = tf.cast(before(x), kernel.dtype)
    batch, time = tf.shape(lstm_inputs)[0], tf.shape(lstm_inputs)[1]
    zeros = tf.zeros(tf.stack([batch, time, layer.units]), kernel.dtype)
    h_probe, c_probe = tf.identity(zeros), tf.identity(zeros)
    with tf.GradientTape() as tape:
        tape.watch([h_probe, c_probe])
        outputs, _, internals = reference_lstm(
            lstm_inputs,
            kernel,
            recurrent_kernel,
            bias,
            return_sequences=layer.return_sequences,
            return_internals=True,
            h_probe=h_probe,
            c_probe=c_probe,
        )
        loss = mean_loss(fn, y, after(outputs))
    h_grad, c_grad = tape.gradient(loss, [h_probe, c_probe])

    def profile(g):
        return tf.sqrt(tf.reduce_sum(tf.square(g), axis=[0, 2]))

    return {
        "lstm/input_gate": internals.input_gate,
        "lstm/forget_gate": internals.forget_gate,
        "lstm/output_gate": internals.output_gate,
        "lstm/candidate": internals.candidate,
        "lstm/cell": internals.cell,
        "lstm/hidden": internals.hidden,
        "lstm/h_grad": profile(h_grad),
        "lstm/c_grad": profile(c_grad),
    }


def _summarise(values: dict, layer_name, target_std, horizon_fraction) -> dict:
    predictions = values.pop("predictions")
    out = {
        "loss": float(values["loss"]),
        "input_grad": values["input_grad"].astype(np.float32),
        "memory_horizon": float(memory_horizon(values["input_grad"], horizon_fraction)),
        "baseline/mean_loss": float(values["baseline/mean_loss"]),
        "baseline/zero_input_loss": float(values["baseline/zero_input_loss"]),
    }
    out.update(prediction_spread(predictions, target_std))
    mean_loss = out["baseline/mean_loss"]
    out["loss_to_mean_baseline"] = out["loss"] / mean_loss if mean_loss > 0 else math.inf
    if "baseline/persistence_loss" in values:
        out["baseline/persistence_loss"] = float(values["baseline/persistence_loss"])
    if layer_name is not None:
        out.update(lstm_summary(values, layer_name))
    return out


def prediction_spread(predictions, target_std) -> dict[str, float]:
    """How far predictions are from "the same value for every input".

    Args:
      predictions: `[B, ...]` predictions for B samples.
      target_std: `[...]` the targets' standard deviation over the batch, per output.

    Returns:
      `{"prediction_std_ratio": mean_k std(pred[:, k]) / mean_k target_std[k],
      "distinct_predictions": share of samples whose prediction row, rounded to
      `DISTINCT_RESOLUTION * target_std`, is unique in the batch}`.
    """
    p = np.asarray(predictions, np.float64).reshape(len(predictions), -1)
    s = np.asarray(target_std, np.float64).reshape(-1)
    scale = float(s.mean())
    ratio = float(p.std(axis=0).mean() / scale) if scale > 0 else math.nan
    resolution = np.where(s > 0, s, 1.0) * DISTINCT_RESOLUTION
    rounded = np.round(p / resolution).astype(np.int64)
    _, counts = np.unique(rounded, axis=0, return_counts=True)
    distinct = float((counts == 1).sum() / len(p))
    return {"prediction_std_ratio": ratio, "distinct_predictions": distinct}


def lstm_summary(values: dict, layer_name: str) -> dict:
    """Turns the gates and states of a reference unroll into the LSTM probe values.

    Args:
      values: NumPy arrays under `lstm/input_gate`, `lstm/forget_gate`, `lstm/output_gate`,
        `lstm/candidate`, `lstm/cell`, `lstm/hidden` (`[B, T, H]`) and `lstm/h_grad`,
        `lstm/c_grad` (`[T]`).
      layer_name: the prefix of the returned names.

    Returns:
      The `<layer_name>/...` entries documented in `make_probes`.
    """
    cell, hidden = values["lstm/cell"], values["lstm/hidden"]
    forget_mean = float(values["lstm/forget_gate"].mean())
    first = float(np.linalg.norm(cell[:, 0]))
    last = float(np.linalg.norm(cell[:, -1]))
    prefix = f"{layer_name}/"
    return {
        prefix + "saturation/input_gate": saturation_share(values["lstm/input_gate"], "sigmoid"),
        prefix + "saturation/forget_gate": saturation_share(values["lstm/forget_gate"], "sigmoid"),
        prefix + "saturation/output_gate": saturation_share(values["lstm/output_gate"], "sigmoid"),
        prefix + "saturation/candidate": saturation_share(values["lstm/candidate"], "tanh"),
        prefix + "saturation/cell_tanh": saturation_share(np.tanh(cell), "tanh"),
        prefix + "forget_gate_mean": forget_mean,
        prefix + "memory_time_scale": memory_time_scale(forget_mean),
        prefix + "dead_units": float((np.abs(hidden).max(axis=(0, 1)) < DEAD_UNIT_LEVEL).mean()),
        prefix + "cell_norm_growth": last / first if first > 0 else math.inf,
        prefix + "h_grad": values["lstm/h_grad"].astype(np.float32),
        prefix + "c_grad": values["lstm/c_grad"].astype(np.float32),
    }
