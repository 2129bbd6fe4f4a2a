"""Setup checks: the mistakes users make in their own model and training setup, as finding kinds.

Each kind is a registry entry (`KINDS`): a code, its wording, a structural check that reads
the model, the loss, the targets or the loss curve, and an intervention that tries the fix on
a copy of the model. The diagnosis (`lstmcore.diagnosis.check_data` before training,
`check_fit` after it) calls them and puts their findings in its one ranked list, so that
`train`, `diagnose` and the `fit` callback say the same.

Kinds:

- `output_cannot_reach_targets`: the final activation's range (relu, sigmoid, softmax, tanh,
  one unit under softmax) excludes part of the training targets. Measured as the loss floor
  of the best prediction inside that range, against the loss of predicting the mean.
- `unbounded_recurrent_activation`: `activation="relu"` (or another unbounded function)
  inside an LSTM/GRU cell; the evidence is the hidden units' largest value and the share stuck
  at zero across the probe batch. Fix tried: the same copy with tanh.
- `stopped_too_early`: the loss was still falling when training stopped (the slope of the last
  half of the curve, a one-sided t-test against its own noise). Fix tried: a copy with the
  trained weights continues for the trial budget at the same learning rate, and at ten times
  it; when ten times clearly wins, the finding is `learning_rate_too_low` instead.
- `loss_mismatch`: a loss that does not fit the targets where the targets show it (binary
  cross-entropy on one-hot rows of three or more classes or on values outside [0, 1],
  categorical cross-entropy on one column or on rows that are not probabilities, a regression
  loss on one-hot labels). Fix tried: the matching loss and head, scored by balanced accuracy
  (classification) or MSE.
- `class_imbalance` (with the symptom `class_collapse`): the classifier predicts (nearly) one
  class: its balanced accuracy is within two standard errors of chance, while the classes are
  unequal (a chi-square test). Fix tried: class weights.
- `window_too_short`: the target series depends on lags longer than the input window (its
  partial autocorrelation beyond the window, Bonferroni-corrected band); fix tried: a copy on
  windows long enough, when the windows can be stitched back into the series (stride 1).
- Reconstruction models (`is_reconstruction`): targets equal to the input window are by
  design (autoencoders), never a leak.

References:
  Wardat, Cruz and Le, "DeepDiagnosis: automatically diagnosing faults and recommending
  actionable fixes in deep learning programs", ICSE 2022; Zhang et al., "AUTOTRAINER: an
  automatic DNN training problem detection and repair system", ICSE 2021; Schoop, Huang and
  Hartmann, "UMLAUT: debugging deep learning programs using program structure, model
  behavior, and error messages", CHI 2021.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from lstmcore import _keras_compat, config
from lstmcore import interventions as interventions_lib
from lstmcore import probes as probes_lib

HEAD_FLOOR = 0.1  # the head cannot go below this share of the mean-baseline MSE
SLOPE_ALPHA = 0.01  # one-sided level of the "loss still falling" t-test
CHANCE_SE = 2.0  # balanced accuracy within this many standard errors of chance: collapsed
IMBALANCE_ALPHA = 0.01  # chi-square level of "the classes are unequal"
PACF_ALPHA = 0.01  # family-wise level of "a lag beyond the window matters"
PACF_MIN = 0.1  # ...and its partial autocorrelation must be at least this large
STRUCTURAL_SCORE = 0.85  # a setup that cannot work, found before training
# Keras's default learning rate per optimizer: a rate below it is "low" by the library's own
# convention; at or above it, a run that needs more progress needs more steps.
DEFAULT_RATES = {"sgd": 1e-2}
DEFAULT_RATE = 1e-3
BEATS_MEAN = 0.95  # a fixed copy confirms only below this share of the mean's loss (it learnt)

SHAPE_ONLY = ("Reshape", "Flatten", "Dropout", "Permute", "SpatialDropout1D", "GaussianNoise")
# The range [low, high] of each output activation; absent: unbounded (linear and the like).
RANGES = {
    "sigmoid": (0.0, 1.0),
    "hard_sigmoid": (0.0, 1.0),
    "softmax": (0.0, 1.0),
    "tanh": (-1.0, 1.0),
    "softsign": (-1.0, 1.0),
    "hard_tanh": (-1.0, 1.0),
    "relu": (0.0, math.inf),
    "relu6": (0.0, 6.0),
    "softplus": (0.0, math.inf),
    "exponential": (0.0, math.inf),
    "elu": (-1.0, math.inf),
    "selu": (-1.7581, math.inf),
    "gelu": (-0.17, math.inf),
    "silu": (-0.2785, math.inf),
    "swish": (-0.2785, math.inf),
}
BOUNDED_CELL_ACTIVATIONS = ("tanh", "softsign", "sigmoid", "hard_sigmoid", "hard_tanh")
REGRESSION_LOSSES = (
    "mean_squared_error",
    "mean_absolute_error",
    "huber",
    "huber_loss",
    "log_cosh",
    "logcosh",
    "mean_squared_logarithmic_error",
    "mean_absolute_percentage_error",
)
_ALIASES = {
    "mse": "mean_squared_error",
    "mae": "mean_absolute_error",
    "msle": "mean_squared_logarithmic_error",
    "mape": "mean_absolute_percentage_error",
    "bce": "binary_crossentropy",
}


@dataclasses.dataclass(frozen=True)
class Kind:
    """One finding kind: its code, wording, check and the fix tried on a copy.

    Attributes:
      code: the finding's code.
      title: one line.
      cause: why it makes the model fail.
      fix: what to change (a template: `{name}` fields come from the check's context).
      structural: found before training from the model, loss and data alone.
    """

    code: str
    title: str
    cause: str
    fix: str
    structural: bool = False


KINDS = config.Registry("finding kind")


def _register(kind: Kind) -> Kind:
    KINDS.register(kind.code)(lambda: kind)
    return kind


OUTPUT_RANGE = _register(
    Kind(
        "output_cannot_reach_targets",
        "The output layer's activation cannot reach the targets",
        "The last layer's activation limits every prediction to its range; targets outside it "
        "can never be predicted, so the model settles at the edge of the range (a ReLU output "
        "clamps at 0, a sigmoid at 0 or 1, one softmax unit is always 1).",
        "Use an output activation whose range covers the targets: {head}.",
        structural=True,
    )
)
RECURRENT_ACTIVATION = _register(
    Kind(
        "unbounded_recurrent_activation",
        "An unbounded activation inside the recurrent cell (relu in an LSTM/GRU)",
        "With activation='relu' the cell's candidate and output are unbounded: the state can "
        "grow step after step (exploding activations and gradients), or units fall to 0 for "
        "every input and stay there (dead units); tanh keeps the state bounded.",
        "Keep the cell's default activation: keras.layers.{layer}(units) (activation='tanh'); "
        "put a relu in a Dense layer after it if you want one.",
    )
)
STOPPED_EARLY = _register(
    Kind(
        "stopped_too_early",
        "Training stopped while the loss was still falling",
        "The loss curve had not flattened: the model stopped learning because training ended, "
        "not because it had learnt what it could.",
        "Train longer: lstmcore.train(..., steps={steps_more}) (or more epochs), with the same "
        "learning rate; watch the validation loss for the point where it stops improving.",
    )
)
LOSS_MISMATCH = _register(
    Kind(
        "loss_mismatch",
        "The loss does not match the targets",
        "The loss assumes targets of another kind than these ({assumes}); its minimum is not "
        "the right prediction, so training optimises the wrong thing.",
        "{right}",
        structural=True,
    )
)
CLASS_IMBALANCE = _register(
    Kind(
        "class_imbalance",
        "The classifier predicts (nearly) one class: the classes are imbalanced",
        "With unequal classes, predicting the majority class for everything is a cheap way to "
        "a low loss; the minority classes are never predicted.",
        "Weight the classes by inverse frequency (keras: model.fit(..., class_weight={weights}); "
        "or a weighted loss), resample the minority classes, and judge the model by balanced "
        "accuracy rather than accuracy.",
    )
)
WINDOW_SHORT = _register(
    Kind(
        "window_too_short",
        "The input window is shorter than the series' dependence",
        "The target depends on values further back than the window reaches; no number of "
        "units recovers what the window does not contain.",
        "Use longer windows: lstmcore.data.windows(..., input_steps={steps_needed}) (the "
        "dependence reaches lag {lag}).",
    )
)
CLASS_COLLAPSE_CODE = "class_collapse"
STRUCTURAL_CODES = tuple(kind.code for kind in (OUTPUT_RANGE, LOSS_MISMATCH))


def _finding(kind: Kind, evidence: str, score: float, context: dict, **extra):
    from lstmcore.diagnosis import Finding

    return Finding(
        kind.code,
        kind.title,
        kind.cause.format(**context),
        evidence,
        kind.fix.format(**context),
        score,
        **extra,
    )


# --------------------------------------------------------------------------------------------
# Reading the model and the loss
# --------------------------------------------------------------------------------------------


def loss_name(loss) -> str:
    """A loss's canonical lower-case name ("mean_squared_error", "binary_crossentropy", ...)."""
    if isinstance(loss, str):
        name = loss
    else:
        name = getattr(loss, "name", None) or getattr(loss, "__name__", None) or ""
    name = str(name).lower()
    return _ALIASES.get(name, name)


def from_logits(loss) -> bool:
    """Whether a loss object takes logits (`from_logits=True`)."""
    if getattr(loss, "from_logits", False):
        return True
    get_config = getattr(loss, "get_config", None)
    try:
        return bool(get_config().get("from_logits", False)) if callable(get_config) else False
    except Exception:  # noqa: BLE001 - a loss without a usable config takes probabilities
        return False


def _activation_name(value) -> str | None:
    if value is None:
        return "linear"
    if isinstance(value, str):
        return value.lower()
    if isinstance(value, dict):
        inner = value.get("config", value)
        name = inner.get("name") if isinstance(inner, dict) else None
        return str(name or value.get("class_name", "")).lower() or None
    return getattr(value, "__name__", None)


def output_activation(model) -> tuple[str | None, keras.layers.Layer | None]:
    """The activation that produces the model's output, and the layer that applies it.

    Walks back from the last layer over shape-only layers (Reshape, Flatten, Dropout, ...);
    `TimeDistributed` is looked through. `(None, None)` when the output comes from a layer
    whose activation is unknown (a Lambda, a custom layer).
    """
    for layer in reversed(list(getattr(model, "layers", []))):
        name = type(layer).__name__
        if name in SHAPE_ONLY:
            continue
        inner = getattr(layer, "layer", None) if name == "TimeDistributed" else layer
        config_ = inner.get_config() if inner is not None else {}
        if type(inner).__name__ == "Activation" or "activation" in config_:
            return _activation_name(config_.get("activation")), layer
        return None, None
    return None, None


def rnn_layers(model) -> list:
    """Every recurrent layer (LSTM, GRU, SimpleRNN, Keras's or lstmcore's), wrapped ones too."""
    found = []
    for layer in _keras_compat.flatten_layers(model):
        cell = getattr(layer, "cell", None)
        if cell is not None and hasattr(cell, "units") and hasattr(cell, "activation"):
            found.append(layer)
    return found


# --------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------


def is_reconstruction(inputs, targets) -> bool:
    """Whether the targets are the input window itself (an autoencoder), by design.

    True when each sample's targets equal its inputs (all features, or a subset of them, at
    every step, in order or reversed), to float tolerance. Such a target is not a leak: the
    model is asked to reproduce what it reads.
    """
    x = np.asarray(inputs, np.float64)
    y = np.asarray(targets, np.float64)
    if x.ndim != 3 or len(y) != len(x) or len(x) == 0:
        return False
    n, steps, features = x.shape
    y = y.reshape(n, -1)
    if y.shape[1] % steps:
        return False
    width = y.shape[1] // steps
    if width > features:
        return False
    scale = max(1.0, float(np.abs(x).max()))
    candidates = [list(range(features))] if width == features else []
    if width == 1:
        candidates += [[f] for f in range(features)]
    for chosen in candidates:
        window = x[:, :, chosen]
        for view in (window, window[:, ::-1]):
            if np.allclose(view.reshape(n, -1), y, atol=1e-6 * scale, rtol=0):
                return True
    return False


@dataclasses.dataclass
class Labels:
    """Classification targets read from the data: true class per element, class count."""

    kind: str  # "one_hot", "binary" or "sparse"
    classes: int
    truth: np.ndarray  # [M] int


def read_labels(targets, output_shape, loss) -> Labels | None:
    """The class labels the targets encode, or None for regression targets.

    One-hot rows (values 0/1, each row summing to 1, 2+ columns), 0/1 targets under a
    cross-entropy or hinge loss, or integer labels under a sparse cross-entropy.
    """
    name = loss_name(loss)
    y = np.asarray(targets, np.float64)
    if y.size == 0 or not np.isfinite(y).all():
        return None
    tail = tuple(output_shape)[1:]
    if "sparse" in name:
        if not np.all(y == np.round(y)) or y.min() < 0:
            return None
        classes = int(tail[-1]) if tail and tail[-1] else int(y.max()) + 1
        return Labels("sparse", max(classes, 2), y.reshape(-1).astype(np.int64))
    binary = np.isin(y, (0.0, 1.0)).all()
    if not binary:
        return None
    shaped = probes_lib.targets_like(y, output_shape)
    if shaped.shape[-1] >= 2 and np.all(shaped.sum(axis=-1) == 1.0):
        flat = shaped.reshape(-1, shaped.shape[-1])
        return Labels("one_hot", int(flat.shape[1]), flat.argmax(axis=1).astype(np.int64))
    if "crossentropy" in name or "hinge" in name:
        return Labels("binary", 2, shaped.reshape(-1).astype(np.int64))
    return None


def predicted_classes(labels: Labels, predictions, *, logits: bool = False) -> np.ndarray:
    p = np.asarray(predictions, np.float64)
    if labels.kind == "binary":
        return (p.reshape(-1) > (0.0 if logits else 0.5)).astype(np.int64)
    return p.reshape(-1, p.shape[-1]).argmax(axis=1).astype(np.int64)


def balanced_accuracy(truth, predicted, classes: int) -> tuple[float, float, float]:
    """`(balanced accuracy, its standard error, the standard error at chance)`.

    The mean recall over the classes present; standard errors from the binomial variance of
    each recall, `sqrt(sum_c r_c (1 - r_c) / n_c) / C` (at chance, `r_c = 1 / C`).
    """
    truth = np.asarray(truth)
    predicted = np.asarray(predicted)
    present = [c for c in range(classes) if np.any(truth == c)]
    if not present:
        return math.nan, math.nan, math.nan
    recalls = np.array([np.mean(predicted[truth == c] == c) for c in present])
    counts = np.array([np.sum(truth == c) for c in present])
    k = len(present)
    chance = 1.0 / k
    se = math.sqrt(float(np.sum(recalls * (1 - recalls) / counts))) / k
    se0 = math.sqrt(float(np.sum(chance * (1 - chance) / counts))) / k
    return float(recalls.mean()), se, se0


def classification_scores(
    model, inputs, targets, loss, train_targets=None, *, predictions=None
) -> dict | None:
    """Accuracy, balanced accuracy and the majority-class baseline on these windows.

    Args:
      model: the model; inputs, targets: held-out windows; loss: the training loss.
      train_targets: training targets, for the majority class (else the held-out ones).
      predictions: the model's predictions on `inputs`, when already at hand.

    Returns:
      None for regression targets; otherwise `{"accuracy", "balanced_accuracy",
      "majority_accuracy", "majority_class", "predicted_share" (the most predicted class's
      share), "classes", "chance", "se", "se_chance", "collapsed"}`; `collapsed` when the
      balanced accuracy is within `CHANCE_SE` standard errors of chance.
    """
    from lstmcore import baselines as baselines_lib

    if predictions is None:
        if read_labels(targets, (None, *np.shape(targets)[1:]), loss) is None and (
            "sparse" not in loss_name(loss)
        ):
            return None  # regression targets whatever the model's layout: no forward pass
        predictions = baselines_lib.model_predictions(
            model, np.asarray(inputs, np.float32), keep_shape=True
        )
    labels = read_labels(targets, predictions.shape, loss)
    if labels is None:
        return None
    predicted = predicted_classes(labels, predictions, logits=from_logits(loss))
    if len(predicted) != len(labels.truth):
        return None
    reference = labels
    if train_targets is not None:
        reference = read_labels(train_targets, predictions.shape, loss) or labels
    counts = np.bincount(reference.truth, minlength=labels.classes)
    majority = int(counts.argmax())
    ba, se, se0 = balanced_accuracy(labels.truth, predicted, labels.classes)
    share = np.bincount(predicted, minlength=labels.classes).max() / len(predicted)
    present = len(np.unique(labels.truth))
    return {
        "accuracy": float(np.mean(predicted == labels.truth)),
        "balanced_accuracy": ba,
        "majority_accuracy": float(np.mean(labels.truth == majority)),
        "majority_class": majority,
        "predicted_share": float(share),
        "classes": labels.classes,
        "chance": 1.0 / max(present, 1),
        "se": se,
        "se_chance": se0,
        "collapsed": bool(present >= 2 and ba <= 1.0 / present + CHANCE_SE * se0),
        "train_counts": counts.tolist(),
        "labels": labels,
    }


# --------------------------------------------------------------------------------------------
# Structural checks before training
# --------------------------------------------------------------------------------------------


def right_head(labels: Labels | None, loss) -> tuple[str, str]:
    """`(activation, wording)` of the head that fits these targets and this loss."""
    name = loss_name(loss)
    if labels is not None and labels.kind in ("one_hot", "sparse"):
        return "softmax", "Dense(classes, activation='softmax') with categorical cross-entropy"
    if labels is not None and labels.kind == "binary" or name == "binary_crossentropy":
        return "sigmoid", "Dense(1, activation='sigmoid') with binary cross-entropy"
    return "linear", "a linear output, Dense(K) (activation=None), for regression targets"


def check_output_range(model, inputs, targets, loss) -> list:
    """The output activation's range against the training targets (see the module docstring).

    The floor is the MSE of the best prediction inside the range (each target clipped to it)
    over the MSE of predicting the targets' mean; flagged at `HEAD_FLOOR` or more, or for a
    softmax over one unit (its output is always 1) on targets that are not all 1.
    """
    activation, layer = output_activation(model)
    if activation is None or activation not in RANGES or from_logits(loss):
        return []
    name = loss_name(loss)
    if "sparse" in name:
        return []
    x = np.asarray(inputs, np.float32)
    output_shape = model(x[:1], training=False).shape
    y = probes_lib.targets_like(np.asarray(targets, np.float64), output_shape)
    labels = read_labels(y, output_shape, loss)
    _head, wording = right_head(labels, loss)
    context = {"head": wording}
    if activation == "softmax" and int(output_shape[-1]) == 1:
        if np.all(y == 1.0):
            return []
        return [
            _finding(
                OUTPUT_RANGE,
                f"the output layer {layer.name!r} is a softmax over 1 unit: its output is 1.0 "
                f"for every input, whatever the weights; the targets range over "
                f"[{y.min():.4g}, {y.max():.4g}].",
                STRUCTURAL_SCORE,
                {
                    "head": "Dense(1, activation='sigmoid') for two classes, or Dense(classes, "
                    "activation='softmax') for more"
                },
                strength=1.0,
            )
        ]
    low, high = RANGES[activation]
    clipped = np.clip(y, low, high)
    variance = float(np.mean((y - y.mean(axis=0)) ** 2))
    if variance <= 0:
        return []
    floor = float(np.mean((y - clipped) ** 2)) / variance
    outside = float(np.mean((y < low) | (y > high)))
    if floor < HEAD_FLOOR:
        return []
    return [
        _finding(
            OUTPUT_RANGE,
            f"the output layer {layer.name!r} uses {activation} (range [{low:g}, {high:g}]); "
            f"{outside:.0%} of the training targets lie outside it (targets over "
            f"[{y.min():.4g}, {y.max():.4g}]). The best the head can do, every target clipped "
            f"to its range, costs {floor:.2f} x the MSE of predicting the mean (flagged from "
            f"{HEAD_FLOOR:g}).",
            STRUCTURAL_SCORE,
            context,
            strength=min(floor, 1.0),
        )
    ]


def check_loss(model, inputs, targets, loss) -> list:
    """A loss that does not fit what the targets show (see the module docstring)."""
    name = loss_name(loss)
    x = np.asarray(inputs, np.float32)
    output_shape = model(x[:1], training=False).shape
    y = probes_lib.targets_like(np.asarray(targets, np.float64), output_shape)
    if not np.isfinite(y).all() or y.size == 0:
        return []
    binary_values = np.isin(y, (0.0, 1.0)).all()
    one_hot = binary_values and y.shape[-1] >= 2 and np.all(y.sum(axis=-1) == 1.0)
    problem = None
    if name == "binary_crossentropy":
        if one_hot and y.shape[-1] >= 3:
            problem = (
                (
                    f"binary cross-entropy on one-hot rows of {y.shape[-1]} classes (each row has "
                    "exactly one 1)"
                ),
                "independent yes/no labels",
                (
                    "For one class out of several use loss='categorical_crossentropy' with "
                    "Dense(classes, activation='softmax') (or sparse_categorical_crossentropy with "
                    "integer labels)."
                ),
            )
        elif y.min() < 0 or y.max() > 1:
            integer = bool(np.all(y == np.round(y)))
            problem = (
                (
                    f"binary cross-entropy on targets over [{y.min():.4g}, {y.max():.4g}], outside "
                    "[0, 1]"
                ),
                "probabilities in [0, 1]",
                "Integer class labels: loss='sparse_categorical_crossentropy' with "
                "Dense(classes, activation='softmax')."
                if integer and y.min() >= 0
                else "For real-valued targets use a regression loss (loss='mse') and a linear "
                "output.",
            )
    elif name == "categorical_crossentropy":
        if y.shape[-1] == 1:
            problem = (
                (
                    "categorical cross-entropy over a single column (with one output the "
                    "normalised prediction is always 1 and the loss carries no gradient)"
                ),
                "one-hot rows over two or more classes",
                (
                    "Integer labels in one column: loss='sparse_categorical_crossentropy' with "
                    "Dense(classes, activation='softmax'); two classes as 0/1: "
                    "loss='binary_crossentropy' with Dense(1, activation='sigmoid')."
                ),
            )
        elif y.min() < 0 or np.any(np.abs(y.sum(axis=-1) - 1.0) > 1e-3):
            problem = (
                (
                    "categorical cross-entropy on rows that are not probabilities (negative values "
                    "or rows not summing to 1)"
                ),
                "one-hot or probability rows",
                "For real-valued targets use a regression loss (loss='mse') and a linear output.",
            )
    elif name in REGRESSION_LOSSES and one_hot and y.shape[-1] >= 2:
        problem = (
            f"a regression loss ({name}) on one-hot labels over {y.shape[-1]} classes",
            "real-valued targets",
            "loss='categorical_crossentropy' with Dense(classes, activation='softmax').",
        )
    if problem is None:
        return []
    shown, assumes, right = problem
    return [
        _finding(
            LOSS_MISMATCH,
            f"{shown}; targets per sample {tuple(y.shape[1:])}.",
            STRUCTURAL_SCORE,
            {"assumes": assumes, "right": right},
            strength=1.0,
        )
    ]


def check_before_training(model, inputs, targets, loss) -> list:
    """The structural setup checks (`check_output_range`, `check_loss`); loss findings first."""
    mismatch = check_loss(model, inputs, targets, loss)
    if mismatch:
        return mismatch  # the head follows from the loss; one finding, the loss's
    return check_output_range(model, inputs, targets, loss)


# --------------------------------------------------------------------------------------------
# Suspects after training (the fit failed)
# --------------------------------------------------------------------------------------------


def still_falling(losses, *, alpha: float = SLOPE_ALPHA) -> dict | None:
    """Whether the loss was still falling at the end of training.

    The last half of the per-step losses (at least 5 points) is averaged into at most 10
    blocks (so that minibatch noise is averaged and neighbours are nearly independent); the
    least-squares slope of the block means against the step is tested against zero with a
    one-sided t-test at level `alpha`.

    Returns:
      `{"slope": per step, "t": t statistic, "blocks", "first", "last", "drop_per_run"}`
      when the slope is significantly negative, else None.
    """
    values = np.asarray(losses, np.float64)
    values = values[np.isfinite(values)]
    if values.size < 6:
        return None
    tail = values[values.size // 2 :]
    steps = np.arange(values.size // 2, values.size, dtype=np.float64)
    if tail.size > 10:
        parts = np.array_split(np.arange(tail.size), 10)
        y = np.array([tail[p].mean() for p in parts])
        t_steps = np.array([steps[p].mean() for p in parts])
    else:
        y, t_steps = tail, steps
    m = len(y)
    if m < 4:
        return None
    centred = t_steps - t_steps.mean()
    slope = float(np.dot(centred, y - y.mean()) / np.dot(centred, centred))
    residual = y - (y.mean() + slope * centred)
    sigma2 = float(np.dot(residual, residual)) / (m - 2)
    se = math.sqrt(max(sigma2, 1e-300) / float(np.dot(centred, centred)))
    t_value = slope / se
    if student_t_cdf(t_value, m - 2) >= alpha:  # one-sided: not significantly falling
        return None
    return {
        "slope": slope,
        "t": t_value,
        "blocks": m,
        "first": float(y[0]),
        "last": float(y[-1]),
        "steps": int(values.size),
    }


def recurrent_activation_evidence(model, inputs) -> tuple[str, str] | None:
    """`(evidence, layer class)` for the first recurrent layer with an unbounded activation."""
    for layer in rnn_layers(model):
        activation = _activation_name(layer.get_config().get("activation", "tanh"))
        if activation in BOUNDED_CELL_ACTIVATIONS:
            continue
        text = (
            f"layer {layer.name!r} ({type(layer).__name__}) uses activation={activation!r} "
            "in its cell."
        )
        try:
            hidden = _layer_output(model, layer, inputs)
            flat = np.abs(hidden.reshape(-1, hidden.shape[-1]))
            dead = float(np.mean(flat.max(axis=0) < probes_lib.DEAD_UNIT_LEVEL))
            text += (
                f" On {len(inputs)} held-out windows its outputs reach {flat.max():.3g} "
                f"(tanh stays below 1) and {dead:.0%} of its units are 0 for every window"
                f"{' and step' if hidden.ndim == 3 else ''} (dead)."
            )
        except Exception:  # noqa: BLE001, S110 - the configuration alone is the evidence then
            pass
        return text, type(layer).__name__
    return None


def _layer_output(model, layer, inputs) -> np.ndarray:
    x = tf.constant(np.asarray(inputs, np.float32))
    if isinstance(model, keras.Sequential):
        for item in model.layers:
            x = item(x, training=False)
            if item is layer:
                return np.asarray(x)
    return np.asarray(keras.Model(model.inputs, layer.output)(x, training=False))


def stitched_series(inputs) -> np.ndarray | None:
    """The series `[R, F]` that stride-1 windows were cut from, or None if they were not.

    Consecutive windows of a stride-1 cut share all but one row: `x[i + 1, :-1] == x[i, 1:]`.
    """
    x = np.asarray(inputs, np.float64)
    if x.ndim != 3 or len(x) < 3 or x.shape[1] < 2:
        return None
    scale = max(1.0, float(np.abs(x).max()))
    same = np.all(np.abs(x[1:, :-1] - x[:-1, 1:]) <= 1e-6 * scale, axis=(1, 2))
    if not same.all():
        return None
    return np.concatenate([x[0], x[1:, -1]], axis=0)


def partial_autocorrelation(series, max_lag: int) -> np.ndarray:
    """Partial autocorrelations at lags ``0..max_lag`` (Yule-Walker, Durbin-Levinson).

    The autocovariances are the biased (maximum-likelihood) ones, divided by ``n`` at every
    lag, so every value stays inside [-1, 1] (statsmodels' ``pacf(method="ywm")``).
    """
    x = np.asarray(series, np.float64)
    x = x - x.mean()
    n = len(x)
    acov = np.array([np.dot(x[: n - k], x[k:]) / n for k in range(max_lag + 1)])
    partial = np.zeros(max_lag + 1)
    partial[0] = 1.0
    if acov[0] <= 0:
        return partial
    rho = acov / acov[0]
    phi = np.zeros(0)
    variance = 1.0
    for k in range(1, max_lag + 1):
        reflection = (rho[k] - np.dot(phi, rho[k - 1 : 0 : -1])) / variance
        phi = np.concatenate([phi - reflection * phi[::-1], [reflection]])
        variance *= 1.0 - reflection**2
        partial[k] = reflection
        if variance <= 1e-12:
            break
    return partial


def student_t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom (regularized incomplete beta)."""
    x = df / (df + t * t)
    tail = 0.5 * float(tf.math.betainc(tf.constant(df / 2, tf.float64), 0.5, x))
    return tail if t < 0 else 1.0 - tail


def chi_square_uniform_p(counts) -> float:
    """The p-value of Pearson's chi-square test that ``counts`` come from equal frequencies."""
    counts = np.asarray(counts, np.float64)
    expected = counts.mean()
    statistic = float(np.sum((counts - expected) ** 2 / expected))
    dof = len(counts) - 1
    return float(tf.math.igammac(tf.constant(dof / 2, tf.float64), statistic / 2))


def significant_lags(series, *, beyond: int, max_lag: int) -> tuple[list[int], np.ndarray]:
    """Lags in `(beyond, max_lag]` whose partial autocorrelation is significant.

    The band is `z / sqrt(n)` with `z` the Bonferroni-corrected two-sided normal quantile
    for `PACF_ALPHA` over all lags tested, and the value must also reach `PACF_MIN`.
    """
    values = np.asarray(series, np.float64)
    n = len(values)
    max_lag = min(int(max_lag), n // 3)
    if max_lag <= beyond:
        return [], np.zeros(0)
    # Yule-Walker with the biased (MLE) autocovariance: its estimates stay inside [-1, 1];
    # "ywadjusted" gave -24.5 at lag 11 of a 55-row sine, a false window_too_short.
    partial = partial_autocorrelation(values, max_lag)
    z = statistics.NormalDist().inv_cdf(1 - PACF_ALPHA / (2 * max_lag))
    band = max(z / math.sqrt(n), PACF_MIN)
    lags = [lag for lag in range(beyond + 1, max_lag + 1) if abs(partial[lag]) >= band]
    return lags, partial


# --------------------------------------------------------------------------------------------
# Copies for the fixes
# --------------------------------------------------------------------------------------------


def copy_with(model, *, edit: Callable | None = None, steps: int | None = None, sample_input):
    """A fresh copy of `model` with `edit(layer, config) -> config | None` applied to layers.

    Args:
      model: a Sequential or functional model.
      edit: returns a changed configuration for a layer, or None to keep it.
      steps: a different input window length (the model's input must accept it).
      sample_input: `[B, T, F]` inputs to build the copy with.
    """

    def clone(layer):
        if edit is not None and not isinstance(layer, keras.layers.InputLayer):
            changed = edit(layer, dict(layer.get_config()))
            if changed is not None:
                return layer.__class__.from_config(changed)
        return interventions_lib.rebuild_layer(layer)

    kwargs = {}
    if steps is not None:
        shape = tuple(model.inputs[0].shape[1:])
        new_input = keras.Input((steps, *shape[1:]))
        # The same structure as the model's own input: a list, or one tensor.
        single = not isinstance(model, keras.Sequential) and not isinstance(
            getattr(model, "input", None), (list, tuple)
        )
        kwargs["input_tensors"] = new_input if single else [new_input]
    try:
        replica = keras.models.clone_model(model, clone_function=clone, **kwargs)
    except Exception as error:  # noqa: BLE001 - say why the copy could not be made
        raise interventions_lib.CopyError(
            f"the model cannot be copied with the change: {type(error).__name__}: "
            f"{str(error)[:200]}"
        ) from None
    replica(np.asarray(sample_input[:1], np.float32))
    return replica


def with_output_activation(model, activation: str, sample_input):
    _, target = output_activation(model)

    def edit(layer, config_):
        if layer is not target:
            return None
        if type(layer).__name__ == "TimeDistributed":
            inner = dict(config_["layer"])
            inner["config"] = {**inner["config"], "activation": activation}
            return {**config_, "layer": inner}
        return {**config_, "activation": activation}

    return copy_with(model, edit=edit, sample_input=sample_input)


def with_cell_activation(model, activation: str, sample_input):
    changed = {id(layer) for layer in rnn_layers(model)}

    def edit(layer, config_):
        if id(layer) in changed and "activation" in config_:
            return {**config_, "activation": activation}
        if type(layer).__name__ in ("Bidirectional", "TimeDistributed"):
            return None
        return None

    return copy_with(model, edit=edit, sample_input=sample_input)


def weighted_loss(loss_fn, labels: Labels, weights: np.ndarray, output_shape):
    """`loss_fn` with each element weighted by its class's weight (inverse frequency)."""
    table = tf.constant(np.asarray(weights, np.float32))

    def loss(targets, predictions):
        values = tf.cast(loss_fn(targets, predictions), tf.float32)
        if labels.kind == "binary":
            index = tf.cast(tf.round(tf.reshape(targets, tf.shape(values))), tf.int32)
        elif labels.kind == "one_hot":
            index = tf.argmax(probes_lib.match_shape(targets, predictions), axis=-1)
            index = tf.reshape(tf.cast(index, tf.int32), tf.shape(values))
        else:
            index = tf.reshape(tf.cast(targets, tf.int32), tf.shape(values))
        return values * tf.gather(table, index)

    return loss


# --------------------------------------------------------------------------------------------
# After training: suspects, and their fixes tried on copies
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Suspect:
    """A setup kind suspected after training: its evidence and the context for its wording."""

    kind: Kind
    evidence: str
    context: dict
    base: object = None  # the structural finding it came from, if any


class FixNotTried(Exception):
    """The suspect's fix cannot be tried on the trial's windows; the message says why, plainly.

    Not a failure of the check: the diagnosis adds the message to the suspect's evidence
    ("Not tried: ...") instead of reporting a check that could not run.
    """


@dataclasses.dataclass
class Outcome:
    """What trying a suspect's fix showed."""

    confirmed: bool
    text: str
    gain: float
    code: str | None = None  # the finding's code when the trial names another cause


def suspects_after_fit(
    model, loss, train, held_out, *, history: dict, found_codes, class_scores, steps_per_window
) -> list[Suspect]:
    """The setup kinds that may explain a failed fit, each with the evidence that raised it.

    Args:
      model: the trained model.
      loss: the training loss.
      train, held_out: `(inputs, targets)` (targets in the model's output layout).
      history: the run's per-step arrays (`loss`).
      found_codes: codes already found (structural checks, run checks).
      class_scores: `classification_scores` on the held-out windows, or None.
      steps_per_window: the input window length.
    """
    out = []
    recurrent = recurrent_activation_evidence(model, held_out[0][: probes_lib_samples()])
    if recurrent is not None:
        out.append(Suspect(RECURRENT_ACTIVATION, recurrent[0], {"layer": recurrent[1]}))
    falling = None
    probe_loss = np.asarray(history.get("probe_loss", []), np.float64)
    validation = np.asarray(history.get("val_loss", []), np.float64)
    if probe_loss.size >= 6:
        # The probes' loss on one fixed batch (held-out windows when there are any): the
        # curve without minibatch noise.
        falling = still_falling(probe_loss)
        curve = "the probe batch's loss (held-out windows, every few steps)"
    else:
        falling = still_falling(history.get("loss", []))
        curve = "the training loss"
        if falling is not None and validation.size >= 6 and still_falling(validation) is None:
            falling = None  # the training loss falls, the validation loss does not
    if falling is not None and probe_loss.size >= 6:
        falling["steps"] = int(np.asarray(history.get("loss", probe_loss)).size)
    if falling is not None and "learning_rate_too_low" not in found_codes:
        out.append(
            Suspect(
                STOPPED_EARLY,
                f"over the last half of the run ({falling['steps']} steps) {curve} fell "
                f"from {falling['first']:.4g} to {falling['last']:.4g}; its slope against its "
                f"own noise: t = {falling['t']:.1f} over {falling['blocks']} points (one-sided "
                f"test at {SLOPE_ALPHA:g}: still falling).",
                {"steps_more": max(4 * falling["steps"], 1000)},
            )
        )
    if class_scores is not None and class_scores["collapsed"]:
        counts = np.asarray(class_scores["train_counts"], np.float64)
        counts = counts[counts > 0]
        p_value = chi_square_uniform_p(counts) if len(counts) >= 2 else 1.0
        if p_value < IMBALANCE_ALPHA:
            weights = {
                c: round(float(counts.sum() / (len(counts) * n)), 2) for c, n in enumerate(counts)
            }
            out.append(
                Suspect(
                    CLASS_IMBALANCE,
                    _class_text(class_scores)
                    + f" Training classes {class_scores['train_counts']} (chi-square "
                    f"against equal classes p = {p_value:.2g}).",
                    {"weights": weights},
                )
            )
    series = stitched_series(train[0])
    if series is not None and steps_per_window >= 2:
        lags, partial = _target_lags(series, train, steps_per_window)
        if lags:
            lag = max(lags)
            shown = ", ".join(f"lag {k}: {partial[k]:+.2f}" for k in lags[:5])
            out.append(
                Suspect(
                    WINDOW_SHORT,
                    f"the windows hold {steps_per_window} steps, but the series' partial "
                    f"autocorrelation is significant beyond them ({shown}; band "
                    f"{_band(len(series), 3 * steps_per_window, lag):.2f}, Bonferroni at "
                    f"{PACF_ALPHA:g}).",
                    {"steps_needed": lag + 1, "lag": lag},
                )
            )
    return out


def probes_lib_samples() -> int:
    return 256


def _band(n, max_lag, _lag) -> float:
    max_lag = max(1, min(int(max_lag), n // 3))
    z = statistics.NormalDist().inv_cdf(1 - PACF_ALPHA / (2 * max_lag))
    return max(z / math.sqrt(n), PACF_MIN)


def _target_lags(series, train, steps):
    # The target column: the feature whose next value is each window's target.
    x = np.asarray(train[0], np.float64)
    y = np.asarray(train[1], np.float64).reshape(len(x), -1)
    column = None
    scale = max(1.0, float(np.abs(y).max()))
    for f in range(x.shape[-1]):
        if y.shape[1] >= 1 and np.mean(np.abs(x[1:, -1, f] - y[:-1, 0]) <= 1e-5 * scale) >= 0.9:
            column = f
            break
    if column is None:
        return [], np.zeros(0)
    max_lag = max(3 * steps, steps + 10)
    return significant_lags(series[:, column], beyond=steps, max_lag=max_lag)


def _class_text(scores: dict) -> str:
    return (
        f"on held-out windows the most predicted class takes {scores['predicted_share']:.0%} "
        f"of the predictions; balanced accuracy {scores['balanced_accuracy']:.3f} against "
        f"chance {scores['chance']:.3f} (standard error at chance {scores['se_chance']:.3f}); "
        f"accuracy {scores['accuracy']:.3f} against {scores['majority_accuracy']:.3f} for "
        f"always predicting the majority class {scores['majority_class']}."
    )


def class_collapse_finding(scores: dict, score: float):
    """The `class_collapse` symptom: one class for everything (balanced accuracy at chance)."""
    from lstmcore.diagnosis import Finding

    return Finding(
        CLASS_COLLAPSE_CODE,
        "The classifier predicts (nearly) one class for everything",
        "This is the symptom; the findings ranked above it are its likely causes.",
        _class_text(scores),
        "Fix the cause ranked first.",
        score,
    )


def _loss_of(model, held_out, fn) -> float:
    from lstmcore import baselines as baselines_lib

    predictions = baselines_lib.model_predictions(
        model, np.asarray(held_out[0], np.float32), keep_shape=True
    )
    value = float(
        probes_lib.mean_loss(fn, tf.constant(np.asarray(held_out[1], np.float32)), predictions)
    )
    return value if np.isfinite(value) else math.inf


def _ba_of(model, held_out, loss) -> tuple[float, float, float]:
    scores = classification_scores(model, held_out[0], held_out[1], loss)
    if scores is None:
        return math.nan, math.nan, math.nan
    return scores["balanced_accuracy"], scores["se"], scores["se_chance"]


def _ba_confirms(fixed, control) -> tuple[bool, float]:
    if not np.isfinite(fixed[0]) or not np.isfinite(control[0]):
        return False, 0.0
    margin = CHANCE_SE * max(math.hypot(fixed[1], control[1]), control[2] / 2)
    gain = (fixed[0] - control[0]) / max(1.0 - control[0], 1e-9)
    return fixed[0] - control[0] > margin, max(0.0, min(gain, 1.0))


def _train(name, replica, context, fn, steps, *, train=None, held=None, setting=None, loss=None):
    setting = setting or context.setting
    return interventions_lib.run_trial(
        name,
        replica,
        train or context.train,
        held or context.held_out,
        fn if loss is None else loss,
        steps=steps,
        batch_size=setting.batch_size,
        learning_rate=setting.learning_rate,
        optimizer=setting.optimizer,
        clip_norm=setting.clip_norm,
        warmup_steps=setting.warmup_steps,
    )


def _fix_works(trial, control_loss, mean_loss) -> bool:
    # Clearly better than the trained model, and better than predicting the mean: a copy
    # that only drifts back to the mean from an overfit model has not shown a cause.
    return interventions_lib.confirms(trial, control_loss, mean_loss) and (
        trial.loss < BEATS_MEAN * mean_loss
    )


def _loss_outcome(trial, control_loss, mean_loss, run_steps) -> Outcome:
    ok = _fix_works(trial, control_loss, mean_loss)
    gain = 0.0
    if np.isfinite(trial.loss):
        gain = 1.0 if not np.isfinite(control_loss) else max(0.0, 1 - trial.loss / control_loss)
    return Outcome(ok, interventions_lib.describe(trial, control_loss, run_steps), gain)


def try_fix(
    suspect: Suspect, context, loss, *, control_loss, mean_loss, run_steps, steps
) -> Outcome:
    """Tries `suspect`'s fix on a copy for `steps` steps; "confirmed" only when it clearly helps.

    Args:
      suspect: from `suspects_after_fit` (or a structural finding turned into one).
      context: `lstmcore.interventions.Context` (the trained model, the trial windows with
        targets in the model's layout, the run's setting).
      loss: the training loss; control_loss, mean_loss: the trained model's and the mean
        prediction's held-out loss on `context.held_out`.
      run_steps: the run's length, for the wording.
      steps: the trial's optimizer steps.
    """
    fn = probes_lib.as_loss_fn(loss)
    model, code = context.model, suspect.kind.code
    sample = context.train[0]
    if code == RECURRENT_ACTIVATION.code:
        trial = _train(
            "activation='tanh' in the recurrent cells",
            with_cell_activation(model, "tanh", sample),
            context,
            fn,
            steps,
        )
        return _loss_outcome(trial, control_loss, mean_loss, run_steps)
    if code == STOPPED_EARLY.code:
        return _continue(context, fn, control_loss, mean_loss, run_steps, steps)
    if code == CLASS_IMBALANCE.code:
        replica = interventions_lib.copy_model(model, sample_input=sample)
        out_shape = model(np.asarray(sample[:1], np.float32), training=False).shape
        labels = read_labels(context.train[1], out_shape, loss)
        counts = np.bincount(labels.truth, minlength=labels.classes).astype(np.float64)
        weights = np.where(
            counts > 0, counts.sum() / (np.count_nonzero(counts) * np.maximum(counts, 1)), 0.0
        )
        trial = _train(
            "class weights (inverse frequency)",
            replica,
            context,
            fn,
            steps,
            loss=weighted_loss(fn, labels, weights, out_shape),
        )
        return _ba_outcome(trial.name, replica, model, context, loss, trial.steps)
    if code == WINDOW_SHORT.code:
        return _longer_window(suspect, context, fn, loss, mean_loss, run_steps, steps)
    if code == OUTPUT_RANGE.code:
        labels = read_labels(
            context.train[1], model(np.asarray(sample[:1], np.float32)).shape, loss
        )
        head, _wording = right_head(labels, loss)
        replica = with_output_activation(model, None if head == "linear" else head, sample)
        trial = _train(f"output activation {head}", replica, context, fn, steps)
        return _loss_outcome(trial, control_loss, mean_loss, run_steps)
    if code == LOSS_MISMATCH.code:
        return _right_loss(context, loss, steps)
    raise ValueError(f"no fix for {code!r}")


def _ba_outcome(name, replica, model, context, loss, steps_taken) -> Outcome:
    fixed = _ba_of(replica, context.held_out, loss)
    control = _ba_of(model, context.held_out, loss)
    ok, gain = _ba_confirms(fixed, control)
    return Outcome(
        ok,
        f"tried on a copy ({name}): held-out balanced accuracy {control[0]:.3f} (the trained "
        f"model) -> {fixed[0]:.3f} in {steps_taken} steps (a clear gain is above "
        f"{CHANCE_SE:g} standard errors)",
        gain,
    )


def _continue(context, fn, control_loss, mean_loss, run_steps, steps) -> Outcome:
    model, sample = context.model, context.train[0]
    rate = context.setting.learning_rate

    def continued(factor):
        replica = interventions_lib.copy_model(model, sample_input=sample)
        replica.set_weights(model.get_weights())
        setting = dataclasses.replace(context.setting, learning_rate=rate * factor, warmup_steps=0)
        label = "the trained weights, training continued" + (
            f" at {factor}x the learning rate ({rate * factor:.3g})" if factor != 1 else ""
        )
        return _train(label, replica, context, fn, steps, setting=setting)

    same = continued(1)
    outcome = _loss_outcome(same, control_loss, mean_loss, run_steps)
    faster = continued(10)
    faster_text = f"ten times the learning rate ({rate * 10:.3g}) gave {faster.loss:.4g}"
    if outcome.confirmed:
        # Continuing as it was clearly helps: the run's length is the cause named, the
        # smallest change that works.
        return Outcome(True, f"{outcome.text}; {faster_text}", outcome.gain)
    if np.isfinite(faster.loss) and _fix_works(faster, control_loss, mean_loss):
        # More progress from the trained weights clearly helps (ten times the rate makes in
        # the trial's steps the progress of ten times the steps). Below the optimizer's
        # default rate, the rate is what held the run back; at or above it, the length.
        gain = max(0.0, 1 - faster.loss / control_loss) if np.isfinite(control_loss) else 1.0
        default = DEFAULT_RATES.get(context.setting.optimizer, DEFAULT_RATE)
        if rate < default:
            return Outcome(
                True,
                f"{outcome.text}, not clearly better; {faster_text}, clearly better, and the "
                f"run's rate is below {context.setting.optimizer}'s default {default:g}: the "
                "rate, not the length, held the run back",
                gain,
                code="learning_rate_too_low",
            )
        return Outcome(
            True,
            f"{outcome.text}; {faster_text}, clearly better: more progress from the trained "
            f"weights helps, and the run's rate is not below {context.setting.optimizer}'s "
            f"default {default:g}, so the run needs more steps",
            gain,
        )
    return Outcome(False, f"{outcome.text}; {faster_text}", outcome.gain)


def _longer_window(suspect, context, fn, loss, mean_loss, run_steps, steps) -> Outcome:
    model = context.model
    old = int(np.shape(context.train[0])[1])
    new = int(suspect.context["steps_needed"])
    pieces = []
    for split, (x, y) in (("training", context.train), ("held-out", context.held_out)):
        series = stitched_series(x)
        if series is None:
            # The trial's training windows are a sample of at most TRIAL_TRAIN_WINDOWS, and
            # windows cut with a stride above 1 share no rows: neither gives back a series.
            raise FixNotTried(
                f"the trial's {len(x)} {split} windows are not consecutive stride-1 windows, "
                f"so no {new}-step windows can be cut from them"
            )
        if len(series) < new + 10:
            raise FixNotTried(
                f"the {len(x)} {split} windows span {len(series)} rows, too few for {new}-step "
                f"windows (the trial needs at least {new + 10})"
            )
        extra = new - old
        count = len(x) - extra
        longer = np.stack([series[i : i + new] for i in range(count)]).astype(np.float32)
        pieces.append((longer, np.asarray(y, np.float32)[extra:]))
    train, held = pieces
    control = _loss_of(model, (np.asarray(context.held_out[0])[new - old :], held[1]), fn)
    replica = copy_with(model, steps=new, sample_input=train[0])
    trial = _train(
        f"windows of {new} steps instead of {old}",
        replica,
        context,
        fn,
        steps,
        train=train,
        held=held,
    )
    same = _train(
        f"a fresh copy on the {old}-step windows",
        interventions_lib.copy_model(model, sample_input=context.train[0]),
        context,
        fn,
        steps,
        train=(np.asarray(context.train[0])[new - old :], train[1]),
        held=(np.asarray(context.held_out[0])[new - old :], held[1]),
    )
    # The longer window must beat both the trained model and a fresh copy trained as long on
    # the short windows: only then is the window, not the training, what was missing.
    reference = min(control, same.loss)
    outcome = _loss_outcome(trial, reference, mean_loss, run_steps)
    return Outcome(
        outcome.confirmed,
        f"{outcome.text}; a fresh copy trained as long on the {old}-step windows: {same.loss:.4g}",
        outcome.gain,
    )


def _right_loss(context, loss, steps) -> Outcome:
    model, sample = context.model, context.train[0]
    name = loss_name(loss)
    y = np.asarray(context.train[1], np.float64)
    out_shape = model(np.asarray(sample[:1], np.float32), training=False).shape
    one_hot = np.isin(y, (0.0, 1.0)).all() and y.shape[-1] >= 2 and np.all(y.sum(axis=-1) == 1)
    if one_hot:
        head, right, metric = "softmax", "categorical_crossentropy", "balanced accuracy"
    elif name == "categorical_crossentropy" and y.shape[-1] == 1 and np.isin(y, (0.0, 1.0)).all():
        head, right, metric = "sigmoid", "binary_crossentropy", "balanced accuracy"
    else:
        head, right, metric = None, "mean_squared_error", "mse"
    replica = with_output_activation(model, head, sample)
    fn = probes_lib.as_loss_fn(right)
    trial = _train(
        f"loss {right}, output activation {head or 'linear'}", replica, context, fn, steps
    )
    if metric == "mse":
        mse = probes_lib.as_loss_fn("mse")
        fixed, control = (
            _loss_of(replica, context.held_out, mse),
            _loss_of(model, context.held_out, mse),
        )
        variance = float(np.var(y))
        ok = (
            fixed < interventions_lib.CONFIRM_RATIO * control
            and control - fixed > interventions_lib.CONFIRM_MARGIN * variance
        )
        return Outcome(
            ok,
            f"tried on a copy ({trial.name}): held-out MSE {control:.4g} (the trained model) -> {fixed:.4g} in {trial.steps} steps",
            max(0.0, 1 - fixed / control) if control > 0 else 0.0,
        )
    del out_shape
    return _ba_outcome(
        trial.name,
        replica,
        model,
        context,
        right if one_hot else "binary_crossentropy",
        trial.steps,
    )
