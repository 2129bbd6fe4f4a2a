import glob
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import lstmcore

STEPS = 300

CHILD = textwrap.dedent(
    f"""
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np, tensorflow as tf
    tf.config.experimental.enable_op_determinism()
    import keras, lstmcore
    logdir, run_name, out, resume = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6, 2)), keras.layers.LSTM(8, dropout=0.2, name="lstm"),
                              keras.layers.Dense(1, name="head")])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6, 2)).astype(np.float32)
    y = x[:, -2:, 0].sum(axis=1, keepdims=True)
    history = lstmcore.train(model, (x, y), steps={STEPS}, batch_size=8, shuffle=True, seed=1,
                             learning_rate=1e-2, warmup_steps=20, decay="cosine", clip_norm=0.5,
                             logdir=logdir, run_name=run_name, resume=resume, checkpoint_every=5,
                             flush_every=1, progress=False)
    np.savez(out, *model.get_weights(), step=history["step"], loss=history["loss"])
    print("stopped" if history.stopped else "finished", flush=True)
    """
)


def start(tmp_path, run_name, out, resume=False):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return subprocess.Popen(
        [
            sys.executable,
            str(script),
            str(tmp_path / "logs"),
            run_name,
            str(tmp_path / out),
            "1" if resume else "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process):
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    return out


def wait_for_checkpoint(tmp_path, run_name, timeout=120):
    deadline = time.monotonic() + timeout
    pattern = str(tmp_path / "logs" / run_name / "checkpoints" / "ckpt-*.index")
    while time.monotonic() < deadline:
        if glob.glob(pattern):
            return
        time.sleep(0.05)
    raise AssertionError("the child never wrote a checkpoint")


def weights(path):
    saved = np.load(path)
    return [
        saved[f"arr_{i}"] for i in range(len([k for k in saved.files if k.startswith("arr_")]))
    ], saved


def loss_events(run_dir):
    steps = []
    for path in glob.glob(os.path.join(run_dir, "*tfevents*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            steps += [event.step for v in event.summary.value if v.tag == "train/loss"]
    return sorted(steps), len(steps)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("reference")
    finish(start(tmp_path, "reference", "reference.npz"))
    return weights(tmp_path / "reference.npz")


@pytest.mark.parametrize("stop_signal", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_run_resumes_bit_identical(tmp_path, reference, stop_signal):
    reference_weights, reference_saved = reference
    child = start(tmp_path, "run", "first.npz")
    wait_for_checkpoint(tmp_path, "run")
    time.sleep(random.uniform(0.0, 0.5))
    child.send_signal(stop_signal)
    out, _ = child.communicate(timeout=120)
    if stop_signal == signal.SIGTERM:
        assert child.returncode == 0 and "stopped" in out
    resumed = start(tmp_path, "run", "resumed.npz", resume=True)
    finish(resumed)
    resumed_weights, saved = weights(tmp_path / "resumed.npz")
    for a, b in zip(reference_weights, resumed_weights):
        np.testing.assert_array_equal(a, b)
    first_resumed_step = int(saved["step"][0])
    assert 0 < first_resumed_step < STEPS
    np.testing.assert_array_equal(saved["loss"], reference_saved["loss"][first_resumed_step:])
    steps, count = loss_events(tmp_path / "logs" / "run")
    assert steps == list(range(STEPS)) and count == STEPS


def test_killed_while_saving_the_latest_checkpoint_is_always_loadable(tmp_path):
    for attempt in range(4):
        child = start(tmp_path, "run", f"out{attempt}.npz", resume=attempt > 0)
        wait_for_checkpoint(tmp_path, "run")
        time.sleep(random.uniform(0.0, 0.4))
        child.kill()
        child.communicate(timeout=60)
        directory = tmp_path / "logs" / "run" / "checkpoints"
        latest = tf.train.latest_checkpoint(str(directory))
        reader = tf.train.load_checkpoint(latest)
        for name, dtype in reader.get_variable_to_dtype_map().items():
            if dtype.is_floating:
                assert np.isfinite(reader.get_tensor(name)).all(), name
    finish(start(tmp_path, "run", "last.npz", resume=True))
    assert not [n for n in os.listdir(directory) if "_temp" in n]


def small_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4, 1)), keras.layers.LSTM(3), keras.layers.Dense(1)])


def checkpointed_run_options(tmp_path, *, steps):
    return {
        "steps": steps,
        "batch_size": 8,
        "checkpoint_every": 2,
        "logdir": str(tmp_path),
        "run_name": "r",
        "progress": False,
    }


def small_data():
    x = np.linspace(-1, 1, 32 * 4, dtype=np.float32).reshape(32, 4, 1)
    return x, x[:, -1]


def test_a_corrupted_latest_checkpoint_falls_back_to_the_previous_with_a_warning(tmp_path):
    options = checkpointed_run_options(tmp_path, steps=6)
    lstmcore.train(small_model(), small_data(), **options)
    directory = tmp_path / "r" / "checkpoints"
    data_file = glob.glob(str(directory / "ckpt-6.data-*"))[0]
    with open(data_file, "r+b") as f:
        f.truncate(8)
    with pytest.warns(RuntimeWarning, match="ckpt-6"):
        history = lstmcore.train(small_model(), small_data(), resume=True, **options)
    np.testing.assert_array_equal(history["step"], [4, 5])


def test_no_readable_checkpoint_stops_with_an_error_naming_them(tmp_path):
    options = checkpointed_run_options(tmp_path, steps=4)
    lstmcore.train(small_model(), small_data(), **options)
    for path in glob.glob(str(tmp_path / "r" / "checkpoints" / "*.data-*")):
        with open(path, "r+b") as f:
            f.truncate(4)
    with pytest.raises(ValueError, match="no checkpoint could be restored: .*ckpt-4.*ckpt-2"):
        lstmcore.train(small_model(), small_data(), resume=True, **options)


def test_a_lost_pointer_file_never_restarts_from_scratch(tmp_path):
    options = checkpointed_run_options(tmp_path, steps=4)
    lstmcore.train(small_model(), small_data(), **options)
    os.remove(tmp_path / "r" / "checkpoints" / "checkpoint")
    with pytest.raises(ValueError, match="pointer file is missing"):
        lstmcore.train(small_model(), small_data(), resume=True, **options)


def nan_at(x, index):
    x = x.copy()
    x[index] = np.nan
    return x


@pytest.mark.parametrize("part", ["inputs", "targets"])
def test_a_nan_batch_is_skipped_and_training_goes_on(part):
    x, y = small_data()
    bad = (nan_at(x, (9, 2, 0)), y) if part == "inputs" else (x, nan_at(y, (9, 0)))
    dataset = tf.data.Dataset.from_tensor_slices(bad).batch(8)
    model = small_model()
    history = lstmcore.train(model, dataset, steps=8, logdir=None, progress=False, shuffle=False)
    np.testing.assert_array_equal(history["skipped"], [0, 1, 0, 0, 0, 1, 0, 0])
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_persistent_nan_ends_with_an_error_naming_step_and_cause():
    x, y = small_data()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).take(2)
    dataset = dataset.concatenate(tf.data.Dataset.from_tensors((x[:8] * np.inf, y[:8])).repeat())
    with pytest.raises(
        lstmcore.NonFiniteError,
        match=r"from step 2 \(batch number 2 .* not finite: gradients, inputs\.",
    ):
        lstmcore.train(
            small_model(), dataset, steps=1000, max_consecutive_skips=5, logdir=None, progress=False
        )


