"""The cuDNN path's graphs, checked on a CPU.

Tracing builds a graph without running it, so with the GPU check patched to say "yes" the
layer, the whole lstmcore training step and Keras's compiled step can be traced with the
cuDNN kernel on any machine; only executing those graphs needs a GPU (see
`benchmarks/gpu_check.py`).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from lstmcore import kernels
from lstmcore.kernel_report import (
    cudnn_under_xla,
    traced_op_types,
    traces_cudnn,
    xla_compiled_functions,
)
from lstmcore.layers import LSTM

GPU = bool(tf.config.list_physical_devices("GPU"))
pytestmark = pytest.mark.skipif(GPU, reason="patches the GPU check; on a GPU the real tests run")

FAKE_GPU = tf.config.PhysicalDevice(name="/physical_device:GPU:0", device_type="GPU")


@pytest.fixture
def fake_gpu(monkeypatch):
    # The layer's kernel choice and the cudnn kernel's own guard both ask lstmcore.kernels;
    # Keras's jit_compile="auto" asks tf.config.list_physical_devices.
    monkeypatch.setattr(kernels, "gpu_available", lambda: True)
    monkeypatch.setattr(kernels.cudnn, "gpu_available", lambda: True)
    real = tf.config.list_physical_devices

    def with_gpu(device_type=None):
        if device_type in (None, "GPU"):
            return [d for d in real(device_type) if d.device_type != "GPU"] + [FAKE_GPU]
        return real(device_type)

    monkeypatch.setattr(tf.config, "list_physical_devices", with_gpu)


def node_attrs(function, op_type, *args):
    graph_def = function.get_concrete_function(*args).graph.as_graph_def()
    nodes = list(graph_def.node)
    for library_function in graph_def.library.function:
        nodes += list(library_function.node_def)
    return [node.attr for node in nodes if node.op == op_type]


def forward_and_backward(layer):
    @tf.function
    def run(inputs, mask):
        with tf.GradientTape() as tape:
            outputs = layer(inputs, mask=mask)
            loss = tf.reduce_sum(tf.cast(outputs, tf.float32))
        return outputs, tape.gradient(loss, layer.trainable_variables)

    return run


INPUTS = tf.TensorSpec([None, 6, 3], tf.float32)
MASK = tf.TensorSpec([None, 6], tf.bool)


def small_model(layer):
    return keras.Sequential([keras.Input((6, 3)), layer, keras.layers.Dense(1)])


def test_auto_layer_traces_cudnn_forward_and_backward_without_xla(fake_gpu):
    layer = LSTM(4)
    assert layer.kernel_name == "cudnn"
    run = forward_and_backward(layer)
    ops = traced_op_types(run, INPUTS, None)
    assert {"CudnnRNNV3", "CudnnRNNBackpropV3"} <= ops
    assert xla_compiled_functions(run, INPUTS, None) == []


def test_cpu_kernel_traces_no_cudnn_op(fake_gpu):
    run = forward_and_backward(LSTM(4, kernel="cpu"))
    assert not traces_cudnn(run, INPUTS, None)
    # The cpu kernel's own loops are XLA-compiled: the check does see compiled functions.
    assert xla_compiled_functions(run, INPUTS, None)


def test_mask_reaches_cudnn_as_lengths_behind_a_right_padding_check(fake_gpu):
    run = forward_and_backward(LSTM(4, kernel="cudnn", return_sequences=True))
    ops = traced_op_types(run, INPUTS, MASK)
    assert {"CudnnRNNV3", "CudnnRNNBackpropV3", "Assert"} <= ops
    (attrs,) = node_attrs(run, "CudnnRNNV3", INPUTS, MASK)
    assert attrs["rnn_mode"].s == b"lstm" and not attrs["time_major"].b


@pytest.mark.slow
def test_go_backwards_with_mask_reverses_real_steps_for_cudnn(fake_gpu):
    run = forward_and_backward(LSTM(4, go_backwards=True, return_sequences=True))
    ops = traced_op_types(run, INPUTS, MASK)
    assert {"CudnnRNNV3", "ReverseSequence"} <= ops
    # Without a mask a plain reversal is right, and no sequence lengths are needed.
    assert "ReverseSequence" not in traced_op_types(run, INPUTS, None)


def test_mixed_precision_runs_cudnn_in_float16_with_float32_variables(fake_gpu):
    layer = LSTM(4, dtype="mixed_float16")
    run = forward_and_backward(layer)
    (attrs,) = node_attrs(run, "CudnnRNNV3", INPUTS, None)
    assert attrs["T"].type == tf.float16.as_datatype_enum
    assert [v.dtype for v in layer.trainable_variables] == ["float32"] * 3
    assert run.get_concrete_function(INPUTS, None).structured_outputs[0].dtype == tf.float16


def test_cudnn_layer_turns_off_keras_auto_jit_compile(fake_gpu):
    cudnn_model = small_model(LSTM(4))
    cudnn_model.compile("adam", "mse")
    assert cudnn_model.jit_compile is False
    # The same model on the cpu kernel is compiled by XLA on a GPU machine, as Keras would.
    cpu_model = small_model(LSTM(4, kernel="cpu"))
    cpu_model.compile("adam", "mse")
    assert cpu_model.jit_compile is True


def test_keras_train_step_with_cudnn_layer_traces_cudnn_outside_xla(fake_gpu):
    model = small_model(LSTM(4))
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    model.optimizer.build(model.trainable_variables)
    # As Keras's one_step_on_data: the train step under the model's jit_compile.
    step = tf.function(model.train_step, jit_compile=model.jit_compile)
    batch = (INPUTS, tf.TensorSpec([None, 1], tf.float32))
    assert {"CudnnRNNV3", "CudnnRNNBackpropV3"} <= traced_op_types(step, batch)
    assert xla_compiled_functions(step, batch) == []


def test_cudnn_under_xla_finds_a_cudnn_op_inside_a_compiled_function(fake_gpu):
    # What the first GPU run would have failed on before supports_jit was set: Keras compiling
    # the whole step, cuDNN included.
    layer = LSTM(4)
    layer.build((None, 6, 3))
    compiled = tf.function(lambda inputs: layer(inputs), jit_compile=True)

    @tf.function
    def outer(inputs):
        return compiled(inputs) + 1.0

    assert cudnn_under_xla(outer, INPUTS)
    assert cudnn_under_xla(forward_and_backward(layer), INPUTS, None) == []


@pytest.mark.parametrize("steps_per_call", [1, 4])
def test_lstmcore_train_step_traces_cudnn_outside_xla(fake_gpu, steps_per_call):
    from lstmcore.step import make_multi_step, make_train_step

    model = small_model(LSTM(4))
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
    step, _ = make_train_step(
        model,
        optimizer,
        keras.losses.get("mse"),
        clip="global_norm",
        clip_norm=1.0,
        clip_groups=None,
    )
    data = (np.zeros((8, 6, 3), np.float32), np.zeros((8, 1), np.float32))
    iterator = iter(tf.data.Dataset.from_tensors(data).repeat())
    if steps_per_call == 1:
        function, args = step, (iterator,)
    else:
        function, args = make_multi_step(step), (iterator, tf.constant(steps_per_call))
    assert {"CudnnRNNV3", "CudnnRNNBackpropV3"} <= traced_op_types(function, *args)
    # lstmcore's step compiles a small finiteness check with XLA; never the cuDNN op.
    assert cudnn_under_xla(function, *args) == []


def test_throughput_gpu_check_reads_cudnn_from_the_step_graph(fake_gpu, monkeypatch):
    from benchmarks import common, throughput

    monkeypatch.setattr(common, "gpu_visible", lambda: True)
    problem = {"batch": 4, "time": 5, "input": 3, "hidden": 8, "origin": "test"}
    by_name = {impl.name: impl for impl in throughput.IMPLEMENTATIONS}
    _, kernel = throughput.build_step(by_name["lstmcore_step(x8)+lstmcore.LSTM"], problem)
    assert kernel == "cudnn"
    # A layer that asks for cuDNN but runs another kernel is caught from the graph.
    monkeypatch.setattr(kernels, "gpu_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CudnnRNNV3 op"):
        throughput.build_step(by_name["bare_step+lstmcore.LSTM"], problem)


def test_auto_layer_runs_masks_cudnn_cannot_take_on_the_reference_kernel(fake_gpu):
    inputs = np.random.default_rng(0).normal(size=(3, 6, 3)).astype(np.float32)
    left_padded = np.array([[0, 0, 1, 1, 1, 1], [1] * 6, [0, 1, 0, 1, 1, 0]], bool)
    auto = LSTM(4, return_sequences=True, name="encoder")
    reference = LSTM(4, kernel="reference", return_sequences=True)
    auto.build((None, 6, 3))
    reference.build((None, 6, 3))
    reference.set_weights(auto.get_weights())
    assert auto.kernel_report().endswith(
        "masks cuDNN cannot take (not right-padded, or an empty row) run on the 'reference' kernel"
    )
    # Eagerly, tf.cond runs only the branch taken: the reference kernel, which a CPU executes.
    np.testing.assert_allclose(
        np.asarray(auto(inputs, mask=left_padded)),
        np.asarray(reference(inputs, mask=left_padded)),
    )
    # In a graph both branches are there, with their gradients, and no XLA around cuDNN.
    run = forward_and_backward(auto)
    ops = traced_op_types(run, INPUTS, MASK)
    assert {"CudnnRNNV3", "CudnnRNNBackpropV3"} <= ops and ops & {"If", "StatelessIf"}
    assert cudnn_under_xla(run, INPUTS, MASK) == []


def test_explicit_cudnn_requests_keep_cudnn_errors_for_bad_masks(fake_gpu):
    inputs = np.zeros((1, 6, 3), np.float32)
    left_padded = np.array([[0, 0, 1, 1, 1, 1]], bool)
    for layer in (LSTM(4, kernel="cudnn"), LSTM(4, use_cudnn=True)):
        assert "masks cuDNN cannot take" not in layer.kernel_report()
        with pytest.raises(ValueError, match="right-padded"):
            layer(inputs, mask=left_padded)


def test_cudnn_request_moves_to_a_kernel_that_honours_each_option(fake_gpu):
    unrolled = LSTM(3, kernel="cudnn", unroll=True)
    assert unrolled.kernel_name == "keras" and "unroll=True" in unrolled.kernel_report()
    assert unrolled.supports_jit
    dropped = LSTM(3, kernel="cudnn", recurrent_dropout=0.2)
    assert dropped.kernel_name == "cudnn" and not dropped.supports_jit
    assert "training calls run Keras's generic loop (recurrent_dropout=0.2" in (
        dropped.kernel_report()
    )
