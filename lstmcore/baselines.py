"""Naive forecasts a model must beat, scored on exactly the windows the model is scored on.

A forecaster that loses to "the next value equals the last one" has learned nothing useful,
however low its loss looks. Three baselines, each computed from the windows themselves:

- `mean`: the training targets' mean (per output column), the level a collapsed model
  predicts.
- `persistence`: the last observed value of each target column, repeated over the horizon
  ("tomorrow = today"), the naive forecast of Hyndman and Koehler's MASE.
- `seasonal_naive`: the value one season `m` earlier, `y[t + k - m * ceil(k / m)]` for step
  `k` of the horizon; only when a season is given or detected and fits in the window.

Persistence and seasonal naive need the target column among the inputs; the data report
(`lstmcore.data.WindowedData.to_dict()`) says where it is. The skill of the model against a
baseline is the ratio of their losses (a scale-free number: below 1 the model is better, the
relative MSE for the MSE loss, the MASE-style relative MAE for MAE).

References:
  Hyndman and Koehler, "Another look at measures of forecast accuracy", International
  Journal of Forecasting 22(4), 2006.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import tensorflow as tf

from lstmcore import probes as probes_lib

log = logging.getLogger("lstmcore")

BASELINES = ("persistence", "seasonal_naive", "mean")
# A detected season's autocorrelation must reach this, and rise this far above the trough.
SEASON_MIN_AUTOCORRELATION = 0.3
SEASON_MIN_PROMINENCE = 0.2


def target_feature_indices(data_report: dict | None) -> list[int] | None:
    """Where each target column sits among the input features, or None if one is not there.

    Args:
      data_report: `WindowedData.to_dict()` (keys `feature_columns`, `target_columns`).

    Returns:
      One input-feature index per target column, or None when there is no report or a
      target is not an input (persistence cannot then be read off the windows).
    """
    if not data_report:
        return None
    features = list(data_report.get("feature_columns") or [])
    targets = list(data_report.get("target_columns") or [])
    if not targets or any(name not in features for name in targets):
        return None
    return [features.index(name) for name in targets]


def naive_forecasts(
    inputs: Any,
    targets: Any,
    *,
    target_features: list[int] | None,
    horizon: int = 1,
    season: int | None = None,
    train_targets: Any = None,
    target_mode: str = "level",
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Predictions of each naive baseline for every window.

    Args:
      inputs: `[W, T, F]` input windows.
      targets: `[W, horizon * C]` targets (element `k * C + c`: column `c` at step `k + 1`).
      target_features: the input feature index of each of the C target columns, or None.
      horizon: steps predicted per window.
      season: the season length `m` in steps, or None.
      train_targets: `[N, horizon * C]` training targets for the mean; None uses `targets`'
        own mean (optimistic: it has seen the held-out values), which a note then says.
      target_mode: the form of `inputs` and `targets` (`lstmcore.target_forms`). In
        "change", the naive forecasts are expressed as changes from the last value (so
        persistence is 0); "window_norm" windows need nothing, the form being affine per
        window.

    Returns:
      `(predictions, notes)`: name -> `[W, horizon * C]` float32 for each baseline that could
      be computed, and one sentence for each that could not (or is optimistic).
    """
    x = np.asarray(inputs, np.float32)
    y = np.asarray(targets, np.float32)
    if y.ndim == 1:
        y = y[:, None]
    notes = []
    if train_targets is None:
        mean = y.mean(axis=0)
        notes.append("mean: no training targets at hand; the held-out mean is used (optimistic)")
    else:
        train_y = np.asarray(train_targets, np.float32)
        mean = train_y.reshape(len(train_y), -1).mean(axis=0)
    predictions = {"mean": np.broadcast_to(mean, y.shape).astype(np.float32)}
    if target_features is None or x.ndim != 3 or y.shape[1] != horizon * len(target_features):
        notes.append(
            "persistence: the target column is not among the input features (or the data "
            "report is missing), so the last observed value is unknown"
        )
        return predictions, notes
    last = x[:, -1, target_features]
    predictions["persistence"] = np.tile(last, (1, horizon))
    if season is not None:
        steps = x.shape[1]
        if season > steps:
            notes.append(
                f"seasonal naive: season {season} is longer than the window ({steps} steps); "
                f"use a window of at least {season} steps to score it"
            )
        else:
            # Step k (1-based) of the horizon copies the last value seen m * ceil(k / m) earlier.
            lags = [season * math.ceil(k / season) - k for k in range(1, horizon + 1)]
            columns = [x[:, steps - 1 - lag, target_features] for lag in lags]
            predictions["seasonal_naive"] = np.concatenate(columns, axis=1)
    if target_mode == "change":
        if "seasonal_naive" in predictions:
            predictions["seasonal_naive"] -= predictions["persistence"]
        predictions["persistence"] = np.zeros_like(predictions["persistence"])
    return predictions, notes


