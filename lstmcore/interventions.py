"""Confirming a suspected cause by trying its fix on a copy of the model, for a fixed budget.

A flat loss looks the same whether the gradient does not reach the signal, the model is too
small, the learning rate is wrong or there is nothing to learn. Trying the fix tells them
apart: a fresh copy of the architecture is trained for a few hundred steps as it is (the
*unchanged copy*), and once more with one fix applied; the cause is *confirmed* when the fixed
copy's held-out loss is clearly below the unchanged copy's after the same number of steps.

- `copy_model` rebuilds a model from its configuration with fresh weights, substituting the
  layer's own objects (initializers, activations, regularizers) where a configuration cannot
  be deserialised, and optionally changes every LSTM (units, bias initializer).
- `run_trial` trains a copy with a small fixed budget and returns its held-out loss.
- `FIXES` maps a cause code to the change tried (`Fix`), each a small function.

The user's model, data and run directory are never touched: copies have their own weights
and optimizer, and the data are copied before they are transformed.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from lstmcore import _keras_compat, initializers, target_forms
from lstmcore import probes as probes_lib

CONFIRM_RATIO = 0.8  # the fixed copy's held-out loss must be below 80% of the unchanged copy's
CONFIRM_MARGIN = 0.05  # ...and lower by at least 5% of the mean-baseline loss
TRIAL_STEPS = 300  # per fix, when the run's length is unknown
TRIAL_MIN_STEPS = 40
TRIAL_MAX_STEPS = 1000
LONG_MEMORY_LEARNING_RATE = 1e-2  # the chrono trial's rate (with clipping and warmup)
TRIAL_TRAIN_WINDOWS = 4096
TRIAL_HELD_OUT_WINDOWS = 512
WARMUP_FRACTION = 0.1

_OBJECT_KEYS = ("activation", "recurrent_activation")
_OBJECT_SUFFIXES = ("_initializer", "_regularizer", "_constraint")


class CopyError(RuntimeError):
    """The model could not be rebuilt from its configuration; the message says why."""


def recurrent_layers(model) -> list:
    """Every LSTM layer in the model (Keras's or lstmcore's), wrappers' inner layers included."""
    found = []
    for layer in _keras_compat.flatten_layers(model):
        cell = getattr(layer, "cell", None)
        if (
            cell is not None
            and hasattr(cell, "units")
            and "LSTM" in type(cell).__name__
            and hasattr(cell, "recurrent_kernel")
        ):
            found.append(layer)
    return found


def _live_object(layer, key):
    for owner in (layer, getattr(layer, "cell", None)):
        if owner is not None and getattr(owner, key, None) is not None:
            return getattr(owner, key)
    return None


def _rebuild_layer(layer, overrides: dict):
    if isinstance(layer, keras.layers.InputLayer):
        return layer.__class__.from_config(layer.get_config())
    config = layer.get_config()
    is_lstm = layer in overrides.get("_lstms", ())
    changes = {k: v for k, v in overrides.items() if not k.startswith("_")} if is_lstm else {}
    if is_lstm and "units_factor" in changes:
        changes["units"] = int(config["units"]) * int(changes.pop("units_factor"))
    config.update(changes)
    try:
        return layer.__class__.from_config(config)
    except Exception as first_error:  # noqa: BLE001 - rebuilt below with live objects
        # A configuration holding a plain function (an initializer written as a closure) does
        # not deserialise; the layer's own objects do.
        for key in list(config):
            if key in changes:
                continue
            if key in _OBJECT_KEYS or key.endswith(_OBJECT_SUFFIXES):
                live = _live_object(layer, key)
                if live is not None:
                    config[key] = live
        try:
            return layer.__class__.from_config(config)
        except Exception:  # noqa: BLE001 - any failure: say which layer
            raise CopyError(
                f"layer {layer.name!r} ({type(layer).__name__}) cannot be rebuilt from its "
                f"configuration: {type(first_error).__name__}: {str(first_error)[:200]}"
            ) from None


def rebuild_layer(layer):
    """A fresh copy of one layer from its configuration (live objects where it cannot)."""
    return _rebuild_layer(layer, {"_lstms": ()})


