import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import lstmcore
from lstmcore import clipping, data, runs, schedules

N, T, F = 8, 6, 2


def model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((T, F)), keras.layers.LSTM(3), keras.layers.Dense(1)])


def xy():
    x = np.linspace(-1, 1, N * T * F, dtype=np.float32).reshape(N, T, F)
    return x, x[:, -1, :1].copy()


def with_value(array, index, value):
    array = array.copy()
    array[index] = value
    return array


X, Y = xy()

# (case name, data, extra train options, expected message)
TRAIN_CASES = [
    (
        "nan in inputs",
        (with_value(X, (5, 3, 1), np.nan), Y),
        {},
        "data inputs contain NaN at sample 5, step 3, feature 1",
    ),
    (
        "inf in targets",
        (X, with_value(Y, (2, 0), np.inf)),
        {},
        "data targets contain an infinite value at sample 2, output 0",
    ),
    (
        "inputs of rank 2",
        (X[..., 0], Y),
        {},
        r"data inputs must be 3-D \[samples, time, features\]; got shape \(8, 6\)",
    ),
    ("inputs of rank 4", (X[..., None], Y), {}, r"must be 3-D .*got shape \(8, 6, 2, 1\)"),
    (
        "wrong feature count",
        (np.concatenate([X, X[..., :1]], axis=2), Y),
        {},
        "3 features per sample .* the model's input expects 2",
    ),
    (
        "wrong number of steps",
        (X[:, :4], Y),
        {},
        "4 time steps per sample .* the model's input expects 6",
    ),
    ("mismatched lengths", (X, Y[:5]), {}, r"different numbers of samples \(8 and 5\)"),
    ("empty arrays", (X[:0], Y[:0]), {}, r"data inputs is empty \(shape \(0, 6, 2\)\)"),
    ("zero-length sequences", (X[:, :0], Y), {}, "zero-length axis"),
    ("strings", (X.astype(str), Y), {}, "must be numeric; got dtype <U"),
    (
        "objects",
        (np.array([object()] * N, dtype=object), Y),
        {},
        "must be numeric; got dtype object",
    ),
    ("ragged lists", ([[[0.0, 1.0]] * 3, [[0.0, 1.0]] * 4], [[1.0], [2.0]]), {}, "ragged"),
    ("booleans", (X > 0, Y), {}, "dtype bool"),
    (
        "targets too wide",
        (X, np.zeros((N, 3), np.float32)),
        {},
        r"targets have shape \(3,\) per sample but the model predicts \(1,\)",
    ),
    ("data is None", None, {}, "data is None"),
    (
        "empty dataset",
        tf.data.Dataset.from_tensor_slices((X, Y)).batch(4).take(0),
        {},
        "empty dataset",
    ),
    ("unbatched dataset", tf.data.Dataset.from_tensor_slices((X, Y)), {}, r"did you forget .batch"),
    (
        "string dataset",
        tf.data.Dataset.from_tensor_slices((X.astype(str), Y)).batch(4),
        {},
        "must be numeric; got dtype string",
    ),
    ("zero batch size", (X, Y), {"batch_size": 0}, "batch_size must be a positive integer; got 0"),
    (
        "fractional steps per call",
        (X, Y),
        {"steps_per_execution": 2.5},
        "steps_per_execution must be a positive integer; got 2.5",
    ),
    ("negative steps", (X, Y), {"steps": -1}, "steps must be a positive integer or None; got -1"),
    (
        "zero epochs",
        (X, Y),
        {"epochs": 0, "steps": None},
        "epochs must be a positive integer or None; got 0",
    ),
    (
        "warmup longer than the run",
        (X, Y),
        {"warmup_steps": 10},
        r"warmup_steps \(10\) is longer than the run \(total_steps=2\)",
    ),
    (
        "negative clip norm",
        (X, Y),
        {"clip_norm": -1.0},
        "clip_norm must be a finite number > 0; got -1.0",
    ),
    ("unknown clip method", (X, Y), {"clip": "l2"}, "clip must be one of"),
    (
        "nan learning rate",
        (X, Y),
        {"learning_rate": float("nan")},
        "learning_rate must be a finite number > 0; got nan",
    ),
    ("unknown loss", (X, Y), {"loss": "msee"}, "loss must be a Keras loss name"),
    (
        "unknown non-finite policy",
        (X, Y),
        {"on_nonfinite": "ignore"},
        "on_nonfinite must be one of",
    ),
    (
        "a Keras clipnorm",
        (X, Y),
        {"optimizer": keras.optimizers.Adam(clipnorm=1.0)},
        "optimizer has clipnorm=1.0; use train",
    ),
    (
        "resume without a logdir",
        (X, Y),
        {"resume": True, "logdir": None},
        "resume=True needs a logdir",
    ),
    ("complex inputs", (X.astype(np.complex64), Y), {}, "data inputs has dtype complex64"),
    (
        "datetime64 targets",
        (X, np.arange(N).astype("datetime64[D]")),
        {},
        r"data targets has dtype datetime64\[D\] \(dates or durations\)",
    ),
    (
        "complex dataset",
        tf.data.Dataset.from_tensor_slices((X.astype(np.complex64), Y)).batch(4),
        {},
        "data inputs must be real float or integer values; got dtype complex64",
    ),
    (
        "a loss that returns a scalar",
        (X, Y),
        {"loss": lambda targets, predictions: tf.reduce_mean((targets - predictions) ** 2)},
        (
            r"loss must return one value per sample, shape \[batch\]; for a batch of 2 it "
            r"returned shape \(\)"
        ),
    ),
    (
        "a Keras loss object that reduces",
        (X, Y),
        {"loss": keras.losses.MeanSquaredError()},
        "loss must return one value per sample",
    ),
    (
        "clip groups that match nothing",
        (X, Y),
        {"clip_groups": {"recurent_kernel": 0.5}},
        r"clip_groups pattern\(s\) \['recurent_kernel'\] match no trainable variable",
    ),
    ("a string seed", (X, Y), {"seed": "abc"}, "seed must be None or an integer .*got 'abc'"),
    ("a seed past 64 bits", (X, Y), {"seed": 2**70}, "seed must be None or an integer .*got 1180"),
    (
        "an empty generator",
        tf.data.Dataset.from_generator(
            lambda: iter(()),
            output_signature=(tf.TensorSpec([None, T, F]), tf.TensorSpec([None, 1])),
        ),
        {},
        "data yielded no batch",
    ),
    (
        "a generator dataset with checkpoints",
        tf.data.Dataset.from_generator(
            lambda: iter([(X, Y)]),
            output_signature=(tf.TensorSpec([None, T, F]), tf.TensorSpec([None, 1])),
        ),
        {},
        (
            "data is a tf.data pipeline whose position cannot be saved.*PyFunc is stateful.*"
            "logdir=None"
        ),
    ),
    (
        "a py_function dataset with checkpoints",
        tf.data.Dataset.from_tensor_slices((X, Y))
        .batch(4)
        .map(lambda x, y: (tf.py_function(lambda v: v, [x], tf.float32), y)),
        {},
        "cannot be saved in a checkpoint",
    ),
    ("a 300-character run name", (X, Y), {"run_name": "r" * 300}, "run_name is 300 bytes long"),
    (
        "restore without a logdir",
        (X, Y),
        {"on_nonfinite": "restore", "logdir": None},
        "on_nonfinite='restore' reloads a checkpoint, and logdir=None writes none",
    ),
    (
        "resume of a run that does not exist",
        (X, Y),
        {"resume": True, "run_name": "x"},
        "no run 'x' in logdir .* to resume; to start it, pass resume=False",
    ),
    (
        "validation inputs with the wrong feature count",
        (X, Y),
        {"validation_data": (X[..., :1], Y)},
        "validation_data inputs have 1 features per sample",
    ),
    (
        "validation inputs with the wrong number of steps",
        (X, Y),
        {"validation_data": (X[:, :4], Y)},
        "validation_data inputs have 4 time steps",
    ),
    (
        "validation targets too wide",
        (X, Y),
        {"validation_data": (X, np.zeros((N, 3), np.float32))},
        r"validation_data targets have shape \(3,\) per sample",
    ),
    (
        "validation data with NaN",
        (X, Y),
        {"validation_data": (with_value(X, (1, 2, 0), np.nan), Y)},
        "validation_data inputs contain NaN at sample 1, step 2, feature 0",
    ),
]