def model_predictions(
    model, inputs: Any, batch_size: int = 256, *, keep_shape: bool = False
) -> np.ndarray:
    """The model's predictions in inference mode, in batches: float32 `[W, outputs]`.

    Flat by default; `keep_shape=True` keeps the model's own layout (`[W, T, C]` per step),
    which a loss over the last axis (cross-entropy per step) needs.
    """
    x = np.asarray(inputs, np.float32)
    parts = [
        np.asarray(model(tf.constant(x[i : i + batch_size]), training=False), np.float32)
        for i in range(0, len(x), batch_size)
    ]
    out = np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)
    return out if keep_shape else out.reshape(len(x), -1)


def score(
    model,
    inputs: Any,
    targets: Any,
    loss: Any = "mse",
    *,
    data_report: dict | None = None,
    season: int | None = None,
    train_targets: Any = None,
) -> dict[str, Any]:
    """The losses of the model and of each naive baseline on the same windows.

    Args:
      model: a Keras model (or None to score the baselines only).
      inputs: `[W, T, F]` windows; targets: `[W, horizon * C]`.
      loss: a Keras loss name or callable, as given to `lstmcore.train`.
      data_report: `WindowedData.to_dict()`, for where the target sits among the inputs, the
        horizon, and the season (its `season` entry) when `season` is None.
      season: the season length, overriding the report's.
      train_targets: training targets, for the mean baseline.

    Returns:
      A JSON-ready dict: `windows`, `loss` (its name), `season`, `model` (or None), one loss
      per baseline computed (`persistence`, `seasonal_naive`, `mean`), `ratios` (model loss /
      baseline loss, per baseline), and `notes` (why a baseline is missing).
    """
    loss_fn = probes_lib.as_loss_fn(loss, name="loss")
    y = np.asarray(targets, np.float32)
    y = y.reshape(len(y), -1)  # per-step targets [W, T, C] are scored flattened, as predictions
    report = data_report or {}
    horizon = int(report.get("horizon") or 1)
    if season is None:
        season = report.get("season")
    predictions, notes = naive_forecasts(
        inputs,
        y,
        target_features=target_feature_indices(data_report),
        horizon=horizon,
        season=season,
        train_targets=train_targets,
        target_mode=report.get("target_mode", "level"),
    )
    result: dict[str, Any] = {
        "windows": len(y),
        "loss": loss if isinstance(loss, str) else getattr(loss, "__name__", "loss"),
        "season": season,
        "model": None,
    }
    if len(y) == 0:
        result.update(ratios={}, notes=["no windows to score"])
        return result
    model_outputs = None if model is None else model_predictions(model, inputs, keep_shape=True)
    layout = None if model_outputs is None else model_outputs.shape[1:]
    if model_outputs is not None:
        model_outputs = model_outputs.reshape(len(model_outputs), -1)
    if model_outputs is not None and model_outputs.shape != y.shape:
        # A classifier's probabilities [W, K] against labels [W, 1]: no naive forecast.
        result.update(
            ratios={},
            notes=[
                (
                    f"naive baselines need outputs shaped like the targets {y.shape[1:]}; the "
                    f"model's are {model_outputs.shape[1:]}"
                )
            ],
        )
        return result
    for name in BASELINES:
        if name in predictions:
            result[name] = _loss(loss_fn, y, predictions[name], layout)
    if model_outputs is not None:
        result["model"] = _loss(loss_fn, y, model_outputs, layout)
    result["ratios"] = {
        name: (result["model"] / result[name] if result[name] > 0 else math.inf)
        for name in BASELINES
        if name in result and result["model"] is not None
    }
    result["notes"] = notes
    return result


def skill_line(split: str, result: dict[str, Any]) -> str:
    """One line a user cannot miss, e.g. `validation: model 0.81 x persistence, 0.22 x mean`.

    The ratio is the model's loss over the baseline's on the same windows: below 1 the model
    is better than that baseline, above 1 it is worse.
    """
    if result.get("model") is None or not result.get("ratios"):
        return f"{split}: no model score ({'; '.join(result.get('notes', [])) or 'no windows'})"
    parts = []
    for name, ratio in result["ratios"].items():
        label = name.replace("_", " ")
        if name == "seasonal_naive":
            label += f" (m={result['season']})"
        parts.append(f"{ratio:.3g} x {label}")
    return (
        f"{split}: model {', '.join(parts)}  "
        f"({result['loss']} {result['model']:.4g} on {result['windows']} windows; below 1 beats "
        f"that baseline)"
    )


def verdict(split: str, result: dict[str, Any]) -> str | None:
    """A plain sentence when the model loses to persistence (or to the mean), else None."""
    ratios = result.get("ratios") or {}
    for name in ("persistence", "mean"):
        ratio = ratios.get(name)
        if ratio is not None and ratio >= 1.0:
            label = {"persistence": "persistence (the last value)", "mean": "the training mean"}
            return (
                f"lstmcore: on the {split} split the model is WORSE than {label[name]}: "
                f"{ratio:.3g} x its loss. Use that baseline instead, or try another target "
                f"form (--target-mode), a longer window, or more data."
            )
    return None


