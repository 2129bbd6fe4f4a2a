import json
import os
import re
import signal
import sys
import time

import multiworker_launcher as launcher
import numpy as np
import pytest

from lstmcore import distributed
from lstmcore.errors import ConfigError

# Wall-clock bounds for the waits of one job on a loaded 2-core machine (two TensorFlow imports
# and a trace each); a job past them is killed and the test fails with the workers' logs.
JOB_TIMEOUT = 240


def _config(cluster, task_type="worker", index=0):
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


TWO = {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]}


def test_tf_config_names_roles_workers_and_the_chief():
    config = distributed.read_tf_config(_config(TWO, index=1))
    assert (config.task_type, config.task_id, config.num_workers) == ("worker", 1, 2)
    assert not config.is_chief
    assert distributed.read_tf_config(_config(TWO)).is_chief
    with_chief = {"chief": ["10.0.0.1:2222"], **TWO}
    assert distributed.read_tf_config(_config(with_chief, "chief")).is_chief
    assert not distributed.read_tf_config(_config(with_chief)).is_chief
    assert distributed.read_tf_config(_config(with_chief)).num_workers == 3
    assert distributed.read_tf_config("") is None
    assert distributed.wants_multi_worker(_config(TWO))
    assert not distributed.wants_multi_worker(_config({"worker": ["localhost:2222"]}))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        (json.dumps({"task": {"type": "worker", "index": 0}}), "has no cluster"),
        (json.dumps({"cluster": TWO}), "has no task"),
        (_config({"worker": ["127.0.0.1"]}), "'host:port'"),
        (_config({"worker": ["127.0.0.1:99999"]}), "'host:port'"),
        (_config({"worker": "127.0.0.1:2222"}), "non-empty list"),
        (_config({"worker": ["127.0.0.1:2222", "127.0.0.1:2222"]}), "twice"),
        (_config({"ps": ["h:1"], **TWO}), "ParameterServerStrategy"),
        (_config({"evaluator": ["h:1"], **TWO}), "evaluator"),
        (_config({"chief": ["h:1", "h:2"], **TWO}), "at most one"),
        (_config(TWO, "chief"), "not a role of the cluster"),
        (_config(TWO, index=2), "out of range"),
        (_config(TWO, index="1"), "must be an integer"),
    ],
)
def test_a_bad_tf_config_is_a_config_error_naming_the_problem(text, words):
    with pytest.raises(ConfigError, match=words):
        distributed.read_tf_config(text)


def test_non_chief_workers_checkpoint_to_a_temporary_folder_they_delete(tmp_path):
    chief = distributed.WorkerContext("worker", 0, 2, True)
    other = distributed.WorkerContext("worker", 1, 2, False)
    directory = str(tmp_path / "run" / "checkpoints")
    assert distributed.checkpoint_directory(directory, chief) == directory
    temporary = distributed.checkpoint_directory(directory, other)
    assert temporary == str(tmp_path / "run" / "workertemp_1" / "checkpoints")
    os.makedirs(temporary)
    (tmp_path / "run" / "workertemp_1" / "checkpoints" / "ckpt-1.index").write_text("x")
    assert distributed.remove_worker_checkpoints(directory, other) == os.path.dirname(temporary)
    assert os.listdir(tmp_path / "run") == []
    assert distributed.remove_worker_checkpoints(directory, chief) is None


def test_workers_agree_on_stopping_when_a_call_crosses_a_multiple_of_the_check_interval():
    assert distributed.stop_check_due(9, 10) and distributed.stop_check_due(7, 15)
    assert not distributed.stop_check_due(10, 11) and not distributed.stop_check_due(11, 19)
    # Several steps per call still meet every multiple once.
    crossed = [s for s in range(0, 100, 8) if distributed.stop_check_due(s, s + 8)]
    assert len(crossed) == len(range(10, 104, 10))


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), "10", True])
def test_make_strategy_refuses_a_bad_timeout_before_touching_tensorflow(value):
    with pytest.raises(ConfigError, match="peer_timeout"):
        distributed.make_strategy(peer_timeout=value, tf_config=_config(TWO))


def test_make_strategy_without_tf_config_says_what_to_set(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="TF_CONFIG is not set"):
        distributed.make_strategy()


TRAIN = {
    "steps": 12,
    "shuffle": True,
    "seed": 3,
    "clip_norm": 0.5,
    "progress": False,
    "check": False,
    "probe_every": None,
}


def _run_files(run_dir: str) -> list[str]:
    # Event file names carry a time, host and pid; the rest must be the same files.
    found = []
    for folder, _, names in os.walk(run_dir):
        for name in names:
            path = os.path.relpath(os.path.join(folder, name), run_dir)
            found.append(re.sub(r"events\.out\.tfevents\..*", "events.out.tfevents.*", path))
    return sorted(found)