@pytest.mark.parametrize("own_optimizer", [False, True], ids=["adam", "keras-adam-instance"])
def test_restore_mode_reloads_the_last_checkpoint_and_halves_the_learning_rate(
    tmp_path, own_optimizer
):
    x, y = small_data()
    calls = tf.Variable(0)

    def loss(targets, predictions):
        calls.assign_add(1)
        scale = tf.cond(
            (calls > 6) & (calls <= 9), lambda: tf.constant(np.inf), lambda: tf.constant(1.0)
        )
        return keras.losses.mean_squared_error(targets, predictions) * scale

    history = lstmcore.train(
        small_model(),
        (x, y),
        steps=12,
        batch_size=8,
        learning_rate=0.01,
        optimizer=keras.optimizers.Adam(0.01) if own_optimizer else "adam",
        loss=loss,
        on_nonfinite="restore",
        max_consecutive_skips=3,
        flush_every=1,
        checkpoint_every=2,
        logdir=str(tmp_path),
        progress=False,
        probe_every=None,
        check=False,  # the loss counts its calls; probes and checks call it too
    )
    # Steps 6, 7 and 8 are skipped; the checkpoint at step 8 (weights as after step 5: skipped
    # steps change nothing) is restored and step 8 runs again at half the learning rate.
    np.testing.assert_array_equal(history["step"], [0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 9, 10, 11])
    np.testing.assert_array_equal(history["skipped"], [0] * 6 + [1, 1, 1] + [0] * 4)
    np.testing.assert_allclose(history["learning_rate"], [0.01] * 9 + [0.005] * 4)


def test_no_pickle_anywhere_in_lstmcore():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    offenders = []
    for folder in ("lstmcore", "kernels", "benchmarks"):
        for path in glob.glob(os.path.join(root, folder, "**", "*.py"), recursive=True):
            text = open(path, encoding="utf-8").read()
            if (
                "import pickle" in text
                or "pickle.load" in text
                or "cloudpickle" in text
                or "dill" in text.split()
            ):
                offenders.append(path)
    assert offenders == []
