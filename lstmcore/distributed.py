"""Which process of a ``tf.distribute`` job this is, what it may write, and how workers agree.

One machine (the default strategy, ``MirroredStrategy``, ``OneDeviceStrategy``): one process,
the chief. ``MultiWorkerMirroredStrategy`` (configured by ``TF_CONFIG``, as Kubernetes
operators, Slurm scripts and managed training services launch TensorFlow jobs): the chief
(task ``chief`` 0, or ``worker`` 0 when the cluster names no chief) writes TensorBoard events,
the run manifest, the data report, the saved model and the diagnosis; every worker saves
checkpoints (saving a mirrored variable is a collective operation), the others to a temporary
directory they delete (TensorFlow's multi-worker rule, :func:`checkpoint_directory`).

What happens when a worker fails (read from TensorFlow 2.21's
``collective_all_reduce_strategy.py``): the strategy starts TensorFlow's coordination service;
every task sends it heartbeats. A worker that dies inside an all-reduce may fail the others'
at once (its connection closes); otherwise, and for one that stops answering (hung, stopped,
cut off), the service declares it unhealthy once it has sent no heartbeat for
``peer_timeout`` seconds and aborts every other worker's collectives with
``UnavailableError`` (measured with ``peer_timeout=5``: 0.07 to 7.5 s after SIGKILL, 5.9 to
8.2 s after SIGSTOP, ``benchmarks/results/multiworker_cpu2core.md``).
:func:`worker_lost` turns either into a :class:`WorkerLostError` naming the step and how to
resume. TensorFlow's per-collective ``CommunicationOptions(timeout_seconds=...)`` is not used:
it starts one thread per collective for the length of the timeout (a 20 s timeout at a few
hundred collectives a second exhausted the threads of a process here).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import shutil

from lstmcore.errors import ConfigError

TF_CONFIG = "TF_CONFIG"
ROLES = ("chief", "worker")
# How long a silent worker is waited for before the job is stopped on every other worker (an
# option of make_strategy). TensorFlow's heartbeat default is 10 s. Longer notices a lost worker later (about twice the timeout,
# measured above); shorter stops the job for a machine paused briefly (swapping, a network
# blip). Heartbeats did not lapse during traces of several seconds in the tests (10 s there).
DEFAULT_PEER_TIMEOUT = 30.0
WORKER_TEMP_PREFIX = "workertemp_"


@dataclasses.dataclass(frozen=True)
class WorkerContext:
    """This process's place in the job."""

    task_type: str | None
    task_id: int
    num_workers: int
    is_chief: bool

    @property
    def multi_worker(self) -> bool:
        return self.num_workers > 1


@dataclasses.dataclass(frozen=True)
class ClusterConfig:
    """A checked ``TF_CONFIG``: the cluster's addresses and this process's task."""

    cluster: dict  # {"chief": ["host:port"], "worker": ["host:port", ...]}
    task_type: str
    task_id: int

    @property
    def num_workers(self) -> int:
        return sum(len(self.cluster.get(role, [])) for role in ROLES)

    @property
    def is_chief(self) -> bool:
        if "chief" in self.cluster:
            return self.task_type == "chief"
        return self.task_type == "worker" and self.task_id == 0

    def context(self) -> WorkerContext:
        return WorkerContext(self.task_type, self.task_id, self.num_workers, self.is_chief)


def context(strategy=None) -> WorkerContext:
    """The :class:`WorkerContext` of ``strategy`` (default: the current one)."""
    import tensorflow as tf

    strategy = strategy or tf.distribute.get_strategy()
    extended = strategy.extended
    resolver = getattr(strategy, "cluster_resolver", None)
    in_multi_worker = bool(getattr(extended, "_in_multi_worker_mode", lambda: False)())
    if resolver is None or not in_multi_worker:
        return WorkerContext(None, 0, 1, True)
    spec = resolver.cluster_spec().as_dict()
    workers = sum(len(spec.get(kind, [])) for kind in ROLES)
    return WorkerContext(
        resolver.task_type,
        int(resolver.task_id or 0),
        max(workers, 1),
        bool(extended.should_checkpoint),
    )


_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+):(\d{1,5})$")


