"""The adding problem at T=200: a stock Keras LSTM(64) against the fix lstmcore's diagnosis names.

Usage (one run per call; held-out MSE every 250 steps, then the 100-step means of the loss):
  python -m benchmarks.adding_fix stock 4000
  python -m benchmarks.adding_fix fixed 4000 WARMUP_STEPS LEARNING_RATE

"stock": `keras.layers.LSTM(64)` (unit forget bias 1), Adam 1e-3, no clipping. "fixed":
`LSTM(64, unit_forget_bias=False, bias_initializer=lstmcore.initializers.Chrono(200))`,
clipping at global norm 1.0, linear warmup, the given learning rate. 8192 training and 512
held-out sequences, batch 32, seed 0; predicting the mean scores MSE 1/6.
"""

import json
import sys
import time

import keras
import numpy as np

import lstmcore
from lstmcore.initializers import Chrono

from .vanishing import adding_problem

T = 200


def main(argv):
    which, steps = argv[0], int(argv[1])
    x, y = adding_problem(8192, T, seed=0)
    vx, vy = adding_problem(512, T, seed=1)
    keras.utils.set_random_seed(0)
    if which == "stock":
        lstm = keras.layers.LSTM(64)
        options = {"clip": None, "learning_rate": 1e-3}
    else:
        lstm = keras.layers.LSTM(64, unit_forget_bias=False, bias_initializer=Chrono(T))
        options = {
            "clip": "global_norm",
            "clip_norm": 1.0,
            "warmup_steps": int(argv[2]),
            "learning_rate": float(argv[3]),
        }
    model = keras.Sequential([keras.Input((T, 2)), lstm, keras.layers.Dense(1)])
    started = time.time()
    history = lstmcore.train(
        model,
        (x, y),
        validation_data=(vx, vy),
        steps=steps,
        batch_size=32,
        logdir=None,
        progress=False,
        validate_every=250,
        check=False,
        probe_every=None,
        **options,
    )
    print(which, "seconds", time.time() - started)
    losses = history["loss"]
    print(
        json.dumps(
            {
                "val": [float(v) for v in history["val_loss"]],
                "loss": [float(np.mean(losses[i : i + 100])) for i in range(0, steps, 100)],
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
