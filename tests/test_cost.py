import math

import pytest

from precision_gym.cost import (
    PRESETS,
    W3_PROJECTION_FACTOR,
    LatencyCalibrator,
    LatencyCoefficients,
    episode_time_s,
    get_preset,
    step_time_s,
    trajectory_return,
)
from precision_gym.error import ConfigError

COEFFS = LatencyCoefficients(("bf16", "w4"), (25.0, 15.0), 20.0)


def test_eq9_step_and_episode_time():
    # 10 tokens at bf16 (25 ms) + router 20 ms = 0.27 s
    assert step_time_s(10, 0, COEFFS) == pytest.approx(0.27)
    assert step_time_s(10, 1, COEFFS) == pytest.approx(0.17)
    assert step_time_s(10, 1, COEFFS, router_call=False) == pytest.approx(0.15)
    total = episode_time_s([10, 10, 4], [0, 1, 1], COEFFS, [True, True, False])
    assert total == pytest.approx(0.27 + 0.17 + 0.06)


def test_eq8_return():
    assert trajectory_return(1.0, 5.0, 0.02) == pytest.approx(0.9)
    assert trajectory_return(0.0, 5.0, 0.0) == 0.0
    with pytest.raises(ConfigError, match=r"cost_weight \(lambda\) must be >= 0, got -1"):
        trajectory_return(1.0, 1.0, -1)


def test_bad_inputs_have_clear_errors():
    with pytest.raises(ConfigError, match=r"tier index must be in \[0, 2\), got 2"):
        step_time_s(1, 2, COEFFS)
    with pytest.raises(ConfigError, match="one entry per step, got 2 and 1"):
        episode_time_s([1, 2], [0], COEFFS)
    with pytest.raises(ConfigError, match=r"expected one ms/token coefficient per tier \(2 tiers"):
        LatencyCoefficients(("a", "b"), (1.0,), 0.0)
    with pytest.raises(ConfigError, match="unknown latency preset 'nope': expected one of"):
        get_preset("nope")


def test_table3_presets():
    p = PRESETS["alfworld-qwen3-4b-awq-w4"]
    assert p.ms_per_token == (25.02, 16.77) and p.router_ms_per_call == 19.90
    w = PRESETS["webshop-qwen3-1.7b-gptq-w4"]
    assert w.ms_per_token == (12.64, 11.51) and w.router_ms_per_call == 22.81
    # projected W3 = W4 / 1.15 (Appendix A.3), Table 3 prints 14.58
    w3 = PRESETS["alfworld-qwen3-4b-gptq-w3"]
    assert w3.ms_per_token[1] == pytest.approx(16.77 / W3_PROJECTION_FACTOR, abs=0.005)
    assert w3.ms_per_token[1] == 14.58
    assert len(PRESETS["alfworld-qwen3-4b-3tier"].ms_per_token) == 3
    for coeffs in PRESETS.values():
        assert list(coeffs.ms_per_token) == sorted(coeffs.ms_per_token, reverse=True)


def test_calibrator_eq10_eq11():
    cal = LatencyCalibrator()
    cal.add_call("bf16", 1.0, 40)  # pooled: (1.0 + 0.5) s / (40 + 20) tokens = 25 ms/token
    cal.add_call("bf16", 0.5, 20)
    cal.add_call("w4", 0.3, 20)
    cal.add_router_call(0.02)
    cal.add_router_call(0.04)
    assert cal.ms_per_token("bf16") == pytest.approx(25.0)
    assert cal.ms_per_token("w4") == pytest.approx(15.0)
    assert cal.router_ms_per_call() == pytest.approx(30.0)
    coeffs = cal.coefficients(["bf16", "w4"])
    assert coeffs.ms_per_token == pytest.approx((25.0, 15.0))
    with pytest.raises(ConfigError, match="no completion tokens logged for tier 'w3'"):
        cal.ms_per_token("w3")
    assert not math.isnan(coeffs.router_ms_per_call)
