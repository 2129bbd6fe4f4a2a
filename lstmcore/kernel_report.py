"""Says, per recurrent layer of a model, whether its kernel is cuDNN's and, if not, why not.

Keras's LSTM and GRU take the cuDNN path only when a GPU is visible and the layer's
configuration allows it (``keras/src/layers/rnn/lstm.py``, ``backend/tensorflow/rnn.py``);
otherwise they silently fall back to a generic kernel that is many times slower. This module
repeats Keras's decision so the user sees it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras
import tensorflow as tf


@dataclass
class LayerKernel:
    layer: str
    layer_class: str
    uses_cudnn: bool
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def _is(function, *candidates) -> bool:
    return any(function is c for c in candidates)


def _keras_reasons(layer) -> list[str]:
    cell = layer.cell
    reasons = []
    if layer.use_cudnn is False:
        reasons.append("use_cudnn=False")
    if getattr(cell, "recurrent_dropout", 0):
        reasons.append(f"recurrent_dropout={cell.recurrent_dropout} (cuDNN has none)")
    if not _is(cell.activation, keras.activations.tanh, tf.tanh, keras.ops.tanh):
        reasons.append(
            f"activation={getattr(cell.activation, '__name__', cell.activation)} (needs tanh)"
        )
    if not _is(cell.recurrent_activation, keras.activations.sigmoid, tf.sigmoid, keras.ops.sigmoid):
        reasons.append(
            "recurrent_activation="
            f"{getattr(cell.recurrent_activation, '__name__', cell.recurrent_activation)} (needs sigmoid)"
        )
    if layer.unroll:
        reasons.append("unroll=True")
    if not cell.use_bias:
        reasons.append("use_bias=False")
    if isinstance(layer, keras.layers.GRU) and not cell.reset_after:
        reasons.append("reset_after=False")
    return reasons


def cudnn_report(model) -> list[LayerKernel]:
    """Returns one :class:`LayerKernel` per recurrent layer of ``model``.

    Args:
      model: a Keras model.

    Returns:
      The layers' reports, in model order; empty when the model has no recurrent layer.
    """
    gpu = bool(tf.config.list_logical_devices("GPU"))
    reports = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if hasattr(layer, "kernel_report") and callable(layer.kernel_report):
            text = layer.kernel_report()
            uses = "cudnn" in str(getattr(layer, "kernel_name", "")).lower()
            reports.append(LayerKernel(layer.name, type(layer).__name__, uses, text))
        elif isinstance(layer, (keras.layers.LSTM, keras.layers.GRU)):
            reasons = _keras_reasons(layer)
            if not gpu:
                reasons.append("no GPU is visible to TensorFlow")
            uses = not reasons
            reason = "cuDNN kernel" if uses else "generic kernel: " + "; ".join(reasons)
            reports.append(LayerKernel(layer.name, type(layer).__name__, uses, reason))
        elif isinstance(layer, keras.layers.RNN):
            reports.append(
                LayerKernel(
                    layer.name,
                    type(layer).__name__,
                    False,
                    "generic kernel: a keras.layers.RNN over a cell has no cuDNN path",
                )
            )
    return reports
