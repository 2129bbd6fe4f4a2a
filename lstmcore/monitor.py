"""What train() runs besides the step: data checks before, probes every k steps, diagnosis after.

This is the glue between the training loop and :mod:`lstmcore.probes` /
:mod:`lstmcore.diagnosis`: it picks the small fixed probe batch, writes probe values to
TensorBoard (scalars under ``probe/``, profiles over time steps as images, time step by
training step) and keeps them for the ``History``.
"""

from __future__ import annotations

import contextlib
import time

import keras
import numpy as np
import tensorflow as tf

from lstmcore import _keras_compat
from lstmcore import diagnosis as diagnose_lib
from lstmcore import probes as probes_lib

PROBE_SAMPLES = 64


@contextlib.contextmanager
def rng_untouched(model):
    """Restores the model's Keras seed-generator states (dropout RNG) on exit.

    Probes and checks call the model; a call may draw from a seed generator even in
    inference mode. Training must see the same random stream with or without them, so that
    a resumed run (which probes at its first step) continues bit-identically.
    """
    states = seed_states(model)
    saved = [state.numpy() for state in states]
    try:
        yield
    finally:
        for state, value in zip(states, saved):
            state.assign(value)


def seed_states(model) -> list:
    """The state variables of every ``keras.random.SeedGenerator`` held by the model's layers."""
    states = []
    for layer in _keras_compat.flatten_layers(model, include_self=True):
        for value in vars(layer).values():
            if isinstance(value, keras.random.SeedGenerator):
                states.append(value.state.value)
    return states


def as_arrays(data) -> tuple[np.ndarray, np.ndarray] | None:
    """Returns ``(inputs, targets)`` float32 arrays for array data, None for a dataset."""
    if (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and not isinstance(data[0], tf.data.Dataset)
    ):
        x = np.asarray(data[0], np.float32)
        y = np.asarray(data[1], np.float32)
        return x, y[:, None] if y.ndim == 1 else y
    return None


def probe_batch(train_dataset: tf.data.Dataset, train_arrays, validation_arrays):
    """Returns the probe batch ``(inputs, targets, train_targets)``.

    Held-out windows when there are any, else the first training windows; the mean baseline
    uses the training targets when they are at hand.
    """
    train_targets = None if train_arrays is None else train_arrays[1]
    if validation_arrays is not None:
        return (
            validation_arrays[0][:PROBE_SAMPLES],
            validation_arrays[1][:PROBE_SAMPLES],
            train_targets,
        )
    if train_arrays is not None:
        return train_arrays[0][:PROBE_SAMPLES], train_arrays[1][:PROBE_SAMPLES], train_targets
    inputs, targets = next(iter(train_dataset.take(1)))
    return inputs.numpy()[:PROBE_SAMPLES], targets.numpy()[:PROBE_SAMPLES], None


def persistence_values(inputs: np.ndarray, targets: np.ndarray, data_report: dict | None):
    """The "next value = last value" prediction when the targets are among the input features."""
    if not data_report:
        return None
    features = list(data_report.get("feature_columns") or [])
    target_names = list(data_report.get("target_columns") or [])
    horizon = int(data_report.get("horizon") or 1)
    if not target_names or any(name not in features for name in target_names):
        return None
    last = inputs[:, -1, [features.index(name) for name in target_names]]
    values = np.tile(last, (1, horizon))
    return values if values.shape == targets.shape else None


class ProbeLogger:
    """Runs the probes, writes them and keeps them.

    Args:
      model: the model being trained.
      batch: ``(inputs, targets, train_targets)`` from :func:`probe_batch`.
      loss_fn: the training loss.
      writer: a :class:`lstmcore.writer.RunWriter`, or None.
      last_input_values: persistence baseline predictions, or None.
    """

    def __init__(self, model, batch, loss_fn, writer, last_input_values=None):
        inputs, targets, train_targets = batch
        self._model = model
        with rng_untouched(model):  # make_probes calls the model once for its output shape
            self._probes = probes_lib.make_probes(
                model,
                inputs,
                targets,
                loss_fn,
                train_targets=train_targets,
                last_input_values=last_input_values,
            )
        self._writer = writer
        self.steps: list[int] = []
        self.values: dict[str, list] = {}

    @property
    def notes(self):
        return getattr(self._probes, "notes", None)

    def __call__(self, step: int) -> dict:
        started = time.perf_counter()
        with rng_untouched(self._model):
            values = dict(self._probes(step))
        values["seconds"] = time.perf_counter() - started
        self.steps.append(int(step))
        for name, value in values.items():
            self.values.setdefault(name, []).append(value)
        if self._writer is not None:
            for name, value in values.items():
                if np.ndim(value) == 0:
                    self._writer.write_scalar(f"probe/{name}", float(value), step)
                else:
                    self._writer.write_image(
                        f"probe/{name}", _heatmap(np.stack(self.values[name])), step
                    )
        return values

    def results(self) -> dict[str, np.ndarray]:
        """``{"step": [P], name: [P] or [P, T]}`` for every probe value recorded."""
        out = {"step": np.asarray(self.steps, np.int64)}
        out.update({name: np.asarray(values, np.float32) for name, values in self.values.items()})
        return out