def read_tf_config(text: str | None = None) -> ClusterConfig | None:
    """Reads and checks ``TF_CONFIG`` (the environment variable unless ``text`` is given).

    The format is TensorFlow's: ``{"cluster": {"worker": ["host:port", ...]}, "task":
    {"type": "worker", "index": 0}}``, with an optional ``"chief": ["host:port"]``.

    Args:
      text: the JSON text; None reads ``os.environ["TF_CONFIG"]``.

    Returns:
      A :class:`ClusterConfig`, or None when ``TF_CONFIG`` is unset or empty.

    Raises:
      ConfigError: naming what is wrong: not JSON, no cluster or task, a role lstmcore does
        not run (``ps``: parameter servers are ``ParameterServerStrategy``; ``evaluator``),
        an address that is not ``host:port``, an address listed twice, a task type not in
        the cluster or an index out of range.
    """
    if text is None:
        text = os.environ.get(TF_CONFIG, "")
    if not text.strip():
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"{TF_CONFIG} is not valid JSON ({error.msg} at character {error.pos}); expected "
            '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}'
        ) from None
    if not isinstance(value, dict):
        raise ConfigError(f"{TF_CONFIG} must be a JSON object; got {type(value).__name__}")
    cluster, task = value.get("cluster"), value.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise ConfigError(
            f"{TF_CONFIG} has no cluster (a non-empty object of role -> list of 'host:port'); "
            f"got cluster={cluster!r}"
        )
    unsupported = sorted(set(cluster) - set(ROLES))
    if unsupported:
        raise ConfigError(
            f"{TF_CONFIG} names the role(s) {unsupported}; lstmcore runs "
            "MultiWorkerMirroredStrategy, whose roles are 'chief' (at most one) and 'worker' "
            "(parameter servers 'ps' are ParameterServerStrategy; an 'evaluator' is not run)"
        )
    seen = {}
    for role, addresses in cluster.items():
        if isinstance(addresses, str) or not isinstance(addresses, list) or not addresses:
            raise ConfigError(
                f"{TF_CONFIG} cluster[{role!r}] must be a non-empty list of 'host:port'; "
                f"got {addresses!r}"
            )
        for index, address in enumerate(addresses):
            match = _ADDRESS.match(address) if isinstance(address, str) else None
            if match is None or not 0 < int(match.group(2)) < 65536:
                raise ConfigError(
                    f"{TF_CONFIG} cluster[{role!r}][{index}] must be 'host:port' with a port "
                    f"from 1 to 65535; got {address!r}"
                )
            if address in seen:
                raise ConfigError(
                    f"{TF_CONFIG} lists {address!r} twice ({seen[address]} and {role} "
                    f"{index}); every task needs its own port"
                )
            seen[address] = f"{role} {index}"
    if len(cluster.get("chief", [])) > 1:
        raise ConfigError(
            f"{TF_CONFIG} names {len(cluster['chief'])} chiefs; a cluster has at most one"
        )
    if not isinstance(task, dict):
        raise ConfigError(
            f'{TF_CONFIG} has no task (this process\'s {{"type": ..., "index": ...}}); '
            f"got task={task!r}"
        )
    task_type, task_id = task.get("type"), task.get("index", 0)
    if task_type not in cluster:
        raise ConfigError(
            f"{TF_CONFIG} task type {task_type!r} is not a role of the cluster ({sorted(cluster)})"
        )
    if isinstance(task_id, bool) or not isinstance(task_id, int):
        raise ConfigError(f"{TF_CONFIG} task index must be an integer; got {task_id!r}")
    if not 0 <= task_id < len(cluster[task_type]):
        raise ConfigError(
            f"{TF_CONFIG} task index {task_id} is out of range: the cluster has "
            f"{len(cluster[task_type])} {task_type} task(s), numbered from 0"
        )
    return ClusterConfig({role: list(cluster[role]) for role in cluster}, task_type, task_id)


def wants_multi_worker(text: str | None = None) -> bool:
    """True when ``TF_CONFIG`` (checked) names more than one worker."""
    config = read_tf_config(text)
    return config is not None and config.num_workers > 1