def detect_season(values: Any, *, max_lag: int) -> int | None:
    """The season of a series: its first significant, prominent autocorrelation peak.

    The series minus its least-squares line (so a trend does not make every lag look
    alike) gives the autocorrelation `r`. Candidates are its local maxima at lags 2 to
    `max_lag`, shortest first, so a yearly cycle in weekly data is found at 52, not at its
    multiples; the first that passes three tests is the season:

    - `r[lag] >= SEASON_MIN_AUTOCORRELATION` (0.3);
    - above the 95% band of Bartlett's formula, `1.96 * sqrt((1 + 2 * sum(r_i^2, i < lag)) / n)`
      (as Darts' `check_seasonality`);
    - at least `SEASON_MIN_PROMINENCE` (0.2) above the lowest `r` at shorter lags: a cycle
      has a trough before its peak, while the slow decay of an autoregressive process or a
      random walk only wobbles.

    On statsmodels' series this finds 11 for yearly sunspots, 52 for weekly CO2, 12 for
    monthly El Nino temperatures and nothing for the quarterly US macro series or the Nile.

    Args:
      values: `[N]` or `[N, C]` training values (the first column is used).
      max_lag: the longest season considered; capped at a third of the series.

    Returns:
      The season length in steps, or None when no peak passes.
    """
    series = np.asarray(values, np.float64)
    if series.ndim == 2:
        series = series[:, 0]
    n = len(series)
    max_lag = min(int(max_lag), n // 3)
    if max_lag < 2:
        return None
    steps = np.arange(n, dtype=np.float64)
    residual = series - np.polyval(np.polyfit(steps, series, 1), steps)
    centred = residual - residual.mean()
    denominator = float(np.dot(centred, centred))
    if denominator <= 1e-12 * max(1.0, float(np.dot(series, series))):
        return None
    # r[lag] for lag 0 .. max_lag + 1.
    r = np.array(
        [1.0]
        + [np.dot(centred[:-lag], centred[lag:]) / denominator for lag in range(1, max_lag + 2)]
    )
    for lag in range(2, max_lag + 1):
        if not r[lag - 1] < r[lag] >= r[lag + 1]:
            continue
        band = 1.96 * math.sqrt((1 + 2 * np.sum(r[1:lag] ** 2)) / n)
        prominence = r[lag] - r[1:lag].min()
        if r[lag] >= max(SEASON_MIN_AUTOCORRELATION, band) and prominence >= SEASON_MIN_PROMINENCE:
            return lag
    return None


def _loss(loss_fn, targets: np.ndarray, predictions: np.ndarray, layout=None) -> float:
    # Both in the model's own layout ([W, T, C]) when known: a per-step cross-entropy sums
    # over C, not over T * C.
    if layout is not None and int(np.prod(layout)) == predictions.shape[1] == targets.shape[1]:
        targets = targets.reshape(len(targets), *layout)
        predictions = np.asarray(predictions).reshape(len(predictions), *layout)
    return float(probes_lib.mean_loss(loss_fn, tf.constant(targets), tf.constant(predictions)))


# TensorBoard tags, beside the validation loss (`val/loss`) and in HParams.
SCALAR_TAGS = {
    "model": "val/loss_end",
    "persistence": "val/persistence_loss",
    "seasonal_naive": "val/seasonal_naive_loss",
    "mean": "val/mean_loss",
}
RATIO_TAGS = {name: f"val/loss_to_{name}" for name in BASELINES}
HPARAM_TAGS = [SCALAR_TAGS["persistence"], SCALAR_TAGS["mean"], *RATIO_TAGS.values()]


def report_after_training(
    model,
    loss: Any,
    *,
    train_arrays,
    validation_arrays,
    data_report: dict | None,
    run_dir: str | None,
    step: int,
    progress: bool,
) -> dict[str, Any]:
    """Scores the trained model against the baselines and reports the skill line.

    With `progress`, the line (and the verdict, when the model is worse than a baseline) goes
    to the `lstmcore` logger at INFO; `train(progress=True)` shows that logger on stdout.

    The held-out windows are scored when there are any, else the training windows (the
    line then says "train"). Written to TensorBoard under `val/` (next to `val/loss`) at
    `step`, and as text under `baselines`.

    Returns:
      The `score` dict, with `split` added.
    """
    from lstmcore.writer import RunWriter

    arrays, split = (
        (validation_arrays, "validation")
        if validation_arrays is not None
        else (train_arrays, "train")
    )
    if arrays is None:
        result = {
            "split": None,
            "model": None,
            "notes": ["data is a tf.data.Dataset: pass NumPy arrays to score the baselines"],
        }
    else:
        try:
            result = score(
                model,
                *arrays,
                loss,
                data_report=data_report,
                train_targets=None if train_arrays is None else train_arrays[1],
            )
        except Exception as error:  # noqa: BLE001 - scoring must never cost the user the run
            result = {"model": None, "notes": [f"scoring failed: {type(error).__name__}: {error}"]}
        result["split"] = split
    line = skill_line(split, result)
    warning = verdict(split, result)
    classes = None if arrays is None else _classification(model, loss, arrays, train_arrays)
    if classes is not None:
        result["classification"] = {k: v for k, v in classes.items() if k != "labels"}
        line += "\n" + classification_line(split, classes)
    if progress:
        # Through the lstmcore logger, as the trainer's own messages: during train(progress=
        # True) its console handler shows them on stdout, above the progress bar.
        log.info(line)
        if warning:
            log.info(warning)
    if run_dir is not None and result.get("model") is not None and split == "validation":
        with RunWriter(run_dir, []) as writer:
            for name, tag in SCALAR_TAGS.items():
                if result.get(name) is not None:
                    writer.write_scalar(tag, result[name], step)
            for name, ratio in result["ratios"].items():
                if math.isfinite(ratio):
                    writer.write_scalar(RATIO_TAGS[name], ratio, step)
            for name in ("accuracy", "balanced_accuracy", "majority_accuracy"):
                if classes is not None:
                    writer.write_scalar(f"val/{name}", classes[name], step)
            writer.write_text("baselines", line + ("\n\n" + warning if warning else ""), step)
    return result


def _classification(model, loss, arrays, train_arrays) -> dict[str, Any] | None:
    from lstmcore import setup_checks

    try:
        return setup_checks.classification_scores(
            model,
            arrays[0],
            arrays[1],
            loss,
            train_targets=None if train_arrays is None else train_arrays[1],
        )
    except Exception:  # noqa: BLE001 - the classification line is extra; never cost the run
        return None


def classification_line(split: str, scores: dict[str, Any]) -> str:
    """For classifiers, beside the loss: accuracy against the majority class, balanced accuracy.

    e.g. `validation: accuracy 0.889 vs 0.884 always predicting class 0 (the majority);
    balanced accuracy 0.369 (chance 0.333)`. A model that only matches the majority class
    while its balanced accuracy sits at chance has collapsed onto one class.
    """
    line = (
        f"{split}: accuracy {scores['accuracy']:.3f} vs {scores['majority_accuracy']:.3f} always "
        f"predicting class {scores['majority_class']} (the majority); balanced accuracy "
        f"{scores['balanced_accuracy']:.3f} (chance {scores['chance']:.3f})"
    )
    if scores.get("collapsed"):
        line += " -- collapsed onto one class"
    return line
