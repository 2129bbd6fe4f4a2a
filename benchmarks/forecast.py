"""Forecast skill: `lstmcore train --csv` with its defaults against naive and classical forecasts.

Real public series that statsmodels ships (nothing is fetched at run time) are written to CSV
files and trained on through the CLI exactly as a user would, once per target form and seed.
On the same test windows (one step ahead), each model's mean squared error is divided by
that of:

- persistence ("the next value is the last one"): the MASE-style skill, below 1 is better;
- seasonal naive (the value one season earlier), when a season is detected;
- the training mean;
- two classical models fitted on the training rows only, then run over the whole series with
  their parameters fixed (one-step-ahead predictions, statsmodels' `MLEResults.apply`):
  exponential smoothing with a damped trend (and the season when one is detected, up to 60
  rows) and ARIMA(2, 1, 2).

The ratios are scale-free (the scaler is affine and per column), so series of different units
sit in one table. A result row per (series, target mode, seed) goes to JSON lines; the
Markdown table gives the median over seeds and its range.

Usage:
    python -m benchmarks.forecast                       # every series, all modes, seeds 0 1 2
    python -m benchmarks.forecast --modes window_norm --seeds 0
    python -m benchmarks.forecast --smoke               # a synthetic series, a few steps
    python -m benchmarks.forecast --table-from a.jsonl b.jsonl --out results/x   # merge
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import warnings

import numpy as np

from . import common

# Series as data: statsmodels dataset, target column, time column, CLI options.
SERIES = [
    {"name": "sunspots", "dataset": "sunspots", "target": "SUNACTIVITY", "time": "YEAR"},
    {"name": "nile", "dataset": "nile", "target": "volume", "time": "year"},
    {"name": "co2", "dataset": "co2", "target": "co2", "time": "date", "missing": "interpolate"},
    {"name": "realgdp", "dataset": "macrodata", "target": "realgdp"},
    {"name": "unemp", "dataset": "macrodata", "target": "unemp"},
    {"name": "cpi", "dataset": "macrodata", "target": "cpi"},
    {"name": "elnino", "dataset": "elnino", "target": "temperature"},
    {"name": "elec_equip", "dataset": "elec_equip", "target": "orders", "time": "date"},
]
MODES = ("level", "change", "window_norm")
MAX_ETS_SEASON = 60


def write_series_csv(spec: dict, folder: str) -> str:
    """Writes one statsmodels dataset as a CSV file with a header row; returns its path."""
    import importlib

    frame = importlib.import_module(f"statsmodels.datasets.{spec['dataset']}").load_pandas().data
    if spec["dataset"] == "elnino":
        # Years as rows and months as columns: one monthly series, in time order.
        frame = frame.drop(columns="YEAR").stack().reset_index(drop=True).to_frame("temperature")
    elif spec["dataset"] == "elec_equip":
        frame = frame.rename(columns={frame.columns[0]: "orders"})
        frame.index = frame.index.strftime("%Y-%m-%d")
        frame = frame.rename_axis("date").reset_index()
    elif spec["dataset"] == "co2":
        frame.index = frame.index.strftime("%Y-%m-%d")
        frame = frame.rename_axis("date").reset_index()
    path = os.path.join(folder, f"{spec['name']}.csv")
    frame.to_csv(path, index=False)
    return path


def smoke_csv(folder: str) -> str:
    """A short seasonal series with a trend, for the dry run."""
    t = np.arange(240)
    values = 10 + 0.05 * t + np.sin(2 * np.pi * t / 12)
    path = os.path.join(folder, "smoke.csv")
    with open(path, "w") as handle:
        handle.write("t,value\n" + "".join(f"{i},{v:.5f}\n" for i, v in zip(t, values)))
    return path


def run_cli(csv_path: str, spec: dict, mode: str, seed: int, logdir: str, steps: int | None):
    """Trains through `lstmcore train` in this process; returns its forecast report."""
    import keras

    from lstmcore import cli

    keras.backend.clear_session()
    run_name = f"{spec['name']}-{mode}-{seed}"
    argv = ["train", "--csv", csv_path, "--target", spec["target"], "--target-mode", mode]
    argv += ["--seed", str(seed), "--logdir", logdir, "--run-name", run_name, "--no-progress"]
    if spec.get("time"):
        argv += ["--time-column", spec["time"]]
    if spec.get("missing"):
        argv += ["--missing", spec["missing"]]
    if steps is not None:
        argv += ["--steps", str(steps)]
    code = cli.main(argv)
    if code != 0:
        raise RuntimeError(f"lstmcore {' '.join(argv)} exited with {code}")
    run_dir = os.path.join(logdir, run_name)
    with open(os.path.join(run_dir, "forecast_report.json")) as handle:
        forecast = json.load(handle)
    with open(os.path.join(run_dir, "data_report.json")) as handle:
        forecast["data_report"] = json.load(handle)
    return forecast


def read_series(csv_path: str, spec: dict):
    """The target column as the CLI reads it (same missing-value policy)."""
    from lstmcore import data

    return data.read_csv(
        csv_path,
        target=spec["target"],
        features=spec["target"],
        time_column=spec.get("time"),
        missing=spec.get("missing", "error"),
    )


def classical_ratios(csv_path: str, spec: dict, data_report: dict) -> dict:
    """MSE of ETS and ARIMA over persistence's on the test windows (one step ahead)."""
    from statsmodels.tsa.arima.model import ARIMA
    from statsmodels.tsa.statespace.exponential_smoothing import ExponentialSmoothing

    values = read_series(csv_path, spec).values[:, 0].astype(np.float64)
    train_end = data_report["splits"]["train"]["rows"][1]
    test = data_report["splits"]["test"]
    window = data_report["input_steps"]
    rows = np.arange(test["first_window_start"], test["last_window_start"] + 1) + window
    persistence = np.mean((values[rows] - values[rows - 1]) ** 2)
    season = data_report.get("season")
    models = {
        "ets": lambda y: ExponentialSmoothing(
            y,
            trend=True,
            damped_trend=True,
            seasonal=season if season and season <= MAX_ETS_SEASON else None,
        ),
        "arima": lambda y: ARIMA(y, order=(2, 1, 2)),
    }
    fit_options = {"ets": {"disp": False}, "arima": {}}
    out = {}
    for name, make in models.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                fitted = make(values[:train_end]).fit(**fit_options[name])
                predictions = np.asarray(fitted.apply(values).fittedvalues)
            except Exception as error:  # noqa: BLE001 - a classical fit that fails is reported
                out[name] = None
                out[f"{name}_error"] = f"{type(error).__name__}: {error}"
                continue
        out[name] = float(np.mean((values[rows] - predictions[rows]) ** 2) / persistence)
    return out


