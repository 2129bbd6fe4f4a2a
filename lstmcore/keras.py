"""lstmcore for ``model.fit`` users: the data checks, probes and diagnosis as one Keras callback.

``model.fit(x, y, callbacks=[lstmcore.keras.Diagnose((x, y))])`` runs, around the user's own
``fit``, what :func:`lstmcore.train` runs around its loop, with the same functions
(:mod:`lstmcore.monitor`, :mod:`lstmcore.probes`, :mod:`lstmcore.diagnosis`) and the same
TensorBoard tags: ``check_data`` before the first batch, the probes and the per-layer, per-gate
gradient norms on a fixed probe batch every ``probe_every`` steps, ``diagnose`` after the last
batch. Nothing here changes the model, its optimizer or the data.
"""

from __future__ import annotations

import os
import time
import types

import keras
import numpy as np
import tensorflow as tf

from lstmcore import diagnosis, monitor, probes, runs, step
from lstmcore import writer as writer_lib
from lstmcore.errors import ConfigError, DataError
from lstmcore.inputs import PreparedData, prepare
from lstmcore.inputs import build_and_check as _build_and_check
from lstmcore.kernel_report import cudnn_report

STOP_ON = ("high", "medium")
RUN_NAME = "lstmcore"  # the sub-directory of log_dir; keras.callbacks.TensorBoard uses train/
PROBES_PER_RUN = 20  # probe_every="auto": about this many probes in a fit of known length
# The probes read the model's variables in cross-replica context on the host; across
# machines (or on TPU cores) every worker would have to run them in step. Refused.
REFUSED_STRATEGIES = (
    tf.distribute.MultiWorkerMirroredStrategy,
    tf.distribute.experimental.ParameterServerStrategy,
    tf.distribute.TPUStrategy,
)


