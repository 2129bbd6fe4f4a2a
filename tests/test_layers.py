import keras
import numpy as np
import pytest
import tensorflow as tf

from lstmcore.layers import LSTM, run_kernel

GPU = bool(tf.config.list_physical_devices("GPU"))
CPU_KERNELS = ["reference", "cpu", "xla"]


@pytest.fixture(autouse=True)
def exact_float32_matmuls():
    # TF32 (the default for float32 matmuls on Ampere and later GPUs) would blur comparisons
    # between kernels by ~1e-4; no effect on a CPU.
    previous = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(False)
    yield
    tf.config.experimental.enable_tensor_float_32_execution(previous)


def data(batch=4, time=6, features=3, seed=0):
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(batch, time, features)).astype(np.float32)
    targets = rng.normal(size=(batch, 1)).astype(np.float32)
    return inputs, targets


def model_with(layer, time=6, features=3, masking=False):
    keras.utils.set_random_seed(1)
    layers = [keras.Input((time, features))]
    if masking:
        layers.append(keras.layers.Masking(mask_value=0.0))
    return keras.Sequential(layers + [layer, keras.layers.Dense(1)])


def test_weights_have_keras_names_shapes_and_order():
    ours = LSTM(5)
    ours.build((None, 6, 3))
    theirs = keras.layers.LSTM(5)
    theirs.build((None, 6, 3))
    assert [w.name for w in ours.weights] == ["kernel", "recurrent_kernel", "bias"]
    assert [w.shape for w in ours.weights] == [w.shape for w in theirs.weights]


