"""Ready-made Keras models for the CLI and the demo: an LSTM forecaster."""

from __future__ import annotations

import keras

from lstmcore import target_forms
from lstmcore.errors import ConfigError


def forecaster(
    input_steps: int,
    features: int,
    outputs: int,
    *,
    units: int = 64,
    layers: int = 1,
    dropout: float = 0.0,
    seed: int | None = 0,
    target_mode: str = "level",
    target_features: list[int] | None = None,
    horizon: int = 1,
) -> keras.Model:
    """Returns ``Input [T, F] -> LSTM x layers -> Dense(outputs)``, in a target form.

    With ``target_mode="change"`` the head predicts the change from each target's last
    observed value and the model adds it back; with ``"window_norm"`` each window is scaled
    by its own statistics and the output mapped back (:mod:`lstmcore.target_forms`). The
    model's output is the level in every form.

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
      target_mode: "level", "change" or "window_norm".
      target_features: the input feature index of each target column (needed unless
        "level"); ``outputs`` must be ``horizon * len(target_features)``.
      horizon: steps predicted per window.

    Returns:
      An uncompiled functional ``keras.Model``.
    """
    for name, value in (
        ("input_steps", input_steps),
        ("features", features),
        ("outputs", outputs),
        ("units", units),
        ("layers", layers),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{name} must be a positive integer; got {value!r}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1); got {dropout!r}")
    target_forms.check_target_mode(target_mode)
    if target_features is not None and outputs != horizon * len(target_features):
        raise ConfigError(
            f"outputs must be horizon * targets = {horizon} * {len(target_features)}; got {outputs}"
        )
    lstms = [
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
        for index in range(layers)
    ]
    head = keras.layers.Dense(
        outputs,
        kernel_initializer=keras.initializers.GlorotUniform(
            seed=None if seed is None else seed + 1000
        ),
        name="head",
    )

    def body(x):
        for lstm in lstms:
            x = lstm(x)
        return head(x)

    inputs = keras.Input((input_steps, features))
    predictions = target_forms.wrap(body, inputs, target_mode, target_features, horizon)
    return keras.Model(inputs, predictions, name="lstm_forecaster")