def copy_model(
    model,
    *,
    units_factor: int | None = None,
    lstm_changes: dict | None = None,
    sample_input=None,
) -> keras.Model:
    """A fresh copy of `model`'s architecture (new weights from its initializers), maybe changed.

    Args:
      model: a functional or Sequential Keras model (subclassed models need `get_config`).
      units_factor: multiply every LSTM's units by this.
      lstm_changes: constructor arguments to set on every LSTM (e.g. `bias_initializer`).
      sample_input: `[B, T, F]` inputs to build the copy with.

    Returns:
      The copy, built.

    Raises:
      CopyError: when the model or one of its layers cannot be rebuilt.
    """
    lstms = recurrent_layers(model)
    overrides = {"_lstms": lstms, **(lstm_changes or {})}
    if units_factor:
        overrides["units_factor"] = units_factor
    if (units_factor or lstm_changes) and not lstms:
        raise CopyError("the model has no LSTM layer to change")
    if any(layer not in model.layers and layer not in _direct(model) for layer in lstms) and (
        units_factor or lstm_changes
    ):
        raise CopyError(
            "an LSTM sits inside a wrapper or a nested model (e.g. Bidirectional); it cannot be "
            "changed on a copy"
        )
    try:
        replica = keras.models.clone_model(
            model, clone_function=lambda layer: _rebuild_layer(layer, overrides)
        )
    except CopyError:
        raise
    except Exception as error:  # noqa: BLE001 - a subclassed model: from its config
        try:
            replica = model.__class__.from_config(model.get_config())
        except Exception:  # noqa: BLE001 - any failure: say so
            raise CopyError(
                f"the model cannot be copied ({type(model).__name__}): "
                f"{type(error).__name__}: {str(error)[:200]}"
            ) from None
    if sample_input is not None:
        replica(np.asarray(sample_input[:1], np.float32))
    return replica


def _direct(model):
    return list(getattr(model, "layers", []))


def with_change_target(model, target_features: list[int], horizon: int) -> keras.Model:
    """`model` (a copy) whose output is taken as the change from each target's last value."""
    inputs = keras.Input(tuple(model.inputs[0].shape[1:]) if model.inputs else (None, None))
    outputs = target_forms.AddLastValue(target_features, horizon, name="trial_add_last_value")(
        model(inputs), inputs
    )
    return keras.Model(inputs, outputs)


@dataclasses.dataclass
class Trial:
    """The outcome of training one copy: held-out loss after `steps` steps, and its cost."""

    name: str
    loss: float
    steps: int
    seconds: float
    first_loss: float


def run_trial(
    name: str,
    model,
    train: tuple,
    held_out: tuple,
    loss_fn,
    *,
    steps: int,
    batch_size: int,
    learning_rate: float,
    optimizer: str = "adam",
    clip_norm: float | None = None,
    warmup_steps: int = 0,
    seed: int = 0,
    deadline: float | None = None,
) -> Trial:
    """Trains `model` (a copy) on `train` and scores it on `held_out`.

    Minibatches of `batch_size` windows are drawn with `seed`, so every trial sees the same
    batches. The learning rate rises linearly over `warmup_steps`, then stays at
    `learning_rate`; gradients are clipped to global norm `clip_norm` when given.

    Args:
      name: what the trial tries, for the report.
      model: the copy to train (changed in place).
      train, held_out: `(inputs [N, T, F], targets [N, K])` float32 arrays.
      loss_fn: a per-sample loss `(targets, predictions) -> [B]`.
      steps: optimizer steps.
      batch_size: windows per step.
      learning_rate: peak learning rate.
      optimizer: a Keras optimizer name.
      clip_norm: global-norm clipping threshold, or None.
      warmup_steps: linear warmup length.
      seed: minibatch seed.
      deadline: a `time.perf_counter()` value after which training stops early.

    Returns:
      A `Trial`; `loss` is infinite when training diverged.
    """
    started = time.perf_counter()
    x, y = (np.asarray(a, np.float32) for a in train)
    vx, vy = (tf.constant(np.asarray(a, np.float32)) for a in held_out)
    opt = keras.optimizers.get(optimizer)
    opt.learning_rate = learning_rate
    variables = model.trainable_variables
    opt.build(variables)
    rng = np.random.default_rng(seed)
    batch = min(batch_size, len(x))
    indices = [rng.choice(len(x), size=batch, replace=False) for _ in range(steps)]
    rate = tf.Variable(float(learning_rate), dtype=tf.float32, trainable=False)

    @tf.function(reduce_retracing=True)
    def step(bx, by):
        with tf.GradientTape() as tape:
            value = probes_lib.mean_loss(loss_fn, by, model(bx, training=True))
        grads = tape.gradient(value, variables)
        if clip_norm:
            grads, _ = tf.clip_by_global_norm(grads, clip_norm)
        opt.learning_rate.assign(rate)
        opt.apply_gradients(zip(grads, variables))
        return value

    def evaluate():
        parts = []
        for i in range(0, int(vx.shape[0]), 256):
            parts.append(model(vx[i : i + 256], training=False))
        return float(probes_lib.mean_loss(loss_fn, vy, tf.concat(parts, 0)))

    first = evaluate()
    taken = 0
    for i, chosen in enumerate(indices):
        if warmup_steps:
            rate.assign(learning_rate * min(1.0, (i + 1) / warmup_steps))
        value = float(step(tf.constant(x[chosen]), tf.constant(y[chosen])))
        taken += 1
        if not np.isfinite(value):
            break
        if deadline is not None and time.perf_counter() > deadline:
            break
    final = evaluate()
    return Trial(
        name=name,
        loss=final if np.isfinite(final) else float("inf"),
        steps=taken,
        seconds=time.perf_counter() - started,
        first_loss=first,
    )


@dataclasses.dataclass
class Setting:
    """How a trial trains: what the user's run used, or a fix's change of it."""

    learning_rate: float = 1e-3
    optimizer: str = "adam"
    clip_norm: float | None = 1.0
    batch_size: int = 32
    warmup_steps: int = 0


@dataclasses.dataclass
class Context:
    """What every fix needs: the model, the trial data, the run's setting, the data's layout."""

    model: keras.Model
    train: tuple
    held_out: tuple
    setting: Setting
    steps: int
    target_features: list[int] | None = None
    horizon: int = 1


@dataclasses.dataclass
class Fix:
    """One fix to try: a name for the report, the copy to train, its data and setting."""

    name: str
    model: keras.Model
    train: tuple
    held_out: tuple
    setting: Setting


def _scale_of(values, *, limit: float | None = None):
    flat = np.asarray(values, np.float64).reshape(-1, np.shape(values)[-1])
    mean, std = flat.mean(axis=0), flat.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    if limit is not None and not ((np.abs(mean) > limit) | (std > limit)).any():
        return None
    return mean.astype(np.float32), std.astype(np.float32)


def standardised_copy(model, inputs, targets, *, scale_targets: bool) -> keras.Model:
    """A fresh copy between a standardising input layer and, optionally, an output rescaling.

    The copy sees inputs with training mean 0 and std 1 per feature (and learns targets with
    mean 0 and std 1 when `scale_targets`); the wrapper maps back, so its loss is in the
    data's own units and compares directly with the trained model's.
    """
    replica = copy_model(model, sample_input=np.zeros_like(np.asarray(inputs[:1], np.float32)))
    x_mean, x_std = _scale_of(inputs)
    tensor = keras.Input(tuple(np.shape(inputs)[1:]))
    hidden = keras.layers.Normalization(axis=-1, mean=x_mean, variance=x_std**2)(tensor)
    out = replica(hidden)
    if scale_targets:
        y = np.asarray(targets, np.float32).reshape(len(targets), -1)
        y_mean, y_std = y.mean(axis=0), np.where(y.std(axis=0) > 0, y.std(axis=0), 1.0)
        flat = keras.layers.Reshape((y.shape[1],))(out)
        out = keras.layers.Normalization(axis=-1, mean=y_mean, variance=y_std**2, invert=True)(flat)
    return keras.Model(tensor, out)


def _standardised(context: Context) -> Fix:
    scale_targets = (
        _scale_of(np.asarray(context.train[1]).reshape(len(context.train[1]), -1), limit=10.0)
        is not None
    )
    return Fix(
        "inputs standardised with training statistics" + (", targets too" if scale_targets else ""),
        standardised_copy(
            context.model, context.train[0], context.train[1], scale_targets=scale_targets
        ),
        context.train,
        context.held_out,
        context.setting,
    )


def _standardised_targets(context: Context) -> Fix:
    replica = copy_model(context.model, sample_input=context.train[0])
    y = np.asarray(context.train[1], np.float32).reshape(len(context.train[1]), -1)
    y_mean, y_std = y.mean(axis=0), np.where(y.std(axis=0) > 0, y.std(axis=0), 1.0)
    tensor = keras.Input(tuple(np.shape(context.train[0])[1:]))
    flat = keras.layers.Reshape((y.shape[1],))(replica(tensor))
    out = keras.layers.Normalization(axis=-1, mean=y_mean, variance=y_std**2, invert=True)(flat)
    return Fix(
        "targets standardised with training statistics",
        keras.Model(tensor, out),
        context.train,
        context.held_out,
        context.setting,
    )


