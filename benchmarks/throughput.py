"""LSTM training throughput: lstmcore's step and kernels beside Keras and PyTorch on the same problems.

Every implementation trains the same model on the same fixed batch: an LSTM over
``[B, T, I]`` inputs, a Dense/Linear head to one output on the last step's output, MSE,
Adam (1e-3). The implementations (:data:`IMPLEMENTATIONS`, a table of builders):

- ``lstmcore_step+*``: lstmcore's compiled training step (``lstmcore.step.make_train_step``,
  global-norm clipping at 1.0, returning everything lstmcore logs per step: loss, global and
  per-layer, per-gate gradient norms, clip flags; all fetched at the end of each timed block as
  ``lstmcore.train`` fetches them at a flush; TensorBoard writes are not included),
- ``bare_step+*``: a hand-written Keras ``tf.function`` step (tape, ``optimizer.apply``),
- ``*(x8)``: the same step run 8 times per call of the compiled function (``lstmcore.train``'s
  ``steps_per_execution=8``; for the bare step, a ``tf.range`` loop as Keras's
  ``steps_per_execution``); times are per optimizer step,
- ``*+fused_adam``: with ``lstmcore.optimizers.Adam`` (what ``lstmcore.train`` uses for
  ``optimizer="fused_adam"``; ``"adam"``, the default, is Keras's) instead of Keras's Adam,
  which every other row uses,
- the layers: ``lstmcore.LSTM`` with ``kernel="auto"`` (cuDNN with a GPU, the CPU kernel
  without), ``keras.LSTM`` (cuDNN with a GPU, Keras's generic kernel without),
  ``keras.LSTM(use_cudnn=False)`` (GPU runs only: on a CPU it is ``keras.LSTM``),
  ``lstmcore.LSTM(kernel="xla")``,
- ``pytorch``: ``torch.nn.LSTM`` + ``nn.Linear``, in a child process (one process running
  both libraries makes their thread pools spin against each other on a CPU) whose timed
  blocks take their turn among the TensorFlow ones.

Timing (:func:`benchmarks.common.median_block_seconds`): warm-up steps first (tracing and
compilation excluded), then the TensorFlow implementations take turns running blocks of steps,
each block ended by a device synchronisation; the median per-step time over blocks is reported.
Ratios are against PyTorch (``speed_vs_torch = torch ms / ms``, above 1 is faster than
PyTorch) and, for the cost of lstmcore's logging, against the bare step on the same layer.

    CUDA_VISIBLE_DEVICES=-1 python -m benchmarks.throughput --preset cpu --out benchmarks/results
    python -m benchmarks.throughput --device gpu --preset gpu --out benchmarks/results
    python -m benchmarks.throughput --preset smoke --out /tmp/bench      # seconds, for tests

Writes ``throughput_<tag>.jsonl`` (one line per problem and implementation),
``throughput_<tag>.md``, ``throughput_<tag>.png`` (with matplotlib) and TensorBoard events
under ``<tensorboard>/throughput_<tag>``. A GPU run fails if a layer meant to run on cuDNN
does not: what runs is read from each compiled step's graph (a ``CudnnRNNV3`` op, in the
function library too), not re-derived from Keras's rules. ``--implementations`` times a subset;
the ``.jsonl`` is rewritten after every problem, so a run stopped early keeps what it measured.
Measured figures, with the machine and the command, are in ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass

import numpy as np

from . import common, problems

TIMING = {
    # preset -> warm-up steps, timed blocks, least seconds per block.
    "smoke": (1, 2, 0.0),
    "cpu": (3, 7, 0.3),
    "deepbench": (10, 10, 0.2),
    "gpu": (10, 10, 0.2),
}


@dataclass(frozen=True)
class Implementation:
    name: str
    step: str  # "lstmcore" or "bare"
    layer: str  # "lstmcore-auto", "lstmcore-xla", "keras", "keras-generic"
    devices: tuple[str, ...]
    expects_cudnn_on_gpu: bool
    steps_per_execution: int = 1  # optimizer steps per call of the compiled function
    fused_adam: bool = False  # lstmcore.optimizers.Adam (what train uses) instead of Keras's


IMPLEMENTATIONS = [
    Implementation(
        "lstmcore_step+lstmcore.LSTM", "lstmcore", "lstmcore-auto", ("cpu", "gpu"), True
    ),
    Implementation("bare_step+lstmcore.LSTM", "bare", "lstmcore-auto", ("cpu", "gpu"), True),
    Implementation(
        "lstmcore_step(x8)+lstmcore.LSTM", "lstmcore", "lstmcore-auto", ("cpu", "gpu"), True, 8
    ),
    Implementation("bare_step(x8)+lstmcore.LSTM", "bare", "lstmcore-auto", ("cpu", "gpu"), True, 8),
    Implementation(
        "lstmcore_step(x8)+lstmcore.LSTM+fused_adam",
        "lstmcore",
        "lstmcore-auto",
        ("cpu", "gpu"),
        True,
        8,
        fused_adam=True,
    ),
    Implementation("lstmcore_step+keras.LSTM", "lstmcore", "keras", ("cpu", "gpu"), True),
    Implementation("bare_step+keras.LSTM", "bare", "keras", ("cpu", "gpu"), True),
    Implementation(
        "bare_step+keras.LSTM(use_cudnn=False)", "bare", "keras-generic", ("gpu",), False
    ),
    Implementation(
        "bare_step+lstmcore.LSTM(kernel=xla)", "bare", "lstmcore-xla", ("cpu", "gpu"), False
    ),
]
# PyTorch at its default thread count and at one thread: on a small CPU shared with other
# jobs, OpenMP's barriers (several per time step) stall whenever a core is taken, which can make
# the default many times slower than one thread. Ratios use the faster of the two in the run.
TORCH_THREADS = {"pytorch": None, "pytorch(1 thread)": 1}


def make_data(problem: dict) -> tuple[np.ndarray, np.ndarray]:
    """One fixed batch: inputs ``[B, T, I]`` ~ N(0, 1), targets ``[B, 1]`` ~ N(0, 1)."""
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(problem["batch"], problem["time"], problem["input"])).astype(
        np.float32
    )
    targets = rng.normal(size=(problem["batch"], 1)).astype(np.float32)
    return inputs, targets


def _layer(kind: str, units: int):
    import keras

    from lstmcore.layers import LSTM

    if kind == "lstmcore-auto":
        return LSTM(units, kernel="auto")
    if kind == "lstmcore-xla":
        return LSTM(units, kernel="xla")
    if kind == "keras":
        return keras.layers.LSTM(units)
    if kind == "keras-generic":
        return keras.layers.LSTM(units, use_cudnn=False)
    raise ValueError(
        f"layer kind must be one of lstmcore-auto, lstmcore-xla, keras, keras-generic; got {kind!r}"
    )


def build_step(implementation: Implementation, problem: dict):
    """Builds one implementation's model and compiled step on ``problem``.

    Returns:
      ``(step, kernel)``: ``step()`` runs one training step and returns tensors to synchronise
      on; ``kernel`` names the recurrent kernel that runs (from the layer's own report).

    Raises:
      RuntimeError: on a GPU, when a layer meant to run on cuDNN does not (read from the
        traced step's graph: a CudnnRNNV3 op, in the function library too).
    """
    import keras
    import tensorflow as tf

    from lstmcore import cudnn_report, optimizers
    from lstmcore.kernel_report import traces_cudnn
    from lstmcore.step import make_multi_step, make_train_step

    keras.utils.set_random_seed(0)
    layer = _layer(implementation.layer, problem["hidden"])
    model = keras.Sequential(
        [keras.Input((problem["time"], problem["input"])), layer, keras.layers.Dense(1)]
    )
    (report,) = cudnn_report(model)
    inputs, targets = make_data(problem)
    iterator = iter(tf.data.Dataset.from_tensors((inputs, targets)).repeat())
    optimizer = (optimizers.Adam if implementation.fused_adam else keras.optimizers.Adam)(1e-3)
    optimizer.build(model.trainable_variables)
    count = implementation.steps_per_execution
    if implementation.step == "lstmcore":
        step, _ = make_train_step(
            model,
            optimizer,
            keras.losses.get("mse"),
            clip="global_norm",
            clip_norm=1.0,
            clip_groups=None,
        )
        if count == 1:
            function, args = step, (iterator,)
        else:
            function, args = make_multi_step(step), (iterator, tf.constant(count))
    else:
        loss_fn = keras.losses.MeanSquaredError()
        variables = model.trainable_variables

        def one_bare_step(iterator):
            batch_inputs, batch_targets = next(iterator)
            with tf.GradientTape() as tape:
                loss = loss_fn(batch_targets, model(batch_inputs, training=True))
            optimizer.apply(tape.gradient(loss, variables), variables)
            return loss

        @tf.function
        def bare_steps(iterator):
            # As Keras's steps_per_execution: a loop of steps in one call; the last loss returned.
            loss = one_bare_step(iterator)
            for _ in tf.range(count - 1):
                loss = one_bare_step(iterator)
            return loss

        function = tf.function(one_bare_step) if count == 1 else bare_steps
        args = (iterator,)
    # What runs is what the compiled step's graph holds (the multi-step loop keeps its body in
    # the function library): tracing here is the trace the timed calls reuse.
    ran_cudnn = traces_cudnn(function, *args)
    kernel = getattr(layer, "kernel_name", None) or (
        "keras-cudnn" if ran_cudnn else "keras-generic"
    )
    if common.gpu_visible() and implementation.expects_cudnn_on_gpu and not ran_cudnn:
        raise RuntimeError(
            f"{implementation.name}: expected the cuDNN kernel on the GPU, but the compiled "
            f"step's graph has no CudnnRNNV3 op (layer report: {report.reason})"
        )
    return (lambda: function(*args)), kernel


def torch_child(spec_json: str) -> None:
    """Entry point of the PyTorch child process, driven through stdin and stdout.

    Builds the model, warms it up and prints ``{"kernel", "threads", "steps_per_block"}`` as one
    JSON line; then, for each ``run`` line read, runs one block and prints its seconds per step;
    exits on ``quit`` or end of input.
    """
    import time

    import torch

    spec = json.loads(spec_json)
    problem, device = spec["problem"], spec["device"]
    torch_device = torch.device("cuda" if device == "gpu" else "cpu")
    if device == "gpu" and not torch.cuda.is_available():
        raise RuntimeError("device='gpu' but torch.cuda.is_available() is False")
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(problem["input"], problem["hidden"], batch_first=True).to(torch_device)
    head = torch.nn.Linear(problem["hidden"], 1).to(torch_device)
    optimizer = torch.optim.Adam([*lstm.parameters(), *head.parameters()], lr=1e-3)
    inputs, targets = (torch.from_numpy(a).to(torch_device) for a in make_data(problem))

    def step():
        optimizer.zero_grad(set_to_none=True)
        outputs, _ = lstm(inputs)
        loss = torch.mean((head(outputs[:, -1]) - targets) ** 2)
        loss.backward()
        optimizer.step()
        return loss

    def finish(loss):
        loss.item()
        if torch_device.type == "cuda":
            torch.cuda.synchronize()

    elapsed = 0.0
    for _ in range(max(spec["warmup"], 1)):
        start = time.perf_counter()
        finish(step())
        elapsed = time.perf_counter() - start
    block = max(1, int(spec["min_block"] / max(elapsed, 1e-9)))
    kernel = "torch-cudnn" if torch_device.type == "cuda" else "torch-cpu"
    print(
        json.dumps(
            {"kernel": kernel, "threads": torch.get_num_threads(), "steps_per_block": block}
        ),
        flush=True,
    )
    for line in sys.stdin:
        if line.strip() != "run":
            break
        start = time.perf_counter()
        for _ in range(block):
            loss = step()
        finish(loss)
        print((time.perf_counter() - start) / block, flush=True)


class TorchChild:
    """A PyTorch child process timing one problem, one block per :meth:`run_block` call.

    PyTorch runs in its own process (one process running both libraries makes their thread
    pools fight), but its blocks take turns with the TensorFlow ones, so that changing load on
    a shared machine hits both alike.
    """

    def __init__(
        self, problem: dict, *, device: str, warmup: int, min_block: float, threads: int | None
    ):
        spec = json.dumps(
            {
                "problem": problem,
                "device": device,
                "warmup": warmup,
                "min_block": min_block,
                "threads": threads,
            }
        )
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
        )
        command = [
            sys.executable,
            "-c",
            f"import sys; from {__package__}.throughput import torch_child as child; "
            + "child(sys.argv[1])",
            spec,
        ]
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.info = json.loads(self._read())

    def _read(self) -> str:
        line = self._process.stdout.readline()
        if not line:
            self._process.wait()
            raise RuntimeError(
                f"the PyTorch child process failed:\n{self._process.stderr.read()[-2000:]}"
            )
        return line

    def run_block(self) -> float:
        self._process.stdin.write("run\n")
        self._process.stdin.flush()
        return float(self._read())

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.stdin.write("quit\n")
            self._process.stdin.close()
            self._process.wait(timeout=60)


def measure(
    problem: dict,
    *,
    device: str,
    warmup: int,
    rounds: int,
    min_block: float,
    with_torch: bool,
    names: list[str] | None = None,
) -> list[dict]:
    """Times every implementation that runs on ``device`` (or those in ``names``); one row each."""
    implementations = [
        impl
        for impl in IMPLEMENTATIONS
        if device in impl.devices and (names is None or impl.name in names)
    ]
    steps, kernels = {}, {}
    for impl in implementations:
        steps[impl.name], kernels[impl.name] = build_step(impl, problem)
    children = {}
    try:
        if with_torch:
            # The thread count matters to PyTorch's CPU kernels only; on a GPU one child will do.
            torch_threads = TORCH_THREADS if device == "cpu" else {"pytorch": None}
            for name, threads in torch_threads.items():
                children[name] = TorchChild(
                    problem, device=device, warmup=warmup, min_block=min_block, threads=threads
                )
        timings = common.median_block_seconds(
            steps,
            warmup_steps=warmup,
            rounds=rounds,
            min_block_seconds=min_block,
            external={name: child.run_block for name, child in children.items()},
        )
    finally:
        for child in children.values():
            child.close()
    for name, child in children.items():
        kernels[name] = child.info["kernel"]
        timings[name].update(
            steps_per_block=child.info["steps_per_block"], threads=child.info["threads"]
        )
    torch_baseline = min(children, key=lambda name: timings[name]["seconds"]) if children else None
    for impl in implementations:
        # A call of a multi-step function ran steps_per_execution steps.
        timing = timings[impl.name]
        timing["seconds"] /= impl.steps_per_execution
        timing["block_seconds"] = [s / impl.steps_per_execution for s in timing["block_seconds"]]
        timing["steps_per_block"] *= impl.steps_per_execution
    bare_of = {
        (impl.layer, impl.steps_per_execution): impl.name
        for impl in implementations
        if impl.step == "bare"
    }
    flops = problems.flops_per_training_step(problem)
    rows = []
    for impl_name, timing in timings.items():
        seconds = timing["seconds"]
        impl = next((i for i in implementations if i.name == impl_name), None)
        logging_cost = None
        bare = None if impl is None else bare_of.get((impl.layer, impl.steps_per_execution))
        if impl is not None and impl.step == "lstmcore" and not impl.fused_adam and bare:
            # Same layer, optimizer and steps per call: the difference is what lstmcore adds.
            logging_cost = seconds / timings[bare]["seconds"]
        rows.append(
            {
                **{key: problem[key] for key in ("batch", "time", "input", "hidden", "origin")},
                "implementation": impl_name,
                "kernel": kernels[impl_name],
                "ms_per_step": 1e3 * seconds,
                "sequences_per_s": problem["batch"] / seconds,
                "tflops": flops / seconds / 1e12,
                "flops_per_step": flops,
                "speed_vs_torch": (
                    timings[torch_baseline]["seconds"] / seconds if torch_baseline else None
                ),
                "torch_baseline": torch_baseline,
                "logging_cost": logging_cost,
                "steps_per_block": timing["steps_per_block"],
                "rounds": timing["rounds"],
                "block_ms": [1e3 * s for s in timing["block_seconds"]],
                "torch_threads": timing.get("threads"),
            }
        )
    return rows


def _share(row: dict, env: dict) -> float | None:
    peaks = common.peak_tflops(env["device"]) if env["device_kind"] == "gpu" else None
    if not peaks:
        return None
    return 100 * row["tflops"] / peaks["tf32" if env["tf32_enabled"] else "fp32"]


def _fmt(value, spec: str):
    return None if value is None else format(value, spec)


def write_markdown(path: str, rows: list[dict], env: dict, notes: list[str]) -> None:
    peaks = common.peak_tflops(env["device"]) if env["device_kind"] == "gpu" else None
    lines = [
        f"# LSTM training throughput ({env['device']})",
        "",
        *common.environment_lines(env),
        "",
    ]
    lines += [f"- {note}" for note in notes]
    lines += [
        (
            "- ms/step: median over timed blocks of per-step time, after warm-up, device synchronised "
            "at the end of each block. TFLOP/s counts 3 x 2 x 4H(I+H)BT per step."
        ),
        (
            "- vs torch: PyTorch ms / this ms, in the same run, against the faster of PyTorch at "
            "its default thread count and at one thread (above 1: faster than PyTorch). "
            "logging cost: lstmcore step / bare step on the same layer, with as many steps "
            "per call (x8: 8 optimizer steps per call of the compiled function, as Keras's "
            "steps_per_execution; ms/step is per optimizer step)."
        ),
        "- % peak: "
        + (
            f"of {'TF32' if env['tf32_enabled'] else 'FP32'} peak "
            f"{peaks['tf32' if env['tf32_enabled'] else 'fp32']} TFLOP/s"
            if peaks
            else "empty (no peak known for this device)"
        ),
        "",
    ]
    header = [
        "problem",
        "implementation",
        "kernel",
        "ms/step",
        "seq/s",
        "TFLOP/s",
        "% peak",
        "vs torch",
        "logging cost",
    ]
    table = []
    for row in rows:
        table.append(
            [
                problems.label(row),
                row["implementation"],
                row["kernel"],
                _fmt(row["ms_per_step"], ".2f"),
                _fmt(row["sequences_per_s"], ",.0f"),
                _fmt(row["tflops"], ".4f"),
                _fmt(row.get("share_of_peak_pct"), ".2f"),
                _fmt(row["speed_vs_torch"], ".2f"),
                _fmt(row["logging_cost"], ".3f"),
            ]
        )
    lines += common.markdown_table(header, table)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def write_plot(path: str, rows: list[dict], env: dict) -> bool:
    plt = common.pyplot()
    if plt is None:
        return False
    labels = list(dict.fromkeys(problems.label(r) for r in rows))
    names = list(dict.fromkeys(r["implementation"] for r in rows))
    fig, ax = plt.subplots(figsize=(max(8, 1.8 * len(labels)), 5))
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        values = [
            next(
                (
                    r["ms_per_step"]
                    for r in rows
                    if r["implementation"] == name and problems.label(r) == lab
                ),
                np.nan,
            )
            for lab in labels
        ]
        ax.bar(np.arange(len(labels)) + k * width, values, width, label=name)
    ax.set_xticks(
        np.arange(len(labels)) + 0.4 - width / 2, labels, rotation=20, ha="right", fontsize=8
    )
    ax.set_yscale("log")
    ax.set_ylabel("ms per training step (log)")
    ax.set_title(f"LSTM training step time, {env['device']}, {env['date'][:10]}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> list[dict]:
    """Runs the throughput benchmark; returns the rows it wrote.

    Args:
      argv: command-line arguments; None reads ``sys.argv``.
    """
    parser = argparse.ArgumentParser(
        prog="benchmarks.throughput", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--preset", default="cpu", choices=sorted(problems.THROUGHPUT_PRESETS))
    parser.add_argument(
        "--device",
        default="cpu",
        choices=("cpu", "gpu"),
        help="cpu hides the GPU from this process",
    )
    parser.add_argument(
        "--out", default="benchmarks/results", help="directory for the .jsonl, .md and .png"
    )
    parser.add_argument("--tag", default=None, help="file-name tag (default: cpu<N>core or gpu)")
    parser.add_argument(
        "--tensorboard", default=None, help="TensorBoard directory (default: <out>/tensorboard)"
    )
    parser.add_argument(
        "--no-torch", action="store_true", help="skip PyTorch even when it is installed"
    )
    parser.add_argument(
        "--implementations",
        nargs="+",
        default=None,
        choices=[impl.name for impl in IMPLEMENTATIONS],
        metavar="NAME",
        help="time only these implementations (default: all that run on the device)",
    )
    parser.add_argument("--warmup-steps", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument(
        "--note",
        action="append",
        default=[],
        help="a line to add to the Markdown notes (repeatable)",
    )
    args = parser.parse_args(argv)
    command = "python -m benchmarks.throughput " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )

    common.select_device(args.device)
    import importlib.util

    warmup, rounds, min_block = TIMING[args.preset]
    warmup = args.warmup_steps or warmup
    rounds = args.rounds or rounds
    with_torch = not args.no_torch and importlib.util.find_spec("torch") is not None
    env = common.environment(command)
    tag = args.tag or (f"cpu{os.cpu_count()}core" if args.device == "cpu" else "gpu")
    os.makedirs(args.out, exist_ok=True)
    notes = list(args.note)
    if args.device == "cpu":
        notes.append(
            "CPU run (GPU hidden): lstmcore.LSTM(kernel='auto') is the CPU kernel and keras.LSTM is "
            "Keras's generic kernel, so keras.LSTM(use_cudnn=False) is not repeated."
        )
        notes.append("GPU numbers are not measured in this file.")
    if not with_torch:
        notes.append("PyTorch not importable (or --no-torch): no PyTorch baseline, vs torch empty.")
    tensorboard = common.ScalarWriter(
        os.path.join(args.tensorboard or os.path.join(args.out, "tensorboard"), f"throughput_{tag}")
    )
    rows = []
    for index, problem in enumerate(problems.THROUGHPUT_PRESETS[args.preset]):
        problem_rows = measure(
            problem,
            device=args.device,
            warmup=warmup,
            rounds=rounds,
            min_block=min_block,
            with_torch=with_torch,
            names=args.implementations,
        )
        for row in problem_rows:
            row["share_of_peak_pct"] = _share(row, env)
            row.update(env)
            tensorboard.scalar(f"ms_per_step/{row['implementation']}", row["ms_per_step"], index)
            tensorboard.scalar(f"tflops/{row['implementation']}", row["tflops"], index)
            print(
                f"{problems.label(problem):<26} {row['implementation']:<40} {row['kernel']:<14} "
                f"{row['ms_per_step']:9.2f} ms  {row['sequences_per_s']:10.0f} seq/s  "
                f"{row['tflops']:.4f} TFLOP/s  vs torch {_fmt(row['speed_vs_torch'], '.2f')}  "
                f"logging {_fmt(row['logging_cost'], '.3f')}",
                flush=True,
            )
        rows += problem_rows
        # Rewritten after every problem: a run stopped by a time limit keeps what it measured.
        common.write_jsonl(os.path.join(args.out, f"throughput_{tag}.jsonl"), rows)
    base = os.path.join(args.out, f"throughput_{tag}")
    if not write_plot(base + ".png", rows, env):
        notes.append("matplotlib is not importable: no plot written.")
    write_markdown(base + ".md", rows, env, notes)
    with open(base + ".md", encoding="utf-8") as f:
        tensorboard.text("throughput", f.read())
    tensorboard.close()
    print(f"wrote {base}.jsonl, {base}.md" + (", .png" if os.path.exists(base + ".png") else ""))
    return rows


if __name__ == "__main__":
    main()
