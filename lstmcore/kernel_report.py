"""Says, per recurrent layer of a model, whether its kernel is cuDNN's and, if not, why not.

Keras's LSTM and GRU take the cuDNN path only when a GPU is visible and the layer's
configuration allows it (``keras/src/layers/rnn/lstm.py``, ``backend/tensorflow/rnn.py``);
otherwise they silently fall back to a generic kernel that is many times slower. This module
repeats Keras's decision so the user sees it (:func:`cudnn_report`), and reads what a compiled
function will really run from its graph (:func:`traced_op_types`, :func:`traces_cudnn`,
:func:`xla_compiled_functions`), which needs no GPU: tracing builds the graph, only executing
it needs the device.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras
import tensorflow as tf

from lstmcore import _keras_compat


@dataclass
class LayerKernel:
    layer: str
    layer_class: str
    uses_cudnn: bool
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def cudnn_report(model) -> list[LayerKernel]:
    """Returns one :class:`LayerKernel` per recurrent layer of ``model``.

    Args:
      model: a Keras model.

    Returns:
      The layers' reports, in model order; empty when the model has no recurrent layer.
    """
    gpu = bool(tf.config.list_logical_devices("GPU"))
    reports = []
    for layer in _keras_compat.flatten_layers(model):
        if hasattr(layer, "kernel_report") and callable(layer.kernel_report):
            text = layer.kernel_report()
            uses = "cudnn" in str(getattr(layer, "kernel_name", "")).lower()
            reports.append(LayerKernel(layer.name, type(layer).__name__, uses, text))
        elif isinstance(layer, (keras.layers.LSTM, keras.layers.GRU)):
            reasons = _keras_compat.keras_cudnn_blockers(layer)
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


CUDNN_RNN_OPS = frozenset({"CudnnRNN", "CudnnRNNV2", "CudnnRNNV3"})


def _graph_def(function, *args, **kwargs):
    concrete = function
    if not hasattr(function, "graph"):
        concrete = function.get_concrete_function(*args, **kwargs)
    return concrete.graph.as_graph_def()


def traced_op_types(function, *args, **kwargs) -> set[str]:
    """The op types of a traced function's graph, including every function it calls.

    A multi-step loop, a `tf.cond` or a nested `tf.function` keeps its body in the graph's
    function library, not in the top-level nodes; both are read.

    Args:
      function: a `tf.function` (traced with `args`/`kwargs`, reusing an existing trace when
        the signature matches) or a concrete function.
      *args, **kwargs: example arguments for the trace.

    Returns:
      The set of op type names, e.g. `{"CudnnRNNV3", "MatMul", ...}`.
    """
    graph_def = _graph_def(function, *args, **kwargs)
    ops = {node.op for node in graph_def.node}
    for library_function in graph_def.library.function:
        ops.update(node.op for node in library_function.node_def)
    return ops


def traces_cudnn(function, *args, **kwargs) -> bool:
    """True when the traced function runs a cuDNN RNN op (what ran, not what was asked for)."""
    return bool(CUDNN_RNN_OPS & traced_op_types(function, *args, **kwargs))


def _called_functions(node) -> set[str]:
    # A call is an op named after a library function, or a function-valued attribute
    # (PartitionedCall's `f`, If's and While's branches and bodies).
    called = {node.op}
    for value in node.attr.values():
        if value.func.name:
            called.add(value.func.name)
        called.update(f.name for f in value.list.func)
    return called


def _must_compile(attrs) -> bool:
    return "_XlaMustCompile" in attrs and attrs["_XlaMustCompile"].b


def xla_compiled_functions(function, *args, **kwargs) -> list[str]:
    """Names of the library functions of a traced graph that XLA will compile.

    `tf.function(jit_compile=True)` marks its function (and the node calling it) with
    `_XlaMustCompile`.

    Args:
      function, *args, **kwargs: as for :func:`traced_op_types`.

    Returns:
      The compiled functions' names, sorted; empty when nothing is compiled.
    """
    graph_def = _graph_def(function, *args, **kwargs)
    library = {f.signature.name: f for f in graph_def.library.function}
    marked = {name for name, f in library.items() if _must_compile(f.attr)}
    nodes = list(graph_def.node) + [n for f in library.values() for n in f.node_def]
    for node in nodes:
        if _must_compile(node.attr):
            marked.update(name for name in _called_functions(node) if name in library)
    return sorted(marked)


def cudnn_under_xla(function, *args, **kwargs) -> list[str]:
    """The XLA-compiled functions of a traced graph from which a cuDNN RNN op is reachable.

    cuDNN's ops cannot be compiled by XLA; a non-empty answer is a graph that fails to compile
    on a GPU. Other compiled functions (a fused finiteness check, say) are fine.

    Args:
      function, *args, **kwargs: as for :func:`traced_op_types`.

    Returns:
      The offending compiled functions' names, sorted; empty when cuDNN runs outside XLA.
    """
    graph_def = _graph_def(function, *args, **kwargs)
    library = {f.signature.name: f for f in graph_def.library.function}
    calls = {
        name: set().union(*(_called_functions(n) for n in f.node_def)) & set(library)
        for name, f in library.items()
    }
    holds_cudnn = {
        name for name, f in library.items() if any(n.op in CUDNN_RNN_OPS for n in f.node_def)
    }

    def reaches_cudnn(name, seen) -> bool:
        if name in holds_cudnn:
            return True
        seen.add(name)
        return any(reaches_cudnn(c, seen) for c in calls[name] - seen)

    compiled = xla_compiled_functions(function, *args, **kwargs)
    return sorted(name for name in compiled if reaches_cudnn(name, set()))
