import keras
import numpy as np
import pytest
import tensorflow as tf

import lstmcore
from lstmcore import cli
from lstmcore import keras as lstmcore_keras
from lstmcore.diagnosis import read_scalars

STEPS = 12


def windows(*, scaled, samples=256, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(samples + STEPS)
    series = 3000 + 400 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 25, len(t))
    if scaled:
        series = (series - series.mean()) / series.std()
    x = np.stack([series[i : i + STEPS] for i in range(samples)])[:, :, None]
    return x.astype(np.float32), series[STEPS : STEPS + samples, None].astype(np.float32)


def model(*, outputs=1, steps_per_execution=1):
    keras.utils.set_random_seed(0)
    net = keras.Sequential(
        [keras.Input((STEPS, 1)), keras.layers.LSTM(8, name="lstm"), keras.layers.Dense(outputs)]
    )
    net.compile(optimizer="adam", loss="mse", steps_per_execution=steps_per_execution)
    return net


def codes(findings):
    return [f.code for f in findings]


@pytest.mark.slow
def test_raw_inputs_give_the_same_findings_as_train():
    x, y = windows(scaled=False)
    callback = lstmcore_keras.Diagnose((x, y), verbose=False)
    model().fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[callback])
    history = lstmcore.train(
        model(), (x, y), steps=4, batch_size=64, logdir=None, progress=False, probe_every=None
    )
    assert codes(callback.findings) == [f["code"] for f in history.findings]
    scale = next(f for f in callback.findings if f.code == "unnormalised_inputs")
    assert "Saturated share in the first LSTM" in scale.evidence
    assert callback.notes == []


@pytest.mark.slow
def test_next_to_keras_tensorboard_the_probe_tags_and_findings_are_written(tmp_path):
    x, y = windows(scaled=True)
    callback = lstmcore_keras.Diagnose(
        (x[:192], y[:192]),
        validation_data=(x[192:], y[192:]),
        log_dir=tmp_path,
        budget=0,
        verbose=False,
    )
    model().fit(
        x[:192],
        y[:192],
        epochs=2,
        batch_size=32,
        verbose=0,
        callbacks=[keras.callbacks.TensorBoard(str(tmp_path)), callback],
    )
    assert "unnormalised_inputs" not in codes(callback.findings)
    scalars = read_scalars(str(tmp_path / "lstmcore"))
    probe_steps, _ = scalars["probe/memory_horizon"]
    assert probe_steps[0] == 0 and probe_steps[-1] == 12 and len(probe_steps) >= 10
    for tag in ("probe/loss_to_mean_baseline", "probe/lstm/forget_gate_mean"):
        assert tag in scalars
    for gate in "ifco":
        steps, norms = scalars[f"grad_norm/lstm/recurrent_kernel/{gate}"]
        np.testing.assert_array_equal(steps, probe_steps)
        assert (norms > 0).all()
    texts = {
        value.tag
        for path in (tmp_path / "lstmcore").glob("events.out.tfevents.*")
        for event in tf.compat.v1.train.summary_iterator(str(path))
        for value in event.summary.value
    }
    assert {"diagnosis/after_training", "kernels", "probe/input_grad"} <= texts
    assert list((tmp_path / "train").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_two_raw_samples_with_labels_one_and_zero_fit_to_the_end_with_findings():
    x = np.array([[1000, 2000, 3000], [4000, 5000, 6000]], np.float32).reshape(2, 3, 1)
    y = np.array([1, 0])
    keras.utils.set_random_seed(0)
    net = keras.Sequential(
        [keras.Input((3, 1)), keras.layers.LSTM(4), keras.layers.Dense(1, activation="sigmoid")]
    )
    net.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    callback = lstmcore_keras.Diagnose((x, y), verbose=False)
    history = net.fit(x, y, epochs=5, verbose=0, callbacks=[callback])
    assert len(history.epoch) == 5
    assert codes(callback.findings)[:2] == ["unnormalised_inputs", "too_little_data"]
    assert callback.notes == []


@pytest.mark.slow
def test_stop_on_high_stops_fit_after_its_first_call():
    x, y = windows(scaled=False)
    net = model()
    callback = lstmcore_keras.Diagnose((x, y), stop_on="high", verbose=False)
    history = net.fit(x, y, epochs=3, batch_size=64, verbose=0, callbacks=[callback])
    assert history.epoch == [0]
    assert int(net.optimizer.iterations.numpy()) == 1
    assert "unnormalised_inputs" in callback.stopped


@pytest.mark.slow
def test_with_steps_per_execution_probes_run_at_the_end_of_the_call_reaching_their_step(
    tmp_path,
):
    x, y = windows(scaled=True, samples=80)
    net = model(steps_per_execution=4)
    callback = lstmcore_keras.Diagnose(
        (x, y), log_dir=tmp_path, probe_every=4, budget=0, verbose=False
    )
    net.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[callback])
    # 10 steps per epoch in calls of 4, 4 and 2 steps.
    steps, _ = read_scalars(str(tmp_path / "lstmcore"))["probe/loss"]
    np.testing.assert_array_equal(steps, [0, 4, 8, 14, 18, 20])
    assert int(net.optimizer.iterations.numpy()) == 20


