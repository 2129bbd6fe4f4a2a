"""``lstmcore.train(model, data, ...) -> History``: the one-call facade over :class:`Trainer`.

``train(model, data, **options)`` is ``Trainer(model, data, **options).fit()``; the loop, its
actions and the checks live in :mod:`lstmcore.trainer`, :mod:`lstmcore.actions` and
:mod:`lstmcore.inputs`.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from lstmcore.history import History
from lstmcore.inputs import build_and_check as _build_and_check  # noqa: F401 - lstmcore.keras
from lstmcore.trainer import Trainer


def train(
    model: keras.Model,
    data,
    *,
    validation_data=None,
    loss="mse",
    optimizer="adam",
    learning_rate: float = 1e-3,
    epochs: int | None = None,
    steps: int | None = None,
    batch_size: int = 32,
    shuffle: bool = True,
    seed: int | None = 0,
    warmup_steps: int | None = None,
    warmup_fraction: float | None = None,
    warmup: str = "linear",
    decay="constant",
    end_learning_rate: float | None = None,
    clip: str | None = "global_norm",
    clip_norm: float = 1.0,
    clip_groups: dict | None = None,
    logdir: str | None = "runs",
    run_name: str | None = None,
    log_every: int = 1,
    flush_every: int = 100,
    steps_per_execution: int = 1,
    validate_every: int | None = None,
    checkpoint_every: int | None = None,
    keep_checkpoints: int = 3,
    resume: bool = False,
    strategy: tf.distribute.Strategy | None = None,
    progress: bool = True,
    skip_nonfinite: bool = True,
    max_consecutive_skips: int = 10,
    on_nonfinite: str = "stop",
    hparams: dict | None = None,
    data_report: dict | None = None,
    probe_every: int | str | None = "auto",
    check: bool = True,
    actions=(),
    callbacks=(),
) -> History:
    """Trains ``model`` on ``data`` with a compiled step and returns what it measured.

    Args:
      model: a Keras model (built or not) mapping ``[B, T, F]`` inputs to predictions. Under a
        ``strategy``, create it inside ``strategy.scope()``.
      data: ``(inputs [N, T, F], targets [N] | [N, K] | [N, H, K])`` NumPy arrays, or a
        ``tf.data.Dataset`` of such batches.
      validation_data: the same kinds, optional; evaluated every ``validate_every`` steps and
        at the end.
      loss: a Keras loss name or a callable ``(targets, predictions) -> per-sample losses``.
      optimizer: ``"adam"`` (default), ``"adamw"``, ``"sgd"``, ``"rmsprop"``, ``"nadam"``, or a
        Keras optimizer (with no ``clipnorm``: use ``clip``).
      learning_rate: the peak learning rate (the rate after warmup).
      epochs: passes over the data (default 1 when ``steps`` is not given).
      steps: the total number of optimizer steps, warmup included; overrides ``epochs``.
      batch_size: batch size for arrays (a dataset brings its own).
      shuffle: shuffle arrays every epoch.
      seed: shuffle seed.
      warmup_steps: linear warmup length in steps (or ``warmup_fraction`` of the run).
      warmup_fraction: warmup length as a fraction of ``steps``.
      warmup: ``"linear"`` or ``"exponential"``.
      decay: what follows warmup: ``"constant"``, ``"linear"``, ``"cosine"``,
        ``"exponential"``, ``"inverse_sqrt"``, a Keras ``LearningRateSchedule`` or a callable.
      end_learning_rate: the rate at the last step for decaying schedules.
      clip: ``"global_norm"`` (default), ``"per_variable_norm"``, ``"value"``, ``"adaptive"``
        (Brock et al. 2021; ``clip_norm`` is then the gradient-to-weight ratio), or None
        (no clipping; norms are still measured and logged).
      clip_norm: the clipping threshold.
      clip_groups: separate thresholds per group of variables, ``{path regex: threshold}``,
        e.g. ``{"recurrent_kernel": 0.5}``.
      logdir: parent directory of the run directories; None writes nothing (no TensorBoard
        events, no checkpoints).
      run_name: the run directory's name (default: a new timestamped one).
      log_every: write per-step scalars every this many steps (all steps are still recorded
        in the returned History).
      flush_every: fetch and write the buffered per-step values at least this often.
      steps_per_execution: optimizer steps run by one call of the compiled function (as in
        Keras's ``Model.compile``). Above 1 it removes the per-call cost that weighs on
        small models (8 saved 18% to 29% of a step at (B, T, I, H) = (32, 50, 8, 64) on 2
        CPU cores) and changes nothing else: every step is still logged, and validation,
        probes and checkpoints still happen at exactly their steps. The results are the same
        for any value.
      validate_every: steps between validations (default: once per epoch when the data's size
        is known, else ten times per run).
      checkpoint_every: steps between checkpoints (default: as ``validate_every``).
      keep_checkpoints: how many checkpoints to keep.
      resume: continue the run named ``run_name`` (or the newest run in ``logdir``) from its
        latest checkpoint; its configuration must match. A run with no checkpoint to restore
        is an error naming what is missing, never a fresh start (that is ``resume=False``).
        One run directory has one writer at a time: a second ``train`` on it is refused.
      strategy: a ``tf.distribute`` strategy; gradients are aggregated across replicas before
        they are clipped.
      progress: show a progress bar.
      skip_nonfinite: do not apply a step whose loss or gradient norm is NaN or Inf (weights
        and optimizer slots stay bitwise unchanged). False saves the conditional update's cost
        (a few percent of a small step on CPU); a non-finite step then reaches the weights,
        and no checkpoint is written from there on.
      max_consecutive_skips: non-finite steps in a row before ``on_nonfinite`` acts.
      on_nonfinite: ``"stop"`` (raise ``NonFiniteError`` naming the step, batch and what was
        not finite) or ``"restore"`` (reload the last checkpoint and halve the learning rate;
        skip past the batches instead when their data is not finite or they fail again after
        a restore; at most three recoveries, then the error lists them). Needs a ``logdir``.
      hparams: extra hyperparameters to record in TensorBoard's HParams.
      data_report: what produced the data (``lstmcore.data.WindowedData.to_dict()``: split
        boundaries, scaler statistics, window counts). Saved with the run, part of its
        configuration (a resumed run must use the same scaling), read by diagnostics.
      probe_every: run the probes of :mod:`lstmcore.probes` (gradient flow over time, gate
        saturation, output collapse against baselines) on a fixed batch of 64 held-out windows
        every this many steps, and at the start and the end; ``"auto"`` (default) about 20
        times per run; None never.
      check: check the data before training and diagnose the run after it
        (:mod:`lstmcore.diagnosis`), printing the findings and writing them to TensorBoard.

      actions: your own :class:`lstmcore.actions.Action` objects (early stopping, a custom
        writer, ...), run after lstmcore's own at the steps they ask for.
      callbacks: ``keras.callbacks.Callback`` objects (``EarlyStopping``,
        ``ReduceLROnPlateau``, ``CSVLogger``, ``TerminateOnNaN``, your own), run with Keras's
        ``fit`` semantics: ``on_train_*``, ``on_epoch_*`` (``logs`` with ``loss`` and
        ``val_loss``) and the validation hooks at exactly their steps; the per-batch hooks at
        flush time, each step's logs in order (see :class:`lstmcore.actions.KerasCallbacks`).

    Returns:
      A :class:`lstmcore.history.History`.

    Raises:
      ConfigError: for a bad option, DataError for bad data (both ``ValueError``), before
        any step runs and before anything is written.
      NonFiniteError: when steps keep producing non-finite values and ``on_nonfinite="stop"``.
    """
    options = {k: v for k, v in locals().items() if k not in ("model", "data")}
    return Trainer(model, data, **options).fit()
