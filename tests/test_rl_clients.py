"""The client matrix: each RL library a user may bring trains a router on the fast
DMR-WebShop-v0 env (a few hundred decisions) with its own documented API, through the
example scripts the README shows, and the result is evaluated by `precision-gym evaluate`.

RLlib runs in its own venv (Ray pins gymnasium 1.2.2; the main suite keeps the newest):
$PRECISION_GYM_RLLIB_PYTHON, else ~/.cache/precision-gym/rllib-venv/bin/python, built by
scripts/setup_rllib.sh. A test skips, saying why, only when its optional library is absent.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, run_cli
from llm_fixtures import venv_python_or_skip

ENV = "DMR-WebShop-v0"
DEFAULT_RLLIB_PYTHON = Path.home() / ".cache" / "precision-gym" / "rllib-venv" / "bin" / "python"


def _run(python: str | Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [str(python), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def _evaluate(router: Path, tmp_path: Path, layout: str | None = None) -> dict:
    out = tmp_path / "eval.json"
    extra = ["--env-kwargs", json.dumps({"observation_layout": layout})] if layout else []
    run_cli(
        "evaluate",
        "--env",
        ENV,
        "--split",
        "test",
        "--router",
        str(router),
        *(["--trust-checkpoint"] if router.suffix == ".zip" else []),  # this test's own model
        *extra,
        "--episodes",
        "2",
        "--seeds",
        "0",
        "--quiet",
        "--out",
        str(out),
    )  # fmt: skip  (with the always-high reference, on the same layout)
    summary = json.loads(out.read_text())
    assert summary["episodes"] == 2 and len(summary["records"]) == 2
    assert all(r["tiers"] and set(r["tiers"]) <= {0, 1} for r in summary["records"])
    assert 0.0 <= summary["hp_fraction"] <= 1.0 and summary["simulated"]
    assert "speedup_vs_high" in summary
    return summary


def _needs(module: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} not installed (pip install precision-gym[{extra}])")


@pytest.fixture(scope="module")
def rllib_python() -> Path:
    return venv_python_or_skip(
        "PRECISION_GYM_RLLIB_PYTHON", DEFAULT_RLLIB_PYTHON, "RLlib", "scripts/setup_rllib.sh"
    )


def test_rllib_ppo_one_iteration_one_env_runner(rllib_python, tmp_path):
    router = tmp_path / "rllib.pt"
    proc = _run(
        rllib_python, "examples/rllib_ppo.py", "--env", ENV, "--iterations", "1",
        "--env-runners", "1", "--batch", "200", "--max-steps", "10", "--out", str(router),
    )  # fmt: skip
    assert "iteration 0: decisions 200" in proc.stdout and router.exists()
    summary = _evaluate(router, tmp_path)  # in the main env: the file is portable
    assert summary["router"] == "mlp:rllib"


RLLIB_WORKER_CHECK = """
import gymnasium as gym, numpy as np
from gymnasium.utils.env_checker import check_env
from ray.rllib.env.env_context import EnvContext
import precision_gym.rllib as pr

print("gymnasium", gym.__version__)
env = pr.env_creator(EnvContext({"env_id": "DMR-WebShop-v0", "max_steps": 4}, worker_index=1))
assert env.unwrapped.observation_layout == "flat", env.observation_space
assert env.observation_space.shape == (64 * 384 + 64,)
env2 = pr.make_creator("DMR-WebShop-v0")({"observation_layout": "mean"})  # a plain dict
assert env2.observation_space.shape == (384,)
for layout in ("dict", "flat", "last", "mean"):
    check_env(gym.make("DMR-WebShop-v0", observation_layout=layout, max_steps=4).unwrapped)
import torch
print("threads", torch.get_num_threads())
print("ok")
"""


def test_rllib_creator_takes_a_plain_dict_without_ray():
    from precision_gym.rllib import env_creator, make_creator

    env = env_creator({"env_id": ENV, "max_steps": 3})
    assert env.spec.id == ENV and env.unwrapped.observation_layout == "flat"
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    env = make_creator(ENV)({"observation_layout": "last", "max_steps": 3})
    assert env.observation_space.shape == (384,) and env.unwrapped.max_steps == 3


def test_package_works_on_rays_gymnasium(rllib_python):
    """In the RLlib venv (gymnasium 1.2.2): the creator takes an EnvContext or a dict,
    picks the flat layout, applies one torch thread per process; check_env is clean."""
    proc = _run(rllib_python, "-c", RLLIB_WORKER_CHECK)
    assert "threads 1" in proc.stdout and proc.stdout.strip().endswith("ok"), proc.stdout


@pytest.mark.parametrize(
    ("algo", "layout", "extra_module"),
    [("ppo", None, "stable_baselines3"), ("recurrentppo", "last", "sb3_contrib"),
     ("maskableppo", "mean", "sb3_contrib")],
)  # fmt: skip
def test_sb3_family_with_make_vec_env(algo, layout, extra_module, tmp_path):
    _needs(extra_module, "sb3")
    model = tmp_path / f"{algo}.zip"
    _run(
        sys.executable, "examples/sb3_ppo.py", "--algo", algo, "--env", ENV,
        "--total-timesteps", "256", "--n-steps", "64", "--max-steps", "10", "--out", str(model),
    )  # fmt: skip
    summary = _evaluate(model, tmp_path, layout)
    assert summary["router"] == f"sb3-{algo}:{algo}"


def test_cleanrl_style_ppo(tmp_path):
    router = tmp_path / "cleanrl.pt"
    proc = _run(
        sys.executable, "examples/cleanrl_ppo.py", "--env", ENV, "--total-timesteps", "256",
        "--num-steps", "64", "--max-steps", "10", "--out", str(router),
    )  # fmt: skip
    assert "iteration 2/2: decisions 256" in proc.stdout
    summary = _evaluate(router, tmp_path)
    assert summary["router"] == "mlp:cleanrl"


def test_cleanrl_style_ppo_same_seed_same_curve_and_router(tmp_path):
    runs = []
    for name in ("a", "b"):
        router = tmp_path / f"{name}.pt"
        proc = _run(
            sys.executable, "examples/cleanrl_ppo.py", "--env", ENV, "--total-timesteps", "64",
            "--num-steps", "32", "--max-steps", "6", "--seed", "3", "--out", str(router),
        )  # fmt: skip
        curve = [line.split(" SPS")[0] for line in proc.stdout.splitlines() if "iteration" in line]
        runs.append((curve, torch.load(router, weights_only=True)["state_dict"]))
    (curve_a, weights_a), (curve_b, weights_b) = runs
    assert curve_a == curve_b and curve_a
    for key, value in weights_a.items():
        assert torch.equal(value, weights_b[key]), key