@pytest.mark.slow
def test_fit_with_the_callback_ends_with_the_weights_of_fit_without_it():
    x, y = windows(scaled=True, samples=64)
    plain = model()
    plain.fit(x, y, epochs=2, batch_size=16, verbose=0)
    watched = model()
    callback = lstmcore_keras.Diagnose((x, y), probe_every=3, budget=0, verbose=False)
    watched.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[callback])
    np.testing.assert_array_equal(callback.probes["step"], [0, 3, 6, 8])
    for a, b in zip(plain.get_weights(), watched.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_targets_the_model_cannot_predict_stop_fit_with_trains_message():
    x, y = windows(scaled=True, samples=64)
    y3 = np.repeat(y, 3, axis=1)
    with pytest.raises(ValueError) as from_train:
        lstmcore.train(model(), (x, y3), steps=1, logdir=None, progress=False)
    with pytest.raises(ValueError) as from_fit:
        model().fit(x, y3, epochs=1, verbose=0, callbacks=[lstmcore_keras.Diagnose((x, y3))])
    assert str(from_fit.value) == str(from_train.value)
    assert "targets have shape (3,) per sample but the model predicts (1,)" in str(from_fit.value)


@pytest.mark.slow
def test_a_mirrored_strategy_fit_is_probed(tmp_path):
    x, y = windows(scaled=True, samples=64)
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        net = model()
    callback = lstmcore_keras.Diagnose(
        (x, y), log_dir=tmp_path, probe_every=1, budget=0, verbose=False
    )
    net.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[callback])
    steps, _ = read_scalars(str(tmp_path / "lstmcore"))["probe/loss"]
    np.testing.assert_array_equal(steps, [0, 1, 2])
    assert callback.notes == []


def test_a_multi_machine_strategy_is_refused_before_the_first_step(monkeypatch):
    x, y = windows(scaled=True, samples=32)
    net = model()
    monkeypatch.setattr(lstmcore_keras, "REFUSED_STRATEGIES", (type(net.distribute_strategy),))
    with pytest.raises(ValueError, match="supports the default, OneDevice and Mirrored"):
        net.fit(x, y, epochs=1, verbose=0, callbacks=[lstmcore_keras.Diagnose((x, y))])
    assert int(net.optimizer.iterations.numpy()) == 0


@pytest.mark.parametrize(
    "arguments, message",
    [
        (
            {"data": (np.zeros((4, 3)), np.zeros(4))},
            r"data inputs must be 3-D .* got shape \(4, 3\)",
        ),
        ({"data": None}, "data is None"),
        ({"probe_every": 0}, "probe_every must be a positive integer, 'auto' or None; got 0"),
        ({"probe_every": "often"}, "probe_every must be a positive integer, .* got 'often'"),
        (
            {"stop_on": "always"},
            r"stop_on must be one of \('high', 'medium'\) or None; got 'always'",
        ),
        ({"budget": -1}, "budget must be a fraction of the run's steps in"),
        ({"validation_data": (np.zeros((4, 3, 1)),)}, "validation_data must be a pair"),
    ],
)
def test_bad_arguments_are_refused_at_construction_naming_the_argument(arguments, message):
    data = arguments.pop("data", (np.zeros((4, 3, 1)), np.zeros(4)))
    with pytest.raises(ValueError, match=message):
        lstmcore_keras.Diagnose(data, **arguments)


def test_a_log_dir_that_is_a_file_is_refused_before_anything_is_written(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="is a file"):
        lstmcore_keras.Diagnose((np.zeros((4, 3, 1)), np.zeros(4)), log_dir=blocker)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.slow
def test_cli_diagnose_model_on_npz_names_the_cause(tmp_path, capsys):
    x, y = windows(scaled=False, samples=128)
    net = model()
    net.fit(x, y, epochs=1, batch_size=64, verbose=0)
    net.save(tmp_path / "model.keras")
    np.savez(tmp_path / "windows.npz", x=x, y=y)
    model_path, data_path = str(tmp_path / "model.keras"), str(tmp_path / "windows.npz")
    code = cli.main(["diagnose", "--model", model_path, "--data", data_path, "--budget", "0"])
    out = capsys.readouterr().out
    assert code == 0
    assert "1. [high] Inputs are not normalised (unnormalised_inputs" in out


