"""The reference LSTM: a pure step function and a plain unroll over time (defines correct)."""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from . import _common


class LSTMInternals(NamedTuple):
    """Every step's gates and states from `reference_lstm(..., return_internals=True)`.

    All fields are `[B, T, H]`. On a masked step the gates are what the cell computed from
    that step's input (and then discarded), `cell` and `hidden` are the carried states.
    `cell` and `hidden` include the probes, so they are exactly the states the next step sees.
    """

    input_gate: tf.Tensor
    forget_gate: tf.Tensor
    output_gate: tf.Tensor
    candidate: tf.Tensor
    cell: tf.Tensor
    hidden: tf.Tensor


def lstm_cell(z, c):
    """The LSTM cell from its pre-activations: gates, new cell state, new hidden state.

    i = σ(z_i), f = σ(z_f), g = tanh(z_c), o = σ(z_o);
    c' = f ⊙ c + i ⊙ g;  h' = o ⊙ tanh(c').

    Args:
      z: `[B, 4H]` pre-activations `x_t W + h R + b`, gates in Keras order (i, f, c, o).
      c: `[B, H]` previous cell state.

    Returns:
      `(h', c', (i, f, g, o))`, every tensor `[B, H]`.

    References:
      Hochreiter & Schmidhuber, "Long Short-Term Memory", 1997; Gers et al., "Learning to
      Forget", 2000 (the forget gate).
    """
    z_i, z_f, z_c, z_o = tf.split(z, 4, axis=-1)
    i = tf.sigmoid(z_i)
    f = tf.sigmoid(z_f)
    g = tf.tanh(z_c)
    o = tf.sigmoid(z_o)
    c_new = f * c + i * g
    h_new = o * tf.tanh(c_new)
    return h_new, c_new, (i, f, g, o)


def lstm_step(x_t, h, c, kernel, recurrent_kernel, bias):
    """One LSTM step in Keras's weight layout: `lstm_cell(x_t W + h R + b, c)`.

    Args:
      x_t: `[B, F]` input at this step.
      h: `[B, H]` previous hidden state.
      c: `[B, H]` previous cell state.
      kernel: `[F, 4H]` input weights.
      recurrent_kernel: `[H, 4H]` recurrent weights.
      bias: `[4H]` bias.

    Returns:
      `(h', c', (i, f, g, o))`, every tensor `[B, H]`.
    """
    z = tf.matmul(x_t, kernel) + tf.matmul(h, recurrent_kernel) + bias
    return lstm_cell(z, c)


def reference_lstm(
    inputs,
    kernel,
    recurrent_kernel,
    bias,
    *,
    initial_state=None,
    mask=None,
    sequence_lengths=None,
    return_sequences: bool = True,
    return_internals: bool = False,
    h_probe=None,
    c_probe=None,
):
    """Runs `lstm_step` over time with `tf.scan`: the obvious LSTM every kernel must match.

    Masked steps (Keras semantics): the states are carried unchanged, and the output repeats
    the previous output (zero before the first real step).

    Probes read state gradients with one backward pass: after step t (after masking),
    h_t ← h_t + h_probe[:, t] and c_t ← c_t + c_probe[:, t]. Passing zeros changes nothing,
    and the gradient of a loss with respect to `h_probe[:, t]` is the gradient with respect
    to the hidden state h_t (likewise for c).

    Args:
      inputs: `[B, T, F]` input sequences.
      kernel: `[F, 4H]` input weights (gates i, f, c, o).
      recurrent_kernel: `[H, 4H]` recurrent weights.
      bias: `[4H]` bias, or None for no bias.
      initial_state: None (zeros) or a pair `(h0, c0)` of `[B, H]` tensors.
      mask: None or `[B, T]` bool, True where a step is real.
      sequence_lengths: None or `[B]` lengths of right-padded sequences (instead of mask).
      return_sequences: True for `[B, T, H]` outputs, False for the last output `[B, H]`.
      return_internals: also return an `LSTMInternals` of `[B, T, H]` tensors.
      h_probe: None or `[B, T, H]` tensor added to each step's hidden state.
      c_probe: None or `[B, T, H]` tensor added to each step's cell state.

    Returns:
      `(outputs, (h, c))`, or `(outputs, (h, c), internals)` with `return_internals=True`;
      `h, c` are the final carried states `[B, H]`.

    Raises:
      ValueError: for inputs, weights, states, masks or probes of the wrong shape.
    """
    inputs, kernel, recurrent_kernel, bias, h0, c0, mask = _common.prepare(
        inputs, kernel, recurrent_kernel, bias, initial_state, mask, sequence_lengths
    )
    batch, time = tf.shape(inputs)[0], tf.shape(inputs)[1]
    units = tf.shape(recurrent_kernel)[0]
    state_shape = tf.stack([batch, time, units])
    probes = []
    for name, probe in (("h_probe", h_probe), ("c_probe", c_probe)):
        if probe is None:
            probe = tf.zeros(state_shape, dtype=inputs.dtype)
        elif len(probe.shape) != 3:
            raise ValueError(f"{name} must be 3-D [batch, time, units]; got shape {probe.shape}")
        probes.append(tf.convert_to_tensor(probe, dtype=inputs.dtype))
    if mask is None:
        mask = tf.ones(tf.stack([batch, time]), dtype=tf.bool)

    def step(carry, elems):
        h, c = carry[0], carry[1]
        x_t, m_t, hp_t, cp_t = elems
        h_new, c_new, gates = lstm_step(x_t, h, c, kernel, recurrent_kernel, bias)
        h_new = tf.where(m_t[:, None], h_new, h) + hp_t
        c_new = tf.where(m_t[:, None], c_new, c) + cp_t
        return (h_new, c_new) + gates

    def time_major(x):
        return tf.transpose(x, [1, 0] + list(range(2, len(x.shape))))

    zeros = tf.zeros_like(h0)
    h_seq, c_seq, i, f, g, o = tf.scan(
        step,
        (time_major(inputs), time_major(mask), time_major(probes[0]), time_major(probes[1])),
        initializer=(h0, c0, zeros, zeros, zeros, zeros),
    )
    h_seq, c_seq, i, f, g, o = [time_major(x) for x in (h_seq, c_seq, i, f, g, o)]
    outputs, (h_last, c_last) = _common.finish(
        h_seq, h_seq[:, -1], c_seq[:, -1], mask, return_sequences
    )
    if not return_internals:
        return outputs, (h_last, c_last)
    internals = LSTMInternals(
        input_gate=i, forget_gate=f, output_gate=o, candidate=g, cell=c_seq, hidden=h_seq
    )
    return outputs, (h_last, c_last), internals