def _chrono(context: Context) -> Fix:
    steps = int(np.asarray(context.train[0]).shape[1])
    model = copy_model(
        context.model,
        lstm_changes={
            "unit_forget_bias": False,
            "bias_initializer": initializers.Chrono(max(steps, 2)),
        },
        sample_input=context.train[0],
    )
    setting = dataclasses.replace(
        context.setting,
        learning_rate=LONG_MEMORY_LEARNING_RATE,
        clip_norm=1.0,
        warmup_steps=max(1, int(WARMUP_FRACTION * context.steps)),
    )
    return Fix(
        f"chrono initialisation (max_lag={steps}), clipping at 1.0, warmup, learning rate "
        f"{LONG_MEMORY_LEARNING_RATE:g}",
        model,
        context.train,
        context.held_out,
        setting,
    )


def _more_units(context: Context) -> Fix:
    return Fix(
        "4x the LSTM units",
        copy_model(context.model, units_factor=4, sample_input=context.train[0]),
        context.train,
        context.held_out,
        context.setting,
    )


def _rate_fix(context: Context, rate: float, label: str) -> Fix:
    return Fix(
        label,
        copy_model(context.model, sample_input=context.train[0]),
        context.train,
        context.held_out,
        dataclasses.replace(context.setting, learning_rate=rate),
    )


def _lower_rate(context: Context) -> Fix:
    rate = context.setting.learning_rate / 10
    return _rate_fix(context, rate, f"learning rate {rate:.3g} (a tenth)")


def _higher_rate(context: Context) -> Fix:
    rate = max(context.setting.learning_rate * 10, 1e-3)
    return _rate_fix(context, rate, f"learning rate {rate:.3g}")


def _change_target(context: Context) -> Fix:
    if not context.target_features:
        raise CopyError("the target column is not among the input features")
    replica = copy_model(context.model, sample_input=context.train[0])
    return Fix(
        "the change from the last value as target (target_mode='change')",
        with_change_target(replica, context.target_features, context.horizon),
        context.train,
        context.held_out,
        context.setting,
    )


FIXES: dict[str, Callable[[Context], Fix]] = {
    "unnormalised_inputs": _standardised,
    "unnormalised_targets": _standardised_targets,
    "vanishing_gradients": _chrono,
    "too_little_capacity": _more_units,
    "learning_rate_too_high": _lower_rate,
    "learning_rate_too_low": _higher_rate,
    "distribution_shift": _change_target,
    "worse_than_persistence": _change_target,
}


def train_fix(fix: Fix, loss_fn, steps: int, *, seed: int = 0, deadline=None) -> Trial:
    """Runs `fix` for `steps` steps with its setting; see `run_trial`."""
    return run_trial(
        fix.name,
        fix.model,
        fix.train,
        fix.held_out,
        loss_fn,
        steps=steps,
        batch_size=fix.setting.batch_size,
        learning_rate=fix.setting.learning_rate,
        optimizer=fix.setting.optimizer,
        clip_norm=fix.setting.clip_norm,
        warmup_steps=fix.setting.warmup_steps,
        seed=seed,
        deadline=deadline,
    )


def confirms(fixed: Trial, control_loss: float, mean_loss: float) -> bool:
    """Whether the fixed copy clearly beat the control (`CONFIRM_RATIO`, `CONFIRM_MARGIN`).

    The control is the trained model itself on the same held-out windows: it had the whole
    run, the copy only the trial's steps, so a fix that wins is a fix that matters.
    """
    if not np.isfinite(fixed.loss):
        return False
    if not np.isfinite(control_loss):
        return True
    return (
        fixed.loss < CONFIRM_RATIO * control_loss
        and control_loss - fixed.loss > CONFIRM_MARGIN * mean_loss
    )


def describe(fixed: Trial, control_loss: float, control_steps: int | None) -> str:
    """`tried on a copy (...): held-out loss 0.16 -> 0.02 in 300 steps (...)`."""

    def number(value):
        return "diverged" if not np.isfinite(value) else f"{value:.4g}"

    run = f" after {control_steps} steps" if control_steps else ""
    return (
        f"tried on a copy ({fixed.name}): held-out loss {number(control_loss)} -> "
        f"{number(fixed.loss)} in {fixed.steps} steps (the trained model{run}: "
        f"{number(control_loss)}; the copy at its first step: {number(fixed.first_loss)})"
    )
