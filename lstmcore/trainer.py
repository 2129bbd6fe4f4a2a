"""The training loop: ``lstmcore.Trainer(model, data, ...).fit() -> History``.

Reads top to bottom. ``Trainer(...)`` checks every option and the data, builds the optimizer
and the compiled step, and picks the run directory, before anything is written. ``fit()``
opens the run, then loops: it asks its actions (:mod:`lstmcore.actions`) for the next step
at which one of them wants to act, runs compiled steps up to there (one, or
``steps_per_execution``, per call), fetches the per-step values (defined in
:mod:`lstmcore.schema`) in one go, hands them to the actions and calls the actions due at that
step. The step returns tensors and the loop keeps them until a flush (every ``flush_every``
steps, once a second, and before any action acts), so logging every step never forces a
device-to-host sync per step.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time

import keras
import numpy as np
import tensorflow as tf

from lstmcore import actions as actions_lib
from lstmcore import (
    clipping,
    config,
    distributed,
    faults,
    inputs,
    monitor,
    optimizers,
    probes,
    runs,
    schedules,
    schema,
)
from lstmcore.errors import ConfigError
from lstmcore.history import History, HistoryBuilder
from lstmcore.kernel_report import cudnn_report
from lstmcore.step import make_eval_step, make_multi_step, make_train_step

log = logging.getLogger("lstmcore")

ON_NONFINITE = ("stop", "restore")
OTHER_WORKER_STOPPED = (
    "stopped at step {step}: another worker asked to stop (a signal?); resume with resume=True"
)


class Trainer:
    """Trains a Keras model with a compiled step and a list of actions.

    Takes the arguments of :func:`lstmcore.train` (which is ``Trainer(...).fit()``), plus:

    Args:
      actions: the user's own :class:`lstmcore.actions.Action` objects; they run after
        lstmcore's (checkpointing, TensorBoard, validation, probes, diagnosis, the non-finite
        policy, SIGTERM, progress, Keras callbacks), in the order given.
      callbacks: ``keras.callbacks.Callback`` objects, run with Keras's ``fit`` semantics
        (see :class:`lstmcore.actions.KerasCallbacks`: epoch and validation hooks exact,
        per-batch hooks at flush time).

    Attributes an action may read: ``model``, ``optimizer``, ``strategy``, ``step`` (the
    next step to run), ``total_steps``, ``run_dir``, ``resuming``, ``writer`` (a
    :class:`lstmcore.writer.RunWriter` or None), ``checkpoints``, ``history`` (at ``on_end``),
    ``steps_per_second``, ``config``.
    """

    @distributed.reports_lost_workers
    def __init__(
        self,
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
    ):
        # 1. Options, each checked by lstmcore.config (NumPy scalars accepted).
        if not isinstance(model, keras.Model):
            raise ConfigError(f"model must be a keras.Model; got {type(model).__name__}")
        self.model, self.loss, self.progress = model, loss, bool(progress)
        self.loss_fn = probes.as_loss_fn(loss, name="loss")
        batch_size = config.integer("batch_size", batch_size)
        self.log_every = config.integer("log_every", log_every)
        self.flush_every = config.integer("flush_every", flush_every)
        self.steps_per_execution = config.integer("steps_per_execution", steps_per_execution)
        keep_checkpoints = config.integer("keep_checkpoints", keep_checkpoints)
        max_consecutive_skips = config.integer("max_consecutive_skips", max_consecutive_skips)
        epochs = config.integer("epochs", epochs, allow_none=True)
        steps = config.integer("steps", steps, allow_none=True)
        validate_every = config.integer("validate_every", validate_every, allow_none=True)
        checkpoint_every = config.integer("checkpoint_every", checkpoint_every, allow_none=True)
        if probe_every != "auto":
            probe_every = config.integer("probe_every", probe_every, allow_none=True)
        on_nonfinite = config.choice("on_nonfinite", on_nonfinite, ON_NONFINITE)
        if on_nonfinite == "restore" and logdir is None:
            raise ConfigError(
                "on_nonfinite='restore' reloads a checkpoint, and logdir=None writes none; pass "
                "a logdir, or on_nonfinite='stop'"
            )
        seed = config.seed("seed", seed)
        if not isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
            learning_rate = config.number("learning_rate", learning_rate, positive=True)
        warmup_steps = config.integer("warmup_steps", warmup_steps, minimum=0, allow_none=True)
        self.clipper = clipping.get(clip, clip_norm, clip_groups)
        user_actions = _check_actions(actions)
        callbacks = _check_callbacks(callbacks)
        if logdir is not None:
            logdir = os.path.expanduser(os.fspath(logdir))
            runs.check_logdir(logdir)
        elif resume:
            raise ConfigError("resume=True needs a logdir to find the run in; got logdir=None")

        # 2. Data, and the run's length.
        self.strategy = strategy or tf.distribute.get_strategy()
        self.context = distributed.context(self.strategy)
        replicas = self.strategy.num_replicas_in_sync
        self.train_data = inputs.prepare(
            data,
            name="data",
            batch_size=batch_size * replicas,
            shuffle=shuffle,
            seed=seed,
            repeat=True,
        )
        self.val_data = (
            None
            if validation_data is None
            else inputs.prepare(
                validation_data,
                name="validation_data",
                batch_size=batch_size * replicas,
                shuffle=False,
                seed=None,
                repeat=False,
            )
        )
        per_epoch = self.train_data.batches_per_epoch
        if steps is None:
            if per_epoch is None:
                raise ConfigError(
                    "the size of data is unknown (a generator or filtered dataset); pass steps=N"
                )
            steps = (epochs or 1) * per_epoch
        self.total_steps = steps
        validate_every = validate_every or per_epoch or max(steps // 10, 1)
        checkpoint_every = checkpoint_every or validate_every
        if probe_every == "auto":
            probe_every = max(steps // 20, 1)

        # 3. The learning rate and the optimizer; the model built and checked against the data.
        schedule_config = {
            "learning_rate": _described(learning_rate),
            "warmup_steps": warmup_steps,
            "warmup_fraction": warmup_fraction,
            "warmup": warmup,
            "decay": decay if isinstance(decay, str) else type(decay).__name__,
            "end_learning_rate": end_learning_rate,
            "total_steps": steps,
        }
        self.lr_scale = tf.Variable(
            1.0, trainable=False, dtype=tf.float32, name="lstmcore_lr_scale"
        )
        if isinstance(optimizer, keras.optimizers.Optimizer):
            if warmup_steps or warmup_fraction or decay != "constant":
                raise ConfigError(
                    "warmup/decay options need lstmcore to create the optimizer: pass optimizer "
                    f"as a name {optimizers.OPTIMIZERS.names()}, or give your optimizer a "
                    "learning-rate schedule yourself"
                )
            rate = None
        else:
            rate = schedules.for_training(
                learning_rate,
                total_steps=steps,
                warmup_steps=warmup_steps,
                warmup_fraction=warmup_fraction,
                warmup=warmup,
                decay=decay,
                end_learning_rate=end_learning_rate,
                scale=self.lr_scale,
            )
        with self.strategy.scope():
            self.optimizer = optimizers.make(optimizer, rate)
        inputs.build_and_check(model, self.train_data, self.loss_fn, name="data")
        if self.val_data is not None:
            inputs.build_and_check(model, self.val_data, self.loss_fn, name="validation_data")
        with self.strategy.scope():
            self.optimizer.build(model.trainable_variables)
        if not model.trainable_variables:
            raise ConfigError("model has no trainable variables; nothing to train")
        self.clipper.check(model.trainable_variables)
        self.config = {
            "model": _model_signature(model),
            "loss": loss
            if isinstance(loss, str)
            else getattr(loss, "__name__", type(loss).__name__),
            "optimizer": self.optimizer.__class__.__name__,
            "batch_size": batch_size,
            "shuffle": shuffle,
            "seed": seed,
            "clip": clip if clip is None or isinstance(clip, str) else self.clipper.get_config(),
            "clip_norm": clip_norm,
            "clip_groups": clip_groups,
            "input_shape": list(self.train_data.input_shape),
            "num_samples": self.train_data.num_samples,
            "replicas": replicas,
            "global_batch_size": batch_size * replicas,
            "workers": self.context.num_workers,
            "data_report": None if data_report is None else runs.config_hash(data_report),
            **schedule_config,
        }
        self.logdir, self.run_dir, self.resuming = logdir, None, False
        if logdir is not None:
            self.run_dir, self.resuming = distributed.agree_on_run_dir(
                self.strategy,
                lambda: runs.choose_run_dir(logdir, run_name, self.config, resume),
            )
        self._generated_name = run_name is None and not self.resuming
        self.data_report = data_report
        self.train_arrays = monitor.as_arrays(data)
        self.validation_arrays = (
            None if validation_data is None else monitor.as_arrays(validation_data)
        )
        self.findings_before = (
            monitor.check_before_training(model, self.train_arrays, self.validation_arrays, loss)
            if check
            else []
        )

        # 4. The compiled steps (no writes yet), and the actions.
        self.train_step, self.series = make_train_step(
            model,
            self.optimizer,
            self.loss_fn,
            clip=self.clipper,
            clip_norm=clip_norm,
            clip_groups=None,
            strategy=self.strategy,
            skip_nonfinite=skip_nonfinite,
        )
        self.train_steps = (
            make_multi_step(self.train_step) if self.steps_per_execution > 1 else None
        )
        self.eval_step = make_eval_step(model, self.loss_fn, self.strategy)
        dataset = self.train_data.dataset
        if replicas > 1:
            dataset = distributed.distribute_dataset(self.strategy, dataset)
        self.iterator = iter(dataset)
        self.kernels = [k.to_dict() for k in cudnn_report(model)]
        self.validation = (
            None if self.val_data is None else actions_lib.Validation(self.val_data, validate_every)
        )
        self.console = actions_lib.Console() if self.progress and self.context.is_chief else None
        built_in = [
            actions_lib.Checkpointing(checkpoint_every, keep_checkpoints) if self.run_dir else None,
            actions_lib.TensorBoard(self.log_every, hparams) if self.run_dir else None,
            self.validation,
            actions_lib.Probes(probe_every) if probe_every is not None else None,
            actions_lib.Diagnosis(check),
            actions_lib.NonFinitePolicy(
                on_nonfinite,
                skip_nonfinite=skip_nonfinite,
                max_consecutive_skips=max_consecutive_skips,
            ),
            actions_lib.StopOnSignal(),
            actions_lib.Progress(self.console) if self.progress else None,
            actions_lib.KerasCallbacks(callbacks, per_epoch or validate_every)
            if callbacks
            else None,
        ]
        self.actions = [
            a
            for a in [*built_in, *user_actions]
            if a is not None and (self.context.is_chief or not a.chief_only)
        ]
        self.step = 0
        self.writer = self.checkpoints = self.history = None
        self.steps_per_second = 0.0
        self.stop_reason, self.urgent_stop = None, False
        # Multi-worker: a stop asked for here, held until the workers agree (request_stop).
        self.stop_wish, self._stop_agreed = None, False

    @runs.releases_run_locks
    @distributed.reports_lost_workers
    def fit(self) -> History:
        """Runs the training; returns a :class:`lstmcore.history.History`.

        Raises:
          NonFiniteError: when steps keep producing non-finite values and
            ``on_nonfinite="stop"`` (or ``"restore"`` gave up).
        """
        started: list = []
        with self._messages_shown():
            self._open_run()
            self.step = int(self.optimizer.iterations.numpy())
            self.builder = HistoryBuilder([s.tag for s in self.series])
            self._step_metrics = schema.step_metrics()
            self._pending, self._pending_steps = [], 0
            self._flush_times: list[tuple[int, float]] = []
            try:
                for action in self.actions:
                    started.append(action)
                    action.on_start(self)
                for k in self.kernels:
                    log.info(f"lstmcore: layer {k['layer']} ({k['layer_class']}): {k['reason']}")
                if self.run_dir is not None and self.context.is_chief:
                    log.info(
                        f"lstmcore: logging to {self.run_dir}  (tensorboard --logdir {self.logdir})"
                    )
                self._loop()
                stopped = self.stop_reason if self.step < self.total_steps else None
                self.history = self.builder.build(
                    run_dir=self.run_dir,
                    params=self.config,
                    kernels=self.kernels,
                    stopped=None if stopped is None else stopped.replace("{step}", str(self.step)),
                    flush_times=np.asarray(self._flush_times, np.float64).reshape(-1, 2),
                )
                for action in self.actions:
                    action.on_end(self)
            finally:
                for action in reversed(started):
                    action.close(self)
        return self.history

    def _loop(self) -> None:
        self._last_flush, self._last_step = time.monotonic(), self.step
        self._started = time.perf_counter()
        while self.step < self.total_steps and self.stop_reason is None:
            wanted = [action.next_step(self, self.step) for action in self.actions]
            boundary = min([self.total_steps, *(s for s in wanted if s is not None)])
            try:
                while self.step < boundary and self.stop_reason is None:
                    self._call(min(self.steps_per_execution, boundary - self.step))
                    # Several workers flush at the same steps (what the actions decide at a
                    # flush, such as the non-finite policy's restore, must agree): no clock.
                    if self._pending_steps >= self.flush_every or (
                        not self.context.multi_worker and time.monotonic() - self._last_flush >= 1.0
                    ):
                        self.flush()
                if self.step == boundary:
                    self.flush()
                    for action, step in zip(self.actions, wanted):
                        if step == boundary:
                            action.at_step(self, boundary)
            except faults.NonFiniteError as error:
                if not any(action.on_error(self, error) for action in self.actions):
                    raise
                self._pending.clear()
                self._pending_steps = 0
                self.step = int(self.optimizer.iterations.numpy())
        self.flush()

    def _call(self, count: int) -> None:
        """Runs ``count`` steps in one call of the compiled function; keeps their tensors."""
        with self.data_errors():
            if self.train_steps is None:
                self._pending.append(self.train_step(self.iterator))
            else:
                self._pending.append(self.train_steps(self.iterator, tf.constant(count, tf.int32)))
        self.step += count
        self._pending_steps += count
        if (
            self.context.multi_worker
            and distributed.stop_check_due(self.step - count, self.step)
            and distributed.agree_to_stop(self.strategy, self.stop_wish is not None)
        ):
            # Some worker asked to stop (a signal, an action): all stop at this step.
            reason, urgent = self.stop_wish or (OTHER_WORKER_STOPPED, True)
            self._stop_agreed = True
            self.request_stop(reason, urgent=urgent)

    def flush(self) -> None:
        """Fetches the buffered per-step values in one go and hands them to the actions."""
        if not self._pending:
            return
        values = {
            m.name: np.concatenate(
                [
                    np.reshape(p[m.name].numpy(), (-1, len(self.series)) if m.shape else (-1,))
                    for p in self._pending
                ]
            )
            for m in self._step_metrics
        }
        self._pending.clear()
        self._pending_steps = 0
        values["clip_fraction"] = self.builder.add(values)
        now, last = time.monotonic(), int(values["step"][-1]) + 1
        self._flush_times.append((last, time.perf_counter() - self._started))
        self.steps_per_second = (last - self._last_step) / max(now - self._last_flush, 1e-9)
        self._last_flush, self._last_step = now, last
        for action in self.actions:
            action.on_flush(self, values)

    def request_stop(self, reason: str, *, urgent: bool = False) -> None:
        """Stops training after the current call (``reason`` may hold ``{step}``).

        The loop fetches what is pending, the checkpointing action saves the step reached,
        ``History.stopped`` is ``reason``, and the actions' ``on_end`` run. ``urgent`` (a
        signal: the process is asked to exit) skips the diagnosis after training.

        Under a multi-worker strategy every worker must stop at the same step (each saves
        there, a collective operation): the request waits for the workers' next agreement,
        every :data:`lstmcore.distributed.STOP_CHECK_EVERY` steps, where any worker's request
        stops them all (a flush-time request comes at different steps on different workers).
        """
        if self.context.multi_worker and not self._stop_agreed:
            self.stop_wish = self.stop_wish or (reason, urgent)
            return
        if self.stop_reason is None:
            self.stop_reason, self.urgent_stop = reason, urgent

    @property
    def stop_requested(self) -> bool:
        return self.stop_reason is not None

    def validation_loss(self, step: int | None = None) -> float | None:
        """The validation loss at ``step`` (default: now), evaluated once per step; None
        without validation data."""
        if self.validation is None:
            return None
        self.flush()
        return self.validation.evaluate(self, self.step if step is None else step)

    def data_errors(self):
        return inputs.data_errors()

    def _open_run(self) -> None:
        """Creates or reopens the run directory, takes its lock, writes manifest and data report."""
        if self.run_dir is None:
            return
        if self.train_data.from_dataset and distributed.checkpointable(self.iterator):
            runs.check_iterator_checkpointable(self.iterator, name="data")
        if not self.context.is_chief:
            return  # the chief owns the run directory; the others save temporary checkpoints
        # A generated name that another process took in the same second moves to the next
        # suffix; not under several workers, which agreed on the chief's name already.
        self.run_dir, took_over = runs.open_run_dir(
            self.logdir,
            self.run_dir,
            resuming=self.resuming,
            next_free=self._generated_name and not self.context.multi_worker,
        )
        if took_over:
            log.info(f"lstmcore: {self.run_dir}: {took_over}")
        if self.context.is_chief:
            runs.write_manifest(self.run_dir, self.config)
            if self.data_report is not None:
                runs.write_json(os.path.join(self.run_dir, "data_report.json"), self.data_report)

    @contextlib.contextmanager
    def _messages_shown(self):
        """With ``progress``, the ``lstmcore`` logger's messages go to stdout during fit.

        They are shown there only (not passed on to the root logger's handlers, which would
        show them twice); with ``progress=False`` they go to the logger as usual (INFO).
        """
        if self.console is None:
            yield
            return
        previous = (log.level, log.propagate)
        log.addHandler(self.console)
        log.propagate = False
        if log.getEffectiveLevel() > logging.INFO:
            log.setLevel(logging.INFO)
        try:
            yield
        finally:
            log.removeHandler(self.console)
            log.setLevel(previous[0])
            log.propagate = previous[1]


def _described(learning_rate):
    """A learning rate as the run's configuration records it (JSON)."""
    if isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        return keras.optimizers.schedules.serialize(learning_rate)
    return learning_rate


def _model_signature(model) -> dict:
    # Layer classes and weight shapes, not names: Keras numbers unnamed layers per process.
    return {
        "layers": [type(layer).__name__ for layer in model.layers],
        "weight_shapes": [list(v.shape) for v in model.weights],
    }


def _check_actions(actions) -> list:
    actions = list(actions or ())
    for action in actions:
        if not isinstance(action, actions_lib.Action):
            raise ConfigError(
                f"actions must be lstmcore.actions.Action objects; got {type(action).__name__} "
                "(Keras callbacks go in callbacks=[...])"
            )
    return actions


def _check_callbacks(callbacks) -> list:
    callbacks = list(callbacks or ())
    for callback in callbacks:
        if not isinstance(callback, keras.callbacks.Callback):
            raise ConfigError(
                f"callbacks must be keras.callbacks.Callback objects; got {type(callback).__name__}"
            )
    return callbacks
