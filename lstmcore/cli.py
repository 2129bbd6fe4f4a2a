"""The ``lstmcore`` command line: ``train``, ``diagnose``, ``bench``, ``demo`` (and ``python -m lstmcore``).

Errors in what the user gave (a missing column, a bad number: lstmcore's ``ConfigError`` and
``DataError``, a missing file) print one line naming the flag and exit with code 2, without
a traceback. Any other exception is a bug (in lstmcore or in the user's model) and keeps its
traceback (exit code 1). The choices of ``--clip``, ``--optimizer``, ``--warmup`` and
``--decay`` are the names in lstmcore's registries.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import sys

from lstmcore.errors import ConfigError, DataError

EXIT_USAGE = 2
# Optimizer steps when neither --steps nor --epochs is given (NeuralForecast's max_steps).
DEFAULT_STEPS = 1000
TARGET_MODES = ("level", "change", "window_norm")
DEFAULT_TARGET_MODE = "window_norm"
BENCHMARKS = (
    "throughput",
    "vanishing",
    "overhead",
    "cpu_kernel",
    "windowing",
    "preflight",
    "soak",
    "probe_cost",
    "forecast",
    "fit_callback",
    "diagnosis",
    "adding_fix",
    "kill_resume",
    "gpu_check",
    "multiworker",
)


class _RegistryNames:
    """The names in a registry, as argparse ``choices``, read only when argparse asks.

    The registries live in modules that import TensorFlow; ``lstmcore --help`` does not need
    them, ``lstmcore train`` does.
    """

    def __init__(self, module: str, registry: str, extra: tuple[str, ...] = ()):
        self.module, self.registry, self.extra = module, registry, extra

    def _names(self) -> tuple[str, ...]:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        module = importlib.import_module(f"lstmcore.{self.module}")
        return (*getattr(module, self.registry).names(), *self.extra)

    def __contains__(self, name) -> bool:
        return name in self._names()

    def __iter__(self):
        return iter(self._names())


CLIP_CHOICES = _RegistryNames("clipping", "CLIPPERS", ("none",))
OPTIMIZER_CHOICES = _RegistryNames("optimizers", "OPTIMIZERS")
WARMUP_CHOICES = _RegistryNames("schedules", "WARMUPS")
DECAY_CHOICES = _RegistryNames("schedules", "DECAYS")


def _number(kind, accepts, description: str):
    """An argparse type: `kind(text)` that `accepts`, else an error saying `description`."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not accepts(value):
            raise argparse.ArgumentTypeError(f"expected {description}, got {text!r}")
        return value

    return parse


_positive_int = _number(int, lambda v: v > 0, "a positive integer")
_non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
_positive_float = _number(float, lambda v: 0 < v < float("inf"), "a finite positive number")
_fraction = _number(float, lambda v: 0 < v < 1, "a fraction in (0, 1)")


