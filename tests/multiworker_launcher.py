"""Starts real worker processes on 127.0.0.1 for the multi-worker tests, and never hangs.

Free ports are picked at run time (bound to port 0, then released just before the workers
start); each worker gets its own ``TF_CONFIG``. Every wait has a timeout, and whatever is
still running when the caller is done (or fails) is killed with its process group.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "multiworker_worker.py")


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(ports: list[int], index: int) -> str:
    addresses = [f"127.0.0.1:{port}" for port in ports]
    return json.dumps(
        {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
    )


@dataclass
class Worker:
    index: int
    process: subprocess.Popen
    log: str
    returncode: int | None = None

    def output(self) -> str:
        with open(self.log, errors="replace") as handle:
            return handle.read()


@dataclass
class Job:
    """Worker processes of one job; use as a context manager so that none outlives the test."""

    spec: dict
    out: str
    workers: list[Worker] = field(default_factory=list)

    def start(
        self, count: int | None, env: dict | None = None, command: list[str] | None = None
    ) -> Job:
        """Starts ``count`` workers (None: one process without ``TF_CONFIG``).

        ``command`` replaces the worker script (e.g. ``lstmcore train ...``); it runs in
        ``self.out``.
        """
        ports = free_ports(count) if count else []
        for index in range(max(count or 0, 1)):
            environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
            environment.pop("TF_CONFIG", None)
            if count:
                environment["TF_CONFIG"] = tf_config(ports, index)
            spec_path = os.path.join(self.out, f"spec-{index}.json")
            with open(spec_path, "w") as handle:
                json.dump(self.spec, handle)
            log = os.path.join(self.out, f"log-{index}-{time.monotonic_ns()}.txt")
            with open(log, "w") as handle:
                process = subprocess.Popen(
                    command or [sys.executable, WORKER, spec_path],
                    cwd=self.out,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    env=environment,
                    start_new_session=True,
                )
            self.workers.append(Worker(index, process, log))
        return self

    def wait(self, timeout: float, workers: list[Worker] | None = None) -> list[int | None]:
        """Waits for ``workers`` (default all) until ``timeout`` seconds; None: still running."""
        deadline = time.monotonic() + timeout
        for worker in workers or self.workers:
            left = max(deadline - time.monotonic(), 0.01)
            try:
                worker.returncode = worker.process.wait(timeout=left)
            except subprocess.TimeoutExpired:
                worker.returncode = None
        return [w.returncode for w in workers or self.workers]

    def signal(self, index: int, signum: int) -> None:
        self.workers[index].process.send_signal(signum)

    def kill(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                try:
                    os.killpg(worker.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                worker.process.wait(timeout=30)

    def results(self) -> dict:
        found = {}
        for name in sorted(os.listdir(self.out)):
            if name.endswith(".json") and not name.startswith("spec-"):
                with open(os.path.join(self.out, name)) as handle:
                    found[name[:-5]] = json.load(handle)
        return found

    def logs(self) -> str:
        return "\n".join(f"--- worker {w.index} ---\n{w.output()[-3000:]}" for w in self.workers)

    def __enter__(self) -> Job:  # noqa: PYI034 - Python 3.10 has no typing.Self
        os.makedirs(self.out, exist_ok=True)
        return self

    def __exit__(self, *exc) -> None:
        self.kill()


def wait_for(predicate, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
