"""Initializers for LSTM weights: chrono initialisation of the gate biases.

`Chrono(max_lag)` is a Keras initializer for the `[4H]` bias of an LSTM (gate order i, f, c,
o, Keras's layout). It sets the forget-gate bias to `log(u)`, `u ~ U[1, max_lag - 1]`, and the
input-gate bias to its negative, so that unit `j` starts with a memory time scale of about `u_j`
steps, spread over every time scale up to the longest lag the task needs. The gradient then
reaches back `max_lag` steps at initialisation, where the default forget bias (1) reaches
about 30 and 0 about 10 (benchmarks/results/vanishing_cpu2core.md).

Use it as::

    keras.layers.LSTM(64, unit_forget_bias=False, bias_initializer=lstmcore.initializers.Chrono(200))

`unit_forget_bias=False` is required: with it True, Keras calls the bias initializer for the
input gate and for the cell/output gates separately and writes ones over the forget gate.

References:
  Tallec and Ollivier, "Can recurrent neural networks warp time?", ICLR 2018.
"""

from __future__ import annotations

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="lstmcore")
class Chrono(keras.initializers.Initializer):
    """Chrono initialisation of a `[4H]` LSTM bias: `b_f = log(U[1, max_lag - 1])`, `b_i = -b_f`.

    Args:
      max_lag: the longest dependency, in time steps, the LSTM has to carry (usually the
        window length). At least 2.
      seed: seed of the uniform draw; the same seed gives the same biases.

    Raises:
      ValueError: when `max_lag` is not a number >= 2, or when called with a shape that is not
        `[4H]` (a recurrent layer with `unit_forget_bias=True` calls it with `[H]` and `[2H]`).
    """

    def __init__(self, max_lag: float, seed: int | None = 0):
        if isinstance(max_lag, bool) or not isinstance(max_lag, (int, float)) or max_lag < 2:
            raise ValueError(f"max_lag must be a number of time steps >= 2; got {max_lag!r}")
        self.max_lag = float(max_lag)
        self.seed = seed

    def __call__(self, shape, dtype=None):
        shape = tuple(int(s) for s in shape)
        if len(shape) != 1 or shape[0] % 4:
            raise ValueError(
                f"Chrono initialises an LSTM bias of shape [4 * units]; got shape {shape}. Pass "
                "unit_forget_bias=False to the LSTM layer (with it True Keras calls the bias "
                "initializer per gate group)."
            )
        units = shape[0] // 4
        rng = np.random.default_rng(self.seed)
        forget = np.log(rng.uniform(1.0, max(self.max_lag - 1.0, 1.0 + 1e-6), size=units))
        bias = np.concatenate([-forget, forget, np.zeros(2 * units)])
        return keras.ops.convert_to_tensor(bias, dtype=dtype or "float32")

    def get_config(self) -> dict:
        return {"max_lag": self.max_lag, "seed": self.seed}
