"""Argument checks and mask handling shared by every LSTM kernel."""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def _static_shape(value) -> tuple:
    shape = getattr(value, "shape", None)
    if shape is None:
        shape = np.shape(value)
    return tuple(None if d is None else int(d) for d in shape)


def check_arguments(inputs, kernel, recurrent_kernel, bias, initial_state, mask, sequence_lengths):
    """Checks the static shapes of a kernel call and raises a clear error on a mismatch.

    Args:
      inputs: `[B, T, F]` input sequences.
      kernel: `[F, 4H]` input weights.
      recurrent_kernel: `[H, 4H]` recurrent weights.
      bias: `[4H]` bias, or None.
      initial_state: None or a pair `(h, c)` of `[B, H]` tensors.
      mask: None or a `[B, T]` boolean mask (True = step is real).
      sequence_lengths: None or `[B]` integer lengths of right-padded sequences.

    Raises:
      ValueError: naming the argument, the value received and what is accepted.
    """
    x_shape = _static_shape(inputs)
    if len(x_shape) != 3:
        raise ValueError(f"inputs must be 3-D [batch, time, features]; got shape {x_shape}")
    k_shape = _static_shape(kernel)
    if len(k_shape) != 2 or (k_shape[1] is not None and k_shape[1] % 4 != 0):
        raise ValueError(f"kernel must be 2-D [features, 4 * units]; got shape {k_shape}")
    units = None if k_shape[1] is None else k_shape[1] // 4
    features = x_shape[2]
    if features is not None and k_shape[0] is not None and features != k_shape[0]:
        raise ValueError(
            f"kernel must have shape [{features}, 4 * units] to match inputs with "
            f"{features} features (inputs shape {x_shape}); got kernel shape {k_shape}"
        )
    r_shape = _static_shape(recurrent_kernel)
    if units is not None and r_shape != (units, 4 * units):
        raise ValueError(
            f"recurrent_kernel must have shape [{units}, {4 * units}] (units = "
            f"kernel.shape[1] / 4); got shape {r_shape}"
        )
    if bias is not None and units is not None and _static_shape(bias) != (4 * units,):
        raise ValueError(f"bias must have shape [{4 * units}]; got shape {_static_shape(bias)}")
    if mask is not None and sequence_lengths is not None:
        raise ValueError("pass mask or sequence_lengths, not both; got both")
    if mask is not None:
        m_shape = _static_shape(mask)
        if len(m_shape) != 2 or any(
            a is not None and b is not None and a != b for a, b in zip(m_shape, x_shape[:2])
        ):
            raise ValueError(
                f"mask must be 2-D [batch, time] = {list(x_shape[:2])}; got shape {m_shape}"
            )
    if sequence_lengths is not None:
        l_shape = _static_shape(sequence_lengths)
        if len(l_shape) != 1 or (
            l_shape[0] is not None and x_shape[0] is not None and l_shape[0] != x_shape[0]
        ):
            raise ValueError(
                f"sequence_lengths must be 1-D [batch] = [{x_shape[0]}]; got shape {l_shape}"
            )
    if initial_state is not None:
        if not isinstance(initial_state, (tuple, list)) or len(initial_state) != 2:
            raise ValueError(
                f"initial_state must be a pair (h, c) of [batch, units] tensors; got "
                f"{type(initial_state).__name__}"
            )
        for name, state in zip(("h", "c"), initial_state):
            s_shape = _static_shape(state)
            expected = (x_shape[0], units)
            if len(s_shape) != 2 or any(
                a is not None and b is not None and a != b for a, b in zip(s_shape, expected)
            ):
                raise ValueError(
                    f"initial_state {name} must have shape [batch, units] = {list(expected)}; "
                    f"got shape {s_shape}"
                )