def refit_classical(rows: list[dict]) -> None:
    """Recomputes the classical columns of saved rows (they do not depend on the network)."""
    from lstmcore import data

    specs = {spec["name"]: spec for spec in SERIES}
    done = {}
    with tempfile.TemporaryDirectory() as folder:
        for row in rows:
            key = (row["series"], row["window"], row["season"])
            if key not in done:
                spec = specs[row["series"]]
                path = write_series_csv(spec, folder)
                series = read_series(path, spec)
                report = data.windows(series, input_steps=row["window"], season=row["season"])
                done[key] = classical_ratios(path, spec, report.to_dict())
            row.update(done[key])


def summarise(rows: list[dict]) -> list[str]:
    """The Markdown table: per series and mode, median [min, max] over seeds."""

    def cell(values):
        values = [v for v in values if v is not None]
        if not values:
            return "-"
        median = statistics.median(values)
        if len(values) == 1:
            return f"{median:.3f}"
        return f"{median:.3f} [{min(values):.3f}, {max(values):.3f}]"

    header = [
        "series",
        "rows",
        "window",
        "season",
        "target mode",
        "seeds",
        "model / persistence",
        "model / seasonal naive",
        "model / mean",
        "ETS / persistence",
        "ARIMA / persistence",
        "model / best classical",
    ]
    table = []
    keys = sorted({(r["series"], r["mode"]) for r in rows}, key=lambda k: (k[0], MODES.index(k[1])))
    for series, mode in keys:
        group = [r for r in rows if r["series"] == series and r["mode"] == mode]
        first = group[0]
        best = [
            min(v for v in (r["ets"], r["arima"]) if v is not None)
            if (r["ets"] or r["arima"])
            else None
            for r in group
        ]
        table.append(
            [
                series,
                first["rows"],
                first["window"],
                first["season"] or "-",
                mode,
                len(group),
                cell([r["test"].get("persistence") for r in group]),
                cell([r["test"].get("seasonal_naive") for r in group]),
                cell([r["test"].get("mean") for r in group]),
                cell([r["ets"] for r in group]),
                cell([r["arima"] for r in group]),
                cell(
                    [r["test"].get("persistence") / b if b else None for r, b in zip(group, best)]
                ),
            ]
        )
    return common.markdown_table(header, table)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", nargs="+", default=[s["name"] for s in SERIES])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="default: the CLI's default")
    parser.add_argument("--out", default=os.path.join("benchmarks", "results", "forecast_cpu2core"))
    parser.add_argument("--smoke", action="store_true", help="a synthetic series, 5 steps")
    parser.add_argument(
        "--table-from",
        nargs="+",
        default=None,
        metavar="JSONL",
        help="train nothing: write the table of these JSON-lines results to --out.md",
    )
    args = parser.parse_args(argv)
    if args.table_from:
        rows = []
        for path in args.table_from:
            with open(path) as handle:
                rows += [json.loads(line) for line in handle if line.strip()]
        rows = [row for row in rows if row["mode"] in args.modes and row["series"] in args.series]
        refit_classical(rows)
        commands = sorted({row["command"] for row in rows})
        lines = [line for line in common.environment_lines(rows[0]) if "Command" not in line]
        lines += [f"- Command: `{command}`" for command in commands]
        with open(args.out + ".md", "w") as handle:
            handle.write("\n".join(lines + [""] + summarise(rows)) + "\n")
        return
    common.select_device("cpu")
    command = "python -m benchmarks.forecast " + " ".join(sys.argv[1:] if argv is None else argv)
    env = common.environment(command)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        logdir = os.path.join(folder, "runs")
        if args.smoke:
            specs = [{"name": "smoke", "target": "value", "time": "t"}]
            paths = {"smoke": smoke_csv(folder)}
            steps = 5
        else:
            specs = [s for s in SERIES if s["name"] in args.series]
            paths = {s["name"]: write_series_csv(s, folder) for s in specs}
            steps = args.steps
        for spec in specs:
            classical = None
            for mode in args.modes:
                for seed in args.seeds:
                    forecast = run_cli(paths[spec["name"]], spec, mode, seed, logdir, steps)
                    report = forecast.pop("data_report")
                    if classical is None:
                        classical = (
                            {"ets": None, "arima": None}
                            if args.smoke
                            else classical_ratios(paths[spec["name"]], spec, report)
                        )
                    row = {
                        "series": spec["name"],
                        "mode": mode,
                        "seed": seed,
                        "rows": report["num_rows"],
                        "window": forecast["window"],
                        "season": forecast["season"],
                        "test": forecast["test"]["ratios"],
                        "validation": forecast["validation"].get("ratios", {}),
                        "test_windows": forecast["test"]["windows"],
                        **classical,
                        **env,
                    }
                    rows.append(row)
                    print(json.dumps({k: row[k] for k in ("series", "mode", "seed", "test")}))
    table = summarise(rows)
    print("\n".join(table))
    if not args.smoke:
        common.write_jsonl(args.out + ".jsonl", rows)
        with open(args.out + ".md", "w") as handle:
            handle.write("\n".join(common.environment_lines(env) + [""] + table) + "\n")


if __name__ == "__main__":
    main()
