import errno
import glob
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time
import tracemalloc

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2

import lstmcore
from lstmcore import diagnosis, runs
from lstmcore import writer as writer_lib

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


# SIGKILL at a random moment is tests/test_kill_resume.py (and 30 tries in
# benchmarks/kill_resume.py); here the preemption signal, which must save and exit cleanly.
@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM])
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_corrupted_latest_checkpoint_falls_back_to_the_previous_with_a_warning(tmp_path, caplog):
    options = checkpointed_run_options(tmp_path, steps=6)
    lstmcore.train(small_model(), small_data(), **options)
    directory = tmp_path / "r" / "checkpoints"
    data_file = glob.glob(str(directory / "ckpt-6.data-*"))[0]
    with open(data_file, "r+b") as f:
        f.truncate(8)
    with caplog.at_level("WARNING", logger="lstmcore"):
        history = lstmcore.train(small_model(), small_data(), resume=True, **options)
    warned = [r for r in caplog.records if r.name == "lstmcore" and r.levelname == "WARNING"]
    assert len(warned) == 1 and "ckpt-6" in warned[0].getMessage()
    assert "restored" in warned[0].getMessage() and "ckpt-4" in warned[0].getMessage()
    np.testing.assert_array_equal(history["step"], [4, 5])


@pytest.mark.slow
def test_no_readable_checkpoint_stops_with_an_error_naming_them(tmp_path):
    options = checkpointed_run_options(tmp_path, steps=4)
    lstmcore.train(small_model(), small_data(), **options)
    for path in glob.glob(str(tmp_path / "r" / "checkpoints" / "*.data-*")):
        with open(path, "r+b") as f:
            f.truncate(4)
    with pytest.raises(ValueError, match="no checkpoint could be restored: .*ckpt-4.*ckpt-2"):
        lstmcore.train(small_model(), small_data(), resume=True, **options)


@pytest.mark.slow
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


@pytest.mark.slow
@pytest.mark.parametrize("part", ["inputs", "targets"])
def test_a_nan_batch_is_skipped_and_training_goes_on(part):
    x, y = small_data()
    bad = (nan_at(x, (9, 2, 0)), y) if part == "inputs" else (x, nan_at(y, (9, 0)))
    dataset = tf.data.Dataset.from_tensor_slices(bad).batch(8)
    model = small_model()
    history = lstmcore.train(model, dataset, steps=8, logdir=None, progress=False, shuffle=False)
    np.testing.assert_array_equal(history["skipped"], [0, 1, 0, 0, 0, 1, 0, 0])
    assert all(np.isfinite(w).all() for w in model.get_weights())


@pytest.mark.slow
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


@pytest.mark.slow
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
            with open(path, encoding="utf-8") as f:
                text = f.read()
            if (
                "import pickle" in text
                or "pickle.load" in text
                or "cloudpickle" in text
                or "dill" in text.split()
            ):
                offenders.append(path)
    assert offenders == []


# --- Round two (issue 17) ---------------------------------------------------------------------

RESTORE_OPTIONS = {
    "batch_size": 8,
    "learning_rate": 0.01,
    "on_nonfinite": "restore",
    "max_consecutive_skips": 3,
    "shuffle": False,
    "progress": False,
    "probe_every": None,
    "check": False,
}


def inf_loss_on_calls(first_call, last_call=None):
    calls = tf.Variable(0)

    def loss(targets, predictions):
        calls.assign_add(1)
        poisoned = calls >= first_call
        if last_call is not None:
            poisoned &= calls <= last_call
        scale = tf.cond(poisoned, lambda: tf.constant(np.inf), lambda: tf.constant(1.0))
        return keras.losses.mean_squared_error(targets, predictions) * scale

    return loss


