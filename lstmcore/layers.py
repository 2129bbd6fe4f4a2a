"""A drop-in `keras.layers.LSTM` that runs on a named lstmcore kernel, picked for the device."""

from __future__ import annotations

import keras
import tensorflow as tf

from lstmcore import kernels

KERNEL_CHOICES = ("auto", "reference", "cpu", "xla", "cudnn")
# kernel_name when no lstmcore kernel can honour the configuration: Keras's own generic loop.
KERAS_KERNEL = "keras"
# With kernel="auto" on a GPU, the kernel for masks cuDNN cannot take. It runs inside a
# tf.cond branch, where the gradient of the cpu and xla kernels' tf.custom_gradient cannot
# reach the forward pass's saved tensors (cond_v2 raises "Could not find external tensor
# capture"); the reference kernel is plain autodiff and differentiates inside a branch.
MASK_FALLBACK_KERNEL = "reference"


def cudnn_can_take(mask) -> tf.Tensor:
    """Scalar bool tensor: the `[B, T]` mask is right-padded with a real step in every row."""
    mask = tf.cast(mask, tf.bool)
    lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
    right_padded = tf.reduce_all(tf.equal(mask, tf.sequence_mask(lengths, tf.shape(mask)[1])))
    return tf.logical_and(right_padded, tf.reduce_all(lengths > 0))


def _is_one_of(function, *candidates) -> bool:
    return any(function is c for c in candidates)


def _function_name(function) -> str:
    return getattr(function, "__name__", repr(function))


def run_kernel(
    kernel_name: str,
    inputs,
    kernel,
    recurrent_kernel,
    bias,
    *,
    initial_state=None,
    mask=None,
    go_backwards: bool = False,
    return_sequences: bool = False,
    zero_output_for_mask: bool = False,
    reverse_real_steps: bool | None = None,
):
    """Runs a kernel with the semantics of Keras's RNN layer (`keras.src.backend.rnn`).

    Keras's rules, which every kernel follows here:

    - `go_backwards` reverses the time axis of the inputs and of the mask, and the outputs
      come back in that reversed order; the final state is the state after the last real step
      in that order.
    - At a masked step the states are carried; the output repeats the previous output (zero
      before the first real step), or is zero when `zero_output_for_mask` is set. With
      `zero_output_for_mask`, the last output is zero too when the last step is masked.

    cuDNN takes sequence lengths, so it needs right-padded masks. `tf.reverse` would turn a
    right-padded mask into a left-padded one; instead (as Keras's cuDNN path does) the real part
    of each row is reversed with `tf.reverse_sequence`, which keeps the mask right-padded, and
    the outputs are put back into Keras's order afterwards. The two routes give the same
    numbers; `reverse_real_steps` picks one (default: the second for the cudnn kernel only).

    Args:
      kernel_name: a name in `lstmcore.kernels.KERNELS`.
      inputs: `[B, T, F]`, already in the compute dtype.
      kernel, recurrent_kernel, bias: Keras-layout weights (`bias` may be None).
      initial_state: None or `(h0, c0)`, each `[B, H]`.
      mask: None or `[B, T]` bool.
      go_backwards: process the sequence in reverse.
      return_sequences: whether the `[B, T, H]` outputs are needed.
      zero_output_for_mask: zeros instead of the repeated output at masked steps.
      reverse_real_steps: None (per kernel), True (`tf.reverse_sequence`, needs a right-padded
        mask) or False (`tf.reverse`).

    Returns:
      `(last_output [B, H], outputs, (h, c))`; `outputs` is `[B, T, H]` with
      `return_sequences`, else `last_output` as `[B, 1, H]`.
    """
    kernel_fn = kernels.get_kernel(kernel_name)
    if mask is not None:
        mask = tf.cast(mask, tf.bool)
    if reverse_real_steps is None:
        reverse_real_steps = kernel_name == "cudnn"
    lengths = None
    if go_backwards and mask is not None and reverse_real_steps:
        lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
        inputs = tf.reverse_sequence(inputs, lengths, seq_axis=1, batch_axis=0)
    elif go_backwards:
        inputs = tf.reverse(inputs, axis=[1])
        if mask is not None:
            mask = tf.reverse(mask, axis=[1])
    outputs, (h, c) = kernel_fn(
        inputs,
        kernel,
        recurrent_kernel,
        bias,
        initial_state=None if initial_state is None else tuple(initial_state),
        mask=mask,
        return_sequences=return_sequences,
    )
    if lengths is not None:
        # Back to Keras's frame: reversed time, so the padding now leads each row, and the
        # outputs there precede every real step (zero in Keras, whatever the flag).
        mask = tf.reverse(mask, axis=[1])
        if return_sequences:
            outputs = tf.reverse_sequence(outputs, lengths, seq_axis=1, batch_axis=0)
            outputs = tf.reverse(outputs, axis=[1])
            outputs = tf.where(mask[:, :, None], outputs, tf.zeros_like(outputs))
    if return_sequences:
        if zero_output_for_mask and mask is not None:
            outputs = tf.where(mask[:, :, None], outputs, tf.zeros_like(outputs))
        last_output = outputs[:, -1]
    else:
        last_output = outputs
        if zero_output_for_mask and mask is not None:
            last_output = tf.where(mask[:, -1:], last_output, tf.zeros_like(last_output))
        outputs = last_output[:, None, :]
    return last_output, outputs, (h, c)


