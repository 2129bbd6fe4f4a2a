"""The host training loop: ``lstmcore.train(model, data, ...) -> History``.

Reads top to bottom: check every option and the data (before any step runs or any file is
written), build the compiled step, then loop. The step returns tensors; the loop keeps them
until a flush (every ``flush_every`` steps or once a second), then fetches them in one go and
hands them to the TensorBoard writer, the history and the progress bar, so logging every step
never forces a device-to-host sync per step. Validation, checkpoints and the non-finite-step
policy run at step boundaries.
"""

from __future__ import annotations

import contextlib
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

from lstmcore import (
    _keras_compat,
    baselines,
    clipping,
    faults,
    monitor,
    optimizers,
    probes,
    runs,
    schedules,
)
from lstmcore import writer as writer_lib
from lstmcore.diagnosis import format_findings
from lstmcore.history import STEP_KEYS, History, HistoryBuilder
from lstmcore.inputs import prepare, shape_change_message
from lstmcore.kernel_report import cudnn_report
from lstmcore.step import make_eval_step, make_multi_step, make_train_step
from lstmcore.writer import RunWriter, drop_events_after

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "nadam", "fused_adam", "fused_adamw")
# Keras's Adam and AdamW with a fused per-variable update (lstmcore.optimizers). Not the
# default: on 2 CPU cores it gains nothing measurable inside a whole step (see
# benchmarks/results/throughput_cpu2core.md); it is meant for large models.
FUSED_OPTIMIZERS = {"fused_adam": optimizers.Adam, "fused_adamw": optimizers.AdamW}
ON_NONFINITE = ("stop", "restore")


