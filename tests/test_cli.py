"""The CLI's JSON contract and error messages, run as a subprocess like a user would."""

from __future__ import annotations

import json

import pytest
from conftest import requires_alfworld, run_cli

KEYS = {
    "success_rate",
    "mean_success_episode_time_s",
    "speedup_vs_high",
    "hp_fraction",
    "episodes",
    "seeds",
    "router",
    "env",
}


_cli = run_cli


@requires_alfworld
def test_evaluate_writes_the_json_contract(tmp_path):
    out = tmp_path / "eval.json"
    proc = _cli(
        "evaluate",
        "--env",
        "DMR-ALFWorld-v0",
        "--router",
        "random",
        "--p-high",
        "0.5",
        "--episodes",
        "2",
        "--seeds",
        "0,1",
        "--out",
        str(out),
        "--quiet",
    )
    data = json.loads(out.read_text())
    assert set(data) >= KEYS
    assert data["episodes"] == 2 and data["seeds"] == [0, 1] and data["env"] == "DMR-ALFWorld-v0"
    assert data["router"] == "random(p_high=0.5)" and data["simulated"] is True
    assert 0.0 <= data["success_rate"] <= 1.0 and 0.0 <= data["hp_fraction"] <= 1.0
    assert "SIMULATED" in proc.stderr


def test_evaluate_bad_inputs():
    proc = _cli("evaluate", "--router", "random", "--p-high", "2", check=False)
    assert proc.returncode == 2 and "expected a number in [0, 1], got 2.0" in proc.stderr
    proc = _cli("evaluate", "--router", "random", "--seeds", "a,b", check=False)
    assert "--seeds expects comma-separated integers like 0,1,2, got 'a,b'" in proc.stderr
    proc = _cli("evaluate", "--env", "Nope-v0", "--router", "always-high", check=False)
    assert proc.returncode == 2 and "unknown env id 'Nope-v0'" in proc.stderr
    proc = _cli("evaluate", "--env", "DMR-WebShop-v0", "--router", "no/such/file.pt", check=False)
    assert proc.returncode == 2 and "neither a baseline name" in proc.stderr


@pytest.mark.slow
@requires_alfworld
def test_demo_writes_table_and_plot(tmp_path):
    _cli(
        "demo",
        "--episodes",
        "2",
        "--kl-episodes",
        "4",
        "--calib-episodes",
        "2",
        "--epochs",
        "2",
        "--out",
        str(tmp_path),
        "--quiet",
    )
    data = json.loads((tmp_path / "results.json").read_text())
    routers = {s["router"] for s in data["summaries"]}
    assert routers >= {"always-high", "always-low", "oracle"}, routers
    assert any(r.startswith("klst-router(K=0.4") for r in routers), routers
    # every K is held online by default, with the fixed tau_K figure beside it
    assert {"klst-router(K=0.4,online)", "klst-router(K=0.4)"} <= routers, routers
    budgets = data["acceptance"]["budgets"]
    assert budgets["0.4"]["control"] == "online" and 0 <= budgets["0.4"]["fixed_hp_fraction"] <= 1
    assert (tmp_path / "pareto.png").stat().st_size > 1000
    assert "SIMULATED" in (tmp_path / "results.md").read_text()