def make_strategy(
    *,
    peer_timeout: float = DEFAULT_PEER_TIMEOUT,
    tf_config: str | None = None,
):
    """Creates ``tf.distribute.MultiWorkerMirroredStrategy`` from ``TF_CONFIG``, with timeouts.

    Call it at the start of the program, before any other TensorFlow operation runs
    (TensorFlow configures its collectives once per process). Every worker runs the same
    program with its own ``TF_CONFIG``; each waits for all the others to start, without a
    time limit (TensorFlow's coordination service was given a registration timeout in a test
    here and still waited past it, so none is offered).

    Args:
      peer_timeout: seconds a worker may stop answering (no heartbeat) before the job is
        stopped on every other worker with an error; a lost worker (dead, hung or cut off)
        is noticed within about twice this.
      tf_config: the ``TF_CONFIG`` text; None reads the environment. Given, it is also set
        in the environment (TensorFlow's resolver reads it there).

    Returns:
      The strategy. Its ``num_replicas_in_sync`` is the number of devices in all workers.

    Raises:
      ConfigError: for a bad timeout, a missing or bad ``TF_CONFIG``.
    """
    from lstmcore import config

    peer_timeout = config.number("peer_timeout", peer_timeout, positive=True)
    cluster = read_tf_config(tf_config)
    if cluster is None:
        raise ConfigError(
            f"{TF_CONFIG} is not set; a multi-worker job needs it on every worker, e.g. "
            '{"cluster": {"worker": ["host1:2222", "host2:2222"]}, "task": {"type": "worker", '
            '"index": 0}}'
        )
    if tf_config is not None:
        os.environ[TF_CONFIG] = tf_config
    import tensorflow as tf

    _configure_coordination_service(cluster, peer_timeout)
    return tf.distribute.MultiWorkerMirroredStrategy()


def _configure_coordination_service(cluster: ClusterConfig, peer_timeout: float) -> None:
    """Sets the coordination service's heartbeat timeout before the strategy starts it.

    The strategy configures the service only when nothing has (TensorFlow 2.21,
    ``CollectiveAllReduceExtended._initialize_multi_worker``), with the default heartbeat timeout;
    this configures it the same way (leader, jobs) with ours. A TensorFlow private: if it is gone,
    TensorFlow's defaults apply.
    """
    try:
        from tensorflow.core.protobuf import coordination_config_pb2
        from tensorflow.python.distribute import multi_worker_util
        from tensorflow.python.eager import context as eager_context
    except ImportError:  # pragma: no cover - a TensorFlow that moved them
        return
    ctx = eager_context.context()
    if ctx.coordination_service is not None:
        return
    jobs = [
        coordination_config_pb2.CoordinatedJob(name=role, num_tasks=len(cluster.cluster[role]))
        for role in ROLES
        if role in cluster.cluster
    ]
    ctx.configure_coordination_service(
        service_type="standalone",
        service_leader=multi_worker_util.coordination_leader(cluster.cluster),
        heartbeat_timeout_in_ms=int(peer_timeout * 1000),
        coordinated_jobs=jobs,
    )


def checkpoint_directory(directory: str, worker: WorkerContext) -> str:
    """Where this worker saves checkpoints: ``directory`` on the chief, a temporary one elsewhere.

    TensorFlow's multi-worker rule (``failure_handling._non_chief_checkpoint_dir``, the
    multi-worker tutorial's ``write_filepath``): every worker saves, because saving a
    mirrored variable is a collective operation, but only the chief's checkpoint is kept;
    worker ``k`` saves to ``<parent>/workertemp_<k>/<name>`` and deletes it
    (:func:`remove_worker_checkpoints`). Every worker restores from ``directory``.
    """
    if worker.is_chief:
        return directory
    parent, name = os.path.split(os.path.normpath(directory))
    return os.path.join(parent, f"{WORKER_TEMP_PREFIX}{worker.task_id}", name)


def remove_worker_checkpoints(directory: str, worker: WorkerContext) -> str | None:
    """Deletes this worker's temporary checkpoint folder (nothing on the chief).

    Returns:
      The folder removed, or None.
    """
    if worker.is_chief:
        return None
    folder = os.path.dirname(checkpoint_directory(directory, worker))
    if os.path.isdir(folder):
        shutil.rmtree(folder, ignore_errors=True)
        return folder
    return None


# Steps between two stop agreements: each is one all-reduce round trip (median 4.2 to 5.5 ms
# on 2 loaded cores, benchmarks/results/multiworker_cpu2core.md; no faster compiled), too much
# to pay at every step of a small model.
STOP_CHECK_EVERY = 10


def stop_check_due(step_before: int, step_after: int, every: int = STOP_CHECK_EVERY) -> bool:
    """Whether a call of the step that ran from ``step_before`` to ``step_after`` crossed a
    multiple of ``every``: the same answer on every worker, since all run the same calls."""
    return step_after // every > step_before // every