def _positive_int(name, value, *, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


def _make_optimizer(optimizer, learning_rate):
    if isinstance(optimizer, keras.optimizers.Optimizer):
        for option in ("clipnorm", "clipvalue", "global_clipnorm"):
            if getattr(optimizer, option, None) is not None:
                raise ValueError(
                    f"optimizer has {option}={getattr(optimizer, option)}; use train(clip=..., "
                    "clip_norm=...) instead (Keras clips before cross-replica aggregation and "
                    "does not report the norm)"
                )
        return optimizer
    if not isinstance(optimizer, str) or optimizer.lower() not in OPTIMIZERS:
        raise ValueError(
            f"optimizer must be one of {OPTIMIZERS} or a Keras optimizer; got {optimizer!r}"
        )
    if optimizer.lower() in FUSED_OPTIMIZERS:
        return FUSED_OPTIMIZERS[optimizer.lower()](learning_rate=learning_rate)
    return keras.optimizers.get(
        {"class_name": optimizer.lower(), "config": {"learning_rate": learning_rate}}
    )


def _model_signature(model) -> dict:
    # Layer classes and weight shapes, not names: Keras numbers unnamed layers per process.
    return {
        "layers": [type(layer).__name__ for layer in model.layers],
        "weight_shapes": [list(v.shape) for v in model.weights],
    }


@runs.releases_run_locks
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

    Returns:
      A :class:`lstmcore.history.History`.

    Raises:
      ValueError: for bad options or data, before any step runs and before anything is
        written.
      NonFiniteError: when steps keep producing non-finite values and ``on_nonfinite="stop"``.
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"model must be a keras.Model; got {type(model).__name__}")
    loss_fn = probes.as_loss_fn(loss, name="loss")
    batch_size = _positive_int("batch_size", batch_size)
    log_every = _positive_int("log_every", log_every)
    flush_every = _positive_int("flush_every", flush_every)
    steps_per_execution = _positive_int("steps_per_execution", steps_per_execution)
    keep_checkpoints = _positive_int("keep_checkpoints", keep_checkpoints)
    max_consecutive_skips = _positive_int("max_consecutive_skips", max_consecutive_skips)
    epochs = _positive_int("epochs", epochs, allow_none=True)
    steps = _positive_int("steps", steps, allow_none=True)
    validate_every = _positive_int("validate_every", validate_every, allow_none=True)
    checkpoint_every = _positive_int("checkpoint_every", checkpoint_every, allow_none=True)
    if probe_every != "auto":
        probe_every = _positive_int("probe_every", probe_every, allow_none=True)
    if on_nonfinite not in ON_NONFINITE:
        raise ValueError(f"on_nonfinite must be one of {ON_NONFINITE}; got {on_nonfinite!r}")
    if on_nonfinite == "restore" and logdir is None:
        raise ValueError(
            "on_nonfinite='restore' reloads a checkpoint, and logdir=None writes none; pass a "
            "logdir, or on_nonfinite='stop'"
        )
    if seed is not None and (
        isinstance(seed, bool)
        or not isinstance(seed, (int, np.integer))
        or not -(2**63) <= int(seed) < 2**63
    ):
        raise ValueError(f"seed must be None or an integer that fits in 64 bits; got {seed!r}")
    if (
        isinstance(learning_rate, bool)
        or not isinstance(learning_rate, (int, float))
        or not (math.isfinite(learning_rate) and learning_rate > 0)
    ):
        raise ValueError(f"learning_rate must be a finite number > 0; got {learning_rate!r}")
    clipping.check_clip_options(clip, clip_norm, clip_groups)
    if logdir is not None:
        logdir = os.path.expanduser(os.fspath(logdir))
        runs.check_logdir(logdir)
    elif resume:
        raise ValueError("resume=True needs a logdir to find the run in; got logdir=None")

    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    train_data = prepare(
        data, name="data", batch_size=batch_size * replicas, shuffle=shuffle, seed=seed, repeat=True
    )
    val_data = (
        None
        if validation_data is None
        else prepare(
            validation_data,
            name="validation_data",
            batch_size=batch_size * replicas,
            shuffle=False,
            seed=None,
            repeat=False,
        )
    )
    if steps is None:
        if train_data.batches_per_epoch is None:
            raise ValueError(
                "the size of data is unknown (a generator or filtered dataset); pass steps=N"
            )
        steps = (epochs or 1) * train_data.batches_per_epoch
    per_epoch = train_data.batches_per_epoch
    validate_every = validate_every or per_epoch or max(steps // 10, 1)
    checkpoint_every = checkpoint_every or validate_every
    if probe_every == "auto":
        probe_every = max(steps // 20, 1)

    schedule_config = {
        "learning_rate": learning_rate,
        "warmup_steps": warmup_steps,
        "warmup_fraction": warmup_fraction,
        "warmup": warmup,
        "decay": decay if isinstance(decay, str) else type(decay).__name__,
        "end_learning_rate": end_learning_rate,
        "total_steps": steps,
    }
    scheduled = warmup_steps or warmup_fraction or decay != "constant"
    lr_scale = tf.Variable(1.0, trainable=False, dtype=tf.float32, name="lstmcore_lr_scale")
    if scheduled:
        if isinstance(optimizer, keras.optimizers.Optimizer):
            raise ValueError(
                "warmup/decay options need lstmcore to create the optimizer: pass optimizer as a "
                f"name {OPTIMIZERS}, or give your optimizer a learning-rate schedule yourself"
            )
        base = schedules.warmup_schedule(
            learning_rate,
            total_steps=steps,
            warmup_steps=warmup_steps,
            warmup_fraction=warmup_fraction,
            warmup=warmup,
            decay=decay,
            end_value=end_learning_rate,
        )
    else:
        base = schedules.constant(float(learning_rate))
    lr_schedule = schedules.as_keras_schedule(lambda s: base(s) * lr_scale, schedule_config)

    with strategy.scope():
        optimizer = _make_optimizer(
            optimizer,
            lr_schedule if not isinstance(optimizer, keras.optimizers.Optimizer) else None,
        )
    _build_and_check(model, train_data, loss_fn, name="data")
    if val_data is not None:
        _build_and_check(model, val_data, loss_fn, name="validation_data")
    with strategy.scope():
        optimizer.build(model.trainable_variables)
    if not model.trainable_variables:
        raise ValueError("model has no trainable variables; nothing to train")
    if clip is not None and clip_groups:
        _check_clip_groups_match(model.trainable_variables, clip_groups)

    config = {
        "model": _model_signature(model),
        "loss": loss if isinstance(loss, str) else getattr(loss, "__name__", type(loss).__name__),
        "optimizer": optimizer.__class__.__name__,
        "batch_size": batch_size,
        "shuffle": shuffle,
        "seed": seed,
        "clip": clip,
        "clip_norm": clip_norm,
        "clip_groups": clip_groups,
        "input_shape": list(train_data.input_shape),
        "num_samples": train_data.num_samples,
        "replicas": replicas,
        "data_report": None if data_report is None else runs.config_hash(data_report),
        **schedule_config,
    }
    run_dir, resuming = (None, False)
    if logdir is not None:
        run_dir, resuming = runs.choose_run_dir(logdir, run_name, config, resume)

    train_arrays = monitor.as_arrays(data)
    validation_arrays = None if validation_data is None else monitor.as_arrays(validation_data)
    findings_before = (
        monitor.check_before_training(model, train_arrays, validation_arrays, loss) if check else []
    )

    # Everything was checked: from here on, work and writes.
    train_step, series = make_train_step(
        model,
        optimizer,
        loss_fn,
        clip=clip,
        clip_norm=clip_norm,
        clip_groups=clip_groups,
        strategy=strategy,
        skip_nonfinite=skip_nonfinite,
    )
    train_steps = make_multi_step(train_step) if steps_per_execution > 1 else None
    eval_step = make_eval_step(model, loss_fn, strategy)
    if replicas > 1:
        dataset = strategy.experimental_distribute_dataset(train_data.dataset)
    else:
        dataset = train_data.dataset
    iterator = iter(dataset)

    kernels = [k.to_dict() for k in cudnn_report(model)]
    checkpoints = writer = None
    if run_dir is not None:
        if train_data.from_dataset:
            runs.check_iterator_checkpointable(iterator, name="data")
        if resuming:
            took_over = runs.RunLock(run_dir).acquire()
        else:
            os.makedirs(logdir, exist_ok=True)
            try:
                os.mkdir(run_dir)  # atomic: of two runs starting under one name, one gets it
            except FileExistsError:
                raise ValueError(
                    f"run directory {run_dir!r} was just created by another process; choose "
                    "another run_name"
                ) from None
            took_over = runs.RunLock(run_dir).acquire()
        if took_over and progress:
            print(f"lstmcore: {run_dir}: {took_over}")
        checkpoints = runs.Checkpoints(
            os.path.join(run_dir, "checkpoints"),
            keep_checkpoints,
            model=model,
            optimizer=optimizer,
            iterator=iterator,
            lr_scale=lr_scale,
            seeds=monitor.seed_states(model),
        )
        if resuming:
            restored = checkpoints.resume()
            if progress:
                print(f"lstmcore: resumed {restored} at step {int(optimizer.iterations.numpy())}")
        checkpoints.remove_stale_temporaries()
        runs.write_manifest(run_dir, config)
        if data_report is not None:
            runs.write_json(os.path.join(run_dir, "data_report.json"), data_report)
    start_step = int(optimizer.iterations.numpy())
    if resuming:
        drop_events_after(
            run_dir,
            start_step,
            {tag for _, tag in writer_lib.PER_STEP_TAGS} | {s.tag for s in series},
        )

    tags = [tag for _, tag in writer_lib.PER_STEP_TAGS] + [s.tag for s in series]
    if run_dir is not None:
        writer = RunWriter(run_dir, tags)
        if not resuming:
            writer.write_hparams(
                {**_flat_hparams(config), **(hparams or {})},
                ["train/loss", "val/loss", *baselines.HPARAM_TAGS],
            )
            writer.write_layout(writer_lib.layout(series))
            writer.write_text("kernels", writer_lib.kernels_markdown(kernels), step=0)
    probe_logger = None
    if probe_every is not None:
        batch = monitor.probe_batch(train_data.dataset, train_arrays, validation_arrays)
        if np.isfinite(batch[0]).all() and np.isfinite(batch[1]).all():
            probe_logger = monitor.ProbeLogger(
                model,
                batch,
                loss_fn,
                writer,
                monitor.persistence_values(batch[0], batch[1], data_report),
            )
        elif progress:
            print("lstmcore: probes are off: the first batch of data holds NaN or Inf")
    if findings_before and writer is not None and not resuming:
        writer.write_text("diagnosis/before_training", format_findings(findings_before), start_step)
    if progress:
        if findings_before:
            print(format_findings(findings_before))
        for k in kernels:
            print(f"lstmcore: layer {k['layer']} ({k['layer_class']}): {k['reason']}")
        if run_dir is not None:
            print(f"lstmcore: logging to {run_dir}  (tensorboard --logdir {logdir})")

    builder = HistoryBuilder([s.tag for s in series])
    bar = (
        keras.utils.Progbar(steps, stateful_metrics=["loss", "grad_norm", "lr", "steps/s"])
        if progress
        else None
    )
    pending: list[dict] = []  # per call of the step: tensors of one step, or stacked steps
    flush_times: list[tuple[int, float]] = []
    started = time.perf_counter()
    state = {
        "last_flush": time.monotonic(),
        "last_step": start_step,
        "consecutive": 0,
        "first_skip": None,
        "pending_steps": 0,
    }
    policy = faults.NonFinitePolicy(on_nonfinite, skip_nonfinite=skip_nonfinite, progress=progress)
    stop_requested = {"signal": None}

    def on_sigterm(signum, frame):
        stop_requested["signal"] = signum

    previous_handler = runs.install_sigterm(on_sigterm)

    def flush():
        if not pending:
            return
        values = {
            key: np.concatenate([np.reshape(m[key].numpy(), (-1, *tail)) for m in pending])
            for key, tail in [(k, ()) for k in (*STEP_KEYS, "fault")]
            + [("layer_grad_norms", (len(series),))]
        }
        pending.clear()
        state["pending_steps"] = 0
        fraction = builder.add(values)
        columns = {**values, "clip_fraction": fraction}
        if writer is not None:
            rows = values["step"] % log_every == 0
            table = np.concatenate(
                [
                    np.stack([columns[key] for key, _ in writer_lib.PER_STEP_TAGS], axis=1),
                    values["layer_grad_norms"],
                ],
                axis=1,
            )
            writer.write_scalars(values["step"][rows], table[rows])
        faults.check_consecutive_skips(values, state, max_consecutive_skips, policy)
        now = time.monotonic()
        last_step = int(values["step"][-1]) + 1
        flush_times.append((last_step, time.perf_counter() - started))
        rate = (last_step - state["last_step"]) / max(now - state["last_flush"], 1e-9)
        state["last_flush"], state["last_step"] = now, last_step
        if writer is not None:
            writer.write_scalar("train/steps_per_second", rate, last_step)
        if bar is not None:
            bar.update(
                last_step,
                values=[
                    ("loss", float(values["loss"][-1])),
                    ("grad_norm", float(values["grad_norm_before_clip"][-1])),
                    ("lr", float(values["learning_rate"][-1])),
                    ("steps/s", rate),
                ],
            )

    def validate(step_now):
        if val_data is None:
            return
        total = count = 0.0
        with _data_errors():
            for inputs, targets in val_data.dataset:
                batch_total, batch_count = eval_step(inputs, targets)
                total += float(batch_total)
                count += float(batch_count)
        val_loss = total / max(count, 1.0)
        builder.add_validation(step_now, val_loss)
        if writer is not None:
            writer.write_scalar("val/loss", val_loss, step_now)

    stopped = None
    try:
        step_now = start_step
        if probe_logger is not None and step_now < steps:
            probe_logger(step_now)
        while step_now < steps:
            count = 1
            if train_steps is not None:
                # A call never runs past a step where something else must happen.
                events = [steps, _next_multiple(step_now, validate_every)]
                if checkpoints is not None:
                    events.append(_next_multiple(step_now, checkpoint_every))
                if probe_logger is not None:
                    events.append(_next_multiple(step_now, probe_every))
                count = min(steps_per_execution, min(events) - step_now)
            with _data_errors():
                if train_steps is None:
                    pending.append(train_step(iterator))
                else:
                    pending.append(train_steps(iterator, tf.constant(count, tf.int32)))
            step_now += count
            state["pending_steps"] += count
            try:
                # Any flush may find the non-finite run (periodic, validation, checkpoint, end).
                if (
                    state["pending_steps"] >= flush_every
                    or time.monotonic() - state["last_flush"] >= 1.0
                ):
                    flush()
                boundary = step_now == steps
                if probe_logger is not None and (step_now % probe_every == 0 or boundary):
                    probe_logger(step_now)
                if step_now % validate_every == 0 or boundary:
                    flush()
                    validate(step_now)
                if checkpoints is not None and (step_now % checkpoint_every == 0 or boundary):
                    flush()
                    faults.save_if_finite(checkpoints, step_now, model, optimizer)
                if stop_requested["signal"] is not None and step_now < steps:
                    flush()
                    if checkpoints is not None:
                        faults.save_if_finite(checkpoints, step_now, model, optimizer)
                    stopped = f"stopped by signal {stop_requested['signal']} at step {step_now}; resume with resume=True"
                    break
            except faults.NonFiniteError as error:
                policy.restore(
                    error,
                    checkpoints,
                    lambda: _restore_and_halve_learning_rate(
                        checkpoints, optimizer, lr_scale, progress
                    ),
                )
                pending.clear()
                step_now = int(optimizer.iterations.numpy())
                state["pending_steps"], state["consecutive"], state["first_skip"] = 0, 0, None
        flush()
    finally:
        runs.restore_sigterm(previous_handler)
        if writer is not None:
            writer.flush()
            writer.close()
    if bar is not None:
        print()
    history = builder.build(
        run_dir=run_dir,
        params=config,
        kernels=kernels,
        stopped=stopped,
        flush_times=np.asarray(flush_times, np.float64).reshape(-1, 2),
        probes=probe_logger.results() if probe_logger is not None else {},
    )
    if check and stopped is None and len(history["loss"]):
        # One ranked list, the before-training findings included: the same as diagnose's.
        findings = monitor.diagnose_after_training(
            history,
            model,
            train_arrays,
            validation_arrays,
            loss,
            findings_before=findings_before,
            data_report=data_report,
        )
        history.findings = [f.to_dict() for f in findings]
        report = format_findings(findings)
        if progress:
            print(report)
        if run_dir is not None:
            with RunWriter(run_dir, []) as text_writer:
                text_writer.write_text(
                    "diagnosis/after_training", report, int(optimizer.iterations.numpy())
                )
    if stopped is None and len(history["loss"]):
        history.baselines = baselines.report_after_training(
            model,
            loss,
            train_arrays=train_arrays,
            validation_arrays=validation_arrays,
            data_report=data_report,
            run_dir=run_dir,
            step=int(optimizer.iterations.numpy()),
            progress=progress,
        )
    return history


def _restore_and_halve_learning_rate(checkpoints, optimizer, lr_scale, progress) -> str:
    """Reloads the latest checkpoint and halves the learning rate in force before it.

    Half of the lower of the rate before and the restored rate: restoring the same checkpoint
    twice halves twice. lstmcore's own optimizers scale their schedule through ``lr_scale``;
    a user's optimizer with a constant rate has that rate halved; one with its own schedule
    cannot be changed here, which is said.
    """
    own_rate = _keras_compat.optimizer_learning_rate(optimizer)
    constant = isinstance(own_rate, (tf.Variable, keras.Variable))
    scale_before = float(lr_scale.numpy())
    rate_before = float(np.asarray(own_rate)) if constant else None
    path = checkpoints.restore_latest()
    lr_scale.assign(min(float(lr_scale.numpy()), scale_before) * 0.5)
    if constant:
        optimizer.learning_rate = min(float(np.asarray(own_rate)), rate_before) * 0.5
    elif progress and own_rate is not None and not _uses_scale(optimizer):
        print("lstmcore: the optimizer has its own learning-rate schedule; not halved")
    return path


def _uses_scale(optimizer) -> bool:
    return isinstance(_keras_compat.optimizer_learning_rate(optimizer), schedules.KerasSchedule)


def _next_multiple(step: int, every: int) -> int:
    return (step // every + 1) * every


def _build_and_check(model, prepared, loss_fn, *, name: str) -> None:
    """Calls the model and the loss on two samples of the first batch of ``name``; raises if unfit."""
    inputs, targets = prepared.first_batch
    declared = _declared_input_shape(model)
    if declared is not None:
        for axis, what in ((1, "time steps"), (2, "features")):
            if declared[axis] is not None and inputs.shape[axis] != declared[axis]:
                raise ValueError(
                    f"{name} inputs have {inputs.shape[axis]} {what} per sample (shape "
                    f"{tuple(inputs.shape)}) but the model's input expects {declared[axis]} "
                    f"(input shape {tuple(declared)}); reshape the data or rebuild the model"
                )
    try:
        with monitor.rng_untouched(model):
            predictions = model(inputs[:2], training=False)
    except Exception as error:  # noqa: BLE001 - the model's own message is the useful part
        raise ValueError(
            f"model could not be called on {name} inputs of shape {tuple(inputs.shape)} "
            f"[batch, time, features]: {error}"
        ) from None
    if not isinstance(predictions, (tf.Tensor, np.ndarray)) and not keras.ops.is_tensor(
        predictions
    ):
        count = len(predictions) if hasattr(predictions, "__len__") else "several"
        raise ValueError(
            f"model returns {count} outputs ({type(predictions).__name__}); train needs a model "
            "with one output tensor [batch, ...]: join them (keras.layers.Concatenate) or "
            "train one model per output"
        )
    if tuple(predictions.shape[1:]) != tuple(targets.shape[1:]):
        raise ValueError(
            f"{name} targets have shape {tuple(targets.shape[1:])} per sample but the model "
            f"predicts {tuple(predictions.shape[1:])}; they must match (targets of shape [N] are "
            "taken as [N, 1])"
        )
    _check_per_sample_loss(loss_fn, targets[:2], predictions)


def _check_per_sample_loss(loss_fn, targets, predictions) -> None:
    # Traced, not run: a loss with side effects (a call counter) is not called here.
    try:
        losses = (
            tf.function(loss_fn, autograph=False)
            .get_concrete_function(
                tf.TensorSpec(targets.shape, targets.dtype),
                tf.TensorSpec(predictions.shape, predictions.dtype),
            )
            .structured_outputs
        )
    except Exception as error:  # noqa: BLE001 - the loss's own message is the useful part
        raise ValueError(
            f"loss could not be called as loss(targets, predictions) with targets of shape "
            f"{tuple(targets.shape)} and predictions of shape {tuple(predictions.shape)}: "
            f"{str(error).strip().splitlines()[0] if str(error).strip() else repr(error)}"
        ) from None
    shape = getattr(losses, "shape", None)
    batch = predictions.shape[0]
    if shape is None or shape.rank == 0 or shape[0] not in (None, batch):
        raise ValueError(
            f"loss must return one value per sample, shape [batch]; for a batch of {batch} it "
            f"returned shape {None if shape is None else tuple(shape)}. A mean over the batch "
            "would scale the loss and the gradients by 1/batch. Pass a loss name ('mse'), a "
            "per-sample function (keras.losses.mean_squared_error) or a keras.losses.Loss "
            "built with reduction=None"
        )


def _check_clip_groups_match(variables, clip_groups: dict) -> None:
    matched = {pattern for pattern, _, _ in clipping.group_variables(variables, clip_groups)}
    empty = [pattern for pattern in clip_groups if pattern not in matched]
    if empty:
        paths = ", ".join(getattr(v, "path", v.name) for v in variables)
        raise ValueError(
            f"clip_groups pattern(s) {empty} match no trainable variable (or only ones an "
            f"earlier pattern took); patterns are searched in the variable paths: {paths}"
        )


@contextlib.contextmanager
def _data_errors():
    """Turns a batch that failed the shape check of :mod:`lstmcore.inputs` into a ValueError."""
    try:
        yield
    except tf.errors.OutOfRangeError:
        raise ValueError("data yielded no batch; it must not be empty") from None
    except tf.errors.InvalidArgumentError as error:
        message = shape_change_message(error)
        if message is None:
            raise
        raise ValueError(message) from None


def _declared_input_shape(model):
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return None
    if not inputs or len(inputs) != 1 or len(inputs[0].shape) != 3:
        return None
    return tuple(inputs[0].shape)


def _flat_hparams(config: dict) -> dict:
    return {key: value for key, value in config.items() if key not in ("model",)}
