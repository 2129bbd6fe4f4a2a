"""lstmcore: a training core for LSTM models on TensorFlow 2 / Keras 3.

The public names load on first use, so that ``lstmcore --help`` and other commands that need
no TensorFlow start fast (and can quiet TensorFlow's logs before it is imported).
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "train": "lstmcore.loop",
    "Trainer": "lstmcore.trainer",
    "ConfigError": "lstmcore.errors",
    "DataError": "lstmcore.errors",
    "NonFiniteError": "lstmcore.faults",
    "History": "lstmcore.history",
    "cudnn_report": "lstmcore.kernel_report",
    "check_data": "lstmcore.diagnosis",
    "diagnose": "lstmcore.diagnosis",
    "format_findings": "lstmcore.diagnosis",
    "LSTM": "lstmcore.layers",
}
_MODULES = (
    "actions",
    "schema",
    "clipping",
    "schedules",
    "optimizers",
    "data",
    "layers",
    "kernels",
    "models",
    "diagnosis",
    "initializers",
    "interventions",
    "probes",
    "keras",
)

__all__ = [*_EXPORTS, *_MODULES]  # noqa: PLE0604 - the names are strings


def __getattr__(name):
    if name in _EXPORTS:
        module = importlib.import_module(_EXPORTS[name])
        value = getattr(module, name)
        globals()[name] = value
        return value
    if name in _MODULES:
        return importlib.import_module(f"lstmcore.{name}")
    raise AttributeError(f"module 'lstmcore' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
