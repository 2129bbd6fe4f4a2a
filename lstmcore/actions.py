"""Actions: everything that happens around the training steps, one behaviour per class.

The :class:`lstmcore.Trainer` loop runs compiled steps and, between them, calls its actions'
hooks. An action overrides only the hooks it needs:

- ``on_start(trainer)``: once, before the first step (``trainer.step`` is the step the run
  starts from: 0, or the resumed step).
- ``next_step(trainer, step) -> int | None``: the next step after ``step`` at which the
  action wants ``at_step``; None for never. The loop asks every action once per stretch,
  runs the steps up to the nearest answer (one or ``steps_per_execution`` steps per call),
  fetches the buffered per-step values and calls ``at_step`` of the actions that asked for
  that step, in list order.
- ``at_step(trainer, step)``: at the step asked for. Every step before it has been fetched
  and handed to ``on_flush``.
- ``on_flush(trainer, values)``: each time the loop fetches per-step values (every
  ``flush_every`` steps, once a second, and before every ``at_step``): ``values`` is a dict
  of NumPy arrays, one entry per step, keyed as :mod:`lstmcore.schema`.
- ``on_error(trainer, error) -> bool``: a :class:`lstmcore.faults.NonFiniteError` was raised
  in a step's stretch; True when the action recovered (the loop then continues from the
  optimizer's step counter, discarding values not yet fetched).
- ``on_end(trainer)``: once, after the last step, when training ended without an error
  (finished, or stopped by :meth:`lstmcore.Trainer.request_stop`); ``trainer.history`` is
  built.
- ``close(trainer)``: always, after ``on_end`` or an error: release what ``on_start`` took.

``chief_only = True`` marks an action that only writes (TensorBoard, progress, diagnosis):
under a multi-worker strategy it runs on the chief only. Actions that take part in
collective work (validation, checkpoints) run everywhere.

A user's action stops training early with ``trainer.request_stop(reason)``; e.g.::

    class StopWhenValidationStalls(lstmcore.actions.Action):
        def __init__(self, every, patience):
            self.every, self.patience, self.best, self.bad = every, patience, float("inf"), 0

        def next_step(self, trainer, step):
            return (step // self.every + 1) * self.every

        def at_step(self, trainer, step):
            loss = trainer.validation_loss(step)
            self.best, self.bad = (loss, 0) if loss < self.best else (self.best, self.bad + 1)
            if self.bad >= self.patience:
                trainer.request_stop(f"validation loss stalled at step {step}")
"""

from __future__ import annotations

import logging
import math
import os

import keras
import numpy as np
import tensorflow as tf

from lstmcore import (
    _keras_compat,
    baselines,
    distributed,
    faults,
    monitor,
    runs,
    schema,
)
from lstmcore import writer as writer_lib
from lstmcore.diagnosis import format_findings

log = logging.getLogger("lstmcore")

# Restores and skips past that on_nonfinite="restore" tries before it gives up.
MAX_RECOVERIES = 3


class Action:
    """The base class: every hook does nothing. See the module docstring for when each runs."""

    chief_only: bool = False

    def on_start(self, trainer) -> None:
        pass

    def next_step(self, trainer, step: int) -> int | None:
        return None

    def at_step(self, trainer, step: int) -> None:
        pass

    def on_flush(self, trainer, values: dict) -> None:
        pass

    def on_error(self, trainer, error: Exception) -> bool:
        return False

    def on_end(self, trainer) -> None:
        pass

    def close(self, trainer) -> None:
        pass


