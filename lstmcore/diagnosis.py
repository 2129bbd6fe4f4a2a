"""Diagnosis: why an LSTM predicts the same value, as a ranked list of findings with evidence.

Two entry points:

- `check_data(...)` before training: scale and finiteness of inputs and targets, target
  values copied into the inputs, normalisation statistics fitted beyond the training split,
  windows shared between splits, look-ahead and cross-sample leaks in the model (by
  gradients), training windows relative to parameters, loss at initialisation, and an
  "overfit a few samples" capacity/wiring check.
- `diagnose(history, logdir=..., model=..., data=...)` after training: everything
  `check_data` does when data is given, plus whether training moved the weights, whether the
  model beats the mean (and a linear model) on held-out windows, whether its predictions have
  collapsed, and what the probes say about gradient flow and gates.

Findings are ranked by `score`: causes score above symptoms, so the first finding is the one
to fix first. `format_findings` prints them; an empty list prints "no problem found".
Every threshold is a module constant and is explained in docs/diagnosis.md.
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os

import keras
import numpy as np
import tensorflow as tf

from lstmcore import probes as probes_lib
from lstmcore import runs as runs_lib
from lstmcore import writer as writer_lib

# Thresholds (docs/diagnosis.md explains each).
SCALE_LIMIT = 10.0  # |mean| or std of a feature above this: not normalised
SCALER_TOLERANCE = 0.05  # scaled training rows must have |mean| and |std - 1| below this
LEAK_CORRELATION = 0.9999  # |corr| of an input value with a target: a copy of the target
MIN_TRAIN_WINDOWS = 100
MAX_PARAMS_PER_WINDOW = 50.0
LEAK_GRADIENT = 1e-6  # relative gradient mass that must be zero for look-ahead/batch checks
INITIAL_LOSS_RATIO = 10.0
OVERFIT_SAMPLES = 16
OVERFIT_STEPS = 200
OVERFIT_LEARNING_RATE = 1e-2
OVERFIT_RATIO = 0.1  # the few-sample fit must end below 10% of their mean-baseline loss
UPDATE_BUDGET = 1e-3  # summed learning rate (Adam-like) below this: weights barely moved
LOSS_IMPROVEMENT = 0.9  # final loss above 90% of the first: training did not improve it
NO_BETTER_THAN_MEAN = 0.95  # held-out loss above 95% of the mean baseline
COLLAPSE_STD_RATIO = 0.1  # prediction std below 10% of the target std: collapsed
LINEAR_SIGNAL = 0.8  # a linear fit below 80% of the mean baseline: there is signal to learn
SHORT_HORIZON = 0.25  # memory horizon below a quarter of the window
PROBE_SAMPLES = 64

ADAPTIVE_OPTIMIZERS = ("adam", "adamw", "rmsprop", "nadam", "adagrad", "adamax", "lion")
CAUSES = (
    "nonfinite_data",
    "unnormalised_inputs",
    "target_in_inputs",
    "lookahead_leak",
    "batch_leak",
    "window_overlap",
    "scaler_not_train_only",
    "learning_rate_too_low",
    "vanishing_gradients",
    "too_little_data",
    "too_little_capacity",
    "unnormalised_targets",
    "initial_loss_high",
    "constant_feature",
)


@dataclasses.dataclass(frozen=True)
class Finding:
    """One diagnosis: what is wrong, the numbers that show it, and what to change.

    Attributes:
      code: a stable identifier, e.g. "unnormalised_inputs".
      title: one line.
      cause: why this makes an LSTM predict (nearly) the same value, or why it misleads.
      evidence: the measured numbers, in words.
      fix: what to change, concretely.
      score: 0..1; findings are ranked by it (causes above symptoms).
    """

    code: str
    title: str
    cause: str
    evidence: str
    fix: str
    score: float

    @property
    def severity(self) -> str:
        """ "high" (score >= 0.8), "medium" (>= 0.5) or "low"."""
        return "high" if self.score >= 0.8 else "medium" if self.score >= 0.5 else "low"

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "severity": self.severity}


def rank(findings: list[Finding]) -> list[Finding]:
    """Findings sorted by score, highest first; one finding per code (the highest)."""
    best: dict[str, Finding] = {}
    for finding in findings:
        if finding.code not in best or finding.score > best[finding.code].score:
            best[finding.code] = finding
    return sorted(best.values(), key=lambda f: -f.score)


def format_findings(findings: list[Finding]) -> str:
    """Renders ranked findings as plain text (Markdown-friendly); "no problem found" if none.

    Args:
      findings: as returned by `check_data` or `diagnose`.

    Returns:
      The text.
    """
    if not findings:
        return "lstmcore diagnose: no problem found."
    lines = [f"lstmcore diagnose: {len(findings)} finding(s), most likely cause first."]
    for number, finding in enumerate(findings, 1):
        lines += [
            "",
            f"{number}. [{finding.severity}] {finding.title} ({finding.code}, score {finding.score:.2f})",
            f"   Why: {finding.cause}",
            f"   Evidence: {finding.evidence}",
            f"   Fix: {finding.fix}",
        ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Data checks (pure functions of arrays)
# --------------------------------------------------------------------------------------------


def _as_arrays(inputs, targets):
    x = np.asarray(inputs, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"inputs must be 3-D [samples, time, features]; got shape {x.shape}")
    if targets is None:
        return x, None
    y = np.asarray(targets, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if y.shape[0] != x.shape[0]:
        raise ValueError(
            f"targets must have one row per input sample ({x.shape[0]}); got shape {y.shape}"
        )
    return x, y.reshape(len(y), -1)


def check_finite(inputs, targets=None) -> list[Finding]:
    """NaN or Inf anywhere in inputs or targets."""
    found = []
    for name, values in (("inputs", inputs), ("targets", targets)):
        if values is None:
            continue
        bad = ~np.isfinite(values)
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            found.append(
                Finding(
                    "nonfinite_data",
                    f"{name} contain NaN or Inf",
                    "One non-finite value makes the loss and every gradient non-finite; the "
                    "step is skipped or the weights become NaN.",
                    f"{int(bad.sum())} non-finite value(s) in {name}; the first at index {index}.",
                    "Fill or drop the missing values before windowing "
                    "(read_csv(..., missing='ffill'|'interpolate'|'drop')).",
                    1.0,
                )
            )
    return found


def check_scale(inputs, targets=None, *, feature_names=None) -> list[Finding]:
    """Features or targets far from normalised, and constant features.

    A feature is unnormalised when `|mean| > 10` or `std > 10` over all samples and steps;
    constant when its std is 0.
    """
    x, y = _as_arrays(inputs, targets)
    flat = x.reshape(-1, x.shape[-1])
    mean, std = flat.mean(axis=0), flat.std(axis=0)
    names = (
        list(feature_names)
        if feature_names is not None
        else [f"feature {i}" for i in range(len(mean))]
    )
    found = []
    wide = np.flatnonzero((np.abs(mean) > SCALE_LIMIT) | (std > SCALE_LIMIT))
    if wide.size:
        listed = "; ".join(f"{names[i]}: mean {mean[i]:.4g}, std {std[i]:.4g}" for i in wide[:5])
        found.append(
            Finding(
                "unnormalised_inputs",
                "Inputs are not normalised",
                "Large inputs push the gate pre-activations x W + b deep into the flat parts of "
                "the sigmoids and tanh; saturated gates pass almost no gradient, so the weights "
                "stop changing and the output settles on one value.",
                f"{wide.size} of {len(mean)} input feature(s) have |mean| or std above "
                f"{SCALE_LIMIT:g}: {listed}.",
                "Standardise every feature with mean and std from the training split only: "
                "lstmcore.data.windows(series, ..., normalize='train'), or "
                "lstmcore.data.fit_scaler(train_rows).transform(values).",
                0.95,
            )
        )
    constant = np.flatnonzero(std <= 1e-12 * np.maximum(1.0, np.abs(mean)))
    if constant.size:
        found.append(
            Finding(
                "constant_feature",
                "Some input features are constant",
                "A constant feature carries no information; harmless alone, but if every "
                "feature is constant the model can only predict one value.",
                f"{constant.size} of {len(mean)} feature(s) never change: "
                + ", ".join(f"{names[i]} = {mean[i]:.4g}" for i in constant[:5])
                + ".",
                "Drop constant columns, or check that the right columns were selected.",
                1.0 if constant.size == len(mean) else 0.3,
            )
        )
    if y is not None:
        y_mean, y_std = y.mean(axis=0), y.std(axis=0)
        wide_y = np.flatnonzero((np.abs(y_mean) > SCALE_LIMIT) | (y_std > SCALE_LIMIT))
        if wide_y.size:
            found.append(
                Finding(
                    "unnormalised_targets",
                    "Targets are not normalised",
                    "With targets far from unit scale the output layer must learn a large bias "
                    "and gain first; early training spends itself on the mean, and the loss is "
                    "dominated by it.",
                    f"{wide_y.size} of {len(y_mean)} target(s) have |mean| or std above "
                    f"{SCALE_LIMIT:g}; the first: mean {y_mean[wide_y[0]]:.4g}, std "
                    f"{y_std[wide_y[0]]:.4g}.",
                    "Scale the targets with training-split statistics and map predictions back "
                    "(WindowedData.inverse_transform_targets).",
                    0.75,
                )
            )
    return found


def check_target_in_inputs(
    inputs, targets, *, last_steps: int | None = 1, feature_names=None, max_samples: int = 2000
) -> list[Finding]:
    """A copy of a target inside the input window (look-ahead leakage in the features).

    For every input feature `f`, each of the last `last_steps` input steps `s` and every
    target element `k`, the correlation over samples between `inputs[:, s, f]` and
    `targets[:, k]`; `|corr| >= 0.9999` means the input holds the target (up to scale and
    offset). In a forecasting window (targets after the last input step) that is a future
    value fed as a feature. Only the last step is checked by default, because for arbitrary
    arrays a target may legitimately be an earlier input (a recall task); pass
    `last_steps=None` (as `check_data` does for `windows(...)` data, where targets are known
    to lie in the future) to check every step.

    Args:
      inputs: `[N, T, F]` windows.
      targets: `[N, ...]` targets.
      last_steps: how many of the last input steps to check; None for all.
      feature_names: F names for the evidence.
      max_samples: use at most this many windows.

    Returns:
      A `target_in_inputs` finding, or nothing.
    """
    x, y = _as_arrays(inputs, targets)
    x, y = x[:max_samples], y[:max_samples]
    if len(x) < 10:
        return []
    first_step = 0 if last_steps is None else max(x.shape[1] - int(last_steps), 0)
    x = x[:, first_step:]
    n, steps, features = x.shape
    xs = x.reshape(n, -1)
    xs = xs - xs.mean(axis=0)
    ys = y - y.mean(axis=0)
    x_norm = np.linalg.norm(xs, axis=0)
    y_norm = np.linalg.norm(ys, axis=0)
    valid = np.outer(x_norm > 1e-12 * max(1.0, float(np.abs(x).max())), y_norm > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = (xs.T @ ys) / np.outer(x_norm, y_norm)
    corr = np.where(valid, corr, 0.0)
    hits = np.argwhere(np.abs(corr) >= LEAK_CORRELATION)
    if not hits.size:
        return []
    names = (
        list(feature_names)
        if feature_names is not None
        else [f"feature {i}" for i in range(features)]
    )
    described = []
    for flat_index, k in hits[:3]:
        s, f = divmod(int(flat_index), features)
        total = first_step + steps
        s += first_step
        described.append(
            f"{names[f]} at input step {s} (of {total}, {total - 1 - s} before the last) vs "
            f"target element {int(k)}: corr {corr[flat_index, k]:+.6f}"
        )
    return [
        Finding(
            "target_in_inputs",
            "A target value is inside the input window (leakage)",
            "An input column equals the target (shifted), so the model can copy it: training "
            "and validation look perfect, and at prediction time that future value is not "
            "available.",
            f"{len(hits)} input value(s) are exact affine copies of a target over {n} windows: "
            + "; ".join(described)
            + ". (An exactly periodic, noise-free series also gives this.)",
            "Remove the column that holds the future target, or shift it so that a window "
            "ending at time t only sees values up to t (lstmcore.data.windows puts targets at "
            "t+1..t+horizon).",
            0.9,
        )
    ]


def check_scaler(scaled_train_rows, *, columns=None) -> list[Finding]:
    """Normalisation statistics that were not fitted on the training rows.

    Args:
      scaled_train_rows: `[N, C]` the training split's rows after scaling.
      columns: C column names.

    A scaler fitted on the training rows leaves them with mean 0 and std 1 per column; a
    column with `|mean| > 0.05` or `|std - 1| > 0.05` was scaled with statistics from other
    rows (validation/test: leakage of their distribution into training).
    """
    rows = np.asarray(scaled_train_rows, np.float64)
    if rows.ndim == 1:
        rows = rows[:, None]
    mean, std = rows.mean(axis=0), rows.std(axis=0)
    off = np.flatnonzero(
        (np.abs(mean) > SCALER_TOLERANCE) | (np.abs(std - 1.0) > SCALER_TOLERANCE) & (std > 0)
    )
    if not off.size:
        return []
    names = list(columns) if columns is not None else [f"column {i}" for i in range(len(mean))]
    listed = "; ".join(f"{names[i]}: mean {mean[i]:+.3f}, std {std[i]:.3f}" for i in off[:5])
    return [
        Finding(
            "scaler_not_train_only",
            "Normalisation statistics were fitted on more than the training split",
            "Statistics from validation/test rows leak their level and spread into training, "
            "so validation scores are optimistic, and a trending series ends up off-centre in "
            "training.",
            f"after scaling, the training rows should have mean 0 and std 1 per column; "
            f"{off.size} column(s) differ by more than {SCALER_TOLERANCE:g}: {listed}.",
            "Fit the scaler on the training rows only: lstmcore.data.windows(..., "
            "normalize='train') (the default), or fit_scaler(train_rows) and reuse it for the "
            "other splits.",
            0.8,
        )
    ]


def check_window_report(report) -> list[Finding]:
    """Train/validation/test windows whose rows overlap, from a `windows(...)` report."""
    steps, horizon = report["input_steps"], report["horizon"]
    found = []
    splits = report["splits"]
    for first, second in (("train", "validation"), ("validation", "test")):
        last_row = splits[first]["last_window_start"] + steps + horizon - 1
        if last_row >= splits[second]["first_window_start"]:
            found.append(
                _overlap_finding(
                    f"the last {first} window reaches row {last_row}, the first {second} window "
                    f"starts at row {splits[second]['first_window_start']}"
                )
            )
    return found


def check_shared_rows(train_inputs, validation_inputs) -> list[Finding]:
    """Validation windows that contain rows of the training windows (overlapping splits).

    Consecutive row pairs `(x_t, x_{t+1})` of every validation window are looked up among
    the training windows' pairs; more than 1% shared means the splits overlap in time. Skipped
    when the training windows hold fewer distinct rows than half their number (discrete data,
    where equal rows need not be the same rows).
    """
    train = np.ascontiguousarray(np.asarray(train_inputs, np.float32))
    val = np.ascontiguousarray(np.asarray(validation_inputs, np.float32))
    if train.shape[1] < 2 or val.shape[1] < 2:
        return []

    def pairs(x):
        joined = np.concatenate([x[:, :-1], x[:, 1:]], axis=-1).reshape(-1, 2 * x.shape[-1])
        return {row.tobytes() for row in joined}

    distinct_rows = len({row.tobytes() for row in train.reshape(-1, train.shape[-1])})
    if distinct_rows < 0.5 * len(train):
        return []
    train_pairs = pairs(train)
    val_pairs = pairs(val)
    shared = len(train_pairs & val_pairs) / max(len(val_pairs), 1)
    if shared <= 0.01:
        return []
    return [
        _overlap_finding(
            f"{shared:.0%} of the validation windows' consecutive row pairs also occur in the "
            "training windows"
        )
    ]


def _overlap_finding(evidence: str) -> Finding:
    return Finding(
        "window_overlap",
        "Training and validation windows share rows",
        "Windows cut before splitting (or a split inside the sliding window) put the same "
        "rows, even the same targets, in both splits: validation loss measures memory, not "
        "forecasting.",
        evidence + ".",
        "Split the series chronologically first and cut windows inside each split with a gap "
        "of input_steps + horizon - 1 rows: lstmcore.data.windows(...) does this.",
        0.85,
    )


def check_data_size(train_windows: int, parameters: int) -> list[Finding]:
    """Too few training windows: fewer than 100, or more than 50 parameters per window."""
    if train_windows >= MIN_TRAIN_WINDOWS and parameters <= MAX_PARAMS_PER_WINDOW * train_windows:
        return []
    return [
        Finding(
            "too_little_data",
            "Too little training data",
            "With few windows the model either memorises them (validation loss far above "
            "training loss) or the cheapest fit is the mean of the few targets it saw.",
            f"{train_windows} training windows for {parameters} trainable parameters "
            f"({parameters / max(train_windows, 1):.1f} parameters per window); the check asks "
            f"for at least {MIN_TRAIN_WINDOWS} windows and at most {MAX_PARAMS_PER_WINDOW:g} "
            "parameters per window.",
            "Use more data (a longer series, stride=1, more series), shorter input windows, or "
            "a smaller model; validate on a held-out split to see whether it generalises.",
            0.8,
        )
    ]


# --------------------------------------------------------------------------------------------
# Model checks
# --------------------------------------------------------------------------------------------


def check_lookahead(model, inputs) -> list[Finding]:
    """Sequence outputs must not depend on later inputs; samples must not depend on others.

    For a model with one output per input step (`[B, T, ...]`), the gradient of the outputs
    at step t with respect to inputs after t must be zero (checked at three steps). For every
    model, the gradient of sample 0's outputs with respect to the other samples' inputs must
    be zero. Relative gradient mass above 1e-6 is flagged.
    """
    x = tf.constant(np.asarray(inputs, np.float32)[:8])
    batch, steps = int(x.shape[0]), int(x.shape[1])
    found = []
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        predictions = model(x, training=False)
        own = tf.reduce_sum(predictions[0])
        per_step = []
        sequence = len(predictions.shape) >= 3 and int(predictions.shape[1]) == steps
        if sequence:
            for t in sorted({0, steps // 2, steps - 2}):
                if 0 <= t < steps - 1:
                    per_step.append((t, tf.reduce_sum(predictions[:, t])))
    grad = tape.gradient(own, x)
    if grad is not None and batch > 1:
        total = float(tf.norm(grad)) + 1e-30
        other = float(tf.norm(grad[1:]))
        if other / total > LEAK_GRADIENT:
            found.append(
                Finding(
                    "batch_leak",
                    "A sample's prediction depends on other samples in the batch",
                    "Something mixes the batch axis (a reshape or transpose over the batch, "
                    "batch statistics): predictions change with the company a sample keeps, "
                    "and information crosses between windows.",
                    f"gradient of sample 0's output: {other / total:.3g} of its norm lies on "
                    "the other samples' inputs (should be 0).",
                    "Check reshapes/permutes for the batch axis; use layers that act per sample.",
                    0.9,
                )
            )
    for t, output in per_step:
        g = tape.gradient(output, x)
        if g is None:
            continue
        total = float(tf.norm(g)) + 1e-30
        future = float(tf.norm(g[:, t + 1 :]))
        if future / total > LEAK_GRADIENT:
            found.append(
                Finding(
                    "lookahead_leak",
                    "Outputs depend on future inputs",
                    "The prediction for step t reads inputs after t (a bidirectional layer, a "
                    "non-causal convolution, or misaligned targets), which will not exist at "
                    "forecast time.",
                    f"gradient of the step-{t} outputs: {future / total:.3g} of its norm lies "
                    f"on input steps {t + 1}..{steps - 1} (should be 0).",
                    "Use only causal layers (no Bidirectional, causal padding) for per-step "
                    "forecasts, or predict only from the last step.",
                    0.9,
                )
            )
            break
    del tape
    return found


def check_initial_loss(model, inputs, targets, loss="mse") -> list[Finding]:
    """Loss before training far above what predicting the mean costs (10x)."""
    report = probes_lib.initial_loss_check(model, inputs[:256], targets[:256], loss)
    if not report["ratio"] > INITIAL_LOSS_RATIO:
        return []
    return [
        Finding(
            "initial_loss_high",
            "Loss at initialisation is far above the mean baseline",
            "A freshly initialised model should predict near the targets' mean; a much larger "
            "first loss means the targets are off-centre/unscaled or the model's output scale "
            "is wrong, and training first spends itself on fixing the level.",
            f"initial loss {report['loss']:.4g} vs {report['expected']:.4g} for predicting the "
            f"mean ({report['ratio']:.3g}x; flagged above {INITIAL_LOSS_RATIO:g}x).",
            "Normalise targets with training statistics; initialise the output bias to the "
            "target mean.",
            0.5,
        )
    ]


def check_capacity(
    model,
    inputs,
    targets,
    loss="mse",
    *,
    samples: int = OVERFIT_SAMPLES,
    steps: int = OVERFIT_STEPS,
    learning_rate: float = OVERFIT_LEARNING_RATE,
) -> list[Finding]:
    """The "overfit a few samples" check: a fresh copy must nearly memorise `samples` windows.

    A copy of the architecture (fresh weights, `keras.models.clone_model`) is trained with
    Adam at `learning_rate` on the first `samples` windows, full batch, in training mode
    (dropout on), for `steps` steps. If its loss does not fall below 10% of the loss of
    predicting those samples' mean, the model cannot even memorise them: too little capacity,
    too much regularisation, or a wiring bug. The user's model is not changed; the copy's
    initial weights come from the layers' initialisers (seeded ones repeat exactly), and the
    global random state is left alone.
    """
    fn = probes_lib.as_loss_fn(loss)
    x = np.asarray(inputs, np.float32)[:samples]
    y = np.asarray(targets, np.float32)[:samples]
    if y.ndim == 1:
        y = y[:, None]
    baseline = probes_lib.baseline_loss(y, fn)
    if baseline <= 0 or len(x) < 2:
        return []
    replica = keras.models.clone_model(model)
    replica(x[:1])
    optimizer = keras.optimizers.Adam(learning_rate)
    optimizer.build(replica.trainable_variables)
    x_const, y_const = tf.constant(x), tf.constant(y)

    @tf.function
    def fit(n):
        def body(i, _):
            with tf.GradientTape() as tape:
                value = probes_lib.mean_loss(fn, y_const, replica(x_const, training=True))
            grads = tape.gradient(value, replica.trainable_variables)
            grads, _ = tf.clip_by_global_norm(grads, 1.0)
            optimizer.apply_gradients(zip(grads, replica.trainable_variables))
            return i + 1, value

        tf.while_loop(lambda i, _: i < n, body, (tf.constant(0), tf.constant(0.0)))
        return probes_lib.mean_loss(fn, y_const, replica(x_const, training=False))

    final = float(fit(tf.constant(steps)))
    ratio = final / baseline
    if ratio <= OVERFIT_RATIO:
        return []
    details = _capacity_details(model)
    return [
        Finding(
            "too_little_capacity",
            "The model cannot fit even a few samples (capacity or regularisation)",
            "A model that cannot memorise a handful of windows has too few units/layers, too "
            "much dropout or regularisation, or an output that is wired wrong; the best it can "
            "do on the full data is close to the mean.",
            f"a fresh copy trained {steps} steps (Adam {learning_rate:g}) on {len(x)} windows "
            f"ended at {ratio:.2f} of the mean-baseline loss (loss {final:.4g} vs "
            f"{baseline:.4g}); a working model goes below {OVERFIT_RATIO:g}. {details}",
            "Add units or layers (e.g. units=32..64), reduce dropout/recurrent_dropout and "
            "weight decay, and check that the head maps the LSTM output to every target.",
            0.7,
        )
    ]


def _capacity_details(model) -> str:
    parts = []
    for layer in model.layers:
        config = layer.get_config()
        if "units" in config:
            extra = "".join(
                f", {key} {config[key]:g}"
                for key in ("dropout", "recurrent_dropout")
                if config.get(key)
            )
            parts.append(f"{layer.name}: {config['units']} units{extra}")
    return ("Layers: " + "; ".join(parts) + ".") if parts else ""


# --------------------------------------------------------------------------------------------
# check_data
# --------------------------------------------------------------------------------------------


def _unpack(data):
    """`(train_x, train_y, val_x, val_y, windowed)` from arrays, a pair or a WindowedData."""
    if data is None:
        return None, None, None, None, None
    if hasattr(data, "arrays") and hasattr(data, "report"):
        tx, ty = data.arrays("train")
        vx, vy = data.arrays("validation")
        return tx, ty, vx, vy, data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data[0], data[1], None, None, None
    raise ValueError(
        f"data must be (inputs, targets) arrays or a lstmcore.data.WindowedData; got "
        f"{type(data).__name__}"
    )


def _scaled_train_rows(windowed) -> np.ndarray | None:
    # WindowedData keeps the scaled series privately; its training rows are the exact test.
    scaled = getattr(windowed, "_scaled_values", None)
    if scaled is None or windowed.scaler is None:
        return None
    start, end = windowed.report["splits"]["train"]["rows"]
    return np.asarray(scaled[start:end], np.float64)


def check_data(
    inputs=None,
    targets=None,
    *,
    windowed=None,
    validation_inputs=None,
    model: keras.Model | None = None,
    loss="mse",
    scaler=None,
    train_rows=None,
    overfit_check: bool = True,
) -> list[Finding]:
    """Checks data (and a model on it) before training; returns ranked findings.

    Args:
      inputs: `[N, T, F]` training inputs (as fed to the model).
      targets: `[N, ...]` training targets.
      windowed: a `lstmcore.data.WindowedData`; its training and validation windows are used
        when `inputs`/`targets` are not given, and its report and scaler are checked.
      validation_inputs: `[M, T, F]` validation inputs, to detect windows shared with training.
      model: a Keras model; enables the gate-saturation evidence, the look-ahead and batch
        checks, the initial-loss check and the overfit check.
      loss: a Keras loss name or callable.
      scaler: a `lstmcore.data.Scaler` used on raw arrays; with `train_rows` it is checked
        against the training rows.
      train_rows: `[R, C]` the raw (unscaled) training rows, with the scaler's columns.
      overfit_check: run the "overfit a few samples" check (trains a copy for a few seconds).

    Returns:
      Findings, highest score first; empty when everything passed.

    Raises:
      ValueError: when neither arrays nor `windowed` are given, or shapes do not match.
    """
    feature_names = None
    if windowed is not None:
        tx, ty, vx, _, _ = _unpack(windowed)
        inputs = tx if inputs is None else inputs
        targets = ty if targets is None else targets
        validation_inputs = vx if validation_inputs is None else validation_inputs
        feature_names = windowed.report.get("feature_columns")
    if inputs is None:
        raise ValueError("check_data needs inputs (and targets) or windowed=; got neither")
    x, y = _as_arrays(inputs, targets)
    found = check_finite(x, y)
    if found:
        return rank(found)
    found += check_scale(x, y, feature_names=feature_names)
    if y is not None:
        found += check_target_in_inputs(
            x, y, last_steps=None if windowed is not None else 1, feature_names=feature_names
        )
    if windowed is not None:
        rows = _scaled_train_rows(windowed)
        if rows is not None:
            found += check_scaler(rows, columns=windowed.report["columns"])
        found += check_window_report(windowed.report)
    elif scaler is not None and train_rows is not None:
        found += check_scaler(
            scaler.transform(np.asarray(train_rows, np.float64)), columns=scaler.columns
        )
    if validation_inputs is not None:
        found += check_shared_rows(x, validation_inputs)
    if model is not None:
        model(x[:1].astype(np.float32))
        parameters = int(sum(np.prod(v.shape) for v in model.trainable_variables))
        found += check_data_size(len(x), parameters)
        found = _add_saturation_evidence(found, model, x, y, loss)
        found += check_lookahead(model, x)
        if y is not None:
            found += check_initial_loss(model, x, y, loss)
            if overfit_check and not any(f.score >= 0.8 for f in found):
                found += check_capacity(model, x, y, loss)
    else:
        found += check_data_size(len(x), 0)
    return rank(found)


def _add_saturation_evidence(found, model, x, y, loss):
    if y is None or probes_lib.find_lstm(model) is None:
        return found
    values = probes_lib.make_probes(model, x[:PROBE_SAMPLES], y[:PROBE_SAMPLES], loss)()
    shares = {k.rsplit("/", 1)[-1]: v for k, v in values.items() if "/saturation/" in k}
    if not shares:
        return found
    text = ", ".join(f"{name} {share:.0%}" for name, share in shares.items())
    out = []
    for finding in found:
        if finding.code == "unnormalised_inputs":
            finding = dataclasses.replace(
                finding, evidence=finding.evidence + f" Saturated share in the first LSTM: {text}."
            )
        out.append(finding)
    return out


# --------------------------------------------------------------------------------------------
# Reading a run
# --------------------------------------------------------------------------------------------


def find_run_dir(logdir: str) -> str:
    """The run directory to read: `logdir` itself if it holds event files, else its newest run.

    Raises:
      ValueError: when no event files are found.
    """
    if glob.glob(os.path.join(glob.escape(logdir), "events.out.tfevents.*")):
        return logdir
    runs = [
        d
        for d in glob.glob(os.path.join(glob.escape(logdir), "*"))
        if glob.glob(os.path.join(glob.escape(d), "events.out.tfevents.*"))
    ]
    if not runs:
        raise ValueError(
            f"logdir {logdir!r} holds no TensorBoard event files (events.out.tfevents.*), "
            "directly or in a run directory below it"
        )
    return max(runs, key=os.path.getmtime)


def read_scalars(run_dir: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scalar in a run's event files: `{tag: (steps [n], values [n])}`, sorted by step."""
    series: dict[str, dict[int, float]] = {}
    for path in sorted(glob.glob(os.path.join(glob.escape(run_dir), "events.out.tfevents.*"))):
        for event in writer_lib.read_events(path):  # capped: the file may not be lstmcore's
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    number = value.simple_value
                elif (
                    value.HasField("tensor")
                    and value.tensor.dtype
                    in (tf.float32.as_datatype_enum, tf.float64.as_datatype_enum)
                    and writer_lib.tensor_elements(value.tensor) == 1
                ):
                    array = tf.make_ndarray(value.tensor)
                    if array.size != 1:
                        continue
                    number = float(array.reshape(()))
                else:
                    continue
                series.setdefault(value.tag, {})[int(event.step)] = float(number)
    out = {}
    for tag, points in series.items():
        steps = np.array(sorted(points), np.int64)
        out[tag] = (steps, np.array([points[s] for s in steps], np.float64))
    return out