@pytest.mark.slow
@pytest.mark.parametrize("steps", [12, 8], ids=["checkpoint-boundary", "end-of-run"])
def test_restore_mode_restores_at_every_flush_boundary_with_the_default_flush_every(
    tmp_path, steps
):
    # Steps 5, 6 and 7 are not finite; the third is found by the flush at step 8, a checkpoint
    # (and validation) boundary, or the end of the run: the checkpoint of step 4 is restored.
    history = lstmcore.train(
        small_model(),
        small_data(),
        steps=steps,
        loss=inf_loss_on_calls(6, 8),
        checkpoint_every=4,
        logdir=str(tmp_path),
        **RESTORE_OPTIONS,
    )
    np.testing.assert_array_equal(history["step"], [*range(8), *range(4, steps)])
    np.testing.assert_array_equal(history["skipped"], [0] * 5 + [1] * 3 + [0] * (steps - 4))
    np.testing.assert_allclose(history["learning_rate"], [0.01] * 8 + [0.005] * (steps - 4))


def poisoned_targets_loss(targets, predictions):
    poisoned = tf.reduce_max(targets) > 100.0
    scale = tf.cond(poisoned, lambda: tf.constant(np.inf), lambda: tf.constant(1.0))
    return keras.losses.mean_squared_error(targets, predictions) * scale


def test_restore_mode_skips_past_batches_that_fail_again_after_a_restore(tmp_path):
    x = np.linspace(-1, 1, 64 * 4, dtype=np.float32).reshape(64, 4, 1)
    y = x[:, -1].copy()
    y[40:] = 1000.0  # batches 5, 6 and 7 of 8: finite, but the loss says inf on them
    model = small_model()
    history = lstmcore.train(
        model,
        (x, y),
        steps=10,
        loss=poisoned_targets_loss,
        checkpoint_every=4,
        logdir=str(tmp_path),
        run_name="r",
        **RESTORE_OPTIONS,
    )
    # Restored step 4 once; the same steps failed again, so they were skipped past.
    np.testing.assert_array_equal(history["step"], [*range(8), *range(4, 10)])
    np.testing.assert_array_equal(history["skipped"], [0] * 5 + [1] * 3 + [0] + [1] * 3 + [0] * 2)
    np.testing.assert_allclose(history["learning_rate"], [0.01] * 8 + [0.005] * 6)
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert tf.train.latest_checkpoint(str(tmp_path / "r" / "checkpoints")).endswith("ckpt-10")


def test_restore_mode_skips_past_batches_whose_data_is_not_finite_without_restoring(tmp_path):
    x, y = small_data()
    x = x.copy()
    x[8:20] = np.nan  # batches 1 and 2 of 4, in every epoch
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    history = lstmcore.train(
        small_model(),
        dataset,
        steps=8,
        checkpoint_every=4,
        logdir=str(tmp_path),
        **{**RESTORE_OPTIONS, "max_consecutive_skips": 2},
    )
    np.testing.assert_array_equal(history["step"], range(8))
    np.testing.assert_array_equal(history["skipped"], [0, 1, 1, 0, 0, 1, 1, 0])


def test_restore_mode_gives_up_saying_what_it_tried(tmp_path):
    with pytest.raises(
        lstmcore.NonFiniteError,
        match=r"gave up after 3 recoveries: restored ckpt-8 after non-finite steps 6 to 8, "
        r"learning rate halved; .*",
    ):
        lstmcore.train(
            small_model(),
            small_data(),
            steps=40,
            loss=inf_loss_on_calls(7),
            checkpoint_every=4,
            logdir=str(tmp_path),
            **RESTORE_OPTIONS,
        )


def test_restore_mode_without_a_checkpoint_yet_says_so(tmp_path):
    with pytest.raises(lstmcore.NonFiniteError, match="had no checkpoint to restore yet"):
        lstmcore.train(
            small_model(),
            small_data(),
            steps=8,
            loss=inf_loss_on_calls(1),
            checkpoint_every=100,
            logdir=str(tmp_path),
            **RESTORE_OPTIONS,
        )


QUICK = {"check": False, "probe_every": None}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = tmp_path_factory.mktemp("finished")
    lstmcore.train(
        small_model(), small_data(), **checkpointed_run_options(folder, steps=4), **QUICK
    )
    return folder / "r"


def finished_run(tmp_path, finished):
    shutil.copytree(finished, tmp_path / "r")
    return {**checkpointed_run_options(tmp_path, steps=4), **QUICK}, tmp_path / "r"


def event_files(run_dir):
    return {p.name: p.read_bytes() for p in run_dir.iterdir() if "tfevents" in p.name}


