import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import lstmcore
from lstmcore.diagnosis import read_scalars
from lstmcore.step import make_train_step


def make_model(seed=0, units=8, steps=6, features=2):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((steps, features)),
            keras.layers.LSTM(units, name="lstm"),
            keras.layers.Dense(1, name="head"),
        ]
    )


def make_data(n=64, steps=6, features=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, steps, features)).astype(np.float32)
    y = x[:, -3:, 0].sum(axis=1, keepdims=True)
    return x, y


def weights(model):
    return [w.copy() for w in model.get_weights()]


@pytest.mark.slow
def test_training_reduces_the_loss_and_records_every_step(tmp_path):
    history = lstmcore.train(
        make_model(),
        make_data(),
        epochs=8,
        batch_size=16,
        learning_rate=1e-2,
        logdir=str(tmp_path),
        progress=False,
    )
    losses = history["loss"]
    assert len(losses) == 32
    np.testing.assert_array_equal(history["step"], np.arange(32))
    assert losses[-4:].mean() < 0.5 * losses[:4].mean()
    assert history.layer_grad_norms.shape == (32, len(history.layer_grad_norm_tags))
    assert "grad_norm/lstm/recurrent_kernel/f" in history.layer_grad_norm_tags


@pytest.mark.slow
def test_gate_block_norms_add_up_to_the_variable_norm():
    history = lstmcore.train(make_model(), make_data(), steps=3, logdir=None, progress=False)
    tags = history.layer_grad_norm_tags
    norms = history.layer_grad_norms[-1]
    for part in ("kernel", "recurrent_kernel", "bias"):
        whole = norms[tags.index(f"grad_norm/lstm/{part}")]
        gates = [norms[tags.index(f"grad_norm/lstm/{part}/{g}")] for g in "ifco"]
        assert np.sqrt(np.sum(np.square(gates))) == pytest.approx(whole, rel=1e-5)


def test_the_step_is_traced_once_even_with_a_smaller_last_batch():
    model = make_model()
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    x, y = make_data(n=40)
    iterator = iter(tf.data.Dataset.from_tensor_slices((x, y)).batch(16).repeat())
    step, _ = make_train_step(
        model,
        optimizer,
        keras.losses.get("mse"),
        clip="global_norm",
        clip_norm=1.0,
        clip_groups=None,
    )
    for _ in range(6):
        step(iterator)
    assert step.experimental_get_tracing_count() == 1
    assert int(optimizer.iterations) == 6


@pytest.mark.slow
def test_steps_per_execution_gives_the_same_run_and_logs_every_step(tmp_path):
    # 4 epochs of 4 batches, validation every 3 steps and probes every 5: the 5-step calls
    # must stop at each of those steps so that validation sees the same weights.
    def run(steps_per_execution, logdir):
        model = make_model()
        history = lstmcore.train(
            model,
            make_data(),
            validation_data=make_data(n=16, seed=1),
            epochs=4,
            batch_size=16,
            learning_rate=1e-2,
            warmup_steps=4,
            validate_every=3,
            probe_every=5,
            steps_per_execution=steps_per_execution,
            logdir=str(logdir),
            progress=False,
            check=False,
        )
        return history, weights(model)

    one, one_weights = run(1, tmp_path / "one")
    five, five_weights = run(5, tmp_path / "five")
    np.testing.assert_array_equal(five["step"], np.arange(16))
    for key in ("loss", "grad_norm_before_clip", "learning_rate", "val_step", "val_loss"):
        np.testing.assert_allclose(five[key], one[key], rtol=1e-6, err_msg=key)
    np.testing.assert_allclose(five.layer_grad_norms, one.layer_grad_norms, rtol=1e-6)
    np.testing.assert_array_equal(five.probes["step"], one.probes["step"])
    for a, b in zip(one_weights, five_weights):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    logged_steps, _ = read_scalars(five.run_dir)["train/loss"]
    np.testing.assert_array_equal(logged_steps, np.arange(16))


