"""A drop-in `keras.layers.LSTM` that runs on a named lstmcore kernel, picked for the device."""

from __future__ import annotations

import keras
import tensorflow as tf

from lstmcore import kernels

KERNEL_CHOICES = ("auto", "reference", "cpu", "xla", "cudnn")


@keras.saving.register_keras_serializable(package="lstmcore")
class LSTM(keras.layers.Layer):
    """Long Short-Term Memory layer with Keras's weights, on an interchangeable kernel.

    Takes the constructor arguments of `keras.layers.LSTM` for the common cases and creates
    the same variables (`kernel [F, 4H]`, `recurrent_kernel [H, 4H]`, `bias [4H]`, in that
    order), so `layer.set_weights(keras_lstm.get_weights())` copies a Keras LSTM exactly.
    The recurrence runs on one of `lstmcore.kernels`: with `kernel="auto"` it is "cudnn" when
    a GPU is visible (and `go_backwards` is off), else "cpu". `kernel_name` says which one
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
        self.requested_kernel = kernel
        self.kernel_name, self._kernel_reason = self._choose_kernel(kernel)
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
        if gpu and not self.go_backwards:
            return "cudnn", "kernel='auto' and a GPU is visible"
        if gpu:
            return "cpu", "kernel='auto', GPU visible but go_backwards reverses masks for cuDNN"
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
        if self.dropout and training:
            keep = keras.random.dropout(
                tf.ones_like(inputs[:, :1, :]), self.dropout, seed=self.seed_generator
            )
            inputs = inputs * keep
        if mask is not None:
            mask = tf.cast(mask, tf.bool)
        if self.go_backwards:
            inputs = tf.reverse(inputs, axis=[1])
            if mask is not None:
                mask = tf.reverse(mask, axis=[1])
        outputs, (h, c) = kernels.get_kernel(self.kernel_name)(
            inputs,
            self.kernel,
            self.recurrent_kernel,
            self.bias,
            initial_state=None if initial_state is None else tuple(initial_state),
            mask=mask,
            return_sequences=self.return_sequences,
        )
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
                "kernel": self.requested_kernel,
            }
        )
        return config
