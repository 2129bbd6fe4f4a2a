import importlib.util

import keras
import numpy as np
import pytest
import tensorflow as tf
from lstmcore.kernels import (
    cpu_lstm,
    cudnn_lstm,
    get_kernel,
    reference_lstm,
    validate_cudnn_mask,
)

from lstmcore import kernels

GPU = bool(tf.config.list_physical_devices("GPU"))
needs_gpu = pytest.mark.skipif(not GPU, reason="the cudnn kernel needs a GPU")

RIGHT_PADDED = "right"
ANY_PATTERN = [[0, 1, 1, 0], [1, 0, 1, 1], [0, 0, 0, 0]]


@pytest.fixture(autouse=True)
def exact_float32_matmuls():
    # Ampere and later GPUs run float32 matmuls in TF32 by default (10-bit mantissa): errors
    # of 1e-4 to 6e-4 at these shapes, above the cuDNN tolerance. The comparisons are of the
    # algorithms, so they run in true float32. No effect on a CPU.
    previous = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(False)
    yield
    tf.config.experimental.enable_tensor_float_32_execution(previous)


def make_case(time, *, batch=3, features=2, units=3, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)

    def normal(*shape, scale=0.5):
        return tf.constant((rng.normal(size=shape) * scale).astype(dtype))

    return {
        "inputs": normal(batch, time, features, scale=1.0),
        "kernel": normal(features, 4 * units),
        "recurrent_kernel": normal(units, 4 * units),
        "bias": normal(4 * units),
        "h0": normal(batch, units),
        "c0": normal(batch, units),
    }


def make_mask(pattern, time):
    if pattern == RIGHT_PADDED:
        # Lengths [3T/4, T, 1] (at T=4: [3, 4, 1]), at least one real step per row.
        lengths = [max(1, 3 * time // 4), time, 1]
        return tf.sequence_mask(lengths, maxlen=time)
    return tf.constant(np.resize(np.asarray(pattern, dtype=bool), (3, time)))


def run_with_gradients(kernel_fn, case, mask, *, return_sequences=True, compiled=False):
    names = ["inputs", "kernel", "recurrent_kernel", "bias", "h0", "c0"]

    def forward_and_backward(inputs, kernel, recurrent_kernel, bias, h0, c0):
        args = [inputs, kernel, recurrent_kernel, bias, h0, c0]
        with tf.GradientTape() as tape:
            tape.watch(args)
            outputs, (h, c) = kernel_fn(
                inputs,
                kernel,
                recurrent_kernel,
                bias,
                initial_state=(h0, c0),
                mask=mask,
                return_sequences=return_sequences,
            )
            weights = tf.cast(tf.range(1, tf.size(outputs) + 1), outputs.dtype)
            loss = (
                tf.reduce_sum(tf.reshape(outputs, [-1]) * tf.sin(weights))
                + tf.reduce_sum(h * h)
                + tf.reduce_sum(tf.cos(c))
            )
        return [outputs, h, c] + tape.gradient(loss, args)

    if compiled:
        forward_and_backward = tf.function(forward_and_backward)
    return forward_and_backward(*[case[n] for n in names])


def assert_all_close(actual, expected, atol):
    names = ["outputs", "h", "c", "d_inputs", "d_kernel", "d_recurrent", "d_bias", "dh0", "dc0"]
    for name, a, e in zip(names, actual, expected):
        np.testing.assert_allclose(a.numpy(), e.numpy(), atol=atol, rtol=0, err_msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "tf_function"])
@pytest.mark.parametrize(
    "mask_pattern", [None, RIGHT_PADDED, ANY_PATTERN], ids=["none", "right", "any"]
)
@pytest.mark.parametrize("time", [1, 4, 17])
@pytest.mark.parametrize("name", ["cpu", "xla"])
def test_kernel_matches_reference(name, time, mask_pattern, compiled):
    case = make_case(time)
    mask = None if mask_pattern is None else make_mask(mask_pattern, time)
    expected = run_with_gradients(reference_lstm, case, mask)
    actual = run_with_gradients(get_kernel(name), case, mask, compiled=compiled)
    assert_all_close(actual, expected, atol=1e-10)


@needs_gpu
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "tf_function"])
@pytest.mark.parametrize("mask_pattern", [None, RIGHT_PADDED], ids=["none", "right"])
@pytest.mark.parametrize("time", [1, 4, 17])
def test_cudnn_matches_reference(time, mask_pattern, compiled):
    case = make_case(time, dtype=np.float32)
    mask = None if mask_pattern is None else make_mask(mask_pattern, time)
    expected = run_with_gradients(reference_lstm, case, mask)
    actual = run_with_gradients(cudnn_lstm, case, mask, compiled=compiled)
    assert_all_close(actual, expected, atol=1e-4)


