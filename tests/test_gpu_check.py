import json
import os

import pytest
import tensorflow as tf

from benchmarks import gpu_check

GPU = bool(tf.config.list_physical_devices("GPU"))


@pytest.mark.slow
def test_dry_run_runs_every_benchmark_stage_and_writes_one_folder(tmp_path):
    out = str(tmp_path / "check")
    stages = {stage.name: stage for stage in gpu_check.main(["--dry-run", "--out", out])}
    assert stages["tests"].returncode is None
    for name in ("throughput", "vanishing", "adding"):
        with open(os.path.join(out, name, "log.txt")) as log:
            assert stages[name].status == "passed", log.read()
    with open(os.path.join(out, "throughput", "throughput_gpu_check.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert {row["implementation"] for row in rows} == set(gpu_check.THROUGHPUT_IMPLEMENTATIONS)
    assert {row["kernel"] for row in rows} >= {"cpu", "keras-generic"}
    with open(os.path.join(out, "vanishing", "profiles.jsonl")) as f:
        assert len(f.readlines()) == 5  # every model at T=8
    with open(os.path.join(out, "adding", "adding.json")) as f:
        adding = json.load(f)
    assert adding["T"] == 6 and adding["model"] == "lstm_chrono" and adding["steps"] == 4
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    assert summary["dry_run"] and [s["name"] for s in summary["stages"]] == list(stages)


@pytest.mark.slow
@pytest.mark.skipif(GPU, reason="checks the refusal on a machine without a GPU")
def test_full_check_without_gpu_exits_pointing_to_dry_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        gpu_check.main(["--out", str(tmp_path)])
    assert stop.value.code == 2
    assert "sees no GPU here; use --dry-run" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []
