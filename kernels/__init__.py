"""Interchangeable LSTM kernels with one weight layout (imported as lstmcore.kernels).

Every kernel has the signature of `reference_lstm` (without its diagnostic arguments):

    kernel_fn(inputs, kernel, recurrent_kernel, bias, *, initial_state=None, mask=None,
              sequence_lengths=None, return_sequences=True) -> (outputs, (h, c))

with Keras's weight layout (`kernel [F, 4H]`, `recurrent_kernel [H, 4H]`, `bias [4H]`, gates
i, f, c, o) and Keras's mask semantics (states carried through masked steps; the output at a
masked step repeats the previous output, zero before the first real step).
"""

from __future__ import annotations

from collections.abc import Callable

from ._common import describe_bad_cudnn_mask, validate_cudnn_mask
from .cpu import cpu_lstm
from .cudnn import cudnn_lstm, gpu_available, to_cudnn_params
from .reference import LSTMInternals, lstm_cell, lstm_step, reference_lstm
from .xla import xla_lstm

KERNELS: dict[str, Callable] = {
    "reference": reference_lstm,
    "cudnn": cudnn_lstm,
    "xla": xla_lstm,
    "cpu": cpu_lstm,
}


def get_kernel(name: str) -> Callable:
    """Returns the kernel function registered under `name`.

    Args:
      name: one of `KERNELS` ("reference", "cudnn", "xla", "cpu").

    Returns:
      The kernel function.

    Raises:
      ValueError: for an unknown name.
    """
    if name not in KERNELS:
        raise ValueError(f"kernel must be one of {sorted(KERNELS)}; got {name!r}")
    return KERNELS[name]


def available_kernels() -> list[str]:
    """Names of the kernels that can run here ("cudnn" only when a GPU is visible)."""
    return [name for name in KERNELS if name != "cudnn" or gpu_available()]


__all__ = [
    "KERNELS",
    "LSTMInternals",
    "available_kernels",
    "cpu_lstm",
    "cudnn_lstm",
    "describe_bad_cudnn_mask",
    "get_kernel",
    "gpu_available",
    "lstm_cell",
    "lstm_step",
    "reference_lstm",
    "to_cudnn_params",
    "validate_cudnn_mask",
    "xla_lstm",
]
