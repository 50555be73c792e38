"""Budget calibration (Eq. 7): quantile thresholds, score shift, the calibrate CLI, and
``evaluate --router CKPT --budget K`` end to end on a tiny router."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import requires_alfworld, run_cli
from test_kl_st import make_synthetic_kl

from precision_gym.error import ConfigError
from training.calibrate import score_shift
from training.thresholds import quantile_threshold


def test_quantile_threshold_routes_fraction_k():
    scores = np.linspace(0.0, 1.0, 1001)
    for k in (0.2, 0.4, 0.7):
        tau = quantile_threshold(scores, k)
        assert (scores >= tau).mean() == pytest.approx(k, abs=0.002)
    assert quantile_threshold(scores, 0.0) == math.inf
    assert quantile_threshold(scores, 1.0) == 0.0
    assert quantile_threshold(np.array([0.3]), 0.4) == 0.3  # one score
    assert quantile_threshold(np.array([0.2, np.nan, 0.4]), 0.5) == pytest.approx(0.3)
    ties = np.array([0.5] * 10)
    assert (ties >= quantile_threshold(ties, 0.2)).mean() == 1.0  # ties cannot be split


def test_quantile_threshold_errors():
    with pytest.raises(ConfigError, match=r"budget K must be in \[0, 1\], got 1.5"):
        quantile_threshold(np.array([0.1]), 1.5)
    with pytest.raises(ConfigError, match="needs at least one score, got none"):
        quantile_threshold(np.array([np.nan]), 0.4)


def test_score_shift():
    s = score_shift(np.array([0.9, 0.8, 0.2, 0.1]), np.array([0.1, 0.2, 0.3, 0.6]))
    assert s["train_mean"] == pytest.approx(0.5) and s["calib_mean"] == pytest.approx(0.3)
    assert s["train_percentile"] == 0.5 and s["calib_percentile"] == 0.75


_cli = run_cli


@requires_alfworld
def test_cli_train_calibrate_evaluate(tmp_path, capsys):
    torch.set_num_threads(1)
    data = make_synthetic_kl(tmp_path / "kl")
    out = tmp_path / "klst"
    train_args = ["--data", str(data), "--out", str(out), "--epochs", "2", "--d-model", "16"]
    proc = _cli("train-klst", *train_args, "--n-layers", "1", "--n-heads", "2", "--quiet")
    assert "wrote" in proc.stdout and (out / "router.pt").exists()
    router = str(out / "router.pt")
    from training.cli import main

    assert main(["evaluate", "--router", router, "--budget", "0.4", "--episodes", "1"]) == 2
    assert "budget K=0.4 was not calibrated for this router" in capsys.readouterr().err
    code = main(
        ["calibrate", "--router", router, "--episodes", "1", "--budgets", "0.3,0.6", "--quiet"]
    )
    stdout = capsys.readouterr().out
    assert code == 0 and "K = 0.3" in stdout and "score shift" in stdout
    assert (out / "calibration" / "score_shift.png").stat().st_size > 1000
    cal = json.loads((out / "calibration" / "calibration.json").read_text())
    assert set(cal["thresholds"]) == {"0.3", "0.6"} and cal["split"] == "valid_train"
    assert cal["thresholds"]["0.3"] >= cal["thresholds"]["0.6"]
    res = tmp_path / "eval.json"
    _cli(
        "evaluate",
        "--router",
        router,
        "--budget",
        "0.6",
        "--episodes",
        "1",
        "--seeds",
        "0",
        "--no-reference",
        "--quiet",
        "--out",
        str(res),
    )
    data = json.loads(res.read_text())
    assert data["router"] == "klst-router(K=0.6)" and data["simulated"] is True
    assert 0.0 <= data["hp_fraction"] <= 1.0
    with pytest.raises(SystemExit):
        main(["calibrate", "--router", router, "--budgets", "0.2,x"])
    assert "--budgets expects comma-separated numbers" in capsys.readouterr().err
