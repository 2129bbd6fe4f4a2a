"""Ready-made Keras models for the CLI and the demo: an LSTM forecaster."""

from __future__ import annotations

import keras


def forecaster(
    input_steps: int,
    features: int,
    outputs: int,
    *,
    units: int = 64,
    layers: int = 1,
    dropout: float = 0.0,
    seed: int | None = 0,
) -> keras.Model:
    """Returns ``Input [T, F] -> LSTM x layers -> Dense(outputs)``.

    The LSTM layers are ``keras.layers.LSTM`` with their defaults (tanh, sigmoid, bias), so
    they take the cuDNN path on a GPU.

    Args:
      input_steps: ``T``, the window length.
      features: ``F``, the number of input features.
      outputs: the number of predicted values per window (horizon x targets).
      units: LSTM units per layer.
      layers: number of stacked LSTM layers.
      dropout: dropout on each LSTM's inputs.
      seed: initialiser seed, for reproducible runs.

    Returns:
      An unbuilt-optimizer, uncompiled ``keras.Sequential``.
    """
    for name, value in (
        ("input_steps", input_steps),
        ("features", features),
        ("outputs", outputs),
        ("units", units),
        ("layers", layers),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got {dropout!r}")
    stack = [keras.Input((input_steps, features))]
    for index in range(layers):
        stack.append(
            keras.layers.LSTM(
                units,
                return_sequences=index < layers - 1,
                dropout=dropout,
                kernel_initializer=keras.initializers.GlorotUniform(
                    seed=None if seed is None else seed + 3 * index
                ),
                recurrent_initializer=keras.initializers.Orthogonal(
                    seed=None if seed is None else seed + 3 * index + 1
                ),
                name=f"lstm_{index}",
            )
        )
    stack.append(
        keras.layers.Dense(
            outputs,
            kernel_initializer=keras.initializers.GlorotUniform(
                seed=None if seed is None else seed + 1000
            ),
            name="head",
        )
    )
    return keras.Sequential(stack, name="lstm_forecaster")
