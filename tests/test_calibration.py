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
from training.thresholds import quantile_threshold, thresholds_between


def test_thresholds_between_fills_each_gap_evenly_in_logit():
    def logit(p):
        return math.log(p / (1 - p))

    taus = [0.8387, 0.6342, 0.0752, 0.00147, 0.00133]  # v1's tau_K, K = 0.1 ... 0.9
    grid = thresholds_between(taus, 3)
    assert len(grid) == 3 * 4 and grid == sorted(grid)
    assert not set(grid) & set(taus)  # the calibrated points are left out
    full = [logit(t) for t in sorted([*taus, *grid])]
    for j in range(4):  # each gap cut into 4 equal steps in logit
        steps = np.diff(full[4 * j : 4 * j + 5])
        assert steps == pytest.approx([steps[0]] * 4, rel=1e-9) and steps[0] > 0
    assert grid[3:6] == pytest.approx([0.0040, 0.0108, 0.0290], abs=5e-4)
    assert thresholds_between([0.5, 0.25, 0.5], 1) == pytest.approx([1 / (1 + math.sqrt(3))])
    assert thresholds_between(taus, 0) == [] and thresholds_between([0.3], 2) == []


@pytest.mark.parametrize(
    ("taus", "n", "match"),
    [
        ([0.2, 0.4], -1, r"points per gap must be an integer >= 0, got -1"),
        ([0.2, 0.4], 1.5, r"points per gap must be an integer >= 0, got 1.5"),
        ([0.0, 0.4], 1, r"thresholds must lie strictly between 0 and 1, got \[0.0\]"),
        ([0.4, math.inf], 1, r"strictly between 0 and 1, got \[inf\]"),
    ],
)
def test_thresholds_between_refuses_bad_input(taus, n, match):
    with pytest.raises(ConfigError, match=match):
        thresholds_between(taus, n)


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
    from training.cli.main import main

    assert main(["evaluate", "--router", router, "--budget", "0.4", "--episodes", "1"]) == 2
    assert "budget K=0.4 was not calibrated for this router" in capsys.readouterr().err
    args = ["--router", router, "--episodes", "1", "--budgets", "0.3,0.6", "--quiet"]
    code = main(["calibrate", *args, "--refine-iters", "2"])
    stdout = capsys.readouterr().out
    assert code == 0 and "K = 0.3" in stdout and "score shift" in stdout
    assert "fixed-point refinement (<= 2 pool runs per K" in stdout
    assert (out / "calibration" / "score_shift.png").stat().st_size > 1000
    assert (out / "calibration" / "calibration_refinement.png").stat().st_size > 1000
    cal = json.loads((out / "calibration" / "calibration.json").read_text())
    assert set(cal["thresholds"]) == {"0.3", "0.6"} and cal["split"] == "valid_train"
    for k, runs in cal["refinement"].items():
        assert 1 <= len(runs) <= 2 and runs[0]["tau"] == cal["eq7_thresholds"][k]
        assert cal["thresholds"][k] in [r["tau"] for r in runs]  # the best pool run
    ckpt = torch.load(router, map_location="cpu", weights_only=True)
    assert ckpt["thresholds"] == cal["thresholds"]
    # --refine-iters 0 is the paper's one pass: thresholds are the Eq. 7 quantiles
    assert main(["calibrate", *args, "--refine-iters", "0"]) == 0
    assert "method: Eq. 7 (one pass at tau = 0.5)" in capsys.readouterr().out
    cal = json.loads((out / "calibration" / "calibration.json").read_text())
    assert cal["thresholds"] == cal["eq7_thresholds"] and cal["refinement"] == {}
    assert cal["thresholds"]["0.3"] >= cal["thresholds"]["0.6"]
    assert main(["calibrate", *args, "--refine-iters", "-1"]) == 2
    assert "refine_iters must be >= 0 (0 = Eq. 7 only), got -1" in capsys.readouterr().err
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
    assert main(["evaluate", "--router", router, "--online-step", "0.2", "--episodes", "1"]) == 2
    assert "--online-step needs --budget K" in capsys.readouterr().err
    assert main(["evaluate", "--router", "always-low", "--online-step", "0.2"]) == 2
    assert "apply to a trained router file, not to 'always-low'" in capsys.readouterr().err
    assert 0.0 <= data["hp_fraction"] <= 1.0
    with pytest.raises(SystemExit):
        main(["calibrate", "--router", router, "--budgets", "0.2,x"])
    assert "--budgets expects comma-separated numbers" in capsys.readouterr().err


# --------------------------------------------------------------- fixed-point refinement
def _derailing_pool(n_normal: int = 400, loop_states: int = 600):
    """A pool whose state distribution depends on tau, like a multi-step task: normal
    states have scores on a grid in (0.01, 1); routing fewer of them high (a higher tau)
    derails episodes, whose looping states all score 0.001."""
    normal = np.geomspace(0.01, 1.0, n_normal)

    def run_pool(tau: float):
        missed = float((normal < tau).mean())  # share of normal states routed low
        loops = np.full(int(round(loop_states * missed)), 0.001)
        scores = np.concatenate([normal, loops])
        hp = float((scores >= tau).mean())
        return scores, hp, 1.0 - missed

    return run_pool


def test_refine_threshold_reaches_the_budget_where_eq7_misses():
    from training.calibrate import refine_threshold

    run_pool = _derailing_pool()
    scores0, _, _ = run_pool(0.5)
    for k in (0.2, 0.4, 0.7):
        tau0 = quantile_threshold(scores0, k)  # Eq. 7 on the tau = 0.5 pool
        _, hp0, _ = run_pool(tau0)
        assert abs(hp0 - k) > 0.05  # the one-pass quantile misses the budget here
        tau, runs = refine_threshold(run_pool, k, tau0, max_iters=8, tolerance=0.02)
        assert runs[0].tau == tau0 and len(runs) <= 8
        assert abs(run_pool(tau)[1] - k) <= 0.02
        assert tau == min(runs, key=lambda r: abs(r.hp_fraction - k)).tau


def test_refine_threshold_never_reruns_a_threshold():
    from training.calibrate import refine_threshold

    def run_pool(tau: float):  # h(tau) = 1 - tau, but the pool only ever shows {0, 1}
        return np.array([0.0, 1.0]), 1.0 - tau, 1.0

    tau, runs = refine_threshold(run_pool, 0.4, tau0=0.9, max_iters=12, tolerance=0.01)
    assert abs((1.0 - tau) - 0.4) <= 0.01
    taus = [r.tau for r in runs]
    assert len(set(taus)) == len(taus)  # never re-runs a threshold it already tried


def test_refine_threshold_edges_and_errors():
    from training.calibrate import refine_threshold

    calls = []

    def run_pool(tau: float):
        calls.append(tau)
        return np.array([0.5]), 0.3, 1.0

    assert refine_threshold(run_pool, 1.0, 0.1) == (0.1, []) and not calls  # always high
    assert refine_threshold(run_pool, 0.0, math.inf) == (math.inf, []) and not calls
    tau, runs = refine_threshold(run_pool, 0.4, 0.2, max_iters=1)
    assert tau == 0.2 and len(runs) == 1 and runs[0].hp_fraction == 0.3
    with pytest.raises(ConfigError, match="max_iters must be >= 1, got 0"):
        refine_threshold(run_pool, 0.4, 0.2, max_iters=0)
    with pytest.raises(ConfigError, match=r"tolerance must be in \(0, 1\), got 0"):
        refine_threshold(run_pool, 0.4, 0.2, tolerance=0.0)
