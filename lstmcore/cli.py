"""The ``lstmcore`` command line: ``train``, ``demo`` (and ``python -m lstmcore``).

Errors in what the user gave (a missing column, a bad number) print one line and exit with
code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

EXIT_USAGE = 2
BENCHMARKS = (
    "throughput",
    "vanishing",
    "overhead",
    "cpu_kernel",
    "windowing",
    "preflight",
    "soak",
    "probe_cost",
)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite positive number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lstmcore",
        description="Train LSTM models on TensorFlow and see why they train badly or slowly.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train an LSTM forecaster on a CSV time series")
    train.add_argument("--csv", required=True, help="the CSV file (with a header row)")
    train.add_argument("--target", required=True, nargs="+", help="column(s) to forecast")
    train.add_argument(
        "--features",
        nargs="+",
        default=None,
        help="input columns (default: all numeric columns but the time column)",
    )
    train.add_argument(
        "--time-column", default=None, help="a column of increasing times (numbers or ISO dates)"
    )
    train.add_argument(
        "--missing",
        default="error",
        choices=("error", "drop", "ffill", "interpolate"),
        help="what to do with empty cells",
    )
    train.add_argument("--window", type=_positive_int, default=48, help="input steps per window")
    train.add_argument("--horizon", type=_positive_int, default=1, help="steps ahead to forecast")
    train.add_argument("--units", type=_positive_int, default=64)
    train.add_argument("--layers", type=_positive_int, default=1)
    train.add_argument("--epochs", type=_positive_int, default=10)
    train.add_argument(
        "--steps",
        type=_positive_int,
        default=None,
        help="total optimizer steps (overrides --epochs)",
    )
    train.add_argument("--batch-size", type=_positive_int, default=64)
    train.add_argument("--learning-rate", type=_positive_float, default=1e-3)
    train.add_argument("--warmup-steps", type=int, default=None)
    train.add_argument(
        "--decay",
        default="constant",
        choices=("constant", "linear", "cosine", "exponential", "inverse_sqrt"),
    )
    train.add_argument(
        "--clip",
        default="global_norm",
        choices=("global_norm", "per_variable_norm", "value", "adaptive", "none"),
    )
    train.add_argument("--clip-norm", type=_positive_float, default=1.0)
    train.add_argument("--logdir", default="runs")
    train.add_argument("--run-name", default=None)
    train.add_argument(
        "--resume", action="store_true", help="continue the run named by --run-name (or the newest)"
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--steps-per-execution",
        type=_positive_int,
        default=1,
        help="optimizer steps per call of the compiled step (faster for small models)",
    )
    train.add_argument("--no-progress", action="store_true")

    diagnose = commands.add_parser(
        "diagnose", help="say why a finished run trained badly (from its TensorBoard logs)"
    )
    diagnose.add_argument(
        "logdir", help="a run directory, or a log directory (its newest run is read)"
    )

    bench = commands.add_parser(
        "bench",
        help="run a benchmark: throughput, vanishing, overhead, cpu_kernel, windowing, preflight, soak",
        description="Runs python -m benchmarks.NAME with the arguments that follow (see NAME --help).",
    )
    bench.add_argument("name", choices=BENCHMARKS)
    bench.add_argument("arguments", nargs=argparse.REMAINDER, help="passed to the benchmark")

    demo = commands.add_parser(
        "demo", help="train on an embedded series and show what lstmcore logs"
    )
    demo.add_argument("--logdir", default=os.path.join("runs", "demo"))
    demo.add_argument(
        "--steps",
        type=_positive_int,
        default=None,
        help="optimizer steps per run (default: about a minute in all on 2 CPU cores)",
    )
    demo.add_argument("--no-progress", action="store_true")
    return parser


def _train_command(args) -> int:
    import keras

    import lstmcore
    from lstmcore import data, models

    series = data.read_csv(
        args.csv,
        target=args.target,
        features=args.features,
        time_column=args.time_column,
        missing=args.missing,
    )
    windowed = data.windows(
        series,
        input_steps=args.window,
        horizon=args.horizon,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    keras.utils.set_random_seed(args.seed)
    inputs, targets = windowed.arrays("train")
    model = models.forecaster(
        args.window,
        inputs.shape[-1],
        int(targets[0].size),
        units=args.units,
        layers=args.layers,
        seed=args.seed,
    )
    history = lstmcore.train(
        model,
        windowed.arrays("train"),
        validation_data=windowed.arrays("validation"),
        epochs=args.epochs,
        steps=args.steps,
        batch_size=args.batch_size,
        seed=args.seed,
        learning_rate=args.learning_rate,
        warmup_steps=args.warmup_steps,
        decay=args.decay,
        clip=None if args.clip == "none" else args.clip,
        clip_norm=args.clip_norm,
        steps_per_execution=args.steps_per_execution,
        logdir=args.logdir,
        run_name=args.run_name,
        resume=args.resume,
        progress=not args.no_progress,
        data_report=windowed.to_dict(),
    )
    model_path = os.path.join(history.run_dir, "model.keras")
    model.save(model_path)
    val = history["val_loss"]
    print(
        f"final training loss {history.final_loss:.4g}"
        + (f", validation loss {val[-1]:.4g}" if len(val) else "")
    )
    print(f"model saved to {model_path}")
    print(f"TensorBoard: tensorboard --logdir {args.logdir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    # TensorFlow's C++ start-up logs (CUDA probing on CPU machines) are noise in a terminal.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        if args.command == "train":
            return _train_command(args)
        if args.command == "bench":
            import importlib

            # Imported only now: a benchmark may hide the GPU before TensorFlow loads.
            importlib.import_module(f"benchmarks.{args.name}").main(args.arguments)
            return 0
        if args.command == "diagnose":
            from lstmcore import diagnosis

            run_dir = diagnosis.find_run_dir(args.logdir)
            print(f"run: {run_dir}")
            print(diagnosis.format_findings(diagnosis.diagnose(logdir=run_dir)))
            return 0
        if args.command == "demo":
            from lstmcore import demo

            return demo.run(logdir=args.logdir, steps=args.steps, progress=not args.no_progress)
    except (ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as error:
        print(f"lstmcore {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
