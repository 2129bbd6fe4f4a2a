"""One worker of the multi-worker tests: trains a small LSTM and writes what it measured.

Run by ``tests/multiworker_launcher.py`` (never collected by pytest): ``python
multiworker_worker.py SPEC_JSON``. With ``TF_CONFIG`` set it creates
``lstmcore.distributed.make_strategy()`` first (before any other TensorFlow operation);
without it, it trains in one process (the reference run). It writes
``<out>/<name>.json`` (losses, gradient norms, weights, the error if one was raised) and
exits 0, or 3 after an error.
"""

import json
import os
import sys
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(spec: dict) -> int:
    import tensorflow as tf

    # Two cores shared by every worker of the test: one thread each keeps them from fighting.
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    from lstmcore import distributed

    strategy = None
    if os.environ.get(distributed.TF_CONFIG):
        strategy = distributed.make_strategy(**spec.get("strategy", {}))
    import keras
    import numpy as np

    import lstmcore

    worker = distributed.context(strategy)
    name = spec.get("name") or f"{worker.task_type or 'single'}-{worker.task_id}"
    result = {"name": name, "pid": os.getpid(), "is_chief": worker.is_chief}
    rng = np.random.default_rng(0)
    x = rng.normal(size=(spec.get("samples", 64), 6, 2)).astype(np.float32)
    y = (x[:, -1, :1] * 2 + x[:, 0, 1:] * 0.5).astype(np.float32)

    def build():
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input((6, 2)), keras.layers.LSTM(8), keras.layers.Dense(1)])

    if strategy is not None:
        with strategy.scope():
            model = build()
    else:
        model = build()
    options = dict(spec["train"])
    if spec.get("validation"):
        options["validation_data"] = (x[-16:], y[-16:])
    started = time.perf_counter()
    try:
        history = lstmcore.train(model, (x, y), strategy=strategy, **options)
        result.update(
            loss=history["loss"].tolist(),
            grad_norm=history["grad_norm_before_clip"].tolist(),
            steps=history.history["step"].tolist() if "step" in history.history else None,
            stopped=getattr(history, "stopped", None),
            run_dir=getattr(history, "run_dir", None),
        )
        code = 0
    except Exception as error:  # noqa: BLE001 - reported to the test, which asserts on it
        result["error"] = f"{type(error).__name__}: {error}"
        result["traceback"] = traceback.format_exc()[-4000:]
        code = 3
    result["seconds"] = time.perf_counter() - started
    result["weights"] = [w.tolist() for w in model.get_weights()]
    with open(os.path.join(spec["out"], f"{name}.json"), "w") as handle:
        json.dump(result, handle)
    return code


if __name__ == "__main__":
    with open(sys.argv[1]) as handle:
        sys.exit(main(json.load(handle)))
