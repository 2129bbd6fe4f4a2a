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

from lstmcore import baselines as baselines_lib
from lstmcore import interventions as interventions_lib
from lstmcore import optimizers as optimizers_lib
from lstmcore import probes as probes_lib
from lstmcore import runs as runs_lib
from lstmcore import setup_checks as setup_lib
from lstmcore import writer as writer_lib
from lstmcore.errors import DataError

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
SMALL_UNITS = 8  # an LSTM with fewer units is a capacity suspect when the model fails
UNDERSIZED_RATIO = 0.5  # ...and its held-out loss is at least half the mean's
DEFAULT_BUDGET = 0.2  # trials share a fifth of the run's steps (each 40..300 steps)

# Scores: a confirmed cause above a structural one of the same kind's evidence, a suspected
# cause above the symptom, no_signal above the suspects it rules out.
CONFIRMED_SCORE = 0.9
NO_SIGNAL_SCORE = 0.6
SUSPECTED_SCORE = 0.55
SYMPTOM_SCORE = 0.4

# Optimizers whose step moves each weight by about the learning rate at most. Adaptivity is
# decided from the optimizer's class where one is known (`is_adaptive`: lstmcore's fused Adam
# and AdamW, and optimizers users register in `lstmcore.optimizers.OPTIMIZERS`, subclass
# these); the names are the fallback for a name that resolves to no class.
ADAPTIVE_OPTIMIZERS = ("adam", "adamw", "rmsprop", "nadam", "adagrad", "adamax", "lion")
ADAPTIVE_OPTIMIZER_CLASSES = (
    keras.optimizers.Adam,  # AdamW and lstmcore.optimizers.Adam / AdamW subclass it
    keras.optimizers.RMSprop,
    keras.optimizers.Nadam,
    keras.optimizers.Adagrad,
    keras.optimizers.Adamax,
    keras.optimizers.Lion,
)
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
    "learning_rate_too_high",
    "distribution_shift",
    "worse_than_persistence",
    "no_signal",
    "signal_not_learned",
    *setup_lib.KINDS.names(),
)
# Leaks: the held-out windows (or the model) see what they should not; no trial is scored.
LEAKS = (
    "target_in_inputs",
    "lookahead_leak",
    "batch_leak",
    "window_overlap",
    "scaler_not_train_only",
)
# Causes found by a structural check (data, run configuration), not by trying a fix.
STRUCTURAL_CAUSES = (
    "nonfinite_data",
    "unnormalised_inputs",
    *LEAKS,
    "learning_rate_too_low",
    "too_little_data",
    "unnormalised_targets",
    "constant_feature",
    *setup_lib.STRUCTURAL_CODES,
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
      confirmed: True when the fix was tried on a copy and clearly beat the unchanged copy,
        False when it was tried and did not, None when it was not tried (structural checks).
      strength: how strongly the evidence points at this cause (the loss reduction its fix
        gave, or the size of the measured effect); breaks ties between equal scores.
    """

    code: str
    title: str
    cause: str
    evidence: str
    fix: str
    score: float
    confirmed: bool | None = None
    strength: float = 0.0

    @property
    def severity(self) -> str:
        """ "high" (score >= 0.8), "medium" (>= 0.5) or "low"."""
        return "high" if self.score >= 0.8 else "medium" if self.score >= 0.5 else "low"

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "severity": self.severity}


def rank(findings: list[Finding]) -> list[Finding]:
    """Findings sorted by score, highest first; one finding per code (the highest).

    Equal scores are ordered by `strength` (the measured size of the effect), then by code,
    never by the order the checks ran in.
    """
    best: dict[str, Finding] = {}
    for finding in findings:
        if finding.code not in best or finding.score > best[finding.code].score:
            best[finding.code] = finding
    return sorted(best.values(), key=lambda f: (-f.score, -f.strength, f.code))


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
    inputs,
    targets,
    *,
    last_steps: int | None = 1,
    feature_names=None,
    max_samples: int = 2000,
    per_step: bool | None = None,
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
      per_step: targets are one per input step (`[N, T, K]`, a sequence-to-sequence model);
        None decides from the shapes. Then every step is checked, and the target of step `t`
        is leaked only by an input at a step up to `t`: the next value as the target of step
        `t` is the standard causal setup, not a leak (a model that reads later steps is
        caught by `check_lookahead`).

    Returns:
      A `target_in_inputs` finding, or nothing.
    """
    raw_targets = np.asarray(targets)
    if per_step is None:
        per_step = raw_targets.ndim == 3 and raw_targets.shape[1] == np.shape(inputs)[1]
    if per_step:
        last_steps = None
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
    leaked = np.abs(corr) >= LEAK_CORRELATION
    if per_step:
        target_step = np.arange(y.shape[1]) // max(y.shape[1] // steps, 1)
        input_step = np.arange(steps * features) // features + first_step
        leaked &= input_step[:, None] <= target_step[None, :]
    hits = np.argwhere(leaked)
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
    y = probes_lib.targets_like(
        np.asarray(targets, np.float32)[:samples], model(x[:1], training=False).shape
    )
    baseline = probes_lib.baseline_loss(y, fn)
    if baseline <= 0 or len(x) < 2:
        return []
    replica = interventions_lib.copy_model(model, sample_input=x)
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
    reconstruction = y is not None and setup_lib.is_reconstruction(x, y)
    if y is not None and not reconstruction:
        # A target equal to the input window is an autoencoder's, by design: not a leak.
        raw = np.asarray(targets)
        found += check_target_in_inputs(
            x,
            y,
            last_steps=None if windowed is not None else 1,
            feature_names=feature_names,
            per_step=raw.ndim == 3 and raw.shape[1] == x.shape[1],
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
        check_model_on_data(model, x, y)
        if y is not None:
            found += _guard(
                "output head and loss", setup_lib.check_before_training, model, x, y, loss
            )
        parameters = int(sum(np.prod(v.shape) for v in model.trainable_variables))
        found += check_data_size(len(x), parameters)
        found = _add_saturation_evidence(found, model, x, y, loss)
        # An autoencoder reads the whole window to give it back: its outputs depending on
        # later steps is the design, not a look-ahead leak (a batch leak still is one).
        found += [
            f
            for f in check_lookahead(model, x)
            if not (reconstruction and f.code == "lookahead_leak")
        ]
        if y is not None:
            found += check_initial_loss(model, x, y, loss)
            if overfit_check and not any(f.score >= 0.8 for f in found):
                found += check_capacity(model, x, y, loss)
    else:
        found += check_data_size(len(x), 0)
    return rank(found)


def check_model_on_data(model, inputs, targets) -> None:
    """Raises `train`'s own clear ValueError when the model does not fit the data's shapes.

    Input steps and features against the model's declared input, a call on two samples, one
    output tensor, and predictions shaped like the targets (`lstmcore.keras.check_model_on_data`).
    """
    from lstmcore.keras import check_model_on_data as check_shapes

    x = np.asarray(inputs, np.float32)
    if targets is None:
        model(x[:1])
        return
    y = np.asarray(targets, np.float32)
    check_shapes(
        model, (x[:2], y[:2].reshape(len(y[:2]), *model_output_tail(model, x, y))), name="data"
    )


def model_output_tail(model, x, y):
    # Targets arrive flattened to [N, K] here; give them back the model's per-sample shape when
    # the sizes agree, so that only a real mismatch is reported.
    with_shape = getattr(model, "output_shape", None)
    if (
        isinstance(with_shape, tuple)
        and all(d is not None for d in with_shape[1:])
        and int(np.prod(with_shape[1:])) == int(np.prod(y.shape[1:]))
    ):
        return tuple(with_shape[1:])
    return tuple(y.shape[1:])


def _add_saturation_evidence(found, model, x, y, loss):
    if (
        y is None
        or not any(f.code == "unnormalised_inputs" for f in found)
        or probes_lib.find_lstm(model) is None
    ):
        return found  # the probes cost a trace and a pass; only this finding uses them
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
      DataError: when no event files are found.
    """
    if glob.glob(os.path.join(glob.escape(logdir), "events.out.tfevents.*")):
        return logdir
    runs = [
        d
        for d in glob.glob(os.path.join(glob.escape(logdir), "*"))
        if glob.glob(os.path.join(glob.escape(d), "events.out.tfevents.*"))
    ]
    if not runs:
        raise DataError(
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
    from lstmcore import schema  # the per-step tags, defined once

    for key, tag in schema.per_step_tags():
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


def is_adaptive(optimizer) -> bool:
    """Whether `optimizer` moves each weight by about the learning rate at most (Adam-like).

    Args:
        optimizer: a Keras optimizer or optimizer class, or a name: one registered in
            `lstmcore.optimizers.OPTIMIZERS` (its factory's class, or the class of what the
            factory returns, decides) or a Keras class name such as "Adam" (as the Keras
            callback records it); otherwise the name is looked up in `ADAPTIVE_OPTIMIZERS`.
    """
    if isinstance(optimizer, keras.optimizers.Optimizer):
        return isinstance(optimizer, ADAPTIVE_OPTIMIZER_CLASSES)
    if isinstance(optimizer, type):
        return issubclass(optimizer, ADAPTIVE_OPTIMIZER_CLASSES)
    name = str(optimizer)
    if name in optimizers_lib.OPTIMIZERS:
        factory = optimizers_lib.OPTIMIZERS.get(name)
        if isinstance(factory, type):
            return issubclass(factory, ADAPTIVE_OPTIMIZER_CLASSES)
        try:
            made = factory(1e-3)
        except Exception:  # noqa: BLE001 - a factory that needs more falls back to the name
            made = None
        if isinstance(made, keras.optimizers.Optimizer):
            return isinstance(made, ADAPTIVE_OPTIMIZER_CLASSES)
    return name.lower() in ADAPTIVE_OPTIMIZERS


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
    if is_adaptive(params.get("optimizer", "adam")):
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


def random_features_baseline(
    train_x, train_y, test_x, test_y, *, features: int = 512, l2: float = 1e-2, seed: int = 0
) -> float:
    """Held-out MSE of a nonlinear learner: ridge on random ReLU features of the flattened window.

    `z = relu(a W + b)` with `W ~ N(0, 1 / d)` on the standardised flattened windows `a`
    (`d = T * F`, at most the last 2048 values), then ridge regression from `z` to the targets.
    It needs no training loop and catches products and thresholds a linear model misses.

    Args:
      train_x, test_x: `[N, T, F]` windows.
      train_y, test_y: `[N, K]` targets.
      features: random features.
      l2: ridge penalty relative to the number of training samples.
      seed: draw of the random projection.

    Returns:
      The mean squared error on `test_x`, `test_y`.

    References:
      Rahimi and Recht, "Random features for large-scale kernel machines", NIPS 2007.
    """
    a = np.asarray(train_x, np.float64).reshape(len(train_x), -1)[:, -2048:]
    b = np.asarray(test_x, np.float64).reshape(len(test_x), -1)[:, -2048:]
    mu, sd = a.mean(axis=0), a.std(axis=0) + 1e-12
    a, b = (a - mu) / sd, (b - mu) / sd
    rng = np.random.default_rng(seed)
    weights = rng.normal(0.0, 1.0 / math.sqrt(a.shape[1]), size=(a.shape[1], features))
    offset = rng.uniform(-1.0, 1.0, size=features)
    za, zb = np.maximum(a @ weights + offset, 0), np.maximum(b @ weights + offset, 0)
    return ridge_baseline(za[:, :, None], train_y, zb[:, :, None], test_y, l2=l2)


def _held_out(tx, ty, vx, vy):
    if vx is not None and len(vx) >= 10:
        return tx, ty, vx, vy
    cut = int(len(tx) * 0.75)
    return tx[:cut], ty[:cut], tx[cut:], ty[cut:]


def _number(value, spec: str = ".3g") -> str:
    """A number for evidence text; "n/a" for NaN, "inf" for infinity (never "nan")."""
    value = float(value)
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return format(value, spec)


def check_failed(check: str, error: BaseException | str) -> Finding:
    """The finding for a check that could not run: its name and the reason, never a crash."""
    reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return Finding(
        "check_failed",
        f"A diagnosis check could not run: {check}",
        "The diagnosis skips a check it cannot run rather than stop; its question stays open.",
        f"{check}: {str(reason)[:400]}",
        "Read the reason; if it names the data or model, fix that and run diagnose again.",
        0.3,
    )


def _guard(check: str, function, *args, **kwargs) -> list[Finding]:
    try:
        return list(function(*args, **kwargs))
    except Exception as error:  # noqa: BLE001 - a failing check becomes a finding
        return [check_failed(check, error)]


def check_instability(history: dict) -> Finding | None:
    """A learning rate too high: the loss rose, oscillated or went non-finite (suspected only).

    From the per-step arrays of a run: non-finite steps that were skipped; the mean loss of
    the last tenth of the steps above twice the best tenth's (the loss went back up); the
    median step-to-step change of the loss above a factor of 2.5 in the second half
    (oscillation); the global gradient norm in the second half at 10x or more its first
    steps' and clipped on most steps (exploding gradients).

    Returns:
      A `learning_rate_too_high` finding (not yet confirmed), or None.
    """
    losses = np.asarray(history.get("loss", []), np.float64)
    if losses.size < 20:
        return None
    finite = losses[np.isfinite(losses)]
    reasons = []
    skipped = np.asarray(history.get("skipped", []), np.float64)
    if skipped.size and skipped.sum() > 0 or finite.size < losses.size:
        reasons.append(
            f"{int(max(skipped.sum() if skipped.size else 0, losses.size - finite.size))} "
            "non-finite step(s)"
        )
    if finite.size >= 20:
        blocks = np.array([b.mean() for b in np.array_split(finite, 10)])
        if blocks[-1] > 2.0 * blocks.min() and blocks.min() < blocks[0]:
            reasons.append(
                f"the loss went back up: last tenth {_number(blocks[-1], '.4g')} vs best tenth "
                f"{_number(blocks.min(), '.4g')}"
            )
        half = finite[finite.size // 2 :]
        positive = half[half > 0]
        if positive.size > 10:
            jumps = np.abs(np.diff(np.log(positive)))
            if np.median(jumps) > math.log(2.5):
                reasons.append(
                    f"the loss oscillates: median step-to-step change x{math.exp(np.median(jumps)):.1f} "
                    f"in the second half (between {_number(np.percentile(half, 5), '.3g')} and "
                    f"{_number(np.percentile(half, 95), '.3g')})"
                )
    norms = np.asarray(history.get("grad_norm_before_clip", []), np.float64)
    clipped = np.asarray(history.get("clipped", []), np.float64)
    if norms.size >= 20 and np.isfinite(norms).any():
        early = np.nanmedian(norms[: max(5, norms.size // 20)])
        late = np.nanmedian(norms[norms.size // 2 :])
        if early > 0 and late > 10 * early and clipped.size and clipped.mean() > 0.5:
            reasons.append(
                f"gradient norm grew from {_number(early)} to {_number(late)} (median), "
                f"clipped on {clipped.mean():.0%} of steps"
            )
    if not reasons:
        return None
    lr = np.asarray(history.get("learning_rate", []), np.float64)
    rate = f" at learning rate {_number(lr.max())}" if lr.size else ""
    return Finding(
        "learning_rate_too_high",
        "The learning rate is too high (unstable or exploding training)",
        "Steps that are too large overshoot: the loss jumps around instead of descending and "
        "the weights settle where the output barely depends on the input.",
        f"training{rate}: " + "; ".join(reasons) + ".",
        "Lower the learning rate tenfold (lstmcore.train(..., learning_rate=...)), keep "
        "clip_norm=1.0 and add warmup_steps.",
        SUSPECTED_SCORE,
        confirmed=None,
        strength=0.0,
    )


def check_shift(train_targets, held_out_targets) -> Finding | None:
    """Held-out targets outside the training range, or their level moved (suspected only).

    Flagged when more than a quarter of the held-out target values fall outside
    `[min, max]` of the training targets, or their mean lies more than 1.5 training standard
    deviations from the training mean.
    """
    ty = np.asarray(train_targets, np.float64).reshape(len(train_targets), -1)
    vy = np.asarray(held_out_targets, np.float64).reshape(len(held_out_targets), -1)
    if len(ty) < 10 or len(vy) < 10:
        return None
    low, high = ty.min(axis=0), ty.max(axis=0)
    outside = float(np.mean((vy < low) | (vy > high)))
    sd = ty.std(axis=0)
    moved = np.abs(vy.mean(axis=0) - ty.mean(axis=0)) / np.where(sd > 0, sd, np.inf)
    moved = float(moved.max())
    if outside <= 0.25 and moved <= 1.5:
        return None
    return Finding(
        "distribution_shift",
        "The held-out targets lie outside what training saw (distribution shift)",
        "A model trained on one level of the series meets values it never saw: its saturated "
        "gates and output layer cannot extrapolate, so it predicts the edge of the training "
        "range.",
        f"{outside:.0%} of held-out target values lie outside the training range "
        f"[{_number(low.min(), '.4g')}, {_number(high.max(), '.4g')}]; the held-out mean is "
        f"{moved:.2f} training standard deviations from the training mean.",
        "Predict the change from the last value: lstmcore.models.forecaster(..., "
        "target_mode='change', target_features=[...]) or `lstmcore train --target-mode change`; "
        "or difference the series before windowing.",
        SUSPECTED_SCORE,
        strength=min(outside + moved, 10.0),
    )


def infer_target_features(inputs, targets, data_report=None) -> tuple[list[int] | None, int]:
    """Where each target column sits among the input features, and the horizon.

    From the data report when given (`lstmcore.data.WindowedData.to_dict()`); otherwise, for
    one-column targets, the feature whose last value in window `i + 1` equals window `i`'s
    target for at least 90% of consecutive windows (a series cut into stride-1 windows).
    """
    if data_report:
        features = baselines_lib.target_feature_indices(data_report)
        return features, int(data_report.get("horizon") or 1)
    x = np.asarray(inputs, np.float64)
    y = np.asarray(targets, np.float64).reshape(len(targets), -1)
    if y.shape[1] != 1 or len(x) < 10:
        return None, 1
    scale = np.abs(y).max() + 1e-12
    for f in range(x.shape[-1]):
        same = np.abs(x[1:, -1, f] - y[:-1, 0]) <= 1e-5 * scale
        if same.mean() >= 0.9:
            return [f], 1
    return None, 1


def _persistence_loss(fn, vx, vy, features, horizon) -> float | None:
    if not features or int(np.prod(vy.shape[1:])) != horizon * len(features):
        return None
    last = np.tile(vx[:, -1, features], (1, horizon)).astype(np.float32)
    return float(probes_lib.mean_loss(fn, tf.constant(vy), tf.constant(last.reshape(vy.shape))))


def _trial_setting(params: dict, model) -> interventions_lib.Setting:
    optimizer = str(params.get("optimizer", "adam")).lower()
    if optimizer not in ("adam", "adamw", "sgd", "rmsprop", "nadam", "adagrad", "adamax", "lion"):
        optimizer = "adam"
    rate = params.get("learning_rate")
    rate = float(rate) if isinstance(rate, (int, float)) and rate > 0 else 1e-3
    clip_norm = params.get("clip_norm", 1.0) if params.get("clip", "global_norm") else None
    return interventions_lib.Setting(
        learning_rate=rate,
        optimizer=optimizer,
        clip_norm=float(clip_norm) if clip_norm else None,
        batch_size=int(params.get("batch_size") or 32),
    )


def _trial_steps(budget, run_steps: int, trials: int) -> int:
    if isinstance(budget, bool):
        raise ValueError(  # noqa: TRY004 - a ValueError like every other argument error
            f"budget must be a fraction in (0, 1] or a number of steps; got {budget!r}"
        )
    if budget is None:
        budget = DEFAULT_BUDGET
    if isinstance(budget, float) and 0 < budget <= 1:
        if not run_steps:
            return interventions_lib.TRIAL_STEPS
        steps = int(budget * run_steps / max(trials, 1))
        return int(
            np.clip(steps, interventions_lib.TRIAL_MIN_STEPS, interventions_lib.TRIAL_MAX_STEPS)
        )
    if isinstance(budget, (int, float)) and budget >= 0 and float(budget).is_integer():
        return int(budget)
    raise ValueError(
        f"budget must be a fraction of the run's steps in (0, 1] or a whole number of steps per "
        f"trial (0: try no fix); got {budget!r}"
    )


# Each kind's wording when its fix confirmed it (title, fix), with {fix} from the trial.
_CONFIRMED = {
    "vanishing_gradients": (
        "The signal is in the data but the gradient does not reach it (vanishing gradients)",
        (
            "Chrono initialisation with clipping and warmup: keras.layers.LSTM(units, "
            "unit_forget_bias=False, bias_initializer=lstmcore.initializers.Chrono(max_lag={steps})) "
            "and lstmcore.train(..., clip='global_norm', clip_norm=1.0, warmup_steps=<10% of the "
            "steps>); train for several thousand steps on long windows."
        ),
        (
            "The LSTM's gradient fades within a few steps of the window's end, so the early steps "
            "that carry the signal never shape the weights; a fresh copy whose forget gates start "
            "open (chrono) learns where the unchanged copy does not."
        ),
    ),
    "too_little_capacity": (
        "The model is too small for the signal (capacity)",
        (
            "Use more units: keras.layers.LSTM(units={units4}) (4x), or models.forecaster("
            "units={units4})."
        ),
        "A copy with four times the LSTM units learns what this one cannot.",
    ),
    "learning_rate_too_high": (
        "The learning rate is too high (unstable or exploding training)",
        (
            "lstmcore.train(..., learning_rate={rate10}) (a tenth), keep clip_norm=1.0, and add "
            "warmup_steps."
        ),
        (
            "Steps that are too large overshoot; the same copy with a tenth of the learning rate "
            "descends."
        ),
    ),
    "learning_rate_too_low": (
        "The learning rate is too small to change the weights",
        "lstmcore.train(..., learning_rate={rate_up}).",
        "The weights barely moved; the same copy with a larger learning rate learns.",
    ),
    "distribution_shift": (
        "The held-out targets lie outside what training saw (distribution shift)",
        (
            "Predict the change from the last value: lstmcore.models.forecaster(..., "
            "target_mode='change', target_features={features}) or `lstmcore train --target-mode "
            "change`."
        ),
        (
            "A model trained on one level of the series cannot extrapolate to another; predicting "
            "the change from the last value is level-free."
        ),
    ),
    "worse_than_persistence": (
        "The model forecasts worse than repeating the last value (persistence)",
        (
            "Predict the change from the last value: lstmcore.models.forecaster(..., "
            "target_mode='change', target_features={features}) or `lstmcore train --target-mode "
            "change`; or use persistence itself."
        ),
        (
            "The naive forecast 'next = last' beats the model on held-out windows; a copy that "
            "predicts the change from the last value does better."
        ),
    ),
    "unnormalised_targets": (
        "Targets are not normalised",
        (
            "Scale the targets with training-split statistics and map predictions back "
            "(WindowedData.inverse_transform_targets), or lstmcore.data.windows(..., "
            "normalize='train')."
        ),
        (
            "With targets far from unit scale the output layer must first learn a large bias and "
            "gain; a copy that learns standardised targets does better."
        ),
    ),
    "unnormalised_inputs": (
        "Inputs are not normalised",
        (
            "Standardise every feature with mean and std from the training split only: "
            "lstmcore.data.windows(series, ..., normalize='train'), or "
            "lstmcore.data.fit_scaler(train_rows).transform(values)."
        ),
        "Large inputs saturate the gates; a copy fed standardised inputs learns.",
    ),
}


def _suspected(code: str, evidence: str, context: dict) -> Finding:
    title, fix, cause = _CONFIRMED[code]
    return Finding(
        code,
        title + " (suspected)",
        cause,
        evidence,
        fix.format(**context),
        SUSPECTED_SCORE,
        confirmed=None,
    )


def check_fit(
    model,
    train,
    held_out,
    loss="mse",
    *,
    found=(),
    history: dict | None = None,
    params: dict | None = None,
    data_report: dict | None = None,
    budget=None,
) -> list[Finding]:
    """Whether the model beats the naive forecasts on held-out windows, and why not.

    Symptoms: `collapsed_predictions` or `no_better_than_mean` (against the training mean),
    `worse_than_persistence` (against the last observed value, when the target is an input).
    When there is one, each suspected cause is tried on a copy (`lstmcore.interventions`):
    the unchanged copy and one copy per fix train for the same number of steps; a fix that
    clearly beats the unchanged copy confirms its cause. `no_signal` needs every learner to
    fail: the trained LSTM, every copy tried, a linear model and a random-feature model.

    Args:
      model: the trained model.
      train: `(inputs, targets)` training windows.
      held_out: `(inputs, targets)` held-out windows.
      loss: a Keras loss name or callable.
      found: findings already made (data checks, run checks); causes among them are tried.
      history: the run's per-step arrays (for the instability check and the budget).
      params: the run's configuration (optimizer, learning rate, clipping, batch size).
      data_report: `WindowedData.to_dict()`, for where the target sits among the inputs.
      budget: trial budget (see `diagnose`).

    Returns:
      Findings for `found`'s causes (confirmed or demoted to suspected) and the new ones.
    """
    history, params = history or {}, params or {}
    fn = probes_lib.as_loss_fn(loss)
    tx, ty = (np.asarray(a, np.float32) for a in train)
    vx, vy = (np.asarray(a, np.float32) for a in held_out)
    ty, vy = ty.reshape(len(ty), -1), vy.reshape(len(vy), -1)
    # First the cheap look (predictions only): a healthy run stops here.
    scored_x, scored_y = vx[:1024], vy[:1024]
    predictions = baselines_lib.model_predictions(model, scored_x, keep_shape=True)
    # Losses see the targets in the model's own layout ([N, T * C] -> [N, T, C]); the
    # statistics below keep them flat, one column per output value.
    output_shape = predictions.shape

    def shaped(values):
        return probes_lib.targets_like(values, output_shape).astype(np.float32)

    model_loss_all = float(
        probes_lib.mean_loss(fn, tf.constant(shaped(scored_y)), tf.constant(predictions))
    )
    mean_loss_all = probes_lib.baseline_loss(shaped(scored_y), fn, constant=shaped(ty).mean(axis=0))
    ratio = model_loss_all / mean_loss_all if mean_loss_all > 0 else math.inf
    target_std = float(scored_y.std())
    spread = float(predictions.std(axis=0).mean()) / target_std if target_std > 0 else math.nan
    steps = tx.shape[1]
    features, forecast_horizon = infer_target_features(tx, ty, data_report)
    persistence = _persistence_loss(fn, scored_x, shaped(scored_y), features, forecast_horizon)
    persistence_ratio = (
        model_loss_all / persistence if persistence is not None and persistence > 0 else None
    )
    collapsed = bool(np.isfinite(spread) and spread < COLLAPSE_STD_RATIO and ratio >= 0.9)
    no_better = ratio >= NO_BETTER_THAN_MEAN
    loses_to_persistence = persistence_ratio is not None and persistence_ratio >= 1.0
    units = [int(layer.cell.units) for layer in interventions_lib.recurrent_layers(model)]
    # A tiny LSTM that only half-fits is worth one trial with more units.
    undersized = bool(units) and min(units) < SMALL_UNITS and ratio >= UNDERSIZED_RATIO
    try:
        class_scores = setup_lib.classification_scores(
            model,
            scored_x,
            shaped(scored_y),
            loss,
            train_targets=shaped(ty),
            predictions=predictions,
        )
    except Exception:  # noqa: BLE001 - no class reading: the regression checks still run
        class_scores = None
    class_collapsed = bool(class_scores and class_scores["collapsed"])
    setup_found = [f for f in found if f.code in setup_lib.STRUCTURAL_CODES]
    if (
        not (collapsed or no_better or loses_to_persistence or undersized or class_collapsed)
        and not setup_found
    ):
        return list(found)
    values = probes_lib.make_probes(
        model, vx[: PROBE_SAMPLES * 4], vy[: PROBE_SAMPLES * 4], loss, train_targets=ty
    )()
    horizon = values["memory_horizon"]
    lstm = probes_lib.find_lstm(model)
    gates = ""
    if lstm is not None and f"{lstm.name}/forget_gate_mean" in values:
        gates = (
            f" First LSTM: mean forget gate {_number(values[f'{lstm.name}/forget_gate_mean'], '.2f')} "
            f"(memory time scale {_number(values[f'{lstm.name}/memory_time_scale'], '.1f')} "
            f"steps), dead units {_number(100 * values[f'{lstm.name}/dead_units'], '.0f')}%."
        )
    measured = (
        f"held-out loss {_number(model_loss_all, '.4g')} = {_number(ratio, '.2f')} x the loss of "
        f"predicting the training mean ({_number(mean_loss_all, '.4g')})"
        + (
            f", {_number(persistence_ratio, '.2f')} x persistence ({_number(persistence, '.4g')})"
            if persistence_ratio is not None
            else ""
        )
        + f"; prediction std = {_number(spread)} x target std; memory horizon "
        f"{_number(horizon, '.0f')} of {steps} steps.{gates}"
    )
    out = [f for f in found]
    codes = {f.code for f in found}
    if class_collapsed:
        out.append(setup_lib.class_collapse_finding(class_scores, SYMPTOM_SCORE))
    elif collapsed:
        out.append(
            Finding(
                "collapsed_predictions",
                "Predictions collapsed to (nearly) one value",
                "This is the symptom; the findings ranked above it are its likely causes.",
                measured,
                "Fix the cause ranked first.",
                SYMPTOM_SCORE,
            )
        )
    elif no_better:
        out.append(
            Finding(
                "no_better_than_mean",
                "The model does no better than predicting the mean",
                "This is the symptom; the findings ranked above it are its likely causes.",
                measured,
                "Fix the cause ranked first.",
                SYMPTOM_SCORE,
            )
        )

    if any(f.code in LEAKS for f in found):
        # Held-out losses mean little when the splits leak; the leak is the finding to fix.
        return out

    # Suspects, each with the evidence that raised it.
    suspects: dict[str, str] = {}
    for f in found:
        if f.code in ("unnormalised_inputs", "unnormalised_targets", "learning_rate_too_low"):
            suspects[f.code] = f.evidence
    unstable = check_instability(history)
    if unstable is not None:
        suspects["learning_rate_too_high"] = unstable.evidence
    mean_units = units
    if (no_better or collapsed) and steps >= 8 and horizon < SHORT_HORIZON * steps:
        suspects["vanishing_gradients"] = (
            f"the LSTM's input gradient fades within {_number(horizon, '.0f')} of {steps} steps "
            f"(below a quarter of the window).{gates}"
        )
    if undersized:
        suspects["too_little_capacity"] = (
            f"the smallest LSTM has {min(units)} units (below {SMALL_UNITS}) and the model's "
            f"held-out loss is {_number(ratio, '.2f')} x the mean's."
        )
    shift = check_shift(ty, vy)
    if shift is not None:
        suspects["distribution_shift"] = shift.evidence
    # The user's own setup (head, cell activation, training length, classes, window).
    setup_suspects = [
        setup_lib.Suspect(setup_lib.KINDS.get(f.code)(), f.evidence, {}, base=f)
        for f in setup_found
    ]
    if no_better or collapsed or class_collapsed or loses_to_persistence:
        setup_suspects += setup_lib.suspects_after_fit(
            model,
            loss,
            (tx, shaped(ty)),
            (vx, shaped(vy)),
            history=history,
            found_codes=codes,
            class_scores=class_scores,
            steps_per_window=steps,
        )
    if loses_to_persistence:
        evidence = (
            f"held-out loss {_number(model_loss_all, '.4g')} = {_number(persistence_ratio, '.2f')} "
            f"x the loss of repeating the last value ({_number(persistence, '.4g')})."
        )
        other_causes = (
            [f for f in found if f.code in STRUCTURAL_CAUSES and f.score >= 0.5]
            or [code for code in suspects if code != "worse_than_persistence"]
            or setup_suspects
        )
        if no_better or collapsed or other_causes:
            # A model that does not even beat the mean, or one with a cause of its own: losing
            # to persistence is then one more symptom, and the change target is not the fix.
            out.append(
                Finding(
                    "worse_than_persistence",
                    "The model forecasts worse than repeating the last value (persistence)",
                    "A symptom here: a cause is listed above it, or the model does not beat "
                    "the mean either; the cause ranked first explains both.",
                    evidence,
                    "Fix the cause ranked first; until then, persistence is the better forecast.",
                    SYMPTOM_SCORE + 0.05,
                )
            )
        else:
            suspects["worse_than_persistence"] = evidence
    context = {
        "steps": steps,
        "units4": 4 * min(mean_units) if mean_units else 64,
        "rate10": _number(_trial_setting(params, model).learning_rate / 10),
        "rate_up": _number(max(_trial_setting(params, model).learning_rate * 10, 1e-3)),
        "features": features if features else "[index of the target column]",
    }

    # Try each suspect's fix on a copy; the control is the trained model on the same windows.
    mean_loss = float(mean_loss_all)
    trials: dict[str, interventions_lib.Trial] = {}
    tried = [code for code in suspects if code in interventions_lib.FIXES]
    if "distribution_shift" in tried and "worse_than_persistence" in tried:
        tried.remove("worse_than_persistence")  # one fix, one trial
    run_steps = int(np.asarray(history.get("loss", [])).size)
    trial_count = len(tried) + len(setup_suspects)
    trial_steps = _trial_steps(budget, run_steps, trial_count) if trial_count else 0
    failures: list[Finding] = []
    held_trial = (
        vx[: interventions_lib.TRIAL_HELD_OUT_WINDOWS],
        shaped(vy[: interventions_lib.TRIAL_HELD_OUT_WINDOWS]),
    )
    control_loss = float(
        probes_lib.mean_loss(
            fn,
            tf.constant(held_trial[1]),
            tf.constant(baselines_lib.model_predictions(model, held_trial[0], keep_shape=True)),
        )
    )
    context_trial = None
    if trial_count and trial_steps > 0:
        rng = np.random.default_rng(0)
        sample = np.sort(rng.permutation(len(tx))[: interventions_lib.TRIAL_TRAIN_WINDOWS])
        context_trial = interventions_lib.Context(
            model=model,
            train=(tx[sample], shaped(ty[sample])),
            held_out=held_trial,
            setting=_trial_setting(params, model),
            steps=trial_steps,
            target_features=features,
            horizon=forecast_horizon,
        )
        for code in tried:
            try:
                fix = interventions_lib.FIXES[code](context_trial)
                trials[code] = interventions_lib.train_fix(fix, fn, trial_steps)
            except Exception as error:  # noqa: BLE001 - a fix that cannot be tried is said
                failures.append(check_failed(f"trying the fix for {code} on a copy", error))
    if "distribution_shift" in trials and "worse_than_persistence" in suspects:
        trials["worse_than_persistence"] = trials["distribution_shift"]
    setup_findings = []
    for suspect in setup_suspects:
        finding, error = _try_setup_fix(
            suspect, context_trial, loss, control_loss, mean_loss, run_steps, trial_steps
        )
        if error is not None:
            failures.append(error)
        setup_findings.append(finding)

    confirmed_any = False
    replaced = {}
    for code, evidence in suspects.items():
        trial = trials.get(code)
        if trial is not None:
            ok = interventions_lib.confirms(trial, control_loss, mean_loss)
            text = interventions_lib.describe(trial, control_loss, run_steps or None)
            gain = 0.0
            if np.isfinite(trial.loss):
                gain = (
                    1.0
                    if not np.isfinite(control_loss)
                    else max(0.0, 1.0 - trial.loss / max(control_loss, 1e-30))
                )
            title, fix, cause = _CONFIRMED[code]
            base = next((f for f in found if f.code == code), None)
            if ok:
                confirmed_any = True
                finding = Finding(
                    code,
                    (base.title if base else title) + " (confirmed)",
                    base.cause if base else cause,
                    f"{evidence} Confirmed: {text}.",
                    base.fix if base else fix.format(**context),
                    max(CONFIRMED_SCORE, base.score if base else 0.0),
                    confirmed=True,
                    strength=gain,
                )
            elif base is not None:
                # A measured fact (inputs in the thousands) stays; the short trial is reported.
                finding = dataclasses.replace(
                    base,
                    evidence=f"{base.evidence} Not confirmed within the trial: {text}.",
                    confirmed=False,
                    strength=gain,
                )
            else:
                finding = dataclasses.replace(
                    _suspected(code, f"{evidence} Not confirmed: {text}.", context),
                    confirmed=False,
                    strength=gain,
                )
        else:
            if any(f.code == code for f in found):
                continue  # a structural finding that was not tried stays as it is
            finding = _suspected(code, evidence, context)
        replaced[code] = finding
    for finding in setup_findings:
        confirmed_any = confirmed_any or bool(finding.confirmed)
        replaced[finding.code] = finding
    # Structural findings whose fix was tried and did not help become suspected.
    out = [replaced.pop(f.code) if f.code in replaced else f for f in out]
    out += replaced.values()
    if "distribution_shift" in codes | set(suspects) and any(
        f.code == "distribution_shift" and f.confirmed for f in out
    ):
        out = [
            dataclasses.replace(
                f, score=SYMPTOM_SCORE + 0.05, title=f.title.replace(" (confirmed)", "")
            )
            if f.code == "worse_than_persistence"
            else f
            for f in out
        ]
    out += failures

    structural = [f for f in out if f.code in STRUCTURAL_CAUSES and f.score >= 0.5]
    if not confirmed_any and not structural and (no_better or collapsed):
        tx_h, ty_h, vx_h, vy_h = tx, ty, vx, vy
        mean_mse = float(np.mean((vy_h - ty_h.mean(axis=0)) ** 2))
        learners = {}
        for name, learner in (
            ("linear model on the flattened windows", ridge_baseline),
            ("random-feature model on the flattened windows", random_features_baseline),
        ):
            try:
                learners[name] = (
                    learner(tx_h[:4096], ty_h[:4096], vx_h[:2048], vy_h[:2048]) / mean_mse
                    if mean_mse > 0
                    else math.inf
                )
            except Exception:  # noqa: BLE001 - a singular design is no evidence either way
                learners[name] = math.inf
        if persistence is not None and mean_loss_all > 0:
            learners["persistence (the last value)"] = persistence / mean_loss_all
        trial_ratios = {t.name: t.loss / mean_loss for t in trials.values() if mean_loss > 0}
        learned = [n for n, r in learners.items() if r < LINEAR_SIGNAL] + [
            n for n, r in trial_ratios.items() if r < NO_BETTER_THAN_MEAN
        ]
        described = "; ".join(
            [f"{name}: {_number(r, '.2f')} x the mean" for name, r in learners.items()]
            + [
                f"LSTM copy ({name}): {_number(r, '.2f')} x the mean"
                for name, r in trial_ratios.items()
            ]
        )
        if not learned:
            out.append(
                Finding(
                    "no_signal",
                    "Nothing to learn: the inputs do not predict the targets",
                    "No learner beats the mean on held-out windows: not the trained LSTM, not a "
                    "linear or a nonlinear model on the flattened windows, not the LSTM copies "
                    "with the fixes tried; when the targets carry no signal, predicting the mean is the correct answer.",
                    f"the LSTM: {measured} Other learners (held-out loss / the mean's): "
                    f"{described or 'none ran'}.",
                    "Check that targets are aligned with their inputs (the target of a window "
                    "ending at t is at t+1..t+horizon), add informative features, or accept the "
                    "mean forecast.",
                    NO_SIGNAL_SCORE,
                    strength=1.0,
                )
            )
        else:
            out.append(
                Finding(
                    "signal_not_learned",
                    "There is signal the LSTM did not learn, and no fix tried explains it",
                    "Another learner beats the mean on the same windows, so the targets are "
                    "predictable; none of the fixes tried on a copy made the difference within "
                    "the diagnosis' budget.",
                    f"learners that beat the mean: {', '.join(learned)}; {described}. The LSTM: "
                    f"{measured}",
                    "Train longer, or try the suspected causes listed with this finding; "
                    "diagnose(..., budget=<steps per trial>) tries the fixes for longer.",
                    SUSPECTED_SCORE - 0.05,
                )
            )
    return out


def _try_setup_fix(suspect, context, loss, control_loss, mean_loss, run_steps, steps):
    """`(finding, failure)` for one setup suspect: its fix tried on a copy when there is a budget.

    Confirmed findings score `CONFIRMED_SCORE`; a structural one whose fix did not help keeps
    its score with the trial reported; a suspect that was not tried or did not help is
    "suspected".
    """
    kind, base = suspect.kind, suspect.base
    outcome, failure, not_tried = None, None, ""
    if context is not None and steps > 0:
        try:
            outcome = setup_lib.try_fix(
                suspect,
                context,
                loss,
                control_loss=control_loss,
                mean_loss=mean_loss,
                run_steps=run_steps or None,
                steps=steps,
            )
        except setup_lib.FixNotTried as note:  # the data cannot take the fix: a plain note
            not_tried = f" Not tried: {note}."
        except Exception as error:  # noqa: BLE001 - a fix that cannot be tried is said
            failure = check_failed(f"trying the fix for {kind.code} on a copy", error)

    def wording(code):
        if code == kind.code:
            return (
                base.title if base else kind.title,
                base.cause if base else kind.cause.format(**suspect.context),
                base.fix if base else kind.fix.format(**suspect.context),
            )
        title, fix, cause = _CONFIRMED[code]
        return title, cause, fix.format(rate_up=_number(context.setting.learning_rate * 10))

    if outcome is not None and outcome.confirmed:
        code = outcome.code or kind.code
        title, cause, fix = wording(code)
        return (
            Finding(
                code,
                title + " (confirmed)",
                cause,
                f"{suspect.evidence} Confirmed: {outcome.text}.",
                fix,
                max(CONFIRMED_SCORE, base.score if base else 0.0),
                confirmed=True,
                strength=outcome.gain,
            ),
            failure,
        )
    tried = f" Not confirmed: {outcome.text}." if outcome is not None else not_tried
    if base is not None:
        return (
            dataclasses.replace(
                base,
                evidence=base.evidence + tried,
                confirmed=False if outcome is not None else None,
                strength=outcome.gain if outcome is not None else base.strength,
            ),
            failure,
        )
    title, cause, fix = wording(kind.code)
    return (
        Finding(
            kind.code,
            title + " (suspected)",
            cause,
            suspect.evidence + tried,
            fix,
            SUSPECTED_SCORE,
            confirmed=False if outcome is not None else None,
            strength=outcome.gain if outcome is not None else 0.0,
        ),
        failure,
    )


def _history_dict(history) -> tuple[dict, dict]:
    if history is None:
        return {}, {}
    if isinstance(history, dict):
        return history, {}
    run = dict(history.history)
    probes = getattr(history, "probes", None) or {}
    if "loss" in probes and "step" in probes:
        # The probes' loss: one fixed (held-out when there is one) batch, no minibatch noise.
        run["probe_step"], run["probe_loss"] = probes["step"], probes["loss"]
    return run, dict(getattr(history, "params", {}) or {})


def diagnose(
    history=None,
    *,
    logdir: str | None = None,
    model: keras.Model | None = None,
    data=None,
    validation_data=None,
    loss="mse",
    check_data_first: bool = True,
    overfit_check: bool = False,
    data_report: dict | None = None,
    budget=None,
    findings_before=None,
) -> list[Finding]:
    """Diagnoses a finished run and/or a model on its data; returns one ranked list of findings.

    What runs depends on what is given:

    - `history` (a `lstmcore.History` or its `.history` dict) or `logdir` (a run directory or
      a parent of runs; event files are read): whether the weights could move
      (`check_updates`) and whether training was unstable (`check_instability`); probe
      scalars logged during training (`probe/...`) feed the collapse check when no model is
      given.
    - `data` (`(inputs, targets)` or a `WindowedData`): `check_data` on the training windows.
      A `History` from `lstmcore.train` carries the findings `train` made before its first
      step (`history.findings_before`); they are used instead, so that `train`'s list and
      this one are the same.
    - `model` with `data`: `check_fit` on held-out windows (`validation_data`, the
      WindowedData's validation split, or the last quarter of the training windows): the
      symptoms, and each suspected cause tried on a copy of the model.

    Nothing is changed: the model, the data and the run directory are only read.

    Args:
      history: a `History` (or dict of per-step arrays) from `lstmcore.train`.
      logdir: read the run from its TensorBoard event files instead of `history`.
      model: the trained Keras model.
      data: training data, `(inputs [N, T, F], targets [N, ...])` or a `WindowedData`.
      validation_data: `(inputs, targets)` held-out windows.
      loss: the loss the model was trained with (name or callable).
      check_data_first: include the data checks.
      overfit_check: include the "overfit 16 samples" check (`check_capacity`; off by
        default: the capacity question is answered by trying 4x the units on a copy).
      data_report: `WindowedData.to_dict()` (taken from a WindowedData `data` when None):
        where the target column sits among the inputs, for persistence and the change target.
      budget: how long each fix is tried: a fraction in (0, 1] of the run's steps shared by
        all trials (default 0.2; each trial between 40 and 300 steps; 300 without a
        history), a whole number of steps per trial, or 0 to try nothing (causes are then
        at most suspected).
      findings_before: findings (or their dicts) from the checks before training.

    Returns:
      Findings, highest score first; empty when no problem was found.

    Raises:
      ValueError: when nothing to diagnose is given, `logdir` holds no run, or `data` has
        the wrong form.
    """
    if history is None and logdir is None and data is None:
        raise ValueError("diagnose needs a history, a logdir or data; got none of them")
    _trial_steps(budget, 0, 1)
    run, params = _history_dict(history)
    logged_probes = {}
    if logdir is not None:
        run_from_file, params_from_file, logged_probes = _history_from_run(find_run_dir(logdir))
        run = run or run_from_file
        params = params or params_from_file
    if findings_before is None and getattr(history, "findings_before", None) is not None:
        findings_before = history.findings_before
    found = _guard("check_updates", check_updates, run, params) if run else []
    tx, ty, vx, vy, windowed = _unpack(data)
    if windowed is not None and data_report is None:
        data_report = _guard_value(windowed.to_dict)
    if validation_data is not None:
        vx, vy = validation_data
    if model is not None and tx is not None and ty is not None and findings_before is None:
        # train checked the shapes before its first step; anyone else gets train's message.
        x_checked, y_checked = _as_arrays(tx, ty)
        check_model_on_data(model, x_checked, y_checked)
    if findings_before is not None:
        found += [_as_finding(f) for f in findings_before]
    elif tx is not None and check_data_first:
        found += _guard(
            "check_data",
            check_data,
            tx,
            ty,
            windowed=windowed,
            validation_inputs=vx,
            model=model,
            loss=loss,
            overfit_check=overfit_check,
        )
    if any(f.code == "nonfinite_data" for f in found):
        return rank(found)
    if model is not None and tx is not None and ty is not None:
        try:
            tx, ty = _as_arrays(tx, ty)
            if vx is not None:
                vx, vy = _as_arrays(vx, vy)
            held = _held_out(tx, ty, vx, vy)
        except Exception as error:  # noqa: BLE001
            return rank([*found, check_failed("held-out fit", error)])
        if min(len(held[0]), len(held[2])) >= 2:
            try:
                found = check_fit(
                    model,
                    (held[0], held[1]),
                    (held[2], held[3]),
                    loss,
                    found=found,
                    history=run,
                    params=params,
                    data_report=data_report,
                    budget=budget,
                )
            except Exception as error:  # noqa: BLE001
                found.append(check_failed("held-out fit", error))
        elif not any(f.code == "too_little_data" for f in found):
            found.append(
                check_failed(
                    "held-out fit",
                    f"{len(tx)} training window(s): too few to hold any out and judge the fit",
                )
            )
    elif logged_probes:
        causes = [f.code for f in found if f.code in CAUSES and f.score >= 0.5]
        found += _check_logged_probes(logged_probes, causes)
    return rank(found)


def _guard_value(function):
    try:
        return function()
    except Exception:  # noqa: BLE001
        return None


def _as_finding(value) -> Finding:
    if isinstance(value, Finding):
        return value
    fields = {f.name for f in dataclasses.fields(Finding)}
    return Finding(**{k: v for k, v in dict(value).items() if k in fields})


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
            f"last logged probes: loss {_number(ratio, '.2f')} x the mean baseline, prediction std "
            f"{_number(spread, '.3f')} x target std.",
            "Fix the causes ranked above." if causes else "Run diagnose with model and data.",
            SYMPTOM_SCORE,
        )
    ]