def _heatmap(profiles: np.ndarray) -> np.ndarray:
    """``[P, T]`` profiles to a ``[1, P, T, 3]`` uint8 image, log-scaled, darker = smaller.

    Rows are probe calls (training time runs down), columns are input time steps (the
    prediction's own step at the right). Each row is scaled to its own maximum so the shape
    of the profile, the memory, is visible at every point of training. Two decades run from
    black to full: a step whose gradient is below 1% of the row's largest is black, the same
    1% that ``probe/memory_horizon`` uses, so the bright run at the right of a row is the
    memory horizon. A row with no gradient at all (zeros, or non-finite) is black, never bright.
    """
    magnitude = np.abs(np.nan_to_num(np.asarray(profiles, np.float64), nan=0.0, posinf=0.0))
    peak = magnitude.max(axis=1, keepdims=True)
    with np.errstate(divide="ignore"):
        values = np.log10(np.maximum(magnitude, 1e-300) / np.maximum(peak, 1e-300))
    shade = np.clip(1.0 + values / 2.0, 0.0, 1.0)
    shade = np.where(peak > 0, shade, 0.0)
    red = (255 * shade).astype(np.uint8)
    green = (255 * shade**2).astype(np.uint8)
    blue = (80 * (1 - shade)).astype(np.uint8)
    image = np.stack([red, green, blue], axis=-1)
    rows, columns = profiles.shape
    image = np.repeat(image, max(1, 128 // rows), axis=0)
    return np.repeat(image, max(1, 256 // columns), axis=1)[None]


def check_before_training(model, train_arrays, validation_arrays, loss) -> list:
    """Runs :func:`lstmcore.diagnosis.check_data` on array data (no capacity fit: it trains).

    A check that cannot run becomes a ``check_failed`` finding; training is never stopped here
    (``train`` has already checked shapes with its own messages).
    """
    if train_arrays is None:
        return []
    try:
        with rng_untouched(model):
            return diagnose_lib.check_data(
                train_arrays[0],
                train_arrays[1],
                validation_inputs=None if validation_arrays is None else validation_arrays[0],
                model=model,
                loss=loss,
                overfit_check=False,
            )
    except Exception as error:  # noqa: BLE001 - the diagnosis never stops training
        return [diagnose_lib.check_failed("check_data before training", error)]


def diagnose_after_training(
    history,
    model,
    train_arrays,
    validation_arrays,
    loss,
    *,
    findings_before=(),
    data_report=None,
    budget=None,
) -> list:
    """Runs :func:`lstmcore.diagnosis.diagnose` on the finished run; returns the one ranked list.

    The findings made before training are merged in (and kept on the history as
    ``history.findings_before``), so ``diagnose(history, model=..., data=...)`` on the same
    run returns the same list. Never raises: a failure becomes a ``check_failed`` finding.
    """
    before = [f.to_dict() if hasattr(f, "to_dict") else dict(f) for f in findings_before]
    try:
        history.findings_before = before
    except AttributeError:
        pass
    try:
        with rng_untouched(model):
            return diagnose_lib.diagnose(
                history,
                model=model if train_arrays is not None else None,
                data=train_arrays,
                validation_data=validation_arrays,
                loss=loss,
                data_report=data_report,
                budget=budget,
                findings_before=before,
            )
    except Exception as error:  # noqa: BLE001 - the diagnosis never loses the History
        return diagnose_lib.rank(
            [
                *[diagnose_lib._as_finding(f) for f in before],
                diagnose_lib.check_failed("diagnose after training", error),
            ]
        )