def delete_checkpoint_files(directory):
    for path in directory.glob("ckpt-*"):
        path.unlink()


def delete_everything_in(directory):
    for path in directory.iterdir():
        path.unlink()


DAMAGE = [
    (
        "pointer naming missing checkpoints",
        delete_checkpoint_files,
        r"the pointer file .*checkpoint' names ckpt-4, ckpt-2, but none of their files exist",
    ),
    ("pointer and files deleted", delete_everything_in, "holds no checkpoint"),
    ("checkpoints folder deleted", shutil.rmtree, "the run has no checkpoints folder"),
]


@pytest.mark.parametrize("name, damage, message", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_a_resume_with_nothing_to_restore_is_an_error_and_keeps_the_history(
    tmp_path, finished, name, damage, message
):
    options, run_dir = finished_run(tmp_path, finished)
    damage(run_dir / "checkpoints")
    events = event_files(run_dir)
    with pytest.raises(ValueError, match=message + ".*never starts a run again from step 0"):
        lstmcore.train(small_model(), small_data(), resume=True, **options)
    assert event_files(run_dir) == events


def test_a_pointer_rewritten_without_timestamps_still_resumes(tmp_path, finished):
    options, run_dir = finished_run(tmp_path, finished)
    (run_dir / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-2"\n')
    history = lstmcore.train(small_model(), small_data(), resume=True, **options)
    np.testing.assert_array_equal(history["step"], [2, 3])


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"config": {"loss"', "is not valid JSON"),
        ("[1, 2]", "must be a JSON object with 'config' and 'config_hash'; got list"),
    ],
    ids=["half-written", "not an object"],
)
def test_a_damaged_manifest_is_an_error_naming_the_file(tmp_path, finished, content, message):
    options, run_dir = finished_run(tmp_path, finished)
    (run_dir / runs.MANIFEST).write_text(content)
    with pytest.raises(ValueError, match=f"run manifest .*{runs.MANIFEST}' {message}"):
        lstmcore.train(small_model(), small_data(), resume=True, **options)


def test_a_run_directory_in_use_is_refused_naming_the_holder(tmp_path, finished):
    options, run_dir = finished_run(tmp_path, finished)
    lock = runs.RunLock(str(run_dir))
    assert lock.acquire() is None
    try:
        with pytest.raises(ValueError, match=f"in use by pid {os.getpid()} on host .*one writer"):
            lstmcore.train(small_model(), small_data(), resume=True, **options)
    finally:
        lock.release()
    lstmcore.train(small_model(), small_data(), resume=True, **options)
    assert (run_dir / runs.LOCK).read_text() == ""


DIE_HOLDING_THE_LOCK = """
import fcntl, os, signal, sys
f = open(sys.argv[1], "a+")
fcntl.flock(f, fcntl.LOCK_EX)
f.write(f"pid {os.getpid()} on host h since t")
f.flush()
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path, finished, capsys):
    options, run_dir = finished_run(tmp_path, finished)
    holder = subprocess.run(
        [
            sys.executable,
            "-c",
            DIE_HOLDING_THE_LOCK,
            str(run_dir / runs.LOCK),
        ],
        check=False,
    )
    assert holder.returncode == -signal.SIGKILL
    lstmcore.train(small_model(), small_data(), resume=True, **{**options, "progress": True})
    assert "took over the lock of pid" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("field", ["targets", "inputs"])
def test_a_batch_whose_shape_changes_stops_the_run_there_unapplied(tmp_path, field):
    x, y = small_data()
    first = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    if field == "targets":
        later, changed = (x, np.repeat(y, 3, axis=1)), r"\(4, 3\)"
    else:
        later, changed = (np.concatenate([x, x[:, :2]], axis=1), y), r"\(4, 6, 1\)"
    data = first.concatenate(tf.data.Dataset.from_tensor_slices(later).batch(4).take(2))
    model = small_model()
    expected = (
        "batch 8 .*: {0} of shape {1}, but in the first batch {0} have shape \\(batch, {2}\\)"
    )
    with pytest.raises(
        ValueError,
        match="data " + expected.format(field, changed, "1" if field == "targets" else "4, 1"),
    ):
        lstmcore.train(
            model,
            data,
            **QUICK,
            steps=10,
            checkpoint_every=4,
            logdir=str(tmp_path),
            run_name="r",
            progress=False,
        )
    reference = small_model()
    lstmcore.train(reference, first, steps=8, logdir=None, progress=False, **QUICK)
    for a, b in zip(reference.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    lock = runs.RunLock(str(tmp_path / "r"))
    assert lock.acquire() is None  # released when the error left train
    lock.release()


def test_a_generator_dataset_trains_without_checkpoints():
    x, y = small_data()
    dataset = tf.data.Dataset.from_generator(
        lambda: ((x[i : i + 8], y[i : i + 8]) for i in range(0, 32, 8)),
        output_signature=(tf.TensorSpec([None, 4, None]), tf.TensorSpec([None, None])),
    )
    history = lstmcore.train(small_model(), dataset, steps=3, logdir=None, progress=False, **QUICK)
    assert len(history["loss"]) == 3


def test_a_full_disk_is_one_error_naming_the_run_directory(tmp_path, monkeypatch):
    def full(self, step):
        raise tf.errors.ResourceExhaustedError(
            None, None, f"{self.directory}/ckpt-2_temp: No space left on device"
        )

    monkeypatch.setattr(runs.Checkpoints, "save", full)
    with pytest.raises(
        OSError, match=r"no space left on the device holding .*r \(.*resume=True"
    ) as raised:
        lstmcore.train(
            small_model(), small_data(), **checkpointed_run_options(tmp_path, steps=4), **QUICK
        )
    assert raised.value.errno == errno.ENOSPC and raised.value.__suppress_context__
    lock = runs.RunLock(str(tmp_path / "r"))
    assert lock.acquire() is None
    lock.release()


def test_diagnose_reads_a_run_whose_name_has_glob_characters(tmp_path):
    lstmcore.train(
        small_model(),
        small_data(),
        steps=2,
        logdir=str(tmp_path),
        run_name="exp[1]",
        progress=False,
        **QUICK,
    )
    run_dir = str(tmp_path / "exp[1]")
    assert diagnosis.find_run_dir(run_dir) == run_dir
    assert "train/loss" in diagnosis.read_scalars(run_dir)


def test_a_hostile_event_file_costs_no_more_memory_than_its_size(tmp_path):
    claim = tensor_pb2.TensorProto(
        dtype=tf.float32.as_datatype_enum,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=2**26)]
        ),
        float_val=[1.0],
    )
    event = event_pb2.Event(
        step=1,
        summary=summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="x", tensor=claim)]),
    )
    path = tmp_path / "events.out.tfevents.1.hostile"
    with tf.io.TFRecordWriter(str(path)) as records:
        records.write(event.SerializeToString())
    with open(path, "ab") as f:
        f.write(struct.pack("<Q", 2**40) + b"\0" * 8)  # a record that claims a terabyte
    assert path.stat().st_size < 200
    tracemalloc.start()
    scalars = diagnosis.read_scalars(str(tmp_path))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert scalars == {} and peak < 2**20


def test_the_capped_event_reader_reads_what_tensorflow_reads(tmp_path, finished):
    _, run_dir = finished_run(tmp_path, finished)
    ours, theirs = [], []
    for path in run_dir.glob("*tfevents*"):
        ours += [e.SerializeToString() for e in writer_lib.read_events(str(path))]
        theirs += [e.SerializeToString() for e in tf.compat.v1.train.summary_iterator(str(path))]
    assert ours == theirs and len(ours) > 10


@pytest.mark.slow
def test_two_processes_on_one_run_directory_the_second_is_refused(tmp_path):
    from benchmarks import kill_resume

    runner = kill_resume.Runner(str(tmp_path), steps=100_000)  # still training when B checks
    first = runner.start("run", "first.npz", resume=False)
    try:
        kill_resume._wait_for_checkpoint(runner.checkpoints("run"))
        second = runner.start("run", "second.npz", resume=True)
        _, err = second.communicate(timeout=300)
        assert second.returncode != 0
        assert f"is in use by pid {first.pid} on host" in err
        assert first.poll() is None
    finally:
        first.kill()
        first.communicate(timeout=60)