@pytest.mark.slow
def test_two_workers_train_like_one_process_and_only_the_chief_writes(tmp_path):
    # Two worker processes with a batch of 8 each against one process with the global batch of
    # 16: each worker reads its half of every global batch (DATA sharding).
    def spec(name, batch_size):
        logdir = str(tmp_path / name / "logs")
        return {
            "train": {**TRAIN, "batch_size": batch_size, "logdir": logdir, "run_name": "run"},
            "out": str(tmp_path / name),
            "validation": True,
        }

    with (
        launcher.Job(spec("two", 8), str(tmp_path / "two")) as job,
        launcher.Job({**spec("one", 16), "name": "single"}, str(tmp_path / "one")) as single,
    ):
        job.start(2)
        single.start(None)
        codes = job.wait(JOB_TIMEOUT) + single.wait(JOB_TIMEOUT)
        assert codes == [0, 0, 0], job.logs() + single.logs()
    results = {**job.results(), **single.results()}
    chief, other, one = results["worker-0"], results["worker-1"], results["single"]
    assert chief["is_chief"] and not other["is_chief"]
    # The workers apply the same all-reduced gradient: bit-identical to each other.
    assert other["weights"] == chief["weights"]
    assert other["loss"] == chief["loss"]
    # Against one process: the global batch's loss is summed in two halves, one per worker,
    # then added, in float32; one process sums the 16 samples in another order. The last bits
    # differ (measured: losses to 2e-7 relative, weights to 1e-7 after 200 steps).
    assert len(chief["loss"]) == 12
    assert chief["loss"] == pytest.approx(one["loss"], rel=1e-5)
    # Clipping (clip_norm=0.5, below every norm here) acted on the global gradient's norm.
    assert chief["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-5)
    assert min(chief["grad_norm"]) > 0.5
    for mine, theirs in zip(chief["weights"], one["weights"]):
        np.testing.assert_allclose(mine, theirs, atol=1e-5)
    # One run, written by the chief: the same files as one process writes (one set of event
    # files, one manifest, one lock), nothing from the other worker, no temporary checkpoints.
    two_logs, one_logs = tmp_path / "two" / "logs", tmp_path / "one" / "logs"
    assert os.listdir(two_logs) == ["run"]
    assert _run_files(str(two_logs / "run")) == _run_files(str(one_logs / "run"))
    assert not any("workertemp" in path for path in _run_files(str(two_logs)))
    manifest = json.loads((two_logs / "run" / "lstmcore_run.json").read_text())["config"]
    assert (manifest["global_batch_size"], manifest["workers"], manifest["batch_size"]) == (
        16,
        2,
        8,
    )


def test_a_failed_collective_becomes_a_worker_lost_error_naming_the_peer_and_the_resume():
    import tensorflow as tf

    worker = distributed.WorkerContext("worker", 0, 2, True)
    dead = tf.errors.UnavailableError(
        None, None, "Collective ops is aborted by: Socket closed ... /job:worker/replica:0/task:1"
    )
    with (
        pytest.raises(distributed.WorkerLostError) as caught,
        distributed.peer_failures(worker, lambda: 17),
    ):
        raise dead
    message = str(caught.value)
    assert "after step 17" in message and "worker 1 died" in message
    assert "resume=True" in message
    assert caught.value.__cause__ is dead
    hung = tf.errors.UnavailableError(
        None, None, "tasks are unhealthy (stopped sending heartbeats)"
    )
    assert "stopped sending heartbeats" in str(distributed.worker_lost(hung, worker, 3))
    # The text names this worker's own device too; the peer named is the other one.
    crashed = tf.errors.UnavailableError(
        None,
        None,
        "{{function_node device_/job:worker/replica:0/task:0/device:CPU:0}} aborted by: Error "
        "reported from /job:worker/task:1: The following tasks are unhealthy (stopped sending "
        "heartbeats):\n/job:worker/replica:0/task:1",
    )
    assert "worker 1 stopped sending heartbeats" in str(distributed.worker_lost(crashed, worker, 3))
    # One process, or an error that is not a failed collective: left as it is.
    assert distributed.worker_lost(dead, distributed.WorkerContext(None, 0, 1, True), 3) is None
    assert distributed.worker_lost(ValueError("x"), worker, 3) is None


@pytest.mark.slow
def test_sigterm_stops_all_workers_at_one_step_a_killed_worker_stops_the_others_resume_completes(
    tmp_path,
):
    logdir = tmp_path / "logs"
    checkpoints = logdir / "run" / "checkpoints"
    steps, peer_timeout = 200, 10.0
    train = {**TRAIN, "steps": steps, "checkpoint_every": 10, "batch_size": 8}
    train.update(logdir=str(logdir), run_name="run")

    def saved() -> list[int]:
        if not checkpoints.is_dir():
            return []
        names = os.listdir(checkpoints)
        return sorted(int(n[5:-6]) for n in names if n.startswith("ckpt-") and n.endswith(".index"))

    def job(name, **options):
        spec = {"train": {**train, **options}, "out": str(tmp_path / name)}
        return launcher.Job({**spec, "strategy": {"peer_timeout": peer_timeout}}, spec["out"])

    reference = {
        "train": {**TRAIN, "steps": steps, "batch_size": 16, "logdir": None},
        "out": str(tmp_path / "one"),
        "name": "single",
    }
    # 1. SIGTERM to worker 1 (a preemption) once a checkpoint exists: both stop at one step,
    #    both save there, both return normally.
    with job("first") as first, launcher.Job(reference, reference["out"]) as single:
        first.start(2)
        single.start(None)
        assert launcher.wait_for(lambda: saved(), JOB_TIMEOUT), first.logs()
        first.signal(1, signal.SIGTERM)
        assert first.wait(JOB_TIMEOUT) == [0, 0], first.logs()
        assert single.wait(JOB_TIMEOUT) == [0], single.logs()
    chief, other = first.results()["worker-0"], first.results()["worker-1"]
    stop = chief["steps"][-1] + 1
    assert other["steps"][-1] + 1 == stop < steps
    assert "signal 15" in other["stopped"] and "another worker asked to stop" in chief["stopped"]
    assert stop in saved()

    # 2. Resume; SIGKILL worker 1 after its next checkpoint: worker 0 stops with a clear error.
    with job("second", resume=True) as second:
        second.start(2)
        assert launcher.wait_for(lambda: max(saved()) > stop, JOB_TIMEOUT), second.logs()
        second.signal(1, signal.SIGKILL)
        killed = time.monotonic()
        second.wait(peer_timeout + 30, second.workers[:1])
        waited = time.monotonic() - killed
        assert second.workers[0].returncode == 3, second.logs()
    error = second.results()["worker-0"]["error"]
    assert error.startswith("WorkerLostError") and "worker 1" in error and "resume=True" in error
    assert waited < peer_timeout + 30
    killed_at = max(saved())
    assert stop < killed_at < steps

    # 3. Restart all with resume=True: the run completes, as one uninterrupted process's.
    with job("third", resume=True) as third:
        third.start(2)
        assert third.wait(JOB_TIMEOUT) == [0, 0], third.logs()
    final, one = third.results()["worker-0"], single.results()["single"]
    assert final["steps"][0] >= killed_at and final["steps"][-1] == steps - 1
    assert final["loss"] == pytest.approx(one["loss"][final["steps"][0] :], rel=1e-4)
    for mine, theirs in zip(final["weights"], one["weights"]):
        np.testing.assert_allclose(mine, theirs, atol=1e-5)
    assert third.results()["worker-1"]["weights"] == final["weights"]
    assert not any("workertemp" in path for path in _run_files(str(logdir)))


@pytest.mark.slow
def test_lstmcore_train_under_tf_config_trains_on_two_workers_and_the_chief_writes_the_run(
    tmp_path,
):
    rows = np.arange(400)
    series = np.sin(rows * 2 * np.pi / 24) + 0.01 * rows
    (tmp_path / "cli").mkdir()
    (tmp_path / "cli" / "series.csv").write_text(
        "t,y\n" + "".join(f"{t},{v:.5f}\n" for t, v in zip(rows, series))
    )
    command = [sys.executable, "-m", "lstmcore", "train", "--csv", "series.csv", "--target", "y"]
    command += ["--steps", "20", "--batch-size", "8", "--units", "8", "--window", "24"]
    command += ["--logdir", "logs", "--run-name", "run", "--peer-timeout", "30"]
    with launcher.Job({}, str(tmp_path / "cli")) as job:
        job.start(2, command=command)
        assert job.wait(JOB_TIMEOUT) == [0, 0], job.logs()
    chief, other = (worker.output() for worker in job.workers)
    assert "TF_CONFIG names 2 workers: training with MultiWorkerMirroredStrategy" in chief
    assert "model saved to" in chief
    # The other worker trains in silence: no progress bar, no messages, no results.
    assert "lstmcore" not in other and "loss" not in other
    run = tmp_path / "cli" / "logs" / "run"
    assert os.listdir(tmp_path / "cli" / "logs") == ["run"]
    files = _run_files(str(run))
    assert files.count("model.keras") == 1 and files.count("lstmcore_run.json") == 1
    assert not any("workertemp" in path for path in files)
    manifest = json.loads((run / "lstmcore_run.json").read_text())["config"]
    assert (manifest["workers"], manifest["global_batch_size"]) == (2, 16)
