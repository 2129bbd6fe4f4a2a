"""lstmcore.Trainer: the loop, actions from outside the package, typed errors, NumPy options."""

import logging

import keras
import numpy as np
import pytest

import lstmcore
from lstmcore.actions import Action


def make_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((5, 2)), keras.layers.LSTM(4, name="lstm"), keras.layers.Dense(1)]
    )


def make_data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5, 2)).astype(np.float32)
    return x, x[:, -1, :1].copy()


QUIET = {"progress": False, "check": False, "probe_every": None}


class StopWhenValidationStalls(Action):
    """Early stopping on the validation loss: the one small class a user writes."""

    def __init__(self, every, patience, min_delta=0.0):
        self.every, self.patience, self.min_delta = every, patience, min_delta
        self.best, self.bad, self.seen = float("inf"), 0, []

    def next_step(self, trainer, step):
        return (step // self.every + 1) * self.every

    def at_step(self, trainer, step):
        loss = trainer.validation_loss(step)
        self.seen.append((step, loss))
        if loss < self.best - self.min_delta:
            self.best, self.bad = loss, 0
        else:
            self.bad += 1
        if self.bad >= self.patience:
            trainer.request_stop(f"validation loss stalled at step {step}")


class Spy(Action):
    def __init__(self, every):
        self.every, self.calls, self.flushed = every, [], []

    def on_start(self, trainer):
        self.calls.append(("start", trainer.step))

    def next_step(self, trainer, step):
        return (step // self.every + 1) * self.every

    def at_step(self, trainer, step):
        # Every step before this one was fetched and handed to on_flush first.
        assert self.flushed == list(range(step))
        self.calls.append(("at", step))

    def on_flush(self, trainer, values):
        self.flushed += values["step"].tolist()

    def on_end(self, trainer):
        self.calls.append(("end", len(trainer.history["loss"])))

    def close(self, trainer):
        self.calls.append(("close",))


@pytest.mark.slow
def test_a_users_early_stopping_action_stops_and_the_run_resumes(tmp_path):
    stopper = StopWhenValidationStalls(every=3, patience=1, min_delta=1e9)
    spy = Spy(every=5)
    trainer = lstmcore.Trainer(
        make_model(), make_data(), validation_data=make_data(8, seed=1), steps=40,
        batch_size=4, steps_per_execution=4, logdir=str(tmp_path), run_name="r",
        actions=[stopper, spy], **QUIET,
    )  # fmt: skip
    history = trainer.fit()
    # Checked at 3 (the best), then 6: stalled. Calls of 4 steps stopped at 3, 5 and 6.
    assert [s for s, _ in stopper.seen] == [3, 6]
    assert history.stopped == "validation loss stalled at step 6"
    np.testing.assert_array_equal(history["step"], np.arange(6))
    assert spy.calls == [("start", 0), ("at", 5), ("end", 6), ("close",)]
    assert spy.flushed == list(range(6))
    # Each evaluation ran once, and the checkpoint of the stop lets the run continue.
    assert history["val_step"].tolist().count(6) == 1
    assert (tmp_path / "r" / "checkpoints" / "ckpt-6.index").exists()
    resumed = lstmcore.train(
        make_model(), make_data(), validation_data=make_data(8, seed=1), steps=40,
        batch_size=4, steps_per_execution=4, logdir=str(tmp_path), run_name="r", resume=True,
        actions=[StopWhenValidationStalls(every=3, patience=2, min_delta=1e9)], **QUIET,
    )  # fmt: skip
    assert resumed["step"][0] == 6 and resumed.stopped == "validation loss stalled at step 15"


def test_numpy_scalars_are_accepted_and_give_the_same_run():
    def run(**options):
        return lstmcore.train(make_model(), make_data(), logdir=None, **QUIET, **options)

    python = run(steps=4, batch_size=4, warmup_steps=2, learning_rate=1e-3, clip_norm=1.0)
    numpy = run(
        steps=np.int64(4), batch_size=np.int32(4), warmup_steps=np.int64(2),
        learning_rate=np.float32(1e-3), clip_norm=np.float64(1.0),
    )  # fmt: skip
    np.testing.assert_array_equal(python["learning_rate"], numpy["learning_rate"])
    np.testing.assert_array_equal(python["loss"], numpy["loss"])
    assert python["learning_rate"][0] < python["learning_rate"][-1]  # the warmup took effect


def test_errors_are_typed_and_the_users_own_error_is_chained(tmp_path):
    with pytest.raises(lstmcore.ConfigError, match="log_every must be a positive integer; got 0"):
        lstmcore.Trainer(make_model(), make_data(), log_every=0, logdir=None)
    with pytest.raises(lstmcore.ConfigError, match="on_nonfinite must be one of"):
        lstmcore.Trainer(make_model(), make_data(), on_nonfinite="retry", logdir=None)
    with pytest.raises(lstmcore.ConfigError, match="actions must be lstmcore.actions.Action"):
        lstmcore.Trainer(make_model(), make_data(), actions=[object()], logdir=None)
    x, y = make_data()
    x[3, 2, 1] = np.nan
    with pytest.raises(lstmcore.DataError, match="NaN"):
        lstmcore.Trainer(make_model(), (x, y), logdir=str(tmp_path))

    class Broken(keras.Model):
        def call(self, inputs):
            raise RuntimeError("the user's own bug")

    with pytest.raises(lstmcore.DataError, match="could not be called") as caught:
        lstmcore.Trainer(Broken(), make_data(), logdir=str(tmp_path))
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert list(tmp_path.iterdir()) == []  # nothing was written

    def broken_loss(targets, predictions):
        raise KeyError("the user's loss bug")

    with pytest.raises(lstmcore.ConfigError, match="loss could not be called") as caught:
        lstmcore.Trainer(make_model(), make_data(), loss=broken_loss, logdir=None)
    assert isinstance(caught.value.__cause__, KeyError)


def test_messages_go_through_the_lstmcore_logger(tmp_path, caplog, capsys):
    with caplog.at_level(logging.INFO, logger="lstmcore"):
        lstmcore.train(make_model(), make_data(), steps=2, logdir=str(tmp_path), **QUIET)
    messages = [r.getMessage() for r in caplog.records if r.name == "lstmcore"]
    assert any(m.startswith("lstmcore: logging to ") for m in messages)
    assert "logging to" not in capsys.readouterr().out  # progress=False prints nothing


def test_a_keras_schedule_as_learning_rate_is_the_rate_used():
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-2, decay_steps=1, decay_rate=0.5)
    history = lstmcore.train(
        make_model(), make_data(), steps=3, batch_size=8, learning_rate=schedule, logdir=None,
        **QUIET,
    )  # fmt: skip
    np.testing.assert_allclose(history["learning_rate"], [1e-2, 5e-3, 2.5e-3], rtol=1e-6)
