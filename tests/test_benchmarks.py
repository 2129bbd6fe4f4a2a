import importlib.util
import json

import numpy as np
import pytest

from benchmarks import common, problems, throughput, vanishing


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_deepbench_table_has_the_22_lstm_training_shapes():
    shapes = {(p["hidden"], p["batch"], p["time"]) for p in problems.DEEPBENCH}
    assert len(problems.DEEPBENCH) == len(shapes) == 22
    assert all(p["input"] == p["hidden"] for p in problems.DEEPBENCH)
    assert (1536, 8, 50) in shapes and (256, 64, 150) in shapes and (4096, 128, 25) in shapes


def test_flops_count_three_times_two_times_4h_i_plus_h_bt():
    problem = {"batch": 2, "time": 3, "input": 1, "hidden": 1}
    assert problems.flops_per_training_step(problem) == 3 * 2 * 4 * 1 * 2 * 2 * 3


def test_memory_horizon_is_the_first_distance_below_one_percent():
    assert vanishing.memory_horizon(np.array([1.0, 0.5, 0.02, 0.009, 0.5])) == 3
    assert vanishing.memory_horizon(np.array([1.0, 0.5, 0.011])) is None


def test_adding_problem_targets_are_the_sum_of_the_two_marked_values():
    inputs, targets = vanishing.adding_problem(32, 10, seed=0)
    markers = inputs[..., 1]
    np.testing.assert_array_equal(markers.sum(axis=1), 2.0)
    assert (markers[:, :5].sum(axis=1) == 1).all()
    np.testing.assert_allclose(targets[:, 0], (inputs[..., 0] * markers).sum(axis=1), rtol=1e-6)


def test_copy_problem_recalls_the_first_symbols_after_the_delimiter():
    inputs, targets = vanishing.copy_problem(4, 7, seed=0)
    ids = inputs.argmax(-1)
    assert inputs.shape == (4, 7 + 2 * vanishing.COPY_LENGTH, vanishing.COPY_SYMBOLS + 2)
    np.testing.assert_array_equal(targets.argmax(-1), ids[:, : vanishing.COPY_LENGTH])
    assert (ids[:, vanishing.COPY_LENGTH + 6] == vanishing.COPY_SYMBOLS + 1).all()


def test_chrono_bias_sets_forget_in_log_range_and_input_to_its_negative():
    bias = np.asarray(vanishing.chrono_bias(50, seed=0)((4 * 16,)))
    i, f, c, o = np.split(bias, 4)
    assert (f >= 0).all() and (f <= np.log(49)).all() and f.std() > 0
    np.testing.assert_allclose(i, -f)
    np.testing.assert_array_equal(np.concatenate([c, o]), 0.0)


def test_peak_table_matches_h100_sxm_and_leaves_cpus_unknown():
    assert common.peak_tflops("NVIDIA H100 80GB HBM3")["tf32"] == pytest.approx(494.7)
    assert common.peak_tflops("CPU (2 cores, x86_64)") is None


@pytest.mark.slow
def test_throughput_smoke_writes_jsonl_markdown_and_events(tmp_path):
    rows = throughput.main(
        [
            "--preset",
            "smoke",
            "--out",
            str(tmp_path),
            "--tag",
            "t",
            "--warmup-steps",
            "1",
            "--rounds",
            "1",
        ]
    )
    written = read_jsonl(tmp_path / "throughput_t.jsonl")
    with_torch = importlib.util.find_spec("torch") is not None
    assert (
        len(written)
        == len(rows)
        == len([i for i in throughput.IMPLEMENTATIONS if "cpu" in i.devices])
        + with_torch * len(throughput.TORCH_THREADS)
    )
    if with_torch:
        assert all(r["speed_vs_torch"] > 0 for r in written)
    for row in written:
        assert row["ms_per_step"] > 0 and row["tflops"] > 0
        assert row["device_kind"] == "cpu" and row["tensorflow"] and row["date"] and row["command"]
    costs = {r["implementation"]: r["logging_cost"] for r in written}
    assert costs["lstmcore_step+keras.LSTM"] > 0 and costs["bare_step+keras.LSTM"] is None
    kernels = {r["implementation"]: r["kernel"] for r in written}
    assert (
        kernels["bare_step+lstmcore.LSTM"] == "cpu"
        and kernels["bare_step+keras.LSTM"] == "keras-generic"
    )
    markdown = (tmp_path / "throughput_t.md").read_text()
    assert (
        "| problem |" in markdown and "B=4 T=5 I=3 H=8" in markdown and "not measured" in markdown
    )
    assert list((tmp_path / "tensorboard" / "throughput_t").glob("events.out.tfevents.*"))
    if common.pyplot() is not None:
        assert (tmp_path / "throughput_t.png").stat().st_size > 0


@pytest.mark.slow
def test_vanishing_smoke_writes_profiles_tasks_and_plots(tmp_path):
    rows = vanishing.main(["--preset", "smoke", "--out", str(tmp_path), "--tag", "t"])
    preset = problems.VANISHING_PRESETS["smoke"]
    written = read_jsonl(tmp_path / "vanishing_t.jsonl")
    assert len(written) == len(rows)
    profiles = [r for r in written if r["kind"] == "profile"]
    assert {(r["model"], r["T"]) for r in profiles} == {
        (m, t) for m in vanishing.MODELS for t in preset["profile_lengths"]
    }
    for r in profiles:
        assert len(r["ratio"]) == r["T"] and r["ratio"][0] == pytest.approx(1.0)
    tasks = [r for r in written if r["kind"] == "task"]
    assert {(r["task"], r["model"]) for r in tasks} == {
        (t, m) for t in preset["tasks"] for m in preset["task_models"]
    }
    for r in tasks:
        assert isinstance(r["solved"], bool) and np.isfinite(r["heldout_value"])
    assert all(len(r["profile_after"]) == r["T"] for r in tasks if r["task"] == "adding")
    markdown = (tmp_path / "vanishing_t.md").read_text()
    assert "Effective memory horizon" in markdown and "Longest T solved" in markdown
    assert list(
        (tmp_path / "tensorboard" / "vanishing_t" / "profiles").glob("events.out.tfevents.*")
    )
    if common.pyplot() is not None:
        assert (tmp_path / "vanishing_t_profiles.png").stat().st_size > 0
        assert (tmp_path / "vanishing_t_trained.png").stat().st_size > 0
