"""Shared fixtures. ALFWORLD_DATA defaults to ../shared/alfworld (the checkout's sibling)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_SHARED_ALFWORLD = ROOT.parent / "shared" / "alfworld"
if "ALFWORLD_DATA" not in os.environ and (_SHARED_ALFWORLD / "json_2.1.1").is_dir():
    os.environ["ALFWORLD_DATA"] = str(_SHARED_ALFWORLD)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# each test plans for itself: a planner answer folder of the caller's shell would answer
# searches the tests count (tests that share a folder name their own)
os.environ.pop("PRECISION_GYM_PLAN_CACHE", None)

import precision_gym  # noqa: E402  (registers the env ids)

# tiny offline Qwen3 model, its GPTQ copy, and the CPU vLLM server fixtures
pytest_plugins = ["llm_fixtures"]

ENV_IDS = list(precision_gym.ENV_IDS)


def run_cli(*args: str, check: bool = True, timeout: int = 900):
    """Run ``precision-gym ARGS`` as a subprocess, the way a user does."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "training.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(proc.stdout[-2000:] + proc.stderr[-3000:])
    return proc


def alfworld_available() -> bool:
    root = Path(os.environ.get("ALFWORLD_DATA", "~/.cache/alfworld")).expanduser()
    return (root / "json_2.1.1" / "valid_unseen").is_dir()


requires_alfworld = pytest.mark.skipif(
    not alfworld_available(), reason="ALFWorld data not found (set ALFWORLD_DATA)"
)


@pytest.fixture(scope="session")
def encoder():
    from precision_gym.embedding import SentenceEncoder

    return SentenceEncoder()


def untrained_router_file(env, path, split: str, episode_seed: int):
    """An untrained Transformer router that fits ``env``, saved to ``path``. Its K=0.4
    threshold is the median of its scores on ``split``'s first task (played at the highest
    tier, episode seed ``episode_seed``), so that it routes both ways."""
    import numpy as np
    import torch

    from agents.router import RouterConfig, TransformerRouter, TransformerRouterPolicy

    u = env.unwrapped
    torch.manual_seed(0)
    model = TransformerRouter(
        RouterConfig(
            embed_dim=u.embedding_dim, max_len=u.max_history, d_model=16, n_layers=1,
            n_heads=2, dropout=0.0, n_tiers=int(env.action_space.n),
        )
    )  # fmt: skip
    policy = TransformerRouterPolicy(model)
    obs, _ = env.reset(seed=episode_seed, options={"split": split, "task_index": 0})
    scores, done = [], False
    while not done:
        scores.append(float(policy.high_precision_score(obs)[0]))
        obs, _, terminated, truncated, _ = env.step(0)
        done = terminated or truncated
    policy.thresholds = {"0.4": float(np.median(scores))}
    return policy.save(path)


# One small-split override per env id keeps tests fast and deterministic.
RESET_OPTIONS = {
    "DMR-ALFWorld-v0": {"split": "valid_unseen", "task_index": 3},
    "DMR-ALFWorld-v1": {"split": "valid_unseen", "task_index": 3},
    "DMR-WebShop-v0": {"split": "test", "task_index": 2},
}


@pytest.fixture
def local_ray():
    """A local Ray instance (2 CPUs) started for the test and shut down after it."""
    ray = pytest.importorskip(
        "ray", reason="Ray is not installed: pip install 'precision-gym[ray]' (the ray extra)"
    )
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
