"""Sweep summaries: every K's realised HP fraction beside it, online point with the fixed one."""

from __future__ import annotations

import math

from training.sweep import _budget_lines, _summaries, acceptance


class _Result:
    def __init__(self, name: str, success: float, hp: float) -> None:
        self.name, self.success, self.hp = name, success, hp

    def summary(self, reference=None):
        return {
            "router": self.name,
            "success_rate": self.success,
            "hp_fraction": self.hp,
        }


def test_online_point_is_judged_and_fixed_reported_beside_it():
    results = [
        _Result("always-high", 0.9, 1.0),
        _Result("always-low", 0.5, 0.0),
        _Result("klst-router(K=0.4,online)", 0.85, 0.41),
        _Result("random(p_high=0.41, K=0.4)", 0.7, 0.41),
        _Result("klst-router(K=0.4)", 0.88, 0.52),
        _Result("klst-router(K=0.2)", 0.8, 0.22),  # a fixed-only point (no online run)
        _Result("random(p_high=0.22, K=0.2)", 0.6, 0.22),
    ]
    summaries = _summaries(results)
    assert [s.get("budget_control") for s in summaries[2:]] == [
        "online", None, "fixed", "fixed", None,
    ]  # fmt: skip
    acc = acceptance(summaries)
    k4 = acc["budgets"]["0.4"]
    assert k4["control"] == "online" and k4["hp_fraction"] == 0.41
    assert k4["fixed_hp_fraction"] == 0.52 and k4["hp_within_0.05"]
    k2 = acc["budgets"]["0.2"]
    assert k2["control"] == "fixed" and k2["fixed_hp_fraction"] == 0.22
    assert math.isclose(k4["margin_vs_random_pp"], 15.0)
    lines = _budget_lines(acc)
    assert lines[0].startswith(
        "K=0.4: realised HP 0.41 (online, within 0.05 of K) (fixed tau_K: HP 0.52"
    )
    assert "K=0.2: realised HP 0.22 (fixed, within 0.05 of K) |" in lines[1]