@pytest.mark.parametrize(
    "name, data_, options, message", TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES]
)
def test_train_refuses_bad_input_before_any_step_or_write(tmp_path, name, data_, options, message):
    logdir = tmp_path / "logs"
    arguments = {"steps": 2, "logdir": str(logdir), "progress": False, **options}
    net = model()
    before = [w.copy() for w in net.get_weights()]
    with pytest.raises(ValueError, match=message):
        lstmcore.train(net, data_, **arguments)
    assert not logdir.exists()
    for a, b in zip(before, net.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_model_with_two_outputs_is_refused_naming_the_count(tmp_path):
    inputs = keras.Input((T, F))
    hidden = keras.layers.LSTM(3)(inputs)
    net = keras.Model(inputs, [keras.layers.Dense(1)(hidden), keras.layers.Dense(1)(hidden)])
    with pytest.raises(ValueError, match=r"model returns 2 outputs \(list\); train needs a model"):
        lstmcore.train(net, (X, Y), steps=1, logdir=str(tmp_path / "logs"), progress=False)
    assert not (tmp_path / "logs").exists()


def test_a_validation_dataset_for_another_model_is_refused_before_any_write(tmp_path):
    other = tf.data.Dataset.from_tensor_slices((X[..., :1], Y)).batch(4)
    with pytest.raises(ValueError, match="validation_data inputs have 1 features"):
        lstmcore.train(
            model(),
            (X, Y),
            validation_data=other,
            steps=1,
            logdir=str(tmp_path / "logs"),
            progress=False,
        )
    assert not (tmp_path / "logs").exists()


@pytest.mark.slow
def test_a_tilde_in_logdir_means_the_home_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    history = lstmcore.train(
        model(), (X, Y), steps=1, logdir="~/runs", run_name="r", progress=False, check=False
    )
    assert history.run_dir == str(tmp_path / "runs" / "r")
    assert not os.path.exists("~")


def test_a_logdir_inside_a_file_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="lies inside .*notes.txt.*which is a file"):
        lstmcore.train(
            model(), (X, Y), steps=1, logdir=str(tmp_path / "notes.txt" / "runs"), progress=False
        )
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_an_unwritable_logdir_is_refused(tmp_path, monkeypatch):
    # Tests run as root, who may write anywhere; the permission answer is what is checked.
    monkeypatch.setattr(runs.os, "access", lambda path, mode: False)
    with pytest.raises(ValueError, match="is not writable"):
        lstmcore.train(model(), (X, Y), steps=1, logdir=str(tmp_path / "runs"), progress=False)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_a_checkpoint_of_a_different_model_is_refused_naming_the_field(tmp_path):
    lstmcore.train(model(), (X, Y), steps=2, logdir=str(tmp_path), run_name="r", progress=False)
    other = keras.Sequential([keras.Input((T, F)), keras.layers.LSTM(5), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="cannot resume .*model: .*in the run"):
        lstmcore.train(
            other, (X, Y), steps=2, logdir=str(tmp_path), run_name="r", resume=True, progress=False
        )


OTHER_CASES = [
    (
        "series shorter than a window",
        lambda: data.windows(np.arange(5.0), input_steps=10),
        "fewer than the input_steps",
    ),
    ("window of zero steps", lambda: data.windows(np.arange(50.0), input_steps=0), "input_steps"),
    (
        "negative horizon",
        lambda: data.windows(np.arange(50.0), input_steps=3, horizon=-1),
        "horizon",
    ),
    (
        "splits that do not sum to one",
        lambda: data.windows(np.arange(50.0), input_steps=3, splits=(0.5, 0.2, 0.2)),
        "sum to 1",
    ),
    ("nan in a series", lambda: data.windows(np.array([0.0, np.nan] * 30), input_steps=3), "NaN"),
    (
        "schedule warmup too long",
        lambda: schedules.warmup_schedule(0.1, total_steps=5, warmup_steps=6),
        "longer than the run",
    ),
    (
        "clip groups with a bad pattern",
        lambda: clipping.check_clip_options("global_norm", 1.0, {"(": 1.0}),
        "not a regular expression",
    ),
]


@pytest.mark.parametrize("name, call, message", OTHER_CASES, ids=[c[0] for c in OTHER_CASES])
def test_data_schedule_and_clipping_refuse_bad_input(name, call, message):
    with pytest.raises(ValueError, match=message):
        call()


def write_csv(path):
    path.write_text("time,load\n" + "\n".join(f"{i},{i % 7}" for i in range(40)) + "\n")


CLI_CASES = [
    ("missing file", ["--csv", "{tmp}/nope.csv", "--target", "load"], "nope.csv"),
    ("missing column", ["--csv", "{csv}", "--target", "price"], "price"),
    (
        "window longer than the series",
        ["--csv", "{csv}", "--target", "load", "--window", "500"],
        "fewer than",
    ),
    (
        "negative window",
        ["--csv", "{csv}", "--target", "load", "--window", "-2"],
        "expected a positive integer, got '-2'",
    ),
    (
        "negative learning rate",
        ["--csv", "{csv}", "--target", "load", "--learning-rate", "-1"],
        "expected a finite positive number, got '-1'",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, arguments, message", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_the_cli_prints_one_line_and_exits_2(tmp_path, name, arguments, message):
    csv = tmp_path / "series.csv"
    write_csv(csv)
    arguments = [a.format(tmp=tmp_path, csv=csv) for a in arguments]
    result = subprocess.run(
        [sys.executable, "-m", "lstmcore", "train", *arguments, "--logdir", str(tmp_path / "runs")],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert message in last and last.startswith(("lstmcore train: error:", "usage:", "lstmcore"))
    assert not (tmp_path / "runs").exists()