@pytest.mark.slow
def test_steps_per_execution_calls_stop_at_checkpoints_and_resume_exactly(tmp_path):
    options = {
        "epochs": 3,
        "batch_size": 16,
        "checkpoint_every": 5,
        "steps_per_execution": 4,
        "logdir": str(tmp_path),
        "probe_every": None,
        "check": False,
        "progress": False,
    }
    model = make_model()
    lstmcore.train(model, make_data(), run_name="chunked", **options)
    directory = tmp_path / "chunked" / "checkpoints"
    saved = sorted(int(p.name.split("-")[1].split(".")[0]) for p in directory.glob("ckpt-*.index"))
    assert saved == [5, 10, 12]
    straight = make_model()
    lstmcore.train(
        straight, make_data(), run_name="straight", **{**options, "steps_per_execution": 1}
    )
    for a, b in zip(weights(straight), weights(model)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # Back to step 5, then resume: calls of 3, 2 and 2 steps must reach the same weights.
    first = str(directory / "ckpt-5")
    tf.compat.v1.train.update_checkpoint_state(
        str(directory),
        first,
        all_model_checkpoint_paths=[first],
        all_model_checkpoint_timestamps=[time.time()],
        last_preserved_timestamp=time.time() - 1,
    )
    resumed = make_model()
    history = lstmcore.train(resumed, make_data(), run_name="chunked", resume=True, **options)
    np.testing.assert_array_equal(history["step"], np.arange(5, 12))
    for a, b in zip(weights(straight), weights(resumed)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_warmup_learning_rate_is_logged_per_step():
    history = lstmcore.train(
        make_model(),
        make_data(),
        steps=8,
        batch_size=16,
        learning_rate=0.1,
        warmup_steps=4,
        logdir=None,
        progress=False,
    )
    np.testing.assert_allclose(
        history["learning_rate"], [0.0, 0.025, 0.05, 0.075, 0.1, 0.1, 0.1, 0.1], atol=1e-7
    )


@pytest.mark.slow
def test_clip_norm_bounds_every_applied_update():
    history = lstmcore.train(
        make_model(),
        make_data(),
        steps=6,
        batch_size=16,
        clip_norm=1e-3,
        logdir=None,
        progress=False,
    )
    np.testing.assert_allclose(history["grad_norm_after_clip"], 1e-3, rtol=1e-4)
    assert (history["grad_norm_before_clip"] > 1e-3).all()
    np.testing.assert_array_equal(history["clipped"], 1.0)
    np.testing.assert_allclose(history["clip_fraction"], 1.0)


@pytest.mark.slow
def test_clip_none_changes_nothing_but_measures():
    history = lstmcore.train(
        make_model(), make_data(), steps=4, clip=None, logdir=None, progress=False
    )
    np.testing.assert_array_equal(history["grad_norm_before_clip"], history["grad_norm_after_clip"])
    assert (history["grad_norm_before_clip"] > 0).all()
    np.testing.assert_array_equal(history["clipped"], 0.0)


def test_non_finite_steps_leave_weights_and_slots_bitwise_unchanged():
    x, y = make_data(n=16)
    y_bad = y.copy()
    y_bad[3] = np.nan
    model = make_model()
    dataset = tf.data.Dataset.from_tensor_slices((x, y_bad)).batch(16)
    before = weights(model)
    with pytest.raises(lstmcore.NonFiniteError, match="not finite: loss, gradients, targets"):
        lstmcore.train(
            model,
            dataset,
            steps=20,
            max_consecutive_skips=5,
            flush_every=1,
            logdir=None,
            progress=False,
        )
    for a, b in zip(before, weights(model)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_resuming_a_finished_run_does_no_extra_steps(tmp_path):
    options = {
        "steps": 4,
        "batch_size": 16,
        "logdir": str(tmp_path),
        "run_name": "run",
        "progress": False,
    }
    lstmcore.train(make_model(), make_data(), **options)
    model = make_model(seed=5)
    history = lstmcore.train(model, make_data(), resume=True, **options)
    assert len(history["loss"]) == 0
    first = make_model()
    lstmcore.train(first, make_data(), **{**options, "run_name": "other"})
    for a, b in zip(weights(first), weights(model)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_a_stopped_run_resumes_where_it_stopped(tmp_path):
    full = make_model()
    lstmcore.train(
        full, make_data(), steps=8, batch_size=16, logdir=None, progress=False, shuffle=False
    )
    # The failing loss counts its calls: no probes or checks, which call it too.
    options = {
        "batch_size": 16,
        "logdir": str(tmp_path),
        "run_name": "r",
        "progress": False,
        "shuffle": False,
        "checkpoint_every": 1,
        "probe_every": None,
        "check": False,
    }
    partial = make_model()
    # A run of 8 steps stopped after 3: the same configuration, resumed.
    with pytest.raises(lstmcore.NonFiniteError):
        x, y = make_data()
        lstmcore.train(
            partial,
            (x, y),
            steps=8,
            **options,
            max_consecutive_skips=1,
            loss=_loss_that_fails_at(3),
        )
    resumed = make_model(seed=9)
    history = lstmcore.train(
        resumed,
        make_data(),
        steps=8,
        resume=True,
        **options,
        max_consecutive_skips=1,
        loss=_loss_that_fails_at(10**6),
    )
    np.testing.assert_array_equal(history["step"], np.arange(3, 8))
    for a, b in zip(weights(full), weights(resumed)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


class _loss_that_fails_at:
    __name__ = "mse"

    def __init__(self, step):
        self.step = step
        self.calls = tf.Variable(0)

    def __call__(self, y, p):
        loss = keras.losses.mean_squared_error(y, p)
        self.calls.assign_add(1)
        scale = tf.cond(
            self.calls > self.step, lambda: tf.constant(np.nan), lambda: tf.constant(1.0)
        )
        return loss * scale


@pytest.mark.slow
def test_run_directories_are_never_overwritten(tmp_path):
    # No probes or diagnosis: the run directories are what is tested.
    quick = {"steps": 2, "logdir": str(tmp_path), "progress": False, "check": False}
    options = {**quick, "run_name": "same", "probe_every": None}
    lstmcore.train(make_model(), make_data(), **options)
    with pytest.raises(ValueError, match="already exists; pass resume=True"):
        lstmcore.train(make_model(), make_data(), **options)
    a = lstmcore.train(make_model(), make_data(), probe_every=None, **quick)
    b = lstmcore.train(make_model(), make_data(), probe_every=None, **quick)
    assert a.run_dir != b.run_dir


def test_resume_with_a_different_configuration_names_the_field(tmp_path):
    options = {"steps": 2, "logdir": str(tmp_path), "run_name": "r", "progress": False}
    lstmcore.train(make_model(), make_data(), check=False, probe_every=None, **options)
    with pytest.raises(ValueError, match="batch_size: 32 in the run, 8 now"):
        lstmcore.train(make_model(), make_data(), batch_size=8, resume=True, **options)


def test_validation_loss_is_recorded_at_each_interval():
    x, y = make_data()
    history = lstmcore.train(
        make_model(),
        (x, y),
        validation_data=(x[:10], y[:10]),
        steps=6,
        validate_every=3,
        logdir=None,
        progress=False,
        check=False,
        probe_every=None,
    )
    np.testing.assert_array_equal(history["val_step"], [3, 6])
    assert (history["val_loss"] > 0).all()


def test_a_user_dataset_and_integer_targets_train():
    x, y = make_data()
    dataset = tf.data.Dataset.from_tensor_slices((x, np.round(y).astype(np.int32))).batch(8)
    history = lstmcore.train(make_model(), dataset, epochs=1, logdir=None, progress=False)
    assert len(history["loss"]) == 8


GOOD_X, GOOD_Y = make_data(n=8)


def _nan_x():
    x = GOOD_X.copy()
    x[5, 3, 1] = np.nan
    return x


@pytest.mark.parametrize(
    "data, options, message",
    [
        (
            (GOOD_X[..., 0], GOOD_Y),
            {},
            r"data inputs must be 3-D \[samples, time, features\]; got shape \(8, 6\)",
        ),
        ((GOOD_X, GOOD_Y[:5]), {}, r"different numbers of samples \(8 and 5\)"),
        ((_nan_x(), GOOD_Y), {}, "data inputs contain NaN at sample 5, step 3, feature 1"),
        (
            (GOOD_X, np.full_like(GOOD_Y, np.inf)),
            {},
            "data targets contain an infinite value at sample 0",
        ),
        ((GOOD_X[:0], GOOD_Y[:0]), {}, "data inputs is empty"),
        ((GOOD_X.astype(str), GOOD_Y), {}, "data inputs must be numeric"),
        ((GOOD_X > 0, GOOD_Y), {}, "dtype bool"),
        (
            (GOOD_X, np.ones((8, 3), np.float32)),
            {},
            r"targets have shape \(3,\) per sample but the model predicts \(1,\)",
        ),
        ((GOOD_X[:, :, :1], GOOD_Y), {}, "1 features per sample .* the model.s input expects 2"),
        (None, {}, "data is None"),
        ((GOOD_X, GOOD_Y), {"steps": 5, "warmup_steps": 6}, "longer than the run"),
        ((GOOD_X, GOOD_Y), {"clip_norm": -1.0}, "clip_norm must be a finite number > 0; got -1.0"),
        ((GOOD_X, GOOD_Y), {"batch_size": 0}, "batch_size must be a positive integer; got 0"),
        (
            (GOOD_X, GOOD_Y),
            {"learning_rate": float("nan")},
            "learning_rate must be a finite number > 0",
        ),
        ((GOOD_X, GOOD_Y), {"optimizer": "adamax2"}, "optimizer must be one of"),
        ((GOOD_X, GOOD_Y), {"optimizer": keras.optimizers.Adam(clipnorm=1.0)}, "use train"),
        (
            tf.data.Dataset.from_tensor_slices((GOOD_X, GOOD_Y)).batch(4).take(0),
            {},
            "empty dataset",
        ),
        (tf.data.Dataset.from_tensor_slices((GOOD_X, GOOD_Y)), {}, "did you forget .batch"),
    ],
)
def test_bad_input_raises_before_any_step_or_write(tmp_path, data, options, message):
    model = make_model()
    logdir = tmp_path / "logs"
    with pytest.raises(ValueError, match=message):
        lstmcore.train(model, data, logdir=str(logdir), progress=False, **{"steps": 2, **options})
    assert not logdir.exists()


def test_a_logdir_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "file"
    path.write_text("mine")
    with pytest.raises(ValueError, match="is a file; it must be a directory"):
        lstmcore.train(make_model(), make_data(), steps=1, logdir=str(path), progress=False)
    assert path.read_text() == "mine"


def test_cudnn_report_says_why_not():
    model = keras.Sequential(
        [
            keras.Input((4, 1)),
            keras.layers.LSTM(2, return_sequences=True, recurrent_dropout=0.1),
            keras.layers.LSTM(2, activation="relu"),
        ]
    )
    reports = lstmcore.cudnn_report(model)
    assert [r.layer_class for r in reports] == ["LSTM", "LSTM"]
    assert "recurrent_dropout=0.1" in reports[0].reason
    assert "activation=relu (needs tanh)" in reports[1].reason
    if not tf.config.list_logical_devices("GPU"):
        assert all(not r.uses_cudnn and "no GPU" in r.reason for r in reports)


def test_without_the_guard_a_non_finite_step_reaches_the_weights():
    x, y = make_data(n=16)
    y[3] = np.nan
    model = make_model()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    with pytest.raises(lstmcore.NonFiniteError):
        lstmcore.train(
            model,
            dataset,
            steps=5,
            skip_nonfinite=False,
            max_consecutive_skips=2,
            flush_every=1,
            logdir=None,
            progress=False,
        )
    assert not all(np.isfinite(w).all() for w in model.get_weights())


def test_two_runs_given_the_same_generated_name_both_start(tmp_path):
    # Two processes that start in the same second choose the same timestamped name; the one
    # that creates it second moves to the next suffix instead of failing.
    from lstmcore import runs

    stem = str(tmp_path / "run-20261202-000000")
    first, _ = runs.open_run_dir(str(tmp_path), stem, resuming=False, next_free=True)
    second, _ = runs.open_run_dir(str(tmp_path), stem, resuming=False, next_free=True)
    assert (first, second) == (stem, stem + "-2")
    with pytest.raises(lstmcore.ConfigError, match="just created by another process"):
        runs.open_run_dir(str(tmp_path), stem, resuming=False)