def periodic(step: int, every: int, last: int) -> int:
    """The next multiple of ``every`` after ``step``, or ``last`` when that comes first."""
    return min((step // every + 1) * every, last)


class Checkpointing(Action):
    """Saves a checkpoint every ``every`` steps, at the last step and when stopped early.

    On start it restores the latest checkpoint of a resumed run. Every save goes through
    :meth:`save`, the one place that writes checkpoints.
    """

    def __init__(self, every: int, keep: int):
        self.every, self.keep = every, keep
        self.saved_at: int | None = None

    def on_start(self, trainer):
        objects = {
            "model": trainer.model,
            "optimizer": trainer.optimizer,
            "lr_scale": trainer.lr_scale,
            "seeds": monitor.seed_states(trainer.model),
        }
        on_restore = None
        if distributed.checkpointable(trainer.iterator):
            objects["iterator"] = trainer.iterator
        else:

            def on_restore():
                # A tf.distribute iterator is not saved: one batch per step sets its position.
                trainer.iterator = distributed.iterator_at(
                    trainer.strategy,
                    trainer.train_data.dataset,
                    int(trainer.optimizer.iterations.numpy()),
                )

        directory = os.path.join(trainer.run_dir, "checkpoints")
        trainer.checkpoints = runs.Checkpoints(
            directory,
            self.keep,
            write_directory=distributed.checkpoint_directory(directory, trainer.context),
            on_restore=on_restore,
            **objects,
        )
        if trainer.resuming:
            restored = trainer.checkpoints.resume()
            trainer.step = int(trainer.optimizer.iterations.numpy())
            log.info(f"lstmcore: resumed {restored} at step {trainer.step}")
        if trainer.context.is_chief:
            trainer.checkpoints.remove_stale_temporaries()
        else:  # left by a worker killed during a save
            distributed.remove_worker_checkpoints(directory, trainer.context)

    def next_step(self, trainer, step):
        return periodic(step, self.every, trainer.total_steps)

    def at_step(self, trainer, step):
        self.save(trainer, step)

    def on_end(self, trainer):
        if self.saved_at != trainer.step:
            self.save(trainer, trainer.step)

    def save(self, trainer, step: int) -> None:
        """Writes the checkpoint of ``step``, unless a weight is not finite (then raises)."""
        faults.save_if_finite(trainer.checkpoints, step, trainer.model, trainer.optimizer)
        if trainer.context.multi_worker:
            # TensorFlow's multi-worker rule: every worker saves (a collective), only the
            # chief's checkpoint is kept; then all wait until it is complete on disk.
            distributed.remove_worker_checkpoints(trainer.checkpoints.directory, trainer.context)
            distributed.barrier(trainer.strategy)
        self.saved_at = step

    def close(self, trainer):
        if trainer.checkpoints is not None:
            distributed.remove_worker_checkpoints(trainer.checkpoints.directory, trainer.context)


class TensorBoard(Action):
    """Writes every ``log_every``-th step's schema scalars and gradient norms to TensorBoard.

    On start it opens the run's event writer (``trainer.writer``, which other actions write
    through), drops a resumed run's events past its checkpoint, and records the HParams, the
    custom-scalars layout and the kernel report.
    """

    chief_only = True

    def __init__(self, log_every: int, hparams: dict | None = None):
        self.log_every, self.hparams = log_every, hparams or {}
        self.columns = [name for name, _ in schema.per_step_tags()]

    def on_start(self, trainer):
        tags = [tag for _, tag in schema.per_step_tags()] + [s.tag for s in trainer.series]
        if trainer.resuming:
            writer_lib.drop_events_after(trainer.run_dir, trainer.step, set(tags))
        trainer.writer = writer_lib.RunWriter(trainer.run_dir, tags)
        if not trainer.resuming:
            params = {k: v for k, v in trainer.config.items() if k != "model"}
            trainer.writer.write_hparams(
                {**params, **self.hparams}, ["train/loss", "val/loss", *baselines.HPARAM_TAGS]
            )
            trainer.writer.write_layout(writer_lib.layout(trainer.series))
            trainer.writer.write_text(
                "kernels", writer_lib.kernels_markdown(trainer.kernels), step=0
            )

    def on_flush(self, trainer, values):
        rows = values["step"] % self.log_every == 0
        table = np.concatenate(
            [np.stack([values[k] for k in self.columns], axis=1), values["layer_grad_norms"]],
            axis=1,
        )
        trainer.writer.write_scalars(values["step"][rows], table[rows])
        last = int(values["step"][-1]) + 1
        trainer.writer.write_scalar("train/steps_per_second", trainer.steps_per_second, last)

    def close(self, trainer):
        if trainer.writer is not None:
            trainer.writer.flush()
            trainer.writer.close()


class Validation(Action):
    """Evaluates the validation data every ``every`` steps and at the last step.

    :meth:`evaluate` is the one evaluation: the loop's, the Keras callbacks' epoch ends and
    :meth:`lstmcore.Trainer.validation_loss` all go through it, so a step is evaluated once.
    """

    def __init__(self, data, every: int):
        self.data, self.every = data, every
        self.callbacks = None  # a keras.callbacks.CallbackList: on_test_* hooks
        self._last: tuple[int, float] | None = None

    def next_step(self, trainer, step):
        return periodic(step, self.every, trainer.total_steps)

    def at_step(self, trainer, step):
        self.evaluate(trainer, step)

    def evaluate(self, trainer, step: int) -> float:
        """The mean per-sample validation loss at ``step`` (recorded in History and TensorBoard)."""
        if self._last is not None and self._last[0] == step:
            return self._last[1]
        total = count = 0.0
        if self.callbacks is not None:
            self.callbacks.on_test_begin()
        with trainer.data_errors():
            for batch, (inputs, targets) in enumerate(self.data.dataset):
                if self.callbacks is not None:
                    self.callbacks.on_test_batch_begin(batch)
                batch_total, batch_count = trainer.eval_step(inputs, targets)
                total += float(batch_total)
                count += float(batch_count)
                if self.callbacks is not None:
                    self.callbacks.on_test_batch_end(batch, {"loss": total / max(count, 1.0)})
        loss = total / max(count, 1.0)
        if self.callbacks is not None:
            self.callbacks.on_test_end({"loss": loss})
        trainer.builder.add_validation(step, loss)
        if trainer.writer is not None:
            trainer.writer.write_scalar("val/loss", loss, step)
        self._last = (step, loss)
        return loss


class Probes(Action):
    """Runs :mod:`lstmcore.probes` on a fixed batch every ``every`` steps, at the start and end."""

    chief_only = True

    def __init__(self, every: int):
        self.every = every
        self.logger = None

    def on_start(self, trainer):
        batch = monitor.probe_batch(
            trainer.train_data.dataset, trainer.train_arrays, trainer.validation_arrays
        )
        if not (np.isfinite(batch[0]).all() and np.isfinite(batch[1]).all()):
            log.info("lstmcore: probes are off: the first batch of data holds NaN or Inf")
            return
        self.logger = monitor.ProbeLogger(
            trainer.model,
            batch,
            trainer.loss_fn,
            trainer.writer,
            monitor.persistence_values(batch[0], batch[1], trainer.data_report),
        )
        if trainer.step < trainer.total_steps:
            self.logger(trainer.step)

    def next_step(self, trainer, step):
        return None if self.logger is None else periodic(step, self.every, trainer.total_steps)

    def at_step(self, trainer, step):
        self.logger(step)

    def on_end(self, trainer):
        if self.logger is not None:
            trainer.history.probes = self.logger.results()


class Diagnosis(Action):
    """Reports the data checks before training; diagnoses the run and scores baselines after it.

    Skipped after a stop by a signal (the process is asked to exit), and when no step ran.
    """

    chief_only = True

    def __init__(self, check: bool):
        self.check = check

    def on_start(self, trainer):
        found = trainer.findings_before
        if found and trainer.writer is not None and not trainer.resuming:
            trainer.writer.write_text(
                "diagnosis/before_training", format_findings(found), trainer.step
            )
        if found:
            log.info(format_findings(found))

    def on_end(self, trainer):
        history = trainer.history
        if trainer.urgent_stop or not len(history["loss"]):
            return
        step = int(trainer.optimizer.iterations.numpy())
        if self.check:
            # One ranked list, the before-training findings included: the same as diagnose's.
            findings = monitor.diagnose_after_training(
                history,
                trainer.model,
                trainer.train_arrays,
                trainer.validation_arrays,
                trainer.loss,
                findings_before=trainer.findings_before,
                data_report=trainer.data_report,
            )
            history.findings = [f.to_dict() for f in findings]
            report = format_findings(findings)
            log.info(report)
            if trainer.writer is not None:
                trainer.writer.write_text("diagnosis/after_training", report, step)
        history.baselines = baselines.report_after_training(
            trainer.model,
            trainer.loss,
            train_arrays=trainer.train_arrays,
            validation_arrays=trainer.validation_arrays,
            data_report=trainer.data_report,
            run_dir=trainer.run_dir,
            step=step,
            progress=trainer.progress,
        )


class NonFinitePolicy(Action):
    """What happens when steps keep coming out non-finite: stop, restore, or skip past them.

    The compiled step never applies a non-finite step (with ``skip_nonfinite``); this action
    counts them at each flush. After ``max_consecutive_skips`` in a row, ``"stop"`` raises
    :class:`lstmcore.faults.NonFiniteError`. ``"restore"`` reloads the last checkpoint and
    halves the learning rate; it skips past the batches instead (training goes on from the
    step after them) when their data holds NaN or Inf, or when the same steps fail again
    right after a restore. At most :data:`MAX_RECOVERIES` restores and skips in all, then the
    error lists what was tried. A checkpoint that would hold non-finite weights is refused
    (:meth:`Checkpointing.save`) and handled the same way.
    """

    def __init__(self, on_nonfinite: str, *, skip_nonfinite: bool, max_consecutive_skips: int):
        self.on_nonfinite = on_nonfinite
        self.skip_nonfinite = skip_nonfinite
        self.limit = max_consecutive_skips
        self.tried: list[str] = []
        self._restored_after: tuple[int, int] | None = None
        self._consecutive, self._first = 0, None

    def on_flush(self, trainer, values):
        for step, skipped, fault in zip(values["step"], values["skipped"], values["fault"]):
            if not skipped:
                self._consecutive, self._first = 0, None
                continue
            self._consecutive += 1
            self._first = self._first or (int(step), int(fault))
            if self._consecutive >= self.limit:
                error = self._error(int(step))
                self._consecutive, self._first = 0, None
                self._skip_past(error)

    def on_error(self, trainer, error):
        if not isinstance(error, faults.NonFiniteError) or self.on_nonfinite != "restore":
            return False
        self._give_up_if_spent(error)
        if trainer.checkpoints is None or trainer.checkpoints.latest is None:
            raise faults.NonFiniteError(
                f"{error}. on_nonfinite='restore' had no checkpoint to restore yet"
                + self._history(),
                steps=error.steps,
                fault=error.fault,
            ) from None
        path = restore_and_halve_learning_rate(trainer)
        after = (
            f" after non-finite steps {error.steps[0]} to {error.steps[1]}" if error.steps else ""
        )
        self.tried.append(f"restored {os.path.basename(path)}{after}, learning rate halved")
        self._restored_after = error.steps
        self._consecutive, self._first = 0, None
        log.info(f"lstmcore: {self.tried[-1]}")
        return True

    def _error(self, last: int) -> faults.NonFiniteError:
        first, fault = self._first
        what = ", ".join(name for bit, name in faults.FAULT_NAMES if fault & bit) or "loss"
        return faults.NonFiniteError(
            f"{self.limit} consecutive steps were not finite, from step "
            f"{first} (batch number {first} of this run's data) to step {last}; "
            f"not finite: {what}. No update was applied on those steps. Check the data "
            "for NaN/Inf, lower the learning rate, or clip gradients",
            steps=(first, last),
            fault=fault,
        )

    def _skip_past(self, error: faults.NonFiniteError) -> None:
        if self.on_nonfinite != "restore" or not self.skip_nonfinite:
            raise error
        data_fault = bool(error.fault & faults.DATA_FAULTS)
        if not data_fault and error.steps != self._restored_after:
            raise error
        self._give_up_if_spent(error)
        first, last = error.steps
        why = "their data holds NaN or Inf" if data_fault else "they failed again after a restore"
        self.tried.append(f"skipped past steps {first} to {last} ({why})")
        self._restored_after = None
        log.info(f"lstmcore: non-finite steps {first} to {last}; {why}: skipped past them")

    def _give_up_if_spent(self, error: faults.NonFiniteError) -> None:
        if len(self.tried) >= MAX_RECOVERIES:
            raise faults.NonFiniteError(
                f"{error}. on_nonfinite='restore' gave up after {len(self.tried)} recoveries"
                + self._history(),
                steps=error.steps,
                fault=error.fault,
            ) from None

    def _history(self) -> str:
        return (": " + "; ".join(self.tried)) if self.tried else ""


def restore_and_halve_learning_rate(trainer) -> str:
    """Reloads the latest checkpoint and halves the learning rate in force before it.

    Half of the lower of the rate before and the restored rate: restoring the same checkpoint
    twice halves twice. lstmcore's own optimizers scale their schedule through
    ``trainer.lr_scale``; a user's optimizer with a constant rate has that rate halved; one
    with its own schedule cannot be changed here, which is said.
    """
    optimizer, lr_scale = trainer.optimizer, trainer.lr_scale
    own_rate = _keras_compat.optimizer_learning_rate(optimizer)
    constant = isinstance(own_rate, (tf.Variable, keras.Variable))
    scale_before = float(lr_scale.numpy())
    rate_before = float(np.asarray(own_rate)) if constant else None
    path = trainer.checkpoints.restore_latest()
    lr_scale.assign(min(float(lr_scale.numpy()), scale_before) * 0.5)
    if constant:
        optimizer.learning_rate = min(float(np.asarray(own_rate)), rate_before) * 0.5
    elif own_rate is not None and getattr(own_rate, "scale", None) is not lr_scale:
        log.info("lstmcore: the optimizer has its own learning-rate schedule; not halved")
    return path


class StopOnSignal(Action):
    """On SIGTERM, stops after the current call, saves a checkpoint and returns (resumable)."""

    def on_start(self, trainer):
        def handler(signum, frame):
            trainer.request_stop(
                f"stopped by signal {signum} at step {{step}}; resume with resume=True",
                urgent=True,
            )

        self._previous = runs.install_sigterm(handler)

    def close(self, trainer):
        runs.restore_sigterm(self._previous)


class Progress(Action):
    """A progress bar (``keras.utils.Progbar``) updated at each flush; messages print above it."""

    chief_only = True

    def __init__(self, console=None):
        self.console = console
        self.bar = None

    def on_start(self, trainer):
        self.bar = keras.utils.Progbar(
            trainer.total_steps, stateful_metrics=["loss", "grad_norm", "lr", "steps/s"]
        )

    def on_flush(self, trainer, values):
        self.bar.update(
            int(values["step"][-1]) + 1,
            values=[
                ("loss", float(values["loss"][-1])),
                ("grad_norm", float(values["grad_norm_before_clip"][-1])),
                ("lr", float(values["learning_rate"][-1])),
                ("steps/s", trainer.steps_per_second),
            ],
        )
        if self.console is not None:
            self.console.mid_line = True

    def on_end(self, trainer):
        if self.console is not None and self.console.mid_line:
            self.console.stream().write("\n")
            self.console.mid_line = False


class Console(logging.Handler):
    """Shows the ``lstmcore`` logger's messages on standard output, above the progress bar."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.mid_line = False

    @staticmethod
    def stream():
        import sys

        return sys.stdout

    def emit(self, record):
        try:
            text = self.format(record)
            self.stream().write(("\n" if self.mid_line else "") + text + "\n")
            self.stream().flush()
            self.mid_line = False
        except Exception:  # noqa: BLE001 - logging must never break training
            self.handleError(record)


class KerasCallbacks(Action):
    """Runs standard ``keras.callbacks.Callback`` objects with Keras's ``fit`` semantics.

    An epoch is one pass over the data (``validate_every`` steps when the data's size is
    unknown). ``on_train_begin``/``on_train_end``, ``on_epoch_begin``/``on_epoch_end`` and
    the validation hooks (``on_test_begin``/``on_test_batch_*``/``on_test_end``) run at
    exactly their steps; ``on_epoch_end``'s ``logs`` hold ``loss`` (the epoch's mean) and,
    with validation data, ``val_loss`` (evaluated at that step). The per-batch hooks
    (``on_train_batch_begin``/``on_train_batch_end``) run at flush time, for each step of
    the flush in order, with ``logs={"loss": the epoch's running mean}``: they see every
    step's value, but after the step ran (up to ``flush_every`` steps or a second later), so a
    batch hook that stops training stops it at the next call. ``model.stop_training = True``
    stops training after the current hook. ``model.optimizer`` is lstmcore's optimizer during
    training; setting its ``learning_rate`` (``ReduceLROnPlateau``) changes the rate used: a
    constant rate is replaced, and a schedule of lstmcore's is scaled so that the current rate
    becomes the new one (warmup and decay continue, scaled).
    """

    def __init__(self, callbacks, epoch_steps: int):
        self.callbacks = list(callbacks)
        self.epoch_steps = epoch_steps
        self.list = None
        self._saved_optimizer = None

    def on_start(self, trainer):
        model = trainer.model
        self._saved_optimizer = (getattr(model, "optimizer", None),)
        _keras_compat.set_untracked(model, "optimizer", RateControl(trainer))
        model.stop_training = False
        epochs = math.ceil(trainer.total_steps / self.epoch_steps)
        self.list = keras.callbacks.CallbackList(
            self.callbacks,
            add_history=False,
            add_progbar=False,
            model=model,
            epochs=epochs,
            steps=self.epoch_steps,
            verbose=0,
        )
        if trainer.validation is not None:
            trainer.validation.callbacks = self.list
        self.list.on_train_begin()
        self.epoch = trainer.step // self.epoch_steps
        self.losses: list[float] = []
        self.logs = None
        self.list.on_epoch_begin(self.epoch)

    def next_step(self, trainer, step):
        return periodic(step, self.epoch_steps, trainer.total_steps)

    def on_flush(self, trainer, values):
        for step, loss in zip(values["step"], values["loss"]):
            batch = int(step) - self.epoch * self.epoch_steps
            self.list.on_train_batch_begin(batch)
            self.losses.append(float(loss))
            self.list.on_train_batch_end(batch, {"loss": float(np.mean(self.losses))})
        self._check_stop(trainer)

    def at_step(self, trainer, step):
        self._end_epoch(trainer, step)
        if step < trainer.total_steps and not trainer.stop_requested:
            self.epoch += 1
            self.losses = []
            self.list.on_epoch_begin(self.epoch)

    def on_end(self, trainer):
        if self.losses:  # stopped inside an epoch: Keras ends that epoch too
            self._end_epoch(trainer, trainer.step)
        self.list.on_train_end(self.logs)

    def close(self, trainer):
        if self._saved_optimizer is not None:
            _keras_compat.set_untracked(trainer.model, "optimizer", self._saved_optimizer[0])
            self._saved_optimizer = None
        if trainer.validation is not None:
            trainer.validation.callbacks = None

    def _end_epoch(self, trainer, step):
        logs = {"loss": float(np.mean(self.losses)) if self.losses else float("nan")}
        if trainer.validation is not None:
            logs["val_loss"] = trainer.validation_loss(step)
        self.list.on_epoch_end(self.epoch, logs)
        self.logs, self.losses = logs, []
        self._check_stop(trainer)

    def _check_stop(self, trainer):
        if getattr(trainer.model, "stop_training", False) and not trainer.stop_requested:
            trainer.request_stop("stopped by a Keras callback (model.stop_training) at step {step}")


class RateControl:
    """``model.optimizer`` as Keras callbacks see it: lstmcore's optimizer, whose
    ``learning_rate`` reads the rate in force and, when set, changes the rate actually used."""

    def __init__(self, trainer):
        object.__setattr__(self, "_trainer", trainer)

    def __getattr__(self, name):
        return getattr(self._trainer.optimizer, name)

    @property
    def learning_rate(self):
        return float(np.asarray(self._trainer.optimizer.learning_rate))

    @learning_rate.setter
    def learning_rate(self, value):
        optimizer, scale = self._trainer.optimizer, self._trainer.lr_scale
        own = _keras_compat.optimizer_learning_rate(optimizer)
        if isinstance(own, (tf.Variable, keras.Variable)):
            optimizer.learning_rate = float(value)
        elif getattr(own, "scale", None) is scale:
            current = self.learning_rate
            scale.assign(float(scale.numpy()) * float(value) / current if current else 1.0)
        else:
            optimizer.learning_rate = value  # Keras explains why a user's schedule is fixed

    def __setattr__(self, name, value):
        if name == "learning_rate":
            object.__setattr__(self, name, value)  # the property above
        else:
            setattr(self._trainer.optimizer, name, value)
