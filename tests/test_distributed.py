"""Rollout workers: the same records (seeds, tasks, order) with 1 or 2 local processes and with
Ray actors on a local Ray instance started and ended here."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli, untrained_router_file

from precision_gym.error import ConfigError
from training.rollout_workers import RolloutSpec, run_distributed, shares

SPEC = RolloutSpec(
    env_id="DMR-ALFWorld-v0",
    split="valid_unseen",
    router="random",
    env_kwargs={"max_steps": 6},
    p_high=0.4,
)
JOBS = [(0, 0), (0, 7), (0, 15), (1, 0), (1, 7)]


@pytest.fixture(scope="module")
def sequential():
    return run_distributed(SPEC, JOBS, workers=1)


def test_shares_keep_a_task_on_one_worker_and_cover_every_job():
    assert shares(JOBS, 2) == [[0, 2, 3], [1, 4]]  # tasks 0, 15 | task 7
    assert shares(JOBS, 8) == [[0, 3], [1, 4], [2]]  # at most one worker per task
    assert shares([(0, 5)], 4) == [[0]]


def test_two_worker_processes_give_the_same_records(sequential):
    assert [(r.seed, r.task_index) for r in sequential] == JOBS
    assert run_distributed(SPEC, JOBS, workers=2) == sequential


def test_online_budget_control_needs_one_stream():
    spec = RolloutSpec(**{**SPEC.__dict__, "online_step": 0.2})
    with pytest.raises(
        ConfigError, match="expected --workers 1 and no --ray-address, got --workers 2"
    ):
        run_distributed(spec, JOBS, workers=2)
    with pytest.raises(ConfigError, match="--workers must be an integer >= 1, got 0"):
        run_distributed(SPEC, JOBS, workers=0)


def test_ray_actors_give_the_same_records(local_ray, sequential):
    assert run_distributed(SPEC, JOBS, workers=2, ray_address="auto") == sequential
    assert local_ray.is_initialized()  # the caller's instance is left to the caller


def test_cli_evaluate_workers_2_matches_workers_1(tmp_path):
    common = [
        "evaluate",
        "--router",
        "random",
        "--p-high",
        "0.4",
        "--episodes",
        "3",
        "--seeds",
        "0,1",
        "--env-kwargs",
        '{"max_steps": 6}',
        "--no-reference",
        "--quiet",
    ]
    outs = []
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}.json"
        run_cli(*common, "--workers", workers, "--out", str(out))
        outs.append(json.loads(out.read_text()))
    assert outs[0] == outs[1]
    assert outs[0]["episodes"] == 3 and len(outs[0]["per_seed"]) == 2


def test_sweep_workers_2_matches_workers_1(tmp_path):
    """sweep --workers: every fixed point played by 2 worker processes, the online point here
    as one stream; the same summaries as one process."""
    import gymnasium as gym

    from training.sweep import run_sweep

    env = gym.make("DMR-WebShop-v0")
    path = untrained_router_file(env, tmp_path / "r.pt", "test", 0)
    kw = dict(
        env_id="DMR-WebShop-v0", split="test", episodes=3, seeds=(0, 1), budgets=(0.4,),
        progress=False,
    )  # fmt: skip
    one = run_sweep(path, env, **kw)
    two = run_sweep(path, env, workers=2, **kw)
    env.close()
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)
    names = [s["router"] for s in one]
    assert names[2].endswith("(K=0.4,online)") and names[4].endswith("(K=0.4)"), names
    assert names[-1] == "oracle"
    with pytest.raises(ValueError, match="needs env_id"):
        run_sweep(path, env, **{**kw, "env_id": ""}, workers=2)


@pytest.mark.parametrize("behaviour", ["bf16 (the paper's)", "a router file"])
def test_collect_kl_on_ray_actors_matches_one_process(local_ray, tmp_path, behaviour):
    import gymnasium as gym
    import numpy as np

    from training.kl_collect import CollectConfig, collect_kl, load_kl_dataset

    extra = {}
    if behaviour == "a router file":  # each actor loads it (collect-kl --behaviour)
        env = gym.make("DMR-WebShop-v0")
        router = untrained_router_file(env, tmp_path / "r.pt", "test", 2)
        env.close()
        extra = {"behaviour": str(router), "behaviour_budget": 0.4}
    cfg = CollectConfig(
        env_id="DMR-WebShop-v0", split="test", episodes=3, seed=2, shard_size=1, **extra
    )
    collect_kl(tmp_path / "one", cfg, progress=False)
    collect_kl(tmp_path / "ray", cfg, progress=False, workers=2, ray_address="auto")
    a, b = load_kl_dataset(tmp_path / "one"), load_kl_dataset(tmp_path / "ray")
    for name in ("vectors", "ep_start", "episode", "t", "step", "kl", "kind", "task_id", "tier"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert set(a.tier.tolist()) == ({0} if not extra else {0, 1})
    assert local_ray.is_initialized()  # the caller's instance is left to the caller
