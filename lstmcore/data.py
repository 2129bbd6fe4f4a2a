"""Time-series windows that cannot leak: chronological splits, a train-only scaler, a CSV reader.

A series is a `[N, F]` array of N time steps (rows) and F columns. A window starting at row
`s` has inputs at rows `s .. s + input_steps - 1` and targets at the `horizon` rows right
after them, `s + input_steps .. s + input_steps + horizon - 1`: the target of a window whose
inputs end at time `t` is at `t + 1 .. t + horizon`, never inside the inputs.

`windows` splits the rows chronologically into train, validation and test blocks. Every
window lies entirely inside one block, so no row (input or target) is seen by two splits;
this is the same as skipping `input_steps + horizon - 1` window positions between splits,
which is the default and smallest `gap`. Normalisation statistics (mean and standard
deviation per column) come from the training rows alone and travel with the result as a
`Scaler`, so predictions can be mapped back to the original scale and the same scaling is
applied at inference.

The split boundaries, window counts and scaler statistics are returned in a JSON-ready
report and logged on the `lstmcore.data` logger at INFO, so later checks can verify them.

Example:

    series = read_csv("load.csv", target="load", time_column="time", missing="ffill")
    data = windows(series, input_steps=48, horizon=24)
    model.fit(data.train, validation_data=data.validation)
    predictions = data.inverse_transform_targets(model.predict(data.test))
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import datetime
import logging
import math
import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from lstmcore import config, target_forms
from lstmcore.errors import ConfigError, DataError
from lstmcore.inputs import epoch_batches

logger = logging.getLogger("lstmcore.data")

SPLIT_NAMES = ("train", "validation", "test")
MISSING_POLICIES = ("error", "drop", "ffill", "interpolate")
# Cells that read_csv treats as missing (compared after strip() and lower()).
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none"})
MAX_AUTO_SEASON = 400  # the longest season windows(season="auto") looks for, in rows

ColumnRef = int | str


# --------------------------------------------------------------------------------------------
# Scaler
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Scaler:
    """Per-column standardisation `(x - mean) / std`, fitted on training rows only.

    Attributes:
        columns: Column names, one per statistic, in the order of the series' columns.
        mean: Per-column mean, `[F]` float64.
        std: Per-column standard deviation, `[F]` float64, all finite and > 0 (a constant
            training column gets 1, see `fit_scaler`).
    """

    columns: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self):
        columns = tuple(str(c) for c in self.columns)
        mean = np.asarray(self.mean, dtype=np.float64).reshape(-1)
        std = np.asarray(self.std, dtype=np.float64).reshape(-1)
        if not (len(columns) == mean.shape[0] == std.shape[0]):
            raise DataError(
                f"Scaler: columns, mean and std must have the same length; got "
                f"{len(columns)}, {mean.shape[0]} and {std.shape[0]}"
            )
        if not np.all(np.isfinite(mean)):
            raise DataError(f"Scaler: mean must be finite; got {mean.tolist()}")
        if not np.all(np.isfinite(std) & (std > 0)):
            raise DataError(f"Scaler: std must be finite and > 0; got {std.tolist()}")
        object.__setattr__(self, "columns", columns)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    def _column_indices(self, columns: Sequence[ColumnRef] | None) -> np.ndarray:
        if columns is None:
            return np.arange(len(self.columns))
        return np.asarray(_resolve_columns(columns, self.columns, "columns"), dtype=np.int64)

    def _checked(self, values: Any, indices: np.ndarray) -> np.ndarray:
        values = np.asarray(values)
        if values.ndim == 0 or values.shape[-1] != len(indices):
            raise DataError(
                f"values must have {len(indices)} columns in the last axis (one per selected "
                f"scaler column); got shape {values.shape}"
            )
        if values.dtype in (np.float32, np.float64):
            return values
        return values.astype(np.float64)

    def transform(self, values: Any, *, columns: Sequence[ColumnRef] | None = None) -> np.ndarray:
        """Standardises `values` column by column.

        Args:
            values: Array `[..., C]` in the original scale.
            columns: The C scaler columns (names or indices) that the last axis of `values`
                holds, in order; None means all of them.

        Returns:
            `(values - mean) / std`, same shape; float32 input stays float32, anything
            else becomes float64.
        """
        indices = self._column_indices(columns)
        values = self._checked(values, indices)
        return ((values - self.mean[indices]) / self.std[indices]).astype(values.dtype)

    def inverse_transform(
        self, values: Any, *, columns: Sequence[ColumnRef] | None = None
    ) -> np.ndarray:
        """Maps standardised `values` back to the original scale: `values * std + mean`.

        Args:
            values: Array `[..., C]` in the standardised scale (for example predictions).
            columns: The C scaler columns (names or indices) that the last axis holds;
                None means all of them.

        Returns:
            The values in the original scale, same shape and float dtype rule as `transform`.
        """
        indices = self._column_indices(columns)
        values = self._checked(values, indices)
        return (values * self.std[indices] + self.mean[indices]).astype(values.dtype)

    def to_dict(self) -> dict[str, list]:
        """Returns `{"columns", "mean", "std"}` as JSON-ready lists."""
        return {
            "columns": list(self.columns),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
        }

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> Scaler:
        """Rebuilds a scaler from the output of `to_dict` (for example after JSON)."""
        missing_keys = {"columns", "mean", "std"} - set(config)
        if missing_keys:
            raise ConfigError(
                f"Scaler.from_dict: config lacks keys {sorted(missing_keys)}; expected the "
                f"dict written by Scaler.to_dict with keys columns, mean and std"
            )
        return cls(columns=tuple(config["columns"]), mean=config["mean"], std=config["std"])


def fit_scaler(values: Any, *, columns: Sequence[str] | None = None) -> Scaler:
    """Fits a `Scaler` to the rows of `values`: per-column mean and standard deviation.

    The standard deviation is the population one (`ddof=0`). A column whose standard
    deviation is 0 (constant over these rows) gets std 1, with a `RuntimeWarning`, so it is
    centred but not blown up.

    Args:
        values: Array `[N, F]` (or `[N]`) of finite values, typically the training rows only.
        columns: F column names; None names them `column_0 .. column_{F-1}`.

    Returns:
        The fitted `Scaler`.

    Raises:
        ValueError: If `values` is empty, not 1-D/2-D, non-finite, or `columns` has the
            wrong length.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2 or values.shape[0] == 0:
        raise DataError(f"values must be a non-empty [rows, columns] array; got {values.shape}")
    _check_finite(values, _default_names(values.shape[1]) if columns is None else columns)
    names = _default_names(values.shape[1]) if columns is None else tuple(map(str, columns))
    if len(names) != values.shape[1]:
        raise ConfigError(
            f"columns must name each of the {values.shape[1]} columns; got {len(names)} names"
        )
    mean = values.mean(axis=0)
    std = values.std(axis=0)
    constant = std <= 1e-12 * np.maximum(1.0, np.abs(mean))
    for index in np.flatnonzero(constant):
        message = (
            f"column {names[index]!r} is constant ({mean[index]:g}) over the rows the scaler "
            f"was fitted on; using std 1 for it. A constant training column carries no signal."
        )
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        logger.warning(message)
    std = np.where(constant, 1.0, std)
    return Scaler(columns=names, mean=mean, std=std)


# --------------------------------------------------------------------------------------------
# Series
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Series:
    """A multivariate time series with column names, as `read_csv` returns it.

    `windows` accepts a `Series` directly and then uses its `feature_columns` and
    `target_columns` unless told otherwise.

    Attributes:
        values: `[N, F]` float32, one row per time step.
        columns: F column names.
        feature_columns: Names of the columns fed to the model; None means all columns.
        target_columns: Names of the columns to predict; None means the last column.
        time: `[N]` strictly increasing time stamps (float64 numbers or datetime64[us]),
            or None.
        report: JSON-ready facts about where the values came from (file, rows read, values
            filled or dropped).
        interpolated: The runs of missing values `read_csv(missing="interpolate")` filled,
            as `(column index, first row, end row)` triples: rows `[first, end)` of that
            column were drawn between the values at rows `first - 1` and `end`. `windows`
            uses them to keep every split's fills inside the split.
    """

    values: np.ndarray
    columns: tuple[str, ...]
    feature_columns: tuple[str, ...] | None = None
    target_columns: tuple[str, ...] | None = None
    time: np.ndarray | None = None
    report: dict[str, Any] = dataclasses.field(default_factory=dict)
    interpolated: tuple[tuple[int, int, int], ...] = ()

    def __post_init__(self):
        values = np.asarray(self.values, dtype=np.float32)
        if values.ndim == 1:
            values = values[:, None]
        if values.ndim != 2:
            raise DataError(f"Series: values must be [time, features]; got shape {values.shape}")
        columns = tuple(str(c) for c in self.columns)
        if len(columns) != values.shape[1] or len(set(columns)) != len(columns):
            raise ConfigError(
                f"Series: columns must be {values.shape[1]} distinct names, one per column of "
                f"values; got {list(columns)}"
            )
        for field in ("feature_columns", "target_columns"):
            names = getattr(self, field)
            if names is not None:
                names = tuple(str(columns[i]) for i in _resolve_columns(names, columns, field))
                object.__setattr__(self, field, names)
        if self.time is not None and len(self.time) != values.shape[0]:
            raise DataError(
                f"Series: time must have one entry per row ({values.shape[0]}); "
                f"got {len(self.time)}"
            )
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "columns", columns)


