"""Keras's own LSTM and Bidirectional tests, run against lstmcore.layers.LSTM on each kernel.

The test files ship inside the installed keras package (`keras/src/layers/rnn/lstm_test.py`,
`bidirectional_test.py`). Each is imported once per kernel with `layers.LSTM` swapped for
lstmcore's layer on that kernel and nothing else changed; its test classes are then collected
here. Tests that build no LSTM (SimpleRNN and GRU ones) are skipped as such. The default
kernel (`auto`: cuDNN with a GPU, `cpu` without) runs in the fast tier; the others are slow.
"""

import importlib.util
import inspect
import os
import types
import unittest

import keras
import pytest

from lstmcore import kernels
from lstmcore.layers import LSTM

KERAS_TEST_DIR = os.path.join(os.path.dirname(keras.__file__), "src", "layers", "rnn")
KERAS_TEST_FILES = ("lstm_test.py", "bidirectional_test.py")
KERNEL_NAMES = ["auto", "reference", "cpu", "xla"] + (["cudnn"] if kernels.gpu_available() else [])


def lstm_on(kernel: str) -> type:
    """`lstmcore.layers.LSTM` with `kernel` as its default, registered so configs round-trip."""

    def __init__(self, *args, kernel=kernel, **kwargs):
        if kernel == "cudnn" and kwargs.get("use_cudnn") is False:
            kernel = "auto"  # the test asks for Keras's non-cuDNN path: the layer's own choice
        LSTM.__init__(self, *args, kernel=kernel, **kwargs)

    cls = type(f"LSTM_{kernel}", (LSTM,), {"__init__": __init__})
    return keras.saving.register_keras_serializable(package="lstmcore_conformance")(cls)


def load_with_lstm(path: str, kernel: str) -> types.ModuleType:
    name = f"lstmcore_conformance_{kernel}_{os.path.basename(path)[:-3]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # The tests read `layers.X` from their module's globals when they run: a namespace that is
    # keras.src.layers with LSTM replaced is the only change.
    real_layers = module.layers
    namespace = types.SimpleNamespace(
        **{
            name: getattr(real_layers, name)
            for name in dir(real_layers)
            if not name.startswith("__")
        }
    )
    namespace.LSTM = lstm_on(kernel)
    module.layers = namespace
    return module


def builds_lstm(method) -> bool:
    try:
        return "LSTM" in inspect.getsource(inspect.unwrap(method))
    except (OSError, TypeError):
        return True  # cannot tell: run it


def conformance_classes():
    missing = [f for f in KERAS_TEST_FILES if not os.path.exists(os.path.join(KERAS_TEST_DIR, f))]
    if missing:
        return {}, (
            f"keras {keras.__version__} does not ship {', '.join(missing)} under "
            f"{KERAS_TEST_DIR}; the conformance test reads Keras's own tests from there"
        )
    classes = {}
    for kernel in KERNEL_NAMES:
        for filename in KERAS_TEST_FILES:
            module = load_with_lstm(os.path.join(KERAS_TEST_DIR, filename), kernel)
            MODULES[kernel, filename] = module
            for case_name, case in vars(module).items():
                if not (isinstance(case, type) and issubclass(case, unittest.TestCase)):
                    continue
                if case.__module__ != module.__name__:
                    continue
                attributes = {}
                for method_name in dir(case):
                    method = getattr(case, method_name)
                    if method_name.startswith("test") and not builds_lstm(method):
                        attributes[method_name] = unittest.skip("builds no LSTM")(method)
                name = f"{case_name}_{filename[:-8]}_{kernel}"
                derived = type(name, (case,), attributes)
                if kernel not in ("auto", "cudnn"):
                    derived = pytest.mark.slow(derived)
                classes[name] = derived
    return classes, None


MODULES = {}
CLASSES, SKIP_REASON = conformance_classes()
globals().update(CLASSES)


@pytest.mark.skipif(SKIP_REASON is None, reason="Keras's test files are where expected")
def test_keras_test_files_are_where_conformance_reads_them():
    pytest.skip(SKIP_REASON)


def test_every_kernel_has_keras_lstm_and_bidirectional_tests():
    if SKIP_REASON:
        pytest.skip(SKIP_REASON)
    for kernel in KERNEL_NAMES:
        names = [n for n in CLASSES if n.endswith(f"_{kernel}")]
        assert any(n.startswith("LSTMTest_lstm") for n in names), names
        assert any("_bidirectional_" in n for n in names), names
        expected = ("cudnn" if kernels.gpu_available() else "cpu") if kernel == "auto" else kernel
        for filename in KERAS_TEST_FILES:
            substitute = MODULES[kernel, filename].layers.LSTM
            assert issubclass(substitute, LSTM) and substitute(2).kernel_name == expected