def test_unit_forget_bias_sets_forget_gate_bias_to_one():
    layer = LSTM(2)
    layer.build((None, 3, 1))
    np.testing.assert_array_equal(layer.bias.numpy(), [0, 0, 1, 1, 0, 0, 0, 0])


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("kernel", CPU_KERNELS)
def test_outputs_and_states_match_keras_lstm(kernel, return_sequences, go_backwards):
    inputs, _ = data()
    inputs[0, 4:] = 0.0
    inputs[2, 2:] = 0.0
    options = {
        "return_sequences": return_sequences,
        "return_state": True,
        "go_backwards": go_backwards,
    }
    # Keras's generic kernel defines masked steps; its cuDNN path (on a GPU) writes zeros there.
    theirs = keras.layers.LSTM(5, use_cudnn=False, **options)
    ours = LSTM(5, kernel=kernel, **options)
    theirs.build((None, 6, 3))
    ours.build((None, 6, 3))
    ours.set_weights(theirs.get_weights())
    mask = tf.reduce_any(tf.not_equal(inputs, 0.0), axis=-1)
    for call_mask in (None, mask):
        expected = theirs(inputs, mask=call_mask)
        actual = ours(inputs, mask=call_mask)
        for a, e in zip(actual, expected):
            np.testing.assert_allclose(np.asarray(a), np.asarray(e), atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("masking", [False, True])
@pytest.mark.parametrize("kernel", ["cpu", "xla"])
def test_adam_training_losses_match_keras_lstm(kernel, masking):
    inputs, targets = data()
    inputs[1, 3:] = 0.0
    theirs = model_with(keras.layers.LSTM(5, use_cudnn=False), masking=masking)
    ours = model_with(LSTM(5, kernel=kernel), masking=masking)
    ours.set_weights(theirs.get_weights())
    losses = []
    for model in (theirs, ours):
        model.compile(keras.optimizers.Adam(0.01), "mse")
        losses.append(model.fit(inputs, targets, epochs=4, batch_size=4, verbose=0).history["loss"])
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    assert losses[0][-1] < losses[0][0]


def test_saved_model_loads_back_with_weights_and_kernel_choice(tmp_path):
    inputs, _ = data()
    model = model_with(LSTM(5, kernel="xla", return_sequences=False))
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    layer = loaded.layers[0]
    assert isinstance(layer, LSTM)
    assert layer.requested_kernel == "xla" and layer.kernel_name == "xla"
    np.testing.assert_allclose(loaded.predict(inputs, verbose=0), model.predict(inputs, verbose=0))


@pytest.mark.skipif(GPU, reason="checks the choice made without a GPU")
def test_auto_picks_cpu_kernel_without_gpu_and_says_why():
    layer = LSTM(3, name="encoder")
    assert layer.kernel_name == "cpu"
    assert layer.kernel_report() == "encoder: kernel 'cpu' (kernel='auto' and no GPU is visible)"


@pytest.mark.skipif(not GPU, reason="checks the choice made with a GPU")
def test_auto_picks_cudnn_kernel_with_gpu():
    assert LSTM(3).kernel_name == "cudnn"


@pytest.mark.skipif(not GPU, reason="the cudnn kernel needs a GPU")
def test_cudnn_layer_matches_keras_lstm():
    inputs, _ = data()
    theirs = keras.layers.LSTM(5, return_sequences=True)
    ours = LSTM(5, kernel="cudnn", return_sequences=True)
    theirs.build((None, 6, 3))
    ours.build((None, 6, 3))
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(np.asarray(ours(inputs)), np.asarray(theirs(inputs)), atol=1e-5)


@pytest.mark.skipif(GPU, reason="checks the error raised without a GPU")
def test_cudnn_kernel_without_gpu_raises_value_error():
    with pytest.raises(ValueError, match="kernel='cudnn' cannot run this layer: no GPU is visible"):
        LSTM(3, kernel="cudnn")


@pytest.mark.parametrize(
    "arguments, fragment",
    [
        ({"kernel": "fast"}, "kernel must be one of .*got 'fast'"),
        ({"kernel": "cudnn", "use_cudnn": False}, "kernel='cudnn' and use_cudnn=False contradict"),
    ],
)
def test_contradictory_lstmcore_arguments_raise_value_error(arguments, fragment):
    with pytest.raises(ValueError, match=fragment):
        LSTM(3, **arguments)


def keras_and_ours(options, *, kernel="cpu", shape=(None, 6, 3), seed=None):
    theirs = keras.layers.LSTM(5, use_cudnn=False, seed=seed, **options)
    ours = LSTM(5, kernel=kernel, seed=seed, **options)
    theirs.build(shape)
    ours.build(shape)
    ours.set_weights(theirs.get_weights())
    return theirs, ours


@pytest.mark.parametrize(
    "options, reason",
    [
        ({"activation": "relu"}, "activation=relu"),
        ({"recurrent_activation": "hard_sigmoid"}, "recurrent_activation=hard_sigmoid"),
        ({"unroll": True}, "unroll=True"),
    ],
)
def test_options_no_kernel_has_run_keras_loop_and_say_so(options, reason):
    inputs, _ = data()
    theirs, ours = keras_and_ours({"return_sequences": True, **options})
    assert ours.kernel_name == "keras"
    assert reason in ours.kernel_report() and "Keras's generic loop" in ours.kernel_report()
    np.testing.assert_allclose(np.asarray(ours(inputs)), np.asarray(theirs(inputs)), atol=1e-6)


@pytest.mark.parametrize("kernel", CPU_KERNELS)
def test_dropout_draws_keras_masks_given_the_same_seed(kernel):
    inputs, _ = data()
    theirs, ours = keras_and_ours({"dropout": 0.5, "return_sequences": True}, kernel=kernel, seed=3)
    assert ours.kernel_name == kernel
    for _ in range(2):  # the second call draws new masks, the same in both
        np.testing.assert_allclose(
            np.asarray(ours(inputs, training=True)),
            np.asarray(theirs(inputs, training=True)),
            atol=1e-6,
        )


def test_recurrent_dropout_trains_on_keras_loop_and_infers_on_the_kernel():
    inputs, _ = data()
    options = {"dropout": 0.2, "recurrent_dropout": 0.3, "return_sequences": True}
    theirs, ours = keras_and_ours(options, seed=4)
    assert ours.kernel_name == "cpu"
    assert "training calls run Keras's generic loop (recurrent_dropout=0.3" in (
        ours.kernel_report()
    )
    training = np.asarray(ours(inputs, training=True))
    np.testing.assert_allclose(training, np.asarray(theirs(inputs, training=True)), atol=1e-6)
    inference = np.asarray(ours(inputs, training=False))
    np.testing.assert_allclose(inference, np.asarray(theirs(inputs, training=False)), atol=1e-6)
    assert not np.allclose(training, inference)


@pytest.mark.parametrize("implementation", [1, 2])
def test_implementation_is_accepted_and_gives_keras_numbers(implementation):
    inputs, _ = data()
    options = {"implementation": implementation, "dropout": 0.4, "return_sequences": True}
    theirs, ours = keras_and_ours(options, seed=7)
    assert ours.cell.implementation == implementation
    for training in (False, True):
        np.testing.assert_allclose(
            np.asarray(ours(inputs, training=training)),
            np.asarray(theirs(inputs, training=training)),
            atol=1e-6,
        )


@pytest.mark.parametrize("kernel", CPU_KERNELS)
def test_stateful_layer_carries_states_between_calls_and_resets_like_keras(kernel):
    inputs, _ = data()
    theirs, ours = keras_and_ours({"stateful": True}, kernel=kernel, shape=(4, 6, 3))
    assert [tuple(v.shape) for v in ours.states] == [(4, 5), (4, 5)]
    first = np.asarray(ours(inputs))
    np.testing.assert_allclose(first, np.asarray(theirs(inputs)), atol=1e-6)
    second = np.asarray(ours(inputs))
    np.testing.assert_allclose(second, np.asarray(theirs(inputs)), atol=1e-6)
    assert not np.allclose(first, second)
    np.testing.assert_allclose(np.asarray(ours.states[0]), second, atol=1e-6)
    ours.reset_states()
    np.testing.assert_array_equal(np.asarray(ours.states[1]), 0.0)
    np.testing.assert_allclose(np.asarray(ours(inputs)), first, atol=1e-6)


def test_stateful_layer_needs_a_static_batch_size_as_keras():
    with pytest.raises(ValueError, match="batch size must be static"):
        LSTM(3, stateful=True).build((None, 6, 3))


@pytest.mark.parametrize("dtype", ["int64", "int32", "float64", "float16"])
def test_inputs_of_any_real_or_integer_dtype_are_cast_like_keras(dtype):
    inputs, _ = data()
    inputs = (inputs * 3).astype(dtype)
    theirs, ours = keras_and_ours({})
    actual = ours(inputs)
    assert actual.dtype == "float32"
    np.testing.assert_allclose(np.asarray(actual), np.asarray(theirs(inputs)), atol=1e-5)


def test_mixed_precision_computes_in_float16_with_float32_weights():
    inputs, _ = data()
    ours = LSTM(5, dtype="mixed_float16", return_sequences=True)
    theirs = keras.layers.LSTM(5, use_cudnn=False, return_sequences=True)
    ours.build((None, 6, 3))
    theirs.build((None, 6, 3))
    ours.set_weights(theirs.get_weights())
    actual = ours(inputs)
    assert actual.dtype == "float16" and ours.cell.kernel.dtype == "float32"
    np.testing.assert_allclose(
        np.asarray(actual, np.float32), np.asarray(theirs(inputs)), atol=1e-2
    )


@pytest.mark.skipif(GPU, reason="checks the error raised without a GPU")
def test_use_cudnn_true_without_gpu_raises_on_call_saying_why():
    inputs, _ = data()
    layer = LSTM(3, use_cudnn=True)  # as Keras: made without complaint
    with pytest.raises(ValueError, match="use_cudnn=True was specified.*no GPU is visible"):
        layer(inputs)


def test_use_cudnn_false_excludes_cudnn_on_a_gpu(monkeypatch):
    monkeypatch.setattr("lstmcore.kernels.gpu_available", lambda: True)
    assert LSTM(3).kernel_name == "cudnn"
    layer = LSTM(3, use_cudnn=False, name="encoder")
    assert layer.kernel_name == "cpu" and layer.supports_jit
    assert layer.kernel_report() == "encoder: kernel 'cpu' (kernel='auto' with use_cudnn=False)"
    # Recurrent dropout rules cuDNN out, as in Keras; the layer says so.
    assert "recurrent_dropout rules out cuDNN" in LSTM(3, recurrent_dropout=0.1).kernel_report()


def test_layer_is_a_keras_lstm_with_keras_config_plus_kernel():
    ours = LSTM(4, return_sequences=True, zero_output_for_mask=True, kernel="xla")
    theirs = keras.layers.LSTM(4, return_sequences=True, zero_output_for_mask=True)
    assert isinstance(ours, keras.layers.LSTM)
    config = ours.get_config()
    assert config.pop("kernel") == "xla"
    config.pop("name"), config.pop("dtype")
    expected = theirs.get_config()
    expected.pop("name"), expected.pop("dtype")
    assert config == expected
    revived = LSTM.from_config(ours.get_config())
    assert revived.zero_output_for_mask and revived.kernel_name == "xla"


def bidirectional_pair(kernel, *, return_sequences=True):
    theirs = keras.layers.Bidirectional(
        keras.layers.LSTM(4, use_cudnn=False, return_sequences=return_sequences)
    )
    ours = keras.layers.Bidirectional(LSTM(4, kernel=kernel, return_sequences=return_sequences))
    theirs.build((None, 6, 3))
    ours.build((None, 6, 3))
    ours.set_weights(theirs.get_weights())
    return theirs, ours


@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("kernel", CPU_KERNELS)
def test_bidirectional_with_masks_gives_keras_outputs(kernel, return_sequences):
    inputs, _ = data()
    mask = np.ones((4, 6), bool)
    mask[0, 4:] = False  # right padding
    mask[1, :2] = False  # left padding
    mask[2, [1, 3]] = False  # holes
    theirs, ours = bidirectional_pair(kernel, return_sequences=return_sequences)
    assert ours.forward_layer.kernel_name == ours.backward_layer.kernel_name == kernel
    # Bidirectional sets zero_output_for_mask on both directions (Keras's rule).
    assert ours.forward_layer.zero_output_for_mask == return_sequences
    expected = np.asarray(theirs(inputs, mask=mask))
    actual = np.asarray(ours(inputs, mask=mask))
    np.testing.assert_allclose(actual, expected, atol=1e-6)
    if return_sequences:
        np.testing.assert_array_equal(actual[0, 4:], 0.0)


@pytest.mark.slow
def test_bidirectional_trains_under_fit_like_keras_with_a_mask():
    inputs, targets = data()
    inputs[1, 3:] = 0.0
    models = []
    for rnn in (
        keras.layers.LSTM(5, use_cudnn=False, return_sequences=True),
        LSTM(5, kernel="cpu", return_sequences=True),
    ):
        keras.utils.set_random_seed(1)
        models.append(
            keras.Sequential(
                [
                    keras.Input((6, 3)),
                    keras.layers.Masking(0.0),
                    keras.layers.Bidirectional(rnn),
                    keras.layers.GlobalAveragePooling1D(),
                    keras.layers.Dense(1),
                ]
            )
        )
    models[1].set_weights(models[0].get_weights())
    losses = []
    for model in models:
        model.compile(keras.optimizers.Adam(0.01), "mse")
        losses.append(model.fit(inputs, targets, epochs=4, batch_size=4, verbose=0).history["loss"])
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    assert losses[0][-1] < losses[0][0]


@pytest.mark.slow
def test_bidirectional_trains_under_lstmcore_train(tmp_path):
    import lstmcore

    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(64, 6, 3)).astype(np.float32)
    targets = inputs[:, :, :1].sum(axis=1)
    keras.utils.set_random_seed(2)
    model = keras.Sequential(
        [keras.Input((6, 3)), keras.layers.Bidirectional(LSTM(8)), keras.layers.Dense(1)]
    )
    history = lstmcore.train(
        model,
        (inputs, targets),
        loss="mse",
        steps=60,
        batch_size=16,
        learning_rate=1e-2,
        logdir=str(tmp_path),
        progress=False,
        probe_every=None,
        check=False,
    )
    losses = np.asarray(history["loss"])
    assert np.all(np.isfinite(losses)) and losses[-10:].mean() < 0.5 * losses[:10].mean()


