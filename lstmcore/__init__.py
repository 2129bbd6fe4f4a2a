"""lstmcore: a training core for LSTM models on TensorFlow 2 / Keras 3."""

from lstmcore import clipping, schedules
from lstmcore.cudnn_report import cudnn_report
from lstmcore.history import History
from lstmcore.train import NonFiniteError, train

__version__ = "0.1.0"

__all__ = [
    "History",
    "NonFiniteError",
    "clipping",
    "cudnn_report",
    "schedules",
    "train",
]