@pytest.mark.parametrize("name", ["reference", "cpu", "xla"])
def test_last_output_is_last_step_of_sequence(name):
    case = make_case(4)
    mask = make_mask(ANY_PATTERN, 4)
    sequence = run_with_gradients(get_kernel(name), case, mask)
    last = run_with_gradients(get_kernel(name), case, mask, return_sequences=False)
    np.testing.assert_allclose(last[0].numpy(), sequence[0][:, -1].numpy(), atol=1e-12)
    np.testing.assert_allclose(last[1].numpy(), sequence[1].numpy(), atol=1e-12)
    np.testing.assert_allclose(last[2].numpy(), sequence[2].numpy(), atol=1e-12)


@pytest.mark.parametrize("name", ["reference", "cpu", "xla"])
def test_zero_weights_give_hand_computed_states(name):
    # All gates are sigmoid(0) = 1/2 and the candidate tanh(0) = 0: c halves each step.
    inputs = tf.ones([1, 2, 1], tf.float64)
    kernel = tf.zeros([1, 4], tf.float64)
    recurrent_kernel = tf.zeros([1, 4], tf.float64)
    state = (tf.zeros([1, 1], tf.float64), tf.ones([1, 1], tf.float64))
    outputs, (h, c) = get_kernel(name)(inputs, kernel, recurrent_kernel, None, initial_state=state)
    np.testing.assert_allclose(c.numpy(), [[0.25]])
    np.testing.assert_allclose(h.numpy(), [[0.5 * np.tanh(0.25)]])
    np.testing.assert_allclose(outputs.numpy()[0, :, 0], [0.5 * np.tanh(0.5), 0.5 * np.tanh(0.25)])


@pytest.mark.parametrize("name", ["reference", "cpu", "xla"])
def test_masked_steps_carry_state_and_repeat_output(name):
    case = make_case(4)
    mask = tf.constant([[False, True, False, True]] * 3)
    outputs, (h, _) = get_kernel(name)(
        case["inputs"], case["kernel"], case["recurrent_kernel"], case["bias"], mask=mask
    )
    outputs = outputs.numpy()
    np.testing.assert_array_equal(outputs[:, 0], 0.0)
    np.testing.assert_array_equal(outputs[:, 2], outputs[:, 1])
    np.testing.assert_allclose(h.numpy(), outputs[:, 3])


@pytest.mark.parametrize("name", ["reference", "cpu", "xla"])
def test_empty_row_keeps_initial_state(name):
    case = make_case(3)
    mask = tf.constant([[True, True, True], [False, False, False], [True, False, False]])
    outputs, (h, c) = get_kernel(name)(
        case["inputs"],
        case["kernel"],
        case["recurrent_kernel"],
        case["bias"],
        initial_state=(case["h0"], case["c0"]),
        mask=mask,
    )
    np.testing.assert_array_equal(h.numpy()[1], case["h0"].numpy()[1])
    np.testing.assert_array_equal(c.numpy()[1], case["c0"].numpy()[1])
    np.testing.assert_array_equal(outputs.numpy()[1], 0.0)


