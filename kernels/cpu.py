"""The CPU LSTM kernel: input projection hoisted, tight recurrence, hand-written backward pass."""

from __future__ import annotations

import tensorflow as tf

from . import _common


def _forward_loop(zx, recurrent_kernel, h0, c0, mask):
    """Runs the recurrence over a precomputed input projection, saving what backward needs.

    Args:
      zx: `[T, B, 4H]` time-major input projection `x_t W + b`.
      recurrent_kernel: `[H, 4H]`.
      h0, c0: `[B, H]` initial states.
      mask: None or `[T, B, 1]` bool.

    Returns:
      `(h_seq, c_seq, gates, tanh_c)`: carried states `[T, B, H]`, activated gates
      `[T, B, 4H]` in the order (i, f, g, o), and `tanh(c_new)` `[T, B, H]`.
    """
    time = tf.shape(zx)[0]
    dtype = zx.dtype

    def new_array():
        return tf.TensorArray(dtype, size=time, infer_shape=True)

    def body(t, h, c, h_arr, c_arr, gate_arr, tanh_c_arr):
        z = zx[t] + tf.matmul(h, recurrent_kernel)
        z_i, z_f, z_c, z_o = tf.split(z, 4, axis=1)
        i = tf.sigmoid(z_i)
        f = tf.sigmoid(z_f)
        g = tf.tanh(z_c)
        o = tf.sigmoid(z_o)
        c_new = f * c + i * g
        tanh_c = tf.tanh(c_new)
        h_new = o * tanh_c
        if mask is not None:
            h_new = tf.where(mask[t], h_new, h)
            c_new = tf.where(mask[t], c_new, c)
        return (
            t + 1,
            h_new,
            c_new,
            h_arr.write(t, h_new),
            c_arr.write(t, c_new),
            gate_arr.write(t, tf.concat([i, f, g, o], axis=1)),
            tanh_c_arr.write(t, tanh_c),
        )

    _, _, _, h_arr, c_arr, gate_arr, tanh_c_arr = tf.while_loop(
        lambda t, *_: t < time,
        body,
        (tf.constant(0), h0, c0, new_array(), new_array(), new_array(), new_array()),
        parallel_iterations=1,
    )
    return h_arr.stack(), c_arr.stack(), gate_arr.stack(), tanh_c_arr.stack()


def _backward_loop(d_h_seq, d_h_last, d_c_last, recurrent_kernel, factors, bc, forget, keep):
    """Runs the recurrence backward, returning the pre-activation gradients of every step.

    With dh the total gradient of h_t and dc that of c_t, per step:
      dcx = dc + dh ⊙ o ⊙ (1 − tanh²c_t)
      dz = [dcx, dcx, dcx, dh]
           ⊙ [g ⊙ i(1−i), c_{t−1} ⊙ f(1−f), i ⊙ (1−g²), tanh c_t ⊙ o(1−o)]
      dh_{t−1} = dz Rᵀ,  dc_{t−1} = dcx ⊙ f
    (with a mask, `factors` and `forget` are zero on masked steps and `keep` passes dh, dc
    through them unchanged).

    Args:
      d_h_seq: `[T, B, H]` gradient of the loss with respect to each step's output.
      d_h_last, d_c_last: `[B, H]` gradients of the final states.
      recurrent_kernel: `[H, 4H]`.
      factors: `[T, B, 4H]` the bracketed per-gate factors above.
      bc: `[T, B, H]` o ⊙ (1 − tanh²c_t).
      forget: `[T, B, H]` the forget gate (times the mask).
      keep: None, or `[T, B, 1]` 1 − mask.

    Returns:
      `(dz [T, B, 4H], dh0 [B, H], dc0 [B, H])`.
    """
    time = tf.shape(d_h_seq)[0]
    # A transposed copy made once: MatMul with transpose_b inside the loop is ~2x slower on CPU.
    recurrent_kernel_t = tf.transpose(recurrent_kernel)

    def body(t, dh_next, dc_next, dz_arr):
        dh = d_h_seq[t] + dh_next
        dcx = dc_next + dh * bc[t]
        dz = tf.concat([dcx, dcx, dcx, dh], axis=1) * factors[t]
        dh_prev = tf.matmul(dz, recurrent_kernel_t)
        dc_prev = dcx * forget[t]
        if keep is not None:
            dh_prev += keep[t] * dh
            dc_prev += keep[t] * dc_next
        return t - 1, dh_prev, dc_prev, dz_arr.write(t, dz)

    _, dh0, dc0, dz_arr = tf.while_loop(
        lambda t, *_: t >= 0,
        body,
        (time - 1, d_h_last, d_c_last, tf.TensorArray(d_h_seq.dtype, size=time)),
        parallel_iterations=1,
    )
    return dz_arr.stack(), dh0, dc0


