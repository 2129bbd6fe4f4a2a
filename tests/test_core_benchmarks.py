import json

import pytest

from benchmarks import overhead, preflight, probe_cost, soak


@pytest.mark.slow
def test_overhead_smoke_prints_a_ratio(tmp_path):
    (result,) = overhead.main(["--smoke", "--json", str(tmp_path / "o.jsonl")])
    assert result["ratio"] > 0 and result["bare_keras_step_ms"] > 0
    assert json.loads((tmp_path / "o.jsonl").read_text())["tensorflow"]


@pytest.mark.slow
def test_soak_short_run_reports_first_and_last_tenth():
    result = soak.main(["--steps", "200"])
    assert result["step_ms_first_10pct"] > 0 and result["step_ms_last_10pct"] > 0
    assert result["event_bytes_total"] > 0


def test_probe_cost_smoke_measures_a_probe_call():
    (result,) = probe_cost.main(["--smoke", "--every", "3"])
    assert result["probe_ms"] > 0 and 0 < result["default_schedule_share"]


def test_preflight_measures_the_scan_against_an_epoch():
    result = preflight.main(["--windows", "256", "--shape", "8", "5", "3", "4"])
    assert 0 < result["scan_share_of_epoch"]


@pytest.mark.slow
def test_forecast_benchmark_smoke_runs_the_cli_and_tabulates(capsys):
    from benchmarks import forecast

    forecast.main(["--smoke", "--modes", "window_norm", "--seeds", "0"])
    out = capsys.readouterr().out
    assert "| smoke | 240 | 17 | 12 | window_norm | 1 |" in out
    assert "test: model" in out