@pytest.mark.parametrize("name", ["reference", "cpu", "xla"])
def test_sequence_lengths_equal_right_padded_mask(name):
    case = make_case(4)
    args = (case["inputs"], case["kernel"], case["recurrent_kernel"], case["bias"])
    with_mask = get_kernel(name)(*args, mask=make_mask(RIGHT_PADDED, 4))
    with_lengths = get_kernel(name)(*args, sequence_lengths=tf.constant([3, 4, 1]))
    for a, e in zip(tf.nest.flatten(with_lengths), tf.nest.flatten(with_mask)):
        np.testing.assert_array_equal(a.numpy(), e.numpy())


@pytest.mark.parametrize("masked", [False, True])
def test_reference_matches_keras_lstm(masked):
    case = make_case(5, dtype=np.float32)
    mask = make_mask(RIGHT_PADDED, 5) if masked else None
    # Keras's generic kernel is the reference for masked steps; its cuDNN path (on a GPU) writes
    # zeros there instead of repeating the last output.
    layer = keras.layers.LSTM(3, return_sequences=True, return_state=True, use_cudnn=False)
    layer.build((3, 5, 2))
    layer.set_weights([case[n].numpy() for n in ("kernel", "recurrent_kernel", "bias")])
    expected = layer(case["inputs"], initial_state=[case["h0"], case["c0"]], mask=mask)
    outputs, (h, c) = reference_lstm(
        case["inputs"],
        case["kernel"],
        case["recurrent_kernel"],
        case["bias"],
        initial_state=(case["h0"], case["c0"]),
        mask=mask,
    )
    for actual, wanted in zip([outputs, h, c], expected):
        np.testing.assert_allclose(actual.numpy(), np.asarray(wanted), atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("name", ["reference", "cpu"])
def test_gradient_matches_numerical_gradient(name, masked):
    case = make_case(3, batch=2, units=2, seed=1)
    mask = tf.constant([[True, False, True], [True, True, False]]) if masked else None
    kernel_fn = get_kernel(name)

    def loss(inputs, kernel, recurrent_kernel, bias, h0, c0):
        outputs, (h, c) = kernel_fn(
            inputs, kernel, recurrent_kernel, bias, initial_state=(h0, c0), mask=mask
        )
        step_weights = tf.constant([[[1.0], [2.0], [3.0]]], tf.float64)
        return tf.reduce_sum(outputs * step_weights) + tf.reduce_sum(c * h)

    args = [case[n] for n in ["inputs", "kernel", "recurrent_kernel", "bias", "h0", "c0"]]
    theoretical, numerical = tf.test.compute_gradient(loss, args, delta=1e-6)
    for t, n in zip(theoretical, numerical):
        np.testing.assert_allclose(t, n, atol=1e-7)


def test_probe_gradients_equal_finite_differences():
    case = make_case(3, batch=1, features=1, units=2, seed=2)
    args = (case["inputs"], case["kernel"], case["recurrent_kernel"], case["bias"])
    readout = tf.constant([[[1.0, -2.0], [0.5, 1.5], [-1.0, 3.0]]], tf.float64)

    def loss(h_probe, c_probe):
        outputs, _ = reference_lstm(*args, h_probe=h_probe, c_probe=c_probe)
        return tf.reduce_sum(outputs * readout)

    zeros = tf.zeros([1, 3, 2], tf.float64)
    with tf.GradientTape() as tape:
        tape.watch([zeros])
        h_probe, c_probe = tf.identity(zeros), tf.identity(zeros)
        tape.watch([h_probe, c_probe])
        value = loss(h_probe, c_probe)
    d_h, d_c = tape.gradient(value, [h_probe, c_probe])
    eps = 1e-6
    for probe_index, analytic in ((0, d_h), (1, d_c)):
        numeric = np.zeros([1, 3, 2])
        for t in range(3):
            for k in range(2):
                bump = np.zeros([1, 3, 2])
                bump[0, t, k] = eps
                probes_up = [zeros, zeros]
                probes_down = [zeros, zeros]
                probes_up[probe_index] = zeros + bump
                probes_down[probe_index] = zeros - bump
                numeric[0, t, k] = (loss(*probes_up) - loss(*probes_down)).numpy() / (2 * eps)
        np.testing.assert_allclose(analytic.numpy(), numeric, atol=1e-8)
    # The last step's h gradient is the readout itself: d loss / d h_T = readout[:, -1].
    np.testing.assert_allclose(d_h.numpy()[0, -1], [-1.0, 3.0])


def test_reference_internals_satisfy_the_cell_equations():
    case = make_case(4)
    outputs, _, internals = reference_lstm(
        case["inputs"],
        case["kernel"],
        case["recurrent_kernel"],
        case["bias"],
        initial_state=(case["h0"], case["c0"]),
        return_internals=True,
    )
    i, f, o, g = (
        internals.input_gate.numpy(),
        internals.forget_gate.numpy(),
        internals.output_gate.numpy(),
        internals.candidate.numpy(),
    )
    cells = internals.cell.numpy()
    c_prev = np.concatenate([case["c0"].numpy()[:, None], cells[:, :-1]], axis=1)
    np.testing.assert_allclose(cells, f * c_prev + i * g, atol=1e-12)
    np.testing.assert_allclose(internals.hidden.numpy(), o * np.tanh(cells), atol=1e-12)
    np.testing.assert_allclose(internals.hidden.numpy(), outputs.numpy(), atol=1e-12)
    assert internals.input_gate.shape == (3, 4, 3)


def test_validate_cudnn_mask_accepts_right_padding():
    validate_cudnn_mask(np.array([[True, True, False], [True, True, True]]))


@pytest.mark.parametrize("time", [1, 4, 17])
def test_right_padded_test_masks_are_what_cudnn_takes(time):
    mask = make_mask(RIGHT_PADDED, time).numpy()
    validate_cudnn_mask(mask)
    assert mask.sum(axis=1).tolist() == [max(1, 3 * time // 4), time, 1]


@pytest.mark.parametrize(
    "mask, fragment",
    [
        ([[True, True, True], [False, True, True]], "row 1 is not right-padded"),
        ([[True, False, True]], "row 0 is not right-padded"),
        ([[True, True, False], [False, False, False]], "row 1 is all False"),
    ],
)
def test_validate_cudnn_mask_rejects_what_cudnn_cannot_take(mask, fragment):
    with pytest.raises(ValueError, match=fragment):
        validate_cudnn_mask(np.array(mask))


@pytest.mark.skipif(GPU, reason="checks the error raised without a GPU")
def test_cudnn_without_gpu_raises_clear_error():
    case = make_case(2, dtype=np.float32)
    with pytest.raises(RuntimeError, match="needs a GPU"):
        cudnn_lstm(case["inputs"], case["kernel"], case["recurrent_kernel"], case["bias"])


@needs_gpu
def test_cudnn_kernel_matches_keras_cudnn_path_at_real_steps():
    case = make_case(5, dtype=np.float32)
    mask = make_mask(RIGHT_PADDED, 5)
    layer = keras.layers.LSTM(3, return_sequences=True, return_state=True, use_cudnn=True)
    layer.build((3, 5, 2))
    layer.set_weights([case[n].numpy() for n in ("kernel", "recurrent_kernel", "bias")])
    expected = [np.asarray(t) for t in layer(case["inputs"], mask=mask)]
    outputs, (h, c) = cudnn_lstm(
        case["inputs"], case["kernel"], case["recurrent_kernel"], case["bias"], mask=mask
    )
    real = mask.numpy()
    np.testing.assert_allclose(outputs.numpy()[real], expected[0][real], atol=1e-5)
    np.testing.assert_allclose(h.numpy(), expected[1], atol=1e-5)
    np.testing.assert_allclose(c.numpy(), expected[2], atol=1e-5)
    # Keras's cuDNN path writes zeros at padded steps; lstmcore repeats the last output there.
    np.testing.assert_array_equal(expected[0][~real], 0.0)


@needs_gpu
def test_cudnn_rejects_left_padded_mask():
    case = make_case(3, dtype=np.float32)
    mask = tf.constant([[False, True, True]] * 3)
    with pytest.raises(ValueError, match="right-padded"):
        cudnn_lstm(
            case["inputs"], case["kernel"], case["recurrent_kernel"], case["bias"], mask=mask
        )


@pytest.mark.parametrize("name", sorted(kernels.KERNELS))
def test_rank_two_inputs_raise_value_error_naming_shape(name):
    case = make_case(2)
    with pytest.raises(ValueError) as error:
        get_kernel(name)(tf.zeros([32, 10]), case["kernel"], case["recurrent_kernel"], case["bias"])
    assert str(error.value) == "inputs must be 3-D [batch, time, features]; got shape (32, 10)"


@pytest.mark.parametrize("name", sorted(kernels.KERNELS))
def test_feature_mismatch_raises_value_error_naming_both_shapes(name):
    case = make_case(2)
    with pytest.raises(ValueError, match=r"kernel must have shape \[5, 4 \* units\].*\(2, 12\)"):
        get_kernel(name)(
            tf.zeros([3, 2, 5], tf.float64), case["kernel"], case["recurrent_kernel"], case["bias"]
        )


def test_recurrent_kernel_shape_mismatch_raises_value_error():
    case = make_case(2)
    with pytest.raises(ValueError, match=r"recurrent_kernel must have shape \[3, 12\].*\(2, 12\)"):
        cpu_lstm(case["inputs"], case["kernel"], tf.zeros([2, 12], tf.float64), case["bias"])


def test_unknown_kernel_name_raises_value_error():
    with pytest.raises(ValueError, match=r"kernel must be one of .*'cpu'.*got 'fast'"):
        get_kernel("fast")


def test_available_kernels_lists_cudnn_only_with_gpu():
    names = kernels.available_kernels()
    assert {"reference", "cpu", "xla"} <= set(names)
    assert ("cudnn" in names) == GPU


@pytest.mark.slow
def test_cpu_benchmark_smoke_runs():
    from benchmarks import cpu_kernel

    rows = cpu_kernel.main(["--smoke"])
    names = {row["name"] for row in rows}
    assert {"keras", "lstmcore-cpu", "lstmcore-xla"} <= names
    assert ("pytorch" in names) == (importlib.util.find_spec("torch") is not None)


def test_cudnn_params_are_packed_as_keras_packs_them():
    # Keras's own packing (keras/src/backend/tensorflow/rnn.py, `_cudnn_lstm`), rebuilt from
    # its helper, against lstmcore's: the flat buffer must be identical, element for element.
    rnn = pytest.importorskip("keras.src.backend.tensorflow.rnn")
    if not hasattr(rnn, "_standardize_cudnn_weights"):
        pytest.skip("this Keras has no _standardize_cudnn_weights to compare with")
    if tf.sysconfig.get_build_info().get("is_rocm_build", False):
        pytest.skip("ROCm reorders the gates before packing; the CUDA layout is checked here")
    case = make_case(2, features=3, units=2, dtype=np.float32)
    kernel, recurrent_kernel, bias = case["kernel"], case["recurrent_kernel"], case["bias"]
    weights = tf.split(kernel, 4, axis=1) + tf.split(recurrent_kernel, 4, axis=1)
    full_bias = tf.concat((tf.zeros_like(bias), bias), 0)
    expected = rnn._standardize_cudnn_weights(
        weights=weights,
        biases=tf.split(full_bias, 8),
        shape=tf.constant([-1]),
        transpose_weights=True,
    )
    actual = kernels.to_cudnn_params(kernel, recurrent_kernel, bias)
    assert actual.shape == (4 * 2 * (3 + 2) + 8 * 2,)
    np.testing.assert_array_equal(actual.numpy(), expected.numpy())
