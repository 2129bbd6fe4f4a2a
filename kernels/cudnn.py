"""The cuDNN LSTM kernel: `tf.raw_ops.CudnnRNNV3` fed Keras-layout weights, as Keras does."""

from __future__ import annotations

import tensorflow as tf

from . import _common


def gpu_available() -> bool:
    """True when TensorFlow sees a GPU (the condition Keras uses to pick cuDNN)."""
    return bool(tf.config.list_logical_devices("GPU"))


def to_cudnn_params(kernel, recurrent_kernel, bias):
    """Packs Keras-layout LSTM weights into cuDNN's flat parameter buffer.

    cuDNN wants, per gate (i, f, c, o), the input weights then the recurrent weights, each
    transposed to `[H, F]` / `[H, H]` and flattened, then 8 biases: an input bias (zero here,
    so that the math is Keras's single bias) and the recurrent bias (Keras's bias). ROCm's
    MIOpen orders the gates (i, f, o, c).

    Args:
      kernel: `[F, 4H]`.
      recurrent_kernel: `[H, 4H]`.
      bias: `[4H]`.

    Returns:
      1-D tensor of `4H(F + H) + 8H` parameters.

    References:
      keras/src/backend/tensorflow/rnn.py, `_cudnn_lstm` and `_standardize_cudnn_weights`.
    """
    weights = tf.split(kernel, 4, axis=1) + tf.split(recurrent_kernel, 4, axis=1)
    full_bias = tf.concat((tf.zeros_like(bias), bias), 0)
    biases = tf.split(full_bias, 8)
    if tf.sysconfig.get_build_info().get("is_rocm_build", False):
        order = (0, 1, 3, 2, 4, 5, 7, 6)
        weights = [weights[x] for x in order]
        biases = [biases[x] for x in order]
    flat = [tf.reshape(tf.transpose(w), [-1]) for w in weights]
    flat += [tf.reshape(b, [-1]) for b in biases]
    return tf.concat(flat, axis=0)


def cudnn_lstm(
    inputs,
    kernel,
    recurrent_kernel,
    bias,
    *,
    initial_state=None,
    mask=None,
    sequence_lengths=None,
    return_sequences: bool = True,
):
    """The LSTM on cuDNN (GPU only), with the reference kernel's weights and semantics.

    Masks must be right-padded with at least one real step per row (cuDNN takes sequence
    lengths). A concrete mask is checked on the host (ValueError); inside a `tf.function`
    the same check runs as an assertion before the cuDNN op, so a bad mask fails with the
    same message rather than inside cuDNN. cuDNN writes zeros at padded steps; they are
    replaced by the last real output, as in the other kernels. Not XLA-compilable.

    Args:
      inputs: `[B, T, F]` input sequences.
      kernel: `[F, 4H]` input weights (gates i, f, c, o).
      recurrent_kernel: `[H, 4H]` recurrent weights.
      bias: `[4H]` bias, or None.
      initial_state: None (zeros) or `(h0, c0)`, each `[B, H]`.
      mask: None or `[B, T]` bool, right-padded.
      sequence_lengths: None or `[B]` lengths ≥ 1 (instead of mask).
      return_sequences: True for `[B, T, H]` outputs, False for the last output `[B, H]`.

    Returns:
      `(outputs, (h, c))` as `reference_lstm`.

    Raises:
      RuntimeError: when no GPU is visible.
      ValueError: for arguments of the wrong shape, or a concrete mask cuDNN cannot take.

    References:
      keras/src/backend/tensorflow/rnn.py, `_cudnn_lstm` (Keras 3.15).
    """
    inputs, kernel, recurrent_kernel, bias, h0, c0, mask = _common.prepare(
        inputs, kernel, recurrent_kernel, bias, initial_state, mask, sequence_lengths
    )
    if not gpu_available():
        raise RuntimeError(
            "the cudnn kernel needs a GPU; tf.config.list_logical_devices('GPU') is empty. "
            "Use kernel='cpu' (or 'auto') on this machine."
        )
    batch, time = tf.shape(inputs)[0], tf.shape(inputs)[1]
    if mask is None:
        lengths = tf.fill([batch], time)
    else:
        if tf.executing_eagerly():
            _common.validate_cudnn_mask(mask.numpy())
        else:
            lengths_check = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
            right_padded = tf.reduce_all(
                tf.equal(mask, tf.sequence_mask(lengths_check, maxlen=time))
            )
            valid = tf.logical_and(right_padded, tf.reduce_all(lengths_check > 0))
            check = tf.debugging.Assert(
                valid,
                [_common.CUDNN_MASK_MESSAGE.format(what="a left-padded, holed or empty row")],
            )
            with tf.control_dependencies([check]):
                inputs = tf.identity(inputs)
        lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
    outputs, h, c, _, _ = tf.raw_ops.CudnnRNNV3(
        input=inputs,
        input_h=tf.expand_dims(h0, axis=1),
        input_c=tf.expand_dims(c0, axis=1),
        params=to_cudnn_params(kernel, recurrent_kernel, bias),
        is_training=True,
        rnn_mode="lstm",
        sequence_lengths=lengths,
        time_major=False,
    )
    h = tf.squeeze(h, axis=1)
    c = tf.squeeze(c, axis=1)
    if not return_sequences:
        # Every row has a real step (checked above): the last output is the final state.
        return h, (h, c)
    if mask is not None:
        # cuDNN writes zeros after a row's length; the carried state there is the last one.
        outputs = tf.where(mask[:, :, None], outputs, h[:, None, :])
    return _common.finish(outputs, h, c, None, return_sequences)