def test_dropout_changes_training_outputs_only():
    inputs, _ = data()
    layer = LSTM(4, dropout=0.5, seed=3, return_sequences=True)
    inference = np.asarray(layer(inputs, training=False))
    np.testing.assert_array_equal(np.asarray(layer(inputs, training=False)), inference)
    assert not np.allclose(np.asarray(layer(inputs, training=True)), inference)


def test_initial_state_is_used():
    inputs, _ = data()
    theirs = keras.layers.LSTM(2)
    ours = LSTM(2)
    theirs.build((None, 6, 3))
    ours.build((None, 6, 3))
    ours.set_weights(theirs.get_weights())
    state = [tf.ones([4, 2]), -tf.ones([4, 2])]
    np.testing.assert_allclose(
        np.asarray(ours(inputs, initial_state=state)),
        np.asarray(theirs(inputs, initial_state=state)),
        atol=1e-6,
    )


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("kernel", CPU_KERNELS)
def test_zero_output_for_mask_matches_keras(kernel, go_backwards):
    inputs, _ = data()
    mask = np.ones((4, 6), bool)
    mask[0, 4:] = False
    mask[2, 1:] = False
    options = {"return_sequences": True, "zero_output_for_mask": True, "go_backwards": go_backwards}
    theirs = keras.layers.LSTM(5, use_cudnn=False, **options)
    ours = LSTM(5, kernel=kernel, **options)
    theirs.build((None, 6, 3))
    ours.build((None, 6, 3))
    ours.set_weights(theirs.get_weights())
    expected = np.asarray(theirs(inputs, mask=mask))
    actual = np.asarray(ours(inputs, mask=mask))
    np.testing.assert_allclose(actual, expected, atol=1e-6)
    assert np.all(actual[0, 4:] == 0.0) if not go_backwards else np.all(actual[0, :2] == 0.0)


