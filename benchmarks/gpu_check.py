"""One command for a GPU machine: the GPU tests, throughput, vanishing gradients and the adding problem.

No GPU has been lent to lstmcore's development; everything that can be checked without one
is (``tests/test_gpu_graph.py`` traces the cuDNN graphs on a CPU). This is what runs when a
GPU is there, in about 8 minutes, every result under one folder:

1. ``tests``: the GPU-sensitive test files (``test_kernels``, ``test_layers``,
   ``test_gpu_graph``, ``test_keras_conformance``): on a GPU the cuDNN tests run instead of
   skipping (junit XML and the log kept).
2. ``throughput``: ``benchmarks.throughput`` at the 22 DeepBench LSTM training shapes, lstmcore's
   layer (cuDNN) and Keras's LSTM in a bare step, beside PyTorch ``nn.LSTM`` when it is
   importable; fails if a layer meant for cuDNN has no CudnnRNNV3 op in its step's graph.
3. ``vanishing``: input-gradient profiles at initialisation of every model of
   ``benchmarks.vanishing`` at T = 50, 200 and 1000 (two seeds), and the memory horizon each
   gives (``benchmarks.vanishing.profile_at_init``).
4. ``adding``: the adding problem at T = 1000 trained with lstmcore's recommended setup
   (chrono-initialised ``lstmcore.layers.LSTM``, global-norm clipping at 1.0, warmup over the
   first 10% of steps), via ``benchmarks.vanishing.train_task``.

Each stage is a child process with its own time limit (the limits add up to 8 minutes), so a
stage that fails or overruns leaves the others' results; ``summary.md`` and ``summary.json``
say what each stage did, with its return code, wall time and files.

    python -m benchmarks.gpu_check --out benchmarks/results/gpu_check      # on a GPU
    python -m benchmarks.gpu_check --dry-run --out /tmp/gpu_check          # CPU, tiny shapes

``--dry-run`` runs stages 2 to 4 on the CPU at tiny shapes (seconds), so the script cannot rot
(``tests/test_gpu_check.py`` runs it); the test stage is listed, not run, since the test suite
is what runs the dry run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

TEST_FILES = [
    "tests/test_kernels.py",
    "tests/test_layers.py",
    "tests/test_gpu_graph.py",
    "tests/test_keras_conformance.py",
]
THROUGHPUT_IMPLEMENTATIONS = ["bare_step+lstmcore.LSTM", "bare_step+keras.LSTM"]
# The recommended setup for long memory (benchmarks/results/vanishing_cpu2core.md: the chrono
# LSTM with clipping and warmup holds the longest horizon) at T = 1000.
ADDING = {
    "model": "lstm_chrono",
    "setting": "clip+warmup",
    "length": 1000,
    "preset": {
        "seeds": [0],
        "units": 128,
        "batch": 64,
        "train_steps": 2000,
        "learning_rate": 1e-3,
        "eval_samples": 1024,
        "train_samples": 16384,
    },
}
PROFILES = {"lengths": [50, 200, 1000], "preset": {"seeds": [0, 1], "units": 128, "batch": 64}}
DRY_PROFILES = {"lengths": [8], "preset": {"seeds": [0], "units": 8, "batch": 8}}
DRY_ADDING = {
    "model": "lstm_chrono",
    "setting": "clip+warmup",
    "length": 6,
    "preset": {
        "seeds": [0],
        "units": 8,
        "batch": 8,
        "train_steps": 4,
        "learning_rate": 1e-2,
        "eval_samples": 16,
        "train_samples": 32,
    },
}


@dataclass
class Stage:
    name: str
    command: list[str]
    limit_s: int
    returncode: int | None = None
    seconds: float | None = None
    status: str = "not run"
    files: list[str] = field(default_factory=list)


def plan(out: str, *, dry_run: bool) -> list[Stage]:
    """The stages, their commands and time limits (seconds).

    Args:
      out: the results folder; each stage writes under ``out/<stage>``.
      dry_run: CPU and tiny shapes instead of the GPU and the real sizes.

    Returns:
      The stages, in the order they run.
    """
    python = sys.executable
    device = "cpu" if dry_run else "gpu"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    test_files = [f for f in TEST_FILES if os.path.exists(os.path.join(root, f))]
    stages = [
        Stage(
            "tests",
            # The fast tier: every GPU test is in it; the slow tier adds CPU-kernel repeats.
            [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow"]
            + [*test_files, f"--junitxml={os.path.join(out, 'tests', 'junit.xml')}"],
            limit_s=110,
        ),
        Stage(
            "throughput",
            [python, "-m", f"{__package__}.throughput", "--device", device]
            + ["--preset", "smoke" if dry_run else "deepbench", "--tag", "gpu_check"]
            + ["--implementations", *THROUGHPUT_IMPLEMENTATIONS]
            + ["--warmup-steps", "1" if dry_run else "3", "--rounds", "2" if dry_run else "3"]
            + ["--out", os.path.join(out, "throughput")],
            limit_s=210,
        ),
        Stage(
            "vanishing",
            [python, "-m", f"{__package__}.gpu_check", "--stage", "vanishing", "--device", device]
            + ["--out", os.path.join(out, "vanishing")]
            + (["--dry-run"] if dry_run else []),
            limit_s=50,
        ),
        Stage(
            "adding",
            [python, "-m", f"{__package__}.gpu_check", "--stage", "adding", "--device", device]
            + ["--out", os.path.join(out, "adding")]
            + (["--dry-run"] if dry_run else []),
            limit_s=110,
        ),
    ]
    return stages


def run_stage(stage: Stage, out: str) -> None:
    """Runs one stage as a child process under its time limit; fills in what happened."""
    folder = os.path.join(out, stage.name)
    os.makedirs(folder, exist_ok=True)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    started = time.perf_counter()
    with open(os.path.join(folder, "log.txt"), "w", encoding="utf-8") as log:
        log.write(" ".join(stage.command) + "\n\n")
        log.flush()
        try:
            process = subprocess.run(
                stage.command,
                cwd=root,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=stage.limit_s,
                check=False,
            )
            stage.returncode = process.returncode
            stage.status = "passed" if process.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            stage.status = f"stopped at its {stage.limit_s} s limit (partial results kept)"
    stage.seconds = time.perf_counter() - started
    # Top-level entries only: a training run's own folder holds dozens of files.
    stage.files = sorted(
        os.path.join(stage.name, name) + ("/" if os.path.isdir(os.path.join(folder, name)) else "")
        for name in os.listdir(folder)
    )


def vanishing_profiles(out: str, device: str, *, dry_run: bool) -> list[dict]:
    """Gradient profiles at initialisation; writes ``profiles.jsonl`` and ``profiles.md``."""
    from . import common

    common.select_device(device)
    import numpy as np

    from . import vanishing

    spec = DRY_PROFILES if dry_run else PROFILES
    env = common.environment("python -m benchmarks.gpu_check --stage vanishing")
    os.makedirs(out, exist_ok=True)
    rows = []
    for length in spec["lengths"]:
        for name in vanishing.MODELS:
            row = {**vanishing.profile_at_init(name, length, spec["preset"]), **env}
            # Every 10th distance keeps the file small; the horizon is from the full profile.
            row["ratio"] = [v if np.isfinite(v) else None for v in row["ratio"][::10]]
            rows.append(row)
            # Rewritten after every profile: a stage stopped at its limit keeps what it has.
            common.write_jsonl(os.path.join(out, "profiles.jsonl"), rows)
            print(f"profile T={length} {name}: horizon {row['horizon']}", flush=True)
    lines = ["# Memory horizon at initialisation (first d with g(d)/g(0) < 0.01)", ""]
    lines += common.environment_lines(env)
    lines += ["", "| model | " + " | ".join(f"T={t}" for t in spec["lengths"]) + " |"]
    lines += ["|---|" + "---|" * len(spec["lengths"])]
    for name in vanishing.MODELS:
        cells = [
            next(
                (f">= {t - 1}" if r["horizon"] is None else str(r["horizon"]))
                for r in rows
                if r["model"] == name and r["T"] == t
            )
            for t in spec["lengths"]
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    with open(os.path.join(out, "profiles.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return rows


def adding_only(out: str, device: str, *, dry_run: bool) -> dict:
    """Trains the adding problem with the recommended setup; writes ``adding.json``."""
    from . import common

    common.select_device(device)
    from . import vanishing

    spec = DRY_ADDING if dry_run else ADDING
    os.makedirs(out, exist_ok=True)
    row = vanishing.train_task(
        spec["model"],
        "adding",
        spec["length"],
        spec["setting"],
        spec["preset"],
        os.path.join(out, "runs", time.strftime("%Y%m%dT%H%M%S")),
    )
    row.update(common.environment("python -m benchmarks.gpu_check --stage adding"))
    row.pop("profile_before", None)
    row.pop("profile_after", None)
    with open(os.path.join(out, "adding.json"), "w", encoding="utf-8") as f:
        json.dump(row, f, indent=1)
    print(
        f"adding T={row['T']} {row['model']} {row['setting']}: held-out MSE "
        f"{row['heldout_value']:.4f} solved={row['solved']} in {row['seconds']:.0f} s",
        flush=True,
    )
    return row


def write_summary(out: str, stages: list[Stage], *, dry_run: bool) -> None:
    with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump({"dry_run": dry_run, "stages": [asdict(s) for s in stages]}, f, indent=1)
    lines = [
        "# lstmcore GPU check" + (" (dry run: CPU, tiny shapes)" if dry_run else ""),
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"- command: python -m benchmarks.gpu_check {' '.join(sys.argv[1:])}",
        "",
        "| stage | status | seconds | limit s | files |",
        "|---|---|---|---|---|",
    ]
    for s in stages:
        seconds = "" if s.seconds is None else f"{s.seconds:.0f}"
        lines.append(f"| {s.name} | {s.status} | {seconds} | {s.limit_s} | {', '.join(s.files)} |")
    with open(os.path.join(out, "summary.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> list[Stage]:
    """Runs the GPU check (or its CPU dry run); returns the stages with their outcomes.

    Args:
      argv: command-line arguments; None reads ``sys.argv``.

    Raises:
      SystemExit: without ``--dry-run`` on a machine where TensorFlow sees no GPU.
    """
    parser = argparse.ArgumentParser(
        prog="benchmarks.gpu_check", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", default="benchmarks/results/gpu_check")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes, no tests")
    parser.add_argument("--stage", choices=("vanishing", "adding"), help=argparse.SUPPRESS)
    parser.add_argument("--device", default="gpu", choices=("cpu", "gpu"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage == "vanishing":
        vanishing_profiles(args.out, args.device, dry_run=args.dry_run)
        return []
    if args.stage == "adding":
        adding_only(args.out, args.device, dry_run=args.dry_run)
        return []
    if not args.dry_run:
        # Asked in a child so that this process never initialises the GPU the stages need.
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.stdout.strip().splitlines()[-1:] in ([], ["0"]):
            parser.exit(
                2,
                "benchmarks.gpu_check: TensorFlow sees no GPU here; use --dry-run to exercise "
                "the script on a CPU.\n",
            )
    os.makedirs(args.out, exist_ok=True)
    stages = plan(args.out, dry_run=args.dry_run)
    for stage in stages:
        if args.dry_run and stage.name == "tests":
            stage.status = "not run in a dry run (the test suite runs the dry run)"
            continue
        print(f"[gpu_check] {stage.name}: {' '.join(stage.command)}", flush=True)
        run_stage(stage, args.out)
        print(f"[gpu_check] {stage.name}: {stage.status} in {stage.seconds:.0f} s", flush=True)
        write_summary(args.out, stages, dry_run=args.dry_run)
    write_summary(args.out, stages, dry_run=args.dry_run)
    print(f"[gpu_check] wrote {os.path.join(args.out, 'summary.md')}")
    return stages


if __name__ == "__main__":
    main()