def _season(text: str) -> int | str | None:
    if text in ("auto", "none"):
        return None if text == "none" else text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 2:
        raise argparse.ArgumentTypeError(
            f"expected a season length >= 2 rows, 'auto' or 'none'; got {text!r}"
        )
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
        help="input columns (default: the target column(s) alone, as forecasting libraries do)",
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
    train.add_argument(
        "--window",
        type=_positive_int,
        default=None,
        help="input steps per window (default: 48, or twice the season when longer, capped so "
        "that one window and its horizon fill at most half of the smallest split)",
    )
    train.add_argument("--horizon", type=_positive_int, default=1, help="steps ahead to forecast")
    train.add_argument(
        "--splits",
        type=_fraction,
        nargs=3,
        default=[0.7, 0.15, 0.15],
        metavar=("TRAIN", "VALIDATION", "TEST"),
        help="fractions of the rows, in time order (default 0.7 0.15 0.15)",
    )
    train.add_argument(
        "--gap",
        type=_non_negative_int,
        default=None,
        help="window positions skipped between splits (default and minimum: window + horizon - 1)",
    )
    train.add_argument(
        "--normalize",
        default="train",
        choices=("train", "none"),
        help="scale every column with training-split statistics (default) or feed raw values",
    )
    train.add_argument(
        "--target-mode",
        default=DEFAULT_TARGET_MODE,
        choices=TARGET_MODES,
        help="what the network predicts: the level, the change from the last value, or each "
        f"window scaled by its own statistics (default {DEFAULT_TARGET_MODE}; measured in "
        "benchmarks/results/forecast_cpu2core.md)",
    )
    train.add_argument(
        "--season",
        type=_season,
        default="auto",
        help="season length in rows for the seasonal naive baseline: a number, 'auto' (detect "
        "from the training rows, the default) or 'none'",
    )
    train.add_argument("--units", type=_positive_int, default=64)
    train.add_argument("--layers", type=_positive_int, default=1)
    train.add_argument(
        "--epochs",
        type=_positive_int,
        default=None,
        help=f"passes over the training windows (default: {DEFAULT_STEPS} optimizer steps)",
    )
    train.add_argument(
        "--steps",
        type=_positive_int,
        default=None,
        help=f"total optimizer steps (overrides --epochs; default {DEFAULT_STEPS})",
    )
    train.add_argument("--batch-size", type=_positive_int, default=64)
    # A metavar keeps argparse from reading the registries (importing TensorFlow) until it
    # checks a value or prints this command's help.
    registered = "one of %(choices)s (default %(default)s)"
    train.add_argument(
        "--optimizer", default="adam", choices=OPTIMIZER_CHOICES, metavar="NAME", help=registered
    )
    train.add_argument("--learning-rate", type=_positive_float, default=1e-3)
    train.add_argument("--warmup-steps", type=_non_negative_int, default=None)
    train.add_argument(
        "--warmup", default="linear", choices=WARMUP_CHOICES, metavar="NAME", help=registered
    )
    train.add_argument(
        "--decay", default="constant", choices=DECAY_CHOICES, metavar="NAME", help=registered
    )
    train.add_argument(
        "--clip", default="global_norm", choices=CLIP_CHOICES, metavar="NAME", help=registered
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
    train.add_argument(
        "--peer-timeout",
        type=_positive_float,
        default=None,
        help="under a TF_CONFIG naming several workers: seconds a worker may stop answering "
        "before the job stops with an error on every other worker (default 30)",
    )

    diagnose = commands.add_parser(
        "diagnose",
        help="say why a model trains badly: a finished run (its TensorBoard logs), or a saved "
        "model on data (--model with --data or --csv)",
    )
    diagnose.add_argument(
        "logdir",
        nargs="?",
        default=None,
        help="a run directory, or a log directory (its newest run is read)",
    )
    diagnose.add_argument(
        "--model", help="a saved Keras model (.keras), loaded with safe_mode=True"
    )
    diagnose.add_argument(
        "--data",
        help="an .npz file with arrays inputs [N, T, F] and targets (or x and y), optionally "
        "validation_inputs and validation_targets",
    )
    diagnose.add_argument("--csv", help="a CSV series, cut into windows as `lstmcore train` does")
    diagnose.add_argument("--target", nargs="+", help="with --csv: the column(s) to forecast")
    diagnose.add_argument(
        "--features",
        nargs="+",
        default=None,
        help="with --csv: input columns (default: the targets when the model reads as many "
        "features, else every numeric column but the time column)",
    )
    diagnose.add_argument("--time-column", default=None)
    diagnose.add_argument(
        "--missing", default="error", choices=("error", "drop", "ffill", "interpolate")
    )
    diagnose.add_argument(
        "--window",
        type=_positive_int,
        default=None,
        help="with --csv: input steps per window (default: the model's input steps)",
    )
    diagnose.add_argument("--horizon", type=_positive_int, default=1)
    diagnose.add_argument(
        "--splits", type=float, nargs=3, default=[0.7, 0.15, 0.15], metavar=("TRAIN", "VAL", "TEST")
    )
    diagnose.add_argument("--gap", type=int, default=None)
    diagnose.add_argument("--normalize", default="train", choices=("train", "none"))
    diagnose.add_argument(
        "--loss", default=None, help="the training loss (default: the saved one, else mse)"
    )
    diagnose.add_argument(
        "--budget",
        type=_non_negative_int,
        default=None,
        help="with --model: steps each suspected cause's fix is tried on a copy of the model "
        "(default: diagnose's, 300; 0: try none, causes are then at most suspected)",
    )

    bench = commands.add_parser(
        "bench",
        help="run a benchmark: " + ", ".join(BENCHMARKS),
        description="Runs the benchmark lstmcore.benchmarks.NAME with the arguments that follow "
        "(see NAME --help).",
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
        help="optimizer steps per run (default 400: 39 s in all in one timed run on 2 CPU cores)",
    )
    demo.add_argument("--no-progress", action="store_true")
    return parser


def _train_command(args) -> int:
    import json

    import keras

    import lstmcore
    from lstmcore import baselines, data, distributed, models

    # Under a TF_CONFIG naming several workers, the strategy comes first: TensorFlow sets up
    # its collectives once, before any other operation runs.
    strategy, worker = None, distributed.WorkerContext(None, 0, 1, True)
    if distributed.wants_multi_worker():
        strategy = distributed.make_strategy(
            peer_timeout=args.peer_timeout or distributed.DEFAULT_PEER_TIMEOUT
        )
        worker = distributed.context(strategy)
        if worker.is_chief and not args.no_progress:
            print(
                f"lstmcore: TF_CONFIG names {worker.num_workers} workers: training with "
                f"MultiWorkerMirroredStrategy ({strategy.num_replicas_in_sync} replicas; this is "
                f"the chief, {worker.task_type} {worker.task_id}, which writes the run)"
            )
    elif args.peer_timeout is not None:
        raise ConfigError(
            "--peer-timeout applies to multi-worker training; TF_CONFIG names no other worker"
        )
    args.no_progress = args.no_progress or not worker.is_chief
    series = data.read_csv(
        args.csv,
        target=args.target,
        features=args.target if args.features is None else args.features,
        time_column=args.time_column,
        missing=args.missing,
    )
    target_column = series.columns.index(series.target_columns[0])
    season = args.season
    if season == "auto":
        train_rows = int(args.splits[0] * len(series.values))
        # Interpolated values at the end of the training rows may not draw on later rows.
        values, _ = data._fills_inside_splits(series.values, series.interpolated, [(0, train_rows)])
        season = baselines.detect_season(
            values[:train_rows, target_column], max_lag=data.MAX_AUTO_SEASON
        )
    window = args.window
    if window is None:
        window = data.default_input_steps(
            len(series.values), horizon=args.horizon, splits=args.splits, season=season
        )
    windowed = data.windows(
        series,
        input_steps=window,
        horizon=args.horizon,
        splits=args.splits,
        gap=args.gap,
        normalize=None if args.normalize == "none" else "train",
        batch_size=args.batch_size,
        seed=args.seed,
        season=season,
    )
    report = windowed.to_dict()
    # The data stay levels ("target_mode": "level"); the model applies its own form.
    report["model_target_mode"] = args.target_mode
    target_features = baselines.target_feature_indices(report)
    if args.target_mode != "level" and target_features is None:
        raise ConfigError(
            f"--target-mode {args.target_mode} reads each target's past from the window, but "
            f"--features {' '.join(report['feature_columns'])} leaves out a --target column; add "
            f"it to --features or use --target-mode level"
        )
    keras.utils.set_random_seed(args.seed)
    train_inputs, train_targets = windowed.arrays("train")
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = models.forecaster(
            window,
            train_inputs.shape[-1],
            int(train_targets[0].size),
            units=args.units,
            layers=args.layers,
            seed=args.seed,
            target_mode=args.target_mode,
            target_features=target_features,
            horizon=args.horizon,
        )
    if not args.no_progress:
        print(
            f"lstmcore: {len(series.values)} rows; window {window}"
            f"{'' if args.window else ' (default rule, see --window)'}, horizon {args.horizon}, "
            f"season {season or 'none'}, target mode {args.target_mode}; windows "
            + ", ".join(f"{k} {v['windows']}" for k, v in report["splits"].items())
        )
    history = lstmcore.train(
        model,
        (train_inputs, train_targets),
        validation_data=windowed.arrays("validation"),
        epochs=args.epochs,
        steps=args.steps if args.steps or args.epochs else DEFAULT_STEPS,
        batch_size=args.batch_size,
        seed=args.seed,
        optimizer=args.optimizer,
        learning_rate=args.learning_rate,
        warmup_steps=args.warmup_steps,
        warmup=args.warmup,
        decay=args.decay,
        clip=None if args.clip == "none" else args.clip,
        clip_norm=args.clip_norm,
        steps_per_execution=args.steps_per_execution,
        logdir=args.logdir,
        run_name=args.run_name,
        resume=args.resume,
        progress=not args.no_progress,
        data_report=report,
        strategy=strategy,
    )
    if not worker.is_chief:
        return 0  # the chief writes the model and the report, and prints the results
    model_path = os.path.join(history.run_dir, "model.keras")
    model.save(model_path)
    test = baselines.score(
        model, *windowed.arrays("test"), "mse", data_report=report, train_targets=train_targets
    )
    scores = {"validation": history.baselines, "test": test}
    with open(os.path.join(history.run_dir, "forecast_report.json"), "w") as handle:
        json.dump(
            {"window": window, "season": season, "target_mode": args.target_mode, **scores},
            handle,
            indent=2,
            default=float,
        )
    val = history["val_loss"]
    print(
        f"final training loss {history.final_loss:.4g}"
        + (f", validation loss {val[-1]:.4g}" if len(val) else "")
    )
    print(f"model saved to {model_path} (load it with lstmcore.keras.load_model)")
    print(f"TensorBoard: tensorboard --logdir {args.logdir}")
    for split, result in scores.items():
        print(baselines.skill_line(split, result))
    warning = baselines.verdict("test", test)
    if warning:
        print(warning)
    return 0


# Python argument spellings in messages from lstmcore.data, as the flags that set them.
_FLAG_NAMES = (
    (re.compile(r"read_csv\(\.\.\., missing='([a-z|']+)'\)"), r"--missing \1"),
    (re.compile(r"missing='(\w+)'"), r"--missing \1"),
    (re.compile(r"\binput_steps/horizon\b"), "--window/--horizon"),
    (re.compile(r"\binput_steps\b"), "--window"),
    (re.compile(r"\bsplits="), "--splits "),
    (re.compile(r"^splits(:| must)"), r"--splits\1"),
    (re.compile(r"\bgap=None\b"), "no --gap"),
    (re.compile(r"\bgap\b"), "--gap"),
    (re.compile(r"^read_csv: no file at path="), "--csv: no file at "),
    (re.compile(r"^(target|features)\b"), r"--\1"),
    (re.compile(r"^time_column\b"), "--time-column"),
    (re.compile(r"\bwarmup_steps\b"), "--warmup-steps"),
    (re.compile(r"\btotal_steps\b"), "--steps"),
    (re.compile(r"\ba horizon of\b"), "--horizon"),
    (re.compile(r"^resume=True but logdir\b"), "--resume but --logdir"),
    (re.compile(r"pass resume=False\b"), "leave out --resume"),
    (re.compile(r"^logdir\b"), "--logdir"),
)


def _as_flags(message: str) -> str:
    for pattern, flag in _FLAG_NAMES:
        message = pattern.sub(flag, message)
    return message.replace("'|'", "|")


def _diagnose_command(args) -> int:
    given = [flag for flag in ("data", "csv") if getattr(args, flag) is not None]
    if args.model is None:
        if args.logdir is None or given:
            raise ConfigError(
                "diagnose needs a run (a logdir) or --model with --data or --csv; got "
                + (f"--{given[0]} without --model" if given else "neither")
            )
        from lstmcore import diagnosis

        with _bad_input(DataError):  # documented: ValueError only for a logdir without events
            run_dir = diagnosis.find_run_dir(args.logdir)
        print(f"run: {run_dir}")
        print(diagnosis.format_findings(diagnosis.diagnose(logdir=run_dir)))
        return 0
    if args.logdir is not None or len(given) != 1:
        raise ConfigError(
            "--model needs exactly one of --data FILE.npz or --csv FILE (and no logdir); got "
            + (", ".join(f"--{flag}" for flag in given) or "neither")
            + (f" and logdir {args.logdir!r}" if args.logdir is not None else "")
        )
    if args.csv is not None and not args.target:
        raise ConfigError("--csv needs --target COLUMN [COLUMN ...]")
    source = args.data if args.data is not None else args.csv
    for flag, path in (("--model", args.model), (f"--{given[0]}", source)):
        if not os.path.isfile(path):
            raise ConfigError(f"{flag} {path!r} does not exist or is not a file")

    from lstmcore import diagnosis
    from lstmcore import keras as lstmcore_keras

    with _bad_input(DataError):  # documented: ValueError only for a file it cannot load
        model = lstmcore_keras.load_model(args.model)
    data, validation = (
        _npz_windows(args.data) if args.data is not None else (_csv_windows(args, model), None)
    )
    with _bad_input(DataError):  # documented: ValueError only for data the model cannot take
        lstmcore_keras.check_model_on_data(
            model, data if args.data is not None else data.arrays("train"), name=f"--{given[0]}"
        )
    loss = args.loss or getattr(model, "loss", None) or "mse"
    print(
        f"model: {args.model} ({model.count_params()} parameters); "
        f"loss: {getattr(loss, 'name', None) or loss}"
    )
    findings = diagnosis.diagnose(
        model=model, data=data, validation_data=validation, loss=loss, budget=args.budget
    )
    print(diagnosis.format_findings(findings))
    return 0


def _npz_windows(path):
    import numpy as np

    with np.load(path, allow_pickle=False) as arrays:
        names = set(arrays.files)
        for inputs, targets in (("inputs", "targets"), ("x", "y")):
            if {inputs, targets} <= names:
                break
        else:
            raise DataError(
                f"--data {path!r} must hold arrays 'inputs' and 'targets' (or 'x' and 'y'); it "
                f"holds {sorted(names)}"
            )
        data = (arrays[inputs], arrays[targets])
        validation = None
        if {"validation_inputs", "validation_targets"} <= names:
            validation = (arrays["validation_inputs"], arrays["validation_targets"])
    return data, validation


def _csv_windows(args, model):
    from lstmcore import data

    shape = model.inputs[0].shape if getattr(model, "inputs", None) else None
    features = args.features
    if features is None and shape is not None and shape[-1] == len(args.target):
        features = args.target
    series = data.read_csv(
        args.csv,
        target=args.target,
        features=features,
        time_column=args.time_column,
        missing=args.missing,
    )
    window = args.window or (shape[1] if shape is not None else None)
    if window is None:
        raise ConfigError("the model does not declare its input steps; pass --window")
    return data.windows(
        series,
        input_steps=int(window),
        horizon=args.horizon,
        splits=args.splits,
        gap=args.gap,
        normalize=None if args.normalize == "none" else "train",
    )


@contextlib.contextmanager
def _bad_input(kind):
    """Re-raises a ``ValueError`` from a call documented to raise it only for bad input.

    For lstmcore functions that predate the typed errors; the original stays chained.
    """
    try:
        yield
    except (ConfigError, DataError):
        raise
    except ValueError as error:
        raise kind(str(error)) from error


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit code."""
    # TensorFlow's C++ start-up logs (CUDA probing on CPU machines) are noise in a terminal;
    # set before parsing, which may import TensorFlow to read the registries' names.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            try:
                return _train_command(args)
            except (ConfigError, DataError, FileNotFoundError) as error:
                raise type(error)(_as_flags(str(error))) from None
        if args.command == "bench":
            # Imported only now: a benchmark may hide the GPU before TensorFlow loads. Always
            # lstmcore's own copy: a benchmarks/ folder in the working directory is not it.
            importlib.import_module(f"lstmcore.benchmarks.{args.name}").main(args.arguments)
            return 0
        if args.command == "diagnose":
            return _diagnose_command(args)
        if args.command == "demo":
            from lstmcore import demo

            return demo.run(logdir=args.logdir, steps=args.steps, progress=not args.no_progress)
    except (ConfigError, DataError, FileNotFoundError, IsADirectoryError, PermissionError) as error:
        print(f"lstmcore {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
