import os
import subprocess
import sys

import numpy as np
import pytest

from lstmcore import cli
from lstmcore.diagnosis import read_scalars


def write_csv(path, rows=400):
    t = np.arange(rows)
    lines = ["time,temperature,load"]
    lines += [f"{i},{10 + np.sin(i / 5):.4f},{100 + 10 * np.sin(i / 7):.4f}" for i in t]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.slow
def test_train_on_a_csv_saves_a_model_that_loads(tmp_path, capsys):
    csv = tmp_path / "series.csv"
    write_csv(csv)
    code = cli.main(
        [
            "train",
            "--csv",
            str(csv),
            "--target",
            "load",
            "--time-column",
            "time",
            "--window",
            "12",
            "--steps",
            "6",
            "--units",
            "4",
            "--logdir",
            str(tmp_path / "runs"),
            "--run-name",
            "r",
            "--steps-per-execution",
            "4",
            "--no-progress",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "tensorboard --logdir" in out
    import keras

    model = keras.saving.load_model(tmp_path / "runs" / "r" / "model.keras")
    # The default features are the target column alone.
    assert model.predict(np.zeros((1, 12, 1), np.float32), verbose=0).shape == (1, 1)
    assert (tmp_path / "runs" / "r" / "data_report.json").exists()
    # Calls of 4 and 2 steps: every step is in TensorBoard.
    steps, _ = read_scalars(str(tmp_path / "runs" / "r"))["train/loss"]
    np.testing.assert_array_equal(steps, np.arange(6))


@pytest.mark.slow
def test_a_missing_column_prints_one_line_and_exits_2(tmp_path):
    csv = tmp_path / "series.csv"
    write_csv(csv, rows=50)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lstmcore",
            "train",
            "--csv",
            str(csv),
            "--target",
            "price",
            "--logdir",
            str(tmp_path / "runs"),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "price" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "runs").exists()


def test_a_bad_number_exits_2(capsys):
    try:
        cli.main(["train", "--csv", "x.csv", "--target", "y", "--window", "-3"])
    except SystemExit as exit:
        assert exit.code == 2
    assert "expected a positive integer, got '-3'" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_shows_collapse_and_cure_in_runs_named_by_what_they_show(tmp_path, capsys):
    assert cli.main(["demo", "--logdir", str(tmp_path), "--steps", "120", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "collapsed" in out.split("run raw-inputs")[1].splitlines()[0]
    assert "learns the series" in out.split("run normalised-inputs")[1].splitlines()[0]
    assert sorted(os.listdir(tmp_path)) == ["normalised-inputs", "raw-inputs"]
    assert out.strip().splitlines()[-1].strip().startswith("model.fit(x, y, callbacks=")


def test_demo_run_names_never_reuse_an_existing_run(tmp_path):
    from lstmcore import demo

    (tmp_path / "raw-inputs").mkdir()
    assert demo._free_run_names(str(tmp_path), ("raw-inputs", "normalised-inputs")) == [
        "raw-inputs-2",
        "normalised-inputs-2",
    ]


def test_bench_runs_a_benchmark_by_name(capsys):
    assert cli.main(["bench", "windowing", "--smoke"]) == 0
    assert capsys.readouterr().out.strip()


def test_bench_refuses_an_unknown_benchmark(capsys):
    try:
        cli.main(["bench", "speed"])
    except SystemExit as exit:
        assert exit.code == 2
    assert "invalid choice: 'speed'" in capsys.readouterr().err


def run_train(tmp_path, csv, *extra):
    return cli.main(
        ["train", "--csv", str(csv), "--target", "load", "--time-column", "time", "--steps", "3"]
        + ["--units", "4", "--logdir", str(tmp_path / "runs"), "--run-name", "r", "--no-progress"]
        + list(extra)
    )


@pytest.mark.slow
def test_train_ends_with_the_skill_against_the_baselines_on_both_splits(tmp_path, capsys):
    csv = tmp_path / "series.csv"
    write_csv(csv, rows=120)
    assert run_train(tmp_path, csv, "--season", "none") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    skill = [line for line in lines if line.startswith(("validation: model", "test: model"))]
    assert [line.split(":")[0] for line in skill] == ["validation", "test"]
    assert all("x persistence" in line and "x mean" in line for line in skill)
    import json

    report = json.loads((tmp_path / "runs" / "r" / "forecast_report.json").read_text())
    # 120 rows: the smallest split holds 18, so the default window is 18 // 2 - 1 = 8.
    assert report["window"] == 8 and report["target_mode"] == "window_norm"
    ratio = report["test"]["ratios"]["persistence"]
    assert f"test: model {ratio:.3g} x persistence" in skill[1]
    assert (ratio >= 1) == any("WORSE than persistence" in line for line in lines[-2:])


@pytest.mark.slow
def test_a_relative_target_mode_saves_a_model_that_predicts_levels(tmp_path):
    csv = tmp_path / "series.csv"
    write_csv(csv, rows=120)
    from lstmcore import keras as lstmcore_keras

    assert (
        cli.main(
            ["train", "--csv", str(csv), "--target", "load", "--steps", "2", "--units", "4"]
            + ["--window", "6", "--target-mode", "change", "--logdir", str(tmp_path / "runs")]
            + ["--run-name", "r", "--no-progress", "--normalize", "none"]
        )
        == 0
    )
    model = lstmcore_keras.load_model(tmp_path / "runs" / "r" / "model.keras")
    assert model.get_layer("add_last_value").target_features == [0]
    # The baselines score level targets: persistence is the last value, not a zero change.
    import json

    report = json.loads((tmp_path / "runs" / "r" / "forecast_report.json").read_text())
    loads = 100 + 10 * np.sin(np.arange(120) / 7)
    rows = np.arange(120)[-report["test"]["windows"] :]
    expected = np.mean((loads[rows] - loads[rows - 1]) ** 2)
    assert report["test"]["persistence"] == pytest.approx(expected, rel=1e-3)
    # Raw megawatts in, raw megawatts out: the change head adds the last value back.
    constant = np.full((1, 6, 1), 100.0, np.float32)
    assert abs(float(model.predict(constant, verbose=0)[0, 0]) - 100.0) < 5.0


@pytest.mark.slow
def test_default_features_leave_unrelated_text_columns_alone(tmp_path):
    csv = tmp_path / "series.csv"
    rows = ["time,note,load"] + [f"{i},day {i},{100 + np.sin(i / 3):.3f}" for i in range(120)]
    csv.write_text("\n".join(rows) + "\n")
    assert run_train(tmp_path, csv) == 0


@pytest.mark.parametrize(
    "extra, flag",
    [
        (["--splits", "0.5", "0.3", "0.3"], "--splits"),
        (["--window", "40"], "--window"),
        (["--gap", "2", "--window", "8"], "--gap"),
        (["--features", "temperature", "--target-mode", "change"], "--features"),
    ],
)
def test_bad_options_name_the_flag_and_write_nothing(tmp_path, capsys, extra, flag):
    csv = tmp_path / "series.csv"
    write_csv(csv, rows=120)
    assert run_train(tmp_path, csv, *extra) == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("lstmcore train: error:") and flag in message
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--splits", "0.7", "0.3"], "expected 3 arguments"),
        (["--splits", "0.7", "0.3", "1.5"], "expected a fraction in (0, 1), got '1.5'"),
        (["--gap", "-1"], "expected an integer >= 0, got '-1'"),
        (["--season", "1"], "expected a season length >= 2 rows, 'auto' or 'none'; got '1'"),
        (["--target-mode", "delta"], "invalid choice: 'delta'"),
        (["--normalize", "minmax"], "invalid choice: 'minmax'"),
    ],
)
def test_malformed_option_values_exit_2(capsys, extra, expected):
    with pytest.raises(SystemExit) as exit:
        cli.main(["train", "--csv", "x.csv", "--target", "y", *extra])
    assert exit.value.code == 2
    assert expected in capsys.readouterr().err


def test_the_missing_value_error_names_the_cli_flag(tmp_path, capsys):
    csv = tmp_path / "series.csv"
    csv.write_text("time,load\n0,1\n1,\n2,3\n")
    assert run_train(tmp_path, csv) == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--missing drop|ffill|interpolate" in message and "read_csv" not in message


def test_cli_target_modes_are_the_model_target_forms():
    from lstmcore import target_forms

    assert cli.TARGET_MODES == target_forms.TARGET_MODES


def test_every_benchmark_module_is_a_bench_choice():
    import pathlib

    folder = pathlib.Path(__file__).parent.parent / "benchmarks"
    modules = {path.stem for path in folder.glob("*.py") if "def main(argv" in path.read_text()}
    assert modules == set(cli.BENCHMARKS)


def test_train_choices_are_the_registries_names_including_a_users():
    from lstmcore import clipping, optimizers, schedules

    parser = cli.build_parser()
    base = ["train", "--csv", "x.csv", "--target", "y"]
    for flag, registry in (
        ("--clip", clipping.CLIPPERS),
        ("--optimizer", optimizers.OPTIMIZERS),
        ("--warmup", schedules.WARMUPS),
        ("--decay", schedules.DECAYS),
    ):
        for name in registry.names():
            parser.parse_args([*base, flag, name])
    clipping.CLIPPERS.register("users_clip")(clipping.GlobalNorm)
    try:
        assert parser.parse_args([*base, "--clip", "users_clip"]).clip == "users_clip"
    finally:
        del clipping.CLIPPERS._entries["users_clip"]
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--clip", "users_clip"])


def test_a_bug_is_not_a_usage_error(tmp_path, monkeypatch):
    # A ValueError that is not lstmcore's ConfigError or DataError (here from the model
    # builder) is a bug: it keeps its traceback instead of becoming "usage error, exit 2".
    from lstmcore import models

    def broken(*args, **kwargs):
        raise ValueError("a bug in the model builder")

    monkeypatch.setattr(models, "forecaster", broken)
    csv = tmp_path / "series.csv"
    write_csv(csv, rows=120)
    with pytest.raises(ValueError, match="a bug in the model builder"):
        run_train(tmp_path, csv)


@pytest.mark.parametrize(
    "extra, flag",
    [
        (["--csv", "no_such.csv"], "--csv"),
        (["--target", "price"], "--target"),
        (["--time-column", "t"], "--time-column"),
        (["--features", "time"], "--features"),
        (["--horizon", "50"], "--horizon"),
        (["--warmup-steps", "10"], "--warmup-steps"),
        (["--resume", "--logdir", "no_runs_here"], "--resume"),
    ],
)
def test_every_bad_input_of_train_csv_exits_2_naming_the_flag(
    tmp_path, monkeypatch, capsys, extra, flag
):
    monkeypatch.chdir(tmp_path)
    write_csv(tmp_path / "series.csv", rows=120)
    argv = ["train", "--csv", "series.csv", "--target", "load", "--time-column", "time"]
    argv += ["--steps", "3", "--units", "4", "--no-progress", *extra]
    assert cli.main(argv) == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("lstmcore train: error:") and flag in message, message
    assert not (tmp_path / "runs").exists()
