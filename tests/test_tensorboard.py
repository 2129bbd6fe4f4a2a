import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import keras
import numpy as np
import pytest

import lstmcore


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, data=None):
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"} if data else {}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def finished_run(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((5, 2)), keras.layers.LSTM(4, name="lstm"), keras.layers.Dense(1)]
    )
    x = np.random.default_rng(0).normal(size=(32, 5, 2)).astype(np.float32)
    history = lstmcore.train(
        model,
        (x, x[:, -1, :1]),
        validation_data=(x[:8], x[:8, -1, :1]),
        steps=6,
        batch_size=8,
        logdir=str(tmp_path),
        run_name="run",
        progress=False,
        hparams={"note": "tb-test"},
    )
    return tmp_path, history


@pytest.mark.slow
def test_tensorboard_serves_scalars_layout_and_hparams(finished_run):
    logdir, history = finished_run
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(logdir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--reload_interval",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        tags = {}
        while time.monotonic() < deadline:
            try:
                tags = get(f"{base}/data/plugin/scalars/tags")
                if "run" in tags and "val/loss" in tags["run"]:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert "train/loss" in tags["run"]
        assert "grad_norm/global_before_clip" in tags["run"]
        assert "grad_norm/lstm/recurrent_kernel/f" in tags["run"]

        query = urllib.parse.urlencode({"run": "run", "tag": "train/loss"})
        points = get(f"{base}/data/plugin/scalars/scalars?{query}")
        assert [p[1] for p in points] == list(range(6))
        np.testing.assert_allclose([p[2] for p in points], history["loss"], rtol=1e-6)

        layout = get(f"{base}/data/plugin/custom_scalars/layout")
        titles = [category["title"] for category in layout["category"]]
        assert titles == ["lstmcore: gradients", "lstmcore: training"]
        charts = [c["title"] for c in layout["category"][0]["chart"]]
        assert "lstm recurrent_kernel by gate" in charts

        experiment = get(f"{base}/data/plugin/hparams/experiment", data=b'{"experimentName": ""}')
        names = {h["name"] for h in experiment["hparamInfos"]}
        assert {"clip", "clip_norm", "batch_size", "note"} <= names
        groups = get(
            f"{base}/data/plugin/hparams/session_groups",
            data=json.dumps(
                {
                    "experimentName": "",
                    "allowedStatuses": ["STATUS_UNKNOWN"],
                    "colParams": [],
                    "startIndex": 0,
                    "sliceSize": 10,
                }
            ).encode(),
        )
        assert groups["sessionGroups"][0]["hparams"]["note"] == "tb-test"
    finally:
        server.terminate()
        server.wait(timeout=30)