# --------------------------------------------------------------------------------------------
# Windows
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class WindowedData:
    """Train, validation and test windows of one series, with the scaler and a report.

    Every dataset yields `(inputs, targets)` batches: inputs `[B, input_steps, F]` float32;
    targets `[B, horizon * C]` float32, flat so that `keras.layers.Dense(horizon * C)` fits
    them directly. Element `k * C + c` of a target row is target column `c` at step
    `t + 1 + k` (k = 0 .. horizon - 1), where `t` is the last input step; reshape to
    `[B, horizon, C]` to get steps and columns apart. Inputs and targets are in the scaled
    space when a scaler is in use, and in the target form of `report["target_mode"]`
    (`lstmcore.target_forms`): levels, changes from the last input value, or scaled by each
    window's own statistics; `inverse_transform_targets` undoes both.

    Attributes:
        train: Training batches, shuffled (deterministically, from `seed`) unless
            `shuffle_train=False`; every pass over it yields the same order, so a resumed
            run sees the same batches as an uninterrupted one.
        validation: Validation batches in time order.
        test: Test batches in time order.
        scaler: The `Scaler` applied to every column, or None when `normalize=None`.
        report: JSON-ready dict, see `windows`.
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset
    scaler: Scaler | None
    report: dict[str, Any]
    _scaled_values: np.ndarray = dataclasses.field(repr=False)
    _feature_indices: np.ndarray = dataclasses.field(repr=False)
    _target_indices: np.ndarray = dataclasses.field(repr=False)
    _starts: dict[str, np.ndarray] = dataclasses.field(repr=False)
    _target_features: list[int] | None = dataclasses.field(repr=False, default=None)

    def window_starts(self, split: str) -> np.ndarray:
        """Row index of the first input step of every window of `split`, in time order.

        Window `s` reads input rows `[s, s + input_steps)` and target rows
        `[s + input_steps, s + input_steps + horizon)`.
        """
        return self._starts[_check_split(split)].copy()

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """The windows of `split` as NumPy arrays, in time order (a copy; memory `W*T*F`).

        Args:
            split: "train", "validation" or "test".

        Returns:
            `(inputs [W, input_steps, F], targets [W, horizon * C])` float32, the same values
            the dataset yields (the training dataset in shuffled order), in the target form.
        """
        inputs, targets = self._level_arrays(split)
        return self._to_form(inputs, targets)

    def form_inputs(self, inputs: Any) -> np.ndarray:
        """Level input windows (e.g. from `inference_windows`) as the model sees them.

        Only "window_norm" changes the inputs (each window scaled by its own statistics).
        """
        x = np.asarray(inputs, np.float32)
        if self.report["target_mode"] != "window_norm":
            return x
        return np.asarray(target_forms.normalize_windows(x), np.float32)

    def inverse_transform_targets(
        self, targets: Any, *, split: str | None = None, inputs: Any = None
    ) -> np.ndarray:
        """Maps targets or predictions `[..., horizon * C]` back to the original scale.

        Undoes the target form first, then the scaler. The "change" and "window_norm" forms
        are relative to each window, so they need to know which windows the values belong
        to: `split` names the windows of a split (in time order, as `arrays(split)`), or
        `inputs` gives them as level windows (`inference_windows`' output).

        Args:
            targets: Flat targets in the layout the datasets yield (for example
                `model.predict(data.test)`), or `[..., horizon, C]`; with a split or inputs,
                one row per window.
            split: "train", "validation" or "test", for a relative target form.
            inputs: `[W, input_steps, F]` level input windows, for a relative target form.

        Returns:
            The same shape in the original units of the target columns (unchanged values
            when no scaler and the level form are in use).

        Raises:
            ValueError: For a wrong shape, or a relative target form without `split` or
                `inputs`.
        """
        values = np.asarray(targets)
        num_targets = len(self._target_indices)
        horizon = self.report["horizon"]
        if values.ndim >= 2 and values.shape[-2:] == (horizon, num_targets):
            shaped = values
        elif values.ndim >= 1 and values.shape[-1] == horizon * num_targets:
            shaped = values.reshape(*values.shape[:-1], horizon, num_targets)
        else:
            raise DataError(
                f"targets must end in horizon * targets = {horizon * num_targets} values or "
                f"[{horizon}, {num_targets}]; got shape {values.shape}"
            )
        mode = self.report["target_mode"]
        if mode != "level":
            shaped = self._from_form(shaped, mode, split, inputs)
        if self.scaler is None:
            return shaped.reshape(values.shape).astype(values.dtype, copy=True)
        original = self.scaler.inverse_transform(shaped, columns=self._target_indices.tolist())
        return original.reshape(values.shape)

    def _level_arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        starts = self._starts[_check_split(split)]
        input_steps, horizon = self.report["input_steps"], self.report["horizon"]
        features = self._scaled_values[:, self._feature_indices]
        targets = self._scaled_values[:, self._target_indices]
        # sliding_window_view is a view; indexing with `starts` makes the only copy.
        inputs = np.lib.stride_tricks.sliding_window_view(features, input_steps, axis=0)
        outputs = np.lib.stride_tricks.sliding_window_view(targets, horizon, axis=0)
        x = inputs[starts].transpose(0, 2, 1)
        y = outputs[starts + input_steps].transpose(0, 2, 1).reshape(len(starts), -1)
        return np.ascontiguousarray(x), np.ascontiguousarray(y)

    def _to_form(self, inputs: np.ndarray, targets: np.ndarray):
        mode = self.report["target_mode"]
        if mode == "level":
            return inputs, targets
        x, y = target_forms.to_target_form(
            inputs, targets, mode, self._target_features, self.report["horizon"]
        )
        return np.asarray(x, np.float32), np.asarray(y, np.float32)

    def _from_form(self, shaped: np.ndarray, mode: str, split, inputs) -> np.ndarray:
        if (split is None) == (inputs is None):
            raise ConfigError(
                f"target_mode={mode!r} values are relative to their windows: pass exactly one "
                f"of split='train'|'validation'|'test' (the windows of arrays(split)) or "
                f"inputs= (level windows, e.g. from inference_windows)"
            )
        level_inputs = (
            self._level_arrays(split)[0] if split is not None else np.asarray(inputs, np.float32)
        )
        if level_inputs.ndim != 3 or shaped.ndim != 3 or len(level_inputs) != len(shaped):
            raise DataError(
                f"need one row of targets per window: got targets {shaped.shape[:-2]} rows and "
                f"inputs of shape {level_inputs.shape}"
            )
        flat = shaped.reshape(len(shaped), -1).astype(np.float32)
        levels = target_forms.from_target_form(
            flat, level_inputs, mode, self._target_features, self.report["horizon"]
        )
        return np.asarray(levels, np.float64).reshape(shaped.shape)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy of `report`."""
        return copy.deepcopy(self.report)


def windows(
    series: Any,
    *,
    input_steps: int,
    horizon: int = 1,
    stride: int = 1,
    targets: Sequence[ColumnRef] | ColumnRef | None = None,
    features: Sequence[ColumnRef] | ColumnRef | None = None,
    splits: Sequence[float] = (0.7, 0.15, 0.15),
    gap: int | None = None,
    normalize: str | Scaler | None = "train",
    batch_size: int = 32,
    shuffle_train: bool = True,
    seed: int = 0,
    season: int | str | None = None,
    target_mode: str = "level",
) -> WindowedData:
    """Cuts a series into chronological train / validation / test windows that cannot leak.

    The rows are split in time order into three blocks by `splits`, after taking out the
    rows that a `gap` larger than the minimum leaves unused between blocks
    (`gap - (input_steps + horizon - 1)` rows at each of the two boundaries). Every window
    lies entirely inside one block: window `s` reads input rows `[s, s + input_steps)` and
    target rows `[s + input_steps, s + input_steps + horizon)`. Inside a block, windows
    start at its first row and every `stride` rows after it. No row is shared by two splits.

    For `np.arange(100)` with `input_steps=5`, `horizon=1` and the default splits, the
    training rows are `[0, 70)` and hold 65 windows (the first reads rows 0..4 and predicts
    5, the last reads 64..68 and predicts 69), validation rows are `[70, 85)` (10 windows),
    test rows `[85, 100)` (10 windows).

    Args:
        series: `[N]` or `[N, F]` array (time x columns) of finite values, or a `Series`
            (from `read_csv`). Arrays' columns are named `column_0 .. column_{F-1}`.
        input_steps: Time steps T per input window, >= 1.
        horizon: Future steps K to predict after each window, >= 1.
        stride: Rows between the starts of consecutive windows of a split, >= 1.
        targets: Columns to predict, as names or indices (one or a list of C). None means
            the `Series`' `target_columns`, or the last column.
        features: Columns fed as inputs, names or indices. None means the `Series`'
            `feature_columns`, or all columns (a target's own past is a valid input: it ends
            before the target steps begin).
        splits: Fractions (train, validation, test) of the rows, each > 0, summing to 1.
        gap: Window positions skipped between the last window of one split and the first
            of the next. None and the minimum are `input_steps + horizon - 1`, which makes
            the splits' rows disjoint and adjacent; a larger gap leaves rows unused.
        normalize: "train" to fit a `Scaler` on the training rows only; a `Scaler` to apply
            a precomputed one (for example from an earlier run, via `Scaler.from_dict`);
            None to feed raw values (not recommended for LSTMs).
        batch_size: Windows per batch, >= 1; the last batch of a split may be smaller.
        shuffle_train: Whether to shuffle the training windows (one seeded order, the same
            on every pass, so that a resume is exact).
        seed: Seed of the training shuffle; the same seed gives the same order in every run
            (a stateless shuffle: TensorFlow's global seed does not enter it).
        season: The season length in rows (e.g. 12 for monthly data with a yearly cycle),
            for the seasonal naive baseline (`lstmcore.baselines`); "auto" detects it from
            the training rows of the first target column (`baselines.detect_season`, up to
            400 rows; None if no clear season); None means no season.
        target_mode: What the targets are (`lstmcore.target_forms`): "level" (the values
            themselves), "change" (minus the last input value of the same column: a model
            predicting 0 is persistence) or "window_norm" (inputs and targets scaled by each
            window's own mean and std; reversible instance normalisation). The relative forms
            need every target column among the features. `inverse_transform_targets` undoes
            it; `lstmcore.models.forecaster(target_mode=...)` does the same inside a model
            instead, which keeps the saved model's outputs in levels.

    Returns:
        A `WindowedData` whose `report` holds: `num_rows`, `input_steps`, `horizon`,
        `stride`, `gap`, `batch_size`, `shuffle_train`, `seed`, `columns`,
        `feature_columns`, `target_columns`, `target_layout`, `normalize`, `scaler`
        (`Scaler.to_dict()` or None), `splits` (per split: `fraction`, `rows` as a
        `[start, end)` pair of row indices, `windows`, `first_window_start`,
        `last_window_start`, and `time` as `[first, last]` strings when the series has time
        stamps), `season` (rows, or None), `target_mode` and `source` (the `Series` report,
        if any).

    Raises:
        ValueError: If an argument is out of range, a column does not exist, the values are
            not finite, the series is shorter than one window or a split holds no window.
    """
    values, columns, default_features, default_targets, time, source = _unpack_series(series)
    input_steps = _check_int(input_steps, "input_steps", minimum=1)
    horizon = _check_int(horizon, "horizon", minimum=1)
    stride = _check_int(stride, "stride", minimum=1)
    batch_size = _check_int(batch_size, "batch_size", minimum=1)
    seed = _check_int(seed, "seed", minimum=None)
    window_rows = input_steps + horizon
    min_gap = window_rows - 1
    gap = min_gap if gap is None else _check_int(gap, "gap", minimum=None)
    if gap < min_gap:
        raise ConfigError(
            f"gap must be >= input_steps + horizon - 1 = {min_gap} so that no row is shared "
            f"between splits (a smaller gap lets training targets appear in validation "
            f"inputs); got gap={gap}. Leave gap=None for the smallest safe gap."
        )
    fractions = _check_splits(splits)
    target_mode = target_forms.check_target_mode(target_mode)
    if not (season is None or season == "auto"):
        season = _check_int(season, "season", minimum=2)
    num_rows = values.shape[0]
    if num_rows < window_rows:
        raise DataError(
            f"series has {num_rows} rows, fewer than the input_steps + horizon = {window_rows} "
            f"rows one window needs; use a longer series or smaller input_steps/horizon"
        )
    _check_finite(values, columns)
    feature_indices = _resolve_columns(
        default_features if features is None else features, columns, "features"
    )
    target_indices = _resolve_columns(
        default_targets if targets is None else targets, columns, "targets"
    )

    target_features = None
    if target_mode != "level":
        missing = [columns[i] for i in target_indices if i not in feature_indices]
        if missing:
            raise ConfigError(
                f"target_mode={target_mode!r} reads each target's past from its window, but "
                f"target column(s) {missing} are not among the features "
                f"{[columns[i] for i in feature_indices]}; add them to features or use "
                f"target_mode='level'"
            )
        target_features = [feature_indices.index(i) for i in target_indices]
    bounds = _split_rows(num_rows, fractions, unused_rows=gap - min_gap)
    starts = {}
    for name, (start, end), fraction in zip(SPLIT_NAMES, bounds, fractions):
        if end - start < window_rows:
            raise DataError(
                f"splits={tuple(fractions)} leaves the {name} split rows [{start}, {end}) "
                f"({end - start} rows), fewer than the input_steps + horizon = {window_rows} "
                f"rows one window needs; use a longer series, a larger {name} fraction, a "
                f"smaller gap or smaller input_steps/horizon"
            )
        starts[name] = np.arange(start, end - window_rows + 1, stride, dtype=np.int64)

    cut = 0
    if isinstance(series, Series) and series.interpolated:
        values, cut = _fills_inside_splits(values, series.interpolated, bounds)
    train_start, train_end = bounds[0]
    if season == "auto":
        from lstmcore import baselines

        season = baselines.detect_season(
            values[train_start:train_end, target_indices[0]], max_lag=MAX_AUTO_SEASON
        )
    scaler = _make_scaler(normalize, values[train_start:train_end], columns)
    scaled = values if scaler is None else scaler.transform(values)
    scaled = np.ascontiguousarray(scaled, dtype=np.float32)

    datasets = {}
    for name, (start, end) in zip(SPLIT_NAMES, bounds):
        datasets[name] = _make_dataset(
            scaled[start:end, feature_indices],
            scaled[start:end, target_indices],
            starts[name] - start,
            input_steps=input_steps,
            horizon=horizon,
            batch_size=batch_size,
            shuffle=shuffle_train and name == "train",
            seed=seed,
            target_mode=target_mode,
            target_features=target_features,
        )

    split_reports = {}
    for name, (start, end), fraction in zip(SPLIT_NAMES, bounds, fractions):
        split_starts = starts[name]
        split_reports[name] = {
            "fraction": fraction,
            "rows": [start, end],
            "windows": len(split_starts),
            "first_window_start": int(split_starts[0]),
            "last_window_start": int(split_starts[-1]),
        }
        if time is not None:
            split_reports[name]["time"] = [str(time[start]), str(time[end - 1])]
    report = {
        "num_rows": int(num_rows),
        "input_steps": input_steps,
        "horizon": horizon,
        "stride": stride,
        "gap": gap,
        "batch_size": batch_size,
        "shuffle_train": bool(shuffle_train),
        "seed": seed,
        "columns": list(columns),
        "feature_columns": [columns[i] for i in feature_indices],
        "target_columns": [columns[i] for i in target_indices],
        "target_layout": (
            "flat [batch, horizon * targets]; element k * targets + c is target column c at "
            "step t + 1 + k, t being the last input step"
        ),
        "normalize": _normalize_name(normalize),
        "scaler": None if scaler is None else scaler.to_dict(),
        "splits": split_reports,
        "season": season,
        "target_mode": target_mode,
        "interpolation_cut_at_split_ends": cut,
        "source": copy.deepcopy(source),
    }
    _log_report(report)
    return WindowedData(
        train=datasets["train"],
        validation=datasets["validation"],
        test=datasets["test"],
        scaler=scaler,
        report=report,
        _scaled_values=scaled,
        _feature_indices=np.asarray(feature_indices, dtype=np.int64),
        _target_indices=np.asarray(target_indices, dtype=np.int64),
        _starts=starts,
        _target_features=target_features,
    )


def default_input_steps(
    num_rows: int,
    *,
    horizon: int = 1,
    splits: Sequence[float] = (0.7, 0.15, 0.15),
    season: int | None = None,
    preferred: int = 48,
) -> int:
    """A window length that suits the series: what `lstmcore train` uses without `--window`.

    The rule: `preferred` steps (48), or twice the season when that is longer, so the window
    sees two cycles; capped so that one window and its horizon fill at most half of the
    smallest split (`input_steps + horizon <= smallest split rows / 2`), which leaves every
    split at least half its rows' worth of windows; at least 2.

    Args:
      num_rows: rows in the series.
      horizon: steps ahead to forecast.
      splits: the (train, validation, test) fractions.
      season: the season length in rows, or None.
      preferred: the window when the series is long enough.

    Returns:
      The window length in steps.

    Raises:
      ValueError: If the smallest split is too short for a window of 2 steps and the horizon.
    """
    fractions = _check_splits(splits)
    smallest = math.floor(min(fractions) * num_rows)
    limit = smallest // 2 - horizon
    if limit < 2:
        raise DataError(
            f"the smallest split holds {smallest} of the {num_rows} rows, too few for a window "
            f"of 2 steps and a horizon of {horizon} in half of it; use a longer series, "
            f"larger validation/test fractions or a shorter horizon"
        )
    wanted = max(preferred, 2 * season) if season else preferred
    return int(min(wanted, limit))


def inference_windows(
    series: Any,
    *,
    input_steps: int,
    scaler: Scaler | None,
    features: Sequence[ColumnRef] | ColumnRef | None = None,
) -> np.ndarray:
    """Every input window of a new series, scaled as in training, for `model.predict`.

    Args:
        series: `[N, F]` array or `Series` with the same columns as the training series.
        input_steps: Time steps T per window, as in training.
        scaler: The training run's `WindowedData.scaler` (or `Scaler.from_dict` of its
            report); None when training used `normalize=None`.
        features: Input columns, as in training; None picks the same default as `windows`.

    Returns:
        `[N - input_steps + 1, input_steps, F_in]` float32; window `i` ends at row
        `i + input_steps - 1`, so the last window predicts the steps after the series ends.

    Raises:
        ValueError: If the series is shorter than `input_steps`, not finite, or its columns
            differ from the scaler's.
    """
    values, columns, default_features, _, _, _ = _unpack_series(series)
    input_steps = _check_int(input_steps, "input_steps", minimum=1)
    if values.shape[0] < input_steps:
        raise DataError(f"series has {values.shape[0]} rows, fewer than input_steps={input_steps}")
    _check_finite(values, columns)
    feature_indices = _resolve_columns(
        default_features if features is None else features, columns, "features"
    )
    if scaler is not None:
        _check_scaler_columns(scaler, columns)
        values = scaler.transform(values)
    inputs = np.lib.stride_tricks.sliding_window_view(
        values[:, feature_indices].astype(np.float32), input_steps, axis=0
    )
    return np.ascontiguousarray(inputs.transpose(0, 2, 1))


# --------------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------------


def read_csv(
    path: str | os.PathLike,
    *,
    target: Sequence[ColumnRef] | ColumnRef,
    features: Sequence[ColumnRef] | ColumnRef | None = None,
    time_column: ColumnRef | None = None,
    missing: str = "error",
    delimiter: str = ",",
) -> Series:
    """Reads a CSV file with a header row into a `Series` that `windows` takes directly.

    Cells that are empty or read `NA`, `N/A`, `NaN`, `null` or `None` (any case), and the
    infinities, are missing values, handled by `missing`:

    - "error": raise, naming the line and column of the first one.
    - "drop": drop every row with a missing value in a selected column.
    - "ffill": carry the last valid value forward (uses the past only); a column that
      starts with a missing value raises.
    - "interpolate": linear in time (or in row number without a time column); a column that
      starts or ends with a missing value raises. It reads the next valid value; `windows`
      keeps that inside each split: rows whose next valid value lies past the end of their
      split (in validation or test rows) are carried forward from the last value instead,
      so no split's rows hold a value drawn from a later split.

    Any other non-numeric cell in a selected column raises whatever the policy. Columns not
    selected (neither target, feature nor time) are not parsed.

    Args:
        path: The CSV file; the first row names the columns.
        target: Column(s) to predict, by name or 0-based index.
        features: Input columns, by name or index; None means every column but the time
            column.
        time_column: Column of time stamps, by name or index: numbers, or ISO 8601 dates or
            datetimes (`2024-01-31`, `2024-01-31T12:00:00+01:00`; aware ones are converted to
            UTC). They must be strictly increasing. None means no time column.
        missing: "error", "drop", "ffill" or "interpolate", as above.
        delimiter: The field separator.

    Returns:
        A `Series`: `values [N, F]` float32 with the feature columns then any target column
        that is not a feature, `columns`, `feature_columns`, `target_columns`, `time`
        (float64 or datetime64[us], or None), and `report` (path, rows read and kept,
        the policy, values filled per column, rows dropped).

    Raises:
        FileNotFoundError: If there is no file at `path`.
        ValueError: If the file is empty or ragged, a column does not exist, a cell is not
            a number, time stamps are missing or not strictly increasing, or a missing value
            meets `missing="error"` or cannot be filled.
    """
    path = os.fspath(path)
    if missing not in MISSING_POLICIES:
        raise ConfigError(f"missing must be one of {MISSING_POLICIES}; got {missing!r}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"read_csv: no file at path={path!r}")

    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None)
        while header is not None and not any(cell.strip() for cell in header):
            header = next(reader, None)
        if header is None:
            raise DataError(
                f"{path} is empty; expected a header row naming the columns, then one row "
                f"per time step"
            )
        header = tuple(cell.strip() for cell in header)
        _check_header(header, path)
        time_index = (
            None
            if time_column is None
            else _resolve_columns(time_column, header, "time_column", single=True)[0]
        )
        target_indices = _resolve_columns(target, header, "target")
        if features is None:
            feature_indices = [i for i in range(len(header)) if i != time_index]
        else:
            feature_indices = _resolve_columns(features, header, "features")
        for name, indices in (("target", target_indices), ("features", feature_indices)):
            if time_index is not None and time_index in indices:
                raise ConfigError(
                    f"{name} includes the time column {header[time_index]!r}; the time column "
                    f"cannot also be a {'target' if name == 'target' else 'feature'} column"
                )
        kept = list(feature_indices) + [i for i in target_indices if i not in feature_indices]
        wanted = kept + ([] if time_index is None else [time_index])

        cells: dict[int, list[str]] = {i: [] for i in wanted}
        line_numbers = []
        for row in reader:
            if not row:
                continue  # blank line
            if len(row) != len(header):
                raise DataError(
                    f"line {reader.line_num} of {path} has {len(row)} fields but the header "
                    f"has {len(header)}; every row needs one value per column (quote fields "
                    f"that contain {delimiter!r})"
                )
            for i in wanted:
                cells[i].append(row[i])
            line_numbers.append(reader.line_num)
    if not line_numbers:
        raise DataError(f"{path} has a header but no data rows")
    line_numbers = np.asarray(line_numbers, dtype=np.int64)

    names = tuple(header[i] for i in kept)
    values = np.stack(
        [_parse_numbers(cells[i], header[i], line_numbers, path) for i in kept], axis=1
    )
    time = None
    if time_index is not None:
        time = _parse_time(cells[time_index], header[time_index], line_numbers, path)
    values, time, fill_report, runs = _fill_missing(
        values, time, names, line_numbers, path, missing
    )

    report = {
        "path": path,
        "rows_read": len(line_numbers),
        "rows_kept": int(values.shape[0]),
        "missing": missing,
        **fill_report,
        "time_column": None if time_index is None else header[time_index],
    }
    logger.info(
        "read_csv %s: %d rows read, %d kept, missing=%s, filled=%s, dropped=%d",
        path,
        report["rows_read"],
        report["rows_kept"],
        missing,
        report["filled"],
        report["rows_dropped"],
    )
    return Series(
        values=values.astype(np.float32),
        columns=names,
        feature_columns=tuple(header[i] for i in feature_indices),
        target_columns=tuple(header[i] for i in target_indices),
        time=time,
        report=report,
        interpolated=tuple(runs),
    )


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _default_names(num_columns: int) -> tuple[str, ...]:
    return tuple(f"column_{i}" for i in range(num_columns))


def _unpack_series(series: Any):
    if isinstance(series, Series):
        num_columns = len(series.columns)
        features = series.feature_columns or list(range(num_columns))
        targets = series.target_columns or [num_columns - 1]
        return series.values, series.columns, features, targets, series.time, series.report
    try:
        values = np.asarray(series, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise DataError(
            f"series must be a numeric [time, features] array or a Series; got "
            f"{type(series).__name__} that NumPy cannot convert to float ({error})"
        ) from None
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2:
        raise DataError(
            f"series must be 1-D [time] or 2-D [time, features]; got shape {values.shape}"
        )
    if values.shape[1] == 0:
        raise DataError(f"series has no columns; got shape {values.shape}")
    columns = _default_names(values.shape[1])
    return values, columns, list(range(values.shape[1])), [values.shape[1] - 1], None, {}


def _check_int(value: Any, name: str, *, minimum: int | None) -> int:
    return config.integer(name, value, minimum=minimum)


def _check_splits(splits: Any) -> list[float]:
    try:
        fractions = [float(f) for f in splits]
    except (TypeError, ValueError):
        raise ConfigError(
            f"splits must be three fractions (train, validation, test); got {splits!r}"
        ) from None
    if len(fractions) != 3:
        raise ConfigError(
            f"splits must be three fractions (train, validation, test); got {len(fractions)}: "
            f"{tuple(fractions)}"
        )
    for name, fraction in zip(SPLIT_NAMES, fractions):
        if not (math.isfinite(fraction) and fraction > 0):
            raise ConfigError(
                f"splits: the {name} fraction must be > 0 (every split needs windows); got "
                f"splits={tuple(fractions)}"
            )
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ConfigError(f"splits must sum to 1; got {tuple(fractions)} (sum {sum(fractions):g})")
    return fractions


def _split_rows(num_rows: int, fractions: Sequence[float], *, unused_rows: int):
    usable = num_rows - 2 * unused_rows
    if usable <= 0:
        raise ConfigError(
            f"gap leaves {unused_rows} unused rows at each of 2 split boundaries, more than a "
            f"series of {num_rows} rows can spare; use a smaller gap"
        )
    # Round half up, so 0.7 * 100 gives 70 whatever the floating-point noise.
    train_rows = math.floor(fractions[0] * usable + 0.5 + 1e-9)
    validation_end = math.floor((fractions[0] + fractions[1]) * usable + 0.5 + 1e-9)
    validation_rows = validation_end - train_rows
    train = (0, train_rows)
    validation = (train_rows + unused_rows, train_rows + unused_rows + validation_rows)
    test = (validation[1] + unused_rows, num_rows)
    return [train, validation, test]


def _check_finite(values: np.ndarray, columns: Sequence[str]) -> None:
    finite = np.isfinite(values)
    if finite.all():
        return
    row, column = np.argwhere(~finite)[0]
    count = int((~finite).sum())
    raise DataError(
        f"series has {count} NaN or infinite value(s); the first is {values[row, column]} at "
        f"row {row}, column {column} ({columns[column]!r}). Fill or drop them first, e.g. read "
        f"the file with read_csv(..., missing='ffill'|'interpolate'|'drop')"
    )


def _resolve_columns(
    refs: Any, columns: Sequence[str], argument: str, *, single: bool = False
) -> list[int]:
    if isinstance(refs, (str, int, np.integer)):
        refs = [refs]
    refs = list(refs)
    if not refs:
        raise ConfigError(f"{argument} must name at least one column; got an empty list")
    if single and len(refs) != 1:
        raise ConfigError(f"{argument} must be one column; got {refs}")
    indices = []
    for ref in refs:
        if isinstance(ref, (int, np.integer)) and not isinstance(ref, bool):
            if not -len(columns) <= ref < len(columns):
                raise ConfigError(
                    f"{argument}: column index {ref} is out of range for {len(columns)} columns "
                    f"(accepted: 0..{len(columns) - 1} or -{len(columns)}..-1)"
                )
            indices.append(int(ref) % len(columns))
        elif isinstance(ref, str):
            if ref not in columns:
                raise ConfigError(
                    f"{argument}: column {ref!r} does not exist; columns are {list(columns)}"
                )
            indices.append(list(columns).index(ref))
        else:
            raise ConfigError(
                f"{argument} must hold column names or indices; got {ref!r} ({type(ref).__name__})"
            )
    if len(set(indices)) != len(indices):
        raise ConfigError(f"{argument} names a column more than once; got {refs}")
    return indices


def _check_scaler_columns(scaler: Scaler, columns: Sequence[str]) -> None:
    if tuple(scaler.columns) != tuple(columns):
        raise ConfigError(
            f"normalize: the given Scaler was fitted on columns {list(scaler.columns)} but the "
            f"series has columns {list(columns)}; pass a series with the same columns in the "
            f"same order, or normalize='train' to fit a new scaler"
        )


def _make_scaler(normalize: Any, train_values: np.ndarray, columns: Sequence[str]):
    if isinstance(normalize, Scaler):
        _check_scaler_columns(normalize, columns)
        return normalize
    if normalize is None:
        return None
    if isinstance(normalize, str) and normalize == "train":
        return fit_scaler(train_values, columns=columns)
    raise ConfigError(f"normalize must be 'train', None or a Scaler; got {normalize!r}")


def _normalize_name(normalize: Any) -> str | None:
    return "given" if isinstance(normalize, Scaler) else normalize


def _check_split(split: str) -> str:
    if split not in SPLIT_NAMES:
        raise ConfigError(f"split must be one of {SPLIT_NAMES}; got {split!r}")
    return split


def _make_dataset(
    feature_rows: np.ndarray,
    target_rows: np.ndarray,
    starts: np.ndarray,
    *,
    input_steps: int,
    horizon: int,
    batch_size: int,
    shuffle: bool,
    seed: int,
    target_mode: str = "level",
    target_features: list[int] | None = None,
) -> tf.data.Dataset:
    # Each split holds only its own rows once, and windows are gathered per batch from start
    # indices: no T-fold copy of the series, and no row outside the split is reachable.
    # cache() would store that T-fold copy, so it is left out; the gather is cheaper.
    feature_rows = tf.constant(feature_rows)
    target_rows = tf.constant(target_rows)
    input_offsets = tf.range(input_steps, dtype=tf.int64)
    target_offsets = tf.range(input_steps, input_steps + horizon, dtype=tf.int64)
    target_width = horizon * target_rows.shape[1]

    def gather_windows(batch_starts):
        inputs = tf.gather(feature_rows, batch_starts[:, None] + input_offsets)
        targets = tf.gather(target_rows, batch_starts[:, None] + target_offsets)
        targets = tf.reshape(targets, [-1, target_width])
        return target_forms.to_target_form(inputs, targets, target_mode, target_features, horizon)

    # Batches of window indices from a stateless shuffle of (seed, epoch 0): every pass over
    # the dataset is the same seeded order, so a resumed run (an iterator restored from a
    # checkpoint, even at an epoch boundary, in another process) sees exactly the batches of
    # an uninterrupted one. A stateful Dataset.shuffle(reshuffle_each_iteration=True) does
    # not restore its next epoch's order across processes.
    starts = tf.constant(starts, dtype=tf.int64)
    dataset = epoch_batches(
        int(starts.shape[0]), batch_size=batch_size, shuffle=shuffle, seed=seed, repeat=False
    ).apply(tf.data.experimental.assert_cardinality(-(-int(starts.shape[0]) // batch_size)))
    dataset = dataset.map(
        lambda indices: gather_windows(tf.gather(starts, indices)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


def _log_report(report: dict[str, Any]) -> None:
    for name in SPLIT_NAMES:
        split = report["splits"][name]
        logger.info(
            "windows %s: rows [%d, %d), %d windows (starts %d..%d), input_steps=%d horizon=%d "
            "stride=%d gap=%d",
            name,
            split["rows"][0],
            split["rows"][1],
            split["windows"],
            split["first_window_start"],
            split["last_window_start"],
            report["input_steps"],
            report["horizon"],
            report["stride"],
            report["gap"],
        )
    logger.info(
        "windows scaler (%s): %s", report["normalize"], report["scaler"] or "none, raw values"
    )


def _check_header(header: Sequence[str], path: str) -> None:
    for index, name in enumerate(header):
        if not name:
            raise DataError(
                f"{path}: header column {index} has no name; every column needs a name in "
                f"the first row"
            )
    seen = set()
    for name in header:
        if name in seen:
            raise DataError(f"{path}: header names column {name!r} twice; names must differ")
        seen.add(name)


def _parse_numbers(
    cells: list[str], column: str, line_numbers: np.ndarray, path: str
) -> np.ndarray:
    try:
        return np.array(cells, dtype=np.float64)  # fast path: every cell a number
    except ValueError:
        pass
    parsed = np.empty(len(cells), dtype=np.float64)
    for row, cell in enumerate(cells):
        text = cell.strip()
        if text.lower() in MISSING_TOKENS:
            parsed[row] = np.nan
            continue
        try:
            parsed[row] = float(text)
        except ValueError:
            raise DataError(
                f"line {line_numbers[row]} of {path}, column {column!r}: {cell!r} is not a "
                f"number; fix the cell, or leave it empty to mark it missing"
            ) from None
    return parsed


def _parse_time(cells: list[str], column: str, line_numbers: np.ndarray, path: str):
    for row, cell in enumerate(cells):
        if cell.strip().lower() in MISSING_TOKENS:
            raise DataError(
                f"line {line_numbers[row]} of {path}: the time column {column!r} is missing; "
                f"every row needs a time stamp (missing values are only filled in value columns)"
            )
    try:
        time = np.array(cells, dtype=np.float64)
    except ValueError:
        time = _parse_datetimes(cells, column, line_numbers, path)
    else:
        if not np.all(np.isfinite(time)):
            row = int(np.flatnonzero(~np.isfinite(time))[0])
            raise DataError(
                f"line {line_numbers[row]} of {path}: time {cells[row]!r} in column {column!r} "
                f"is not finite"
            )
    order = time[1:] > time[:-1]
    if not order.all():
        row = int(np.flatnonzero(~order)[0]) + 1
        raise DataError(
            f"time column {column!r} must be strictly increasing; line {line_numbers[row]} of "
            f"{path} has {cells[row].strip()!r} after {cells[row - 1].strip()!r} at line "
            f"{line_numbers[row - 1]}. Sort the file by time and remove duplicate time stamps"
        )
    return time


def _parse_datetimes(cells: list[str], column: str, line_numbers: np.ndarray, path: str):
    stamps = []
    aware = None
    for row, cell in enumerate(cells):
        text = cell.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            stamp = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise DataError(
                f"line {line_numbers[row]} of {path}: time {cell!r} in column {column!r} is "
                f"neither a number nor an ISO 8601 date/datetime (e.g. 2024-01-31 or "
                f"2024-01-31T12:00:00)"
            ) from None
        is_aware = stamp.tzinfo is not None
        if aware is None:
            aware = is_aware
        elif is_aware != aware:
            raise DataError(
                f"line {line_numbers[row]} of {path}: time {cell!r} in column {column!r} "
                f"{'has' if is_aware else 'lacks'} a UTC offset but line {line_numbers[0]} "
                f"{'lacks' if is_aware else 'has'} one; use one convention for the whole column"
            )
        if is_aware:
            stamp = stamp.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        stamps.append(stamp)
    return np.array(stamps, dtype="datetime64[us]")


def _fills_inside_splits(values: np.ndarray, runs, bounds) -> tuple[np.ndarray, int]:
    """Refills interpolated rows that drew on a value past the end of their own split.

    Interpolation reads the next valid value; for a run of missing values that reaches the
    end of a split, that value lies in a later split (or in rows a gap leaves unused), so the
    filled rows would carry validation or test values into training rows (and test values
    into validation rows). Those rows are carried forward from the last value before the run
    instead (what ``missing="ffill"`` does: it reads the past only). Rows whose run ends
    inside their split keep their interpolated values.

    Returns:
        The values (a copy when any row changed) and the number of values refilled.
    """
    changed = 0
    for column, first, end in runs:
        for split_start, split_end in bounds:
            rows = slice(max(first, split_start), min(end, split_end))
            if rows.start < rows.stop and end >= split_end:
                if not changed:
                    values = values.copy()
                values[rows, column] = values[first - 1, column]
                changed += rows.stop - rows.start
    return values, changed


def _missing_runs(column_bad: np.ndarray) -> list[tuple[int, int]]:
    """``[first, end)`` row ranges of consecutive True entries."""
    edges = np.diff(np.concatenate([[0], column_bad.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def _fill_missing(values, time, names, line_numbers, path, missing):
    bad = ~np.isfinite(values)
    report = {"filled": {name: 0 for name in names}, "rows_dropped": 0}
    runs = []
    if not bad.any():
        return values, time, report, runs
    if missing == "error":
        row, column = np.argwhere(bad)[0]
        kind = "missing" if np.isnan(values[row, column]) else f"infinite ({values[row, column]})"
        raise DataError(
            f"line {line_numbers[row]} of {path}, column {names[column]!r}: value is {kind} "
            f"({int(bad.sum())} such value(s) in the file); choose "
            f"read_csv(..., missing='drop'|'ffill'|'interpolate') or fix the file"
        )
    if missing == "drop":
        keep = ~bad.any(axis=1)
        report["rows_dropped"] = int((~keep).sum())
        return values[keep], None if time is None else time[keep], report, runs

    values = values.copy()
    if time is None:
        position = np.arange(len(values), dtype=np.float64)
    else:
        position = (
            time.astype("datetime64[us]").astype(np.float64) if time.dtype.kind == "M" else time
        )
    for column, name in enumerate(names):
        column_bad = bad[:, column]
        if not column_bad.any():
            continue
        good = np.flatnonzero(~column_bad)
        if good.size == 0:
            raise DataError(
                f"{path}: column {name!r} has no valid value at all; nothing to fill from"
            )
        first_bad = int(np.flatnonzero(column_bad)[0])
        if first_bad < good[0]:
            raise DataError(
                f"line {line_numbers[first_bad]} of {path}, column {name!r}: the column starts "
                f"with a missing value, which missing={missing!r} cannot fill (no earlier "
                f"value); use missing='drop' or fix the file"
            )
        if missing == "ffill":
            last_good = np.maximum.accumulate(np.where(column_bad, 0, np.arange(len(values))))
            values[:, column] = values[last_good, column]
        else:
            last_bad = int(np.flatnonzero(column_bad)[-1])
            if last_bad > good[-1]:
                raise DataError(
                    f"line {line_numbers[last_bad]} of {path}, column {name!r}: the column ends "
                    f"with a missing value, which missing='interpolate' cannot fill (no later "
                    f"value); use missing='ffill' or 'drop'"
                )
            values[column_bad, column] = np.interp(
                position[column_bad], position[good], values[good, column]
            )
            runs.extend((column, first, end) for first, end in _missing_runs(column_bad))
        report["filled"][name] = int(column_bad.sum())
    return values, time, report, runs