def agree_to_stop(strategy, stop_here: bool) -> bool:
    """True on every worker when any worker asks to stop: all stop, and save, at one step.

    A collective: every worker must call it at the same step (where :func:`stop_check_due`
    says so, or at the end of a run). One all-reduce of one number; the single-process
    strategies return ``stop_here`` without communicating.

    Args:
      strategy: the job's strategy.
      stop_here: whether this worker wants to stop (it received SIGTERM).
    """
    if not context(strategy).multi_worker:
        return bool(stop_here)
    import tensorflow as tf

    votes = strategy.reduce(
        tf.distribute.ReduceOp.SUM,
        _vote(strategy, tf.constant(1.0 if stop_here else 0.0)),
        axis=None,
    )
    return bool(float(votes) > 0)


def _vote(strategy, value):
    # One value per replica: this worker's vote on its first replica, 0 on the others, so the
    # sum counts workers, not devices.
    import tensorflow as tf

    def per_replica(context):
        return (
            value
            if context.replica_id_in_sync_group % _local_replicas(strategy) == 0
            else (tf.zeros_like(value))
        )

    return strategy.experimental_distribute_values_from_function(per_replica)


def _local_replicas(strategy) -> int:
    return max(len(strategy.extended.worker_devices), 1)


def distribute_dataset(strategy, dataset):
    """``strategy.experimental_distribute_dataset`` with each worker reading its part of a batch.

    ``dataset`` yields global batches. Under ``MultiWorkerMirroredStrategy`` the shard policy
    is ``DATA``: every worker runs the (cheap, in-memory) pipeline and keeps its own slice of
    every global batch, so the job trains on exactly the batches one process would (tested
    against one process). ``FILE`` sharding needs a dataset read from several files, which
    arrays are not; ``AUTO`` tries it first and falls back to ``DATA`` with a warning.
    """
    import tensorflow as tf

    if context(strategy).multi_worker:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA
        )
        dataset = dataset.with_options(options)
    return strategy.experimental_distribute_dataset(dataset)


def iterator_at(strategy, dataset, step: int):
    """An iterator over ``dataset``'s global batches from batch ``step`` on, distributed as
    the training's (:func:`distribute_dataset` when the strategy has several replicas).

    A distributed iterator cannot be saved in a checkpoint (TensorFlow 2.21's
    ``DistributedIterator`` is not trackable), but its position is known: the step counter
    (every step takes one batch, a skipped non-finite step included). After a restore the
    training continues from ``iterator_at(strategy, dataset, step)``. The skipped batches are
    produced and dropped: measured 1.0 to 1.8 s for 10,000 batches of 16 windows on 2 loaded
    cores, so a resume at step 100,000 of such a run spends 10 to 20 s on it.
    """
    if step:
        dataset = dataset.skip(int(step))
    if strategy.num_replicas_in_sync > 1:
        return iter(distribute_dataset(strategy, dataset))
    return iter(dataset)


def checkpointable(iterator) -> bool:
    """Whether ``iterator`` can be saved in a checkpoint: a ``tf.data`` iterator can; a
    ``tf.distribute`` one cannot, and is positioned by :func:`iterator_at` instead."""
    import tensorflow as tf

    return not isinstance(iterator, tf.distribute.DistributedIterator)


# Longest text broadcast_from_chief carries (a run directory's path, a short message).
BROADCAST_BYTES = 4096


def broadcast_from_chief(strategy, text: str | None) -> str:
    """Sends the chief's ``text`` to every worker: one all-reduce, public API only.

    Every worker must call it at the same point. The chief's text is summed with zeros from
    the others (UTF-8 bytes as float32, exact below 2**24).

    Args:
      strategy: the job's strategy.
      text: the text on the chief; ignored on the other workers.

    Returns:
      The chief's text, on every worker.
    """
    worker = context(strategy)
    if not worker.multi_worker:
        return text or ""
    import numpy as np
    import tensorflow as tf

    data = np.zeros(BROADCAST_BYTES + 1, np.float32)
    if worker.is_chief:
        encoded = (text or "").encode()
        if len(encoded) > BROADCAST_BYTES:
            raise ConfigError(
                f"text to share between workers is {len(encoded)} bytes; at most "
                f"{BROADCAST_BYTES} (a shorter logdir path?)"
            )
        data[0] = len(encoded)
        data[1 : len(encoded) + 1] = np.frombuffer(encoded, np.uint8)
    summed = strategy.reduce(
        tf.distribute.ReduceOp.SUM, _vote(strategy, tf.constant(data)), axis=None
    ).numpy()
    length = int(summed[0])
    return bytes(summed[1 : length + 1].astype(np.uint8)).decode()