class Diagnose(keras.callbacks.Callback):
    """Checks the data, probes the model during ``fit`` and diagnoses it at the end.

    What happens when (``fit`` calls these hooks):

    - ``on_train_begin``: the model is checked against ``data`` as :func:`lstmcore.train` does
      (a model that cannot map the inputs to predictions shaped like the targets stops ``fit``
      with the same ``ValueError``), then :func:`lstmcore.check_data` runs with the model and
      its compiled loss and its findings are printed. With ``stop_on`` set, a finding of that
      severity or worse sets ``model.stop_training``; Keras checks it after each call of its
      train function, so one call (``steps_per_execution`` steps) still runs.
    - every ``probe_every`` optimizer steps, and at the first and last: the probes of
      :func:`lstmcore.probes.make_probes` (input-gradient profile and memory horizon, gate
      saturation, prediction spread, baselines) and the gradient norms per layer, variable and
      gate, all on one fixed batch of up to 64 windows (``validation_data``'s, else
      ``data``'s), written to ``<log_dir>/lstmcore`` under ``probe/...`` and
      ``grad_norm/...``, the tags :func:`lstmcore.train` writes. With ``steps_per_execution``
      above 1 a probe runs at the end of the call that reaches its step.
    - ``on_train_end``: :func:`lstmcore.diagnose` on the trained model and ``data``; all
      findings, ranked, are printed, kept in :attr:`findings` and written to TensorBoard's
      Text tab (``diagnosis/before_training``, ``diagnosis/after_training``).

    It never stops ``fit`` by failing: a check that cannot run (an unusual loss, a model the
    probes cannot split) is skipped with a line saying why, also kept in :attr:`notes`.
    ``keras.callbacks.TensorBoard`` may write to the same ``log_dir``: it writes ``train/``
    and ``validation/``, this callback ``lstmcore/``, three runs side by side.

    Args:
      data: the training data given to ``fit``: ``(inputs [N, T, F], targets)`` arrays, or
        a ``tf.data.Dataset`` of such batches (then only the probes and the run checks run).
      validation_data: ``(inputs, targets)`` held-out windows; the probe batch and the
        held-out half of the diagnosis come from them.
      log_dir: where TensorBoard events go (``<log_dir>/lstmcore``); None writes nothing.
      probe_every: optimizer steps between probes; ``"auto"`` (default) about 20 times per
        fit of known length, else at the end of every epoch; None only the checks before and
        the diagnosis after.
      stop_on: ``"high"`` or ``"medium"``: stop ``fit`` when ``check_data`` finds a problem
        of this severity or worse; None (default) never stops.
      budget: how long ``diagnose`` tries each suspected cause's fix on a copy of the model
        (:func:`lstmcore.diagnose`'s ``budget``): a fraction in (0, 1] of the fit's steps
        shared by the trials, a whole number of steps per trial, or 0 to try none (causes are
        then at most suspected); None: diagnose's default.
      verbose: print the findings and notes.

    Attributes:
      findings: after ``fit``, the :class:`lstmcore.diagnosis.Finding` list, highest score
        first (before ``fit`` ends: the ``check_data`` findings).
      notes: what could not run, and why.
      stopped: why ``fit`` was stopped, or None.
      seconds: time spent in ``check_data``, the probes (all calls) and ``diagnose``.
      probes: after ``fit``, what the probes measured, as ``lstmcore.train``'s
        ``History.probes``: ``{"step": [P], name: [P] or [P, T], "seconds": [P]}`` (the
        seconds of each call's computation, TensorBoard writes not included).

    Raises:
      ValueError: at construction, for bad arguments or data (naming the argument, what was
        received and what is accepted); at the start of ``fit``, for a model the data cannot
        train, or a multi-machine distribution strategy.
    """

    def __init__(
        self,
        data,
        *,
        validation_data=None,
        log_dir: str | os.PathLike | None = None,
        probe_every: int | str | None = "auto",
        stop_on: str | None = None,
        budget: float | None = None,
        verbose: bool = True,
    ):
        super().__init__()
        self._train = prepare(
            data, name="data", batch_size=32, shuffle=False, seed=None, repeat=False
        )
        if validation_data is not None:
            prepare(
                validation_data,
                name="validation_data",
                batch_size=32,
                shuffle=False,
                seed=None,
                repeat=False,
            )
        if probe_every not in ("auto", None) and (
            isinstance(probe_every, bool)
            or not isinstance(probe_every, (int, np.integer))
            or probe_every <= 0
        ):
            raise ConfigError(
                f"probe_every must be a positive integer, 'auto' or None; got {probe_every!r}"
            )
        if stop_on is not None and stop_on not in STOP_ON:
            raise ConfigError(f"stop_on must be one of {STOP_ON} or None; got {stop_on!r}")
        diagnosis._trial_steps(budget, 0, 1)  # raises ValueError naming budget
        if not isinstance(verbose, bool):
            raise ConfigError(f"verbose must be True or False; got {verbose!r}")
        if log_dir is not None:
            log_dir = os.fspath(log_dir)
            runs.check_logdir(log_dir)
        self._train_arrays = monitor.as_arrays(data)
        self._validation_arrays = (
            None if validation_data is None else monitor.as_arrays(validation_data)
        )
        self.log_dir = log_dir
        self.probe_every = probe_every
        self.stop_on = stop_on
        self.budget = budget
        self.verbose = verbose
        self.findings: list[diagnosis.Finding] = []
        self.notes: list[str] = []
        self.stopped: str | None = None
        self.seconds = {"check_data": 0.0, "probes": 0.0, "diagnose": 0.0}
        self.probes: dict[str, np.ndarray] = {}

    # ---------------------------------------------------------------------------------------
    # fit's hooks
    # ---------------------------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        strategy = self.model.distribute_strategy
        if isinstance(strategy, REFUSED_STRATEGIES):
            raise ConfigError(
                "lstmcore.keras.Diagnose supports the default, OneDevice and Mirrored "
                f"strategies (one machine); got {type(strategy).__name__}. Leave the callback "
                "out of this fit and diagnose the saved model: lstmcore diagnose --model"
            )
        check_model_on_data(self.model, self._train, name="data")
        self.findings, self.notes, self.stopped = [], [], None
        self.seconds = dict.fromkeys(self.seconds, 0.0)
        self._writer = self._probe_logger = self._gradient_norms = None
        self._history = {"step": [], "loss": [], "learning_rate": []}
        self.probes = {}
        self._loss = self._guard("reading the compiled loss", self._compiled_loss)
        self._step = int(self.model.optimizer.iterations.numpy())
        self._epoch_start = self._last_probe = self._step
        self._every = self._probe_interval()
        if self._loss is None:
            return
        if self.log_dir is not None:
            self._guard("opening the TensorBoard writer", self._open_writer)
        started = time.perf_counter()
        before = self._guard("check_data", self._check_data) or []
        self.seconds["check_data"] += time.perf_counter() - started
        self.findings = before
        if before:
            self._write_text("diagnosis/before_training", diagnosis.format_findings(before))
            self._print(diagnosis.format_findings(before))
        limit = {"high": 0.8, "medium": 0.5}.get(self.stop_on)
        severe = [f for f in before if limit is not None and f.score >= limit]
        if severe:
            self.stopped = (
                f"stop_on={self.stop_on!r}: check_data found {len(severe)} finding(s) of that "
                f"severity or worse ({', '.join(f.code for f in severe)})"
            )
            self.model.stop_training = True
            self._print(f"lstmcore: stopping fit: {self.stopped}")
            return
        if self._every != 0:
            self._guard("the probes", self._start_probes)
            self._probe()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = self._step

    def on_train_batch_end(self, batch, logs=None):
        per_epoch = self.params.get("steps") or batch + 1
        self._step = self._epoch_start + min(batch + 1, per_epoch)
        every = self._every
        if every and self._step // every > self._last_probe // every:
            self._probe()

    def on_epoch_end(self, epoch, logs=None):
        self._step = int(self.model.optimizer.iterations.numpy())
        if self._every is None:
            self._probe()

    def on_train_end(self, logs=None):
        try:
            if self.stopped is None and self._loss is not None:
                if self._every != 0 and self._last_probe != self._step:
                    self._probe()
                if self._probe_logger is not None:
                    self.probes = self._probe_logger.results()
                started = time.perf_counter()
                findings = self._guard("diagnose", self._diagnose)
                self.findings = self.findings if findings is None else findings
                self.seconds["diagnose"] += time.perf_counter() - started
                report = diagnosis.format_findings(self.findings)
                self._write_text("diagnosis/after_training", report)
                self._print(report)
            if self._writer is not None:
                self._print(f"lstmcore: TensorBoard: tensorboard --logdir {self.log_dir}")
        finally:
            if self._writer is not None:
                self._writer.close()
                self._writer = None

    # ---------------------------------------------------------------------------------------
    # The work, each part run through _guard
    # ---------------------------------------------------------------------------------------

    def _compiled_loss(self):
        loss = getattr(self.model, "loss", None)
        if loss is None or isinstance(loss, (dict, list, tuple)):
            raise ConfigError(
                "the checks need the model compiled with one loss (a name or a callable); got "
                f"{loss!r}"
            )
        probes.as_loss_fn(loss, name="the compiled loss")
        return loss

    def _probe_interval(self) -> int | None:
        """Steps between probes; None: at the end of each epoch; 0: never."""
        if self.probe_every is None:
            return 0
        if self.probe_every != "auto":
            return int(self.probe_every)
        steps = self.params.get("steps")
        if not steps:
            return None
        return max(steps * self.params.get("epochs", 1) // PROBES_PER_RUN, 1)

    def _open_writer(self):
        run_dir = os.path.join(self.log_dir, RUN_NAME)
        series = step.norm_series(self.model, list(self.model.trainable_variables))
        self._writer = writer_lib.RunWriter(run_dir, [s.tag for s in series])
        self._writer.write_layout(writer_lib.layout(series))
        kernels = [k.to_dict() for k in cudnn_report(self.model)]
        self._writer.write_text("kernels", writer_lib.kernels_markdown(kernels), self._step)

    def _check_data(self):
        return monitor.check_before_training(
            self.model, self._train_arrays, self._validation_arrays, self._loss
        )

    def _start_probes(self):
        batch = monitor.probe_batch(
            self._train.dataset, self._train_arrays, self._validation_arrays
        )
        loss_fn = probes.as_loss_fn(self._loss)
        self._probe_logger = monitor.ProbeLogger(self.model, batch, loss_fn, self._writer)
        for note in self._probe_logger.notes or []:
            self._note(note)
        if self._writer is not None:
            self._gradient_norms = gradient_norms(self.model, batch[0], batch[1], loss_fn)

    def _probe(self):
        if self._probe_logger is None:
            return
        started = time.perf_counter()
        self._step = int(self.model.optimizer.iterations.numpy())
        self._last_probe = self._step
        values = self._guard("the probes", lambda: self._probe_logger(self._step))
        if values is None:
            self.probes = self._probe_logger.results()
            self._probe_logger = None
        else:
            self._guard("reading the learning rate", lambda: self._record(values))
        if self._gradient_norms is not None:
            norms = self._guard("the gradient norms", self._gradient_norms)
            if norms is None:
                self._gradient_norms = None
            else:
                self._writer.write_scalars(np.array([self._step]), norms[None])
        self.seconds["probes"] += time.perf_counter() - started

    def _record(self, values):
        rate = float(np.asarray(self.model.optimizer.learning_rate))
        self._history["step"].append(self._step)
        self._history["loss"].append(float(values["loss"]))
        self._history["learning_rate"].append(rate)

    def _diagnose(self):
        # One ranked list, the check_data findings included, as train's.
        return monitor.diagnose_after_training(
            self._run_history(),
            self.model,
            self._train_arrays,
            self._validation_arrays,
            self._loss,
            findings_before=self.findings,
            budget=self.budget,
        )

    def _run_history(self):
        """The probed losses and learning rates, held from one probe to the next, per step.

        :func:`lstmcore.diagnosis.check_updates` reads per-step arrays; between probes the
        callback has no loss (Keras logs the epoch's running mean), so each probe's values
        stand for the steps since the previous probe.
        """
        recorded = {key: np.asarray(value) for key, value in self._history.items()}
        if len(recorded["step"]) < 2:
            return None
        counts = np.diff(recorded["step"])
        run = {key: np.repeat(recorded[key][1:], counts) for key in ("loss", "learning_rate")}
        params = {"optimizer": type(self.model.optimizer).__name__.lower()}
        return types.SimpleNamespace(history=run, params=params)

    # ---------------------------------------------------------------------------------------
    # Output
    # ---------------------------------------------------------------------------------------

    def _guard(self, what, function):
        # fit is the user's; a check that fails must not end it. What failed is said.
        try:
            return function()
        except Exception as error:  # noqa: BLE001
            self._note(f"{what} could not run ({type(error).__name__}: {error}); skipped")
            return None

    def _note(self, text):
        self.notes.append(text)
        self._print(f"lstmcore: {text}")

    def _print(self, text):
        if self.verbose:
            print(text)

    def _write_text(self, tag, text):
        if self._writer is not None:
            self._writer.write_text(tag, text, self._step)
            self._writer.flush()


def gradient_norms(model, inputs, targets, loss_fn):
    """Builds ``norms() -> [S]``: the loss's gradient norms on a fixed batch, one per series.

    The series are those of :func:`lstmcore.step.norm_series` (every trainable variable, and
    each gate block of a recurrent layer's kernel, recurrent kernel and bias), in its order,
    computed by the same one-pass reduction as the training step's, on the batch
    ``(inputs, targets)`` with the model in inference mode.

    Args:
      model: a built Keras model.
      inputs: ``[B, T, F]`` probe inputs.
      targets: ``[B, ...]`` probe targets.
      loss_fn: ``(targets, predictions) -> losses``.

    Returns:
      A callable returning a ``[S]`` float32 NumPy array.
    """
    variables = list(model.trainable_variables)
    series = step.norm_series(model, variables)
    gates = {s.variable_index: s.gate + 1 for s in series if s.gate is not None}
    x, y = tf.constant(inputs, tf.float32), tf.constant(targets, tf.float32)

    @tf.function
    def compute():
        with tf.GradientTape() as tape:
            loss = probes.mean_loss(loss_fn, y, model(x, training=False))
        grads = tape.gradient(loss, variables)
        return step._squared_norms(grads, series, gates)[1]

    def norms():
        with monitor.rng_untouched(model):
            return compute().numpy()

    return norms


def load_model(path: str | os.PathLike) -> keras.Model:
    """Loads a saved ``.keras`` model with Keras's ``safe_mode``, knowing lstmcore's classes.

    ``safe_mode=True`` refuses to deserialise Python code stored in the file (``Lambda``
    layers' bytecode), so a downloaded model cannot run code on load. lstmcore's own layers,
    optimizers and schedules are registered first, so models saved by ``lstmcore train`` load.

    Args:
      path: a ``.keras`` file (Keras 3's format; legacy ``.h5`` files and SavedModel
        directories do not support ``safe_mode`` and are refused).

    Returns:
      The model, compiled as it was saved (when it was).

    Raises:
      ConfigError: for a path that is not an existing ``.keras`` file.
      DataError: for a file Keras cannot load safely (its message says why; Keras's error is
        chained).
    """
    from lstmcore import layers, models, optimizers, schedules  # noqa: F401 - registrations

    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise ConfigError(
            f"model must be a .keras file (Keras 3's format, loaded with safe_mode=True); got "
            f"{path!r}. Re-save it with model.save('model.keras')"
        )
    if not os.path.isfile(path):
        raise ConfigError(f"model {path!r} does not exist or is not a file")
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # Keras's own message says what is in the way
        raise DataError(
            f"model {path!r} could not be loaded with safe_mode=True: {error}"
        ) from error


def check_model_on_data(model, data, *, name: str) -> None:
    """Checks that ``model`` maps ``data``'s inputs to predictions shaped like its targets.

    The same checks, with the same messages, as :func:`lstmcore.train` makes before its first
    step (input steps and features against the model's declared input, a call on two samples,
    one output tensor, predictions shaped like the targets). The loss is not checked: ``fit``
    accepts losses that ``train`` does not (a ``keras.losses.Loss`` returns one reduced value).

    Args:
      model: a Keras model.
      data: ``(inputs, targets)`` arrays, a ``tf.data.Dataset`` of batches, or the
        ``PreparedData`` of :func:`lstmcore.inputs.prepare`.
      name: the data's name in messages (``"data"``, ``"--data"``).

    Raises:
      ValueError: naming ``name``, the shapes received and what the model expects.
    """
    if not isinstance(data, PreparedData):
        data = prepare(data, name=name, batch_size=32, shuffle=False, seed=None, repeat=False)
    _build_and_check(model, data, _one_zero_per_sample, name=name)


def _one_zero_per_sample(targets, predictions):
    return tf.zeros(tf.shape(predictions)[:1])