@keras.saving.register_keras_serializable(package="lstmcore")
class LSTM(keras.layers.LSTM):
    """`keras.layers.LSTM`, with the recurrence on an interchangeable lstmcore kernel.

    A subclass of `keras.layers.LSTM`: every argument, attribute and method of Keras's layer
    is there with the same meaning and default (`stateful` with `states`, `reset_state()` and
    `reset_states()`, `recurrent_dropout`, `unroll`, `zero_output_for_mask`, `implementation`,
    `use_cudnn`, `return_state`, `go_backwards`, masks, `initial_state`, mixed precision, any
    real or integer input dtype cast to the compute dtype), the weights are Keras's
    (`cell.kernel [F, 4H]`, `cell.recurrent_kernel [H, 4H]`, `cell.bias [4H]`, gates i, f, c,
    o; `set_weights(keras_lstm.get_weights())` copies one exactly), and
    `isinstance(layer, keras.layers.LSTM)` holds, so `Bidirectional` and other wrappers treat it
    as Keras's. Only the loop over time differs: Keras's `inner_loop` is replaced by one of
    `lstmcore.kernels`.

    The kernel, fixed at construction (`kernel_name`; `kernel_report()` says why):

    - `kernel="auto"`: "cudnn" when a GPU is visible and `use_cudnn` is not False, else "cpu".
      On cuDNN, a batch whose mask cuDNN cannot take (not right-padded, or a row with no real
      step) runs on the "reference" kernel instead (`tf.cond`, per batch).
    - `kernel="reference" | "cpu" | "xla" | "cudnn"`: that kernel, unless an option rules
      it out (below).
    - Options no lstmcore kernel implements (an activation other than tanh, a recurrent
      activation other than sigmoid, `unroll=True`) run Keras's own generic loop (kernel_name
      "keras"), exactly as `keras.layers.LSTM` computes them. Per call, training with
      `recurrent_dropout` (or with `dropout` and `implementation=1`, whose four per-gate masks
      the kernels do not draw) runs Keras's loop too; inference runs the kernel.

    `use_cudnn` means what it means in Keras: `True` requires the cuDNN kernel, and a call
    raises ValueError saying why it cannot run (no GPU, or the option that rules it out);
    `False` excludes it; `"auto"` uses it when it can. Dropout draws Keras's mask (one per
    sequence, from the cell's seed generator), so a seeded layer drops the same inputs as
    Keras's.

    Masked steps follow Keras's documented rule on every kernel, cuDNN included: states are
    carried, and the output repeats the previous one (zero before the first real step) unless
    `zero_output_for_mask=True`, which writes zeros. Keras's own cuDNN path writes zeros at
    padded steps whatever the flag; lstmcore does not, so one model gives the same outputs on
    a CPU and a GPU.

    Args:
      units: H, the size of the hidden and cell states.
      activation, recurrent_activation, use_bias, kernel_initializer, recurrent_initializer,
        bias_initializer, unit_forget_bias, kernel_regularizer, recurrent_regularizer,
        bias_regularizer, activity_regularizer, kernel_constraint, recurrent_constraint,
        bias_constraint, dropout, recurrent_dropout, seed, return_sequences, return_state,
        go_backwards, stateful, unroll, use_cudnn: as in `keras.layers.LSTM`.
      kernel: "auto", "reference", "cpu", "xla" or "cudnn".
      **kwargs: the rest of Keras's arguments (`zero_output_for_mask`, `implementation`,
        `name`, `dtype`, `trainable`, ...).

    Raises:
      ValueError: for an unknown `kernel`; for `kernel="cudnn"` without a GPU or with
        `use_cudnn=False`. (As in Keras, `use_cudnn=True` where cuDNN cannot run raises when
        the layer is called, not when it is made.)
    """

    def __init__(
        self,
        units,
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        unit_forget_bias=True,
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        use_cudnn="auto",
        kernel: str = "auto",
        **kwargs,
    ):
        if kernel not in KERNEL_CHOICES:
            raise ValueError(f"kernel must be one of {list(KERNEL_CHOICES)}; got {kernel!r}")
        if kernel == "cudnn" and use_cudnn is False:
            raise ValueError(
                "kernel='cudnn' and use_cudnn=False contradict each other; pass one of them "
                "(kernel='auto' with use_cudnn=False runs the 'cpu' kernel)"
            )
        super().__init__(
            units,
            activation=activation,
            recurrent_activation=recurrent_activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            unit_forget_bias=unit_forget_bias,
            kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer,
            kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint,
            bias_constraint=bias_constraint,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            seed=seed,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            use_cudnn=use_cudnn,
            **kwargs,
        )
        self.requested_kernel = kernel
        self.kernel_name, self._kernel_reason, self._cudnn_refusal = self._choose_kernel()
        # cuDNN's op cannot be compiled by XLA: Keras's `jit_compile="auto"` must see that, as
        # it does for keras.layers.LSTM, or fit/predict on a GPU fail to compile. Every other
        # kernel (and Keras's generic loop) compiles.
        self.supports_jit = self.kernel_name != "cudnn"

    # Keras's LSTM keeps its weights on the cell; these read them from the layer, as the
    # kernels' signature names them.
    @property
    def kernel(self):
        return self.cell.kernel

    @property
    def recurrent_kernel(self):
        return self.cell.recurrent_kernel

    @property
    def bias(self):
        return self.cell.bias if self.cell.use_bias else None

    def _kernel_blockers(self) -> list[str]:
        """Options of this layer that no lstmcore kernel implements (fixed at construction)."""
        blockers = []
        if not _is_one_of(self.activation, keras.activations.tanh, tf.tanh, keras.ops.tanh):
            blockers.append(f"activation={_function_name(self.activation)} (kernels use tanh)")
        if not _is_one_of(
            self.recurrent_activation, keras.activations.sigmoid, tf.sigmoid, keras.ops.sigmoid
        ):
            blockers.append(
                f"recurrent_activation={_function_name(self.recurrent_activation)} "
                "(kernels use sigmoid)"
            )
        if self.unroll:
            blockers.append("unroll=True (Keras unrolls the loop in Python)")
        return blockers

    def _choose_kernel(self) -> tuple[str, str, str | None]:
        """`(kernel_name, reason, why cuDNN cannot run or None)` for this configuration."""
        gpu = kernels.gpu_available()
        requested = self.requested_kernel
        blockers = self._kernel_blockers()
        cudnn_blockers = list(blockers)
        if self.recurrent_dropout:
            cudnn_blockers.append(f"recurrent_dropout={self.recurrent_dropout} (cuDNN has none)")
        if not gpu:
            cudnn_blockers.append("no GPU is visible (tf.config.list_logical_devices('GPU'))")
        if requested not in ("auto", "cudnn"):
            cudnn_blockers.append(f"kernel={requested!r} was requested")
        refusal = "; ".join(cudnn_blockers) or None
        if requested == "cudnn" and not gpu:
            raise ValueError(
                "kernel='cudnn' cannot run this layer: no GPU is visible "
                "(tf.config.list_logical_devices('GPU') is empty). Use kernel='auto' or 'cpu'."
            )
        if blockers:
            return (
                KERAS_KERNEL,
                "Keras's generic loop: " + "; ".join(blockers) + " (no lstmcore kernel has it)",
                refusal,
            )
        if requested != "auto":
            reason = f"kernel={requested!r} was requested"
            if self.use_cudnn is True and requested != "cudnn":
                reason += "; use_cudnn=True: calls raise"
            return requested, reason, refusal
        if self.use_cudnn is False:
            return "cpu", "kernel='auto' with use_cudnn=False", refusal
        if self.use_cudnn is True and refusal:
            return "cpu", f"use_cudnn=True but cuDNN cannot run: {refusal}; calls raise", refusal
        if gpu and not self.recurrent_dropout:
            return "cudnn", "kernel='auto' and a GPU is visible", refusal
        if gpu:
            return "cpu", "kernel='auto'; recurrent_dropout rules out cuDNN", refusal
        return "cpu", "kernel='auto' and no GPU is visible", refusal

    def _keras_loop_reason(self, training) -> str | None:
        """Why this call must run Keras's loop although the layer's kernel is lstmcore's."""
        if not training:
            return None
        if 0.0 < self.recurrent_dropout < 1.0:
            return f"training with recurrent_dropout={self.recurrent_dropout}"
        if 0.0 < self.dropout < 1.0 and self.cell.implementation == 1:
            return f"training with dropout={self.dropout} and implementation=1 (per-gate masks)"
        return None

    def kernel_report(self) -> str:
        """One line saying which kernel this layer runs and why."""
        report = f"{self.name}: kernel {self.kernel_name!r} ({self._kernel_reason})"
        if self._masks_may_fall_back():
            report += (
                f"; masks cuDNN cannot take (not right-padded, or an empty row) run on the "
                f"{MASK_FALLBACK_KERNEL!r} kernel"
            )
        if self.kernel_name != KERAS_KERNEL and self.recurrent_dropout:
            report += (
                f"; training calls run Keras's generic loop (recurrent_dropout="
                f"{self.recurrent_dropout}: no lstmcore kernel has it)"
            )
        elif self.kernel_name != KERAS_KERNEL and self.dropout and self.cell.implementation == 1:
            report += "; training calls run Keras's generic loop (implementation=1 dropout)"
        return report

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        if self.use_cudnn is True and self._cudnn_refusal:
            raise ValueError(
                "use_cudnn=True was specified, but the cuDNN kernel cannot run this layer: "
                f"{self._cudnn_refusal}. Pass use_cudnn='auto' to run another kernel."
            )
        dtype = self.compute_dtype
        # Integer or other-float inputs: the loop runs in the compute dtype, as Keras's cell.
        sequences = tf.cast(sequences, dtype)
        if self.kernel_name == KERAS_KERNEL or self._keras_loop_reason(training):
            return keras.layers.RNN.inner_loop(
                self, sequences, initial_state, mask=mask, training=training
            )
        if training and 0.0 < self.dropout < 1.0:
            # The cell's cached mask (drawn by RNN.call from the cell's seed generator): the
            # mask Keras's generic loop applies at every step.
            keep = self.cell.get_dropout_mask(sequences[:, 0, :])
            sequences = sequences * tf.cast(keep, dtype)[:, None, :]
        # Variables are read here, outside any tf.cond branch below: a read inside a branch
        # would be a capture that the branch's gradient cannot find.
        kernel = tf.cast(self.cell.kernel, dtype)
        recurrent_kernel = tf.cast(self.cell.recurrent_kernel, dtype)
        bias = None if not self.cell.use_bias else tf.cast(self.cell.bias, dtype)
        states = [tf.cast(state, dtype) for state in initial_state]

        def run(kernel_name):
            return run_kernel(
                kernel_name,
                sequences,
                kernel,
                recurrent_kernel,
                bias,
                initial_state=states,
                mask=mask,
                go_backwards=self.go_backwards,
                return_sequences=self.return_sequences,
                zero_output_for_mask=self.zero_output_for_mask,
            )

        if self._masks_may_fall_back() and mask is not None:
            # cuDNN takes right-padded masks with a real step in every row; any other mask
            # (left padding, holes, an empty row) runs on the fallback kernel, per batch.
            last_output, outputs, (h, c) = tf.cond(
                cudnn_can_take(mask), lambda: run("cudnn"), lambda: run(MASK_FALLBACK_KERNEL)
            )
        else:
            last_output, outputs, (h, c) = run(self.kernel_name)
        return last_output, outputs, [h, c]

    def _masks_may_fall_back(self) -> bool:
        # Only the layer's own choice moves: kernel="cudnn" or use_cudnn=True ask for cuDNN
        # and get its error for a mask it cannot take.
        return (
            self.kernel_name == "cudnn"
            and self.requested_kernel == "auto"
            and self.use_cudnn == "auto"
        )

    def get_config(self):
        config = super().get_config()
        config["kernel"] = self.requested_kernel
        return config
