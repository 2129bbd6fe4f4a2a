"""The record of a training run that ``lstmcore.train`` returns: per-step values as NumPy arrays."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lstmcore import schema


@dataclass
class History:
    """What a run measured, one entry per optimizer step taken in this call.

    Attributes:
      history: per-step arrays, one per scalar of :mod:`lstmcore.schema` (a registered metric
        too), keyed by ``step`` (the optimizer's ``iterations`` before the
        update), ``loss``, ``grad_norm_before_clip``, ``grad_norm_after_clip``, ``clipped``
        (1.0 when clipping changed the gradients), ``learning_rate``, ``skipped`` (1.0 for a
        non-finite step that was not applied) and ``clip_fraction`` (running fraction of
        clipped steps); plus ``val_step`` and ``val_loss`` at each validation.
      layer_grad_norms: ``[steps, series]`` per-layer gradient norms before clipping.
      layer_grad_norm_tags: the TensorBoard tag of each column of ``layer_grad_norms``.
      run_dir: where the TensorBoard events and checkpoints went (None without a logdir).
      params: the run's configuration.
      kernels: per recurrent layer, whether it used cuDNN and why not.
      stopped: why training stopped before ``total_steps`` (None when it ran to the end).
      flush_times: ``[flushes, 2]``: the step reached and the seconds since the loop started
        at each fetch of per-step values (a throughput trace, tracing time included).
      probes: the probe values (:mod:`lstmcore.probes`) at each probe step: ``step [P]``,
        scalars ``[P]``, profiles over time steps ``[P, T]``, and ``seconds [P]`` (their cost).
      findings: the diagnosis (:mod:`lstmcore.diagnosis`) before and after training, as dicts
        (code, title, cause, evidence, fix, score), highest score first in each part.
      baselines: the model's loss against the naive forecasts on the held-out windows
        (:func:`lstmcore.baselines.score`): ``model``, ``persistence``, ``seasonal_naive``,
        ``mean``, ``ratios`` (model / baseline: below 1 beats it), ``split``, ``notes``.
    """

    history: dict[str, np.ndarray] = field(default_factory=dict)
    layer_grad_norms: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    layer_grad_norm_tags: list[str] = field(default_factory=list)
    run_dir: str | None = None
    params: dict = field(default_factory=dict)
    kernels: list[dict] = field(default_factory=list)
    stopped: str | None = None
    flush_times: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    probes: dict[str, np.ndarray] = field(default_factory=dict)
    findings: list[dict] = field(default_factory=list)
    baselines: dict = field(default_factory=dict)

    def __getitem__(self, key: str) -> np.ndarray:
        return self.history[key]

    @property
    def final_loss(self) -> float | None:
        losses = self.history.get("loss")
        return float(losses[-1]) if losses is not None and len(losses) else None


class HistoryBuilder:
    """Collects fetched per-step values and validation results into a :class:`History`."""

    def __init__(self, tags: list[str]):
        self._keys = schema.history_keys()
        self._columns: dict[str, list[np.ndarray]] = {key: [] for key in self._keys}
        self._layer: list[np.ndarray] = []
        self._tags = list(tags)
        self._val_steps: list[int] = []
        self._val_losses: list[float] = []
        self.clipped_steps = 0
        self.steps_seen = 0

    def add(self, values: dict[str, np.ndarray]) -> np.ndarray:
        """Adds a batch of fetched steps; returns their running clip fraction."""
        for key in self._keys:
            if key != "clip_fraction":
                self._columns[key].append(values[key])
        self._layer.append(values["layer_grad_norms"])
        clipped = values["clipped"]
        fraction = (self.clipped_steps + np.cumsum(clipped)) / (
            self.steps_seen + np.arange(1, len(clipped) + 1)
        )
        self.clipped_steps += int(clipped.sum())
        self.steps_seen += len(clipped)
        self._columns["clip_fraction"].append(fraction.astype(np.float32))
        return fraction

    def add_validation(self, step: int, loss: float) -> None:
        self._val_steps.append(step)
        self._val_losses.append(loss)

    def build(self, **fields) -> History:
        history = {
            key: (np.concatenate(parts) if parts else np.zeros((0,), np.float32))
            for key, parts in self._columns.items()
        }
        history["step"] = history["step"].astype(np.int64)
        history["val_step"] = np.asarray(self._val_steps, np.int64)
        history["val_loss"] = np.asarray(self._val_losses, np.float32)
        layer = (
            np.concatenate(self._layer)
            if self._layer
            else np.zeros((0, len(self._tags)), np.float32)
        )
        return History(
            history=history, layer_grad_norms=layer, layer_grad_norm_tags=self._tags, **fields
        )