def barrier(strategy) -> None:
    """Returns on every worker once all have reached it (an all-reduce); nothing on one process.

    After a checkpoint save: the chief's checkpoint is complete before any worker goes on, so
    a restore (``on_nonfinite="restore"``) on any worker reads that checkpoint.
    """
    agree_to_stop(strategy, False)


def agree_on_run_dir(strategy, choose) -> tuple:
    """The run directory and whether it is resumed, chosen once, by the chief, for all workers.

    A timestamped run name read from each worker's clock could differ, and only the chief
    sees the run directory as it is before anyone writes. ``choose()`` (``runs.choose_run_dir``)
    runs on the chief; its answer, or its ``ConfigError``, reaches every worker.

    Args:
      strategy: the job's strategy.
      choose: ``() -> (run_dir, resuming)``; may raise ``ConfigError``/``ValueError``.

    Returns:
      ``(run_dir, resuming)`` on every worker.

    Raises:
      ConfigError: on every worker when ``choose`` raised on the chief (its message).
    """
    worker = context(strategy)
    if not worker.multi_worker:
        return choose()
    answer = None
    if worker.is_chief:
        try:
            run_dir, resuming = choose()
            answer = json.dumps({"run_dir": run_dir, "resuming": bool(resuming)})
        except ValueError as error:
            answer = json.dumps({"error": str(error)})
            broadcast_from_chief(strategy, answer)
            raise
    answer = json.loads(broadcast_from_chief(strategy, answer))
    if "error" in answer:
        raise ConfigError(f"the chief refused the run: {answer['error']}")
    return answer["run_dir"], answer["resuming"]


class peer_failures:
    """Turns a collective that failed because a peer died or hung into :class:`WorkerLostError`.

    Args:
      worker: this worker's context (nothing is changed on one process).
      step: ``() -> int``, the last step that completed here (read when the error comes).
    """

    def __init__(self, worker: WorkerContext, step):
        self.worker, self.step = worker, step

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if error is None:
            return False
        lost = worker_lost(error, self.worker, self.step())
        if lost is not None:
            raise lost from error
        return False


def reports_lost_workers(method):
    """Decorates ``Trainer.__init__`` and ``Trainer.fit``: a failed collective anywhere in them
    (creating mirrored variables, a step, a save, the stop agreement) is a
    :class:`WorkerLostError`. The worker is ``self.context`` (or that of the ``strategy``
    argument), the step ``self.step`` (0 before the first)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception as error:
            worker = getattr(self, "context", None) or context(kwargs.get("strategy"))
            lost = worker_lost(error, worker, int(getattr(self, "step", 0) or 0))
            if lost is None:
                raise
            raise lost from error

    return wrapper


class WorkerLostError(RuntimeError):
    """A peer of a multi-worker job died or stopped answering; this worker cannot go on."""


PEER_ERRORS = ("UnavailableError", "DeadlineExceededError", "AbortedError", "CancelledError")


def worker_lost(error: BaseException, worker: WorkerContext, step: int) -> WorkerLostError | None:
    """The :class:`WorkerLostError` for a failed collective, or None for any other error.

    Args:
      error: what the step raised.
      worker: this worker.
      step: the last step that completed here.
    """
    if not worker.multi_worker or type(error).__name__ not in PEER_ERRORS:
        return None
    text = str(error)
    # The first task named that is not this one (the text also names this task's own device).
    peers = [
        (kind, int(number))
        for kind, number in re.findall(r"/job:(\w+)(?:/replica:\d+)?/task:(\d+)", text)
        if (kind, int(number)) != (worker.task_type, worker.task_id)
    ]
    who = f"{peers[0][0]} {peers[0][1]}" if peers else "a worker"
    if "heartbeat" in text or "unhealthy" in text:
        how = "stopped sending heartbeats (it died, hung or was cut off; peer_timeout bounds the wait)"
    else:
        how = "died or closed its connection"
    return WorkerLostError(
        f"multi-worker job stopped after step {step} on {worker.task_type} {worker.task_id}: "
        f"{who} {how} ({type(error).__name__}). The job cannot continue with a worker "
        "missing: restart every worker with resume=True (lstmcore train --resume) to continue "
        "from the last checkpoint"
    )