@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("zero_output_for_mask", [False, True])
def test_go_backwards_reversing_real_steps_equals_reversing_time(
    return_sequences, zero_output_for_mask
):
    # The cuDNN route (tf.reverse_sequence, mask stays right-padded) checked on the CPU with
    # the reference kernel against the plain route (tf.reverse).
    inputs, _ = data()
    layer = LSTM(5, kernel="reference")
    layer.build((None, 6, 3))
    mask = tf.sequence_mask([4, 6, 1, 5], maxlen=6)
    results = [
        run_kernel(
            "reference",
            tf.constant(inputs),
            layer.kernel,
            layer.recurrent_kernel,
            layer.bias,
            mask=mask,
            go_backwards=True,
            return_sequences=return_sequences,
            zero_output_for_mask=zero_output_for_mask,
            reverse_real_steps=route,
        )
        for route in (False, True)
    ]
    for plain, real_steps in zip(tf.nest.flatten(results[0]), tf.nest.flatten(results[1])):
        np.testing.assert_allclose(real_steps.numpy(), plain.numpy(), atol=1e-6)


def test_cpu_kernels_leave_jit_compile_on_and_cudnn_turns_it_off(monkeypatch):
    assert LSTM(3, kernel="cpu").supports_jit
    monkeypatch.setattr("lstmcore.kernels.gpu_available", lambda: True)
    assert not LSTM(3, kernel="cudnn").supports_jit
    assert not LSTM(3).supports_jit
