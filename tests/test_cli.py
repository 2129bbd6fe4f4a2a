import os
import subprocess
import sys

import numpy as np

from lstmcore import cli
from lstmcore.diagnosis import read_scalars


def write_csv(path, rows=400):
    t = np.arange(rows)
    lines = ["time,temperature,load"]
    lines += [f"{i},{10 + np.sin(i / 5):.4f},{100 + 10 * np.sin(i / 7):.4f}" for i in t]
    path.write_text("\n".join(lines) + "\n")


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


def test_demo_shows_collapse_and_cure(tmp_path, capsys):
    assert cli.main(["demo", "--logdir", str(tmp_path), "--steps", "120", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "run raw" in out and "collapsed" in out.split("run raw")[1].splitlines()[0]
    assert "learns the series" in out.split("run normalized")[1].splitlines()[0]
    assert len(os.listdir(tmp_path)) == 2


def test_bench_runs_a_benchmark_by_name(capsys):
    assert cli.main(["bench", "windowing", "--smoke"]) == 0
    assert capsys.readouterr().out.strip()


def test_bench_refuses_an_unknown_benchmark(capsys):
    try:
        cli.main(["bench", "speed"])
    except SystemExit as exit:
        assert exit.code == 2
    assert "invalid choice: 'speed'" in capsys.readouterr().err
