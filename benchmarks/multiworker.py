"""Multi-worker faults and costs: how fast a lost worker stops the job, what agreeing costs.

Two real worker processes on 127.0.0.1 (free ports chosen at run time, each with its own
``TF_CONFIG``) train a small LSTM under ``lstmcore.distributed.make_strategy``. Per repeat:

- ``kill``: SIGKILL worker 1 a few seconds into training; the seconds until worker 0 has
  raised (it must be ``WorkerLostError``).
- ``stop``: SIGSTOP worker 1 (alive but silent, as a hung or cut-off machine); the seconds
  until worker 0 has raised, against ``--peer-timeout``.

Each worker also times ``distributed.agree_to_stop`` (the all-reduce of one number that
keeps all workers stopping at one step) before training, and one process times
``distributed.iterator_at`` skipping 10,000 batches (the resume of a distributed iterator).
No speed-up of two workers over one is measured: two processes on one small machine share
its cores and talk over loopback, which says nothing about two machines.

    python -m benchmarks.multiworker --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np

WORKER = textwrap.dedent(
    """
    import json, os, sys, time
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(1)
    from lstmcore import distributed
    peer_timeout, out, calls = float(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    strategy = distributed.make_strategy(peer_timeout=peer_timeout)
    import keras, numpy as np, lstmcore
    distributed.agree_to_stop(strategy, False)  # the first call waits for both workers
    seconds = []
    for _ in range(calls):
        began = time.perf_counter()
        distributed.agree_to_stop(strategy, False)
        seconds.append(time.perf_counter() - began)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 24, 4)).astype(np.float32)
    y = x[:, -1, :1]
    with strategy.scope():
        model = keras.Sequential([keras.Input((24, 4)), keras.layers.LSTM(32), keras.layers.Dense(1)])
    result = {"agree_seconds": seconds}

    class Started(lstmcore.actions.Action):  # says when step 50 is done: well into the steps
        def next_step(self, trainer, step):
            return 50 if step < 50 else None

        def at_step(self, trainer, step):
            open(out + ".started", "w").close()

    try:
        lstmcore.Trainer(model, (x, y), strategy=strategy, steps=10**6, batch_size=16,
                         logdir=None, progress=False, check=False, probe_every=None,
                         actions=[Started()]).fit()
    except Exception as error:
        result["ended"] = time.time()
        result["error"] = f"{type(error).__name__}: {str(error)[:400]}"
    with open(out, "w") as handle:
        json.dump(result, handle)
    """
)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def one_fault(kind: str, folder: str, peer_timeout: float, calls: int) -> dict:
    """Starts two workers, stops or kills worker 1 during training, times worker 0's error."""
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    outs = [os.path.join(folder, f"{kind}-{time.monotonic_ns()}-{i}.json") for i in range(2)]
    processes = []
    try:
        for index in range(2):
            env = {
                **os.environ,
                "TF_CPP_MIN_LOG_LEVEL": "3",
                "TF_CONFIG": json.dumps(
                    {"cluster": cluster, "task": {"type": "worker", "index": index}}
                ),
            }
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-c", WORKER, str(peer_timeout), outs[index], str(calls)],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=open(outs[index] + ".log", "w"),  # noqa: SIM115 - closed on exit
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + 600
        while not all(os.path.exists(out + ".started") for out in outs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                logs = [open(out + ".log").read()[-2000:] for out in outs]  # noqa: SIM115
                raise RuntimeError(f"{kind}: the workers did not start training: {logs}")
            time.sleep(0.1)
        time.sleep(1.0)
        signalled = time.time()
        processes[1].send_signal(signal.SIGKILL if kind == "kill" else signal.SIGSTOP)
        processes[0].wait(timeout=peer_timeout + 120)
        with open(outs[0]) as handle:
            result = json.load(handle)
        return {
            "fault": kind,
            "peer_timeout": peer_timeout,
            "seconds_to_error": round(result["ended"] - signalled, 2),
            "error": result.get("error", "")[:200],
            "agree_ms_median": round(1000 * float(np.median(result["agree_seconds"])), 2),
        }
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


def skip_seconds(batches: int = 10_000) -> float:
    """Seconds for ``iterator_at`` to produce its first batch after ``batches`` skipped."""
    import tensorflow as tf

    from lstmcore import distributed, inputs

    x = np.random.default_rng(0).normal(size=(64, 6, 2)).astype(np.float32)
    prepared = inputs.prepare(
        (x, x[:, -1, :1]), name="data", batch_size=16, shuffle=True, seed=0, repeat=True
    )
    strategy = tf.distribute.get_strategy()
    began = time.perf_counter()
    next(distributed.iterator_at(strategy, prepared.dataset, batches))
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peer-timeout", type=float, default=5.0)
    parser.add_argument("--agree-calls", type=int, default=200)
    parser.add_argument("--out", default="benchmarks/results", help="folder for the results")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from .common import environment, environment_lines, markdown_table, write_jsonl

    command = "python -m benchmarks.multiworker " + " ".join(sys.argv[1:] if argv is None else argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="lstmcore-multiworker-") as folder:
        for repeat in range(args.repeats):
            for kind in ("kill", "stop"):
                row = one_fault(kind, folder, args.peer_timeout, args.agree_calls)
                row["repeat"] = repeat
                rows.append(row)
                print(json.dumps(row), flush=True)
    skips = [skip_seconds() for _ in range(3)]
    env = environment(command)
    os.makedirs(args.out, exist_ok=True)
    write_jsonl(os.path.join(args.out, "multiworker_cpu2core.jsonl"), [{**r, **env} for r in rows])

    def summary(values):
        return f"{np.median(values):.2f} ({min(values):.2f} to {max(values):.2f})"

    table = []
    for kind, what in (("kill", "SIGKILL (died)"), ("stop", "SIGSTOP (hung)")):
        chosen = [r for r in rows if r["fault"] == kind]
        lost = sum(r["error"].startswith("WorkerLostError") for r in chosen)
        table.append(
            [what, summary([r["seconds_to_error"] for r in chosen]), f"{lost} of {len(chosen)}"]
        )
    agree = [r["agree_ms_median"] for r in rows]
    lines = [
        "# Multi-worker faults and costs (2 worker processes on 127.0.0.1, 2 CPU cores)",
        "",
        *environment_lines(env),
        "",
        (
            f"Seconds from the signal to worker 1 until worker 0 raised; peer_timeout "
            f"{args.peer_timeout:g} s; median (range) of {args.repeats} repeats."
        ),
        "",
        *markdown_table(
            ["fault on worker 1", "seconds to worker 0's error", "WorkerLostError"], table
        ),
        "",
        (
            f"- Stop agreement (`distributed.agree_to_stop`, one all-reduce of one number): median "
            f"{summary(agree)} ms per call over {args.agree_calls} calls, medians of each run."
        ),
        (
            f"- `distributed.iterator_at` skipping 10,000 batches of 16 windows (a resumed "
            f"distributed iterator): {summary(skips)} s over 3 runs."
        ),
        (
            "- Not measured: speed. Two processes on one 2-core machine share its cores and talk "
            "over loopback; their throughput says nothing about two machines."
        ),
    ]
    with open(os.path.join(args.out, "multiworker_cpu2core.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return rows


if __name__ == "__main__":
    main()