def prepare(inputs, kernel, recurrent_kernel, bias, initial_state, mask, sequence_lengths):
    """Checks arguments and converts them to tensors of one dtype.

    Args:
      inputs, kernel, recurrent_kernel, bias, initial_state, mask, sequence_lengths: as in
        `check_arguments`.

    Returns:
      `(inputs, kernel, recurrent_kernel, bias, h0, c0, mask)` with `bias` a `[4H]` tensor
      (zeros when None), `h0, c0` `[B, H]` tensors (zeros when None) and `mask` a `[B, T]`
      bool tensor or None.
    """
    check_arguments(inputs, kernel, recurrent_kernel, bias, initial_state, mask, sequence_lengths)
    inputs = tf.convert_to_tensor(inputs)
    dtype = inputs.dtype
    kernel = tf.convert_to_tensor(kernel, dtype=dtype)
    recurrent_kernel = tf.convert_to_tensor(recurrent_kernel, dtype=dtype)
    units = recurrent_kernel.shape[0] or tf.shape(recurrent_kernel)[0]
    if bias is None:
        bias = tf.zeros([4 * units], dtype=dtype)
    bias = tf.convert_to_tensor(bias, dtype=dtype)
    if initial_state is None:
        zeros = tf.zeros(tf.stack([tf.shape(inputs)[0], units]), dtype=dtype)
        h0, c0 = zeros, zeros
    else:
        h0 = tf.convert_to_tensor(initial_state[0], dtype=dtype)
        c0 = tf.convert_to_tensor(initial_state[1], dtype=dtype)
    if sequence_lengths is not None:
        mask = tf.sequence_mask(sequence_lengths, maxlen=tf.shape(inputs)[1])
    if mask is not None:
        mask = tf.cast(mask, tf.bool)
    return inputs, kernel, recurrent_kernel, bias, h0, c0, mask


def mask_outputs(h_seq, mask):
    """Applies Keras's output rule for masked steps to a sequence of carried hidden states.

    Keras repeats the previous output at a masked step, and the output before the first
    real step is zero. Since the carried state at a masked step equals the last real
    output, that is `h_t` times "some step up to t was real".

    Args:
      h_seq: `[B, T, H]` hidden state carried at every step (unchanged on masked steps).
      mask: `[B, T]` bool mask, or None.

    Returns:
      `[B, T, H]` outputs.
    """
    if mask is None:
        return h_seq
    seen = tf.cast(tf.math.cumsum(tf.cast(mask, tf.int32), axis=1) > 0, h_seq.dtype)
    return h_seq * seen[:, :, None]


def last_output(h_last, mask):
    """The output at the last step, `[B, H]`: the final hidden state, or zero for an empty row.

    Args:
      h_last: `[B, H]` final carried hidden state.
      mask: `[B, T]` bool mask, or None.

    Returns:
      `[B, H]`, equal to `mask_outputs(h_seq, mask)[:, -1]`.
    """
    if mask is None:
        return h_last
    return h_last * tf.cast(tf.reduce_any(mask, axis=1), h_last.dtype)[:, None]


def finish(h_seq, h_last, c_last, mask, return_sequences: bool):
    """Every kernel's return value: Keras's outputs, and the final carried states.

    Args:
      h_seq: `[B, T, H]` hidden state carried at every step (unchanged on masked steps).
      h_last, c_last: `[B, H]` final carried states.
      mask: `[B, T]` bool mask, or None.
      return_sequences: True for `[B, T, H]` outputs, False for the last output `[B, H]`.

    Returns:
      `(outputs, (h_last, c_last))`, outputs by `mask_outputs` or `last_output`.
    """
    if return_sequences:
        return mask_outputs(h_seq, mask), (h_last, c_last)
    return last_output(h_last, mask), (h_last, c_last)


CUDNN_MASK_MESSAGE = (
    "mask must be right-padded with at least one real step per row for the cudnn kernel "
    "(each row True...True then False...False, e.g. [[True, True, False]]); got {what}. "
    "Use kernel='cpu' or 'reference' for left padding or empty rows."
)


def describe_bad_cudnn_mask(mask) -> str | None:
    """Says what is wrong with a concrete mask for cuDNN, or None when cuDNN can take it.

    Args:
      mask: a concrete `[B, T]` boolean array or eager tensor.

    Returns:
      None for a right-padded mask with at least one True per row, else a short description
      naming the first offending row.
    """
    mask = np.asarray(mask).astype(bool)
    lengths = mask.sum(axis=1)
    for row, (row_mask, length) in enumerate(zip(mask, lengths)):
        if length == 0:
            return f"row {row} is all False (an empty sequence)"
        if not row_mask[:length].all():
            return f"row {row} is not right-padded: {row_mask.astype(int).tolist()}"
    return None


def validate_cudnn_mask(mask) -> None:
    """Raises ValueError if a concrete mask cannot be handed to cuDNN.

    cuDNN takes sequence lengths, so only right padding is expressible, and a zero length is
    rejected inside the op. Checking on the host turns those into a clear error.

    Args:
      mask: a concrete `[B, T]` boolean array or eager tensor.

    Raises:
      ValueError: for left padding, holes in a row, or a row with no real step.
    """
    problem = describe_bad_cudnn_mask(mask)
    if problem is not None:
        raise ValueError(CUDNN_MASK_MESSAGE.format(what=problem))
