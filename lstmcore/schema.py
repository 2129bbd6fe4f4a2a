"""The per-step metric schema: every value a training step records, defined once.

Each :class:`Metric` names one per-step value: its dtype, its shape (a scalar, or one value
per gradient-norm series), its TensorBoard tag and whether :class:`lstmcore.history.History`
keeps it. Everything that handles per-step values derives from this list: the compiled step's
returned dict (:mod:`lstmcore.step`), the TensorArrays of a multi-step call, the columns of
``History``, the per-step TensorBoard tags (:mod:`lstmcore.writer`), the flush in
:class:`lstmcore.Trainer` and the event-file reader of :mod:`lstmcore.diagnosis`.

Adding a per-step metric is one call, from outside the package too::

    from lstmcore import schema

    schema.register(schema.Metric(
        "prediction_mean", tag="train/prediction_mean",
        compute=lambda view: tf.reduce_mean(view.predictions),
    ))

A registered metric is computed inside the compiled step from a :class:`StepView` (no host
sync), returned with the others, kept in ``History["prediction_mean"]`` and written to
TensorBoard under its tag. Under a distribution strategy it is computed on each replica's
share of the batch, and the first replica's value is recorded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

from lstmcore import config
from lstmcore.errors import ConfigError

SERIES = "series"  # shape marker: one value per gradient-norm series (lstmcore.step.NormSeries)
DTYPES = ("float32", "int32", "int64")


class StepView(NamedTuple):
    """What a registered metric's ``compute`` sees inside the compiled step (tensors).

    Attributes:
      inputs: this replica's batch of inputs ``[B, T, F]``.
      targets: its targets.
      predictions: the model's predictions (training mode).
      loss: the step's scalar loss (the mean over the global batch plus regularisers).
      grads: the gradients, after cross-replica aggregation, before clipping.
      clipped_grads: the gradients the optimizer is given.
      variables: the trainable variables, in the order of ``grads``.
    """

    inputs: object
    targets: object
    predictions: object
    loss: object
    grads: list
    clipped_grads: list
    variables: list


@dataclasses.dataclass(frozen=True)
class Metric:
    """One per-step value.

    Attributes:
      name: its key in the step's dict and in ``History``.
      dtype: ``"float32"``, ``"int32"`` or ``"int64"``.
      tag: its TensorBoard tag, or None to keep it out of TensorBoard.
      shape: ``()`` for a scalar, ``("series",)`` for one value per gradient-norm series.
      in_history: whether ``History.history`` keeps it (a ``("series",)`` metric goes to
        ``History.layer_grad_norms`` instead).
      source: ``"step"`` (returned by the compiled step) or ``"host"`` (computed at the
        flush from the fetched values: the running clip fraction).
      compute: for a registered metric, ``compute(view: StepView) -> scalar tensor``, run in
        the compiled step; None for lstmcore's own metrics, which the step computes itself.
    """

    name: str
    dtype: str = "float32"
    tag: str | None = None
    shape: tuple = ()
    in_history: bool = True
    source: str = "step"
    compute: Callable | None = None


BUILTIN = (
    Metric("step", "int64", None),
    Metric("loss", "float32", "train/loss"),
    Metric("learning_rate", "float32", "train/learning_rate"),
    Metric("grad_norm_before_clip", "float32", "grad_norm/global_before_clip"),
    Metric("grad_norm_after_clip", "float32", "grad_norm/global_after_clip"),
    Metric("clipped", "float32", "clip/clipped"),
    Metric("clip_fraction", "float32", "clip/fraction", source="host"),
    Metric("skipped", "float32", "train/skipped_nonfinite"),
    Metric("fault", "int32", None, in_history=False),
    Metric("layer_grad_norms", "float32", None, shape=(SERIES,), in_history=False),
)

_registered: list[Metric] = []


def register(metric: Metric) -> Metric:
    """Adds a per-step metric computed in the step; returns it.

    Raises:
      ConfigError: for a name already in the schema, a bad dtype, a tag another metric
        uses, or a metric without ``compute``.
    """
    if not isinstance(metric, Metric):
        raise ConfigError(f"metric must be a lstmcore.schema.Metric; got {metric!r}")
    if not isinstance(metric.name, str) or not metric.name.isidentifier():
        raise ConfigError(f"metric name must be a Python identifier; got {metric.name!r}")
    if metric.name in names() or metric.name in ("val_step", "val_loss"):
        raise ConfigError(f"metric {metric.name!r} is already in the schema; choose another name")
    config.choice("metric dtype", metric.dtype, DTYPES)
    if metric.tag is not None and metric.tag in {m.tag for m in metrics()}:
        raise ConfigError(f"metric tag {metric.tag!r} is already used; choose another tag")
    if not callable(metric.compute) or metric.shape != () or metric.source != "step":
        raise ConfigError(
            f"a registered metric is a scalar computed in the step: pass compute=callable, "
            f"shape=() and source='step'; got {metric!r}"
        )
    _registered.append(metric)
    return metric


def unregister(name: str) -> None:
    """Removes a metric added by :func:`register` (lstmcore's own cannot be removed)."""
    for metric in _registered:
        if metric.name == name:
            _registered.remove(metric)
            return
    raise ConfigError(f"no registered metric {name!r}; registered: {[m.name for m in _registered]}")


def metrics() -> tuple[Metric, ...]:
    """Every metric: lstmcore's own, then the registered ones, in registration order."""
    return (*BUILTIN, *_registered)


def names() -> tuple[str, ...]:
    return tuple(m.name for m in metrics())


def step_metrics() -> tuple[Metric, ...]:
    """The metrics the compiled step returns (everything but the host-computed ones)."""
    return tuple(m for m in metrics() if m.source == "step")


def step_dtypes() -> dict:
    """``{name: tf.DType}`` of the step's returned dict (the multi-step TensorArrays)."""
    import tensorflow as tf

    return {m.name: tf.as_dtype(m.dtype) for m in step_metrics()}


def history_keys() -> tuple[str, ...]:
    """The per-step scalar columns of ``History.history``."""
    return tuple(m.name for m in metrics() if m.in_history and m.shape == ())


def per_step_tags() -> tuple[tuple[str, str], ...]:
    """``(name, TensorBoard tag)`` of every per-step scalar written to TensorBoard."""
    return tuple((m.name, m.tag) for m in metrics() if m.tag is not None and m.shape == ())
