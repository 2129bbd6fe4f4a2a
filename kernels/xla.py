"""The XLA LSTM kernel: the reference math with the input projection hoisted, under jit_compile."""

from __future__ import annotations

import tensorflow as tf

from . import _common
from .reference import lstm_cell


def _unroll(inputs, kernel, recurrent_kernel, bias, h0, c0, mask):
    x_time_major = tf.transpose(inputs, [1, 0, 2])
    zx = tf.einsum("tbf,fg->tbg", x_time_major, kernel) + bias
    if mask is None:
        mask = tf.ones(tf.shape(zx)[:2], dtype=tf.bool)
    else:
        mask = tf.transpose(mask)

    def step(carry, elems):
        h, c = carry
        zx_t, m_t = elems
        h_new, c_new, _ = lstm_cell(zx_t + tf.matmul(h, recurrent_kernel), c)
        return tf.where(m_t[:, None], h_new, h), tf.where(m_t[:, None], c_new, c)

    h_seq, c_seq = tf.scan(step, (zx, mask), initializer=(h0, c0))
    return tf.transpose(h_seq, [1, 0, 2]), h_seq[-1], c_seq[-1]


@tf.function(jit_compile=True)
def _forward(weights_and_states, mask):
    return _unroll(*weights_and_states, mask)


@tf.function(jit_compile=True)
def _backward(weights_and_states, mask, upstream):
    with tf.GradientTape() as tape:
        tape.watch(weights_and_states)
        outputs = _unroll(*weights_and_states, mask)
    return tape.gradient(outputs, weights_and_states, output_gradients=upstream)


def _xla_unroll(inputs, kernel, recurrent_kernel, bias, h0, c0, mask):
    """Forward and autodiff backward, each one XLA program.

    A jit-compiled function differentiated from outside would pass the loop's saved values
    across the XLA boundary as TensorLists, which TensorFlow does not support; so the backward
    program recomputes the forward loop inside XLA (the forward runs twice per training step).
    """

    @tf.custom_gradient
    def unroll(*weights_and_states):
        outputs = _forward([tf.stop_gradient(a) for a in weights_and_states], mask)

        def grad(*upstream):
            upstream = [tf.zeros_like(o) if u is None else u for u, o in zip(upstream, outputs)]
            return _backward(list(weights_and_states), mask, upstream)

        return outputs, grad

    return unroll(inputs, kernel, recurrent_kernel, bias, h0, c0)


def xla_lstm(
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
    """The reference LSTM compiled by XLA (`tf.function(jit_compile=True)`), autodiff gradients.

    Same math as `reference_lstm`, with `X W + b` computed for all steps before the loop (one
    matrix product instead of T). XLA fuses each step's elementwise work into one loop, which
    pays off most at small shapes where per-op overhead dominates. Each new input shape
    compiles once.

    Args:
      inputs: `[B, T, F]` input sequences (T ≥ 1).
      kernel: `[F, 4H]` input weights (gates i, f, c, o).
      recurrent_kernel: `[H, 4H]` recurrent weights.
      bias: `[4H]` bias, or None.
      initial_state: None (zeros) or `(h0, c0)`, each `[B, H]`.
      mask: None or `[B, T]` bool, True where a step is real (any pattern).
      sequence_lengths: None or `[B]` lengths of right-padded sequences (instead of mask).
      return_sequences: True for `[B, T, H]` outputs, False for the last output `[B, H]`.

    Returns:
      `(outputs, (h, c))` as `reference_lstm`.

    Raises:
      ValueError: for arguments of the wrong shape.
    """
    inputs, kernel, recurrent_kernel, bias, h0, c0, mask = _common.prepare(
        inputs, kernel, recurrent_kernel, bias, initial_state, mask, sequence_lengths
    )
    h_seq, h_last, c_last = _xla_unroll(inputs, kernel, recurrent_kernel, bias, h0, c0, mask)
    return _common.finish(h_seq, h_last, c_last, mask, return_sequences)
