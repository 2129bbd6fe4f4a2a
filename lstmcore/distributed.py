"""Which process of a ``tf.distribute`` job this is, and what it may write.

One machine (the default strategy, ``MirroredStrategy``, ``OneDeviceStrategy``): one process,
the chief. ``MultiWorkerMirroredStrategy`` (configured by ``TF_CONFIG``): the chief (task
``chief`` 0, or ``worker`` 0 when the cluster names no chief) writes TensorBoard events, the
run manifest, the data report, the saved model and the diagnosis; every worker saves
checkpoints, the others to a temporary directory they delete (TensorFlow's multi-worker rule).
"""

from __future__ import annotations

import dataclasses


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
    workers = sum(len(spec.get(kind, [])) for kind in ("chief", "worker"))
    return WorkerContext(
        resolver.task_type,
        int(resolver.task_id or 0),
        max(workers, 1),
        bool(extended.should_checkpoint),
    )