def _history_from_run(run_dir: str) -> tuple[dict, dict, dict]:
    scalars = read_scalars(run_dir)
    history = {}
    for key, tag in (
        ("loss", "train/loss"),
        ("learning_rate", "train/learning_rate"),
        ("grad_norm_after_clip", "grad_norm/global_after_clip"),
        ("grad_norm_before_clip", "grad_norm/global_before_clip"),
        ("skipped", "train/skipped_nonfinite"),
    ):
        if tag in scalars:
            history["step"], history[key] = scalars[tag]
    if "val/loss" in scalars:
        history["val_step"], history["val_loss"] = scalars["val/loss"]
    probes = {
        tag[len("probe/") :]: values[-1]
        for tag, (_, values) in scalars.items()
        if tag.startswith("probe/")
    }
    manifest = runs_lib.read_manifest(run_dir)  # ValueError naming the file when damaged
    params = manifest["config"] if manifest is not None else {}
    return history, params, probes


# --------------------------------------------------------------------------------------------
# Run checks
# --------------------------------------------------------------------------------------------


def check_updates(history: dict, params: dict) -> list[Finding]:
    """Training that could not move the weights: a learning rate (times steps) far too small.

    For Adam-like optimizers a step moves each weight by at most about the learning rate, so
    the summed learning rate bounds how far any weight moved; for SGD the bound is the sum of
    learning rate x clipped gradient norm. Flagged when that bound is below 1e-3 (weights are
    initialised at ~0.1..1) and the final loss is above 90% of the first.
    """
    lr = np.asarray(history.get("learning_rate", []), np.float64)
    losses = np.asarray(history.get("loss", []), np.float64)
    if not lr.size or not losses.size:
        return []
    optimizer = str(params.get("optimizer", "adam")).lower()
    if optimizer in ADAPTIVE_OPTIMIZERS:
        budget = float(lr.sum())
        how = "sum of the learning rate over all steps"
    else:
        norms = np.asarray(history.get("grad_norm_after_clip", np.ones_like(lr)), np.float64)
        budget = float((lr * norms[: len(lr)]).sum())
        how = "sum of learning rate x gradient norm over all steps"
    window = max(1, len(losses) // 10)
    first, last = float(losses[:window].mean()), float(losses[-window:].mean())
    if budget >= UPDATE_BUDGET or last < LOSS_IMPROVEMENT * first:
        return []
    return [
        Finding(
            "learning_rate_too_low",
            "The learning rate is too small to change the weights",
            "The weights barely moved from their initial values, so the model still is the "
            "random initial function; a small initial output spread looks like 'the same value "
            "for every input'.",
            f"{len(lr)} steps at learning rate {lr.max():.3g} (peak, {optimizer}); {how} = "
            f"{budget:.3g}, below {UPDATE_BUDGET:g}, so no weight moved more than about that. "
            f"Loss {first:.4g} -> {last:.4g} ({last / first:.0%} of the start).",
            "Raise the learning rate (1e-3 to 1e-2 for Adam on normalised data), with "
            "warmup_steps=100..1000 if the first steps are unstable; or train for more steps.",
            0.85,
        )
    ]


def ridge_baseline(train_x, train_y, test_x, test_y, *, l2: float = 1e-3) -> float:
    """Held-out MSE of a ridge regression from the whole flattened window to the targets.

    Args:
      train_x, test_x: `[N, T, F]` windows.
      train_y, test_y: `[N, K]` targets.
      l2: ridge penalty relative to the number of training samples.

    Returns:
      The mean squared error on `test_x`, `test_y`.
    """

    def design(x):
        return np.asarray(x, np.float64).reshape(len(x), -1)

    a, b = design(train_x), design(test_x)
    mu, sd = a.mean(axis=0), a.std(axis=0) + 1e-12
    a, b = (a - mu) / sd, (b - mu) / sd
    ty = np.asarray(train_y, np.float64).reshape(len(train_y), -1)
    vy = np.asarray(test_y, np.float64).reshape(len(test_y), -1)
    y_mean = ty.mean(axis=0)
    gram = a.T @ a + l2 * len(a) * np.eye(a.shape[1])
    weights = np.linalg.solve(gram, a.T @ (ty - y_mean))
    return float(np.mean((b @ weights + y_mean - vy) ** 2))


def _held_out(tx, ty, vx, vy):
    if vx is not None and len(vx) >= 10:
        return tx, ty, vx, vy
    cut = int(len(tx) * 0.75)
    return tx[:cut], ty[:cut], tx[cut:], ty[cut:]


def check_fit(model, train, held_out, loss="mse", *, found_causes=()) -> list[Finding]:
    """Whether the model beats the mean on held-out windows, and what that means.

    Args:
      model: the trained model.
      train: `(inputs, targets)` training windows (for the mean and the linear fit).
      held_out: `(inputs, targets)` validation windows.
      loss: a Keras loss name or callable.
      found_causes: codes of causes already found (a symptom then points at them).

    Returns:
      Up to two findings: the symptom (`collapsed_predictions` or `no_better_than_mean`) and,
      when no other cause was found, either `vanishing_gradients` (a linear model finds
      signal the LSTM misses, and its gradient does not reach back) or `no_signal`.
    """
    tx, ty = (np.asarray(a, np.float32) for a in train)
    vx, vy = (np.asarray(a, np.float32) for a in held_out)
    ty, vy = ty.reshape(len(ty), -1), vy.reshape(len(vy), -1)
    values = probes_lib.make_probes(
        model, vx[: PROBE_SAMPLES * 4], vy[: PROBE_SAMPLES * 4], loss, train_targets=ty
    )()
    ratio = values["loss_to_mean_baseline"]
    spread = values["prediction_std_ratio"]
    if ratio < NO_BETTER_THAN_MEAN and spread >= COLLAPSE_STD_RATIO:
        return []
    steps = tx.shape[1]
    horizon = values["memory_horizon"]
    lstm = probes_lib.find_lstm(model)
    gates = ""
    if lstm is not None and f"{lstm.name}/forget_gate_mean" in values:
        gates = (
            f" First LSTM: mean forget gate {values[f'{lstm.name}/forget_gate_mean']:.2f} "
            f"(memory time scale {values[f'{lstm.name}/memory_time_scale']:.1f} steps), dead "
            f"units {values[f'{lstm.name}/dead_units']:.0%}."
        )
    measured = (
        f"held-out loss {values['loss']:.4g} = {ratio:.2f} x the loss of predicting the "
        f"training mean ({values['baseline/mean_loss']:.4g}); prediction std = {spread:.3f} x "
        f"target std; {values['distinct_predictions']:.0%} distinct predictions; memory horizon "
        f"{horizon:.0f} of {steps} steps.{gates}"
    )
    collapsed = spread < COLLAPSE_STD_RATIO and ratio >= 0.9
    symptom = Finding(
        "collapsed_predictions" if collapsed else "no_better_than_mean",
        "Predictions collapsed to (nearly) one value"
        if collapsed
        else "The model does no better than predicting the mean",
        "This is the symptom; the findings ranked above it are its likely causes.",
        measured,
        "Fix the causes ranked above." if found_causes else "See the finding ranked above.",
        0.4,
    )
    if found_causes:
        return [symptom]
    linear = ridge_baseline(*_held_out(tx, ty, vx, vy))
    mean_mse = float(np.mean((vy - ty.mean(axis=0)) ** 2))
    linear_ratio = linear / mean_mse if mean_mse > 0 else math.inf
    if linear_ratio < LINEAR_SIGNAL and horizon < SHORT_HORIZON * steps:
        cause = Finding(
            "vanishing_gradients",
            "The signal is in the data but the gradient does not reach it (vanishing gradients)",
            "A linear model on the same windows beats the mean, but the LSTM's gradient fades "
            "within a few steps of the window's end, so the early steps that carry the signal "
            "never shape the weights.",
            f"ridge regression on the flattened windows: held-out MSE {linear_ratio:.2f} x "
            f"the mean baseline (signal present below {LINEAR_SIGNAL:g}); the LSTM: {measured}",
            "Initialise the forget-gate bias to 1 (unit_forget_bias=True) or use chrono "
            "initialisation for long lags; raise the learning rate or add warmup; shorten the "
            "window to the lags that matter.",
            0.75,
        )
    else:
        cause = Finding(
            "no_signal",
            "Nothing to learn: the inputs do not predict the targets",
            "Neither the trained LSTM nor a linear model beats the mean on held-out windows, "
            "and no data, training or capacity problem was found; when the targets carry no "
            "signal, predicting the mean is the correct answer.",
            f"ridge regression on the flattened windows: held-out MSE {linear_ratio:.2f} x the "
            f"mean baseline; the LSTM: {measured}",
            "Check that targets are aligned with their inputs (the target of a window ending "
            "at t is at t+1..t+horizon), add informative features, or accept the mean forecast.",
            0.6,
        )
    return [cause, symptom]


def _history_dict(history) -> tuple[dict, dict]:
    if history is None:
        return {}, {}
    if isinstance(history, dict):
        return history, {}
    return dict(history.history), dict(getattr(history, "params", {}) or {})


def diagnose(
    history=None,
    *,
    logdir: str | None = None,
    model: keras.Model | None = None,
    data=None,
    validation_data=None,
    loss="mse",
    check_data_first: bool = True,
    overfit_check: bool = True,
) -> list[Finding]:
    """Diagnoses a finished run and/or a model on its data; returns ranked findings.

    What runs depends on what is given:

    - `history` (a `lstmcore.History` or its `.history` dict) or `logdir` (a run directory or
      a parent of runs; event files are read): whether the weights could move
      (`check_updates`); probe scalars logged during training (`probe/...`) feed the collapse
      check when no model is given.
    - `data` (`(inputs, targets)` or a `WindowedData`): `check_data` on the training windows.
    - `model` with `data`: the model checks of `check_data`, and `check_fit` on held-out
      windows (`validation_data`, the WindowedData's validation split, or the last quarter of
      the training windows).

    Args:
      history: a `History` (or dict of per-step arrays) from `lstmcore.train`.
      logdir: read the run from its TensorBoard event files instead of `history`.
      model: the trained Keras model.
      data: training data, `(inputs [N, T, F], targets [N, ...])` or a `WindowedData`.
      validation_data: `(inputs, targets)` held-out windows.
      loss: the loss the model was trained with (name or callable).
      check_data_first: include the data checks.
      overfit_check: include the capacity check (trains a copy for a few seconds).

    Returns:
      Findings, highest score first; empty when no problem was found.

    Raises:
      ValueError: when nothing to diagnose is given, or `logdir` holds no run.
    """
    if history is None and logdir is None and data is None:
        raise ValueError("diagnose needs a history, a logdir or data; got none of them")
    run, params = _history_dict(history)
    logged_probes = {}
    if logdir is not None:
        run_from_file, params_from_file, logged_probes = _history_from_run(find_run_dir(logdir))
        run = run or run_from_file
        params = params or params_from_file
    found = check_updates(run, params) if run else []
    tx, ty, vx, vy, windowed = _unpack(data)
    if validation_data is not None:
        vx, vy = validation_data
    if tx is not None and check_data_first:
        found += check_data(
            tx,
            ty,
            windowed=windowed,
            validation_inputs=vx,
            model=model,
            loss=loss,
            overfit_check=overfit_check and not found,
        )
    causes = [f.code for f in found if f.code in CAUSES and f.score >= 0.5]
    if model is not None and tx is not None and ty is not None:
        held = _held_out(tx, ty, vx, vy)
        # A spread and a linear fit need two windows on each side (too_little_data says why).
        if min(len(held[0]), len(held[2])) >= 2:
            found += check_fit(
                model, (held[0], held[1]), (held[2], held[3]), loss, found_causes=causes
            )
    elif logged_probes:
        found += _check_logged_probes(logged_probes, causes)
    return rank(found)


def _check_logged_probes(values: dict, causes) -> list[Finding]:
    ratio = values.get("loss_to_mean_baseline")
    spread = values.get("prediction_std_ratio")
    if ratio is None or spread is None or not (spread < COLLAPSE_STD_RATIO and ratio >= 0.9):
        return []
    return [
        Finding(
            "collapsed_predictions",
            "Predictions collapsed to (nearly) one value",
            "This is the symptom; the findings ranked above it are its likely causes. Without "
            "the model and data only the logged probes can be checked: run diagnose(model=..., "
            "data=...) for the data, capacity and signal checks.",
            f"last logged probes: loss {ratio:.2f} x the mean baseline, prediction std "
            f"{spread:.3f} x target std.",
            "Fix the causes ranked above." if causes else "Run diagnose with model and data.",
            0.4,
        )
    ]
