"""Vanishing gradients: input-gradient profiles over time and long-memory tasks, RNN vs GRU vs LSTM inits.

Models (:data:`MODELS`): ``keras.layers.SimpleRNN``, ``keras.layers.GRU`` and
``lstmcore.layers.LSTM`` with three initialisations of the gate biases (Keras layout: gates
i, f, c, o):

- ``lstm_bias0``: all biases 0,
- ``lstm_bias1``: forget-gate bias 1 (Keras's ``unit_forget_bias``; Jozefowicz et al. 2015),
- ``lstm_chrono``: chrono initialisation (Tallec & Ollivier 2018): forget bias
  ``b_f ~ log(U[1, T_max - 1])``, input bias ``b_i = -b_f``, with ``T_max`` the task's length.

Two measurements:

1. **Gradient profile.** For a model with a Dense(1) head on the last step, on an adding-problem
   batch, ``g(d) = mean over the batch of ||dL/dx_{T-1-d}||``: the norm of the gradient of the
   MSE loss with respect to the input ``d`` steps before the loss. Profiles are normalised by
   ``g(0)`` and averaged over seeds. The *effective memory horizon* is the first ``d`` with
   ``g(d) / g(0) < 0.01`` (reported as ``>= T-1`` when that never happens). Taken at
   initialisation for every length in the preset, and before and after training on the adding
   problem (clipping and warmup on).
2. **Long-memory tasks**, trained with ``lstmcore.train`` for a fixed step budget, at increasing
   ``T``; a model stops at the first ``T`` it does not solve:

   - adding problem (Hochreiter & Schmidhuber 1997, in the form of Le et al. 2015): inputs
     ``[T, 2]`` (a value ~ U[0, 1] and a marker), one marker in each half, target the sum of
     the two marked values. Predicting the mean scores MSE 1/6 ~ 0.167; solved: held-out MSE
     below 0.01.
   - copy memory (after Arjovsky et al. 2016, shortened): 5 symbols of 8, then ``T - 1``
     blanks and a delimiter, then 5 blanks during which the model must output the 5 symbols.
     The loss (cross-entropy) is taken on those 5 outputs only; chance accuracy is 1/8; solved:
     held-out per-symbol accuracy at least 0.95.

   Each at two settings: ``clip+warmup`` (global-norm clipping at 1.0, linear warmup over the
   first 10% of steps) and ``plain`` (neither); lstmcore's probes and post-run diagnosis are
   off, so the budget is training steps only. "Steps to criterion" is the first step at
   which the 20-step running mean of the training loss falls below the criterion (adding: MSE
   0.01; copy: cross-entropy 0.1).

    CUDA_VISIBLE_DEVICES=-1 python -m benchmarks.vanishing --preset cpu --out benchmarks/results
    python -m benchmarks.vanishing --device gpu --preset gpu --out benchmarks/results
    python -m benchmarks.vanishing --preset smoke --out /tmp/bench     # seconds, for tests

Writes ``vanishing_<tag>.jsonl``, ``vanishing_<tag>.md``, ``vanishing_<tag>_profiles.png`` and
``vanishing_<tag>_trained.png`` (with matplotlib), and TensorBoard events under
``<tensorboard>/vanishing_<tag>`` (profiles; each training run's own lstmcore events under
``train/``).
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import time

import numpy as np

from . import common, problems

MODELS = ("simple_rnn", "gru", "lstm_bias0", "lstm_bias1", "lstm_chrono")
SETTINGS = {
    # name -> lstmcore.train options.
    "clip+warmup": {"clip": "global_norm", "clip_norm": 1.0, "warmup_fraction": 0.1},
    "plain": {"clip": None, "clip_norm": 1.0, "warmup_fraction": None},
}
HORIZON_FRACTION = 0.01
ADDING_CRITERION_MSE = 0.01
COPY_SYMBOLS, COPY_LENGTH = 8, 5
COPY_CRITERION_ACCURACY, COPY_CRITERION_LOSS = 0.95, 0.1
SMOOTHING_STEPS = 20


def adding_problem(samples: int, length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The adding problem: inputs ``[N, T, 2]`` (value, marker), targets ``[N, 1]``.

    One marker lies in the first ``T // 2`` steps and one in the rest; the target is the sum
    of the two marked values, so predicting the mean (1.0) scores MSE ``2 / 12``.

    References: Hochreiter & Schmidhuber 1997; Le, Jaitly & Hinton 2015.
    """
    rng = np.random.default_rng(seed)
    values = rng.uniform(size=(samples, length)).astype(np.float32)
    first = rng.integers(0, length // 2, size=samples)
    second = rng.integers(length // 2, length, size=samples)
    markers = np.zeros((samples, length), np.float32)
    markers[np.arange(samples), first] = 1.0
    markers[np.arange(samples), second] = 1.0
    targets = (values * markers).sum(axis=1, keepdims=True).astype(np.float32)
    return np.stack([values, markers], axis=-1), targets


def copy_problem(samples: int, length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Copy memory: inputs ``[N, T + 2S, K + 2]`` one-hot, targets ``[N, S, K]`` one-hot.

    ``S = COPY_LENGTH`` symbols out of ``K = COPY_SYMBOLS``, then ``T - 1`` blanks (id K), a
    delimiter (id K + 1) and ``S`` blanks during which the symbols are to be recalled.

    References: Hochreiter & Schmidhuber 1997; Arjovsky, Shah & Bengio 2016.
    """
    rng = np.random.default_rng(seed)
    symbols = rng.integers(0, COPY_SYMBOLS, size=(samples, COPY_LENGTH))
    ids = np.full((samples, length + 2 * COPY_LENGTH), COPY_SYMBOLS)
    ids[:, :COPY_LENGTH] = symbols
    ids[:, COPY_LENGTH + length - 1] = COPY_SYMBOLS + 1
    inputs = np.eye(COPY_SYMBOLS + 2, dtype=np.float32)[ids]
    return inputs, np.eye(COPY_SYMBOLS, dtype=np.float32)[symbols]


def copy_loss(targets, logits):
    """Per-sample, per-position cross-entropy ``[B, S]`` of the recalled symbols."""
    import keras

    return keras.losses.categorical_crossentropy(targets, logits, from_logits=True)


def chrono_bias(t_max: int, seed: int):
    """A bias initialiser for a ``[4H]`` LSTM bias (gates i, f, c, o): chrono initialisation.

    ``b_f ~ log(U[1, t_max - 1])``, ``b_i = -b_f``, ``b_c = b_o = 0``.

    References: Tallec & Ollivier 2018, "Can recurrent neural networks warp time?".
    """
    import keras

    def initializer(shape, dtype=None):
        units = shape[0] // 4
        rng = np.random.default_rng(seed)
        forget = np.log(rng.uniform(1.0, max(t_max - 1.0, 1.0 + 1e-6), size=units))
        bias = np.concatenate([-forget, forget, np.zeros(2 * units)]).astype(np.float32)
        return keras.ops.convert_to_tensor(bias, dtype=dtype or "float32")

    return initializer


def recurrent_layer(name: str, units: int, *, t_max: int, seed: int, return_sequences: bool):
    """The recurrent layer of model ``name`` (one of :data:`MODELS`)."""
    import keras

    from lstmcore.layers import LSTM

    if name == "simple_rnn":
        return keras.layers.SimpleRNN(units, return_sequences=return_sequences)
    if name == "gru":
        return keras.layers.GRU(units, return_sequences=return_sequences)
    if name == "lstm_bias0":
        return LSTM(units, unit_forget_bias=False, return_sequences=return_sequences)
    if name == "lstm_bias1":
        return LSTM(units, unit_forget_bias=True, return_sequences=return_sequences)
    if name == "lstm_chrono":
        return LSTM(
            units,
            unit_forget_bias=False,
            bias_initializer=chrono_bias(t_max, seed),
            return_sequences=return_sequences,
        )
    raise ValueError(f"model must be one of {MODELS}; got {name!r}")


def build_model(name: str, task: str, length: int, units: int, seed: int):
    """``name``'s recurrent layer with the task's head, initialised from ``seed``."""
    import keras

    keras.utils.set_random_seed(seed)
    if task == "adding":
        layer = recurrent_layer(name, units, t_max=length, seed=seed, return_sequences=False)
        return keras.Sequential([keras.Input((length, 2)), layer, keras.layers.Dense(1)])
    if task == "copy":
        total = length + 2 * COPY_LENGTH
        layer = recurrent_layer(name, units, t_max=total, seed=seed, return_sequences=True)
        return keras.Sequential(
            [
                keras.Input((total, COPY_SYMBOLS + 2)),
                layer,
                keras.layers.Cropping1D((total - COPY_LENGTH, 0)),
                keras.layers.Dense(COPY_SYMBOLS),
            ]
        )
    raise ValueError(f"task must be 'adding' or 'copy'; got {task!r}")


def input_gradient_profile(model, inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``g(d)``, ``d = 0 .. T-1``: batch-mean norm of dMSE/dx at ``d`` steps before the loss.

    Args:
      model: maps ``[B, T, F]`` to ``[B, 1]``.
      inputs: ``[B, T, F]``.
      targets: ``[B, 1]``.

    Returns:
      ``[T]`` float64, index ``d`` is the step ``T - 1 - d``.
    """
    import tensorflow as tf

    @tf.function
    def gradient(x, y):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_mean(tf.square(model(x, training=False) - y))
        return tape.gradient(loss, x)

    grads = gradient(tf.constant(inputs), tf.constant(targets)).numpy().astype(np.float64)
    return np.linalg.norm(grads, axis=-1).mean(axis=0)[::-1]


def memory_horizon(ratio: np.ndarray, fraction: float = HORIZON_FRACTION) -> int | None:
    """The first distance ``d`` with ``ratio[d] < fraction``; None when there is none.

    Args:
      ratio: ``g(d) / g(0)``, ``[T]``.
      fraction: the threshold.
    """
    below = np.nonzero(np.asarray(ratio) < fraction)[0]
    return int(below[0]) if len(below) else None


def _normalised(profile: np.ndarray) -> np.ndarray:
    return profile / profile[0] if profile[0] > 0 else np.full_like(profile, np.nan)


def profile_at_init(name: str, length: int, preset: dict) -> dict:
    """Seed-averaged normalised profile and horizon of ``name`` at initialisation."""
    ratios = []
    for seed in preset["seeds"]:
        model = build_model(name, "adding", length, preset["units"], seed)
        inputs, targets = adding_problem(preset["batch"], length, seed=10_000 + seed)
        ratios.append(_normalised(input_gradient_profile(model, inputs, targets)))
    mean = np.mean(ratios, axis=0)
    return {
        "kind": "profile",
        "stage": "init",
        "model": name,
        "T": length,
        "seeds": list(preset["seeds"]),
        "horizon": memory_horizon(mean),
        "horizon_per_seed": [memory_horizon(r) for r in ratios],
        "ratio": [float(v) for v in mean],
    }


def _steps_to_criterion(losses: np.ndarray, criterion: float) -> int | None:
    if len(losses) < SMOOTHING_STEPS:
        return None
    smooth = np.convolve(losses, np.ones(SMOOTHING_STEPS) / SMOOTHING_STEPS, mode="valid")
    below = np.nonzero(smooth < criterion)[0]
    return int(below[0] + SMOOTHING_STEPS) if len(below) else None


def train_task(name: str, task: str, length: int, setting: str, preset: dict, logdir: str) -> dict:
    """Trains ``name`` on ``task`` at ``length`` with ``lstmcore.train``; returns one result row."""
    import lstmcore

    seed = preset["seeds"][0]
    make = adding_problem if task == "adding" else copy_problem
    train_x, train_y = make(preset["train_samples"], length, seed=seed)
    eval_x, eval_y = make(preset["eval_samples"], length, seed=20_000 + seed)
    model = build_model(name, task, length, preset["units"], seed)
    before = None
    if task == "adding" and setting == "clip+warmup":
        before = _normalised(
            input_gradient_profile(model, eval_x[: preset["batch"]], eval_y[: preset["batch"]])
        )
    options = SETTINGS[setting]
    steps = preset["train_steps"]
    started = time.perf_counter()
    history = lstmcore.train(
        model,
        (train_x, train_y),
        loss="mse" if task == "adding" else copy_loss,
        steps=steps,
        batch_size=preset["batch"],
        learning_rate=preset["learning_rate"],
        warmup_steps=None
        if options["warmup_fraction"] is None
        else max(1, int(options["warmup_fraction"] * steps)),
        clip=options["clip"],
        clip_norm=options["clip_norm"],
        logdir=logdir,
        run_name=f"{task}_T{length}_{name}_{setting}",
        progress=False,
        flush_every=100,
        validate_every=steps,
        checkpoint_every=steps,
        max_consecutive_skips=steps,
        # Training only: lstmcore's probes and diagnosis would add their own work to the budget.
        probe_every=None,
        check=False,
    )
    seconds = time.perf_counter() - started
    predictions = model.predict(eval_x, batch_size=256, verbose=0)
    if task == "adding":
        metric = float(np.mean((predictions - eval_y) ** 2))
        solved = metric < ADDING_CRITERION_MSE
        criterion_loss = ADDING_CRITERION_MSE
    else:
        metric = float(np.mean(predictions.argmax(-1) == eval_y.argmax(-1)))
        solved = metric >= COPY_CRITERION_ACCURACY
        criterion_loss = COPY_CRITERION_LOSS
    losses = np.asarray(history["loss"], np.float64)
    row = {
        "kind": "task",
        "task": task,
        "model": name,
        "T": length,
        "setting": setting,
        "steps": steps,
        "batch": preset["batch"],
        "units": preset["units"],
        "learning_rate": preset["learning_rate"],
        "heldout_metric": "mse" if task == "adding" else "accuracy",
        "heldout_value": metric,
        "solved": bool(solved),
        "steps_to_criterion": _steps_to_criterion(losses, criterion_loss),
        "final_train_loss_mean20": float(losses[-SMOOTHING_STEPS:].mean()) if len(losses) else None,
        "clipped_fraction": float(np.mean(history["clipped"])) if len(losses) else None,
        "skipped_steps": int(np.sum(history["skipped"])) if len(losses) else 0,
        "seconds": seconds,
        "stopped": history.stopped,
    }
    if before is not None:
        after = _normalised(
            input_gradient_profile(model, eval_x[: preset["batch"]], eval_y[: preset["batch"]])
        )
        row["profile_before"] = [float(v) for v in before]
        row["profile_after"] = [float(v) for v in after]
        row["horizon_before"] = memory_horizon(before)
        row["horizon_after"] = memory_horizon(after)
    return row


def _horizon_text(horizon: int | None, length: int) -> str:
    return f">= {length - 1}" if horizon is None else str(horizon)


def write_markdown(
    path: str, rows: list[dict], env: dict, preset_name: str, preset: dict, notes: list[str]
) -> None:
    profiles = [r for r in rows if r["kind"] == "profile"]
    tasks = [r for r in rows if r["kind"] == "task"]
    lengths = preset["profile_lengths"]
    lines = [
        f"# Vanishing gradients and long memory ({env['device']})",
        "",
        *common.environment_lines(env),
    ]
    lines += [
        f"- Preset `{preset_name}`: {json_line(preset)}",
        *[f"- {note}" for note in notes],
        "",
        "## Effective memory horizon at initialisation",
        "",
        (
            f"Steps back from the loss until the input-gradient norm falls below {HORIZON_FRACTION:.0%} of its value "
            f"at the last step (seed-averaged profile over seeds {preset['seeds']}; Dense(1) head, MSE, adding-problem "
            f"batch of {preset['batch']}; `>= T-1`: never within the sequence)."
        ),
        "",
    ]
    table = []
    for name in MODELS:
        cells = []
        for length in lengths:
            row = next((r for r in profiles if r["model"] == name and r["T"] == length), None)
            cells.append(None if row is None else _horizon_text(row["horizon"], length))
        table.append([name, *cells])
    lines += common.markdown_table(["model", *[f"T={t}" for t in lengths]], table)
    trained = [r for r in tasks if "horizon_after" in r]
    if trained:
        lines += [
            "",
            "## Horizon before and after training (adding problem, clip+warmup, seed 0)",
            "",
        ]
        lines += common.markdown_table(
            ["model", "T", "before", "after", "solved"],
            [
                [
                    r["model"],
                    r["T"],
                    _horizon_text(r["horizon_before"], r["T"]),
                    _horizon_text(r["horizon_after"], r["T"]),
                    r["solved"],
                ]
                for r in trained
            ],
        )
    lines += [
        "",
        "## Longest T solved within the step budget",
        "",
        (
            f"{preset['train_steps']} steps of batch {preset['batch']}, {preset['units']} units, Adam at "
            f"{preset['learning_rate']}, seed {preset['seeds'][0]}; T tried: {preset['task_lengths']} (a model stops at "
            "the first T it fails). Cell: longest T solved (steps to criterion at that T; n/a: held-out "
            "criterion met but the 20-step training-loss mean never was), `-` none solved."
        ),
        "",
    ]
    columns = [
        (task, setting)
        for task in preset["tasks"]
        for setting in preset.get("settings", list(SETTINGS))
    ]
    table = []
    for name in [m for m in MODELS if any(r["model"] == m for r in tasks)]:
        cells = []
        for task, setting in columns:
            solved = [
                r
                for r in tasks
                if r["model"] == name
                and r["task"] == task
                and r["setting"] == setting
                and r["solved"]
            ]
            if not solved:
                cells.append("-")
                continue
            best = max(solved, key=lambda r: r["T"])
            steps = best["steps_to_criterion"]
            cells.append(f"{best['T']} ({'n/a' if steps is None else steps})")
        table.append([name, *cells])
    lines += common.markdown_table(
        ["model", *[f"{task}, {setting}" for task, setting in columns]], table
    )
    lines += ["", "## Every training run", ""]
    lines += common.markdown_table(
        [
            "task",
            "setting",
            "model",
            "T",
            "held-out",
            "solved",
            "steps to criterion",
            "last-20 train loss",
            "clipped",
            "seconds",
        ],
        [
            [
                r["task"],
                r["setting"],
                r["model"],
                r["T"],
                f"{r['heldout_metric']} {r['heldout_value']:.4f}",
                r["solved"],
                r["steps_to_criterion"],
                _fmt(r["final_train_loss_mean20"], ".4f"),
                _fmt(r["clipped_fraction"], ".2f"),
                f"{r['seconds']:.1f}",
            ]
            for r in tasks
        ],
    )
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def _fmt(value, spec):
    return None if value is None else format(value, spec)


def json_line(value) -> str:
    import json

    return "`" + json.dumps(value) + "`"


def write_plots(base: str, rows: list[dict], env: dict) -> bool:
    plt = common.pyplot()
    if plt is None:
        return False
    profiles = [r for r in rows if r["kind"] == "profile"]
    lengths = sorted({r["T"] for r in profiles})
    fig, axes = plt.subplots(1, len(lengths), figsize=(4 * len(lengths), 3.6), squeeze=False)
    for ax, length in zip(axes[0], lengths):
        for r in profiles:
            if r["T"] == length:
                ax.semilogy(np.maximum(np.asarray(r["ratio"], float), 1e-30), label=r["model"])
        ax.axhline(HORIZON_FRACTION, color="grey", lw=0.8, ls=":")
        ax.set_title(f"T={length}, at initialisation", fontsize=9)
        ax.set_xlabel("steps before the loss")
        ax.set_ylim(1e-12, 10)
    axes[0][0].set_ylabel("||dL/dx_t|| / ||dL/dx_T||")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Input-gradient profiles, {env['device']}, {env['date'][:10]}", fontsize=9)
    fig.tight_layout()
    fig.savefig(base + "_profiles.png", dpi=100)
    plt.close(fig)
    trained = [r for r in rows if r["kind"] == "task" and "profile_after" in r]
    if trained:
        lengths = sorted({r["T"] for r in trained})
        fig, axes = plt.subplots(1, len(lengths), figsize=(4 * len(lengths), 3.6), squeeze=False)
        for ax, length in zip(axes[0], lengths):
            for k, r in enumerate(x for x in trained if x["T"] == length):
                color = f"C{MODELS.index(r['model'])}"
                ax.semilogy(
                    np.maximum(np.asarray(r["profile_before"], float), 1e-30),
                    color=color,
                    ls="--",
                    lw=0.8,
                )
                ax.semilogy(
                    np.maximum(np.asarray(r["profile_after"], float), 1e-30),
                    color=color,
                    label=r["model"],
                )
            ax.axhline(HORIZON_FRACTION, color="grey", lw=0.8, ls=":")
            ax.set_title(f"adding, T={length}: before (dashed) / after training", fontsize=8)
            ax.set_xlabel("steps before the loss")
            ax.set_ylim(1e-12, 10)
        axes[0][0].set_ylabel("||dL/dx_t|| / ||dL/dx_T||")
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(base + "_trained.png", dpi=100)
        plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> list[dict]:
    """Runs the vanishing-gradient benchmark; returns the rows it wrote.

    Args:
      argv: command-line arguments; None reads ``sys.argv``.
    """
    parser = argparse.ArgumentParser(
        prog="benchmarks.vanishing", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--preset", default="cpu", choices=sorted(problems.VANISHING_PRESETS))
    parser.add_argument(
        "--device",
        default="cpu",
        choices=("cpu", "gpu"),
        help="cpu hides the GPU from this process",
    )
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--tag", default=None, help="file-name tag (default: cpu<N>core or gpu)")
    parser.add_argument(
        "--tensorboard", default=None, help="TensorBoard directory (default: <out>/tensorboard)"
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument(
        "--skip-tasks", action="store_true", help="gradient profiles at initialisation only"
    )
    parser.add_argument(
        "--note",
        action="append",
        default=[],
        help="a line to add to the Markdown notes (repeatable)",
    )
    args = parser.parse_args(argv)
    command = "python -m benchmarks.vanishing " + shlex.join(sys.argv[1:] if argv is None else argv)
    common.select_device(args.device)

    preset = problems.VANISHING_PRESETS[args.preset]
    env = common.environment(command)
    tag = args.tag or (f"cpu{os.cpu_count()}core" if args.device == "cpu" else "gpu")
    os.makedirs(args.out, exist_ok=True)
    tb_root = os.path.join(
        args.tensorboard or os.path.join(args.out, "tensorboard"), f"vanishing_{tag}"
    )
    tensorboard = common.ScalarWriter(os.path.join(tb_root, "profiles"))
    notes = list(args.note)
    if args.device == "cpu":
        notes.append("GPU numbers are not measured in this file.")
    if max(preset["task_lengths"]) < max(preset["profile_lengths"]):
        notes.append(
            f"Training tasks stop at T={max(preset['task_lengths'])} in this preset (step budget on this "
            f"device); profiles at initialisation go to T={max(preset['profile_lengths'])}."
        )
    # lstmcore never overwrites a run: each invocation gets its own parent directory.
    train_logdir = os.path.join(tb_root, "train", env["date"].replace(":", ""))
    rows = []
    started = time.perf_counter()
    for length in preset["profile_lengths"]:
        for name in args.models:
            row = {**profile_at_init(name, length, preset), **env}
            rows.append(row)
            for d in np.unique(np.geomspace(1, length, num=min(length, 60)).astype(int) - 1):
                if math.isfinite(row["ratio"][d]) and row["ratio"][d] > 0:
                    tensorboard.scalar(
                        f"init_T{length}/{name}/log10_ratio", math.log10(row["ratio"][d]), int(d)
                    )
            print(
                f"profile T={length:<5} {name:<12} horizon {_horizon_text(row['horizon'], length):>8} "
                f"(per seed {row['horizon_per_seed']})  [{time.perf_counter() - started:.0f} s]",
                flush=True,
            )
    if not args.skip_tasks:
        for task in preset["tasks"]:
            for setting in preset.get("settings", list(SETTINGS)):
                for name in [m for m in args.models if m in preset.get("task_models", MODELS)]:
                    for length in preset["task_lengths"]:
                        row = {
                            **train_task(name, task, length, setting, preset, train_logdir),
                            **env,
                        }
                        rows.append(row)
                        print(
                            f"{task:<6} {setting:<11} {name:<12} T={length:<5} {row['heldout_metric']} "
                            f"{row['heldout_value']:.4f} solved={row['solved']} steps_to_criterion="
                            f"{row['steps_to_criterion']} ({row['seconds']:.1f} s) [{time.perf_counter() - started:.0f} s]",
                            flush=True,
                        )
                        if not row["solved"]:
                            break
    notes.append(f"Wall time of the whole run: {time.perf_counter() - started:.0f} s.")
    base = os.path.join(args.out, f"vanishing_{tag}")
    common.write_jsonl(base + ".jsonl", rows)
    if not write_plots(base, rows, env):
        notes.append("matplotlib is not importable: no plots written.")
    write_markdown(base + ".md", rows, env, args.preset, preset, notes)
    with open(base + ".md", encoding="utf-8") as f:
        tensorboard.text("vanishing", f.read())
    tensorboard.close()
    print(f"wrote {base}.jsonl, {base}.md and plots")
    return rows


if __name__ == "__main__":
    main()
