"""Standard Keras callbacks passed to lstmcore.train(callbacks=[...]) keep their documented meaning."""

import csv

import keras
import numpy as np
import pytest
import tensorflow as tf

import lstmcore


def make_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((5, 2)), keras.layers.LSTM(4, name="lstm"), keras.layers.Dense(1)]
    )


def make_data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5, 2)).astype(np.float32)
    return x, x[:, -1, :1].copy()


QUIET = {"progress": False, "check": False, "probe_every": None, "shuffle": False}


class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.calls = []

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin",))

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch_begin", epoch))

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(("batch_end", batch, logs["loss"]))

    def on_test_end(self, logs=None):
        self.calls.append(("test_end", logs["loss"]))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, dict(logs)))

    def on_train_end(self, logs=None):
        self.calls.append(("train_end", dict(logs or {})))


def test_early_stopping_csv_logger_and_a_users_callback_see_keras_semantics(tmp_path):
    # min_delta so large that no epoch after the first improves: patience=1 stops after epoch 1.
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", min_delta=1e9, patience=1)
    recorder = Recorder()
    csv_path = tmp_path / "log.csv"
    history = lstmcore.train(
        make_model(), make_data(), validation_data=make_data(8, seed=1), epochs=5,
        batch_size=4, logdir=str(tmp_path), run_name="r", flush_every=3,
        callbacks=[stopper, keras.callbacks.CSVLogger(str(csv_path)), recorder], **QUIET,
    )  # fmt: skip
    # Two epochs of 4 steps ran, then EarlyStopping stopped the run (a checkpoint at step 8).
    np.testing.assert_array_equal(history["step"], np.arange(8))
    assert "stopped by a Keras callback" in history.stopped and "step 8" in history.stopped
    assert stopper.stopped_epoch == 1
    assert (tmp_path / "r" / "checkpoints" / "ckpt-8.index").exists()
    kinds = [c[0] for c in recorder.calls]
    assert kinds[0] == "train_begin" and kinds[-1] == "train_end"
    assert kinds.count("epoch_begin") == 2 and kinds.count("epoch_end") == 2
    batches = [c for c in recorder.calls if c[0] == "batch_end"]
    assert [c[1] for c in batches] == [0, 1, 2, 3, 0, 1, 2, 3]
    # The batch logs hold the epoch's running mean, as Keras's fit reports them.
    losses = history["loss"]
    assert batches[5][2] == pytest.approx(losses[4:6].mean(), rel=1e-6)
    ends = [c for c in recorder.calls if c[0] == "epoch_end"]
    for epoch, (_, number, logs) in enumerate(ends):
        assert number == epoch
        assert logs["loss"] == pytest.approx(losses[4 * epoch : 4 * epoch + 4].mean(), rel=1e-6)
        assert logs["val_loss"] == pytest.approx(history["val_loss"][epoch], rel=1e-6)
    # The validation hooks ran once per evaluation, before each epoch's end.
    assert kinds.index("test_end") < kinds.index("epoch_end")
    np.testing.assert_array_equal(history["val_step"], [4, 8])
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert float(rows[1]["val_loss"]) == pytest.approx(history["val_loss"][1], rel=1e-6)


@pytest.mark.parametrize("own_optimizer", [False, True], ids=["lstmcore schedule", "keras adam"])
def test_reduce_lr_on_plateau_changes_the_rate_actually_used(own_optimizer):
    # No epoch after the first counts as better: each later epoch end halves the rate.
    reduce = keras.callbacks.ReduceLROnPlateau(
        monitor="loss", factor=0.5, patience=0, min_delta=1e9
    )
    optimizer = keras.optimizers.Adam(1e-2) if own_optimizer else "adam"
    history = lstmcore.train(
        make_model(), make_data(), epochs=3, batch_size=8, learning_rate=1e-2,
        optimizer=optimizer, logdir=None, callbacks=[reduce], **QUIET,
    )  # fmt: skip
    np.testing.assert_allclose(
        history["learning_rate"], [1e-2, 1e-2, 1e-2, 1e-2, 5e-3, 5e-3], rtol=1e-6
    )


def test_terminate_on_nan_stops_at_the_flush_that_sees_it():
    x, y = make_data()
    y[9] = np.nan  # batch 2 (of 4 samples) holds a NaN target
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    history = lstmcore.train(
        make_model(), dataset, epochs=3, logdir=None, flush_every=1,
        callbacks=[keras.callbacks.TerminateOnNaN()], **QUIET,
    )  # fmt: skip
    assert np.isnan(history["loss"][2]) and history["skipped"][2] == 1
    assert len(history["loss"]) < 12
    assert "Keras callback" in history.stopped
