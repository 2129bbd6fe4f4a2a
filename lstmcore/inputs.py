"""Checks training data before any work and turns it into a repeatable, checkpointable dataset.

Arrays are checked in full (rank, length, dtype, finiteness, with the index of the first bad
value) because a NaN that reaches the optimizer costs a run. A ``tf.data.Dataset`` is checked
through its ``element_spec``, cardinality and first batch; its values are guarded inside the
step instead, and a batch whose shape (past the batch axis) differs from the first batch's
stops the run at that batch, before its step is applied (:func:`shape_change_message`).

Accepted casts: integer inputs or targets become float32; targets of shape ``[N]`` become
``[N, 1]`` for a model with one output. Nothing else is converted silently.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from lstmcore import monitor
from lstmcore.errors import ConfigError, DataError

SHAPE_CHANGE = "lstmcore-shape-change: "


@dataclass
class PreparedData:
    """A dataset of ``(inputs [B, T, F], targets)`` batches and what is known about it."""

    dataset: tf.data.Dataset
    num_samples: int | None  # None when the dataset's size is unknown.
    batches_per_epoch: int | None
    input_shape: tuple  # (T, F), None where unknown.
    first_batch: tuple  # (inputs, targets) of the first batch, as float32 tensors.
    from_dataset: bool = False  # a tf.data.Dataset given by the user (not arrays).


def _describe(value) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"{type(value).__name__} of shape {tuple(shape)} and dtype {getattr(value, 'dtype', '?')}"
    return f"{type(value).__name__}"


def check_array(value, *, name: str, min_rank: int, max_rank: int) -> np.ndarray:
    """Returns ``value`` as a float32 array after checking type, rank and finiteness.

    Raises:
      ValueError: naming ``name``, what was received and what is accepted; for a non-finite
        value, its first index as (sample, step, feature).
    """
    if value is None:
        raise DataError(f"{name} is None; expected a NumPy array")
    if isinstance(value, tf.RaggedTensor) or (
        isinstance(value, (list, tuple)) and value and _is_ragged(value)
    ):
        raise DataError(
            f"{name} is ragged (sequences of different lengths); pad them to one length "
            "[batch, time, features] first"
        )
    try:
        array = np.asarray(value)
    except ValueError as error:
        raise DataError(f"{name} could not be read as an array ({error})") from None
    if array.dtype == object or array.dtype.kind in "USV":
        raise DataError(
            f"{name} must be numeric; got dtype {array.dtype} (strings or Python objects). "
            "Convert it to numbers first (e.g. with lstmcore.data.read_csv)"
        )
    if array.dtype == bool:
        raise DataError(
            f"{name} has dtype bool; convert it to float32 explicitly if 0/1 values are meant"
        )
    if array.dtype.kind == "c":
        raise DataError(
            f"{name} has dtype {array.dtype} (complex numbers); casting would drop the imaginary "
            "part. Pass real float or integer values (e.g. the real and imaginary parts as two "
            "features)"
        )
    if array.dtype.kind in "mM":
        raise DataError(
            f"{name} has dtype {array.dtype} (dates or durations); convert them to numbers "
            "first (e.g. seconds since the start, or calendar features)"
        )
    if not min_rank <= array.ndim <= max_rank:
        expected = {
            3: "3-D [samples, time, features]",
            2: "2-D [samples, outputs]",
        }.get(max_rank, f"{min_rank}-D to {max_rank}-D")
        if min_rank == 1 and max_rank == 3:
            expected = "[samples], [samples, outputs] or [samples, horizon, outputs]"
        raise DataError(f"{name} must be {expected}; got shape {array.shape}")
    if array.shape[0] == 0:
        raise DataError(f"{name} is empty (shape {array.shape}); it needs at least one sample")
    if array.ndim >= 2 and 0 in array.shape[1:]:
        raise DataError(
            f"{name} has a zero-length axis (shape {array.shape}); sequences need at least one "
            "time step and one feature"
        )
    array = array.astype(np.float32, copy=False)
    finite = np.isfinite(array)
    if not finite.all():
        index = np.unravel_index(int(np.argmin(finite)), array.shape)
        kind = "NaN" if np.isnan(array[index]) else "an infinite value"
        where = (
            ", ".join(f"{axis} {i}" for axis, i in zip(("sample", "step", "feature"), index))
            if array.ndim == 3
            else ", ".join(f"{axis} {i}" for axis, i in zip(("sample", "output", "output"), index))
        )
        count = int(array.size - finite.sum())
        raise DataError(
            f"{name} contain {kind} at {where} ({count} non-finite value(s) in all); "
            "drop or fill them before training"
        )
    return array


def _is_ragged(values) -> bool:
    try:
        lengths = {len(v) for v in values}
    except TypeError:
        return False
    return len(lengths) > 1


def prepare(
    data,
    *,
    name: str,
    batch_size: int,
    shuffle: bool,
    seed: int | None,
    repeat: bool,
) -> PreparedData:
    """Checks ``data`` and returns batches ready for the step.

    Args:
      data: ``(inputs, targets)`` NumPy arrays, or a ``tf.data.Dataset`` of
        ``(inputs, targets)`` batches.
      name: the argument's name, for errors (``"data"``, ``"validation_data"``).
      batch_size: batch size for arrays.
      shuffle: shuffle arrays each epoch (a stateless shuffle of indices by ``(seed, epoch)``,
        so a checkpoint of the iterator stays small and a resumed run sees the same order).
      seed: the shuffle seed.
      repeat: repeat without end (training) or a single pass (evaluation).

    Returns:
      A :class:`PreparedData`.

    Raises:
      DataError: for anything the step could not train on.
    """
    if data is None:
        raise DataError(f"{name} is None; expected (inputs, targets) arrays or a tf.data.Dataset")
    if isinstance(data, tf.data.Dataset):
        return _prepare_dataset(data, name=name, repeat=repeat)
    if isinstance(data, dict) or not isinstance(data, (tuple, list)) or len(data) != 2:
        raise DataError(
            f"{name} must be a pair (inputs, targets) of arrays or a tf.data.Dataset; "
            f"got {_describe(data)}"
        )
    inputs = check_array(data[0], name=f"{name} inputs", min_rank=3, max_rank=3)
    targets = check_array(data[1], name=f"{name} targets", min_rank=1, max_rank=3)
    if len(inputs) != len(targets):
        raise DataError(
            f"{name}: inputs and targets have different numbers of samples "
            f"({len(inputs)} and {len(targets)}); they must match one to one"
        )
    if targets.ndim == 1:
        targets = targets[:, None]
    count = len(inputs)
    inputs_tensor = tf.constant(inputs)
    targets_tensor = tf.constant(targets)
    indices = epoch_batches(count, batch_size=batch_size, shuffle=shuffle, seed=seed, repeat=repeat)
    dataset = indices.map(
        lambda i: (tf.gather(inputs_tensor, i), tf.gather(targets_tensor, i)),
    )
    dataset = dataset.prefetch(2)
    first = (tf.constant(inputs[:batch_size]), tf.constant(targets[:batch_size]))
    return PreparedData(dataset, count, -(-count // batch_size), tuple(inputs.shape[1:]), first)


def epoch_batches(
    count: int, *, batch_size: int, shuffle: bool, seed: int | None, repeat: bool
) -> tf.data.Dataset:
    """Batches of sample indices, epoch after epoch, in an order that survives a resume.

    The order of epoch ``e`` is a pure function of ``(seed, e)`` (a stateless shuffle), so a
    restored iterator rebuilds it exactly, wherever in an epoch the run was stopped. (A
    stateful ``Dataset.shuffle`` with ``reshuffle_each_iteration`` does not restore its next
    epoch's order across processes.)

    Args:
      count: the number of samples.
      batch_size: indices per batch (the epoch's last batch may be smaller).
      shuffle: shuffle each epoch; False gives ``0, 1, ..., count - 1`` every epoch.
      seed: the shuffle seed (None: 0).
      repeat: epochs without end, or one.

    Returns:
      A dataset of int64 index vectors.
    """
    shuffle_seed = tf.constant(0 if seed is None else int(seed), tf.int64)

    def epoch(number):
        indices = tf.range(count, dtype=tf.int64)
        if shuffle:
            indices = tf.random.experimental.stateless_shuffle(
                indices, seed=tf.stack([shuffle_seed, number])
            )
        return tf.data.Dataset.from_tensor_slices(indices).batch(batch_size)

    epochs = tf.data.Dataset.counter() if repeat else tf.data.Dataset.range(1)
    return epochs.flat_map(epoch)


def _prepare_dataset(dataset: tf.data.Dataset, *, name: str, repeat: bool) -> PreparedData:
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) != 2:
        raise DataError(f"{name} must yield (inputs, targets) pairs; got elements {spec}")
    input_spec, target_spec = spec
    for part, part_spec in (("inputs", input_spec), ("targets", target_spec)):
        if not isinstance(part_spec, tf.TensorSpec):
            raise DataError(
                f"{name} {part} must be dense tensors; got {part_spec} (pad ragged sequences)"
            )
        if part_spec.dtype == tf.string or part_spec.dtype == tf.bool:
            raise DataError(f"{name} {part} must be numeric; got dtype {part_spec.dtype.name}")
        if not (part_spec.dtype.is_floating or part_spec.dtype.is_integer):
            raise DataError(
                f"{name} {part} must be real float or integer values; got dtype "
                f"{part_spec.dtype.name} (complex values lose their imaginary part in a cast)"
            )
    if input_spec.shape.rank is not None and input_spec.shape.rank != 3:
        raise DataError(
            f"{name} inputs must be batches of shape [batch, time, features]; got element shape "
            f"{input_spec.shape} (did you forget .batch(...)?)"
        )
    cardinality = int(dataset.cardinality())
    if cardinality == 0:
        raise DataError(f"{name} is an empty dataset; it must yield at least one batch")
    if cardinality == tf.data.INFINITE_CARDINALITY and not repeat:
        raise DataError(f"{name} is infinite; an evaluation pass needs a finite dataset")
    first = next(iter(dataset.take(1)), None)
    if first is None:
        raise DataError(f"{name} yielded no batch; it must yield at least one (inputs, targets)")
    if first[0].shape.rank != 3:
        raise DataError(
            f"{name} inputs must be batches of shape [batch, time, features]; the first batch "
            f"has shape {tuple(first[0].shape)} (did you forget .batch(...)?)"
        )
    first = (tf.cast(first[0], tf.float32), tf.cast(first[1], tf.float32))
    dataset = dataset.map(lambda x, y: (tf.cast(x, tf.float32), tf.cast(y, tf.float32)))
    if repeat and cardinality != tf.data.INFINITE_CARDINALITY:
        dataset = dataset.repeat()
    if not all(
        spec.shape.rank is not None and spec.shape[1:].is_fully_defined()
        for spec in (input_spec, target_spec)
    ):
        dataset = _pin_shapes(dataset, name, first)
    dataset = dataset.prefetch(2)
    known = cardinality if cardinality > 0 else None
    return PreparedData(dataset, None, known, tuple(first[0].shape[1:]), first, from_dataset=True)


def _pin_shapes(dataset: tf.data.Dataset, name: str, first) -> tf.data.Dataset:
    """Fails the pipeline at the first batch whose shape past the batch axis differs from ``first``.

    MSE broadcasts targets ``[B, 3]`` against predictions ``[B, 1]`` and an LSTM takes any number
    of time steps, so such a batch would train silently. The check runs in the input pipeline
    (no host sync); the step that would have used the batch fails at ``next(iterator)``, before
    anything is applied, and :func:`shape_change_message` turns the error into the message.
    """
    expected = [tf.constant(part.shape[1:], tf.int64) for part in first]

    def check(index, batch):
        asserts = []
        for field, value, want in zip(("inputs", "targets"), batch, expected):
            actual = tf.shape(value, out_type=tf.int64)
            same = tf.cond(
                tf.size(actual) == tf.size(want) + 1,
                lambda a=actual, w=want: tf.reduce_all(tf.equal(a[1:], w)),
                lambda: tf.constant(False),
            )
            message = tf.strings.join(
                [
                    f"{SHAPE_CHANGE}{name} batch ",
                    tf.strings.as_string(index),
                    f" (counted from 0, as steps are): {field} of shape (",
                    tf.strings.reduce_join(tf.strings.as_string(actual), separator=", "),
                    f"), but in the first batch {field} have shape (batch, ",
                    tf.strings.reduce_join(tf.strings.as_string(want), separator=", "),
                    ")",
                ]
            )
            asserts.append(tf.debugging.Assert(same, [message]))
        with tf.control_dependencies(asserts):
            return tuple(tf.identity(value) for value in batch)

    return dataset.enumerate().map(check)


def shape_change_message(error: tf.errors.OpError) -> str | None:
    """The message of a batch that failed :func:`_pin_shapes`, or None for any other error."""
    found = re.search(re.escape(SHAPE_CHANGE) + r"([^\]\n]*\))", str(error))
    if found is None:
        return None
    return (
        found.group(1)
        + ". The batch was not applied. Every batch must have the first batch's shape past the "
        "batch axis: fix the data pipeline (pad or cut to one length, one target width)"
    )


def build_and_check(model, prepared, loss_fn, *, name: str) -> None:
    """Calls the model and the loss on two samples of the first batch of ``name``; raises if unfit.

    Raises:
      DataError: when the data's shape does not fit the model (the model's own error chained
        when calling it failed).
      ConfigError: when the model has several outputs or the loss does not return one value
        per sample (the loss's own error chained when calling it failed).
    """
    inputs, targets = prepared.first_batch
    declared = _declared_input_shape(model)
    if declared is not None:
        for axis, what in ((1, "time steps"), (2, "features")):
            if declared[axis] is not None and inputs.shape[axis] != declared[axis]:
                raise DataError(
                    f"{name} inputs have {inputs.shape[axis]} {what} per sample (shape "
                    f"{tuple(inputs.shape)}) but the model's input expects {declared[axis]} "
                    f"(input shape {tuple(declared)}); reshape the data or rebuild the model"
                )
    try:
        with monitor.rng_untouched(model):
            predictions = model(inputs[:2], training=False)
    except Exception as error:
        raise DataError(
            f"model could not be called on {name} inputs of shape {tuple(inputs.shape)} "
            f"[batch, time, features]: {error}"
        ) from error
    if not isinstance(predictions, (tf.Tensor, np.ndarray)) and not keras.ops.is_tensor(
        predictions
    ):
        count = len(predictions) if hasattr(predictions, "__len__") else "several"
        raise ConfigError(
            f"model returns {count} outputs ({type(predictions).__name__}); train needs a model "
            "with one output tensor [batch, ...]: join them (keras.layers.Concatenate) or "
            "train one model per output"
        )
    if tuple(predictions.shape[1:]) != tuple(targets.shape[1:]):
        raise DataError(
            f"{name} targets have shape {tuple(targets.shape[1:])} per sample but the model "
            f"predicts {tuple(predictions.shape[1:])}; they must match (targets of shape [N] are "
            "taken as [N, 1])"
        )
    _check_per_sample_loss(loss_fn, targets[:2], predictions)


def _check_per_sample_loss(loss_fn, targets, predictions) -> None:
    # Traced, not run: a loss with side effects (a call counter) is not called here.
    try:
        losses = (
            tf.function(loss_fn, autograph=False)
            .get_concrete_function(
                tf.TensorSpec(targets.shape, targets.dtype),
                tf.TensorSpec(predictions.shape, predictions.dtype),
            )
            .structured_outputs
        )
    except Exception as error:
        raise ConfigError(
            f"loss could not be called as loss(targets, predictions) with targets of shape "
            f"{tuple(targets.shape)} and predictions of shape {tuple(predictions.shape)}: "
            f"{str(error).strip().splitlines()[0] if str(error).strip() else repr(error)}"
        ) from error
    shape = getattr(losses, "shape", None)
    batch = predictions.shape[0]
    if shape is None or shape.rank == 0 or shape[0] not in (None, batch):
        raise ConfigError(
            f"loss must return one value per sample, shape [batch]; for a batch of {batch} it "
            f"returned shape {None if shape is None else tuple(shape)}. A mean over the batch "
            "would scale the loss and the gradients by 1/batch. Pass a loss name ('mse'), a "
            "per-sample function (keras.losses.mean_squared_error) or a keras.losses.Loss "
            "built with reduction=None"
        )


def _declared_input_shape(model):
    try:
        model_inputs = model.inputs
    except (AttributeError, ValueError):
        return None
    if not model_inputs or len(model_inputs) != 1 or len(model_inputs[0].shape) != 3:
        return None
    return tuple(model_inputs[0].shape)


@contextlib.contextmanager
def data_errors():
    """Turns a batch that failed the shape check in the pipeline into a DataError."""
    try:
        yield
    except tf.errors.OutOfRangeError:
        raise DataError("data yielded no batch; it must not be empty") from None
    except tf.errors.InvalidArgumentError as error:
        message = shape_change_message(error)
        if message is None:
            raise
        raise DataError(message) from None
