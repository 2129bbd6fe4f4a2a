"""Checks training data before any work and turns it into a repeatable, checkpointable dataset.

Arrays are checked in full (rank, length, dtype, finiteness, with the index of the first bad
value) because a NaN that reaches the optimizer costs a run. A ``tf.data.Dataset`` is checked
through its ``element_spec`` and cardinality; its values are guarded inside the step instead.

Accepted casts: integer inputs or targets become float32; targets of shape ``[N]`` become
``[N, 1]`` for a model with one output. Nothing else is converted silently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf


@dataclass
class PreparedData:
    """A dataset of ``(inputs [B, T, F], targets)`` batches and what is known about it."""

    dataset: tf.data.Dataset
    num_samples: int | None  # None when the dataset's size is unknown.
    batches_per_epoch: int | None
    input_shape: tuple  # (T, F), None where unknown.


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
        raise ValueError(f"{name} is None; expected a NumPy array")
    if isinstance(value, tf.RaggedTensor) or (
        isinstance(value, (list, tuple)) and value and _is_ragged(value)
    ):
        raise ValueError(
            f"{name} is ragged (sequences of different lengths); pad them to one length "
            "[batch, time, features] first"
        )
    try:
        array = np.asarray(value)
    except ValueError as error:
        raise ValueError(f"{name} could not be read as an array ({error})") from None
    if array.dtype == object or array.dtype.kind in "USV":
        raise ValueError(
            f"{name} must be numeric; got dtype {array.dtype} (strings or Python objects). "
            "Convert it to numbers first (e.g. with lstmcore.data.read_csv)"
        )
    if array.dtype == bool:
        raise ValueError(
            f"{name} has dtype bool; convert it to float32 explicitly if 0/1 values are meant"
        )
    if not min_rank <= array.ndim <= max_rank:
        expected = {
            3: "3-D [samples, time, features]",
            2: "2-D [samples, outputs]",
        }.get(max_rank, f"{min_rank}-D to {max_rank}-D")
        if min_rank == 1 and max_rank == 3:
            expected = "[samples], [samples, outputs] or [samples, horizon, outputs]"
        raise ValueError(f"{name} must be {expected}; got shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}); it needs at least one sample")
    if array.ndim >= 2 and 0 in array.shape[1:]:
        raise ValueError(
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
        raise ValueError(
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
      ValueError: for anything the step could not train on.
    """
    if data is None:
        raise ValueError(f"{name} is None; expected (inputs, targets) arrays or a tf.data.Dataset")
    if isinstance(data, tf.data.Dataset):
        return _prepare_dataset(data, name=name, repeat=repeat)
    if isinstance(data, dict) or not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(
            f"{name} must be a pair (inputs, targets) of arrays or a tf.data.Dataset; "
            f"got {_describe(data)}"
        )
    inputs = check_array(data[0], name=f"{name} inputs", min_rank=3, max_rank=3)
    targets = check_array(data[1], name=f"{name} targets", min_rank=1, max_rank=3)
    if len(inputs) != len(targets):
        raise ValueError(
            f"{name}: inputs and targets have different numbers of samples "
            f"({len(inputs)} and {len(targets)}); they must match one to one"
        )
    if targets.ndim == 1:
        targets = targets[:, None]
    count = len(inputs)
    inputs_tensor = tf.constant(inputs)
    targets_tensor = tf.constant(targets)
    shuffle_seed = tf.constant(0 if seed is None else int(seed), tf.int64)

    def epoch(number):
        # The order of epoch e is a pure function of (seed, e): a resumed iterator rebuilds it
        # exactly, wherever in an epoch the run was stopped. (A stateful `shuffle` with
        # `reshuffle_each_iteration` does not restore its next epoch's order across processes.)
        indices = tf.range(count, dtype=tf.int64)
        if shuffle:
            indices = tf.random.experimental.stateless_shuffle(
                indices, seed=tf.stack([shuffle_seed, number])
            )
        return tf.data.Dataset.from_tensor_slices(indices).batch(batch_size)

    epochs = tf.data.Dataset.counter() if repeat else tf.data.Dataset.range(1)
    dataset = epochs.flat_map(epoch).map(
        lambda i: (tf.gather(inputs_tensor, i), tf.gather(targets_tensor, i)),
    )
    dataset = dataset.prefetch(2)
    return PreparedData(dataset, count, -(-count // batch_size), tuple(inputs.shape[1:]))


def _prepare_dataset(dataset: tf.data.Dataset, *, name: str, repeat: bool) -> PreparedData:
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) != 2:
        raise ValueError(f"{name} must yield (inputs, targets) pairs; got elements {spec}")
    input_spec, target_spec = spec
    for part, part_spec in (("inputs", input_spec), ("targets", target_spec)):
        if not isinstance(part_spec, tf.TensorSpec):
            raise ValueError(
                f"{name} {part} must be dense tensors; got {part_spec} (pad ragged sequences)"
            )
        if part_spec.dtype == tf.string or part_spec.dtype == tf.bool:
            raise ValueError(f"{name} {part} must be numeric; got dtype {part_spec.dtype.name}")
    if input_spec.shape.rank is not None and input_spec.shape.rank != 3:
        raise ValueError(
            f"{name} inputs must be batches of shape [batch, time, features]; got element shape "
            f"{input_spec.shape} (did you forget .batch(...)?)"
        )
    cardinality = int(dataset.cardinality())
    if cardinality == 0:
        raise ValueError(f"{name} is an empty dataset; it must yield at least one batch")
    if cardinality == tf.data.INFINITE_CARDINALITY and not repeat:
        raise ValueError(f"{name} is infinite; an evaluation pass needs a finite dataset")
    dataset = dataset.map(lambda x, y: (tf.cast(x, tf.float32), tf.cast(y, tf.float32)))
    if repeat and cardinality != tf.data.INFINITE_CARDINALITY:
        dataset = dataset.repeat()
    dataset = dataset.prefetch(2)
    known = cardinality if cardinality > 0 else None
    return PreparedData(dataset, None, known, tuple(input_spec.shape[1:]))