def test_cli_diagnose_csv_windows_default_to_the_models_input_steps(tmp_path, capsys):
    t = np.arange(300)
    rows = [f"{i},{3000 + 400 * np.sin(i / 4):.3f}" for i in t]
    (tmp_path / "load.csv").write_text("hour,load\n" + "\n".join(rows) + "\n")
    model().save(tmp_path / "model.keras")
    code = cli.main(
        [
            "diagnose",
            "--model",
            str(tmp_path / "model.keras"),
            "--csv",
            str(tmp_path / "load.csv"),
            "--target",
            "load",
            "--time-column",
            "hour",
            "--budget",
            "0",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "unnormalised_inputs" not in out and "lstmcore diagnose:" in out


def test_cli_diagnose_loads_with_safe_mode_and_refuses_code_in_the_file(tmp_path, capsys):
    keras.utils.set_random_seed(0)
    net = keras.Sequential(
        [keras.Input((STEPS, 1)), keras.layers.Lambda(lambda v: v * 2), keras.layers.LSTM(2)]
    )
    net.save(tmp_path / "lambda.keras")
    np.savez(tmp_path / "w.npz", x=np.zeros((4, STEPS, 1)), y=np.zeros((4, 2)))
    code = cli.main(
        ["diagnose", "--model", str(tmp_path / "lambda.keras"), "--data", str(tmp_path / "w.npz")]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "could not be loaded with safe_mode=True" in err and "lambda" in err.lower()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--data", "w.npz"], "got --data without --model"),
        (["--model", "m.keras"], "--model needs exactly one of --data FILE.npz or --csv FILE"),
        (["--model", "m.keras", "--csv", "s.csv"], "--csv needs --target"),
        (["--model", "missing.keras", "--data", "w.npz"], "--model 'missing.keras' does not exist"),
        (["."], "holds no TensorBoard event files"),
    ],
)
def test_cli_diagnose_bad_arguments_exit_2_with_one_line(
    tmp_path, monkeypatch, capsys, argv, message
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.keras").write_text("")
    (tmp_path / "w.npz").write_text("")
    assert cli.main(["diagnose", *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_the_fit_callback_benchmark_runs_on_its_smallest_problem(tmp_path):
    from benchmarks import fit_callback

    (result,) = fit_callback.main(["--smoke", "--json", str(tmp_path / "r.jsonl")])
    assert result["ratio"] > 0 and result["probe_calls"] == 9  # steps 0 to 8
    assert (tmp_path / "r.jsonl").read_text().count("\n") == 1


@pytest.mark.slow
def test_a_relu_head_is_named_by_the_fit_callback_as_by_train():
    x, y = windows(scaled=True)
    net = keras.Sequential(
        [
            keras.Input((STEPS, 1)),
            keras.layers.LSTM(8, name="lstm"),
            keras.layers.Dense(1, activation="relu", name="head"),
        ]
    )
    net.compile(optimizer="adam", loss="mse")
    callback = lstmcore_keras.Diagnose((x, y), probe_every=None, budget=0, verbose=False)
    net.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[callback])
    assert codes(callback.findings)[0] == "output_cannot_reach_targets"
    assert "relu" in callback.findings[0].evidence


def test_bad_model_options_and_files_raise_typed_errors(tmp_path):
    from lstmcore import diagnosis, models

    with pytest.raises(lstmcore.ConfigError, match="units must be a positive integer; got 0"):
        models.forecaster(input_steps=4, features=1, outputs=1, units=0)
    with pytest.raises(lstmcore.ConfigError, match=r"dropout must be in \[0, 1\); got 1.5"):
        models.forecaster(input_steps=4, features=1, outputs=1, dropout=1.5)
    with pytest.raises(lstmcore.ConfigError, match="must be a .keras file"):
        lstmcore_keras.load_model(tmp_path / "model.h5")
    with pytest.raises(lstmcore.ConfigError, match="does not exist or is not a file"):
        lstmcore_keras.load_model(tmp_path / "missing.keras")
    (tmp_path / "broken.keras").write_text("not a zip file")
    with pytest.raises(lstmcore.DataError, match="could not be loaded with safe_mode=True"):
        lstmcore_keras.load_model(tmp_path / "broken.keras")
    with pytest.raises(lstmcore.DataError, match="holds no TensorBoard event files"):
        diagnosis.find_run_dir(str(tmp_path))
