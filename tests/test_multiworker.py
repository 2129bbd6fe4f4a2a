import json
import os

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


@pytest.mark.slow
def test_two_workers_train_like_one_process_on_the_same_global_batches(tmp_path):
    # Two worker processes with a batch of 8 each against one process with the global batch of
    # 16: TensorFlow's auto-sharding gives each worker its half of every global batch.
    with (
        launcher.Job(
            {"train": {**TRAIN, "batch_size": 8, "logdir": None}, "out": str(tmp_path / "two")},
            str(tmp_path / "two"),
        ) as job,
        launcher.Job(
            {
                "train": {**TRAIN, "batch_size": 16, "logdir": None},
                "out": str(tmp_path / "one"),
                "name": "single",
            },
            str(tmp_path / "one"),
        ) as single,
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
    # differ (measured: losses to 2e-7 relative, weights to 3e-8 after 12 steps).
    assert chief["loss"] == pytest.approx(one["loss"], rel=1e-5)
    assert chief["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-5)
    for mine, theirs in zip(chief["weights"], one["weights"]):
        np.testing.assert_allclose(mine, theirs, atol=1e-5)
    assert len(chief["loss"]) == 12


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
    assert "no heartbeat within peer_timeout" in str(distributed.worker_lost(hung, worker, 3))
    # One process, or an error that is not a failed collective: left as it is.
    assert distributed.worker_lost(dead, distributed.WorkerContext(None, 0, 1, True), 3) is None
    assert distributed.worker_lost(ValueError("x"), worker, 3) is None
