import json
import logging
import subprocess
import sys

import numpy as np
import pytest

from lstmcore import data


def raw_windows(series, **kwargs):
    kwargs.setdefault("normalize", None)
    kwargs.setdefault("shuffle_train", False)
    return data.windows(series, **kwargs)


def rows_used(windowed, split):
    steps = windowed.report["input_steps"] + windowed.report["horizon"]
    starts = windowed.window_starts(split)
    return set((starts[:, None] + np.arange(steps)).ravel().tolist())


def dataset_arrays(dataset):
    inputs, targets = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
    return np.concatenate(inputs), np.concatenate(targets)


def write(tmp_path, text, name="series.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


# Windows on np.arange, checked by hand.


def test_arange_windows_first_and_last_of_each_split():
    windowed = raw_windows(np.arange(100.0), input_steps=5)
    expected = {
        "train": ([0, 70], [0, 1, 2, 3, 4], 5, [64, 65, 66, 67, 68], 69, 65),
        "validation": ([70, 85], [70, 71, 72, 73, 74], 75, [79, 80, 81, 82, 83], 84, 10),
        "test": ([85, 100], [85, 86, 87, 88, 89], 90, [94, 95, 96, 97, 98], 99, 10),
    }
    for split, (rows, first_x, first_y, last_x, last_y, count) in expected.items():
        x, y = windowed.arrays(split)
        assert windowed.report["splits"][split]["rows"] == rows
        assert windowed.report["splits"][split]["windows"] == count
        assert x.shape == (count, 5, 1) and y.shape == (count, 1)
        assert x[0, :, 0].tolist() == first_x and y[0].tolist() == [first_y]
        assert x[-1, :, 0].tolist() == last_x and y[-1].tolist() == [last_y]


def test_default_gap_skips_input_steps_plus_horizon_minus_one_window_positions():
    windowed = raw_windows(np.arange(100.0), input_steps=5, horizon=2)
    splits = windowed.report["splits"]
    assert windowed.report["gap"] == 6
    assert splits["validation"]["first_window_start"] - splits["train"]["last_window_start"] == 7
    assert splits["test"]["first_window_start"] - splits["validation"]["last_window_start"] == 7


def test_larger_gap_leaves_unused_rows_between_splits():
    windowed = raw_windows(np.arange(104.0), input_steps=5, gap=7)
    splits = windowed.report["splits"]
    assert [splits[name]["rows"] for name in data.SPLIT_NAMES] == [[0, 70], [72, 87], [89, 104]]
    assert splits["validation"]["first_window_start"] - splits["train"]["last_window_start"] == 8


@pytest.mark.parametrize(
    "input_steps, horizon, stride, gap",
    [(1, 1, 1, None), (5, 1, 1, None), (4, 3, 1, None), (7, 2, 3, None), (3, 2, 2, 9)],
)
def test_no_row_is_shared_between_splits(input_steps, horizon, stride, gap):
    windowed = raw_windows(
        np.arange(200.0), input_steps=input_steps, horizon=horizon, stride=stride, gap=gap
    )
    train, validation, test = (rows_used(windowed, name) for name in data.SPLIT_NAMES)
    assert not train & validation and not train & test and not validation & test
    assert max(train) < min(validation) and max(validation) < min(test)


def test_stride_spaces_window_starts_within_each_split():
    windowed = raw_windows(np.arange(100.0), input_steps=5, stride=4)
    assert windowed.window_starts("train").tolist() == list(range(0, 65, 4))
    assert windowed.window_starts("validation").tolist() == [70, 74, 78]


def test_multistep_horizon_and_two_targets_are_flat_step_major():
    series = np.arange(60.0).reshape(20, 3)
    windowed = raw_windows(
        series, input_steps=2, horizon=2, targets=[0, 2], splits=(0.5, 0.25, 0.25)
    )
    x, y = windowed.arrays("validation")
    assert windowed.report["splits"]["validation"]["rows"] == [10, 15]
    assert x[0].tolist() == [[30, 31, 32], [33, 34, 35]]
    assert y.tolist() == [[36, 38, 39, 41], [39, 41, 42, 44]]
    assert windowed.report["target_columns"] == ["column_0", "column_2"]


def test_default_targets_are_the_last_column_and_features_all_columns():
    windowed = raw_windows(np.arange(60.0).reshape(20, 3), input_steps=2)
    x, y = windowed.arrays("train")
    assert x.shape[2] == 3
    assert y[0].tolist() == [8.0]


def test_feature_subset_by_index_and_negative_target_index():
    windowed = raw_windows(np.arange(60.0).reshape(20, 3), input_steps=2, features=[1], targets=-1)
    x, y = windowed.arrays("train")
    assert x[0, :, 0].tolist() == [1, 4] and y[0].tolist() == [8]


def test_datasets_yield_the_windows_of_arrays():
    windowed = raw_windows(np.arange(100.0), input_steps=5, batch_size=4, shuffle_train=True)
    for split in ("validation", "test"):
        x, y = dataset_arrays(getattr(windowed, split))
        expected_x, expected_y = windowed.arrays(split)
        np.testing.assert_array_equal(x, expected_x)
        np.testing.assert_array_equal(y, expected_y)
    x, y = dataset_arrays(windowed.train)
    expected_x, _ = windowed.arrays("train")
    assert sorted(x[:, 0, 0].tolist()) == expected_x[:, 0, 0].tolist()
    np.testing.assert_array_equal(y[:, 0], x[:, -1, 0] + 1)
    assert int(windowed.validation.cardinality()) == 3 and int(windowed.train.cardinality()) == 17
    assert windowed.train.element_spec[0].shape.as_list() == [None, 5, 1]
    assert windowed.train.element_spec[1].shape.as_list() == [None, 1]


# Scaling.


def test_scaler_statistics_are_those_of_the_training_rows_alone():
    series = np.concatenate([np.arange(70.0), np.full(30, 1000.0)])
    series = np.stack([series, 2 * series], axis=1)
    windowed = data.windows(series, input_steps=5)
    np.testing.assert_allclose(windowed.scaler.mean, [34.5, 69.0])
    np.testing.assert_allclose(windowed.scaler.std, np.arange(70.0).std() * np.array([1, 2]))
    x, _ = windowed.arrays("train")
    assert x[0, 0, 0] == pytest.approx(-34.5 / np.arange(70.0).std())


def test_predictions_round_trip_to_the_original_scale():
    series = np.stack([np.arange(100.0), 10 * np.arange(100.0) + 3], axis=1)
    windowed = data.windows(series, input_steps=4, horizon=2, targets=[1, 0])
    _, y = dataset_arrays(windowed.test)
    original = windowed.inverse_transform_targets(y)
    start = windowed.window_starts("test")[0] + 4
    np.testing.assert_allclose(original[0], [10 * start + 3, start, 10 * start + 13, start + 1])
    shaped = windowed.inverse_transform_targets(y.reshape(-1, 2, 2))
    np.testing.assert_allclose(shaped.reshape(-1, 4), original)


def test_scaler_round_trips_through_json_and_applies_unchanged():
    series = np.arange(100.0)
    first = data.windows(series, input_steps=5)
    scaler = data.Scaler.from_dict(json.loads(json.dumps(first.scaler.to_dict())))
    second = data.windows(series, input_steps=5, normalize=scaler)
    assert second.report["normalize"] == "given"
    np.testing.assert_array_equal(second.arrays("test")[0], first.arrays("test")[0])
    np.testing.assert_allclose(scaler.inverse_transform(scaler.transform([[3.0]])), [[3.0]])


def test_scaler_from_another_column_layout_raises():
    scaler = data.fit_scaler(np.arange(10.0), columns=["load"])
    with pytest.raises(ValueError, match=r"fitted on columns \['load'\].*\['column_0'\]"):
        data.windows(np.arange(100.0), input_steps=5, normalize=scaler)


def test_constant_training_column_gets_std_one_with_a_warning():
    series = np.stack([np.full(100, 5.0), np.arange(100.0)], axis=1)
    with pytest.warns(RuntimeWarning, match="'column_0' is constant"):
        windowed = data.windows(series, input_steps=5)
    assert windowed.scaler.std[0] == 1.0 and windowed.scaler.mean[0] == 5.0


def test_inference_windows_match_training_windows():
    windowed = data.windows(np.arange(100.0), input_steps=5)
    inputs = data.inference_windows(np.arange(100.0), input_steps=5, scaler=windowed.scaler)
    x, _ = windowed.arrays("validation")
    assert inputs.shape == (96, 5, 1)
    np.testing.assert_allclose(inputs[70], x[0])


# Shuffling.


def test_training_shuffle_is_determined_by_the_seed():
    def first_epochs(seed):
        windowed = data.windows(np.arange(200.0), input_steps=3, batch_size=8, seed=seed)
        return [dataset_arrays(windowed.train)[0][:, 0, 0].tolist() for _ in range(2)]

    same_a, same_b, other = first_epochs(0), first_epochs(0), first_epochs(1)
    assert same_a == same_b
    assert same_a[0] != other[0]
    assert same_a[0] != sorted(same_a[0])  # shuffled
    assert same_a[0] == same_a[1]  # one seeded order on every pass (what makes a resume exact)


RESUME_SCRIPT = """
import sys
import numpy as np
import tensorflow as tf
from lstmcore import data

windowed = data.windows(np.arange(200.0), input_steps=3, batch_size=8, seed=3)
iterator = iter(windowed.train.repeat())  # as the trainer does, then checkpoints the iterator
checkpoint = tf.train.Checkpoint(iterator=iterator)
if sys.argv[1] == "save":
    for _ in range(int(windowed.train.cardinality()) + 6):  # stop inside the second epoch
        next(iterator)
    checkpoint.write(sys.argv[2])
else:
    checkpoint.read(sys.argv[2]).assert_consumed()
print([next(iterator)[0].numpy()[:, 0, 0].round(4).tolist() for _ in range(30)])
"""


@pytest.mark.slow
def test_training_batches_resume_exactly_in_a_new_process(tmp_path):
    # A run stopped inside its second epoch and resumed in another process must see the
    # batches of the uninterrupted run (a stateful reshuffle gave other batches there).
    def run(mode):
        command = [sys.executable, "-c", RESUME_SCRIPT, mode, str(tmp_path / "ckpt")]
        result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout.strip().splitlines()[-1]

    uninterrupted = run("save")
    assert run("restore") == uninterrupted


# Report and logging.


def test_report_is_json_serialisable_and_logged(caplog):
    with caplog.at_level(logging.INFO, logger="lstmcore.data"):
        windowed = data.windows(np.arange(100.0), input_steps=5)
    report = json.loads(json.dumps(windowed.to_dict()))
    assert report["scaler"]["mean"] == [34.5]
    assert "windows train: rows [0, 70), 65 windows" in caplog.text
    assert "34.5" in caplog.text


# Bad input.


@pytest.mark.parametrize(
    "series, kwargs, message",
    [
        (np.arange(5.0), {"input_steps": 5}, r"5 rows, fewer than .* = 6"),
        (np.arange(100.0), {"input_steps": 0}, r"input_steps must be a positive integer; got 0"),
        (
            np.arange(100.0),
            {"input_steps": 5, "horizon": 0},
            r"horizon must be a positive integer; got 0",
        ),
        (
            np.arange(100.0),
            {"input_steps": 5, "stride": -1},
            r"stride must be a positive integer; got -1",
        ),
        (np.arange(100.0), {"input_steps": 5, "splits": (0.7, 0.2, 0.2)}, r"sum to 1"),
        (np.arange(100.0), {"input_steps": 5, "splits": (0.8, 0.2, 0.0)}, r"test fraction"),
        (np.arange(100.0), {"input_steps": 5, "splits": (0.5, 0.5)}, r"three fractions"),
        (np.arange(100.0), {"input_steps": 5, "splits": (0.9, 0.05, 0.05)}, r"validation split"),
        (np.arange(100.0), {"input_steps": 5, "gap": 2}, r"gap must be >= .* = 5.*got gap=2"),
        (np.arange(100.0), {"input_steps": 5, "targets": "load"}, r"'load' does not exist"),
        (np.arange(100.0), {"input_steps": 5, "targets": 3}, r"index 3 is out of range"),
        (np.arange(100.0), {"input_steps": 5, "normalize": "all"}, r"normalize must be"),
        (np.zeros((4, 5, 1)), {"input_steps": 1}, r"1-D \[time\] or 2-D"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_them(series, kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.windows(series, **kwargs)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_values_raise_naming_row_and_column(bad):
    series = np.arange(40.0).reshape(20, 2)
    series[7, 1] = bad
    with pytest.raises(ValueError, match=r"row 7, column 1 \('column_1'\)"):
        data.windows(series, input_steps=2)


# CSV.


def test_read_csv_with_numeric_time_feeds_windows(tmp_path):
    text = "t,temp,load\n" + "".join(f"{i},{2 * i},{3 * i}\n" for i in range(20))
    series = data.read_csv(write(tmp_path, text), target="load", time_column="t")
    assert series.columns == ("temp", "load") and series.target_columns == ("load",)
    assert series.values.dtype == np.float32 and series.values[3].tolist() == [6, 9]
    windowed = raw_windows(series, input_steps=2, splits=(0.5, 0.25, 0.25))
    x, y = windowed.arrays("validation")
    assert x[0].tolist() == [[20, 30], [22, 33]] and y[0].tolist() == [36]
    assert windowed.report["splits"]["validation"]["time"] == ["10.0", "14.0"]


def test_read_csv_features_and_iso_dates(tmp_path):
    text = (
        "date,station,temp,load\n"
        "2024-01-01T00:00:00Z,a,1.5,10\n"
        "2024-01-02T00:00:00+00:00,a,2.5,20\n"
        "2024-01-03T07:00:00+01:00,a,3.5,30\n"
    )
    series = data.read_csv(
        write(tmp_path, text), target="load", features=["temp"], time_column="date"
    )
    assert series.columns == ("temp", "load") and series.feature_columns == ("temp",)
    assert series.time.dtype == np.dtype("datetime64[us]")
    assert str(series.time[2]) == "2024-01-03T06:00:00.000000"


def test_read_csv_missing_policies_fill_and_report(tmp_path):
    path = write(tmp_path, "t,x,y\n0,1,10\n1,,11\n2,NA,12\n3,4,nan\n4,5,14\n")
    with pytest.raises(ValueError, match=r"line 3 of .*column 'x': value is missing.*3 such"):
        data.read_csv(path, target="y", time_column="t")
    dropped = data.read_csv(path, target="y", time_column="t", missing="drop")
    assert dropped.values.tolist() == [[1, 10], [5, 14]] and dropped.time.tolist() == [0, 4]
    assert dropped.report["rows_dropped"] == 3
    filled = data.read_csv(path, target="y", time_column="t", missing="ffill")
    assert filled.values[:, 0].tolist() == [1, 1, 1, 4, 5]
    assert filled.values[:, 1].tolist() == [10, 11, 12, 12, 14]
    assert filled.report["filled"] == {"x": 2, "y": 1}
    interpolated = data.read_csv(path, target="y", time_column="t", missing="interpolate")
    assert interpolated.values[:, 0].tolist() == [1, 2, 3, 4, 5]
    assert interpolated.values[:, 1].tolist() == [10, 11, 12, 13, 14]


def test_read_csv_plain_dates_with_blank_lines(tmp_path):
    path = write(tmp_path, "date,y\n2024-02-28,1\n\n2024-03-01,2\n\n")
    series = data.read_csv(path, target="y", time_column="date")
    assert series.time.astype("datetime64[D]").astype(str).tolist() == ["2024-02-28", "2024-03-01"]


def test_read_csv_interpolates_in_time_not_rows(tmp_path):
    path = write(tmp_path, "t,y\n0,0\n1,\n4,8\n")
    series = data.read_csv(path, target="y", time_column="t", missing="interpolate")
    assert series.values[:, 0].tolist() == [0, 2, 8]


def test_read_csv_cannot_ffill_a_leading_missing_value(tmp_path):
    path = write(tmp_path, "x,y\n,1\n2,3\n")
    with pytest.raises(ValueError, match=r"line 2 of .*column 'x': the column starts"):
        data.read_csv(path, target="y", missing="ffill")


def test_read_csv_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file at"):
        data.read_csv(tmp_path / "absent.csv", target="y")


@pytest.mark.parametrize(
    "text, kwargs, message",
    [
        ("", {}, r"is empty"),
        ("\n\n", {}, r"is empty"),
        ("x,y\n", {}, r"header but no data rows"),
        ("x,y\n1,2\n3\n", {}, r"line 3 of .* has 1 fields but the header has 2"),
        ("x,y\n1,2\n3,4,5\n", {}, r"line 3 of .* has 3 fields"),
        ("x,y\n1,2\nabc,4\n", {"missing": "ffill"}, r"line 3 of .*column 'x': 'abc' is not"),
        ("x,y\n1,2\n", {"target": "z"}, r"target: column 'z' does not exist.*\['x', 'y'\]"),
        ("t,y\n0,1\n2,2\n2,3\n", {"time_column": "t"}, r"strictly increasing; line 4 .*'2' after"),
        ("t,y\n0,1\n,2\n", {"time_column": "t"}, r"line 3 of .*time column 't' is missing"),
        (
            "t,y\n2024-01-01,1\nmonday,2\n",
            {"time_column": "t"},
            r"line 3 .*'monday' in column 't' is neither",
        ),
        (
            "t,y\n2024-01-01,1\n2024-01-02T00:00Z,2\n",
            {"time_column": "t"},
            r"line 3 .*has a UTC offset",
        ),
        ("t,y\n0,1\n1,2\n", {"time_column": "t", "target": "t"}, r"target includes the time"),
        ("x,x\n1,2\n", {"target": "x"}, r"names column 'x' twice"),
        ("x,y\n1,2\n", {"missing": "zero"}, r"missing must be one of"),
    ],
)
def test_read_csv_malformed_files_raise_naming_the_problem(tmp_path, text, kwargs, message):
    kwargs = {"target": "y", **kwargs}
    with pytest.raises(ValueError, match=message):
        data.read_csv(write(tmp_path, text), **kwargs)


# Benchmark.


def test_windowing_benchmark_smoke_preset_runs(capsys):
    from benchmarks import windowing

    windowing.main(["--smoke"])
    assert "windows/s" in capsys.readouterr().out


@pytest.mark.parametrize("mode", ["change", "window_norm"])
def test_target_forms_round_trip_to_the_original_targets(mode):
    t = np.arange(120, dtype=np.float64)
    series = np.stack([100 + 0.5 * t + np.sin(t / 3), np.cos(t / 5)], axis=1)
    windowed = data.windows(series, input_steps=10, horizon=3, targets=[0], target_mode=mode)
    level = data.windows(series, input_steps=10, horizon=3, targets=[0])
    assert windowed.report["target_mode"] == mode
    x, y = windowed.arrays("validation")
    lx, ly = level.arrays("validation")
    original = level.inverse_transform_targets(ly)
    np.testing.assert_allclose(
        windowed.inverse_transform_targets(y, split="validation"), original, rtol=1e-5
    )
    np.testing.assert_allclose(
        windowed.inverse_transform_targets(y, inputs=lx), original, rtol=1e-5
    )
    # The dataset yields the same forms as arrays(), in time order.
    batches = list(windowed.validation.as_numpy_iterator())
    np.testing.assert_allclose(np.concatenate([b[1] for b in batches]), y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.concatenate([b[0] for b in batches]), x, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(windowed.form_inputs(lx), x, rtol=1e-5, atol=1e-6)
    if mode == "change":
        # Predicting no change is persistence: the last input value, three times.
        persistence = windowed.inverse_transform_targets(np.zeros_like(y), split="validation")
        last = level.inverse_transform_targets(np.repeat(lx[:, -1, :1], 3, axis=1))
        np.testing.assert_allclose(persistence, last, rtol=1e-5)


def test_relative_target_forms_need_the_windows_and_the_target_among_features():
    series = np.random.default_rng(0).normal(size=(100, 2))
    windowed = data.windows(series, input_steps=5, target_mode="change")
    _, y = windowed.arrays("test")
    with pytest.raises(ValueError, match="pass exactly one of split="):
        windowed.inverse_transform_targets(y)
    with pytest.raises(ValueError, match=r"not among the features \['column_0'\]"):
        data.windows(series, input_steps=5, features=[0], targets=[1], target_mode="window_norm")
    with pytest.raises(ValueError, match="target_mode must be one of"):
        data.windows(series, input_steps=5, target_mode="diff")


def test_interpolation_never_carries_a_later_splits_value_into_a_split(tmp_path):
    # 100 rows, default splits: training rows [0, 70), validation [70, 85), test [85, 100).
    # Rows 68 and 69 (the last two training rows) are missing and the first validation value
    # is 1000: interpolating across the boundary would put about 379 and 689 into training
    # rows (and into the scaler's statistics). They hold the last training value instead.
    values = [str(float(i)) for i in range(100)]
    values[68] = values[69] = ""
    values[70] = "1000"
    values[83] = ""  # a run inside validation keeps its interpolation: (82 + 84) / 2
    csv = tmp_path / "series.csv"
    csv.write_text("t,x\n" + "\n".join(f"{t},{x}" for t, x in enumerate(values)) + "\n")
    series = data.read_csv(csv, target="x", time_column="t", missing="interpolate")
    windowed = data.windows(series, input_steps=5, normalize=None)
    train_inputs, train_targets = windowed.arrays("train")
    assert max(train_inputs.max(), train_targets.max()) == 67.0
    assert sorted(set(train_targets[-2:].ravel())) == [67.0]
    validation_inputs, _ = windowed.arrays("validation")
    assert 83.0 in validation_inputs[:, :, 0]
    assert windowed.report["interpolation_cut_at_split_ends"] == 2
    normalised = data.windows(series, input_steps=5)
    assert normalised.scaler.mean[0] == pytest.approx(np.mean(list(range(68)) + [67.0, 67.0]))