@tf.function(jit_compile=True)
def _forward(zx, recurrent_kernel, h0, c0, mask_float):
    mask = None if mask_float is None else mask_float > 0
    return _forward_loop(zx, recurrent_kernel, h0, c0, mask)


@tf.function(jit_compile=True)
def _backward(d_h_seq, d_h_last, d_c_last, recurrent_kernel, h0, c0, saved, mask_float):
    h_seq, c_seq, gates, tanh_c = saved
    units = tf.shape(h0)[1]
    i, f, g, o = tf.split(gates, 4, axis=2)
    c_prev = tf.concat([c0[None], c_seq[:-1]], axis=0)
    h_prev = tf.concat([h0[None], h_seq[:-1]], axis=0)
    factors = tf.concat(
        [g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g), tanh_c * o * (1 - o)],
        axis=2,
    )
    bc = o * (1 - tanh_c * tanh_c)
    keep = None
    if mask_float is not None:
        factors *= mask_float
        f *= mask_float
        keep = 1 - mask_float
    dz, dh0, dc0 = _backward_loop(
        d_h_seq, d_h_last, d_c_last, recurrent_kernel, factors, bc, f, keep
    )
    d_recurrent_kernel = tf.matmul(
        tf.reshape(h_prev, [-1, units]), tf.reshape(dz, [-1, 4 * units]), transpose_a=True
    )
    return dz, d_recurrent_kernel, dh0, dc0


def _recurrence_with_gradient(zx, recurrent_kernel, h0, c0, mask_float):
    """The recurrence as one op with a hand-written gradient (mask_float: `[T, B, 1]` or None)."""

    @tf.custom_gradient
    def recurrence(zx, recurrent_kernel, h0, c0):
        # stop_gradient: the tape must not differentiate the loop itself (grad is below).
        saved = _forward(*[tf.stop_gradient(a) for a in (zx, recurrent_kernel, h0, c0)], mask_float)
        h_seq, c_seq = saved[0], saved[1]

        def grad(d_h_seq, d_h_last, d_c_last):
            d_h_seq, d_h_last, d_c_last = [
                tf.zeros_like(ref) if d is None else d
                for d, ref in ((d_h_seq, h_seq), (d_h_last, h0), (d_c_last, c0))
            ]
            return _backward(
                d_h_seq, d_h_last, d_c_last, recurrent_kernel, h0, c0, saved, mask_float
            )

        return (h_seq, h_seq[-1], c_seq[-1]), grad

    return recurrence(zx, recurrent_kernel, h0, c0)


def cpu_lstm(
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
    """The reference LSTM's function, arranged to be fast on a CPU.

    The input projection `X W + b` for all T steps is one `[B·T, F] × [F, 4H]` matrix product;
    the loop does only `h R` and the elementwise cell. The backward pass is hand-written
    (`tf.custom_gradient`): a reverse loop produces each step's pre-activation gradient dz_t,
    and then dW = Xᵀ dZ, dR = H_{t−1}ᵀ dZ, db = Σ dZ and dX = dZ Wᵀ are each one matrix
    product over all steps, as cuDNN does. Masks follow Keras (states carried through masked
    steps). The gradient is first-order only.

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

    References:
      Appleyard, Kocisky & Blunsom, "Optimizing Performance of Recurrent Neural Networks on
      GPUs", 2016 (input projection hoisted out of the recurrence; weight gradients batched).
    """
    inputs, kernel, recurrent_kernel, bias, h0, c0, mask = _common.prepare(
        inputs, kernel, recurrent_kernel, bias, initial_state, mask, sequence_lengths
    )
    features = tf.shape(inputs)[2]
    x_time_major = tf.transpose(inputs, [1, 0, 2])
    zx = tf.matmul(tf.reshape(x_time_major, [-1, features]), kernel) + bias
    zx = tf.reshape(zx, tf.concat([tf.shape(x_time_major)[:2], [-1]], axis=0))
    mask_float = None
    if mask is not None:
        mask_float = tf.cast(tf.transpose(mask)[:, :, None], inputs.dtype)
    h_seq, h_last, c_last = _recurrence_with_gradient(zx, recurrent_kernel, h0, c0, mask_float)
    if return_sequences:
        return _common.mask_outputs(tf.transpose(h_seq, [1, 0, 2]), mask), (h_last, c_last)
    return _common.last_output(h_last, mask), (h_last, c_last)
