"""A drop-in `keras.layers.LSTM` that runs on a named lstmcore kernel, picked for the device."""

from __future__ import annotations

import keras
import tensorflow as tf

from lstmcore import kernels

KERNEL_CHOICES = ("auto", "reference", "cpu", "xla", "cudnn")


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
class LSTM(keras.layers.Layer):
    """Long Short-Term Memory layer with Keras's weights, on an interchangeable kernel.

    Takes the constructor arguments of `keras.layers.LSTM` for the common cases and creates
    the same variables (`kernel [F, 4H]`, `recurrent_kernel [H, 4H]`, `bias [4H]`, in that
    order), so `layer.set_weights(keras_lstm.get_weights())` copies a Keras LSTM exactly.
    The recurrence runs on one of `lstmcore.kernels`: with `kernel="auto"` it is "cudnn" when
    a GPU is visible, else "cpu".

    Masked steps follow Keras's documented rule on every kernel, cuDNN included: states are
    carried, and the output repeats the previous one (zero before the first real step) unless
    `zero_output_for_mask=True`, which writes zeros. Keras's own cuDNN path writes zeros at
    padded steps whatever the flag; lstmcore does not, so one model gives the same outputs on
    a CPU and a GPU. `kernel_name` says which one
    was used and `kernel_report()` why.

    Not supported (ValueError): activations other than tanh/sigmoid, `recurrent_dropout`,
    `stateful`, `unroll`. `dropout` drops input features with one mask per sequence (the
    same for every step, as Keras's cuDNN path does).

    Args:
      units: H, the size of the hidden and cell states.
      activation: "tanh" only.
      recurrent_activation: "sigmoid" only.
      use_bias: whether to add a bias.
      kernel_initializer, recurrent_initializer, bias_initializer: as in Keras.
      unit_forget_bias: initialise the forget-gate bias to one.
      kernel_regularizer, recurrent_regularizer, bias_regularizer, activity_regularizer:
        as in Keras.
      kernel_constraint, recurrent_constraint, bias_constraint: as in Keras.
      dropout: fraction of input features dropped while training.
      recurrent_dropout: must be 0.
      seed: seed for the dropout masks.
      return_sequences: return `[B, T, H]` outputs instead of the last `[B, H]`.
      return_state: also return the final `h` and `c`.
      go_backwards: process the sequence in reverse (outputs in reversed order, as Keras).
      stateful: must be False.
      unroll: must be False.
      zero_output_for_mask: with a mask and `return_sequences`, zeros at masked steps instead
        of the previous output (Keras's RNN argument; `Bidirectional` sets it).
      kernel: "auto", "reference", "cpu", "xla" or "cudnn".
      **kwargs: base-layer arguments (`name`, `dtype`, `trainable`).
    """

    def __init__(
        self,
        units: int,
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        unit_forget_bias: bool = True,
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed=None,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        zero_output_for_mask: bool = False,
        kernel: str = "auto",
        **kwargs,
    ):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        if not isinstance(units, int) or units <= 0:
            raise ValueError(f"units must be a positive integer; got {units!r}")
        for arg, value, accepted in (
            ("activation", activation, "tanh"),
            ("recurrent_activation", recurrent_activation, "sigmoid"),
        ):
            name = value if isinstance(value, str) else getattr(value, "__name__", repr(value))
            if name != accepted:
                raise ValueError(
                    f"{arg} must be '{accepted}' (the kernels hard-code it); got {name!r}. "
                    "Use keras.layers.LSTM for other activations."
                )
        if recurrent_dropout:
            raise ValueError(
                f"recurrent_dropout must be 0 (no lstmcore kernel implements it); got "
                f"{recurrent_dropout}. Use keras.layers.LSTM for recurrent dropout."
            )
        for arg, value in (("stateful", stateful), ("unroll", unroll)):
            if value:
                raise ValueError(f"{arg} must be False (not supported by lstmcore.layers.LSTM)")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {dropout}")
        if kernel not in KERNEL_CHOICES:
            raise ValueError(f"kernel must be one of {list(KERNEL_CHOICES)}; got {kernel!r}")
        self.units = units
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.unit_forget_bias = unit_forget_bias
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = keras.regularizers.get(recurrent_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.recurrent_constraint = keras.constraints.get(recurrent_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.dropout = float(dropout)
        self.seed = seed
        self.return_sequences = return_sequences
        self.return_state = return_state
        self.go_backwards = go_backwards
        self.zero_output_for_mask = zero_output_for_mask
        self.requested_kernel = kernel
        self.kernel_name, self._kernel_reason = self._choose_kernel(kernel)
        # cuDNN's op cannot be compiled by XLA: Keras's `jit_compile="auto"` must see that, as
        # it does for keras.layers.LSTM, or fit/predict on a GPU fail to compile.
        self.supports_jit = self.kernel_name != "cudnn"
        self.supports_masking = True
        if self.dropout:
            self.seed_generator = keras.random.SeedGenerator(seed)

    def _choose_kernel(self, requested: str) -> tuple[str, str]:
        gpu = kernels.gpu_available()
        if requested == "cudnn" and not gpu:
            raise ValueError(
                "kernel='cudnn' needs a visible GPU; tf.config.list_logical_devices('GPU') "
                "is empty. Use kernel='auto' or 'cpu'."
            )
        if requested != "auto":
            return requested, f"kernel={requested!r} was requested"
        if gpu:
            return "cudnn", "kernel='auto' and a GPU is visible"
        return "cpu", "kernel='auto' and no GPU is visible"

    def kernel_report(self) -> str:
        """One line saying which kernel this layer runs and why."""
        return f"{self.name}: kernel {self.kernel_name!r} ({self._kernel_reason})"

    def build(self, input_shape):
        features = input_shape[-1]
        self.kernel = self.add_weight(
            shape=(features, 4 * self.units),
            name="kernel",
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, 4 * self.units),
            name="recurrent_kernel",
            initializer=self.recurrent_initializer,
            regularizer=self.recurrent_regularizer,
            constraint=self.recurrent_constraint,
        )
        self.bias = None
        if self.use_bias:
            bias_initializer = self.bias_initializer
            if self.unit_forget_bias:
                units, base = self.units, self.bias_initializer

                def bias_initializer(_, *args, **kwargs):
                    return keras.ops.concatenate(
                        [
                            base((units,), *args, **kwargs),
                            keras.initializers.get("ones")((units,), *args, **kwargs),
                            base((2 * units,), *args, **kwargs),
                        ]
                    )

            self.bias = self.add_weight(
                shape=(4 * self.units,),
                name="bias",
                initializer=bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )

    def call(self, inputs, initial_state=None, mask=None, training=None):
        inputs = tf.cast(inputs, self.compute_dtype)
        if self.dropout and training:
            keep = keras.random.dropout(
                tf.ones_like(inputs[:, :1, :]), self.dropout, seed=self.seed_generator
            )
            inputs = inputs * keep
        _, outputs, (h, c) = run_kernel(
            self.kernel_name,
            inputs,
            self.kernel,
            self.recurrent_kernel,
            self.bias,
            initial_state=initial_state,
            mask=mask,
            go_backwards=self.go_backwards,
            return_sequences=self.return_sequences,
            zero_output_for_mask=self.zero_output_for_mask,
        )
        if not self.return_sequences:
            outputs = outputs[:, 0]
        if self.return_state:
            return [outputs, h, c]
        return outputs

    def compute_mask(self, inputs, mask=None):
        if self.return_sequences and mask is not None:
            output_mask = mask
        else:
            output_mask = None
        if self.return_state:
            return [output_mask, None, None]
        return output_mask

    def compute_output_shape(self, inputs_shape):
        batch, time = inputs_shape[0], inputs_shape[1]
        state_shape = (batch, self.units)
        output_shape = (batch, time, self.units) if self.return_sequences else state_shape
        if self.return_state:
            return [output_shape, state_shape, state_shape]
        return output_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "unit_forget_bias": self.unit_forget_bias,
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "recurrent_regularizer": keras.regularizers.serialize(self.recurrent_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
                "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
                "recurrent_constraint": keras.constraints.serialize(self.recurrent_constraint),
                "bias_constraint": keras.constraints.serialize(self.bias_constraint),
                "dropout": self.dropout,
                "seed": self.seed,
                "return_sequences": self.return_sequences,
                "return_state": self.return_state,
                "go_backwards": self.go_backwards,
                "zero_output_for_mask": self.zero_output_for_mask,
                "kernel": self.requested_kernel,
            }
        )
        return config
